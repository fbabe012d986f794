"""Per-home load and PV forecasts per slot, from the home's own history.

History is a mapping from slot start (UTC seconds) to measured energy in that slot (Wh).
The forecast for a slot is the mean of the same slot of day over the last ``days`` days that
have a reading (integer Wh, floored); without any reading for that slot of day it falls back
to the mean of all readings, and to 0 without history.

For PV, when a solar forecast (for example from a weather service, Wh per slot) is given,
the forecast is that figure scaled by how the home's panels performed against past solar
forecasts (actual / forecast over the past slots that have both, clamped to 50-150 %), and
the history-based figure is used only for slots the solar forecast does not cover.

Public API: :func:`profile_forecast`, :func:`load_forecast`, :func:`pv_forecast`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .slots import SECONDS_PER_DAY

MIN_CALIBRATION_PCT = 50
MAX_CALIBRATION_PCT = 150


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
