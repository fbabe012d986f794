"""Market entities: states after a cleared slot (snapshot), restore, availability, reasons."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.peer_energy.binary_sensor import BINARY_SENSORS
from custom_components.peer_energy.core.market.orders import Reason
from custom_components.peer_energy.market import SlotClock
from custom_components.peer_energy.sensor import ASSET_MARKET_SENSORS, MARKET_SENSORS
from tests.conftest import BATTERY_ID, ENTRY_ID, EV_ID, PLUG_ID, PV_ID
from tests.market_ha.conftest import GATE, NEXT_SLOT

NEXT_TS = int(NEXT_SLOT.timestamp())


async def _run_one_slot(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    for when in (GATE, NEXT_SLOT):
        freezer.move_to(when)
        async_fire_time_changed(hass, when)
        await hass.async_block_till_done()


@pytest.fixture
def platforms() -> list[Platform]:
    """Sensors only (one platform per snapshot)."""
    return [Platform.SENSOR]


@pytest.mark.parametrize("platforms", [[Platform.SENSOR, Platform.BINARY_SENSOR]])
async def test_market_entities_registry_snapshot(
    hass: HomeAssistant,
    market: SlotClock,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Ids, translation keys, classes, units and options of every market entity.

    Only the registry is snapshotted: the states follow the agents (another module), so
    they are checked against the slot clock's own plan and outcome below.
    """
    wanted = {f"{ENTRY_ID}_{d.key}" for d in (*MARKET_SENSORS, *BINARY_SENSORS)} | {
        f"{ENTRY_ID}_{sid}_{d.key}"
        for sid in (PV_ID, BATTERY_ID, EV_ID, PLUG_ID)
        for d in ASSET_MARKET_SENSORS
    }
    entries = [
        {
            "entity_id": e.entity_id,
            "unique_id": e.unique_id,
            "translation_key": e.translation_key,
            "device_class": e.original_device_class,
            "unit": e.unit_of_measurement,
            "capabilities": e.capabilities,
            "entity_category": e.entity_category,
        }
        for e in er.async_entries_for_config_entry(entity_registry, ENTRY_ID)
        if e.unique_id in wanted
    ]
    assert len(entries) == len(wanted)
    assert sorted(entries, key=lambda e: e["entity_id"]) == snapshot


@pytest.mark.parametrize("platforms", [[Platform.SENSOR, Platform.BINARY_SENSOR]])
async def test_states_follow_the_slot_clock(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """After a cleared and started slot every market entity shows the clock's values."""
    await _run_one_slot(hass, frozen)
    report = market.reports[NEXT_TS]
    plan = market.next_plan
    assert plan is not None
    assert market.current is report

    def state(entity_id: str) -> State:
        found = hass.states.get(entity_id)
        assert found is not None, entity_id
        return found

    assert report.price is not None
    assert float(state("sensor.maple_street_7_clearing_price").state) == pytest.approx(
        report.price / 100
    )
    assert int(state("sensor.maple_street_7_net_position").state) == report.position_wh
    assert state("sensor.maple_street_7_next_clearing_price").state == STATE_UNKNOWN
    peak = market.price_peak()
    assert state("binary_sensor.maple_street_7_price_peak").state == ("on" if peak else "off")
    for prefix, sid in (
        ("roof_pv", PV_ID),
        ("home_battery", BATTERY_ID),
        ("wallbox", EV_ID),
        ("dishwasher", PLUG_ID),
    ):
        alloc = report.allocations.get(sid)
        assert int(state(f"sensor.{prefix}_allocation").state) == (
            0 if alloc is None else alloc.energy_wh
        )
        assert int(state(f"sensor.{prefix}_order").state) == plan.assets[sid].signed_wh
        assert state(f"sensor.{prefix}_reason").state == report.reasons[sid].code


async def test_states_before_any_outcome(hass: HomeAssistant, market: SlotClock) -> None:
    """Before the first outcome prices are unknown, the order and its reason are shown."""
    price = hass.states.get("sensor.maple_street_7_clearing_price")
    assert price is not None
    assert price.state == STATE_UNKNOWN
    order = hass.states.get("sensor.roof_pv_order")
    assert order is not None
    # 2500 W of PV for 15 minutes (625 Wh), following the sun's height a little later
    assert -640 <= int(order.state) <= -600
    assert order.attributes["bids"][0]["side"] == "sell"
    reason = hass.states.get("sensor.roof_pv_reason")
    assert reason is not None
    assert reason.state == "pv_surplus"
    assert reason.attributes["forecast_wh"] == -int(order.state)
    # In no community: no peers, no reputation; the ledger is local.
    for entity_id in ("sensor.maple_street_7_peers_online", "sensor.maple_street_7_reputation"):
        state = hass.states.get(entity_id)
        assert state is not None
        assert state.state == STATE_UNAVAILABLE
    balance = hass.states.get("sensor.maple_street_7_credit_balance")
    assert balance is not None
    assert float(balance.state) == 0
    assert balance.attributes["unit_of_measurement"] == "EUR"


async def test_unknown_reason_shows_other(hass: HomeAssistant, market: SlotClock) -> None:
    """A reason code the sensor does not know (a newer engine) shows as "other"."""
    plan = market.plans[NEXT_TS]
    assets = dict(plan.assets)
    assets[PV_ID] = replace(assets[PV_ID], reason=Reason.of("brand_new", x=1))
    market.plans[NEXT_TS] = replace(plan, assets=assets)
    market._notify()
    state = hass.states.get("sensor.roof_pv_reason")
    assert state is not None
    assert state.state == "other"
    assert state.attributes["code"] == "brand_new"


async def test_totals_restored(
    hass: HomeAssistant,
    frozen: FrozenDateTimeFactory,
    mock_config_entry: MockConfigEntry,
    source_states: dict[str, Any],
) -> None:
    """Energy and credit totals continue from the exact values stored before a restart."""
    mock_restore_cache_with_extra_data(
        hass,
        [
            (State("sensor.maple_street_7_energy_bought_from_peers", "1.234"), {"value": 1234}),
            (State("sensor.maple_street_7_credit_earned", "0.5"), {"value": 50_000}),
            (State("sensor.maple_street_7_energy_sold_to_peers", "3"), {"value": "x"}),
        ],
    )
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    market = mock_config_entry.runtime_data.market
    assert market is not None
    assert market.totals.bought_wh == 1234
    assert market.totals.earned_milli == 50_000
    assert market.totals.sold_wh == 0
    bought = hass.states.get("sensor.maple_street_7_energy_bought_from_peers")
    assert bought is not None
    assert float(bought.state) == pytest.approx(1.234)
    earned = hass.states.get("sensor.maple_street_7_credit_earned")
    assert earned is not None
    assert float(earned.state) == pytest.approx(0.5)
    sensor = hass.data["sensor"].get_entity("sensor.maple_street_7_energy_bought_from_peers")
    assert sensor.extra_restore_state_data.as_dict() == {"value": 1234}
    price = hass.data["sensor"].get_entity("sensor.maple_street_7_clearing_price")
    assert price.extra_restore_state_data is None
