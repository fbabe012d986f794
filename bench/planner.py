"""CPU time of the home planner per home and slot.

Run: .venv/bin/python bench/planner.py      (--slots N, default 96; --hours H, default 48)

Target: at most 50 ms of CPU per home per slot for a 48-hour horizon of 15-minute slots
(192 slots) with a battery, an EV and two flexible plugs, in control mode (the LP and the
solves that read the home's demand curve for the next slot). The home runs for ``--slots``
consecutive slots: each slot the planner plans the next ``--hours`` hours from the home's
state, the devices do what the plan says at the expected price, and the state moves on, so
the plans are the ones a home really makes over a day (EV plugged in from 18:00 to 07:30
needing 20 kWh, two plug tasks a day, PV and a dynamic day-ahead price, and a share of
2 kW of the community's import capacity in every slot). Prints the median,
95th percentile and worst CPU time per plan, and the LP solves per plan; advise mode (no
LP) is timed too.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import statistics
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.peer_energy.core.home.agents import BatteryState
from custom_components.peer_energy.core.home.forecast import HomeForecast
from custom_components.peer_energy.core.home.planner import (
    EvSession,
    PlanMode,
    PlugTask,
    plan_home,
)

SLOT = 900
PER_DAY = 86_400 // SLOT
START = 1_780_000_000 - 1_780_000_000 % 86_400  # a UTC midnight


def _pv(k: int) -> int:
    hour = (k % PER_DAY) * 24 / PER_DAY
    return max(0, round(1600 * math.sin((hour - 6) / 14 * math.pi))) if 6 <= hour <= 20 else 0


def _load(k: int) -> int:
    hour = (k % PER_DAY) * 24 / PER_DAY
    return 80 + (150 if 6 <= hour < 8 or 17 <= hour < 22 else 0) + (k * 37 % 60)


def _price(k: int) -> int:
    hour = (k % PER_DAY) * 24 / PER_DAY
    return 25 + round(8 * math.sin((hour - 13) / 24 * 2 * math.pi)) + (k * 13 % 3)


def _day_tasks(day: int) -> tuple[list[EvSession], list[PlugTask]]:
    base = START + day * 86_400
    ev = EvSession(
        asset_id="ev",
        arrive=base + 18 * 3600,
        depart=base + 31 * 3600 + 1800,
        energy_wh=20_000,
        max_power_w=11_000,
    )
    plugs = [
        PlugTask(
            asset_id="dishwasher",
            earliest=base + 8 * 3600,
            deadline=base + 20 * 3600,
            energy_wh=1_500,
            power_w=2_000,
        ),
        PlugTask(
            asset_id="heater",
            earliest=base + 6 * 3600,
            deadline=base + 22 * 3600,
            energy_wh=3_000,
            power_w=3_000,
        ),
    ]
    return [ev], plugs


def run(slots: int, hours: int, mode: PlanMode) -> tuple[list[float], list[int]]:
    """Plan ``slots`` consecutive slots; return CPU ms per plan and LP solves per plan."""
    n = hours * 3600 // SLOT
    soc = 5_000
    ev_left: dict[int, int] = {}
    plug_left: dict[tuple[int, str], int] = {}
    times: list[float] = []
    solves: list[int] = []
    for t in range(slots):
        start = START + t * SLOT
        ks = range(t, t + n)
        forecast = HomeForecast(
            start=start,
            slot_seconds=SLOT,
            pv_wh=tuple(_pv(k) for k in ks),
            pv_sd_wh=tuple(_pv(k) // 5 for k in ks),
            load_wh=tuple(_load(k) for k in ks),
            load_sd_wh=tuple(_load(k) // 3 for k in ks),
            import_price=tuple(_price(k) for k in ks),
            feed_in_tariff=(8,) * n,
        )
        evs: list[EvSession] = []
        plugs: list[PlugTask] = []
        for day in range(-1, hours // 24 + 2):
            d_evs, d_plugs = _day_tasks(t // PER_DAY + day)
            for ev in d_evs:
                if ev.depart > start and ev.arrive < start + n * SLOT:
                    need = ev_left.get(ev.arrive, ev.energy_wh)
                    if need > 0:
                        evs.append(EvSession(**{**_fields(ev), "energy_wh": need}))
            for task in d_plugs:
                if task.deadline > start and task.earliest < start + n * SLOT:
                    need = plug_left.get((task.earliest, task.asset_id), task.energy_wh)
                    if need > 0:
                        plugs.append(PlugTask(**{**_fields(task), "energy_wh": need}))
        battery = BatteryState(
            "battery", 10_000, soc, max_charge_w=5_000, max_discharge_w=5_000, degradation=1
        )
        began = time.process_time()
        plan = plan_home(
            forecast,
            batteries=(battery,),
            evs=evs,
            plugs=plugs,
            mode=mode,
            expected_price=tuple(p - 6 for p in forecast.import_price),
            capacity_share_w=(2_000,) * n,
        )
        times.append((time.process_time() - began) * 1000)
        solves.append(plan.solves)
        first = plan.slots[0]
        soc = max(battery.reserve_wh, min(battery.capacity_wh, first.soc_wh))
        for ev in evs:
            if ev.arrive <= start:
                ev_left[ev.arrive] = ev.energy_wh - first.ev_wh
        ran = first.plug_wh
        for task in plugs:
            if task.earliest <= start and ran > 0:
                done = min(task.energy_wh, ran)
                ran -= done
                plug_left[(task.earliest, task.asset_id)] = task.energy_wh - done
    return times, solves


def _fields(obj: object) -> dict[str, object]:
    return {name: getattr(obj, name) for name in obj.__slots__}  # type: ignore[attr-defined]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=96, help="consecutive slots to plan")
    parser.add_argument("--hours", type=int, default=48, help="horizon in hours")
    args = parser.parse_args()
    print(
        f"home planner: battery, EV, 2 plugs; {args.hours} h horizon of 15-min slots "
        f"({args.hours * 4} slots), {args.slots} consecutive slots"
    )
    for mode in (PlanMode.CONTROL, PlanMode.ADVISE):
        times, solves = run(args.slots, args.hours, mode)
        print(
            f"{mode.value:8s} CPU per home and slot: median {statistics.median(times):.1f} ms, "
            f"p95 {_pct(times, 0.95):.1f} ms, worst {max(times):.1f} ms; "
            f"LP solves per plan: median {statistics.median(solves):.0f}, max {max(solves)}"
            + ("  (target <= 50 ms)" if mode is PlanMode.CONTROL else "")
        )


if __name__ == "__main__":
    main()
