"""Blueprints: shipped, populated for the user, and each one working in a real automation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.automation import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    async_fire_time_changed,
    async_mock_service,
)

from custom_components.peer_energy.market import (
    BLUEPRINT_SOURCE,
    EVENT_SLOT_CLEARED,
    SlotClock,
    async_populate_blueprints,
)
from tests.market_ha.conftest import GATE, NEXT_SLOT, START

REPO_BLUEPRINTS = Path(__file__).parents[2] / "blueprints" / "automation" / "peer_energy"
NAMES = (
    "battery_answer_replenishment.yaml",
    "ev_charge_from_clean_surplus.yaml",
    "plug_off_during_price_peak.yaml",
)


def test_repository_copy_matches_shipped_blueprints() -> None:
    """blueprints/automation/peer_energy/ holds exactly the files the integration ships."""
    shipped = sorted(p.name for p in BLUEPRINT_SOURCE.glob("*.yaml"))
    assert tuple(shipped) == NAMES
    for name in NAMES:
        assert (REPO_BLUEPRINTS / name).read_bytes() == (BLUEPRINT_SOURCE / name).read_bytes()


async def test_populate_copies_missing_files_only(hass: HomeAssistant) -> None:
    """Set-up copies the blueprints once and never overwrites a file the user has."""
    target = Path(hass.config.path("blueprints", "automation", "peer_energy"))
    assert await async_populate_blueprints(hass) == list(NAMES)
    edited = target / NAMES[0]
    await hass.async_add_executor_job(edited.write_text, "# mine\n")
    await hass.async_add_executor_job((target / NAMES[1]).unlink)
    assert await async_populate_blueprints(hass) == [NAMES[1]]
    assert await hass.async_add_executor_job(edited.read_text) == "# mine\n"


async def test_populate_survives_an_unwritable_config(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """A config directory that cannot be written gives a warning, not a failed set-up."""
    blocker = Path(hass.config.path("blueprints"))
    await hass.async_add_executor_job(blocker.write_text, "not a folder")
    assert await async_populate_blueprints(hass) == []
    assert "Could not copy the Peer Energy blueprints" in caplog.text


async def _automation(hass: HomeAssistant, name: str, inputs: dict[str, Any]) -> None:
    await async_populate_blueprints(hass)
    assert await async_setup_component(
        hass,
        AUTOMATION_DOMAIN,
        {
            AUTOMATION_DOMAIN: {
                "alias": name.removesuffix(".yaml"),
                "use_blueprint": {"path": f"peer_energy/{name}", "input": inputs},
            }
        },
    )
    await hass.async_block_till_done()
    state = hass.states.get(f"automation.{name.removesuffix('.yaml')}")
    assert state is not None, "the blueprint did not load"
    assert state.state == "on"


async def test_plug_off_during_price_peak(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """The slot clock's price peak sensor switches the plug off, and on again after it."""
    hass.states.async_set("switch.plug", "on")
    await _automation(
        hass,
        "plug_off_during_price_peak.yaml",
        {"price_peak": "binary_sensor.maple_street_7_price_peak", "plug": ["switch.plug"]},
    )
    turn_off = async_mock_service(hass, "switch", "turn_off")
    turn_on = async_mock_service(hass, "switch", "turn_on")
    # A day of cheap slots: the coming slot's price is a peak against that average.
    slot = int(NEXT_SLOT.timestamp())
    for k in range(1, 20):
        market.prices[slot - k * 900] = 5
    for when in (GATE, NEXT_SLOT):
        frozen.move_to(when)
        async_fire_time_changed(hass, when)
        await hass.async_block_till_done()
    peak = hass.states.get("binary_sensor.maple_street_7_price_peak")
    assert peak is not None
    assert peak.state == "on", peak.attributes
    assert [c.data["entity_id"] for c in turn_off] == [["switch.plug"]]
    assert not turn_on
    # The peak ends (a day of dearer slots makes the price ordinary): the plug comes back.
    for k in range(1, 20):
        market.prices[slot - k * 900] = 40
    market.async_stop()
    market.async_start()  # any clock update rewrites the entities
    market._notify()
    await hass.async_block_till_done()
    peak = hass.states.get("binary_sensor.maple_street_7_price_peak")
    assert peak is not None
    assert peak.state == "off"
    assert [c.data["entity_id"] for c in turn_on] == [["switch.plug"]]
    assert START < NEXT_SLOT


SLOT = "2026-11-22T12:15:00+00:00"


def _clearing_sensor(hass: HomeAssistant, clean_only: bool, slot: str = SLOT) -> None:
    """The home's Next clearing price sensor as the slot clock writes it for ``slot`` (the
    blueprint finds it among the integration's entities by its slot)."""
    hass.states.async_set(
        "sensor.maple_street_7_next_clearing_price",
        "0.08",
        {"slot_start": slot, "clean_only": clean_only},
    )


@pytest.mark.parametrize(
    ("event", "clean_only", "surplus_w", "expected"),
    [
        ({"price": 0.05, "bought_wh": 400}, True, 2000, "turn_on"),
        # This home's own price counts, not the community's clearing price.
        ({"price": 0.25, "own_price": 0.07, "bought_wh": 400}, True, 2000, "turn_on"),
        ({"price": 0.05, "own_price": 0.25, "bought_wh": 400}, True, 2000, "turn_off"),
        ({"price": 0.25, "bought_wh": 400}, True, 2000, "turn_off"),
        ({"price": 0.05, "bought_wh": 0}, True, 2000, "turn_off"),
        # Bought, but not clean energy only: the energy may not be clean.
        ({"price": 0.05, "bought_wh": 400}, False, 2000, "turn_off"),
        ({"price": 0.05, "bought_wh": 400}, True, 100, "turn_off"),
        ({"price": 0.05, "bought_wh": 400, "void": True}, True, 2000, "turn_off"),
        ({"price": None, "bought_wh": 400}, True, 2000, "turn_off"),
        # The clearing sensor shows another slot: nothing known about this one.
        (
            {"price": 0.05, "bought_wh": 400, "slot_start": "2026-11-22T12:30:00+00:00"},
            True,
            2000,
            "turn_off",
        ),
    ],
)
async def test_ev_charge_from_clean_surplus(
    hass: HomeAssistant,
    market: SlotClock,
    event: dict[str, Any],
    clean_only: bool,
    surplus_w: int,
    expected: str,
) -> None:
    """Clean energy bought from neighbours at a low price, with own surplus, lets the EV
    charge; anything else stops it."""
    _clearing_sensor(hass, clean_only)
    hass.states.async_set("sensor.maple_street_7_pv_surplus_available", str(surplus_w))
    await _automation(
        hass,
        "ev_charge_from_clean_surplus.yaml",
        {
            "charger": "switch.ev_charger",
            "max_price": 0.1,
            "surplus_sensor": "sensor.maple_street_7_pv_surplus_available",
            "min_surplus_w": 500,
        },
    )
    calls = {
        "turn_on": async_mock_service(hass, "switch", "turn_on"),
        "turn_off": async_mock_service(hass, "switch", "turn_off"),
    }
    hass.bus.async_fire(EVENT_SLOT_CLEARED, {"slot_start": SLOT, "void": False, **event})
    await hass.async_block_till_done()
    assert [c.data["entity_id"] for c in calls[expected]] == [["switch.ev_charger"]]
    other = "turn_off" if expected == "turn_on" else "turn_on"
    assert not calls[other]


async def test_ev_charge_without_surplus_sensor(hass: HomeAssistant, market: SlotClock) -> None:
    """Without a surplus sensor clean energy bought at a low price decides."""
    _clearing_sensor(hass, clean_only=True)
    await _automation(
        hass,
        "ev_charge_from_clean_surplus.yaml",
        {"charger": "switch.ev_charger", "max_price": 0.1},
    )
    turn_on = async_mock_service(hass, "switch", "turn_on")
    hass.bus.async_fire(
        EVENT_SLOT_CLEARED, {"slot_start": SLOT, "price": 0.08, "bought_wh": 300, "void": False}
    )
    await hass.async_block_till_done()
    assert len(turn_on) == 1


async def test_clean_only_attribute_follows_the_option(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """The slot clock's clearing price sensors say whether the home bought clean only."""
    for when in (GATE, NEXT_SLOT):
        frozen.move_to(when)
        async_fire_time_changed(hass, when)
        await hass.async_block_till_done()
    state = hass.states.get("sensor.maple_street_7_clearing_price")
    assert state is not None
    plan = market.plans[int(NEXT_SLOT.timestamp())]
    assert plan.order is not None
    assert state.attributes["slot_start"] == NEXT_SLOT.isoformat()
    assert state.attributes["clean_only"] is plan.order.clean_only
    report = market.current
    assert report is not None
    assert state.attributes["bought_from_peers_wh"] == report.bought_wh
    assert state.attributes["sold_to_peers_wh"] == report.sold_wh


async def test_battery_answers_replenishment(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """The slot clock's replenishment request makes the battery discharge until slot end."""
    await _automation(
        hass,
        "battery_answer_replenishment.yaml",
        {
            "setpoint": "number.battery_setpoint",
            "max_power_w": 1500,
            "mode_select": "select.battery_mode",
        },
    )
    set_value = async_mock_service(hass, "number", "set_value")
    select = async_mock_service(hass, "select", "select_option")
    now_slot = int(NEXT_SLOT.timestamp()) - 900
    # 500 Wh in a 15-minute slot is 2000 W; the owner gives at most 1500 W.
    market.async_request_replenishment(energy_wh=500, slot_start=now_slot)
    # The automation now waits until the slot ends: let it run up to its delay only.
    for _ in range(20):
        await asyncio.sleep(0)
    assert [c.data["value"] for c in set_value] == [1500]
    assert [c.data["option"] for c in select] == ["discharge"]
    # The slot ends at 12:15: the battery goes back to normal.
    frozen.move_to(NEXT_SLOT + timedelta(seconds=1))
    async_fire_time_changed(hass, NEXT_SLOT + timedelta(seconds=1))
    await hass.async_block_till_done()
    assert [c.data["value"] for c in set_value] == [1500, 0]
    assert [c.data["option"] for c in select] == ["discharge", "auto"]


async def test_battery_ignores_empty_request(hass: HomeAssistant) -> None:
    """A request for no power does nothing."""
    await _automation(
        hass, "battery_answer_replenishment.yaml", {"setpoint": "number.battery_setpoint"}
    )
    set_value = async_mock_service(hass, "number", "set_value")
    hass.bus.async_fire(
        "peer_energy_replenishment_requested",
        {"power_w": 0, "slot_end": "2026-11-22T12:15:00+00:00"},
    )
    await hass.async_block_till_done()
    assert not set_value


async def test_setup_adds_blueprints(hass: HomeAssistant, market: SlotClock) -> None:
    """Setting the entry up (Home Assistant running) adds the blueprints to the config."""
    target = Path(hass.config.path("blueprints", "automation", "peer_energy"))
    names = await hass.async_add_executor_job(lambda: sorted(p.name for p in target.iterdir()))
    assert tuple(names) == NAMES
