"""A normal Home Assistant: Energy dashboard, a dashboard with the market, an automation;
the single-home run and its checks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
import contextlib
from dataclasses import dataclass
from pathlib import Path
import time
from typing import Any

import aiohttp

from .answers import ASSETS
from .client import Api
from .hassconfig import sim_hour, write_config
from .process import (
    STOPPER,
    Run,
    configure_peer_energy,
    onboard,
    remove_onboarding_entries,
    start_hass,
)
from .settings import DOMAIN, LIVE_WINDOW, ONBOARDING_DOMAINS, START_TIMEOUT, UNAVAILABLE
from .simhome import SIM_ENTITIES
from .util import DemoError, StopRequestedError, as_number, say

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


async def asset_names(api: Api, entry_id: str) -> dict[str, str]:
    """The assets' names (their subentries' titles) by subentry id."""
    subentries = await api.ws_command(
        {"type": "config_entries/subentries/list", "entry_id": entry_id}
    )
    return {str(s["subentry_id"]): str(s["title"]) for s in subentries}


def dashboard_config(
    ours: Mapping[str, str], names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A Lovelace dashboard: the headline savings, the market, the neighbours, each
    device's reason, the Energy dashboard's flow and a button to the market view.

    ``names``: the assets' names by subentry id; each reason row shows its device's name
    (the entity's own name, "<device> Reason", is cut off in a card)."""

    def some(*rows: tuple[str, str]) -> list[dict[str, str]]:
        """Entity rows with short names (the entities' own names repeat the home's)."""
        return [{"entity": ours[key], "name": name} for key, name in rows if key in ours]

    suffix = "_market_reason"
    reasons = [
        {"entity": eid, "name": name} if (name := (names or {}).get(key[: -len(suffix)])) else eid
        for key, eid in sorted(ours.items(), key=lambda item: item[1])
        if key.endswith(suffix)
    ]
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
                        "title": "Each device's reason",
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
            "config": dashboard_config(ours, await asset_names(api, entry_id)),
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
    STOPPER.attach(asyncio.get_running_loop(), [run.stop])
    t0 = run.started = time.monotonic()
    write_config(run.config_dir, run.port, fast=run.args.fast, sim_hour=sim_hour(run.args))
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
            STOPPER.detach()
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
