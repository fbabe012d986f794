"""Tests for Peer Energy."""
