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
   (:func:`.scarcity.priority_split`).
6. *Fair share*: with ``V`` the uncapped cleared volume, no seller owner may offer more than
   ``max(V * fair_share_bp // 10000, V - what all others offer at acceptable asks)``; its
   dearest steps are cut and the slot is cleared again (others take over, at their prices).
7. *Fills* pair buyer steps with seller steps: preferred partners first, then merit order.
   Pay-as-clear fills are at the pool price, pay-as-bid fills at the buyer's effective bid.
   The buyer pays ``energy x (price + fee)``, the seller receives ``energy x price``.
8. *Grid residuals*: unfilled buy steps at or above the import price import from the grid,
   unsold sell steps at or below the feed-in tariff export, within the capacities; the rest is
   reported as unserved or curtailed.

Public API: :func:`clear_book`, :func:`clear_slot`, :class:`Fill`,
:class:`OrderResult`, :class:`MemberResult`, :class:`SlotResult`, :class:`ClearingResult`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress
from math import sumprod
from operator import attrgetter
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from .fairness import Divider, FairnessState
from .orders import BASIS_POINTS, MarketRules, Order, OrderBook, Pricing, Side
from .scarcity import priority_split, stake_weights


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


# NamedTuple._make skips the keyword-argument machinery of the generated __new__ (3x faster).
_new_fill = Fill._make
_new_result = OrderResult._make


@dataclass(frozen=True, slots=True, eq=False)
class SlotResult:
    """The cleared result of one slot.

    ``fills``, ``orders`` (per-order results, by order id) and ``members`` (per member, by
    member id) are built from the clearing's internal arrays on first access and cached:
    the market decision itself is complete when :func:`clear_slot` returns. Two results are
    equal when their plain-data forms and fairness states are.
    """

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
    fairness: FairnessState
    _parts: _Parts = field(repr=False)

    @property
    def fills(self) -> tuple[Fill, ...]:
        """Member-to-member trades, sorted by buyer order id, seller order id and price."""
        return self._parts.fills()

    @property
    def orders(self) -> tuple[OrderResult, ...]:
        """One result per order of the slot, sorted by order id."""
        return self._parts.order_results()

    @property
    def members(self) -> tuple[MemberResult, ...]:
        """One result per member with orders in the slot, sorted by member id."""
        return self._parts.member_results()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SlotResult):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.fairness == other.fairness

    __hash__ = None  # type: ignore[assignment]

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


_COLUMNS = ("eff", "flag", "oi", "k", "qty", "raw")


class _Flat:
    """All non-empty steps of one side, in order-id order (order rank, then step index).

    Columns: effective price, flag, order rank, step index, energy, limit price. They are held
    as int64 arrays when every number fits (then the lists are made on first use), otherwise
    as exact Python int lists only.
    """

    __slots__ = ("_lists", "_np")

    def __init__(
        self,
        lists: dict[str, list[int]] | None = None,
        arrays: dict[str, _I64] | None = None,
    ) -> None:
        self._lists = lists if lists is not None else {c: [] for c in _COLUMNS}
        self._np = arrays

    def _col(self, name: str) -> list[int]:
        col = self._lists.get(name)
        if col is None:
            assert self._np is not None
            col = self._lists[name] = _list(self._np[name])
        return col

    @property
    def eff(self) -> list[int]:
        return self._col("eff")

    @property
    def flag(self) -> list[int]:
        return self._col("flag")

    @property
    def oi(self) -> list[int]:
        return self._col("oi")

    @property
    def k(self) -> list[int]:
        return self._col("k")

    @property
    def qty(self) -> list[int]:
        return self._col("qty")

    @property
    def raw(self) -> list[int]:
        return self._col("raw")

    def __len__(self) -> int:
        return len(self._np["qty"]) if self._np is not None else len(self._lists["qty"])

    def where(self, price: int, *, at_least: bool) -> list[int]:
        """Indices of the steps whose limit price is >= (or <=) ``price``."""
        if self._np is not None and -_SAFE_PRICE < price < _SAFE_PRICE:
            raw = self._np["raw"]
            return _list(np.flatnonzero(raw >= price if at_least else raw <= price))
        if at_least:
            return [f for f, p in enumerate(self.raw) if p >= price]
        return [f for f, p in enumerate(self.raw) if p <= price]

    def arrays(self) -> tuple[_I64, _I64, _I64, _I64] | None:
        """(eff, flag, oi, qty) as int64 arrays, or None when the numbers are too large."""
        if self._np is None:
            return None
        return self._np["eff"], self._np["flag"], self._np["oi"], self._np["qty"]


_I64 = npt.NDArray[np.int64]
_SAFE = 1 << 62  # numpy int64 is exact below this
_SAFE_PRICE = 1 << 58


def _arr(values: Sequence[int]) -> _I64:
    return np.array(values, dtype=np.int64)


def _list(values: npt.NDArray[np.int64] | npt.NDArray[np.intp]) -> list[int]:
    return cast(list[int], values.tolist())


class _Steps:
    """Steps of one side in merit order (buyers: bid descending; sellers: ask ascending).

    ``flag`` is 1 for clean-only buy steps and for non-clean sell steps, 0 otherwise, so that
    within a price level the steps that keep clean-only demand servable come first. Ties are
    broken by order id and step index. ``flat`` maps each step to its :class:`_Flat` index.
    ``np`` holds int64 copies of (eff, flag, cum, oi) when the totals fit.
    """

    __slots__ = ("_cum", "_eff", "_flag", "_oi", "buyers", "flat", "key", "np", "qty", "total")

    def __init__(
        self,
        buyers: bool,
        flat: list[int],
        eff: list[int] | None,
        flag: list[int] | None,
        qty: list[int],
        oi: list[int] | None,
        arrays: tuple[_I64, _I64, _I64, _I64] | None = None,
    ) -> None:
        self.buyers = buyers
        self.flat = flat
        self._eff = eff
        self._flag = flag
        self.qty = qty
        self._oi = oi
        self.np = arrays
        self.key: list[int] | None = None
        self._cum: list[int] | None = None
        if arrays is not None:
            self.total = int(arrays[2][-1]) if flat else 0
        else:
            assert eff is not None
            self.key = [-e for e in eff] if buyers else eff  # ascending
            self._cum = list(accumulate(qty))
            self.total = self._cum[-1] if flat else 0

    @property
    def eff(self) -> list[int]:
        """Effective price of each step (made from the int64 copy on first use)."""
        if self._eff is None:
            assert self.np is not None
            self._eff = _list(self.np[0])
        return self._eff

    @property
    def flag(self) -> list[int]:
        """Flag of each step (made from the int64 copy on first use)."""
        if self._flag is None:
            assert self.np is not None
            self._flag = _list(self.np[1])
        return self._flag

    @property
    def oi(self) -> list[int]:
        """Order rank of each step (made from the int64 copy on first use)."""
        if self._oi is None:
            assert self.np is not None
            self._oi = _list(self.np[3])
        return self._oi

    def first_flag(self) -> int:
        """Flag of the first step (the pool kind, in the two-pool case)."""
        return int(self.np[1][0]) if self.np is not None else self.flag[0]

    def cum_before(self, i: int) -> int:
        """Energy of the steps before step ``i`` in merit order."""
        if i <= 0:
            return 0
        if self._cum is not None:
            return self._cum[i - 1]
        assert self.np is not None
        return int(self.np[2][i - 1])

    def value_at(self, unit: int) -> int | None:
        """Effective price of the ``unit``-th Wh (1-based) in merit order, if it exists."""
        if unit < 1 or unit > self.total:
            return None
        if self._cum is not None:
            return self.eff[bisect_left(self._cum, unit)]
        assert self.np is not None
        return int(self.np[0][int(np.searchsorted(self.np[2], unit, side="left"))])

    def level(self, price: int) -> tuple[int, int]:
        """Index range of the steps whose effective price equals ``price``."""
        key = -price if self.buyers else price
        if self.key is not None:
            return bisect_left(self.key, key), bisect_right(self.key, key)
        assert self.np is not None
        keys = -self.np[0] if self.buyers else self.np[0]
        return (
            int(np.searchsorted(keys, key, side="left")),
            int(np.searchsorted(keys, key, side="right")),
        )


def _flatten(orders: Sequence[Order], n_buy: int, rules: MarketRules) -> tuple[_Flat, _Flat]:
    """Split the ranked orders (buy orders first) into step columns, empty steps dropped."""
    out = []
    for want in (True, False):
        ois = range(n_buy) if want else range(n_buy, len(orders))
        sel = orders[:n_buy] if want else orders[n_buy:]
        nst = [len(o.steps) for o in sel]
        price = [st.price for o in sel for st in o.steps]
        qty = [st.energy_wh for o in sel for st in o.steps]
        if want:
            flags = [1 if o.clean_only else 0 for o in sel]
        else:
            flags = [0 if o.clean else 1 for o in sel]
        flat = None
        rules_fit = (
            max(abs(rules.import_price), abs(rules.feed_in_tariff), rules.distributor_fee)
            < _SAFE_PRICE
        )
        if qty and rules_fit:
            flat = _flatten_np(want, rules, ois, nst, flags, price, qty)
        out.append(flat or _flatten_py(want, rules, ois, nst, flags, price, qty))
    return out[0], out[1]


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
) -> _Flat:
    oi = [o for o, n in zip(ois, nst, strict=True) for _ in range(n)]
    k = [j for n in nst for j in range(n)]
    flag = [g for g, n in zip(flags, nst, strict=True) for _ in range(n)]
    keep = [f for f, q in enumerate(qty) if q > 0]
    cols = {
        name: [col[f] for f in keep]
        for name, col in (("price", price), ("qty", qty), ("oi", oi), ("k", k), ("flag", flag))
    }
    return _Flat(
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
    price: list[int],
    qty: list[int],
) -> _Flat | None:
    """Columns as int64 arrays; None when a number does not fit (then use Python ints)."""
    try:
        raw_a: _I64 = _arr(price)
        qty_a: _I64 = _arr(qty)
    except OverflowError:
        return None
    top = int(qty_a.max())
    if (
        int(raw_a.min()) <= -_SAFE_PRICE
        or int(raw_a.max()) >= _SAFE_PRICE
        or top * len(qty) >= _SAFE
        or int(qty_a.min()) < 0
    ):
        return None
    oi_a: _I64
    flag_a: _I64
    k_a: _I64
    if len(qty) == len(ois):
        oi_a, flag_a = np.arange(ois.start, ois.stop, dtype=np.int64), _arr(flags)
        k_a = np.zeros(len(ois), dtype=np.int64)
    else:
        n_a = _arr(nst)
        oi_a = np.repeat(np.arange(ois.start, ois.stop, dtype=np.int64), n_a)
        flag_a = np.repeat(_arr(flags), n_a)
        k_a = np.arange(len(qty), dtype=np.int64) - np.repeat(np.cumsum(n_a) - n_a, n_a)
    keep = qty_a > 0
    if not keep.all():
        raw_a, qty_a, oi_a, flag_a, k_a = (a[keep] for a in (raw_a, qty_a, oi_a, flag_a, k_a))
    if want_buy:
        eff_a = np.minimum(raw_a, rules.import_price) - rules.distributor_fee
    else:
        eff_a = np.maximum(raw_a, rules.feed_in_tariff)
    return _Flat(
        {},
        {"eff": eff_a, "flag": flag_a, "oi": oi_a, "k": k_a, "qty": qty_a, "raw": raw_a},
    )


def _merit(
    src: _Flat,
    *,
    buyers: bool,
    flag_filter: int | None = None,
    qty: list[int] | None = None,
) -> _Steps:
    """Sort a side into merit order: effective price, then flag, then order id and step.

    ``qty`` overrides the step quantities (fair-share truncation); empty steps are left out.
    """
    if not len(src):
        return _Steps(buyers, [], [], [], [], [])
    arrays = src.arrays()
    if arrays is not None:  # quantities only ever shrink (fair share), so they fit too
        eff_a, flag_a, oi_a, q_a = arrays
        if qty is not None:
            q_a = _arr(qty)
        key_a = (-eff_a if buyers else eff_a) * 2 + flag_a
        mask = q_a > 0
        if flag_filter is not None:
            mask &= flag_a == flag_filter
        idx = np.flatnonzero(mask)
        perm = idx[np.argsort(key_a[idx], kind="stable")]
        eff_p, flag_p, q_p = eff_a[perm], flag_a[perm], q_a[perm]
        return _Steps(
            buyers,
            _list(perm),
            None,
            None,
            _list(q_p),
            None,
            (eff_p, flag_p, np.cumsum(q_p), oi_a[perm]),
        )
    q = src.qty if qty is None else qty
    eff, flag = src.eff, src.flag
    sel = [f for f in range(len(q)) if q[f] and (flag_filter is None or flag[f] == flag_filter)]
    sign = -1 if buyers else 1
    sel.sort(key=lambda f: (sign * eff[f], flag[f], f))
    return _Steps(
        buyers,
        sel,
        [eff[f] for f in sel],
        [flag[f] for f in sel],
        [q[f] for f in sel],
        [src.oi[f] for f in sel],
    )


def _walk(b: _Steps, s: _Steps, constrained: bool) -> int | None:
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


def _walk_np(b: tuple[_I64, ...], s: tuple[_I64, ...], constrained: bool) -> int | None:
    """:func:`_walk` on int64 arrays: the same segments, evaluated all at once."""
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
        self._x: tuple[_I64, _I64] | None = None

    def arrays(self) -> tuple[_I64, _I64]:
        """The final allocations as int64 arrays (call once they are final; cached)."""
        if self._x is None:
            self._x = (_arr(self.bx), _arr(self.sx))
        return self._x


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
    x[:i1] = st.qty[:i1]
    rest = volume - st.cum_before(i1)
    k = i1
    if rest > 0 and i2 > i1:
        mflags = _list(st.np[1][i1:i2]) if st.np is not None else st.flag[i1:i2]
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


def _fair_share_limits(
    volume: int, fb: _Flat, fs: _Flat, orders: Sequence[Order], share_bp: int
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


class _Segments:
    """Pairing segments: buyer order, seller order, price and energy, as parallel lists.

    ``chunks`` collects int64 array segments from the vectorised pairing; :meth:`aggregate`
    merges both kinds.
    """

    __slots__ = ("b", "chunks", "p", "q", "s")

    def __init__(self) -> None:
        self.b: list[int] = []
        self.s: list[int] = []
        self.p: list[int] = []
        self.q: list[int] = []
        self.chunks: list[tuple[_I64, _I64, _I64, _I64]] = []

    def add(self, b: int, s: int, p: int, q: int) -> None:
        self.b.append(b)
        self.s.append(s)
        self.p.append(p)
        self.q.append(q)

    def aggregate(self) -> _FillTable:
        """One segment per (buyer order, seller order, price), sorted by those keys."""
        out = _Segments()
        if not self.q and not self.chunks:
            return _FillTable((out.b, out.s, out.p, out.q))
        if not self.q:
            a, b, c, q = (np.concatenate(parts) for parts in zip(*self.chunks, strict=True))
        elif (
            not self.chunks and sum(self.q) < _SAFE and -_SAFE < min(self.p) <= max(self.p) < _SAFE
        ):
            a, b, c, q = (_arr(x) for x in (self.b, self.s, self.p, self.q))
        else:
            for chunk in self.chunks:
                for dst, part in zip((self.b, self.s, self.p, self.q), chunk, strict=True):
                    dst.extend(_list(part))
            merged: dict[tuple[int, int, int], int] = {}
            for key in zip(self.b, self.s, self.p, self.q, strict=True):
                k3 = key[:3]
                merged[k3] = merged.get(k3, 0) + key[3]
            for (bo, so, pr), qty in sorted(merged.items()):
                out.add(bo, so, pr, qty)
            return _FillTable((out.b, out.s, out.p, out.q))
        order = np.lexsort((c, b, a))
        a, b, c, q = a[order], b[order], c[order], q[order]
        change = (a[1:] != a[:-1]) | (b[1:] != b[:-1]) | (c[1:] != c[:-1])
        starts = np.flatnonzero(np.concatenate(([True], change)))
        return _FillTable(None, (a[starts], b[starts], c[starts], np.add.reduceat(q, starts)))


class _FillTable:
    """Aggregated fills as columns (buyer rank, seller rank, price, Wh), lists made lazily."""

    __slots__ = ("_arrays", "_lists")

    def __init__(
        self,
        lists: tuple[list[int], list[int], list[int], list[int]] | None,
        arrays: tuple[_I64, _I64, _I64, _I64] | None = None,
    ) -> None:
        self._lists = lists
        self._arrays = arrays

    def columns(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """The four columns as lists of Python ints."""
        if self._lists is None:
            assert self._arrays is not None
            b, s, p, q = self._arrays
            self._lists = (_list(b), _list(s), _list(p), _list(q))
        return self._lists


def _northwest(
    bo: list[int],
    bp: list[int],
    bq: list[int],
    so: list[int],
    sq: list[int],
    out: _Segments,
) -> list[int]:
    """Pair buyer quantities with seller quantities in sequence; return sellers' remainders.

    The sellers must cover the buyers. Vectorised with numpy when the totals fit in int64.
    """
    tb = sum(bq)
    if tb == 0:
        return sq
    if sum(sq) < _SAFE and min(bp) > -_SAFE and max(bp) < _SAFE:
        cb = np.cumsum(_arr(bq))
        sq_arr = _arr(sq)
        cs = np.cumsum(sq_arr)
        bounds = np.union1d(cb, cs[cs < tb])
        bounds = bounds[bounds > 0]
        starts = np.concatenate((np.zeros(1, dtype=np.int64), bounds[:-1]))
        bi = np.searchsorted(cb, bounds, side="left")
        sj = np.searchsorted(cs, bounds, side="left")
        out.b.extend(_list(_arr(bo)[bi]))
        out.s.extend(_list(_arr(so)[sj]))
        out.p.extend(_list(_arr(bp)[bi]))
        out.q.extend(_list(bounds - starts))
        return _list(np.minimum(sq_arr, np.maximum(cs - tb, 0)))
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


def _pair_np(
    pool: _Pool,
    b: tuple[_I64, _I64, _I64, _I64],
    s: tuple[_I64, _I64, _I64, _I64],
    rules: MarketRules,
    out: _Segments,
) -> None:
    """:func:`_pair` without preferred partners, vectorised: one north-west walk over
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


def _pair(
    pool: _Pool,
    orders: Sequence[Order],
    rules: MarketRules,
    out: _Segments,
    partners: bool = True,
) -> None:
    """Pair the pool's buyer steps with its seller steps.

    Clean-only buy steps go first (they can only take clean steps), then the others. Each
    phase honours preferred partners first, then walks both merit orders (clean sell steps
    before others). Every pairing is deterministic.
    """
    b, s = pool.b, pool.s
    if b.np is not None and s.np is not None and not partners and pool.volume < _SAFE:
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


def _make_pools(fb: _Flat, fs: _Flat, sell_qty: list[int] | None) -> tuple[list[_Pool], bool]:
    """Surplus-maximising volumes and prices: one merged pool, or clean and general pools."""
    b, s = _merit(fb, buyers=True), _merit(fs, buyers=False, qty=sell_qty)
    pools: list[_Pool] = []
    q = _walk(b, s, constrained=True)
    if q is not None:
        if q > 0:
            lo, hi = _price(b, s, q)
            pools.append(_Pool(b, s, _mid(lo, hi), q))
        return pools, True
    kb = _merit(fb, buyers=True, flag_filter=1)
    cs = _merit(fs, buyers=False, flag_filter=0, qty=sell_qty)
    ib = _merit(fb, buyers=True, flag_filter=0)
    ns = _merit(fs, buyers=False, flag_filter=1, qty=sell_qty)
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
        # The intervals then overlap and one common price is an equilibrium too.
        pc = pn = _mid(max(lo_c, lo_n), min(hi_c, hi_n))
    if pc is not None:
        pools.append(_Pool(kb, cs, pc, qc))
    if pn is not None:
        pools.append(_Pool(ib, ns, pn, qn))
    return pools, False


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
    buy = Side.BUY
    mine = [o for o in orders if o.slot_start == slot_start]
    ranked = sorted([o for o in mine if o.side is buy], key=_ORDER_ID)
    n_buy = len(ranked)
    ranked += sorted([o for o in mine if o.side is not buy], key=_ORDER_ID)
    div = Divider(fairness, slot_start)
    stake_weight = stake_weights(stakes)
    fb, fs = _flatten(ranked, n_buy, rules)
    pools, merged = _make_pools(fb, fs, None)
    if rules.fair_share_bp < BASIS_POINTS and pools:
        qty, capped = _fair_share_limits(
            sum(p.volume for p in pools), fb, fs, ranked, rules.fair_share_bp
        )
        if capped:
            for owner in capped:
                div.win(owner)
            pools, merged = _make_pools(fb, fs, qty)

    for pool in pools:
        _ration(pool.s, pool.sx, pool.price, pool.volume, div, ranked)
    wins_before_buyers = dict(div.won)
    for pool in pools:
        _ration(pool.b, pool.bx, pool.price, pool.volume, div, ranked)

    # Scarcity: grid unavailable, or unfilled must-run demand exceeds the import capacity.
    gbx = _collect(pools, len(fb), buyers=True)
    residual = _import_residuals(fb, gbx, rules)
    scarcity = not rules.grid_available or (
        rules.import_capacity_wh is not None and sum(residual.values()) > rules.import_capacity_wh
    )
    if scarcity and pools:
        div.won = wins_before_buyers  # the price-based buyer rationing is replaced
        for pool in pools:
            clean_limit = sum(x for x, f in zip(pool.sx, pool.s.flag, strict=True) if f == 0)
            _scarcity_buyers(pool, ranked, stake_weight, div, clean_limit if merged else None)
        gbx = _collect(pools, len(fb), buyers=True)
        residual = _import_residuals(fb, gbx, rules)

    segments = _Segments()
    partners = any(map(_PARTNERS, ranked))
    for pool in pools:
        _pair(pool, ranked, rules, segments, partners)
    raw_fills = segments.aggregate()

    return _summarise(
        _Context(ranked, rules, slot_start, fb, fs, stake_weight, div, fairness),
        pools,
        merged,
        scarcity,
        raw_fills,
        residual,
        gbx,
    )


_ORDER_ID = attrgetter("order_id")
_PARTNERS = attrgetter("preferred_partners")


def _collect(pools: Sequence[_Pool], n: int, *, buyers: bool) -> list[int]:
    """Per-step allocations of one side, indexed like its :class:`_Flat`."""
    out = [0] * n
    for pool in pools:
        st, x = (pool.b, pool.bx) if buyers else (pool.s, pool.sx)
        deque(map(out.__setitem__, st.flat, x), maxlen=0)  # out[flat[i]] = x[i], in C
    return out


def _import_residuals(fb: _Flat, gbx: Sequence[int], rules: MarketRules) -> dict[int, int]:
    """Unfilled Wh per buy order of steps at or above the import price (they use the grid)."""
    out: dict[int, int] = {}
    qty, ois = fb.qty, fb.oi
    for f in fb.where(rules.import_price, at_least=True):
        r = qty[f] - gbx[f]
        if r:
            oi = ois[f]
            out[oi] = out.get(oi, 0) + r
    return out


@dataclass(slots=True)
class _Context:
    orders: list[Order]
    rules: MarketRules
    slot_start: int
    fb: _Flat
    fs: _Flat
    stake_weight: Mapping[str, int]
    div: Divider
    fairness: FairnessState


def _grid(
    ctx: _Context, gsx: Sequence[int], residual: Mapping[int, int]
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


class _Parts:
    """The clearing's internal arrays, turned into result objects on demand (cached)."""

    def __init__(
        self,
        ctx: _Context,
        raw_fills: _FillTable,
        gbx: list[int],
        gsx: list[int],
        residual: Mapping[int, int],
        grid_in: Mapping[int, int],
        grid_out: Mapping[int, int],
        export_residual: Mapping[int, int],
    ) -> None:
        self.ctx = ctx
        self.raw_fills = raw_fills
        self.gbx = gbx
        self.gsx = gsx
        self.residual = residual
        self.grid_in = grid_in
        self.grid_out = grid_out
        self.export_residual = export_residual
        self._fills: tuple[Fill, ...] | None = None
        self._orders: tuple[OrderResult, ...] | None = None
        self._members: tuple[MemberResult, ...] | None = None

    def fills(self) -> tuple[Fill, ...]:
        if self._fills is None:
            orders = self.ctx.orders
            fee = self.ctx.rules.distributor_fee
            out = []
            for boi, soi, price, wh in zip(*self.raw_fills.columns(), strict=True):
                bo, so = orders[boi], orders[soi]
                out.append(
                    _new_fill(
                        (bo.owner, bo.order_id, so.owner, so.order_id, wh, price, fee, so.clean)
                    )
                )
            self._fills = tuple(out)
        return self._fills

    def order_results(self) -> tuple[OrderResult, ...]:
        if self._orders is None:
            self._orders = self._build_orders()
        return self._orders

    def _build_orders(self) -> tuple[OrderResult, ...]:
        ctx = self.ctx
        orders = ctx.orders
        fee = ctx.rules.distributor_fee
        n = len(orders)
        amount = [0] * n
        for boi, soi, price, wh in zip(*self.raw_fills.columns(), strict=True):
            money = wh * price
            amount[boi] += money
            amount[soi] += money
        per_step: list[list[int] | None] = [None] * n
        for flat, gx in ((ctx.fb, self.gbx), (ctx.fs, self.gsx)):
            ois, ks = flat.oi, flat.k
            for f, v in enumerate(gx):
                if v:
                    oi = ois[f]
                    row = per_step[oi]
                    if row is None:
                        row = per_step[oi] = [0] * len(orders[oi].steps)
                    row[ks[f]] = v
        zeros: dict[int, tuple[int, ...]] = {}
        results = []
        grid_in, grid_out = self.grid_in, self.grid_out
        residual, export_residual = self.residual, self.export_residual
        for oi, order in enumerate(orders):
            row = per_step[oi]
            if row is None:
                k = len(order.steps)
                steps_filled = zeros.get(k) or zeros.setdefault(k, (0,) * k)
                filled = 0
            else:
                steps_filled = tuple(row)
                filled = sum(row)
            if order.side is Side.BUY:
                grid = grid_in.get(oi, 0)
                results.append(
                    _new_result(
                        (
                            order.order_id,
                            order.owner,
                            "buy",
                            filled,
                            amount[oi],
                            filled * fee,
                            grid,
                            residual.get(oi, 0) - grid,
                            0,
                            steps_filled,
                        )
                    )
                )
            else:
                grid = grid_out.get(oi, 0)
                results.append(
                    _new_result(
                        (
                            order.order_id,
                            order.owner,
                            "sell",
                            filled,
                            amount[oi],
                            0,
                            grid,
                            0,
                            export_residual.get(oi, 0) - grid,
                            steps_filled,
                        )
                    )
                )
        results.sort(key=_ORDER_ID)
        return tuple(results)

    def member_results(self) -> tuple[MemberResult, ...]:
        if self._members is None:
            members: dict[str, list[int]] = {}
            for r in self.order_results():
                m = members.get(r.owner)
                if m is None:
                    m = members[r.owner] = [0] * 9
                if r.side == "buy":
                    m[0] += r.filled_wh
                    m[2] += r.amount_milli + r.fee_milli
                    m[4] += r.fee_milli
                    m[5] += r.grid_wh
                    m[7] += r.unserved_wh
                else:
                    m[1] += r.filled_wh
                    m[3] += r.amount_milli
                    m[6] += r.grid_wh
                    m[8] += r.curtailed_wh
            self._members = tuple(MemberResult(o, *members[o]) for o in sorted(members))
        return self._members


def _top(b: _Steps, s: _Steps) -> int:
    """Largest absolute effective price of two int64-backed step lists."""
    assert b.np is not None
    assert s.np is not None
    return max(int(np.abs(b.np[0]).max()), int(np.abs(s.np[0]).max()), 1)


def _summarise(
    ctx: _Context,
    pools: Sequence[_Pool],
    merged: bool,
    scarcity: bool,
    raw_fills: _FillTable,
    residual: Mapping[int, int],
    gbx: list[int],
) -> SlotResult:
    fee = ctx.rules.distributor_fee
    surplus = 0
    clean_volume = 0
    for pool in pools:
        b, s = pool.b, pool.s
        if b.np is not None and s.np is not None and pool.volume * _top(b, s) < _SAFE:
            bx, sx = pool.arrays()
            surplus += int(bx @ b.np[0]) - int(sx @ s.np[0])
            clean_volume += int(sx[s.np[1] == 0].sum())
        else:
            surplus += int(sumprod(pool.bx, b.eff)) - int(sumprod(pool.sx, s.eff))
            clean_volume += sum(compress(pool.sx, [not f for f in s.flag]))
    volume = sum(p.volume for p in pools)
    gsx = _collect(pools, len(ctx.fs), buyers=False)
    grid_in, grid_out, export_residual = _grid(ctx, gsx, residual)

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
        _parts=_Parts(ctx, raw_fills, gbx, gsx, residual, grid_in, grid_out, export_residual),
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
