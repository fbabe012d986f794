"""What the demo answers in the Peer Energy flows (field names from const.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------------------------------
# What the demo answers in the Peer Energy flows (field names from const.py)
# ---------------------------------------------------------------------------------------

HOME_ANSWERS: dict[str, Any] = {
    "home_name": "Demo home",
    "currency": "EUR",
    "import_price_entity": "sensor.sim_electricity_price",
    "export_price": 0.08,
    "carbon_intensity_entity": "sensor.sim_carbon_intensity",
    "slot_minutes": "15",
}


@dataclass(frozen=True, kw_only=True)
class DemoAsset:
    """One asset the demo adds through the subentry flow."""

    kind: str
    answers: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.answers["name"])


ASSETS: tuple[DemoAsset, ...] = (
    DemoAsset(
        kind="pv",
        answers={
            "name": "Rooftop PV",
            "power_entity": "sensor.sim_pv_power",
            "energy_entity": "sensor.sim_pv_energy",
        },
    ),
    DemoAsset(
        kind="battery",
        answers={
            "name": "Home battery",
            "soc_entity": "sensor.sim_battery_soc",
            "power_entity": "sensor.sim_battery_power",
            "power_sign": "positive_discharge",
            "capacity_kwh": 10.0,
            "max_charge_w": 5000,
            "max_discharge_w": 5000,
        },
    ),
    DemoAsset(
        kind="ev_charger",
        answers={
            "name": "Wallbox",
            "power_entity": "sensor.sim_ev_charger_power",
            "energy_entity": "sensor.sim_ev_charger_energy",
            "plugged_entity": "binary_sensor.sim_ev_plugged_in",
            "switch_entity": "switch.sim_ev_charger_enable",
            "current_entity": "number.sim_ev_charge_current",
        },
    ),
    DemoAsset(
        kind="plug",
        answers={
            "name": "Washing machine",
            "switch_entity": "switch.sim_washing_machine_plug",
            "power_entity": "sensor.sim_washing_machine_power",
            "energy_entity": "sensor.sim_washing_machine_energy",
        },
    ),
    DemoAsset(
        kind="plug",
        answers={
            "name": "Dishwasher",
            "switch_entity": "switch.sim_dishwasher_plug",
            "power_entity": "sensor.sim_dishwasher_power",
            "energy_entity": "sensor.sim_dishwasher_energy",
        },
    ),
    DemoAsset(
        kind="grid_meter",
        answers={
            "name": "Grid meter",
            "power_entity": "sensor.sim_grid_power",
            "import_energy_entity": "sensor.sim_grid_import_energy",
            "export_energy_entity": "sensor.sim_grid_export_energy",
        },
    ),
)
