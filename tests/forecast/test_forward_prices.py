"""Forward price shapes of price integrations, read into exact minor units per kWh."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from custom_components.peer_energy.core.home.forecast import Interval
from custom_components.peer_energy.forward_prices import (
    intervals_from_attributes,
    intervals_from_day_list,
    intervals_from_items,
    intervals_from_nordpool_response,
    intervals_from_tibber_response,
    parse_time,
)
from custom_components.peer_energy.prices import parse_series_price_unit, to_minor_decimal

OSLO = ZoneInfo("Europe/Oslo")
BERLIN = ZoneInfo("Europe/Berlin")
LONDON = ZoneInfo("Europe/London")
DAY = date(2026, 11, 22)


def local(day: date, hour: int, minute: int = 0, tz: ZoneInfo = BERLIN) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def read(attributes: dict[str, object], unit: str, currency: str = "EUR", tz: ZoneInfo = BERLIN):
    return intervals_from_attributes(attributes, unit=unit, currency=currency, tz=tz, today=DAY)


def test_series_units_per_kwh_mwh_and_wh() -> None:
    assert parse_series_price_unit("EUR/MWh", "EUR")[1] == -3
    assert parse_series_price_unit("c/kWh", "EUR")[1] == 0
    assert parse_series_price_unit("EUR/Wh", "EUR")[1] == 3
    assert to_minor_decimal("-12.5", currency="EUR", exponent=-3) == Decimal("-1.25")
    assert to_minor_decimal(0.1234, currency="EUR") == Decimal("12.34")


def test_nord_pool_raw_lists_with_datetimes_hourly_and_negative() -> None:
    """The HACS Nord Pool sensor: raw_today/raw_tomorrow of local datetimes, in its unit."""
    raw_today = [
        {"start": local(DAY, h, tz=OSLO), "end": local(DAY, h + 1, tz=OSLO), "value": 1.0 + h / 10}
        for h in range(23)
    ]
    raw_today.append(
        {
            "start": local(DAY, 23, tz=OSLO),
            "end": local(DAY + timedelta(days=1), 0, tz=OSLO),
            "value": -0.05,
        }
    )
    parsed = read(
        {"raw_today": raw_today, "raw_tomorrow": [], "tomorrow_valid": False},
        "NOK/kWh",
        "NOK",
        OSLO,
    )
    assert parsed is not None
    intervals, shape = parsed
    assert shape == "nordpool"
    assert len(intervals) == 24
    assert intervals[0] == Interval(
        int(local(DAY, 0, tz=OSLO).timestamp()),
        int(local(DAY, 1, tz=OSLO).timestamp()),
        Decimal("100"),
    )
    assert intervals[-1].value == Decimal("-5.00")  # negative prices stay negative


def test_nord_pool_in_cents_and_per_mwh_and_quarter_hours() -> None:
    quarter = [
        {
            "start": (local(DAY, 0) + timedelta(minutes=15 * k)).isoformat(),
            "end": (local(DAY, 0) + timedelta(minutes=15 * (k + 1))).isoformat(),
            "value": 8.5,
        }
        for k in range(96)
    ]
    intervals, _ = read({"raw_today": quarter}, "c/kWh") or ([], "")
    assert len(intervals) == 96
    assert {i.end - i.start for i in intervals} == {900}
    assert intervals[0].value == Decimal("8.5")
    per_mwh, _ = read({"raw_today": quarter}, "EUR/MWh") or ([], "")
    assert per_mwh[0].value == Decimal("0.85")
    ore, _ = read({"raw_today": quarter}, "Öre/kWh", "SEK") or ([], "")
    assert ore[0].value == Decimal("8.5")


def test_nord_pool_plain_lists_on_daylight_saving_days() -> None:
    """Without raw lists, today/tomorrow split the local day, 23 or 25 hours included."""
    spring = date(2026, 3, 29)  # 23 hours in Berlin
    autumn = date(2026, 10, 25)  # 25 hours
    short = intervals_from_day_list([0.1] * 23, spring, unit="EUR/kWh", currency="EUR", tz=BERLIN)
    assert len(short) == 23
    assert {i.end - i.start for i in short} == {3600}
    assert short[-1].end == int(local(date(2026, 3, 30), 0).timestamp())
    long = intervals_from_day_list([0.1] * 100, autumn, unit="EUR/kWh", currency="EUR", tz=BERLIN)
    assert len(long) == 100
    assert {i.end - i.start for i in long} == {900}
    # 24 values do not divide a 25-hour day: refused rather than misplaced.
    assert (
        intervals_from_day_list([0.1] * 24, autumn, unit="EUR/kWh", currency="EUR", tz=BERLIN) == []
    )
    parsed = read({"today": [0.2] * 24, "tomorrow": [None] * 24, "raw_today": []}, "EUR/kWh")
    assert parsed is not None
    assert parsed[1] == "nordpool_lists"
    assert len(parsed[0]) == 24  # tomorrow not published: its None values are skipped


def test_entsoe_time_and_price_without_ends() -> None:
    hourly = [
        {"time": (local(DAY, 0) + timedelta(hours=h)).isoformat(), "price": 0.1 + h / 100}
        for h in range(48)
    ]
    parsed = read(
        {"prices_today": hourly[:24], "prices_tomorrow": hourly[24:], "prices": hourly}, "EUR/kWh"
    )
    assert parsed is not None
    intervals, shape = parsed
    assert shape == "entsoe"
    # "prices" repeats today and tomorrow; each hour ends where the next begins.
    assert intervals[0].end - intervals[0].start == 3600
    assert intervals[-1].end - intervals[-1].start == 3600
    assert intervals[1].value == Decimal("11.00")


def test_epex_spot_price_keys() -> None:
    items = [
        {
            "start_time": local(DAY, h).isoformat(),
            "end_time": local(DAY, h + 1).isoformat(),
            "price_eur_per_mwh": 95.0,
            "price_ct_per_kwh": 9.5,
        }
        for h in range(3)
    ]
    parsed = read({"data": items}, "EUR/MWh")
    assert parsed is not None
    assert parsed[1] == "epex_spot"
    assert [i.value for i in parsed[0]] == [Decimal("9.5")] * 3
    newer = [
        {
            "start_time": local(DAY, 0).isoformat(),
            "end_time": local(DAY, 1).isoformat(),
            "price_per_kwh": 0.31,
        }
    ]
    assert (read({"data": newer}, "€/kWh") or ([], ""))[0][0].value == Decimal("31.00")
    # A volume sensor's data has no price: not a price series.
    assert (
        read({"data": [{"start_time": local(DAY, 0).isoformat(), "volume_mwh": 3.0}]}, "MWh")
        is None
    )


def test_octopus_rates_in_pounds() -> None:
    rates = [
        {
            "start": local(DAY, 0, 30 * k, LONDON) if k < 2 else local(DAY, 1, 0, LONDON),
            "end": local(DAY, 0, 30, LONDON)
            if k == 0
            else local(DAY, 1, 0, LONDON)
            if k == 1
            else local(DAY, 1, 30, LONDON),
            "value_inc_vat": 0.2415,
            "is_capped": False,
        }
        for k in range(3)
    ]
    parsed = read({"rates": rates}, "", "GBP", LONDON)
    assert parsed is not None
    assert parsed[1] == "octopus_energy"
    assert [i.end - i.start for i in parsed[0]] == [1800, 1800, 1800]
    assert parsed[0][0].value == Decimal("24.1500")


def test_items_that_cannot_be_read_are_skipped() -> None:
    items: list[object] = [
        "not a dict",
        {"start": "yesterday", "value": 1},
        {"start": local(DAY, 0).isoformat(), "value": "n/a"},
        {"start": local(DAY, 1).isoformat(), "value": True},
        {"start": local(DAY, 2).isoformat(), "value": None},
        {"start": "2026-11-22T03:00:00", "value": "0.25"},  # no zone: local time
    ]
    found = intervals_from_items(
        items,
        time_keys=("start",),
        end_keys=("end",),
        value_keys=("value",),
        unit="EUR/kWh",
        currency="EUR",
        tz=BERLIN,
    )
    assert found == [
        Interval(int(local(DAY, 3).timestamp()), int(local(DAY, 4).timestamp()), Decimal("25.00"))
    ]
    assert (
        intervals_from_items(
            None,
            time_keys=("start",),
            end_keys=(),
            value_keys=("value",),
            unit="EUR/kWh",
            currency="EUR",
            tz=BERLIN,
        )
        == []
    )
    assert read({"raw_today": "junk", "unit": "kWh"}, "EUR/kWh") is None
    # A unit of another currency is not a price of ours.
    assert read({"raw_today": [{"start": local(DAY, 0), "value": 1.0}]}, "SEK/kWh") is None
    assert parse_time(12345, BERLIN) is None


def test_core_nord_pool_action_response_per_mwh() -> None:
    response = {
        "SE3": [
            {
                "start": "2026-11-22T23:00:00+00:00",
                "end": "2026-11-23T00:00:00+00:00",
                "price": -3.12,
            },
            {
                "start": "2026-11-23T00:00:00+00:00",
                "end": "2026-11-23T00:15:00+00:00",
                "price": 812.5,
            },
        ],
        "SE4": [
            {"start": "2026-11-22T23:00:00+00:00", "end": "2026-11-23T00:00:00+00:00", "price": 9}
        ],
    }
    found = intervals_from_nordpool_response(response, area="SE3", currency="SEK", tz=OSLO)
    assert [i.value for i in found] == [Decimal("-0.312"), Decimal("81.25")]
    assert [i.end - i.start for i in found] == [3600, 900]
    assert intervals_from_nordpool_response("junk", area="SE3", currency="SEK", tz=OSLO) == []


def test_core_tibber_action_response_picks_the_home() -> None:
    def home(price: float) -> list[dict[str, object]]:
        return [
            {"start_time": f"2026-11-22T{h:02d}:00:00.000+01:00", "price": price, "level": "NORMAL"}
            for h in range(3)
        ]

    response = {"prices": {"Cabin": home(0.5), "Flat": home(0.25)}}
    flat = intervals_from_tibber_response(
        response, home="Flat", unit="EUR/kWh", currency="EUR", tz=BERLIN
    )
    assert [i.value for i in flat] == [Decimal("25.00")] * 3
    assert (
        intervals_from_tibber_response(
            response, home=None, unit="EUR/kWh", currency="EUR", tz=BERLIN
        )
        == []
    )  # two homes and no name: unknown
    only = intervals_from_tibber_response(
        {"prices": {"Flat": home(0.25)}},
        home="Somewhere",
        unit="EUR/kWh",
        currency="EUR",
        tz=BERLIN,
    )
    assert len(only) == 3
    assert (
        intervals_from_tibber_response({}, home=None, unit="EUR/kWh", currency="EUR", tz=BERLIN)
        == []
    )


@pytest.mark.parametrize("unit", ["EUR", "W", "", "EUR/MW"])
def test_unknown_units_are_refused(unit: str) -> None:
    assert read({"prices": [{"time": local(DAY, 0).isoformat(), "price": 1}]}, unit) is None
