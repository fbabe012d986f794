"""Forecasts from what Home Assistant already has: PV, inflexible load and grid prices.

The shell reads; the engine models (``core.home.forecast``). :func:`async_home_forecast`
builds one :class:`HomeForecast` for a first slot, a slot length and a horizon. Every series
is filled per slot from the first source that knows the slot, in this order:

PV (all PV assets together)
    1. ``energy_platform``: the solar forecasts configured in the Energy dashboard (any
       integration with an energy platform that provides ``async_get_solar_forecast``, such
       as Forecast.Solar or Solcast), scaled by how the panels did against the forecasts of
       the last days (50 to 150 %); spread: the forecasts' past error, else 25 %.
    2. ``statistics``: a time-of-day model of the PV assets' long-term statistics (last 28
       days), learned per unit of clear-sky sun height so it follows the season.
    3. ``persistence``: the PV power now, following the sun's height; spread 50 %.
    Without a PV asset the series is 0 (``none``).
Load (inflexible: grid import - export + PV + battery discharge - charge - EV chargers -
flexible plugs)
    1. ``statistics``: a Gaussian time-of-day model (weekdays and weekends apart) of that sum
       over the mapped sensors' long-term statistics (last 28 days); the grid comes from the
       grid meter asset, else from the Energy dashboard's grid sources.
    2. ``persistence``: the inflexible load now; spread 50 %, at least 300 W.
    3. ``none``: 0 while the grid reading is unknown.
Import price and feed-in tariff (each)
    1. ``forward``: the price entity's forward prices: the Nord Pool or Tibber action when
       the entity belongs to Home Assistant's own ``nordpool`` or ``tibber`` integration, else
       the attributes of the entity (or of the entities on its device) in a shape
       ``forward_prices`` reads.
    2. ``repeated``: the price of the same slot one day earlier, when that one is known.
    3. ``current``: the entity's price now (the last known one while it is unavailable).
    4. ``fixed``: the fixed price of the settings.

Nothing here blocks the event loop: the long-term statistics are read and the models fitted
in the recorder's executor (again after 6 hours, or when the assets change), the slots are
filled in the executor; solar forecasts are cached for 15 minutes, action prices per day
(tomorrow's tried again every 30 minutes until they are published).

The pure parts (statistics to models, inputs to series) are in ``forecast_build.py``.

Public API: :class:`HomeForecaster`, :func:`forecaster_for`, :func:`async_home_forecast`,
:class:`NoPriceError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util

from .const import (
    CONF_CURRENCY,
    CONF_EXPORT_PRICE,
    CONF_EXPORT_PRICE_ENTITY,
    CONF_IMPORT_PRICE,
    CONF_IMPORT_PRICE_ENTITY,
    DOMAIN,
    LOGGER,
    AssetKind,
)
from .core.home.forecast import HomeForecast, Interval, Site
from .core.market.slots import SECONDS_PER_DAY
from .forecast_build import (
    CALIBRATION_DAYS,
    BuildInputs,
    Learned,
    NoPriceError,
    PriceInputs,
    Terms,
    build,
    inflexible_load_w,
    learn,
    pv_power_w,
    statistic_terms,
)
from .forward_prices import (
    close_intervals,
    intervals_from_nordpool_response,
    intervals_from_tibber_response,
    merge,
)
from .prices import (
    InvalidPriceError,
    fixed_price_to_minor,
    parse_series_price_unit,
    price_state_to_minor,
)
from .runtime import PeerEnergyRuntime

STATS_DAYS: Final = 28
STATS_REFRESH_S: Final = 6 * 3600
STATS_RETRY_S: Final = 10 * 60  # after the statistics could not be read
SOLAR_REFRESH_S: Final = 15 * 60
ACTION_RETRY_S: Final = 30 * 60
ACTION_TIMEOUT_S: Final = 30
MAX_HORIZON_S: Final = 7 * SECONDS_PER_DAY
STAT_UNITS: Final = {"energy": "Wh", "power": "W"}

__all__ = ["HomeForecaster", "NoPriceError", "async_home_forecast", "forecaster_for"]


@dataclass(slots=True)
class _ActionPrices:
    day: date
    fetched: float
    intervals: tuple[Interval, ...]
    complete: bool
    error: str | None = None


@dataclass(slots=True)
class _Solar:
    fetched: float
    providers: tuple[tuple[str, tuple[Interval, ...]], ...]
    status: str


class HomeForecaster:
    """Builds the home's forecasts; keeps what is slow to read (see the module docstring)."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
        """Bind to an entry; nothing is read until the first forecast."""
        self.hass = hass
        self.entry = entry
        self.learned: Learned | None = None
        self._learning: asyncio.Task[Learned] | None = None
        self._solar: _Solar | None = None
        self._solar_memory: dict[tuple[str, int], Interval] = {}
        self._actions: dict[str, _ActionPrices] = {}
        self._last_price: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self.last_report: dict[str, Any] | None = None

    @property
    def currency(self) -> str:
        """The entry's currency."""
        return str(self.entry.data.get(CONF_CURRENCY) or self.hass.config.currency)

    @property
    def site(self) -> Site:
        """Where the home is (Home Assistant's location)."""
        return Site(float(self.hass.config.latitude), float(self.hass.config.longitude))

    async def async_forecast(self, *, start: int, slot_seconds: int, slots: int) -> HomeForecast:
        """The forecast of ``slots`` slots of ``slot_seconds`` from ``start`` (Unix seconds).

        Raises ValueError for a slot length that does not divide a day or a horizon that is
        empty or longer than a week, and NoPriceError when a price series knows no price.
        """
        if slot_seconds <= 0 or SECONDS_PER_DAY % slot_seconds:
            raise ValueError("slot_seconds must divide a day")
        if slots <= 0 or slots * slot_seconds > MAX_HORIZON_S:
            raise ValueError("the horizon must have at least one slot and at most a week")
        async with self._lock:
            now = dt_util.utcnow().timestamp()
            learned = await self._async_learned(now)
            solar = await self._async_solar(now)
            prices = (
                await self._async_price_inputs(
                    "import_price", CONF_IMPORT_PRICE, CONF_IMPORT_PRICE_ENTITY, now
                ),
                await self._async_price_inputs(
                    "feed_in_tariff", CONF_EXPORT_PRICE, CONF_EXPORT_PRICE_ENTITY, now
                ),
            )
            runtime = self.entry.runtime_data
            data = runtime.coordinator.data
            inputs = BuildInputs(
                start=start,
                slot_seconds=slot_seconds,
                slots=slots,
                now=int(now),
                tz=dt_util.get_default_time_zone(),
                site=self.site,
                has_pv=any(a.kind is AssetKind.PV for a in runtime.assets.values()),
                pv_w=pv_power_w(runtime.assets, data),
                load_w=inflexible_load_w(runtime.assets, data, runtime.controls_for),
                learned=learned,
                solar=solar.providers,
                solar_memory=self._remembered_solar(),
                prices=prices,
            )
            try:
                forecast, reports = await self.hass.async_add_executor_job(build, inputs)
            except NoPriceError:
                self.last_report = self._report(inputs, learned, solar, None, error="no_price")
                raise
            self.last_report = self._report(inputs, learned, solar, reports)
            return forecast

    # --- statistics ---

    async def _async_terms(self) -> Terms:
        runtime = self.entry.runtime_data
        prefs = await self._async_energy_prefs()
        imports: list[str] = []
        exports: list[str] = []
        for source in (prefs or {}).get("energy_sources", []):
            if source.get("type") != "grid":
                continue
            imports.extend(f["stat_energy_from"] for f in source.get("flow_from", []))
            exports.extend(f["stat_energy_to"] for f in source.get("flow_to", []))
        return statistic_terms(runtime.assets, runtime.controls_for, (imports, exports))

    async def _async_learned(self, now: float) -> Learned | None:
        """The learned models: refreshed in the background when old, awaited when missing."""
        terms = await self._async_terms()
        learned = self.learned
        if learned is not None and learned.terms != terms:
            learned = None
        refresh = STATS_REFRESH_S if learned is None or learned.status == "ok" else STATS_RETRY_S
        if learned is not None and now - learned.read_at < refresh:
            return learned
        if self._learning is None or self._learning.done():
            self._learning = self.entry.async_create_background_task(
                self.hass, self._async_learn(terms, now), f"{DOMAIN} learn forecasts"
            )
        if learned is not None:
            return learned
        return await asyncio.shield(self._learning)

    async def _async_learn(self, terms: Terms, now: float) -> Learned:
        """Read the statistics and fit the models in the recorder's executor."""
        ids = {
            statistic_id for term in (*terms[0], *terms[1]) for statistic_id in term.statistic_ids
        }
        if not ids:
            learned = Learned(read_at=now, terms=terms, status="no_sources")
        elif "recorder" not in self.hass.config.components:
            learned = Learned(read_at=now, terms=terms, status="no_recorder")
        else:
            from homeassistant.components.recorder.statistics import (
                statistics_during_period,
            )
            from homeassistant.helpers.recorder import get_instance
            from sqlalchemy.exc import SQLAlchemyError

            end = dt_util.utc_from_timestamp(now).replace(minute=0, second=0, microsecond=0)
            start = end - timedelta(days=STATS_DAYS)
            tz = dt_util.get_default_time_zone()
            site = self.site
            hass = self.hass

            def job() -> Learned:
                try:
                    rows = statistics_during_period(
                        hass, start, end, ids, "hour", STAT_UNITS, {"mean", "change"}
                    )
                except SQLAlchemyError:
                    LOGGER.warning("Could not read the long-term statistics", exc_info=True)
                    return Learned(read_at=now, terms=terms, status="read_error")
                return learn(rows, terms, read_at=now, tz=tz, site=site)

            learned = await get_instance(hass).async_add_executor_job(job)
        self.learned = learned
        return learned

    # --- solar forecasts ---

    async def _async_energy_prefs(self) -> Mapping[str, Any] | None:
        try:
            from homeassistant.components.energy.data import (
                async_get_manager,
            )
        except ImportError:  # pragma: no cover - the energy integration is part of core
            return None
        manager = await async_get_manager(self.hass)
        return manager.data

    async def _async_solar(self, now: float) -> _Solar:
        """The Energy dashboard's solar forecasts (cached for SOLAR_REFRESH_S)."""
        if self._solar is not None and now - self._solar.fetched < SOLAR_REFRESH_S:
            return self._solar
        prefs = await self._async_energy_prefs()
        entry_ids = [
            entry_id
            for source in (prefs or {}).get("energy_sources", [])
            if source.get("type") == "solar"
            for entry_id in source.get("config_entry_solar_forecast") or ()
        ]
        providers: list[tuple[str, tuple[Interval, ...]]] = []
        status = "not_configured"
        if entry_ids:
            from homeassistant.components.energy.websocket_api import (
                async_get_energy_platforms,
            )

            platforms = await async_get_energy_platforms(self.hass)
            status = "unavailable"
            tz = dt_util.get_default_time_zone()
            for entry_id in dict.fromkeys(entry_ids):
                config_entry = self.hass.config_entries.async_get_entry(entry_id)
                if config_entry is None or config_entry.domain not in platforms:
                    continue
                try:
                    result = await platforms[config_entry.domain](self.hass, entry_id)
                except Exception:  # another integration's bug must not stop ours
                    LOGGER.warning(
                        "The solar forecast of %s failed", config_entry.domain, exc_info=True
                    )
                    continue
                intervals = _solar_intervals(result, tz)
                if intervals:
                    providers.append((config_entry.domain, intervals))
                    status = "ok"
                    for interval in intervals:
                        self._solar_memory[(entry_id, interval.start)] = interval
        keep = now - (CALIBRATION_DAYS + 1) * SECONDS_PER_DAY
        for key in [k for k, i in self._solar_memory.items() if i.end < keep]:
            del self._solar_memory[key]
        self._solar = _Solar(fetched=now, providers=tuple(providers), status=status)
        return self._solar

    def _remembered_solar(self) -> tuple[tuple[str, tuple[Interval, ...]], ...]:
        """The solar forecasts given so far, per forecast entry (for calibration)."""
        grouped: dict[str, list[Interval]] = {}
        for (entry_id, _start), interval in self._solar_memory.items():
            grouped.setdefault(entry_id, []).append(interval)
        return tuple((entry_id, tuple(intervals)) for entry_id, intervals in grouped.items())

    # --- prices ---

    async def _async_price_inputs(
        self, series: str, fixed_key: str, entity_key: str, now: float
    ) -> PriceInputs:
        currency = self.currency
        data = self.entry.data
        entity_id = data.get(entity_key)
        if not entity_id:
            fixed: int | None = None
            try:
                fixed = fixed_price_to_minor(data[fixed_key], currency)
            except (KeyError, TypeError, InvalidPriceError):
                fixed = None
            return PriceInputs(series=series, currency=currency, fixed=fixed)
        state = self.hass.states.get(entity_id)
        current: int | None
        try:
            current = price_state_to_minor(state, currency)
            self._last_price[series] = current
        except InvalidPriceError:
            current = self._last_price.get(series)
        unit = (
            str(state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) or "") if state is not None else ""
        ) or f"{currency}/kWh"
        registry = er.async_get(self.hass)
        reg_entry = registry.async_get(entity_id)
        platform = reg_entry.platform if reg_entry is not None else None
        action: tuple[str, tuple[Interval, ...]] | None = None
        if reg_entry is not None and platform in ("nordpool", "tibber"):
            prices = await self._async_action_prices(series, reg_entry, unit, now)
            if prices is not None:
                action = (f"{platform}_action", prices.intervals)
        attributes: list[tuple[Mapping[str, Any], str]] = []
        if state is not None:
            attributes.append((state.attributes, unit))
        if reg_entry is not None and reg_entry.device_id:
            for sibling in er.async_entries_for_device(registry, reg_entry.device_id):
                if sibling.entity_id == entity_id or sibling.domain not in ("sensor", "event"):
                    continue
                if (other := self.hass.states.get(sibling.entity_id)) is None:
                    continue
                other_unit = str(other.attributes.get(ATTR_UNIT_OF_MEASUREMENT) or "")
                try:
                    parse_series_price_unit(other_unit, currency)
                except InvalidPriceError:
                    other_unit = unit
                attributes.append((other.attributes, other_unit))
        return PriceInputs(
            series=series,
            currency=currency,
            entity=entity_key,
            platform=platform,
            current=current,
            action=action,
            attributes=tuple(attributes),
            today=dt_util.now().date(),
        )

    async def _async_action_prices(
        self, series: str, reg_entry: er.RegistryEntry, unit: str, now: float
    ) -> _ActionPrices | None:
        """Forward prices from the core Nord Pool or Tibber action, cached per local day."""
        today = dt_util.now().date()
        cached = self._actions.get(series)
        if (
            cached is not None
            and cached.day == today
            and (cached.complete or now - cached.fetched < ACTION_RETRY_S)
        ):
            return cached
        intervals: tuple[Interval, ...] = ()
        error: str | None = None
        try:
            async with asyncio.timeout(ACTION_TIMEOUT_S):
                if reg_entry.platform == "nordpool":
                    intervals = await self._async_nordpool(reg_entry, today)
                else:
                    intervals = await self._async_tibber(reg_entry, unit, today)
        except (HomeAssistantError, TimeoutError) as err:
            error = type(err).__name__
            LOGGER.debug("Forward prices of %s: %s", reg_entry.entity_id, err)
        if not intervals and cached is not None and cached.day == today:
            intervals = cached.intervals  # keep today's prices while tomorrow's are late
        tomorrow_end = int(
            datetime.combine(
                today + timedelta(days=2), dtime(), dt_util.get_default_time_zone()
            ).timestamp()
        )
        complete = bool(intervals) and max(i.end for i in intervals) >= tomorrow_end
        prices = _ActionPrices(
            day=today, fetched=now, intervals=intervals, complete=complete, error=error
        )
        self._actions[series] = prices
        return prices

    async def _async_nordpool(
        self, reg_entry: er.RegistryEntry, today: date
    ) -> tuple[Interval, ...]:
        config_entry = (
            self.hass.config_entries.async_get_entry(reg_entry.config_entry_id)
            if reg_entry.config_entry_id
            else None
        )
        if config_entry is None or config_entry.state is not ConfigEntryState.LOADED:
            return ()
        currency = str(config_entry.data.get("currency", "")).upper()
        if currency != self.currency.upper():
            return ()
        parts = (reg_entry.unique_id or "").split("-")
        areas = [str(a).upper() for a in config_entry.data.get("areas", [])]
        area = parts[-2].upper() if len(parts) >= 2 else (areas[0] if len(areas) == 1 else "")
        if not area:
            return ()
        tz = dt_util.get_default_time_zone()
        found: list[Interval] = []
        for day in (today, today + timedelta(days=1)):
            try:
                response = await self.hass.services.async_call(
                    "nordpool",
                    "get_prices_for_date",
                    {
                        "config_entry": config_entry.entry_id,
                        "date": day.isoformat(),
                        "areas": [area],
                    },
                    blocking=True,
                    return_response=True,
                )
            except HomeAssistantError as err:
                if day == today:
                    raise
                LOGGER.debug("Nord Pool prices for %s are not published yet: %s", day, err)
                continue
            found.extend(
                intervals_from_nordpool_response(response, area=area, currency=currency, tz=tz)
            )
        return tuple(merge(found))

    async def _async_tibber(
        self, reg_entry: er.RegistryEntry, unit: str, today: date
    ) -> tuple[Interval, ...]:
        tz = dt_util.get_default_time_zone()
        start = datetime.combine(today, dtime(), tz)
        response = await self.hass.services.async_call(
            "tibber",
            "get_prices",
            {"start": start.isoformat(), "end": (start + timedelta(days=2)).isoformat()},
            blocking=True,
            return_response=True,
        )
        state = self.hass.states.get(reg_entry.entity_id)
        home = state.attributes.get("app_nickname") if state is not None else None
        return tuple(
            intervals_from_tibber_response(
                response,
                home=str(home) if home else None,
                unit=unit,
                currency=self.currency,
                tz=tz,
            )
        )

    # --- diagnostics ---

    def _report(
        self,
        inputs: BuildInputs,
        learned: Learned | None,
        solar: _Solar,
        series: Mapping[str, Any] | None,
        *,
        error: str | None = None,
    ) -> dict[str, Any]:
        def iso(ts: float | None) -> str | None:
            return None if ts is None else dt_util.utc_from_timestamp(ts).isoformat()

        statistics: dict[str, Any] = {"status": "not_read"}
        if learned is not None:
            statistics = {
                "status": learned.status,
                "read_at": iso(learned.read_at),
                "age_s": round(inputs.now - learned.read_at),
                "pv_terms": [t.role for t in learned.terms[0]],
                "load_terms": [t.role for t in learned.terms[1]],
                "missing": list(learned.missing),
            }
            for name, profile in (("pv", learned.pv), ("load", learned.load)):
                statistics[name] = (
                    None
                    if profile is None
                    else {
                        "samples": profile.samples,
                        "first": iso(profile.first),
                        "last": iso(profile.last),
                    }
                )
        return {
            "built_at": iso(inputs.now),
            "start": iso(inputs.start),
            "slot_seconds": inputs.slot_seconds,
            "slots": inputs.slots,
            "error": error,
            "series": dict(series) if series is not None else None,
            "statistics": statistics,
            "solar_forecast": {
                "status": solar.status,
                "fetched_at": iso(solar.fetched),
                "providers": [provider for provider, _ in solar.providers],
                "remembered_intervals": len(self._solar_memory),
            },
            "actions": {
                name: {
                    "day": prices.day.isoformat(),
                    "fetched_at": iso(prices.fetched),
                    "intervals": len(prices.intervals),
                    "complete": prices.complete,
                    "error": prices.error,
                }
                for name, prices in self._actions.items()
            },
        }

    async def async_diagnostics(self, slot_seconds: int, slots: int) -> dict[str, Any]:
        """Build a forecast from the next slot and report what each series came from."""
        now = int(dt_util.utcnow().timestamp())
        start = now - now % slot_seconds + slot_seconds
        try:
            await self.async_forecast(start=start, slot_seconds=slot_seconds, slots=slots)
        except (NoPriceError, ValueError) as err:
            LOGGER.debug("Forecast for diagnostics failed: %s", err)
        return self.last_report or {"error": "not_built"}


def _solar_intervals(result: object, tz: tzinfo) -> tuple[Interval, ...]:
    """The ``wh_hours`` of an energy platform's solar forecast as intervals (Wh each).

    Each key is the start of a period that lasts until the next key (hourly for most
    providers); the energy dashboard reads them the same way.
    """
    wh_hours = result.get("wh_hours") if isinstance(result, Mapping) else None
    if not isinstance(wh_hours, Mapping):
        return ()
    found: list[tuple[int, int | None, Decimal]] = []
    for key, value in wh_hours.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        when = dt_util.parse_datetime(str(key))
        if when is None:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)
        found.append((int(when.timestamp()), None, Decimal(repr(max(0.0, float(value))))))
    return tuple(close_intervals(found))


@callback
def forecaster_for(hass: HomeAssistant, entry: ConfigEntry[Any]) -> HomeForecaster:
    """The entry's forecaster, kept in its runtime data while the entry sets up or is
    loaded (its slot clock plans the first slot during the set-up) and gone with it; for
    an entry without runtime data a new one that is not kept."""
    runtime = getattr(entry, "runtime_data", None)
    if not isinstance(runtime, PeerEnergyRuntime) or entry.state not in (
        ConfigEntryState.LOADED,
        ConfigEntryState.SETUP_IN_PROGRESS,
    ):
        return HomeForecaster(hass, entry)
    if runtime.forecaster is None:
        runtime.forecaster = HomeForecaster(hass, entry)
    return runtime.forecaster


async def async_home_forecast(
    hass: HomeAssistant, entry: ConfigEntry[Any], *, start: int, slot_seconds: int, slots: int
) -> HomeForecast:
    """The home's forecast over ``slots`` slots from ``start`` (see the module docstring)."""
    return await forecaster_for(hass, entry).async_forecast(
        start=start, slot_seconds=slot_seconds, slots=slots
    )
