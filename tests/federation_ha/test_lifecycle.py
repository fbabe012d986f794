"""Restart, unload, leave, remove, the invitation action and the reachability probe."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import patch

from homeassistant.components import persistent_notification
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import ServiceValidationError, Unauthorized
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockUser

from custom_components.peer_energy.const import (
    CONF_ADDRESS,
    CONF_COMMUNITY_ACTION,
    CONF_INVITATION,
    DOMAIN,
)
from custom_components.peer_energy.federation import (
    ISSUE_JOIN_FAILED,
    ISSUE_SELF_UNREACHABLE,
    FederationError,
    FederationLink,
    federation_store,
    peer_restore,
)
from custom_components.peer_energy.federation_setup import community_subentry
from custom_components.peer_energy.http import INFO_PATH, HttpTransport
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry, async_serving_link

from .conftest import Clock, Home, HomeFactory, fast_rules, invite, is_member, join, settle, until


async def test_restart_keeps_membership_and_invitations(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """After a reload A is the same member of the same community; an invitation made before
    the restart still works once, and B's link restores from its store."""
    entry, a = home_a
    b = await make_home("B")
    await join(hass, a, b, [])
    pending = await invite(hass)
    community = a.link.community_id
    subentry = community_subentry(entry)
    assert subentry is not None
    assert subentry.data[CONF_COMMUNITY_ACTION] == "member"

    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    a2 = Home("A", entry.runtime_data.link, a.address)
    assert a2.link is not a.link
    assert a2.link.community_id == community
    assert a2.link.members == 2
    assert entry.runtime_data.federation is a2.link

    c = await make_home("C")
    assert await c.link.async_join(pending, c.address) == 202
    await settle(a2, b, c)
    assert c.link.joined
    d = await make_home("D")
    assert await d.link.async_join(pending, d.address) == 403  # one use only
    await settle(a2, b, c, d)

    restored = FederationLink(
        hass,
        "remote_B",
        b.link.identity,
        HttpTransport(hass, lambda: b.address),
        store=federation_store(hass, "remote_B"),
        clock=clock,
        schedule=False,
        announce=False,
    )
    await b.link.async_save()
    assert await restored.async_load() == "member"
    assert restored.community_id == community
    assert restored.members == 3


async def test_unload_is_clean(
    hass: HomeAssistant, hass_client_no_auth: Any, home_a: tuple[PeerEnergyConfigEntry, Home]
) -> None:
    """Unloading stops timers, closes the ledger and takes the link off the views."""
    entry, a = home_a
    ledger = entry.runtime_data.ledger
    assert ledger is not None
    assert a.link._unsub_timer is not None
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert async_serving_link(hass) is None
    assert a.link._unsub_timer is None
    assert not a.link._tasks
    client = await hass_client_no_auth()
    assert (await client.get(INFO_PATH)).status == 503
    with pytest.raises(Exception, match="closed"):
        await ledger.async_export("csv")


async def test_invitation_action_rules(
    hass: HomeAssistant,
    hass_admin_user: MockUser,
    hass_read_only_user: MockUser,
    home_a: tuple[PeerEnergyConfigEntry, Home],
) -> None:
    """Admins get the invitation as the response, with its expiry in Home Assistant's
    time zone, and no notification (which every user could read); others are refused."""
    await hass.config.async_set_time_zone("Europe/Berlin")
    response = await hass.services.async_call(
        DOMAIN,
        "create_invitation",
        {"ttl_hours": 2},
        blocking=True,
        return_response=True,
        context=Context(user_id=hass_admin_user.id),
    )
    assert response is not None
    assert str(response["invitation"]).startswith("peerenergy1:")
    assert response["community"] == home_a[1].link.community_id
    assert response["community_name"] == "Elm Street"
    # Two hours after the fake clock's 2027-01-15 08:00 UTC, in Berlin's winter time.
    assert response["expires"] == "2027-01-15T11:00:00+01:00"
    assert response["expires_local"] == "2027-01-15 11:00 CET"
    notes = persistent_notification._async_get_or_create_notifications(hass)
    assert not [n for n in notes.values() if response["invitation"] in n["message"]]
    with pytest.raises(Unauthorized):
        await hass.services.async_call(
            DOMAIN,
            "create_invitation",
            {},
            blocking=True,
            return_response=True,
            context=Context(user_id=hass_read_only_user.id),
        )


async def test_actions_need_a_community(hass: HomeAssistant, http_address: str) -> None:
    """Without a community the actions explain themselves."""
    from tests.conftest import make_entry

    entry = make_entry(assets={})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.federation is None
    assert entry.runtime_data.ledger is not None
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN, "create_invitation", {}, blocking=True, return_response=True
        )
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN, "remove_member", {"member": "abcdef12"}, blocking=True
        )


async def test_remove_member_and_leave(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """The admin removes B by its short id; deleting the subentry makes A leave."""
    entry, a = home_a
    b = await make_home("B")
    c = await make_home("C")
    await join(hass, a, b, [])
    await join(hass, a, c, [b])
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(DOMAIN, "remove_member", {"member": "zz"}, blocking=True)
    await hass.services.async_call(
        DOMAIN, "remove_member", {"member": b.link.member_key[:10]}, blocking=True
    )
    await settle(a, b, c)
    assert a.link.members == 2
    assert c.link.members == 2
    assert not b.link.joined
    with pytest.raises(FederationError):
        await b.link.async_create_invitation(1000)

    subentry = community_subentry(entry)
    assert subentry is not None
    assert hass.config_entries.async_remove_subentry(entry, subentry.subentry_id)
    await hass.async_block_till_done()
    await settle(c)
    assert entry.runtime_data.federation is None
    assert c.link.members == 1
    assert await federation_store(hass, entry.entry_id).async_load() is None


async def test_self_probe_raises_and_clears_issue(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home]
) -> None:
    """Our own address must answer with our key; otherwise a repair issue says so."""
    _, a = home_a
    assert a.link.peer is not None
    assert await a.link.async_probe_self()
    good = a.link.peer.address
    a.link.peer.address = "http://127.0.0.1:9"
    assert not await a.link.async_probe_self()
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_SELF_UNREACHABLE)
    assert issue is not None
    assert issue.translation_placeholders == {"address": "http://127.0.0.1:9"}
    a.link.peer.address = good
    assert await a.link.async_probe_self()
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_SELF_UNREACHABLE) is None


async def test_diagnostics_of_a_member_hide_secrets(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """The federation section counts; addresses, keys and invitation secrets stay out."""
    from custom_components.peer_energy.diagnostics import async_get_config_entry_diagnostics

    entry, a = home_a
    b = await make_home("B")
    await join(hass, a, b, [])
    text = await invite(hass)
    diag = await async_get_config_entry_diagnostics(hass, entry)
    fed = diag["federation"]
    assert fed["joined"] is True
    assert fed["members"] == 2
    assert fed["admin"] is True
    assert fed["open_invitations"] == 1
    dumped = str(diag)
    assert a.address not in dumped
    assert text not in dumped
    assert a.link.member_key not in dumped
    stored = await federation_store(hass, entry.entry_id).async_load()
    assert stored is not None
    secret = stored["peer"]["invitations"][0]["secret"]
    assert secret not in dumped
    # The community's id identifies the neighbourhood: redacted like its name.
    assert diag["ledger"]["ledger"]["community"] == "**REDACTED**"
    assert str(a.link.community_id) not in dumped


class DropWelcomes:
    """A transport that loses the first ``count`` welcome messages (the joiner's views were
    down, e.g. Home Assistant restarting), delivering everything else."""

    def __init__(self, inner: Any, count: int = 1) -> None:
        self.inner = inner
        self.count = count
        self.dropped = 0

    async def async_send(self, address: str, data: bytes) -> int:
        if b'"type":"welcome"' in data and self.dropped < self.count:
            self.dropped += 1
            return 0
        return int(await self.inner.async_send(address, data))

    async def async_info(self, address: str) -> dict[str, Any] | None:
        return await self.inner.async_info(address)  # type: ignore[no-any-return]


async def _start_join(
    hass: HomeAssistant, founder: Home, address: str
) -> tuple[PeerEnergyConfigEntry, DropWelcomes]:
    """An entry that joins ``founder``'s community in the background (as after the config
    flow's join step); the founder's first welcome is lost."""
    from .conftest import community_entry

    await founder.link.async_found("Rowan Close", fast_rules(), founder.address)
    text = (await founder.link.async_create_invitation(3_600_000)).encode()
    lossy = DropWelcomes(founder.link.transport)
    founder.link.transport = lossy
    entry = community_entry(
        address,
        community={CONF_COMMUNITY_ACTION: "join", CONF_INVITATION: text, CONF_ADDRESS: address},
        title="Community",
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry, lossy


async def test_lost_welcome_is_recovered_by_resending_the_join(
    hass: HomeAssistant, clock: Clock, http_address: str, make_home: HomeFactory
) -> None:
    """The founder's welcome is lost; the joining home sends its join again after a pause
    and the founder answers with the welcome again: joined, no repair, one member record."""
    founder = await make_home("F")
    with (
        patch("custom_components.peer_energy.federation_setup.JOIN_RESEND_S", (0.05, 0.1)),
        patch("custom_components.peer_energy.federation_setup.JOIN_TIMEOUT_S", 10.0),
    ):
        entry, lossy = await _start_join(hass, founder, http_address)
        await until(hass, lambda: is_member(entry), "the entry is a member")
    await settle(founder)
    assert lossy.dropped == 1
    assert founder.link.members == 2
    assert entry.runtime_data.federation is not None
    assert entry.runtime_data.federation.members == 2
    # the founder's address and one member record (the repeated join added none)
    assert len(founder.link.peer.membership.records) == 2  # type: ignore[union-attr]
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_JOIN_FAILED) is None


async def test_join_resumed_after_a_restart_gets_the_welcome_again(
    hass: HomeAssistant, clock: Clock, http_address: str, make_home: HomeFactory
) -> None:
    """The welcome is lost and no resend comes in time: the join fails with a repair
    issue. The founder holds the joiner as pending, not as a member (confirmed joins: no
    ghost member). After a restart of the joining home the stored join is resumed, the
    founder sends the welcome again, the joiner acknowledges it, and the issue goes away."""
    founder = await make_home("F")
    with (
        patch("custom_components.peer_energy.federation_setup.JOIN_RESEND_S", ()),
        patch("custom_components.peer_energy.federation_setup.JOIN_TIMEOUT_S", 0.2),
    ):
        entry, lossy = await _start_join(hass, founder, http_address)
        registry = ir.async_get(hass)
        await until(
            hass,
            lambda: registry.async_get_issue(DOMAIN, ISSUE_JOIN_FAILED) is not None,
            "the join failed",
        )
    assert lossy.dropped == 1
    assert founder.link.members == 1  # pending until the welcome is acknowledged
    assert founder.link.peer is not None
    assert founder.link.peer.pending_joins() == (entry.runtime_data.link.member_key,)
    assert entry.runtime_data.federation is None  # not a member (yet)
    assert not entry.runtime_data.link.joined

    # The founder restarts too (its used invitation is remembered in its store).
    await founder.link.async_save()
    founder.link.peer = peer_restore(
        founder.link.identity,
        (await founder.link.store.async_load())["peer"],  # type: ignore[index]
        clock.now,
    )
    assert await hass.config_entries.async_reload(entry.entry_id)
    await until(hass, lambda: is_member(entry), "the resumed join completed")
    await settle(founder)
    assert registry.async_get_issue(DOMAIN, ISSUE_JOIN_FAILED) is None
    assert founder.link.members == 2
    assert entry.runtime_data.federation is not None
    assert entry.runtime_data.federation.community_id == founder.link.community_id
    assert entry.runtime_data.federation.members == 2


async def test_resend_stops_on_a_refusal_and_at_the_timeout(
    hass: HomeAssistant, clock: Clock, make_home: HomeFactory
) -> None:
    """A refused join (another home used the invitation) ends the wait at once; while no
    welcome comes, the join is resent after each pause and then the wait times out."""
    founder = await make_home("F")
    await founder.link.async_found("Ash Row", fast_rules(), founder.address)
    inv = await founder.link.async_create_invitation(3_600_000)
    first = await make_home("B")
    assert await first.link.async_join(inv.encode(), first.address) == 202
    assert await first.link.async_wait_joined(2) is None
    late = await make_home("C")
    assert await late.link.async_join(inv.encode(), late.address) == 403
    assert await late.link.async_wait_joined(5, resend_s=(0.01,)) == "http_403"

    other = await make_home("D")
    inv2 = await founder.link.async_create_invitation(3_600_000)
    silent = DropWelcomes(founder.link.transport, count=10)
    founder.link.transport = silent
    assert await other.link.async_join(inv2.encode(), other.address) == 202
    assert await other.link.async_wait_joined(1.5, resend_s=(0.01, 0.02, 0.04)) == "timeout"
    await settle(founder)
    assert silent.dropped == 4  # the join and three resends, each answered with a welcome
    assert founder.link.members == 2  # the lost welcomes were never acknowledged: no ghost
    assert founder.link.peer is not None
    assert founder.link.peer.pending_joins() == (other.link.member_key,)


class LostAnswers:
    """The joiner's transport: delivers, but the answers to the first ``count`` join
    requests are lost (0)."""

    def __init__(self, inner: Any, count: int, deliver: bool = True) -> None:
        self.inner = inner
        self.count = count
        self.deliver = deliver
        self.sent = 0
        self.joins = 0

    async def async_send(self, address: str, data: bytes) -> int:
        self.sent += 1
        is_join = b'"type":"join"' in data
        self.joins += is_join
        status = int(await self.inner.async_send(address, data)) if self.deliver else 0
        return 0 if is_join and self.joins <= self.count else status

    async def async_info(self, address: str) -> dict[str, Any] | None:
        return None


async def test_welcome_during_the_pause_and_stop_during_the_pause(
    hass: HomeAssistant, clock: Clock, make_home: HomeFactory
) -> None:
    """The inviter's answer is lost but its welcome comes during the pause: joined, no
    resend. An inviter that cannot be reached is retried until the link stops."""
    founder = await make_home("F")
    await founder.link.async_found("Ash Row", fast_rules(), founder.address)
    b = await make_home("B")
    lossy = LostAnswers(b.link.transport, count=1)
    b.link.transport = lossy
    inv = await founder.link.async_create_invitation(3_600_000)
    assert await b.link.async_join(inv.encode(), b.address) == 0
    assert await b.link.async_wait_joined(10, resend_s=(5.0,)) is None  # well before 5 s
    await settle(b)
    assert lossy.sent == 2  # the join and the acknowledgement of the welcome, no resend
    assert b.link.joined

    c = await make_home("C")
    down = LostAnswers(c.link.transport, count=100, deliver=False)
    c.link.transport = down
    inv2 = await founder.link.async_create_invitation(3_600_000)
    assert await c.link.async_join(inv2.encode(), c.address) == 0
    assert await c.link.async_wait_joined(0.5, resend_s=(0.01, 0.01)) == "http_0"
    assert down.sent == 3  # the join and two resends, then the wait ran out
    waiting = asyncio.ensure_future(c.link.async_wait_joined(10, resend_s=(5.0,)))
    await asyncio.sleep(0.05)
    await c.link.async_stop()
    assert await waiting == "stopped"
    assert down.sent == 3
