"""Fixtures for the forecast tests: a home in Berlin, an entry with a price entity, statistics."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from datetime import UTC, datetime
from typing import Any
from unittest.mock import AsyncMock, Mock, patch

from homeassistant.components.energy.data import async_get_manager
from homeassistant.components.recorder.models import StatisticMeanType
from homeassistant.components.recorder.statistics import (
    async_add_external_statistics,
    async_import_statistics,
)
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, mock_platform
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.peer_energy.const import (
    CONF_ASSET_KIND,
    CONF_ASSET_NAME,
    CONF_POWER_ENTITY,
    DOMAIN,
    AssetKind,
)
from tests.conftest import ENTRY_ID, PV_ID, make_entry

LATITUDE = 52.4
LONGITUDE = 13.1


def _recorder_first(request: pytest.FixtureRequest) -> None:
    """The harness sets the recorder up before Home Assistant (``recorder_mock`` must come
    before ``hass``); the shared autouse fixtures would start Home Assistant first."""
    if "recorder_mock" in request.fixturenames:
        request.getfixturevalue("recorder_mock")


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(request: pytest.FixtureRequest) -> None:
    """As the shared fixture, but after the recorder when a test uses it."""
    _recorder_first(request)
    request.getfixturevalue("enable_custom_integrations")


@pytest.fixture(autouse=True)
def isolated_config_dir(request: pytest.FixtureRequest, tmp_path_factory: Any) -> None:
    """As the shared fixture, but after the recorder when a test uses it."""
    _recorder_first(request)
    if "hass" in request.fixturenames:
        hass = request.getfixturevalue("hass")
        hass.config.config_dir = str(tmp_path_factory.mktemp("config"))


@pytest.fixture(autouse=True)
def _slot_clock_without_forecasts() -> Generator[None]:
    """The slot clock plans on readings alone here (its forecasts are tested in
    tests/market_ha): these tests see every read and fit the forecaster makes."""
    with patch(
        "custom_components.peer_energy.market.async_home_forecast",
        AsyncMock(return_value=None),
    ):
        yield


async def berlin(hass: HomeAssistant) -> None:
    """Put the home in Berlin (time zone and location)."""
    await hass.config.async_set_time_zone("Europe/Berlin")
    hass.config.latitude = LATITUDE
    hass.config.longitude = LONGITUDE


def entry_with(
    data: dict[str, Any] | None = None,
    assets: dict[str, dict[str, Any]] | None = None,
) -> MockConfigEntry:
    """The shared test entry with some entry data replaced (None removes a key)."""
    base = make_entry(assets)
    merged = {**base.data, **(data or {})}
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        title=base.title,
        unique_id=DOMAIN,
        data={key: value for key, value in merged.items() if value is not None},
        options=dict(base.options),
        subentries_data=[
            {
                "data": dict(sub.data),
                "subentry_id": sub.subentry_id,
                "subentry_type": sub.subentry_type,
                "title": sub.title,
                "unique_id": sub.unique_id,
            }
            for sub in base.subentries.values()
        ],
    )


async def add_solar_forecasts(hass: HomeAssistant, forecasts: dict[str, AsyncMock]) -> None:
    """Integrations (by domain) whose energy platforms answer with the given mocks, each
    picked as a solar forecast of the Energy dashboard's solar source."""
    entry_ids = []
    for domain, forecast in forecasts.items():
        solar_entry = MockConfigEntry(domain=domain)
        solar_entry.add_to_hass(hass)
        hass.config.components.add(domain)
        mock_platform(hass, f"{domain}.energy", Mock(async_get_solar_forecast=forecast))
        entry_ids.append(solar_entry.entry_id)
    manager = await async_get_manager(hass)
    await manager.async_update(
        {
            "energy_sources": [
                {
                    "type": "solar",
                    "stat_energy_from": "sensor.pv_energy",
                    "config_entry_solar_forecast": [*entry_ids, "gone"],
                }
            ]
        }
    )


async def setup_pv_only(hass: HomeAssistant, power_w: str = "1000") -> MockConfigEntry:
    """An entry with one PV asset, ``sensor.roof_power``, set up."""
    hass.states.async_set("sensor.roof_power", power_w, {"unit_of_measurement": "W"})
    entry = entry_with(
        assets={
            PV_ID: {
                CONF_ASSET_KIND: AssetKind.PV,
                CONF_ASSET_NAME: "Roof PV",
                CONF_POWER_ENTITY: "sensor.roof_power",
            }
        }
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def _metadata(statistic_id: str, unit: str, *, mean: bool, source: str) -> dict[str, Any]:
    return {
        "has_mean": mean,
        "mean_type": StatisticMeanType.ARITHMETIC if mean else StatisticMeanType.NONE,
        "has_sum": not mean,
        "name": None,
        "source": source,
        "statistic_id": statistic_id,
        "unit_of_measurement": unit,
    }


def import_means(
    hass: HomeAssistant, statistic_id: str, unit: str, values: Iterable[tuple[int, float]]
) -> None:
    """Hourly mean statistics of a power sensor (``(hour start, mean)``)."""
    rows = [
        {
            "start": datetime.fromtimestamp(hour, UTC),
            "mean": value,
            "min": value,
            "max": value,
        }
        for hour, value in values
    ]
    async_import_statistics(hass, _metadata(statistic_id, unit, mean=True, source="recorder"), rows)  # type: ignore[arg-type]


def import_sums(
    hass: HomeAssistant, statistic_id: str, unit: str, values: Iterable[tuple[int, float]]
) -> None:
    """Hourly sum statistics of an energy counter from the energy of each hour."""
    total = 0.0
    rows = []
    for hour, value in values:
        total += value
        rows.append({"start": datetime.fromtimestamp(hour, UTC), "state": total, "sum": total})
    if ":" in statistic_id:
        source = statistic_id.split(":")[0]
        async_add_external_statistics(
            hass, _metadata(statistic_id, unit, mean=False, source=source), rows
        )  # type: ignore[arg-type]
    else:
        async_import_statistics(
            hass, _metadata(statistic_id, unit, mean=False, source="recorder"), rows
        )  # type: ignore[arg-type]


async def recorded(hass: HomeAssistant) -> None:
    """Wait until the recorder has written what was imported."""
    await async_wait_recording_done(hass)
