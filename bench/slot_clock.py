"""Time how long the slot clock blocks Home Assistant's event loop per slot, with 10 assets.

Run: .venv/bin/python bench/slot_clock.py            (--repeats N, default 200; --gc)

Target: at most 5 ms per slot. It runs in a real Home Assistant core (the test harness's
``async_test_home_assistant``, with the recorder on a temporary SQLite file) what the loop does
each slot on the real ``SlotClock`` and ``HomeForecaster`` code: planning
(``async_plan_slot``: readings -> the home's forecast of the next 24 hours
(``HomeForecaster.async_forecast``: long-term statistics of the 10 assets over 28 days, a
solar forecast from an energy platform, Nord Pool style forward prices in the price entity's
attributes) -> the planner (``plan_home``, control mode: the LP) in the executor -> the home's
orders), the outcome (local clearing of the home's assets, split back with reasons,
totals, the ``peer_energy_slot_cleared`` event, ``_record``) and turning the allocations into
actions (``_actions_for``; the service calls themselves are awaited, so they do not hold the
loop). The assets' readings are a snapshot as the coordinator publishes it (2 PV, 2 batteries,
2 EV chargers, 3 flexible plugs, 1 grid meter).

What is measured, per slot: every callback the event loop runs while the slot's work is in
progress is timed (``asyncio.Handle._run``); *blocked* is their sum, *longest* the longest one
(what delays everything else), *CPU* the event-loop thread's CPU time. Wall times include waiting
for the interpreter lock while the executor threads work, and other processes on the machine;
CPU times do not. Reading the statistics
and filling the forecast run in executors: they use CPU on other threads, not the loop. The
first slot reads the statistics and the solar forecast (both are kept afterwards: 6 hours and
15 minutes), so it is reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
import gc
from pathlib import Path
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, Mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from homeassistant.components.energy.data import async_get_manager
from homeassistant.components.recorder.models import StatisticMeanType
from homeassistant.components.recorder.statistics import async_import_statistics
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import async_initialize_recorder
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_test_home_assistant,
    mock_platform,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.peer_energy.const import AssetKind, ControlMode
from custom_components.peer_energy.coordinator import AssetConfig, AssetReading, PeerEnergyData
from custom_components.peer_energy.core.home.forecast import Site, clear_sky
from custom_components.peer_energy.forecasts import forecaster_for
from custom_components.peer_energy.market import SlotClock
from custom_components.peer_energy.runtime import AssetControls

ASSETS: list[tuple[str, AssetKind, dict[str, Any], AssetReading]] = [
    ("pv1", AssetKind.PV, {}, AssetReading(power_w=3200)),
    ("pv2", AssetKind.PV, {}, AssetReading(power_w=1800)),
    ("bat1", AssetKind.BATTERY, {"capacity_wh": 10_000}, AssetReading(power_w=-500, soc_pct=60)),
    ("bat2", AssetKind.BATTERY, {"capacity_wh": 5_000}, AssetReading(power_w=300, soc_pct=35)),
    ("ev1", AssetKind.EV_CHARGER, {}, AssetReading(power_w=7400, plugged=True)),
    ("ev2", AssetKind.EV_CHARGER, {}, AssetReading(power_w=0, plugged=True)),
    ("plug1", AssetKind.PLUG, {}, AssetReading(power_w=150)),
    ("plug2", AssetKind.PLUG, {}, AssetReading(power_w=2000)),
    ("plug3", AssetKind.PLUG, {}, AssetReading(power_w=600)),
    ("grid", AssetKind.GRID_METER, {}, AssetReading(power_w=1200)),
]
CONTROLS = {
    AssetKind.PLUG: {"switch_entity": "switch.{}"},
    AssetKind.EV_CHARGER: {"switch_entity": "switch.{}", "current_entity": "number.{}"},
    AssetKind.BATTERY: {"setpoint_entity": "number.{}", "mode_entity": "select.{}"},
}
PRICE = "sensor.electricity_price"
SITE = Site(52.4, 13.1)
STATS_DAYS = 28


class LoopTimer:
    """Times every callback the event loop runs while ``measuring``."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.cpu: list[float] = []
        self.measuring = False
        self._original = asyncio.events.Handle._run

    @contextmanager
    def installed(self) -> Iterator[None]:
        timer = self

        def timed(handle: asyncio.Handle) -> None:
            if not timer.measuring:
                timer._original(handle)
                return
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                timer._original(handle)
            finally:
                timer.durations.append(time.perf_counter() - t0)
                timer.cpu.append(time.thread_time() - c0)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        try:
            yield
        finally:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]


def build_entry(hass: HomeAssistant) -> SimpleNamespace:
    """An entry over the 10 assets with the runtime the clock and the forecaster read."""
    assets = {}
    for sid, kind, extra, _ in ASSETS:
        sources = {key: value.format(sid) for key, value in CONTROLS.get(kind, {}).items()}
        sources["power_entity"] = f"sensor.{sid}_power"
        assets[sid] = AssetConfig(subentry_id=sid, kind=kind, name=sid, sources=sources, **extra)
    data = PeerEnergyData(
        assets={sid: reading for sid, _, _, reading in ASSETS},
        grid_power_w=1200,
        grid_source="grid_meter",
    )
    controls = {
        sid: AssetControls(plug_flexible=True) if kind is AssetKind.PLUG else AssetControls()
        for sid, kind, _, _ in ASSETS
    }
    runtime = SimpleNamespace(
        assets=assets,
        coordinator=SimpleNamespace(data=data),
        controls_for=lambda sid: controls[sid],
        federation=None,
        ledger=None,
    )

    def background(hass: HomeAssistant, target: Any, name: str) -> Any:
        return hass.async_create_background_task(target, name)

    def task(hass: HomeAssistant, target: Any, name: str) -> Any:
        return hass.async_create_task(target, name)

    return SimpleNamespace(
        entry_id="bench",
        data={
            "currency": "EUR",
            "import_price_entity": PRICE,
            "export_price": 0.08,
            "slot_minutes": 15,
        },
        options={"control_mode": ControlMode.CONTROL, "peak_margin_pct": 20},
        runtime_data=runtime,
        state=None,
        async_create_background_task=background,
        async_create_task=task,
    )


async def prepare(hass: HomeAssistant, now: int) -> None:
    """States, four weeks of statistics, a solar forecast and forward prices."""
    await hass.config.async_set_time_zone("Europe/Berlin")
    hass.config.latitude, hass.config.longitude = SITE.latitude, SITE.longitude
    tz = dt_util.get_default_time_zone()
    for kind_prefix in ("switch", "number", "select"):
        for sid, _, _, _ in ASSETS:
            attributes = (
                {"options": ["auto", "charge"]}
                if kind_prefix == "select"
                else {"min": 0, "max": 32}
            )
            hass.states.async_set(
                f"{kind_prefix}.{sid}", "auto" if kind_prefix == "select" else "0", attributes
            )
    end = now - now % 3600
    hours = [end - (STATS_DAYS * 24 - k) * 3600 for k in range(STATS_DAYS * 24)]
    for sid, kind, _, reading in ASSETS:
        base = float(reading.power_w or 0)
        rows = []
        for hour in hours:
            local_hour = datetime.fromtimestamp(hour, tz).hour
            if kind is AssetKind.PV:
                value = 4000 * clear_sky(hour, 3600, SITE)
            else:
                value = base * (0.5 + (local_hour % 6) / 6)
            rows.append(
                {
                    "start": datetime.fromtimestamp(hour, UTC),
                    "mean": value,
                    "min": value,
                    "max": value,
                }
            )
        metadata = {
            "has_mean": True,
            "mean_type": StatisticMeanType.ARITHMETIC,
            "has_sum": False,
            "name": None,
            "source": "recorder",
            "statistic_id": f"sensor.{sid}_power",
            "unit_of_measurement": "W",
        }
        async_import_statistics(hass, metadata, rows)  # type: ignore[arg-type]
    await async_wait_recording_done(hass)

    midnight = datetime.fromtimestamp(now, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    raw = [
        [
            {
                "start": midnight + timedelta(days=day, hours=h),
                "end": midnight + timedelta(days=day, hours=h + 1),
                "value": round(0.2 + 0.01 * h - 0.05 * day, 3),
            }
            for h in range(24)
        ]
        for day in (0, 1)
    ]
    hass.states.async_set(
        PRICE,
        "0.25",
        {"unit_of_measurement": "EUR/kWh", "raw_today": raw[0], "raw_tomorrow": raw[1]},
    )
    solar_entry = MockConfigEntry(domain="bench_solar")
    solar_entry.add_to_hass(hass)
    hass.config.components.add("bench_solar")
    hour_starts = [midnight + timedelta(hours=h) for h in range(48)]
    wh_hours = {
        start.isoformat(): 5000 * clear_sky(int(start.timestamp()), 3600, SITE)
        for start in hour_starts
    }
    mock_platform(
        hass,
        "bench_solar.energy",
        Mock(async_get_solar_forecast=AsyncMock(return_value={"wh_hours": wh_hours})),
    )
    manager = await async_get_manager(hass)
    await manager.async_update(
        {
            "energy_sources": [
                {"type": "solar", "config_entry_solar_forecast": [solar_entry.entry_id]}
            ]
        }
    )


async def one_slot(
    clock: SlotClock,
    slot: int,
    phases: dict[str, list[float]],
) -> tuple[int, int]:
    """What the loop does for one slot; returns (actions in the last slot, plan slots).

    ``phases`` gets the event-loop thread's CPU time of reading the home, planning
    (``async_plan_slot``: the forecast, then the planner in the executor) and the outcome.
    The slots are within the real next hour: the clock runs slots faster than real time, and
    a forecast that starts days after the real now would leave the forward prices and the
    solar forecast behind.
    """
    c0 = time.thread_time()
    clock.slot_inputs(slot)
    c1 = time.thread_time()
    plan = await clock.async_plan_slot(slot)
    clock.plans[slot] = plan
    c2 = time.thread_time()
    report = clock._report(plan, fills=(), result=None, local=True)
    clock._record(report, plan)
    actions = 0
    for sid, asset in clock.runtime.assets.items():
        alloc = report.allocations.get(sid)
        if alloc is not None:
            actions += len(clock._actions_for(asset, alloc, report.reasons[sid]))
    c3 = time.thread_time()
    phases["readings"].append(c1 - c0)
    phases["forecast and plan"].append(c2 - c1)
    phases["outcome"].append(c3 - c2)
    assert plan.plan is not None
    assert plan.fallback is None, plan.fallback
    return actions, len(plan.plan.slots)


def ms(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


async def run(repeats: int) -> None:
    timer = LoopTimer()
    with tempfile.TemporaryDirectory() as config_dir:
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            async_initialize_recorder(hass)  # what Home Assistant's bootstrap does first
            assert await async_setup_component(
                hass, "recorder", {"recorder": {"db_url": f"sqlite:///{config_dir}/bench.db"}}
            )
            now = int(time.time())
            await prepare(hass, now)
            entry = build_entry(hass)
            clock = SlotClock(hass, entry)  # type: ignore[arg-type]
            first = now - now % 900 + 900
            blocked: list[float] = []
            longest: list[float] = []
            longest_cpu: list[float] = []
            cpus: list[float] = []
            walls: list[float] = []
            actions = horizon = 0
            phases: dict[str, list[float]] = {
                "readings": [],
                "forecast and plan": [],
                "outcome": [],
            }
            with timer.installed():
                for k in range(repeats + 1):
                    slot = first + (k % 4) * 900  # within the real next hour
                    timer.durations.clear()
                    timer.cpu.clear()
                    timer.measuring = True
                    c0, w0 = time.thread_time(), time.perf_counter()
                    actions, horizon = await one_slot(clock, slot, phases)
                    walls.append(time.perf_counter() - w0)
                    cpus.append(time.thread_time() - c0)
                    timer.measuring = False
                    blocked.append(sum(timer.durations))
                    longest.append(max(timer.durations, default=0.0))
                    longest_cpu.append(max(timer.cpu, default=0.0))
            report = forecaster_for(hass, entry).last_report or {}  # type: ignore[arg-type]
            mode = clock.plans[first].plan
            await hass.async_stop(force=True)
    sources = {name: series["sources"] for name, series in (report.get("series") or {}).items()}
    print(
        f"slot clock with the planner ({'none' if mode is None else mode.mode.value} mode), "
        f"10 assets, {repeats} slots, {actions} actions in the last slot, plan of {horizon} slots"
    )
    print(f"forecast sources: {sources}")
    print(
        f"first slot (reads 28 days of statistics and the solar forecast): blocked "
        f"{blocked[0] * 1000:.2f} ms, longest callback {longest[0] * 1000:.2f} ms, "
        f"wall {walls[0] * 1000:.1f} ms"
    )
    warm_blocked, warm_longest, warm_cpu = blocked[1:], longest[1:], cpus[1:]
    print(
        f"event loop blocked per slot: median {statistics.median(warm_blocked) * 1000:.2f} ms, "
        f"p95 {ms(warm_blocked, 0.95):.2f} ms, worst {max(warm_blocked) * 1000:.2f} ms; "
        f"longest single callback: median {statistics.median(warm_longest) * 1000:.2f} ms, "
        f"worst {max(warm_longest) * 1000:.2f} ms "
        f"(CPU: worst {max(longest_cpu[1:]) * 1000:.2f} ms); "
        f"loop-thread CPU median {statistics.median(warm_cpu) * 1000:.2f} ms, "
        f"p95 {ms(warm_cpu, 0.95):.2f} ms, worst {max(warm_cpu) * 1000:.2f} ms (target <= 5 ms)"
    )
    split = ", ".join(
        f"{name} {statistics.median(values[1:]) * 1000:.2f} ms" for name, values in phases.items()
    )
    print(f"loop-thread CPU per slot by phase (median): {split}")
    wall = statistics.median(walls[1:]) * 1000
    print(f"wall time per slot (executor work included): median {wall:.1f} ms")


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument(
        "--gc", action="store_true", help="also print the garbage collector's longest pauses"
    )
    args = parser.parse_args()
    pauses: list[tuple[float, int]] = []
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            pauses.append((time.thread_time() - started[0], info["generation"]))

    if args.gc:
        gc.callbacks.append(on_gc)
    asyncio.run(run(args.repeats))
    if args.gc:
        for generation in (0, 1, 2):
            times = [p for p, g in pauses if g == generation]
            if times:
                print(
                    f"garbage collections of generation {generation} (whole run, set-up "
                    f"included): {len(times)}, longest {max(times) * 1000:.2f} ms CPU"
                )


if __name__ == "__main__":
    main()
