"""The slot clock's planning step (core/home/slot_plan.py): assets in, orders and reasons out,
deliverable by construction in advise mode, with explicit fallbacks."""

from __future__ import annotations

from unittest.mock import patch

import pytest

from custom_components.peer_energy.core.home import slot_plan as sp
from custom_components.peer_energy.core.home.bids import OwnerPolicy
from custom_components.peer_energy.core.home.forecast import HomeForecast
from custom_components.peer_energy.core.home.slot_plan import (
    AssetInput,
    DeviceMemory,
    SitOut,
    SlotInputs,
    nowcast,
    persistence_forecast,
    plan_slot,
)
from custom_components.peer_energy.core.market.orders import Side
from sim import deliverability

SLOT = 1_800_000_000  # a multiple of 900 and of 60
POLICY = OwnerPolicy()


def _inputs(*assets: AssetInput, seconds: int = 900, **kw: object) -> SlotInputs:
    base: dict[str, object] = {
        "owner": "home",
        "slot_start": SLOT,
        "slot_seconds": seconds,
        "horizon_slots": 96,
        "control": False,
        "policy": POLICY,
        "import_price": 30,
        "feed_in_tariff": 8,
        "assets": assets,
        "base_load_w": 400,
    }
    base.update(kw)
    return SlotInputs(**base)  # type: ignore[arg-type]


def _forecast(pv: int, load: int, *, n: int = 96, seconds: int = 900) -> HomeForecast:
    return HomeForecast(
        start=SLOT,
        slot_seconds=seconds,
        pv_wh=(pv,) * n,
        pv_sd_wh=(0,) * n,
        load_wh=(load,) * n,
        load_sd_wh=(0,) * n,
        import_price=(30,) * n,
        feed_in_tariff=(8,) * n,
    )


PV = AssetInput(asset_id="pv", kind="pv", power_w=2000)


def _battery(soc: float, **kw: object) -> AssetInput:
    return AssetInput(
        asset_id="bat",
        kind="battery",
        power_w=0,
        capacity_wh=10_000,
        soc_pct=soc,
        reserve_pct=20,
        max_charge_w=3000,
        max_discharge_w=3000,
        **kw,  # type: ignore[arg-type]
    )


def _sold(decision: sp.SlotDecision, price: int | None = None) -> int:
    """Offered in all, or at asks up to ``price``."""
    return sum(
        s.energy_wh
        for o in decision.orders
        if o.side is Side.SELL
        for s in o.steps
        if price is None or s.price <= price
    )


def test_no_price_no_order() -> None:
    decision = plan_slot(_inputs(PV, import_price=None), None)
    assert decision.orders == ()
    assert decision.plan is None
    assert decision.assets["pv"].reason.code == SitOut.NO_PRICE


def test_persistence_fallback_is_explicit() -> None:
    decision = plan_slot(_inputs(PV), None)
    assert decision.fallback == "forecast_persistence"
    assert decision.plan is not None
    # 2000 W PV, 400 W load for 15 minutes: 400 Wh surplus, less the margin of the 50 % spread
    assert decision.plan.slots[0].export_wh == 400
    # halfway through the band the graded margin keeps back the spread's 4.47 sd
    assert 0 <= _sold(decision, 19) < 400
    forecast = persistence_forecast(
        start=SLOT,
        slot_seconds=900,
        slots=4,
        pv_w=2000,
        load_w=100,
        import_price=30,
        feed_in_tariff=8,
    )
    assert forecast.pv_wh == (500,) * 4
    assert forecast.load_sd_wh == (75,) * 4  # at least 300 W


def test_a_battery_that_soaks_up_the_surplus_leaves_nothing_to_sell() -> None:
    """Advise mode: the battery in self-consumption mode stores the surplus; only what it
    cannot take is offered."""
    empty = plan_slot(_inputs(PV, _battery(50)), _forecast(500, 100))
    assert _sold(empty) == 0
    assert empty.assets["bat"].reason.code == "battery_self_consumption"
    assert empty.assets["bat"].signed_wh == 400  # it charges from the PV
    full = plan_slot(_inputs(PV, _battery(100)), _forecast(500, 100))
    assert _sold(full) == 400
    assert full.assets["bat"].reason.code == "battery_self_consumption"
    assert full.assets["bat"].bids == ()
    # ... and the one-slot agents of the past would have offered the 400 Wh either way.
    without = plan_slot(_inputs(PV), _forecast(500, 100))
    assert _sold(without) == 400


def test_sit_outs() -> None:
    assets = (
        AssetInput(asset_id="meter", kind="grid_meter"),
        AssetInput(asset_id="off", kind="pv", participating=False, power_w=100),
        AssetInput(asset_id="gone", kind="battery", has_reading=False),
        AssetInput(asset_id="plain", kind="plug", power_w=100),
        AssetInput(asset_id="dark", kind="pv"),
        AssetInput(asset_id="cap", kind="battery", soc_pct=50),
        AssetInput(asset_id="soc", kind="battery", capacity_wh=1000),
        AssetInput(asset_id="plug?", kind="ev_charger", plugged_known=True),
        AssetInput(asset_id="away", kind="ev_charger", plugged=False, need_wh=100),
        AssetInput(asset_id="full", kind="ev_charger", plugged=True),
        AssetInput(asset_id="idle", kind="plug", flexible=True, power_w=0),
        AssetInput(asset_id="odd", kind="heat_pump"),
    )
    decision = plan_slot(_inputs(*assets), _forecast(0, 100))
    codes = {k: (v.reason.code, dict(v.reason.params)) for k, v in decision.assets.items()}
    assert codes["meter"][0] == SitOut.METER_ONLY
    assert codes["off"][0] == SitOut.NOT_PARTICIPATING
    assert codes["gone"] == (SitOut.NO_READING, {"missing": "all"})
    assert codes["plain"][0] == SitOut.NOT_FLEXIBLE
    assert codes["dark"] == (SitOut.NO_READING, {"missing": "power"})
    assert codes["cap"][0] == SitOut.NO_CAPACITY
    assert codes["soc"] == (SitOut.NO_READING, {"missing": "soc"})
    assert codes["plug?"] == (SitOut.NO_READING, {"missing": "plugged"})
    assert codes["away"][0] == SitOut.NOT_PLUGGED
    assert codes["full"][0] == SitOut.NO_BID
    assert codes["idle"] == (SitOut.NO_READING, {"missing": "power"})
    assert codes["odd"][0] == SitOut.OTHER
    assert codes["base_load"][0] == "base_load"
    # No load forecast and no grid reading: the base load says what is missing.
    blind = plan_slot(_inputs(base_load_w=None), _forecast(0, 0))
    assert dict(blind.assets["base_load"].reason.params) == {"missing": "grid"}


def test_advise_mode_codes_for_ev_and_plug() -> None:
    ev = AssetInput(
        asset_id="ev",
        kind="ev_charger",
        plugged=True,
        need_wh=5000,
        departure=SLOT + 8 * 3600,
        max_charge_w=7400,
        controllable=True,
    )
    plug = AssetInput(asset_id="plug", kind="plug", flexible=True, power_w=1000, controllable=True)
    decision = plan_slot(_inputs(ev, plug), _forecast(0, 100))
    assert decision.assets["ev"].reason.code == "ev_on_plug_in"
    assert decision.assets["ev"].signed_wh == 1850  # 7400 W for 15 minutes
    assert decision.assets["plug"].reason.code == "plug_on"
    assert decision.assets["plug"].signed_wh == 250


def test_control_mode_and_its_fallbacks() -> None:
    controllable = _battery(50, controllable=True)
    decision = plan_slot(_inputs(PV, controllable, control=True), _forecast(500, 100))
    assert decision.plan is not None
    assert decision.plan.mode.value == "control"
    assert decision.fallback is None
    # A device that cannot be steered: advise mode, said so.
    decision = plan_slot(_inputs(PV, _battery(50), control=True), _forecast(500, 100))
    assert decision.plan is not None
    assert decision.plan.mode.value == "advise"
    assert decision.fallback == "not_controllable"
    # The solver fails: advise mode, said so.
    real = sp.plan_home

    def failing(forecast: HomeForecast, *, mode: sp.PlanMode, **kw: object) -> sp.HomePlan:
        if mode is sp.PlanMode.CONTROL:
            raise RuntimeError("HiGHS says no")
        return real(forecast, mode=mode, **kw)  # type: ignore[arg-type]

    with patch.object(sp, "plan_home", failing):
        decision = plan_slot(_inputs(PV, controllable, control=True), _forecast(500, 100))
    assert decision.fallback == "solver_failed"
    assert decision.plan is not None
    assert decision.plan.mode.value == "advise"


def test_nowcast_narrows_the_first_slot() -> None:
    forecast = HomeForecast(
        start=SLOT,
        slot_seconds=60,
        pv_wh=(50, 50),
        pv_sd_wh=(100, 100),
        load_wh=(5, 5),
        load_sd_wh=(40, 40),
        import_price=(30, 30),
        feed_in_tariff=(8, 8),
    )
    near = nowcast(forecast, SLOT - 60)  # 2 minutes before the slot ends
    assert near.pv_sd_wh == (18, 100)  # sqrt(120 / 3600) = 0.18
    assert near.load_sd_wh == (40, 40)  # appliances switch on whatever the lead time
    assert nowcast(forecast, SLOT - 7200) is forecast
    assert nowcast(forecast, None) is forecast


def test_device_memory() -> None:
    memory = DeviceMemory()
    assert memory.ev_need("ev", 100, 5000, True) == 5000
    memory.after_slot({"ev": "ev_charger"}, {"ev": 1200}, 900)
    assert memory.ev_need("ev", 100, 5000, True) == 3800
    assert memory.ev_need("ev", 200, 5000, True) == 5000  # a new departure
    memory.after_slot({"ev": "ev_charger"}, {"ev": 1000}, 900)
    assert memory.ev_need("ev", 200, 5000, False) == 5000  # unplugged: starts over
    assert memory.plug_seen("p", 0) is None
    assert memory.plug_seen("p", 400) == 400
    assert memory.plug_seen("p", 0) == 400
    memory.after_slot({"p": "plug"}, {"p": 0}, 900)
    assert memory.plug_wait_left("p", 3600) == 2700
    memory.after_slot({"p": "plug"}, {}, 900)  # not planned: no change
    assert memory.plug_wait_left("p", 3600) == 2700
    memory.after_slot({"p": "plug"}, {"p": 100}, 900)
    assert memory.plug_wait_left("p", 3600) == 3600


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_advise_mode_delivers_what_it_sells(seed: int) -> None:
    """A PV home with a battery in self-consumption mode, simulated minute by minute with
    noisy PV and load (appliances of 0.8 to 2 kW switch on at random for 2 to 15 minutes,
    about every 50 minutes; ``sim/deliverability.py``, which the bench runs too): what it
    sells (all of its offers, bought by neighbours) is delivered, delivered / sold >= 95 %.
    Without the battery in the model (the one-slot agents' way) most sales are not
    delivered."""
    sold, delivered = deliverability.run(seed, 180, model_battery=True)
    assert sold > 3000  # about 2 kW of surplus for most of three hours
    assert delivered * 100 >= 95 * sold, (delivered, sold)
    sold_naive, delivered_naive = deliverability.run(seed, 180, model_battery=False)
    assert delivered_naive * 100 < 90 * sold_naive


def _dynamic(n: int = 96) -> HomeForecast:
    """Dear now, cheap in an hour: a battery sells now and buys back later."""
    prices = (30, 30, 30, 30) + (10,) * (n - 4)
    return HomeForecast(
        start=SLOT,
        slot_seconds=900,
        pv_wh=(0,) * n,
        pv_sd_wh=(0,) * n,
        load_wh=(100,) * n,
        load_sd_wh=(0,) * n,
        import_price=prices,
        feed_in_tariff=(8,) * n,
    )


def test_two_sided_orders_and_the_main_one() -> None:
    """A controlled battery with cheap hours ahead buys while cheap and sells while dear:
    two orders; ``order`` is the side the home is on at the import price."""
    battery = _battery(90, controllable=True)
    decision = plan_slot(_inputs(battery, control=True), _dynamic())
    sides = {o.side for o in decision.orders}
    assert Side.SELL in sides
    assert decision.order is not None
    assert decision.order.side is (Side.SELL if decision.net_at_import < 0 else Side.BUY)
    assert decision.net_at_import < 0  # it exports at the import price


def test_pv_without_power_now_shares_evenly_and_manual_bids() -> None:
    from custom_components.peer_energy.core.home.bids import AssetBid, AssetKind
    from custom_components.peer_energy.core.market.orders import Reason, Step

    east = AssetInput(asset_id="east", kind="pv", power_w=0)
    west = AssetInput(asset_id="west", kind="pv", power_w=0)
    manual = (
        AssetBid(
            "manual_1",
            AssetKind.BASE_LOAD,
            SLOT,
            Side.BUY,
            (Step(25, 100),),
            Reason.of(SitOut.MANUAL_ORDER, energy_wh=100, limit=25),
        ),
        AssetBid(
            "manual_2",
            AssetKind.BASE_LOAD,
            SLOT + 900,
            Side.BUY,
            (Step(25, 100),),
            Reason.of(SitOut.MANUAL_ORDER, energy_wh=100, limit=25),
        ),
    )
    decision = plan_slot(_inputs(east, west, manual=manual), _forecast(300, 0))
    assert decision.assets["east"].signed_wh == decision.assets["west"].signed_wh == -150
    assert decision.assets["manual_1"].reason.code == SitOut.MANUAL_ORDER
    assert "manual_2" not in decision.assets  # another slot's manual order


def test_control_mode_ev_that_charges_later() -> None:
    ev = AssetInput(
        asset_id="ev",
        kind="ev_charger",
        plugged=True,
        need_wh=2000,
        departure=SLOT + 20 * 3600,
        max_charge_w=7400,
        controllable=True,
    )
    decision = plan_slot(_inputs(ev, control=True), _dynamic())
    assert decision.plan is not None
    assert decision.plan.slots[0].ev_wh == 0
    assert decision.assets["ev"].reason.code in ("ev_charge", "ev_deadline")


def test_pv_forecast_above_the_power_now_is_offered_in_full() -> None:
    """Two inverters at 100 W and 50 W now, 900 Wh forecast: all of it is offered (2:1)."""
    east = AssetInput(asset_id="east", kind="pv", power_w=100)
    west = AssetInput(asset_id="west", kind="pv", power_w=50)
    decision = plan_slot(_inputs(east, west), _forecast(900, 0))
    assert (decision.assets["east"].signed_wh, decision.assets["west"].signed_wh) == (-600, -300)
    assert sp._proportional(7, [1, 1, 1]) == [3, 2, 2]
    assert sp._proportional(5, [0, 0]) == [0, 0]


def test_the_next_slot_starts_from_the_live_readings() -> None:
    """What a user saw in the market view: the inverter produces 2.4 kW and the home exports
    400 W (its battery is full), but the sun-following forecast expects no PV and less load.
    The next slot's PV and load start from the readings, so the PV row offers what the
    inverter produces and the home sells instead of buying; later slots blend back to the
    forecast."""
    seconds = 60
    forecast = HomeForecast(
        start=SLOT,
        slot_seconds=seconds,
        pv_wh=(0,) * 96,
        pv_sd_wh=(0,) * 96,
        load_wh=(5,) * 96,  # 300 W
        load_sd_wh=(0,) * 96,
        import_price=(30,) * 96,
        feed_in_tariff=(8,) * 96,
    )
    inputs = _inputs(
        AssetInput(asset_id="pv", kind="pv", power_w=2400),
        _battery(100),
        seconds=seconds,
        base_load_w=2000,
        now=SLOT - 30,
    )
    decision = plan_slot(inputs, forecast)
    pv = decision.assets["pv"]
    assert pv.reason.code == "pv_surplus"
    assert dict(pv.reason.params)["forecast_wh"] >= 38  # 2.4 kW for a minute: 40 Wh
    assert -pv.signed_wh >= 38
    assert all(o.side is Side.SELL for o in decision.orders), decision.orders
    assert _sold(decision) >= 5  # 400 W for a minute: about 6.7 Wh
    assert decision.net_at_import < 0
    plan = decision.plan
    assert plan is not None
    # an hour on, the plan is the forecast's again
    assert plan.slots[-1].pv_wh == 0
    assert plan.slots[-1].load_wh == 5
    assert plan.slots[10].pv_wh < plan.slots[0].pv_wh


def test_nowcast_blends_readings_into_the_forecast() -> None:
    forecast = _forecast(0, 100, n=8)  # 15-minute slots: no PV, 400 W
    blended = nowcast(forecast, SLOT - 300, pv_w=2000, load_w=800)
    # slot 0's middle is 12.5 minutes after the reading: 79 % of the way to the reading
    assert blended.pv_wh[0] == 500 * 2850 // 3600
    assert blended.load_wh[0] == (200 * 2850 + 100 * 750) // 3600
    assert blended.pv_wh[3] == 500 * 150 // 3600  # 57.5 minutes on
    assert blended.pv_wh[4:] == (0,) * 4
    assert blended.load_wh[4:] == (100,) * 4
    assert nowcast(forecast, SLOT - 300) == forecast  # no readings: only the spread
    assert nowcast(forecast, SLOT - 7200, pv_w=2000, load_w=800) is forecast


def test_capacity_share_reaches_the_planner() -> None:
    """The slot clock's capacity share (W) goes to every slot of the plan: an EV that could
    charge flat out in the cheap first slots spreads its charging within the share."""
    ev = AssetInput(
        asset_id="ev",
        kind="ev_charger",
        controllable=True,
        plugged=True,
        plugged_known=True,
        need_wh=6000,
        departure=SLOT + 8 * 3600,
        max_charge_w=11_000,
    )
    forecast = _forecast(0, 100, n=32)
    free = plan_slot(_inputs(ev, control=True, base_load_w=None), forecast)
    shared = plan_slot(_inputs(ev, control=True, base_load_w=None, capacity_share_w=2000), forecast)
    assert free.plan is not None
    assert shared.plan is not None
    assert max(row.ev_wh for row in shared.plan.slots) <= 500 + 1  # 2 kW for 15 minutes
    assert max(row.ev_wh for row in free.plan.slots) > 500
    assert sum(row.ev_wh for row in shared.plan.slots) == 6000


def _plugged_ev(prices: tuple[int, ...] | None, **kw: object) -> AssetInput:
    """A car plugged in a slot before ``SLOT``, needing one full slot at 11 kW by 5 h on."""
    base: dict[str, object] = {
        "asset_id": "ev",
        "kind": "ev_charger",
        "plugged": True,
        "plugged_known": True,
        "controllable": True,
        "need_wh": 2750,
        "departure": SLOT + 20 * 900,
        "max_charge_w": 11_000,
        "plugged_at": SLOT - 900,
        "plug_need_wh": 2750,
        "spent": 0,
        "plug_prices": prices,
    }
    base.update(kw)
    return AssetInput(**base)  # type: ignore[arg-type]


def test_ev_budget_from_plug_in_keeps_a_cheap_session_out_of_dear_hours() -> None:
    """A car plugged in at a cheap hour (10) that did not charge yet: counted from now the
    flat-out budget is the dear hour's (30), and the plan buys some of it there because the
    neighbours are expected at 20; counted from plug-in the budget is the cheap hour's, so
    the plan keeps the whole charge for the cheap slot left in the horizon."""
    prices = [30] * 96
    prices[8] = 10
    n = 96
    forecast = HomeForecast(
        start=SLOT,
        slot_seconds=900,
        pv_wh=(0,) * n,
        pv_sd_wh=(0,) * n,
        load_wh=(0,) * n,
        load_sd_wh=(0,) * n,
        import_price=tuple(prices),
        feed_in_tariff=(8,) * n,
    )
    expected = (20,) * n
    planned = {}
    for known in (None, (10,)):
        ev = _plugged_ev(known)
        decision = plan_slot(_inputs(ev, control=True, expected_price=expected), forecast)
        assert decision.plan is not None
        planned[known] = [s.ev_wh for s in decision.plan.slots]
    assert sp.session_cost_cap(_plugged_ev((10,)), prices, SLOT, 900, 11_000) == 2750 * 10
    assert sp.session_cost_cap(_plugged_ev(None), prices, SLOT, 900, 11_000) is None
    assert planned[None][0] > 0  # from now: some of it at the import price of 30
    assert planned[(10,)][0] == 0  # from plug-in: not a Wh in the dear hour
    assert planned[(10,)][8] == 2750


def test_ev_session_cost_cap() -> None:
    """Flat out from plug-in at the prices since then and the forecast's, less what was spent;
    None when a slot's price since plug-in is missing."""
    cap = sp.session_cost_cap
    ev = _plugged_ev((10,), plug_need_wh=6000, spent=2750 * 10, need_wh=3250)
    # 2750 at 10 (spent), 2750 at 30 now, 500 at 40 next
    assert cap(ev, (30, 40, 50), SLOT, 900, 11_000) == 2750 * 30 + 500 * 40
    assert cap(ev, (30,), SLOT, 900, 11_000) == 2750 * 30 + 500 * 30  # after the horizon: mean
    assert cap(replace_ev(ev, plug_prices=()), (30,), SLOT, 900, 11_000) is None  # a gap
    assert cap(replace_ev(ev, plugged_at=None), (30,), SLOT, 900, 11_000) is None
    # a departure right after the slot: only what fits before it
    assert cap(replace_ev(ev, departure=SLOT + 900), (30,), SLOT, 900, 11_000) == 2750 * 30


def replace_ev(ev: AssetInput, **kw: object) -> AssetInput:
    from dataclasses import replace

    return replace(ev, **kw)  # type: ignore[arg-type]


def test_ev_session_memory() -> None:
    """The session starts when the charger is first seen plugged, spends each cleared slot at
    its import price, keeps those prices in order, ends when unplugged and survives a round
    trip through plain data."""
    memory = DeviceMemory()
    need = memory.ev_need("ev", 9000, 5000, True)
    run = memory.ev_session("ev", SLOT, True, need)
    assert run is not None
    assert (run.plugged_at, run.need_wh) == (SLOT, 5000)
    assert memory.ev_session("ev", SLOT + 900, True, 4000) is run  # the same session
    memory.after_slot({"ev": "ev_charger"}, {"ev": 1000}, 900, slot=SLOT, import_price=12)
    memory.after_slot({"ev": "ev_charger"}, {}, 900, slot=SLOT + 900, import_price=30)
    assert (run.spent, run.prices) == (12_000, [12, 30])
    again = DeviceMemory()
    again.restore_ev(memory.ev_state())
    assert again.ev_runs == memory.ev_runs
    assert again.ev_need("ev", 9000, 5000, True) == 4000
    again.after_slot({"ev": "ev_charger"}, {"ev": 10}, 900, slot=SLOT + 2700, import_price=30)
    assert again.ev_runs["ev"].prices is None  # a slot was missed
    assert again.ev_runs["ev"].spent == 12_300
    again.restore_ev({"runs": {"x": {"plugged_at": "no"}}, "charged": [1]})
    assert "x" not in again.ev_runs
    memory.ev_need("ev", 9000, 5000, False)
    assert memory.ev_session("ev", SLOT + 1800, False, 5000) is None
    assert "ev" not in memory.ev_runs
    assert memory.ev_session("ev", SLOT + 2700, True, 5000).plugged_at == SLOT + 2700  # type: ignore[union-attr]
