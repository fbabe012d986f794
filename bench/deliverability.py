"""Delivered / sold of a PV home with a battery in advise mode, planned by the slot clock's
planning step (``core/home/slot_plan.plan_slot``), simulated minute by minute.

Run: .venv/bin/python bench/deliverability.py            (--seeds N, default 10; --minutes M)

The home: PV peaking at 3 kW over a three-hour midday (with 5 % noise per minute), a base
load of 400 W with noise and appliances of 0.8 to 2 kW that switch on at random (2 % of the
minutes) for 2 to 15 minutes, a 5 kWh battery (3 kW, reserve 10 %) running its own
self-consumption logic, starting at 86 %. Every 1-minute slot is planned one slot ahead
from the readings of the minute before (the persistence forecast the slot clock uses
without solar forecasts or statistics, narrowed by the nowcast); a neighbour buys all that
the home offers; what the home exports in the slot is what it delivers (at most what it
sold). Printed per seed: sold, delivered, delivered / sold, with the battery in the plan
(the slot clock) and without it (what the one-slot agents offered: the PV surplus).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from random import Random
import sys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.peer_energy.core.home.bids import OwnerPolicy
from custom_components.peer_energy.core.home.slot_plan import (
    AssetInput,
    SlotInputs,
    persistence_forecast,
    plan_slot,
)
from custom_components.peer_energy.core.market.orders import Side

START = 1_800_000_000
SECONDS = 60
CAPACITY_WH = 5000
POWER_W = 3000


def shape(minute: int, minutes: int) -> float:
    """A midday PV shape, 0.7 at the ends to 1.0 in the middle."""
    half = minutes / 2
    return 1.0 - 0.3 * abs(minute - half) / half


def run(seed: int, minutes: int, *, model_battery: bool) -> tuple[int, int]:
    """(sold, delivered) Wh over ``minutes`` one-minute slots."""
    noise = Random(seed)
    soc = 0.86 * CAPACITY_WH
    pv_now, load_now = 2800, 400
    appliance = (0.0, 0)
    sold = delivered = 0
    for minute in range(minutes):
        slot = START + minute * SECONDS
        battery = AssetInput(
            asset_id="bat",
            kind="battery",
            power_w=0,
            capacity_wh=CAPACITY_WH,
            soc_pct=soc * 100 / CAPACITY_WH,
            reserve_pct=10,
            max_charge_w=POWER_W,
            max_discharge_w=POWER_W,
        )
        inputs = SlotInputs(
            owner="home",
            slot_start=slot,
            slot_seconds=SECONDS,
            horizon_slots=96,
            control=False,
            policy=OwnerPolicy(),
            import_price=30,
            feed_in_tariff=8,
            assets=(
                AssetInput(asset_id="pv", kind="pv", power_w=pv_now),
                *((battery,) if model_battery else ()),
            ),
            base_load_w=load_now,
            now=slot - SECONDS,
        )
        forecast = persistence_forecast(
            start=slot,
            slot_seconds=SECONDS,
            slots=96,
            pv_w=pv_now,
            load_w=load_now,
            import_price=30,
            feed_in_tariff=8,
        )
        decision = plan_slot(inputs, forecast)
        offer = sum(o.energy_wh for o in decision.orders if o.side is Side.SELL)
        pv_w = 3000 * shape(minute, minutes) * (1 + noise.gauss(0, 0.05))
        power, left = appliance
        if left <= 0 and noise.random() < 0.02:
            power, left = noise.uniform(800, 2000), noise.randint(2, 15)
        appliance = (power, left - 1)
        load_w = 400 + (power if left > 0 else 0) + noise.gauss(0, 60)
        surplus = (pv_w - max(load_w, 0)) * SECONDS / 3600
        if surplus > 0:
            charge = min(surplus, POWER_W * SECONDS / 3600, CAPACITY_WH - soc)
            soc += charge
            export = surplus - charge
        else:
            cover = min(-surplus, POWER_W * SECONDS / 3600, soc - CAPACITY_WH / 10)
            soc -= max(cover, 0)
            export = 0.0
        sold += offer
        delivered += min(offer, int(export))
        pv_now, load_now = round(pv_w), round(load_w)
    return sold, delivered


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
