"""Config flow (user step, single instance) and reconfigure flow of Peer Energy."""

from __future__ import annotations

from collections.abc import Generator
import json
import math
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_USER, ConfigFlowResult
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, UnknownFlow
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.peer_energy.const import (
    CONF_CARBON_INTENSITY_ENTITY,
    CONF_CURRENCY,
    CONF_EXPORT_PRICE,
    CONF_EXPORT_PRICE_ENTITY,
    CONF_HOME_NAME,
    CONF_IMPORT_PRICE,
    CONF_IMPORT_PRICE_ENTITY,
    CONF_SLOT_MINUTES,
    DOMAIN,
)

STRINGS = json.loads(
    (Path(__file__).parent.parent / "custom_components/peer_energy/strings.json").read_text(
        encoding="utf-8"
    )
)

NORD_POOL = "sensor.nord_pool_price"
FEED_IN = "sensor.feed_in_tariff"
CO2 = "sensor.co2_intensity"


@pytest.fixture
def mock_setup_entry() -> Generator[AsyncMock]:
    """Keep the runtime out of flow tests: setting the entry up or down just succeeds."""
    with (
        patch("custom_components.peer_energy.async_setup_entry", return_value=True) as setup_entry,
        patch("custom_components.peer_energy.async_unload_entry", return_value=True),
    ):
        yield setup_entry


@pytest.fixture
def sources(hass: HomeAssistant) -> None:
    """Price and carbon entities as Nord Pool, a supplier and CO2 Signal would give them."""
    hass.states.async_set(NORD_POOL, "0.2549", {"unit_of_measurement": "EUR/kWh"})
    hass.states.async_set(FEED_IN, "7.9", {"unit_of_measurement": "ct/kWh"})
    hass.states.async_set(CO2, "312", {"unit_of_measurement": "gCO2eq/kWh"})


def assert_form_error(result: ConfigFlowResult, field: str, code: str) -> None:
    """The form is shown again with exactly this error, and the error is translated."""
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: code}
    assert code in STRINGS["config"]["error"], f"untranslated error {code}"


def suggested_values(result: ConfigFlowResult) -> dict[str, Any]:
    """The values a form shows pre-filled."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


async def _start(hass: HomeAssistant) -> ConfigFlowResult:
    return await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})


async def _skip_community(hass: HomeAssistant, result: Any) -> Any:
    """Answer the community menu that follows the home step with "skip for now"."""
    if result["type"] is FlowResultType.MENU and result["step_id"] == "community":
        return await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": "skip_community"}
        )
    return result


def _fixed(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        CONF_HOME_NAME: "Elm Street 4",
        CONF_CURRENCY: "EUR",
        CONF_IMPORT_PRICE: 0.3,
        CONF_EXPORT_PRICE: 0.08,
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


async def test_user_step_shows_defaults(hass: HomeAssistant) -> None:
    hass.config.location_name = "Elm Street 4"
    hass.config.currency = "EUR"
    result = await _start(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    schema = result["data_schema"]({CONF_IMPORT_PRICE: 0.3, CONF_EXPORT_PRICE: 0.1})
    assert schema[CONF_HOME_NAME] == "Elm Street 4"
    assert schema[CONF_CURRENCY] == "EUR"
    # Typical euro-area grid prices are suggested (the fields can be cleared); the slot
    # length is not asked here: it is the community's rule, or 15 minutes alone.
    assert suggested_values(result) == {CONF_IMPORT_PRICE: 0.3, CONF_EXPORT_PRICE: 0.08}
    assert CONF_SLOT_MINUTES not in schema
    # Every field of the form is labelled and described.
    step = STRINGS["config"]["step"]["user"]
    fields = {str(key) for key in result["data_schema"].schema}
    assert fields == set(step["data"]) == set(step["data_description"])


async def test_no_suggested_prices_for_other_currencies(hass: HomeAssistant) -> None:
    """Only euro prices are suggested; another currency's fields start empty."""
    hass.config.currency = "SEK"
    result = await _start(hass)
    assert suggested_values(result) == {}


async def test_user_fixed_prices(hass: HomeAssistant, mock_setup_entry: AsyncMock) -> None:
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _fixed(**{CONF_HOME_NAME: "  Elm Street 4 "})
    )
    await hass.async_block_till_done()
    result = await _skip_community(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Elm Street 4"
    assert result["data"] == {
        CONF_HOME_NAME: "Elm Street 4",
        CONF_CURRENCY: "EUR",
        CONF_IMPORT_PRICE: 0.3,
        CONF_EXPORT_PRICE: 0.08,
        CONF_SLOT_MINUTES: 15,
    }
    assert result["result"].unique_id == DOMAIN
    assert len(mock_setup_entry.mock_calls) == 1


async def test_user_price_entities_and_carbon(
    hass: HomeAssistant, sources: None, mock_setup_entry: AsyncMock
) -> None:
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_HOME_NAME: "Elm Street 4",
            CONF_CURRENCY: "EUR",
            CONF_IMPORT_PRICE_ENTITY: NORD_POOL,
            CONF_EXPORT_PRICE_ENTITY: FEED_IN,
            CONF_CARBON_INTENSITY_ENTITY: CO2,
        },
    )
    result = await _skip_community(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {
        CONF_HOME_NAME: "Elm Street 4",
        CONF_CURRENCY: "EUR",
        CONF_IMPORT_PRICE_ENTITY: NORD_POOL,
        CONF_EXPORT_PRICE_ENTITY: FEED_IN,
        CONF_CARBON_INTENSITY_ENTITY: CO2,
        CONF_SLOT_MINUTES: 15,
    }


async def test_picked_entity_replaces_the_suggested_fixed_price(
    hass: HomeAssistant, sources: None, mock_setup_entry: AsyncMock
) -> None:
    """A price entity picked while the fixed price is still filled in is used instead."""
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _fixed(**{CONF_IMPORT_PRICE_ENTITY: NORD_POOL})
    )
    result = await _skip_community(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_IMPORT_PRICE_ENTITY] == NORD_POOL
    assert CONF_IMPORT_PRICE not in result["data"]
    assert result["data"][CONF_EXPORT_PRICE] == 0.08


async def test_user_entity_import_with_higher_fixed_export(
    hass: HomeAssistant, sources: None, mock_setup_entry: AsyncMock
) -> None:
    """A moving import price is not compared with a fixed feed-in tariff at set-up."""
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        _fixed(
            **{CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: NORD_POOL, CONF_EXPORT_PRICE: 0.5}
        ),
    )
    result = await _skip_community(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_EXPORT_PRICE] == 0.5


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({CONF_HOME_NAME: "   "}, CONF_HOME_NAME, "name_required"),
        ({CONF_IMPORT_PRICE: None}, CONF_IMPORT_PRICE, "price_required"),
        ({CONF_EXPORT_PRICE: None}, CONF_EXPORT_PRICE, "price_required"),
        ({CONF_IMPORT_PRICE: float("nan")}, CONF_IMPORT_PRICE, "invalid_price"),
        ({CONF_EXPORT_PRICE: float("inf")}, CONF_EXPORT_PRICE, "invalid_price"),
        ({CONF_EXPORT_PRICE: 0.31}, CONF_EXPORT_PRICE, "export_above_import"),
        (
            {CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: "sensor.missing"},
            CONF_IMPORT_PRICE_ENTITY,
            "entity_not_found",
        ),
        (
            {CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: "sensor.text_price"},
            CONF_IMPORT_PRICE_ENTITY,
            "not_numeric",
        ),
        (
            {CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: "sensor.mwh_price"},
            CONF_IMPORT_PRICE_ENTITY,
            "price_unit",
        ),
        (
            {CONF_EXPORT_PRICE: None, CONF_EXPORT_PRICE_ENTITY: "sensor.sek_price"},
            CONF_EXPORT_PRICE_ENTITY,
            "currency_mismatch",
        ),
        (
            {CONF_CARBON_INTENSITY_ENTITY: "sensor.missing"},
            CONF_CARBON_INTENSITY_ENTITY,
            "entity_not_found",
        ),
        (
            {CONF_CARBON_INTENSITY_ENTITY: "sensor.text_price"},
            CONF_CARBON_INTENSITY_ENTITY,
            "not_numeric",
        ),
        (
            {CONF_CARBON_INTENSITY_ENTITY: "sensor.mwh_price"},
            CONF_CARBON_INTENSITY_ENTITY,
            "carbon_unit",
        ),
    ],
)
async def test_user_errors_and_recovery(
    hass: HomeAssistant,
    sources: None,
    mock_setup_entry: AsyncMock,
    change: dict[str, Any],
    field: str,
    code: str,
) -> None:
    """Each bad input gives its translated error on its field; fixing it creates the entry."""
    hass.states.async_set("sensor.text_price", "cheap", {"unit_of_measurement": "EUR/kWh"})
    hass.states.async_set("sensor.mwh_price", "42", {"unit_of_measurement": "EUR/MWh"})
    hass.states.async_set("sensor.sek_price", "0.5", {"unit_of_measurement": "SEK/kWh"})
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], _fixed(**change))
    assert_form_error(result, field, code)
    # The form keeps what the user typed.
    shown = suggested_values(result)
    for key, value in _fixed(**change).items():
        if not (isinstance(value, float) and math.isnan(value)):  # NaN never equals itself
            assert shown[key] == value

    result = await hass.config_entries.flow.async_configure(result["flow_id"], _fixed())
    result = await _skip_community(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_IMPORT_PRICE] == 0.3
    assert len(mock_setup_entry.mock_calls) == 1


async def test_price_entity_unavailable_at_setup_is_accepted(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """A price service that has not answered yet does not block set-up."""
    hass.states.async_set(NORD_POOL, "unavailable", {"unit_of_measurement": "EUR/kWh"})
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _fixed(**{CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: NORD_POOL})
    )
    result = await _skip_community(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_IMPORT_PRICE_ENTITY] == NORD_POOL
    assert CONF_IMPORT_PRICE not in result["data"]


async def test_single_instance(hass: HomeAssistant) -> None:
    MockConfigEntry(domain=DOMAIN, unique_id=DOMAIN, data=_fixed()).add_to_hass(hass)
    result = await _start(hass)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "single_instance_allowed"
    assert "single_instance_allowed" in STRINGS["config"]["abort"]


async def test_second_flow_aborts_when_first_finishes(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """Two forms open at once: the second one cannot make a second entry.

    The manifest declares ``single_config_entry``, so Home Assistant closes the other
    open flows as soon as the first one creates the entry.
    """
    first = await _start(hass)
    second = await _start(hass)
    result = await hass.config_entries.flow.async_configure(first["flow_id"], _fixed())
    result = await _skip_community(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    with pytest.raises(UnknownFlow):
        await hass.config_entries.flow.async_configure(second["flow_id"], _fixed())
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


# --- Reconfigure ---------------------------------------------------------------------------


@pytest.fixture
def entry(hass: HomeAssistant) -> MockConfigEntry:
    """A set-up home with fixed prices."""
    config_entry = MockConfigEntry(
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
    )
    config_entry.add_to_hass(hass)
    return config_entry


async def test_reconfigure_shows_current_values(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    assert suggested_values(result) == {
        CONF_HOME_NAME: "Elm Street 4",
        CONF_CURRENCY: "EUR",
        CONF_IMPORT_PRICE: 0.3,
        CONF_EXPORT_PRICE: 0.08,
        CONF_SLOT_MINUTES: "15",
    }
    # A home in no community sets its own slot length here; neighbours' address and a
    # community broker are not asked (there are none).
    step = STRINGS["config"]["step"]["reconfigure"]
    fields = {str(key) for key in result["data_schema"].schema}
    community_only = {"address", "broker_url", "broker_username", "broker_password"}
    assert fields == set(step["data_description"]) - community_only


async def test_reconfigure_switches_to_entities_and_reloads(
    hass: HomeAssistant, entry: MockConfigEntry, sources: None, mock_setup_entry: AsyncMock
) -> None:
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert len(mock_setup_entry.mock_calls) == 1

    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_HOME_NAME: "Elm Street 4a",
            CONF_CURRENCY: "EUR",
            CONF_IMPORT_PRICE_ENTITY: NORD_POOL,
            CONF_EXPORT_PRICE_ENTITY: FEED_IN,
            CONF_CARBON_INTENSITY_ENTITY: CO2,
            CONF_SLOT_MINUTES: "30",
        },
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert "reconfigure_successful" in STRINGS["config"]["abort"]
    # The data is replaced: the old fixed prices are gone.
    assert dict(entry.data) == {
        CONF_HOME_NAME: "Elm Street 4a",
        CONF_CURRENCY: "EUR",
        CONF_IMPORT_PRICE_ENTITY: NORD_POOL,
        CONF_EXPORT_PRICE_ENTITY: FEED_IN,
        CONF_CARBON_INTENSITY_ENTITY: CO2,
        CONF_SLOT_MINUTES: 30,
    }
    assert entry.title == "Elm Street 4a"
    assert len(mock_setup_entry.mock_calls) == 2  # reloaded


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({CONF_EXPORT_PRICE: 0.5}, CONF_EXPORT_PRICE, "export_above_import"),
        ({CONF_EXPORT_PRICE: None}, CONF_EXPORT_PRICE, "price_required"),
        (
            {CONF_CURRENCY: "SEK", CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: NORD_POOL},
            CONF_IMPORT_PRICE_ENTITY,
            "currency_mismatch",
        ),
        ({CONF_CARBON_INTENSITY_ENTITY: NORD_POOL}, CONF_CARBON_INTENSITY_ENTITY, "carbon_unit"),
    ],
)
async def test_reconfigure_errors_and_recovery(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    sources: None,
    mock_setup_entry: AsyncMock,
    change: dict[str, Any],
    field: str,
    code: str,
) -> None:
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], _fixed(**change))
    assert_form_error(result, field, code)
    assert result["step_id"] == "reconfigure"
    assert entry.data[CONF_EXPORT_PRICE] == 0.08  # nothing saved yet

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _fixed(**{CONF_EXPORT_PRICE: 0.1})
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_EXPORT_PRICE] == 0.1


def test_every_config_error_is_translated() -> None:
    """The error texts are written for the codes the flow and prices.py can give."""
    from custom_components.peer_energy import config_flow
    from custom_components.peer_energy.prices import SourceError

    codes = {
        config_flow.ERROR_NAME_REQUIRED,
        config_flow.ERROR_PRICE_REQUIRED,
        config_flow.ERROR_ADDRESS_NOT_SENT,
        config_flow.ERROR_EXPORT_ABOVE_IMPORT,
        SourceError.ENTITY_NOT_FOUND,
        SourceError.NOT_NUMERIC,
        SourceError.INVALID_PRICE,
        SourceError.PRICE_UNIT,
        SourceError.CURRENCY_MISMATCH,
        SourceError.CARBON_UNIT,
    }
    assert codes <= set(STRINGS["config"]["error"])


async def test_historic_currency_default_falls_back(hass: HomeAssistant) -> None:
    """A currency the selector does not offer is not used as the form's default."""
    hass.config.currency = "DEM"
    result = await _start(hass)
    schema = result["data_schema"]
    assert schema is not None
    assert schema({CONF_IMPORT_PRICE: 0.3, CONF_EXPORT_PRICE: 0.1})[CONF_CURRENCY] == "EUR"


async def test_user_flow_over_rest(
    hass: HomeAssistant,
    hass_client: Any,
    sources: None,
    mock_setup_entry: AsyncMock,
) -> None:
    """The flow as the frontend and the demo drive it: JSON over HTTP, schema serialised."""
    from homeassistant.setup import async_setup_component

    assert await async_setup_component(hass, "config", {})
    client = await hass_client()
    response = await client.post(
        "/api/config/config_entries/flow", json={"handler": DOMAIN, "show_advanced_options": False}
    )
    assert response.status == 200
    form = await response.json()
    assert form["step_id"] == "user"
    names = [field["name"] for field in form["data_schema"]]
    assert names == [
        CONF_HOME_NAME,
        CONF_CURRENCY,
        CONF_IMPORT_PRICE,
        CONF_IMPORT_PRICE_ENTITY,
        CONF_EXPORT_PRICE,
        CONF_EXPORT_PRICE_ENTITY,
        CONF_CARBON_INTENSITY_ENTITY,
    ]
    price = next(field for field in form["data_schema"] if field["name"] == CONF_IMPORT_PRICE)
    assert price["selector"]["number"]["unit_of_measurement"] == f"{hass.config.currency}/kWh"

    url = f"/api/config/config_entries/flow/{form['flow_id']}"
    response = await client.post(url, json=_fixed(**{CONF_EXPORT_PRICE: 0.9}))
    assert response.status == 200
    again = await response.json()
    assert again["errors"] == {CONF_EXPORT_PRICE: "export_above_import"}

    response = await client.post(
        url,
        json=_fixed(
            **{
                CONF_IMPORT_PRICE: None,
                CONF_IMPORT_PRICE_ENTITY: NORD_POOL,
                CONF_EXPORT_PRICE: 0.05,
            }
        ),
    )
    assert response.status == 200
    done = await response.json()
    # After the home: the community menu; "skip for now" creates the entry.
    assert done["type"] == "menu"
    assert done["step_id"] == "community"
    assert done["menu_options"] == ["create_community", "join_community", "skip_community"]
    response = await client.post(url, json={"next_step_id": "skip_community"})
    done = await response.json()
    assert done["type"] == "create_entry"
    assert done["title"] == "Elm Street 4"
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.data[CONF_IMPORT_PRICE_ENTITY] == NORD_POOL


def _texts(node: Any, path: str = "") -> Generator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _texts(value, f"{path}.{key}")
    else:
        yield path, node


def test_flow_strings_follow_hassfest_rules() -> None:
    """The flow sections obey the rules hassfest applies to translations.

    Checked here by hand (home-assistant/core script/hassfest/translations.py): steps only
    use known keys, every data_description belongs to a data field, subentry types name
    their entry type and "Add" action, selector option keys are translation keys, texts have
    no URL, HTML or outer spaces, and placeholders are identifiers. References such as
    [%key:...%] are not resolved for custom integrations, so none are used.
    """
    import re
    import string

    step_keys = {"title", "description", "data", "data_description", "menu_options", "submit"}
    flows = {"config": STRINGS["config"], "options": STRINGS["options"]}
    flows |= {f"subentry {k}": v for k, v in STRINGS["config_subentries"].items()}
    for name, flow in flows.items():
        assert set(flow) <= {"step", "error", "abort", "progress", "initiate_flow", "entry_type"}, (
            name
        )
        for step_id, step in flow["step"].items():
            assert set(step) <= step_keys, (name, step_id)
            assert set(step.get("data_description", {})) <= set(step.get("data", {}))
        if name.startswith("subentry"):
            assert flow["entry_type"]
            assert "user" in flow["initiate_flow"]
    key_pattern = re.compile(r"^(?!.+[_-]{2})(?![_-])[a-z0-9-_]+(?<![_-])$")
    for selector in STRINGS["selector"].values():
        assert all(key_pattern.match(option) for option in selector["options"])

    sections = ("config", "config_subentries", "options", "selector")
    for path, text in _texts({key: STRINGS[key] for key in sections}):
        assert isinstance(text, str), path
        assert text == text.strip(), path
        assert text, path
        assert not re.search(r"https?://|www\.|<[a-z/]", text, re.IGNORECASE), path
        assert "[%key:" not in text, path
        for _, field, _, _ in string.Formatter().parse(text):
            assert field is None or field.isidentifier(), path
