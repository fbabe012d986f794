"""Number platform: battery reserve, EV energy needed, plug max delay."""

from __future__ import annotations

from typing import Any

from homeassistant.components.number import (
    ATTR_VALUE,
    DOMAIN as NUMBER_DOMAIN,
    SERVICE_SET_VALUE,
)
from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache_with_extra_data,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from .conftest import BATTERY_ID, ENTRY_ID, EV_ID, PLUG_ID, make_entry


@pytest.fixture
def platforms() -> list[Platform]:
    """Only the number platform."""
    return [Platform.NUMBER]


def _value(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


@pytest.mark.usefixtures("init_integration")
async def test_numbers_snapshot(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, snapshot: SnapshotAssertion
) -> None:
    """Every number's state and registry entry."""
    await snapshot_platform(hass, entity_registry, snapshot, ENTRY_ID)


async def test_set_values(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Setting a number stores an exact integer in the runtime controls."""
    runtime = init_integration.runtime_data
    # The battery reserve starts at the owner's policy from the options (25 %).
    assert _value(hass, "number.home_battery_reserve_state_of_charge") == "25"
    for entity_id, value in (
        ("number.home_battery_reserve_state_of_charge", 35),
        ("number.wallbox_energy_needed", 22.5),
        ("number.dishwasher_maximum_delay", 240),
    ):
        await hass.services.async_call(
            NUMBER_DOMAIN,
            SERVICE_SET_VALUE,
            {ATTR_ENTITY_ID: entity_id, ATTR_VALUE: value},
            blocking=True,
        )
    assert runtime.controls_for(BATTERY_ID).battery_reserve_pct == 35
    assert runtime.controls_for(EV_ID).ev_energy_needed_wh == 22_500
    assert runtime.controls_for(PLUG_ID).plug_max_delay_min == 240
    assert _value(hass, "number.wallbox_energy_needed") == "22.5"


@pytest.mark.usefixtures("init_integration")
async def test_out_of_range_rejected(hass: HomeAssistant) -> None:
    """Home Assistant refuses values outside the range before they reach us."""
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            NUMBER_DOMAIN,
            SERVICE_SET_VALUE,
            {ATTR_ENTITY_ID: "number.home_battery_reserve_state_of_charge", ATTR_VALUE: 101},
            blocking=True,
        )


def _number_extra(value: float | None, low: float, high: float, step: float) -> dict[str, Any]:
    return {
        "native_max_value": high,
        "native_min_value": low,
        "native_step": step,
        "native_unit_of_measurement": None,
        "native_value": value,
    }


async def test_restore(hass: HomeAssistant, source_states: dict[str, Any]) -> None:
    """Values survive a restart; a missing or out-of-range stored value keeps the default."""
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State("number.home_battery_reserve_state_of_charge", "60"),
                _number_extra(60, 0, 100, 1),
            ),
            (State("number.wallbox_energy_needed", "30.5"), _number_extra(30.5, 0, 200, 0.5)),
            (State("number.dishwasher_maximum_delay", "9999"), _number_extra(9999, 0, 9999, 1)),
        ],
    )
    entry = make_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    runtime = entry.runtime_data
    assert runtime.controls_for(BATTERY_ID).battery_reserve_pct == 60
    assert runtime.controls_for(EV_ID).ev_energy_needed_wh == 30_500
    assert runtime.controls_for(PLUG_ID).plug_max_delay_min == 120
    assert _value(hass, "number.home_battery_reserve_state_of_charge") == "60"


async def test_restore_without_value(hass: HomeAssistant, source_states: dict[str, Any]) -> None:
    """Stored data without a value keeps the default."""
    mock_restore_cache_with_extra_data(
        hass, [(State("number.wallbox_energy_needed", "unknown"), _number_extra(None, 0, 200, 0.5))]
    )
    entry = make_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.controls_for(EV_ID).ev_energy_needed_wh == 10_000
