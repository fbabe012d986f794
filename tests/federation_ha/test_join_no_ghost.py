"""A join that failed leaves no trace over real HTTP: no ghost member, no unreachable repair.

Home A is the entry under test (its repairs are Home Assistant's), B a member; C tries to
join and fails, once because the address it gives does not answer and once because A's
welcome is lost. Every home then trades on for longer than a pending join lives.
"""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.core.federation.protocol.wire import PENDING_JOIN_MS
from custom_components.peer_energy.diagnostics import async_get_config_entry_diagnostics
from custom_components.peer_energy.federation import ISSUE_PEER_UNREACHABLE
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry

from .conftest import (
    Clock,
    Home,
    HomeFactory,
    closed_address,
    fast_rules,
    invite,
    join,
    settle,
    tick_all,
)


class DropWelcomes:
    """A's transport: every welcome is lost, everything else is delivered."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dropped = 0

    async def async_send(self, address: str, data: bytes) -> int:
        if b'"type":"welcome"' in data:
            self.dropped += 1
            return 0
        return int(await self.inner.async_send(address, data))

    async def async_info(self, address: str) -> dict[str, Any] | None:
        return await self.inner.async_info(address)  # type: ignore[no-any-return]


def _unreachable_issues(hass: HomeAssistant) -> list[str]:
    return [
        issue_id
        for domain, issue_id in ir.async_get(hass).issues
        if domain == DOMAIN and issue_id.startswith(ISSUE_PEER_UNREACHABLE)
    ]


async def _trade_on(hass: HomeAssistant, clock: Clock, homes: list[Home]) -> None:
    """Every member ticks through more slots than a pending join lives."""
    slot_ms = fast_rules().slot_seconds * 1000
    for _ in range(PENDING_JOIN_MS // slot_ms + 3):
        await tick_all(clock, homes, clock.now + slot_ms)
    await hass.async_block_till_done()


def _assert_no_ghost(hass: HomeAssistant, members: list[Home], joiner: Home) -> None:
    for home in members:
        assert home.link.peer is not None
        assert joiner.link.member_key not in home.link.peer.roster()
        assert home.link.members == len(members)
        assert home.link.peer.pending_joins() == ()
    assert _unreachable_issues(hass) == []


async def test_unreachable_joiner_address_leaves_no_ghost(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """C gives an address nobody answers at: A checks it before welcoming C and refuses
    the join at once (C's user is told), and nobody misses C afterwards."""
    _, a = home_a
    b = await make_home("B")
    await join(hass, a, b, [])
    c = await make_home("C")
    status = await c.link.async_join(await invite(hass), closed_address())
    assert status == 422  # address_unreachable
    await settle(a, b, c)
    assert await c.link.async_wait_joined(0.5) == "http_422"
    assert not c.link.joined
    assert a.link.peer is not None
    assert a.link.peer.pending_joins() == ()  # refused before anything changed
    await _trade_on(hass, clock, [a, b])
    _assert_no_ghost(hass, [a, b], c)


async def test_lost_welcome_leaves_no_ghost_and_a_new_try_gets_in(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """A's welcomes to C are lost: C stays pending at A only, then is forgotten; once the
    welcome gets through, C acknowledges it and every member counts it."""
    entry, a = home_a
    b = await make_home("B")
    await join(hass, a, b, [])
    c = await make_home("C")
    lossy = DropWelcomes(a.link.transport)
    a.link.transport = lossy
    assert await c.link.async_join(await invite(hass), c.address) == 202
    await settle(a, b, c)
    assert lossy.dropped == 1
    assert a.link.peer is not None
    assert a.link.peer.pending_joins() == (c.link.member_key,)  # A shows it as pending
    assert a.link.members == 2
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["federation"]["pending_joins"] == 1
    assert diagnostics["federation"]["members"] == 2
    await _trade_on(hass, clock, [a, b])
    _assert_no_ghost(hass, [a, b], c)

    a.link.transport = lossy.inner
    await join(hass, a, c, [b])
    await settle(a, b, c)
    for home in (a, b, c):
        assert home.link.members == 3
