"""Baselines on the same community data: no trading, a ramp strategy, and the optimum.

1. :func:`no_trade`: every home on its own. PV first covers the home's load, a battery
   charges from the home's surplus and discharges into its deficit (the usual
   self-consumption controller), the EV charges at full power from arrival until done,
   flexible plugs run at full power from their earliest start; the rest is imported at
   the retail price or exported at the feed-in tariff.
2. :func:`ramp`: a strategy like Grid Singularity's defaults on *our* clearing
   (``clear_slot`` of the engine): each slot is split into ticks; at each tick every asset
   posts what it still has at a price moving linearly across the slot from an initial to a
   final rate per asset kind (PV sells from the retail price down to the feed-in tariff,
   loads buy from the feed-in tariff up to the retail price, batteries buy up to 80 % of the
   spread and sell down to just above that). EVs and plugs are not shifted (GSy loads are
   fixed profiles). What is left after the last tick goes to the grid.
3. :func:`optimum`: the perfect-foresight community optimum, one linear program (HiGHS)
   over all homes and slots with the same devices and limits, minimising the community's
   grid cost (import x retail - export x feed-in - stored-energy credit). Money between
   homes cancels out in the community total, so no market on the same devices can beat it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from custom_components.peer_energy.core.market.clearing import clear_slot
from custom_components.peer_energy.core.market.fairness import FairnessState
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side, Step

from .community import Community
from .kpi import RunResult


def fixed_schedules(c: Community) -> tuple[NDArray[Any], NDArray[Any]]:
    """EV and flexible-plug consumption without smart control: full power, as early as possible."""
    ev = np.zeros_like(c.load_wh)
    flex = np.zeros_like(c.load_wh)
    for i, home in enumerate(c.homes):
        if home.ev is not None:
            per_slot = c.max_wh(home.ev.charger_w)
            for s in home.ev.sessions:
                _fill_early(ev[i], s.arrive, s.depart, s.energy_wh, per_slot)
        for task in home.flex:
            _fill_early(
                flex[i], task.earliest, task.deadline, task.energy_wh, c.max_wh(task.power_w)
            )
    return ev, flex


def _fill_early(row: NDArray[Any], start: int, end: int, energy: int, per_slot: int) -> None:
    left = energy
    for t in range(start, end):
        if left <= 0:
            break
        take = min(per_slot, left)
        row[t] += take
        left -= take


class Batteries:
    """The community's batteries as arrays (capacity, power per slot, round-trip efficiency,
    reserve and initial state of charge, all Wh or %); homes without one have zeros."""

    def __init__(self, c: Community) -> None:
        n = c.n_homes
        self.cap: NDArray[Any] = np.zeros(n, dtype=np.int64)
        self.pw: NDArray[Any] = np.zeros(n, dtype=np.int64)
        self.eff: NDArray[Any] = np.full(n, 100, dtype=np.int64)
        self.reserve: NDArray[Any] = np.zeros(n, dtype=np.int64)
        self.soc0: NDArray[Any] = np.zeros(n, dtype=np.int64)
        for i, home in enumerate(c.homes):
            b = home.battery
            if b is not None:
                self.cap[i] = b.capacity_wh
                self.pw[i] = c.max_wh(b.power_w)
                self.eff[i] = b.efficiency_pct
                self.reserve[i] = b.reserve_wh
                self.soc0[i] = b.initial_soc_wh

    def charge_limit(self, soc: NDArray[Any]) -> NDArray[Any]:
        """Most AC energy each battery can take this slot (losses booked on charging)."""
        return np.asarray(np.maximum(np.minimum(self.pw, (self.cap - soc) * 100 // self.eff), 0))

    def discharge_limit(self, soc: NDArray[Any]) -> NDArray[Any]:
        """Most AC energy each battery can deliver this slot (down to the reserve)."""
        return np.asarray(np.maximum(np.minimum(self.pw, soc - self.reserve), 0))

    def apply(
        self, soc: NDArray[Any], charge: NDArray[Any], discharge: NDArray[Any]
    ) -> NDArray[Any]:
        """New state of charge: ``+ floor(charge x eff) - discharge`` (never above the exact
        lossy update, so the optimum's constraints admit every simulated dispatch)."""
        return np.asarray(soc + charge * self.eff // 100 - discharge)


def _empty(c: Community, name: str) -> dict[str, NDArray[Any]]:
    z = np.zeros_like(c.load_wh)
    return {k: z.copy() for k in ("bought", "sold", "paid", "received", "clean_bought")}


def no_trade(c: Community) -> RunResult:
    """Baseline 1: every home alone with its own PV and battery (see the module docstring)."""
    began = time.perf_counter()
    ev, flex = fixed_schedules(c)
    bat = Batteries(c)
    soc0 = bat.soc0
    soc = soc0.copy()
    shape = c.load_wh.shape
    imp = np.zeros(shape, dtype=np.int64)
    exp = np.zeros(shape, dtype=np.int64)
    ch = np.zeros(shape, dtype=np.int64)
    dis = np.zeros(shape, dtype=np.int64)
    net = c.load_wh + ev + flex - c.pv_wh
    for t in range(c.n_slots):
        n = net[:, t]
        ch[:, t] = np.minimum(np.maximum(-n, 0), bat.charge_limit(soc))
        dis[:, t] = np.minimum(np.maximum(n, 0), bat.discharge_limit(soc))
        soc = bat.apply(soc, ch[:, t], dis[:, t])
        residual = n + ch[:, t] - dis[:, t]
        imp[:, t] = np.maximum(residual, 0)
        exp[:, t] = np.maximum(-residual, 0)
    z = _empty(c, "no_trade")
    return RunResult(
        "no trading",
        imp,
        exp,
        z["bought"],
        z["sold"],
        z["paid"],
        z["received"],
        ch,
        dis,
        soc0,
        soc,
        ev,
        flex,
        z["clean_bought"],
        np.full(c.n_slots, np.nan),
        runtime_s=time.perf_counter() - began,
    )


# --- Ramp strategy -------------------------------------------------------------------------

TICKS = 10


def ramp(c: Community, ticks: int = TICKS) -> RunResult:
    """Baseline 2: Grid-Singularity-like linear price ramps on our clearing."""
    began = time.perf_counter()
    ev, flex = fixed_schedules(c)
    bat = Batteries(c)
    soc0 = bat.soc0
    soc = soc0.copy()
    shape = c.load_wh.shape
    out = {
        k: np.zeros(shape, dtype=np.int64)
        for k in ("imp", "exp", "ch", "dis", "bought", "sold", "paid", "received", "clean_bought")
    }
    price = np.full(c.n_slots, np.nan)
    net = c.load_wh + ev + flex - c.pv_wh
    ids = [h.home_id for h in c.homes]
    index = {hid: i for i, hid in enumerate(ids)}
    clean_only = [h.clean_only for h in c.homes]
    has_pv = c.pv_wh.sum(axis=1) > 0
    fairness = FairnessState()
    for t in range(c.n_slots):
        r, f = int(c.import_price[t]), int(c.feed_in[t])
        rules = MarketRules(import_price=r, feed_in_tariff=f, slot_seconds=c.slot_seconds)
        slot = int(c.slots[t])
        want = np.maximum(net[:, t], 0)  # deficit after own PV
        have = np.maximum(-net[:, t], 0)  # surplus after own PV
        room = bat.charge_limit(soc)
        stock = bat.discharge_limit(soc)
        bat_in = np.zeros(c.n_homes, dtype=np.int64)
        bat_out = np.zeros(c.n_homes, dtype=np.int64)
        buy_final = f + (r - f) * 8 // 10
        values: list[int] = []
        volumes: list[int] = []
        for k in range(ticks):
            frac_num, frac_den = k, max(1, ticks - 1)
            sell_pv = r - (r - f) * frac_num // frac_den
            buy_load = f + (r - f) * frac_num // frac_den
            buy_bat = f + (buy_final - f) * frac_num // frac_den
            sell_bat = r - (r - (buy_final + 1)) * frac_num // frac_den
            orders: list[Order] = []
            for i, hid in enumerate(ids):
                if want[i] > 0:
                    orders.append(
                        Order(
                            f"b{t}.{k}.{hid}",
                            hid,
                            Side.BUY,
                            slot,
                            (Step(buy_load, int(want[i])),),
                            clean_only=clean_only[i],
                        )
                    )
                if have[i] > 0:
                    orders.append(
                        Order(
                            f"s{t}.{k}.{hid}",
                            hid,
                            Side.SELL,
                            slot,
                            (Step(sell_pv, int(have[i])),),
                            clean=bool(has_pv[i]),
                        )
                    )
                if room[i] - bat_in[i] > 0:
                    orders.append(
                        Order(
                            f"bb{t}.{k}.{hid}",
                            hid + "/battery",
                            Side.BUY,
                            slot,
                            (Step(buy_bat, int(room[i] - bat_in[i])),),
                        )
                    )
                if stock[i] - bat_out[i] > 0:
                    orders.append(
                        Order(
                            f"bs{t}.{k}.{hid}",
                            hid + "/battery",
                            Side.SELL,
                            slot,
                            (Step(sell_bat, int(stock[i] - bat_out[i])),),
                        )
                    )
            if not orders:
                break
            res = clear_slot(orders, rules, slot_start=slot, fairness=fairness)
            fairness = res.fairness
            for fill in res.fills:
                e = fill.energy_wh
                b_home, b_bat = fill.buyer.split("/")[0], fill.buyer.endswith("/battery")
                s_home, s_bat = fill.seller.split("/")[0], fill.seller.endswith("/battery")
                bi, si = index[b_home], index[s_home]
                if b_bat:
                    bat_in[bi] += e
                else:
                    want[bi] -= e
                if s_bat:
                    bat_out[si] += e
                else:
                    have[si] -= e
                values.append(fill.price * e)
                volumes.append(e)
                if bi != si:
                    out["bought"][bi, t] += e
                    out["sold"][si, t] += e
                    out["paid"][bi, t] += e * (fill.price + fill.fee)
                    out["received"][si, t] += e * fill.price
                    if fill.clean:
                        out["clean_bought"][bi, t] += e
        # a battery that both bought and sold in the slot only moves the difference
        both = np.minimum(bat_in, bat_out)
        charge, discharge = bat_in - both, bat_out - both
        soc = bat.apply(soc, charge, discharge)
        out["ch"][:, t] = charge
        out["dis"][:, t] = discharge
        out["imp"][:, t] = want
        out["exp"][:, t] = have
        if volumes:
            price[t] = sum(values) / sum(volumes)
    return RunResult(
        "ramp",
        out["imp"],
        out["exp"],
        out["bought"],
        out["sold"],
        out["paid"],
        out["received"],
        out["ch"],
        out["dis"],
        soc0,
        soc,
        ev,
        flex,
        out["clean_bought"],
        price,
        runtime_s=time.perf_counter() - began,
    )


# --- Perfect-foresight optimum --------------------------------------------------------------


@dataclass
class _Cols:
    """LP column indices of one home's devices."""

    ch: NDArray[Any] | None = None
    dis: NDArray[Any] | None = None
    soc: NDArray[Any] | None = None
    ev: list[tuple[int, int]] = field(default_factory=list)
    flex: list[tuple[int, int]] = field(default_factory=list)


def optimum(c: Community) -> RunResult:
    """Baseline 3: the community's cost-minimal dispatch with perfect foresight (HiGHS LP)."""
    import highspy  # type: ignore[import-untyped]
    from scipy import sparse  # type: ignore[import-untyped]

    began = time.perf_counter()
    n_t, n_h = c.n_slots, c.n_homes
    cols_lo: list[float] = []
    cols_hi: list[float] = []
    cost: list[float] = []
    rows: list[int] = []
    cidx: list[int] = []
    vals: list[float] = []
    row_lo: list[float] = []
    row_hi: list[float] = []

    def new_cols(n: int, lo: float, hi: float, obj: NDArray[Any] | float = 0.0) -> NDArray[Any]:
        start = len(cost)
        cols_lo.extend([lo] * n)
        cols_hi.extend([hi] * n)
        cost.extend(float(x) for x in np.broadcast_to(np.asarray(obj, dtype=float), (n,)))
        return np.arange(start, start + n)

    def new_row(lo: float, hi: float) -> int:
        row_lo.append(lo)
        row_hi.append(hi)
        return len(row_lo) - 1

    inf = highspy.kHighsInf
    imp = new_cols(n_t, 0.0, inf, c.import_price.astype(float))
    exp = new_cols(n_t, 0.0, inf, -c.feed_in.astype(float))
    balance = [new_row(0.0, 0.0) for _ in range(n_t)]
    rhs = (c.load_wh - c.pv_wh).sum(axis=0).astype(float)
    for t in range(n_t):
        row_lo[balance[t]] = row_hi[balance[t]] = float(rhs[t])
        rows.extend([balance[t], balance[t]])
        cidx.extend([int(imp[t]), int(exp[t])])
        vals.extend([1.0, -1.0])

    def add_use(t: int, col: int, sign: float) -> None:
        # balance: imp - exp - sum(use) + sum(source) = load - pv
        rows.append(balance[t])
        cidx.append(col)
        vals.append(-sign)

    home_cols: list[_Cols] = []
    fit_end = float(c.feed_in[-1])
    for home in c.homes:
        hc = _Cols()
        b = home.battery
        if b is not None:
            pw = float(c.max_wh(b.power_w))
            eta = b.efficiency_pct / 100.0
            ch = new_cols(n_t, 0.0, pw)
            dis = new_cols(n_t, 0.0, pw)
            terminal = np.zeros(n_t)
            terminal[-1] = -fit_end
            soc = new_cols(n_t, float(b.reserve_wh), float(b.capacity_wh), terminal)
            for t in range(n_t):
                add_use(t, int(ch[t]), 1.0)
                add_use(t, int(dis[t]), -1.0)
                # soc_t - soc_{t-1} - eta ch_t + dis_t <= 0   (soc_{-1} = initial)
                r_ = new_row(-inf, float(b.initial_soc_wh) if t == 0 else 0.0)
                rows.extend([r_, r_, r_])
                cidx.extend([int(soc[t]), int(ch[t]), int(dis[t])])
                vals.extend([1.0, -eta, 1.0])
                if t > 0:
                    rows.append(r_)
                    cidx.append(int(soc[t - 1]))
                    vals.append(-1.0)
            hc.ch, hc.dis, hc.soc = ch, dis, soc
        evc: list[tuple[int, int]] = []
        if home.ev is not None:
            per = float(c.max_wh(home.ev.charger_w))
            for s in home.ev.sessions:
                cols = new_cols(s.depart - s.arrive, 0.0, per)
                r_ = new_row(float(s.energy_wh), float(s.energy_wh))
                for k, t in enumerate(range(s.arrive, s.depart)):
                    add_use(t, int(cols[k]), 1.0)
                    rows.append(r_)
                    cidx.append(int(cols[k]))
                    vals.append(1.0)
                    evc.append((t, int(cols[k])))
        hc.ev = evc
        flc: list[tuple[int, int]] = []
        for task in home.flex:
            cols = new_cols(task.deadline - task.earliest, 0.0, float(c.max_wh(task.power_w)))
            r_ = new_row(float(task.energy_wh), float(task.energy_wh))
            for k, t in enumerate(range(task.earliest, task.deadline)):
                add_use(t, int(cols[k]), 1.0)
                rows.append(r_)
                cidx.append(int(cols[k]))
                vals.append(1.0)
                flc.append((t, int(cols[k])))
        hc.flex = flc
        home_cols.append(hc)

    n_col, n_row = len(cost), len(row_lo)
    mat = sparse.csc_matrix((vals, (rows, cidx)), shape=(n_row, n_col))
    lp = highspy.HighsLp()
    lp.num_col_ = n_col
    lp.num_row_ = n_row
    lp.col_cost_ = np.asarray(cost)
    lp.col_lower_ = np.asarray(cols_lo)
    lp.col_upper_ = np.asarray(cols_hi)
    lp.row_lower_ = np.asarray(row_lo)
    lp.row_upper_ = np.asarray(row_hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = mat.indptr
    lp.a_matrix_.index_ = mat.indices
    lp.a_matrix_.value_ = mat.data
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.setOptionValue("threads", 1)
    solver.passModel(lp)
    solver.run()
    status = solver.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"the optimum LP did not solve: {solver.modelStatusToString(status)}")
    x = np.asarray(solver.getSolution().col_value)

    shape = c.load_wh.shape
    ch_a = np.zeros(shape)
    dis_a = np.zeros(shape)
    ev_a = np.zeros(shape)
    fl_a = np.zeros(shape)
    soc0 = np.zeros(n_h)
    soc_end = np.zeros(n_h)
    for i, (home, hc) in enumerate(zip(c.homes, home_cols, strict=True)):
        if home.battery is not None and hc.ch is not None and hc.dis is not None:
            ch_a[i] = x[hc.ch]
            dis_a[i] = x[hc.dis]
            soc0[i] = home.battery.initial_soc_wh
            soc_end[i] = x[hc.soc][-1] if hc.soc is not None else 0.0
        for t, col in hc.ev:
            ev_a[i, t] += x[col]
        for t, col in hc.flex:
            fl_a[i, t] += x[col]
    z = np.zeros((1, n_t))
    zh = np.zeros(shape)
    return RunResult(
        "optimum",
        x[imp][None, :],
        x[exp][None, :],
        z,
        z,
        z,
        z,
        ch_a,
        dis_a,
        soc0,
        soc_end,
        ev_a,
        fl_a,
        zh,
        np.full(n_t, np.nan),
        runtime_s=time.perf_counter() - began,
        per_home=False,
        extra={"objective_milli": float(solver.getInfo().objective_function_value)},
    )
