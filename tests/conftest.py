"""Shared fixtures.

Home Assistant's test harness puts its own ``testing_config`` first on ``sys.path``;
its ``custom_components`` package would then shadow ours. Importing our package here,
before any ``hass`` fixture runs, pins the right one.
"""

from __future__ import annotations

import pytest

from custom_components.peer_energy.const import DOMAIN  # noqa: F401  (import pins our package)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    enable_custom_integrations: None,
) -> None:
    """Let Home Assistant load integrations from custom_components."""
