"""Command line: ``python -m sim [options]`` (or ``./scripts/simulate [options]``).

Builds the community (seeded, or from ``--scenario``), runs the market and the baselines,
prints the KPI table and writes the JSON and HTML reports. See ``docs/simulation.md``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
import shlex
import sys
import time
from typing import Any

from custom_components.peer_energy.core.home.bids import OwnerPolicy
from custom_components.peer_energy.core.home.planner import PlannerSettings

from . import baselines, kpi, report, run
from .community import Community, Options, build
from .scenario import ScenarioError, read_scenario, write_scenario

DEFAULT_OUT = Path("sim_output")
# The capacity the homes plan with by default, in percent of the no-trading peak.
CAPACITY_HEADROOM_PCT = 90


def parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(
        prog="simulate",
        description="Simulate a Peer Energy community on the real market engine and report KPIs "
        "against no trading, a ramp strategy and the perfect-foresight optimum.",
    )
    p.add_argument(
        "--seed", type=int, default=d.seed, help="random seed (same seed, same community)"
    )
    p.add_argument(
        "--homes", type=int, default=d.homes, help="number of homes (default %(default)s)"
    )
    p.add_argument(
        "--days", type=int, default=d.days, help="days to simulate (default %(default)s)"
    )
    p.add_argument(
        "--slot-minutes", type=int, default=d.slot_minutes, help="slot length (default %(default)s)"
    )
    p.add_argument("--pv-share", type=float, default=d.pv_share, help="share of homes with PV")
    p.add_argument(
        "--battery-share", type=float, default=d.battery_share, help="share with a battery"
    )
    p.add_argument("--ev-share", type=float, default=d.ev_share, help="share with an EV charger")
    p.add_argument(
        "--flex-share", type=float, default=d.flex_share, help="share with flexible plugs"
    )
    p.add_argument(
        "--clean-only-share",
        type=float,
        default=d.clean_only_share,
        help="share of homes that buy clean energy only",
    )
    p.add_argument(
        "--start", default=d.start, help="first day, YYYY-MM-DD (weather is a typical year)"
    )
    p.add_argument(
        "--region", type=int, default=d.region, help="DWD test-reference-year region 1..15"
    )
    p.add_argument(
        "--tariff",
        choices=("fixed", "dynamic"),
        default=d.tariff,
        help="fixed retail price, or day-ahead (pricecast) + fixed charges",
    )
    p.add_argument("--import-ct", type=int, default=d.import_ct, help="fixed retail price, ct/kWh")
    p.add_argument("--feed-in-ct", type=int, default=d.feed_in_ct, help="feed-in tariff, ct/kWh")
    p.add_argument("--scenario", type=Path, help="run a community's own data (scenario JSON)")
    p.add_argument("--write-scenario", type=Path, help="also write the community as a scenario")
    p.add_argument(
        "--json", type=Path, default=DEFAULT_OUT / "report.json", help="JSON report path"
    )
    p.add_argument(
        "--html", type=Path, default=DEFAULT_OUT / "report.html", help="HTML report path"
    )
    p.add_argument(
        "--mode",
        choices=("control", "advise"),
        default="control",
        help="planner mode of every home: 'control' (the plan drives the devices) or "
        "'advise' (the devices follow their own logic; the homes trade what that gives)",
    )
    p.add_argument(
        "--forecast",
        choices=("exact", "noisy"),
        default=d.forecast,
        help="what the homes know of their load and PV: 'exact', or 'noisy' day-ahead "
        "forecasts with their spread (seeded communities)",
    )
    p.add_argument(
        "--horizon-hours",
        type=int,
        default=24,
        help="planning horizon of every home in hours (default %(default)s)",
    )
    p.add_argument(
        "--margin-pct",
        type=int,
        default=PlannerSettings().risk_z_pct,
        help="least uncertainty margin the homes keep back on both sides of their orders, in "
        "standard deviations x 100 of the first slot's net demand (default %(default)s)",
    )
    p.add_argument(
        "--sale-risk-pct",
        type=int,
        default=OwnerPolicy().sale_risk_pct,
        help="how much of a trade's expected gain each home risks on a forecast miss, in "
        "percent: the graded uncertainty margin it keeps back (default %(default)s)",
    )
    p.add_argument(
        "--outlook",
        choices=("community", "grid"),
        default="community",
        help="what the homes expect later slots to clear at: 'community' (the community "
        "price of the same slot on the last two days: purchases at the dearest, sales at "
        "the cheapest) or 'grid' (grid prices only)",
    )
    p.add_argument(
        "--capacity-kw",
        type=float,
        default=None,
        help="the community's import capacity the homes plan with, kW (default: 90 %% of "
        "the no-trading peak; 0: none)",
    )
    p.add_argument(
        "--federation",
        action="store_true",
        help="clear every slot through the federation protocol (each home a peer on the "
        "in-memory transport); cost grows with homes squared, for small communities",
    )
    p.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the ramp strategy, 'alone but smart' and the optimum (default on)",
    )
    return p


def targets(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets that one run can check."""
    out: list[dict[str, Any]] = []
    m = runs.get("market")
    if m is None:
        return out
    out.append(
        {
            "target": "no home worse off than not trading",
            "met": m["homes_worse_off"] == 0,
            "value": f"{m['homes_worse_off']} homes",
        }
    )
    base = runs.get("no_trade")
    if base is not None:
        out.append(
            {
                "target": "community peak import <= the no-trading peak",
                "met": m["peak_grid_import_kw"] <= base["peak_grid_import_kw"],
                "value": f"{m['peak_grid_import_kw']:.1f} vs {base['peak_grid_import_kw']:.1f} kW",
            }
        )
    share = m.get("optimum_savings_share")
    if share is not None:
        out.append(
            {
                "target": "market >= 95 % of the optimum's savings",
                "met": share >= 0.95,
                "value": f"{share:.1%}",
            }
        )
    gap = m.get("alone_gap_share")
    if gap is not None:
        out.append(
            {
                "target": "market >= 90 % of the gap between alone but smart and the optimum",
                "met": gap >= 0.9,
                "value": f"{gap:.1%}",
            }
        )
    delivered = m.get("delivered_share")
    if delivered is not None:
        out.append(
            {
                "target": "delivered / sold >= 95 %",
                "met": delivered >= 0.95,
                "value": f"{delivered:.1%}",
            }
        )
    return out


def simulate(
    c: Community,
    *,
    with_baselines: bool,
    seed: int,
    command: str,
    mode: str = "control",
    horizon_hours: int = 24,
    outlook: str = "community",
    federation: bool = False,
    ramp: bool = True,
    sale_risk_pct: int | None = None,
    margin_pct: int | None = None,
    capacity_kw: float | None = None,
) -> tuple[dict[str, Any], dict[str, kpi.RunResult]]:
    """Run everything on ``c``; returns the report dict and the raw results (``ramp=False``
    leaves the ramp baseline out of the baselines).

    ``capacity_kw`` is the community's import capacity the market's homes plan with (their
    shares of it): None sets it to 90 % of the no-trading peak, 0 or less means none. "Alone but
    smart" has no community, so no capacity.
    """
    results: dict[str, kpi.RunResult] = {}
    settings = run.default_settings(c)
    if margin_pct is not None:
        settings = replace(settings, risk_z_pct=margin_pct)
    results["no_trade"] = baselines.no_trade(c)
    if capacity_kw is None:
        # The homes' shares are soft (a cost per kWh above them, so an EV that must charge
        # still can): they plan with headroom below the peak they must not exceed.
        peak_wh = int(results["no_trade"].community_import().max())
        capacity_w: int | None = peak_wh * 3600 * CAPACITY_HEADROOM_PCT // 100 // c.slot_seconds
    else:
        capacity_w = round(capacity_kw * 1000) if capacity_kw > 0 else None
    if with_baselines:
        if ramp:
            results["ramp"] = baselines.ramp(c)
        results["alone"], _ = run.market(
            c,
            seed=seed,
            mode="control",
            trading=False,
            horizon_hours=horizon_hours,
            settings=settings,
            sale_risk_pct=sale_risk_pct,
        )
    market, ledger = run.market(
        c,
        seed=seed,
        mode=mode,
        horizon_hours=horizon_hours,
        outlook=outlook,
        federation=federation,
        settings=settings,
        capacity_w=capacity_w,
        sale_risk_pct=sale_risk_pct,
    )
    results["market"] = market
    optimum = baselines.optimum(c) if with_baselines else None
    if optimum is not None:
        results["optimum"] = optimum
    alone = results.get("alone")
    runs = {
        name: kpi.kpis(c, r, results["no_trade"], optimum, alone) for name, r in results.items()
    }
    runs["market"]["engine"] = {
        **market.extra,
        "ledger_total_milli": ledger.total(),
        "balance_error_wh": int(market.balance_errors(c).max()),
    }
    meta = c.meta
    data = {
        "command": command,
        "community": {
            "homes": c.n_homes,
            "days": c.n_slots * c.slot_seconds / 86_400,
            "slot_minutes": c.slot_seconds // 60,
            "start": report.start_label(c),
            "source": str(meta.get("source", "scenario")),
            "tariff": str(meta.get("tariff", "from scenario")),
            "forecast": "with error" if c.forecast_error else "exact",
            "seed": meta.get("seed"),
            "region": meta.get("region"),
            "station": meta.get("station"),
            "pv_homes": sum(h.pv_kwp > 0 for h in c.homes),
            "battery_homes": sum(h.battery is not None for h in c.homes),
            "ev_homes": sum(h.ev is not None for h in c.homes),
            "flex_homes": sum(bool(h.flex) for h in c.homes),
            "clean_only_homes": sum(h.clean_only for h in c.homes),
            "consumption_kwh": round(float(c.load_wh.sum()) / 1000, 1),
            "pv_kwh": round(float(c.pv_wh.sum()) / 1000, 1),
        },
        "mode": mode,
        "horizon_hours": horizon_hours,
        "margin_pct": settings.risk_z_pct,
        "sale_risk_pct": OwnerPolicy().sale_risk_pct if sale_risk_pct is None else sale_risk_pct,
        "outlook": outlook,
        "capacity_kw": None if capacity_w is None else round(capacity_w / 1000, 2),
        "federation": federation,
        "runs": runs,
        "targets": targets(runs),
    }
    return data, results


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = "./scripts/simulate " + shlex.join(argv if argv is not None else sys.argv[1:])
    began = time.perf_counter()
    try:
        if args.scenario is not None:
            community = read_scenario(args.scenario)
        else:
            community = build(
                Options(
                    seed=args.seed,
                    homes=args.homes,
                    days=args.days,
                    slot_minutes=args.slot_minutes,
                    pv_share=args.pv_share,
                    battery_share=args.battery_share,
                    ev_share=args.ev_share,
                    flex_share=args.flex_share,
                    clean_only_share=args.clean_only_share,
                    start=args.start,
                    region=args.region,
                    tariff=args.tariff,
                    import_ct=args.import_ct,
                    feed_in_ct=args.feed_in_ct,
                    forecast=args.forecast,
                )
            )
        if args.federation and len(set(community.import_price.tolist())) > 1:
            raise ValueError("--federation needs a fixed tariff (community rules are fixed)")
    except (ScenarioError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    built = time.perf_counter() - began
    if args.write_scenario is not None:
        write_scenario(community, args.write_scenario)
    data, results = simulate(
        community,
        with_baselines=args.baselines,
        seed=args.seed,
        command=command,
        mode=args.mode,
        horizon_hours=args.horizon_hours,
        outlook=args.outlook,
        federation=args.federation,
        sale_risk_pct=args.sale_risk_pct,
        margin_pct=args.margin_pct,
        capacity_kw=args.capacity_kw,
    )
    data["timing_s"] = {
        "build": round(built, 2),
        **{name: round(r.runtime_s, 2) for name, r in results.items()},
        "total": round(time.perf_counter() - began, 2),
        "market_cpu": results["market"].extra.get("cpu_s"),
    }
    print(report.table(data))
    for path in (args.json, args.html):
        path.parent.mkdir(parents=True, exist_ok=True)
    report.write_json(data, args.json)
    report.write_html(community, data, results, args.html)
    timing = data["timing_s"]
    print(
        f"market: {timing['market']:.1f} s wall, {timing['market_cpu']:.1f} s CPU; "
        f"whole run {timing['total']:.1f} s"
    )
    print(f"JSON: {args.json}\nHTML: {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
