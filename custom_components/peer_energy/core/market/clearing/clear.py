"""Clearing one slot (:func:`clear_slot`) and a whole book (:func:`clear_book`): the steps
of the mechanism in order (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import compress
from math import sumprod
from operator import attrgetter

import numpy as np

from ..fairness import Divider, FairnessState
from ..orders import BASIS_POINTS, MarketRules, Order, OrderBook, Side
from ..scarcity import stake_weights
from .allocation import (
    collect,
    fair_share_limits,
    grid_flows,
    import_residuals,
    make_pools,
    ration,
    scarcity_buyers,
)
from .columns import SAFE, FillTable, Pool, Segments, Steps
from .kernels import flatten, pair
from .results import ORDER_ID, ClearingResult, Context, ResultParts, SlotResult


def clear_slot(
    orders: Sequence[Order],
    rules: MarketRules,
    *,
    slot_start: int,
    fairness: FairnessState | None = None,
    stakes: Mapping[str, str] | Sequence[tuple[str, str]] = (),
) -> SlotResult:
    """Clear one slot. ``orders`` must be validated orders of that slot (others are ignored).

    Any integers clear exactly; the bounds that keep every amount of the result within the
    canonical encoding (``orders.MAX_SLOT_ENERGY_WH`` and the price bounds) are checked
    where orders enter (``validate_order``, ``parse_book``, the protocol's bid admission).
    """
    mine = [o for o in orders if o.slot_start == slot_start]
    return _clear(mine, rules, slot_start, fairness, stakes)


def _clear(
    mine: Sequence[Order],
    rules: MarketRules,
    slot_start: int,
    fairness: FairnessState | None,
    stakes: Mapping[str, str] | Sequence[tuple[str, str]],
) -> SlotResult:
    fairness = fairness if fairness is not None else FairnessState()
    buy = Side.BUY
    ranked = sorted([o for o in mine if o.side is buy], key=ORDER_ID)
    n_buy = len(ranked)
    ranked += sorted([o for o in mine if o.side is not buy], key=ORDER_ID)
    div = Divider(fairness, slot_start)
    stake_weight = stake_weights(stakes)
    fb, fs = flatten(ranked, n_buy, rules)
    pools, merged = make_pools(fb, fs, None)
    if rules.fair_share_bp < BASIS_POINTS and pools:
        qty, capped = fair_share_limits(
            sum(p.volume for p in pools), fb, fs, ranked, rules.fair_share_bp
        )
        if capped:
            for owner in capped:
                div.win(owner)
            pools, merged = make_pools(fb, fs, qty)

    for pool in pools:
        ration(pool.s, pool.sx, pool.price, pool.volume, div, ranked)
    wins_before_buyers = dict(div.won)
    for pool in pools:
        ration(pool.b, pool.bx, pool.price, pool.volume, div, ranked)

    # Scarcity: grid unavailable, or unfilled must-run demand exceeds the import capacity.
    gbx = collect(pools, len(fb), buyers=True)
    residual = import_residuals(fb, gbx, rules)
    scarcity = not rules.grid_available or (
        rules.import_capacity_wh is not None and sum(residual.values()) > rules.import_capacity_wh
    )
    if scarcity and pools:
        div.won = wins_before_buyers  # the price-based buyer rationing is replaced
        for pool in pools:
            clean_limit = sum(x for x, f in zip(pool.sx, pool.s.flag, strict=True) if f == 0)
            scarcity_buyers(pool, ranked, stake_weight, div, clean_limit if merged else None)
        gbx = collect(pools, len(fb), buyers=True)
        residual = import_residuals(fb, gbx, rules)

    segments = Segments()
    partners = any(map(_PARTNERS, ranked))
    for pool in pools:
        pair(pool, ranked, rules, segments, partners)
    raw_fills = segments.aggregate()

    return _summarise(
        Context(ranked, rules, slot_start, fb, fs, stake_weight, div, fairness),
        pools,
        merged,
        scarcity,
        raw_fills,
        residual,
        gbx,
    )


def clear_book(book: OrderBook) -> ClearingResult:
    """Clear every slot of a validated book in slot order, threading the fairness state."""
    state = book.fairness
    results: list[SlotResult] = []
    by_slot: dict[int, list[Order]] = {}
    for order in book.orders:  # grouped once: linear in the number of slots
        by_slot.setdefault(order.slot_start, []).append(order)
    for start in sorted(by_slot):
        result = _clear(by_slot[start], book.rules, start, state, book.stakes)
        results.append(result)
        state = result.fairness
    return ClearingResult(tuple(results), state)


_PARTNERS = attrgetter("preferred_partners")


def _summarise(
    ctx: Context,
    pools: Sequence[Pool],
    merged: bool,
    scarcity: bool,
    raw_fills: FillTable,
    residual: Mapping[int, int],
    gbx: list[int],
) -> SlotResult:
    fee = ctx.rules.distributor_fee
    surplus = 0
    clean_volume = 0
    for pool in pools:
        b, s = pool.b, pool.s
        if b.np is not None and s.np is not None and pool.volume * _top(b, s) < SAFE:
            bx, sx = pool.arrays()
            surplus += int(bx @ b.np[0]) - int(sx @ s.np[0])
            clean_volume += int(sx[s.np[1] == 0].sum())
        else:
            surplus += int(sumprod(pool.bx, b.eff)) - int(sumprod(pool.sx, s.eff))
            clean_volume += sum(compress(pool.sx, [not f for f in s.flag]))
    volume = sum(p.volume for p in pools)
    gsx = collect(pools, len(ctx.fs), buyers=False)
    grid_in, grid_out, export_residual = grid_flows(ctx, gsx, residual)

    if not pools:
        mode, gp, cp = "no_trade", None, None
    elif merged:
        mode = "single_price"
        gp = pools[0].price
        cp = gp if clean_volume else None
    else:
        mode = "two_prices"
        gp = next((p.price for p in pools if p.s.first_flag() == 1), None)
        cp = next((p.price for p in pools if p.s.first_flag() == 0), None)
    imported = sum(grid_in.values())
    exported = sum(grid_out.values())
    return SlotResult(
        slot_start=ctx.slot_start,
        mode=mode,
        general_price=gp,
        clean_price=cp,
        volume_wh=volume,
        clean_volume_wh=clean_volume,
        surplus_milli=surplus,
        fees_milli=volume * fee,
        scarcity=scarcity,
        grid_import_wh=imported,
        grid_export_wh=exported,
        unserved_wh=sum(residual.values()) - imported,
        curtailed_wh=sum(export_residual.values()) - exported,
        fairness=ctx.div.state_after(ctx.fairness),
        _parts=ResultParts(ctx, raw_fills, gbx, gsx, residual, grid_in, grid_out, export_residual),
    )


def _top(b: Steps, s: Steps) -> int:
    """Largest absolute effective price of two int64-backed step lists."""
    assert b.np is not None
    assert s.np is not None
    return max(int(np.abs(b.np[0]).max()), int(np.abs(s.np[0]).max()), 1)
