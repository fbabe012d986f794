"""Reports: a console table, all KPIs as JSON, and a self-contained HTML page with plots.

The HTML report needs no network and no plotting library: the charts are SVG drawn here
(community load, generation and trades over time; prices; per-home savings; bills per run).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
import html
import json
import math
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from .community import Community
from .kpi import RunResult

ZONE = ZoneInfo("Europe/Berlin")
COLORS = {
    "consumption": "#d62728",
    "pv": "#f2a900",
    "traded": "#2ca02c",
    "import": "#7f7f7f",
    "export": "#9467bd",
    "retail": "#d62728",
    "feed-in": "#1f77b4",
    "market": "#2ca02c",
    "ramp": "#ff7f0e",
    "day-ahead": "#8c564b",
    "no trading": "#7f7f7f",
    "optimum": "#1f77b4",
    "alone but smart": "#9467bd",
}

# (key, label, format) rows of the comparison table
ROWS: tuple[tuple[str, str, str], ...] = (
    ("total_bill_eur", "Total bill (EUR)", "{:.2f}"),
    ("savings_eur", "Savings vs no trading (EUR)", "{:.2f}"),
    ("savings_pct", "Savings vs no trading (%)", "{:.1f}"),
    ("optimum_savings_share", "Share of the optimum's savings", "{:.1%}"),
    ("alone_gap_share", "Share of the gap alone but smart - optimum", "{:.1%}"),
    ("self_sufficiency", "Self-sufficiency", "{:.1%}"),
    ("self_consumption", "Self-consumption", "{:.1%}"),
    ("grid_import_kwh", "Grid import (kWh)", "{:.1f}"),
    ("grid_export_kwh", "Grid export (kWh)", "{:.1f}"),
    ("peak_grid_import_kw", "Peak grid import (kW)", "{:.1f}"),
    ("traded_kwh", "Traded between homes (kWh)", "{:.1f}"),
    ("battery_discharged_kwh", "Battery energy delivered (kWh)", "{:.1f}"),
    ("battery_end_kwh", "Battery content at the end (kWh)", "{:.1f}"),
    ("clean_only_market_clean_share", "Clean share of clean-only buyers' purchases", "{:.1%}"),
    ("clean_only_consumption_clean_share", "Clean share of clean-only homes' use", "{:.1%}"),
    ("largest_seller_share", "Largest seller's share of sales", "{:.1%}"),
    ("sales_gini", "Gini coefficient of sales", "{:.3f}"),
    ("homes_worse_off", "Homes worse off than no trading", "{}"),
    ("homes_worse_off_than_alone", "Homes worse off than alone but smart", "{}"),
    ("delivered_share", "Delivered / sold", "{:.1%}"),
    ("grid_emissions_kg", "Grid emissions, proxy (kg CO2)", "{:.1f}"),
    ("runtime_s", "Runtime (s)", "{:.2f}"),
)


def _fmt(value: Any, pattern: str) -> str:
    if value is None:
        return "-"
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(report: dict[str, Any]) -> str:
    """The console table: one row per KPI, one column per run."""
    runs = report["runs"]
    names = list(runs)
    head = ["KPI", *[runs[n]["run"] for n in names]]
    body = [
        [label, *[_fmt(runs[n].get(key), pattern) for n in names]]
        for key, label, pattern in ROWS
        if any(key in runs[n] for n in names)
    ]
    widths = [max(len(r[k]) for r in [head, *body]) for k in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if k == 0 else c.rjust(w)
            for k, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    c = report["community"]
    lines.insert(
        0,
        f"{c['homes']} homes, {c['days']:g} days, {c['slot_minutes']}-min slots "
        f"({c['source']}); tariff {c['tariff']}",
    )
    for check in report.get("targets", []):
        lines.append(
            f"target: {check['target']}: {'met' if check['met'] else 'MISSED'} ({check['value']})"
        )
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    """All KPIs (and the per-home figures) as JSON."""
    Path(path).write_text(json.dumps(report, indent=1, sort_keys=False) + "\n", encoding="utf-8")


# --- SVG drawing ----------------------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = math.floor(lo / step) * step
    ticks = [round(first, 10)]
    while ticks[-1] < hi:  # the last tick is at or above the largest value: nothing overflows
        ticks.append(round(first + len(ticks) * step, 10))
    if len(ticks) == 1:
        ticks.append(round(first + step, 10))
    return ticks


def start_label(c: Community) -> str:
    """The first slot's start as a readable local date and time (also for scenario runs)."""
    return datetime.fromtimestamp(int(c.slots[0]), ZONE).strftime("%a %d %b %Y %H:%M %Z")


def _time_labels(t0: float, t1: float) -> list[tuple[float, str, bool]]:
    """Where to label the time axis: (time, label, day boundary?). Days for longer runs;
    every three hours (and the date at midnight) for runs of up to two days."""
    short = t1 - t0 <= 2 * 86_400
    step = 3 * 3600 if short else 86_400
    start = datetime.fromtimestamp(t0, ZONE).replace(minute=0, second=0, microsecond=0)
    out: list[tuple[float, str, bool]] = []
    moment = start
    while moment.timestamp() <= t1:
        ts = moment.timestamp()
        midnight = moment.hour == 0
        if ts >= t0 and ((short and moment.hour % 3 == 0) or midnight):
            label = moment.strftime("%a %d %b") if midnight else moment.strftime("%H:%M")
            if not out or ts - out[-1][0] >= step:
                out.append((ts, label, midnight))
        moment = datetime.fromtimestamp(ts + 3600, ZONE)
    return out


def line_chart(
    chart_id: str,
    title: str,
    unit: str,
    times: NDArray[Any],
    series: Sequence[tuple[str, NDArray[Any]]],
    *,
    width: int = 960,
    height: int = 300,
    step: bool = False,
    slot_seconds: int = 0,
) -> str:
    """An SVG line chart over time (x: Unix seconds, gaps where a value is nan); with
    ``slot_seconds`` the x axis runs to the end of the last slot (step charts)."""
    left, right, top, bottom = 60, 20, 34, 40
    pw, ph = width - left - right, height - top - bottom
    vals = (
        np.concatenate([np.asarray(v, dtype=float) for _, v in series]) if series else np.zeros(1)
    )
    finite = vals[np.isfinite(vals)]
    lo = float(min(0.0, finite.min())) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    ticks = _nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1] if ticks[-1] > ticks[0] else ticks[0] + 1
    t0 = float(times[0])
    t1 = float(times[-1]) + slot_seconds
    if t1 <= t0:
        t1 = t0 + 1

    def sx(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * pw

    def sy(v: float) -> float:
        return top + ph - (v - lo) / (hi - lo) * ph

    out = [
        f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="20" class="title">{html.escape(title)}</text>',
    ]
    for v in ticks:
        y = sy(v)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{v:g}</text>'
        )
    out.append(
        f'<text x="14" y="{top + ph / 2:.0f}" class="tick" '
        f'transform="rotate(-90 14 {top + ph / 2:.0f})" '
        f'text-anchor="middle">{html.escape(unit)}</text>'
    )
    for x, label, strong in _time_labels(t0, t1):
        xs = sx(x)
        cls = "grid" if strong else "grid faint"
        out.append(f'<line x1="{xs:.1f}" x2="{xs:.1f}" y1="{top}" y2="{top + ph}" class="{cls}"/>')
        out.append(f'<text x="{xs + 3:.1f}" y="{top + ph + 16}" class="tick">{label}</text>')
    lx = left + 8
    for name, values in series:
        color = COLORS.get(name, "#333")
        arr = np.asarray(values, dtype=float)
        path: list[str] = []
        pen = False
        for k, (t, y) in enumerate(zip(times, arr, strict=True)):
            if not math.isfinite(y):
                pen = False
                continue
            x = sx(float(t))
            if step and pen and k > 0:
                path.append(f"H{x:.1f}")
            path.append(f"{'L' if pen else 'M'}{x:.1f} {sy(y):.1f}")
            pen = True
            following = arr[k + 1] if k + 1 < arr.size else math.nan
            if step and slot_seconds and not math.isfinite(following):
                path.append(f"H{sx(float(t) + slot_seconds):.1f}")  # the slot's whole width
        out.append(f'<path d="{"".join(path)}" fill="none" stroke="{color}" stroke-width="1.4"/>')
        out.append(f'<rect x="{lx}" y="{height - 14}" width="12" height="4" fill="{color}"/>')
        out.append(f'<text x="{lx + 16}" y="{height - 9}" class="tick">{html.escape(name)}</text>')
        lx += 30 + 7 * len(name)
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(
    chart_id: str,
    title: str,
    unit: str,
    labels: Sequence[str],
    bars: Sequence[tuple[str, Sequence[float]]],
    *,
    width: int = 960,
    height: int = 300,
    color_by_label: bool = False,
) -> str:
    """An SVG grouped bar chart (one group per label, one bar per series); with
    ``color_by_label`` each label (e.g. a run) has its own colour and legend entry."""
    left, right, top, bottom = 60, 20, 34, 58
    pw, ph = width - left - right, height - top - bottom
    allv = [float(v) for _, vs in bars for v in vs] or [0.0]
    ticks = _nice_ticks(min(0.0, *allv), max(0.0, *allv))
    lo, hi = ticks[0], ticks[-1] if ticks[-1] > ticks[0] else ticks[0] + 1

    def sy(v: float) -> float:
        return top + ph - (v - lo) / (hi - lo) * ph

    out = [
        f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="20" class="title">{html.escape(title)}</text>',
    ]
    for v in ticks:
        y = sy(v)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{v:g}</text>'
        )
    out.append(
        f'<text x="14" y="{top + ph / 2:.0f}" class="tick" '
        f'transform="rotate(-90 14 {top + ph / 2:.0f})" '
        f'text-anchor="middle">{html.escape(unit)}</text>'
    )
    n = max(1, len(labels))
    group = pw / n
    bw = max(1.0, group * 0.8 / max(1, len(bars)))
    zero = sy(0.0)
    for g, label in enumerate(labels):
        for b, (name, values) in enumerate(bars):
            v = float(values[g])
            x = left + g * group + group * 0.1 + b * bw
            y0, y1 = sorted((zero, sy(v)))
            color = COLORS.get(label if color_by_label else name, "#333")
            out.append(
                f'<rect x="{x:.1f}" y="{y0:.1f}" width="{bw:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                f'fill="{color}">'
                f"<title>{html.escape(label)} {html.escape(name)}: "
                f"{v:.2f} {html.escape(unit)}</title></rect>"
            )
        if n <= 40 or g % max(1, n // 40) == 0:
            cx = left + g * group + group / 2
            out.append(
                f'<text x="{cx:.1f}" y="{top + ph + 8}" class="tick small" '
                f'transform="rotate(60 {cx:.1f} {top + ph + 8})">{html.escape(label)}</text>'
            )
    lx = left + 8
    for name in labels if color_by_label else [name for name, _ in bars]:
        out.append(
            f'<rect x="{lx}" y="{height - 14}" width="12" height="8" '
            f'fill="{COLORS.get(name, "#333")}"/>'
        )
        out.append(f'<text x="{lx + 16}" y="{height - 7}" class="tick">{html.escape(name)}</text>')
        lx += 30 + 7 * len(name)
    out.append("</svg>")
    return "\n".join(out)


# --- HTML --------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#222}
h1{font-size:1.5em;margin-bottom:0} .sub{color:#666;margin-top:4px}
table{border-collapse:collapse;margin:12px 0;font-size:.92em}
th,td{padding:4px 10px;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums} th{text-align:right}
th:first-child{text-align:left}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:1.5em} .ok{color:#2ca02c} .miss{color:#d62728}
svg.chart{max-width:100%;height:auto;margin:8px 0 18px} .title{font-weight:600;font-size:14px}
.tick{font-size:11px;fill:#555} .small{font-size:9px} .grid{stroke:#e6e6e6;stroke-width:1}
.faint{stroke:#f3f3f3} td.l{text-align:left}
"""


def html_report(c: Community, report: dict[str, Any], runs: dict[str, RunResult]) -> str:
    """The self-contained HTML report."""
    hours = c.slot_seconds / 3600.0
    market = runs.get("market")
    esc = html.escape
    kw = 1.0 / 1000.0 / hours
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Peer Energy community simulation</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Peer Energy community simulation</h1>",
    ]
    com = report["community"]
    parts.append(
        f"<p class='sub'>{com['homes']} homes, {com['days']:g} days from {esc(com['start'])}, "
        f"{com['slot_minutes']}-minute slots, {esc(com['source'])}, tariff {esc(com['tariff'])}, "
        f"forecasts {esc(str(com.get('forecast', 'exact')))}, planner mode "
        f"{esc(str(report.get('mode', 'control')))}. "
        f"Command: <code>{esc(report['command'])}</code></p>"
    )
    if "market" in report["runs"]:
        k = report["runs"]["market"]
        cards = [
            ("Savings vs no trading", f"{k['savings_eur']:.2f} EUR ({k['savings_pct']:.1f} %)"),
            ("Share of the optimum", _fmt(k.get("optimum_savings_share"), "{:.1%}")),
            ("Self-sufficiency", _fmt(k["self_sufficiency"], "{:.1%}")),
            ("Share of the gap alone - optimum", _fmt(k.get("alone_gap_share"), "{:.1%}")),
            ("Homes worse off", str(k.get("homes_worse_off"))),
            ("Traded", f"{k.get('traded_kwh', 0):.0f} kWh"),
        ]
        base = report["runs"].get("no_trade")
        if base is not None:
            cards.append(
                (
                    "Peak grid import",
                    f"{k['peak_grid_import_kw']:.1f} kW "
                    f"(no trading {base['peak_grid_import_kw']:.1f})",
                )
            )
        parts.append("<div class='cards'>")
        parts += [f"<div class='card'>{esc(a)}<b>{esc(b)}</b></div>" for a, b in cards]
        parts.append("</div>")
    if report.get("targets"):
        parts.append("<h2>Targets</h2><ul>")
        for check in report["targets"]:
            cls = "ok" if check["met"] else "miss"
            parts.append(
                f"<li class='{cls}'>{esc(check['target'])}: "
                f"<b>{'met' if check['met'] else 'missed'}</b> ({esc(str(check['value']))})</li>"
            )
        parts.append("</ul>")
    parts.append("<h2>KPIs</h2><table id='kpis'><tr><th>KPI</th>")
    names = list(report["runs"])
    parts += [f"<th>{esc(report['runs'][n]['run'])}</th>" for n in names]
    parts.append("</tr>")
    for key, label, pattern in ROWS:
        if not any(key in report["runs"][n] for n in names):
            continue
        parts.append(f"<tr><td>{esc(label)}</td>")
        parts += [
            f"<td class='n'>{esc(_fmt(report['runs'][n].get(key), pattern))}</td>" for n in names
        ]
        parts.append("</tr>")
    parts.append("</table>")

    focus = market or next(iter(runs.values()))
    consumption = (c.load_wh + focus.ev + focus.flex).sum(axis=0) * kw
    series = [
        ("consumption", consumption),
        ("pv", c.pv_wh.sum(axis=0) * kw),
        ("import", focus.community_import() * kw),
    ]
    if market is not None:
        series.append(("traded", market.sold.sum(axis=0) * kw))
    parts.append(
        line_chart(
            "chart-energy",
            f"Community load, generation and trades ({focus.name})",
            "kW",
            c.slots,
            series,
        )
    )
    scale = float(c.price_scale)
    prices: list[tuple[str, NDArray[Any]]] = [
        ("retail", c.import_price.astype(float) / scale),
        ("feed-in", c.feed_in.astype(float) / scale),
    ]
    if c.day_ahead is not None:
        prices.append(("day-ahead", np.asarray(c.day_ahead, dtype=float)))
    if "ramp" in runs:
        prices.append(("ramp", runs["ramp"].price / scale))
    if market is not None:
        prices.append(("market", market.price / scale))
    parts.append(
        line_chart(
            "chart-prices",
            "Prices",
            "ct/kWh",
            c.slots,
            prices,
            step=True,
            slot_seconds=c.slot_seconds,
        )
    )

    per_home = [
        (n, report["runs"][n].get("per_home_savings_eur"))
        for n in ("market", "alone", "ramp")
        if report["runs"].get(n, {}).get("per_home_savings_eur")
    ]
    if per_home:
        first = per_home[0][1]
        assert first is not None
        order = sorted(first, key=lambda h: -first[h])
        parts.append(
            bar_chart(
                "chart-savings",
                "Savings per home against not trading",
                "EUR",
                order,
                [
                    (report["runs"][n]["run"], [vals[h] for h in order])
                    for n, vals in per_home
                    if vals
                ],
            )
        )
    bills = [(report["runs"][n]["run"], report["runs"][n]["total_bill_eur"]) for n in names]
    parts.append(
        bar_chart(
            "chart-bills",
            "Community bill per run",
            "EUR",
            [b[0] for b in bills],
            [("bill", [b[1] for b in bills])],
            height=260,
            color_by_label=True,
        )
    )
    parts.append(_home_table(c, report))
    parts.append(
        "<p class='sub'>Definitions of every KPI and of the baselines: docs/simulation.md. "
        "Money in euro; energy in kWh; the optimum is a perfect-foresight linear program over "
        "all homes and slots with the same devices.</p></body></html>"
    )
    return "\n".join(parts)


def _home_table(c: Community, report: dict[str, Any]) -> str:
    """Per-home bills of every per-home run, and each home's devices."""
    runs = [(n, r) for n, r in report["runs"].items() if r.get("per_home_bill_eur") is not None]
    esc = html.escape
    out = ['<h2>Bills per home (EUR)</h2><table id="home-bills"><tr><th>home</th><th>devices</th>']
    out += [f"<th>{esc(r['run'])}</th>" for _, r in runs]
    out.append("</tr>")
    for h in c.homes:
        devices = [
            name
            for name, has in (
                (f"PV {h.pv_kwp:g} kWp", h.pv_kwp > 0),
                ("battery", h.battery is not None),
                ("EV", h.ev is not None),
                ("plugs", bool(h.flex)),
                ("clean only", h.clean_only),
            )
            if has
        ]
        out.append(f"<tr><td>{esc(h.home_id)}</td><td class='l'>{esc(', '.join(devices))}</td>")
        out += [f"<td class='n'>{r['per_home_bill_eur'][h.home_id]:.2f}</td>" for _, r in runs]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def write_html(
    c: Community, report: dict[str, Any], runs: dict[str, RunResult], path: str | Path
) -> None:
    Path(path).write_text(html_report(c, report, runs), encoding="utf-8")
