"""Asset subentry flows: add each kind, errors, duplicates, edit and removal."""

from __future__ import annotations

from collections.abc import Generator
import json
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import (
    SOURCE_USER,
    ConfigSubentry,
    ConfigSubentryData,
    SubentryFlowResult,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import voluptuous as vol

from custom_components.peer_energy.const import (
    CONF_ASSET_KIND,
    CONF_ASSET_NAME,
    CONF_CAPACITY_KWH,
    CONF_CURRENCY,
    CONF_CURRENT_ENTITY,
    CONF_ENERGY_ENTITY,
    CONF_EXPORT_ENERGY_ENTITY,
    CONF_EXPORT_PRICE,
    CONF_HOME_NAME,
    CONF_IMPORT_ENERGY_ENTITY,
    CONF_IMPORT_PRICE,
    CONF_MAX_CHARGE_W,
    CONF_MAX_DISCHARGE_W,
    CONF_MODE_ENTITY,
    CONF_PLUGGED_ENTITY,
    CONF_POWER_ENTITY,
    CONF_POWER_SIGN,
    CONF_SETPOINT_ENTITY,
    CONF_SLOT_MINUTES,
    CONF_SOC_ENTITY,
    CONF_SWITCH_ENTITY,
    DOMAIN,
    SUBENTRY_ASSET,
    AssetKind,
    PowerSign,
)

STRINGS = json.loads(
    (Path(__file__).parent.parent / "custom_components/peer_energy/strings.json").read_text(
        encoding="utf-8"
    )
)
ASSET_STRINGS = STRINGS["config_subentries"][SUBENTRY_ASSET]

# Source entities as the user's other integrations would provide them.
SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "sensor.pv_power": ("2300", {"unit_of_measurement": "W", "device_class": "power"}),
    "sensor.pv_energy": ("1234.5", {"unit_of_measurement": "kWh", "device_class": "energy"}),
    "sensor.battery_soc": ("64", {"unit_of_measurement": "%", "device_class": "battery"}),
    "sensor.battery_power": ("-1.2", {"unit_of_measurement": "kW", "device_class": "power"}),
    "select.battery_mode": ("auto", {"options": ["auto", "force_charge"]}),
    "number.battery_setpoint": ("0", {"unit_of_measurement": "W"}),
    "sensor.wallbox_power": ("0", {"unit_of_measurement": "W", "device_class": "power"}),
    "sensor.wallbox_energy": ("5500", {"unit_of_measurement": "Wh", "device_class": "energy"}),
    "binary_sensor.wallbox_plugged": ("on", {"device_class": "plug"}),
    "switch.wallbox_enable": ("off", {}),
    "number.wallbox_current": ("16", {"unit_of_measurement": "A"}),
    "switch.dishwasher": ("on", {}),
    "sensor.dishwasher_power": ("1900", {"unit_of_measurement": "W", "device_class": "power"}),
    "sensor.dishwasher_energy": ("88", {"unit_of_measurement": "kWh", "device_class": "energy"}),
    "sensor.grid_power": ("450", {"unit_of_measurement": "W", "device_class": "power"}),
    "sensor.grid_import": ("9000", {"unit_of_measurement": "kWh", "device_class": "energy"}),
    "sensor.grid_export": ("2.5", {"unit_of_measurement": "MWh", "device_class": "energy"}),
    "sensor.temperature": ("21.5", {"unit_of_measurement": "°C"}),
    "sensor.broken_power": ("abc", {"unit_of_measurement": "W"}),
}

# A complete, valid form per kind, and the subentry data it gives.
FORMS: dict[AssetKind, dict[str, Any]] = {
    AssetKind.PV: {
        CONF_ASSET_NAME: "Roof",
        CONF_POWER_ENTITY: "sensor.pv_power",
        CONF_ENERGY_ENTITY: "sensor.pv_energy",
    },
    AssetKind.BATTERY: {
        CONF_ASSET_NAME: "Basement battery",
        CONF_SOC_ENTITY: "sensor.battery_soc",
        CONF_POWER_ENTITY: "sensor.battery_power",
        CONF_POWER_SIGN: "positive_charge",
        CONF_CAPACITY_KWH: 9.6,
        CONF_MAX_CHARGE_W: 5000.0,
        CONF_MAX_DISCHARGE_W: 4600.4,
        CONF_MODE_ENTITY: "select.battery_mode",
        CONF_SETPOINT_ENTITY: "number.battery_setpoint",
    },
    AssetKind.EV_CHARGER: {
        CONF_ASSET_NAME: "Wallbox",
        CONF_POWER_ENTITY: "sensor.wallbox_power",
        CONF_ENERGY_ENTITY: "sensor.wallbox_energy",
        CONF_PLUGGED_ENTITY: "binary_sensor.wallbox_plugged",
        CONF_SWITCH_ENTITY: "switch.wallbox_enable",
        CONF_CURRENT_ENTITY: "number.wallbox_current",
    },
    AssetKind.PLUG: {
        CONF_ASSET_NAME: "Dishwasher",
        CONF_SWITCH_ENTITY: "switch.dishwasher",
        CONF_POWER_ENTITY: "sensor.dishwasher_power",
        CONF_ENERGY_ENTITY: "sensor.dishwasher_energy",
    },
    AssetKind.GRID_METER: {
        CONF_ASSET_NAME: "Grid connection",
        CONF_POWER_ENTITY: "sensor.grid_power",
        CONF_IMPORT_ENERGY_ENTITY: "sensor.grid_import",
        CONF_EXPORT_ENERGY_ENTITY: "sensor.grid_export",
    },
}
EXPECTED_DATA: dict[AssetKind, dict[str, Any]] = {
    kind: {CONF_ASSET_KIND: kind.value, **form} for kind, form in FORMS.items()
}
EXPECTED_DATA[AssetKind.BATTERY].update(
    {CONF_MAX_CHARGE_W: 5000, CONF_MAX_DISCHARGE_W: 4600, CONF_POWER_SIGN: "positive_charge"}
)
# Fields a user may leave empty, per kind.
OPTIONAL: dict[AssetKind, set[str]] = {
    AssetKind.PV: {CONF_ENERGY_ENTITY},
    AssetKind.BATTERY: {CONF_MODE_ENTITY, CONF_SETPOINT_ENTITY},
    AssetKind.EV_CHARGER: {
        CONF_ENERGY_ENTITY,
        CONF_PLUGGED_ENTITY,
        CONF_SWITCH_ENTITY,
        CONF_CURRENT_ENTITY,
    },
    AssetKind.PLUG: {CONF_ENERGY_ENTITY},
    AssetKind.GRID_METER: {CONF_IMPORT_ENERGY_ENTITY, CONF_EXPORT_ENERGY_ENTITY},
}


@pytest.fixture(autouse=True)
def mock_setup_entry() -> Generator[AsyncMock]:
    """Keep the runtime out of flow tests."""
    with (
        patch("custom_components.peer_energy.async_setup_entry", return_value=True) as setup_entry,
        patch("custom_components.peer_energy.async_unload_entry", return_value=True),
    ):
        yield setup_entry


@pytest.fixture(autouse=True)
def sources(hass: HomeAssistant) -> None:
    for entity_id, (state, attributes) in SOURCES.items():
        hass.states.async_set(entity_id, state, attributes)


def _entry(
    hass: HomeAssistant, subentries: list[ConfigSubentryData] | None = None
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=DOMAIN,
        title="Elm Street 4",
        data={
            CONF_HOME_NAME: "Elm Street 4",
            CONF_CURRENCY: "EUR",
            CONF_IMPORT_PRICE: 0.3,
            CONF_EXPORT_PRICE: 0.08,
            CONF_SLOT_MINUTES: 15,
        },
        subentries_data=subentries,
    )
    entry.add_to_hass(hass)
    return entry


@pytest.fixture
def entry(hass: HomeAssistant) -> MockConfigEntry:
    """A home with no assets yet."""
    return _entry(hass)


def _subentry(asset_kind: AssetKind, **changes: Any) -> ConfigSubentryData:
    data = {**EXPECTED_DATA[asset_kind], **changes}
    return ConfigSubentryData(
        data=data,
        subentry_type=SUBENTRY_ASSET,
        title=data[CONF_ASSET_NAME],
        unique_id=data[CONF_POWER_ENTITY],
    )


async def _open_form(
    hass: HomeAssistant, entry: MockConfigEntry, kind: AssetKind
) -> SubentryFlowResult:
    """Start "Add asset" and pick a kind in the menu."""
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_ASSET), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    assert result["step_id"] == "user"
    assert list(result["menu_options"]) == [kind.value for kind in AssetKind]
    assert set(result["menu_options"]) == set(ASSET_STRINGS["step"]["user"]["menu_options"])
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": kind.value}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == kind.value
    assert result["errors"] == {}
    return result


def _only(entry: MockConfigEntry) -> ConfigSubentry:
    (subentry,) = entry.subentries.values()
    return subentry


def assert_form_error(result: SubentryFlowResult, field: str, code: str) -> None:
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: code}
    assert code in ASSET_STRINGS["error"], f"untranslated error {code}"


async def test_subentry_type_supports_add_and_edit(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """The entry offers "Add asset" and "Edit asset" (the frontend reads this), and "Add
    community" while the home is in none. A community is not edited as a subentry: its
    address is changed in the entry's Reconfigure, while the home is a member."""
    await _open_form(hass, entry, AssetKind.PV)  # loads the flow handler
    assert entry.supported_subentry_types == {
        SUBENTRY_ASSET: {"supports_reconfigure": True},
        "community": {"supports_reconfigure": False},
    }
    assert {"user", "reconfigure"} <= set(ASSET_STRINGS["initiate_flow"])


async def test_no_add_community_while_in_one(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """A home in a community is not offered "Add community"; leaving offers it again."""
    from custom_components.peer_energy.config_flow import async_refresh_subentry_types

    await _open_form(hass, entry, AssetKind.PV)  # loads the flow handler
    assert "community" in entry.supported_subentry_types
    community = ConfigSubentry(
        data={"action": "create"}, subentry_type="community", title="Oak Lane", unique_id="c"
    )
    hass.config_entries.async_add_subentry(entry, community)
    # Home Assistant keeps its first answer until it is told to ask again (on every change
    # of the entry, by the entry's update listener).
    async_refresh_subentry_types(entry)
    assert entry.supported_subentry_types == {SUBENTRY_ASSET: {"supports_reconfigure": True}}
    hass.config_entries.async_remove_subentry(entry, community.subentry_id)
    async_refresh_subentry_types(entry)
    assert "community" in entry.supported_subentry_types


@pytest.mark.parametrize("kind", list(AssetKind))
async def test_empty_form_shows_an_error_on_every_needed_field(
    hass: HomeAssistant, entry: MockConfigEntry, kind: AssetKind
) -> None:
    """Submitting an empty form answers with an error on each field the kind needs (the
    frontend shows each under its field), not with a refusal the user cannot see."""
    from custom_components.peer_energy.config_flow import REQUIRED_FIELDS

    result = await _open_form(hass, entry, kind)
    # Nothing is pre-filled: no 0.1 kWh battery, no 0 W charge power.
    assert not any(
        key.default is not vol.UNDEFINED
        for key in result["data_schema"].schema
        if str(key) != CONF_POWER_SIGN
    )
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    needed = {CONF_ASSET_NAME, *REQUIRED_FIELDS[kind]}
    assert result["errors"] == {
        field: "name_required" if field == CONF_ASSET_NAME else "required" for field in needed
    }
    assert needed == set(FORMS[kind]) - OPTIONAL[kind] - {CONF_POWER_SIGN}
    assert "required" in ASSET_STRINGS["error"]
    assert not entry.subentries


async def test_hints_describe_what_fields_do() -> None:
    """No hint speaks of a "later" feature; every field the kind needs says so."""
    from custom_components.peer_energy.config_flow import REQUIRED_FIELDS

    for kind in AssetKind:
        hints = ASSET_STRINGS["step"][kind.value]["data_description"]
        assert not [key for key, text in hints.items() if "later" in text.lower()]
        for key in REQUIRED_FIELDS[kind]:
            assert hints[key].startswith("Required."), key


@pytest.mark.parametrize("kind", list(AssetKind))
async def test_add_each_kind(hass: HomeAssistant, entry: MockConfigEntry, kind: AssetKind) -> None:
    result = await _open_form(hass, entry, kind)
    step = ASSET_STRINGS["step"][kind.value]
    fields = {str(key) for key in result["data_schema"].schema}
    assert fields == set(FORMS[kind]) == set(step["data"]) == set(step["data_description"])

    result = await hass.config_entries.subentries.async_configure(result["flow_id"], FORMS[kind])
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == FORMS[kind][CONF_ASSET_NAME]
    subentry = _only(entry)
    assert subentry.subentry_type == SUBENTRY_ASSET
    assert subentry.title == FORMS[kind][CONF_ASSET_NAME]
    assert dict(subentry.data) == EXPECTED_DATA[kind]
    assert subentry.unique_id == FORMS[kind][CONF_POWER_ENTITY]


@pytest.mark.parametrize("kind", list(AssetKind))
async def test_optional_fields_may_stay_empty(
    hass: HomeAssistant, entry: MockConfigEntry, kind: AssetKind
) -> None:
    result = await _open_form(hass, entry, kind)
    form = {key: value for key, value in FORMS[kind].items() if key not in OPTIONAL[kind]}
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    data = dict(_only(entry).data)
    assert not OPTIONAL[kind] & set(data)
    assert data[CONF_POWER_ENTITY] == FORMS[kind][CONF_POWER_ENTITY]


async def test_battery_sign_defaults_to_positive_discharge(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    result = await _open_form(hass, entry, AssetKind.BATTERY)
    form = {k: v for k, v in FORMS[AssetKind.BATTERY].items() if k != CONF_POWER_SIGN}
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert _only(entry).data[CONF_POWER_SIGN] == PowerSign.POSITIVE_DISCHARGE


@pytest.mark.parametrize(
    ("kind", "change", "field", "code"),
    [
        (AssetKind.PV, {CONF_ASSET_NAME: "  "}, CONF_ASSET_NAME, "name_required"),
        (AssetKind.PV, {CONF_POWER_ENTITY: "sensor.gone"}, CONF_POWER_ENTITY, "entity_not_found"),
        (
            AssetKind.PV,
            {CONF_POWER_ENTITY: "sensor.broken_power"},
            CONF_POWER_ENTITY,
            "not_numeric",
        ),
        (AssetKind.PV, {CONF_POWER_ENTITY: "sensor.temperature"}, CONF_POWER_ENTITY, "power_unit"),
        (AssetKind.PV, {CONF_ENERGY_ENTITY: "sensor.pv_power"}, CONF_ENERGY_ENTITY, "energy_unit"),
        (
            AssetKind.BATTERY,
            {CONF_SOC_ENTITY: "sensor.battery_power"},
            CONF_SOC_ENTITY,
            "soc_unit",
        ),
        (
            AssetKind.BATTERY,
            {CONF_MODE_ENTITY: "select.gone"},
            CONF_MODE_ENTITY,
            "entity_not_found",
        ),
        (
            AssetKind.EV_CHARGER,
            {CONF_PLUGGED_ENTITY: "binary_sensor.gone"},
            CONF_PLUGGED_ENTITY,
            "entity_not_found",
        ),
        (
            AssetKind.PLUG,
            {CONF_SWITCH_ENTITY: "switch.gone"},
            CONF_SWITCH_ENTITY,
            "entity_not_found",
        ),
        (
            AssetKind.GRID_METER,
            {CONF_EXPORT_ENERGY_ENTITY: "sensor.temperature"},
            CONF_EXPORT_ENERGY_ENTITY,
            "energy_unit",
        ),
    ],
)
async def test_add_errors_and_recovery(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    kind: AssetKind,
    change: dict[str, Any],
    field: str,
    code: str,
) -> None:
    result = await _open_form(hass, entry, kind)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**FORMS[kind], **change}
    )
    assert_form_error(result, field, code)
    assert result["step_id"] == kind.value
    assert not entry.subentries

    result = await hass.config_entries.subentries.async_configure(result["flow_id"], FORMS[kind])
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert dict(_only(entry).data) == EXPECTED_DATA[kind]


async def test_inverter_asleep_is_accepted(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """A PV inverter that is unavailable at night can still be added."""
    hass.states.async_set("sensor.pv_power", "unavailable", {"unit_of_measurement": "W"})
    result = await _open_form(hass, entry, AssetKind.PV)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], FORMS[AssetKind.PV]
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_duplicate_name_and_power_sensor(hass: HomeAssistant) -> None:
    """Names are unique per home (any case), and a power sensor belongs to one asset."""
    entry = _entry(hass, [_subentry(AssetKind.PV)])
    result = await _open_form(hass, entry, AssetKind.PLUG)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**FORMS[AssetKind.PLUG], CONF_ASSET_NAME: " roof "}
    )
    assert_form_error(result, CONF_ASSET_NAME, "name_in_use")

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**FORMS[AssetKind.PLUG], CONF_POWER_ENTITY: "sensor.pv_power"}
    )
    assert_form_error(result, CONF_POWER_ENTITY, "power_entity_in_use")

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], FORMS[AssetKind.PLUG]
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert sorted(sub.title for sub in entry.subentries.values()) == ["Dishwasher", "Roof"]


async def test_same_device_is_not_added_twice(hass: HomeAssistant) -> None:
    """The same PV inverter added again, under another name, is refused."""
    entry = _entry(hass, [_subentry(AssetKind.PV)])
    result = await _open_form(hass, entry, AssetKind.PV)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**FORMS[AssetKind.PV], CONF_ASSET_NAME: "Roof again"}
    )
    assert_form_error(result, CONF_POWER_ENTITY, "power_entity_in_use")
    assert len(entry.subentries) == 1


# --- Edit (reconfigure) and removal --------------------------------------------------------


async def test_edit_shows_current_values(hass: HomeAssistant) -> None:
    entry = _entry(hass, [_subentry(AssetKind.BATTERY)])
    subentry = _only(entry)
    result = await entry.start_subentry_reconfigure_flow(hass, SUBENTRY_ASSET, subentry.subentry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == AssetKind.BATTERY.value
    suggested = {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }
    expected = dict(EXPECTED_DATA[AssetKind.BATTERY])
    expected.pop(CONF_ASSET_KIND)
    assert suggested == expected


async def test_edit_updates_data_title_and_unique_id(hass: HomeAssistant) -> None:
    entry = _entry(hass, [_subentry(AssetKind.PLUG), _subentry(AssetKind.PV)])
    plug = next(s for s in entry.subentries.values() if s.title == "Dishwasher")
    hass.states.async_set(
        "sensor.washer_power", "0", {"unit_of_measurement": "kW", "device_class": "power"}
    )
    result = await entry.start_subentry_reconfigure_flow(hass, SUBENTRY_ASSET, plug.subentry_id)
    # Keeping its own name and power sensor is not a duplicate of itself; the energy
    # sensor is cleared.
    form = {
        CONF_ASSET_NAME: "Washing machine",
        CONF_SWITCH_ENTITY: "switch.dishwasher",
        CONF_POWER_ENTITY: "sensor.washer_power",
    }
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert "reconfigure_successful" in ASSET_STRINGS["abort"]
    edited = entry.subentries[plug.subentry_id]
    assert edited.title == "Washing machine"
    assert edited.unique_id == "sensor.washer_power"
    assert dict(edited.data) == {CONF_ASSET_KIND: AssetKind.PLUG.value, **form}
    assert len(entry.subentries) == 2


async def test_edit_keeps_own_name(hass: HomeAssistant) -> None:
    entry = _entry(hass, [_subentry(AssetKind.GRID_METER)])
    meter = _only(entry)
    result = await entry.start_subentry_reconfigure_flow(hass, SUBENTRY_ASSET, meter.subentry_id)
    form = {**FORMS[AssetKind.GRID_METER], CONF_IMPORT_ENERGY_ENTITY: "sensor.pv_energy"}
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert _only(entry).data[CONF_IMPORT_ENERGY_ENTITY] == "sensor.pv_energy"
    assert _only(entry).title == "Grid connection"


async def test_edit_errors_and_recovery(hass: HomeAssistant) -> None:
    entry = _entry(hass, [_subentry(AssetKind.PV), _subentry(AssetKind.EV_CHARGER)])
    wallbox = next(s for s in entry.subentries.values() if s.title == "Wallbox")
    result = await entry.start_subentry_reconfigure_flow(hass, SUBENTRY_ASSET, wallbox.subentry_id)
    form = FORMS[AssetKind.EV_CHARGER]

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**form, CONF_ASSET_NAME: "ROOF"}
    )
    assert_form_error(result, CONF_ASSET_NAME, "name_in_use")
    assert result["step_id"] == AssetKind.EV_CHARGER.value

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**form, CONF_POWER_ENTITY: "sensor.pv_power"}
    )
    assert_form_error(result, CONF_POWER_ENTITY, "power_entity_in_use")

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**form, CONF_CURRENT_ENTITY: "number.gone"}
    )
    assert_form_error(result, CONF_CURRENT_ENTITY, "entity_not_found")
    assert dict(entry.subentries[wallbox.subentry_id].data) == EXPECTED_DATA[AssetKind.EV_CHARGER]

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**form, CONF_ASSET_NAME: "Garage wallbox"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.subentries[wallbox.subentry_id].title == "Garage wallbox"


async def test_edit_unknown_kind_aborts(hass: HomeAssistant) -> None:
    """An asset written by a newer version is not edited with the wrong form."""
    entry = _entry(hass, [_subentry(AssetKind.PV, **{CONF_ASSET_KIND: "heat_pump"})])
    result = await entry.start_subentry_reconfigure_flow(
        hass, SUBENTRY_ASSET, _only(entry).subentry_id
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "unknown_asset_kind"
    assert "unknown_asset_kind" in ASSET_STRINGS["abort"]


async def test_remove_asset(hass: HomeAssistant, mock_setup_entry: AsyncMock) -> None:
    """Removing an asset drops it from the entry; the same device can be added again."""
    entry = _entry(hass, [_subentry(AssetKind.PV), _subentry(AssetKind.PLUG)])
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    roof = next(s for s in entry.subentries.values() if s.title == "Roof")

    assert hass.config_entries.async_remove_subentry(entry, roof.subentry_id)
    await hass.async_block_till_done()
    assert [s.title for s in entry.subentries.values()] == ["Dishwasher"]

    result = await _open_form(hass, entry, AssetKind.PV)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], FORMS[AssetKind.PV]
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert sorted(s.title for s in entry.subentries.values()) == ["Dishwasher", "Roof"]


def test_every_asset_error_is_translated() -> None:
    from custom_components.peer_energy import config_flow
    from custom_components.peer_energy.prices import SourceError

    codes = {
        config_flow.ERROR_NAME_REQUIRED,
        config_flow.ERROR_NAME_IN_USE,
        config_flow.ERROR_POWER_IN_USE,
        config_flow.ERROR_REQUIRED,
        SourceError.ENTITY_NOT_FOUND,
        SourceError.NOT_NUMERIC,
        SourceError.POWER_UNIT,
        SourceError.ENERGY_UNIT,
        SourceError.SOC_UNIT,
    }
    assert codes <= set(ASSET_STRINGS["error"])
    assert set(ASSET_STRINGS["step"]) == {"user", *(kind.value for kind in AssetKind)}


@pytest.mark.parametrize("kind", list(AssetKind))
async def test_add_and_edit_over_rest(
    hass: HomeAssistant, hass_client: Any, entry: MockConfigEntry, kind: AssetKind
) -> None:
    """The subentry flow as the frontend and the demo drive it, JSON over HTTP."""
    from homeassistant.setup import async_setup_component

    assert await async_setup_component(hass, "config", {})
    client = await hass_client()
    base = "/api/config/config_entries/subentries/flow"
    response = await client.post(base, json={"handler": [entry.entry_id, SUBENTRY_ASSET]})
    assert response.status == 200
    menu = await response.json()
    assert menu["type"] == "menu"
    assert menu["step_id"] == "user"

    response = await client.post(f"{base}/{menu['flow_id']}", json={"next_step_id": kind.value})
    form = await response.json()
    assert form["step_id"] == kind.value
    assert [field["name"] for field in form["data_schema"]] == list(FORMS[kind])

    response = await client.post(f"{base}/{form['flow_id']}", json=FORMS[kind])
    assert response.status == 200
    assert (await response.json())["type"] == "create_entry"
    subentry = _only(entry)
    assert dict(subentry.data) == EXPECTED_DATA[kind]

    # Edit: the same endpoint with a subentry id opens the kind's form directly.
    response = await client.post(
        base,
        json={"handler": [entry.entry_id, SUBENTRY_ASSET], "subentry_id": subentry.subentry_id},
    )
    form = await response.json()
    assert form["type"] == "form"
    assert form["step_id"] == kind.value
    response = await client.post(
        f"{base}/{form['flow_id']}", json={**FORMS[kind], CONF_ASSET_NAME: "Renamed"}
    )
    result = await response.json()
    assert result["type"] == "abort"
    assert result["reason"] == "reconfigure_successful"
    assert _only(entry).title == "Renamed"
