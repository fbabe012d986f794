"""The home planner's invariants: device limits, energy balance, deliverability in advise
mode, never worse off than alone given an exact forecast, deadlines, plug windows, the
import limit, and two order sides that never cross."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
import json
from pathlib import Path
import random

import highspy  # type: ignore[import-untyped]
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from custom_components.peer_energy.core.home import home_lp
from custom_components.peer_energy.core.home.agents import (
    AssetBid,
    AssetKind,
    BatteryState,
    OwnerPolicy,
    home_bid,
    home_price,
    split_result,
)
from custom_components.peer_energy.core.home.forecast import HomeForecast
from custom_components.peer_energy.core.home.home_lp import (
    BatteryModel,
    HomeLP,
    LpInput,
    WindowModel,
)
from custom_components.peer_energy.core.home.netting import graded_margin
from custom_components.peer_energy.core.home.planner import (
    PLANNER_REASON_CODES,
    EvSession,
    PlanMode,
    PlannerSettings,
    PlugTask,
    _lp_input,
    plan_home,
)
from custom_components.peer_energy.core.market.clearing import clear_slot
from custom_components.peer_energy.core.market.orders import (
    MarketRules,
    Order,
    Reason,
    Side,
    Step,
)

SLOT = 900
T0 = 1_800_000_000 - 1_800_000_000 % SLOT
PLAN_SETTINGS = settings(max_examples=15, deadline=None)
EXACT = PlannerSettings(flat_tiers=None)


def forecast(
    n: int,
    *,
    start: int = T0,
    load: Sequence[int] | None = None,
    pv: Sequence[int] | None = None,
    imp: Sequence[int] | None = None,
    fit: Sequence[int] | None = None,
    sd: int = 0,
) -> HomeForecast:
    load = list(load) if load is not None else [200] * n
    pv = list(pv) if pv is not None else [0] * n
    imp = list(imp) if imp is not None else [30] * n
    fit = list(fit) if fit is not None else [8] * n
    return HomeForecast(
        start=start,
        slot_seconds=SLOT,
        pv_wh=tuple(pv[:n]),
        pv_sd_wh=(sd,) * n,
        load_wh=tuple(load[:n]),
        load_sd_wh=(sd,) * n,
        import_price=tuple(imp[:n]),
        feed_in_tariff=tuple(fit[:n]),
    )


def battery(soc: int = 5_000, **kw: int) -> BatteryState:
    return BatteryState(
        "battery",
        kw.get("capacity", 10_000),
        soc,
        reserve_pct=20,
        max_charge_w=kw.get("power", 4_000),
        max_discharge_w=kw.get("power", 4_000),
        efficiency_pct=90,
        degradation=kw.get("degradation", 0),
        clean=True,
    )


def at(slots: int) -> int:
    return T0 + slots * SLOT


@st.composite
def homes(draw: st.DrawFn) -> dict[str, object]:
    """A random home over a short horizon: PV, load, prices, maybe a battery, EV and plug."""
    n = draw(st.integers(2, 12))
    fit = draw(st.integers(-5, 10))
    imp = [fit + draw(st.integers(1, 30)) for _ in range(n)]
    load = [draw(st.integers(0, 900)) for _ in range(n)]
    pv = [draw(st.integers(0, 1500)) for _ in range(n)]
    kw: dict[str, object] = {
        "forecast": forecast(n, load=load, pv=pv, imp=imp, fit=[fit] * n),
        "batteries": (),
        "evs": (),
        "plugs": (),
    }
    if draw(st.booleans()):
        kw["batteries"] = (
            battery(
                draw(st.integers(2_000, 10_000)),
                power=draw(st.sampled_from([2_500, 5_000])),
                degradation=draw(st.integers(0, 3)),
            ),
        )
    if draw(st.booleans()):
        depart = draw(st.integers(1, n + 4))
        power = draw(st.sampled_from([3_700, 11_000]))
        need = draw(st.integers(0, power * SLOT // 3600 * depart))
        # what is left of the session's budget from plug-in (None: flat out from now)
        cap = draw(st.one_of(st.none(), st.integers(0, need * (fit + 31))))
        kw["evs"] = (
            EvSession(
                asset_id="ev", depart=at(depart), energy_wh=need, max_power_w=power, cost_cap=cap
            ),
        )
    if draw(st.booleans()):
        first = draw(st.integers(0, n - 1))
        last = draw(st.integers(first + 1, n + 2))
        need = draw(st.integers(0, 500 * (last - first)))
        kw["plugs"] = (
            PlugTask(
                asset_id="plug",
                earliest=at(first),
                deadline=at(last),
                energy_wh=need,
                power_w=2_000,
            ),
        )
    return kw


def _buy_sell_at(bids: Sequence[AssetBid], price: int) -> dict[str, int]:
    """Each asset's energy at ``price`` by its bids (+ consumes, - produces)."""
    out: dict[str, int] = {}
    for b in bids:
        if b.side is Side.BUY:
            e = sum(s.energy_wh for s in b.steps if s.price >= price)
        else:
            e = -sum(s.energy_wh for s in b.steps if s.price <= price)
        out[b.asset_id] = out.get(b.asset_id, 0) + e
    return out


@PLAN_SETTINGS
@given(
    homes(),
    st.sampled_from([PlanMode.CONTROL, PlanMode.ADVISE]),
    st.sampled_from([EXACT, PlannerSettings()]),
)
def test_device_limits_and_energy_balance(
    home: dict[str, object], mode: PlanMode, plan_settings: PlannerSettings
) -> None:
    """The plan and the bids at every price keep every device within its limits, and every
    planned slot balances (import - export = load - PV + battery + EV + plugs), with or
    without the flattening tiers (and so with the EV's and plug's budgets binding)."""
    fc = home["forecast"]
    assert isinstance(fc, HomeForecast)
    plan = plan_home(mode=mode, settings=plan_settings, **home)  # type: ignore[arg-type]
    bats: Sequence[BatteryState] = home["batteries"]  # type: ignore[assignment]
    evs: Sequence[EvSession] = home["evs"]  # type: ignore[assignment]
    plugs: Sequence[PlugTask] = home["plugs"]  # type: ignore[assignment]
    per = SLOT / 3600
    for k, row in enumerate(plan.slots):
        balance = row.import_wh - row.export_wh
        assert (
            abs(balance - (row.load_wh - row.pv_wh + row.battery_wh + row.ev_wh + row.plug_wh)) <= 4
        )
        if bats:
            b = bats[0]
            assert min(b.reserve_wh, b.soc_wh) - 2 <= row.soc_wh <= max(b.capacity_wh, b.soc_wh) + 2
            assert -b.max_discharge_w * per - 2 <= row.battery_wh <= b.max_charge_w * per + 2
        else:
            assert row.battery_wh == 0
        ev_cap = sum(e.max_power_w * per for e in evs)
        assert 0 <= row.ev_wh <= ev_cap + 2
        for task in plugs:
            inside = task.earliest <= row.start < task.deadline
            if not inside:
                assert row.plug_wh == 0 or any(
                    t.earliest <= row.start < t.deadline for t in plugs if t is not task
                )
        assert k == (row.start - fc.start) // SLOT
    lo, hi = min(fc.feed_in_tariff[0], fc.import_price[0]), fc.import_price[0]
    for price in range(lo - 1, hi + 2):
        energy = _buy_sell_at(plan.bids, price)
        if bats:
            b = bats[0]
            room = max(0, b.capacity_wh - b.soc_wh) * 100 // b.efficiency_pct
            e = energy.get("battery", 0)
            assert e <= min(room, b.max_charge_w * SLOT // 3600)
            assert -e <= min(max(0, b.soc_wh - b.reserve_wh), b.max_discharge_w * SLOT // 3600)
        for ev in evs:
            assert 0 <= energy.get("ev", 0) <= min(ev.energy_wh, ev.max_power_w * SLOT // 3600)
        for task in plugs:
            e = energy.get("plug", 0)
            assert 0 <= e <= min(task.energy_wh, task.power_w * SLOT // 3600)
            if not task.earliest <= fc.start < task.deadline:
                assert e == 0


@PLAN_SETTINGS
@given(homes(), st.integers(0, 400), st.sampled_from([PlanMode.CONTROL, PlanMode.ADVISE]))
def test_two_sides_never_cross(home: dict[str, object], sd: int, mode: PlanMode) -> None:
    """Every buy limit lies below every sell ask, and a home never trades with itself."""
    fc = home["forecast"]
    assert isinstance(fc, HomeForecast)
    home = {**home, "forecast": replace(fc, load_sd_wh=(sd,) * fc.slots)}
    plan = plan_home(mode=mode, settings=EXACT, **home)  # type: ignore[arg-type]
    orders = plan.orders("me", OwnerPolicy())
    buys = [s.price for o in orders if o.side is Side.BUY for s in o.steps]
    sells = [s.price for o in orders if o.side is Side.SELL for s in o.steps]
    if buys and sells:
        assert max(buys) < min(sells)
    assert len({o.order_id for o in orders}) == len(orders)
    # against a neighbour who buys and sells at every price, the home still never fills both
    other = [
        Order("a:buy", "a", Side.BUY, T0, (Step(plan.import_price, 5_000),)),
        Order(
            "b:sell",
            "b",
            Side.SELL,
            T0,
            (Step(min(plan.feed_in_tariff, plan.import_price), 5_000),),
        ),
    ]
    rules = MarketRules(
        import_price=plan.import_price,
        feed_in_tariff=min(plan.feed_in_tariff, plan.import_price),
        slot_seconds=SLOT,
    )
    result = clear_slot([*orders, *other], rules, slot_start=T0)
    assert not [f for f in result.fills if f.buyer == f.seller == "me"]
    assert sum(1 for m in result.members if m.owner == "me" and m.bought_wh and m.sold_wh) == 0


@PLAN_SETTINGS
@given(homes(), st.integers(0, 300), st.integers(0, 300))
def test_advise_mode_offers_only_what_it_exports(
    home: dict[str, object], load_sd: int, pv_sd: int
) -> None:
    """In advise mode the home offers at most the export of its devices' own logic, less
    the graded margin at each price, and bids for at most the import."""
    fc = home["forecast"]
    assert isinstance(fc, HomeForecast)
    fc = replace(fc, load_sd_wh=(load_sd,) * fc.slots, pv_sd_wh=(pv_sd,) * fc.slots)
    plan = plan_home(mode=PlanMode.ADVISE, **{**home, "forecast": fc})  # type: ignore[arg-type]
    policy = OwnerPolicy()
    orders = plan.orders("me", policy)
    first = plan.slots[0]
    lo, hi = min(plan.feed_in_tariff, plan.import_price), plan.import_price
    sd = int((load_sd**2 + pv_sd**2) ** 0.5)
    assert plan.sd_wh == sd
    # at least one standard deviation, at most five by default
    assert (plan.margin_wh, plan.edge_margin_wh) == (sd, sd * 5)
    for p in range(lo, hi + 1):
        sold = sum(
            s.energy_wh for o in orders if o.side is Side.SELL for s in o.steps if s.price <= p
        )
        bought = sum(
            s.energy_wh for o in orders if o.side is Side.BUY for s in o.steps if s.price >= p
        )
        keep_s = graded_margin(sd, p - lo, hi - p, policy.sale_risk_pct, plan.edge_margin_wh)
        keep_b = graded_margin(sd, hi - p, p - lo, policy.sale_risk_pct, plan.edge_margin_wh)
        keep_s, keep_b = max(keep_s, plan.margin_wh), max(keep_b, plan.margin_wh)
        assert sold <= max(0, first.export_wh - keep_s)
        assert bought <= max(0, first.import_wh - keep_b)
    # where a miss costs nothing (selling at the import price) only the least is kept back
    assert sum(o.energy_wh for o in orders if o.side is Side.SELL) == max(
        0, first.export_wh - plan.margin_wh
    )
    assert sum(o.energy_wh for o in orders if o.side is Side.BUY) == max(
        0, first.import_wh - plan.margin_wh
    )
    # the advise model is the devices' own logic: self-consumption, flat out on plug-in
    bats: Sequence[BatteryState] = home["batteries"]  # type: ignore[assignment]
    net = first.load_wh - first.pv_wh + first.ev_wh + first.plug_wh
    if bats and net < 0:
        assert first.battery_wh >= 0
    if bats and net > 0:
        assert first.battery_wh <= 0
    for code in {b.reason.code for b in plan.bids}:
        assert code in PLANNER_REASON_CODES


def _cost(net: int, price: int | None, imp: int, fit: int, bought: int, sold: int) -> int:
    """Money (milli-minor units) of one slot: market at ``price``, the rest with the grid."""
    grid = net - (bought - sold)
    money = (bought - sold) * (price or 0)
    return money + max(grid, 0) * imp - max(-grid, 0) * fit


def _run(home: dict[str, object], prices: Sequence[int | None], *, trade: bool) -> int:
    """Follow the planner slot by slot over the whole horizon (every plan covers the rest
    of it); at slot k the home can trade any amount at ``prices[k]`` when ``trade``."""
    fc = home["forecast"]
    assert isinstance(fc, HomeForecast)
    bats = list(home["batteries"])  # type: ignore[call-overload]
    evs = list(home["evs"])  # type: ignore[call-overload]
    plugs = list(home["plugs"])  # type: ignore[call-overload]
    total = 0
    for k in range(fc.slots):
        part = HomeForecast(
            start=fc.start + k * SLOT,
            slot_seconds=SLOT,
            pv_wh=fc.pv_wh[k:],
            pv_sd_wh=fc.pv_sd_wh[k:],
            load_wh=fc.load_wh[k:],
            load_sd_wh=fc.load_sd_wh[k:],
            import_price=fc.import_price[k:],
            feed_in_tariff=fc.feed_in_tariff[k:],
        )
        plan = plan_home(
            part, batteries=bats, evs=evs, plugs=plugs, mode=PlanMode.CONTROL, settings=EXACT
        )
        imp, fit = part.import_price[0], part.feed_in_tariff[0]
        rules = MarketRules(import_price=imp, feed_in_tariff=min(fit, imp), slot_seconds=SLOT)
        price = prices[k] if trade else None
        bought = sold = 0
        if price is not None:
            n = plan.net_at(price)
            bought, sold = max(n, 0), max(-n, 0)
            at_price = price
        else:
            at_price = home_price(plan.bids, None, rules, part.start)
        allocs = split_result(plan.bids, part.start, bought, sold, at_price, imp, fit)
        energy = {a.asset_id: 0 for a in allocs}
        for a in allocs:
            energy[a.asset_id] += a.energy_wh
        net = part.load_wh[0] - part.pv_wh[0]
        if bats:
            e = energy.get("battery", 0)
            b = bats[0]
            assert e <= max(0, b.capacity_wh - b.soc_wh) * 100 // b.efficiency_pct
            assert -e <= max(0, b.soc_wh - b.reserve_wh)
            soc = b.soc_wh + (e * b.efficiency_pct // 100 if e > 0 else e)
            bats = [replace(b, soc_wh=soc)]
            total += max(-e, 0) * b.degradation  # wear, as the planner counts it
            net += e
        if evs:
            e = energy.get("ev", 0)
            net += e
            evs = [replace(evs[0], energy_wh=evs[0].energy_wh - e)] if evs[0].energy_wh > e else []
        if plugs:
            e = energy.get("plug", 0)
            net += e
            plugs = (
                [replace(plugs[0], energy_wh=plugs[0].energy_wh - e)]
                if plugs[0].energy_wh > e
                else []
            )
        total += _cost(net, price, imp, fit, bought, sold)
    if bats:
        total -= (bats[0].soc_wh - home["batteries"][0].soc_wh) * fc.feed_in_tariff[-1]  # type: ignore[index]
    return total


@settings(max_examples=12, deadline=None)
@given(homes(), st.randoms(use_true_random=False))
def test_never_worse_off_than_alone_with_an_exact_forecast(
    home: dict[str, object], rnd: random.Random
) -> None:
    """Trading at any prices within the grid's band never costs more than the same planner
    alone (exact forecast, every plan covering the rest of the run; per slot, rounding to
    whole Wh may cost a few Wh at the import price)."""
    fc = home["forecast"]
    assert isinstance(fc, HomeForecast)
    # deadlines within the run, so both runs must finish the same work
    evs = [replace(e, depart=min(e.depart, at(fc.slots))) for e in home["evs"]]  # type: ignore[attr-defined]
    evs = [
        replace(
            e, energy_wh=min(e.energy_wh, e.max_power_w * SLOT // 3600 * ((e.depart - T0) // SLOT))
        )
        for e in evs
    ]
    plugs = [replace(p, deadline=min(p.deadline, at(fc.slots))) for p in home["plugs"]]  # type: ignore[attr-defined]
    plugs = [
        replace(
            p,
            energy_wh=min(
                p.energy_wh, p.power_w * SLOT // 3600 * ((p.deadline - p.earliest) // SLOT)
            ),
        )
        for p in plugs
    ]
    home = {
        **home,
        "evs": tuple(e for e in evs if e.depart > T0),
        "plugs": tuple(p for p in plugs if p.deadline > p.earliest),
    }
    prices = [
        rnd.randint(min(f, i), i) if rnd.random() < 0.8 else None
        for f, i in zip(fc.feed_in_tariff, fc.import_price, strict=True)
    ]
    alone = _run(home, prices, trade=False)
    market = _run(home, prices, trade=True)
    slack = fc.slots * 6 * max(abs(p) for p in (*fc.import_price, *fc.feed_in_tariff))
    assert market <= alone + slack


def test_ev_gets_its_energy_by_departure_and_not_at_the_last_minute() -> None:
    """An EV that can be charged in time is, at any prices; with equal prices it charges
    evenly from plug-in, not at the end."""
    n = 16
    ev = EvSession(asset_id="ev", depart=at(12), energy_wh=8_000, max_power_w=11_000)
    flat = plan_home(forecast(n), evs=(ev,), mode=PlanMode.CONTROL)
    energy = [row.ev_wh for row in flat.slots]
    assert sum(energy[:12]) == 8_000
    assert sum(energy[12:]) == 0
    assert energy.index(max(energy)) < 6  # not pushed to the end
    assert max(energy) <= 3_700 * SLOT // 3600 + 1  # within the first flattening tier
    # dearer early: still done by departure, at the cheap end
    dear = plan_home(forecast(n, imp=[40] * 8 + [20] * 8), evs=(ev,), mode=PlanMode.CONTROL)
    assert sum(row.ev_wh for row in dear.slots[:12]) == 8_000
    # only just enough time: the EV bids at the import price now (the grid guarantees it)
    tight = EvSession(asset_id="ev", depart=at(3), energy_wh=3 * 2_750, max_power_w=11_000)
    plan = plan_home(forecast(n, imp=[40] + [20] * 15), evs=(tight,), mode=PlanMode.CONTROL)
    ev_bids = [b for b in plan.bids if b.asset_id == "ev"]
    assert ev_bids
    assert ev_bids[0].reason.code == "ev_deadline"
    assert _buy_sell_at(plan.bids, 40)["ev"] == 2_750


def test_plug_runs_inside_its_window_on_the_cheap_slots() -> None:
    task = PlugTask(
        asset_id="plug", earliest=at(2), deadline=at(10), energy_wh=1_500, power_w=2_000
    )
    imp = [30] * 6 + [12, 12] + [30] * 8
    plan = plan_home(forecast(16, imp=imp), plugs=(task,), mode=PlanMode.CONTROL)
    energy = [row.plug_wh for row in plan.slots]
    assert sum(energy) == 1_500
    assert all(e == 0 for k, e in enumerate(energy) if not 2 <= k < 10)
    assert energy[6] == energy[7] == 500  # the two cheap slots at full power
    assert not [b for b in plan.bids if b.asset_id == "plug"]  # nothing now: it waits


def test_import_limit_is_respected() -> None:
    ev = EvSession(asset_id="ev", depart=at(8), energy_wh=10_000, max_power_w=11_000)
    limit = PlannerSettings(import_limit_w=6_000)
    plan = plan_home(
        forecast(8), evs=(ev,), batteries=(battery(2_000),), mode=PlanMode.CONTROL, settings=limit
    )
    cap = 6_000 * SLOT // 3600
    assert all(row.import_wh <= cap + 1 for row in plan.slots)
    for price in range(8, 31):
        assert plan.net_at(price) <= cap
    orders = home_bid("me", T0, plan.bids, OwnerPolicy(), 30, 8)
    assert sum(o.energy_wh for o in orders if o.side is Side.BUY) <= cap


def test_curve_and_reasons_of_a_battery_home() -> None:
    """Cheap now, dear later: the battery buys at low prices and sells at high ones, each
    step with its reason; the curve is non-increasing and the plan is plain data."""
    imp = [30] * 2 + [12] * 4 + [40] * 10
    plan = plan_home(
        forecast(16, imp=imp, pv=[0] * 16),
        batteries=(battery(3_000),),
        mode=PlanMode.CONTROL,
        settings=EXACT,
    )
    nets = [n for _, n in plan.curve]
    assert nets == sorted(nets, reverse=True)
    codes = {b.reason.code for b in plan.bids if b.asset_id == "battery"}
    assert codes == {"battery_charge_cheap", "battery_discharge_dear"}
    # at the feed-in tariff it charges at full power now; at 30 it sells all it has, to
    # buy back in the 12 ct slots (30 > 12 / 90 %)
    assert plan.net_at(8) == 200 + 1_000
    assert plan.net_at(30) == 200 - 1_000
    row = plan.slots[0].as_dict()
    assert set(row) >= {"start", "expected_price", "battery_wh", "import_wh", "export_wh"}
    assert all(isinstance(v, int) for v in row.values())
    whole = plan.as_dict()
    assert whole["mode"] == "control"
    assert len(whole["slots"]) == 16
    assert whole["curve"] == [list(p) for p in plan.curve]
    assert {b["reason"]["code"] for b in whole["bids"]} >= codes


def test_negative_and_fractional_unit_prices() -> None:
    """Negative feed-in tariffs (paying to export) and prices in small units plan fine: the
    battery soaks up PV rather than pay to export it."""
    n = 8
    plan = plan_home(
        forecast(n, pv=[2_000] * n, load=[100] * n, imp=[2_512] * n, fit=[-350] * n),
        batteries=(battery(2_000),),
        mode=PlanMode.CONTROL,
        settings=replace(EXACT, price_step=25),
    )
    assert plan.slots[0].battery_wh == 1_000  # full power into the battery
    assert plan.slots[0].export_wh == 900


def test_empty_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match="no slot"):
        plan_home(forecast(0))


def test_home_without_flexibility_bids_its_net_position() -> None:
    policy = OwnerPolicy(min_sell_price=12)
    plan = plan_home(
        forecast(4, pv=[500] * 4, load=[200] * 4), mode=PlanMode.CONTROL, policy=policy
    )
    assert plan.mode is PlanMode.CONTROL
    assert plan.solves == 0
    orders = home_bid("me", T0, plan.bids, policy, 30, 8)
    assert [(o.side, o.steps) for o in orders] == [(Side.SELL, (Step(12, 300),))]


def test_capacity_share_spreads_charging_over_the_cheap_slots() -> None:
    """One cheap slot among equally cheap-enough ones: alone the battery and the EV fill
    the cheapest slot; with a share of the community's capacity they stay within the home's
    inflexible import plus its share wherever the other slots can take it, and still get
    their energy."""
    imp = [20, 19, 20, 20, 20, 20, 40, 40]
    ev = EvSession(asset_id="ev", depart=at(6), energy_wh=4_000, max_power_w=11_000)
    args = {
        "batteries": (battery(2_000),),
        "evs": (ev,),
        "mode": PlanMode.CONTROL,
        "settings": EXACT,
    }
    fc = forecast(8, imp=imp)
    alone = plan_home(fc, **args)  # type: ignore[arg-type]
    assert alone.slots[1].import_wh > 2_000  # everything in the cheapest slot
    share_w = [4_000] * 8
    shared = plan_home(fc, capacity_share_w=share_w, **args)  # type: ignore[arg-type]
    room = 200 + 4_000 * SLOT // 3600
    assert max(row.import_wh for row in shared.slots) <= room + 1
    assert sum(row.ev_wh for row in shared.slots) == 4_000
    # the cost of spreading is small: one price unit on what moved out of the cheapest slot
    cost = sum(r.import_wh * r.import_price for r in shared.slots)
    cost_alone = sum(r.import_wh * r.import_price for r in alone.slots)
    assert cost - cost_alone <= sum(r.import_wh for r in shared.slots)
    # a purchase from neighbours below the import price is not grid import: no penalty
    assert shared.net_at(19) >= alone.net_at(19) - 1


def test_with_a_capacity_share_the_tiers_only_spread_equal_prices() -> None:
    """The community's capacity share keeps the street's peak, so the home's own flattening
    tiers drop to a tie-break: the EV fills the cheapest slots at full power (within its
    share) instead of spreading through dearer ones, and equally priced slots are still
    used evenly."""
    ev = EvSession(asset_id="ev", depart=at(8), energy_wh=5_500, max_power_w=11_000)
    full = 11_000 * SLOT // 3600
    fc = forecast(8, imp=[30, 20, 20, 21, 21, 22, 22, 30])
    alone = plan_home(fc, evs=(ev,), mode=PlanMode.CONTROL)
    assert alone.slots[1].ev_wh < full  # the tiers cost more than a cent of price
    shared = plan_home(fc, evs=(ev,), mode=PlanMode.CONTROL, capacity_share_w=[20_000] * 8)
    assert [row.ev_wh for row in shared.slots] == [0, full, full, 0, 0, 0, 0, 0]
    cost = sum(r.import_wh * r.import_price for r in shared.slots)
    assert cost < sum(r.import_wh * r.import_price for r in alone.slots)
    flat = plan_home(forecast(8), evs=(ev,), mode=PlanMode.CONTROL, capacity_share_w=[20_000] * 8)
    assert sum(row.ev_wh for row in flat.slots) == 5_500
    assert max(row.import_wh for row in flat.slots) <= 3_700 * SLOT // 3600 + 1


def test_the_sale_outlook_decides_what_the_battery_keeps_for_the_neighbours() -> None:
    """Later sales earn the sale outlook, purchases for EVs and plugs wait for the
    purchase outlook: where the sale outlook is the feed-in tariff the battery charges only
    for the home's own load; without a sale outlook of its own it is the expected price."""
    fc = forecast(4, imp=[20, 20, 30, 30])
    args = {"batteries": (battery(2_000),), "mode": PlanMode.CONTROL, "settings": EXACT}
    both = plan_home(fc, expected_price=[30] * 4, **args)  # type: ignore[arg-type]
    same = plan_home(
        fc,
        expected_price=[30] * 4,
        expected_sale_price=[30] * 4,
        **args,  # type: ignore[arg-type]
    )
    low = plan_home(
        fc,
        expected_price=[30] * 4,
        expected_sale_price=[8] * 4,
        **args,  # type: ignore[arg-type]
    )
    charged = [sum(max(r.battery_wh, 0) for r in p.slots) for p in (both, same, low)]
    assert charged[0] == charged[1]
    assert sum(r.export_wh for r in both.slots[2:]) > 0  # sold to the neighbours later
    assert sum(r.export_wh for r in low.slots) == 0
    assert charged[2] < charged[0]
    assert charged[2] <= 400 * 100 // 90 + 1  # the home's own load of the dear slots


def test_capacity_share_never_cuts_the_inflexible_load() -> None:
    """A share of zero leaves the home its own inflexible import (it is in the capacity
    already); grid charging above it pays the capacity cost, so a spread that does not
    cover it is no longer taken."""
    load = [2_000] * 4
    args = {
        "batteries": (battery(2_000),),
        "mode": PlanMode.CONTROL,
        "settings": EXACT,
    }
    fc = forecast(4, load=load, imp=[20, 30, 30, 30])
    alone = plan_home(fc, **args)  # type: ignore[arg-type]
    assert alone.slots[0].battery_wh > 0  # 20 / 90 % < 30: it charges from the grid
    plan = plan_home(fc, capacity_share_w=[0, 0, 0, 0], **args)  # type: ignore[arg-type]
    assert plan.slots[0].battery_wh <= 1  # + half the mean price: no longer worth it
    assert all(row.import_wh >= row.load_wh - 1_000 - 1 for row in plan.slots)


def test_no_uncertain_trade_where_it_gains_nothing() -> None:
    """Selling at the feed-in tariff gains nothing over exporting, buying at the import price
    nothing over importing: there the home keeps back the wider edge margin (energy sold and
    not there is bought back at the import price); one price unit inside the band the
    usual margin holds."""
    pv = AssetBid("pv", AssetKind.PV, T0, Side.SELL, (Step(8, 1000),), Reason.of("pv_surplus"))
    load = AssetBid("load", AssetKind.BASE_LOAD, T0, Side.BUY, (Step(30, 400),), Reason.of("x"))
    orders = home_bid("me", T0, [pv], OwnerPolicy(), 30, 8, margin_wh=200, edge_margin_wh=400)
    (sell,) = orders
    assert [(s.price, s.energy_wh) for s in sell.steps] == [(8, 600), (9, 200)]
    orders = home_bid("me", T0, [load], OwnerPolicy(), 30, 8, margin_wh=100, edge_margin_wh=300)
    (buy,) = orders
    assert [(s.price, s.energy_wh) for s in buy.steps] == [(30, 100), (29, 200)]
    # without an edge margin (or a smaller one) nothing changes
    assert home_bid("me", T0, [pv], OwnerPolicy(), 30, 8, margin_wh=200) == home_bid(
        "me", T0, [pv], OwnerPolicy(), 30, 8, margin_wh=200, edge_margin_wh=100
    )
    plan = plan_home(
        HomeForecast(
            start=T0,
            slot_seconds=SLOT,
            pv_wh=(1000,),
            pv_sd_wh=(30,),
            load_wh=(100,),
            load_sd_wh=(40,),
            import_price=(30,),
            feed_in_tariff=(8,),
        )
    )
    # sd 50 Wh: one standard deviation at least, five at most
    assert (plan.sd_wh, plan.margin_wh, plan.edge_margin_wh) == (50, 50, 250)
    (sell,) = plan.orders("me", OwnerPolicy())
    # at 20 ct a sale gains 12 and a miss costs 10: k^2 = 100 x 10 / (5 x 12), 4.08 sd
    assert sum(s.energy_wh for s in sell.steps if s.price <= 20) == 900 - 204


def test_graded_margin_follows_gain_and_miss_cost() -> None:
    """The margin is the fewest standard deviations for which a miss (its chance bounded by
    Cantelli's inequality, 1 / (1 + k^2)) costs at most ``sale_risk_pct`` of the gain."""
    assert graded_margin(0, 5, 5, 5, 500) == 0  # no uncertainty
    assert graded_margin(100, 5, 0, 5, 500) == 0  # a miss costs nothing
    assert graded_margin(100, 0, 5, 5, 500) == 500  # the trade gains nothing: the cap
    assert graded_margin(100, 22, 0, 5, 500) == 0
    for gain in range(1, 30):
        for loss in range(1, 30):
            m = graded_margin(100, gain, loss, 5, 10_000)
            k = (loss / (0.05 * gain)) ** 0.5
            assert m <= 100 * k < m + 1  # k sd, to the Wh below
            a = 1 / (1 + k * k)  # Cantelli: the chance of missing by more than k sd
            assert a * loss == pytest.approx(0.05 * (1 - a) * gain)
    # the sell side keeps back less the dearer the sale: monotone orders
    pv = AssetBid("pv", AssetKind.PV, T0, Side.SELL, (Step(8, 1000),), Reason.of("pv_surplus"))
    (sell,) = home_bid("me", T0, [pv], OwnerPolicy(), 30, 8, edge_margin_wh=500, sd_wh=100)
    offered = [(s.price, s.energy_wh) for s in sell.steps]
    assert offered[-1][0] == 30
    assert sum(e for _, e in offered) == 1000
    assert offered[0] == (8, 500)  # at the feed-in tariff: the cap, 5 sd
    total = 0
    for price, energy in offered:
        total += energy
        keep = graded_margin(100, price - 8, 30 - price, 5, 500)
        assert total <= 1000 - keep
    # a more cautious owner keeps back more at the same price
    (careful,) = home_bid(
        "me", T0, [pv], OwnerPolicy(sale_risk_pct=1), 30, 8, edge_margin_wh=500, sd_wh=100
    )
    at_20 = sum(s.energy_wh for s in sell.steps if s.price <= 20)
    assert sum(s.energy_wh for s in careful.steps if s.price <= 20) < at_20


@pytest.mark.parametrize("share_w", [None, 0])
def test_ev_is_never_moved_to_dearer_hours_than_plugging_in(share_w: int | None) -> None:
    """The flattening tiers and the capacity share are not money the home pays: they may
    spread an EV over slots that cost no more than charging from plug-in, never make its
    energy dearer at the grid's prices than charging flat out from plug-in would (that is
    what the home does without the planner)."""
    imp = [37] * 4 + [41] * 4 + [42] * 4 + [40] * 4 + [37] * 4
    ev = EvSession(asset_id="ev", depart=at(20), energy_wh=8_925, max_power_w=11_000)
    shares = () if share_w is None else [share_w] * 20
    plan = plan_home(
        forecast(20, imp=imp), evs=(ev,), mode=PlanMode.CONTROL, capacity_share_w=shares
    )
    energy = [row.ev_wh for row in plan.slots]
    assert sum(energy) == 8_925
    plug_in = 8_925 * 37  # flat out from plug-in: all in the first 37 ct slots
    assert sum(e * p for e, p in zip(energy, imp, strict=True)) <= plug_in + 37
    assert max(energy) < 2_750  # and it still spreads over the 37 ct slots


def test_ev_cost_cap_holds_after_plug_in() -> None:
    """Later in a session the budget is what charging flat out from plug-in cost, less what
    was spent (``cost_cap``), not what charging flat out from now would cost: a car whose
    cheap plug-in hours are over is not moved into dear ones by the capacity share."""
    imp = [41] * 4 + [42] * 4 + [37] * 4
    shares = [11_000] * 8 + [0] * 4  # the cheap slots are the street's busy ones
    need = 5_000

    def plan(cap: int | None) -> list[int]:
        ev = EvSession(
            asset_id="ev", depart=at(12), energy_wh=need, max_power_w=11_000, cost_cap=cap
        )
        home = plan_home(
            forecast(12, imp=imp),
            evs=(ev,),
            mode=PlanMode.CONTROL,
            capacity_share_w=shares,
            settings=EXACT,
        )
        return [row.ev_wh for row in home.slots]

    from_now = plan(None)  # flat out from now costs 41 ct: it may spread into 41 ct slots
    assert sum(e * p for e, p in zip(from_now, imp, strict=True)) > need * 37 + 37
    capped = plan(need * 37)
    assert sum(capped) == need
    assert sum(e * p for e, p in zip(capped, imp, strict=True)) <= need * 37 + 37
    # a cap below what the cheapest slots cost is raised to it: the car still gets its energy
    assert sum(plan(0)) == need


@pytest.mark.parametrize("waiting", [True, False])
def test_the_plug_that_ends_first_gets_the_cheap_and_early_slots(waiting: bool) -> None:
    """Moving energy between an EV and a plug in the same slots costs the home nothing; the
    window that ends first takes the cheaper slots, then the earlier ones, so the choice
    does not depend on the solver's pivoting: a plug that may wait bids only what its cheap
    slot costs, and with every price equal it runs at once."""
    imp = [30, 30] + [10] * 94 if waiting else [10] * 96
    ev = EvSession(asset_id="ev", depart=at(11), energy_wh=10_000, max_power_w=11_000)
    plug = PlugTask(asset_id="plug", energy_wh=37, power_w=150, deadline=at(5))
    plan = plan_home(
        forecast(96, imp=imp, load=[25, 50, 75] + [100] * 93, pv=[468, 312, 156] + [0] * 93),
        evs=(ev,),
        plugs=(plug,),
        mode=PlanMode.CONTROL,
    )
    steps = [s for b in plan.bids if b.asset_id == "plug" for s in b.steps]
    if waiting:
        assert plan.slots[0].plug_wh == 0
        assert all(s.price <= 10 for s in steps)
    else:
        assert plan.slots[0].plug_wh == 37
        assert sum(s.energy_wh for s in steps) == 37


@PLAN_SETTINGS
@given(
    homes(),
    st.sampled_from([EXACT, PlannerSettings()]),
    st.lists(st.integers(0, 8_000), min_size=12, max_size=12),
    st.booleans(),
)
def test_ev_and_plug_never_cost_more_than_flat_out(
    home: dict[str, object], plan_settings: PlannerSettings, shares: list[int], capped: bool
) -> None:
    """Whatever the tiers and the capacity share, an EV's and a plug's energy costs at most,
    at the grid's import prices, what running flat out from its start costs (its budget;
    with a cost cap, the larger of the cap and what its cheapest slots cost)."""
    fc = home["forecast"]
    assert isinstance(fc, HomeForecast)
    n = fc.slots
    evs = [e for e in home["evs"] if e.depart <= at(n)]  # type: ignore[attr-defined]
    plugs = [p for p in home["plugs"] if p.deadline <= at(n)]  # type: ignore[attr-defined]
    imp = fc.import_price

    def budget(first: int, end: int, power: int, need: int, cap: int | None) -> int:
        per_slot = power * SLOT // 3600
        room = [(imp[k], per_slot) for k in range(first, end)]
        flat = cheap = 0
        left = need
        for price, e in room:
            flat += price * min(e, max(left, 0))
            left -= e
        left = need
        for price, e in sorted(room):
            cheap += price * min(e, max(left, 0))
            left -= e
        return flat if cap is None else max(cap, cheap)

    if capped:
        evs = [replace(e, cost_cap=e.energy_wh * min(imp)) for e in evs]
        plugs = [replace(p, cost_cap=p.energy_wh * min(imp)) for p in plugs]
    plan = plan_home(
        fc,
        batteries=home["batteries"],  # type: ignore[arg-type]
        evs=evs,
        plugs=plugs,
        mode=PlanMode.CONTROL,
        settings=plan_settings,
        capacity_share_w=shares[:n],
    )
    rounding = n * max(abs(p) for p in imp)  # each slot's energy rounded to whole Wh
    for kind, windows in (("ev", evs), ("plug", plugs)):
        for w in windows:
            if isinstance(w, EvSession):
                first, end, power = 0, (w.depart - T0) // SLOT, w.max_power_w
            else:
                first, end, power = (w.earliest - T0) // SLOT, (w.deadline - T0) // SLOT, w.power_w
            if w.energy_wh > power * SLOT // 3600 * (end - first):
                continue  # cannot be met: the shortfall is priced, not budgeted
            use = [row.ev_wh if kind == "ev" else row.plug_wh for row in plan.slots]
            assert sum(use) == pytest.approx(w.energy_wh, abs=n)
            spent = sum(u * p for u, p in zip(use, imp, strict=True))
            assert spent <= budget(first, end, power, w.energy_wh, w.cost_cap) + rounding


def _tied(lp: HomeLP) -> bool:
    """Whether the windows' tie-break costs are on in the solver's model."""
    costs = np.asarray(lp._solver.getLp().col_cost_)
    return any(not np.allclose(costs[col], plain) for col, plain in lp._tie_cols)


def _budgeted(lp: HomeLP) -> bool:
    """Whether the budget rows bound the windows' spend in the solver's model."""
    upper = np.asarray(lp._solver.getLp().row_upper_)
    return any(upper[row] < 1e20 for row, _ in lp._budget_rows)


def _ev_and_plug() -> tuple[HomeForecast, EvSession, PlugTask]:
    fc = forecast(96, imp=[30, 30] + [10] * 94, load=[25, 50, 75] + [100] * 93)
    ev = EvSession(asset_id="ev", depart=at(11), energy_wh=10_000, max_power_w=11_000)
    return fc, ev, PlugTask(asset_id="plug", energy_wh=37, power_w=150, deadline=at(5))


@pytest.mark.parametrize("fails_while", ["tie", "tie_or_budget"])
def test_a_plan_solves_when_the_solver_fails_with_the_tie_break(
    monkeypatch: pytest.MonkeyPatch, fails_while: str
) -> None:
    """A solve that does not end optimal is retried from scratch, then without the
    tie-break, then also without the budgets: a plan never fails because of them, and the
    model gets both back for the next solve."""
    fc, ev, plug = _ev_and_plug()
    data = _lp_input(fc, (), (ev,), (plug,), (), PlannerSettings())
    reference = HomeLP(data).solve_at(10.0)
    run = HomeLP._run

    def failing(lp: HomeLP) -> object:
        status = run(lp)
        if _tied(lp) or (fails_while == "tie_or_budget" and _budgeted(lp)):
            return highspy.HighsModelStatus.kUnknown
        return status

    lp = HomeLP(data)
    with monkeypatch.context() as m:
        m.setattr(HomeLP, "_run", failing)
        solved = lp.solve_at(10.0)
        assert lp.fallbacks == 1
        assert lp.solves == (3 if fails_while == "tie" else 4)
        # every window served, and as cheap as the model without the tie-break (and, for
        # the second, without the budgets) solved at once
        assert solved.ev.sum() == pytest.approx(10_000)
        assert solved.plug.sum() == pytest.approx(37)
        plain = HomeLP(data)
        plain._tie_break(False)
        if fails_while == "tie_or_budget":
            plain._budgets(False)
        assert solved.objective == pytest.approx(plain.solve_at(10.0).objective, rel=1e-9)
        assert _tied(lp)  # back for the next solve
        assert _budgeted(lp)
    again = lp.solve_at(10.0)
    assert lp.fallbacks == 1
    assert np.allclose(again.plug, reference.plug)
    assert np.allclose(again.ev, reference.ev)

    def broken(lp: HomeLP) -> object:
        run(lp)
        return highspy.HighsModelStatus.kUnknown

    with monkeypatch.context() as m:
        m.setattr(HomeLP, "_run", broken)
        with pytest.raises(RuntimeError, match="did not solve: Unknown"):
            lp.solve_at(10.0)
        assert _tied(lp)
        assert _budgeted(lp)


def test_the_home_plan_survives_a_solver_that_fails_with_the_tie_break(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The planner still plans and bids when every solve with the tie-break fails."""
    fc, ev, plug = _ev_and_plug()
    run = HomeLP._run

    def failing(lp: HomeLP) -> object:
        status = run(lp)
        return highspy.HighsModelStatus.kUnknown if _tied(lp) else status

    monkeypatch.setattr(HomeLP, "_run", failing)
    plan = plan_home(fc, evs=(ev,), plugs=(plug,), mode=PlanMode.CONTROL)
    assert sum(row.ev_wh for row in plan.slots) == 10_000
    assert sum(row.plug_wh for row in plan.slots[:5]) == 37
    assert {b.asset_id for b in plan.bids} >= {"ev"}


def _unknown_case() -> tuple[LpInput, float]:
    """The simulator's plan that HiGHS ended with status Unknown (see the file's note)."""
    raw = json.loads((Path(__file__).parent / "data" / "plan_that_ended_unknown.json").read_text())
    arrays = {
        k: np.asarray(raw[k], dtype=float)
        for k in ("net_wh", "buy_price", "sell_price", "flex_price", "room_wh")
    }
    (t1, t2) = raw["tiers"]
    data = LpInput(
        **arrays,
        tiers=((t1[0], t1[1]), (t2[0], t2[1])),
        room_cost=raw["room_cost"],
        big=raw["big"],
        batteries=tuple(BatteryModel(**b) for b in raw["batteries"]),
        evs=tuple(WindowModel(**w) for w in raw["evs"]),
    )
    return data, float(raw["price"])


def test_the_plan_that_ended_unknown_solves_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lone window gets no tie-break and the budget row reads in Wh: the week's plan that
    HiGHS ended with status Unknown solves at once. In its old form (a tie-break on the
    lone window at 1e-5, the budget row in money units) it still ends Unknown twice, and
    the fallback without the tie-break gives the plan."""
    data, price = _unknown_case()
    lp = HomeLP(data)
    solved = lp.solve_at(price)
    assert (lp.solves, lp.fallbacks) == (1, 0)
    (window,) = data.evs
    assert solved.ev.sum() == pytest.approx(window.need_wh)
    assert window.budget is not None
    assert float(np.dot(solved.ev[0], data.buy_price)) <= window.budget + 1

    statuses: list[str] = []
    run = HomeLP._run

    def spy(lp: HomeLP) -> object:
        status = run(lp)
        statuses.append(lp._solver.modelStatusToString(status))
        return status

    monkeypatch.setattr(home_lp, "TIE_EPS", 1e-5)
    monkeypatch.setattr(home_lp, "_ranks", lambda windows, n: [1] * len(windows))
    monkeypatch.setattr(home_lp, "_budget_scale", lambda price, later_cost: 1.0)
    monkeypatch.setattr(HomeLP, "_run", spy)
    old = HomeLP(data)
    again = old.solve_at(price)
    assert statuses == ["Unknown", "Unknown", "Optimal"]
    assert old.fallbacks == 1
    assert again.objective == pytest.approx(solved.objective, rel=1e-9)


def test_only_windows_that_share_a_slot_get_a_tie_break() -> None:
    """A window alone in its slots has no tie to break (a tie-break there only costs the
    solver accuracy); among windows that share slots the one that ends first ranks
    highest, then the one that needs least."""
    ev = WindowModel(first=0, last=40, per_slot_wh=2_750, need_wh=10_000)
    plug = WindowModel(first=2, last=6, per_slot_wh=500, need_wh=400)
    late = WindowModel(first=50, last=60, per_slot_wh=500, need_wh=400)
    small = WindowModel(first=0, last=40, per_slot_wh=500, need_wh=400)
    assert home_lp._ranks((ev,), 96) == [0]
    assert home_lp._ranks((ev, late), 96) == [0, 0]
    assert home_lp._ranks((ev, plug, late), 96) == [1, 2, 0]
    assert home_lp._ranks((ev, small, plug), 96) == [1, 2, 3]
