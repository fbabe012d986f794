"""Forward prices that price integrations publish, read into price intervals.

No market logic lives here: this module turns what a price integration exposes (attributes of
its price sensor, or the response of its action) into :class:`core.home.forecast.Interval`
values in exact minor currency units per kWh. ``forecasts.py`` maps them onto slots.

Shapes read (checked against each integration's source or documentation):

==========================  =============================================  ====================
Integration                 Where                                          Items
==========================  =============================================  ====================
Nord Pool (HACS)            attributes ``raw_today``, ``raw_tomorrow``      ``start``, ``end``,
                                                                           ``value``
Nord Pool (HACS)            attributes ``today``, ``tomorrow`` (when the   plain numbers, one
                            raw lists are missing)                         per period of the
                                                                           local day
ENTSO-e (HACS)              attributes ``prices_today``,                   ``time``, ``price``
                            ``prices_tomorrow``, ``prices``
EPEX Spot (HACS)            attribute ``data``                             ``start_time``,
                                                                           ``end_time``, a price
                                                                           key (below)
Octopus Energy (HACS)       attribute ``rates`` of the rate event          ``start``, ``end``,
                            entities on the price sensor's device          ``value_inc_vat``
Nord Pool (core)            action ``nordpool.get_prices_for_date``        per area: ``start``,
                                                                           ``end``, ``price``
Tibber (core)               action ``tibber.get_prices``                   per home:
                                                                           ``start_time``,
                                                                           ``price``
==========================  =============================================  ====================

Units: a value is in the sensor's unit of measurement unless its key names one (EPEX Spot's
``price_ct_per_kwh``, ``price_eur_per_mwh``, ``price_pence_per_kwh``, ``price_gbp_per_mwh``;
Octopus's ``value_inc_vat`` is in the major unit per kWh; the core Nord Pool action answers per
MWh in the entry's currency). Units are read with ``prices.parse_series_price_unit`` (per kWh,
MWh or Wh; ``ct``, ``öre``, ``p`` ... for minor units). Times are ISO 8601 strings or
datetimes; a time without a zone is local time. An item whose time or value cannot be read is
skipped; an interval without an end ends where the next one starts (or after the series'
usual spacing), so hourly and 15-minute series both work, and so do the 23- and 25-hour days
of daylight saving time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from itertools import pairwise
from typing import Any, Final

from .core.home.forecast import Interval
from .prices import InvalidPriceError, parse_series_price_unit, to_minor_decimal

# Longest gap a missing end bridges to the next item's start (s); beyond it the usual spacing.
MAX_BRIDGE_S: Final = 3 * 3600
DEFAULT_SPACING_S: Final = 3600
# Unit of a value key that names one ("{}": the entry's currency, major unit).
_KEY_UNITS: Final[Mapping[str, str | None]] = {
    "value": None,
    "price": None,
    "price_per_kwh": None,
    "price_ct_per_kwh": "ct/kWh",
    "price_pence_per_kwh": "p/kWh",
    "price_eur_per_mwh": "EUR/MWh",
    "price_gbp_per_mwh": "GBP/MWh",
    "value_inc_vat": "{}/kWh",
}


def parse_time(value: object, tz: tzinfo) -> int | None:
    """Unix seconds of an ISO 8601 string or a datetime (local time when it has no zone)."""
    when: datetime
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return int(when.timestamp())


def _price(value: object, unit: str, currency: str) -> Decimal | None:
    """A value in ``unit`` as exact minor units per kWh; None when it is not a price."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    try:
        parsed, exponent = parse_series_price_unit(unit, currency)
        return to_minor_decimal(value, currency=currency, minor=parsed.minor, exponent=exponent)
    except InvalidPriceError:
        return None


def close_intervals(starts: list[tuple[int, int | None, Decimal]]) -> list[Interval]:
    """Give every interval an end: its own, the next start, or the usual spacing."""
    starts.sort(key=lambda item: item[0])
    gaps = sorted(b[0] - a[0] for a, b in pairwise(starts) if b[0] > a[0])
    spacing = gaps[len(gaps) // 2] if gaps else DEFAULT_SPACING_S
    out: list[Interval] = []
    for k, (start, given, value) in enumerate(starts):
        end = given
        if end is None:
            following = starts[k + 1][0] if k + 1 < len(starts) else None
            if following is not None and start < following <= start + MAX_BRIDGE_S:
                end = following
            else:
                end = start + spacing
        if end > start:
            out.append(Interval(start, end, value))
    return out


def intervals_from_items(
    items: object,
    *,
    time_keys: Sequence[str],
    end_keys: Sequence[str],
    value_keys: Sequence[str],
    unit: str,
    currency: str,
    tz: tzinfo,
) -> list[Interval]:
    """Read a list of dicts with a start time, maybe an end time, and a price."""
    if not isinstance(items, list | tuple):
        return []
    found: list[tuple[int, int | None, Decimal]] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        start = next(
            (t for key in time_keys if (t := parse_time(item.get(key), tz)) is not None), None
        )
        if start is None:
            continue
        end = next(
            (t for key in end_keys if (t := parse_time(item.get(key), tz)) is not None), None
        )
        value: Decimal | None = None
        for key in value_keys:
            if key not in item:
                continue
            key_unit = _KEY_UNITS.get(key)
            value = _price(item[key], (key_unit or unit).format(currency), currency)
            if value is not None:
                break
        if value is not None:
            found.append((start, end, value))
    return close_intervals(found)


def intervals_from_day_list(
    values: object, day: date, *, unit: str, currency: str, tz: tzinfo
) -> list[Interval]:
    """Read plain numbers that split one local day into equal periods (Nord Pool lists).

    A day of daylight saving change has 23 or 25 hours; the list must divide the real length
    of the day into periods that divide an hour (15 minutes, an hour ...), or it is not read.
    """
    if not isinstance(values, list | tuple) or not values:
        return []
    midnight = int(datetime.combine(day, time(), tz).timestamp())
    next_midnight = int(datetime.combine(day + timedelta(days=1), time(), tz).timestamp())
    length = next_midnight - midnight
    width = length // len(values)
    if length % len(values) or 3600 % width:
        return []
    out: list[Interval] = []
    for k, raw in enumerate(values):
        value = _price(raw, unit, currency)
        if value is not None:
            out.append(Interval(midnight + k * width, midnight + (k + 1) * width, value))
    return out


def intervals_from_attributes(
    attributes: Mapping[str, Any],
    *,
    unit: str,
    currency: str,
    tz: tzinfo,
    today: date,
) -> tuple[list[Interval], str] | None:
    """Forward prices in a state's attributes: (intervals, shape name), or None.

    ``unit`` is the unit of values whose key names none (the sensor's unit of measurement).
    """

    def read(
        value: object, time_key: str, end_key: str | None, value_keys: Sequence[str]
    ) -> list[Interval]:
        return intervals_from_items(
            value,
            time_keys=(time_key,),
            end_keys=() if end_key is None else (end_key,),
            value_keys=value_keys,
            unit=unit,
            currency=currency,
            tz=tz,
        )

    raw = [
        *read(attributes.get("raw_today"), "start", "end", ("value",)),
        *read(attributes.get("raw_tomorrow"), "start", "end", ("value",)),
    ]
    if raw:
        return raw, "nordpool"
    entsoe = [
        interval
        for key in ("prices", "prices_today", "prices_tomorrow")
        for interval in read(attributes.get(key), "time", None, ("price",))
    ]
    if entsoe:
        return entsoe, "entsoe"
    epex_keys = (
        "price_per_kwh",
        "price_ct_per_kwh",
        "price_pence_per_kwh",
        "price_eur_per_mwh",
        "price_gbp_per_mwh",
    )
    if epex := read(attributes.get("data"), "start_time", "end_time", epex_keys):
        return epex, "epex_spot"
    if octopus := read(attributes.get("rates"), "start", "end", ("value_inc_vat",)):
        return octopus, "octopus_energy"
    lists = [
        *intervals_from_day_list(
            attributes.get("today"), today, unit=unit, currency=currency, tz=tz
        ),
        *intervals_from_day_list(
            attributes.get("tomorrow"),
            today + timedelta(days=1),
            unit=unit,
            currency=currency,
            tz=tz,
        ),
    ]
    if lists:
        return lists, "nordpool_lists"
    return None


def intervals_from_nordpool_response(
    response: object, *, area: str, currency: str, tz: tzinfo
) -> list[Interval]:
    """Prices from ``nordpool.get_prices_for_date`` (per MWh in the entry's currency)."""
    if not isinstance(response, Mapping):
        return []
    return intervals_from_items(
        response.get(area),
        time_keys=("start",),
        end_keys=("end",),
        value_keys=("price",),
        unit=f"{currency}/MWh",
        currency=currency,
        tz=tz,
    )


def intervals_from_tibber_response(
    response: object, *, home: str | None, unit: str, currency: str, tz: tzinfo
) -> list[Interval]:
    """Prices of one home from ``tibber.get_prices`` (the only home when ``home`` is None)."""
    prices = response.get("prices") if isinstance(response, Mapping) else None
    if not isinstance(prices, Mapping) or not prices:
        return []
    if home is None or home not in prices:
        if len(prices) != 1:
            return []
        home = next(iter(prices))
    return intervals_from_items(
        prices[home],
        time_keys=("start_time",),
        end_keys=(),
        value_keys=("price",),
        unit=unit,
        currency=currency,
        tz=tz,
    )


def merge(*series: Iterable[Interval]) -> list[Interval]:
    """All intervals of several series, earliest first (overlaps are resolved on resampling)."""
    return sorted((i for s in series for i in s), key=lambda i: (i.start, i.end))
