"""The clearing's step columns: one side's steps (:class:`Flat`), in merit order
(:class:`Steps`), a market pool (:class:`Pool`) and pairing segments (:class:`Segments`,
:class:`FillTable`). Columns are int64 arrays when every number fits (below :data:`SAFE`)
and exact Python int lists otherwise; both forms give the same results."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import cast

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


SAFE = 1 << 62  # numpy int64 is exact below this


SAFE_PRICE = 1 << 58


def as_i64(values: Sequence[int]) -> I64:
    return np.array(values, dtype=np.int64)


def ints(values: npt.NDArray[np.int64] | npt.NDArray[np.intp]) -> list[int]:
    return cast(list[int], values.tolist())


_COLUMNS = ("eff", "flag", "oi", "k", "qty", "raw")


class Flat:
    """All non-empty steps of one side, in order-id order (order rank, then step index).

    Columns: effective price, flag, order rank, step index, energy, limit price. They are held
    as int64 arrays when every number fits (then the lists are made on first use), otherwise
    as exact Python int lists only.
    """

    __slots__ = ("_lists", "_np")

    def __init__(
        self,
        lists: dict[str, list[int]] | None = None,
        arrays: dict[str, I64] | None = None,
    ) -> None:
        self._lists = lists if lists is not None else {c: [] for c in _COLUMNS}
        self._np = arrays

    def _col(self, name: str) -> list[int]:
        col = self._lists.get(name)
        if col is None:
            assert self._np is not None
            col = self._lists[name] = ints(self._np[name])
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
        if self._np is not None and -SAFE_PRICE < price < SAFE_PRICE:
            raw = self._np["raw"]
            return ints(np.flatnonzero(raw >= price if at_least else raw <= price))
        if at_least:
            return [f for f, p in enumerate(self.raw) if p >= price]
        return [f for f, p in enumerate(self.raw) if p <= price]

    def arrays(self) -> tuple[I64, I64, I64, I64] | None:
        """(eff, flag, oi, qty) as int64 arrays, or None when the numbers are too large."""
        if self._np is None:
            return None
        return self._np["eff"], self._np["flag"], self._np["oi"], self._np["qty"]


class Steps:
    """Steps of one side in merit order (buyers: bid descending; sellers: ask ascending).

    ``flag`` is 1 for clean-only buy steps and for non-clean sell steps, 0 otherwise, so that
    within a price level the steps that keep clean-only demand servable come first. Ties are
    broken by order id and step index. ``flat`` maps each step to its :class:`Flat` index.
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
        arrays: tuple[I64, I64, I64, I64] | None = None,
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
            self._eff = ints(self.np[0])
        return self._eff

    @property
    def flag(self) -> list[int]:
        """Flag of each step (made from the int64 copy on first use)."""
        if self._flag is None:
            assert self.np is not None
            self._flag = ints(self.np[1])
        return self._flag

    @property
    def oi(self) -> list[int]:
        """Order rank of each step (made from the int64 copy on first use)."""
        if self._oi is None:
            assert self.np is not None
            self._oi = ints(self.np[3])
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


class Pool:
    """One market pool: buyer and seller steps, its price and volume, and the allocations."""

    def __init__(self, b: Steps, s: Steps, price: int, volume: int) -> None:
        self.b = b
        self.s = s
        self.price = price
        self.volume = volume
        self.bx = [0] * len(b.qty)
        self.sx = [0] * len(s.qty)
        self._x: tuple[I64, I64] | None = None

    def arrays(self) -> tuple[I64, I64]:
        """The final allocations as int64 arrays (call once they are final; cached)."""
        if self._x is None:
            self._x = (as_i64(self.bx), as_i64(self.sx))
        return self._x


class Segments:
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
        self.chunks: list[tuple[I64, I64, I64, I64]] = []

    def add(self, b: int, s: int, p: int, q: int) -> None:
        self.b.append(b)
        self.s.append(s)
        self.p.append(p)
        self.q.append(q)

    def aggregate(self) -> FillTable:
        """One segment per (buyer order, seller order, price), sorted by those keys."""
        out = Segments()
        if not self.q and not self.chunks:
            return FillTable((out.b, out.s, out.p, out.q))
        if not self.q:
            a, b, c, q = (np.concatenate(parts) for parts in zip(*self.chunks, strict=True))
        elif not self.chunks and sum(self.q) < SAFE and -SAFE < min(self.p) <= max(self.p) < SAFE:
            a, b, c, q = (as_i64(x) for x in (self.b, self.s, self.p, self.q))
        else:
            for chunk in self.chunks:
                for dst, part in zip((self.b, self.s, self.p, self.q), chunk, strict=True):
                    dst.extend(ints(part))
            merged: dict[tuple[int, int, int], int] = {}
            for key in zip(self.b, self.s, self.p, self.q, strict=True):
                k3 = key[:3]
                merged[k3] = merged.get(k3, 0) + key[3]
            for (bo, so, pr), qty in sorted(merged.items()):
                out.add(bo, so, pr, qty)
            return FillTable((out.b, out.s, out.p, out.q))
        order = np.lexsort((c, b, a))
        a, b, c, q = a[order], b[order], c[order], q[order]
        change = (a[1:] != a[:-1]) | (b[1:] != b[:-1]) | (c[1:] != c[:-1])
        starts = np.flatnonzero(np.concatenate(([True], change)))
        return FillTable(None, (a[starts], b[starts], c[starts], np.add.reduceat(q, starts)))


class FillTable:
    """Aggregated fills as columns (buyer rank, seller rank, price, Wh), lists made lazily."""

    __slots__ = ("_arrays", "_lists")

    def __init__(
        self,
        lists: tuple[list[int], list[int], list[int], list[int]] | None,
        arrays: tuple[I64, I64, I64, I64] | None = None,
    ) -> None:
        self._lists = lists
        self._arrays = arrays

    def arrays(self) -> tuple[I64, I64, I64, I64]:
        """The four columns as int64 arrays (``OverflowError`` if a number does not fit)."""
        if self._arrays is not None:
            return self._arrays
        assert self._lists is not None
        b, s, p, q = self._lists
        return as_i64(b), as_i64(s), as_i64(p), as_i64(q)

    def columns(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """The four columns as lists of Python ints."""
        if self._lists is None:
            assert self._arrays is not None
            b, s, p, q = self._arrays
            self._lists = (ints(b), ints(s), ints(p), ints(q))
        return self._lists
