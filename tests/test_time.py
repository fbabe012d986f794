"""Time platform: the EV departure time."""

from __future__ import annotations

from datetime import time
from typing import Any

from homeassistant.components.time import (
    ATTR_TIME,
    DOMAIN as TIME_DOMAIN,
    SERVICE_SET_VALUE,
)
from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from .conftest import ENTRY_ID, EV_ID, make_entry

ENTITY_ID = "time.wallbox_departure_time"


@pytest.fixture
def platforms() -> list[Platform]:
    """Only the time platform."""
    return [Platform.TIME]


@pytest.mark.usefixtures("init_integration")
async def test_time_snapshot(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, snapshot: SnapshotAssertion
) -> None:
    """The departure time's state and registry entry."""
    await snapshot_platform(hass, entity_registry, snapshot, ENTRY_ID)


async def test_set_departure(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Setting the time stores it in the runtime controls."""
    await hass.services.async_call(
        TIME_DOMAIN,
        SERVICE_SET_VALUE,
        {ATTR_ENTITY_ID: ENTITY_ID, ATTR_TIME: "06:15:00"},
        blocking=True,
    )
    assert init_integration.runtime_data.controls_for(EV_ID).ev_departure == time(6, 15)
    state = hass.states.get(ENTITY_ID)
    assert state is not None
    assert state.state == "06:15:00"


@pytest.mark.parametrize(("restored", "expected"), [("05:45:00", time(5, 45)), ("abc", time(7))])
async def test_restore(
    hass: HomeAssistant, source_states: dict[str, Any], restored: str, expected: time
) -> None:
    """The time survives a restart; an unreadable stored state keeps the default 07:00."""
    mock_restore_cache(hass, [State(ENTITY_ID, restored)])
    entry = make_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.controls_for(EV_ID).ev_departure == expected
