"""Slot clock details: settings read defensively, agent inputs, actuation helpers."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
import logging
from types import MappingProxyType
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import (
    async_fire_time_changed,
    async_mock_service,
)

from custom_components.peer_energy.const import (
    CONF_CONTROL_MODE,
    CONF_MAX_BUY_PRICE,
    CONF_MIN_SELL_PRICE,
    CONF_PEAK_MARGIN_PCT,
    ControlMode,
)
from custom_components.peer_energy.core.home.agents import AssetAllocation
from custom_components.peer_energy.core.home.slot_plan import AssetPlan
from custom_components.peer_energy.core.market.orders import Reason
from custom_components.peer_energy.market import (
    BASE_LOAD_ID,
    AssetAction,
    SitOut,
    SlotClock,
    _already,
    _merge_allocations,
)
from tests.conftest import BATTERY_ID, EV_ID, PLUG_ID
from tests.market_ha.conftest import GATE, NEXT_SLOT

NEXT_TS = int(NEXT_SLOT.timestamp())
VENDOR = ["Grid charging", "Battery discharging now", "Maximise self consumption"]


def _set_data(hass: HomeAssistant, market: SlotClock, **data: Any) -> None:
    # Bypass the update listener (it would reload the entry): change the data in place.
    entry = market.entry
    object.__setattr__(entry, "data", MappingProxyType({**entry.data, **data}))


def _set_options(hass: HomeAssistant, market: SlotClock, **options: Any) -> None:
    # Bypass the update listener (it would reload the entry): change the options in place.
    entry = market.entry
    object.__setattr__(entry, "options", {**entry.options, **options})


async def test_settings_fall_back_safely(hass: HomeAssistant, market: SlotClock) -> None:
    """Odd stored settings give defaults instead of errors."""
    _set_data(hass, market, slot_minutes=7)
    assert market.slot_seconds == 900  # 7 minutes do not divide a day
    _set_data(hass, market, slot_minutes="x")
    assert market.slot_seconds == 900
    _set_data(hass, market, slot_minutes=5)
    assert market.slot_seconds == 300
    assert market.gate_lead_seconds == 60
    _set_options(hass, market, **{CONF_CONTROL_MODE: "chaos", CONF_PEAK_MARGIN_PCT: "x"})
    assert market.control_mode is ControlMode.ADVISE
    assert market.peak_margin_pct == 20
    _set_options(hass, market, **{CONF_MAX_BUY_PRICE: 0.254, CONF_MIN_SELL_PRICE: "cheap"})
    policy = market.policy()
    assert policy.max_buy_price == 25
    assert policy.min_sell_price is None


async def test_member_without_ledger(hass: HomeAssistant, market: SlotClock) -> None:
    """Without a ledger (and a community) orders carry the entry id."""
    assert market.member == market.runtime.ledger.member  # type: ignore[union-attr]
    market.runtime.ledger = None
    assert market.member == market.entry.entry_id


async def test_price_entities(hass: HomeAssistant, market: SlotClock) -> None:
    """Price entities are read each slot; while one is away the last price is used."""
    hass.states.async_set("sensor.price", "25.4", {"unit_of_measurement": "ct/kWh"})
    _set_data(hass, market, import_price_entity="sensor.price", import_price=None)
    assert market.grid_prices() == (25, 8)
    hass.states.async_set("sensor.price", "unavailable")
    assert market.grid_prices() == (25, 8)
    _set_data(hass, market, import_price_entity=None, import_price="abc")
    assert market.grid_prices() == (25, 8)


async def test_base_load_bid(hass: HomeAssistant, market: SlotClock) -> None:
    """Load that no agent bids for is bought at the import price."""
    hass.states.async_set("sensor.grid_power", "3000", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    plan = await market.async_plan_slot(NEXT_TS)
    base = plan.assets[BASE_LOAD_ID]
    # grid 3000 + PV 2500 - battery charging 800 - EV 3700 = 1000 W for 15 minutes.
    assert base.reason.code == "base_load"
    assert base.signed_wh == 250
    assert base.bids[0].steps[0].price == 30


async def test_battery_without_capacity(hass: HomeAssistant, market: SlotClock) -> None:
    """A battery whose capacity is unknown sits out."""
    from dataclasses import replace

    assets = dict(market.runtime.assets)
    assets[BATTERY_ID] = replace(assets[BATTERY_ID], capacity_wh=None)
    market.runtime.assets = assets
    assert (await market.async_plan_slot(NEXT_TS)).assets[
        BATTERY_ID
    ].reason.code == SitOut.NO_CAPACITY


async def test_missing_asset_reading(hass: HomeAssistant, market: SlotClock) -> None:
    """An asset without any reading in the snapshot sits out."""
    from dataclasses import replace

    data = market.runtime.coordinator.data
    readings = {k: v for k, v in data.assets.items() if k != EV_ID}
    market.runtime.coordinator.data = replace(data, assets=readings)
    plan = await market.async_plan_slot(NEXT_TS)
    assert dict(plan.assets[EV_ID].reason.params) == {"missing": "all"}


async def test_ev_energy_counts_down_and_resets_at_departure(
    hass: HomeAssistant, market: SlotClock
) -> None:
    """Energy allocated to the EV lowers what it still needs; a new departure resets it."""
    first = (await market.async_plan_slot(NEXT_TS)).assets[EV_ID]
    market.memory.ev_charged[EV_ID] = 9000
    left = (await market.async_plan_slot(NEXT_TS)).assets[EV_ID]
    assert dict(left.reason.params)["need_wh"] == 1000
    assert dict(first.reason.params)["need_wh"] == 10_000
    market.memory.ev_departure[EV_ID] = 0  # another departure than the coming one
    again = (await market.async_plan_slot(NEXT_TS)).assets[EV_ID]
    assert dict(again.reason.params)["need_wh"] == 10_000
    market.memory.ev_charged[EV_ID] = 20_000
    assert (await market.async_plan_slot(NEXT_TS)).assets[EV_ID].reason.code == SitOut.NO_BID


async def test_flexible_plug_memory(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """A flexible plug remembers its running power and the delay it has used."""
    market.runtime.async_update_controls(PLUG_ID, plug_flexible=True)
    hass.states.async_set("sensor.plug_power", "0", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    assert dict((await market.async_plan_slot(NEXT_TS)).assets[PLUG_ID].reason.params) == {
        "missing": "power"
    }
    hass.states.async_set("sensor.plug_power", "400", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    await market.async_prepare(NEXT_TS)
    memory = market.memory
    assert memory.plug_power[PLUG_ID] == 400
    frozen.move_to(GATE)
    async_fire_time_changed(hass, GATE)
    await hass.async_block_till_done()
    # 400 W for 15 minutes ran in full (own PV): no delay used.
    assert market.reports[NEXT_TS].allocations[PLUG_ID].energy_wh == 100
    assert memory.plug_waited.get(PLUG_ID, 0) == 0
    # A slot the plan holds it off uses a slot of its waiting time.
    later = NEXT_TS + 900
    plan = await market.async_prepare(later)
    assert plan is not None
    market.plans[later] = replace(
        plan,
        assets={
            **plan.assets,
            PLUG_ID: AssetPlan(asset_id=PLUG_ID, bids=(), reason=Reason.of(SitOut.PLUG_WAIT)),
        },
        bids=tuple(b for b in plan.bids if b.asset_id != PLUG_ID),
    )
    market._local_clear(later)
    assert PLUG_ID not in market.reports[later].allocations
    assert memory.plug_waited[PLUG_ID] == 900
    inputs = market.slot_inputs(later + 900)
    (plug,) = (a for a in inputs.assets if a.asset_id == PLUG_ID)
    assert plug.waited_s == 900
    assert plug.wait_left_s == market.runtime.controls_for(PLUG_ID).plug_max_delay_min * 60 - 900


@pytest.mark.parametrize("control_mode", [ControlMode.CONTROL])
async def test_flexible_plug_switched(
    hass: HomeAssistant,
    market: SlotClock,
    frozen: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In control mode a flexible plug is switched by its allocation, with the reason logged."""
    market.runtime.async_update_controls(PLUG_ID, plug_flexible=True)
    hass.states.async_set("switch.plug", "off")
    await market.async_prepare(NEXT_TS)
    turn_on = async_mock_service(hass, "switch", "turn_on")
    turn_off = async_mock_service(hass, "switch", "turn_off")
    async_mock_service(hass, "number", "set_value")
    async_mock_service(hass, "select", "select_option")
    for when in (GATE, NEXT_SLOT):
        frozen.move_to(when)
        async_fire_time_changed(hass, when)
        await hass.async_block_till_done()
    alloc = market.reports[NEXT_TS].allocations[PLUG_ID]
    # 150 W for 15 minutes (the plan may spread it over its waiting time)
    assert 0 < alloc.energy_wh <= 37
    assert [c.data["entity_id"] for c in turn_on] == ["switch.plug"]
    assert not [c for c in turn_off if c.data["entity_id"] == "switch.plug"]
    reason = market.reports[NEXT_TS].reasons[PLUG_ID]
    assert f"switch.turn_on switch.plug for Dishwasher because {reason.code}" in caplog.text


async def test_ev_charge_current(hass: HomeAssistant, market: SlotClock) -> None:
    """The charge current is the allocation's share of full power, within the number's range."""
    reason = Reason.of("ev_charge")
    asset = market.runtime.assets[EV_ID]

    def actions(energy_wh: int) -> list[tuple[str, dict[str, Any]]]:
        alloc = AssetAllocation(EV_ID, NEXT_TS, energy_wh, 0, energy_wh, 0, reason)
        return [(a.service, dict(a.data)) for a in market._actions_for(asset, alloc, reason)]

    # 2750 Wh in 15 minutes is full power (11 kW): the number's maximum.
    assert actions(2750) == [("turn_on", {}), ("set_value", {"value": 32})]
    # A little energy still gets the number's minimum current.
    assert actions(10) == [("turn_on", {}), ("set_value", {"value": 6})]
    assert actions(0) == [("turn_off", {})]
    hass.states.async_set("number.ev_current", "16", {"max": "a lot"})
    assert actions(2750) == [("turn_on", {})]
    hass.states.async_remove("number.ev_current")
    assert actions(2750) == [("turn_on", {})]


@pytest.mark.parametrize(
    ("options", "power", "expected"),
    [
        (["Auto", "Force_Charge", "Discharge"], 1000, "Force_Charge"),
        (["Auto", "Force_Charge", "Discharge"], -1000, "Discharge"),
        (["Auto", "Force_Charge", "Discharge"], 0, "Auto"),
        (
            ["Grid charging", "Battery discharging now", "Maximise self consumption"],
            5,
            "Grid charging",
        ),
        (
            ["Grid charging", "Battery discharging now", "Maximise self consumption"],
            -5,
            "Battery discharging now",
        ),
        (
            ["Grid charging", "Battery discharging now", "Maximise self consumption"],
            0,
            "Maximise self consumption",
        ),
        (["Backup", "Off"], 0, None),
        ([], 10, None),
    ],
)
async def test_battery_mode_option(
    hass: HomeAssistant, market: SlotClock, options: list[str], power: int, expected: str | None
) -> None:
    """The mode select's option is found by name for charging, discharging and automatic."""
    hass.states.async_set("select.battery_mode", "x", {"options": options})
    assert market._battery_option("select.battery_mode", power) == expected


async def test_battery_setpoint_sign_and_range(hass: HomeAssistant, market: SlotClock) -> None:
    """The setpoint follows the sensor's sign convention and the number's range."""
    from dataclasses import replace

    from custom_components.peer_energy.const import PowerSign

    reason = Reason.of("battery_discharge_dear")
    asset = replace(market.runtime.assets[BATTERY_ID], power_sign=PowerSign.POSITIVE_DISCHARGE)
    alloc = AssetAllocation(BATTERY_ID, NEXT_TS, -2000, -2000, 0, 0, reason)
    actions = market._actions_for(asset, alloc, reason)
    # -2000 Wh in 15 minutes is 8000 W of discharge: positive for this inverter, capped at 5000.
    assert [dict(a.data) for a in actions] == [{"value": 5000}, {"option": "discharge"}]
    hass.states.async_remove("number.battery_setpoint")
    assert market._clamp("number.battery_setpoint", 8000) == 8000


def test_already_there() -> None:
    """An action is skipped only when the entity already has the wanted state."""
    reason = Reason.of("x")

    def action(service: str, **data: Any) -> AssetAction:
        return AssetAction(
            asset_id="a", domain="d", service=service, entity_id="e", data=data, reason=reason
        )

    assert _already(action("turn_on"), "on")
    assert not _already(action("turn_off"), "on")
    assert _already(action("select_option", option="auto"), "auto")
    assert _already(action("set_value", value=5), "5.0")
    assert not _already(action("set_value", value=5), "unknown")
    assert not _already(action("press"), "on")


def test_merge_allocations() -> None:
    """A bid and an offer of one asset in one slot are added up; the moving part's reason wins."""
    idle = Reason.of("held_back")
    busy = Reason.of("served_internal")
    merged = _merge_allocations(
        [
            AssetAllocation("b", 0, 0, 0, 0, 0, idle),
            AssetAllocation("b", 0, 300, 0, 300, 0, busy),
            AssetAllocation("c", 0, 0, 0, 0, 0, idle),
        ]
    )
    assert merged["b"].energy_wh == 300
    assert merged["b"].reason == busy
    assert merged["c"].reason == idle


async def test_restore_total_guards(hass: HomeAssistant, market: SlotClock) -> None:
    """A total is restored once, never negative, and only for known names."""
    market.restore_total("bought_wh", 100)
    market.restore_total("bought_wh", 100)
    market.restore_total("sold_wh", -5)
    market.restore_total("nonsense", 5)
    assert (market.totals.bought_wh, market.totals.sold_wh) == (100, 0)


async def test_act_without_outcome(hass: HomeAssistant, market: SlotClock) -> None:
    """A slot without an outcome (not cleared in time) does nothing."""
    assert await market.async_act(NEXT_TS + 900) == ()
    assert market.actions == {}


async def test_rescheduling_replaces_timer(
    hass: HomeAssistant, market: SlotClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Preparing a slot again replaces its gate timer instead of adding one."""
    market._schedule_prepare(NEXT_TS)
    await hass.async_block_till_done()
    assert market.timers == ("boundary", "gate")
    market.async_stop()
    with caplog.at_level(logging.DEBUG):
        await market._async_boundary(NEXT_SLOT + timedelta(minutes=1))
    assert market.timers == ()


async def test_diagnostics_after_a_slot(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """Diagnostics show the clock's settings and its last outcome."""
    assert market.diagnostics()["last_outcome"] is None
    frozen.move_to(GATE)
    async_fire_time_changed(hass, GATE)
    await hass.async_block_till_done()
    diag = market.diagnostics()
    report = market.reports[NEXT_TS]
    assert diag["last_outcome"]["slot_start"] == NEXT_SLOT.isoformat()
    assert diag["last_outcome"]["price"] == report.price
    assert diag["last_outcome"]["local"] is True
    assert set(diag["last_outcome"]["reasons"]) == {r.code for r in report.reasons.values()}
    assert diag["slot_seconds"] == 900


async def test_price_history_survives_a_restart(
    hass: HomeAssistant,
    market: SlotClock,
    frozen: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """Clearing prices are stored each slot and loaded again by the next slot clock."""
    frozen.move_to(GATE)
    async_fire_time_changed(hass, GATE)
    await hass.async_block_till_done(wait_background_tasks=True)
    price = market.reports[NEXT_TS].price
    assert price is not None
    key = f"peer_energy.market.{market.entry.entry_id}"
    assert hass_storage[key]["data"]["prices"] == {str(NEXT_TS): price}
    hass_storage[key]["data"]["prices"] |= {"junk": 1, "123": "x"}
    entry = market.entry
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    reloaded = entry.runtime_data.market
    assert reloaded is not None
    assert reloaded is not market
    assert reloaded.prices == {NEXT_TS: price}


async def test_price_store_ignores_odd_data(
    hass: HomeAssistant, market: SlotClock, hass_storage: dict[str, Any]
) -> None:
    """A store without a price map loads nothing."""
    hass_storage[f"peer_energy.market.{market.entry.entry_id}"] = {
        "version": 1,
        "key": f"peer_energy.market.{market.entry.entry_id}",
        "data": {"prices": [1, 2]},
    }
    market.prices.clear()
    await market.async_load()
    assert market.prices == {}
