"""Peer Energy demo: a real Home Assistant with a simulated home, set up as a user would.

Run through ``./scripts/demo`` (which bootstraps ``.venv`` first). The script

1. creates a throw-away config directory under ``.demo/`` (git-ignored),
2. writes ``configuration.yaml`` (loopback HTTP on a free port, a handful of core
   integrations, and template/input entities that simulate a PV inverter, a battery, an EV
   charger, two smart plugs, a grid meter, a price and a carbon-intensity sensor whose values
   move over the day) and ``.storage/http`` (so even recovery mode stays on 127.0.0.1),
3. links the repository's ``custom_components/peer_energy`` into it and starts ``hass -c``,
4. onboards over REST (creates a user with a random password), removes the integrations that
   onboarding adds, configures Peer Energy through the REST config flow and adds every asset
   through the REST subentry flow,
5. checks over the websocket API that the Peer Energy devices exist and show live values,
6. prints the URL and login and runs until Ctrl-C (or, with ``--check``, prints a summary and
   exits 0 when everything is in place, 1 otherwise), then stops Home Assistant with SIGTERM
   and removes the config directory (unless ``--keep``).

All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Mapping
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
import getpass
import json
import math
import os
from pathlib import Path
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any
import zoneinfo

import aiohttp
import yaml  # type: ignore[import-untyped]  # no stubs in the pinned toolchain

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "peer_energy"
SUBENTRY_TYPE = "asset"
HASS_BIN = Path(sys.executable).parent / "hass"
DEMO_ROOT = ROOT / ".demo"
ONBOARDING_DOMAINS = ("met", "google_translate", "radio_browser", "shopping_list")
UNAVAILABLE = {"unknown", "unavailable", "none", ""}

START_TIMEOUT = 900.0  # first start pip-installs the frontend and friends
FLOW_TIMEOUT = 180.0  # a flow step may wait for requirements to install
LIVE_WINDOW = 45.0  # how long --check watches for values to move

# ---------------------------------------------------------------------------------------
# The simulated home
# ---------------------------------------------------------------------------------------

# Variables rendered once per tick (every 10 s) and shared by every simulated sensor, so a
# tick is internally consistent. "Fast day" runs one simulated hour per real minute.
SIM_VARIABLES: dict[str, str] = {
    "tick": "{{ trigger.platform == 'time_pattern' }}",
    "fast": "{{ is_state('input_boolean.sim_fast_day', 'on') }}",
    "hour": (
        "{{ ((as_timestamp(now()) / 60) % 24) if fast"
        " else (now().hour + now().minute / 60 + now().second / 3600) }}"
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
    "soc_prev": "{{ states('sensor.sim_battery_soc') | float(55) }}",
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


def simulated_home() -> dict[str, Any]:
    """configuration.yaml fragments for the simulated devices."""
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
                "variables": SIM_VARIABLES,
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

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


class StopRequestedError(Exception):
    """Ctrl-C (or SIGTERM) arrived while the demo was setting up."""


def say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def local_time_zone() -> str:
    """The machine's IANA time zone, so the simulated sun follows the user's clock."""
    candidates: list[str] = []
    if tz := os.environ.get("TZ", "").lstrip(":"):
        candidates.append(tz)
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    with contextlib.suppress(OSError):
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError):
            zoneinfo.ZoneInfo(name)
            return name
    return "UTC"


def as_number(state: str | None) -> float | None:
    if state is None or state.lower() in UNAVAILABLE:
        return None
    try:
        value = float(state)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------
# Config directory
# ---------------------------------------------------------------------------------------


def write_config(config_dir: Path, port: int, *, fast: bool) -> None:
    """configuration.yaml, .storage/http and the custom_components link."""
    home = simulated_home()
    if fast:
        home["input_boolean"]["sim_fast_day"]["initial"] = True
    config: dict[str, Any] = {
        "homeassistant": {
            "name": "Peer Energy demo",
            "latitude": 52.52,
            "longitude": 13.40,
            "elevation": 35,
            "unit_system": "metric",
            "currency": "EUR",
            "country": "DE",
            "time_zone": local_time_zone(),
        },
        "http": {"server_host": ["127.0.0.1"], "server_port": port},
        "config": {},
        "api": {},
        "websocket_api": {},
        "frontend": {},
        "history": {},
        "logbook": {},
        "energy": {},
        "logger": {
            "default": "warning",
            "logs": {"custom_components.peer_energy": "info"},
        },
        **home,
    }
    (config_dir / "configuration.yaml").write_text(
        "# Generated by scripts/demo.py: a throw-away Home Assistant for the Peer Energy demo.\n"
        + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
        + INCLUDES,
        encoding="utf-8",
    )
    # As in a new Home Assistant: the UI editors save automations, scripts and scenes here.
    for name, content in INCLUDED_FILES.items():
        (config_dir / name).write_text(content, encoding="utf-8")
    storage = config_dir / ".storage"
    storage.mkdir(exist_ok=True)
    # Recovery mode (when configuration.yaml fails) reads the last good HTTP settings from
    # here; writing them up front keeps even that on loopback.
    (storage / "http").write_text(
        json.dumps(
            {
                "version": 1,
                "minor_version": 1,
                "key": "http",
                "data": {"server_host": ["127.0.0.1"], "server_port": port},
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    components = config_dir / "custom_components"
    components.mkdir(exist_ok=True)
    (components / DOMAIN).symlink_to(ROOT / "custom_components" / DOMAIN, target_is_directory=True)


# What a new Home Assistant's configuration.yaml has, so that the automation, script and
# scene editors can save (yaml.safe_dump cannot write the !include tag).
INCLUDES = (
    "automation: !include automations.yaml\n"
    "script: !include scripts.yaml\n"
    "scene: !include scenes.yaml\n"
)
INCLUDED_FILES = {"automations.yaml": "[]\n", "scripts.yaml": "", "scenes.yaml": "[]\n"}


# ---------------------------------------------------------------------------------------
# REST and websocket client
# ---------------------------------------------------------------------------------------


@dataclass
class Api:
    """A tiny Home Assistant REST + websocket client."""

    session: aiohttp.ClientSession
    base: str
    token: str | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _ws_id: int = 0

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        ok: tuple[int, ...] = (200, 201),
        limit: float = 60.0,
    ) -> Any:
        async with self.session.request(
            method,
            self.base + path,
            json=payload,
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=limit),
        ) as resp:
            text = await resp.text()
            if resp.status not in ok:
                raise DemoError(f"{method} {path} -> HTTP {resp.status}: {text[:500]}")
            return json.loads(text) if text else None

    async def ws_command(self, message: dict[str, Any], limit: float = 60.0) -> Any:
        if self._ws is None:
            self._ws = await self.session.ws_connect(self.base + "/api/websocket")
            hello = await self._ws.receive_json(timeout=limit)
            if hello.get("type") != "auth_required":
                raise DemoError(f"websocket: unexpected greeting {hello}")
            await self._ws.send_json({"type": "auth", "access_token": self.token})
            auth = await self._ws.receive_json(timeout=limit)
            if auth.get("type") != "auth_ok":
                raise DemoError(f"websocket: authentication failed: {auth}")
        self._ws_id += 1
        await self._ws.send_json({"id": self._ws_id, **message})
        while True:
            reply = await self._ws.receive_json(timeout=limit)
            if reply.get("id") == self._ws_id and reply.get("type") == "result":
                break
        if not reply.get("success"):
            raise DemoError(f"websocket {message['type']}: {reply.get('error')}")
        return reply.get("result")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()


# ---------------------------------------------------------------------------------------
# Driving data entry flows as the frontend does
# ---------------------------------------------------------------------------------------


def fill_form(
    schema: list[dict[str, Any]], answers: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Answer a serialised form schema from ``answers`` (flat; sections are filled too)."""
    user_input: dict[str, Any] = {}
    unanswered: list[str] = []
    for fld in schema:
        name = fld["name"]
        if fld.get("type") == "expandable":  # a section: its fields nest under its name
            nested_answers = answers.get(name, answers)
            nested = fill_form(fld.get("schema", []), nested_answers, f"{where}/{name}")
            if nested:
                user_input[name] = nested
            continue
        if name in answers:
            user_input[name] = answers[name]
        elif fld.get("required") and "default" not in fld:
            unanswered.append(name)
    if unanswered:
        raise DemoError(
            f"{where}: the demo has no answer for required field(s) {unanswered}; "
            f"form fields: {[f['name'] for f in schema]}"
        )
    return user_input


def choose_menu(options: Any, preferred: tuple[str, ...], where: str) -> str:
    names = list(options) if isinstance(options, list | dict) else []
    for wanted in preferred:
        if wanted in names:
            return wanted
    raise DemoError(f"{where}: menu offers {names}, none of {list(preferred)}")


async def drive_flow(
    api: Api,
    index_path: str,
    start: dict[str, Any],
    answers: Mapping[str, Any],
    *,
    menu: tuple[str, ...] = (),
    label: str,
) -> dict[str, Any]:
    """Start a flow and answer each step until it creates an entry."""
    result: dict[str, Any] = await api.request("POST", index_path, start, limit=FLOW_TIMEOUT)
    submitted: dict[str, Any] | None = None
    for _ in range(12):
        kind = result.get("type")
        step = result.get("step_id", "?")
        where = f"{label} step {step!r}"
        if kind == "create_entry":
            return result
        if kind == "abort":
            raise DemoError(f"{label}: flow aborted: {result.get('reason')}")
        if kind == "menu":
            payload: dict[str, Any] = {
                "next_step_id": choose_menu(result.get("menu_options"), menu, where)
            }
        elif kind == "form":
            if result.get("errors") and submitted is not None:
                raise DemoError(f"{where}: errors {result['errors']} for input {submitted}")
            payload = fill_form(result.get("data_schema") or [], answers, where)
        else:
            raise DemoError(f"{where}: unexpected flow result type {kind!r}: {result}")
        submitted = payload
        result = await api.request(
            "POST", f"{index_path}/{result['flow_id']}", payload, limit=FLOW_TIMEOUT
        )
    raise DemoError(f"{label}: flow did not finish after 12 steps")


# ---------------------------------------------------------------------------------------
# The demo run
# ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """State of one demo run, for clean-up and the summary."""

    args: argparse.Namespace
    config_dir: Path
    port: int
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    username: str = "demo"
    process: subprocess.Popen[bytes] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    timings: dict[str, float] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.config_dir / "home-assistant.log"

    def log_tail(self, lines: int = 40) -> str:
        out = self.config_dir / "hass.out"
        text = ""
        for path in (self.log_path, out):
            with contextlib.suppress(OSError):
                text += f"--- {path} (last {lines} lines)\n"
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def check_alive(self) -> None:
        if self.stop.is_set():
            raise StopRequestedError
        if self.process is not None and self.process.poll() is not None:
            raise DemoError(
                f"Home Assistant exited with code {self.process.returncode}\n{self.log_tail()}"
            )

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        self.check_alive()

    async def until(
        self,
        what: str,
        probe: Callable[[], Awaitable[bool]],
        *,
        limit: float,
        every: float = 1.0,
        progress: str | None = None,
    ) -> None:
        """Poll ``probe`` until it is true; report progress every 15 s."""
        started = time.monotonic()
        last_note = started
        while True:
            self.check_alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, DemoError):
                if await probe():
                    return
            now = time.monotonic()
            if now - started > limit:
                raise DemoError(f"timed out after {limit:.0f} s waiting for {what}")
            if now - last_note >= 15:
                last_note = now
                say(f"still waiting for {what} ({now - started:.0f} s){progress or ''}")
            await self.pause(every)


def start_hass(run: Run) -> None:
    if not HASS_BIN.exists():
        raise DemoError(f"{HASS_BIN} not found; run ./scripts/bootstrap first")
    out = (run.config_dir / "hass.out").open("wb")
    run.process = subprocess.Popen(  # fixed argv, no shell
        [str(HASS_BIN), "-c", str(run.config_dir), "--log-file", str(run.log_path)],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches us only; we stop Home Assistant ourselves
        cwd=run.config_dir,
    )
    out.close()


def stop_hass(run: Run) -> None:
    proc = run.process
    if proc is None or proc.poll() is not None:
        return
    say("stopping Home Assistant (SIGTERM) ...")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        say("Home Assistant did not stop within 90 s; killing it")
        proc.kill()
        proc.wait(timeout=30)
    say(f"Home Assistant stopped (exit code {proc.returncode}, {time.monotonic() - started:.1f} s)")


async def onboard(run: Run, api: Api) -> None:
    client_id = f"{run.url}/"
    status = await api.request("GET", "/api/onboarding")
    done = {step["step"] for step in status if step.get("done")}
    if "user" in done:
        raise DemoError("this config directory is already onboarded; start from a fresh one")
    created = await api.request(
        "POST",
        "/api/onboarding/users",
        {
            "name": "Demo",
            "username": run.username,
            "password": run.password,
            "client_id": client_id,
            "language": "en",
        },
    )
    async with api.session.post(
        f"{run.url}/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": created["auth_code"],
            "client_id": client_id,
        },
    ) as resp:
        tokens = await resp.json()
        if resp.status != 200 or "access_token" not in tokens:
            raise DemoError(f"token exchange failed: HTTP {resp.status} {tokens}")
    api.token = tokens["access_token"]
    await api.request("POST", "/api/onboarding/core_config", {})
    await api.request("POST", "/api/onboarding/analytics", {})
    await api.request(
        "POST",
        "/api/onboarding/integration",
        {"client_id": client_id, "redirect_uri": f"{run.url}/?auth_callback=1"},
    )
    status = await api.request("GET", "/api/onboarding")
    missing = [step["step"] for step in status if not step.get("done")]
    if missing:
        raise DemoError(f"onboarding steps not done: {missing}")


async def remove_onboarding_entries(run: Run, api: Api, deadline: float) -> None:
    """Onboarding starts flows for met, google_translate, radio_browser and shopping_list
    (each may first pip-install its requirements); delete their entries as they appear."""
    seen: set[str] = set()
    while time.monotonic() < deadline and seen != set(ONBOARDING_DOMAINS):
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, DemoError):
            entries = await api.request("GET", "/api/config/config_entries/entry")
            for entry in entries:
                if entry["domain"] in ONBOARDING_DOMAINS:
                    await api.request(
                        "DELETE", f"/api/config/config_entries/entry/{entry['entry_id']}"
                    )
                    seen.add(entry["domain"])
                    run.removed.append(entry["domain"])
        if seen != set(ONBOARDING_DOMAINS):
            await asyncio.sleep(2)


async def configure_peer_energy(run: Run, api: Api) -> str:
    handlers = await api.request("GET", "/api/config/config_entries/flow_handlers")
    if DOMAIN not in handlers:
        raise DemoError(
            f"Home Assistant does not list {DOMAIN} as a config flow handler "
            "(is config_flow.py there and manifest.json config_flow true?)"
        )
    result = await drive_flow(
        api,
        "/api/config/config_entries/flow",
        {"handler": DOMAIN, "show_advanced_options": False},
        HOME_ANSWERS,
        menu=("skip_community",),
        label="Peer Energy config flow",
    )
    entry_id = str(result["result"]["entry_id"])
    say(f"Peer Energy configured: entry {result.get('title')!r} ({entry_id})")
    for asset in ASSETS:
        answers = {"kind": asset.kind, **asset.answers}
        sub = await drive_flow(
            api,
            "/api/config/config_entries/subentries/flow",
            {"handler": [entry_id, SUBENTRY_TYPE], "show_advanced_options": False},
            answers,
            menu=(asset.kind, f"add_{asset.kind}", f"asset_{asset.kind}"),
            label=f"add asset {asset.name!r}",
        )
        say(f"asset added: {sub.get('title', asset.name)} ({asset.kind})")
    return entry_id


# ---------------------------------------------------------------------------------------
# A normal Home Assistant: Energy dashboard, a dashboard with the market, an automation
# ---------------------------------------------------------------------------------------

DASHBOARD_PATH = "energy-trading"
MARKET_VIEW_PATH = "/peer-energy"  # the sidebar panel (websocket_api.PANEL_URL_PATH)
BLUEPRINT = "peer_energy/plug_off_during_price_peak.yaml"
DEMO_AUTOMATION_ID = "peer_energy_demo_dishwasher_peak"


async def our_entities(api: Api, entry_id: str) -> dict[str, str]:
    """Peer Energy's entity ids by unique id without the entry prefix (``clearing_price``,
    ``<asset id>_market_reason``)."""
    entities = await api.ws_command({"type": "config/entity_registry/list"})
    prefix = f"{entry_id}_"
    return {
        str(e["unique_id"])[len(prefix) :]: e["entity_id"]
        for e in entities
        if e.get("platform") == DOMAIN and str(e.get("unique_id", "")).startswith(prefix)
    }


def energy_preferences(ours: Mapping[str, str]) -> dict[str, Any]:
    """The Energy dashboard as docs/entities.md sets it up: the grid meter's energy priced
    with the neighbours' trades, the PV, the battery and the devices."""
    return {
        "energy_sources": [
            {
                "type": "grid",
                "flow_from": [
                    {
                        "stat_energy_from": ours["grid_import_energy"],
                        "stat_cost": None,
                        "entity_energy_price": ours["import_price_with_peers"],
                        "number_energy_price": None,
                    }
                ],
                "flow_to": [
                    {
                        "stat_energy_to": ours["grid_export_energy"],
                        "stat_compensation": None,
                        "entity_energy_price": ours["export_price_with_peers"],
                        "number_energy_price": None,
                    }
                ],
                "cost_adjustment_day": 0,
            },
            {"type": "solar", "stat_energy_from": "sensor.sim_pv_energy"},
            {
                "type": "battery",
                "stat_energy_from": "sensor.sim_battery_discharged_energy",
                "stat_energy_to": "sensor.sim_battery_charged_energy",
            },
        ],
        "device_consumption": [
            {"stat_consumption": entity_id}
            for entity_id in (
                "sensor.sim_ev_charger_energy",
                "sensor.sim_washing_machine_energy",
                "sensor.sim_dishwasher_energy",
            )
        ],
    }


def dashboard_config(ours: Mapping[str, str]) -> dict[str, Any]:
    """A Lovelace dashboard: the headline savings, the market, the neighbours, each
    device's reason, the Energy dashboard's flow and a button to the market view."""

    def some(*rows: tuple[str, str]) -> list[dict[str, str]]:
        """Entity rows with short names (the entities' own names repeat the home's)."""
        return [{"entity": ours[key], "name": name} for key, name in rows if key in ours]

    reasons = sorted(eid for key, eid in ours.items() if key.endswith("_market_reason"))
    return {
        "title": "Energy trading",
        "views": [
            {
                "title": "Trading",
                "path": "trading",
                "icon": "mdi:transmission-tower",
                "cards": [
                    {
                        "type": "markdown",
                        "content": (
                            "**Peer Energy** trades this home's energy with its neighbours "
                            "every slot. The market view in the sidebar shows each device's "
                            "plan, result and reason, the last day, the trades and their "
                            "deliveries."
                        ),
                    },
                    {
                        "type": "button",
                        "name": "Open the market view",
                        "icon": "mdi:chart-timeline-variant",
                        "tap_action": {
                            "action": "navigate",
                            "navigation_path": MARKET_VIEW_PATH,
                        },
                    },
                    {
                        "type": "glance",
                        "title": "Saved versus not trading",
                        "entities": some(
                            ("savings_today", "Today"),
                            ("savings_month", "This month"),
                            ("savings_total", "In total"),
                        ),
                    },
                    {
                        "type": "entities",
                        "title": "Market",
                        "entities": some(
                            ("clearing_price", "Clearing price"),
                            ("next_clearing_price", "Next slot"),
                            ("net_position", "Position (+ takes, − gives)"),
                            ("import_price_with_peers", "Import price with neighbours"),
                            ("export_price_with_peers", "Export price with neighbours"),
                            ("price_peak", "Price peak"),
                        ),
                    },
                    {
                        "type": "entities",
                        "title": "With the neighbours",
                        "entities": some(
                            ("energy_bought_peers", "Bought from neighbours"),
                            ("energy_sold_peers", "Sold to neighbours"),
                            ("credit_spent", "Paid"),
                            ("credit_earned", "Received"),
                            ("credit_balance", "Credit balance"),
                            ("reputation", "Reputation"),
                        ),
                    },
                    {
                        "type": "entities",
                        "title": "Why each device does what it does",
                        "entities": reasons,
                    },
                    {"type": "energy-date-selection"},
                    {"type": "energy-distribution", "link_dashboard": True},
                ],
            }
        ],
    }


def demo_automation(ours: Mapping[str, str]) -> dict[str, Any]:
    """What the automation editor saves for Peer Energy's price-peak blueprint."""
    return {
        "alias": "Dishwasher off during price peaks",
        "description": "Made from the Peer Energy blueprint by the demo.",
        "use_blueprint": {
            "path": BLUEPRINT,
            "input": {
                "price_peak": ours["price_peak"],
                "plug": ["switch.sim_dishwasher_plug"],
                "switch_back_on": True,
            },
        },
    }


async def prepare_home(run: Run, api: Api, entry_id: str, label: str) -> list[str]:
    """Set the home up the way its owner would next: the Energy dashboard, a dashboard with
    the market, and an automation from a Peer Energy blueprint (saved through the editor's
    REST call into automations.yaml). Returns summary lines; problems start with PROBLEM."""
    needed = ("grid_import_energy", "import_price_with_peers", "price_peak", "savings_total")
    ours: dict[str, str] = {}

    async def registered() -> bool:
        nonlocal ours
        ours = await our_entities(api, entry_id)
        return all(key in ours for key in needed)

    await run.until(f"{label}: Peer Energy's entities", registered, limit=60)
    lines: list[str] = []
    await api.ws_command({"type": "energy/save_prefs", **energy_preferences(ours)})
    dashboards = await api.ws_command({"type": "lovelace/dashboards/list"})
    if not any(d.get("url_path") == DASHBOARD_PATH for d in dashboards):
        await api.ws_command(
            {
                "type": "lovelace/dashboards/create",
                "url_path": DASHBOARD_PATH,
                "title": "Energy trading",
                "icon": "mdi:transmission-tower",
                "show_in_sidebar": True,
                "require_admin": False,
            }
        )
    await api.ws_command(
        {
            "type": "lovelace/config/save",
            "url_path": DASHBOARD_PATH,
            "config": dashboard_config(ours),
        }
    )
    lines.append(f"{label}: Energy dashboard and dashboard /{DASHBOARD_PATH} configured")

    async def blueprint_there() -> bool:
        found = await api.ws_command({"type": "blueprint/list", "domain": "automation"})
        return BLUEPRINT in found

    await run.until(f"{label}: Peer Energy's blueprints", blueprint_there, limit=60)
    await api.request(
        "POST", f"/api/config/automation/config/{DEMO_AUTOMATION_ID}", demo_automation(ours)
    )

    async def automation_loaded() -> bool:
        states = await api.ws_command({"type": "get_states"})
        return any(
            st["entity_id"].startswith("automation.")
            and st.get("attributes", {}).get("id") == DEMO_AUTOMATION_ID
            for st in states
        )

    try:
        await run.until(f"{label}: the saved automation", automation_loaded, limit=30)
        lines.append(f"{label}: automation from the price-peak blueprint saved and loaded")
    except DemoError:
        lines.append(f"PROBLEM: {label}: the automation saved to automations.yaml did not load")
    validation = await api.ws_command({"type": "energy/validate"})
    mine = set(ours.values())
    # One list of issues per source and per device, each issue naming its entities.
    groups = [*validation.get("energy_sources", []), *validation.get("device_consumption", [])]
    issues = [
        f"{issue.get('type')} {issue.get('affected_entities')}"
        for group in groups
        for issue in group
        if mine & {str(affected[0]) for affected in issue.get("affected_entities", [])}
        # New sensors have no long-term statistics until the recorder's first 5-minute run.
        and issue.get("type") != "statistics_not_defined"
    ]
    if issues:
        lines.append(f"PROBLEM: {label}: Energy dashboard issues with Peer Energy: {issues}")
    else:
        lines.append(f"{label}: Energy dashboard accepts Peer Energy's sensors")
    return lines


@dataclass
class DeviceReport:
    name: str
    is_home: bool
    entities: list[str]
    values: dict[str, str]


async def collect(api: Api, entry_id: str) -> tuple[list[DeviceReport], dict[str, str]]:
    devices = await api.ws_command({"type": "config/device_registry/list"})
    entities = await api.ws_command({"type": "config/entity_registry/list"})
    states = await api.ws_command({"type": "get_states"})
    by_entity = {s["entity_id"]: s for s in states}
    ours = [d for d in devices if entry_id in d.get("config_entries", [])]
    reports: list[DeviceReport] = []
    snapshot: dict[str, str] = {}
    for dev in ours:
        ents = sorted(
            e["entity_id"]
            for e in entities
            if e.get("device_id") == dev["id"] and e.get("config_entry_id") == entry_id
        )
        values: dict[str, str] = {}
        for ent in ents:
            st = by_entity.get(ent)
            if st is None:
                continue
            unit = st.get("attributes", {}).get("unit_of_measurement") or ""
            values[ent] = f"{st['state']} {unit}".strip()
            snapshot[ent] = st["state"]
        reports.append(
            DeviceReport(
                name=dev.get("name_by_user") or dev.get("name") or dev["id"],
                is_home=dev.get("via_device_id") is None,
                entities=ents,
                values=values,
            )
        )
    reports.sort(key=lambda r: (not r.is_home, r.name))
    return reports, snapshot


def integration_log_errors(log_path: Path) -> list[str]:
    """ERROR/CRITICAL log records raised by or through Peer Energy."""
    found: list[str] = []
    record = ""
    with contextlib.suppress(OSError):
        for line in [*log_path.read_text(errors="replace").splitlines(), "0000-"]:
            if line[:4].isdigit() and "-" in line[:5]:  # a new record starts with the date
                if (" ERROR " in record or " CRITICAL " in record) and DOMAIN in record:
                    found.append(record.splitlines()[0][:300])
                record = line
            else:
                record += "\n" + line
    return found


def numeric_sensors(report: DeviceReport) -> list[str]:
    return [
        ent
        for ent in report.entities
        if ent.startswith("sensor.")
        and as_number(report.values.get(ent, "").split(" ")[0]) is not None
    ]


async def verify(run: Run, api: Api, entry_id: str) -> bool:
    """Devices exist (home + one per asset), each has numeric sensors, and values move."""
    expected_devices = 1 + len(ASSETS)
    latest: list[DeviceReport] = []

    async def devices_ready() -> bool:
        nonlocal latest
        latest, _ = await collect(api, entry_id)
        return len(latest) >= expected_devices and all(numeric_sensors(r) for r in latest)

    with contextlib.suppress(DemoError):
        await run.until("Peer Energy devices with live values", devices_ready, limit=120, every=3)
    reports, first = await collect(api, entry_id)
    say(f"watching values for up to {LIVE_WINDOW:.0f} s to see them move ...")
    changed: set[str] = set()
    started = time.monotonic()
    while time.monotonic() - started < LIVE_WINDOW:
        await run.pause(5)
        reports, snap = await collect(api, entry_id)
        changed |= {ent for ent, state in snap.items() if ent in first and first[ent] != state}
        if len(changed) >= 3:
            break
    asset_reports = [r for r in reports if not r.is_home]
    home_reports = [r for r in reports if r.is_home]
    problems: list[str] = []
    if len(home_reports) != 1:
        problems.append(f"expected 1 home device, found {len(home_reports)}")
    if len(asset_reports) != len(ASSETS):
        problems.append(f"expected {len(ASSETS)} asset devices, found {len(asset_reports)}")
    names = {r.name for r in asset_reports}
    missing = [a.name for a in ASSETS if a.name not in names]
    if missing:
        problems.append(f"no device named {missing}")
    for rep in reports:
        if not numeric_sensors(rep):
            problems.append(f"device {rep.name!r} has no sensor with a numeric value")
    if not changed:
        problems.append(f"no Peer Energy value changed within {LIVE_WINDOW:.0f} s")
    entries = await api.request("GET", f"/api/config/config_entries/entry?domain={DOMAIN}")
    states = [str(e.get("state")) for e in entries if e.get("entry_id") == entry_id]
    if states != ["loaded"]:
        problems.append(f"config entry state is {states}, not loaded")
    errors = integration_log_errors(run.log_path)
    problems.extend(f"log: {line}" for line in errors[:5])

    lines = [f"devices ({len(reports)}):"]
    for rep in reports:
        role = "home" if rep.is_home else "asset"
        live = len(numeric_sensors(rep))
        lines.append(f"  {rep.name} [{role}]: {len(rep.entities)} entities, {live} live sensors")
        for ent in rep.entities:
            mark = " *" if ent in changed else ""
            lines.append(f"      {ent} = {rep.values.get(ent, '(no state)')}{mark}")
    lines.append(f"values that changed while watching (*): {len(changed)}")
    lines.extend(f"PROBLEM: {p}" for p in problems)
    run.summary.extend(lines)
    return not problems


async def demo(run: Run) -> bool:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, run.stop.set)
    t0 = run.started = time.monotonic()
    write_config(run.config_dir, run.port, fast=run.args.fast)
    say(f"config directory: {run.config_dir}")
    say(f"starting Home Assistant on {run.url} (log: {run.log_path})")
    start_hass(run)
    async with aiohttp.ClientSession() as session:
        api = Api(session, run.url)
        try:

            async def answers() -> bool:
                await api.request("GET", "/api/onboarding", limit=5)
                return True

            await run.until(
                "Home Assistant to answer",
                answers,
                limit=START_TIMEOUT,
                progress="; a first start pip-installs the frontend (up to a few minutes)",
            )
            run.timings["start"] = time.monotonic() - t0
            say(f"Home Assistant answers after {run.timings['start']:.1f} s; onboarding ...")
            t1 = time.monotonic()
            await onboard(run, api)

            async def running() -> bool:
                cfg = await api.request("GET", "/api/config", limit=5)
                return bool(cfg.get("state") == "RUNNING")

            await run.until("Home Assistant to reach RUNNING", running, limit=START_TIMEOUT)
            cleanup = asyncio.create_task(
                remove_onboarding_entries(run, api, time.monotonic() + 240)
            )

            async def sim_ready() -> bool:
                for ent in SIM_ENTITIES:
                    st = await api.request("GET", f"/api/states/{ent}", ok=(200, 404), limit=5)
                    if not st or str(st.get("state")).lower() in UNAVAILABLE:
                        return False
                return True

            await run.until("the simulated home's entities", sim_ready, limit=120)
            run.timings["onboarding"] = time.monotonic() - t1
            say(f"onboarded as {run.username!r}; simulated home is live")
            t2 = time.monotonic()
            entry_id = await configure_peer_energy(run, api)
            prepared = await prepare_home(run, api, entry_id, "home")
            run.timings["flows"] = time.monotonic() - t2
            t3 = time.monotonic()
            ok = await verify(run, api, entry_id)
            run.summary.extend(prepared)
            ok = ok and not any(line.startswith("PROBLEM") for line in prepared)
            run.timings["checks"] = time.monotonic() - t3
            say("waiting for onboarding's extra integrations to be removed ...")
            await cleanup
            left = sorted(set(ONBOARDING_DOMAINS) - set(run.removed))
            run.summary.insert(
                0,
                f"removed onboarding entries: {', '.join(sorted(set(run.removed))) or 'none'}"
                + (f" (never appeared: {', '.join(left)})" if left else ""),
            )
            run.timings["total"] = time.monotonic() - t0
            print_summary(run, ok)
            if run.args.check:
                return ok
            print_login(run)
            with contextlib.suppress(StopRequestedError):
                while True:
                    await run.pause(2)
            return ok
        except StopRequestedError:
            say("interrupted")
            return False
        finally:
            await api.close()


def print_summary(run: Run, ok: bool) -> None:
    print()
    print(f"Peer Energy demo: {'PASS' if ok else 'FAIL'}")
    for line in run.summary:
        print(f"  {line}")
    t = run.timings
    print(
        "  timing: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in t.items() if k != "total")
        + f", total {t.get('total', time.monotonic() - run.started):.1f} s"
    )
    print(flush=True)


def print_login(run: Run) -> None:
    print("=" * 72)
    print(f"  Home Assistant with Peer Energy: {run.url}")
    print(f"  username: {run.username}")
    print(f"  password: {run.password}")
    print("  Settings > Devices & services > Peer Energy shows the home and its assets.")
    print("  Toggle 'Simulation: fast day' to run a day in 24 minutes.")
    print("  Press Ctrl-C to stop.")
    print("=" * 72, flush=True)


# ---------------------------------------------------------------------------------------
# The neighbourhood: several homes joined into one community (--homes N, N >= 2)
# ---------------------------------------------------------------------------------------

COMMUNITY_ANSWERS: dict[str, Any] = {
    "community_name": "Demo street",
    "slot_minutes": "1",
    "gate_closure_lead_s": 20,
    "fee": 0.01,
    "credit_limit": 20,
    "fair_share_pct": 100,
    "max_members": 50,
}


def transport_answers(args: argparse.Namespace) -> dict[str, Any]:
    """The create form's transport fields: HTTP, or the demo's own Mosquitto."""
    if args.transport != "mqtt":
        return {"transport": "http"}
    return {"transport": "mqtt", "broker_url": args.broker_url, "topic_prefix": "peer_energy"}


COMMUNITY_TIMEOUT = 240.0  # joining and the first cleared slot (1-minute slots)
TRADE_WAIT = 200.0  # --check: how long to wait for a first trade between two homes
DELIVERY_WAIT = 200.0  # --check: then for its delivery to be settled on every home


async def start_home(run: Run, api: Api, label: str) -> None:
    """Start, onboard and wait for the simulated home of one instance."""
    write_config(run.config_dir, run.port, fast=run.args.fast)
    start_hass(run)

    async def answers() -> bool:
        await api.request("GET", "/api/onboarding", limit=5)
        return True

    await run.until(f"{label} to answer", answers, limit=START_TIMEOUT)
    await onboard(run, api)

    async def running() -> bool:
        cfg = await api.request("GET", "/api/config", limit=5)
        return bool(cfg.get("state") == "RUNNING")

    await run.until(f"{label} to reach RUNNING", running, limit=START_TIMEOUT)

    async def sim_ready() -> bool:
        for ent in SIM_ENTITIES:
            st = await api.request("GET", f"/api/states/{ent}", ok=(200, 404), limit=5)
            if not st or str(st.get("state")).lower() in UNAVAILABLE:
                return False
        return True

    await run.until(f"{label}'s simulated entities", sim_ready, limit=120)
    say(f"{label}: {run.url} onboarded, simulated home live")


async def configure_home(
    api: Api, label: str, community_step: str, community_answers: Mapping[str, Any]
) -> str:
    """The config flow as a user clicks it: home form, community menu, community form.

    The assets are added later (``add_assets``): every added asset reloads the entry, and a
    home should not reload while its join is in flight.
    """
    path = "/api/config/config_entries/flow"
    result = await api.request(
        "POST", path, {"handler": DOMAIN, "show_advanced_options": False}, limit=FLOW_TIMEOUT
    )
    steps = [
        fill_form(result.get("data_schema") or [], HOME_ANSWERS, f"{label} home"),
        {"next_step_id": community_step},
    ]
    for payload in steps:
        result = await api.request("POST", f"{path}/{result['flow_id']}", payload)
    if result.get("type") != "form":
        raise DemoError(f"{label}: expected the community form, got {result}")
    payload = fill_form(result.get("data_schema") or [], community_answers, f"{label} community")
    result = await api.request("POST", f"{path}/{result['flow_id']}", payload)
    if result.get("type") != "create_entry":
        raise DemoError(f"{label}: community step did not create the entry: {result}")
    return str(result["result"]["entry_id"])


async def add_assets(api: Api, label: str, entry_id: str) -> None:
    """Every simulated asset through the subentry flow."""
    for asset in ASSETS:
        await drive_flow(
            api,
            "/api/config/config_entries/subentries/flow",
            {"handler": [entry_id, SUBENTRY_TYPE], "show_advanced_options": False},
            {"kind": asset.kind, **asset.answers},
            menu=(asset.kind,),
            label=f"{label}: add asset {asset.name!r}",
        )


@dataclass(frozen=True)
class HomeProfile:
    """How one simulated home differs from its neighbours."""

    description: str
    pv_peak_w: int
    cloud_pct: int
    ev_home_daytime: bool = False
    ev_leaves_soon: bool = False


# Home 1 has a large sunny roof, home 2 a small shaded one and a car at home that must leave
# soon, home 3 sits in between; more homes repeat the pattern.
HOME_PROFILES: tuple[HomeProfile, ...] = (
    HomeProfile("large sunny roof", pv_peak_w=7000, cloud_pct=0),
    HomeProfile(
        "small shaded roof, car at home leaving in 2 h",
        pv_peak_w=1500,
        cloud_pct=60,
        ev_home_daytime=True,
        ev_leaves_soon=True,
    ),
    HomeProfile("medium roof, some cloud", pv_peak_w=4500, cloud_pct=30),
)


async def set_profile(api: Api, label: str, profile: HomeProfile) -> None:
    """Apply a home profile to the simulation helpers."""
    for entity_id, value in (
        ("input_number.sim_pv_peak_w", profile.pv_peak_w),
        ("input_number.sim_cloud_cover", profile.cloud_pct),
    ):
        await api.request(
            "POST", "/api/services/input_number/set_value", {"entity_id": entity_id, "value": value}
        )
    service = "turn_on" if profile.ev_home_daytime else "turn_off"
    await api.request(
        "POST",
        f"/api/services/input_boolean/{service}",
        {"entity_id": "input_boolean.sim_ev_home_daytime"},
    )
    say(f"{label}: {profile.description}")


async def make_ev_urgent(api: Api, label: str) -> None:
    """The car needs 20 kWh and leaves in two hours: its agent bids to charge now."""
    config = await api.request("GET", "/api/config", limit=30)
    local = datetime.now(zoneinfo.ZoneInfo(config["time_zone"])) + timedelta(hours=2)
    await api.request(
        "POST",
        "/api/services/time/set_value",
        {"entity_id": "time.wallbox_departure_time", "time": local.strftime("%H:%M:00")},
    )
    await api.request(
        "POST",
        "/api/services/number/set_value",
        {"entity_id": "number.wallbox_energy_needed", "value": 20},
    )
    say(f"{label}: the car needs 20 kWh by {local.strftime('%H:%M')}")


async def federation_state(api: Api, entry_id: str) -> dict[str, Any]:
    """The federation section of the entry's diagnostics."""
    diag = await api.request("GET", f"/api/diagnostics/config_entry/{entry_id}", limit=30)
    return dict(diag["data"].get("federation") or {})


async def neighbourhood(runs: list[Run]) -> bool:
    """Start N homes, create the community on the first, join the others by invitation."""
    loop = asyncio.get_running_loop()
    lead = runs[0]

    def stop_all() -> None:
        for run in runs:
            run.stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_all)
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as session:
        apis = [Api(session, run.url) for run in runs]
        try:
            labels = [f"home {i + 1}" for i in range(len(runs))]
            await asyncio.gather(
                *(start_home(r, a, lbl) for r, a, lbl in zip(runs, apis, labels, strict=True))
            )
            cleanups = [
                asyncio.create_task(remove_onboarding_entries(r, a, time.monotonic() + 240))
                for r, a in zip(runs, apis, strict=True)
            ]
            lead.timings["start"] = time.monotonic() - t0
            t1 = time.monotonic()
            entries = [
                await configure_home(
                    apis[0],
                    labels[0],
                    "create_community",
                    {**COMMUNITY_ANSWERS, "address": lead.url, **transport_answers(lead.args)},
                )
            ]
            say(
                f"{labels[0]}: created community {COMMUNITY_ANSWERS['community_name']!r} "
                f"({lead.args.transport})"
            )
            for run, api, label in zip(runs[1:], apis[1:], labels[1:], strict=True):
                reply = await apis[0].request(
                    "POST", "/api/services/peer_energy/create_invitation?return_response", {}
                )
                invitation = reply["service_response"]["invitation"]
                say(f"{labels[0]}: invitation for {label}: {invitation[:28]}...")
                entries.append(
                    await configure_home(
                        api,
                        label,
                        "join_community",
                        {"invitation": invitation, "address": run.url},
                    )
                )
            lead.timings["flows"] = time.monotonic() - t1
            n = len(runs)

            async def formed() -> bool:
                states = [await federation_state(a, e) for a, e in zip(apis, entries, strict=True)]
                return all(st.get("joined") and st.get("members") == n for st in states)

            t2 = time.monotonic()
            await lead.until(f"all {n} homes in the community", formed, limit=COMMUNITY_TIMEOUT)
            lead.timings["join"] = time.monotonic() - t2
            say(f"community formed: {n} members on every home; adding the assets ...")
            # Different homes, so that some have surplus while others need energy (identical
            # simulated homes would all want the same and never trade with each other).
            for i, api in enumerate(apis):
                await set_profile(api, labels[i], HOME_PROFILES[i % len(HOME_PROFILES)])
            await asyncio.gather(
                *(add_assets(a, lbl, e) for a, lbl, e in zip(apis, labels, entries, strict=True))
            )
            await lead.until(f"all {n} homes back after the reloads", formed, limit=120)
            for i, api in enumerate(apis):
                if HOME_PROFILES[i % len(HOME_PROFILES)].ev_leaves_soon:
                    await make_ev_urgent(api, labels[i])
            prepared: list[str] = []
            for run, api, label, entry in zip(runs, apis, labels, entries, strict=True):
                prepared.extend(await prepare_home(run, api, entry, label))
            lead.summary.extend(prepared)
            ok = not any(line.startswith("PROBLEM") for line in prepared)
            if lead.args.check:
                common: dict[str, str] = {}

                async def cleared() -> bool:
                    finals = [
                        (await federation_state(a, e)).get("recent_finals") or {}
                        for a, e in zip(apis, entries, strict=True)
                    ]
                    slots = set.intersection(*(set(f) for f in finals))
                    for slot in sorted(slots):
                        hashes = {f[slot] for f in finals}
                        if len(hashes) == 1:
                            common[slot] = hashes.pop()
                    return bool(common)

                t3 = time.monotonic()
                await lead.until(
                    "a slot cleared identically on every home", cleared, limit=COMMUNITY_TIMEOUT
                )
                lead.timings["first_slot"] = time.monotonic() - t3

                async def traded() -> bool:
                    pairs = zip(apis, entries, strict=True)
                    states = [await federation_state(a, e) for a, e in pairs]
                    return sum(1 for st in states if st.get("trades_recorded")) >= 2

                # Whether homes trade depends on the time of day (at night nobody has surplus
                # but the batteries): wait a few slots for a trade and report it, but do not
                # fail the check on it.
                t4 = time.monotonic()
                say("waiting for a trade between two homes ...")
                has_traded = False
                while not has_traded and time.monotonic() - t4 < TRADE_WAIT:
                    lead.check_alive()
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, DemoError):
                        has_traded = await traded()
                    if not has_traded:
                        await lead.pause(2)
                if has_traded:
                    lead.timings["first_trade"] = time.monotonic() - t4

                    async def delivered() -> bool:
                        pairs = zip(apis, entries, strict=True)
                        states = [await federation_state(a, e) for a, e in pairs]
                        return all(
                            (st.get("settlements_recorded") or 0)
                            + (st.get("deliveries_unreported") or 0)
                            for st in states
                        )

                    # A trade's delivery is settled once both parties have metered the slot
                    # (at its end) or at the delivery deadline one slot later.
                    say("waiting for the first delivery to be metered and settled ...")
                    t5 = time.monotonic()
                    settled = False
                    while not settled and time.monotonic() - t5 < DELIVERY_WAIT:
                        lead.check_alive()
                        with contextlib.suppress(aiohttp.ClientError, TimeoutError, DemoError):
                            settled = await delivered()
                        if not settled:
                            await lead.pause(2)
                    if settled:
                        lead.timings["first_delivery"] = time.monotonic() - t5
                    else:
                        ok = False
                        lead.summary.append(
                            f"no delivery settled on every home within {DELIVERY_WAIT:.0f} s"
                        )
                else:
                    lead.summary.append(
                        f"no trade between homes within {TRADE_WAIT:.0f} s (time of day: "
                        "every home has surplus, or none has)"
                    )
                slot, digest = sorted(common.items())[-1]
                lead.summary.append(
                    f"{n} homes, one community; slot {slot} cleared on all with result {digest}"
                )
                for label, api, entry in zip(labels, apis, entries, strict=True):
                    st = await federation_state(api, entry)
                    lead.summary.append(
                        f"{label}: members {st.get('members')}, peers online "
                        f"{st.get('peers_online')}, final slots {len(st.get('recent_finals', {}))}"
                        f", trades recorded {st.get('trades_recorded')}"
                        f", deliveries settled {st.get('settlements_recorded')}"
                        f" (unreported {st.get('deliveries_unreported')})"
                        f", own reputation {st.get('own_reputation')}"
                    )
            for task in cleanups:
                task.cancel()
            lead.timings["total"] = time.monotonic() - t0
            lead.summary.insert(0, "homes: " + ", ".join(r.url for r in runs))
            print_summary(lead, ok)
            if lead.args.check:
                return ok
            print("=" * 72)
            for label, run in zip(labels, runs, strict=True):
                print(f"  {label}: {run.url}  username: {run.username}  password: {run.password}")
            print(
                "  Every home trades in 1-minute slots with the others (community 'Demo street')."
            )
            print("  Press Ctrl-C to stop.")
            print("=" * 72, flush=True)
            with contextlib.suppress(StopRequestedError):
                while True:
                    await lead.pause(2)
            return ok
        except StopRequestedError:
            say("interrupted")
            return False
        finally:
            for api in apis:
                await api.close()


MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")


class Mosquitto:
    """The community's broker for ``--transport mqtt``: a Mosquitto on 127.0.0.1 and a free
    port, anonymous (the demo's homes are all on this machine), no persistence."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or next(
            (p for p in MOSQUITTO_PATHS if Path(p).exists()), None
        )
        if binary is None:
            raise DemoError(
                "--transport mqtt needs Mosquitto: install it with 'apt-get install -y mosquitto' "
                "(scripts/bootstrap does so when run as root)"
            )
        config = self.folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        # As root Mosquitto would switch to its own user, which cannot read this folder.
        lines.append(f"user {getpass.getuser()}")
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log = (self.folder / "mosquitto.log").open("wb")
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(f"mosquitto exited; see {self.folder / 'mosquitto.log'}")
            if not port_is_free(self.port):
                say(f"community broker: Mosquitto at {self.url}")
                return
            time.sleep(0.05)
        raise DemoError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def main_neighbourhood(args: argparse.Namespace) -> int:
    """Run ``--homes N`` instances (and their broker with ``--transport mqtt``); clean all
    of them up."""
    DEMO_ROOT.mkdir(exist_ok=True)
    broker: Mosquitto | None = None
    if args.transport == "mqtt":
        broker = Mosquitto(Path(tempfile.mkdtemp(prefix="mqtt-", dir=DEMO_ROOT)))
        try:
            broker.start()
        except DemoError as err:
            say(f"FAILED: {err}")
            broker.stop()
            shutil.rmtree(broker.folder, ignore_errors=True)
            return 1
        args.broker_url = broker.url
    runs: list[Run] = []
    ports: set[int] = set()
    for _ in range(args.homes):
        port = free_port()
        while port in ports:
            port = free_port()
        ports.add(port)
        config_dir = Path(tempfile.mkdtemp(prefix="ha-", dir=DEMO_ROOT))
        runs.append(Run(args=args, config_dir=config_dir, port=port))
    ok = False
    try:
        ok = asyncio.run(neighbourhood(runs))
    except DemoError as err:
        say(f"FAILED: {err}")
        print_summary(runs[0], False)
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        for run in runs:
            stop_hass(run)
            if args.keep:
                say(f"kept config directory {run.config_dir}")
            else:
                shutil.rmtree(run.config_dir, ignore_errors=True)
        if broker is not None:
            broker.stop()
            if not args.keep:
                shutil.rmtree(broker.folder, ignore_errors=True)
        if not args.keep:
            say("removed the config directories")
    return 0 if ok else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Run a real Home Assistant with Peer Energy and a simulated home.",
    )
    parser.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the config directory")
    parser.add_argument(
        "--check",
        action="store_true",
        help="set up, verify devices and live values, print a summary, exit 0/1",
    )
    parser.add_argument(
        "--fast", action="store_true", help="start with a fast day (1 simulated hour per minute)"
    )
    parser.add_argument(
        "--transport",
        choices=("http", "mqtt"),
        default="http",
        help=(
            "how the homes reach each other (default http); mqtt starts a Mosquitto on "
            "127.0.0.1 as the community's broker"
        ),
    )
    parser.add_argument(
        "--homes",
        type=int,
        default=3,
        help=(
            "number of homes (default 3): 2 or more form a community through invitations "
            "and trade in 1-minute slots; 1 runs the single home without a community"
        ),
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.homes > 1:
        return main_neighbourhood(args)
    port = args.port or free_port()
    if not port_is_free(port):
        say(f"port {port} on 127.0.0.1 is in use; pick another with --port")
        return 2
    DEMO_ROOT.mkdir(exist_ok=True)
    config_dir = Path(tempfile.mkdtemp(prefix="ha-", dir=DEMO_ROOT))
    run = Run(args=args, config_dir=config_dir, port=port)
    ok = False
    try:
        ok = asyncio.run(demo(run))
    except DemoError as err:
        say(f"FAILED: {err}")
        print_summary(run, False)
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        stop_hass(run)
        if args.keep:
            say(f"kept config directory {config_dir}")
        else:
            shutil.rmtree(config_dir, ignore_errors=True)
            say("removed the config directory")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
