"""The home's horizon as one linear program, solved with HiGHS (``highspy``).

:class:`HomeLP` holds one home's model for one planning horizon: per slot the home's net
exchange (what it buys and sells), every battery's charge, discharge and content, every EV
session's and flexible plug task's energy, and two soft import tiers that keep the home's
import flat. The model is built from numpy arrays in one pass (no per-element Python loop
over the matrix) and handed to HiGHS as a column-wise sparse matrix; :meth:`HomeLP.solve_at`
then re-solves it for a price of the first slot, warm-started from the previous basis, which
is how the planner reads the home's demand curve for the slot it bids for.

Units: energy in Wh, prices in minor units per kWh, so the objective is in milli-minor
units (Wh x minor/kWh). The model works in floating point; the planner rounds what it
reads back to integer Wh and checks device limits (see ``planner.py``).

Every slot ``k`` (``0 <= k < n``)::

    buy_k - sell_k + unmet_k = net_k + sum_b (ch_bk - dis_bk) + sum_e ev_ek + sum_p plug_pk
    soc_bk = soc_b,k-1 + eta_b ch_bk - dis_bk          (content after slot k, per battery)
    buy_k <= tier_1 + over1_k + over2_k                 (soft flattening tiers)
    buy_k <= room_k + above_k                            (soft: the home's capacity share)
    sum_k ev_ek + later_e + short_e = need_e            (per EV session)
    sum_k plug_pk + short_p = need_p                    (per plug task)
    sum_k buy_price_k w_k + later_cost later_w <= budget_w   (EV and plug windows with one)

    minimise sum_k (buy_price_k buy_k - sell_price_k sell_k + pen_1 over1_k + pen_2 over2_k
                    + room_cost above_k + big unmet_k)
             + sum_b (deg_b dis_bk) - sum_b value_b soc_b,n-1
             + sum_e (later_cost_e later_e + big short_e) + big sum_p short_p
             + a tiny cost growing with k on EV and plug energy (earlier is preferred)
             + sum_w tie * rank_w * sum_k (buy_price_k + k / (n + 1)) w_k

The last term breaks ties between windows: moving energy from one EV or plug to another in
the same slots costs the home nothing, so without it which device takes the first slot (the
one the home bids for) is whatever the solver's pivoting gives, and any new row can swap
them. Windows are ranked by deadline, then by need (``rank_w`` is highest for the one that
ends first): the higher-ranked window gets the cheaper slots and, among equally cheap ones,
the earlier ones; the first slot counts at the price solved for. A plug that may wait an
hour so bids only what its cheapest slot costs, and runs at once when every price is equal.
The term is only there when two windows share a slot (otherwise there is no tie to break),
and ``tie`` keeps its smallest step (one slot later, one rank apart) well above HiGHS's
tolerances while the whole term stays below a tenth of a price unit per Wh.

The budget row keeps the fictional costs (the flattening tiers, the capacity share, the
neighbours' expected prices) from moving an EV or a plug into slots that cost the home more
at the grid's prices than running flat out from its start, which is what the device does
without the planner: they may only spread it over slots that cost no more. Running flat out
meets the budget, so the row never makes the model infeasible. The row is divided by the
window's highest price, so it reads in Wh like the need row beside it.

**A plan always solves.** The model is feasible and bounded whatever the inputs, so a status
other than optimal is round-off in the solver. :meth:`HomeLP.solve_at` then solves again
from scratch; if that fails too, without the tie-break (the plan is as good, only the split
between windows at equal cost is the solver's); if that fails too, without the budget rows
as well (the model the planner had before them). ``HomeLP.fallbacks`` counts the solves that
needed one of the two.

``unmet`` and ``short`` keep the model feasible whatever the inputs (an import limit below
the must-run load, an EV session that cannot be finished); their cost is far above any
price, so they are only used when nothing else can serve.

Public API: :class:`BatteryModel`, :class:`WindowModel`, :class:`LpInput`,
:class:`LpSolution`, :class:`HomeLP`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import highspy  # type: ignore[import-untyped]
import numpy as np
from numpy.typing import NDArray

INF = float(highspy.kHighsInf)
# Cost per Wh and slot of delay for EV and plug energy: breaks ties towards earlier slots.
# Far below one price unit over any horizon the planner uses (it is in milli-minor per Wh).
EARLY_EPS = 1e-3
# Cost per Wh of the tie-break between EV and plug windows (see the module docstring), per
# rank step and price unit. Its smallest step, one slot later at one rank apart, is
# TIE_EPS / (n + 1): about 5e-7 for 48 hours of 15-minute slots, five times HiGHS's dual
# feasibility tolerance (1e-7); the whole term stays below 0.1 price unit per Wh for prices
# up to about 150 minor units with five windows.
TIE_EPS = 1e-4


@dataclass(frozen=True, slots=True)
class BatteryModel:
    """One battery in the LP (all energies Wh per slot, prices per kWh)."""

    capacity_wh: float
    reserve_wh: float
    soc_wh: float
    charge_wh: float  # most AC energy into the battery per slot
    discharge_wh: float  # most AC energy out of it per slot
    efficiency: float  # round trip, booked on charging
    degradation: float  # per kWh discharged
    end_value: float  # value per kWh of the content left after the horizon


@dataclass(frozen=True, slots=True)
class WindowModel:
    """An EV session or a plug task: ``need_wh`` within slots ``[first, last)``.

    ``later_wh`` may be left for after the horizon (an EV that departs after it), at
    ``later_cost`` per kWh.
    """

    first: int
    last: int
    per_slot_wh: float
    need_wh: float
    later_wh: float = 0.0
    later_cost: float = 0.0
    # Most the window's energy may cost at the buy prices (``later`` at ``later_cost``):
    # what it costs flat out from ``first`` (None: no limit). See the module docstring.
    budget: float | None = None


@dataclass(frozen=True, slots=True)
class LpInput:
    """Everything the LP needs; arrays have one entry per slot."""

    net_wh: NDArray[Any]  # fixed net demand: inflexible load - PV
    buy_price: NDArray[Any]  # what importing costs in each slot (slot 0 is set per solve)
    sell_price: NDArray[Any]  # what exporting earns in each slot
    # Cheaper energy expected from neighbours for flexible loads (EV, plugs) only, from
    # slot 1 on (None: none); a battery never counts on it.
    flex_price: NDArray[Any] | None = None
    import_cap_wh: NDArray[Any] | None = None  # hard limit on the net import (None: none)
    tiers: tuple[tuple[float, float], tuple[float, float]] | None = None
    # The home's room under the community's import capacity per slot (Wh, its own fixed
    # import included) and the cost per kWh of importing above it (None: no capacity).
    room_wh: NDArray[Any] | None = None
    room_cost: float = 0.0
    batteries: tuple[BatteryModel, ...] = ()
    evs: tuple[WindowModel, ...] = ()
    plugs: tuple[WindowModel, ...] = ()
    big: float = 1e4  # cost per kWh of unmet demand (far above any price)


@dataclass(frozen=True, slots=True)
class LpSolution:
    """One solve's values (Wh per slot), read back from HiGHS."""

    price: float
    buy: NDArray[Any]
    sell: NDArray[Any]
    charge: NDArray[Any]  # (batteries, slots)
    discharge: NDArray[Any]
    soc: NDArray[Any]
    ev: NDArray[Any]  # (sessions, slots), zero outside the window
    plug: NDArray[Any]  # (tasks, slots)
    unmet: NDArray[Any]
    objective: float

    @property
    def net0(self) -> float:
        """Net import of the first slot."""
        return float(self.buy[0] - self.sell[0])


@dataclass
class _Layout:
    """Column and row indices of the model's parts."""

    n_col: int = 0
    n_row: int = 0
    cols: dict[str, NDArray[Any]] = field(default_factory=dict)

    def add(self, name: str, count: int) -> NDArray[Any]:
        idx = np.arange(self.n_col, self.n_col + count)
        self.cols[name] = idx
        self.n_col += count
        return idx

    def rows(self, count: int) -> NDArray[Any]:
        idx = np.arange(self.n_row, self.n_row + count)
        self.n_row += count
        return idx


class HomeLP:
    """One home's horizon LP; build once, then :meth:`solve_at` for first-slot prices."""

    def __init__(self, data: LpInput) -> None:
        """Build the model from ``data`` (see the module docstring for its form)."""
        self.data = data
        n = int(data.net_wh.size)
        self.n = n
        lay = _Layout()
        nb, ne, npl = len(data.batteries), len(data.evs), len(data.plugs)
        buy = lay.add("buy", n)
        sell = lay.add("sell", n)
        unmet = lay.add("unmet", n)
        lo = [np.zeros(3 * n)]
        cap = data.import_cap_wh if data.import_cap_wh is not None else np.full(n, INF)
        hi = [np.asarray(cap, dtype=float), np.full(n, INF), np.full(n, INF)]
        cost = [
            np.asarray(data.buy_price, dtype=float),
            -np.asarray(data.sell_price, dtype=float),
            np.full(n, data.big),
        ]
        rows: list[NDArray[Any]] = []
        cidx: list[NDArray[Any]] = []
        vals: list[NDArray[Any]] = []
        balance = lay.rows(n)
        row_lo = [np.asarray(data.net_wh, dtype=float)]
        row_hi = [np.asarray(data.net_wh, dtype=float)]

        def put(r: NDArray[Any], c: NDArray[Any], v: float | NDArray[Any]) -> None:
            rows.append(np.asarray(r))
            cidx.append(np.asarray(c))
            vals.append(np.broadcast_to(np.asarray(v, dtype=float), np.shape(c)).copy())

        put(balance, buy, 1.0)
        put(balance, sell, -1.0)
        put(balance, unmet, 1.0)
        flex_buy = None
        if data.flex_price is not None and n > 1 and (data.evs or data.plugs):
            flex_buy = lay.add("flex_buy", n - 1)
            fp = np.asarray(data.flex_price, dtype=float)[1:]
            lo.append(np.zeros(n - 1))
            # only where neighbours are expected to sell below the grid's price: there the
            # community does not import, so the flattening tiers do not apply to it
            hi.append(np.where(fp < np.asarray(data.buy_price, dtype=float)[1:], INF, 0.0))
            cost.append(fp)
            put(balance[1:], flex_buy, 1.0)
            cover = lay.rows(n - 1)  # flex_buy_k <= EV and plug energy of slot k
            put(cover, flex_buy, 1.0)
            row_lo.append(np.full(n - 1, -INF))
            row_hi.append(np.zeros(n - 1))
        if data.tiers is not None:
            (t1, p1), (t2, p2) = data.tiers
            o1 = lay.add("over1", n)
            o2 = lay.add("over2", n)
            lo.append(np.zeros(2 * n))
            hi += [np.full(n, max(t2 - t1, 0.0)), np.full(n, INF)]
            cost += [np.full(n, p1), np.full(n, p2)]
            flat = lay.rows(n)
            put(flat, buy, 1.0)
            put(flat, o1, -1.0)
            put(flat, o2, -1.0)
            row_lo.append(np.full(n, -INF))
            row_hi.append(np.full(n, t1))
        above0: int | None = None
        if data.room_wh is not None:
            above = lay.add("above", n)
            above0 = int(above[0])
            lo.append(np.zeros(n))
            hi.append(np.full(n, INF))
            cost.append(np.full(n, data.room_cost))
            room = lay.rows(n)
            put(room, buy, 1.0)
            put(room, above, -1.0)
            row_lo.append(np.full(n, -INF))
            row_hi.append(np.maximum(np.asarray(data.room_wh, dtype=float), 0.0))
        self._bat: list[tuple[NDArray[Any], NDArray[Any], NDArray[Any]]] = []
        for b in data.batteries:
            ch = lay.add(f"ch{len(self._bat)}", n)
            dis = lay.add(f"dis{len(self._bat)}", n)
            soc = lay.add(f"soc{len(self._bat)}", n)
            floor = min(b.reserve_wh, b.soc_wh)
            ceiling = max(b.capacity_wh, b.soc_wh)
            lo += [np.zeros(2 * n), np.full(n, floor)]
            hi += [np.full(n, b.charge_wh), np.full(n, b.discharge_wh), np.full(n, ceiling)]
            end = np.zeros(n)
            end[-1] = -b.end_value
            early = EARLY_EPS * np.arange(n)
            cost += [early, b.degradation + early, end]
            put(balance, ch, -1.0)
            put(balance, dis, 1.0)
            dyn = lay.rows(n)
            put(dyn, soc, 1.0)
            put(dyn[1:], soc[:-1], -1.0)
            put(dyn, ch, -b.efficiency)
            put(dyn, dis, 1.0)
            rhs = np.zeros(n)
            rhs[0] = b.soc_wh
            row_lo.append(rhs)
            row_hi.append(rhs.copy())
            self._bat.append((ch, dis, soc))
        self._win: list[list[tuple[NDArray[Any], int, int]]] = [[], []]
        rank = _ranks(data.evs + data.plugs, n)
        price = np.asarray(data.buy_price, dtype=float)
        self._tie0: list[tuple[int, float]] = []  # (first-slot column, tie weight)
        # (columns, their cost without the tie-break) to drop it if the solver fails
        self._tie_cols: list[tuple[NDArray[Any], NDArray[Any]]] = []
        self._budget_rows: list[tuple[int, float]] = []  # (row, upper bound)
        for kind, windows in enumerate((data.evs, data.plugs)):
            for w in windows:
                weight = TIE_EPS * rank[len(self._win[0]) + len(self._win[1])]
                first, last = max(0, w.first), min(n, w.last)
                width = max(0, last - first)
                col = lay.add(f"w{kind}.{len(self._win[kind])}", width)
                extra = lay.add(f"x{kind}.{len(self._win[kind])}", 2)  # later, short
                lo.append(np.zeros(width + 2))
                hi += [np.full(width, w.per_slot_wh), np.asarray([w.later_wh, INF])]
                slots = np.arange(first, last)
                plain = EARLY_EPS * slots
                cost += [plain + weight * (price[first:last] + slots / (n + 1))]
                cost.append(np.asarray([w.later_cost, data.big]))
                if weight > 0 and width > 0:
                    self._tie_cols.append((col, plain))
                    if first == 0:
                        self._tie0.append((int(col[0]), weight))
                put(balance[first:last], col, -1.0)
                if flex_buy is not None:
                    inside = slots[slots >= 1]
                    put(cover[inside - 1], col[slots >= 1], -1.0)
                need = lay.rows(1)
                put(np.repeat(need, width), col, 1.0)
                put(np.repeat(need, 2), extra, 1.0)
                row_lo.append(np.asarray([w.need_wh]))
                row_hi.append(np.asarray([w.need_wh]))
                if w.budget is not None:
                    spend = lay.rows(1)
                    scale = _budget_scale(price[first:last], w.later_cost)
                    put(np.repeat(spend, width), col, price[first:last] / scale)
                    put(spend, extra[:1], w.later_cost / scale)
                    row_lo.append(np.asarray([-INF]))
                    # round-off: the flat-out schedule meets it exactly
                    upper = w.budget / scale
                    row_hi.append(np.asarray([upper + 1e-6 * abs(upper) + 1e-3]))
                    self._budget_rows.append((int(spend[0]), float(row_hi[-1][0])))
                self._win[kind].append((col, first, last))
        self._buy, self._sell, self._unmet = buy, sell, unmet
        self._over0: tuple[int, int, float, float] | None = None
        if data.tiers is not None:
            (_, p1), (_, p2) = data.tiers
            self._over0 = (int(lay.cols["over1"][0]), int(lay.cols["over2"][0]), p1, p2)
        self._above0 = None if above0 is None else (above0, data.room_cost)
        self._top0 = float(np.asarray(data.buy_price, dtype=float)[0])
        self._nb, self._ne, self._np = nb, ne, npl
        r = np.concatenate(rows)
        c = np.concatenate(cidx)
        v = np.concatenate(vals)
        order = np.lexsort((r, c))
        r, c, v = r[order], c[order], v[order]
        start = np.searchsorted(c, np.arange(lay.n_col + 1))
        lp = highspy.HighsLp()
        lp.num_col_ = lay.n_col
        lp.num_row_ = lay.n_row
        lp.col_cost_ = np.concatenate(cost)
        lp.col_lower_ = np.concatenate(lo)
        lp.col_upper_ = np.concatenate(hi)
        lp.row_lower_ = np.concatenate(row_lo)
        lp.row_upper_ = np.concatenate(row_hi)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = start.astype(np.int32)
        lp.a_matrix_.index_ = r.astype(np.int32)
        lp.a_matrix_.value_ = v
        self._base_buy0 = float(lp.col_cost_[buy[0]])
        solver = highspy.Highs()
        solver.setOptionValue("output_flag", False)
        solver.setOptionValue("threads", 1)
        solver.setOptionValue("presolve", "off")
        solver.passModel(lp)
        self._solver = solver
        self._tied = [(col, np.asarray(lp.col_cost_)[col]) for col, _ in self._tie_cols]
        self._tie_price0 = self._top0  # the first slot's price in its tie-break costs
        self.solves = 0
        self.fallbacks = 0  # solves that needed the tie-break or the budget dropped

    def solve_at(self, price: float | None = None) -> LpSolution:
        """Solve with the first slot bought and sold at ``price`` (None: as built).

        A status other than optimal is retried from scratch, then without the tie-break,
        then also without the budget rows (see the module docstring); if none of them
        solves, raises ``RuntimeError`` (the model is always feasible and bounded, so that
        is a solver failure, not bad input).
        """
        solver = self._solver
        b0, s0 = int(self._buy[0]), int(self._sell[0])
        if price is not None:
            cols, costs = [b0, s0], [price, -price]
            if self._over0 is not None:
                # Below the import price the first slot's energy comes from neighbours, not
                # the grid: the flattening tiers apply only at the import price.
                grid = price >= self._top0
                o1, o2, p1, p2 = self._over0
                cols += [o1, o2]
                costs += [p1 if grid else 0.0, p2 if grid else 0.0]
            if self._above0 is not None:  # the same for the capacity share
                col, room_cost = self._above0
                cols.append(col)
                costs.append(room_cost if price >= self._top0 else 0.0)
            for col, weight in self._tie0:
                cols.append(col)
                costs.append(weight * price)
            self._tie_price0 = float(price)
            solver.changeColsCost(
                len(cols), np.asarray(cols, dtype=np.int32), np.asarray(costs, dtype=float)
            )
        status = self._run()
        if status != highspy.HighsModelStatus.kOptimal:
            # A warm start can stall on round-off: solve once more from scratch.
            solver.clearSolver()
            status = self._run()
        dropped = False
        if status != highspy.HighsModelStatus.kOptimal and self._tie_cols:
            dropped = True
            self._tie_break(False)
            solver.clearSolver()
            status = self._run()
        if status != highspy.HighsModelStatus.kOptimal and self._budget_rows:
            dropped = True
            self._budgets(False)
            solver.clearSolver()
            status = self._run()
        if status != highspy.HighsModelStatus.kOptimal:
            if dropped:
                self._restore()
            raise RuntimeError(f"the home plan did not solve: {solver.modelStatusToString(status)}")
        x = np.asarray(solver.getSolution().col_value)
        n = self.n

        def rows_of(cols: list[NDArray[Any]]) -> NDArray[Any]:
            return np.asarray([x[c] for c in cols]).reshape(len(cols), n)

        def windows(kind: int) -> NDArray[Any]:
            out = np.zeros((len(self._win[kind]), n))
            for j, (col, first, last) in enumerate(self._win[kind]):
                out[j, first:last] = x[col]
            return out

        solution = LpSolution(
            price=self._base_buy0 if price is None else float(price),
            buy=x[self._buy],
            sell=x[self._sell],
            charge=rows_of([b[0] for b in self._bat]),
            discharge=rows_of([b[1] for b in self._bat]),
            soc=rows_of([b[2] for b in self._bat]),
            ev=windows(0),
            plug=windows(1),
            unmet=x[self._unmet],
            objective=float(solver.getInfo().objective_function_value),
        )
        if dropped:
            self.fallbacks += 1
            self._restore()
        return solution

    def _run(self) -> Any:
        """Run HiGHS on the model as it stands; its model status."""
        self._solver.run()
        self.solves += 1
        return self._solver.getModelStatus()

    def _tie_break(self, on: bool) -> None:
        """Put the tie-break costs of the windows on or take them off."""
        cost: dict[int, float] = {}
        for (col, plain), (_, tied) in zip(self._tie_cols, self._tied, strict=True):
            values = tied if on else plain
            cost.update((int(c), float(v)) for c, v in zip(col, values, strict=True))
        if on:  # the first slot's at the price last solved for
            cost.update((c, w * self._tie_price0) for c, w in self._tie0)
        idx = np.asarray(list(cost), dtype=np.int32)
        status = self._solver.changeColsCost(
            idx.size, idx, np.asarray(list(cost.values()), dtype=float)
        )
        if status != highspy.HighsStatus.kOk:
            raise RuntimeError("the home plan's tie-break could not be changed")

    def _budgets(self, on: bool) -> None:
        """Put the budget rows' upper bounds on or take them off."""
        for row, upper in self._budget_rows:
            self._solver.changeRowBounds(row, -INF, upper if on else INF)

    def _restore(self) -> None:
        """The model as built (after a fallback): tie-break and budgets back on."""
        if self._tie_cols:
            self._tie_break(True)
        if self._budget_rows:
            self._budgets(True)


def _budget_scale(price: NDArray[Any], later_cost: float) -> float:
    """What a budget row is divided by: the window's highest price, so the row reads in Wh
    like the need row beside it (in money units HiGHS ended a winter week's plan with
    status Unknown)."""
    return float(max(1.0, abs(later_cost), *np.abs(price).tolist()))


def _ranks(windows: tuple[WindowModel, ...], n: int) -> list[int]:
    """Each window's tie-break rank: highest for the one that ends first (then the one
    that needs least), 1 for the last; 0 for a window that shares no slot with another
    (there is no tie to break); see the module docstring."""
    span = [(max(0, w.first), min(n, w.last)) for w in windows]
    shared = [
        j
        for j, (a, b) in enumerate(span)
        if any(i != j and max(a, c) < min(b, d) for i, (c, d) in enumerate(span))
    ]
    order = sorted(shared, key=lambda j: (span[j][1], windows[j].need_wh, j))
    out = [0] * len(windows)
    for pos, j in enumerate(order):
        out[j] = len(order) - pos
    return out
