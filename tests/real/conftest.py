"""Tests with real Home Assistant processes on 127.0.0.1 (no test instance of it here)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(socket_enabled: None) -> Any:
    """These tests talk to real Home Assistant processes over 127.0.0.1: no test instance
    is started, and sockets stay open."""
    return None
