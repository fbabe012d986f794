"""Repairs live with the entry: unloading it (a reload, leaving the community, disabling)
or removing it deletes every repair the integration raised; a set-up rebuilds those that
still apply."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.peer_energy.const import CONF_POWER_ENTITY, DOMAIN
from custom_components.peer_energy.federation import (
    ISSUE_JOIN_FAILED,
    ISSUE_SELF_UNREACHABLE,
)
from custom_components.peer_energy.federation_setup import community_subentry
from custom_components.peer_energy.gate import ISSUE_GATE_LEAD, gate_lead_issue_id
from custom_components.peer_energy.issues import source_issue_id
from custom_components.peer_energy.recording import ISSUE_OUT_OF_STEP
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry
from tests.conftest import GRID_ID

from .conftest import Home

OTHER_DOMAIN = "other_integration"


def _ours(hass: HomeAssistant) -> set[str]:
    return {issue_id for domain, issue_id in ir.async_get(hass).issues if domain == DOMAIN}


def _raise(hass: HomeAssistant, issue_id: str, key: str | None = None) -> None:
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key=key or issue_id,
    )


def _raise_community_issues(hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> set[str]:
    """The repairs a member can have, as the integration raises them."""
    _raise(hass, ISSUE_OUT_OF_STEP)
    _raise(hass, ISSUE_JOIN_FAILED)
    _raise(hass, gate_lead_issue_id(entry.entry_id), ISSUE_GATE_LEAD)
    ir.async_create_issue(
        hass,
        OTHER_DOMAIN,
        "kept",
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key="kept",
    )
    return {ISSUE_OUT_OF_STEP, ISSUE_JOIN_FAILED, gate_lead_issue_id(entry.entry_id)}


async def _unreachable_address(home: Home) -> None:
    """This home's own address stops answering: the probe raises its repair."""
    assert home.link.peer is not None
    home.link.peer.address = "http://127.0.0.1:9"
    assert not await home.link.async_probe_self()


async def test_leaving_the_community_deletes_its_repairs(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home]
) -> None:
    """Deleting the community subentry (leaving) reloads the entry without the community:
    none of the community's repairs stays, and none comes back."""
    entry, a = home_a
    raised = _raise_community_issues(hass, entry)
    await _unreachable_address(a)
    assert _ours(hass) == raised | {ISSUE_SELF_UNREACHABLE}
    subentry = community_subentry(entry)
    assert subentry is not None
    assert hass.config_entries.async_remove_subentry(entry, subentry.subentry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.federation is None
    assert _ours(hass) == set()
    # Another integration's repair is not ours to delete.
    assert ir.async_get(hass).async_get_issue(OTHER_DOMAIN, "kept") is not None


async def test_unload_deletes_the_community_repairs(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home]
) -> None:
    """Unloading a member deletes every repair it raised; loading it again raises none of
    them while nothing is wrong (its address answers again)."""
    entry, a = home_a
    raised = _raise_community_issues(hass, entry)
    assert a.link.peer is not None
    good = a.link.peer.address
    await _unreachable_address(a)
    assert _ours(hass) == raised | {ISSUE_SELF_UNREACHABLE}
    a.link.peer.address = good  # fixed meanwhile, not probed again before the unload
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert _ours(hass) == set()
    assert ir.async_get(hass).async_get_issue(OTHER_DOMAIN, "kept") is not None
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.link.joined
    assert _ours(hass) == set()


async def test_unload_deletes_and_set_up_rebuilds(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Unloading deletes every repair; loading again raises those that still apply (a
    mapped source still missing), not those that no longer do."""
    entry = init_integration
    _raise(hass, ISSUE_OUT_OF_STEP)
    hass.states.async_remove("sensor.grid_power")
    await hass.async_block_till_done()
    source_issue = source_issue_id(entry.entry_id, GRID_ID, CONF_POWER_ENTITY)
    assert _ours(hass) == {ISSUE_OUT_OF_STEP, source_issue}

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert _ours(hass) == set()

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert _ours(hass) == {source_issue}


async def test_removing_the_entry_deletes_its_repairs(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home]
) -> None:
    """Removing the home deletes its repairs with it."""
    entry, a = home_a
    _raise_community_issues(hass, entry)
    await _unreachable_address(a)
    assert _ours(hass)
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert _ours(hass) == set()
    assert ir.async_get(hass).async_get_issue(OTHER_DOMAIN, "kept") is not None
