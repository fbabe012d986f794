"""Fixtures for the slot clock, market entities, actions and blueprints."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.peer_energy.const import (
    CONF_BATTERY_RESERVE_PCT,
    CONF_CONTROL_MODE,
    CONF_MODE_ENTITY,
    CONF_SETPOINT_ENTITY,
    ControlMode,
)
from custom_components.peer_energy.market import SlotClock
from tests.conftest import ASSETS, BATTERY_ID, SOURCE_STATES, make_entry

# 12:07:30 UTC: the running slot started at 12:00, the next one starts at 12:15 and its
# gate closes at 12:14 (default lead 60 s without a community).
START = datetime.fromisoformat("2026-11-22T12:07:30+00:00")
NEXT_SLOT = datetime.fromisoformat("2026-11-22T12:15:00+00:00")
GATE = datetime.fromisoformat("2026-11-22T12:14:00+00:00")

MARKET_ASSETS: dict[str, dict[str, Any]] = {
    **ASSETS,
    BATTERY_ID: {
        **ASSETS[BATTERY_ID],
        CONF_SETPOINT_ENTITY: "number.battery_setpoint",
        CONF_MODE_ENTITY: "select.battery_mode",
    },
}
MARKET_STATES: dict[str, tuple[str, dict[str, Any]]] = {
    **SOURCE_STATES,
    "number.ev_current": ("16", {"unit_of_measurement": "A", "min": 6, "max": 32}),
    "number.battery_setpoint": ("500", {"unit_of_measurement": "W", "min": -5000, "max": 5000}),
    "select.battery_mode": ("force_charge", {"options": ["auto", "force_charge", "discharge"]}),
}


def market_entry(
    control: ControlMode = ControlMode.ADVISE,
    assets: dict[str, dict[str, Any]] | None = None,
    **options: Any,
) -> MockConfigEntry:
    """An entry with every asset kind, controllable battery and EV current."""
    return make_entry(
        MARKET_ASSETS if assets is None else assets,
        {CONF_BATTERY_RESERVE_PCT: 25, CONF_CONTROL_MODE: control, **options},
    )


@pytest.fixture
def platforms() -> list[Platform]:
    """Every platform (the market sensors and the price peak sensor included)."""
    return [
        Platform.BINARY_SENSOR,
        Platform.NUMBER,
        Platform.SENSOR,
        Platform.SWITCH,
        Platform.TIME,
    ]


@pytest.fixture
def control_mode() -> ControlMode:
    """Advise by default; a test module overrides it."""
    return ControlMode.ADVISE


@pytest.fixture
def mock_config_entry(control_mode: ControlMode) -> MockConfigEntry:
    """The entry used by ``init_integration``."""
    return market_entry(control_mode)


@pytest.fixture
def source_states(hass: HomeAssistant) -> dict[str, tuple[str, dict[str, Any]]]:
    """Source entity states, including the controllable entities; the home is in Amsterdam,
    where the sun is up at START (the PV forecast follows the PV power now)."""
    hass.config.latitude, hass.config.longitude = 52.37, 4.90
    for entity_id, (state, attributes) in MARKET_STATES.items():
        hass.states.async_set(entity_id, state, attributes)
    return MARKET_STATES


@pytest.fixture
async def frozen(freezer: FrozenDateTimeFactory) -> FrozenDateTimeFactory:
    """Time frozen at START (before the entry is set up)."""
    freezer.move_to(START)
    return freezer


@pytest.fixture
async def market(
    hass: HomeAssistant,
    frozen: FrozenDateTimeFactory,
    init_integration: MockConfigEntry,
) -> AsyncGenerator[SlotClock]:
    """The loaded entry's slot clock."""
    clock = init_integration.runtime_data.market
    assert clock is not None
    return clock
