"""A join that failed leaves no ghost, with real Home Assistant processes on 127.0.0.1.

The founder A and member B trade in 10-second slots. C joins twice and fails: first with an
address nobody answers at (A refuses the join at once; C's repair says so), then, through the
repair's fix flow, with an address where only A's welcome is lost (a proxy answers the
address check with C's own info and drops every message). Meanwhile A and B count two
members and raise no "unreachable" repair. A last fix with C's real address gets C in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import threading
import time
from typing import Any
import urllib.request

import aiohttp
import pytest
import pytest_socket

from tests.realhome import DOMAIN, RealHome, free_port

SLOT_S = 10


def _info(home: RealHome) -> dict[str, Any]:
    info: dict[str, Any] = home.request("GET", "/api/peer_energy/v1/info", auth=False)
    return info


def _issues(home: RealHome) -> list[dict[str, Any]]:
    """Home Assistant's repair issues of Peer Energy (the websocket the repairs page uses)."""

    async def fetch() -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{home.url}/api/websocket") as ws,
        ):
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": home.token})
            await ws.receive_json()  # auth_ok
            await ws.send_json({"id": 1, "type": "repairs/list_issues"})
            answer = await ws.receive_json()
            return [i for i in answer["result"]["issues"] if i["domain"] == DOMAIN]

    return asyncio.run(fetch())


def _until(what: str, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting until {what}")


def _fix_join(home: RealHome, address: str) -> None:
    """The repair's fix flow over REST, as the repairs dialog drives it."""
    flow = home.request(
        "POST", "/api/repairs/issues/fix", {"handler": DOMAIN, "issue_id": "join_failed"}
    )
    assert flow["type"] == "form", flow
    done = home.request("POST", f"/api/repairs/issues/fix/{flow['flow_id']}", {"address": address})
    assert done["type"] == "create_entry", done


class _LosingProxy:
    """An address where the address check reaches C but every message is lost."""

    def __init__(self, target: RealHome) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the inviter's check of the address: C answers
                with urllib.request.urlopen(target.url + self.path, timeout=5) as answer:
                    body = answer.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # the welcome: lost
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Generator[list[RealHome]]:
    pytest_socket.enable_socket()
    base = Path(tmp_path_factory.mktemp("join"))
    env = {"PEER_ENERGY_TEST_SLOT_SECONDS": str(SLOT_S)}
    started = [RealHome(base / n, name=n.title(), env=env) for n in ("a", "b", "c")]
    try:
        for home in started:
            home.write_config()
            home.add_login()
            home.start()
            home.login()
        a, b, _ = started
        a.set_up_peer_energy(assets=False)
        b.join_peer_energy(a.call(DOMAIN, "create_invitation")["invitation"], assets=False)
        _until("B is a member", lambda: _info(a)["members"] == 2, 60)
        yield started
    finally:
        for home in started:
            home.stop()


def _no_ghost(a: RealHome, b: RealHome, seconds: float) -> None:
    """For ``seconds``: two members at A and B, no unreachable repair at either."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for home in (a, b):
            assert _info(home)["members"] == 2, home.name
            unreachable = [i for i in _issues(home) if i["issue_id"].startswith("peer_unreach")]
            assert unreachable == [], (home.name, unreachable)
        time.sleep(2)


def test_failed_joins_leave_no_ghost_and_the_fix_flow_gets_in(homes: list[RealHome]) -> None:
    a, b, c = homes
    # 1. An address nobody answers at: refused at once, C's repair says why.
    closed = f"http://127.0.0.1:{free_port()}"
    result = c.flow(
        "/api/config/config_entries/flow",
        {"handler": DOMAIN, "show_advanced_options": False},
        {"home_name": "C", "currency": "EUR", "import_price": 0.3, "export_price": 0.08},
        {"next_step_id": "join_community"},
        {"invitation": a.call(DOMAIN, "create_invitation")["invitation"], "address": closed},
    )
    assert result["type"] == "create_entry", result
    c.entry_id = str(result["result"]["entry_id"])

    def failed(key: str) -> bool:
        return any(
            i["issue_id"] == "join_failed" and i["translation_key"] == key for i in _issues(c)
        )

    _until("C's join is refused", lambda: failed("join_failed_address"), 60)
    issue = next(i for i in _issues(c) if i["issue_id"] == "join_failed")
    assert issue["is_fixable"]
    assert issue["translation_placeholders"]["address"] == closed
    _no_ghost(a, b, 3 * SLOT_S)

    # 2. Fixed to an address where A's welcome is lost: C stays pending at A only.
    proxy = _LosingProxy(c)
    try:
        _fix_join(c, proxy.url)
        _no_ghost(a, b, 4 * SLOT_S)
        assert not _info(c)["joined"]
        _until("C's join timed out", lambda: failed("join_failed_timeout"), 90)
        _no_ghost(a, b, SLOT_S)
    finally:
        proxy.close()

    # 3. Fixed to C's real address: C gets in (the pending join starts over).
    _fix_join(c, c.url)
    _until("C is a member", lambda: all(_info(h)["members"] == 3 for h in homes), 60)
    assert [i for i in _issues(c) if i["issue_id"] == "join_failed"] == []
    for home in (a, b):
        assert not [i for i in _issues(home) if i["issue_id"].startswith("peer_unreach")]
