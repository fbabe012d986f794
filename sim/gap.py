"""Where the market loses against the optimum, by device, day and hour: ``python -m sim.gap``.

    .venv/bin/python -m sim.gap --homes 30 --start 2025-12-08 --tariff dynamic

Runs one seeded week like ``python -m sim`` (no trading, "alone but smart", the market and
the optimum, with the same planner settings and capacity) and prints:

* the savings of each run and the market's shares of the optimum's savings and of the gap;
* **by device**: the optimum solved again with one device class (EVs, plugs, batteries)
  fixed to what it did in the market; what that costs above the optimum is what the
  market's timing of that class loses (the classes interact, so the parts need not add up
  to the whole gap);
* **by day**: the community's grid cost of the market minus the optimum's, per local day
  (energy moved across midnight shows as a gain one day and a loss the next);
* **by hour of the day**: the mean import price, battery charge and discharge, EV energy
  and community import of the market and of the optimum, and the energy traded between
  homes with its mean price.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import datetime
import sys
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from . import baselines, kpi
from .__main__ import simulate
from .community import Community, Options, build
from .data import LOCAL_TZ


def _euro(c: Community, milli: float) -> float:
    return milli / (kpi.MILLI_PER_EURO * c.price_scale)


def _above_optimum(c: Community, optimum: kpi.RunResult, credit: float = 0.0) -> float:
    """EUR the optimum of ``c`` costs above ``optimum`` (minus a stored-energy credit)."""
    fixed = baselines.optimum(c)
    return _euro(c, float(fixed.total_bill(c)) - credit - float(optimum.total_bill(c)))


def by_device(c: Community, market: kpi.RunResult, optimum: kpi.RunResult) -> dict[str, float]:
    """EUR the optimum costs more with each device class fixed to the market's dispatch."""
    out: dict[str, float] = {}
    homes = tuple(replace(h, ev=None) for h in c.homes)
    out["ev"] = _above_optimum(
        replace(c, homes=homes, load_wh=c.load_wh + market.ev.astype(np.int64)), optimum
    )
    homes = tuple(replace(h, flex=()) for h in c.homes)
    out["plugs"] = _above_optimum(
        replace(c, homes=homes, load_wh=c.load_wh + market.flex.astype(np.int64)), optimum
    )
    net = (market.charge - market.discharge).astype(np.int64)
    homes = tuple(replace(h, battery=None) for h in c.homes)
    fixed = replace(
        c,
        homes=homes,
        load_wh=c.load_wh + np.maximum(net, 0),
        pv_wh=c.pv_wh + np.maximum(-net, 0),
    )
    # the market's batteries end with their content: credited like the KPIs do
    credit = float((market.soc_end - market.soc_start).sum() * int(c.feed_in[-1]))
    out["batteries"] = _above_optimum(fixed, optimum, credit)
    return out


def _local(c: Community) -> tuple[NDArray[Any], NDArray[Any]]:
    """Local day index (from 0) and hour of every slot."""
    tz = ZoneInfo(LOCAL_TZ)
    when = [datetime.fromtimestamp(int(s), tz) for s in c.slots]
    first = when[0].date()
    days = np.asarray([(w.date() - first).days for w in when])
    return days, np.asarray([w.hour for w in when])


def grid_cost(c: Community, run: kpi.RunResult) -> NDArray[Any]:
    """The community's grid cost per slot, EUR (import x price - export x feed-in)."""
    milli = run.community_import() * c.import_price - run.community_export() * c.feed_in
    return np.asarray(milli, dtype=float) / (kpi.MILLI_PER_EURO * c.price_scale)


def by_day(c: Community, market: kpi.RunResult, optimum: kpi.RunResult) -> list[float]:
    """The market's grid cost minus the optimum's, EUR per local day."""
    days, _ = _local(c)
    diff = grid_cost(c, market) - grid_cost(c, optimum)
    return [float(diff[days == d].sum()) for d in range(int(days.max()) + 1)]


def by_hour(c: Community, market: kpi.RunResult, optimum: kpi.RunResult) -> list[dict[str, float]]:
    """Per local hour of the day, over the whole run (energy kWh, prices per kWh)."""
    _, hours = _local(c)
    traded = market.sold.sum(axis=0)
    price = np.nan_to_num(market.price, nan=0.0)
    rows = []
    for h in range(24):
        m = hours == h
        if not m.any():
            continue
        volume = float(traded[m].sum())
        rows.append(
            {
                "hour": h,
                "import_price": float(c.import_price[m].mean()) / c.price_scale,
                "charge": float(market.charge.sum(axis=0)[m].sum()) / 1000,
                "charge_optimum": float(optimum.charge.sum(axis=0)[m].sum()) / 1000,
                "discharge": float(market.discharge.sum(axis=0)[m].sum()) / 1000,
                "discharge_optimum": float(optimum.discharge.sum(axis=0)[m].sum()) / 1000,
                "ev": float(market.ev.sum(axis=0)[m].sum()) / 1000,
                "ev_optimum": float(optimum.ev.sum(axis=0)[m].sum()) / 1000,
                "import": float(market.community_import()[m].sum()) / 1000,
                "import_optimum": float(optimum.community_import()[m].sum()) / 1000,
                "traded": volume / 1000,
                "traded_price": float((price[m] * traded[m]).sum()) / volume / c.price_scale
                if volume
                else 0.0,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.gap", description=__doc__.splitlines()[0])
    d = Options()
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--homes", type=int, default=30)
    p.add_argument("--days", type=int, default=d.days)
    p.add_argument("--start", default="2025-12-08")
    p.add_argument("--tariff", choices=("fixed", "dynamic"), default="dynamic")
    args = p.parse_args(argv)
    c = build(
        Options(
            seed=args.seed, homes=args.homes, days=args.days, start=args.start, tariff=args.tariff
        )
    )
    data, results = simulate(c, with_baselines=True, seed=args.seed, command="", ramp=False)
    runs = data["runs"]
    for name in ("alone", "market", "optimum"):
        print(f"{name:8s} savings {runs[name]['savings_eur']:9.2f} EUR")
    m = runs["market"]
    print(
        f"market: {m['optimum_savings_share']:.1%} of the optimum's savings, "
        f"{m['alone_gap_share']:.1%} of the gap; gap to the optimum "
        f"{runs['optimum']['savings_eur'] - m['savings_eur']:.2f} EUR"
    )
    market, optimum = results["market"], results["optimum"]
    print("\nby device (the optimum with that class fixed to the market's dispatch), EUR:")
    for name, value in by_device(c, market, optimum).items():
        print(f"  {name:9s} +{value:.2f}")
    print("\nby day (market grid cost - optimum's), EUR:")
    print("  " + " ".join(f"{x:6.2f}" for x in by_day(c, market, optimum)))
    print(
        "\nhour  price | charge mkt/opt | discharge mkt/opt | EV mkt/opt | "
        "import mkt/opt | traded, mean price  (kWh)"
    )
    for r in by_hour(c, market, optimum):
        print(
            f"{r['hour']:4d} {r['import_price']:6.1f} | {r['charge']:6.1f} "
            f"{r['charge_optimum']:6.1f} | {r['discharge']:6.1f} {r['discharge_optimum']:6.1f} | "
            f"{r['ev']:6.1f} {r['ev_optimum']:6.1f} | {r['import']:6.1f} "
            f"{r['import_optimum']:6.1f} | {r['traded']:6.1f} {r['traded_price']:5.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
