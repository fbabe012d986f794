"""Repair issues: a mapped source entity has disappeared; every issue of the integration
is deleted when the entry unloads or is removed.

A source counts as disappeared when it has no state and no entity registry entry
(deleted, renamed, or its integration removed). A source that is only unavailable
or whose integration has not loaded yet keeps its registry entry and raises nothing.
The issue is not fixable from the repair dialog; its text tells the user to edit the
asset (Reconfigure) and pick the new entity. It goes away by itself when the entity
comes back, and with the entry when the entry is unloaded or removed.

Every repair this integration raises (a missing source, this home's address not answering,
a failed join, the ledger out of step, the broker, an unworkable gate closure lead)
describes the loaded entry, and the integration allows one entry: unloading it (for a
reload, after leaving the community, disabling or removing it) deletes them all
(``async_clear_issues``). A set-up rebuilds those that still apply: the sources are checked
once Home Assistant runs, the address is probed, a join that fails again raises its issue
again, the ledger and broker checks raise theirs at their next run.

(Named ``issues.py``: ``repairs.py`` is the platform with the fix flows, for a failed
join.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.helpers.event import (
    async_track_entity_registry_updated_event,
    async_track_state_change_event,
)
from homeassistant.helpers.start import async_at_started

from .const import DOMAIN
from .coordinator import AssetConfig

ISSUE_SOURCE_MISSING = "source_missing"


def source_issue_id(entry_id: str, subentry_id: str, key: str) -> str:
    """Issue id for one mapped source of one asset."""
    return f"{ISSUE_SOURCE_MISSING}_{entry_id}_{subentry_id}_{key}"


@callback
def async_check_sources(
    hass: HomeAssistant,
    entry: ConfigEntry[Any],
    assets: Mapping[str, AssetConfig],
    only: set[str] | None = None,
) -> None:
    """Raise or clear the issue of each mapped source (or only of ``only`` entity ids)."""
    registry = er.async_get(hass)
    for asset in assets.values():
        for key, entity_id in asset.sources.items():
            if only is not None and entity_id not in only:
                continue
            issue_id = source_issue_id(entry.entry_id, asset.subentry_id, key)
            if hass.states.get(entity_id) is None and registry.async_get(entity_id) is None:
                ir.async_create_issue(
                    hass,
                    DOMAIN,
                    issue_id,
                    is_fixable=False,
                    severity=ir.IssueSeverity.WARNING,
                    translation_key=ISSUE_SOURCE_MISSING,
                    translation_placeholders={"entity_id": entity_id, "asset": asset.name},
                    data={"entry_id": entry.entry_id, "subentry_id": asset.subentry_id},
                )
            else:
                ir.async_delete_issue(hass, DOMAIN, issue_id)


@callback
def async_watch_sources(
    hass: HomeAssistant, entry: ConfigEntry[Any], assets: Mapping[str, AssetConfig]
) -> Callable[[], None]:
    """Check all sources once Home Assistant has started, then on every change.

    Return a callable that drops every subscription.
    """
    entity_ids = {entity_id for asset in assets.values() for entity_id in asset.sources.values()}
    unsubscribers: list[Callable[[], None]] = []

    @callback
    def _changed(event: Event[Any]) -> None:
        async_check_sources(hass, entry, assets, only={event.data["entity_id"]})
        # A rename reports the old id in "old_entity_id".
        if old := event.data.get("old_entity_id"):
            async_check_sources(hass, entry, assets, only={old})

    @callback
    def _started(_hass: HomeAssistant) -> None:
        async_check_sources(hass, entry, assets)
        unsubscribers.append(async_track_state_change_event(hass, entity_ids, _changed))
        unsubscribers.append(async_track_entity_registry_updated_event(hass, entity_ids, _changed))

    if entity_ids:
        unsubscribers.append(async_at_started(hass, _started))

    @callback
    def _unsubscribe() -> None:
        while unsubscribers:
            unsubscribers.pop()()

    return _unsubscribe


@callback
def async_clear_issues(hass: HomeAssistant) -> None:
    """Delete every repair issue of the integration (the entry unloads or is removed)."""
    registry = ir.async_get(hass)
    for domain, issue_id in list(registry.issues):
        if domain == DOMAIN:
            ir.async_delete_issue(hass, DOMAIN, issue_id)
