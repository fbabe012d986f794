"""Home Assistant-side federation fixtures: homes on real loopback HTTP, one shared fake clock.

Home "A" is the integration under test: a config entry whose federation link is served by
Home Assistant's own HTTP server (``hass_client_no_auth`` runs it on a loopback port). Homes
"B", "C", ... are ``FederationLink`` objects with their own key, store and a small aiohttp
server that mounts the same handlers as the views. Every link reads one fake clock, so
tests step through gate closure, sync and attestation without waiting; the real timers
are scheduled at fake (far future) times and never fire during a test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass, field
import socket
from typing import Any
from unittest.mock import patch

from aiohttp import web
from aiohttp.test_utils import TestServer
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.peer_energy.const import (
    CONF_ADDRESS,
    CONF_COMMUNITY_ACTION,
    CONF_COMMUNITY_NAME,
    CONF_RULES,
    DOMAIN,
    SUBENTRY_COMMUNITY,
)
from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.market.orders import MarketRules
from custom_components.peer_energy.core.trust.identity import Identity
from custom_components.peer_energy.federation import (
    FederationLink,
    SlotOutcome,
    federation_store,
)
from custom_components.peer_energy.federation_setup import (
    community_ledger_path,
    community_subentry,
)
from custom_components.peer_energy.http import (
    INFO_PATH,
    MESSAGE_PATH,
    HttpTransport,
    RateLimiter,
    async_handle_message,
    async_register_views,
    handle_info,
)
from custom_components.peer_energy.ledger import PeerLedger, identity_store
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry
from tests.conftest import make_entry


def closed_address() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def until(hass: HomeAssistant, done: Callable[[], bool], what: str) -> None:
    """Let Home Assistant run until ``done()`` holds (about 6 s at most)."""
    for _ in range(300):
        await hass.async_block_till_done()
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting until {what}")


def is_member(entry: PeerEnergyConfigEntry) -> bool:
    """The entry's link has joined and its community subentry records membership."""
    link = entry.runtime_data.federation
    subentry = community_subentry(entry)
    return (
        link is not None
        and link.joined
        and subentry is not None
        and subentry.data[CONF_COMMUNITY_ACTION] == "member"
    )


START_MS = 1_800_000_000_000  # 2027, aligned to the minute
SLOT_S = 60
COMMUNITY_SUBENTRY_ID = "01JPEERENERGYCOMMUNITY00000"


def fast_rules() -> CommunityRules:
    """60 s slots, gate closure 20 s before, 2 s windows."""
    return CommunityRules(
        market=MarketRules(slot_seconds=SLOT_S, distributor_fee=1),
        gate_closure_lead_s=20,
        sync_window_ms=2_000,
        attest_window_ms=2_000,
    )


@dataclass
class Clock:
    """The fake wall clock every link reads (Unix ms)."""

    now: int = START_MS

    def __call__(self) -> int:
        return self.now


@dataclass
class Home:
    """One home of the test federation."""

    name: str
    link: FederationLink
    address: str
    outcomes: list[SlotOutcome] = field(default_factory=list)
    server: TestServer | None = None
    ledger: PeerLedger | None = None


@pytest.fixture
def clock() -> Clock:
    """The shared fake clock; federation.now_ms reads it too (the entry's link)."""
    fake = Clock()
    with patch("custom_components.peer_energy.federation.now_ms", fake):
        yield fake


@pytest.fixture
async def http_address(hass: HomeAssistant, hass_client_no_auth: Any) -> str:
    """Home Assistant's HTTP server on a loopback port; its base URL."""
    assert await async_setup_component(hass, "http", {})
    # The test server freezes the router when it starts (Home Assistant's own server does
    # not), so the views go in first, and so do those of the image component (the entry's
    # "Latest invitation" image) and of repairs (fix flows).
    async_register_views(hass)
    assert await async_setup_component(hass, "image", {})
    assert await async_setup_component(hass, "repairs", {})
    client = await hass_client_no_auth()
    return str(client.make_url("")).rstrip("/")


def community_entry(
    address: str,
    rules: CommunityRules | None = None,
    *,
    community: dict[str, Any] | None = None,
    title: str = "Elm Street",
) -> MockConfigEntry:
    """A Peer Energy entry (no assets) whose community subentry asks to found "Elm Street"
    (or holds ``community`` as its data, e.g. a join)."""
    base = make_entry(assets={})
    if community is None:
        community = {
            CONF_COMMUNITY_ACTION: "create",
            CONF_COMMUNITY_NAME: "Elm Street",
            CONF_ADDRESS: address,
            CONF_RULES: (rules or fast_rules()).to_dict(),
        }
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=base.entry_id,
        title=base.title,
        unique_id=DOMAIN,
        data=dict(base.data),
        options=dict(base.options),
        subentries_data=[
            {
                "data": community,
                "subentry_id": COMMUNITY_SUBENTRY_ID,
                "subentry_type": SUBENTRY_COMMUNITY,
                "title": title,
                "unique_id": "community",
            }
        ],
    )


@pytest.fixture
async def home_a(
    hass: HomeAssistant, clock: Clock, http_address: str
) -> AsyncGenerator[tuple[PeerEnergyConfigEntry, Home]]:
    """The entry under test, founder of "Elm Street", served by Home Assistant's views."""
    entry = community_entry(http_address)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    link = entry.runtime_data.link
    home = Home("A", link, http_address)
    link.async_add_result_listener(home.outcomes.append)
    return entry, home


type HomeFactory = Callable[[str], Coroutine[Any, Any, Home]]


@pytest.fixture
async def make_home(
    hass: HomeAssistant, clock: Clock, socket_enabled: None
) -> AsyncGenerator[HomeFactory]:
    """Start a remote home (link + aiohttp server on loopback), not yet in a community."""
    servers: list[TestServer] = []
    links: list[FederationLink] = []

    async def factory(name: str) -> Home:
        box: dict[str, FederationLink] = {}
        limiter = RateLimiter()

        async def message(request: web.Request) -> web.Response:
            return await async_handle_message(box.get("link"), limiter, request)

        async def info(request: web.Request) -> web.Response:
            return handle_info(box.get("link"))

        app = web.Application()
        app.router.add_post(MESSAGE_PATH, message)
        app.router.add_get(INFO_PATH, info)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        address = str(server.make_url("")).rstrip("/")
        transport = HttpTransport(hass, lambda: address, backoff_s=0.01, timeout_s=2)
        link = FederationLink(
            hass,
            f"remote_{name}",
            Identity.generate(),
            transport,
            store=federation_store(hass, f"remote_{name}"),
            clock=clock,
            schedule=False,
            announce=False,
        )
        box["link"] = link
        links.append(link)
        home = Home(name, link, address, server=server)
        link.async_add_result_listener(home.outcomes.append)
        return home

    yield factory
    for link in links:
        await link.async_stop()
        if link.ledger is not None:
            await link.ledger.async_close()
    for server in servers:
        await server.close()


async def settle(*homes: Home) -> None:
    """Wait until no home has a delivery in flight (deliveries trigger more deliveries)."""
    for _ in range(50):
        busy = [h for h in homes if h.link._tasks]
        if not busy:
            return
        for home in busy:
            tasks = list(home.link._tasks)
            if not tasks:
                continue
            _, pending = await asyncio.wait(tasks, timeout=10)
            if pending:
                raise AssertionError(
                    f"{home.name}: stuck deliveries {[t.get_stack() for t in pending]}"
                )
    raise AssertionError("deliveries did not settle")


async def tick_all(clock: Clock, homes: list[Home], to_ms: int) -> None:
    """Move the clock to ``to_ms`` and let every home act on it."""
    clock.now = to_ms
    for home in homes:
        home.link.async_tick()
    await settle(*homes)


async def run_slot(clock: Clock, homes: list[Home], slot: int, rules: CommunityRules) -> None:
    """Step through gate closure, the digest rounds, attestation and the deadline."""
    g = rules.gate_closure_ms(slot)
    for t in sorted({*homes[0].link.peer._timers(slot), g}):  # type: ignore[union-attr]
        await tick_all(clock, homes, t)
    await tick_all(clock, homes, g + rules.sync_window_ms + rules.attest_window_ms + 100)


def next_slot(clock: Clock, rules: CommunityRules) -> int:
    """The next slot whose gate closure is at least 1 s ahead."""
    s = (clock.now // 1000 // rules.slot_seconds + 1) * rules.slot_seconds
    while rules.gate_closure_ms(s) <= clock.now + 1000:
        s += rules.slot_seconds
    return s


async def invite(hass: HomeAssistant) -> str:
    """An invitation from the entry under test, through the action."""
    response = await hass.services.async_call(
        DOMAIN, "create_invitation", {}, blocking=True, return_response=True
    )
    assert response is not None
    return str(response["invitation"])


async def join(hass: HomeAssistant, a: Home, home: Home, others: list[Home]) -> None:
    """``home`` joins A's community over HTTP with a fresh invitation."""
    text = await invite(hass)
    status = await home.link.async_join(text, home.address)
    assert status == 202
    await settle(a, home, *others)
    assert await home.link.async_wait_joined(1) is None
    assert home.link.joined
    await open_ledger(hass, home)


async def open_ledger(hass: HomeAssistant, home: Home) -> None:
    """Give a remote home its own SQLite ledger for the community (same key as its link)."""
    key = home.link.entry_id
    await identity_store(hass, key).async_save({"seed": home.link.identity.seed_hex()})
    community = home.link.community_id or "local"
    ledger = await PeerLedger.async_open(
        hass, key, community, path=community_ledger_path(hass, key, community)
    )
    assert ledger.member == home.link.member_key
    home.link.ledger = ledger
    home.ledger = ledger
