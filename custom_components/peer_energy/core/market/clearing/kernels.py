"""The clearing kernels, each with its two variants side by side: exact Python ints (any
size) and vectorised numpy int64 (when the numbers fit, below :data:`.columns.SAFE`).
The numpy variant is an optimisation only: both give identical results (a property test
checks it). Flattening orders into columns, sorting into merit order, walking both merit
orders for the surplus-maximising volume, and pairing buyer with seller steps."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import attrgetter

import numpy as np

from ..orders import MarketRules, Order, Pricing, Step
from .columns import I64, SAFE, SAFE_PRICE, Flat, Pool, Segments, Steps, as_i64, ints


def flatten(orders: Sequence[Order], n_buy: int, rules: MarketRules) -> tuple[Flat, Flat]:
    """Split the ranked orders (buy orders first) into step columns, empty steps dropped."""
    out = []
    rules_fit = (
        max(abs(rules.import_price), abs(rules.feed_in_tariff), rules.distributor_fee) < SAFE_PRICE
    )
    for want in (True, False):
        ois = range(n_buy) if want else range(n_buy, len(orders))
        sel = orders[:n_buy] if want else orders[n_buy:]
        step_lists = list(map(_STEPS, sel))
        nst = list(map(len, step_lists))
        pairs: list[Step] = list(chain.from_iterable(step_lists))
        # a flag per order: 1 for clean-only buyers and for sellers that are not clean
        flags = (
            [int(f) for f in map(_CLEAN_ONLY, sel)]
            if want
            else [0 if f else 1 for f in map(_CLEAN, sel)]
        )
        flat = None
        if pairs and rules_fit:
            flat = _flatten_np(want, rules, ois, nst, flags, pairs)
        if flat is None:
            price = [st.price for st in pairs]
            qty = [st.energy_wh for st in pairs]
            flat = _flatten_py(want, rules, ois, nst, flags, price, qty)
        out.append(flat)
    return out[0], out[1]


_STEPS = attrgetter("steps")
_CLEAN = attrgetter("clean")
_CLEAN_ONLY = attrgetter("clean_only")


def _effective(want_buy: bool, rules: MarketRules, price: list[int]) -> list[int]:
    if want_buy:
        cap, fee = rules.import_price, rules.distributor_fee
        return [(p if p < cap else cap) - fee for p in price]
    floor = rules.feed_in_tariff
    return [p if p > floor else floor for p in price]


def _flatten_py(
    want_buy: bool,
    rules: MarketRules,
    ois: range,
    nst: list[int],
    flags: list[int],
    price: list[int],
    qty: list[int],
) -> Flat:
    oi = [o for o, n in zip(ois, nst, strict=True) for _ in range(n)]
    k = [j for n in nst for j in range(n)]
    flag = [g for g, n in zip(flags, nst, strict=True) for _ in range(n)]
    keep = [f for f, q in enumerate(qty) if q > 0]
    cols = {
        name: [col[f] for f in keep]
        for name, col in (("price", price), ("qty", qty), ("oi", oi), ("k", k), ("flag", flag))
    }
    return Flat(
        {
            "eff": _effective(want_buy, rules, cols["price"]),
            "flag": cols["flag"],
            "oi": cols["oi"],
            "k": cols["k"],
            "qty": cols["qty"],
            "raw": cols["price"],
        }
    )


def _flatten_np(
    want_buy: bool,
    rules: MarketRules,
    ois: range,
    nst: list[int],
    flags: list[int],
    pairs: list[Step],
) -> Flat | None:
    """Columns as int64 arrays; None when a number does not fit (then use Python ints)."""
    try:
        flat = chain.from_iterable(pairs)  # price, energy, price, energy, ...
        both: I64 = np.fromiter(flat, dtype=np.int64, count=2 * len(pairs)).reshape(-1, 2)
    except OverflowError:
        return None
    raw_a: I64 = np.ascontiguousarray(both[:, 0])
    qty_a: I64 = np.ascontiguousarray(both[:, 1])
    top = int(qty_a.max())
    if (
        int(raw_a.min()) <= -SAFE_PRICE
        or int(raw_a.max()) >= SAFE_PRICE
        or top * len(pairs) >= SAFE
        or int(qty_a.min()) < 0
    ):
        return None
    oi_a: I64
    flag_a: I64
    k_a: I64
    if len(pairs) == len(ois):
        oi_a, flag_a = np.arange(ois.start, ois.stop, dtype=np.int64), as_i64(flags)
        k_a = np.zeros(len(ois), dtype=np.int64)
    else:
        n_a = as_i64(nst)
        oi_a = np.repeat(np.arange(ois.start, ois.stop, dtype=np.int64), n_a)
        flag_a = np.repeat(as_i64(flags), n_a)
        k_a = np.arange(len(pairs), dtype=np.int64) - np.repeat(np.cumsum(n_a) - n_a, n_a)
    keep = qty_a > 0
    if not keep.all():
        raw_a, qty_a, oi_a, flag_a, k_a = (a[keep] for a in (raw_a, qty_a, oi_a, flag_a, k_a))
    if want_buy:
        eff_a = np.minimum(raw_a, rules.import_price) - rules.distributor_fee
    else:
        eff_a = np.maximum(raw_a, rules.feed_in_tariff)
    return Flat(
        {},
        {"eff": eff_a, "flag": flag_a, "oi": oi_a, "k": k_a, "qty": qty_a, "raw": raw_a},
    )


def merit(
    src: Flat,
    *,
    buyers: bool,
    flag_filter: int | None = None,
    qty: list[int] | None = None,
) -> Steps:
    """Sort a side into merit order: effective price, then flag, then order id and step.

    ``qty`` overrides the step quantities (fair-share truncation); empty steps are left out.
    """
    if not len(src):
        return Steps(buyers, [], [], [], [], [])
    arrays = src.arrays()
    if arrays is not None:  # quantities only ever shrink (fair share), so they fit too
        eff_a, flag_a, oi_a, q_a = arrays
        if qty is not None:
            q_a = as_i64(qty)
        key_a = (-eff_a if buyers else eff_a) * 2 + flag_a
        mask = q_a > 0
        if flag_filter is not None:
            mask &= flag_a == flag_filter
        idx = np.flatnonzero(mask)
        perm = idx[np.argsort(key_a[idx], kind="stable")]
        eff_p, flag_p, q_p = eff_a[perm], flag_a[perm], q_a[perm]
        return Steps(
            buyers,
            ints(perm),
            None,
            None,
            ints(q_p),
            None,
            (eff_p, flag_p, np.cumsum(q_p), oi_a[perm]),
        )
    q = src.qty if qty is None else qty
    eff, flag = src.eff, src.flag
    sel = [f for f in range(len(q)) if q[f] and (flag_filter is None or flag[f] == flag_filter)]
    sign = -1 if buyers else 1
    sel.sort(key=lambda f: (sign * eff[f], flag[f], f))
    return Steps(
        buyers,
        sel,
        [eff[f] for f in sel],
        [flag[f] for f in sel],
        [q[f] for f in sel],
        [src.oi[f] for f in sel],
    )


def walk(b: Steps, s: Steps, constrained: bool) -> int | None:
    """Largest surplus-maximising volume, optionally with clean-only volume <= clean volume.

    Walks both merit orders; units with bid > ask must trade, units with bid == ask may.
    Returns None when no surplus-maximising volume satisfies the constraint.
    """
    if b.np is not None and s.np is not None:
        return _walk_np(b.np[:3], s.np[:3], constrained)
    i = j = 0
    nb, ns = len(b.qty), len(s.qty)
    rb = b.qty[0] if nb else 0
    rs = s.qty[0] if ns else 0
    q = 0
    f = 0  # clean-only Wh minus clean Wh in the prefix
    best: int | None = None
    positive = True
    while i < nb and j < ns and b.eff[i] >= s.eff[j]:
        if positive and b.eff[i] == s.eff[j]:
            positive = False
            if f <= 0:
                best = q
        t = rb if rb < rs else rs
        if constrained:
            df = b.flag[i] - (1 - s.flag[j])
            if positive:
                f += df * t
            else:
                end = f + df * t
                if df <= 0:
                    if end <= 0:
                        best = q + t
                elif f <= 0:
                    best = q + min(t, -f)
                f = end
        elif not positive:
            best = q + t
        q += t
        rb -= t
        rs -= t
        if rb == 0:
            i += 1
            rb = b.qty[i] if i < nb else 0
        if rs == 0:
            j += 1
            rs = s.qty[j] if j < ns else 0
    if positive and f <= 0:
        best = q
    return best


def _walk_np(b: tuple[I64, ...], s: tuple[I64, ...], constrained: bool) -> int | None:
    """:func:`walk` on int64 arrays: the same segments, evaluated all at once."""
    b_eff, b_flag, cb = b
    s_eff, s_flag, cs = s
    if not len(cb) or not len(cs):
        return 0
    total = min(int(cb[-1]), int(cs[-1]))
    ends = np.union1d(cb[cb < total], cs[cs < total])
    ends = np.append(ends, total)
    starts = np.concatenate((np.zeros(1, dtype=np.int64), ends[:-1]))
    bi = np.searchsorted(cb, ends, side="left")
    sj = np.searchsorted(cs, ends, side="left")
    be, se = b_eff[bi], s_eff[sj]
    bad = np.flatnonzero(be < se)
    m = int(bad[0]) if len(bad) else len(ends)  # segments [0, m) trade
    zero = np.flatnonzero(be[:m] == se[:m])
    m_pos = int(zero[0]) if len(zero) else m  # segments [0, m_pos) have positive surplus
    q_lo = int(ends[m_pos - 1]) if m_pos else 0
    if not constrained:
        return int(ends[m - 1]) if m else 0
    length = ends[:m] - starts[:m]
    df = b_flag[bi[:m]] - (1 - s_flag[sj[:m]])
    f_end = np.cumsum(df * length)
    f_start = f_end - df * length
    best: int | None = None
    if (int(f_end[m_pos - 1]) if m_pos else 0) <= 0:
        best = q_lo
    if m > m_pos:
        d, fs_, fe = df[m_pos:], f_start[m_pos:], f_end[m_pos:]
        st, ln, en = starts[m_pos:m], length[m_pos:], ends[m_pos:m]
        cand_down = np.where((d <= 0) & (fe <= 0), en, -1)
        cand_up = np.where((d > 0) & (fs_ <= 0), st + np.minimum(ln, -fs_), -1)
        top = int(max(cand_down.max(), cand_up.max()))
        if top >= 0 and (best is None or top > best):
            best = top
    return best


def _northwest(
    bo: list[int],
    bp: list[int],
    bq: list[int],
    so: list[int],
    sq: list[int],
    out: Segments,
) -> list[int]:
    """Pair buyer quantities with seller quantities in sequence; return sellers' remainders.

    The sellers must cover the buyers. Vectorised with numpy when the totals fit in int64.
    """
    tb = sum(bq)
    if tb == 0:
        return sq
    if sum(sq) < SAFE and min(bp) > -SAFE and max(bp) < SAFE:
        cb = np.cumsum(as_i64(bq))
        sq_arr = as_i64(sq)
        cs = np.cumsum(sq_arr)
        bounds = np.union1d(cb, cs[cs < tb])
        bounds = bounds[bounds > 0]
        starts = np.concatenate((np.zeros(1, dtype=np.int64), bounds[:-1]))
        bi = np.searchsorted(cb, bounds, side="left")
        sj = np.searchsorted(cs, bounds, side="left")
        out.b.extend(ints(as_i64(bo)[bi]))
        out.s.extend(ints(as_i64(so)[sj]))
        out.p.extend(ints(as_i64(bp)[bi]))
        out.q.extend(ints(bounds - starts))
        return ints(np.minimum(sq_arr, np.maximum(cs - tb, 0)))
    rest = list(sq)
    jj = 0
    for i, want in enumerate(bq):
        left = want
        while left > 0:
            avail = rest[jj]
            if not avail:
                jj += 1
                continue
            t = left if left < avail else avail
            out.add(bo[i], so[jj], bp[i], t)
            left -= t
            rest[jj] = avail - t
    return rest


def pair(
    pool: Pool,
    orders: Sequence[Order],
    rules: MarketRules,
    out: Segments,
    partners: bool = True,
) -> None:
    """Pair the pool's buyer steps with its seller steps.

    Clean-only buy steps go first (they can only take clean steps), then the others. Each
    phase honours preferred partners first, then walks both merit orders (clean sell steps
    before others). Every pairing is deterministic.
    """
    b, s = pool.b, pool.s
    if b.np is not None and s.np is not None and not partners and pool.volume < SAFE:
        _pair_np(pool, b.np, s.np, rules, out)
        return
    sx, sflag = pool.sx, s.flag
    sidx = [j for j, v in enumerate(sx) if v and sflag[j] == 0]
    sidx += [j for j, v in enumerate(sx) if v and sflag[j] == 1]
    srem = [sx[j] for j in sidx]
    so = [s.oi[j] for j in sidx]
    bid_priced = rules.pricing is Pricing.BID
    boi, beff = b.oi, b.eff
    seller_pos: dict[str, list[int]] | None = None
    for phase in (1, 0):
        bidx = [i for i, v in enumerate(pool.bx) if v and b.flag[i] == phase]
        if not bidx:
            continue
        brem = [pool.bx[i] for i in bidx]
        prices = [beff[i] for i in bidx] if bid_priced else [pool.price] * len(bidx)
        bo = [boi[i] for i in bidx]
        if any(orders[o].preferred_partners for o in set(bo)):
            if seller_pos is None:
                seller_pos = {}
                for pos, o in enumerate(so):
                    seller_pos.setdefault(orders[o].owner, []).append(pos)
            for k, o in enumerate(bo):
                for partner in orders[o].preferred_partners:
                    for pos in seller_pos.get(partner, ()):
                        if brem[k] == 0:
                            break
                        if srem[pos] == 0 or (phase == 1 and sflag[sidx[pos]] == 1):
                            continue
                        t = min(brem[k], srem[pos])
                        out.add(o, so[pos], prices[k], t)
                        brem[k] -= t
                        srem[pos] -= t
        srem = _northwest(bo, prices, brem, so, srem, out)


def _pair_np(
    pool: Pool,
    b: tuple[I64, I64, I64, I64],
    s: tuple[I64, I64, I64, I64],
    rules: MarketRules,
    out: Segments,
) -> None:
    """:func:`pair` without preferred partners, vectorised: one north-west walk over
    [clean-only buy steps, other buy steps] x [clean sell steps, other sell steps]."""
    bx, sx = pool.arrays()
    b_eff, b_flag, _, b_oi = b
    _, s_flag, _, s_oi = s
    border = np.concatenate(
        (np.flatnonzero((bx > 0) & (b_flag == 1)), np.flatnonzero((bx > 0) & (b_flag == 0)))
    )
    sorder = np.concatenate(
        (np.flatnonzero((sx > 0) & (s_flag == 0)), np.flatnonzero((sx > 0) & (s_flag == 1)))
    )
    cb = np.cumsum(bx[border])
    cs = np.cumsum(sx[sorder])
    ends = np.union1d(cb, cs)
    starts = np.concatenate((np.zeros(1, dtype=np.int64), ends[:-1]))
    bi = border[np.searchsorted(cb, ends, side="left")]
    sj = sorder[np.searchsorted(cs, ends, side="left")]
    price = b_eff[bi] if rules.pricing is Pricing.BID else np.full(len(ends), pool.price)
    out.chunks.append((b_oi[bi], s_oi[sj], price.astype(np.int64), ends - starts))
