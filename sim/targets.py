"""The planner's simulator targets in one command: four seeded weeks, several seeds.

    .venv/bin/python -m sim.targets                 # 30 homes, seeds 1 and 2, 2 processes
    .venv/bin/python -m sim.targets --homes 50 --seeds 1,2,3 --jobs 2 --forecast noisy

For every seed it simulates a summer week (from 16 June 2025) and a winter week (from 8
December 2025), each with a fixed and a dynamic tariff, and runs no trading, "alone but
smart", the market and the optimum on each (``sim/__main__.py``'s ``simulate``, without the
ramp baseline). It prints one row per case: the market's share of the optimum's savings,
its share of the gap between alone but smart and the optimum, the peak import against the
no-trading peak, the homes worse off than not trading and the delivered share; and whether
each target holds. A case takes a few minutes of CPU (30 homes); ``--jobs`` runs cases in
parallel processes.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
import sys
from typing import Any

from . import kpi
from .__main__ import simulate
from .community import Options, build

WEEKS = (("summer", "2025-06-16"), ("winter", "2025-12-08"))
TARIFFS = ("fixed", "dynamic")


def case(args: tuple[int, str, str, int, str, str, int]) -> dict[str, Any]:
    """Simulate one seeded week; the figures the targets need."""
    seed, start, tariff, homes, forecast, mode, horizon = args
    c = build(
        Options(seed=seed, homes=homes, days=7, start=start, tariff=tariff, forecast=forecast)
    )
    data, results = simulate(
        c,
        with_baselines=True,
        seed=seed,
        command="",
        mode=mode,
        horizon_hours=horizon,
        ramp=False,
    )
    runs = data["runs"]
    m, base = runs["market"], runs["no_trade"]
    market = results["market"]
    assert isinstance(market, kpi.RunResult)
    return {
        "seed": seed,
        "start": start,
        "tariff": tariff,
        "share": m["optimum_savings_share"],
        "gap": m["alone_gap_share"],
        "alone_share": runs["alone"]["optimum_savings_share"],
        "peak": m["peak_grid_import_kw"],
        "base_peak": base["peak_grid_import_kw"],
        "worse": m["homes_worse_off"],
        "delivered": m.get("delivered_share"),
        "savings": m["savings_eur"],
        "optimum_savings": runs["optimum"]["savings_eur"],
        "planner_ms": market.extra["planner_ms_per_home_slot"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.targets", description=__doc__.splitlines()[0])
    p.add_argument("--homes", type=int, default=30)
    p.add_argument("--seeds", default="1,2", help="comma-separated seeds (default %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (default %(default)s)")
    p.add_argument("--forecast", choices=("exact", "noisy"), default="exact")
    p.add_argument("--mode", choices=("control", "advise"), default="control")
    p.add_argument("--horizon-hours", type=int, default=24)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    cases = [
        (seed, start, tariff, args.homes, args.forecast, args.mode, args.horizon_hours)
        for seed in seeds
        for _, start in WEEKS
        for tariff in TARIFFS
    ]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(case, cases))
    print(
        f"{args.homes} homes, 7 days, forecasts {args.forecast}, mode {args.mode}, "
        f"horizon {args.horizon_hours} h"
    )
    print(
        "| seed | week | tariff | market / optimum | gap closed | alone / optimum | "
        "peak kW (no trading) | worse off | delivered | savings EUR (optimum) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for r in rows:
        week = "summer" if r["start"].endswith("06-16") else "winter"
        delivered = "-" if r["delivered"] is None else f"{r['delivered']:.1%}"
        print(
            f"| {r['seed']} | {week} | {r['tariff']} | {r['share']:.1%} | {r['gap']:.1%} | "
            f"{r['alone_share']:.1%} | {r['peak']:.1f} ({r['base_peak']:.1f}) | {r['worse']} | "
            f"{delivered} | {r['savings']:.2f} ({r['optimum_savings']:.2f}) |"
        )
        ok &= r["share"] >= 0.95 and r["gap"] >= 0.9
        ok &= r["peak"] <= r["base_peak"] and r["worse"] == 0
    print("every target met" if ok else "some target missed (see the rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
