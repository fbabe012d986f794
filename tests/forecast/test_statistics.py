"""Load and PV models learned from the recorder's long-term statistics, in Home Assistant."""

from __future__ import annotations

from datetime import datetime
import math
import random
import threading
from typing import Any
from unittest.mock import AsyncMock, patch
from zoneinfo import ZoneInfo

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.energy.data import async_get_manager
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from sqlalchemy.exc import OperationalError

from custom_components.peer_energy import forecasts
from custom_components.peer_energy.const import (
    CONF_ASSET_KIND,
    CONF_ASSET_NAME,
    CONF_ENERGY_ENTITY,
    CONF_POWER_ENTITY,
    AssetKind,
)
from custom_components.peer_energy.core.home.forecast import Site, clear_sky
from custom_components.peer_energy.forecasts import forecaster_for
from tests.conftest import PLUG_ID, PV_ID, SOURCE_STATES
from tests.forecast.conftest import (
    LATITUDE,
    LONGITUDE,
    add_solar_forecasts,
    berlin,
    entry_with,
    import_means,
    import_sums,
    recorded,
    setup_pv_only,
)

BERLIN = ZoneInfo("Europe/Berlin")
SITE = Site(LATITUDE, LONGITUDE)
HOUR = 3600
NOW = "2026-03-30T10:07:00+00:00"  # the day after the spring change to summer time
PV_PEAK_W = 4000


def true_load(hour: int) -> float:
    """The household's inflexible load (W) by local hour; weekends sleep in."""
    local = datetime.fromtimestamp(hour + HOUR // 2, BERLIN)
    weekend = local.weekday() >= 5
    load = 250.0 + 30 * local.hour
    if local.hour in (7, 8) and not weekend:
        load += 1000
    if local.hour in (10, 11) and weekend:
        load += 1400
    return load


def battery_kw(hour: int) -> float:
    """The battery's power sensor (kW, positive while charging)."""
    local = datetime.fromtimestamp(hour + HOUR // 2, BERLIN).hour
    return 1.2 if 10 <= local < 14 else -0.6 if 18 <= local < 22 else 0.0


def ev_wh(hour: int) -> float:
    local = datetime.fromtimestamp(hour + HOUR // 2, BERLIN)
    return 3700.0 if local.weekday() < 5 and 19 <= local.hour < 22 else 0.0


def history(now: int, days: int, noise: float) -> dict[str, list[tuple[int, float]]]:
    """Hourly statistics of the shared test entry's sensors whose sums give ``true_load``."""
    rng = random.Random(11)
    end = now - now % HOUR
    hours = [end - (days * 24 - k) * HOUR for k in range(days * 24)]
    out: dict[str, list[tuple[int, float]]] = {
        "grid": [],
        "pv": [],
        "battery": [],
        "ev": [],
    }
    for hour in hours:
        load = true_load(hour) + rng.gauss(0, noise)
        pv = PV_PEAK_W * clear_sky(hour, HOUR, SITE)
        charge_w = battery_kw(hour) * 1000
        ev = ev_wh(hour)
        out["grid"].append((hour, load + ev + charge_w - pv))
        out["pv"].append((hour, pv / 1000))  # the PV energy sensor counts kWh
        out["battery"].append((hour, battery_kw(hour)))
        out["ev"].append((hour, ev))
    return out


async def setup_with_history(
    hass: HomeAssistant, entry: MockConfigEntry, *, days: int = 28, noise: float = 80
) -> None:
    await berlin(hass)
    now = int(datetime.fromisoformat(NOW).timestamp())
    rows = history(now, days, noise)
    import_means(hass, "sensor.grid_power", "W", rows["grid"])
    import_sums(hass, "sensor.pv_energy", "kWh", rows["pv"])
    import_means(hass, "sensor.battery_power", "kW", rows["battery"])
    import_sums(hass, "sensor.ev_energy", "Wh", rows["ev"])
    await recorded(hass)
    for entity_id, (state, attributes) in SOURCE_STATES.items():
        hass.states.async_set(entity_id, state, attributes)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def test_learns_the_homes_load_and_pv_from_four_weeks_of_statistics(
    recorder_mock: Any, hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """Day one after installation: weeks of recorder history give the known profiles."""
    freezer.move_to(NOW)
    entry = entry_with()
    await setup_with_history(hass, entry)
    start = int(datetime.fromisoformat("2026-03-30T10:15:00+00:00").timestamp())
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=start, slot_seconds=900, slots=192)

    assert dict(forecast.sources)["load"] == "statistics 192"
    assert dict(forecast.sources)["pv"] == "statistics 192"
    slots = [start + k * 900 for k in range(192)]
    for slot, load, sd in zip(slots, forecast.load_wh, forecast.load_sd_wh, strict=True):
        weekend = datetime.fromtimestamp(slot, BERLIN).weekday() >= 5
        n = 8 if weekend else 20
        # The mean of n noisy hours is within 4 standard errors; a quarter of the hour.
        assert abs(load - true_load(slot - slot % HOUR) / 4) <= 4 * 80 / math.sqrt(n) / 4 + 1
        assert 8 <= sd <= 40  # 80 W of noise is 20 Wh per quarter hour
    for slot, pv, sd in zip(slots, forecast.pv_wh, forecast.pv_sd_wh, strict=True):
        expected = PV_PEAK_W * clear_sky(slot, 900, SITE) / 4
        assert abs(pv - expected) <= 0.02 * expected + 2, datetime.fromtimestamp(slot, BERLIN)
        assert sd <= 2
    assert max(forecast.pv_wh) > 500

    report = forecaster.last_report
    assert report is not None
    stats = report["statistics"]
    assert stats["status"] == "ok"
    assert stats["missing"] == []
    assert stats["load"]["samples"] == 28 * 24
    assert stats["pv"]["samples"] == 28 * 24
    assert 0 <= stats["age_s"] < 60
    assert stats["load_terms"] == [
        "01JPEERENERGYGRID0000000000/grid_meter",
        f"{PV_ID}/pv",
        "01JPEERENERGYBATTERY0000000/battery",
        "01JPEERENERGYEV000000000000/ev_charger",
    ]


async def test_learning_runs_in_the_recorders_executor_and_is_kept(
    recorder_mock: Any, hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """Reading and fitting never run in the event loop; the models are reused for 6 hours."""
    freezer.move_to(NOW)
    entry = entry_with()
    await setup_with_history(hass, entry, days=7)
    loop_thread = threading.get_ident()
    threads: dict[str, list[int]] = {"read": [], "learn": [], "build": []}
    from homeassistant.components.recorder import statistics

    real_read = statistics.statistics_during_period
    real_learn = forecasts.learn
    real_build = forecasts.build

    def read(*args: Any, **kwargs: Any) -> Any:
        threads["read"].append(threading.get_ident())
        return real_read(*args, **kwargs)

    def learn(*args: Any, **kwargs: Any) -> Any:
        threads["learn"].append(threading.get_ident())
        return real_learn(*args, **kwargs)

    def build(*args: Any, **kwargs: Any) -> Any:
        threads["build"].append(threading.get_ident())
        return real_build(*args, **kwargs)

    start = int(datetime.fromisoformat("2026-03-30T10:15:00+00:00").timestamp())
    forecaster = forecaster_for(hass, entry)
    with (
        patch.object(statistics, "statistics_during_period", read),
        patch.object(forecasts, "learn", learn),
        patch.object(forecasts, "build", build),
    ):
        await forecaster.async_forecast(start=start, slot_seconds=900, slots=96)
        await forecaster.async_forecast(start=start + 900, slot_seconds=900, slots=96)
        assert len(threads["read"]) == 1  # kept
        freezer.tick(forecasts.STATS_REFRESH_S + 1)
        old = forecaster.learned
        await forecaster.async_forecast(start=start + 1800, slot_seconds=900, slots=96)
        await hass.async_block_till_done(wait_background_tasks=True)  # a background refresh
        assert forecaster.learned is not old
    assert len(threads["read"]) == 2
    assert len(threads["build"]) == 3
    for name, idents in threads.items():
        assert idents, name
        assert loop_thread not in idents, name


async def test_grid_from_the_energy_dashboard_when_no_grid_meter_is_mapped(
    recorder_mock: Any, hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """External grid statistics (a utility's meter) stand in for a grid meter asset."""
    freezer.move_to(NOW)
    await berlin(hass)
    now = int(datetime.fromisoformat(NOW).timestamp())
    end = now - now % HOUR
    hours = [end - (14 * 24 - k) * HOUR for k in range(14 * 24)]
    pv = [(h, PV_PEAK_W * clear_sky(h, HOUR, SITE)) for h in hours]
    imports = [(h, max(0.0, true_load(h) - p)) for h, p in pv]
    exports = [(h, max(0.0, p - true_load(h))) for h, p in pv]
    import_sums(hass, "utility:grid_in", "Wh", imports)
    import_sums(hass, "utility:grid_out", "Wh", exports)
    import_means(hass, "sensor.roof_power", "W", pv)
    await recorded(hass)
    manager = await async_get_manager(hass)
    await manager.async_update(
        {
            "energy_sources": [
                {
                    "type": "grid",
                    "flow_from": [{"stat_energy_from": "utility:grid_in"}],
                    "flow_to": [{"stat_energy_to": "utility:grid_out"}],
                }
            ]
        }
    )
    entry = await setup_pv_only(hass)
    start = end + HOUR
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=start, slot_seconds=3600, slots=24)
    assert dict(forecast.sources)["load"] == "statistics 24"
    for k, load in enumerate(forecast.load_wh):
        assert abs(load - true_load(start + k * HOUR)) <= 2
    report = forecaster.last_report
    assert report is not None
    assert report["statistics"]["load_terms"] == ["energy_dashboard/grid", f"{PV_ID}/pv"]


async def test_missing_statistics_fall_back_to_persistence(
    recorder_mock: Any, hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """A sensor without statistics: load and PV are held from the readings now."""
    freezer.move_to(NOW)
    await berlin(hass)
    entry = entry_with(
        assets={
            PV_ID: {
                CONF_ASSET_KIND: AssetKind.PV,
                CONF_ASSET_NAME: "Roof PV",
                CONF_POWER_ENTITY: "sensor.pv_power",
                CONF_ENERGY_ENTITY: "sensor.pv_energy",
            },
            "01JPEERENERGYGRID0000000000": {
                CONF_ASSET_KIND: AssetKind.GRID_METER,
                CONF_ASSET_NAME: "Grid meter",
                CONF_POWER_ENTITY: "sensor.grid_power",
            },
        }
    )
    import_means(hass, "sensor.grid_power", "W", [(1774000800, 500.0)])  # grid only, no PV
    await recorded(hass)
    for entity_id, (state, attributes) in SOURCE_STATES.items():
        hass.states.async_set(entity_id, state, attributes)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    start = int(datetime.fromisoformat("2026-03-30T10:15:00+00:00").timestamp())
    forecaster = forecaster_for(hass, entry)
    forecast = await forecaster.async_forecast(start=start, slot_seconds=900, slots=8)
    # 500 W from the grid + 2500 W of PV: 750 Wh per quarter hour, spread 50 %.
    assert forecast.load_wh == (750,) * 8
    assert forecast.load_sd_wh == (375,) * 8
    assert dict(forecast.sources)["load"] == "persistence 8"
    assert dict(forecast.sources)["pv"] == "persistence 8"
    assert forecast.pv_wh[0] > 0
    report = forecaster.last_report
    assert report is not None
    assert report["statistics"]["missing"] == [f"{PV_ID}/pv"]
    assert report["statistics"]["load"] is None


async def test_a_solar_forecast_is_calibrated_against_the_panels_statistics(
    recorder_mock: Any, hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """The panels gave 80 % of what the forecast said over the last days: so will they."""
    freezer.move_to(NOW)
    await berlin(hass)
    now = int(datetime.fromisoformat(NOW).timestamp())
    end = now - now % HOUR
    rng = random.Random(5)
    past = [end - (6 * 24 - k) * HOUR for k in range(6 * 24)]
    said = {
        h: 5000 * clear_sky(h, HOUR, SITE) for h in [*past, *(end + k * HOUR for k in range(48))]
    }
    import_means(
        hass, "sensor.roof_power", "W", [(h, 0.8 * said[h] * rng.uniform(0.97, 1.03)) for h in past]
    )
    await recorded(hass)
    # Two arrays of panels, each with its own forecast of half the energy.
    half = {datetime.fromtimestamp(h, BERLIN).isoformat(): wh / 2 for h, wh in said.items()}
    await add_solar_forecasts(
        hass,
        {
            "east_forecast": AsyncMock(return_value={"wh_hours": half}),
            "west_forecast": AsyncMock(return_value={"wh_hours": half}),
        },
    )
    entry = await setup_pv_only(hass)
    forecaster = forecaster_for(hass, entry)
    start = end + HOUR
    forecast = await forecaster.async_forecast(start=start, slot_seconds=3600, slots=24)
    for k, pv in enumerate(forecast.pv_wh):
        assert abs(pv - 0.8 * said[start + k * HOUR]) <= 0.01 * said[start + k * HOUR] + 1
    report = forecaster.last_report
    assert report is not None
    pv_report = report["series"]["pv"]
    assert pv_report["calibration_pct"] in (79, 80)
    assert pv_report["calibration_hours"] > 30  # daylight hours of six days
    assert pv_report["sd_pct"] == 10  # about 2 % off: the smallest spread
    assert dict(forecast.sources)["pv"] == "energy_platform 24"
    assert dict(forecast.sources)["load"] == "none 24"  # no grid: no load model


async def test_a_database_error_leaves_the_models_out(
    recorder_mock: Any,
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    freezer.move_to(NOW)
    entry = entry_with()
    await setup_with_history(hass, entry, days=2)
    from homeassistant.components.recorder import statistics

    start = int(datetime.fromisoformat("2026-03-30T10:15:00+00:00").timestamp())
    forecaster = forecaster_for(hass, entry)
    with patch.object(
        statistics,
        "statistics_during_period",
        side_effect=OperationalError("stmt", {}, Exception()),
    ):
        forecast = await forecaster.async_forecast(start=start, slot_seconds=900, slots=4)
    assert dict(forecast.sources)["load"] == "persistence 4"
    assert forecaster.learned is not None
    assert forecaster.learned.status == "read_error"
    assert "Could not read the long-term statistics" in caplog.text
    # Tried again after ten minutes, not six hours.
    freezer.tick(forecasts.STATS_RETRY_S + 1)
    await forecaster.async_forecast(start=start, slot_seconds=900, slots=4)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert forecaster.learned.status == "ok"


async def test_changed_assets_are_learned_again(
    recorder_mock: Any, hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """A plug turned flexible leaves the inflexible load: the model is fitted anew."""
    freezer.move_to(NOW)
    entry = entry_with()
    await setup_with_history(hass, entry, days=2)
    start = int(datetime.fromisoformat("2026-03-30T10:15:00+00:00").timestamp())
    forecaster = forecaster_for(hass, entry)
    await forecaster.async_forecast(start=start, slot_seconds=900, slots=4)
    first = forecaster.learned
    assert first is not None
    entry.runtime_data.async_update_controls(PLUG_ID, plug_flexible=True)
    await forecaster.async_forecast(start=start, slot_seconds=900, slots=4)
    assert forecaster.learned is not first
    assert forecaster.learned is not None
    assert forecaster.learned.missing == (f"{PLUG_ID}/plug",)  # no statistics of the plug
