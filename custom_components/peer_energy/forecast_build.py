"""The parts of a home forecast that need no Home Assistant: statistics to models, inputs to series.

``forecasts.py`` gathers the inputs in the event loop (states, statistics rows, solar forecasts,
action responses); the functions here turn them into a :class:`HomeForecast` and run in an
executor: :func:`learn` (long-term statistics rows to the PV and load models) and :func:`build`
(all inputs to the series of one horizon, with a report of where each slot came from). The
order of sources per series is described in ``forecasts.py``.

Public API: :class:`StatTerm`, :func:`statistic_terms`, :func:`combine`, :class:`Learned`,
:func:`learn`, :func:`inflexible_load_w`, :func:`pv_power_w`, :class:`PriceInputs`,
:class:`BuildInputs`, :func:`forward_intervals`, :func:`build`, :class:`NoPriceError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

from homeassistant.exceptions import HomeAssistantError

from .const import (
    CONF_ENERGY_ENTITY,
    CONF_EXPORT_ENERGY_ENTITY,
    CONF_IMPORT_ENERGY_ENTITY,
    CONF_POWER_ENTITY,
    AssetKind,
    PowerSign,
)
from .core.home.forecast import (
    HomeForecast,
    Interval,
    Profile,
    ProfileConfig,
    Site,
    calibration_pct,
    error_pct,
    fit_profile,
    persistence,
    predict_profile,
    repeat_daily,
    resample,
)
from .core.market.slots import SECONDS_PER_DAY
from .forward_prices import intervals_from_attributes, merge
from .prices import round_minor

if TYPE_CHECKING:
    from .coordinator import AssetConfig, PeerEnergyData
    from .runtime import AssetControls

CALIBRATION_DAYS: Final = 7
SOLAR_SD_PCT: Final = 25
MIN_SOLAR_SD_PCT: Final = 10
MAX_SOLAR_SD_PCT: Final = 60
PV_PERSISTENCE_SD_PCT: Final = 50
LOAD_PERSISTENCE_SD_PCT: Final = 50
LOAD_PERSISTENCE_MIN_SD_W: Final = 300

type Column = Literal["mean", "change"]
type Part = tuple[str, Column, int]
type Terms = tuple[tuple[StatTerm, ...], tuple[StatTerm, ...]]


class NoPriceError(HomeAssistantError):
    """No price at all is known for a series (no forward, current, last or fixed price)."""


# --- What the statistics are made of ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatTerm:
    """One quantity in a sum, per hour.

    ``options`` measure it, best first (an energy counter's hourly change, then a power
    sensor's hourly mean); each option is a sum of ``(statistic id, column, sign)`` parts,
    and the first option whose parts all have statistics is used.
    """

    options: tuple[tuple[Part, ...], ...]
    role: str  # what it stands for, for diagnostics ("<asset id>/<kind>")
    required: bool = True

    @property
    def statistic_ids(self) -> set[str]:
        """Every statistic the term may read."""
        return {part[0] for option in self.options for part in option}


def _asset_term(asset: AssetConfig, sign: int, *, required: bool) -> StatTerm | None:
    """An asset's energy counter, else its power."""
    options: list[tuple[Part, ...]] = []
    if (energy := asset.sources.get(CONF_ENERGY_ENTITY)) is not None:
        options.append(((energy, "change", sign),))
    if (power := asset.sources.get(CONF_POWER_ENTITY)) is not None:
        options.append(((power, "mean", sign),))
    if not options:
        return None
    return StatTerm(tuple(options), f"{asset.subentry_id}/{asset.kind.value}", required)


def statistic_terms(
    assets: Mapping[str, AssetConfig],
    controls_for: Callable[[str], AssetControls],
    grid_flows: tuple[Sequence[str], Sequence[str]] = ((), ()),
) -> Terms:
    """(PV terms, inflexible load terms) for the entry's assets.

    ``grid_flows`` are the Energy dashboard's grid import and export statistics, used when
    no grid meter asset is mapped. Without either, there is no load model (no terms).
    """
    pv: list[StatTerm] = []
    load: list[StatTerm] = []
    grid: StatTerm | None = None
    for sid, asset in assets.items():
        sources = asset.sources
        if asset.kind is AssetKind.PV and (term := _asset_term(asset, 1, required=True)):
            pv.append(term)
        elif asset.kind is AssetKind.BATTERY and (power := sources.get(CONF_POWER_ENTITY)):
            sign = -1 if asset.power_sign is PowerSign.POSITIVE_CHARGE else 1
            load.append(StatTerm((((power, "mean", sign),),), f"{sid}/battery"))
        elif asset.kind is AssetKind.EV_CHARGER or (
            asset.kind is AssetKind.PLUG and controls_for(sid).plug_flexible
        ):
            if term := _asset_term(asset, -1, required=False):
                load.append(term)
        elif asset.kind is AssetKind.GRID_METER and grid is None:
            options: list[tuple[Part, ...]] = []
            imported = sources.get(CONF_IMPORT_ENERGY_ENTITY)
            exported = sources.get(CONF_EXPORT_ENERGY_ENTITY)
            if imported and exported:
                options.append(((imported, "change", 1), (exported, "change", -1)))
            if power := sources.get(CONF_POWER_ENTITY):
                options.append(((power, "mean", 1),))
            if options:
                grid = StatTerm(tuple(options), f"{sid}/grid_meter")
    if grid is None and any(grid_flows):
        parts: tuple[Part, ...] = (
            *((stat, "change", 1) for stat in grid_flows[0]),
            *((stat, "change", -1) for stat in grid_flows[1]),
        )
        grid = StatTerm((parts,), "energy_dashboard/grid")
    if grid is None:
        return tuple(pv), ()
    return tuple(pv), (grid, *pv, *load)


def _option_values(
    series: Mapping[tuple[str, Column], Mapping[int, float]], option: Sequence[Part]
) -> dict[int, float] | None:
    """An option's hourly sum over the hours all its parts have; None if a part has none."""
    found = [(sign, series.get((statistic_id, column))) for statistic_id, column, sign in option]
    if not all(values for _, values in found):
        return None
    hours = set.intersection(*(set(values or {}) for _, values in found))
    return {hour: sum(sign * (values or {})[hour] for sign, values in found) for hour in hours}


def combine(
    series: Mapping[tuple[str, Column], Mapping[int, float]], terms: Sequence[StatTerm]
) -> tuple[dict[int, float], tuple[str, ...]]:
    """Hourly sum of the terms over the hours every used term has; (sum, missing roles).

    A required term without statistics makes the sum empty; an optional one is left out (and
    named as missing).
    """
    used: list[dict[int, float]] = []
    missing: list[str] = []
    for term in terms:
        values = next((v for option in term.options if (v := _option_values(series, option))), None)
        if values:
            used.append(values)
        else:
            missing.append(term.role)
            if term.required:
                return {}, tuple(missing)
    if not used:
        return {}, tuple(missing)
    hours = set.intersection(*(set(values) for values in used))
    return {hour: sum(values[hour] for values in used) for hour in sorted(hours)}, tuple(missing)


@dataclass(frozen=True, slots=True)
class Learned:
    """Models learned from the long-term statistics, and what went into them."""

    read_at: float  # Unix seconds
    terms: Terms
    pv: Profile | None = None
    load: Profile | None = None
    pv_hourly: Mapping[int, int] = field(default_factory=dict)  # recent actual PV Wh per hour
    missing: tuple[str, ...] = ()
    status: str = "ok"


def learn(
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    terms: Terms,
    *,
    read_at: float,
    tz: tzinfo,
    site: Site,
) -> Learned:
    """Fit the PV and load models to hourly statistic rows (runs in an executor)."""
    series: dict[tuple[str, Column], dict[int, float]] = {}
    for term in (*terms[0], *terms[1]):
        for statistic_id, column, _sign in (part for option in term.options for part in option):
            key = (statistic_id, column)
            if key in series:
                continue
            values: dict[int, float] = {}
            for row in rows.get(statistic_id, ()):
                value = row.get(column)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    values[int(row["start"])] = float(value)
            series[key] = values
    pv_sum, pv_missing = combine(series, terms[0])
    load_sum, load_missing = combine(series, terms[1])
    pv = None
    if pv_sum:
        pv = fit_profile(
            pv_sum.items(),
            tz=tz,
            config=ProfileConfig(local_time=False, split_weekend=False, site=site),
        )
    load = fit_profile(load_sum.items(), tz=tz) if load_sum else None
    recent = read_at - CALIBRATION_DAYS * SECONDS_PER_DAY
    return Learned(
        read_at=read_at,
        terms=terms,
        pv=pv,
        load=load,
        pv_hourly={hour: round(max(0.0, v)) for hour, v in pv_sum.items() if hour >= recent},
        missing=tuple(dict.fromkeys((*pv_missing, *load_missing))),
    )


# --- Readings now ----------------------------------------------------------------------


def inflexible_load_w(
    assets: Mapping[str, AssetConfig],
    data: PeerEnergyData | None,
    controls_for: Callable[[str], AssetControls],
) -> int | None:
    """The home's inflexible load now (W): grid + PV + battery - EV - flexible plugs.

    None without a grid meter's reading (the estimate from the assets alone leaves out the
    very load this is about).
    """
    if data is None or data.grid_power_w is None or data.grid_source != "grid_meter":
        return None
    load = data.grid_power_w
    for sid, asset in assets.items():
        reading = data.assets.get(sid)
        power = 0 if reading is None or reading.power_w is None else reading.power_w
        if asset.kind is AssetKind.PV:
            load += max(power, 0)
        elif asset.kind is AssetKind.BATTERY:
            load += power
        elif asset.kind is AssetKind.EV_CHARGER or (
            asset.kind is AssetKind.PLUG and controls_for(sid).plug_flexible
        ):
            load -= max(power, 0)
    return max(load, 0)


def pv_power_w(assets: Mapping[str, AssetConfig], data: PeerEnergyData | None) -> int | None:
    """All PV power now (W); None when no PV asset has a reading."""
    if data is None:
        return None
    powers = [
        reading.power_w
        for sid, asset in assets.items()
        if asset.kind is AssetKind.PV
        and (reading := data.assets.get(sid)) is not None
        and reading.power_w is not None
    ]
    return sum(max(p, 0) for p in powers) if powers else None


# --- The inputs of one build, and the build (executor) ------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceInputs:
    """What is known of one price series when a build starts."""

    series: str  # "import_price" or "feed_in_tariff"
    currency: str
    fixed: int | None = None
    entity: str | None = None  # the config key of the entity (never its id: diagnostics)
    platform: str | None = None
    current: int | None = None
    action: tuple[str, tuple[Interval, ...]] | None = None  # (action, intervals)
    attributes: tuple[tuple[Mapping[str, Any], str], ...] = ()  # (attributes, unit) to read
    today: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildInputs:
    """Everything a build reads, gathered in the event loop."""

    start: int
    slot_seconds: int
    slots: int
    now: int
    tz: tzinfo
    site: Site
    has_pv: bool
    pv_w: int | None
    load_w: int | None
    learned: Learned | None
    solar: tuple[tuple[str, tuple[Interval, ...]], ...] = ()  # (provider, Wh intervals)
    solar_memory: tuple[tuple[str, tuple[Interval, ...]], ...] = ()  # past ones, per forecast
    prices: tuple[PriceInputs, PriceInputs]


def _count(labels: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return counts


def _fill(
    series: tuple[list[int | None], list[int | None], list[str]],
    means: Sequence[int | None],
    sds: Sequence[int | None],
    label: str,
) -> None:
    """Fill the slots ``series`` does not know yet from another source."""
    known, spread, labels = series
    for k, mean in enumerate(means):
        if known[k] is None and mean is not None:
            known[k], spread[k], labels[k] = mean, sds[k], label


def _energy_sum(
    forecasts: Sequence[tuple[str, Sequence[Interval]]],
    slot_starts: Sequence[int],
    slot_seconds: int,
) -> list[Decimal | None]:
    """The energy of several forecasts (several arrays of panels) per slot, added up."""
    totals: list[Decimal | None] = [None] * len(slot_starts)
    for _name, intervals in forecasts:
        for k, value in enumerate(resample(intervals, slot_starts, slot_seconds, mean=False)):
            if value is not None:
                totals[k] = (totals[k] or Decimal(0)) + value
    return totals


def _pv_series(
    inputs: BuildInputs, slot_starts: Sequence[int]
) -> tuple[list[int], list[int], dict[str, Any]]:
    n = len(slot_starts)
    if not inputs.has_pv:
        return [0] * n, [0] * n, {"sources": {"none": n}}
    means: list[int | None] = [None] * n
    sds: list[int | None] = [None] * n
    labels = ["none"] * n
    report: dict[str, Any] = {}
    if inputs.solar:
        totals = _energy_sum(inputs.solar, slot_starts, inputs.slot_seconds)
        actual = inputs.learned.pv_hourly if inputs.learned is not None else {}
        hours = sorted(actual)
        past = _energy_sum(inputs.solar_memory, hours, 3600)
        remembered = {h: round(v) for h, v in zip(hours, past, strict=True) if v is not None}
        pct = calibration_pct(actual, remembered)
        calibrated = {h: v * pct // 100 for h, v in remembered.items()}
        err = error_pct(actual, calibrated)
        sd_pct = SOLAR_SD_PCT if err is None else max(MIN_SOLAR_SD_PCT, min(MAX_SOLAR_SD_PCT, err))
        for k, total in enumerate(totals):
            if total is not None:
                wh = max(0, round(total * pct / 100))
                means[k], sds[k], labels[k] = wh, wh * sd_pct // 100, "energy_platform"
        report |= {
            "providers": sorted({provider for provider, _ in inputs.solar}),
            "calibration_pct": pct,
            "calibration_hours": len(set(actual) & set(remembered)),
            "sd_pct": sd_pct,
        }
    series = (means, sds, labels)
    if inputs.learned is not None and inputs.learned.pv is not None:
        _fill(
            series,
            *predict_profile(inputs.learned.pv, slot_starts, inputs.slot_seconds),
            "statistics",
        )
    if any(m is None for m in means) and inputs.pv_w is not None:
        now = persistence(
            inputs.pv_w,
            slot_starts,
            inputs.slot_seconds,
            sd_pct=PV_PERSISTENCE_SD_PCT,
            site=inputs.site,
            now=inputs.now,
        )
        _fill(series, *now, "persistence")
    report["sources"] = _count(labels)
    return [m or 0 for m in means], [s or 0 for s in sds], report


def _load_series(
    inputs: BuildInputs, slot_starts: Sequence[int]
) -> tuple[list[int], list[int], dict[str, Any]]:
    n = len(slot_starts)
    means: list[int | None] = [None] * n
    sds: list[int | None] = [None] * n
    labels = ["none"] * n
    series = (means, sds, labels)
    if inputs.learned is not None and inputs.learned.load is not None:
        _fill(
            series,
            *predict_profile(inputs.learned.load, slot_starts, inputs.slot_seconds),
            "statistics",
        )
    if inputs.load_w is not None:
        now = persistence(
            inputs.load_w,
            slot_starts,
            inputs.slot_seconds,
            sd_pct=LOAD_PERSISTENCE_SD_PCT,
            min_sd_w=LOAD_PERSISTENCE_MIN_SD_W,
        )
        _fill(series, *now, "persistence")
    return [m or 0 for m in means], [s or 0 for s in sds], {"sources": _count(labels)}


def forward_intervals(price: PriceInputs, tz: tzinfo) -> tuple[tuple[Interval, ...], str | None]:
    """The forward prices of a series: its action's, else its attributes' (own first)."""
    if price.action is not None and price.action[1]:
        return price.action[1], price.action[0]
    found: list[list[Interval]] = []
    shapes: list[str] = []
    for k, (attributes, unit) in enumerate(price.attributes):
        parsed = intervals_from_attributes(
            attributes,
            unit=unit,
            currency=price.currency,
            tz=tz,
            today=price.today or datetime.now(tz).date(),
        )
        if parsed is None:
            continue
        if k == 0:  # the entity's own attributes win over its device's other entities
            return tuple(parsed[0]), f"attributes:{parsed[1]}"
        found.append(parsed[0])
        shapes.append(parsed[1])
    if found:
        return tuple(merge(*found)), "device_attributes:" + "+".join(sorted(set(shapes)))
    return (), None


def _price_series(
    price: PriceInputs, inputs: BuildInputs, slot_starts: Sequence[int]
) -> tuple[list[int], dict[str, Any]]:
    n = len(slot_starts)
    per_day = SECONDS_PER_DAY // inputs.slot_seconds
    intervals, provider = forward_intervals(price, inputs.tz)
    report: dict[str, Any] = {
        "entity": price.entity,
        "platform": price.platform,
        "provider": provider or ("fixed" if price.fixed is not None else "state"),
    }
    labels = ["none"] * n
    values: list[int | None] = [None] * n
    if intervals:
        # One day before the horizon too, so a missing slot can repeat yesterday's price.
        extended = [slot_starts[0] - (per_day - k) * inputs.slot_seconds for k in range(per_day)]
        raw = resample(intervals, [*extended, *slot_starts], inputs.slot_seconds, mean=True)
        known = [None if v is None else round_minor(v) for v in raw]
        filled, _ = repeat_daily(known, per_day)
        for k in range(n):
            if known[per_day + k] is not None:
                values[k], labels[k] = known[per_day + k], "forward"
            elif (value := filled[per_day + k]) is not None:
                values[k], labels[k] = value, "repeated"
        report["intervals"] = len(intervals)
        report["known_until"] = datetime.fromtimestamp(intervals[-1].end, UTC).isoformat()
    fallback, label = (
        (price.current, "current")
        if price.current is not None
        else (
            price.fixed,
            "fixed",
        )
    )
    if fallback is None and any(v is None for v in values):
        raise NoPriceError(f"no {price.series} is known")
    for k in range(n):
        if values[k] is None:
            values[k], labels[k] = fallback, label
    report["sources"] = _count(labels)
    return [v if v is not None else 0 for v in values], report


def build(inputs: BuildInputs) -> tuple[HomeForecast, dict[str, Any]]:
    """Fill every series of the horizon from the gathered inputs (runs in an executor)."""
    slot_starts = [inputs.start + k * inputs.slot_seconds for k in range(inputs.slots)]
    pv, pv_sd, pv_report = _pv_series(inputs, slot_starts)
    load, load_sd, load_report = _load_series(inputs, slot_starts)
    import_price, import_report = _price_series(inputs.prices[0], inputs, slot_starts)
    feed_in, feed_in_report = _price_series(inputs.prices[1], inputs, slot_starts)
    reports = {
        "pv": pv_report,
        "load": load_report,
        "import_price": import_report,
        "feed_in_tariff": feed_in_report,
    }
    sources = tuple(
        (name, ", ".join(f"{source} {count}" for source, count in report["sources"].items()))
        for name, report in reports.items()
    )
    forecast = HomeForecast(
        start=inputs.start,
        slot_seconds=inputs.slot_seconds,
        pv_wh=tuple(pv),
        pv_sd_wh=tuple(pv_sd),
        load_wh=tuple(load),
        load_sd_wh=tuple(load_sd),
        import_price=tuple(import_price),
        feed_in_tariff=tuple(feed_in),
        sources=sources,
    )
    return forecast, reports


# --- The forecaster ----------------------------------------------------------------------
