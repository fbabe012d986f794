"""Slot clearing: a welfare-maximising double auction with clean-only buyers.

Every peer runs :func:`clear_book` (or :func:`clear_slot`) on the same validated orders and
gets bit-identical results, whatever the order of the input: every sort uses explicit keys
down to the order id, and all arithmetic is on integers. ``docs/market.md`` explains the
mechanism; the short version:

1. *Effective prices.* The grid is buyer and seller of last resort, so a buy step's limit is
   capped at the import price and reduced by the distributor fee (the buyer pays the fee on
   top of the price), and a sell step's limit is raised to the feed-in tariff. Nobody pays more
   than the import price or receives less than the feed-in tariff.
2. *Allocation.* Each step is a unit. Clean-only buyers may take only clean supply. The
   allocation maximises traded surplus under that constraint: if some surplus-maximising
   allocation of the merged market (everyone with everyone) can serve clean-only demand from
   clean supply, it is used with a single price; otherwise the optimum separates into a clean
   market (clean-only buyers, clean sellers) and a general market (other buyers, other
   sellers), each cleared on its own, with a clean price >= the general price. (By concavity
   the constrained optimum lies on the boundary "clean-only volume == clean volume" whenever
   the relaxed optimum violates it; on that boundary the two markets decouple.)
   Among surplus-maximising allocations the largest volume is chosen.
3. *Price.* A pool clearing ``Q`` Wh has the competitive price interval
   ``[max(a_Q, b_Q+1), min(b_Q, a_Q+1)]`` (``b_k``/``a_k``: effective bid/ask of the k-th
   unit in merit order); the price is its midpoint rounded down (towards minus infinity).
4. *Rationing.* Steps strictly better than the price are filled completely; steps exactly at
   the price share what is left pro rata (clean supply and indifferent demand first in the
   merged market, which keeps clean-only buyers served), with leftovers settled by
   :class:`~.fairness.Divider`.
5. *Scarcity* (grid unavailable, or the import capacity would be exceeded): the same volume
   goes to the buyers willing to pay the price by priority class instead of by bid
   (:func:`priority_split`).
6. *Fair share*: no seller owner sells more than ``fair_share_bp`` of the slot's cleared volume
   while other sellers in its pool could sell the rest at the same price.
7. *Fills* pair buyer steps with seller steps: preferred partners first, then merit order.
   Pay-as-clear fills are at the pool price, pay-as-bid fills at the buyer's effective bid.
   The buyer pays ``energy x (price + fee)``, the seller receives ``energy x price``.
8. *Grid residuals*: unfilled buy steps at or above the import price import from the grid,
   unsold sell steps at or below the feed-in tariff export, within the capacities; the rest is
   reported as unserved or curtailed.

Public API: :func:`clear_book`, :func:`clear_slot`, :func:`priority_split`, :class:`Fill`,
:class:`OrderResult`, :class:`MemberResult`, :class:`SlotResult`, :class:`ClearingResult`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, NamedTuple

from .fairness import Divider, FairnessState
from .orders import BASIS_POINTS, MarketRules, Order, OrderBook, Pricing, Priority, Side


class Fill(NamedTuple):
    """Energy one buyer order bought from one seller order at one price."""

    buyer: str
    buyer_order: str
    seller: str
    seller_order: str
    energy_wh: int
    price: int
    fee: int
    clean: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return self._asdict()


class OrderResult(NamedTuple):
    """What one order got: traded energy, money (milli-minor units) and grid residuals."""

    order_id: str
    owner: str
    side: str
    filled_wh: int
    amount_milli: int
    fee_milli: int
    grid_wh: int
    unserved_wh: int
    curtailed_wh: int
    steps_filled: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        data = self._asdict()
        data["steps_filled"] = list(self.steps_filled)
        return data


class MemberResult(NamedTuple):
    """One member's totals for the slot; ``paid_milli`` includes fees."""

    owner: str
    bought_wh: int
    sold_wh: int
    paid_milli: int
    received_milli: int
    fee_milli: int
    grid_import_wh: int
    grid_export_wh: int
    unserved_wh: int
    curtailed_wh: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return self._asdict()


@dataclass(frozen=True, slots=True)
class SlotResult:
    """The cleared result of one slot."""

    slot_start: int
    mode: str
    general_price: int | None
    clean_price: int | None
    volume_wh: int
    clean_volume_wh: int
    surplus_milli: int
    fees_milli: int
    scarcity: bool
    grid_import_wh: int
    grid_export_wh: int
    unserved_wh: int
    curtailed_wh: int
    fills: tuple[Fill, ...]
    orders: tuple[OrderResult, ...]
    members: tuple[MemberResult, ...]
    fairness: FairnessState = field(default_factory=FairnessState)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (the CLI output per slot, without the fairness state)."""
        return {
            "slot_start": self.slot_start,
            "mode": self.mode,
            "general_price": self.general_price,
            "clean_price": self.clean_price,
            "volume_wh": self.volume_wh,
            "clean_volume_wh": self.clean_volume_wh,
            "surplus_milli": self.surplus_milli,
            "fees_milli": self.fees_milli,
            "scarcity": self.scarcity,
            "grid_import_wh": self.grid_import_wh,
            "grid_export_wh": self.grid_export_wh,
            "unserved_wh": self.unserved_wh,
            "curtailed_wh": self.curtailed_wh,
            "fills": [f.to_dict() for f in self.fills],
            "orders": [o.to_dict() for o in self.orders],
            "members": [m.to_dict() for m in self.members],
        }


@dataclass(frozen=True, slots=True)
class ClearingResult:
    """Results of all slots in a book, in slot order, and the fairness state after them."""

    slots: tuple[SlotResult, ...]
    fairness: FairnessState

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (the CLI output)."""
        return {"slots": [s.to_dict() for s in self.slots], "fairness": self.fairness.to_dict()}


# ---------------------------------------------------------------------------------------
# Internal step lists


class _Steps:
    """Steps of one side in merit order (buyers: bid descending; sellers: ask ascending).

    ``flag`` is 1 for clean-only buy steps and for non-clean sell steps, 0 otherwise, so that
    within a price level the steps that keep clean-only demand servable come first.
    """

    __slots__ = ("buyers", "cum", "eff", "flag", "key", "oi", "qty", "raw", "sidx", "total")

    def __init__(
        self,
        buyers: bool,
        eff: list[int],
        flag: list[int],
        qty: list[int],
        oi: list[int],
        sidx: list[int],
        raw: list[int],
    ) -> None:
        self.buyers = buyers
        self.eff = eff
        self.key = [-e for e in eff] if buyers else eff  # ascending
        self.flag = flag
        self.qty = qty
        self.oi = oi
        self.sidx = sidx
        self.raw = raw
        self.cum = list(accumulate(qty))
        self.total = self.cum[-1] if qty else 0

    def subset(self, want_flag: int) -> _Steps:
        idx = [i for i, f in enumerate(self.flag) if f == want_flag]
        return _Steps(
            self.buyers,
            [self.eff[i] for i in idx],
            [want_flag] * len(idx),
            [self.qty[i] for i in idx],
            [self.oi[i] for i in idx],
            [self.sidx[i] for i in idx],
            [self.raw[i] for i in idx],
        )

    def value_at(self, unit: int) -> int | None:
        """Effective price of the ``unit``-th Wh (1-based) in merit order, if it exists."""
        if unit < 1 or unit > self.total:
            return None
        return self.eff[bisect_left(self.cum, unit)]

    def level(self, price: int) -> tuple[int, int]:
        """Index range of the steps whose effective price equals ``price``."""
        key = -price if self.buyers else price
        return bisect_left(self.key, key), bisect_right(self.key, key)


_Rec = tuple[int, int, str, str, int, int, int, int]


def _build_steps(orders: Sequence[Order], rules: MarketRules) -> tuple[_Steps, _Steps]:
    cap = rules.import_price
    fee = rules.distributor_fee
    floor = rules.feed_in_tariff
    brec: list[_Rec] = []
    srec: list[_Rec] = []
    for oi, order in enumerate(orders):
        if order.side is Side.BUY:
            flag = 1 if order.clean_only else 0
            for k, step in enumerate(order.steps):
                if step.energy_wh > 0:
                    eff = (step.price if step.price < cap else cap) - fee
                    brec.append(
                        (-eff, flag, order.owner, order.order_id, k, step.energy_wh, oi, step.price)
                    )
        else:
            flag = 0 if order.clean else 1
            for k, step in enumerate(order.steps):
                if step.energy_wh > 0:
                    eff = step.price if step.price > floor else floor
                    srec.append(
                        (eff, flag, order.owner, order.order_id, k, step.energy_wh, oi, step.price)
                    )
    brec.sort()
    srec.sort()
    return _unzip(brec, buyers=True), _unzip(srec, buyers=False)


def _unzip(rec: list[_Rec], *, buyers: bool) -> _Steps:
    return _Steps(
        buyers,
        [-r[0] for r in rec] if buyers else [r[0] for r in rec],
        [r[1] for r in rec],
        [r[5] for r in rec],
        [r[6] for r in rec],
        [r[4] for r in rec],
        [r[7] for r in rec],
    )


def _walk(b: _Steps, s: _Steps, constrained: bool) -> int | None:
    """Largest surplus-maximising volume, optionally with clean-only volume <= clean volume.

    Walks both merit orders; units with bid > ask must trade, units with bid == ask may.
    Returns None when no surplus-maximising volume satisfies the constraint.
    """
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


def _price(b: _Steps, s: _Steps, q: int) -> tuple[int, int]:
    """Competitive price interval for volume ``q`` > 0."""
    los = [v for v in (s.value_at(q), b.value_at(q + 1)) if v is not None]
    his = [v for v in (b.value_at(q), s.value_at(q + 1)) if v is not None]
    return max(los), min(his)


def _mid(lo: int, hi: int) -> int:
    return (lo + hi) // 2


class _Pool:
    """One market pool: buyer and seller steps, its price and volume, and the allocations."""

    def __init__(self, b: _Steps, s: _Steps, price: int, volume: int) -> None:
        self.b = b
        self.s = s
        self.price = price
        self.volume = volume
        self.bx = [0] * len(b.qty)
        self.sx = [0] * len(s.qty)


def _ration(
    st: _Steps,
    x: list[int],
    price: int,
    volume: int,
    div: Divider,
    orders: Sequence[Order],
) -> None:
    """Fill steps strictly better than ``price``; share the rest pro rata at the price."""
    i1, i2 = st.level(price)
    for i in range(i1):
        x[i] = st.qty[i]
    rest = volume - (st.cum[i1 - 1] if i1 else 0)
    k = i1
    while k < i2 and rest > 0:
        g_end = k
        while g_end < i2 and st.flag[g_end] == st.flag[k]:
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


def priority_split(
    volume: int,
    demands: Sequence[int],
    priorities: Sequence[Priority],
    owners: Sequence[str],
    ids: Sequence[str],
    stake_weight: Mapping[str, int],
    div: Divider,
) -> list[int]:
    """LastWatt scarcity rule: split ``volume`` among demands by priority class.

    Essential demand first, then household demand, each shared max-min fairly (equal weights,
    nobody gets more than asked); then ``other`` demand weighted by the stakes members placed
    on its owner, and finally other demand whose owner holds no stake, equally.
    """
    n = len(demands)
    alloc = [0] * n
    rest = volume
    groups: list[tuple[list[int], list[int]]] = []
    for cls in (Priority.ESSENTIAL, Priority.HOUSEHOLD):
        idx = [i for i in range(n) if priorities[i] is cls]
        groups.append((idx, [1] * len(idx)))
    other = [i for i in range(n) if priorities[i] is Priority.OTHER]
    staked = [i for i in other if stake_weight.get(owners[i], 0) > 0]
    groups.append((staked, [stake_weight[owners[i]] for i in staked]))
    unstaked = [i for i in other if stake_weight.get(owners[i], 0) <= 0]
    groups.append((unstaked, [1] * len(unstaked)))
    for idx, weights in groups:
        if rest <= 0:
            break
        if not idx:
            continue
        caps = [demands[i] for i in idx]
        got = div.waterfill(rest, weights, caps, [owners[i] for i in idx], [ids[i] for i in idx])
        for i, g in zip(idx, got, strict=True):
            alloc[i] = g
            rest -= g
    return alloc


def _scarcity_buyers(
    pool: _Pool,
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
    ois = sorted(by_order, key=lambda o: orders[o].order_id)
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


def _fair_share(
    pool: _Pool,
    flag: int,
    cap: int,
    orders: Sequence[Order],
    div: Divider,
) -> None:
    """Cap each seller owner of one pool group at ``cap`` Wh when others can take over."""
    s = pool.s
    end = s.level(pool.price)[1]
    steps_of: dict[str, list[int]] = {}
    for i in range(end):
        if s.flag[i] == flag:
            steps_of.setdefault(orders[s.oi[i]].owner, []).append(i)
    owners = sorted(steps_of)
    sold = {o: sum(pool.sx[i] for i in steps_of[o]) for o in owners}
    over = [o for o in owners if sold[o] > cap]
    if not over:
        return
    excess = sum(sold[o] - cap for o in over)
    others = [o for o in owners if sold[o] < cap]
    spare = [min(sum(s.qty[i] for i in steps_of[o]), cap) - sold[o] for o in others]
    room = [(o, v) for o, v in zip(others, spare, strict=True) if v > 0]
    give_total = min(excess, sum(v for _, v in room))
    gains = div.waterfill(
        give_total,
        [v for _, v in room],
        [v for _, v in room],
        [o for o, _ in room],
        [o for o, _ in room],
    )
    keep_back = div.waterfill(
        excess - give_total,
        [sold[o] - cap for o in over],
        [sold[o] - cap for o in over],
        over,
        over,
    )
    for o, back in zip(over, keep_back, strict=True):
        div.win(o)
        cut = sold[o] - cap - back
        for i in reversed(steps_of[o]):
            take = min(cut, pool.sx[i])
            pool.sx[i] -= take
            cut -= take
    for (o, _), gain in zip(room, gains, strict=True):
        left = gain
        for i in steps_of[o]:
            add = min(left, s.qty[i] - pool.sx[i])
            pool.sx[i] += add
            left -= add


def _pair(
    pool: _Pool,
    orders: Sequence[Order],
    rules: MarketRules,
    out: dict[tuple[int, int, int], int],
) -> None:
    """Pair the pool's buyer steps with its seller steps.

    Clean-only buy steps go first (they can only take clean steps), then the others. Each
    phase honours preferred partners first, then walks both merit orders (clean sell steps
    before others). Every pairing is deterministic.
    """
    b, s = pool.b, pool.s
    sidx = [j for j in range(len(s.qty)) if pool.sx[j] and s.flag[j] == 0]
    sidx += [j for j in range(len(s.qty)) if pool.sx[j] and s.flag[j] == 1]
    srem = {j: pool.sx[j] for j in sidx}
    bid_priced = rules.pricing is Pricing.BID
    seller_steps: dict[str, list[int]] | None = None
    for phase in (1, 0):
        bidx = [i for i in range(len(b.qty)) if pool.bx[i] and b.flag[i] == phase]
        brem = {i: pool.bx[i] for i in bidx}
        if any(orders[b.oi[i]].preferred_partners for i in bidx):
            if seller_steps is None:
                seller_steps = {}
                for j in sidx:
                    seller_steps.setdefault(orders[s.oi[j]].owner, []).append(j)
            for i in bidx:
                price = b.eff[i] if bid_priced else pool.price
                for partner in orders[b.oi[i]].preferred_partners:
                    for j in seller_steps.get(partner, ()):
                        if srem[j] == 0 or (phase == 1 and s.flag[j] == 1):
                            continue
                        t = min(brem[i], srem[j])
                        key = (b.oi[i], s.oi[j], price)
                        out[key] = out.get(key, 0) + t
                        brem[i] -= t
                        srem[j] -= t
                        if brem[i] == 0:
                            break
        jj = 0
        for i in bidx:
            price = b.eff[i] if bid_priced else pool.price
            while brem[i] > 0:
                while srem[sidx[jj]] == 0:
                    jj += 1
                j = sidx[jj]
                t = min(brem[i], srem[j])
                key = (b.oi[i], s.oi[j], price)
                out[key] = out.get(key, 0) + t
                brem[i] -= t
                srem[j] -= t


def _stake_weights(stakes: Mapping[str, str] | Sequence[tuple[str, str]]) -> dict[str, int]:
    pairs = stakes.items() if isinstance(stakes, Mapping) else stakes
    weights: dict[str, int] = {}
    for _staker, backed in pairs:
        weights[backed] = weights.get(backed, 0) + 1
    return weights


def clear_slot(
    orders: Sequence[Order],
    rules: MarketRules,
    *,
    slot_start: int,
    fairness: FairnessState | None = None,
    stakes: Mapping[str, str] | Sequence[tuple[str, str]] = (),
) -> SlotResult:
    """Clear one slot. ``orders`` must be validated orders of that slot (others are ignored)."""
    fairness = fairness if fairness is not None else FairnessState()
    orders = [o for o in orders if o.slot_start == slot_start]
    div = Divider(fairness, slot_start)
    stake_weight = _stake_weights(stakes)
    b, s = _build_steps(orders, rules)

    pools: list[_Pool] = []
    merged = False
    q = _walk(b, s, constrained=True)
    if q is not None:
        merged = True
        if q > 0:
            lo, hi = _price(b, s, q)
            pools.append(_Pool(b, s, _mid(lo, hi), q))
    else:
        kb, cs = b.subset(1), s.subset(0)
        ib, ns = b.subset(0), s.subset(1)
        qc = _walk(kb, cs, constrained=False) or 0
        qn = _walk(ib, ns, constrained=False) or 0
        pc = pn = None
        if qc > 0:
            lo_c, hi_c = _price(kb, cs, qc)
            pc = _mid(lo_c, hi_c)
        if qn > 0:
            lo_n, hi_n = _price(ib, ns, qn)
            pn = _mid(lo_n, hi_n)
        if pc is not None and pn is not None and pc < pn:
            # Equal prices are then an equilibrium too: take the midpoint of the overlap.
            pc = pn = _mid(max(lo_c, lo_n), min(hi_c, hi_n))
        if pc is not None:
            pools.append(_Pool(kb, cs, pc, qc))
        if pn is not None:
            pools.append(_Pool(ib, ns, pn, qn))

    for pool in pools:
        _ration(pool.b, pool.bx, pool.price, pool.volume, div, orders)
        _ration(pool.s, pool.sx, pool.price, pool.volume, div, orders)

    # Scarcity: grid unavailable, or unfilled must-run demand exceeds the import capacity.
    bfill = _per_order_steps(pools)
    residual = _import_residuals(orders, rules, bfill[0])
    scarcity = not rules.grid_available or (
        rules.import_capacity_wh is not None and sum(residual.values()) > rules.import_capacity_wh
    )
    if scarcity and pools:
        for pool in pools:
            clean_limit = sum(pool.sx[j] for j in range(len(pool.s.qty)) if pool.s.flag[j] == 0)
            _scarcity_buyers(pool, orders, stake_weight, div, clean_limit if merged else None)
        bfill = _per_order_steps(pools)
        residual = _import_residuals(orders, rules, bfill[0])

    total_volume = sum(p.volume for p in pools)
    if rules.fair_share_bp < BASIS_POINTS:
        cap = total_volume * rules.fair_share_bp // BASIS_POINTS
        for pool in pools:
            for flag in (0, 1):
                _fair_share(pool, flag, cap, orders, div)
        bfill = _per_order_steps(pools)

    raw_fills: dict[tuple[int, int, int], int] = {}
    for pool in pools:
        _pair(pool, orders, rules, raw_fills)

    return _summarise(
        orders,
        rules,
        slot_start,
        pools,
        merged,
        scarcity,
        raw_fills,
        bfill,
        residual,
        stake_weight,
        div,
        fairness,
    )


def _per_order_steps(
    pools: Sequence[_Pool],
) -> tuple[dict[int, dict[int, int]], dict[int, dict[int, int]]]:
    """Filled Wh per order per step index, for buyers and sellers."""
    bfill: dict[int, dict[int, int]] = {}
    sfill: dict[int, dict[int, int]] = {}
    for pool in pools:
        for st, x, out in ((pool.b, pool.bx, bfill), (pool.s, pool.sx, sfill)):
            oi_list, sidx = st.oi, st.sidx
            for i, v in enumerate(x):
                if v:
                    steps = out.get(oi_list[i])
                    if steps is None:
                        steps = out[oi_list[i]] = {}
                    steps[sidx[i]] = v
    return bfill, sfill


def _import_residuals(
    orders: Sequence[Order], rules: MarketRules, bfill: Mapping[int, Mapping[int, int]]
) -> dict[int, int]:
    """Unfilled Wh of buy steps at or above the import price (they would use the grid)."""
    out: dict[int, int] = {}
    for oi, order in enumerate(orders):
        if order.side is Side.BUY:
            got = bfill.get(oi, {})
            r = sum(
                st.energy_wh - got.get(k, 0)
                for k, st in enumerate(order.steps)
                if st.price >= rules.import_price
            )
            if r:
                out[oi] = r
    return out


def _summarise(
    orders: Sequence[Order],
    rules: MarketRules,
    slot_start: int,
    pools: Sequence[_Pool],
    merged: bool,
    scarcity: bool,
    raw_fills: Mapping[tuple[int, int, int], int],
    bfill: tuple[dict[int, dict[int, int]], dict[int, dict[int, int]]],
    residual: Mapping[int, int],
    stake_weight: Mapping[str, int],
    div: Divider,
    fairness: FairnessState,
) -> SlotResult:
    fee = rules.distributor_fee
    fills: list[Fill] = []
    filled = [0] * len(orders)
    amount = [0] * len(orders)
    fees = [0] * len(orders)
    clean_volume = 0
    for (boi, soi, price), wh in raw_fills.items():
        bo, so = orders[boi], orders[soi]
        fills.append(Fill(bo.owner, bo.order_id, so.owner, so.order_id, wh, price, fee, so.clean))
        filled[boi] += wh
        filled[soi] += wh
        amount[boi] += wh * price
        amount[soi] += wh * price
        fees[boi] += wh * fee
        if so.clean:
            clean_volume += wh
    fills.sort(key=lambda f: (f.buyer_order, f.seller_order, f.price))

    # Surplus on effective prices (what the LP maximises).
    surplus = 0
    for pool in pools:
        surplus += sum(x * e for x, e in zip(pool.bx, pool.b.eff, strict=True))
        surplus -= sum(x * e for x, e in zip(pool.sx, pool.s.eff, strict=True))
    volume = sum(p.volume for p in pools)

    # Grid import within capacity (by priority when short), export within capacity.
    imp_cap = rules.import_capacity_wh if rules.grid_available else 0
    r_ois = sorted(residual, key=lambda o: orders[o].order_id)
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
            stake_weight,
            div,
        )
    grid_in = dict(zip(r_ois, imported, strict=True))
    sfill = bfill[1]
    e_ois: list[int] = []
    e_res: list[int] = []
    for oi, order in enumerate(orders):
        if order.side is Side.SELL:
            got = sfill.get(oi, {})
            r = sum(
                st.energy_wh - got.get(k, 0)
                for k, st in enumerate(order.steps)
                if st.price <= rules.feed_in_tariff
            )
            if r:
                e_ois.append(oi)
                e_res.append(r)
    e_order = sorted(range(len(e_ois)), key=lambda k: orders[e_ois[k]].order_id)
    e_ois = [e_ois[k] for k in e_order]
    e_res = [e_res[k] for k in e_order]
    exp_cap = rules.export_capacity_wh if rules.grid_available else 0
    if exp_cap is None or exp_cap >= sum(e_res):
        exported = e_res
    else:
        exported = div.waterfill(
            exp_cap,
            e_res,
            e_res,
            [orders[o].owner for o in e_ois],
            [orders[o].order_id for o in e_ois],
        )
    grid_out = dict(zip(e_ois, exported, strict=True))
    export_residual = dict(zip(e_ois, e_res, strict=True))

    results: list[OrderResult] = []
    members: dict[str, list[int]] = {}
    for oi, order in enumerate(orders):
        buy = order.side is Side.BUY
        got = (bfill[0] if buy else sfill).get(oi, {})
        grid = grid_in.get(oi, 0) if buy else grid_out.get(oi, 0)
        unserved = residual.get(oi, 0) - grid if buy else 0
        curtailed = 0 if buy else export_residual.get(oi, 0) - grid
        results.append(
            OrderResult(
                order.order_id,
                order.owner,
                order.side.value,
                filled[oi],
                amount[oi],
                fees[oi],
                grid,
                unserved,
                curtailed,
                tuple(got.get(k, 0) for k in range(len(order.steps))),
            )
        )
        m = members.setdefault(order.owner, [0] * 9)
        if buy:
            m[0] += filled[oi]
            m[2] += amount[oi] + fees[oi]
            m[4] += fees[oi]
            m[5] += grid
            m[7] += unserved
        else:
            m[1] += filled[oi]
            m[3] += amount[oi]
            m[6] += grid
            m[8] += curtailed
    results.sort(key=lambda r: r.order_id)
    member_results = tuple(MemberResult(o, *members[o]) for o in sorted(members))

    if not pools:
        mode, gp, cp = "no_trade", None, None
    elif merged:
        mode = "single_price"
        gp = pools[0].price
        cp = gp if clean_volume else None
    else:
        mode = "two_prices"
        gp = next((p.price for p in pools if p.s.flag and p.s.flag[0] == 1), None)
        cp = next((p.price for p in pools if p.s.flag and p.s.flag[0] == 0), None)
    return SlotResult(
        slot_start=slot_start,
        mode=mode,
        general_price=gp,
        clean_price=cp,
        volume_wh=volume,
        clean_volume_wh=clean_volume,
        surplus_milli=surplus,
        fees_milli=volume * fee,
        scarcity=scarcity,
        grid_import_wh=sum(grid_in.values()),
        grid_export_wh=sum(grid_out.values()),
        unserved_wh=sum(r.unserved_wh for r in results),
        curtailed_wh=sum(r.curtailed_wh for r in results),
        fills=tuple(fills),
        orders=tuple(results),
        members=member_results,
        fairness=div.state_after(fairness),
    )


def clear_book(book: OrderBook) -> ClearingResult:
    """Clear every slot of a validated book in slot order, threading the fairness state."""
    state = book.fairness
    results: list[SlotResult] = []
    for start in sorted({o.slot_start for o in book.orders}):
        result = clear_slot(
            book.orders, book.rules, slot_start=start, fairness=state, stakes=book.stakes
        )
        results.append(result)
        state = result.fairness
    return ClearingResult(tuple(results), state)
