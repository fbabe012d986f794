"""Actions of Peer Energy: place a manual order, export the ledger.

Registered in ``async_setup`` (not per entry), so they exist, and fail with a clear
message, even while no entry is loaded. Each call names its entry with
``config_entry_id`` or, when left out, uses the one loaded Peer Energy entry.

Both actions are for administrators (``Unauthorized`` for any other user; calls without a
user, such as automations and scripts the administrator set up, are allowed):
``place_order`` commits the home to a trade and ``export_ledger`` discloses (and can write
to disk) every trade and balance of the home. Every refusal of the caller's input is a
``ServiceValidationError`` with a translation key (``ActionRefusedError``: also a 400 with the
message over the REST API, not a logged 500), which leaves nothing changed.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import (
    HomeAssistantError,
    Unauthorized,
    UnknownUser,
)
from homeassistant.helpers import config_validation as cv
from homeassistant.util import dt as dt_util
import voluptuous as vol

from .const import DOMAIN
from .core.market.orders import MAX_PRICE, Side
from .errors import ActionRefusedError
from .market import MAX_MANUAL_WH, SECONDS_PER_DAY, SlotClock, utc_from_ts
from .prices import InvalidPriceError, fixed_price_to_minor, minor_digits
from .runtime import PeerEnergyConfigEntry

SERVICE_PLACE_ORDER: Final = "place_order"
SERVICE_EXPORT_LEDGER: Final = "export_ledger"

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_SIDE: Final = "side"
ATTR_ENERGY_KWH: Final = "energy_kwh"
ATTR_LIMIT_PRICE: Final = "limit_price"
ATTR_SLOT: Final = "slot"
ATTR_FORMAT: Final = "format"
ATTR_WRITE_FILE: Final = "write_file"
EXPORT_FORMATS: Final = ("csv", "json")

PLACE_ORDER_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Required(ATTR_SIDE): vol.In([side.value for side in Side]),
        vol.Required(ATTR_ENERGY_KWH): vol.Coerce(float),
        vol.Required(ATTR_LIMIT_PRICE): vol.Coerce(float),
        vol.Optional(ATTR_SLOT): cv.datetime,
    }
)
EXPORT_LEDGER_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Optional(ATTR_FORMAT, default="csv"): vol.In(EXPORT_FORMATS),
        vol.Optional(ATTR_WRITE_FILE): cv.boolean,
    }
)


def _invalid(key: str, **placeholders: str) -> ActionRefusedError:
    return ActionRefusedError(key, placeholders or None)


async def _require_admin(call: ServiceCall) -> None:
    """Only an administrator (or Home Assistant itself: no user) may call the action."""
    if call.context.user_id:
        user = await call.hass.auth.async_get_user(call.context.user_id)
        if user is None:
            raise UnknownUser(context=call.context, user_id=call.context.user_id)
        if not user.is_admin:
            raise Unauthorized(context=call.context, user_id=user.id)


def _entry(hass: HomeAssistant, call: ServiceCall) -> PeerEnergyConfigEntry:
    """The entry a call is for: the one named, else the one loaded entry."""
    if (entry_id := call.data.get(ATTR_CONFIG_ENTRY_ID)) is not None:
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            raise _invalid("entry_not_found", entry_id=str(entry_id))
        if entry.state is not ConfigEntryState.LOADED:
            raise _invalid("entry_not_loaded", title=entry.title)
        return entry
    loaded = hass.config_entries.async_loaded_entries(DOMAIN)
    if not loaded:
        raise _invalid("no_entry_loaded")
    return loaded[0]


def _market(entry: PeerEnergyConfigEntry) -> SlotClock:
    return entry.runtime_data.market


def _energy_wh(kwh: float) -> int:
    """kWh as entered to exact integer Wh (halves away from zero)."""
    try:
        value = Decimal(repr(kwh)) * 1000
        if not value.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise _invalid("invalid_energy", max_kwh=str(MAX_MANUAL_WH // 1000)) from None
    wh = int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if not 0 < wh <= MAX_MANUAL_WH:
        raise _invalid("invalid_energy", max_kwh=str(MAX_MANUAL_WH // 1000))
    return wh


def next_open_slot(market: SlotClock, now: int) -> int | None:
    """The first slot that still takes the owner's order: before its gate closure and, in
    a community, not prepared yet (its order goes out when the slot before it starts; an
    order already sent is never replaced). None when none within a day."""
    seconds = market.slot_seconds
    slot = now - now % seconds + seconds
    while slot <= now + SECONDS_PER_DAY:
        if now < market.gate_closure(slot) and (
            market.federation is None or slot not in market.plans
        ):
            return slot
        slot += seconds
    return None


async def async_place_order(call: ServiceCall) -> ServiceResponse:
    """Add the owner's own bid or offer for a slot to the home's order."""
    await _require_admin(call)
    hass = call.hass
    entry = _entry(hass, call)
    market = _market(entry)
    energy_wh = _energy_wh(call.data[ATTR_ENERGY_KWH])
    try:
        price = fixed_price_to_minor(call.data[ATTR_LIMIT_PRICE], market.currency)
    except InvalidPriceError:
        raise _invalid("invalid_limit_price") from None
    if abs(price) > MAX_PRICE:
        top = MAX_PRICE / 10 ** minor_digits(market.currency)
        raise _invalid("limit_price_out_of_range", max_price=f"{top:g}")
    now = int(dt_util.utcnow().timestamp())
    seconds = market.slot_seconds
    if (when := call.data.get(ATTR_SLOT)) is not None:
        ts = int(dt_util.as_utc(when).timestamp())
        slot = ts - ts % seconds
        if now >= market.gate_closure(slot):
            raise _invalid("slot_closed", slot=utc_from_ts(slot).isoformat())
        if slot > now + SECONDS_PER_DAY:
            raise _invalid("slot_too_far", slot=utc_from_ts(slot).isoformat())
        if market.federation is not None and slot in market.plans:
            # Sending a second, different order for the same slot would be equivocation.
            raise _invalid("order_already_sent", slot=utc_from_ts(slot).isoformat())
    elif (found := next_open_slot(market, now)) is not None:
        slot = found
    else:
        raise _invalid("no_open_slot")
    side = Side(call.data[ATTR_SIDE])
    order_id = market.add_manual_order(slot, side, energy_wh, price)
    if market.federation is None and slot in market.plans:
        await market.async_prepare(slot)  # local: the plan shown is redone with the order
    return {
        "order_id": order_id,
        "slot_start": utc_from_ts(slot).isoformat(),
        "side": side.value,
        "energy_wh": energy_wh,
        "limit_price_minor": price,
    }


async def async_export_ledger(call: ServiceCall) -> ServiceResponse:
    """Return the ledger as CSV or JSON, or write it to a file under the config dir."""
    await _require_admin(call)
    entry = _entry(call.hass, call)
    ledger = entry.runtime_data.ledger
    if ledger is None:
        raise HomeAssistantError(translation_domain=DOMAIN, translation_key="no_ledger")
    fmt: str = call.data[ATTR_FORMAT]
    write = call.data.get(ATTR_WRITE_FILE, not call.return_response)
    try:
        if write:
            path = await ledger.async_write_export(fmt)
            return {"format": fmt, "path": str(path)}
        content = await ledger.async_export(fmt)
    except (HomeAssistantError, OSError) as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="export_failed",
            translation_placeholders={"error": str(err)},
        ) from err
    if isinstance(content, str):
        return {"format": fmt, "content": content}
    return {"format": fmt, "data": content}


def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions (once, from ``async_setup``)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_PLACE_ORDER,
        async_place_order,
        schema=PLACE_ORDER_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_EXPORT_LEDGER,
        async_export_ledger,
        schema=EXPORT_LEDGER_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
