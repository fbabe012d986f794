"""Repair issue when a mapped source entity disappears, cleared when it is back."""

from __future__ import annotations

from typing import Any

from homeassistant.const import EVENT_HOMEASSISTANT_STARTED
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.peer_energy.const import CONF_POWER_ENTITY, DOMAIN
from custom_components.peer_energy.issues import source_issue_id

from .conftest import ENTRY_ID, GRID_ID, PV_ID, make_entry

GRID_ISSUE = source_issue_id(ENTRY_ID, GRID_ID, CONF_POWER_ENTITY)


async def test_issue_raised_and_cleared(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """Removing a source raises a translated issue; its return clears it."""
    assert not issue_registry.issues
    hass.states.async_remove("sensor.grid_power")
    await hass.async_block_till_done()
    issue = issue_registry.async_get_issue(DOMAIN, GRID_ISSUE)
    assert issue is not None
    assert issue.translation_key == "source_missing"
    assert issue.severity is ir.IssueSeverity.WARNING
    assert not issue.is_fixable
    assert issue.translation_placeholders == {
        "entity_id": "sensor.grid_power",
        "asset": "Grid meter",
    }

    hass.states.async_set("sensor.grid_power", "100", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, GRID_ISSUE) is None


async def test_unavailable_or_registered_is_not_missing(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """An unavailable source, or one still in the entity registry, raises nothing."""
    hass.states.async_set("sensor.pv_power", "unavailable")
    hass.states.async_remove("sensor.grid_power")
    entity_registry.async_get_or_create("sensor", "demo", "grid", suggested_object_id="grid_power")
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, GRID_ISSUE) is None
    assert not issue_registry.issues

    # Deleting the registry entry (no state either) makes it missing.
    entity_registry.async_remove("sensor.grid_power")
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, GRID_ISSUE) is not None


async def test_renamed_source(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Renaming a registered source leaves the mapping pointing nowhere: an issue."""
    hass.states.async_remove("sensor.grid_power")
    entity_registry.async_get_or_create("sensor", "demo", "grid", suggested_object_id="grid_power")
    await hass.async_block_till_done()
    entity_registry.async_update_entity("sensor.grid_power", new_entity_id="sensor.meter_power")
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, GRID_ISSUE) is not None


async def test_missing_at_setup_and_cleared_on_unload(
    hass: HomeAssistant, issue_registry: ir.IssueRegistry, source_states: dict[str, Any]
) -> None:
    """A source missing at set-up raises an issue; unloading removes our issues."""
    hass.states.async_remove("sensor.pv_power")
    entry = make_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    pv_issue = source_issue_id(ENTRY_ID, PV_ID, CONF_POWER_ENTITY)
    assert issue_registry.async_get_issue(DOMAIN, pv_issue) is not None
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, pv_issue) is None


async def test_checked_only_after_start(
    hass: HomeAssistant, issue_registry: ir.IssueRegistry, source_states: dict[str, Any]
) -> None:
    """During start-up other integrations may not have loaded yet: wait until started."""
    hass.set_state(CoreState.not_running)
    hass.states.async_remove("sensor.pv_power")
    entry = make_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    pv_issue = source_issue_id(ENTRY_ID, PV_ID, CONF_POWER_ENTITY)
    assert issue_registry.async_get_issue(DOMAIN, pv_issue) is None
    hass.set_state(CoreState.running)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STARTED)
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, pv_issue) is not None


async def test_unload_before_start(
    hass: HomeAssistant, issue_registry: ir.IssueRegistry, source_states: dict[str, Any]
) -> None:
    """Unloading before Home Assistant has started cancels the pending check."""
    hass.set_state(CoreState.not_running)
    hass.states.async_remove("sensor.pv_power")
    entry = make_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)
    hass.set_state(CoreState.running)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STARTED)
    await hass.async_block_till_done()
    assert not issue_registry.issues


def test_issue_and_exception_translations() -> None:
    """The issue and exception texts exist and use exactly the placeholders we pass."""
    import json
    from pathlib import Path
    import re

    strings = json.loads(
        (Path(__file__).parent.parent / "custom_components/peer_energy/strings.json").read_text(
            encoding="utf-8"
        )
    )
    issue = strings["issues"]["source_missing"]
    placeholders = set(re.findall(r"{(\w+)}", issue["title"] + issue["description"]))
    assert placeholders == {"entity_id", "asset"}
    message = strings["exceptions"]["unknown_asset_kind"]["message"]
    assert set(re.findall(r"{(\w+)}", message)) == {"kind"}
