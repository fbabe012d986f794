"""Run results and the KPIs computed from them.

Every run (the market and each baseline) produces a :class:`RunResult` on the same
community: per home and slot the grid exchange, the market trades and money, and the
device dispatch. :func:`kpis` turns one result (plus the no-trading result and the
optimum for the comparisons) into plain numbers.

Definitions (all over the whole horizon):

* consumption = household load + EV charging + flexible plugs (battery losses excluded);
* self-sufficiency = 1 - community grid import / consumption;
* self-consumption = 1 - community grid export / PV generation;
* bill of a home = grid import x retail price - grid export x feed-in tariff + market
  payments - market receipts - stored-energy credit, where the stored-energy credit values
  the change in battery content over the horizon at the last slot's feed-in tariff (so a
  run cannot look cheaper by emptying its batteries, nor dearer by filling them);
* savings = no-trading bills - bills (absolute, and in % of the no-trading bills);
* share of the optimum's savings = market savings / optimum savings;
* peak grid import = the largest community import of one slot, as average kW;
* battery discharged / battery content at the end = energy all batteries delivered, and
  what they hold after the last slot (the reserve is the floor);
* traded volume = energy that changed hands between homes;
* clean share to clean-only buyers = clean energy those homes bought / all they bought in
  the market (1.0 when the engine keeps its promise), and the share of their consumption
  met by clean energy (own PV/battery and clean purchases, grid import counted as not clean);
* largest seller share = the top seller's share of all energy sold between homes;
* Gini of sales = Gini coefficient of energy sold, over the homes that could sell (PV or
  battery); 0 = equal, 1 = one seller sells everything;
* homes worse off = homes whose bill is above their no-trading bill (must be zero);
* share of the gap = (savings - "alone but smart" savings) / (optimum's savings - "alone
  but smart" savings): how much of what only a community can add this run realises;
* delivered share = 1 - energy sold but not delivered / energy sold, where a home's
  shortfall in a slot is what it sold (net of what it bought) beyond what physically left it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .community import Community

MILLI_PER_EURO = 100_000  # milli-cents per euro


@dataclass
class RunResult:
    """One run's outcome on a community (energy in Wh, money in milli-cents)."""

    name: str
    grid_import: NDArray[Any]  # (H, T); for the optimum: community level only (H = 1)
    grid_export: NDArray[Any]
    bought: NDArray[Any]  # (H, T) energy bought from other homes
    sold: NDArray[Any]
    paid: NDArray[Any]  # (H, T) money paid to other homes (incl. fees)
    received: NDArray[Any]
    charge: NDArray[Any]  # (H, T) battery charging (AC side)
    discharge: NDArray[Any]
    soc_start: NDArray[Any]  # (H,)
    soc_end: NDArray[Any]  # (H,)
    ev: NDArray[Any]  # (H, T) EV charging
    flex: NDArray[Any]  # (H, T) flexible plug consumption
    clean_bought: NDArray[Any]  # (H, T) clean energy bought
    price: NDArray[Any]  # (T,) float, market clearing price (nan when no trade)
    runtime_s: float = 0.0
    per_home: bool = True  # False for the optimum (community-level grid exchange)
    extra: dict[str, Any] = field(default_factory=dict)
    shortfall: NDArray[Any] | None = None  # (H, T) energy sold but not delivered

    def community_import(self) -> NDArray[Any]:
        return np.asarray(self.grid_import.sum(axis=0))

    def community_export(self) -> NDArray[Any]:
        return np.asarray(self.grid_export.sum(axis=0))

    def grid_cost(self, c: Community) -> NDArray[Any]:
        """Per home (or community) grid cost minus stored-energy credit, milli-cents."""
        cost = (self.grid_import * c.import_price).sum(axis=1) - (self.grid_export * c.feed_in).sum(
            axis=1
        )
        credit = (self.soc_end - self.soc_start) * int(c.feed_in[-1])
        if not self.per_home:
            return np.asarray([cost.sum() - credit.sum()])
        return np.asarray(cost - credit)

    def bills(self, c: Community) -> NDArray[Any]:
        """Per home bill in milli-cents (community total in a 1-element array if not per home)."""
        cost = self.grid_cost(c)
        if not self.per_home:
            return cost
        return np.asarray(cost + self.paid.sum(axis=1) - self.received.sum(axis=1))

    def total_bill(self, c: Community) -> int:
        return int(self.bills(c).sum())

    def balance_errors(self, c: Community) -> NDArray[Any]:
        """Per slot, the largest per-home energy imbalance (Wh); all zeros when consistent.

        For community-level runs the balance is checked for the community as a whole.
        """
        use = c.load_wh + self.ev + self.flex + self.charge
        src = c.pv_wh + self.discharge
        if self.per_home:
            err = use + self.grid_export + self.sold - src - self.grid_import - self.bought
            return np.asarray(np.abs(err).max(axis=0))
        err = (use - src).sum(axis=0) + self.community_export() - self.community_import()
        return np.asarray(np.abs(err))


def gini(values: NDArray[Any]) -> float:
    """Gini coefficient of non-negative values (0 for none or all zero)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0 or x.sum() <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * x).sum()) / (n * x.sum()) - (n + 1) / n)


def kpis(
    c: Community,
    run: RunResult,
    no_trade: RunResult,
    optimum: RunResult | None = None,
    alone: RunResult | None = None,
) -> dict[str, Any]:
    """All KPIs of one run as plain JSON-ready numbers (money in euro, energy in kWh).

    ``alone`` is the "alone but smart" run: with it (and the optimum) the KPIs include the
    share of the gap between it and the optimum that this run closes, and the homes worse
    off than alone.
    """
    per_euro = MILLI_PER_EURO * c.price_scale

    def _euro(milli: float) -> float:
        return round(float(milli) / per_euro, 2)

    consumption = float((c.load_wh + run.ev + run.flex).sum())
    generation = float(c.pv_wh.sum())
    imp = run.community_import()
    exp = run.community_export()
    hours = c.slot_seconds / 3600.0
    total = run.total_bill(c)
    base_total = no_trade.total_bill(c)
    savings = base_total - total
    out: dict[str, Any] = {
        "run": run.name,
        "self_sufficiency": round(1.0 - float(imp.sum()) / consumption, 4) if consumption else 0.0,
        "self_consumption": round(1.0 - float(exp.sum()) / generation, 4) if generation else 0.0,
        "total_bill_eur": _euro(total),
        "savings_eur": _euro(savings),
        "savings_pct": round(100.0 * savings / base_total, 2) if base_total else 0.0,
        "grid_import_kwh": round(float(imp.sum()) / 1000, 1),
        "grid_export_kwh": round(float(exp.sum()) / 1000, 1),
        "peak_grid_import_kw": round(float(imp.max()) / 1000 / hours, 2),
        "battery_discharged_kwh": round(float(run.discharge.sum()) / 1000, 1),
        "battery_end_kwh": round(float(run.soc_end.sum()) / 1000, 1),
        "grid_emissions_kg": round(float((imp * c.carbon).sum()) / 1e6, 1),
        "runtime_s": round(run.runtime_s, 3),
    }
    if optimum is not None:
        best = base_total - optimum.total_bill(c)
        out["optimum_savings_share"] = round(savings / best, 4) if best > 0 else None
        if alone is not None and alone is not run:
            own = base_total - alone.total_bill(c)
            out["alone_gap_share"] = (
                round((savings - own) / (best - own), 4) if best > own else None
            )
    if run.shortfall is not None and run.per_home:
        sold_wh = float(run.sold.sum())
        short = float(run.shortfall.sum())
        out["delivered_share"] = round(1.0 - short / sold_wh, 4) if sold_wh else None
        out["shortfall_kwh"] = round(short / 1000, 1)
    if run.per_home:
        bills = run.bills(c)
        base = no_trade.bills(c)
        sold = run.sold.sum(axis=1)
        traded = float(sold.sum())
        sellers = np.asarray([h.pv_kwp > 0 or h.battery is not None for h in c.homes], dtype=bool)
        clean_homes = np.asarray([h.clean_only for h in c.homes], dtype=bool)
        co_bought = float(run.bought[clean_homes].sum())
        co_clean = float(run.clean_bought[clean_homes].sum())
        co_use = float((c.load_wh + run.ev + run.flex)[clean_homes].sum())
        co_imp = float(run.grid_import[clean_homes].sum())
        out.update(
            {
                "traded_kwh": round(traded / 1000, 1),
                "clean_only_market_clean_share": round(co_clean / co_bought, 4)
                if co_bought
                else None,
                "clean_only_consumption_clean_share": round(1 - co_imp / co_use, 4)
                if co_use
                else None,
                "largest_seller_share": round(float(sold.max()) / traded, 4) if traded else 0.0,
                "sales_gini": round(gini(sold[sellers]), 4),
                "homes_worse_off": int((bills > base).sum()),
                "homes_worse_off_than_alone": int((bills > alone.bills(c)).sum())
                if alone is not None and alone is not run
                else None,
                "worst_home_change_eur": _euro(float((bills - base).max())),
                "per_home_bill_eur": {
                    h.home_id: _euro(b) for h, b in zip(c.homes, bills, strict=True)
                },
                "per_home_savings_eur": {
                    h.home_id: _euro(s) for h, s in zip(c.homes, base - bills, strict=True)
                },
            }
        )
    return out
