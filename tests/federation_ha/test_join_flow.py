"""The join ends honestly: progress while joining, the community's name when in, or a
translated reason and a way to fix it (the form again, or the repair's fix flow)."""

from __future__ import annotations

from homeassistant import config_entries
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir

from custom_components.peer_energy.const import (
    CONF_ADDRESS,
    CONF_COMMUNITY_ACTION,
    CONF_INVITATION,
    DOMAIN,
    SUBENTRY_COMMUNITY,
)
from custom_components.peer_energy.federation import ISSUE_JOIN_FAILED
from custom_components.peer_energy.federation_setup import community_subentry

from .conftest import (
    Clock,
    HomeFactory,
    closed_address,
    community_entry,
    fast_rules,
    is_member,
    settle,
    until,
)


async def test_add_community_shows_progress_and_ends_with_the_name_or_a_reason(
    hass: HomeAssistant, clock: Clock, http_address: str, make_home: HomeFactory
) -> None:
    """An address the inviter cannot reach brings the form back with that reason (and
    no pending join at the inviter); the corrected address joins, titled by name."""
    from tests.conftest import make_entry

    founder = await make_home("F")
    await founder.link.async_found("Linden Court", fast_rules(), founder.address)
    text = (await founder.link.async_create_invitation(3_600_000)).encode()
    entry = make_entry(assets={})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    flows = hass.config_entries.subentries
    result = await flows.async_init(
        (entry.entry_id, SUBENTRY_COMMUNITY), context={"source": config_entries.SOURCE_USER}
    )
    result = await flows.async_configure(result["flow_id"], {"next_step_id": "join_community"})
    bad = closed_address()
    result = await flows.async_configure(
        result["flow_id"], {CONF_INVITATION: text, CONF_ADDRESS: bad}
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    assert result["progress_action"] == "joining"
    assert result["description_placeholders"] == {"address": bad}
    await hass.async_block_till_done()
    result = await flows.async_configure(result["flow_id"])
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "join_community"
    assert result["errors"] == {"base": "join_address_unreachable"}
    assert founder.link.peer is not None
    assert founder.link.peer.pending_joins() == ()
    assert founder.link.members == 1

    result = await flows.async_configure(
        result["flow_id"], {CONF_INVITATION: text, CONF_ADDRESS: http_address}
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    await hass.async_block_till_done()
    result = await flows.async_configure(result["flow_id"])
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Linden Court"
    await settle(founder)
    await until(hass, lambda: is_member(entry), "the entry reloaded as a member")
    assert founder.link.members == 2
    assert entry.runtime_data.federation is not None
    assert entry.runtime_data.federation.community_name == "Linden Court"


async def test_failed_join_repair_fixes_the_address_and_joins(
    hass: HomeAssistant, clock: Clock, make_home: HomeFactory, http_address: str
) -> None:
    """A background join with an address the inviter cannot reach raises a fixable
    repair; its fix flow takes the right address, and the home joins."""
    founder = await make_home("F")
    await founder.link.async_found("Poplar Yard", fast_rules(), founder.address)
    text = (await founder.link.async_create_invitation(3_600_000)).encode()
    bad = closed_address()
    entry = community_entry(
        bad,
        community={CONF_COMMUNITY_ACTION: "join", CONF_INVITATION: text, CONF_ADDRESS: bad},
        title="Community",
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    registry = ir.async_get(hass)
    await until(
        hass,
        lambda: registry.async_get_issue(DOMAIN, ISSUE_JOIN_FAILED) is not None,
        "the join failed",
    )
    issue = registry.async_get_issue(DOMAIN, ISSUE_JOIN_FAILED)
    assert issue is not None
    assert issue.is_fixable
    assert issue.translation_key == "join_failed_address"
    assert issue.translation_placeholders == {"status": "422", "address": bad}

    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_init(DOMAIN, data={"issue_id": ISSUE_JOIN_FAILED})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    result = await manager.async_configure(
        result["flow_id"], {CONF_ADDRESS: "not a url", CONF_INVITATION: "junk"}
    )
    assert result["errors"] == {
        CONF_ADDRESS: "invalid_address",
        CONF_INVITATION: "invalid_invitation",
    }
    result = await manager.async_configure(result["flow_id"], {CONF_ADDRESS: http_address})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await until(hass, lambda: is_member(entry), "the corrected join completed")
    await settle(founder)
    assert registry.async_get_issue(DOMAIN, ISSUE_JOIN_FAILED) is None
    assert founder.link.members == 2
    assert entry.runtime_data.link.address == http_address
    subentry = community_subentry(entry)
    assert subentry is not None
    assert subentry.title == "Poplar Yard"

    # Once a member, the fix flow of a stale issue has nothing to do.
    ir.async_create_issue(
        hass,
        DOMAIN,
        ISSUE_JOIN_FAILED,
        is_fixable=True,
        severity=ir.IssueSeverity.ERROR,
        translation_key="join_failed_timeout",
        data={"entry_id": entry.entry_id},
    )
    result = await manager.async_init(DOMAIN, data={"issue_id": ISSUE_JOIN_FAILED})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_joining"


async def test_join_now_without_a_link_or_with_a_damaged_invitation(
    hass: HomeAssistant, clock: Clock, http_address: str
) -> None:
    """The flow's join names why it cannot start: no loaded entry, or a bad invitation."""
    from custom_components.peer_energy.community_flow import _async_join_now
    from tests.conftest import make_entry

    data = {CONF_INVITATION: "peerenergy1:broken", CONF_ADDRESS: http_address}
    entry = make_entry(assets={})
    entry.add_to_hass(hass)
    assert await _async_join_now(entry, data) == "not_set_up"
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert await _async_join_now(entry, data) == "invitation"
