"""Per-home load, PV and price forecasts per slot.

The simple profile (:func:`profile_forecast`): history is a mapping from slot start (UTC
seconds) to measured energy in that slot (Wh). The forecast for a slot is the mean of the same
slot of day over the last ``days`` days that have a reading (integer Wh, floored); without any
reading for that slot of day it falls back to the mean of all readings, and to 0 without
history.

For PV, when a solar forecast (for example from a weather service, Wh per slot) is given,
the forecast is that figure scaled by how the home's panels performed against past solar
forecasts (actual / forecast over the past slots that have both, clamped to 50-150 %), and
the history-based figure is used only for slots the solar forecast does not cover.

:class:`HomeForecast` is what the planner plans with: one plain value per horizon with the
expected PV, inflexible load and grid prices of every slot, and where each series came from.

The Gaussian time-of-day model (:func:`fit_profile`, :func:`predict_profile`) learns, per
bucket of the day (an hour by default), the mean and standard deviation of a power from
samples (for example hourly means from a recorder's long-term statistics), optionally apart
for weekdays and weekends; a bucket with fewer than ``min_samples`` samples of its day kind
uses all days. Buckets follow local time (people's habits) or UTC (the sun). Given a
:class:`Site`, the model learns PV per unit of clear-sky sun height instead
(:func:`sun_height`; weighted by sun height, so dawn and dusk weigh little), so the profile
follows the season and daylight saving time.

:func:`resample` spreads energy given per interval (a solar forecast's hours) over slots, or
averages prices per interval over them, whatever the two resolutions are.

Public API: :class:`HomeForecast`, :func:`profile_forecast`, :func:`load_forecast`,
:func:`pv_forecast`, :func:`calibration_pct`, :func:`error_pct`, :class:`Moments`,
:class:`ProfileConfig`, :class:`Profile`, :class:`Site`, :func:`fit_profile`,
:func:`predict_profile`, :func:`persistence`, :func:`sun_height`, :func:`clear_sky`,
:class:`Interval`, :func:`resample`, :func:`repeat_daily`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
import math

from ..market.slots import SECONDS_PER_DAY

MIN_CALIBRATION_PCT = 50
MAX_CALIBRATION_PCT = 150
SECONDS_PER_HOUR = 3600
# Day kinds of the time-of-day model.
ALL_DAYS = 0
WEEKDAYS = 1
WEEKENDS = 2
# Sun height (sine of the elevation) under which persistence knows nothing of PV.
MIN_SUN = 0.1
# Largest factor persistence scales the current PV by as the sun rises.
MAX_SUN_FACTOR = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeForecast:
    """What the home expects over the planning horizon, one value per slot.

    All series have the horizon's length; slot ``k`` starts at ``start + k * slot_seconds``.
    Energy in Wh, prices in minor currency units per kWh (either may be negative for prices).
    """

    start: int  # Unix seconds, start of the first slot (the slot being bid for)
    slot_seconds: int
    pv_wh: tuple[int, ...]  # expected PV production, all PV together (>= 0)
    pv_sd_wh: tuple[int, ...]  # its standard deviation (>= 0)
    load_wh: tuple[int, ...]  # expected inflexible load: all but battery, EV, flexible plugs
    load_sd_wh: tuple[int, ...]  # its standard deviation (>= 0)
    import_price: tuple[int, ...]  # grid import price
    feed_in_tariff: tuple[int, ...]  # feed-in tariff
    sources: tuple[tuple[str, str], ...] = ()  # (series, where it came from), for diagnostics

    def __post_init__(self) -> None:
        """Refuse series of different lengths or a slot length that is not positive."""
        if self.slot_seconds <= 0:
            raise ValueError("slot_seconds must be positive")
        n = len(self.pv_wh)
        series = (
            self.pv_sd_wh,
            self.load_wh,
            self.load_sd_wh,
            self.import_price,
            self.feed_in_tariff,
        )
        if any(len(s) != n for s in series):
            raise ValueError("every series of a HomeForecast has the horizon's length")

    @property
    def slots(self) -> int:
        """Number of slots in the horizon."""
        return len(self.pv_wh)


def profile_forecast(
    history: Mapping[int, int],
    slots: Sequence[int],
    *,
    days: int = 7,
) -> tuple[int, ...]:
    """Mean of the same slot of day over the last ``days`` days, per requested slot."""
    if not history:
        return tuple(0 for _ in slots)
    overall = sum(history.values()) // len(history)
    out = []
    for start in slots:
        same = [
            history[start - d * SECONDS_PER_DAY]
            for d in range(1, days + 1)
            if start - d * SECONDS_PER_DAY in history
        ]
        out.append(sum(same) // len(same) if same else overall)
    return tuple(out)


def load_forecast(
    history: Mapping[int, int], slots: Sequence[int], *, days: int = 7
) -> tuple[int, ...]:
    """Household load per slot (Wh), never negative."""
    return tuple(max(0, v) for v in profile_forecast(history, slots, days=days))


def calibration_pct(actual: Mapping[int, int], solar_forecast: Mapping[int, int]) -> int:
    """How the panels performed against past solar forecasts, in percent (50..150)."""
    common = [s for s in solar_forecast if s in actual]
    predicted = sum(solar_forecast[s] for s in common)
    if predicted <= 0:
        return 100
    pct = sum(actual[s] for s in common) * 100 // predicted
    return max(MIN_CALIBRATION_PCT, min(MAX_CALIBRATION_PCT, pct))


def pv_forecast(
    history: Mapping[int, int],
    slots: Sequence[int],
    *,
    solar_forecast: Mapping[int, int] | None = None,
    days: int = 7,
) -> tuple[int, ...]:
    """PV production per slot (Wh), from a solar forecast when given, else from history."""
    base = profile_forecast(history, slots, days=days)
    if not solar_forecast:
        return tuple(max(0, v) for v in base)
    pct = calibration_pct(history, solar_forecast)
    return tuple(
        max(0, solar_forecast[s] * pct // 100) if s in solar_forecast else max(0, b)
        for s, b in zip(slots, base, strict=True)
    )


def error_pct(
    actual: Mapping[int, int], forecast: Mapping[int, int], *, min_points: int = 12
) -> int | None:
    """Root-mean-square error of past forecasts relative to their mean, in percent.

    Only periods with both an actual value and a positive forecast count; None with fewer
    than ``min_points`` of them.
    """
    common = [s for s, f in forecast.items() if f > 0 and s in actual]
    if len(common) < min_points:
        return None
    mean = sum(forecast[s] for s in common) / len(common)
    rms = math.sqrt(sum((actual[s] - forecast[s]) ** 2 for s in common) / len(common))
    return round(100 * rms / mean)


# --- Gaussian time-of-day model -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Moments:
    """Number of samples, mean and (sample) standard deviation."""

    n: int
    mean: float
    sd: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Moments:
        """The moments of ``values`` (standard deviation 0 below two samples)."""
        n = len(values)
        if n == 0:
            return cls(0, 0.0, 0.0)
        mean = math.fsum(values) / n
        if n == 1:
            return cls(1, mean, 0.0)
        var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
        return cls(n, mean, math.sqrt(var))

    @classmethod
    def weighted(cls, values: Sequence[float], weights: Sequence[float]) -> Moments:
        """Weighted mean and standard deviation (reliability weights); 0 weight: no moments."""
        total = math.fsum(weights)
        if not values or total <= 0:
            return cls(0, 0.0, 0.0)
        mean = math.fsum(v * w for v, w in zip(values, weights, strict=True)) / total
        if len(values) == 1:
            return cls(1, mean, 0.0)
        square = math.fsum(w * w for w in weights)
        var = math.fsum(w * (v - mean) ** 2 for v, w in zip(values, weights, strict=True)) / (
            total - square / total
        )
        return cls(len(values), mean, math.sqrt(max(0.0, var)))


@dataclass(frozen=True, slots=True)
class Site:
    """Where the panels are (degrees; north and east positive)."""

    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileConfig:
    """How a time-of-day model groups its samples."""

    bucket_seconds: int = SECONDS_PER_HOUR
    local_time: bool = True  # buckets of local clock time; False: UTC (the sun's time)
    split_weekend: bool = True  # separate moments for weekdays and weekends
    min_samples: int = 3
    site: Site | None = None  # learn per unit of clear-sky sun height (PV)

    def __post_init__(self) -> None:
        """Refuse a bucket that does not divide a day or a minimum below one sample."""
        if self.bucket_seconds <= 0 or SECONDS_PER_DAY % self.bucket_seconds:
            raise ValueError("bucket_seconds must divide a day")
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """A learned time-of-day model of a power (W): moments per (day kind, bucket)."""

    config: ProfileConfig
    tz: tzinfo
    plain: Mapping[tuple[int, int], Moments] = field(default_factory=dict)
    ratio: Mapping[tuple[int, int], Moments] = field(default_factory=dict)  # W per sun height
    samples: int = 0
    first: int | None = None  # start of the oldest sample (Unix seconds)
    last: int | None = None  # start of the newest sample


def _key(ts: float, config: ProfileConfig, tz: tzinfo) -> tuple[int, int]:
    """(day kind, bucket) of an instant."""
    local = datetime.fromtimestamp(ts, tz)
    if config.local_time:
        second = local.hour * 3600 + local.minute * 60 + local.second
    else:
        second = int(ts) % SECONDS_PER_DAY
    kind = ALL_DAYS
    if config.split_weekend:
        kind = WEEKENDS if local.weekday() >= 5 else WEEKDAYS
    return kind, second // config.bucket_seconds


def sun_height(ts: float, site: Site) -> float:
    """Sine of the sun's elevation at ``ts`` (0 while it is below the horizon).

    NOAA's low-precision solar position (declination and equation of time as Fourier series
    of the fractional year); accurate to a fraction of a degree, plenty for shaping PV.
    """
    when = datetime.fromtimestamp(ts, UTC)
    hour = when.hour + when.minute / 60 + when.second / 3600
    gamma = 2 * math.pi / 365 * (when.timetuple().tm_yday - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    true_solar_minutes = hour * 60 + eqtime + 4 * site.longitude
    hour_angle = math.radians(true_solar_minutes / 4 - 180)
    lat = math.radians(site.latitude)
    height = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
    return max(0.0, height)


def clear_sky(start: int, seconds: int, site: Site) -> float:
    """Mean sun height over ``[start, start + seconds)`` (sampled every 15 minutes or less)."""
    steps = max(1, round(seconds / 900))
    width = seconds / steps
    return sum(sun_height(start + (k + 0.5) * width, site) for k in range(steps)) / steps


def fit_profile(
    samples: Iterable[tuple[int, float]],
    *,
    tz: tzinfo,
    config: ProfileConfig | None = None,
    sample_seconds: int = SECONDS_PER_HOUR,
) -> Profile:
    """Learn a time-of-day model from ``(period start, mean power W)`` samples.

    A sample counts for the bucket of its period's middle. Non-finite values are skipped.
    With ``config.site``, samples taken while the sun was up are learned per unit of sun
    height, weighted by it (the rest, at night, as plain values).
    """
    config = config or ProfileConfig()
    site = config.site
    plain: defaultdict[tuple[int, int], list[float]] = defaultdict(list)
    ratio: defaultdict[tuple[int, int], tuple[list[float], list[float]]] = defaultdict(
        lambda: ([], [])
    )
    count = 0
    first: int | None = None
    last: int | None = None
    for start, value in samples:
        if not math.isfinite(value):
            continue
        kind, bucket = _key(start + sample_seconds / 2, config, tz)
        keys = [(ALL_DAYS, bucket)] if kind == ALL_DAYS else [(ALL_DAYS, bucket), (kind, bucket)]
        sun = clear_sky(start, sample_seconds, site) if site is not None else 0.0
        for key in keys:
            if sun > 0:
                ratio[key][0].append(value / sun)
                ratio[key][1].append(sun)
            else:
                plain[key].append(value)
        count += 1
        first = start if first is None else min(first, start)
        last = start if last is None else max(last, start)
    return Profile(
        config=config,
        tz=tz,
        plain={key: Moments.of(values) for key, values in plain.items()},
        ratio={key: Moments.weighted(*pair) for key, pair in ratio.items()},
        samples=count,
        first=first,
        last=last,
    )


def _pick(
    table: Mapping[tuple[int, int], Moments], kind: int, bucket: int, least: int
) -> Moments | None:
    for key in ((kind, bucket), (ALL_DAYS, bucket)):
        moments = table.get(key)
        if moments is not None and moments.n >= least:
            return moments
    return None


def _pick_near(profile: Profile, kind: int, bucket: int) -> Moments | None:
    """The bucket's ratio, else a neighbour's (as days lengthen, sun reaches new buckets)."""
    buckets = SECONDS_PER_DAY // profile.config.bucket_seconds
    least = profile.config.min_samples
    for near in (bucket, (bucket - 1) % buckets, (bucket + 1) % buckets):
        if (m := _pick(profile.ratio, kind, near, least)) is not None:
            return m
    return None


def predict_profile(
    profile: Profile, slot_starts: Sequence[int], slot_seconds: int
) -> tuple[list[int | None], list[int | None]]:
    """Expected energy (Wh, never negative) and its standard deviation per slot.

    None where the model has too few samples for the slot's bucket. With a site, a slot
    while the sun is below the horizon is 0 +- 0, and the sun height scales the learned
    ratio (of the slot's bucket, else of a neighbouring one, else the bucket's plain moments).
    The standard deviation of an hour scales linearly to the slot's length.
    """
    config = profile.config
    site = config.site
    scale = slot_seconds / SECONDS_PER_HOUR
    means: list[int | None] = []
    sds: list[int | None] = []
    for start in slot_starts:
        kind, bucket = _key(start + slot_seconds / 2, config, profile.tz)
        found: tuple[float, float] | None = None
        if site is not None:
            sun = clear_sky(start, slot_seconds, site)
            if sun <= 0:
                found = (0.0, 0.0)
            elif (m := _pick_near(profile, kind, bucket)) is not None:
                found = (m.mean * sun, m.sd * sun)
        if found is None and (m := _pick(profile.plain, kind, bucket, config.min_samples)):
            found = (m.mean, m.sd)
        if found is None:
            means.append(None)
            sds.append(None)
        else:
            means.append(max(0, round(found[0] * scale)))
            sds.append(max(0, round(found[1] * scale)))
    return means, sds


def persistence(
    power_w: int,
    slot_starts: Sequence[int],
    slot_seconds: int,
    *,
    sd_pct: int,
    min_sd_w: int = 0,
    site: Site | None = None,
    now: int | None = None,
) -> tuple[list[int], list[int]]:
    """The current power held over the horizon (Wh per slot) with a spread.

    With a site (PV), the power follows the sun: scaled by the slot's sun height over the
    sun height ``now`` (at most ``MAX_SUN_FACTOR``); while the sun is lower than ``MIN_SUN``
    now, nothing is known and the forecast is 0.
    """
    power = max(0, power_w)
    base: float | None = None
    if site is not None:
        sun_now = sun_height(now if now is not None else slot_starts[0], site) if slot_starts else 0
        base = sun_now if sun_now >= MIN_SUN else None
    means: list[int] = []
    sds: list[int] = []
    for start in slot_starts:
        watts = float(power)
        if site is not None:
            factor = (
                0.0
                if base is None
                else min(MAX_SUN_FACTOR, clear_sky(start, slot_seconds, site) / base)
            )
            watts *= factor
        energy = watts * slot_seconds / SECONDS_PER_HOUR
        means.append(round(energy))
        sds.append(round(max(energy * sd_pct / 100, min_sd_w * slot_seconds / SECONDS_PER_HOUR)))
    return means, sds


# --- Intervals to slots ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    """A value that holds over ``[start, end)`` (Unix seconds): an energy or a price."""

    start: int
    end: int
    value: Decimal


def resample(
    intervals: Iterable[Interval],
    slot_starts: Sequence[int],
    slot_seconds: int,
    *,
    mean: bool,
) -> list[Decimal | None]:
    """Map interval values onto slots.

    ``mean=False`` (energy): an interval's value is spread evenly over its length; a slot
    gets the energy of its overlaps, scaled up to the whole slot when the intervals cover
    only part of it. ``mean=True`` (prices): the time-weighted mean of the values
    overlapping the slot. A slot covered less than half is None. Intervals that are empty
    or overlap an earlier one are ignored.
    """
    kept: list[Interval] = []
    for interval in sorted(intervals, key=lambda i: (i.start, i.end)):
        if interval.end <= interval.start or (kept and interval.start < kept[-1].end):
            continue
        kept.append(interval)
    starts = [interval.start for interval in kept]
    out: list[Decimal | None] = []
    for a in slot_starts:
        b = a + slot_seconds
        k = max(0, bisect_right(starts, a) - 1)
        covered = 0
        total = Decimal(0)
        while k < len(kept) and kept[k].start < b:
            interval = kept[k]
            overlap = min(b, interval.end) - max(a, interval.start)
            if overlap > 0:
                covered += overlap
                if mean:
                    total += interval.value * overlap
                else:
                    total += interval.value * overlap / (interval.end - interval.start)
            k += 1
        if covered * 2 < slot_seconds:
            out.append(None)
        elif mean:
            out.append(total / covered)
        else:
            out.append(total * slot_seconds / covered)
    return out


def repeat_daily[T](values: Sequence[T | None], slots_per_day: int) -> tuple[list[T | None], int]:
    """Fill each unknown slot with the value one day earlier, when that is known.

    Returns the filled series and how many slots were filled.
    """
    out = list(values)
    filled = 0
    for k in range(slots_per_day, len(out)):
        if out[k] is None and (earlier := out[k - slots_per_day]) is not None:
            out[k] = earlier
            filled += 1
    return out, filled
