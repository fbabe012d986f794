"""The slot clock: planning, local clearing at gate closure, acting at the slot start."""

from __future__ import annotations

from datetime import timedelta
import logging
from types import MappingProxyType, SimpleNamespace
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_component import async_update_entity
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
    async_mock_service,
)

from custom_components.peer_energy.const import ControlMode
from custom_components.peer_energy.core.market.clearing import clear_slot
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side
from custom_components.peer_energy.market import (
    BASE_LOAD_ID,
    EVENT_REPLENISHMENT_REQUESTED,
    EVENT_SLOT_CLEARED,
    SitOut,
    SlotClock,
)
from tests.conftest import BATTERY_ID, EV_ID, GRID_ID, PLUG_ID, PV_ID
from tests.market_ha.conftest import GATE, NEXT_SLOT, START

NEXT_TS = int(NEXT_SLOT.timestamp())


async def _advance(hass: HomeAssistant, freezer: FrozenDateTimeFactory, when: Any) -> None:
    freezer.move_to(when)
    async_fire_time_changed(hass, when)
    await hass.async_block_till_done()


async def test_plans_next_slot_at_setup(hass: HomeAssistant, market: SlotClock) -> None:
    """Set-up plans the next slot with one home order and arms the gate and slot timers."""
    assert market.slot_seconds == 900
    assert market.gate_lead_seconds == 60
    assert market.timers == ("boundary", "gate")
    plan = market.plans[NEXT_TS]
    assert plan.order is not None
    assert plan.order.slot_start == NEXT_TS
    assert plan.order.owner == market.member
    # Fixed prices of the entry: 0.30 and 0.08 EUR/kWh.
    assert (plan.import_price, plan.feed_in_tariff) == (30, 8)
    # Every asset has a plan with a reason; the grid meter only measures.
    assert set(plan.assets) >= {PV_ID, BATTERY_ID, EV_ID, PLUG_ID, GRID_ID, BASE_LOAD_ID}
    assert plan.assets[GRID_ID].reason.code == SitOut.METER_ONLY
    assert plan.assets[PLUG_ID].reason.code == SitOut.NOT_FLEXIBLE
    assert plan.assets[PV_ID].reason.code == "pv_surplus"
    # 2500 W of PV for 15 minutes is 625 Wh, shaped by the sun's height a little later.
    assert -640 <= plan.assets[PV_ID].signed_wh <= -600
    # The plan of the next day is kept with the order (advise mode: the devices' own logic).
    assert plan.plan is not None
    assert plan.plan.mode.value == "advise"
    assert len(plan.plan.slots) == 96
    assert plan.fallback is None
    assert plan.assets[EV_ID].signed_wh > 0
    # Nothing is known about the slot's outcome before its gate closure.
    assert market.next is None
    assert market.current is None


async def test_gate_closure_clears_locally(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """Without a community the home clears at gate closure against the grid only."""
    events = async_capture_events(hass, EVENT_SLOT_CLEARED)
    await _advance(hass, frozen, GATE - timedelta(seconds=1))
    assert not events
    await _advance(hass, frozen, GATE)
    assert len(events) == 1
    data = events[0].data
    report = market.reports[NEXT_TS]
    assert data["slot_start"] == NEXT_SLOT.isoformat()
    assert data["void"] is False
    assert data["local"] is True
    assert data["price_minor"] == report.price
    assert data["position_wh"] == report.position_wh
    # Nothing is traded with peers in a home of one.
    assert report.bought_wh == report.sold_wh == 0
    assert report.price is not None
    assert 8 <= report.price <= 30
    # The position is what the grid supplies or takes (own assets cancel out).
    assert report.position_wh == sum(a.grid_wh for a in report.allocations.values())
    assert market.next is report
    state = hass.states.get("sensor.maple_street_7_next_clearing_price")
    assert state is not None
    assert float(state.state) == pytest.approx(report.price / 100)
    assert state.attributes["unit_of_measurement"] == "EUR/kWh"


async def test_advise_mode_only_advises(
    hass: HomeAssistant,
    market: SlotClock,
    frozen: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In advise mode the actions are shown, never carried out."""
    calls = [
        *async_mock_service(hass, "switch", "turn_on"),
        *async_mock_service(hass, "switch", "turn_off"),
    ]
    set_value = async_mock_service(hass, "number", "set_value")
    select = async_mock_service(hass, "select", "select_option")
    await _advance(hass, frozen, GATE)
    with caplog.at_level(logging.INFO):
        await _advance(hass, frozen, NEXT_SLOT)
    assert market.actions_slot == NEXT_TS
    advised = [a for actions in market.actions.values() for a in actions]
    assert advised
    assert not any(a.applied for a in advised)
    assert not calls
    assert not set_value
    assert not select
    assert "because" not in caplog.text
    state = hass.states.get("sensor.home_battery_allocation")
    assert state is not None
    assert state.attributes["control_mode"] == "advise"
    assert state.attributes["advice"] == [a.describe() for a in market.actions[BATTERY_ID]]
    assert state.attributes["actions"] == []


@pytest.mark.parametrize("control_mode", [ControlMode.CONTROL])
async def test_control_mode_acts_with_reasons(
    hass: HomeAssistant,
    market: SlotClock,
    frozen: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In control mode every action follows the allocation and is logged with its reason."""
    # The charger is off now, so switching it on is a real action.
    hass.states.async_set("switch.ev_charger", "off")
    turn_on = async_mock_service(hass, "switch", "turn_on")
    turn_off = async_mock_service(hass, "switch", "turn_off")
    set_value = async_mock_service(hass, "number", "set_value")
    select = async_mock_service(hass, "select", "select_option")
    await _advance(hass, frozen, GATE)
    report = market.reports[NEXT_TS]
    with caplog.at_level(logging.INFO):
        await _advance(hass, frozen, NEXT_SLOT)

    ev = report.allocations[EV_ID]
    ev_switch = turn_on if ev.energy_wh > 0 else turn_off
    assert [c.data["entity_id"] for c in ev_switch] == ["switch.ev_charger"]
    ev_reason = report.reasons[EV_ID]
    assert f"for Wallbox because {ev_reason.code}" in caplog.text

    battery = report.allocations[BATTERY_ID]
    power = battery.energy_wh * 3600 // 900
    # The battery reports "positive while charging": the setpoint follows that sign.
    setpoints = [c.data for c in set_value if c.data["entity_id"] == "number.battery_setpoint"]
    assert setpoints == [{"entity_id": "number.battery_setpoint", "value": power}]
    expected_option = "auto" if power == 0 else "force_charge" if power > 0 else "discharge"
    if expected_option != "force_charge":  # force_charge is the mode it is in already
        assert [c.data["option"] for c in select] == [expected_option]
    else:
        assert not select
    applied = [a for actions in market.actions.values() for a in actions]
    assert applied
    assert all(a.applied for a in applied)
    state = hass.states.get("sensor.home_battery_allocation")
    assert state is not None
    assert int(float(state.state)) == battery.energy_wh
    assert state.attributes["control_mode"] == "control"


@pytest.mark.parametrize("control_mode", [ControlMode.CONTROL])
async def test_control_skips_entities_already_there_and_survives_errors(
    hass: HomeAssistant,
    market: SlotClock,
    frozen: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No call when the entity is where it should be; a failing call is logged, not raised."""
    await _advance(hass, frozen, GATE)
    report = market.reports[NEXT_TS]
    ev = report.allocations[EV_ID]
    hass.states.async_set("switch.ev_charger", "on" if ev.energy_wh > 0 else "off")
    turn_on = async_mock_service(hass, "switch", "turn_on")
    turn_off = async_mock_service(hass, "switch", "turn_off")
    from homeassistant.exceptions import HomeAssistantError

    async_mock_service(
        hass, "number", "set_value", raise_exception=HomeAssistantError("device offline")
    )
    async_mock_service(hass, "select", "select_option")
    await _advance(hass, frozen, NEXT_SLOT)
    assert not [c for c in (*turn_on, *turn_off) if c.data["entity_id"] == "switch.ev_charger"]
    failed = [a for a in market.actions[BATTERY_ID] if a.error]
    assert failed
    assert "device offline" in failed[0].error
    assert "Could not number.set_value number.battery_setpoint" in caplog.text
    assert hass.states.get("sensor.home_battery_allocation") is not None


async def test_missing_readings_sit_out(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """Assets without readings sit the slot out with a reason; nothing crashes."""
    for entity_id in (
        "sensor.pv_power",
        "sensor.battery_soc",
        "binary_sensor.ev_plugged",
        "sensor.grid_power",
    ):
        hass.states.async_set(entity_id, STATE_UNAVAILABLE)
    await hass.async_block_till_done()
    plan = await market.async_prepare(NEXT_TS)
    assert plan is not None
    assert plan.assets[PV_ID].reason.code == SitOut.NO_READING
    assert dict(plan.assets[PV_ID].reason.params) == {"missing": "power"}
    assert dict(plan.assets[BATTERY_ID].reason.params) == {"missing": "soc"}
    assert dict(plan.assets[EV_ID].reason.params) == {"missing": "plugged"}
    assert dict(plan.assets[BASE_LOAD_ID].reason.params) == {"missing": "grid"}
    assert plan.order is None
    await _advance(hass, frozen, GATE)
    state = hass.states.get("sensor.roof_pv_reason")
    assert state is not None
    assert state.state == "no_reading"
    assert state.attributes["missing"] == "power"
    # A slot with no order has no price; the clock carries on to the next slot.
    assert market.reports[NEXT_TS].price is None
    await _advance(hass, frozen, NEXT_SLOT)
    assert NEXT_TS + 900 in market.plans


async def test_unplugged_ev_and_not_participating(hass: HomeAssistant, market: SlotClock) -> None:
    """An unplugged car and an asset the owner took out of the market place no bids."""
    hass.states.async_set("binary_sensor.ev_plugged", "off")
    await hass.async_block_till_done()
    market.runtime.async_update_controls(PV_ID, participating=False)
    plan = await market.async_plan_slot(NEXT_TS)
    assert plan.assets[EV_ID].reason.code == SitOut.NOT_PLUGGED
    assert plan.assets[PV_ID].reason.code == SitOut.NOT_PARTICIPATING
    assert plan.assets[EV_ID].bids == ()


async def test_flexible_plug_runs_in_advise_mode(hass: HomeAssistant, market: SlotClock) -> None:
    """In advise mode a flexible plug runs as soon as it may (nothing holds it off), so
    the home bids for its energy."""
    market.runtime.async_update_controls(PLUG_ID, plug_flexible=True)
    plan = await market.async_plan_slot(NEXT_TS)
    assert plan.assets[PLUG_ID].reason.code == "plug_on"
    assert plan.assets[PLUG_ID].signed_wh == 37  # 150 W for 15 minutes


async def test_no_price_sits_everything_out(hass: HomeAssistant, market: SlotClock) -> None:
    """Without any usable grid price no order is placed."""
    market._last_import = None
    entry = market.entry
    object.__setattr__(
        entry,
        "data",
        MappingProxyType(
            {**entry.data, "import_price": None, "import_price_entity": "sensor.nope"}
        ),
    )
    plan = await market.async_plan_slot(NEXT_TS)
    assert plan.order is None
    assert {p.reason.code for p in plan.assets.values()} == {SitOut.NO_PRICE}


async def test_unload_cancels_timers(
    hass: HomeAssistant,
    market: SlotClock,
    init_integration: MockConfigEntry,
    frozen: FrozenDateTimeFactory,
) -> None:
    """Unloading the entry cancels the slot timers: nothing fires afterwards."""
    assert market.timers
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.NOT_LOADED
    assert market.timers == ()
    events = async_capture_events(hass, EVENT_SLOT_CLEARED)
    await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=1))
    assert not events


async def test_slots_keep_coming(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """Each slot start plans the next slot and re-arms both timers; old data is pruned."""
    market.prices[NEXT_TS - 3 * 86_400] = 5
    events = async_capture_events(hass, EVENT_SLOT_CLEARED)
    when = NEXT_SLOT
    for _ in range(3):
        await _advance(hass, frozen, when - timedelta(seconds=60))
        await _advance(hass, frozen, when)
        when += timedelta(minutes=15)
    assert [e.data["slot_start"] for e in events] == [
        (NEXT_SLOT + timedelta(minutes=15 * k)).isoformat() for k in range(3)
    ]
    assert market.timers == ("boundary", "gate")
    assert NEXT_TS - 3 * 86_400 not in market.prices
    assert market.current is market.reports[NEXT_TS + 1800]


class FakeLink:
    """A federation link as the slot clock sees it (the ``FederationLike`` interface)."""

    gate_closure_lead_ms = 30_000
    slot_ms = 900_000
    member_key = "me" * 16
    peers_online = 3
    members = 4
    own_reputation = 875

    def __init__(self) -> None:
        self.submitted: list[tuple[int, tuple[Any, ...]]] = []
        self.listeners: list[Any] = []
        self.delivered: list[tuple[int, int, int]] = []
        self.fail = False

    async def async_submit_orders(self, slot_start_ms: int, orders: Any) -> None:
        from homeassistant.exceptions import HomeAssistantError

        if self.fail:
            raise HomeAssistantError("gate closed")
        self.submitted.append((slot_start_ms, tuple(orders)))

    def async_add_result_listener(self, cb: Any) -> Any:
        self.listeners.append(cb)
        return lambda: self.listeners.remove(cb)

    def async_report_delivery(self, slot_start_ms: int, exported_wh: int, imported_wh: int) -> None:
        self.delivered.append((slot_start_ms, exported_wh, imported_wh))


@pytest.fixture
async def link(hass: HomeAssistant, market: SlotClock) -> FakeLink:
    """The market restarted as a member of a community."""
    fake = FakeLink()
    market.async_stop()
    market.runtime.federation = fake  # type: ignore[assignment]
    market.async_start()
    return fake


async def test_community_orders_and_outcome(
    hass: HomeAssistant, market: SlotClock, link: FakeLink, frozen: FrozenDateTimeFactory
) -> None:
    """In a community the aggregate order goes to the federation and its outcome is applied."""
    await hass.async_block_till_done()
    assert market.gate_lead_seconds == 30
    assert market.timers == ("boundary",)  # no local gate timer
    ((slot_ms, orders),) = link.submitted
    assert slot_ms == NEXT_TS * 1000
    (order,) = orders
    assert order.owner == link.member_key
    events = async_capture_events(hass, EVENT_SLOT_CLEARED)
    me, peer = link.member_key, "peer" * 8
    # A neighbour takes the other side of 400 Wh; the community clears both orders.
    bought = order.side is Side.BUY
    counter = Order.single(
        "p1", peer, Side.SELL if bought else Side.BUY, NEXT_TS, 400, 9 if bought else 29
    )
    result = clear_slot([order, counter], MarketRules(30, 8), slot_start=NEXT_TS)
    own = tuple(f for f in result.fills if me in (f.buyer, f.seller))
    assert sum(f.energy_wh for f in own) == 400
    (listener,) = link.listeners
    listener(
        SimpleNamespace(
            slot_start_ms=NEXT_TS * 1000, result=result, void_reason=None, own_fills=own
        )
    )
    await hass.async_block_till_done()
    report = market.reports[NEXT_TS]
    # Every member shows the community's price; the home's own fill price is kept too.
    assert report.price == result.general_price
    assert report.own_price == sum(f.energy_wh * f.price for f in own) // 400
    assert report.local is False
    assert events[0].data["void"] is False
    assert (report.bought_wh, report.sold_wh) == ((400, 0) if bought else (0, 400))
    money = sum(f.energy_wh * f.price for f in own)
    assert (market.totals.spent_milli, market.totals.earned_milli) == (
        (money, 0) if bought else (0, money)
    )
    key = "energy_bought_from_peers" if bought else "energy_sold_to_peers"
    state = hass.states.get(f"sensor.maple_street_7_{key}")
    assert state is not None
    assert float(state.state) == pytest.approx(0.4)
    peers = hass.states.get("sensor.maple_street_7_peers_online")
    assert peers is not None
    assert peers.state == "3"
    assert peers.attributes["members"] == 4
    reputation = hass.states.get("sensor.maple_street_7_reputation")
    assert reputation is not None
    assert float(reputation.state) == pytest.approx(87.5)
    assert reputation.attributes["status"] == "rated"
    # Before any evidence about this home: unknown, and the status says "not rated yet".
    link.own_reputation = None  # type: ignore[assignment]
    await async_update_entity(hass, "sensor.maple_street_7_reputation")
    reputation = hass.states.get("sensor.maple_street_7_reputation")
    assert reputation is not None
    assert (reputation.state, reputation.attributes["status"]) == ("unknown", "not_rated")
    # An outcome for a slot this home did not plan is ignored.
    listener(SimpleNamespace(slot_start_ms=0, result=None, void_reason="x", own_fills=()))
    assert 0 not in market.reports


async def test_void_slot(hass: HomeAssistant, market: SlotClock, link: FakeLink) -> None:
    """A void slot records nothing with peers; assets fall back to the grid with a reason."""
    (listener,) = link.listeners
    events = async_capture_events(hass, EVENT_SLOT_CLEARED)
    listener(
        SimpleNamespace(
            slot_start_ms=NEXT_TS * 1000,
            result=None,
            void_reason="attestation_mismatch",
            own_fills=(),
        )
    )
    await hass.async_block_till_done()
    report = market.reports[NEXT_TS]
    assert report.void is True
    assert report.void_reason == "attestation_mismatch"
    assert report.bought_wh == report.sold_wh == 0
    assert events[0].data["void"] is True
    assert events[0].data["void_reason"] == "attestation_mismatch"
    moved = [sid for sid, alloc in report.allocations.items() if alloc.energy_wh]
    for sid in moved:
        assert report.reasons[sid].code == SitOut.SLOT_VOID


async def test_submit_failure_is_logged(
    hass: HomeAssistant,
    market: SlotClock,
    link: FakeLink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused submission is logged; the plan is kept for the entities."""
    link.fail = True
    plan = await market.async_prepare(NEXT_TS + 900)
    assert plan is not None
    assert market.plans[NEXT_TS + 900] is plan
    assert "Could not send the orders" in caplog.text


async def test_replenishment_event(hass: HomeAssistant, market: SlotClock) -> None:
    """A replenishment request becomes a bus event with power and slot end."""
    events = async_capture_events(hass, EVENT_REPLENISHMENT_REQUESTED)
    market.async_request_replenishment(energy_wh=500, slot_start=NEXT_TS)
    await hass.async_block_till_done()
    (event,) = events
    assert event.data["power_w"] == 2000
    assert event.data["energy_wh"] == 500
    assert event.data["slot_end"] == (NEXT_SLOT + timedelta(minutes=15)).isoformat()


async def test_start_after_gate_skips_the_closed_slot(
    hass: HomeAssistant,
    frozen: FrozenDateTimeFactory,
    mock_config_entry: MockConfigEntry,
    source_states: Any,
) -> None:
    """Starting between gate closure and slot start plans nothing for the closed slot."""
    frozen.move_to(GATE + timedelta(seconds=10))
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    market = mock_config_entry.runtime_data.market
    assert market is not None
    assert NEXT_TS not in market.plans
    assert market.timers == ("boundary",)
    assert START < NEXT_SLOT


async def test_peer_bank_asks_this_home(
    hass: HomeAssistant, market: SlotClock, link: FakeLink
) -> None:
    """When the community runs short, the Peer Bank asks the members with surplus."""
    me, peer = link.member_key, "peer" * 8
    slot = NEXT_TS + 900
    orders = [
        Order.single("m1", me, Side.SELL, slot, 500, 8),
        Order.single("p1", peer, Side.BUY, slot, 2000, 30),
    ]
    result = clear_slot(orders, MarketRules(30, 8), slot_start=slot)
    assert result.grid_import_wh == 1500
    events = async_capture_events(hass, EVENT_REPLENISHMENT_REQUESTED)
    (listener,) = link.listeners
    listener(
        SimpleNamespace(slot_start_ms=slot * 1000, result=result, void_reason=None, own_fills=())
    )
    await hass.async_block_till_done()
    (event,) = events
    assert event.data["requested_by"] == "peer_bank"
    # This home sold 500 Wh, all it was seen to have: it is asked for at most that.
    assert 0 < event.data["energy_wh"] <= 500
    assert market.peer_bank.history[-1].inventory_wh == -1500
    # A community with surplus asks nobody.
    events.clear()
    orders = [Order.single("m2", me, Side.SELL, slot + 900, 3000, 8)]
    result = clear_slot(orders, MarketRules(30, 8), slot_start=slot + 900)
    listener(
        SimpleNamespace(
            slot_start_ms=(slot + 900) * 1000, result=result, void_reason=None, own_fills=()
        )
    )
    await hass.async_block_till_done()
    assert not events


@pytest.mark.parametrize("control_mode", [ControlMode.CONTROL])
async def test_late_outcome_is_acted_on(
    hass: HomeAssistant, market: SlotClock, link: FakeLink, frozen: FrozenDateTimeFactory
) -> None:
    """An outcome that arrives after its slot started is acted on at once."""
    hass.states.async_set("switch.ev_charger", "off")
    turn_on = async_mock_service(hass, "switch", "turn_on")
    async_mock_service(hass, "switch", "turn_off")
    async_mock_service(hass, "number", "set_value")
    async_mock_service(hass, "select", "select_option")
    await _advance(hass, frozen, NEXT_SLOT)
    assert market.actions_slot == NEXT_TS
    assert market.actions == {}
    (listener,) = link.listeners
    listener(
        SimpleNamespace(slot_start_ms=NEXT_TS * 1000, result=None, void_reason="late", own_fills=())
    )
    await hass.async_block_till_done()
    assert market.actions[EV_ID][0].applied
    ev = market.reports[NEXT_TS].allocations[EV_ID]
    assert ([c.data["entity_id"] for c in turn_on] == ["switch.ev_charger"]) is (ev.energy_wh > 0)


async def test_community_price_without_own_trade(
    hass: HomeAssistant, market: SlotClock, link: FakeLink
) -> None:
    """A home that traded nothing in a cleared slot sees the community's price."""
    slot = NEXT_TS
    orders = [
        Order.single("a", "seller" * 4, Side.SELL, slot, 1000, 10),
        Order.single("b", "buyer" * 4, Side.BUY, slot, 1000, 20),
    ]
    result = clear_slot(orders, MarketRules(30, 8), slot_start=slot)
    assert result.general_price is not None
    (listener,) = link.listeners
    listener(
        SimpleNamespace(slot_start_ms=slot * 1000, result=result, void_reason=None, own_fills=())
    )
    await hass.async_block_till_done()
    report = market.reports[slot]
    assert report.price == result.general_price
    assert report.bought_wh == report.sold_wh == 0


async def test_selling_home_without_internal_trade_gets_feed_in(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """A home that only sells (nothing of its own to serve) is priced at the feed-in tariff."""
    for sid in (EV_ID, BATTERY_ID):
        market.runtime.async_update_controls(sid, participating=False)
    # Exporting 2000 W while the PV makes 2500 W and the battery charges 800 W: the
    # household uses nothing the agents would have to buy for.
    hass.states.async_set("sensor.grid_power", "-2000", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    plan = await market.async_prepare(NEXT_TS)
    assert plan is not None
    assert plan.order is not None
    assert plan.order.side is Side.SELL
    assert plan.assets[BASE_LOAD_ID].bids == ()
    await _advance(hass, frozen, GATE)
    assert market.reports[NEXT_TS].price == 8


async def test_departure_before_the_slot_is_tomorrow(
    hass: HomeAssistant, market: SlotClock
) -> None:
    """A departure time already past on the slot's day means the next day's."""
    from datetime import time

    market.runtime.async_update_controls(EV_ID, ev_departure=time(3, 0))
    inputs = market.slot_inputs(NEXT_TS)
    (ev,) = (a for a in inputs.assets if a.asset_id == EV_ID)
    # 12:15 UTC is 04:15 in the test's time zone (US/Pacific): departure 03:00 tomorrow,
    # 22:45 later.
    assert ev.departure == NEXT_TS + 22 * 3600 + 45 * 60


async def test_each_slot_is_metered_and_reported_to_the_community(
    hass: HomeAssistant, market: SlotClock, link: FakeLink, frozen: FrozenDateTimeFactory
) -> None:
    """At each boundary the slot that ended is metered and its delivery reported."""
    # the slot during which Home Assistant started is not metered from its start: skipped
    await _advance(hass, frozen, NEXT_SLOT)
    assert link.delivered == []
    # 500 W import for 5 minutes, then 2000 W export for 10 minutes
    await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=5))
    hass.states.async_set("sensor.grid_power", "-2000", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=14, seconds=59))
    await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=15))
    ((slot_ms, exported, imported),) = link.delivered
    assert slot_ms == NEXT_TS * 1000
    assert 300 <= exported <= 334  # 2000 W x 10 min = 333 Wh
    assert 40 <= imported <= 42  # 500 W x 5 min = 41.7 Wh
    assert market.metered[NEXT_TS] == (exported, imported)
    # a meter that goes away stops the reports until a whole slot is metered again
    await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=20))
    hass.states.async_set("sensor.grid_power", STATE_UNAVAILABLE)
    await hass.async_block_till_done()
    await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=25))
    hass.states.async_set("sensor.grid_power", "100", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=30))
    assert len(link.delivered) == 1  # the slot with the outage is not reported
    await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=45))
    assert link.delivered[1] == ((NEXT_TS + 1800) * 1000, 0, 25)  # 100 W x 15 min


async def test_a_meters_own_counters_are_metered_across_a_restart(
    hass: HomeAssistant, market: SlotClock, link: FakeLink, frozen: FrozenDateTimeFactory
) -> None:
    """With a grid meter's own energy counters, the slot of a restart is still metered."""
    from unittest.mock import patch

    counters = {"import": 10_000, "export": 5_000}

    def totals(self: SlotClock) -> tuple[str, int, int]:
        return "meter", counters["import"], counters["export"]

    with patch.object(SlotClock, "_meter_totals", totals):
        await _advance(hass, frozen, NEXT_SLOT)  # the mark at the slot's start is stored
        await hass.async_block_till_done()
        # Home Assistant restarts in the middle of the slot: a new slot clock loads the store
        again = SlotClock(hass, market.entry)
        await again.async_load()
        assert again._meter_mark == (NEXT_TS, "meter", 10_000, 5_000)
        market.async_stop()
        again.runtime.federation = link  # type: ignore[assignment]
        again.async_start()
        counters["export"] += 300  # the meter kept counting while Home Assistant was down
        counters["import"] += 20
        await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=15))
        assert link.delivered[-1] == (NEXT_TS * 1000, 300, 20)
        again.async_stop()
    # an integrated total (the meter's power) is not kept: it stops while Home Assistant is down
    fresh = SlotClock(hass, market.entry)
    await fresh.async_load()
    assert fresh._meter_mark is not None  # the last "meter" mark is still in the store
    market._meter_mark = (NEXT_TS, "integrated", 1, 1)
    market._save_store()
    await hass.async_block_till_done()
    fresh = SlotClock(hass, market.entry)
    await fresh.async_load()
    assert fresh._meter_mark is None


async def test_capacity_share_from_the_community_rules(
    hass: HomeAssistant, market: SlotClock, link: FakeLink
) -> None:
    """The community's import capacity, shared equally among its members, goes to the
    planner; without a capacity (or a community) there is no share."""
    assert market.slot_inputs(NEXT_TS).capacity_share_w is None
    link.rules = SimpleNamespace(  # type: ignore[attr-defined]
        market=SimpleNamespace(import_capacity_wh=4000)
    )
    # 4 kWh per 15-minute slot is 16 kW; 4 members: 4 kW each
    assert market.slot_inputs(NEXT_TS).capacity_share_w == 4000
    link.rules = SimpleNamespace(  # type: ignore[attr-defined]
        market=SimpleNamespace(import_capacity_wh=None)
    )
    assert market.slot_inputs(NEXT_TS).capacity_share_w is None
    market.runtime.federation = None
    assert market.slot_inputs(NEXT_TS).capacity_share_w is None


async def test_community_outlook_weighs_the_last_two_days(market: SlotClock) -> None:
    """In a community the planner expects a purchase at the dearest and a sale at the
    cheapest price the same slot cleared at on the last two days, as far as the next slots
    are known; alone it expects nothing. Two days of prices are kept."""
    assert market._outlook(NEXT_TS) == {"expected_price": (), "expected_sale_price": ()}
    market.runtime.federation = SimpleNamespace(  # type: ignore[assignment]
        slot_ms=900_000, gate_closure_lead_ms=60_000
    )
    day = 86_400
    market.prices.update(
        {
            NEXT_TS - day: 30,  # a dull day: the import price
            NEXT_TS - 2 * day: 9,  # a sunny one: near the feed-in tariff
            NEXT_TS + 900 - day: 12,
            NEXT_TS + 900 - 2 * day: 14,
            NEXT_TS + 1800 - 2 * day: 20,  # the day before yesterday only: it counts alone
        }
    )
    assert market._outlook(NEXT_TS) == {
        "expected_price": (30, 14, 20),
        "expected_sale_price": (9, 12, 20),
    }
    market.prices.pop(NEXT_TS + 1800 - 2 * day)  # nothing known: the outlook stops there
    assert market._outlook(NEXT_TS)["expected_sale_price"] == (9, 12)
    market._prune(NEXT_TS)
    assert NEXT_TS - 2 * day in market.prices
    market._prune(NEXT_TS + 900)
    assert NEXT_TS - 2 * day not in market.prices
    assert NEXT_TS - day in market.prices


async def test_ev_session_survives_a_reload_and_starts_again_after_unplugging(
    hass: HomeAssistant,
    market: SlotClock,
    frozen: FrozenDateTimeFactory,
    init_integration: MockConfigEntry,
) -> None:
    """An EV session is kept from plug-in (what it needed then, what it spent and the import
    prices since) across a reload of the entry; unplugging and plugging in again starts a new
    one."""
    run = market.memory.ev_runs[EV_ID]  # plugged in when the next slot was planned
    assert (run.plugged_at, run.spent, run.prices) == (NEXT_TS, 0, [])
    await _advance(hass, frozen, GATE)  # the slot clears: the session spends at 30
    charged = max(market.reports[NEXT_TS].allocations[EV_ID].energy_wh, 0)
    assert charged > 0
    assert (run.spent, run.prices) == (charged * 30, [30])
    await _advance(hass, frozen, NEXT_SLOT + timedelta(minutes=1))
    ev = next(a for a in market.slot_inputs(NEXT_TS + 900).assets if a.asset_id == EV_ID)
    assert (ev.plugged_at, ev.spent, ev.plug_prices) == (NEXT_TS, charged * 30, (30,))
    assert market.diagnostics()["ev_sessions"][EV_ID]["budget_from_plug_in"] is True

    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    again = init_integration.runtime_data.market
    assert again is not None
    assert again is not market
    kept = again.memory.ev_runs[EV_ID]
    assert (kept.plugged_at, kept.need_wh, kept.spent) == (NEXT_TS, run.need_wh, charged * 30)
    assert kept.prices == [30]
    assert again.memory.ev_charged[EV_ID] == market.memory.ev_charged[EV_ID]

    hass.states.async_set("binary_sensor.ev_plugged", "off")
    await hass.async_block_till_done()
    again.slot_inputs(NEXT_TS + 900)
    assert EV_ID not in again.memory.ev_runs
    hass.states.async_set("binary_sensor.ev_plugged", "on", {"device_class": "plug"})
    await hass.async_block_till_done()
    again.slot_inputs(NEXT_TS + 1800)
    fresh = again.memory.ev_runs[EV_ID]
    assert (fresh.plugged_at, fresh.spent, fresh.prices) == (NEXT_TS + 1800, 0, [])
    assert fresh.need_wh == kept.need_wh  # the car needs the whole charge again


async def test_ev_budget_unknown_after_missed_slots(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """A slot of the session that was never cleared (Home Assistant was down) leaves its
    budget from plug-in unknown: the planner counts it from the slot planned, and the
    diagnostics say so."""
    ev = next(a for a in market.slot_inputs(NEXT_TS + 1800).assets if a.asset_id == EV_ID)
    assert ev.plugged_at == NEXT_TS
    assert ev.plug_prices == ()  # two slots since plug-in, no price kept
    market.memory.after_slot(
        {EV_ID: "ev_charger"}, {EV_ID: 100}, 900, slot=NEXT_TS + 900, import_price=30
    )
    assert market.memory.ev_runs[EV_ID].prices is None
    assert market.diagnostics()["ev_sessions"][EV_ID]["budget_from_plug_in"] is False
