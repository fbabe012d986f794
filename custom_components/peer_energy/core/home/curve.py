"""The first slot's bids from the plan's solves: one monotone step curve per asset.

The planner solves its LP at several first-slot prices (ascending); :func:`slot0_assets`
reads each flexible asset's first-slot energy at every solved price, :func:`monotone` makes
every asset's energy non-increasing in price while keeping the sum's increments (each
increment of the home's net import is shared among the assets that moved that way, by
largest remainder), and :func:`asset_bids` turns that into step curves with reasons:
demand increments at the lower price of an interval, supply increments at the upper one, so
the home is never filled beyond what it wants at the price it gets.

Public API: :class:`AssetCurve`, :func:`slot0_assets`, :func:`monotone`, :func:`shares`,
:func:`asset_bids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..market.orders import Reason, Side, Step
from .agents import AssetBid, AssetKind, BatteryState
from .devices import EvSession, PlugTask, energy_wh, last_slot
from .forecast import HomeForecast
from .home_lp import LpSolution


@dataclass
class AssetCurve:
    """One flexible asset's first-slot energy (+ consumes) at each solved price."""

    asset_id: str
    kind: AssetKind
    values: list[int]
    clean: bool = False


def slot0_assets(
    solved: dict[int, LpSolution],
    prices: list[int],
    slot_seconds: int,
    batteries: Sequence[BatteryState],
    evs: Sequence[EvSession],
    plugs: Sequence[PlugTask],
) -> list[AssetCurve]:
    """First-slot energy per asset at each solved price, rounded towards zero (in limits)."""
    assets: list[AssetCurve] = []
    active = [b for b in batteries if b.capacity_wh > 0]
    for j, b in enumerate(active):
        # The LP may charge and discharge in one slot (it burns energy when prices are
        # negative); a battery does one or the other, so the net is kept within what one
        # direction allows.
        room = min(
            max(0, b.capacity_wh - b.soc_wh) * 100 // max(1, min(100, b.efficiency_pct)),
            energy_wh(b.max_charge_w, slot_seconds),
        )
        stock = min(max(0, b.soc_wh - b.reserve_wh), energy_wh(b.max_discharge_w, slot_seconds))
        assets.append(
            AssetCurve(
                b.asset_id,
                AssetKind.BATTERY,
                [
                    min(
                        room,
                        max(-stock, int(solved[p].charge[j, 0]) - int(solved[p].discharge[j, 0])),
                    )
                    for p in prices
                ],
                clean=b.clean,
            )
        )
    groups: dict[tuple[AssetKind, str], list[int]] = {}
    ev_rows = [k for k, e in enumerate(evs) if e.energy_wh > 0]
    for row, k in enumerate(ev_rows):
        key = (AssetKind.EV, evs[k].asset_id)
        vals = [int(solved[p].ev[row, 0]) for p in prices]
        groups[key] = [a + b for a, b in zip(groups.get(key, [0] * len(prices)), vals, strict=True)]
    plug_rows = [k for k, t in enumerate(plugs) if t.energy_wh > 0]
    for row, k in enumerate(plug_rows):
        key = (AssetKind.PLUG, plugs[k].asset_id)
        vals = [int(solved[p].plug[row, 0]) for p in prices]
        groups[key] = [a + b for a, b in zip(groups.get(key, [0] * len(prices)), vals, strict=True)]
    assets += [AssetCurve(aid, kind, vals) for (kind, aid), vals in groups.items()]
    return assets


def monotone(assets: list[AssetCurve]) -> None:
    """Make every asset's first-slot energy non-increasing in price, keeping the sum's
    increments (see the module docstring); in place."""
    if not assets:
        return
    m = len(assets[0].values)
    raw = [list(a.values) for a in assets]
    for i, a in enumerate(assets):
        a.values = [0] * m
        a.values[m - 1] = raw[i][m - 1]
    for j in range(m - 2, -1, -1):
        delta = [raw[i][j] - assets[i].values[j + 1] for i in range(len(assets))]
        split = shares(max(0, sum(delta)), [max(d, 0) for d in delta])
        for i, a in enumerate(assets):
            a.values[j] = a.values[j + 1] + split[i]


def shares(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` (<= sum of weights) in proportion to ``weights`` (largest remainder)."""
    wsum = sum(weights)
    if total <= 0 or wsum <= 0:
        return [0] * len(weights)
    total = min(total, wsum)
    base = [w * total // wsum for w in weights]
    rest = total - sum(base)
    order = sorted(range(len(weights)), key=lambda i: (-(weights[i] * total % wsum), i))
    for i in order[:rest]:
        base[i] += 1
    return base


def asset_bids(
    assets: list[AssetCurve],
    prices: list[int],
    forecast: HomeForecast,
    batteries: Sequence[BatteryState],
    evs: Sequence[EvSession],
    plugs: Sequence[PlugTask],
    ref: LpSolution,
    ref_price: int,
) -> list[AssetBid]:
    """Step curves per asset from its monotone first-slot energies."""
    slot0, sec, start = forecast.start, forecast.slot_seconds, forecast.start
    out: list[AssetBid] = []
    m = len(prices)
    for a in assets:
        use = [max(v, 0) for v in a.values]
        give = [max(-v, 0) for v in a.values]
        buy: list[Step] = []
        for j in range(m - 1, -1, -1):
            q = use[j] - (use[j + 1] if j + 1 < m else 0)
            if q > 0:
                buy.append(Step(prices[j], q))
        sell: list[Step] = []
        for j in range(m):
            q = give[j] - (give[j - 1] if j > 0 else 0)
            if q > 0:
                sell.append(Step(prices[j], q))
        if a.kind is AssetKind.BATTERY:
            k = next(
                i
                for i, b in enumerate(b for b in batteries if b.capacity_wh > 0)
                if b.asset_id == a.asset_id
            )
            b = [b for b in batteries if b.capacity_wh > 0][k]
            params: dict[str, int | str] = {
                "soc_pct": b.soc_wh * 100 // b.capacity_wh,
                "reserve_pct": b.reserve_pct,
                "expected": ref_price,
                "plan_wh": int(ref.charge[k, 0] - ref.discharge[k, 0]),
            }
            net_plan = ref.charge[k] - ref.discharge[k]
            if buy:
                later = [i for i in range(1, len(net_plan)) if net_plan[i] < -0.5]
                params_b = {**params, "use_in_slots": later[0] if later else 0}
                out.append(
                    AssetBid(
                        a.asset_id,
                        a.kind,
                        slot0,
                        Side.BUY,
                        tuple(buy),
                        Reason.of("battery_charge_cheap", **params_b),
                    )
                )
            if sell:
                later = [i for i in range(1, len(net_plan)) if net_plan[i] > 0.5]
                params_s = {**params, "refill_in_slots": later[0] if later else 0}
                out.append(
                    AssetBid(
                        a.asset_id,
                        a.kind,
                        slot0,
                        Side.SELL,
                        tuple(sell),
                        Reason.of("battery_discharge_dear", **params_s),
                        clean=a.clean,
                    )
                )
            continue
        if not buy:
            continue
        if a.kind is AssetKind.EV:
            sessions = [e for e in evs if e.asset_id == a.asset_id and e.energy_wh > 0]
            need = sum(e.energy_wh for e in sessions)
            depart = min(e.depart for e in sessions)
            per = energy_wh(max(e.max_power_w for e in sessions), sec)
            left = last_slot(depart, start, sec)
            urgent = need > per * max(left - 1, 0)
            code = "ev_deadline" if urgent else "ev_charge"
            params = {"need_wh": need, "slots_left": left, "expected": ref_price}
        else:
            tasks = [t for t in plugs if t.asset_id == a.asset_id and t.energy_wh > 0]
            need = sum(t.energy_wh for t in tasks)
            deadline = min(t.deadline for t in tasks)
            per = energy_wh(max(t.power_w for t in tasks), sec)
            left = last_slot(deadline, start, sec)
            urgent = need > per * max(left - 1, 0)
            code = "plug_delay_exhausted" if urgent else "plug_run"
            params = {"need_wh": need, "slots_left": left, "expected": ref_price}
        out.append(
            AssetBid(a.asset_id, a.kind, slot0, Side.BUY, tuple(buy), Reason.of(code, **params))
        )
    return out
