"""Read prices and check source entities for the Home Assistant shell.

No market logic lives here. This module turns what the user configured (a fixed price or
a price entity such as a Nord Pool, Tibber or ENTSO-e sensor) into the one price unit the
engine understands, *integer minor currency units per kWh* (for example euro cents/kWh),
and checks that a picked source entity fits its role. The config flows map the error codes
returned here to translated form errors; the runtime can use the same functions each slot.

Price units
-----------
A price unit must end in ``/kWh`` (any letter case). What comes before the slash names
either the major unit of a currency or its minor unit:

===============================  =================================================
Prefix                           Meaning
===============================  =================================================
ISO 4217 code (``EUR``, ``SEK``)  major unit of that currency; must be the entry's
``€``                            major unit of EUR
``£``                            major unit of GBP
``$``                            major unit of USD, AUD, CAD, NZD, ... (any dollar)
``kr``                           major unit of SEK, NOK, DKK or ISK
``zł``                           major unit of PLN
``ct``, ``c``, ``cent``,         minor unit (1/100) of a currency with 2 decimals
``cents``, ``¢``
``p``, ``pence``                 minor unit of GBP
``öre``, ``øre``, ``ore``        minor unit of SEK, NOK or DKK
``gr``, ``grosz``                minor unit of PLN
===============================  =================================================

A unit that names another currency than the entry's gives ``currency_mismatch``; any other
unit gives ``price_unit``. Forward price series (``parse_series_price_unit``) may also be per
``MWh`` or per ``Wh`` (``EUR/MWh`` is common for day-ahead prices); a price entity is per kWh.

Rounding rule
-------------
The number is read exactly as a decimal (never through a binary float), scaled to minor
units (x100 for most currencies, x1 for zero-decimal ones such as JPY, x1000 for three-decimal
ones such as KWD) and rounded to the nearest integer, halves away from zero:
0.305 EUR/kWh -> 31 ct/kWh, 0.304 -> 30, -0.125 -> -13, 12.5 ct/kWh -> 13.
Negative prices (common in day-ahead markets at noon) are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import State


class SourceError(StrEnum):
    """Error codes; each one is a translated form error in strings.json."""

    ENTITY_NOT_FOUND = "entity_not_found"
    NOT_NUMERIC = "not_numeric"
    INVALID_PRICE = "invalid_price"
    PRICE_UNIT = "price_unit"
    CURRENCY_MISMATCH = "currency_mismatch"
    POWER_UNIT = "power_unit"
    ENERGY_UNIT = "energy_unit"
    SOC_UNIT = "soc_unit"
    CARBON_UNIT = "carbon_unit"


class InvalidPriceError(ValueError):
    """A price could not be read; ``code`` says why."""

    def __init__(self, code: SourceError) -> None:
        """Keep the error code."""
        super().__init__(code.value)
        self.code = code


class SourceKind(StrEnum):
    """The role a source entity plays, which decides the units it may use."""

    POWER = "power"
    ENERGY = "energy"
    SOC = "soc"
    CARBON = "carbon"
    ANY = "any"  # switches, selects, numbers, binary sensors: existence only


# Accepted units per numeric role, and the error code for anything else.
SOURCE_UNITS: Final[Mapping[SourceKind, frozenset[str]]] = {
    SourceKind.POWER: frozenset({"W", "kW"}),
    SourceKind.ENERGY: frozenset({"Wh", "kWh", "MWh"}),
    SourceKind.SOC: frozenset({"%"}),
    SourceKind.CARBON: frozenset({"gCO2eq/kWh", "gCO2e/kWh", "gCO2/kWh", "g/kWh"}),
}
_UNIT_ERRORS: Final[Mapping[SourceKind, SourceError]] = {
    SourceKind.POWER: SourceError.POWER_UNIT,
    SourceKind.ENERGY: SourceError.ENERGY_UNIT,
    SourceKind.SOC: SourceError.SOC_UNIT,
    SourceKind.CARBON: SourceError.CARBON_UNIT,
}

# ISO 4217 currencies whose minor unit is not 1/100 of the major unit.
_ZERO_DECIMAL: Final = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND"}
    | {"VUV", "XAF", "XOF", "XPF"}
)
_THREE_DECIMAL: Final = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

# Symbols and words for a major unit, with the currencies each may stand for.
_MAJOR_SYMBOLS: Final[Mapping[str, frozenset[str]]] = {
    "€": frozenset({"EUR"}),
    "£": frozenset({"GBP"}),
    "$": frozenset({"USD", "AUD", "CAD", "NZD", "SGD", "HKD", "MXN"}),
    "kr": frozenset({"SEK", "NOK", "DKK", "ISK"}),
    "zł": frozenset({"PLN"}),
}
# Names of a minor unit, with the currencies each may stand for (None: any 2-decimal one).
_MINOR_SYMBOLS: Final[Mapping[str, frozenset[str] | None]] = {
    "ct": None,
    "c": None,
    "cent": None,
    "cents": None,
    "¢": None,
    "p": frozenset({"GBP"}),
    "pence": frozenset({"GBP"}),
    "öre": frozenset({"SEK", "NOK", "DKK"}),
    "øre": frozenset({"SEK", "NOK", "DKK"}),
    "ore": frozenset({"SEK", "NOK", "DKK"}),
    "gr": frozenset({"PLN"}),
    "grosz": frozenset({"PLN"}),
}
_PER_KWH: Final = "/kwh"
# Energy units of a forward price series and the power of ten to a price per kWh.
_PER_ENERGY: Final[Mapping[str, int]] = {"/kwh": 0, "/mwh": -3, "/wh": 3}


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceUnit:
    """What a price unit means for one currency."""

    currency: str
    minor: bool  # True: the number is already in minor units


def minor_digits(currency: str) -> int:
    """Return how many decimal digits the currency's minor unit has (ISO 4217)."""
    code = currency.upper()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def parse_price_unit(unit: str | None, currency: str) -> PriceUnit:
    """Interpret a price unit such as ``EUR/kWh`` or ``ct/kWh`` for ``currency``.

    Raise InvalidPriceError(PRICE_UNIT) for an unknown or missing unit and
    InvalidPriceError(CURRENCY_MISMATCH) for a unit of another currency.
    """
    code = currency.upper()
    if not unit or not unit.strip().lower().endswith(_PER_KWH):
        raise InvalidPriceError(SourceError.PRICE_UNIT)
    prefix = unit.strip()[: -len(_PER_KWH)].strip()
    lowered = prefix.lower()
    if (major := _MAJOR_SYMBOLS.get(lowered)) is not None:
        if code not in major:
            raise InvalidPriceError(SourceError.CURRENCY_MISMATCH)
        return PriceUnit(currency=code, minor=False)
    if lowered in _MINOR_SYMBOLS:
        minor = _MINOR_SYMBOLS[lowered]
        if minor is None and minor_digits(code) != 2:
            raise InvalidPriceError(SourceError.PRICE_UNIT)
        if minor is not None and code not in minor:
            raise InvalidPriceError(SourceError.CURRENCY_MISMATCH)
        return PriceUnit(currency=code, minor=True)
    if len(prefix) == 3 and prefix.isascii() and prefix.isalpha():
        if prefix.upper() != code:
            raise InvalidPriceError(SourceError.CURRENCY_MISMATCH)
        return PriceUnit(currency=code, minor=False)
    raise InvalidPriceError(SourceError.PRICE_UNIT)


def parse_series_price_unit(unit: str | None, currency: str) -> tuple[PriceUnit, int]:
    """Interpret the unit of a forward price series: per kWh, MWh or Wh.

    Returns the unit (as ``parse_price_unit`` would for the same prefix per kWh) and the
    power of ten that turns a value per the unit's energy into one per kWh (``EUR/MWh``:
    -3). Raises InvalidPriceError like ``parse_price_unit``.
    """
    text = (unit or "").strip()
    lowered = text.lower()
    for suffix, exponent in _PER_ENERGY.items():
        if lowered.endswith(suffix):
            return parse_price_unit(text[: -len(suffix)] + "/kWh", currency), exponent
    raise InvalidPriceError(SourceError.PRICE_UNIT)


def to_minor_decimal(
    value: str | float | int | Decimal, *, currency: str, minor: bool = False, exponent: int = 0
) -> Decimal:
    """A price per kWh (times ``10**exponent``) in minor units per kWh, exactly, not rounded."""
    number = _decimal(value).scaleb(exponent)
    return number if minor else number.scaleb(minor_digits(currency))


def round_minor(value: Decimal) -> int:
    """Round a price in minor units to an integer, halves away from zero."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _decimal(value: str | float | int | Decimal) -> Decimal:
    """Read a number exactly; floats go through their shortest repr (0.3 -> 0.3)."""
    if isinstance(value, bool):
        raise InvalidPriceError(SourceError.NOT_NUMERIC)
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation as err:
        raise InvalidPriceError(SourceError.NOT_NUMERIC) from err
    if not number.is_finite():
        raise InvalidPriceError(SourceError.NOT_NUMERIC)
    return number


def to_minor_units(
    value: str | float | int | Decimal, *, currency: str, minor: bool = False
) -> int:
    """Convert a price per kWh to integer minor units per kWh (halves away from zero).

    ``minor`` says the value is already in minor units (for example ct/kWh).
    """
    return round_minor(to_minor_decimal(value, currency=currency, minor=minor))


def fixed_price_to_minor(value: float | int, currency: str) -> int:
    """Convert a fixed price in major units per kWh (as entered in the UI) to minor units.

    Raise InvalidPriceError(INVALID_PRICE) for NaN or infinity.
    """
    try:
        return to_minor_units(value, currency=currency)
    except InvalidPriceError as err:
        raise InvalidPriceError(SourceError.INVALID_PRICE) from err


def price_state_to_minor(state: State | None, currency: str) -> int:
    """Read a price entity's current state as integer minor units per kWh.

    Raise InvalidPriceError with ENTITY_NOT_FOUND, NOT_NUMERIC (also for unavailable
    or unknown), PRICE_UNIT or CURRENCY_MISMATCH.
    """
    if state is None:
        raise InvalidPriceError(SourceError.ENTITY_NOT_FOUND)
    unit = parse_price_unit(state.attributes.get(ATTR_UNIT_OF_MEASUREMENT), currency)
    return to_minor_units(state.state, currency=currency, minor=unit.minor)


def _is_pending(state: State) -> bool:
    """Whether the state is unavailable or unknown: a value may come later."""
    return state.state in (STATE_UNAVAILABLE, STATE_UNKNOWN)


def validate_price_entity(state: State | None, currency: str) -> SourceError | None:
    """Check a price entity at set-up time; return an error code or None.

    An entity that is unavailable or unknown right now (a price service that has not
    answered yet) is accepted as long as its unit, when it has one, fits.
    """
    if state is None:
        return SourceError.ENTITY_NOT_FOUND
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
    try:
        if _is_pending(state):
            if unit is not None:
                parse_price_unit(unit, currency)
            return None
        price_state_to_minor(state, currency)
    except InvalidPriceError as err:
        return err.code
    return None


def validate_source(state: State | None, kind: SourceKind) -> SourceError | None:
    """Check a source entity for its role; return an error code or None.

    Missing entity: ENTITY_NOT_FOUND. For numeric roles, a state that is neither a finite
    number nor unavailable/unknown gives NOT_NUMERIC, and a unit outside the role's list
    (see SOURCE_UNITS) gives the role's unit error. An unavailable or unknown entity (a PV
    inverter asleep at night) is accepted when its unit is missing or fits.
    """
    if state is None:
        return SourceError.ENTITY_NOT_FOUND
    if kind is SourceKind.ANY:
        return None
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
    if _is_pending(state):
        if unit is not None and unit not in SOURCE_UNITS[kind]:
            return _UNIT_ERRORS[kind]
        return None
    try:
        _decimal(state.state)
    except InvalidPriceError:
        return SourceError.NOT_NUMERIC
    if unit not in SOURCE_UNITS[kind]:
        return _UNIT_ERRORS[kind]
    return None
