"""Time the slot clock holds Home Assistant's event loop per slot, with 10 assets.

Run: .venv/bin/python bench/slot_clock.py            (--repeats N, default 200)

Target (issue 5): at most 5 ms per slot. What runs in the event loop each slot, all of it
measured here on the real ``SlotClock`` code: planning (readings -> every asset's agent ->
the home order, ``plan_slot``), the outcome (local clearing of the home's assets, split back
to the assets with reasons, totals, the ``peer_energy_slot_cleared`` event, ``_record``),
and turning the allocations into actions (``_actions_for``; the service calls themselves
are awaited, so they do not hold the loop). Home Assistant's state machine, bus and config
entry are replaced by small stand-ins so that only our code is timed; the readings are a
snapshot of the 10 assets (2 PV, 2 batteries, 2 EV chargers, 3 flexible plugs, 1 grid
meter) as the coordinator publishes it.

Prints the median, 95th percentile and worst wall time per slot, and the median CPU time.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.peer_energy.const import AssetKind, ControlMode
from custom_components.peer_energy.coordinator import (
    AssetConfig,
    AssetReading,
    PeerEnergyData,
)
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
SOURCES = {
    AssetKind.PLUG: {"switch_entity": "switch.x"},
    AssetKind.EV_CHARGER: {"switch_entity": "switch.ev", "current_entity": "number.ev"},
    AssetKind.BATTERY: {"setpoint_entity": "number.bat", "mode_entity": "select.bat"},
}


class _States:
    def get(self, entity_id: str) -> Any:
        if entity_id.startswith("select."):
            return SimpleNamespace(state="auto", attributes={"options": ["auto", "charge"]})
        return SimpleNamespace(state="0", attributes={"min": 0, "max": 32})


class _Bus:
    def __init__(self) -> None:
        self.fired = 0

    def async_fire(self, event_type: str, data: Any) -> None:
        self.fired += 1


def build() -> SlotClock:
    """A slot clock over 10 assets with stand-ins for Home Assistant."""
    assets = {
        sid: AssetConfig(
            subentry_id=sid, kind=kind, name=sid, sources=SOURCES.get(kind, {}), **extra
        )
        for sid, kind, extra, _ in ASSETS
    }
    data = PeerEnergyData(assets={sid: reading for sid, _, _, reading in ASSETS}, grid_power_w=1200)
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
    entry = SimpleNamespace(
        entry_id="bench",
        data={"currency": "EUR", "import_price": 0.30, "export_price": 0.08, "slot_minutes": 15},
        options={"control_mode": ControlMode.CONTROL, "peak_margin_pct": 20},
        runtime_data=runtime,
    )
    hass = SimpleNamespace(states=_States(), bus=_Bus(), config=SimpleNamespace(currency="EUR"))
    return SlotClock(hass, entry)  # type: ignore[arg-type]


def one_slot(clock: SlotClock, slot: int) -> int:
    """Everything the clock does in the event loop for one slot; returns the action count."""
    plan = clock.plan_slot(slot)
    clock.plans[slot] = plan
    report = clock._report(plan, fills=(), result=None, local=True)
    clock._record(report, plan)
    actions = 0
    for sid, asset in clock.runtime.assets.items():
        alloc = report.allocations.get(sid)
        if alloc is not None:
            actions += len(clock._actions_for(asset, alloc, report.reasons[sid]))
    return actions


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    clock = build()
    start = 1_795_348_800  # 2026-11-22 00:00 UTC
    for k in range(20):  # warm up, and a day of price history for the agents
        one_slot(clock, start - (20 - k) * 900)
    walls: list[float] = []
    cpus: list[float] = []
    actions = 0
    for k in range(args.repeats):
        slot = start + k * 900
        w0, c0 = time.perf_counter(), time.process_time()
        actions = one_slot(clock, slot)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    walls.sort()
    p95 = walls[int(len(walls) * 0.95) - 1]
    print(f"slot clock, 10 assets, {args.repeats} slots, {actions} actions in the last slot")
    print(
        f"event-loop time per slot: median {statistics.median(walls) * 1000:.2f} ms, "
        f"p95 {p95 * 1000:.2f} ms, worst {walls[-1] * 1000:.2f} ms, "
        f"median CPU {statistics.median(cpus) * 1000:.2f} ms (target <= 5 ms)"
    )


if __name__ == "__main__":
    main()
