"""Restart, unload, leave, remove, the invitation action and the reachability probe."""

from __future__ import annotations

from typing import Any

from homeassistant.components import persistent_notification
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import ServiceValidationError, Unauthorized
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockUser

from custom_components.peer_energy.const import CONF_COMMUNITY_ACTION, DOMAIN
from custom_components.peer_energy.federation import (
    DATA_LINK,
    ISSUE_SELF_UNREACHABLE,
    FederationError,
    FederationLink,
    federation_store,
)
from custom_components.peer_energy.federation_setup import community_subentry
from custom_components.peer_energy.http import INFO_PATH, HttpTransport
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry

from .conftest import Clock, Home, HomeFactory, invite, join, settle


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
    a2 = Home("A", hass.data[DATA_LINK], a.address)
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
    assert DATA_LINK not in hass.data
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
    """Admins get the invitation as a response and a notification; others are refused."""
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
    notes = persistent_notification._async_get_or_create_notifications(hass)
    assert response["invitation"] in notes[f"{DOMAIN}_invitation"]["message"]
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
    assert diag["ledger"]["ledger"]["community"] == a.link.community_id
