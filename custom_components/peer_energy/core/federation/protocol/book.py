"""A slot's book, pure: parsing bids, the hashes peers attest to, relay ranking, and the
checks anyone can run on a final slot or an equivocation proof from the signed records
alone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import hashlib
from typing import Any

from ...market.clearing import SlotResult, clear_slot
from ...market.fairness import FairnessState
from ...market.orders import Order, OrderError, Side, validate_order
from ...trust.canonical import CanonicalError, canonical_bytes, digest_of
from ...trust.envelope import Envelope
from ...trust.identity import KeyRing
from ..community import CommunityRules, Membership
from . import wire
from .outputs import EquivocationProof, FinalSlot
from .wire import MAX_LOCAL_ID, MAX_ORDERS_PER_BID, Reject, record_id


@dataclass(slots=True)
class Bid:
    """A verified bid record: its id, member, envelope and qualified orders."""

    bid_id: str
    member: str
    env: dict[str, Any]
    orders: tuple[Order, ...]


def verify_equivocation(proof: EquivocationProof, *, community: str, keyring: KeyRing) -> bool:
    """True if both records verify, come from ``proof.member``, are of ``proof.kind`` for
    ``proof.slot``, and differ in payload. Never raises."""
    envs: list[Envelope] = []
    for data in (proof.first, proof.second):
        env, _, _ = wire.verify_record(data, community=community, keyring=keyring)
        if env is None or env.type != proof.kind or env.payload.get("slot") != proof.slot:
            return False
        if keyring.member_of(env.sender, env.ts_ms) != proof.member:
            return False
        envs.append(env)
    try:
        return canonical_bytes(envs[0].payload) != canonical_bytes(envs[1].payload)
    except CanonicalError:  # pragma: no cover - verified records are canonical
        return False


def qualified_orders(member: str, payload: Mapping[str, Any]) -> tuple[Order, ...]:
    """Parse a bid's orders and qualify their ids with the member (``<16 hex>:<id>``).

    Raises ``OrderError`` if the orders are malformed, not owned by ``member``, not for
    the bid's slot, or their ids repeat.
    """
    slot = payload["slot"]
    raw = payload["orders"]
    if not isinstance(raw, list) or len(raw) > MAX_ORDERS_PER_BID:
        raise OrderError(f"a bid holds at most {MAX_ORDERS_PER_BID} orders")
    prefix = f"{member[:16]}:"
    longest = len(prefix) + MAX_LOCAL_ID
    orders: list[Order] = []
    seen: set[str] = set()
    for item in raw:
        order = validate_order(item, qualify=prefix)
        if order.owner != member:
            raise OrderError(f"order {order.order_id!r} is not owned by the sender")
        if order.slot_start != slot:
            raise OrderError(f"order {order.order_id!r} is for another slot")
        if len(order.order_id) > longest or order.order_id in seen:
            raise OrderError(f"order id {order.order_id!r} too long or repeated")
        seen.add(order.order_id)
        orders.append(order)
    return tuple(orders)


def max_spend(orders: Iterable[Order], rules: CommunityRules) -> int:
    """Most a bid's buy orders could cost (milli-minor units): every step filled at its
    effective limit (capped at the import price) plus the fee."""
    cap = rules.market.import_price
    fee = rules.fee
    total = 0
    for order in orders:
        if order.side is Side.BUY:
            for step in order.steps:
                total += step.energy_wh * max(0, min(step.price, cap))
                total += step.energy_wh * fee
    return total


def set_root(ids: Iterable[str]) -> str:
    """Hash of a set of bid ids (a digest round compares these first)."""
    return digest_of(sorted(ids)).hex()


def book_hash(
    community: str, slot: int, rules: CommunityRules, bid_ids: Iterable[str], fair: FairnessState
) -> str:
    """Hash of a slot's book: rules, sorted bid ids, fairness state before the slot."""
    return digest_of(
        {
            "community": community,
            "slot": slot,
            "rules": rules.market.to_dict(),
            "bids": sorted(bid_ids),
            "fairness": fair.to_dict(),
        }
    ).hex()


def result_hash(result: SlotResult) -> str:
    """Hash of a cleared slot: ``SlotResult.digest`` (its summary, fairness state, order ids,
    step allocations, fills and grid flows; ``docs/protocol.md``), as hex."""
    return result.digest().hex()


def clear_book(
    community: str, slot: int, rules: CommunityRules, bids: Iterable[Bid], fair: FairnessState
) -> tuple[str, str, SlotResult]:
    """Clear a slot's book: ``(book hash, result hash, result)``."""
    bids = tuple(bids)
    orders = [o for bid in bids for o in bid.orders]
    result = clear_slot(orders, rules.market, slot_start=slot, fairness=fair)
    book = book_hash(community, slot, rules, (b.bid_id for b in bids), fair)
    return book, result_hash(result), result


def relay_order(community: str, slot: int, roster: Iterable[str]) -> tuple[str, ...]:
    """The roster ranked for relay duty in ``slot``: by SHA-256 of
    ``"peer-energy/v1/relay\n<community>\n<slot>\n<member>"`` (UTF-8), lowest first.

    The first ``RELAYS_PER_SLOT`` members (skipping those a peer finds unreachable) relay
    digests and attestations for a community of at least ``RELAY_MIN_MEMBERS``; every peer
    with the same roster at gate closure computes the same order.
    """
    prefix = f"peer-energy/v1/relay\n{community}\n{slot}\n".encode()
    return tuple(sorted(roster, key=lambda m: hashlib.sha256(prefix + m.encode()).digest()))


def parse_bid(
    env: Envelope, member: str, rules: CommunityRules
) -> tuple[tuple[Order, ...] | None, str, str]:
    """A verified bid record's qualified orders, or ``(None, code, detail)``."""
    slot = env.payload["slot"]
    if not isinstance(slot, int) or slot % rules.slot_seconds:
        return None, Reject.BAD_BID.value, "slot is not aligned"
    if env.ts_ms >= rules.gate_closure_ms(slot):
        return None, Reject.LATE_BID.value, "bid signed after gate closure"
    try:
        orders = qualified_orders(member, env.payload)
    except OrderError as err:
        return None, Reject.BAD_BID.value, str(err)
    return orders, "", ""


def book_from_payload(
    slot: int, payload: Mapping[str, Any], membership: Membership
) -> tuple[FairnessState, tuple[Bid, ...]]:
    """Fairness state and verified bids (sorted by member) of a ``slot_data`` payload.

    Raises ``ValueError`` saying what does not verify.
    """
    fair = FairnessState.from_dict(payload["fairness"])
    keyring = membership.keyring
    bids: dict[str, Bid] = {}
    for item in payload["bids"]:
        env, code, detail = wire.verify_record(
            item, community=membership.community, keyring=keyring
        )
        if env is None or env.type != "bid" or env.payload.get("slot") != slot:
            raise ValueError(f"bid does not verify: {code} {detail}")
        member = keyring.member_of(env.sender, env.ts_ms)
        if member is None:  # pragma: no cover - verify_record resolved the key
            raise ValueError("bid from a non-member")
        orders, code, detail = parse_bid(env, member, membership.charter.rules)
        if orders is None or member in bids:
            raise ValueError(f"bid rejected: {code or 'two bids of one member'} {detail}")
        bids[member] = Bid(record_id(member, env), member, env.to_dict(), orders)
    return fair, tuple(bids[m] for m in sorted(bids))


def verify_slot_data(payload: Mapping[str, Any], *, membership: Membership) -> FinalSlot:
    """Verify a final slot from its signed bids and attestations alone (property 2).

    ``payload`` is a ``slot_data`` payload (``Peer.slot_data``): the bids are re-checked
    and re-cleared with the given fairness state, and more than the quorum of the slot's
    roster must have attested exactly that book and result (members with two different
    attestations do not count). Raises ``ValueError`` saying what does not verify.
    """
    slot = payload.get("slot")
    if type(slot) is not int:
        raise ValueError("slot must be an integer")
    rules = membership.charter.rules
    fair, bids = book_from_payload(slot, payload, membership)
    book, res, result = clear_book(membership.community, slot, rules, bids, fair)
    seen: dict[str, set[tuple[str, str]]] = {}
    for item in payload.get("attests", []):
        env, code, detail = wire.verify_record(
            item, community=membership.community, keyring=membership.keyring
        )
        if env is None or env.type != "attest" or env.payload.get("slot") != slot:
            raise ValueError(f"attestation does not verify: {code} {detail}")
        member = membership.member_of(env.sender, env.ts_ms)
        key = (str(env.payload["book"]), str(env.payload["result"]))
        seen.setdefault(str(member), set()).add(key)
    roster = membership.roster(rules.gate_closure_ms(slot))
    attesters = tuple(m for m in roster if seen.get(m) == {(book, res)})
    if len(attesters) < rules.quorum(len(roster)):
        raise ValueError("the book's result has no quorum of attestations")
    orders = tuple(o for b in bids for o in b.orders)
    return FinalSlot(slot, book, res, orders, result, attesters, late=False)
