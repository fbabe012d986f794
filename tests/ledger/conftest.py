"""Fixtures for the ledger tests: deterministic identities."""

from __future__ import annotations

import hashlib

from custom_components.peer_energy.core.trust.identity import Identity


def make_identity(name: str) -> Identity:
    """A deterministic identity for tests (never for production)."""
    return Identity(hashlib.sha256(name.encode()).digest())
