"""Price parsing, minor-unit conversion and source checks (custom_components/.../prices.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from homeassistant.core import State
from hypothesis import given, strategies as st
import pytest

from custom_components.peer_energy.prices import (
    SOURCE_UNITS,
    InvalidPriceError,
    PriceUnit,
    SourceError,
    SourceKind,
    fixed_price_to_minor,
    minor_digits,
    parse_price_unit,
    price_state_to_minor,
    to_minor_units,
    validate_price_entity,
    validate_source,
)


def _state(value: str, unit: str | None = None, entity_id: str = "sensor.x") -> State:
    attributes: dict[str, Any] = {} if unit is None else {"unit_of_measurement": unit}
    return State(entity_id, value, attributes)


def _code(func: Any, *args: Any, **kwargs: Any) -> SourceError:
    with pytest.raises(InvalidPriceError) as info:
        func(*args, **kwargs)
    assert str(info.value) == info.value.code.value
    return info.value.code


@pytest.mark.parametrize(
    ("unit", "currency", "expected"),
    [
        ("EUR/kWh", "EUR", PriceUnit(currency="EUR", minor=False)),
        ("eur/kwh", "EUR", PriceUnit(currency="EUR", minor=False)),
        (" SEK/kWh ", "SEK", PriceUnit(currency="SEK", minor=False)),
        ("€/kWh", "EUR", PriceUnit(currency="EUR", minor=False)),
        ("£/kWh", "GBP", PriceUnit(currency="GBP", minor=False)),
        ("$/kWh", "AUD", PriceUnit(currency="AUD", minor=False)),
        ("kr/kWh", "NOK", PriceUnit(currency="NOK", minor=False)),
        ("zł/kWh", "PLN", PriceUnit(currency="PLN", minor=False)),
        ("ct/kWh", "EUR", PriceUnit(currency="EUR", minor=True)),
        ("c/kWh", "AUD", PriceUnit(currency="AUD", minor=True)),
        ("cents/kWh", "USD", PriceUnit(currency="USD", minor=True)),
        ("¢/kWh", "USD", PriceUnit(currency="USD", minor=True)),
        ("p/kWh", "GBP", PriceUnit(currency="GBP", minor=True)),
        ("öre/kWh", "SEK", PriceUnit(currency="SEK", minor=True)),
        ("ore/kWh", "SEK", PriceUnit(currency="SEK", minor=True)),
        ("øre/kWh", "DKK", PriceUnit(currency="DKK", minor=True)),
        ("gr/kWh", "PLN", PriceUnit(currency="PLN", minor=True)),
        ("ct/kWh", "eur", PriceUnit(currency="EUR", minor=True)),
    ],
)
def test_parse_price_unit_accepts(unit: str, currency: str, expected: PriceUnit) -> None:
    assert parse_price_unit(unit, currency) == expected


@pytest.mark.parametrize(
    ("unit", "currency", "code"),
    [
        (None, "EUR", SourceError.PRICE_UNIT),
        ("", "EUR", SourceError.PRICE_UNIT),
        ("EUR", "EUR", SourceError.PRICE_UNIT),
        ("EUR/MWh", "EUR", SourceError.PRICE_UNIT),
        ("W", "EUR", SourceError.PRICE_UNIT),
        ("euros/kWh", "EUR", SourceError.PRICE_UNIT),
        ("/kWh", "EUR", SourceError.PRICE_UNIT),
        ("SEK/kWh", "EUR", SourceError.CURRENCY_MISMATCH),
        ("€/kWh", "SEK", SourceError.CURRENCY_MISMATCH),
        ("p/kWh", "EUR", SourceError.CURRENCY_MISMATCH),
        ("öre/kWh", "EUR", SourceError.CURRENCY_MISMATCH),
        # Yen has no minor unit: "ct" cannot mean anything for it.
        ("ct/kWh", "JPY", SourceError.PRICE_UNIT),
    ],
)
def test_parse_price_unit_rejects(unit: str | None, currency: str, code: SourceError) -> None:
    assert _code(parse_price_unit, unit, currency) is code


def test_minor_digits() -> None:
    assert minor_digits("EUR") == 2
    assert minor_digits("jpy") == 0
    assert minor_digits("KWD") == 3


@pytest.mark.parametrize(
    ("value", "currency", "minor", "expected"),
    [
        (0.305, "EUR", False, 31),  # half away from zero, read as 0.305 not 0.30499...
        (0.304, "EUR", False, 30),
        (0.30, "EUR", False, 30),
        (-0.125, "EUR", False, -13),
        ("0.1234", "EUR", False, 12),
        ("12.5", "EUR", True, 13),
        ("12.49", "EUR", True, 12),
        (30, "JPY", False, 30),
        ("0.0305", "KWD", False, 31),
        (Decimal("1.005"), "EUR", False, 101),
        (2, "EUR", False, 200),
    ],
)
def test_to_minor_units(value: Any, currency: str, minor: bool, expected: int) -> None:
    assert to_minor_units(value, currency=currency, minor=minor) == expected


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf", "-Infinity", True])
def test_to_minor_units_rejects_non_numbers(value: Any) -> None:
    assert _code(to_minor_units, value, currency="EUR") is SourceError.NOT_NUMERIC


def test_fixed_price_to_minor() -> None:
    assert fixed_price_to_minor(0.3, "EUR") == 30
    assert fixed_price_to_minor(-0.02, "EUR") == -2
    assert _code(fixed_price_to_minor, float("nan"), "EUR") is SourceError.INVALID_PRICE
    assert _code(fixed_price_to_minor, float("inf"), "EUR") is SourceError.INVALID_PRICE


@given(cents=st.integers(min_value=-(10**9), max_value=10**9))
def test_whole_cents_survive_float_round_trip(cents: int) -> None:
    """A price typed with at most two decimals converts to exactly its cents."""
    value = float(Decimal(cents) / 100)
    assert fixed_price_to_minor(value, "EUR") == cents


@given(tenths=st.integers(min_value=-(10**6), max_value=10**6))
def test_rounding_is_symmetric(tenths: int) -> None:
    """Rounding a price and its negation gives opposite integers (halves away from zero)."""
    value = Decimal(tenths) / 10
    assert to_minor_units(value, currency="EUR", minor=True) == -to_minor_units(
        -value, currency="EUR", minor=True
    )


def test_price_state_to_minor() -> None:
    assert price_state_to_minor(_state("0.2549", "EUR/kWh"), "EUR") == 25
    assert price_state_to_minor(_state("25.49", "ct/kWh"), "EUR") == 25
    assert price_state_to_minor(_state("-3.2", "c/kWh"), "EUR") == -3
    assert price_state_to_minor(_state("1.2", "SEK/kWh"), "SEK") == 120
    assert _code(price_state_to_minor, None, "EUR") is SourceError.ENTITY_NOT_FOUND
    assert _code(price_state_to_minor, _state("abc", "EUR/kWh"), "EUR") is SourceError.NOT_NUMERIC
    assert (
        _code(price_state_to_minor, _state("unavailable", "EUR/kWh"), "EUR")
        is SourceError.NOT_NUMERIC
    )
    assert _code(price_state_to_minor, _state("0.3", "EUR/MWh"), "EUR") is SourceError.PRICE_UNIT
    assert (
        _code(price_state_to_minor, _state("0.3", "NOK/kWh"), "EUR")
        is SourceError.CURRENCY_MISMATCH
    )


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, SourceError.ENTITY_NOT_FOUND),
        (_state("0.31", "EUR/kWh"), None),
        (_state("abc", "EUR/kWh"), SourceError.NOT_NUMERIC),
        (_state("nan", "EUR/kWh"), SourceError.NOT_NUMERIC),
        (_state("0.31", "EUR/MWh"), SourceError.PRICE_UNIT),
        (_state("0.31"), SourceError.PRICE_UNIT),
        (_state("0.31", "DKK/kWh"), SourceError.CURRENCY_MISMATCH),
        # A price service that has not answered yet is accepted when its unit fits.
        (_state("unavailable"), None),
        (_state("unknown", "EUR/kWh"), None),
        (_state("unavailable", "EUR/MWh"), SourceError.PRICE_UNIT),
    ],
)
def test_validate_price_entity(state: State | None, expected: SourceError | None) -> None:
    assert validate_price_entity(state, "EUR") is expected


@pytest.mark.parametrize(
    ("state", "kind", "expected"),
    [
        (None, SourceKind.POWER, SourceError.ENTITY_NOT_FOUND),
        (None, SourceKind.ANY, SourceError.ENTITY_NOT_FOUND),
        (_state("on", entity_id="switch.plug"), SourceKind.ANY, None),
        (_state("1200", "W"), SourceKind.POWER, None),
        (_state("-1.2", "kW"), SourceKind.POWER, None),
        (_state("1200", "Wh"), SourceKind.POWER, SourceError.POWER_UNIT),
        (_state("1200"), SourceKind.POWER, SourceError.POWER_UNIT),
        (_state("abc", "W"), SourceKind.POWER, SourceError.NOT_NUMERIC),
        (_state("nan", "W"), SourceKind.POWER, SourceError.NOT_NUMERIC),
        (_state("12.5", "kWh"), SourceKind.ENERGY, None),
        (_state("12.5", "MWh"), SourceKind.ENERGY, None),
        (_state("12.5", "W"), SourceKind.ENERGY, SourceError.ENERGY_UNIT),
        (_state("55", "%"), SourceKind.SOC, None),
        (_state("55", "kWh"), SourceKind.SOC, SourceError.SOC_UNIT),
        (_state("120", "gCO2eq/kWh"), SourceKind.CARBON, None),
        (_state("120", "%"), SourceKind.CARBON, SourceError.CARBON_UNIT),
        # An inverter asleep at night: unavailable, unit missing or fitting, is accepted.
        (_state("unavailable"), SourceKind.POWER, None),
        (_state("unknown", "W"), SourceKind.POWER, None),
        (_state("unavailable", "°C"), SourceKind.POWER, SourceError.POWER_UNIT),
    ],
)
def test_validate_source(
    state: State | None, kind: SourceKind, expected: SourceError | None
) -> None:
    assert validate_source(state, kind) is expected


def test_every_numeric_role_lists_units() -> None:
    assert set(SOURCE_UNITS) == {kind for kind in SourceKind if kind is not SourceKind.ANY}
    assert {"W", "kW"} <= SOURCE_UNITS[SourceKind.POWER]
    assert "gCO2eq/kWh" in SOURCE_UNITS[SourceKind.CARBON]
