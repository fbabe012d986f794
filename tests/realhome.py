"""A real Home Assistant process with Peer Energy set up, for the browser and chaos tests.

``RealHome`` writes a throw-away configuration (HTTP on 127.0.0.1 and a free port, the
frontend, template sensors standing in for a PV inverter, a battery, an EV charger, a
smart plug and a grid meter), creates a login before the first start, starts
``hass -c <dir>``, logs in over REST and sets Peer Energy up through the same REST flows
the UI uses: the home, a community of its own with 1-minute slots (so a slot clears
within the test), and one asset of each kind.

Nothing here is browser specific (``tests/browser/shoot.py`` drives Chromium,
``tests/real/`` kills and reloads homes). Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import secrets
import signal
import socket
import subprocess
import sys
import time
from typing import Any
import urllib.error
import urllib.parse
import urllib.request

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "peer_energy"
USERNAME = "tester"
START_TIMEOUT = 180.0  # the first start of a fresh machine installs the frontend package

# Stand-ins for the devices: fixed readings, so what the page shows is predictable.
# (name, state, unit, device class); the entity ids follow the names (sensor.test_pv_power).
SOURCES: list[tuple[str, str, str, str]] = [
    ("Test PV power", "2400", "W", "power"),
    ("Test PV energy", "1520.4", "kWh", "energy"),
    ("Test battery SoC", "55", "%", "battery"),
    # Positive while discharging: the battery charges at 1.5 kW.
    ("Test battery power", "-1500", "W", "power"),
    ("Test EV power", "0", "W", "power"),
    ("Test plug power", "120", "W", "power"),
    ("Test grid power", "-400", "W", "power"),
    ("Test grid import", "4210.5", "kWh", "energy"),
    ("Test grid export", "2980.2", "kWh", "energy"),
]
ASSETS: list[tuple[str, dict[str, Any]]] = [
    (
        "pv",
        {
            "name": "Roof PV",
            "power_entity": "sensor.test_pv_power",
            "energy_entity": "sensor.test_pv_energy",
        },
    ),
    (
        "battery",
        {
            "name": "Home battery",
            "soc_entity": "sensor.test_battery_soc",
            "power_entity": "sensor.test_battery_power",
            "power_sign": "positive_discharge",
            "capacity_kwh": 10,
            "max_charge_w": 5000,
            "max_discharge_w": 5000,
        },
    ),
    (
        "ev_charger",
        {
            "name": "Wallbox",
            "power_entity": "sensor.test_ev_power",
            "plugged_entity": "binary_sensor.test_ev_plugged",
            "switch_entity": "input_boolean.test_ev_enable",
        },
    ),
    (
        "plug",
        {
            "name": "Dishwasher",
            "switch_entity": "input_boolean.test_plug",
            "power_entity": "sensor.test_plug_power",
        },
    ),
    (
        "grid_meter",
        {
            "name": "Grid meter",
            "power_entity": "sensor.test_grid_power",
            "import_energy_entity": "sensor.test_grid_import",
            "export_energy_entity": "sensor.test_grid_export",
        },
    ),
]


class HarnessError(RuntimeError):
    """The real Home Assistant could not be brought up as the tests need it."""


class TokenExpiredError(HarnessError):
    """The access token was refused (expired): the request is retried after a refresh."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _configuration(
    port: int, sources: list[tuple[str, str, str, str]] | None = None, name: str = ""
) -> dict[str, Any]:
    sensors = [
        {
            "name": name,
            "unique_id": name.lower().replace(" ", "_"),
            "state": state,
            "unit_of_measurement": unit,
            "device_class": device_class,
            "state_class": "total_increasing" if device_class == "energy" else "measurement",
        }
        for name, state, unit, device_class in (sources or SOURCES)
    ]
    return {
        "homeassistant": {
            "name": name or "Browser test home",
            "latitude": 52.52,
            "longitude": 13.40,
            "elevation": 35,
            "unit_system": "metric",
            "currency": "EUR",
            "country": "DE",
            "time_zone": "UTC",
        },
        "http": {"server_host": ["127.0.0.1"], "server_port": port},
        "config": {},
        "api": {},
        "websocket_api": {},
        "frontend": {},
        # As in every installation with default_config: the device page's activity card
        # subscribes to the logbook.
        "history": {},
        "logbook": {},
        "logger": {"default": "warning", "logs": {"custom_components.peer_energy": "info"}},
        "input_boolean": {
            "test_plug": {"name": "Test plug", "initial": True},
            "test_ev_enable": {"name": "Test EV enable", "initial": False},
        },
        "template": [
            {"sensor": sensors},
            {
                "binary_sensor": [
                    {
                        "name": "Test EV plugged",
                        "unique_id": "t_ev_plugged",
                        "state": "on",
                        "device_class": "plug",
                    }
                ]
            },
        ],
    }


@dataclass
class RealHome:
    """One real Home Assistant with Peer Energy, in ``config_dir``."""

    config_dir: Path
    port: int = field(default_factory=free_port)
    # never starting with "-" (the auth script would read it as an option)
    password: str = field(default_factory=lambda: "p" + secrets.token_urlsafe(12))
    process: subprocess.Popen[bytes] | None = None
    token: str = ""
    tokens: dict[str, Any] = field(default_factory=dict)
    entry_id: str = ""
    name: str = ""
    sources: list[tuple[str, str, str, str]] | None = None
    assets: list[tuple[str, dict[str, Any]]] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.config_dir / "home-assistant.log"

    # --- process ------------------------------------------------------------------------

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            yaml.safe_dump(_configuration(self.port, self.sources, self.name), sort_keys=False),
            encoding="utf-8",
        )
        storage = self.config_dir / ".storage"
        storage.mkdir(exist_ok=True)
        # Recovery mode (a configuration that fails) reads the HTTP settings from here.
        _store(storage / "http", "http", {"server_host": ["127.0.0.1"], "server_port": self.port})
        # Onboarding done: the pages open directly (the login is made below).
        done = ["user", "core_config", "analytics", "integration"]
        _store(storage / "onboarding", "onboarding", {"done": done}, version=4)
        components = self.config_dir / "custom_components"
        components.mkdir(exist_ok=True)
        link = components / DOMAIN
        if not link.exists():
            link.symlink_to(ROOT / "custom_components" / DOMAIN, target_is_directory=True)

    def _hass_command(self) -> list[str]:
        return [sys.executable, "-m", "homeassistant", "-c", str(self.config_dir)]

    def add_login(self) -> None:
        """Create the login with Home Assistant's own auth script (before the start).

        The script reads ``-c`` only after ``--script auth``; before it, it would use the
        default configuration directory of the user running the tests.
        """
        command = [sys.executable, "-m", "homeassistant", "--script", "auth"]
        done = subprocess.run(
            [*command, "-c", str(self.config_dir), "add", USERNAME, self.password],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=_environment(),
        )
        stored = self.config_dir / ".storage" / "auth_provider.homeassistant"
        if done.returncode != 0 or not stored.exists():
            raise HarnessError(f"hass --script auth failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        out = (self.config_dir / "hass.out").open("wb")
        self.process = subprocess.Popen(  # fixed argv, no shell
            [*self._hass_command(), "--log-file", str(self.log_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.config_dir,
            env=_environment(self.env),
        )
        out.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"Home Assistant exited early:\n{self.log_tail()}")
            try:
                self.request("GET", "/api/", auth=False, ok=(200, 401))
                return
            except (OSError, urllib.error.URLError, HarnessError):
                time.sleep(0.5)
        raise HarnessError(
            f"Home Assistant did not answer in {START_TIMEOUT} s:\n{self.log_tail()}"
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final writes (a power cut, an OOM kill)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)

    def log_tail(self, lines: int = 60) -> str:
        path = self.log_path if self.log_path.exists() else self.config_dir / "hass.out"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    # --- REST ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        auth: bool = True,
        form: bool = False,
        ok: tuple[int, ...] = (200, 201),
    ) -> Any:
        if auth and self._token_expiring():
            self.refresh_token()
        try:
            return self._request(method, path, payload, auth=auth, form=form, ok=ok)
        except TokenExpiredError:
            # Expired between the check and the call (or the clock jumped): refresh once.
            self.refresh_token()
            return self._request(method, path, payload, auth=auth, form=form, ok=ok)

    def _token_expiring(self) -> bool:
        """The access token expires within a minute (Home Assistant's last 30 min)."""
        expires = self.tokens.get("expires")
        refresh = self.tokens.get("refresh_token")
        return bool(refresh) and expires is not None and time.time() * 1000 > expires - 60_000

    def refresh_token(self) -> None:
        """A new access token from the refresh token, as the frontend gets one."""
        refresh = self.tokens.get("refresh_token")
        if not refresh:
            raise HarnessError("no refresh token: log in first")
        tokens = self._request(
            "POST",
            "/auth/token",
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": self.tokens["clientId"],
            },
            auth=False,
            form=True,
            ok=(200,),
        )
        self.token = tokens["access_token"]
        expires = int(time.time() * 1000) + tokens["expires_in"] * 1000
        self.tokens = {**self.tokens, "access_token": self.token, "expires": expires}

    def _request(
        self,
        method: str,
        path: str,
        payload: Any,
        *,
        auth: bool,
        form: bool,
        ok: tuple[int, ...],
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        data = None
        if payload is not None:
            if form:
                data = urllib.parse.urlencode(payload).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(payload).encode()
                headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # loopback only
                status, body = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        if status == 401 and 401 not in ok and auth and self.tokens.get("refresh_token"):
            raise TokenExpiredError(f"{method} {path}: HTTP 401")
        if status not in ok:
            raise HarnessError(f"{method} {path}: HTTP {status} {body[:500]!r}")
        try:
            return json.loads(body) if body else None
        except ValueError:
            return body.decode(errors="replace")

    def login(self) -> None:
        """The login flow the frontend uses; the first login creates an admin user."""
        client_id = f"{self.url}/"
        flow = self.request(
            "POST",
            "/auth/login_flow",
            {"client_id": client_id, "handler": ["homeassistant", None], "redirect_uri": client_id},
            auth=False,
        )
        result = self.request(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": client_id, "username": USERNAME, "password": self.password},
            auth=False,
        )
        if result.get("type") != "create_entry":
            raise HarnessError(f"login failed: {result}")
        tokens = self.request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": result["result"], "client_id": client_id},
            auth=False,
            form=True,
        )
        self.token = tokens["access_token"]
        expires = int(time.time() * 1000) + tokens["expires_in"] * 1000
        self.tokens = {**tokens, "hassUrl": self.url, "clientId": client_id, "expires": expires}

    def flow(self, path: str, start: dict[str, Any], *steps: dict[str, Any]) -> dict[str, Any]:
        """Start a flow and answer its steps in turn; return the last result."""
        result: dict[str, Any] = self.request("POST", path, start)
        for step in steps:
            if result.get("type") not in ("form", "menu"):
                raise HarnessError(f"{path}: flow ended early: {result}")
            result = self.request("POST", f"{path}/{result['flow_id']}", step)
            if result.get("errors"):
                raise HarnessError(f"{path}: {result['errors']}")
        return result

    def call(self, domain: str, service: str, data: dict[str, Any] | None = None) -> Any:
        """Call an action and return its response (``?return_response``)."""
        path = f"/api/services/{domain}/{service}?return_response"
        return self.request("POST", path, data or {})["service_response"]

    def reload_entry(self) -> None:
        """Reload the Peer Energy entry, as the UI's "Reload" does."""
        self.request("POST", f"/api/config/config_entries/entry/{self.entry_id}/reload", {})

    def join_peer_energy(self, invitation: str, *, assets: bool = True) -> None:
        """The home, joining a community with ``invitation``, then its assets."""
        home = {
            "home_name": self.name or "Birch Row 3",
            "currency": "EUR",
            "import_price": 0.30,
            "export_price": 0.08,
        }
        path = "/api/config/config_entries/flow"
        result = self.flow(
            path,
            {"handler": DOMAIN, "show_advanced_options": False},
            home,
            {"next_step_id": "join_community"},
            {"invitation": invitation, "address": self.url},
        )
        if result.get("type") != "create_entry":
            raise HarnessError(f"config flow: {result}")
        self.entry_id = str(result["result"]["entry_id"])
        self.wait_loaded()
        if assets:
            self.add_assets()

    def add_assets(self) -> None:
        """One asset of each kind, through the subentry flow."""
        sub = "/api/config/config_entries/subentries/flow"
        for kind, answers in self.assets or ASSETS:
            result = self.flow(
                sub,
                {"handler": [self.entry_id, "asset"], "show_advanced_options": False},
                {"next_step_id": kind},
                answers,
            )
            if result.get("type") != "create_entry":
                raise HarnessError(f"add asset {kind}: {result}")
            self.wait_loaded()

    def set_up_peer_energy(
        self, *, assets: bool = True, community_extra: dict[str, Any] | None = None
    ) -> None:
        """The home, its own community with 1-minute slots, and one asset of each kind
        (``community_extra``: more answers for the community form, e.g. an MQTT broker)."""
        home = {
            "home_name": "Maple Street 7",
            "currency": "EUR",
            "import_price": 0.30,
            "export_price": 0.08,
        }
        community = {
            "community_name": "Test street",
            "slot_minutes": "1",
            "gate_closure_lead_s": 20,
            "fee": 0.01,
            "credit_limit": 20,
            "fair_share_pct": 100,
            "max_members": 10,
            "address": self.url,
            **(community_extra or {}),
        }
        path = "/api/config/config_entries/flow"
        result = self.flow(
            path,
            {"handler": DOMAIN, "show_advanced_options": False},
            home,
            {"next_step_id": "create_community"},
            community,
        )
        if result.get("type") != "create_entry":
            raise HarnessError(f"config flow: {result}")
        self.entry_id = str(result["result"]["entry_id"])
        if assets:
            self.add_assets()
        else:
            self.wait_loaded()

    def wait_loaded(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entries = self.request("GET", "/api/config/config_entries/entry")
            states = {e["entry_id"]: e["state"] for e in entries if e["domain"] == DOMAIN}
            if states.get(self.entry_id) == "loaded":
                return
            time.sleep(0.3)
        raise HarnessError(f"the entry did not load:\n{self.log_tail()}")


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without pytest-cov's: the real Home Assistant is tested from
    the outside, and coverage started in it (from its own directory, without the project's
    settings) would write data that cannot be combined with the run's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COV_CORE_")}
    return {**env, **(extra or {})}


def _store(path: Path, key: str, data: dict[str, Any], version: int = 1) -> None:
    path.write_text(
        json.dumps({"version": version, "minor_version": 1, "key": key, "data": data}),
        encoding="utf-8",
    )


def artifacts_dir() -> Path:
    """Where screenshots go (git-ignored ``build/browser`` unless set otherwise)."""
    return Path(os.environ.get("PEER_ENERGY_BROWSER_ARTIFACTS", ROOT / "build" / "browser"))
