"""The simulated home: template and input entities whose values move over the day."""

from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------------------------------
# The simulated home
# ---------------------------------------------------------------------------------------

# Variables rendered once per tick (every 10 s) and shared by every simulated sensor, so a
# tick is internally consistent. "Fast day" runs one simulated hour per real minute.
SIM_VARIABLES: dict[str, str] = {
    "tick": "{{ trigger.platform == 'time_pattern' }}",
    "fast": "{{ is_state('input_boolean.sim_fast_day', 'on') }}",
    # The simulated hour of the day: the clock's (or the fast day's), moved by the offset
    # ``--sim-hour`` sets (so a check can run at midday whatever the time).
    "hour": (
        "{{ (((as_timestamp(now()) / 60) if fast"
        " else (now().hour + now().minute / 60 + now().second / 3600))"
        " + states('input_number.sim_hour_offset') | float(0)) % 24 }}"
    ),
    "dt_h": "{{ ((600 if fast else 10) / 3600) if tick else 0 }}",
    "cloud": "{{ states('input_number.sim_cloud_cover') | float(20) / 100 }}",
    "sun": "{{ sin(pi * (hour - 6) / 14) if 6 < hour < 20 else 0 }}",
    "pv_w": (
        "{{ (states('input_number.sim_pv_peak_w') | float(6000) * sun ** 1.5 * (1 - 0.75 * cloud)"
        " * (0.96 + (range(80) | random) / 1000)) | round(0) | int }}"
    ),
    "load_w": (
        "{{ (280 + 900 * e ** (-((hour - 7.5) ** 2) / 0.8)"
        " + 1500 * e ** (-((hour - 19) ** 2) / 2) + (range(150) | random)) | round(0) | int }}"
    ),
    "plugged": (
        "{{ hour >= 17 or hour < 7.5 or is_state('input_boolean.sim_ev_home_daytime', 'on') }}"
    ),
    "ev_w": (
        "{{ ((states('number.sim_ev_charge_current') | float(16)) * 230 * 3"
        " * (0.97 + (range(30) | random) / 1000)) | round(0) | int"
        " if plugged and is_state('switch.sim_ev_charger_enable', 'on') else 0 }}"
    ),
    "washer_min": "{{ (hour * 60) % 120 }}",
    "washer_w": (
        "{{ 0 if not is_state('switch.sim_washing_machine_plug', 'on')"
        " else 2000 if washer_min < 20"
        " else 150 + (range(60) | random) if washer_min < 80"
        " else 450 if washer_min < 90 else 2 }}"
    ),
    "dish_min": "{{ (hour * 60 + 45) % 150 }}",
    "dish_w": (
        "{{ 0 if not is_state('switch.sim_dishwasher_plug', 'on')"
        " else 1800 if dish_min < 25"
        " else 90 + (range(30) | random) if dish_min < 70"
        " else 1700 if dish_min < 90 else 1 }}"
    ),
    # The state of charge at start (before the sensor has a state) is ``SOC_START``.
    "soc_prev": "{{ states('sensor.sim_battery_soc') | float(SOC_START) }}",
    "surplus": "{{ pv_w - load_w - ev_w - washer_w - dish_w }}",
    "house_deficit": "{{ load_w + washer_w + dish_w - pv_w }}",
    # The battery controller aims at zero grid power but misses by a few tens of watts.
    "ctrl_err": "{{ (range(121) | random) - 60 }}",
    # Battery power, positive = charging; it does not discharge into the car.
    "bat_w": (
        "{{ ([surplus + ctrl_err, 5000] | min) if surplus > 0 and soc_prev < 100"
        " else -([house_deficit + ctrl_err, 5000] | min)"
        " if house_deficit > 0 and soc_prev > 10 else 0 }}"
    ),
    "grid_w": "{{ load_w + ev_w + washer_w + dish_w + bat_w - pv_w }}",
    "price_h": "{{ (hour | int) + 0.5 }}",
}


def _total(var: str, start: float) -> str:
    """A running kWh total: previous state plus this tick's energy."""
    return f"{{{{ ((this.state | float({start})) + {var} * dt_h / 1000) | round(3) }}}}"


def _power(name: str, uid: str, state: str) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": uid,
        "state": state,
        "unit_of_measurement": "W",
        "device_class": "power",
        "state_class": "measurement",
    }


def _energy(name: str, uid: str, state: str) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": uid,
        "state": state,
        "unit_of_measurement": "kWh",
        "device_class": "energy",
        "state_class": "total_increasing",
    }


def _relay(name: str, uid: str, helper: str) -> dict[str, Any]:
    """A template switch backed by an input_boolean (a stand-in for a relay)."""
    target = {"entity_id": f"input_boolean.{helper}"}
    return {
        "name": name,
        "unique_id": uid,
        "state": f"{{{{ is_state('input_boolean.{helper}', 'on') }}}}",
        "turn_on": [{"action": "input_boolean.turn_on", "target": target}],
        "turn_off": [{"action": "input_boolean.turn_off", "target": target}],
    }


# The battery's state of charge (%) when the simulated home starts, unless a home says.
DEFAULT_BATTERY_SOC = 55.0


def sim_variables(battery_soc_pct: float = DEFAULT_BATTERY_SOC) -> dict[str, str]:
    """The tick's variables, the battery starting at ``battery_soc_pct`` percent."""
    start = f"{min(max(float(battery_soc_pct), 0.0), 100.0):g}"
    return {name: tpl.replace("SOC_START", start) for name, tpl in SIM_VARIABLES.items()}


def simulated_home(battery_soc_pct: float = DEFAULT_BATTERY_SOC) -> dict[str, Any]:
    """configuration.yaml fragments for the simulated devices; the battery starts at
    ``battery_soc_pct`` percent."""
    sensors = [
        _power("Sim PV power", "sim_pv_power", "{{ pv_w }}"),
        _energy("Sim PV energy", "sim_pv_energy", _total("pv_w", 1520.0)),
        _power("Sim house load", "sim_house_load", "{{ load_w }}"),
        {
            "name": "Sim battery SoC",
            "unique_id": "sim_battery_soc",
            "state": "{{ [[soc_prev + bat_w * dt_h / 100, 100] | min, 0] | max | round(1) }}",
            "unit_of_measurement": "%",
            "device_class": "battery",
            "state_class": "measurement",
        },
        # The simulated inverter reports battery power positive when discharging.
        _power("Sim battery power", "sim_battery_power", "{{ -bat_w }}"),
        # Battery energy in and out, for the Energy dashboard's battery.
        _energy(
            "Sim battery charged energy",
            "sim_battery_charged_energy",
            _total("([bat_w, 0] | max)", 310.0),
        ),
        _energy(
            "Sim battery discharged energy",
            "sim_battery_discharged_energy",
            _total("([-bat_w, 0] | max)", 290.0),
        ),
        _power("Sim EV charger power", "sim_ev_charger_power", "{{ ev_w }}"),
        _energy("Sim EV charger energy", "sim_ev_charger_energy", _total("ev_w", 860.0)),
        _power("Sim washing machine power", "sim_washing_machine_power", "{{ washer_w }}"),
        _energy(
            "Sim washing machine energy", "sim_washing_machine_energy", _total("washer_w", 95.0)
        ),
        _power("Sim dishwasher power", "sim_dishwasher_power", "{{ dish_w }}"),
        _energy("Sim dishwasher energy", "sim_dishwasher_energy", _total("dish_w", 120.0)),
        _power("Sim grid power", "sim_grid_power", "{{ grid_w }}"),
        _energy(
            "Sim grid import energy",
            "sim_grid_import_energy",
            _total("([grid_w, 0] | max)", 4210.0),
        ),
        _energy(
            "Sim grid export energy",
            "sim_grid_export_energy",
            _total("([-grid_w, 0] | max)", 2980.0),
        ),
        {
            "name": "Sim electricity price",
            "unique_id": "sim_electricity_price",
            "state": (
                "{{ (0.24 + 0.12 * e ** (-((price_h - 19) ** 2) / 3)"
                " + 0.05 * e ** (-((price_h - 8) ** 2) / 1.5)"
                " - 0.10 * (sin(pi * (price_h - 6) / 14) if 6 < price_h < 20 else 0))"
                " | round(4) }}"
            ),
            "unit_of_measurement": "EUR/kWh",
            "state_class": "measurement",
            "icon": "mdi:cash",
        },
        {
            "name": "Sim carbon intensity",
            "unique_id": "sim_carbon_intensity",
            "state": (
                "{{ (380 - 220 * sun * (1 - 0.5 * cloud)"
                " + 60 * e ** (-((hour - 19) ** 2) / 4)) | round(0) | int }}"
            ),
            "unit_of_measurement": "gCO2eq/kWh",
            "state_class": "measurement",
            "icon": "mdi:molecule-co2",
        },
    ]
    return {
        "input_boolean": {
            "sim_fast_day": {"name": "Simulation: fast day (1 h per minute)"},
            "sim_ev_home_daytime": {"name": "Simulation: EV at home in the daytime"},
            "sim_ev_charger_enable": {"name": "Sim EV charger relay state", "initial": True},
            "sim_washing_machine_plug": {"name": "Sim washing machine relay", "initial": True},
            "sim_dishwasher_plug": {"name": "Sim dishwasher relay", "initial": True},
        },
        "input_number": {
            "sim_pv_peak_w": {
                "name": "Simulation: PV peak power",
                "min": 0,
                "max": 10000,
                "step": 100,
                "initial": 6000,
                "unit_of_measurement": "W",
            },
            "sim_cloud_cover": {
                "name": "Simulation: cloud cover",
                "min": 0,
                "max": 100,
                "step": 5,
                "initial": 20,
                "unit_of_measurement": "%",
            },
            "sim_hour_offset": {
                "name": "Simulation: hours ahead of the clock",
                "min": -24,
                "max": 24,
                "step": 0.25,
                "initial": 0,
                "unit_of_measurement": "h",
            },
            "sim_ev_charge_current": {
                "name": "Sim EV charge current setting",
                "min": 6,
                "max": 16,
                "step": 1,
                "initial": 16,
                "unit_of_measurement": "A",
            },
        },
        "template": [
            {
                "trigger": [
                    {"platform": "time_pattern", "seconds": "/10"},
                    {"platform": "homeassistant", "event": "start"},
                ],
                "variables": sim_variables(battery_soc_pct),
                "sensor": sensors,
                "binary_sensor": [
                    {
                        "name": "Sim EV plugged in",
                        "unique_id": "sim_ev_plugged_in",
                        "state": "{{ plugged }}",
                        "device_class": "plug",
                    }
                ],
            },
            {
                "switch": [
                    _relay(
                        "Sim EV charger enable", "sim_ev_charger_enable", "sim_ev_charger_enable"
                    ),
                    _relay(
                        "Sim washing machine plug",
                        "sim_washing_machine_plug",
                        "sim_washing_machine_plug",
                    ),
                    _relay("Sim dishwasher plug", "sim_dishwasher_plug", "sim_dishwasher_plug"),
                ],
                "number": [
                    {
                        "name": "Sim EV charge current",
                        "unique_id": "sim_ev_charge_current",
                        "state": "{{ states('input_number.sim_ev_charge_current') }}",
                        "min": 6,
                        "max": 16,
                        "step": 1,
                        "unit_of_measurement": "A",
                        "set_value": [
                            {
                                "action": "input_number.set_value",
                                "target": {"entity_id": "input_number.sim_ev_charge_current"},
                                "data": {"value": "{{ value }}"},
                            }
                        ],
                    }
                ],
            },
        ],
    }


# Entities the Peer Energy set-up maps; the demo waits until all of them have states.
SIM_ENTITIES = (
    "sensor.sim_pv_power",
    "sensor.sim_pv_energy",
    "sensor.sim_battery_soc",
    "sensor.sim_battery_power",
    "sensor.sim_ev_charger_power",
    "sensor.sim_ev_charger_energy",
    "binary_sensor.sim_ev_plugged_in",
    "switch.sim_ev_charger_enable",
    "number.sim_ev_charge_current",
    "switch.sim_washing_machine_plug",
    "sensor.sim_washing_machine_power",
    "sensor.sim_washing_machine_energy",
    "switch.sim_dishwasher_plug",
    "sensor.sim_dishwasher_power",
    "sensor.sim_dishwasher_energy",
    "sensor.sim_grid_power",
    "sensor.sim_grid_import_energy",
    "sensor.sim_grid_export_energy",
    "sensor.sim_electricity_price",
    "sensor.sim_carbon_intensity",
)
