"""The home planner: plan the whole home over the horizon, and bid for the next slot from it.

Every slot the planner takes what the home expects (a :class:`~.forecast.HomeForecast`: PV,
inflexible load and grid prices per slot, with standard deviations), the state of its
devices (batteries, EV sessions, flexible plug tasks), the owner's policy and, optionally,
the community price it expects per slot, and returns a :class:`HomePlan`:

- ``slots``: the plan for the horizon, per slot (:class:`PlanSlot`: expected price, battery,
  EV and plug energy, expected import and export), plain data the shell can show;
- ``bids``: the home's asset bids for the first slot (per asset, each with its reason), from
  which :func:`~.agents.home_bid` builds the home's two-sided order (a buy curve and a sell
  curve that never cross) and :func:`~.agents.split_result` splits the home's fill back to
  its assets, consistently with the plan.

**Two modes.** In *advise* mode (:attr:`PlanMode.ADVISE`, the default) the devices follow
their own logic and the planner models it: a battery in self-consumption mode stores the
home's surplus and covers its deficit, an EV charges flat out from plug-in, a plug runs when
its task starts. The home then offers only the energy it will export under that model and
bids for what it will import, each at the grid's price (it cannot move anything), less an
uncertainty margin (below): deliverable by construction. In *control* mode
(:attr:`PlanMode.CONTROL`) the plan decides: a linear program (:mod:`.home_lp`, HiGHS)
minimises the home's expected cost over the horizon, and the bid for the first slot is the
LP's answer to "what would the home import or export if the first slot's price were p?",
for every price p between the feed-in tariff and the import price.

**How the curve is read.** The LP is solved with the first slot bought and sold at the
feed-in tariff and at the import price; between them the net import ``N(p)`` is
non-increasing in ``p`` (an LP property), so where it differs the interval is split in two
and solved again (warm-started), until it is flat or narrower than the resolution, within
``max_solves``. Between two solved prices the bids take the smaller quantity on each side,
so the home is never filled beyond what it wants at the price it gets. Per asset, the
change of ``N`` between neighbouring prices is shared among the assets that moved in that
direction, which keeps every asset's curve monotone and within its limits.

**Later slots** are valued as the home alone would see them, with two exceptions where the
community's outlook is given (:mod:`.outlook`): EV and plug energy may be bought at
``min(import price, max(expected community price, feed-in tariff))`` (the home may wait for
cheaper neighbours' energy, and pays at most the import price if it does not come; a
battery never counts on it), and export earns ``max(feed-in tariff, min(expected sale
price, import price))`` (the sale outlook: the cheapest the slot cleared at on the last
days, so a sale is counted on only where every one of them bore it out). Battery content
left at the end of the horizon is worth the last slot's feed-in tariff.

**Grid-friendly.** Two soft tiers (:attr:`PlannerSettings.flat_tiers`) add a small cost to
the home's import above a threshold, so equal-price slots are used evenly (no stacking of EV
and plug energy, no last-minute charging: EV and plug energy also prefer earlier slots at
equal cost); :attr:`PlannerSettings.import_limit_w` is a hard limit. With the community's
import capacity, each home gets a share of it per slot (``capacity_share_w``): importing
more than its inflexible net demand plus that share costs
:attr:`PlannerSettings.capacity_cost_pct` of the mean import price per kWh, so the homes'
batteries and EVs spread over the cheap hours instead of all filling the cheapest one (a
purchase from neighbours below the import price is not grid import and pays nothing). The
share then keeps the peak, so the tiers drop to :attr:`PlannerSettings.shared_tiers_pct`
(1 % and 2 % of the mean import price): enough to spread equally priced slots, too little to
move energy into a dearer one.
These costs are not money the home pays, so they never make an EV or a plug dearer: each
session and task has a budget at the import prices, what running flat out from its start
costs (``EvSession.cost_cap`` / ``PlugTask.cost_cap``: what is left of it since plug-in, at
least what its cheapest slots cost), and they only choose among schedules within it.

**Uncertainty.** The first slot's net demand has the standard deviation
``sd_wh = sqrt(load_sd^2 + pv_sd^2)`` (:attr:`HomePlan.sd_wh`). Both sides of the order keep
back a margin graded by price (:func:`~.netting.graded_margin`): as many standard deviations
as make a miss (its chance bounded by Cantelli's inequality) cost at most the owner's
``sale_risk_pct`` of what the trade gains at that price, at least ``risk_z_pct / 100`` of
them (``HomePlan.margin_wh``) and at most ``edge_z_pct / 100`` (``HomePlan.edge_margin_wh``,
where a trade gains nothing: selling at the feed-in tariff, buying at the import price). A
sale near the import price keeps back little, one near the feed-in tariff much.

Units: energy Wh, power W, prices minor units per kWh, all integers in and out.

The model is in :mod:`.home_lp`, the per-asset curves of the first slot in :mod:`.curve`,
the EV session and plug task inputs in :mod:`.devices`.

Public API: :class:`PlanMode`, :class:`EvSession`, :class:`PlugTask`,
:class:`PlannerSettings`, :class:`PlanSlot`, :class:`HomePlan`, :func:`plan_home`,
:data:`PLANNER_REASON_CODES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from math import isqrt
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..market.orders import Order, Reason, Side, Step
from .agents import AssetBid, AssetKind, BatteryState, OwnerPolicy
from .curve import asset_bids, monotone, slot0_assets
from .devices import EvSession, PlugTask, energy_wh, first_slot, last_slot
from .forecast import HomeForecast
from .home_lp import INF, BatteryModel, HomeLP, LpInput, LpSolution, WindowModel
from .netting import home_bid

__all__ = [
    "PLANNER_REASON_CODES",
    "EvSession",
    "HomePlan",
    "PlanMode",
    "PlanSlot",
    "PlannerSettings",
    "PlugTask",
    "plan_home",
]

# Reason codes the planner gives (the shell translates every one of them). The agents'
# codes it reuses keep their meaning; the three advise-mode codes are new.
PLANNER_REASON_CODES = (
    "base_load",
    "pv_surplus",
    "battery_self_consumption",
    "battery_charge_cheap",
    "battery_discharge_dear",
    "ev_charge",
    "ev_deadline",
    "plug_run",
    "plug_delay_exhausted",
    "ev_on_plug_in",  # advise: the charger charges flat out from plug-in
    "plug_on",  # advise: the plug runs its task as soon as it may
    "home_net",
)


class PlanMode(StrEnum):
    """Who decides what the devices do."""

    ADVISE = "advise"  # the devices' own logic; the planner models it
    CONTROL = "control"  # the plan decides


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannerSettings:
    """How the planner plans (the owner's and the community's knobs)."""

    import_limit_w: int | None = None  # hard limit on the home's import (grid connection)
    # Soft flattening tiers: (threshold W, extra cost per kWh of import above it in percent
    # of the horizon's mean import price, so it means the same in every currency).
    flat_tiers: tuple[tuple[int, int], tuple[int, int]] | None = ((3700, 15), (7400, 45))
    # The tiers' costs (same unit) when the home has a share of the community's import
    # capacity: the share then keeps the street's peak, and tiers costing more than a price
    # difference only move energy into dearer slots (EVs and batteries charging at a third
    # of their power through the cheap night); this low they still spread equally priced
    # slots. Each tier costs the smaller of the two.
    shared_tiers_pct: tuple[int, int] = (1, 2)
    # least and most the graded uncertainty margin keeps back (the most where a trade gains
    # the home nothing over the grid), in standard deviations x 100
    risk_z_pct: int = 100
    edge_z_pct: int = 500
    # Cost per kWh of import above the home's share of the community's import capacity
    # (``plan_home(capacity_share_w=...)``), in percent of the horizon's mean import price.
    capacity_cost_pct: int = 50
    max_solves: int = 24  # LP solves per plan (the curve's resolution)
    price_step: int = 1  # finest price difference the curve resolves (minor units)
    pv_id: str = "pv"
    load_id: str = "base_load"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanSlot:
    """The plan of one slot (energy Wh: battery + charges / - discharges)."""

    start: int
    import_price: int
    feed_in_tariff: int
    expected_price: int
    pv_wh: int
    load_wh: int
    battery_wh: int
    soc_wh: int
    ev_wh: int
    plug_wh: int
    import_wh: int
    export_wh: int

    def as_dict(self) -> dict[str, int]:
        """Plain data (for entity attributes, diagnostics, the market view)."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True, kw_only=True)
class HomePlan:
    """The planner's answer for one horizon (see the module docstring)."""

    mode: PlanMode
    start: int
    slot_seconds: int
    slots: tuple[PlanSlot, ...]
    bids: tuple[AssetBid, ...]
    curve: tuple[tuple[int, int], ...]  # (first-slot price, net import Wh), ascending price
    margin_wh: int  # the least uncertainty margin (graded up to ``edge_margin_wh``)
    import_price: int  # of the first slot
    feed_in_tariff: int
    solves: int = 0
    # solves that needed the tie-break between windows or their budgets dropped (see
    # ``home_lp``): the plan is as cheap, but a window may cost more than its budget
    fallbacks: int = 0
    # the most kept back: where a trade gains the home nothing (see ``netting.home_bid``)
    edge_margin_wh: int = 0
    sd_wh: int = 0  # standard deviation of the first slot's net demand

    def orders(self, owner: str, policy: OwnerPolicy) -> tuple[Order, ...]:
        """The home's two-sided order for the first slot from these bids (see
        :func:`~.netting.home_bid`), with the graded uncertainty margin."""
        return home_bid(
            owner,
            self.start,
            self.bids,
            policy,
            self.import_price,
            self.feed_in_tariff,
            margin_wh=self.margin_wh,
            edge_margin_wh=self.edge_margin_wh,
            sd_wh=self.sd_wh,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data of the whole plan (entity attributes, diagnostics, the market view)."""
        return {
            "mode": self.mode.value,
            "start": self.start,
            "slot_seconds": self.slot_seconds,
            "margin_wh": self.margin_wh,
            "curve": [list(point) for point in self.curve],
            "slots": [row.as_dict() for row in self.slots],
            "bids": [
                {
                    "asset_id": b.asset_id,
                    "side": b.side.value,
                    "steps": [[s.price, s.energy_wh] for s in b.steps],
                    "reason": b.reason.to_dict(),
                }
                for b in self.bids
            ],
        }

    def net_at(self, price: int) -> int:
        """Net import of the first slot at ``price`` by the bids (buy minus sell)."""
        net = 0
        for bid in self.bids:
            if bid.side is Side.BUY:
                net += sum(s.energy_wh for s in bid.steps if s.price >= price)
            else:
                net -= sum(s.energy_wh for s in bid.steps if s.price <= price)
        return net


def _sd(forecast: HomeForecast) -> int:
    if forecast.slots == 0:
        return 0
    return isqrt(forecast.load_sd_wh[0] ** 2 + forecast.pv_sd_wh[0] ** 2)


def _margins(forecast: HomeForecast, settings: PlannerSettings) -> dict[str, int]:
    """The plan's margin fields: the least and most kept back, and the spread they grade."""
    sd = _sd(forecast)
    least = sd * max(settings.risk_z_pct, 0) // 100
    most = max(sd * max(settings.edge_z_pct, 0) // 100, least)
    return {"margin_wh": least, "edge_margin_wh": most, "sd_wh": sd}


def _buy_prices(forecast: HomeForecast, expected: Sequence[int]) -> list[int]:
    out = []
    for k, (imp, fit) in enumerate(
        zip(forecast.import_price, forecast.feed_in_tariff, strict=True)
    ):
        if k < len(expected):
            out.append(min(imp, max(expected[k], fit)))
        else:
            out.append(imp)
    return out


def plan_home(
    forecast: HomeForecast,
    *,
    batteries: Sequence[BatteryState] = (),
    evs: Sequence[EvSession] = (),
    plugs: Sequence[PlugTask] = (),
    mode: PlanMode = PlanMode.ADVISE,
    policy: OwnerPolicy | None = None,
    expected_price: Sequence[int] = (),
    settings: PlannerSettings | None = None,
    capacity_share_w: Sequence[int] = (),
    expected_sale_price: Sequence[int] | None = None,
) -> HomePlan:
    """Plan the home over ``forecast``'s horizon and bid for its first slot.

    ``expected_price`` is the community price the home expects per slot (from the first
    slot on; empty: no community), what EV and plug energy may wait for;
    ``expected_sale_price`` what a later sale to the neighbours is expected to earn (None:
    ``expected_price``), see :func:`~.outlook.same_slot_outlook`.

    ``capacity_share_w`` is the home's share of the community's import capacity per slot
    (W, from the first slot on; empty: no capacity): what it may import in a slot on top of
    its own inflexible net demand before each further kWh costs
    :attr:`PlannerSettings.capacity_cost_pct` (control mode; see the module docstring).

    Raises ``ValueError`` for an empty horizon. The LP is always feasible (unmet demand is
    a priced slack), so any input gives a plan; a solver failure raises ``RuntimeError``.
    """
    if forecast.slots == 0:
        raise ValueError("the horizon has no slot")
    policy = policy or OwnerPolicy()
    settings = settings or PlannerSettings()
    expected = tuple(expected_price)
    flexible = (
        any(b.capacity_wh > 0 for b in batteries)
        or any(e.energy_wh > 0 for e in evs)
        or any(p.energy_wh > 0 for p in plugs)
    )
    if mode is PlanMode.ADVISE or not flexible:
        return _advise(forecast, batteries, evs, plugs, policy, expected, settings, mode)
    sale = expected if expected_sale_price is None else tuple(expected_sale_price)
    return _control(
        forecast,
        batteries,
        evs,
        plugs,
        policy,
        expected,
        settings,
        tuple(capacity_share_w),
        sale=sale,
    )


# --- advise mode: the devices' own logic --------------------------------------------------


def _advise(
    forecast: HomeForecast,
    batteries: Sequence[BatteryState],
    evs: Sequence[EvSession],
    plugs: Sequence[PlugTask],
    policy: OwnerPolicy,
    expected: tuple[int, ...],
    settings: PlannerSettings,
    mode: PlanMode,
) -> HomePlan:
    """Simulate the uncontrolled devices over the horizon; bid their first slot as is."""
    n, sec, start = forecast.slots, forecast.slot_seconds, forecast.start
    ev_use = np.zeros((len(evs), n), dtype=np.int64)
    for j, ev in enumerate(evs):
        _fill_early(
            ev_use[j],
            ev.energy_wh,
            energy_wh(ev.max_power_w, sec),
            ev.arrive,
            ev.depart,
            start,
            sec,
        )
    plug_use = np.zeros((len(plugs), n), dtype=np.int64)
    for j, task in enumerate(plugs):
        _fill_early(
            plug_use[j],
            task.energy_wh,
            energy_wh(task.power_w, sec),
            task.earliest,
            task.deadline,
            start,
            sec,
        )
    load = np.asarray(forecast.load_wh, dtype=np.int64)
    pv = np.asarray(forecast.pv_wh, dtype=np.int64)
    net = load - pv + ev_use.sum(axis=0) + plug_use.sum(axis=0)
    bat = np.zeros((len(batteries), n), dtype=np.int64)
    soc_rows = np.zeros((len(batteries), n), dtype=np.int64)
    for j, b in enumerate(batteries):
        soc = b.soc_wh
        eff = max(1, min(100, b.efficiency_pct))
        pc, pd = energy_wh(b.max_charge_w, sec), energy_wh(b.max_discharge_w, sec)
        for k in range(n):
            x = int(net[k])
            if x < 0:
                c = min(-x, pc, max(0, b.capacity_wh - soc) * 100 // eff)
                soc += c * eff // 100
                bat[j, k] = c
            elif x > 0:
                d = min(x, pd, max(0, soc - b.reserve_wh))
                soc -= d
                bat[j, k] = -d
            net[k] += bat[j, k]
            soc_rows[j, k] = soc
    imp0, fit0 = forecast.import_price[0], forecast.feed_in_tariff[0]
    slot0 = start
    bids: list[AssetBid] = []
    bids += _fixed_bids(forecast, policy, settings)
    for j, b in enumerate(batteries):
        e = int(bat[j, 0])
        params: dict[str, int | str] = {
            "soc_pct": b.soc_wh * 100 // b.capacity_wh if b.capacity_wh > 0 else 0,
            "reserve_pct": b.reserve_pct,
            "own_wh": abs(e),
        }
        if e > 0:
            bids.append(
                AssetBid(
                    b.asset_id,
                    AssetKind.BATTERY,
                    slot0,
                    Side.BUY,
                    (Step(imp0, e),),
                    Reason.of("battery_self_consumption", **params),
                )
            )
        elif e < 0:
            bids.append(
                AssetBid(
                    b.asset_id,
                    AssetKind.BATTERY,
                    slot0,
                    Side.SELL,
                    (Step(fit0, -e),),
                    Reason.of("battery_self_consumption", **params),
                    clean=b.clean,
                )
            )
    for j, ev in enumerate(evs):
        e = int(ev_use[j, 0])
        if e > 0:
            bids.append(
                AssetBid(
                    ev.asset_id,
                    AssetKind.EV,
                    slot0,
                    Side.BUY,
                    (Step(imp0, e),),
                    Reason.of("ev_on_plug_in", need_wh=ev.energy_wh),
                )
            )
    for j, task in enumerate(plugs):
        e = int(plug_use[j, 0])
        if e > 0:
            bids.append(
                AssetBid(
                    task.asset_id,
                    AssetKind.PLUG,
                    slot0,
                    Side.BUY,
                    (Step(imp0, e),),
                    Reason.of("plug_on", need_wh=task.energy_wh),
                )
            )
    rows = _rows(
        forecast,
        expected,
        battery=bat.sum(axis=0),
        soc=soc_rows.sum(axis=0),
        ev=ev_use.sum(axis=0),
        plug=plug_use.sum(axis=0),
        imports=np.maximum(net, 0),
        exports=np.maximum(-net, 0),
    )
    net0 = int(net[0])
    curve = ((min(fit0, imp0), net0), (imp0, net0)) if fit0 < imp0 else ((imp0, net0),)
    return HomePlan(
        mode=mode,
        start=start,
        slot_seconds=sec,
        slots=rows,
        bids=tuple(bids),
        curve=curve,
        import_price=imp0,
        feed_in_tariff=fit0,
        **_margins(forecast, settings),
    )


def _fill_early(
    row: NDArray[Any], energy: int, per_slot: int, first: int, end: int, start: int, sec: int
) -> None:
    """Flat out from ``first`` until ``energy`` is used or ``end`` (Unix s) is reached."""
    left = energy
    k = first_slot(first, start, sec)
    last = min(row.size, last_slot(end, start, sec))
    while left > 0 and k < last and per_slot > 0:
        take = min(per_slot, left)
        row[k] = take
        left -= take
        k += 1


def _fixed_bids(
    forecast: HomeForecast, policy: OwnerPolicy, settings: PlannerSettings
) -> list[AssetBid]:
    """The first slot's inflexible load (at the import price) and PV (at the floor)."""
    imp0, fit0 = forecast.import_price[0], forecast.feed_in_tariff[0]
    out: list[AssetBid] = []
    load0, pv0 = forecast.load_wh[0], forecast.pv_wh[0]
    if load0 > 0:
        out.append(
            AssetBid(
                settings.load_id,
                AssetKind.BASE_LOAD,
                forecast.start,
                Side.BUY,
                (Step(imp0, load0),),
                Reason.of("base_load", forecast_wh=load0),
            )
        )
    if pv0 > 0:
        floor = min(fit0, imp0)
        out.append(
            AssetBid(
                settings.pv_id,
                AssetKind.PV,
                forecast.start,
                Side.SELL,
                (Step(floor, pv0),),
                Reason.of("pv_surplus", forecast_wh=pv0, floor=floor),
                clean=True,
            )
        )
    return out


def _rows(
    forecast: HomeForecast,
    expected: tuple[int, ...],
    *,
    battery: NDArray[Any],
    soc: NDArray[Any],
    ev: NDArray[Any],
    plug: NDArray[Any],
    imports: NDArray[Any],
    exports: NDArray[Any],
) -> tuple[PlanSlot, ...]:
    sec, start = forecast.slot_seconds, forecast.start
    out = []
    for k in range(forecast.slots):
        imp, fit = forecast.import_price[k], forecast.feed_in_tariff[k]
        exp = min(imp, max(expected[k], fit)) if k < len(expected) else imp
        out.append(
            PlanSlot(
                start=start + k * sec,
                import_price=imp,
                feed_in_tariff=fit,
                expected_price=exp,
                pv_wh=forecast.pv_wh[k],
                load_wh=forecast.load_wh[k],
                battery_wh=int(battery[k]),
                soc_wh=int(soc[k]),
                ev_wh=int(ev[k]),
                plug_wh=int(plug[k]),
                import_wh=int(imports[k]),
                export_wh=int(exports[k]),
            )
        )
    return tuple(out)


# --- control mode: the LP ----------------------------------------------------------------


def _lp_input(
    forecast: HomeForecast,
    batteries: Sequence[BatteryState],
    evs: Sequence[EvSession],
    plugs: Sequence[PlugTask],
    expected: tuple[int, ...],
    settings: PlannerSettings,
    share: tuple[int, ...] = (),
    *,
    sale: tuple[int, ...] = (),
) -> LpInput:
    n, sec, start = forecast.slots, forecast.slot_seconds, forecast.start
    buy = np.asarray(forecast.import_price, dtype=float)
    flex = np.asarray(_buy_prices(forecast, expected), dtype=float) if expected else None
    sell = np.asarray(forecast.feed_in_tariff, dtype=float)
    if sale:
        # later sales to neighbours at the sale outlook (never below the feed-in tariff)
        k = min(len(sale), n)
        sell[:k] = np.maximum(sell[:k], np.minimum(np.asarray(sale[:k], dtype=float), buy[:k]))
    net = np.asarray(forecast.load_wh, dtype=float) - np.asarray(forecast.pv_wh, dtype=float)
    later_cost = float(buy.mean())
    end_value = max(0.0, float(forecast.feed_in_tariff[-1]))
    bats = tuple(
        BatteryModel(
            capacity_wh=float(b.capacity_wh),
            reserve_wh=float(b.reserve_wh),
            soc_wh=float(b.soc_wh),
            charge_wh=float(energy_wh(b.max_charge_w, sec)),
            discharge_wh=float(energy_wh(b.max_discharge_w, sec)),
            efficiency=max(1, min(100, b.efficiency_pct)) / 100.0,
            degradation=float(b.degradation),
            end_value=end_value,
        )
        for b in batteries
        if b.capacity_wh > 0
    )

    def window(first: int, end: int, power: int, need: int, cap: int | None) -> WindowModel:
        per = float(energy_wh(power, sec))
        lo = first_slot(first, start, sec)
        hi = last_slot(end, start, sec)
        later_wh = per * max(0, hi - max(lo, n))
        if cap is None:
            budget = _fill_cost(buy, lo, hi, per, float(need), later_wh, later_cost)
        else:  # never below what the cheapest slots cost, so the budget can be met
            least = _fill_cost(buy, lo, hi, per, float(need), later_wh, later_cost, cheap=True)
            budget = max(float(cap), least)
        return WindowModel(
            first=lo,
            last=hi,
            per_slot_wh=per,
            need_wh=float(need),
            later_wh=later_wh,
            later_cost=later_cost,
            budget=budget,
        )

    cap = None
    if settings.import_limit_w is not None:
        cap = np.full(n, float(energy_wh(settings.import_limit_w, sec)))
    tiers = None
    if settings.flat_tiers is not None:
        (w1, p1), (w2, p2) = settings.flat_tiers
        if share:
            p1 = min(p1, settings.shared_tiers_pct[0])
            p2 = min(p2, settings.shared_tiers_pct[1])
        mean = max(float(np.mean(forecast.import_price)), 0.0)
        tiers = (
            (float(energy_wh(w1, sec)), mean * p1 / 100),
            (float(energy_wh(w2, sec)), mean * p2 / 100),
        )
    room = None
    if share:
        # the home's own inflexible import, plus its share of what the community's
        # capacity leaves; slots beyond the shares given are not limited
        room = np.full(n, INF)
        k = min(len(share), n)
        base = np.maximum(net[:k], 0.0)
        room[:k] = base + np.asarray([energy_wh(w, sec) for w in share[:k]], dtype=float)
    mean_price = max(float(np.mean(forecast.import_price)), 0.0)
    top = max(*forecast.import_price, 1)
    return LpInput(
        net_wh=net,
        buy_price=buy,
        sell_price=sell,
        flex_price=flex,
        import_cap_wh=cap,
        tiers=tiers,
        room_wh=room,
        room_cost=mean_price * settings.capacity_cost_pct / 100,
        batteries=bats,
        evs=tuple(
            window(e.arrive, e.depart, e.max_power_w, e.energy_wh, e.cost_cap)
            for e in evs
            if e.energy_wh > 0
        ),
        plugs=tuple(
            window(p.earliest, p.deadline, p.power_w, p.energy_wh, p.cost_cap)
            for p in plugs
            if p.energy_wh > 0
        ),
        big=100.0 * top,
    )


def _fill_cost(
    buy: NDArray[Any],
    first: int,
    last: int,
    per_slot: float,
    need: float,
    later_wh: float,
    later_cost: float,
    *,
    cheap: bool = False,
) -> float:
    """What a window's energy costs at the import prices ``buy``: flat out from its start
    (the device's own logic), or in its cheapest slots (``cheap``); what is left after the
    horizon at ``later_cost``."""
    lo, hi = max(0, first), min(int(buy.size), last)
    slots = [(float(buy[k]), per_slot) for k in range(lo, hi)] + [(later_cost, later_wh)]
    if cheap:
        slots.sort(key=lambda s: s[0])
    cost, left = 0.0, need
    for price, room in slots:
        if left <= 0:
            break
        take = min(max(room, 0.0), left)
        cost += price * take
        left -= take
    return cost


def _control(
    forecast: HomeForecast,
    batteries: Sequence[BatteryState],
    evs: Sequence[EvSession],
    plugs: Sequence[PlugTask],
    policy: OwnerPolicy,
    expected: tuple[int, ...],
    settings: PlannerSettings,
    share: tuple[int, ...] = (),
    *,
    sale: tuple[int, ...] = (),
) -> HomePlan:
    imp0, fit0 = forecast.import_price[0], forecast.feed_in_tariff[0]
    lo, hi = min(fit0, imp0), imp0
    data = _lp_input(forecast, batteries, evs, plugs, expected, settings, share, sale=sale)
    lp = HomeLP(data)
    solved: dict[int, LpSolution] = {}

    def at(price: int) -> int:
        if price not in solved:
            solved[price] = lp.solve_at(float(price))
        return round(solved[price].net0)

    at(lo)
    if hi != lo:
        at(hi)
    stack = [(lo, hi)] if hi - lo > settings.price_step else []
    while stack and lp.solves < settings.max_solves:
        a, b = stack.pop()
        if at(a) <= at(b):
            continue
        mid = (a + b) // 2
        if mid in (a, b):
            continue
        at(mid)
        for part in ((a, mid), (mid, b)):
            if part[1] - part[0] > settings.price_step:
                stack.append(part)
    prices = sorted(solved)
    if expected:
        ref_price = min(max(expected[0], lo), hi)
    else:  # the home alone: the grid's price on its side, or where it is self-sufficient
        ref_price = next((p for p in prices if at(p) <= 0), hi) if at(hi) <= 0 else hi
    ref = _nearest(solved, ref_price)
    assets = slot0_assets(solved, prices, forecast.slot_seconds, batteries, evs, plugs)
    monotone(assets)
    bids = _fixed_bids(forecast, policy, settings)
    bids += asset_bids(assets, prices, forecast, batteries, evs, plugs, ref, ref_price)
    net_fixed = forecast.load_wh[0] - forecast.pv_wh[0]
    curve = tuple((p, net_fixed + sum(a.values[j] for a in assets)) for j, p in enumerate(prices))
    rows = _rows(
        forecast,
        expected,
        battery=np.rint((ref.charge - ref.discharge).sum(axis=0)).astype(np.int64),
        soc=np.rint(ref.soc.sum(axis=0)).astype(np.int64),
        ev=np.rint(ref.ev.sum(axis=0)).astype(np.int64),
        plug=np.rint(ref.plug.sum(axis=0)).astype(np.int64),
        imports=np.rint(ref.buy).astype(np.int64),
        exports=np.rint(ref.sell).astype(np.int64),
    )
    return HomePlan(
        mode=PlanMode.CONTROL,
        start=forecast.start,
        slot_seconds=forecast.slot_seconds,
        slots=rows,
        bids=tuple(bids),
        curve=curve,
        import_price=imp0,
        feed_in_tariff=fit0,
        solves=lp.solves,
        fallbacks=lp.fallbacks,
        **_margins(forecast, settings),
    )


def _nearest(solved: dict[int, LpSolution], price: int) -> LpSolution:
    best = min(solved, key=lambda p: (abs(p - price), p))
    return solved[best]
