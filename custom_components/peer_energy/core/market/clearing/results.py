"""What clearing returns: per-fill, per-order and per-member results of a slot
(:class:`SlotResult`, built lazily from the clearing's columns by :class:`ResultParts`) and
of a book (:class:`ClearingResult`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import hashlib
from operator import attrgetter
from typing import Any, NamedTuple

from ...trust.canonical import CanonicalError, canonical_bytes, canonical_str_list
from ..fairness import Divider, FairnessState
from ..orders import MarketRules, Order, Side
from .columns import FillTable, Flat, as_i64


class Fill(NamedTuple):
    """Energy one buyer order bought from one seller order at one price."""

    buyer: str
    buyer_order: str
    seller: str
    seller_order: str
    energy_wh: int
    price: int
    fee: int
    clean: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return self._asdict()


class OrderResult(NamedTuple):
    """What one order got: traded energy, money (milli-minor units) and grid residuals."""

    order_id: str
    owner: str
    side: str
    filled_wh: int
    amount_milli: int
    fee_milli: int
    grid_wh: int
    unserved_wh: int
    curtailed_wh: int
    steps_filled: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        data = self._asdict()
        data["steps_filled"] = list(self.steps_filled)
        return data


class MemberResult(NamedTuple):
    """One member's totals for the slot; ``paid_milli`` includes fees."""

    owner: str
    bought_wh: int
    sold_wh: int
    paid_milli: int
    received_milli: int
    fee_milli: int
    grid_import_wh: int
    grid_export_wh: int
    unserved_wh: int
    curtailed_wh: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return self._asdict()


# NamedTuple._make skips the keyword-argument machinery of the generated __new__ (3x faster).
_new_fill = Fill._make


_new_result = OrderResult._make


@dataclass(frozen=True, slots=True, eq=False)
class SlotResult:
    """The cleared result of one slot.

    ``fills``, ``orders`` (per-order results, by order id) and ``members`` (per member, by
    member id) are built from the clearing's internal arrays on first access and cached:
    the market decision itself is complete when :func:`clear_slot` returns. Two results are
    equal when their plain-data forms and fairness states are.
    """

    slot_start: int
    mode: str
    general_price: int | None
    clean_price: int | None
    volume_wh: int
    clean_volume_wh: int
    surplus_milli: int
    fees_milli: int
    scarcity: bool
    grid_import_wh: int
    grid_export_wh: int
    unserved_wh: int
    curtailed_wh: int
    fairness: FairnessState
    _parts: ResultParts = field(repr=False)

    @property
    def fills(self) -> tuple[Fill, ...]:
        """Member-to-member trades, sorted by buyer order id, seller order id and price."""
        return self._parts.fills()

    @property
    def orders(self) -> tuple[OrderResult, ...]:
        """One result per order of the slot, sorted by order id."""
        return self._parts.order_results()

    @property
    def members(self) -> tuple[MemberResult, ...]:
        """One result per member with orders in the slot, sorted by member id."""
        return self._parts.member_results()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SlotResult):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.fairness == other.fairness

    def digest(self) -> bytes:
        """SHA-256 of the result's digest form (what peers attest; ``docs/protocol.md``).

        Computed from the clearing's columns without building the result objects. Raises
        ``CanonicalError`` if a number does not fit in 64 bits (orders within the bounds of
        ``orders`` never get there).
        """
        summary = self.to_summary()
        summary["fairness"] = self.fairness.to_dict()
        return self._parts.digest(summary)

    def to_summary(self) -> dict[str, Any]:
        """The slot's totals: ``to_dict`` without the fills, orders and members."""
        return {
            "slot_start": self.slot_start,
            "mode": self.mode,
            "general_price": self.general_price,
            "clean_price": self.clean_price,
            "volume_wh": self.volume_wh,
            "clean_volume_wh": self.clean_volume_wh,
            "surplus_milli": self.surplus_milli,
            "fees_milli": self.fees_milli,
            "scarcity": self.scarcity,
            "grid_import_wh": self.grid_import_wh,
            "grid_export_wh": self.grid_export_wh,
            "unserved_wh": self.unserved_wh,
            "curtailed_wh": self.curtailed_wh,
        }

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (the CLI output per slot, without the fairness state)."""
        return {
            **self.to_summary(),
            "fills": [f.to_dict() for f in self.fills],
            "orders": [o.to_dict() for o in self.orders],
            "members": [m.to_dict() for m in self.members],
        }


@dataclass(frozen=True, slots=True)
class ClearingResult:
    """Results of all slots in a book, in slot order, and the fairness state after them."""

    slots: tuple[SlotResult, ...]
    fairness: FairnessState

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (the CLI output)."""
        return {"slots": [s.to_dict() for s in self.slots], "fairness": self.fairness.to_dict()}


ORDER_ID = attrgetter("order_id")


@dataclass(slots=True)
class Context:
    orders: list[Order]
    rules: MarketRules
    slot_start: int
    fb: Flat
    fs: Flat
    stake_weight: Mapping[str, int]
    div: Divider
    fairness: FairnessState


class ResultParts:
    """The clearing's internal arrays, turned into result objects on demand (cached)."""

    def __init__(
        self,
        ctx: Context,
        raw_fills: FillTable,
        gbx: list[int],
        gsx: list[int],
        residual: Mapping[int, int],
        grid_in: Mapping[int, int],
        grid_out: Mapping[int, int],
        export_residual: Mapping[int, int],
    ) -> None:
        self.ctx = ctx
        self.raw_fills = raw_fills
        self.gbx = gbx
        self.gsx = gsx
        self.residual = residual
        self.grid_in = grid_in
        self.grid_out = grid_out
        self.export_residual = export_residual
        self._fills: tuple[Fill, ...] | None = None
        self._orders: tuple[OrderResult, ...] | None = None
        self._members: tuple[MemberResult, ...] | None = None

    def digest(self, summary: Mapping[str, Any]) -> bytes:
        """SHA-256 of the digest form (see ``SlotResult.digest`` and ``docs/protocol.md``):
        the canonical JSON of ``summary`` with the column lengths, the canonical JSON of
        the order ids in rank order, then the integer columns as little-endian int64."""
        ctx = self.ctx
        grid: list[tuple[int, int, int]] = [
            (oi, self.grid_in.get(oi, 0), wh - self.grid_in.get(oi, 0))
            for oi, wh in sorted(self.residual.items())
        ]
        grid.extend(
            (oi, self.grid_out.get(oi, 0), wh - self.grid_out.get(oi, 0))
            for oi, wh in sorted(self.export_residual.items())
        )
        try:
            columns = (
                as_i64(self.gbx),
                as_i64(self.gsx),
                *self.raw_fills.arrays(),
                as_i64([g[0] for g in grid]),
                as_i64([g[1] for g in grid]),
                as_i64([g[2] for g in grid]),
            )
        except OverflowError as err:
            raise CanonicalError("a result column does not fit in 64 bits") from err
        head = dict(summary) | {"columns": [len(c) for c in columns]}
        h = hashlib.sha256(canonical_bytes(head))
        h.update(b"\n")
        h.update(canonical_str_list([o.order_id for o in ctx.orders]))
        h.update(b"\n")
        for column in columns:
            h.update(column.astype("<i8", copy=False).tobytes())
        return h.digest()

    def fills(self) -> tuple[Fill, ...]:
        if self._fills is None:
            orders = self.ctx.orders
            fee = self.ctx.rules.distributor_fee
            out = []
            for boi, soi, price, wh in zip(*self.raw_fills.columns(), strict=True):
                bo, so = orders[boi], orders[soi]
                out.append(
                    _new_fill(
                        (bo.owner, bo.order_id, so.owner, so.order_id, wh, price, fee, so.clean)
                    )
                )
            self._fills = tuple(out)
        return self._fills

    def order_results(self) -> tuple[OrderResult, ...]:
        if self._orders is None:
            self._orders = self._build_orders()
        return self._orders

    def _build_orders(self) -> tuple[OrderResult, ...]:
        ctx = self.ctx
        orders = ctx.orders
        fee = ctx.rules.distributor_fee
        n = len(orders)
        amount = [0] * n
        for boi, soi, price, wh in zip(*self.raw_fills.columns(), strict=True):
            money = wh * price
            amount[boi] += money
            amount[soi] += money
        per_step: list[list[int] | None] = [None] * n
        for flat, gx in ((ctx.fb, self.gbx), (ctx.fs, self.gsx)):
            ois, ks = flat.oi, flat.k
            for f, v in enumerate(gx):
                if v:
                    oi = ois[f]
                    row = per_step[oi]
                    if row is None:
                        row = per_step[oi] = [0] * len(orders[oi].steps)
                    row[ks[f]] = v
        zeros: dict[int, tuple[int, ...]] = {}
        results = []
        grid_in, grid_out = self.grid_in, self.grid_out
        residual, export_residual = self.residual, self.export_residual
        for oi, order in enumerate(orders):
            row = per_step[oi]
            if row is None:
                k = len(order.steps)
                steps_filled = zeros.get(k) or zeros.setdefault(k, (0,) * k)
                filled = 0
            else:
                steps_filled = tuple(row)
                filled = sum(row)
            if order.side is Side.BUY:
                grid = grid_in.get(oi, 0)
                results.append(
                    _new_result(
                        (
                            order.order_id,
                            order.owner,
                            "buy",
                            filled,
                            amount[oi],
                            filled * fee,
                            grid,
                            residual.get(oi, 0) - grid,
                            0,
                            steps_filled,
                        )
                    )
                )
            else:
                grid = grid_out.get(oi, 0)
                results.append(
                    _new_result(
                        (
                            order.order_id,
                            order.owner,
                            "sell",
                            filled,
                            amount[oi],
                            0,
                            grid,
                            0,
                            export_residual.get(oi, 0) - grid,
                            steps_filled,
                        )
                    )
                )
        results.sort(key=ORDER_ID)
        return tuple(results)

    def member_results(self) -> tuple[MemberResult, ...]:
        if self._members is None:
            members: dict[str, list[int]] = {}
            for r in self.order_results():
                m = members.get(r.owner)
                if m is None:
                    m = members[r.owner] = [0] * 9
                if r.side == "buy":
                    m[0] += r.filled_wh
                    m[2] += r.amount_milli + r.fee_milli
                    m[4] += r.fee_milli
                    m[5] += r.grid_wh
                    m[7] += r.unserved_wh
                else:
                    m[1] += r.filled_wh
                    m[3] += r.amount_milli
                    m[6] += r.grid_wh
                    m[8] += r.curtailed_wh
            self._members = tuple(MemberResult(o, *members[o]) for o in sorted(members))
        return self._members
