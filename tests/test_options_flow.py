"""Options flow: the owner's trading policy."""

from __future__ import annotations

from collections.abc import Generator
import json
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import ConfigFlowResult
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.peer_energy.const import (
    CONF_BATTERY_RESERVE_PCT,
    CONF_CLEAN_ONLY,
    CONF_CONTROL_MODE,
    CONF_CURRENCY,
    CONF_DISPLAY_NAME,
    CONF_EXPORT_PRICE,
    CONF_HOME_NAME,
    CONF_IMPORT_PRICE,
    CONF_MAX_BUY_PRICE,
    CONF_MIN_SELL_PRICE,
    CONF_PEAK_MARGIN_PCT,
    CONF_SLOT_MINUTES,
    DEFAULT_BATTERY_RESERVE_PCT,
    DEFAULT_CLEAN_ONLY,
    DEFAULT_CONTROL_MODE,
    DEFAULT_PEAK_MARGIN_PCT,
    DOMAIN,
    ControlMode,
)

STRINGS = json.loads(
    (Path(__file__).parent.parent / "custom_components/peer_energy/strings.json").read_text(
        encoding="utf-8"
    )
)
OPTION_STRINGS = STRINGS["options"]

POLICY: dict[str, Any] = {
    CONF_CLEAN_ONLY: True,
    CONF_MAX_BUY_PRICE: 0.25,
    CONF_MIN_SELL_PRICE: 0.12,
    CONF_PEAK_MARGIN_PCT: 35.0,
    CONF_BATTERY_RESERVE_PCT: 30.0,
    CONF_CONTROL_MODE: "control",
    CONF_DISPLAY_NAME: "The Millers",
}


@pytest.fixture
def mock_setup_entry() -> Generator[AsyncMock]:
    """Keep the runtime out of flow tests."""
    with (
        patch("custom_components.peer_energy.async_setup_entry", return_value=True) as setup_entry,
        patch("custom_components.peer_energy.async_unload_entry", return_value=True),
    ):
        yield setup_entry


@pytest.fixture
def entry(hass: HomeAssistant) -> MockConfigEntry:
    config_entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=DOMAIN,
        title="Elm Street 4",
        data={
            CONF_HOME_NAME: "Elm Street 4",
            CONF_CURRENCY: "SEK",
            CONF_IMPORT_PRICE: 1.8,
            CONF_EXPORT_PRICE: 0.6,
            CONF_SLOT_MINUTES: 15,
        },
    )
    config_entry.add_to_hass(hass)
    return config_entry


def _suggested(result: ConfigFlowResult) -> dict[str, Any]:
    schema = result["data_schema"]
    assert schema is not None
    return {
        str(key): key.description["suggested_value"]
        for key in schema.schema
        if key.description and "suggested_value" in key.description
    }


async def test_form_defaults_and_texts(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    assert result["errors"] == {}
    assert result["description_placeholders"] == {"currency": "SEK"}
    schema = result["data_schema"]
    assert schema is not None
    assert schema({}) == {
        CONF_CLEAN_ONLY: DEFAULT_CLEAN_ONLY,
        CONF_PEAK_MARGIN_PCT: DEFAULT_PEAK_MARGIN_PCT,
        CONF_BATTERY_RESERVE_PCT: DEFAULT_BATTERY_RESERVE_PCT,
        CONF_CONTROL_MODE: DEFAULT_CONTROL_MODE,
    }
    assert DEFAULT_CONTROL_MODE is ControlMode.ADVISE
    step = OPTION_STRINGS["step"]["init"]
    fields = {str(key) for key in schema.schema}
    assert fields == set(POLICY) == set(step["data"]) == set(step["data_description"])
    assert set(STRINGS["selector"][CONF_CONTROL_MODE]["options"]) == {m.value for m in ControlMode}


async def test_defaults_are_saved(
    hass: HomeAssistant, entry: MockConfigEntry, mock_setup_entry: AsyncMock
) -> None:
    """Submitting the untouched form stores the defaults and no price limits."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    schema = result["data_schema"]
    assert schema is not None
    result = await hass.config_entries.options.async_configure(result["flow_id"], schema({}))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert dict(entry.options) == {
        CONF_CLEAN_ONLY: False,
        CONF_PEAK_MARGIN_PCT: 20,
        CONF_BATTERY_RESERVE_PCT: 20,
        CONF_CONTROL_MODE: "advise",
    }


async def test_save_policy(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], POLICY)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert dict(entry.options) == {
        CONF_CLEAN_ONLY: True,
        CONF_MAX_BUY_PRICE: 0.25,
        CONF_MIN_SELL_PRICE: 0.12,
        CONF_PEAK_MARGIN_PCT: 35,
        CONF_BATTERY_RESERVE_PCT: 30,
        CONF_CONTROL_MODE: "control",
        CONF_DISPLAY_NAME: "The Millers",
    }
    assert isinstance(entry.options[CONF_PEAK_MARGIN_PCT], int)
    assert isinstance(entry.options[CONF_BATTERY_RESERVE_PCT], int)

    # Opening the form again shows the saved policy; clearing a limit removes it.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert _suggested(result) == {**POLICY, CONF_PEAK_MARGIN_PCT: 35, CONF_BATTERY_RESERVE_PCT: 30}
    without_limit = {k: v for k, v in POLICY.items() if k != CONF_MAX_BUY_PRICE}
    result = await hass.config_entries.options.async_configure(result["flow_id"], without_limit)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert CONF_MAX_BUY_PRICE not in entry.options
    assert entry.options[CONF_MIN_SELL_PRICE] == 0.12


async def test_equal_limits_are_allowed(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**POLICY, CONF_MIN_SELL_PRICE: 0.25}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({CONF_MIN_SELL_PRICE: 0.26}, CONF_MIN_SELL_PRICE, "min_sell_above_max_buy"),
        ({CONF_MAX_BUY_PRICE: float("nan")}, CONF_MAX_BUY_PRICE, "invalid_price"),
        ({CONF_MIN_SELL_PRICE: float("inf")}, CONF_MIN_SELL_PRICE, "invalid_price"),
        ({CONF_DISPLAY_NAME: "x" * 41}, CONF_DISPLAY_NAME, "invalid_display_name"),
        ({CONF_DISPLAY_NAME: "tab\there"}, CONF_DISPLAY_NAME, "invalid_display_name"),
    ],
)
async def test_errors_and_recovery(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    change: dict[str, Any],
    field: str,
    code: str,
) -> None:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**POLICY, **change}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: code}
    assert code in OPTION_STRINGS["error"]
    assert _suggested(result)[CONF_CONTROL_MODE] == "control"  # the input is kept
    assert not entry.options

    result = await hass.config_entries.options.async_configure(result["flow_id"], POLICY)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[CONF_MIN_SELL_PRICE] == 0.12


async def test_out_of_range_percent_is_refused(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """The selectors bound the percentages; Home Assistant rejects the submit."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    with pytest.raises(InvalidData) as info:
        await hass.config_entries.options.async_configure(
            result["flow_id"], {**POLICY, CONF_BATTERY_RESERVE_PCT: 101}
        )
    assert set(info.value.schema_errors) == {CONF_BATTERY_RESERVE_PCT}
    assert not entry.options


async def test_options_over_rest(
    hass: HomeAssistant, hass_client: Any, entry: MockConfigEntry, mock_setup_entry: AsyncMock
) -> None:
    """The options flow as the frontend and the demo drive it, JSON over HTTP."""
    from homeassistant.setup import async_setup_component

    await hass.config_entries.async_setup(entry.entry_id)
    assert await async_setup_component(hass, "config", {})
    client = await hass_client()
    base = "/api/config/config_entries/options/flow"
    response = await client.post(base, json={"handler": entry.entry_id})
    assert response.status == 200
    form = await response.json()
    assert form["step_id"] == "init"
    assert [field["name"] for field in form["data_schema"]] == list(POLICY)

    response = await client.post(f"{base}/{form['flow_id']}", json=POLICY)
    assert response.status == 200
    assert (await response.json())["type"] == "create_entry"
    assert entry.options[CONF_CONTROL_MODE] == "control"
