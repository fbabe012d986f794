"""One demo run: starting and stopping Home Assistant, onboarding, the Peer Energy entry."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
import contextlib
from dataclasses import dataclass, field
import os
from pathlib import Path
import secrets
import signal
import subprocess
import time

import aiohttp

from .answers import ASSETS, HOME_ANSWERS
from .client import Api, drive_flow
from .settings import DOMAIN, HASS_BIN, ONBOARDING_DOMAINS, SUBENTRY_TYPE
from .util import DemoError, StopRequestedError, say

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


# Signals that stop the demo: Ctrl-C, SIGTERM (kill, a service manager, a timeout) and
# SIGHUP (the terminal closed). Home Assistant runs in its own session, so none of them
# reaches it: the demo must stop it itself, whenever the signal comes.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_TIMEOUT = 90.0  # how long Home Assistant may take to stop cleanly before it is killed


class Stopper:
    """The demo's stop signals, for its whole life (set-up, running and clean-up).

    A signal never kills the demo outright, which would leave its Home Assistant processes
    running: it sets the stop events of the runs attached (set-up and the run loop end
    with ``StopRequestedError``), and a further one while the Home Assistants are being
    stopped kills them at once instead of waiting for their clean shutdown.
    """

    def __init__(self) -> None:
        self.count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: list[asyncio.Event] = []

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def attach(self, loop: asyncio.AbstractEventLoop, events: list[asyncio.Event]) -> None:
        """Set ``events`` (in ``loop``) on a stop signal, at once if one came already."""
        self._loop, self._events = loop, events
        if self.count:
            self._set_events()

    def detach(self) -> None:
        self._loop, self._events = None, []

    def _set_events(self) -> None:
        for event in self._events:
            event.set()

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._set_events)


STOPPER = Stopper()


def stop_hass(run: Run) -> None:
    """Stop one run's Home Assistant (see ``stop_all``)."""
    stop_all([run])


def stop_all(runs: list[Run], timeout: float = STOP_TIMEOUT) -> None:
    """Stop every run's Home Assistant: SIGTERM to all at once, then wait for all of them
    (``timeout`` in all); kill what is left then, or at once on a further stop signal."""
    procs = [(run, run.process) for run in runs if run.process is not None]
    live = [(run, proc) for run, proc in procs if proc.poll() is None]
    if not live:
        return
    what = "Home Assistant" if len(live) == 1 else f"{len(live)} Home Assistant processes"
    say(f"stopping {what} (SIGTERM) ...")
    started = time.monotonic()
    signals_before = STOPPER.count
    for _run, proc in live:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    while any(proc.poll() is None for _run, proc in live):
        if STOPPER.count > signals_before:
            say("stop requested again: killing Home Assistant now")
            break
        if time.monotonic() - started > timeout:
            say(f"Home Assistant did not stop within {timeout:.0f} s; killing it")
            break
        time.sleep(0.1)
    for _run, proc in live:
        if proc.poll() is None:
            # Its whole process group: Home Assistant may have started helpers (pip).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
    for run, proc in live:
        say(
            f"Home Assistant {run.url} stopped (exit code {proc.returncode}, "
            f"{time.monotonic() - started:.1f} s)"
        )


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
