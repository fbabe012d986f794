"""Orders, market rules and the order book, with validation and plain-data conversion.

Units (integers only): energy in Wh, prices in minor currency units per kWh (for example euro
cents per kWh), money in milli-minor units (Wh x minor/kWh, exact).

An order is one member's bid (side ``buy``) or offer (side ``sell``) for one delivery slot.
Its quantity is a step curve: one or more ``(price, energy_wh)`` steps, each an independent
unit: a buy step wants ``energy_wh`` if the price is at most ``price``; a sell step offers
``energy_wh`` if the price is at least ``price``. A plain order is a curve of one step.

``to_dict``/``from_dict`` use only ``int``, ``str``, ``bool``, ``list`` and ``dict`` values,
so another module can encode them canonically and sign them. ``from_dict`` validates and
raises :class:`OrderError` (a ``ValueError``) with a message naming the bad field.

Bounds (checked wherever orders, rules or books enter, so that every amount clearing
computes fits the canonical encoding's signed 64-bit integers): prices within
``±MAX_PRICE`` minor units per kWh, at most ``MAX_ENERGY_WH`` per order, at most
``MAX_SLOT_ENERGY_WH`` per side of one slot's book (then any amount of money, ``energy x
(price + fee)``, and any surplus stays below 4 x 10^18), slot starts from 0 to
``MAX_SLOT_START``, strings valid Unicode of at most ``MAX_ID_LENGTH`` characters.

Public API: :class:`Side`, :class:`Priority`, :class:`Pricing`, :class:`Step`,
:class:`Reason`, :class:`Order`, :class:`MarketRules`, :class:`OrderBook`,
:class:`OrderError`, :func:`validate_order`, :func:`parse_book`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from operator import itemgetter
from typing import Any, NamedTuple

from .fairness import FairnessState

MAX_STEPS = 64
MAX_ID_LENGTH = 128
MAX_PARTNERS = 32
MAX_REASON_PARAMS = 16
BASIS_POINTS = 10_000
MAX_PRICE = 100_000  # minor units per kWh, either sign (1,000 EUR/kWh)
MAX_ENERGY_WH = 10_000_000  # one order, all steps (10 MWh)
MAX_SLOT_ENERGY_WH = 10**13  # one side of one slot's book
MAX_SLOT_START = 253_402_300_799  # 9999-12-31 23:59:59 UTC
INT64_MAX = 2**63 - 1


class OrderError(ValueError):
    """An order, rule set or order book is invalid."""


class Side(StrEnum):
    """Which way the energy goes for the order's owner."""

    BUY = "buy"
    SELL = "sell"


class Priority(StrEnum):
    """Scarcity class of a buy order (LastWatt rule): essential > household > other."""

    ESSENTIAL = "essential"
    HOUSEHOLD = "household"
    OTHER = "other"


class Pricing(StrEnum):
    """How a fill is priced: uniform clearing price, or the buyer's bid."""

    CLEAR = "pay_as_clear"
    BID = "pay_as_bid"


class Step(NamedTuple):
    """One point of a step curve: ``energy_wh`` at limit ``price`` (minor units per kWh).

    A named tuple (like ``Order``): cheap to build, which the gate-closure path needs.
    """

    price: int
    energy_wh: int


@dataclass(frozen=True, slots=True)
class Reason:
    """Machine-readable reason for an order or allocation: a code and integer/str params."""

    code: str
    params: tuple[tuple[str, int | str], ...] = ()

    @classmethod
    def of(cls, code: str, **params: int | str) -> Reason:
        """Build a reason with params sorted by name."""
        return cls(code, tuple(sorted(params.items())))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"code": self.code, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: object) -> Reason:
        """Parse and validate the plain-data form."""
        obj = _mapping(data, "reason")
        code = _str(obj.get("code"), "reason.code")
        params = _mapping(obj.get("params", {}), "reason.params")
        if len(params) > MAX_REASON_PARAMS:
            raise OrderError(f"reason.params holds at most {MAX_REASON_PARAMS} entries")
        clean: dict[str, int | str] = {}
        for key, value in params.items():
            if type(value) is int:
                if not -INT64_MAX - 1 <= value <= INT64_MAX:
                    raise OrderError("reason.params integers must fit in 64 bits")
            else:
                _str(value, f"reason.params.{key}", empty=True)
            clean[_str(key, "reason.params name")] = value
        return cls(code, tuple(sorted(clean.items())))


class Order(NamedTuple):
    """A bid or offer for one slot (see the module docstring for units). An immutable
    named tuple: change a copy with ``_replace``."""

    order_id: str
    owner: str
    side: Side
    slot_start: int
    steps: tuple[Step, ...]
    clean: bool = False
    local: bool = True
    clean_only: bool = False
    preferred_partners: tuple[str, ...] = ()
    priority: Priority = Priority.HOUSEHOLD
    reason: Reason | None = None

    @property
    def energy_wh(self) -> int:
        """Total energy of all steps."""
        return sum(step.energy_wh for step in self.steps)

    @classmethod
    def single(
        cls,
        order_id: str,
        owner: str,
        side: Side,
        slot_start: int,
        energy_wh: int,
        price: int,
        **kwargs: Any,
    ) -> Order:
        """An order with one step."""
        return cls(order_id, owner, side, slot_start, (Step(price, energy_wh),), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (only int/str/bool/list/dict), the form that gets signed."""
        data: dict[str, Any] = {
            "order_id": self.order_id,
            "owner": self.owner,
            "side": self.side.value,
            "slot_start": self.slot_start,
            "steps": [[s.price, s.energy_wh] for s in self.steps],
            "clean": self.clean,
            "local": self.local,
            "clean_only": self.clean_only,
            "preferred_partners": list(self.preferred_partners),
            "priority": self.priority.value,
        }
        if self.reason is not None:
            data["reason"] = self.reason.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: object) -> Order:
        """Parse and validate; raises :class:`OrderError`."""
        return validate_order(data)


def _mapping(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise OrderError(f"{name} must be an object")
    return value


def _int(value: object, name: str, *, minimum: int, maximum: int) -> int:
    if type(value) is not int:
        raise OrderError(f"{name} must be an integer, got {_show(value)}")
    if not minimum <= value <= maximum:
        raise OrderError(f"{name} must be in {minimum}..{maximum}, got {_show(value)}")
    return value


def _price(value: object, name: str) -> int:
    return _int(value, name, minimum=-MAX_PRICE, maximum=MAX_PRICE)


def _show(value: object) -> str:
    """A value for an error message, cut short (huge integers and long strings too)."""
    if type(value) is int and value.bit_length() > 100:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise OrderError(f"{name} must be true or false, got {value!r}")
    return value


def _str(value: object, name: str, *, empty: bool = False) -> str:
    if (
        type(value) is not str
        or len(value) > MAX_ID_LENGTH
        or not (value or empty)
        or not (value.isascii() or _unicode(value))
    ):
        raise OrderError(
            f"{name} must be a non-empty string of valid Unicode of at most "
            f"{MAX_ID_LENGTH} characters"
        )
    return value


def _unicode(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_ORDER_KEYS = frozenset(
    {
        "order_id",
        "owner",
        "side",
        "slot_start",
        "steps",
        "energy_wh",
        "price",
        "clean",
        "local",
        "clean_only",
        "preferred_partners",
        "priority",
        "reason",
    }
)


_ABSENT = object()
_SIDES = {side.value: side for side in Side}
_PRIORITIES = {priority.value: priority for priority in Priority}


def validate_order(data: object, *, qualify: str = "") -> Order:
    """Check one order in plain-data form and build it; raises :class:`OrderError`.

    Either ``steps`` (a list of ``[price, energy_wh]`` pairs) or the shorthand
    ``price`` + ``energy_wh`` for a single step must be given. ``qualify`` is put in front
    of the order id once it is checked (the protocol qualifies ids with the member).
    """
    if type(data) is dict and (data.keys() == _PLAIN_KEYS or data.keys() == _REASON_KEYS):
        order = _fast_order(data, qualify)
        if order is not None:
            return order
    obj = data if type(data) is dict else _mapping(data, "order")
    if not obj.keys() <= _ORDER_KEYS:
        unknown = sorted(_show(k) for k in set(obj) - _ORDER_KEYS)
        raise OrderError(f"order has unknown fields: {', '.join(unknown)}")
    order_id = _str(obj.get("order_id"), "order_id")
    try:
        return _build_order(obj, order_id, qualify)
    except OrderError as err:
        raise OrderError(f"order {order_id!r}: {err}") from None


_PLAIN_KEYS = frozenset(
    (
        "order_id",
        "owner",
        "side",
        "slot_start",
        "steps",
        "clean",
        "local",
        "clean_only",
        "preferred_partners",
        "priority",
    )
)
_REASON_KEYS = _PLAIN_KEYS | {"reason"}
_FIELDS = itemgetter(
    "order_id",
    "owner",
    "side",
    "slot_start",
    "steps",
    "clean",
    "local",
    "clean_only",
    "preferred_partners",
    "priority",
)
_new_order = partial(tuple.__new__, Order)  # Order._make without its length check
_new_step = partial(tuple.__new__, Step)


def _fast_order(obj: dict[str, Any], qualify: str) -> Order | None:
    """The order in the form ``Order.to_dict`` writes, if every value is plainly valid
    (the common case, checked in one pass); ``None`` sends it through ``_build_order``,
    which checks the same and says what is wrong."""
    oid, owner, side_raw, slot, raw_steps, clean, local, clean_only, partners, prio = _FIELDS(obj)
    if not (
        type(oid) is str
        and 0 < len(oid) <= MAX_ID_LENGTH
        and oid.isascii()
        and type(owner) is str
        and 0 < len(owner) <= MAX_ID_LENGTH
        and owner.isascii()
        and type(slot) is int
        and 0 <= slot <= MAX_SLOT_START
        and (clean is True or clean is False)
        and (local is True or local is False)
        and (clean_only is True or clean_only is False)
        and type(raw_steps) is list
        and 0 < len(raw_steps) <= MAX_STEPS
        and type(partners) is list
        and not partners
        and type(side_raw) is str
        and type(prio) is str
    ):
        return None
    side = _SIDES.get(side_raw)
    priority = _PRIORITIES.get(prio)
    if side is None or priority is None or (clean_only and side is Side.SELL):
        return None
    steps = []
    total = 0
    for pair in raw_steps:
        if type(pair) is not list or len(pair) != 2:
            return None
        price, energy = pair
        if (
            type(price) is not int
            or not -MAX_PRICE <= price <= MAX_PRICE
            or type(energy) is not int
            or not 0 <= energy <= MAX_ENERGY_WH
        ):
            return None
        total += energy
        steps.append(_new_step(pair))
    if total > MAX_ENERGY_WH:
        return None
    reason = None
    if "reason" in obj:
        try:
            reason = Reason.from_dict(obj["reason"])
        except OrderError:
            return None
    return _new_order(
        (
            qualify + oid if qualify else oid,
            owner,
            side,
            slot,
            tuple(steps),
            clean,
            local,
            clean_only,
            (),
            priority,
            reason,
        )
    )


def _build_order(obj: Mapping[str, Any], order_id: str, qualify: str) -> Order:
    get = obj.get
    owner = _str(get("owner"), "owner")
    side_raw = get("side")
    side = _SIDES.get(side_raw) if type(side_raw) is str else None
    if side is None:
        raise OrderError(f"side must be 'buy' or 'sell', got {_show(side_raw)}")
    slot = _int(get("slot_start"), "slot_start", minimum=0, maximum=MAX_SLOT_START)
    if "steps" in obj:
        if "price" in obj or "energy_wh" in obj:
            raise OrderError("give either steps or price+energy_wh, not both")
        raw_steps = obj["steps"]
        if type(raw_steps) is not list or not 0 < len(raw_steps) <= MAX_STEPS:
            raise OrderError(f"steps must be a list of 1..{MAX_STEPS} [price, energy_wh]")
        steps: list[Step] = []
        total = 0
        for pair in raw_steps:
            if type(pair) is not list or len(pair) != 2:
                raise OrderError(f"step {len(steps)} must be [price, energy_wh]")
            price, energy = pair
            if (
                type(price) is not int
                or not -MAX_PRICE <= price <= MAX_PRICE
                or type(energy) is not int
                or not 0 <= energy <= MAX_ENERGY_WH
            ):
                k = len(steps)
                _price(price, f"step {k} price")
                _int(energy, f"step {k} energy_wh", minimum=0, maximum=MAX_ENERGY_WH)
            total += energy
            steps.append(Step(price, energy))
        if total > MAX_ENERGY_WH:
            raise OrderError(f"energy of all steps must be at most {MAX_ENERGY_WH} Wh")
        step_tuple = tuple(steps)
    else:
        price = _price(get("price"), "price")
        energy = _int(get("energy_wh"), "energy_wh", minimum=0, maximum=MAX_ENERGY_WH)
        step_tuple = (Step(price, energy),)
    clean = get("clean", False)
    clean_only = get("clean_only", False)
    local = get("local", True)
    for flag, name in ((clean, "clean"), (clean_only, "clean_only"), (local, "local")):
        if flag is not True and flag is not False:
            raise OrderError(f"{name} must be true or false, got {_show(flag)}")
    if clean_only and side is Side.SELL:
        raise OrderError("clean_only is a buyer preference")
    partners_raw = get("preferred_partners", _ABSENT)
    partners: tuple[str, ...] = ()
    if partners_raw is not _ABSENT:
        if type(partners_raw) is not list or len(partners_raw) > MAX_PARTNERS:
            raise OrderError(f"preferred_partners must be a list of at most {MAX_PARTNERS} ids")
        partners = tuple(_str(p, "preferred partner") for p in partners_raw)
    prio_raw = get("priority", _ABSENT)
    priority = Priority.HOUSEHOLD
    if prio_raw is not _ABSENT:
        found = _PRIORITIES.get(prio_raw) if type(prio_raw) is str else None
        if found is None:
            raise OrderError(
                f"priority must be essential, household or other, got {_show(prio_raw)}"
            )
        priority = found
    reason = Reason.from_dict(obj["reason"]) if "reason" in obj else None
    return Order(
        qualify + order_id if qualify else order_id,
        owner,
        side,
        slot,
        step_tuple,
        clean,
        local,
        clean_only,
        partners,
        priority,
        reason,
    )


@dataclass(frozen=True, slots=True)
class MarketRules:
    """Community market rules that every peer applies identically.

    ``import_price`` caps what any buyer pays (the grid sells at that price) and
    ``feed_in_tariff`` floors what any seller receives. ``distributor_fee`` is paid by the
    buyer per kWh traded between members, on top of the price the seller receives.
    ``fair_share_bp``: the most one seller may fill of a slot's cleared volume, in basis
    points (10 000 = no cap). ``grid_available`` false means islanded: no grid fallback.
    Capacities limit the community's exchange with the grid per slot (``None`` = unlimited).
    """

    import_price: int = 30
    feed_in_tariff: int = 8
    distributor_fee: int = 0
    pricing: Pricing = Pricing.CLEAR
    fair_share_bp: int = BASIS_POINTS
    grid_available: bool = True
    import_capacity_wh: int | None = None
    export_capacity_wh: int | None = None
    slot_seconds: int = 900

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (capacities omitted when unlimited)."""
        data: dict[str, Any] = {
            "import_price": self.import_price,
            "feed_in_tariff": self.feed_in_tariff,
            "distributor_fee": self.distributor_fee,
            "pricing": self.pricing.value,
            "fair_share_bp": self.fair_share_bp,
            "grid_available": self.grid_available,
            "slot_seconds": self.slot_seconds,
        }
        if self.import_capacity_wh is not None:
            data["import_capacity_wh"] = self.import_capacity_wh
        if self.export_capacity_wh is not None:
            data["export_capacity_wh"] = self.export_capacity_wh
        return data

    def check(self) -> None:
        """Raise :class:`OrderError` if a value is out of range (rules built in code)."""
        MarketRules.from_dict(self.to_dict())

    @classmethod
    def from_dict(cls, data: object) -> MarketRules:
        """Parse and validate; missing fields take the defaults."""
        obj = _mapping(data, "rules")
        unknown = sorted(set(obj) - set(cls.__dataclass_fields__))
        if unknown:
            raise OrderError(f"rules has unknown fields: {', '.join(map(str, unknown))}")
        d = cls()
        pricing_raw = obj.get("pricing", d.pricing.value)
        try:
            pricing = Pricing(pricing_raw)
        except ValueError:
            raise OrderError(
                f"rules.pricing must be pay_as_clear or pay_as_bid, got {pricing_raw!r}"
            ) from None
        caps: list[int | None] = []
        for name in ("import_capacity_wh", "export_capacity_wh"):
            raw = obj.get(name)
            caps.append(
                None
                if raw is None
                else _int(raw, f"rules.{name}", minimum=0, maximum=MAX_SLOT_ENERGY_WH)
            )
        fair = _int(
            obj.get("fair_share_bp", d.fair_share_bp),
            "rules.fair_share_bp",
            minimum=1,
            maximum=BASIS_POINTS,
        )
        slot_seconds = _int(
            obj.get("slot_seconds", d.slot_seconds), "rules.slot_seconds", minimum=1, maximum=86_400
        )
        if 86_400 % slot_seconds:
            raise OrderError("rules.slot_seconds must divide a day")
        return cls(
            import_price=_price(obj.get("import_price", d.import_price), "rules.import_price"),
            feed_in_tariff=_price(
                obj.get("feed_in_tariff", d.feed_in_tariff), "rules.feed_in_tariff"
            ),
            distributor_fee=_int(
                obj.get("distributor_fee", d.distributor_fee),
                "rules.distributor_fee",
                minimum=0,
                maximum=MAX_PRICE,
            ),
            pricing=pricing,
            fair_share_bp=fair,
            grid_available=_bool(obj.get("grid_available", True), "rules.grid_available"),
            import_capacity_wh=caps[0],
            export_capacity_wh=caps[1],
            slot_seconds=slot_seconds,
        )


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Everything one clearing needs: rules, orders, stakes and the fairness state.

    ``stakes`` maps each staking member to the member it backs (one stake per member per
    period; moving it means changing the mapping). It weighs ``other``-class demand in
    scarcity.
    """

    rules: MarketRules = field(default_factory=MarketRules)
    orders: tuple[Order, ...] = ()
    stakes: tuple[tuple[str, str], ...] = ()
    fairness: FairnessState = field(default_factory=FairnessState)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, the CLI input format."""
        return {
            "rules": self.rules.to_dict(),
            "orders": [o.to_dict() for o in self.orders],
            "stakes": dict(self.stakes),
            "fairness": self.fairness.to_dict(),
        }


def parse_book(data: object) -> OrderBook:
    """Validate a whole order book in plain-data form; raises :class:`OrderError`.

    Orders must have unique ``order_id`` values and slot starts aligned to the slot length;
    the buy (and the sell) orders of one slot hold at most ``MAX_SLOT_ENERGY_WH``.
    """
    obj = _mapping(data, "order book")
    unknown = sorted(set(obj) - {"rules", "orders", "stakes", "fairness"})
    if unknown:
        raise OrderError(f"order book has unknown fields: {', '.join(map(str, unknown))}")
    rules = MarketRules.from_dict(obj.get("rules", {}))
    raw_orders = obj.get("orders", [])
    if not isinstance(raw_orders, list):
        raise OrderError("orders must be a list")
    orders = tuple(validate_order(o) for o in raw_orders)
    seen: set[str] = set()
    totals: dict[tuple[int, Side], int] = {}
    for order in orders:
        if order.order_id in seen:
            raise OrderError(f"duplicate order_id {order.order_id!r}")
        seen.add(order.order_id)
        if order.slot_start % rules.slot_seconds:
            raise OrderError(
                f"order {order.order_id!r}: slot_start {order.slot_start} is not aligned to "
                f"{rules.slot_seconds} s"
            )
        key = (order.slot_start, order.side)
        totals[key] = totals.get(key, 0) + order.energy_wh
    for (slot, side), total in sorted(totals.items()):
        if total > MAX_SLOT_ENERGY_WH:
            raise OrderError(
                f"the {side.value} orders of slot {slot} hold {total} Wh, more than "
                f"{MAX_SLOT_ENERGY_WH} Wh"
            )
    stakes_raw = _mapping(obj.get("stakes", {}), "stakes")
    stakes = tuple(
        sorted((_str(k, "stakes key"), _str(v, f"stake of {k}")) for k, v in stakes_raw.items())
    )
    try:
        fairness = FairnessState.from_dict(obj.get("fairness", {}))
    except ValueError as err:
        raise OrderError(str(err)) from None
    return OrderBook(rules=rules, orders=orders, stakes=stakes, fairness=fairness)
