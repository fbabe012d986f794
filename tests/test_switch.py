"""Switch platform: participation and flexible plug, kept in the runtime and restored."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import DOMAIN as SWITCH_DOMAIN
from homeassistant.const import (
    ATTR_ENTITY_ID,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    Platform,
)
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from .conftest import ENTRY_ID, EV_ID, GRID_ID, PLUG_ID, PV_ID, make_entry


@pytest.fixture
def platforms() -> list[Platform]:
    """Only the switch platform."""
    return [Platform.SWITCH]


@pytest.mark.usefixtures("init_integration")
async def test_switches_snapshot(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, snapshot: SnapshotAssertion
) -> None:
    """Every switch's state and registry entry (no participation for the grid meter)."""
    await snapshot_platform(hass, entity_registry, snapshot, ENTRY_ID)
    assert not [
        entry
        for entry in er.async_entries_for_config_entry(entity_registry, ENTRY_ID)
        if entry.config_subentry_id == GRID_ID
    ]


async def test_turn_on_off(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Switching writes the runtime controls that later code reads."""
    runtime = init_integration.runtime_data
    assert runtime.controls_for(PLUG_ID).plug_flexible is False
    await hass.services.async_call(
        SWITCH_DOMAIN,
        SERVICE_TURN_ON,
        {ATTR_ENTITY_ID: "switch.dishwasher_flexible"},
        blocking=True,
    )
    assert runtime.controls_for(PLUG_ID).plug_flexible is True
    state = hass.states.get("switch.dishwasher_flexible")
    assert state is not None
    assert state.state == STATE_ON

    await hass.services.async_call(
        SWITCH_DOMAIN,
        SERVICE_TURN_OFF,
        {ATTR_ENTITY_ID: "switch.roof_pv_market_participation"},
        blocking=True,
    )
    assert runtime.controls_for(PV_ID).participating is False
    assert runtime.controls_for(EV_ID).participating is True
    state = hass.states.get("switch.roof_pv_market_participation")
    assert state is not None
    assert state.state == STATE_OFF


async def test_controls_stay_available(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Controls are Peer Energy's own: they stay available when the source is not."""
    hass.states.async_set("sensor.pv_power", STATE_UNAVAILABLE)
    await hass.async_block_till_done()
    state = hass.states.get("switch.roof_pv_market_participation")
    assert state is not None
    assert state.state == STATE_ON


@pytest.mark.parametrize(("restored", "expected"), [(STATE_OFF, False), ("unavailable", True)])
async def test_restore(
    hass: HomeAssistant, source_states: dict[str, Any], restored: str, expected: bool
) -> None:
    """The last choice survives a restart; an unusable stored state keeps the default."""
    mock_restore_cache(hass, [State("switch.roof_pv_market_participation", restored)])
    entry = make_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.controls_for(PV_ID).participating is expected
    state = hass.states.get("switch.roof_pv_market_participation")
    assert state is not None
    assert state.state == (STATE_ON if expected else STATE_OFF)
