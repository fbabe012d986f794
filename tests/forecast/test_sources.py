"""Solar forecasts, forward prices and fallbacks, read from a running Home Assistant."""

from __future__ import annotations

from datetime import date, datetime, timedelta
import json
from typing import Any
from unittest.mock import AsyncMock
from zoneinfo import ZoneInfo

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, SupportsResponse
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    mock_integration,
)

from custom_components.peer_energy.const import (
    CONF_EXPORT_PRICE,
    CONF_EXPORT_PRICE_ENTITY,
    CONF_IMPORT_PRICE,
    CONF_IMPORT_PRICE_ENTITY,
)
from custom_components.peer_energy.diagnostics import async_get_config_entry_diagnostics
from custom_components.peer_energy.forecasts import (
    ACTION_RETRY_S,
    SOLAR_REFRESH_S,
    NoPriceError,
    async_home_forecast,
    forecaster_for,
)
from tests.conftest import SOURCE_STATES
from tests.forecast.conftest import add_solar_forecasts, berlin, entry_with

BERLIN = ZoneInfo("Europe/Berlin")
NOW = "2026-11-22T11:07:00+00:00"  # a Sunday
START = int(datetime.fromisoformat("2026-11-22T11:15:00+00:00").timestamp())
TODAY = date(2026, 11, 22)
SLOTS = 192  # 48 hours of quarter hours
PRICE = "sensor.electricity_price"


def local(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN)


def slot_times() -> list[int]:
    return [START + k * 900 for k in range(SLOTS)]


async def setup_entry(hass: HomeAssistant, data: dict[str, Any] | None = None) -> MockConfigEntry:
    await berlin(hass)
    for entity_id, (state, attributes) in SOURCE_STATES.items():
        hass.states.async_set(entity_id, state, attributes)
    entry = entry_with(data)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def price_entry_data() -> dict[str, Any]:
    return {CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: PRICE}


def hourly(day: date, price: Any) -> list[dict[str, Any]]:
    """A Nord Pool day: local datetimes, one price per hour."""
    return [
        {"start": local(day, h), "end": local(day, h) + timedelta(hours=1), "value": price(h)}
        for h in range(24)
    ]


def today_price(hour: int) -> float:
    return round(0.10 + 0.01 * hour, 2)


def tomorrow_price(hour: int) -> float:
    return -0.02 if hour == 13 else round(0.20 + 0.01 * hour, 2)


# --- solar forecasts from the Energy dashboard ---------------------------------------------


async def test_pv_from_the_energy_dashboards_solar_forecast(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    first = local(TODAY, 0)
    wh_hours = {
        (first + timedelta(hours=h)).isoformat(): (800 if 9 <= (h % 24) < 15 else 0)
        for h in range(48)
    }
    solar = AsyncMock(return_value={"wh_hours": wh_hours})
    await add_solar_forecasts(hass, {"sunny_forecast": solar})
    entry = await setup_entry(hass)
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=SLOTS)

    covered_until = int((first + timedelta(hours=48)).timestamp())
    for slot, pv, sd in zip(slot_times(), forecast.pv_wh, forecast.pv_sd_wh, strict=True):
        if slot >= covered_until:
            continue
        hour = datetime.fromtimestamp(slot, BERLIN).hour
        assert pv == (200 if 9 <= hour < 15 else 0)  # 800 Wh an hour, a quarter per slot
        assert sd == pv * 25 // 100  # no past forecasts to learn the error from: 25 %
    known = sum(1 for slot in slot_times() if slot < covered_until)
    assert dict(forecast.sources)["pv"] == f"energy_platform {known}, persistence {SLOTS - known}"
    report = forecaster.last_report
    assert report is not None
    assert report["solar_forecast"]["providers"] == ["sunny_forecast"]
    assert report["series"]["pv"]["calibration_pct"] == 100

    # Cached for a while, then asked again.
    await forecaster.async_forecast(start=START, slot_seconds=900, slots=SLOTS)
    assert solar.await_count == 1
    freezer.tick(SOLAR_REFRESH_S + 1)
    await forecaster.async_forecast(start=START, slot_seconds=900, slots=SLOTS)
    assert solar.await_count == 2


async def test_a_failing_solar_forecast_is_logged_and_skipped(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    freezer.move_to(NOW)
    failing = AsyncMock(side_effect=RuntimeError("service down"))
    await add_solar_forecasts(hass, {"broken_forecast": failing})
    entry = await setup_entry(hass)
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=8)
    assert dict(forecast.sources)["pv"] == "persistence 8"
    assert "The solar forecast of broken_forecast failed" in caplog.text
    assert forecaster.last_report is not None
    assert forecaster.last_report["solar_forecast"]["status"] == "unavailable"


# --- forward prices in attributes ----------------------------------------------------------


async def test_nord_pool_attributes_with_tomorrow_and_a_negative_hour(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    hass.states.async_set(
        PRICE,
        "0.21",
        {
            "unit_of_measurement": "EUR/kWh",
            "raw_today": hourly(TODAY, today_price),
            "raw_tomorrow": hourly(TODAY + timedelta(days=1), tomorrow_price),
            "tomorrow_valid": True,
        },
    )
    entry = await setup_entry(hass, price_entry_data())
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=SLOTS)
    end_of_tomorrow = int(local(TODAY + timedelta(days=2), 0).timestamp())
    forward = 0
    for slot, price in zip(slot_times(), forecast.import_price, strict=True):
        when = datetime.fromtimestamp(slot, BERLIN)
        if slot < end_of_tomorrow:
            forward += 1
            table = today_price if when.date() == TODAY else tomorrow_price
            assert price == round(table(when.hour) * 100)
        else:  # the day after tomorrow: tomorrow's price of the same slot
            assert price == round(tomorrow_price(when.hour) * 100)
    assert -2 in forecast.import_price  # negative prices stay
    assert (
        dict(forecast.sources)["import_price"] == f"forward {forward}, repeated {SLOTS - forward}"
    )
    assert forecast.feed_in_tariff == (8,) * SLOTS
    assert dict(forecast.sources)["feed_in_tariff"] == f"fixed {SLOTS}"
    report = forecaster.last_report
    assert report is not None
    assert report["series"]["import_price"]["provider"] == "attributes:nordpool"
    assert report["series"]["import_price"]["entity"] == CONF_IMPORT_PRICE_ENTITY


async def test_missing_tomorrow_repeats_today_in_hourly_slots(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    hass.states.async_set(
        PRICE,
        "21",
        {
            "unit_of_measurement": "c/kWh",
            "raw_today": hourly(TODAY, lambda h: today_price(h) * 100),
            "raw_tomorrow": [],
            "tomorrow_valid": False,
        },
    )
    entry = await setup_entry(hass, price_entry_data())
    start = int(local(TODAY, 13).timestamp())
    forecast = await async_home_forecast(hass, entry, start=start, slot_seconds=3600, slots=36)
    hours = [(13 + k) % 24 for k in range(36)]
    assert list(forecast.import_price) == [round(today_price(h) * 100) for h in hours]
    assert dict(forecast.sources)["import_price"] == "forward 11, repeated 25"


async def test_an_unavailable_price_entity_uses_the_last_price_or_none(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    hass.states.async_set(PRICE, "unavailable", {"unit_of_measurement": "EUR/kWh"})
    entry = await setup_entry(hass, price_entry_data())
    forecaster = forecaster_for(hass, entry)
    with pytest.raises(NoPriceError):
        await forecaster.async_forecast(start=START, slot_seconds=900, slots=4)
    assert forecaster.last_report is not None
    assert forecaster.last_report["error"] == "no_price"
    hass.states.async_set(PRICE, "0.3149", {"unit_of_measurement": "EUR/kWh"})
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=4)
    assert forecast.import_price == (31,) * 4
    assert dict(forecast.sources)["import_price"] == "current 4"
    for broken in ("unavailable", "abc"):
        hass.states.async_set(PRICE, broken, {"unit_of_measurement": "EUR/kWh"})
        forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=4)
        assert forecast.import_price == (31,) * 4  # the last known price


async def test_a_non_numeric_state_keeps_its_forward_prices(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    hass.states.async_set(
        PRICE,
        "not a number",
        {"unit_of_measurement": "EUR/MWh", "raw_today": hourly(TODAY, lambda h: 100.0 + h)},
    )
    entry = await setup_entry(hass, price_entry_data())
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=8)
    assert forecast.import_price == (11,) * 4 + (11,) * 4  # 111 and 112 EUR/MWh
    # Later days repeat today; before today there is nothing to fall back on.
    noon = int(local(TODAY, 12).timestamp())
    later = await forecaster.async_forecast(start=noon, slot_seconds=3600, slots=24 * 6)
    hours = [(12 + k) % 24 for k in range(24 * 6)]
    assert list(later.import_price) == [(100 + h + 5) // 10 for h in hours]
    yesterday = int(local(TODAY - timedelta(days=1), 12).timestamp())
    with pytest.raises(NoPriceError):
        await forecaster.async_forecast(start=yesterday, slot_seconds=900, slots=4)


def device_with(hass: HomeAssistant, platform: str, entities: dict[str, str]) -> dict[str, str]:
    """Entities of one device of another integration; returns key -> entity id."""
    other = MockConfigEntry(domain=platform)
    other.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=other.entry_id, identifiers={(platform, "meter")}
    )
    registry = er.async_get(hass)
    return {
        key: registry.async_get_or_create(
            domain,
            platform,
            key,
            device_id=device.id,
            config_entry=other,
            suggested_object_id=f"{platform}_{key}",
        ).entity_id
        for key, domain in entities.items()
    }


async def test_entsoe_prices_on_the_average_sensor_of_the_same_device(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """ENTSO-e puts the prices on its average-price sensor, not on the current price."""
    freezer.move_to(NOW)
    ids = device_with(hass, "entsoe", {"current": "sensor", "average": "sensor"})
    prices = [
        {"time": (local(TODAY, 0) + timedelta(minutes=15 * k)).isoformat(), "price": 0.05 * (k % 4)}
        for k in range(96 * 2)
    ]
    hass.states.async_set(ids["current"], "0.1", {"unit_of_measurement": "EUR/kWh"})
    hass.states.async_set(
        ids["average"],
        "0.1",
        {
            "unit_of_measurement": "EUR/kWh",
            "prices_today": prices[:96],
            "prices_tomorrow": prices[96:],
        },
    )
    entry = await setup_entry(
        hass, {CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: ids["current"]}
    )
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=8)
    assert forecast.import_price == (5, 10, 15, 0, 5, 10, 15, 0)
    hourly_forecast = await forecaster.async_forecast(start=START - 900, slot_seconds=3600, slots=2)
    assert hourly_forecast.import_price == (8, 8)  # the mean of 0, 5, 10 and 15 ct
    assert forecaster.last_report is not None
    assert forecaster.last_report["series"]["import_price"]["provider"] == (
        "device_attributes:entsoe"
    )


async def test_octopus_rate_events_on_the_meters_device_for_the_feed_in_tariff(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    ids = device_with(
        hass,
        "octopus_energy",
        {"current_rate": "sensor", "current_day_rates": "event", "next_day_rates": "event"},
    )

    def rates(day: date, value: float) -> list[dict[str, Any]]:
        return [
            {
                "start": local(day, 0) + timedelta(minutes=30 * k),
                "end": local(day, 0) + timedelta(minutes=30 * (k + 1)),
                "value_inc_vat": value,
                "is_capped": False,
            }
            for k in range(48)
        ]

    hass.states.async_set(ids["current_rate"], "0.15", {"unit_of_measurement": "EUR/kWh"})
    hass.states.async_set(
        ids["current_day_rates"], "2026-11-22T00:00:00", {"rates": rates(TODAY, 0.15)}
    )
    hass.states.async_set(
        ids["next_day_rates"],
        "2026-11-22T16:00:00",
        {"rates": rates(TODAY + timedelta(days=1), 0.12)},
    )
    entry = await setup_entry(
        hass, {CONF_EXPORT_PRICE: None, CONF_EXPORT_PRICE_ENTITY: ids["current_rate"]}
    )
    forecast = await async_home_forecast(hass, entry, start=START, slot_seconds=900, slots=SLOTS)
    end_of_today = int(local(TODAY + timedelta(days=1), 0).timestamp())
    end_of_tomorrow = int(local(TODAY + timedelta(days=2), 0).timestamp())
    for slot, price in zip(slot_times(), forecast.feed_in_tariff, strict=True):
        assert price == (15 if slot < end_of_today else 12)
    forward = sum(1 for slot in slot_times() if slot < end_of_tomorrow)
    assert (
        dict(forecast.sources)["feed_in_tariff"] == f"forward {forward}, repeated {SLOTS - forward}"
    )


# --- the core integrations' actions ----------------------------------------------------------


async def test_core_nord_pool_action_cached_per_day_and_tomorrow_retried(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    mock_integration(hass, MockModule("nordpool"))  # the real one needs its library
    nordpool = MockConfigEntry(domain="nordpool", data={"areas": ["SE3"], "currency": "EUR"})
    nordpool.add_to_hass(hass)
    nordpool.mock_state(hass, ConfigEntryState.LOADED)
    registry = er.async_get(hass)
    sensor = registry.async_get_or_create(
        "sensor",
        "nordpool",
        "SE3-current_price",
        config_entry=nordpool,
        suggested_object_id="nord_pool_se3_current_price",
    ).entity_id
    hass.states.async_set(sensor, "0.1", {"unit_of_measurement": "EUR/kWh"})
    published = {"tomorrow": False}
    calls: list[dict[str, Any]] = []

    async def get_prices(call: ServiceCall) -> dict[str, Any]:
        calls.append(dict(call.data))
        day = date.fromisoformat(str(call.data["date"]))
        if day > TODAY and not published["tomorrow"]:
            raise ServiceValidationError("No data available for this date")
        price = 50.0 if day == TODAY else -10.0  # EUR/MWh
        return {
            "SE3": [
                {
                    "start": (local(day, 0) + timedelta(minutes=15 * k)).isoformat(),
                    "end": (local(day, 0) + timedelta(minutes=15 * (k + 1))).isoformat(),
                    "price": price,
                }
                for k in range(96)
            ]
        }

    hass.services.async_register(
        "nordpool", "get_prices_for_date", get_prices, supports_response=SupportsResponse.ONLY
    )
    entry = await setup_entry(hass, {CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: sensor})
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=SLOTS)
    assert forecast.import_price == (5,) * SLOTS  # today's, repeated: tomorrow is not out yet
    assert calls[0] == {
        "config_entry": nordpool.entry_id,
        "date": TODAY.isoformat(),
        "areas": ["SE3"],
    }
    assert len(calls) == 2
    await forecaster.async_forecast(start=START, slot_seconds=900, slots=SLOTS)
    assert len(calls) == 2  # cached
    published["tomorrow"] = True
    freezer.tick(ACTION_RETRY_S + 1)
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=SLOTS)
    assert len(calls) == 4
    end_of_today = int(local(TODAY + timedelta(days=1), 0).timestamp())
    assert forecast.import_price == tuple(5 if s < end_of_today else -1 for s in slot_times())
    assert forecaster.last_report is not None
    assert forecaster.last_report["series"]["import_price"]["provider"] == "nordpool_action"
    assert forecaster.last_report["actions"]["import_price"]["complete"] is True
    await forecaster.async_forecast(start=START, slot_seconds=900, slots=SLOTS)
    assert len(calls) == 4  # complete: not asked again today


async def test_core_tibber_action_for_the_sensors_home(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    registry = er.async_get(hass)
    sensor = registry.async_get_or_create(
        "sensor", "tibber", "home-id", suggested_object_id="electricity_price_flat"
    ).entity_id
    hass.states.async_set(sensor, "0.3", {"unit_of_measurement": "EUR/kWh", "app_nickname": "Flat"})
    asked: list[dict[str, Any]] = []

    async def get_prices(call: ServiceCall) -> dict[str, Any]:
        asked.append(dict(call.data))
        start = datetime.fromisoformat(call.data["start"])
        return {
            "prices": {
                home: [
                    {
                        "start_time": (start + timedelta(hours=h)).isoformat(),
                        "price": price + h / 1000,
                        "level": "NORMAL",
                    }
                    for h in range(48)
                ]
                for home, price in (("Cabin", 0.5), ("Flat", 0.25))
            }
        }

    hass.services.async_register(
        "tibber", "get_prices", get_prices, supports_response=SupportsResponse.ONLY
    )
    entry = await setup_entry(hass, {CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: sensor})
    forecast = await async_home_forecast(hass, entry, start=START, slot_seconds=3600, slots=24)
    first_hour = datetime.fromtimestamp(START - 900, BERLIN).hour  # 12:00 local
    assert forecast.import_price[0] == round((0.25 + first_hour / 1000) * 100)
    assert asked[0]["start"] == local(TODAY, 0).isoformat()
    assert dict(forecast.sources)["import_price"] == "forward 24"


async def test_an_action_that_fails_falls_back_to_the_state(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    registry = er.async_get(hass)
    sensor = registry.async_get_or_create("sensor", "tibber", "home-id").entity_id
    hass.states.async_set(sensor, "0.3", {"unit_of_measurement": "EUR/kWh"})
    # The tibber integration is not loaded here: its action does not exist.
    entry = await setup_entry(hass, {CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: sensor})
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=4)
    assert forecast.import_price == (30,) * 4
    assert forecaster.last_report is not None
    assert forecaster.last_report["actions"]["import_price"]["error"] == "ServiceNotFound"


# --- load, the forecaster's life and the diagnostics -------------------------------------------


async def test_load_persistence_and_none_without_a_grid_reading(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    entry = await setup_entry(hass)
    # 5000 W from the grid + 2500 W PV - 800 W into the battery - 3700 W EV: 3000 W.
    hass.states.async_set("sensor.grid_power", "5000", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    forecast = await async_home_forecast(hass, entry, start=START, slot_seconds=900, slots=4)
    assert forecast.load_wh == (750,) * 4
    assert forecast.load_sd_wh == (375,) * 4
    hass.states.async_set("sensor.grid_power", "unavailable", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    forecast = await async_home_forecast(hass, entry, start=START, slot_seconds=900, slots=4)
    assert forecast.load_wh == (0,) * 4
    assert dict(forecast.sources)["load"] == "none 4"


async def test_the_forecaster_lives_with_the_entry(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    entry = await setup_entry(hass)
    forecaster = forecaster_for(hass, entry)
    assert forecaster_for(hass, entry) is forecaster
    with pytest.raises(ValueError, match="divide a day"):
        await forecaster.async_forecast(start=START, slot_seconds=7 * 60, slots=4)
    with pytest.raises(ValueError, match="horizon"):
        await forecaster.async_forecast(start=START, slot_seconds=900, slots=0)
    with pytest.raises(ValueError, match="horizon"):
        await forecaster.async_forecast(start=START, slot_seconds=3600, slots=8 * 24)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert forecaster_for(hass, entry) is not forecaster


async def test_diagnostics_show_what_each_forecast_came_from(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    hass.states.async_set(
        PRICE,
        "0.21",
        {"unit_of_measurement": "EUR/kWh", "raw_today": hourly(TODAY, today_price)},
    )
    entry = await setup_entry(hass, price_entry_data())
    result = await async_get_config_entry_diagnostics(hass, entry)
    forecasts = result["forecasts"]
    assert forecasts["error"] is None
    assert forecasts["slots"] == SLOTS
    assert forecasts["start"] == "2026-11-22T11:15:00+00:00"
    series = forecasts["series"]
    assert series["import_price"]["provider"] == "attributes:nordpool"
    assert series["import_price"]["sources"] == {"forward": 47, "repeated": 145}
    assert series["import_price"]["known_until"] == "2026-11-22T23:00:00+00:00"
    assert series["pv"]["sources"] == {"persistence": SLOTS}
    assert forecasts["statistics"]["status"] == "no_recorder"
    assert forecasts["solar_forecast"]["status"] == "not_configured"
    text = json.dumps(result)
    assert PRICE not in text
    for entity_id in SOURCE_STATES:
        assert entity_id not in text


async def test_solar_forecast_keys_that_cannot_be_read_are_skipped(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    wh_hours: dict[str, Any] = {
        "2026-11-22T12:00:00": 400,  # no zone: local time
        "2026-11-22T13:00:00+01:00": "junk",
        "2026-11-22T14:00:00+01:00": True,
        "not a time": 100,
        "2026-11-22T15:00:00+01:00": -5,  # below zero: none
    }
    solar = AsyncMock(return_value={"wh_hours": wh_hours})
    await add_solar_forecasts(hass, {"odd_forecast": solar})
    entry = await setup_entry(hass)
    noon = int(local(TODAY, 12).timestamp())
    forecast = await async_home_forecast(hass, entry, start=noon, slot_seconds=3600, slots=4)
    # 12:00 ends where 15:00 begins (three hours at most are bridged): 400 Wh over 3 h.
    assert forecast.pv_wh[:3] == (133, 133, 133)
    assert forecast.pv_wh[3] == 0
    solar.return_value = "not a forecast"
    forecaster_for(hass, entry)._solar = None
    forecast = await async_home_forecast(hass, entry, start=noon, slot_seconds=3600, slots=4)
    assert dict(forecast.sources)["pv"] == "persistence 4"


async def test_nord_pool_action_needs_a_loaded_entry_in_our_currency(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """Otherwise the sensor's own attributes and state are used."""
    freezer.move_to(NOW)
    mock_integration(hass, MockModule("nordpool"))
    registry = er.async_get(hass)
    cases = {
        "not_loaded": ({"areas": ["SE3"], "currency": "EUR"}, "SE3-current_price", False),
        "sek": ({"areas": ["SE3"], "currency": "SEK"}, "SE3-current_price", True),
        "no_area": ({"areas": ["SE3", "SE4"], "currency": "EUR"}, "odd", True),
    }
    called: list[str] = []

    async def get_prices(call: ServiceCall) -> dict[str, Any]:
        called.append(str(call.data["config_entry"]))
        return {}

    hass.services.async_register(
        "nordpool", "get_prices_for_date", get_prices, supports_response=SupportsResponse.ONLY
    )
    sensors = {}
    for name, (data, unique_id, loaded) in cases.items():
        nordpool = MockConfigEntry(domain="nordpool", data=data)
        nordpool.add_to_hass(hass)
        if loaded:
            nordpool.mock_state(hass, ConfigEntryState.LOADED)
        sensors[name] = registry.async_get_or_create(
            "sensor", "nordpool", unique_id, config_entry=nordpool, suggested_object_id=name
        ).entity_id
        hass.states.async_set(sensors[name], "0.1", {"unit_of_measurement": "EUR/kWh"})
    entry = await setup_entry(hass, {CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: PRICE})
    forecaster = forecaster_for(hass, entry)
    for name, sensor in sensors.items():
        forecaster.entry = entry_with({CONF_IMPORT_PRICE: None, CONF_IMPORT_PRICE_ENTITY: sensor})
        forecaster.entry.runtime_data = entry.runtime_data
        forecaster._actions.clear()
        forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=2)
        assert forecast.import_price == (10, 10), name
    assert called == []


async def test_an_entry_without_assets_learns_nothing(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    await berlin(hass)
    entry = entry_with(assets={})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=START, slot_seconds=900, slots=2)
    assert forecast.pv_wh == (0, 0)
    assert dict(forecast.sources)["pv"] == "none 2"
    assert forecaster.last_report is not None
    assert forecaster.last_report["statistics"]["status"] == "no_sources"


async def test_diagnostics_report_a_forecast_that_failed(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(NOW)
    hass.states.async_set(PRICE, "unknown", {"unit_of_measurement": "EUR/kWh"})
    entry = await setup_entry(hass, price_entry_data())
    result = await async_get_config_entry_diagnostics(hass, entry)
    assert result["forecasts"]["error"] == "no_price"
    assert result["forecasts"]["series"] is None
