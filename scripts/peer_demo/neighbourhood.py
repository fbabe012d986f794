"""The neighbourhood: several homes (and, with ``--transport mqtt``, their broker) joined
into one community; the command line."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
import getpass
from pathlib import Path
import shutil
import subprocess
import tempfile
import time
from typing import Any
import zoneinfo

import aiohttp

from .answers import ASSETS, HOME_ANSWERS
from .client import Api, drive_flow, fill_form
from .hassconfig import sim_hour, write_config
from .normal_ha import demo, prepare_home, print_summary
from .process import (
    STOPPER,
    Run,
    onboard,
    remove_onboarding_entries,
    start_hass,
    stop_all,
    stop_hass,
)
from .report import measure
from .settings import DEMO_ROOT, DOMAIN, FLOW_TIMEOUT, START_TIMEOUT, SUBENTRY_TYPE, UNAVAILABLE
from .simhome import DEFAULT_BATTERY_SOC, SIM_ENTITIES
from .util import DemoError, StopRequestedError, free_port, port_is_free, say

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


async def start_home(run: Run, api: Api, label: str, profile: HomeProfile) -> None:
    """Start, onboard and wait for the simulated home of one instance."""
    write_config(
        run.config_dir,
        run.port,
        fast=run.args.fast,
        sim_hour=sim_hour(run.args),
        battery_soc_pct=profile.battery_soc_pct,
    )
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
    # The battery's state of charge at start (%).
    battery_soc_pct: float = DEFAULT_BATTERY_SOC


# Home 1 has a large sunny roof, home 2 a small shaded one and a car at home that must leave
# soon, home 3 sits in between; more homes repeat the pattern. The batteries of homes 1 and
# 3 start full: a battery in its own self-consumption mode stores the home's surplus until
# it is full, and Peer Energy (advise mode) offers only what the home will export, so with
# batteries still filling the sunny homes would have almost nothing to sell for the first
# hour (home 1's 5 kW battery would take all but about 0.4 kW of its PV).
HOME_PROFILES: tuple[HomeProfile, ...] = (
    HomeProfile("large sunny roof, battery full", pv_peak_w=7000, cloud_pct=0, battery_soc_pct=100),
    HomeProfile(
        "small shaded roof, car at home leaving in 2 h",
        pv_peak_w=1500,
        cloud_pct=60,
        ev_home_daytime=True,
        ev_leaves_soon=True,
    ),
    HomeProfile(
        "medium roof, some cloud, battery full", pv_peak_w=4500, cloud_pct=30, battery_soc_pct=100
    ),
)


def profile_of(index: int) -> HomeProfile:
    """The profile of home ``index`` (0-based): the pattern repeats."""
    return HOME_PROFILES[index % len(HOME_PROFILES)]


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

    STOPPER.attach(loop, [run.stop for run in runs])
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as session:
        apis = [Api(session, run.url) for run in runs]
        try:
            labels = [f"home {i + 1}" for i in range(len(runs))]
            await asyncio.gather(
                *(
                    start_home(r, a, lbl, profile_of(i))
                    for i, (r, a, lbl) in enumerate(zip(runs, apis, labels, strict=True))
                )
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
                await set_profile(api, labels[i], profile_of(i))
            await asyncio.gather(
                *(add_assets(a, lbl, e) for a, lbl, e in zip(apis, labels, entries, strict=True))
            )
            await lead.until(f"all {n} homes back after the reloads", formed, limit=120)
            for i, api in enumerate(apis):
                if profile_of(i).ev_leaves_soon:
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
            if lead.args.minutes:
                report = await measure(apis, entries, labels, lead.args.minutes, lead.pause)
                print()
                print(f"Peer Energy demo: {lead.args.minutes} minutes of trading")
                for line in report:
                    print(f"  {line}")
                print(flush=True)
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
            STOPPER.detach()
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
        stop_all(runs)
        for run in runs:
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
        "--sim-hour",
        type=float,
        default=None,
        help=(
            "the simulated hour of the day at start, 0 to 24 (default: the clock's; with "
            "--check 11, so that the homes have surplus and needs to trade at any time)"
        ),
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
        "--minutes",
        type=int,
        default=0,
        help=(
            "trade for N minutes (one-minute slots from the next one on), wait for their "
            "deliveries to be settled, print delivered / sold and each home's payments for its "
            "own shortfalls from the homes' ledgers, and stop (two or more homes)"
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
    args = parser.parse_args(argv)
    if args.minutes < 0 or (args.minutes and (args.homes < 2 or args.check)):
        parser.error("--minutes N needs N >= 1, two or more homes and no --check")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    STOPPER.install()
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
