"""The HTTP views refuse what they must, with the documented status and code."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.setup import async_setup_component
import pytest

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.core.federation.protocol import Rejected
from custom_components.peer_energy.core.trust.envelope import seal
from custom_components.peer_energy.core.trust.identity import Identity
from custom_components.peer_energy.forecasts import forecaster_for
from custom_components.peer_energy.http import (
    ADDRESS_HEADER,
    INFO_PATH,
    MAX_BODY_BYTES,
    MESSAGE_PATH,
    STRANGER_BURST,
    RateLimiter,
    async_register_views,
    status_of,
)
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry

from .conftest import Clock, Home, HomeFactory, join


@pytest.fixture
async def member_b(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home], make_home: HomeFactory
) -> Home:
    """B, a member of A's community."""
    _, a = home_a
    b = await make_home("B")
    await join(hass, a, b, [])
    return b


def _fetch(home: Home, clock: Clock) -> bytes:
    assert home.link.peer is not None
    return home.link.peer._seal("fetch", {"slot": 1_800_000_060, "book": ""}, clock.now)


async def test_views_refuse_bad_messages(
    hass: HomeAssistant,
    hass_client_no_auth: Any,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    member_b: Home,
) -> None:
    """Signature, membership, replay, size, format: each has its status and code."""
    _, a = home_a
    client = await hass_client_no_auth()

    async def post(body: bytes) -> tuple[int, dict[str, Any]]:
        resp = await client.post(MESSAGE_PATH, data=body, headers={ADDRESS_HEADER: "test"})
        return resp.status, await resp.json()

    good = _fetch(member_b, clock)
    assert await post(good) == (202, {"ok": True})
    status, body = await post(good)
    assert (status, body["error"]) == (409, "replay")

    forged = bytearray(_fetch(member_b, clock))
    at = forged.index(b'"sig":"') + 10
    forged[at] = ord("0") if forged[at] != ord("0") else ord("1")
    status, body = await post(bytes(forged))
    assert (status, body["error"]) == (403, "bad_signature")

    outsider = Identity.generate()
    stranger = seal(
        outsider,
        community=a.link.community_id or "",
        seq=clock.now,
        ts_ms=clock.now,
        type="fetch",
        payload={"slot": 1_800_000_060, "book": ""},
    ).to_wire()
    status, body = await post(stranger)
    assert (status, body["error"]) == (403, "unknown_sender")

    status, body = await post(b"not json at all")
    assert (status, body["error"]) == (400, "malformed")

    status, body = await post(b"x" * (MAX_BODY_BYTES + 1))
    assert (status, body["error"]) == (413, "body_too_large")

    resp = await client.get(INFO_PATH)
    assert resp.status == 200
    info = await resp.json()
    assert info["community"] == a.link.community_id
    assert info["member"] == a.link.member_key
    assert info["members"] == 2


async def test_rate_limit_per_peer(
    hass: HomeAssistant,
    hass_client_no_auth: Any,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    member_b: Home,
    make_home: HomeFactory,
) -> None:
    """A flooding sender gets 429 with Retry-After; another sender still gets through."""
    limiter = home_a[0].runtime_data.limiter
    limiter.burst = 3
    limiter.rate = 0.01
    limiter._buckets.clear()
    client = await hass_client_no_auth()
    statuses = []
    for _ in range(5):
        resp = await client.post(MESSAGE_PATH, data=_fetch(member_b, clock))
        statuses.append(resp.status)
        if resp.status == 429:
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"] == "rate_limited"
    assert statuses == [202, 202, 202, 429, 429]
    other = Identity.generate()
    resp = await client.post(
        MESSAGE_PATH,
        data=seal(
            other, community="0" * 32, seq=1, ts_ms=clock.now, type="digest", payload={}
        ).to_wire(),
    )
    assert resp.status != 429


async def test_views_without_community(hass: HomeAssistant, hass_client_no_auth: Any) -> None:
    """Before any entry is set up both endpoints answer 503."""
    assert await async_setup_component(hass, "http", {})
    async_register_views(hass)
    async_register_views(hass)  # idempotent
    client = await hass_client_no_auth()
    resp = await client.post(MESSAGE_PATH, data=b"{}")
    assert resp.status == 503
    assert (await resp.json())["error"] == "no_community"
    resp = await client.get(INFO_PATH)
    assert resp.status == 503


def test_rate_limiter_refills() -> None:
    """Tokens come back at the configured rate, up to the burst."""
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=2, clock=lambda: now[0])
    key = ("1.2.3.4", "k")
    assert limiter.take(key) == 0
    assert limiter.take(key) == 0
    assert limiter.take(key) == pytest.approx(0.5)
    now[0] = 0.5
    assert limiter.take(key) == 0
    now[0] = 100
    assert limiter.take(key) == 0
    assert limiter.take(key) == 0
    assert limiter.take(key) > 0


def test_status_mapping() -> None:
    """Protocol rejections map to the documented statuses; unknown codes to 400."""
    assert status_of([]) == (202, "accepted", "")
    assert status_of([Rejected("late_bid", "x", "")])[0] == 422
    assert status_of([Rejected("bad_invitation", "x", "")])[0] == 403
    assert status_of([Rejected("something_new", "x", "")])[0] == 400
    two = [Rejected("bad_bid", "x", ""), Rejected("bad_bid", "y", "")]
    assert status_of(two)[0] == 202


async def test_transport_retries_and_limits(hass: HomeAssistant, socket_enabled: None) -> None:
    """429 with Retry-After and 5xx are retried, 4xx are not; chunked bodies are bounded;
    info of a home that answers 503 is None."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from custom_components.peer_energy.http import HttpTransport, _read_body

    calls: list[int] = []
    answers = [429, 500, 202, 400, 400]

    async def message(request: web.Request) -> web.Response:
        calls.append(1)
        status = answers[len(calls) - 1]
        headers = {"Retry-After": "0"} if status == 429 else None
        return web.json_response({}, status=status, headers=headers)

    async def bounded(request: web.Request) -> web.Response:
        body = await _read_body(request, 1000)
        return web.json_response({"size": None if body is None else len(body)})

    async def info(request: web.Request) -> web.Response:
        return web.json_response({}, status=503)

    app = web.Application()
    app.router.add_post(MESSAGE_PATH, message)
    app.router.add_post("/bounded", bounded)
    app.router.add_get(INFO_PATH, info)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        address = str(server.make_url("")).rstrip("/")
        transport = HttpTransport(hass, lambda: "http://me", backoff_s=0.01)
        assert await transport.async_send(address, b"{}") == 202
        assert len(calls) == 3
        assert await transport.async_send(address, b"{}") == 400
        assert len(calls) == 4  # a 4xx is final
        assert transport.sent == 1
        assert transport.failed == 1
        assert await transport.async_info(address) is None
        assert await transport.async_info("http://127.0.0.1:9") is None
        assert await transport.async_send("http://127.0.0.1:9", b"{}") == 0

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(3):
                yield b"x" * 600

        session = async_get_clientsession(hass)
        async with session.post(f"{address}/bounded", data=chunks()) as resp:
            assert (await resp.json())["size"] is None
        async with session.post(f"{address}/bounded", data=b"y" * 10) as resp:
            assert (await resp.json())["size"] == 10
    finally:
        await server.close()


def test_rate_limiter_bounds_its_memory() -> None:
    """A flood of distinct keys cannot grow the bucket table without bound."""
    from unittest.mock import patch

    limiter = RateLimiter()
    with patch("custom_components.peer_energy.http.MAX_BUCKETS", 5):
        for i in range(12):
            assert limiter.take((str(i), "")) == 0
        assert len(limiter._buckets) <= 5


async def test_strangers_share_one_bucket_per_address(
    hass: HomeAssistant,
    hass_client_no_auth: Any,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    member_b: Home,
) -> None:
    """Inventing a new key per message buys no extra signature checks; members keep theirs.

    The limiter's clock stands still: on a slow machine the loop may take longer than the
    half second in which a stranger's bucket earns a token back."""
    limiter = home_a[0].runtime_data.limiter
    limiter._buckets.clear()
    limiter.clock = lambda: 1000.0
    client = await hass_client_no_auth()
    statuses = []
    for k in range(int(STRANGER_BURST) + 3):
        stranger = Identity.generate()
        wire = seal(
            stranger, community="0" * 32, seq=k + 1, ts_ms=clock.now, type="digest", payload={}
        ).to_wire()
        resp = await client.post(MESSAGE_PATH, data=wire)
        statuses.append(resp.status)
    assert 429 not in statuses[: int(STRANGER_BURST)]
    assert statuses[int(STRANGER_BURST) :] == [429, 429, 429]
    # a member from the same address is not held back by the strangers
    resp = await client.post(MESSAGE_PATH, data=_fetch(member_b, clock))
    assert resp.status == 202


def test_stranger_bucket_ignores_the_claimed_key() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=100, burst=100, clock=lambda: now[0])
    for k in range(20):
        assert limiter.take(("1.2.3.4", f"k{k}"), stranger=True) == 0
    assert limiter.take(("1.2.3.4", "another"), stranger=True) == pytest.approx(0.5)
    assert limiter.take(("5.6.7.8", "k0"), stranger=True) == 0  # per address
    assert limiter.take(("1.2.3.4", "k0")) == 0  # a member's own bucket


async def test_views_serve_the_link_while_the_entry_sets_up(
    hass: HomeAssistant, hass_client_no_auth: Any, clock: Clock, http_address: str
) -> None:
    """The link lives in the entry's runtime data, and the views find it there already
    while the set-up still runs (a joining home's welcome arrives then), not only once
    the entry counts as loaded."""
    from homeassistant.config_entries import ConfigEntries, ConfigEntryState

    from .conftest import community_entry

    entry = community_entry(http_address)
    entry.add_to_hass(hass)
    release = asyncio.Event()
    platforms = ConfigEntries.async_forward_entry_setups

    async def held(self: ConfigEntries, *args: Any) -> None:
        await release.wait()
        await platforms(self, *args)

    client = await hass_client_no_auth()
    with patch.object(ConfigEntries, "async_forward_entry_setups", held):
        setup = hass.async_create_task(hass.config_entries.async_setup(entry.entry_id))
        for _ in range(200):
            if hasattr(entry, "runtime_data"):
                break
            await asyncio.sleep(0.01)
        assert entry.state is ConfigEntryState.SETUP_IN_PROGRESS
        resp = await client.get(INFO_PATH)
        assert resp.status == 200
        assert (await resp.json())["member"] == entry.runtime_data.link.member_key
        release.set()
        assert await setup
    assert entry.state is ConfigEntryState.LOADED
    # Nothing of the entry is kept in hass.data, its forecaster neither.
    assert forecaster_for(hass, entry) is entry.runtime_data.forecaster
    assert [key for key in hass.data if str(key).startswith(DOMAIN)] == []


async def test_views_ignore_the_link_of_a_failed_set_up(
    hass: HomeAssistant, hass_client_no_auth: Any, clock: Clock, http_address: str
) -> None:
    """A set-up that fails after its runtime data was built leaves that data on the entry,
    with its link stopped: the views answer 503 instead of handing messages to it, also
    while the retry sets up and has not built its own yet."""
    from homeassistant.config_entries import ConfigEntryState
    from homeassistant.exceptions import ConfigEntryNotReady

    import custom_components.peer_energy as init_module

    from .conftest import community_entry

    entry = community_entry(http_address)
    entry.add_to_hass(hass)
    client = await hass_client_no_auth()
    with patch(
        "custom_components.peer_energy.async_register_panel",
        side_effect=ConfigEntryNotReady("later"),
    ):
        assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.runtime_data.link.stopped
    resp = await client.get(INFO_PATH)
    assert resp.status == 503
    resp = await client.post(MESSAGE_PATH, data=b"{}")
    assert (resp.status, (await resp.json())["error"]) == (503, "no_community")

    # The retry sets up again: until it has built new runtime data, the old (stopped) link
    # is still on the entry, which counts as setting up.
    release = asyncio.Event()
    federation = init_module.async_setup_federation

    async def held(*args: Any) -> Any:
        await release.wait()
        return await federation(*args)

    with patch.object(init_module, "async_setup_federation", held):
        reload = hass.async_create_task(hass.config_entries.async_reload(entry.entry_id))
        for _ in range(200):
            if entry.state is ConfigEntryState.SETUP_IN_PROGRESS:
                break
            await asyncio.sleep(0.01)
        assert entry.state is ConfigEntryState.SETUP_IN_PROGRESS
        assert entry.runtime_data.link.stopped
        assert (await client.get(INFO_PATH)).status == 503
        release.set()
        assert await reload
    assert (await client.get(INFO_PATH)).status == 200
