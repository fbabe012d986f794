"""Engine tests run without Home Assistant: override the shell's autouse fixture."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The engine needs no hass instance (overrides tests/conftest.py)."""
