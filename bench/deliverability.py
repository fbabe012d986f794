"""Delivered / sold of a PV home with a battery in advise mode, planned by the slot clock's
planning step (``core/home/slot_plan.plan_slot``), simulated minute by minute
(``sim/deliverability.py`` describes the home).

Run: .venv/bin/python bench/deliverability.py            (--seeds N, default 10; --minutes M)

Printed per seed: sold, delivered, delivered / sold, with the battery in the plan (the slot
clock) and without it (what the one-slot agents offered: the PV surplus).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.deliverability import run


def main() -> None:
    """Print delivered / sold per seed and over all seeds."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--minutes", type=int, default=180)
    args = parser.parse_args()
    totals = {True: [0, 0], False: [0, 0]}
    for seed in range(1, args.seeds + 1):
        row = [f"seed {seed:2d}:"]
        for model in (True, False):
            sold, delivered = run(seed, args.minutes, model_battery=model)
            totals[model][0] += sold
            totals[model][1] += delivered
            label = "planned with the battery" if model else "PV surplus (battery left out)"
            row.append(
                f"{label} sold {sold} Wh, delivered {delivered} Wh "
                f"({100 * delivered / max(sold, 1):.1f} %)"
            )
        print("  ".join(row))
    for model in (True, False):
        sold, delivered = totals[model]
        label = "planned with the battery" if model else "PV surplus (battery left out)"
        print(
            f"all seeds, {label}: sold {sold} Wh, delivered {delivered} Wh, "
            f"delivered / sold {100 * delivered / max(sold, 1):.1f} %"
        )


if __name__ == "__main__":
    main()
