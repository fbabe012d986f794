"""Allocation on top of the kernels: market pools and their prices, pro-rata rationing
at the price, scarcity reallocation by priority, fair-share limits, and grid residuals."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from ..fairness import Divider
from ..orders import BASIS_POINTS, MarketRules, Order
from ..scarcity import priority_split
from .columns import Flat, Pool, Steps, ints
from .kernels import merit, walk
from .results import Context


def price_interval(b: Steps, s: Steps, q: int) -> tuple[int, int]:
    """Competitive price interval for volume ``q`` > 0."""
    los = [v for v in (s.value_at(q), b.value_at(q + 1)) if v is not None]
    his = [v for v in (b.value_at(q), s.value_at(q + 1)) if v is not None]
    return max(los), min(his)


def midpoint(lo: int, hi: int) -> int:
    return (lo + hi) // 2


def make_pools(fb: Flat, fs: Flat, sell_qty: list[int] | None) -> tuple[list[Pool], bool]:
    """Surplus-maximising volumes and prices: one merged pool, or clean and general pools."""
    b, s = merit(fb, buyers=True), merit(fs, buyers=False, qty=sell_qty)
    pools: list[Pool] = []
    q = walk(b, s, constrained=True)
    if q is not None:
        if q > 0:
            lo, hi = price_interval(b, s, q)
            pools.append(Pool(b, s, midpoint(lo, hi), q))
        return pools, True
    kb = merit(fb, buyers=True, flag_filter=1)
    cs = merit(fs, buyers=False, flag_filter=0, qty=sell_qty)
    ib = merit(fb, buyers=True, flag_filter=0)
    ns = merit(fs, buyers=False, flag_filter=1, qty=sell_qty)
    qc = walk(kb, cs, constrained=False) or 0
    qn = walk(ib, ns, constrained=False) or 0
    pc = pn = None
    if qc > 0:
        lo_c, hi_c = price_interval(kb, cs, qc)
        pc = midpoint(lo_c, hi_c)
    if qn > 0:
        lo_n, hi_n = price_interval(ib, ns, qn)
        pn = midpoint(lo_n, hi_n)
    if pc is not None and pn is not None and pc < pn:
        # The intervals then overlap and one common price is an equilibrium too.
        pc = pn = midpoint(max(lo_c, lo_n), min(hi_c, hi_n))
    if pc is not None:
        pools.append(Pool(kb, cs, pc, qc))
    if pn is not None:
        pools.append(Pool(ib, ns, pn, qn))
    return pools, False


def ration(
    st: Steps,
    x: list[int],
    price: int,
    volume: int,
    div: Divider,
    orders: Sequence[Order],
) -> None:
    """Fill steps strictly better than ``price``; share the rest pro rata at the price."""
    i1, i2 = st.level(price)
    x[:i1] = st.qty[:i1]
    rest = volume - st.cum_before(i1)
    k = i1
    if rest > 0 and i2 > i1:
        mflags = ints(st.np[1][i1:i2]) if st.np is not None else st.flag[i1:i2]
        flags = [0] * i1 + mflags  # indexable by merit position up to i2
    while k < i2 and rest > 0:
        g_end = k
        while g_end < i2 and flags[g_end] == flags[k]:
            g_end += 1
        caps = st.qty[k:g_end]
        take = min(rest, sum(caps))
        owners = [orders[st.oi[i]].owner for i in range(k, g_end)]
        ids = [f"{orders[st.oi[i]].order_id}#{i}" for i in range(k, g_end)]
        shares = div.waterfill(take, caps, caps, owners, ids)
        for off, v in enumerate(shares):
            x[k + off] = v
        rest -= take
        k = g_end


def scarcity_buyers(
    pool: Pool,
    orders: Sequence[Order],
    stake_weight: Mapping[str, int],
    div: Divider,
    clean_limit: int | None,
) -> None:
    """Reallocate a pool's volume among buyers willing to pay its price, by priority."""
    b = pool.b
    end = b.level(pool.price)[1]
    by_order: dict[int, list[int]] = {}
    for i in range(end):
        by_order.setdefault(b.oi[i], []).append(i)
    ois = sorted(by_order)
    demands = [sum(b.qty[i] for i in by_order[o]) for o in ois]

    def split(volume: int, sel: list[int], caps: list[int]) -> list[int]:
        return priority_split(
            volume,
            caps,
            [orders[ois[k]].priority for k in sel],
            [orders[ois[k]].owner for k in sel],
            [orders[ois[k]].order_id for k in sel],
            stake_weight,
            div,
        )

    everyone = list(range(len(ois)))
    alloc = split(pool.volume, everyone, demands)
    if clean_limit is not None:
        konly = [k for k in everyone if orders[ois[k]].clean_only]
        if sum(alloc[k] for k in konly) > clean_limit:
            kalloc = split(clean_limit, konly, [alloc[k] for k in konly])
            indiff = [k for k in everyone if not orders[ois[k]].clean_only]
            ialloc = split(pool.volume - clean_limit, indiff, [demands[k] for k in indiff])
            alloc = [0] * len(ois)
            for k, v in zip(konly, kalloc, strict=True):
                alloc[k] = v
            for k, v in zip(indiff, ialloc, strict=True):
                alloc[k] = v
    pool.bx = [0] * len(b.qty)
    for k, o in enumerate(ois):
        rest = alloc[k]
        for i in by_order[o]:
            take = min(rest, b.qty[i])
            pool.bx[i] = take
            rest -= take


def fair_share_limits(
    volume: int, fb: Flat, fs: Flat, orders: Sequence[Order], share_bp: int
) -> tuple[list[int], list[str]]:
    """Sell quantities truncated to the fair share, and the owners that were capped.

    With ``volume`` the uncapped cleared volume, owner ``o`` may offer at most
    ``max(volume * share_bp // 10000, volume - others)`` Wh, where ``others`` is what all
    other sellers offer at asks some buyer accepts; its dearest steps are cut first.
    """
    cap = volume * share_bp // BASIS_POINTS
    top_bid = max(fb.eff)
    eff, ois, src_qty = fs.eff, fs.oi, fs.qty
    tradeable: dict[str, list[int]] = {}
    for f, e in enumerate(eff):
        if e <= top_bid:
            tradeable.setdefault(orders[ois[f]].owner, []).append(f)
    offered = {o: sum(src_qty[f] for f in steps) for o, steps in tradeable.items()}
    total = sum(offered.values())
    qty = list(src_qty)
    capped: list[str] = []
    for owner in sorted(tradeable):
        allowed = max(cap, volume - (total - offered[owner]))
        if offered[owner] <= allowed:
            continue
        capped.append(owner)
        left = allowed
        for f in sorted(tradeable[owner], key=lambda f: (eff[f], f)):
            qty[f] = min(qty[f], left)
            left -= qty[f]
    return qty, capped


def collect(pools: Sequence[Pool], n: int, *, buyers: bool) -> list[int]:
    """Per-step allocations of one side, indexed like its :class:`Flat`."""
    out = [0] * n
    for pool in pools:
        st, x = (pool.b, pool.bx) if buyers else (pool.s, pool.sx)
        deque(map(out.__setitem__, st.flat, x), maxlen=0)  # out[flat[i]] = x[i], in C
    return out


def import_residuals(fb: Flat, gbx: Sequence[int], rules: MarketRules) -> dict[int, int]:
    """Unfilled Wh per buy order of steps at or above the import price (they use the grid)."""
    out: dict[int, int] = {}
    qty, ois = fb.qty, fb.oi
    for f in fb.where(rules.import_price, at_least=True):
        r = qty[f] - gbx[f]
        if r:
            oi = ois[f]
            out[oi] = out.get(oi, 0) + r
    return out


def grid_flows(
    ctx: Context, gsx: Sequence[int], residual: Mapping[int, int]
) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Grid import per buy order, grid export and export residual per sell order."""
    orders, rules = ctx.orders, ctx.rules
    imp_cap = rules.import_capacity_wh if rules.grid_available else 0
    r_ois = sorted(residual)
    r_dem = [residual[o] for o in r_ois]
    if imp_cap is None or imp_cap >= sum(r_dem):
        imported = r_dem
    else:
        imported = priority_split(
            imp_cap,
            r_dem,
            [orders[o].priority for o in r_ois],
            [orders[o].owner for o in r_ois],
            [orders[o].order_id for o in r_ois],
            ctx.stake_weight,
            ctx.div,
        )
    export_residual: dict[int, int] = {}
    fs = ctx.fs
    qty, ois = fs.qty, fs.oi
    for f in fs.where(rules.feed_in_tariff, at_least=False):
        r = qty[f] - gsx[f]
        if r:
            oi = ois[f]
            export_residual[oi] = export_residual.get(oi, 0) + r
    e_ois = sorted(export_residual)
    e_res = [export_residual[o] for o in e_ois]
    exp_cap = rules.export_capacity_wh if rules.grid_available else 0
    if exp_cap is None or exp_cap >= sum(e_res):
        exported = e_res
    else:
        exported = ctx.div.waterfill(
            exp_cap,
            e_res,
            e_res,
            [orders[o].owner for o in e_ois],
            [orders[o].order_id for o in e_ois],
        )
    return (
        dict(zip(r_ois, imported, strict=True)),
        dict(zip(e_ois, exported, strict=True)),
        export_residual,
    )
