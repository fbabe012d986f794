"""The Gaussian time-of-day model, clear-sky shaping, persistence and interval resampling."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
import math
import random
from zoneinfo import ZoneInfo

import pandas as pd
import pvlib
import pytest

from custom_components.peer_energy.core.home.forecast import (
    MIN_SUN,
    Interval,
    Moments,
    ProfileConfig,
    Site,
    clear_sky,
    error_pct,
    fit_profile,
    persistence,
    predict_profile,
    repeat_daily,
    resample,
    sun_height,
)

BERLIN = ZoneInfo("Europe/Berlin")
SITE = Site(52.4, 13.1)
HOUR = 3600
DAY = 86_400


def ts(text: str) -> int:
    """Unix seconds of an ISO time (with its zone)."""
    return int(datetime.fromisoformat(text).timestamp())


def local_hours(first: str, days: int) -> list[int]:
    """Starts of every UTC hour over ``days`` days from local midnight ``first``."""
    start = ts(first)
    return [start + k * HOUR for k in range(days * 24)]


def true_load(hour_start: int) -> float:
    """A household's mean load (W) by local hour; weekends have a late, bigger morning."""
    local = datetime.fromtimestamp(hour_start + HOUR // 2, BERLIN)
    weekend = local.weekday() >= 5
    base = 300.0 + 40 * local.hour
    if local.hour in (7, 8):
        base += 900 if not weekend else 100
    if local.hour in (10, 11) and weekend:
        base += 1200
    return base


def test_moments() -> None:
    assert Moments.of([]) == Moments(0, 0.0, 0.0)
    assert Moments.of([5.0]) == Moments(1, 5.0, 0.0)
    m = Moments.of([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert m.n == 8
    assert m.mean == 5.0
    assert m.sd == pytest.approx(math.sqrt(32 / 7))


def test_profile_config_is_checked() -> None:
    with pytest.raises(ValueError, match="divide a day"):
        ProfileConfig(bucket_seconds=7 * 60 * 60)
    with pytest.raises(ValueError, match="divide a day"):
        ProfileConfig(bucket_seconds=0)
    with pytest.raises(ValueError, match="min_samples"):
        ProfileConfig(min_samples=0)


def test_learns_a_known_load_profile_with_weekends_apart() -> None:
    """Four weeks of noisy hourly samples: the model recovers the mean and the spread."""
    rng = random.Random(7)
    hours = local_hours("2026-10-05T00:00:00+02:00", 28)
    samples = [(h, true_load(h) + rng.gauss(0, 100)) for h in hours]
    profile = fit_profile(samples, tz=BERLIN)
    assert profile.samples == len(hours)
    assert profile.first == hours[0]
    assert profile.last == hours[-1]
    # A Monday and a Saturday after the samples, in 15-minute slots; the mean of n samples
    # of sd 100 W is off by 100 / sqrt(n) W at one sigma: allow four (over a quarter hour).
    for day, n in (("2026-11-02", 20), ("2026-11-07", 8)):
        slots = [ts(f"{day}T00:00:00+01:00") + k * 900 for k in range(96)]
        means, sds = predict_profile(profile, slots, 900)
        for slot, mean, sd in zip(slots, means, sds, strict=True):
            assert mean is not None
            assert sd is not None
            expected = true_load(slot - slot % HOUR) / 4
            assert abs(mean - expected) <= 100 / math.sqrt(n), (day, slot, mean, expected)
            assert 10 <= sd <= 45  # 100 W over a quarter hour: 25 Wh
    monday, _ = predict_profile(profile, [ts("2026-11-02T07:00:00+01:00")], 3600)
    saturday, _ = predict_profile(profile, [ts("2026-11-07T07:00:00+01:00")], 3600)
    assert monday[0] is not None
    assert saturday[0] is not None
    assert monday[0] - saturday[0] > 600  # weekday breakfast, weekend lie-in


def test_too_few_samples_fall_back_to_all_days_then_to_nothing() -> None:
    # Two Saturdays and three weekdays at 07:00 local; nothing at 08:00.
    days = ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-07", "2026-11-14"]
    samples = [(ts(f"{d}T07:00:00+01:00"), 1000.0 if d < "2026-11-05" else 100.0) for d in days]
    profile = fit_profile(samples, tz=BERLIN)
    saturday = ts("2026-11-21T07:00:00+01:00")
    means, sds = predict_profile(profile, [saturday, saturday + HOUR], 3600)
    assert means == [round((3000 + 200) / 5), None]  # weekend has 2 < 3 samples: all days
    assert sds[1] is None
    wednesday = ts("2026-11-18T07:00:00+01:00")
    assert predict_profile(profile, [wednesday], 3600)[0] == [1000]
    single = fit_profile(samples, tz=BERLIN, config=ProfileConfig(min_samples=1))
    assert predict_profile(single, [saturday], 3600)[0] == [100]


def test_local_buckets_follow_daylight_saving_time() -> None:
    """Samples on both sides of the spring change: 07:00 local stays 07:00 local."""
    hours = local_hours("2026-03-16T00:00:00+01:00", 21)  # DST starts on 29 March
    samples = [(h, true_load(h)) for h in hours]
    profile = fit_profile(samples, tz=BERLIN, config=ProfileConfig(split_weekend=False))
    summer_seven = ts("2026-04-08T07:00:00+02:00")
    winter_seven = ts("2026-03-18T07:00:00+01:00")
    assert summer_seven - winter_seven != 21 * DAY  # an hour apart in UTC
    means, _ = predict_profile(profile, [summer_seven], 3600)
    weekday_mean = true_load(winter_seven) * 15 / 21 + (300 + 40 * 7 + 100) * 6 / 21
    assert means[0] == pytest.approx(weekday_mean, abs=1)
    # The day of the change has 23 hours; every one of them still finds its bucket.
    change = ts("2026-03-29T00:00:00+01:00")
    slots = [change + k * 900 for k in range(92)]
    assert None not in predict_profile(profile, slots, 900)[0]


def test_sun_height_matches_pvlib() -> None:
    times = pd.date_range("2026-01-01", "2026-12-31", freq="37h", tz="UTC")
    position = pvlib.solarposition.get_solarposition(times, SITE.latitude, SITE.longitude)
    for when, elevation in zip(times, position["apparent_elevation"], strict=True):
        expected = max(0.0, math.sin(math.radians(elevation)))
        assert sun_height(when.timestamp(), SITE) == pytest.approx(expected, abs=0.012)
    midsummer_noon = ts("2026-06-21T11:10:00+00:00")
    assert sun_height(midsummer_noon, SITE) > 0.85
    assert sun_height(midsummer_noon + 12 * HOUR, SITE) == 0.0
    assert clear_sky(midsummer_noon - 1800, 3600, SITE) == pytest.approx(
        sun_height(midsummer_noon, SITE), abs=0.01
    )


def pv_power(start: int, seconds: int, peak_w: float) -> float:
    """Clear-sky PV: a plant of ``peak_w`` per unit of sun height, mean over the period."""
    return peak_w * clear_sky(start, seconds, SITE)


def test_pv_profile_follows_the_season_per_unit_of_sun_height() -> None:
    """Trained in March, predicting mid-April: days are longer, the sun higher."""
    rng = random.Random(3)
    hours = local_hours("2026-03-01T00:00:00+01:00", 28)
    samples = [(h, pv_power(h, HOUR, 5000) * rng.uniform(0.9, 1.1)) for h in hours]
    config = ProfileConfig(local_time=False, split_weekend=False, site=SITE)
    profile = fit_profile(samples, tz=BERLIN, config=config)
    plain = fit_profile(
        samples, tz=BERLIN, config=ProfileConfig(local_time=False, split_weekend=False)
    )
    slots = [ts("2026-04-15T00:00:00+02:00") + k * 900 for k in range(96)]
    means, sds = predict_profile(profile, slots, 900)
    plain_means, _ = predict_profile(plain, slots, 900)
    truth = [pv_power(s, 900, 5000) / 4 for s in slots]
    assert sum(truth) > 9000
    shaped_error = sum(abs((m or 0) - t) for m, t in zip(means, truth, strict=True))
    plain_error = sum(abs((m or 0) - t) for m, t in zip(plain_means, truth, strict=True))
    assert shaped_error < 0.08 * sum(truth)
    assert shaped_error < plain_error / 2
    for slot, mean, sd in zip(slots, means, sds, strict=True):
        if sun_height(slot + 450, SITE) == 0 and clear_sky(slot, 900, SITE) == 0:
            assert (mean, sd) == (0, 0)  # night is certain
        assert sd is not None
        assert sd >= 0


def test_persistence_holds_load_and_follows_the_sun_for_pv() -> None:
    slots = [ts("2026-06-21T06:00:00+00:00") + k * 900 for k in range(24)]
    means, sds = persistence(1000, slots, 900, sd_pct=50, min_sd_w=300)
    assert means == [250] * 24
    assert sds == [125] * 24
    _, small = persistence(100, slots, 900, sd_pct=50, min_sd_w=300)
    assert small == [75] * 24
    now = slots[0]
    pv, pv_sd = persistence(2000, slots, 900, sd_pct=50, site=SITE, now=now)
    assert pv[0] == pytest.approx(2000 / 4 * clear_sky(now, 900, SITE) / sun_height(now, SITE), 2)
    assert pv[12] > pv[0]  # the sun rises towards noon
    assert all(s == round(m / 2) or abs(s - m / 2) <= 1 for m, s in zip(pv, pv_sd, strict=True))
    night = ts("2026-06-21T22:00:00+00:00")
    assert sun_height(night, SITE) < MIN_SUN
    assert persistence(2000, slots, 900, sd_pct=50, site=SITE, now=night)[0] == [0] * 24
    assert persistence(-50, slots[:2], 900, sd_pct=50) == ([0, 0], [0, 0])


def d(value: str) -> Decimal:
    return Decimal(value)


def test_resample_hourly_prices_onto_quarter_hours_and_back() -> None:
    t0 = ts("2026-11-22T00:00:00+00:00")
    hourly = [Interval(t0 + k * HOUR, t0 + (k + 1) * HOUR, d(str(10 + k))) for k in range(3)]
    quarters = [t0 + k * 900 for k in range(12)]
    assert resample(hourly, quarters, 900, mean=True) == [d(str(10 + k // 4)) for k in range(12)]
    fifteen = [Interval(t0 + k * 900, t0 + (k + 1) * 900, d(str(k))) for k in range(8)]
    assert resample(fifteen, [t0, t0 + HOUR], HOUR, mean=True) == [d("1.5"), d("5.5")]
    # Energy is split, not repeated; a half-covered slot is scaled up, less is unknown.
    energy = [Interval(t0, t0 + HOUR, d("400")), Interval(t0 + HOUR, t0 + 5400, d("100"))]
    got = resample(energy, [t0, t0 + HOUR, t0 + 2 * HOUR], HOUR, mean=False)
    assert got == [d("400"), d("200"), None]
    assert resample(energy, [t0 + 900], 900, mean=False) == [d("100")]


def test_resample_ignores_empty_and_overlapping_intervals_and_keeps_negatives() -> None:
    t0 = ts("2026-11-22T00:00:00+00:00")
    intervals = [
        Interval(t0, t0 + HOUR, d("-2.5")),
        Interval(t0 + 1800, t0 + 5400, d("99")),  # overlaps the first: ignored
        Interval(t0 + HOUR, t0 + HOUR, d("50")),  # empty: ignored
        Interval(t0 + HOUR, t0 + 2 * HOUR, d("3")),
    ]
    assert resample(intervals, [t0, t0 + HOUR, t0 + 2 * HOUR], HOUR, mean=True) == [
        d("-2.5"),
        d("3"),
        None,
    ]
    assert resample([], [t0], HOUR, mean=True) == [None]


def test_repeat_daily_fills_from_the_day_before() -> None:
    values: list[int | None] = [1, 2, None, None, None, 6]
    filled, count = repeat_daily(values, 2)
    assert filled == [1, 2, 1, 2, 1, 6]
    assert count == 3
    assert repeat_daily([None, None, None], 2) == ([None, None, None], 0)


def test_error_pct() -> None:
    actual = dict.fromkeys(range(12), 110)
    forecast = dict.fromkeys(range(12), 100)
    assert error_pct(actual, forecast) == 10
    assert error_pct(actual, dict(list(forecast.items())[:11])) is None
    assert error_pct(actual, dict.fromkeys(range(12), 0)) is None


def test_fit_skips_non_finite_samples() -> None:
    t0 = ts("2026-11-02T07:00:00+01:00")
    samples = [(t0 + k * DAY, v) for k, v in enumerate([100.0, math.nan, math.inf, 200.0, 300.0])]
    profile = fit_profile(samples, tz=UTC, config=ProfileConfig(split_weekend=False))
    assert profile.samples == 3
    assert predict_profile(profile, [t0 + 7 * DAY], 3600)[0] == [200]
