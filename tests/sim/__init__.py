"""Tests of the community simulator (sim/)."""
