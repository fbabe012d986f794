"""A PV home with a battery in its own self-consumption mode, simulated minute by minute
through the slot clock's planning step (``core/home/slot_plan.plan_slot``) in advise mode:
what it sells against what it delivers.

The home: PV peaking at 3 kW over a midday of ``minutes`` (0.7 at the ends to 1.0 in the
middle, 5 % noise per minute), a base load of 400 W with noise and appliances of 0.8 to
2 kW that switch on at random (2 % of the minutes) for 2 to 15 minutes, a 5 kWh battery
(3 kW, reserve 10 %) running its own self-consumption logic, starting at 86 %. Every
1-minute slot is planned one slot ahead from the readings of the minute before (the
persistence forecast the slot clock uses without solar forecasts or statistics, with the
nowcast); a neighbour buys all that the home offers; what the home exports in the slot is
what it delivers (at most what it sold).

Used by ``bench/deliverability.py`` and the engine's tests.

Public API: :func:`run`, :data:`START`.
"""

from __future__ import annotations

from random import Random

from custom_components.peer_energy.core.home.bids import OwnerPolicy
from custom_components.peer_energy.core.home.slot_plan import (
    AssetInput,
    SlotInputs,
    persistence_forecast,
    plan_slot,
)
from custom_components.peer_energy.core.market.orders import Side

START = 1_800_000_000  # a multiple of 60
SECONDS = 60
CAPACITY_WH = 5000
POWER_W = 3000
IMPORT_PRICE, FEED_IN = 30, 8


def _shape(minute: int, minutes: int) -> float:
    """A midday PV shape, 0.7 at the ends to 1.0 in the middle."""
    half = minutes / 2
    return 1.0 - 0.3 * abs(minute - half) / half


def run(seed: int, minutes: int = 180, *, model_battery: bool = True) -> tuple[int, int]:
    """(sold, delivered) Wh over ``minutes`` one-minute slots; ``model_battery=False``
    leaves the battery out of the plan (what the one-slot agents offered: the PV surplus)."""
    noise = Random(seed)  # noqa: S311 (a seeded simulation, not a secret)
    soc = 0.86 * CAPACITY_WH
    pv_now, load_now = 2800, 400
    appliance = (0.0, 0)  # power W, minutes left
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
            import_price=IMPORT_PRICE,
            feed_in_tariff=FEED_IN,
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
            import_price=IMPORT_PRICE,
            feed_in_tariff=FEED_IN,
        )
        decision = plan_slot(inputs, forecast)
        offer = sum(o.energy_wh for o in decision.orders if o.side is Side.SELL)
        # what really happens in the slot
        pv_w = 3000 * _shape(minute, minutes) * (1 + noise.gauss(0, 0.05))
        power, left = appliance
        if left <= 0 and noise.random() < 0.02:  # an appliance switches on
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
