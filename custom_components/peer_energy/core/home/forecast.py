"""Per-home load and PV forecasts per slot, from the home's own history.

History is a mapping from slot start (UTC seconds) to measured energy in that slot (Wh).
The forecast for a slot is the mean of the same slot of day over the last ``days`` days that
have a reading (integer Wh, floored); without any reading for that slot of day it falls back
to the mean of all readings, and to 0 without history.

For PV, when a solar forecast (for example from a weather service, Wh per slot) is given,
the forecast is that figure scaled by how the home's panels performed against past solar
forecasts (actual / forecast over the past slots that have both, clamped to 50-150 %), and
the history-based figure is used only for slots the solar forecast does not cover.

:class:`HomeForecast` is what the planner plans with: one plain value per horizon with the
expected PV, inflexible load and grid prices of every slot, and where each series came from.

Public API: :class:`HomeForecast`, :func:`profile_forecast`, :func:`load_forecast`,
:func:`pv_forecast`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..market.slots import SECONDS_PER_DAY

MIN_CALIBRATION_PCT = 50
MAX_CALIBRATION_PCT = 150


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
