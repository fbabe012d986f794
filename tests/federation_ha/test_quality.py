"""What a user meets when things go wrong: translated errors, a damaged or lost key store,
a damaged ledger, diagnostics without the community's name and id, and removing the entry
(a leave to the neighbours, the home's files deleted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.components import persistent_notification
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
import pytest

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.core.trust.identity import Identity
from custom_components.peer_energy.core.trust.ledger_db import LedgerDBError
from custom_components.peer_energy.federation import FederationError, federation_store
from custom_components.peer_energy.federation_setup import _ledger_files
from custom_components.peer_energy.ledger import LedgerSetupError, PeerLedger, identity_store
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry
from tests.conftest import make_entry

from .conftest import Clock, Home, HomeFactory, invite, join, settle


async def _setup(hass: HomeAssistant) -> Any:
    entry = make_entry(assets={})
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def _reload_fails(hass: HomeAssistant, entry: Any) -> None:
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def test_damaged_key_store_is_an_error_not_a_retry(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    """A malformed key is not retried for ever: the user restores the file."""
    entry = make_entry(assets={})
    hass_storage[f"peer_energy.identity.{entry.entry_id}"] = {
        "version": 1,
        "key": f"peer_energy.identity.{entry.entry_id}",
        "data": {"seed": "not hex"},
    }
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason is not None
    assert f".storage/peer_energy.identity.{entry.entry_id}" in entry.reason
    assert "damaged" in entry.reason


async def test_lost_key_store_with_a_ledger_is_not_replaced(hass: HomeAssistant) -> None:
    """No new key when the home already has a ledger: it would be a stranger to it."""
    entry = await _setup(hass)
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.async_add_executor_job(_ledger_files, hass, entry.entry_id)
    await hass.config_entries.async_unload(entry.entry_id)
    await identity_store(hass, entry.entry_id).async_remove()
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason is not None
    assert "does not create a new key" in entry.reason
    assert await identity_store(hass, entry.entry_id).async_load() is None


async def test_ledger_of_another_key_is_an_error(hass: HomeAssistant) -> None:
    """A ledger written by another key cannot be opened by retrying."""
    entry = await _setup(hass)
    await hass.config_entries.async_unload(entry.entry_id)
    await identity_store(hass, entry.entry_id).async_save({"seed": Identity.generate().seed_hex()})
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason is not None
    assert "another key" in entry.reason


async def test_ledger_database_error_is_retried(hass: HomeAssistant) -> None:
    """A database that cannot be opened now (disk, lock) is retried, with a translation."""
    err = LedgerSetupError("cannot open the ledger")
    err.__cause__ = LedgerDBError("disk I/O error")
    with patch.object(PeerLedger, "async_open", side_effect=err):
        entry = await _setup(hass)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.reason is not None
    assert "tries again" in entry.reason


async def test_action_errors_are_translated(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """Engine errors reach the user as translated Home Assistant errors."""
    _, a = home_a
    with (
        patch.object(a.link, "async_create_invitation", side_effect=FederationError("reloading")),
        pytest.raises(HomeAssistantError) as busy,
    ):
        await hass.services.async_call(
            DOMAIN, "create_invitation", {}, blocking=True, return_response=True
        )
    assert busy.value.translation_key == "community_busy"
    assert str(busy.value).startswith("Peer Energy is reloading; try again")

    b = await make_home("B")
    await join(hass, a, b, [])
    with (
        patch.object(a.link, "async_remove", side_effect=FederationError("refused")),
        pytest.raises(HomeAssistantError) as refused,
    ):
        await hass.services.async_call(
            DOMAIN, "remove_member", {"member": b.link.member_key[:10]}, blocking=True
        )
    assert refused.value.translation_key == "remove_member_failed"
    assert b.link.member_key[:8] in str(refused.value)
    # The invitation is a secret: in the action's response only, in no notification.
    text = await invite(hass)
    notes = persistent_notification._async_get_or_create_notifications(hass)
    assert not [n for n in notes.values() if text in n["message"]]


async def test_diagnostics_hide_the_community(
    hass: HomeAssistant, clock: Clock, home_a: tuple[PeerEnergyConfigEntry, Home]
) -> None:
    """The community's name and id identify a neighbourhood: redacted everywhere."""
    from custom_components.peer_energy.diagnostics import async_get_config_entry_diagnostics

    entry, a = home_a
    community_id = a.link.community_id
    assert community_id
    diag = await async_get_config_entry_diagnostics(hass, entry)
    dumped = str(diag)
    assert community_id not in dumped
    assert "Elm Street" not in dumped
    assert diag["federation"]["community"] == "**REDACTED**"


async def test_removing_the_entry_leaves_and_deletes_the_files(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """Deleting Peer Energy tells the neighbours and leaves no file of the home behind."""
    entry, a = home_a
    b = await make_home("B")
    await join(hass, a, b, [])
    assert b.link.members == 2
    files = await hass.async_add_executor_job(_ledger_files, hass, entry.entry_id)
    assert files
    savings = entry.runtime_data.savings
    assert savings is not None
    await savings.async_flush()

    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    await settle(b)
    assert b.link.members == 1
    for key in ("identity", "federation", "market", "savings"):
        assert f"peer_energy.{key}.{entry.entry_id}" not in hass_storage, key
    assert await federation_store(hass, entry.entry_id).async_load() is None
    assert not any(Path(f).exists() for f in files)


async def test_removing_an_entry_whose_neighbours_are_gone(
    hass: HomeAssistant, clock: Clock, home_a: tuple[PeerEnergyConfigEntry, Home]
) -> None:
    """No neighbour answers the leave: the files are deleted all the same."""
    entry, _ = home_a
    with patch(
        "custom_components.peer_energy.federation.FederationLink.async_leave",
        side_effect=FederationError("nobody"),
    ):
        assert await hass.config_entries.async_remove(entry.entry_id)
        await hass.async_block_till_done()
    assert await identity_store(hass, entry.entry_id).async_load() is None
    assert not await hass.async_add_executor_job(_ledger_files, hass, entry.entry_id)


@pytest.mark.parametrize(
    ("join", "reason", "key", "placeholders"),
    [
        (FederationError("expired"), None, "join_failed_invitation", "0"),
        (202, "http_403", "join_failed_refused", "202"),
        (422, "http_422", "join_failed_address", "422"),
        (202, "timeout", "join_failed_timeout", "202"),
        (500, "http_500", "join_failed", "500"),
        (202, None, None, None),
    ],
)
async def test_failed_join_repair_per_reason(
    hass: HomeAssistant,
    join: Any,
    reason: str | None,
    key: str | None,
    placeholders: str | None,
) -> None:
    """Each reason has its own translated repair text (placeholders: the status code and
    the address), and a fix flow for the entry."""
    from types import SimpleNamespace
    from unittest.mock import AsyncMock

    from homeassistant.helpers import issue_registry as ir

    from custom_components.peer_energy.federation import ISSUE_JOIN_FAILED
    from custom_components.peer_energy.federation_setup import _async_join

    link = SimpleNamespace(
        _join=None,
        async_join=AsyncMock(side_effect=join)
        if isinstance(join, Exception)
        else AsyncMock(return_value=join),
        async_wait_joined=AsyncMock(return_value=reason),
    )
    subentry = SimpleNamespace(data={"invitation": "x", "address": "http://127.0.0.1:1"})
    entry = SimpleNamespace(entry_id="entry")
    await _async_join(hass, entry, link, subentry)  # type: ignore[arg-type]
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_JOIN_FAILED)
    if key is None:
        assert issue is None
        return
    assert issue is not None
    assert issue.translation_key == key
    assert issue.translation_placeholders == {
        "status": placeholders,
        "address": "http://127.0.0.1:1",
    }
    assert issue.is_fixable
    assert issue.data == {"entry_id": "entry"}
