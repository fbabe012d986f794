"""Per-home load and PV forecasts from history and solar forecasts."""

from __future__ import annotations

import pytest

from custom_components.peer_energy.core.home.forecast import (
    HomeForecast,
    calibration_pct,
    load_forecast,
    profile_forecast,
    pv_forecast,
)

DAY = 86_400
T0 = 1_800_000_000 - 1_800_000_000 % DAY


def test_same_slot_of_day_mean() -> None:
    history = {T0 + d * DAY + 900 * k: 100 * k + d for d in range(3) for k in range(4)}
    slots = [T0 + 3 * DAY + 900 * k for k in range(4)]
    # mean of d = 0, 1, 2 -> +1
    assert profile_forecast(history, slots) == (1, 101, 201, 301)
    assert profile_forecast(history, slots, days=1) == (2, 102, 202, 302)


def test_fallbacks() -> None:
    assert profile_forecast({}, [T0, T0 + 900]) == (0, 0)
    history = {T0: 100, T0 + 900: 300}
    assert profile_forecast(history, [T0 + 1800]) == (200,)
    assert load_forecast({T0: -50}, [T0 + DAY]) == (0,)


def test_pv_uses_solar_forecast_with_calibration() -> None:
    history = {T0 + 900 * k: 800 for k in range(4)}
    past_solar = {T0 + 900 * k: 1000 for k in range(4)}
    future = [T0 + DAY + 900 * k for k in range(3)]
    solar = past_solar | {future[0]: 2000, future[1]: 500}
    assert calibration_pct(history, solar) == 80
    assert pv_forecast(history, future, solar_forecast=solar) == (1600, 400, 800)
    assert pv_forecast(history, future) == (800, 800, 800)


def test_calibration_is_clamped_and_defaults_to_100() -> None:
    assert calibration_pct({T0: 10_000}, {T0: 1000}) == 150
    assert calibration_pct({T0: 0}, {T0: 1000}) == 50
    assert calibration_pct({}, {T0: 1000}) == 100


def test_home_forecast_refuses_series_of_different_lengths() -> None:
    ok = HomeForecast(
        start=0,
        slot_seconds=900,
        pv_wh=(0, 100),
        pv_sd_wh=(0, 10),
        load_wh=(50, 50),
        load_sd_wh=(5, 5),
        import_price=(30, 31),
        feed_in_tariff=(8, 8),
    )
    assert ok.slots == 2
    with pytest.raises(ValueError, match="horizon's length"):
        HomeForecast(
            start=0,
            slot_seconds=900,
            pv_wh=(0, 100),
            pv_sd_wh=(0,),
            load_wh=(50, 50),
            load_sd_wh=(5, 5),
            import_price=(30, 31),
            feed_in_tariff=(8, 8),
        )
    with pytest.raises(ValueError, match="positive"):
        HomeForecast(
            start=0,
            slot_seconds=0,
            pv_wh=(),
            pv_sd_wh=(),
            load_wh=(),
            load_sd_wh=(),
            import_price=(),
            feed_in_tariff=(),
        )
