"""Tests of identity, envelope, source chain, credit, reputation and storage."""
