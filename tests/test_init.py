"""Set-up, unload and reload of a Peer Energy entry."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from homeassistant.config_entries import ConfigEntryState, ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.peer_energy.const import (
    CONF_ASSET_KIND,
    CONF_ASSET_NAME,
    CONF_BATTERY_RESERVE_PCT,
    CONF_POWER_ENTITY,
    DOMAIN,
    SUBENTRY_ASSET,
    AssetKind,
)
from custom_components.peer_energy.runtime import AssetControls

from .conftest import ENTRY_ID, PLUG_ID, make_entry


def _listener_counts(hass: HomeAssistant) -> dict[str, int]:
    # Home Assistant's own stores (auth, registries) hold a one-time "final write" listener
    # while a delayed save is pending; whether it has fired yet depends on timing, not on us.
    return {
        str(event): count
        for event, count in hass.bus.async_listeners().items()
        if str(event) != "homeassistant_final_write"
    }


async def test_load_unload_leaves_nothing(
    hass: HomeAssistant, source_states: dict[str, Any]
) -> None:
    """After unload no listener, tracker or entity of ours is left behind.

    The first set-up also loads Home Assistant's entity components (sensor, switch, ...),
    which keep listeners of their own; so compare the bus after one and after two
    load/unload cycles: a leak of ours would grow it.
    """
    entry = make_entry()
    entry.add_to_hass(hass)
    counts: list[dict[str, int]] = []
    for _ in range(2):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        runtime = entry.runtime_data
        assert runtime.coordinator.tracked_entity_ids >= {"sensor.pv_power", "sensor.grid_power"}
        # State tracking and the integration tick are subscribed while loaded.
        assert runtime.coordinator._unsubscribers
        loaded = _listener_counts(hass)

        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.NOT_LOADED  # type: ignore[comparison-overlap]
        assert not runtime.coordinator._unsubscribers
        counts.append(_listener_counts(hass))
        assert counts[-1] != loaded
    assert counts[0] == counts[1]
    # Our entities are gone from the state machine or unavailable (restored on reload).
    for state in hass.states.async_all():
        if state.entity_id.startswith(("sensor.maple_street_7", "switch.roof_pv")):
            assert state.state == "unavailable"
    # A source change after unload reaches nobody and raises nothing.
    hass.states.async_set("sensor.pv_power", "1")
    await hass.async_block_till_done()


async def test_reload_leaves_nothing(hass: HomeAssistant, source_states: dict[str, Any]) -> None:
    """Reloading many times does not pile up listeners."""
    entry = make_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    loaded = _listener_counts(hass)
    for _ in range(3):
        assert await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
    assert _listener_counts(hass) == loaded
    assert entry.state is ConfigEntryState.LOADED


async def test_reload_on_options_change(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Changing the options reloads the entry (a new runtime with the new defaults)."""
    old_runtime = init_integration.runtime_data
    hass.config_entries.async_update_entry(init_integration, options={CONF_BATTERY_RESERVE_PCT: 40})
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.LOADED
    assert init_integration.runtime_data is not old_runtime


async def test_subentry_added_and_removed(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Adding an asset creates its device and entities; removing it removes them."""
    hass.states.async_set("sensor.kettle_power", "2000", {"unit_of_measurement": "W"})
    subentry = ConfigSubentry(
        data=MappingProxyType(
            {
                CONF_ASSET_KIND: AssetKind.PLUG,
                CONF_ASSET_NAME: "Kettle",
                CONF_POWER_ENTITY: "sensor.kettle_power",
            }
        ),
        subentry_type=SUBENTRY_ASSET,
        title="Kettle",
        unique_id=None,
    )
    hass.config_entries.async_add_subentry(init_integration, subentry)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.LOADED
    device = device_registry.async_get_device(
        identifiers={(DOMAIN, f"{ENTRY_ID}_{subentry.subentry_id}")}
    )
    assert device is not None
    assert device.name == "Kettle"
    state = hass.states.get("sensor.kettle_power")
    assert state is not None
    assert hass.states.get("sensor.kettle_power_2") is not None  # ours mirrors the source
    assert subentry.subentry_id in init_integration.runtime_data.assets

    hass.config_entries.async_remove_subentry(init_integration, PLUG_ID)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.LOADED
    assert device_registry.async_get_device(identifiers={(DOMAIN, f"{ENTRY_ID}_{PLUG_ID}")}) is None
    assert not [
        entry
        for entry in er.async_entries_for_config_entry(entity_registry, ENTRY_ID)
        if entry.config_subentry_id == PLUG_ID
    ]
    assert hass.states.get("sensor.dishwasher_power") is None


async def test_runtime_controls_api(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """The runtime gives later code the controls and tells listeners about changes."""
    runtime = init_integration.runtime_data
    # Defaults come from the options (battery reserve 25 % in the fixture).
    assert runtime.controls_for(PLUG_ID).battery_reserve_pct == 25
    assert runtime.controls_for("unknown") == AssetControls()
    seen: list[tuple[str, AssetControls]] = []
    unsubscribe = runtime.async_add_controls_listener(lambda sid, c: seen.append((sid, c)))
    new = runtime.async_update_controls(PLUG_ID, plug_flexible=True)
    assert new.plug_flexible
    assert seen == [(PLUG_ID, new)]
    unsubscribe()
    runtime.async_update_controls(PLUG_ID, plug_flexible=False)
    assert len(seen) == 1


async def test_unload_clears_only_own_issues(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Unloading deletes the integration's repair issues (one entry: all of them, also a
    stale one of an entry removed earlier) and no other integration's."""
    from homeassistant.helpers import issue_registry as ir

    hass.states.async_remove("sensor.grid_power")
    await hass.async_block_till_done()
    issues = ir.async_get(hass)
    assert len(issues.issues) == 1
    stale = "source_missing_OTHERENTRY_x_power_entity"
    for domain, issue_id in ((DOMAIN, stale), ("other_integration", "theirs")):
        ir.async_create_issue(
            hass,
            domain,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="source_missing",
        )
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    assert list(issues.issues) == [("other_integration", "theirs")]


def test_translation_and_icon_keys() -> None:
    """Every entity description has a translated name and an icon, and nothing is unused."""
    import json
    from pathlib import Path

    from custom_components.peer_energy import binary_sensor, image, number, sensor, switch, time

    package = Path(__file__).parent.parent / "custom_components" / "peer_energy"
    strings = json.loads((package / "strings.json").read_text(encoding="utf-8"))["entity"]
    icons = json.loads((package / "icons.json").read_text(encoding="utf-8"))["entity"]
    used: dict[str, set[str]] = {
        "sensor": {
            d.translation_key or ""
            for d in (
                *sensor.ASSET_SENSORS,
                *sensor.HOME_SENSORS,
                *sensor.MARKET_SENSORS,
                *sensor.ASSET_MARKET_SENSORS,
                *sensor.PRICE_SENSORS,
                *sensor.SAVINGS_SENSORS,
                sensor.PLAN_SENSOR,
                sensor.UNREACHABLE_SENSOR,
            )
        },
        "binary_sensor": {d.translation_key or "" for d in binary_sensor.BINARY_SENSORS},
        "switch": {d.translation_key or "" for d in switch.SWITCHES},
        "number": {d.translation_key or "" for d in number.NUMBERS},
        "time": {d.translation_key or "" for d in time.TIMES},
        "image": {image.INVITATION_IMAGE.translation_key or ""},
    }
    assert {platform: set(keys) for platform, keys in strings.items()} == used
    for platform, keys in used.items():
        for key in keys:
            assert strings[platform][key]["name"]
    # Icons: all but the battery state of charge (its device class has dynamic icons).
    assert set(icons) == set(used)
    for platform, keys in icons.items():
        assert set(keys) <= used[platform]
        for key in used[platform] - {"battery_soc"}:
            assert key in keys, (platform, key)


# The rules of hassfest's script/hassfest/quality_scale.py (Bronze to Platinum).
QUALITY_SCALE_RULES = {
    "action-setup", "appropriate-polling", "brands", "common-modules", "config-flow",
    "config-flow-test-coverage", "dependency-transparency", "docs-actions", "docs-conditions",
    "docs-high-level-description", "docs-installation-instructions",
    "docs-removal-instructions", "docs-triggers", "entity-event-setup", "entity-unique-id",
    "has-entity-name", "runtime-data", "test-before-configure", "test-before-setup",
    "unique-config-entry", "action-exceptions", "config-entry-unloading",
    "docs-configuration-parameters", "docs-installation-parameters", "entity-unavailable",
    "integration-owner", "log-when-unavailable", "parallel-updates", "reauthentication-flow",
    "test-coverage", "devices", "diagnostics", "discovery", "discovery-update-info",
    "docs-data-update", "docs-examples", "docs-known-limitations", "docs-supported-devices",
    "docs-supported-functions", "docs-troubleshooting", "docs-use-cases", "dynamic-devices",
    "entity-category", "entity-device-class", "entity-disabled-by-default",
    "entity-translations", "exception-translations", "icon-translations",
    "reconfiguration-flow", "repair-issues", "stale-devices", "async-dependency",
    "inject-websession", "strict-typing",
}  # fmt: skip


def test_quality_scale_lists_every_rule() -> None:
    """quality_scale.yaml names every rule; each exempt or todo rule says why."""
    from pathlib import Path

    from homeassistant.util.yaml import load_yaml_dict

    path = Path(__file__).parent.parent / "custom_components/peer_energy/quality_scale.yaml"
    rules = load_yaml_dict(str(path))["rules"]
    assert set(rules) == QUALITY_SCALE_RULES
    for name, value in rules.items():
        if isinstance(value, str):
            assert value == "done", name
        else:
            assert value["status"] in {"done", "todo", "exempt"}, name
            assert value["status"] == "done" or value["comment"].strip(), name


async def test_asset_added_during_setup_is_not_lost(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    source_states: dict[str, Any],
) -> None:
    """An asset added while set-up waits (before the update listener exists) reloads once more."""
    from unittest.mock import patch

    from custom_components.peer_energy import async_setup_federation as real_setup

    hass.states.async_set("sensor.kettle_power", "2000", {"unit_of_measurement": "W"})
    subentry = ConfigSubentry(
        data=MappingProxyType(
            {
                CONF_ASSET_KIND: AssetKind.PLUG,
                CONF_ASSET_NAME: "Kettle",
                CONF_POWER_ENTITY: "sensor.kettle_power",
            }
        ),
        subentry_type=SUBENTRY_ASSET,
        title="Kettle",
        unique_id=None,
    )
    calls = 0

    async def setup_and_add(hass: HomeAssistant, entry: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the user adds an asset while the first set-up is under way
            hass.config_entries.async_add_subentry(entry, subentry)
        return await real_setup(hass, entry)

    mock_config_entry.add_to_hass(hass)
    with patch("custom_components.peer_energy.async_setup_federation", setup_and_add):
        # (the first set-up's own result is moot: its reload is already under way)
        await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    assert calls == 2  # reloaded once more
    assert mock_config_entry.state is ConfigEntryState.LOADED
    assert subentry.subentry_id in mock_config_entry.runtime_data.assets
