"""The federation protocol: a sans-I/O state machine, one instance per home.

No sockets, no clock, no randomness: the caller hands in bytes and the time (Unix ms) and
gets back ``Output`` values: ``Send`` (bytes for one address), ``Broadcast`` (bytes for a
list of addresses) and events (``SlotCleared``, ``SlotVoid``, ``PeerJoined``, ``PeerLeft``,
``DeviceEnrolled``, ``EquivocationDetected``, ``PeerUnreachable``, ``PeerReachable``,
``Rejected``). Secrets (invitation secrets, the founding nonce) are passed in. The wire
format is specified in ``docs/protocol.md``.

Per slot (``s`` = slot start, ``G`` = gate closure = ``s - gate_closure_lead_s``):

1. **Orders** until ``G``: each member signs at most one ``bid`` (its complete order set for
   the slot) and broadcasts it. Bids are self-authenticating records that anyone may forward.
2. **Sync** ``[G, G + sync_window)``: three digest rounds; each peer tells the others which
   bid ids it holds and pushes the bids a peer lacks. Two different bids of one member for
   one slot are an **equivocation**: both signed bids are the proof, they are forwarded to
   everyone, and the member is left out of the slot's book by every peer that knows it.
3. **Attestation** at ``A = G + sync_window``: each peer freezes its book (its bids minus
   proven equivocators, plus the fairness state after the previous final slot), clears it
   with ``clear_slot``, and broadcasts one signed ``attest`` (slot, book hash, result hash).
   A member attests at most once per slot; two different attestations are an equivocation.
4. **Final** as soon as attestations matching one (book, result) come from a quorum (more
   than half, ``quorum_bp``) of the members on the roster at ``G``. A peer whose own book
   differs fetches the quorum's book (``fetch`` -> ``slot_data``), re-clears it and adopts
   the result if it verifies. Two quorums intersect, so honest peers (who attest once) can
   never finalise two different results.
5. **Void** at ``D = A + attest_window`` when no quorum is known: ``SlotVoid``, nothing is
   recorded. The peer then asks others for a final result; if a verifiable one arrives later
   (or during catch-up after being offline) it is reported as ``SlotCleared(late=True)``.
   A missing slot is asked for at most ``CATCHUP_MAX_TRIES`` times, with doubling waits.

**Relays** (``RELAY_MIN_MEMBERS`` or more on the roster at ``G``): steps 2 and 3 go through
``RELAYS_PER_SLOT`` members ranked first by ``relay_order`` for the slot instead of all-to-all.
Digests and attestations go to the relays; a relay that finalises sends every member one
``records`` bundle of the attestations it holds (a quorum's first). Every attestation in a
bundle is checked on its own signature, so safety never rests on a relay. At half the
attestation window a peer that is still not final falls back to sending its attestation
to everyone it has none from; the relays and the next ``CATCHUP_PEERS`` members in relay
order answer it with their bundle. Messages after gate closure are O(N) in all.

Public API: ``Peer`` (``found``, ``joining``, ``restore``; ``receive``, ``tick``,
``next_wakeup_ms``; ``submit_orders``, ``invite``, ``join_again``, ``leave``, ``remove``,
``set_address``, ``enrol``, ``catch_up``, ``set_balances``; ``snapshot``, ``slot_data``,
``is_void``, ``roster``, ``latest_invitation``, ``open_invitations``; properties
``joined``, ``finals``, ``fairness``, ``member_id``, ``community_id``, ``rules``,
``address``, ``membership``), the outputs listed above,
``FinalSlot``, ``EquivocationProof``, ``verify_equivocation``, ``verify_slot_data``,
``verify_record``, ``relay_order``, ``Reject``, ``ProtocolError``, ``MESSAGE_TYPES``.

Threading: a ``Peer`` is not thread-safe; call it from one thread (or one executor job at a
time). Each call is short (a signature check per message, under a millisecond); the slot's
clearing runs once at attestation and when a fetched book is verified (milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
import hashlib
from typing import Any

from ..market.clearing import SlotResult, clear_slot
from ..market.fairness import FairnessState
from ..market.orders import Order, OrderError, Side, validate_order
from ..trust.canonical import CanonicalError, canonical_bytes, decode, digest_of
from ..trust.credit import (
    DeliveryReport,
    Role,
    Settlement,
    SignedTrade,
    TradeSignature,
    TradeTerms,
    report_delivery,
    settle_delivery,
    sign_trade,
    verify_trade,
)
from ..trust.envelope import (
    Envelope,
    EnvelopePolicy,
    FieldType,
    PayloadSchema,
    RejectCode,
    ReplayGuard,
    seal,
    validate,
)
from ..trust.identity import (
    AssetEnrolment,
    Identity,
    KeyRing,
    Purpose,
    is_key_hex,
    verify_enrolment,
    verify_hex,
)
from .community import (
    Charter,
    CommunityError,
    CommunityRules,
    Invitation,
    InvitationError,
    Membership,
)

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 1000 * 1024
MAX_ORDERS_PER_BID = 32
MAX_LOCAL_ID = 100
RECORDS_PER_MESSAGE = 64
DIGEST_ROUNDS = 3
CATCHUP_PEERS = 3
CATCHUP_MAX_TRIES = 6  # catch-up requests per missing slot: after 1, 2, 4, 8, 16 windows
RELAY_MIN_MEMBERS = 12  # smaller communities exchange digests and attestations all-to-all
RELAYS_PER_SLOT = 2
ATTESTS_PER_MESSAGE = 128  # a relay's bundle: about 450 bytes per attestation record
REPLAY_WINDOW = 1 << 16
HORIZON_S = 2 * 86_400
DEFAULT_RETAIN_SLOTS = 192
DEFAULT_INVITATION_TTL_MS = 7 * 86_400_000

_I, _S, _L, _O, _K = (FieldType.INT, FieldType.STR, FieldType.LIST, FieldType.OBJECT, FieldType.KEY)

MESSAGE_TYPES: Mapping[str, PayloadSchema] = {
    # records: signed statements anyone may forward
    "bid": {"slot": _I, "orders": _L},
    "attest": {"slot": _I, "book": _S, "result": _S},
    "member": {"member": _K, "address": _S},
    "leave": {"member": _K},
    "remove": {"member": _K},
    "address": {"address": _S},
    "enrol": {"enrolment": _O},
    # control messages: point to point (or to all), never forwarded
    "digest": {"slot": _I, "root": _S, "full": FieldType.BOOL, "bids": _L},
    "records": {"records": _L},
    "fetch": {"slot": _I, "book": _S},
    "slot_data": {"slot": _I, "bids": _L, "attests": _L, "fairness": _O},
    "catchup": {"since": _I},
    "join": {"invitation": _S, "address": _S, "proof": _S},
    "welcome": {"charter": _O, "records": _L},
    # settlement: countersigning the trades of a final slot
    "trade_terms": {"slot": _I, "halves": _L},
    "trade_sig": {"slot": _I, "fill": _I, "terms": _O, "sig": _S},
    # delivery: each party's signed meter reading for its trades of a past slot
    "delivery": {"slot": _I, "reports": _L},
}
RECORD_TYPES = frozenset({"bid", "attest", "member", "leave", "remove", "address", "enrol"})
MEMBERSHIP_TYPES = frozenset({"member", "leave", "remove", "address", "enrol"})


class ProtocolError(ValueError):
    """A local call (submit, leave, remove, ...) is not allowed now."""


class Reject(StrEnum):
    """Protocol-level reasons to ignore a message (envelope reasons are ``RejectCode``)."""

    NOT_A_RECORD = "not_a_record"  # a forwarded item is not a record type
    BAD_BID = "bad_bid"  # orders malformed, not the sender's, wrong slot
    LATE_BID = "late_bid"  # signed after gate closure
    STALE_SLOT = "stale_slot"  # slot too old or too far ahead
    OVER_CREDIT_LIMIT = "over_credit_limit"  # could spend more than balance + limit
    BAD_ATTESTATION = "bad_attestation"
    BAD_MEMBERSHIP = "bad_membership"  # membership change not allowed
    BAD_INVITATION = "bad_invitation"  # unknown, used or expired invitation
    BAD_PROOF = "bad_proof"  # join proof does not match the secret
    COMMUNITY_FULL = "community_full"
    BAD_SLOT_DATA = "bad_slot_data"  # fetched book does not verify
    NOT_JOINED = "not_joined"  # a member message reached a peer still joining
    BAD_TRADE = "bad_trade"  # trade terms or signature that do not match the final fills
    BAD_DELIVERY = "bad_delivery"  # a delivery report that is malformed or not the party's


# --- Outputs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``data`` to the peer at ``to``."""

    to: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Deliver ``data`` to every address in ``to``."""

    to: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class FinalSlot:
    """A final slot: the book that was cleared and its attested result."""

    slot: int
    book_hash: str
    result_hash: str
    orders: tuple[Order, ...]
    result: SlotResult
    attesters: tuple[str, ...]
    late: bool


@dataclass(frozen=True, slots=True)
class SlotCleared:
    """The slot is final: every honest peer holds the same ``final``."""

    final: FinalSlot


@dataclass(frozen=True, slots=True)
class SlotVoid:
    """No quorum by the deadline: nothing is recorded for ``slot`` (for now)."""

    slot: int
    reason: str


@dataclass(frozen=True, slots=True)
class PeerJoined:
    """``member`` became a member (``sponsor`` signed its record)."""

    member: str
    address: str
    sponsor: str


@dataclass(frozen=True, slots=True)
class PeerLeft:
    """``member`` left (``by`` == member) or was removed by the admin ``by``."""

    member: str
    by: str
    removed: bool


@dataclass(frozen=True, slots=True)
class DeviceEnrolled:
    """``member`` enrolled an asset key."""

    member: str
    asset_id: str
    kind: str
    asset_key: str


@dataclass(frozen=True, slots=True)
class EquivocationProof:
    """Two different signed records of one member for one slot (both envelopes).

    ``kind`` is ``"bid"`` or ``"attest"``. Anyone holding the key ring checks it with
    ``verify_equivocation``.
    """

    kind: str
    member: str
    slot: int
    first: Mapping[str, Any]
    second: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the two envelopes as sent)."""
        return {
            "kind": self.kind,
            "member": self.member,
            "slot": self.slot,
            "first": dict(self.first),
            "second": dict(self.second),
        }


@dataclass(frozen=True, slots=True)
class EquivocationDetected:
    """``proof`` shows ``proof.member`` equivocated; it is excluded from the slot."""

    proof: EquivocationProof


@dataclass(frozen=True, slots=True)
class PeerUnreachable:
    """Nothing valid heard from ``member`` since ``since_ms``."""

    member: str
    since_ms: int


@dataclass(frozen=True, slots=True)
class PeerReachable:
    """``member`` is heard again after being unreachable."""

    member: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message (or a record inside one) was ignored; ``code`` says why."""

    code: str
    detail: str
    sender_address: str


@dataclass(frozen=True, slots=True)
class TradeSigned:
    """Both parties signed the trade of one fill of a final slot (``fill``: its index in
    ``SlotResult.fills``). Apply trades of a slot in fill order. ``party``: this home is
    buyer or seller (else it observed the trade)."""

    slot: int
    fill: int
    trade: SignedTrade
    party: bool


@dataclass(frozen=True, slots=True)
class DeliverySettled:
    """The delivery of one trade is settled from the seller's signed meter reading (and
    the buyer's, when it came in time): ``settlement.payment`` (milli-minor units) moves
    from seller to buyer for the energy not delivered. Every peer that saw the reports
    derives the same settlement. ``party``: this home is buyer or seller."""

    slot: int
    fill: int
    settlement: Settlement
    party: bool


@dataclass(frozen=True, slots=True)
class DeliveryUnreported:
    """The delivery deadline passed without a valid report from the seller: the money
    stays as traded (nothing signed says otherwise), but the seller delivered nothing
    that it proved. ``party``: this home is buyer or seller."""

    slot: int
    fill: int
    trade: SignedTrade
    party: bool


type Event = (
    SlotCleared
    | SlotVoid
    | PeerJoined
    | PeerLeft
    | DeviceEnrolled
    | EquivocationDetected
    | PeerUnreachable
    | PeerReachable
    | Rejected
    | TradeSigned
    | DeliverySettled
    | DeliveryUnreported
)
type Output = Send | Broadcast | Event


# --- Verification helpers (pure) ------------------------------------------------------


def _policy(community: str) -> EnvelopePolicy:
    return EnvelopePolicy(
        community=community,
        known_types=MESSAGE_TYPES,
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_payload_bytes=MAX_PAYLOAD_BYTES,
    )


def verify_record(
    data: object, *, community: str, keyring: KeyRing
) -> tuple[Envelope | None, str, str]:
    """Check a forwarded record: ``(envelope, "", "")`` or ``(None, code, detail)``.

    A record is an envelope of a record type; its signature and the sender's membership
    at the record's own timestamp are checked (no clock or replay check: records are
    statements, valid whenever they are read).
    """
    if not isinstance(data, Mapping):
        return None, RejectCode.MALFORMED.value, "record is not an object"
    if data.get("type") not in RECORD_TYPES:
        return None, Reject.NOT_A_RECORD.value, f"type {data.get('type')!r} is not a record"
    ts = data.get("ts")
    if type(ts) is not int:
        return None, RejectCode.WRONG_FIELD_TYPE.value, "field 'ts' has the wrong type"
    result = validate(data, policy=_policy(community), keyring=keyring, now_ms=ts)
    if result.envelope is None:
        return None, str(result.error), result.detail
    return result.envelope, "", ""


def verify_equivocation(proof: EquivocationProof, *, community: str, keyring: KeyRing) -> bool:
    """True if both records verify, come from ``proof.member``, are of ``proof.kind`` for
    ``proof.slot``, and differ in payload. Never raises."""
    envs: list[Envelope] = []
    for data in (proof.first, proof.second):
        env, _, _ = verify_record(data, community=community, keyring=keyring)
        if env is None or env.type != proof.kind or env.payload.get("slot") != proof.slot:
            return False
        if keyring.member_of(env.sender, env.ts_ms) != proof.member:
            return False
        envs.append(env)
    try:
        return canonical_bytes(envs[0].payload) != canonical_bytes(envs[1].payload)
    except CanonicalError:  # pragma: no cover - verified records are canonical
        return False


def record_id(member: str, env: Envelope) -> str:
    """Identity of a record's statement: member and payload (not seq, ts or signature)."""
    return digest_of({"member": member, "type": env.type, "payload": env.payload}).hex()


def qualified_orders(member: str, payload: Mapping[str, Any]) -> tuple[Order, ...]:
    """Parse a bid's orders and qualify their ids with the member (``<16 hex>:<id>``).

    Raises ``OrderError`` if the orders are malformed, not owned by ``member``, not for
    the bid's slot, or their ids repeat.
    """
    slot = payload["slot"]
    raw = payload["orders"]
    if not isinstance(raw, list) or len(raw) > MAX_ORDERS_PER_BID:
        raise OrderError(f"a bid holds at most {MAX_ORDERS_PER_BID} orders")
    orders: list[Order] = []
    seen: set[str] = set()
    for item in raw:
        order = validate_order(item)
        if order.owner != member:
            raise OrderError(f"order {order.order_id!r} is not owned by the sender")
        if order.slot_start != slot:
            raise OrderError(f"order {order.order_id!r} is for another slot")
        if len(order.order_id) > MAX_LOCAL_ID or order.order_id in seen:
            raise OrderError(f"order id {order.order_id!r} too long or repeated")
        seen.add(order.order_id)
        orders.append(replace(order, order_id=f"{member[:16]}:{order.order_id}"))
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
    """Hash of a cleared slot (its canonical plain data)."""
    return digest_of(result.to_dict()).hex()


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


def _book_from_payload(
    slot: int, payload: Mapping[str, Any], membership: Membership
) -> tuple[FairnessState, tuple[_Bid, ...]]:
    """Fairness state and verified bids (sorted by member) of a ``slot_data`` payload."""
    fair = FairnessState.from_dict(payload["fairness"])
    keyring = membership.keyring
    bids: dict[str, _Bid] = {}
    for item in payload["bids"]:
        env, code, detail = verify_record(item, community=membership.community, keyring=keyring)
        if env is None or env.type != "bid" or env.payload.get("slot") != slot:
            raise ValueError(f"bid does not verify: {code} {detail}")
        member = keyring.member_of(env.sender, env.ts_ms)
        if member is None:  # pragma: no cover - verify_record resolved the key
            raise ValueError("bid from a non-member")
        orders, code, detail = parse_bid(env, member, membership.charter.rules)
        if orders is None or member in bids:
            raise ValueError(f"bid rejected: {code or 'two bids of one member'} {detail}")
        bids[member] = _Bid(record_id(member, env), member, env.to_dict(), orders)
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
    fair, bids = _book_from_payload(slot, payload, membership)
    orders = tuple(o for b in bids for o in b.orders)
    result = clear_slot(orders, rules.market, slot_start=slot, fairness=fair)
    book = book_hash(membership.community, slot, rules, (b.bid_id for b in bids), fair)
    res = result_hash(result)
    seen: dict[str, set[tuple[str, str]]] = {}
    for item in payload.get("attests", []):
        env, code, detail = verify_record(
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
    return FinalSlot(slot, book, res, orders, result, attesters, late=False)


# --- Per-slot state -------------------------------------------------------------------


@dataclass(slots=True)
class _Bid:
    bid_id: str
    member: str
    env: dict[str, Any]
    orders: tuple[Order, ...]


@dataclass(slots=True)
class _Attest:
    member: str
    book: str
    result: str
    env: dict[str, Any]


@dataclass(slots=True)
class _Slot:
    slot: int
    bids: dict[str, dict[str, _Bid]] = field(default_factory=dict)  # member -> id -> bid
    attests: dict[str, dict[tuple[str, str], _Attest]] = field(default_factory=dict)
    equivocators: set[str] = field(default_factory=set)
    att_equivocators: set[str] = field(default_factory=set)
    heard: dict[str, frozenset[str]] = field(default_factory=dict)  # digests received
    replied: dict[str, str] = field(default_factory=dict)  # member -> our root we sent it
    started: bool = False
    rounds_done: int = 0
    frozen: bool = False
    retried: bool = False
    closed: bool = False  # deadline passed
    my_book: str = ""
    my_result: str = ""
    books: dict[str, tuple[_Bid, ...]] = field(default_factory=dict)  # book hash -> bids
    fairness: dict[str, FairnessState] = field(default_factory=dict)  # book hash -> state
    results: dict[str, SlotResult] = field(default_factory=dict)  # book hash -> result
    result_hashes: dict[str, str] = field(default_factory=dict)  # book hash -> result hash
    fetched: set[str] = field(default_factory=set)
    final: FinalSlot | None = None
    void: bool = False
    relays: tuple[str, ...] | None = None  # fixed at gate closure; () means all-to-all
    told: dict[str, str] = field(default_factory=dict)  # member -> our root we sent it
    answered: set[str] = field(default_factory=set)  # stragglers sent the quorum's records
    helper: bool | None = None  # whether we answer stragglers (relays and a few next ones)

    _ids: frozenset[str] | None = None
    _root: str = ""

    def bid_ids(self) -> frozenset[str]:
        if self._ids is None:
            self._ids = frozenset(i for per in self.bids.values() for i in per)
        return self._ids

    def root(self) -> str:
        if not self._root:
            self._root = set_root(self.bid_ids())
        return self._root

    def add_bid(self, bid: _Bid) -> dict[str, _Bid]:
        per = self.bids.setdefault(bid.member, {})
        per[bid.bid_id] = bid
        self._ids = None
        self._root = ""
        return per


@dataclass(slots=True)
class _Settling:
    """One final slot's settlement and delivery state at this peer, by fill index."""

    mine: dict[int, dict[str, Any]] = field(default_factory=dict)  # our halves
    theirs: dict[int, dict[str, Any]] = field(default_factory=dict)  # counterparty halves
    terms: dict[int, TradeTerms] = field(default_factory=dict)
    sigs: dict[int, dict[str, TradeSignature]] = field(default_factory=dict)
    # a counterparty's signature that came before our own terms: member -> (terms, sig)
    pending: dict[int, dict[str, tuple[TradeTerms, TradeSignature]]] = field(default_factory=dict)
    done: dict[int, SignedTrade] = field(default_factory=dict)
    metered: tuple[int, int] | None = None  # (exported Wh, imported Wh) this home metered
    reports: dict[int, dict[str, DeliveryReport]] = field(default_factory=dict)  # by role
    settled: set[int] = field(default_factory=set)  # DeliverySettled/Unreported emitted


# --- The peer -------------------------------------------------------------------------


class Peer:
    """One home's protocol state machine (see the module docstring).

    Build with ``Peer.found`` (new community) or ``Peer.joining`` (from an invitation).
    Every method that takes ``now_ms`` returns the outputs to act on, in order.
    """

    def __init__(
        self,
        identity: Identity,
        membership: Membership,
        address: str,
        now_ms: int,
        *,
        joined: bool,
        inviter: str = "",
        retain_slots: int = DEFAULT_RETAIN_SLOTS,
    ) -> None:
        """Low-level constructor; prefer ``found`` and ``joining``."""
        self.identity = identity
        self.member_id = identity.public_key
        self.membership = membership
        self.address = address
        self.rules: CommunityRules = membership.charter.rules
        self.community_id = membership.community
        self._policy = _policy(self.community_id)
        self._guard = ReplayGuard(REPLAY_WINDOW)
        self._seq = 0
        self._joined = joined
        self._inviter = inviter
        self._retain = retain_slots
        self._slots: dict[int, _Slot] = {}
        # Invitations this peer issued, in issue order (used ones too, while their member
        # is current: a repeated join from that member gets the welcome again).
        self._invitations: dict[str, Invitation] = {}
        # Used invitation id -> the member key it admitted ("" when unknown: old snapshot).
        self._used_invitations: dict[str, str] = {}
        self._join_invitation: Invitation | None = None  # while joining
        self._seen: set[str] = set()
        self._fairness = FairnessState()
        self._fair_slot = -1
        self._finals: dict[int, FinalSlot] = {}
        self._heard: dict[str, int] = {}
        self._unreachable: set[str] = set()
        self._balances: dict[str, int] = {}
        self._last_tick: int | None = None
        self._missing: set[int] = set()
        self._settle: dict[int, _Settling] = {}
        self._catchup: dict[int, tuple[int, int]] = {}  # missing slot -> (requests, next ms)
        step = self.rules.slot_seconds
        first = -(-(now_ms // 1000 + self.rules.gate_closure_lead_s + 1) // step) * step
        self._next_slot = first

    # -- construction --
    @classmethod
    def found(
        cls,
        identity: Identity,
        *,
        name: str,
        rules: CommunityRules,
        address: str,
        now_ms: int,
        nonce: bytes,
        admins: Sequence[str] = (),
    ) -> Peer:
        """Found a community; this home is its first member and an admin."""
        charter = Charter(name, identity.public_key, now_ms, nonce.hex(), rules, tuple(admins))
        peer = cls(identity, Membership(charter, address), address, now_ms, joined=True)
        env = peer._seal_env("address", {"address": address}, now_ms)
        peer.membership.remember(digest_of(env.to_dict()).hex(), env.to_dict())
        return peer

    @classmethod
    def joining(
        cls,
        identity: Identity,
        invitation: Invitation | str,
        *,
        address: str,
        now_ms: int,
        resume: bool = False,
    ) -> tuple[Peer, list[Output]]:
        """Start joining with a pasted invitation; returns the join request to send.

        Raises ``InvitationError`` for a damaged or expired invitation. ``resume`` (a join
        sent before a restart) skips the expiry check: the inviter may have admitted this
        key before the expiry and then answers the repeated join with the welcome again.
        """
        inv = Invitation.decode(invitation) if isinstance(invitation, str) else invitation
        if inv.expired(now_ms) and not resume:
            raise InvitationError("the invitation has expired; ask for a new one")
        # Provisional charter: replaced by the sponsor's welcome (checked against the id).
        placeholder = Charter("joining", inv.inviter, 0, "", CommunityRules())
        membership = Membership(placeholder, inv.address)
        membership.community = inv.community
        peer = cls(identity, membership, address, now_ms, joined=False, inviter=inv.inviter)
        peer._join_invitation = inv
        return peer, peer.join_again(now_ms)

    def join_again(self, now_ms: int) -> list[Output]:
        """The join request (again) while no welcome has come; the inviter answers a
        repeated join from the same key with the welcome again, so resending is safe.

        Raises ``ProtocolError`` unless this peer is joining.
        """
        inv = self._join_invitation
        if inv is None or self._joined:
            raise ProtocolError("this peer is not joining")
        payload = {
            "invitation": inv.invitation_id,
            "address": self.address,
            "proof": inv.proof(self.member_id, self.address),
        }
        return [Send(inv.address, self._seal("join", payload, now_ms))]

    # -- persistence --
    def snapshot(self) -> dict[str, Any]:
        """Plain data to persist (Home Assistant ``Store``) so a restart loses nothing that
        matters: charter, membership records, pending invitations (their secrets: keep the
        store private), the fairness state and the slots still to catch up. In-flight slot
        state is not kept: after a restart the peer catches up instead. The identity's seed
        is not included (it lives in the key store)."""
        return {
            "version": 1,
            "address": self.address,
            "joined": self._joined,
            "inviter": self._inviter,
            "community": self.community_id,
            "charter": self.membership.charter.to_dict(),
            "records": list(self.membership.records.values()),
            # In issue order (the newest is the "latest invitation" after a restart); a
            # used one stays while the member it admitted is current, with "used_by".
            "invitations": [
                {
                    "community": inv.community,
                    "inviter": inv.inviter,
                    "address": inv.address,
                    "secret": inv.secret.hex(),
                    "expires_ms": inv.expires_ms,
                    **({"used_by": used_by} if used_by else {}),
                }
                for inv_id, inv in self._invitations.items()
                if (used_by := self._used_invitations.get(inv_id)) is None
                or (used_by and self.membership.is_member(used_by))
            ],
            "used_invitations": sorted(self._used_invitations),
            "fairness": self._fairness.to_dict(),
            "fair_slot": self._fair_slot,
            "missing": sorted(self._missing),
            "settling": self._settling_snapshot(),
        }

    def _settling_snapshot(self) -> list[dict[str, Any]]:
        """Settlement and delivery state of the final slots this home traded in whose
        delivery is not settled yet, with the slot's signed data to rebuild the final."""
        out: list[dict[str, Any]] = []
        for slot, st in sorted(self._settle.items()):
            if slot not in self._finals or not st.mine:
                continue
            if st.done and all(i in st.settled for i in st.done):
                continue
            data = self.slot_data(slot)
            if data is None:  # pragma: no cover - a final slot always has its data
                continue
            out.append(
                {
                    "slot": slot,
                    "data": data,
                    "mine": {str(i): h for i, h in st.mine.items()},
                    "theirs": {str(i): h for i, h in st.theirs.items()},
                    "sigs": {
                        str(i): {m: sig.sig for m, sig in sigs.items()}
                        for i, sigs in st.sigs.items()
                    },
                    "terms": {str(i): t.to_dict() for i, t in st.terms.items()},
                    "done": {str(i): t.to_dict() for i, t in st.done.items()},
                    "metered": None if st.metered is None else list(st.metered),
                    "reports": {
                        str(i): {role: r.to_dict() for role, r in held.items()}
                        for i, held in st.reports.items()
                    },
                    "settled": sorted(st.settled),
                }
            )
        return out

    def _restore_settling(self, items: Sequence[Mapping[str, Any]], now_ms: int) -> None:
        """Rebuild what ``_settling_snapshot`` kept: the final slot from its signed data
        (verified and cleared again) and the settlement and delivery state on top."""
        for item in items:
            slot = int(item["slot"])
            adopted = self._adopt(slot, item["data"], "snapshot", now_ms)
            if isinstance(adopted, Rejected) or slot not in self._finals:
                continue  # pragma: no cover - our own signed data no longer verifies
            st = self._settlement(slot)
            st.mine = {int(i): dict(h) for i, h in item["mine"].items()}
            st.theirs = {int(i): dict(h) for i, h in item["theirs"].items()}
            st.sigs = {
                int(i): {m: TradeSignature(m, str(sig)) for m, sig in sigs.items()}
                for i, sigs in item["sigs"].items()
            }
            st.terms = {int(i): TradeTerms.from_dict(t) for i, t in item["terms"].items()}
            st.done = {int(i): SignedTrade.from_dict(t) for i, t in item["done"].items()}
            if item["metered"] is not None:
                exported, imported = (int(v) for v in item["metered"])
                st.metered = (exported, imported)
            st.reports = {
                int(i): {role: DeliveryReport.from_dict(r) for role, r in held.items()}
                for i, held in item["reports"].items()
            }
            st.settled = {int(i) for i in item["settled"]}

    @classmethod
    def restore(cls, identity: Identity, data: Mapping[str, Any], now_ms: int) -> Peer:
        """Rebuild a peer from ``snapshot`` data; raises ``ValueError`` if it is damaged.

        The first ``tick`` after a restore asks peers for the slots missed meanwhile.
        """
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise ValueError("unknown peer snapshot version")
        try:
            charter = Charter.from_dict(data["charter"])
            address = str(data["address"])
            joined = data["joined"] is True
            inviter = str(data.get("inviter", ""))
            peer = cls(
                identity,
                Membership(charter),
                address,
                now_ms,
                joined=True,
                inviter=inviter,
            )
            if not joined:  # still joining: keep the placeholder identity of the community
                peer.membership.community = peer.community_id = str(data["community"])
                peer._policy = _policy(peer.community_id)
            elif charter.community_id != data["community"]:
                raise ValueError("snapshot community does not match its charter")
            events = peer._on_records(list(data["records"]), "snapshot", now_ms)
            if any(isinstance(e, Rejected) for e in events):
                raise ValueError("a membership record in the snapshot does not verify")
            peer._joined = joined and peer.membership.is_member(peer.member_id)
            for raw in data["invitations"]:
                inv = Invitation(
                    str(raw["community"]),
                    str(raw["inviter"]),
                    str(raw["address"]),
                    bytes.fromhex(str(raw["secret"])),
                    int(raw["expires_ms"]),
                )
                peer._invitations[inv.invitation_id] = inv
                if "used_by" in raw:  # absent in snapshots before repeated joins
                    peer._used_invitations[inv.invitation_id] = str(raw["used_by"])
            for inv_id in data["used_invitations"]:
                peer._used_invitations.setdefault(str(inv_id), "")
            peer._fairness = FairnessState.from_dict(data["fairness"])
            peer._fair_slot = int(data["fair_slot"])
            peer._missing = {int(s) for s in data["missing"]}
            if peer._joined:
                peer._restore_settling(data.get("settling", []), now_ms)
            peer._last_tick = 0  # the first tick sees a gap and catches up
        except (KeyError, TypeError, CommunityError, InvitationError) as err:
            raise ValueError(f"damaged peer snapshot: {err}") from None
        return peer

    # -- read-only views --
    @property
    def joined(self) -> bool:
        """True once this home is a member."""
        return self._joined

    @property
    def finals(self) -> Mapping[int, FinalSlot]:
        """Final slots still retained, by slot start."""
        return self._finals

    def open_invitations(self, now_ms: int) -> int:
        """How many invitations this peer issued that are neither used nor expired."""
        return sum(
            1
            for inv_id, inv in self._invitations.items()
            if inv_id not in self._used_invitations and not inv.expired(now_ms)
        )

    def invitation_open(self, invitation_id: str, now_ms: int) -> bool:
        """Whether this peer's invitation ``invitation_id`` is neither used nor expired."""
        inv = self._invitations.get(invitation_id)
        return (
            inv is not None
            and invitation_id not in self._used_invitations
            and not inv.expired(now_ms)
        )

    def latest_invitation(self, now_ms: int) -> Invitation | None:
        """The invitation issued last, while it is neither used nor expired (else None).

        Issue order is kept across ``snapshot``/``restore``; a snapshot written before it
        was (sorted by id, used ones left out) makes the last listed open one "latest".
        """
        if not self._invitations:
            return None
        inv_id = next(reversed(self._invitations))
        return self._invitations[inv_id] if self.invitation_open(inv_id, now_ms) else None

    @property
    def fairness(self) -> FairnessState:
        """Fairness state after the newest final slot."""
        return self._fairness

    def roster(self, at_ms: int | None = None) -> tuple[str, ...]:
        """Member ids (now, or at ``at_ms``)."""
        return self.membership.roster(at_ms)

    def slot_data(self, slot: int) -> dict[str, Any] | None:
        """The ``slot_data`` payload of a final slot (signed bids, attestations, fairness):
        what catch-up serves and what ``verify_slot_data`` checks."""
        final = self._finals.get(slot)
        if final is None:
            return None
        return self._slot_payload(self._slots[slot], final.book_hash)

    def is_void(self, slot: int) -> bool:
        """True if ``slot`` ended without a known result."""
        state = self._slots.get(slot)
        return state is not None and state.void and state.final is None

    def next_wakeup_ms(self) -> int:
        """When ``tick`` next has work (the transport's slot clock schedules it)."""
        times = [self.rules.gate_closure_ms(self._next_slot)]
        for state in self._slots.values():
            if state.started and not state.closed:
                times.extend(t for t in self._timers(state.slot) if t > (self._last_tick or 0))
        if (due := self._delivery_wakeup()) is not None:
            times.append(due)
        return min(times)

    # -- sending helpers --
    def _seal(self, type_: str, payload: Mapping[str, Any], now_ms: int) -> bytes:
        self._seq = max(self._seq + 1, now_ms)
        env = seal(
            self.identity,
            community=self.community_id,
            seq=self._seq,
            ts_ms=now_ms,
            type=type_,
            payload=payload,
        )
        return env.to_wire()

    def _seal_env(self, type_: str, payload: Mapping[str, Any], now_ms: int) -> Envelope:
        self._seq = max(self._seq + 1, now_ms)
        return seal(
            self.identity,
            community=self.community_id,
            seq=self._seq,
            ts_ms=now_ms,
            type=type_,
            payload=payload,
        )

    def _others(self) -> tuple[str, ...]:
        return tuple(
            addr
            for m in self.membership.roster()
            if m != self.member_id and (addr := self.membership.address_of(m))
        )

    def _to_all(self, data: bytes) -> list[Output]:
        to = self._others()
        return [Broadcast(to, data)] if to else []

    # -- relays --
    def _relays(self, state: _Slot, now_ms: int) -> tuple[str, ...]:
        """The slot's relays (member ids), or ``()`` when the community is small enough for
        all-to-all. Ranked by ``relay_order`` over the roster at gate closure, skipping
        members this peer finds unreachable; fixed once gate closure has passed."""
        if state.relays is not None:
            return state.relays
        g = self.rules.gate_closure_ms(state.slot)
        roster = self.membership.roster(g)
        relays: tuple[str, ...] = ()
        if len(roster) >= RELAY_MIN_MEMBERS:
            ranked = relay_order(self.community_id, state.slot, roster)
            live = [m for m in ranked if m == self.member_id or m not in self._unreachable]
            relays = tuple((live if len(live) >= RELAYS_PER_SLOT else ranked)[:RELAYS_PER_SLOT])
        if now_ms >= g:
            state.relays = relays
        return relays

    def _addresses(self, members: Iterable[str]) -> tuple[str, ...]:
        return tuple(
            addr for m in members if m != self.member_id and (addr := self.membership.address_of(m))
        )

    def _to_relays(self, state: _Slot, data: bytes, now_ms: int) -> list[Output]:
        """To the slot's (other) relays; to everyone in a small community."""
        relays = self._relays(state, now_ms)
        if not relays:
            return self._to_all(data)
        to = self._addresses(relays)
        return [Broadcast(to, data)] if to else []

    def _spread(self, state: _Slot, data: bytes, now_ms: int) -> list[Output]:
        """Evidence (equivocation proofs) for everyone: a relay sends it to all, another
        peer to the relays, which pass it on."""
        relays = self._relays(state, now_ms)
        if not relays or self.member_id in relays:
            return self._to_all(data)
        return self._to_relays(state, data, now_ms)

    def _bundle(self, state: _Slot, to: Sequence[str], now_ms: int) -> list[Output]:
        """``records`` with the attestations held for the slot: those of the final result
        first (a quorum, enough to finalise), then any others (they expose equivocators)."""
        if not to or state.final is None:
            return []
        key = (state.final.book_hash, state.final.result_hash)
        held = sorted(
            ((k != key, a.member, k), a.env)
            for per in state.attests.values()
            for k, a in per.items()
        )
        out: list[Output] = []
        for i in range(0, len(held), ATTESTS_PER_MESSAGE):
            chunk = [env for _, env in held[i : i + ATTESTS_PER_MESSAGE]]
            data = self._seal("records", {"records": chunk}, now_ms)
            out.append(Broadcast(tuple(to), data) if len(to) > 1 else Send(to[0], data))
        return out

    def _send_records(
        self, to: str, records: Sequence[Mapping[str, Any]], now_ms: int
    ) -> list[Output]:
        out: list[Output] = []
        for i in range(0, len(records), RECORDS_PER_MESSAGE):
            chunk = [dict(r) for r in records[i : i + RECORDS_PER_MESSAGE]]
            out.append(Send(to, self._seal("records", {"records": chunk}, now_ms)))
        return out

    # -- local actions --
    def invite(
        self, secret: bytes, now_ms: int, ttl_ms: int = DEFAULT_INVITATION_TTL_MS
    ) -> Invitation:
        """Create a one-time invitation (``secret``: 32 random bytes from the caller)."""
        if not self._joined:
            raise ProtocolError("only members can invite")
        inv = Invitation(self.community_id, self.member_id, self.address, secret, now_ms + ttl_ms)
        self._invitations[inv.invitation_id] = inv
        return inv

    def submit_orders(self, slot: int, orders: Sequence[Order], now_ms: int) -> list[Output]:
        """Sign and broadcast this home's bid (all its orders) for ``slot``.

        Each order's owner is set to this home's member id. One bid per slot: submitting
        the same orders again is a no-op, different ones raise ``ProtocolError`` (two
        different bids would be an equivocation). Raises ``ProtocolError`` after gate
        closure, ``OrderError`` for malformed orders or when the bid could spend more than
        this home's balance plus its credit limit.
        """
        if not self._joined:
            raise ProtocolError("not a member yet")
        if slot % self.rules.slot_seconds:
            raise ProtocolError("slot is not aligned to the slot length")
        if now_ms >= self.rules.gate_closure_ms(slot):
            raise ProtocolError("gate closure for this slot has passed")
        raw = [replace(o, owner=self.member_id).to_dict() for o in orders]
        payload = {"slot": slot, "orders": raw}
        parsed = qualified_orders(self.member_id, payload)
        if max_spend(parsed, self.rules) > self._headroom(self.member_id):
            raise OrderError("these orders could spend more than the credit limit allows")
        state = self._slot(slot)
        mine = state.bids.get(self.member_id, {})
        env = self._seal_env("bid", payload, now_ms)
        bid_id = record_id(self.member_id, env)
        if mine:
            if bid_id in mine:
                return []
            raise ProtocolError("a different bid for this slot was already sent")
        state.add_bid(_Bid(bid_id, self.member_id, env.to_dict(), parsed))
        return self._to_all(env.to_wire())

    def leave(self, now_ms: int) -> list[Output]:
        """Leave the community (a signed ``leave`` record to everyone)."""
        return self._membership_action("leave", {"member": self.member_id}, now_ms)

    def remove(self, member: str, now_ms: int) -> list[Output]:
        """Remove ``member`` (admins only)."""
        if self.member_id not in self.membership.admins:
            raise ProtocolError("only admins can remove members")
        return self._membership_action("remove", {"member": member}, now_ms)

    def set_address(self, address: str, now_ms: int) -> list[Output]:
        """Announce a new address for this home."""
        out = self._membership_action("address", {"address": address}, now_ms)
        self.address = address
        return out

    def enrol(self, enrolment: AssetEnrolment, now_ms: int) -> list[Output]:
        """Announce a device enrolment signed by this home and the asset."""
        return self._membership_action("enrol", {"enrolment": enrolment.to_dict()}, now_ms)

    def _membership_action(
        self, type_: str, payload: Mapping[str, Any], now_ms: int
    ) -> list[Output]:
        if not self._joined:
            raise ProtocolError("not a member")
        env = self._seal_env(type_, payload, now_ms)
        to = self._others()
        target = payload.get("member")
        extra = self.membership.address_of(target) if isinstance(target, str) else None
        out: list[Output] = []
        events = self._apply_membership(env, self.member_id)
        for event in events:
            if isinstance(event, Rejected):
                raise ProtocolError(event.detail)
        if extra and extra not in to:
            to = (*to, extra)
        if to:
            out.append(Broadcast(to, env.to_wire()))
        if type_ in {"leave", "remove"} and payload.get("member") == self.member_id:
            self._joined = False
        out.extend(events)
        return out

    def catch_up(self, now_ms: int) -> list[Output]:
        """Ask a few peers for final slots this home may have missed (after being away)."""
        if not self._joined:
            return []
        oldest = self._next_slot - self._retain * self.rules.slot_seconds
        self._missing = {s for s in self._missing if s >= oldest and s not in self._finals}
        self._catchup = {s: v for s, v in self._catchup.items() if s in self._missing}
        # Backoff: each missing slot is asked for at most CATCHUP_MAX_TRIES times, the waits
        # doubling from one window; a slot void everywhere is not asked for all retention.
        asked = sorted(
            s for s in self._missing if self._catchup.get(s, (0, 0))[0] < CATCHUP_MAX_TRIES
        )
        window = self.rules.sync_window_ms + self.rules.attest_window_ms
        for s in asked:
            tries = self._catchup.get(s, (0, 0))[0] + 1
            self._catchup[s] = (tries, now_ms + window * (1 << (tries - 1)))
        since = asked[0] if asked else self._next_slot
        data = self._seal("catchup", {"since": since}, now_ms)
        return [Send(addr, data) for addr in self._pick_peers(now_ms, CATCHUP_PEERS)]

    def _pick_peers(self, now_ms: int, count: int, prefer: Sequence[str] = ()) -> list[str]:
        """``count`` peers to ask: ``prefer`` first, then peers heard from most recently,
        rotated by time so that retries ask others."""
        others = [m for m in self.membership.roster() if m != self.member_id]
        if not others:
            return []
        start = int(digest_of({"me": self.member_id, "t": now_ms}).hex()[:8], 16) % len(others)
        rotated = others[start:] + others[:start]
        recent = sorted(rotated, key=lambda m: -self._heard.get(m, 0))
        chosen: list[str] = []
        for m in [*prefer, *recent[: max(1, count - 1)], *rotated]:
            if m != self.member_id and m in others and m not in chosen:
                chosen.append(m)
        chosen = chosen[:count]
        return [a for m in chosen if (a := self.membership.address_of(m))]

    # -- credit admission --
    def set_balances(self, balances: Mapping[str, int]) -> None:
        """Community balances (milli-minor units) from the mutual-credit ledger, used to
        admit bids: a bid that could spend more than balance + ``credit_limit_base`` is
        refused. Every peer should pass the same settled ledger state; a peer whose view
        differs may admit other bids, ends in the minority and adopts the quorum's book."""
        self._balances = {m: int(v) for m, v in balances.items()}

    def _headroom(self, member: str) -> int:
        return self._balances.get(member, 0) + self.rules.credit_limit_base

    # -- the clock --
    def _timers(self, slot: int) -> list[int]:
        g = self.rules.gate_closure_ms(slot)
        sync, att = self.rules.sync_window_ms, self.rules.attest_window_ms
        rounds = [g + sync * k // DIGEST_ROUNDS for k in range(DIGEST_ROUNDS)]
        return [*rounds, g + sync, g + sync + att // 2, g + sync + att]

    def tick(self, now_ms: int) -> list[Output]:
        """Advance the clock: digests, attestation, retries and deadlines that are due."""
        out: list[Output] = []
        if not self._joined:
            self._last_tick = now_ms
            return out
        window = self.rules.sync_window_ms + self.rules.attest_window_ms
        # A gap: a timer fell due more than a window before this tick (the home was away),
        # or the peer was just restored (``_last_tick == 0``). Idle time between slots, when
        # no timer is due, is not a gap.
        last = self._last_tick
        gap = last == 0
        if last is not None and not gap:
            due = [self.rules.gate_closure_ms(self._next_slot)]
            for state in self._slots.values():
                if state.started and not state.closed:
                    due.extend(t for t in self._timers(state.slot) if t > last)
            gap = now_ms - min(due) > window
        step = self.rules.slot_seconds
        missed = False
        while self.rules.gate_closure_ms(self._next_slot) <= now_ms:
            s = self._next_slot
            g = self.rules.gate_closure_ms(s)
            if now_ms < g + self.rules.sync_window_ms:
                self._slot(s).started = True
            else:
                missed = True
                self._missing.add(s)
            self._next_slot += step
        for s in sorted(self._slots):
            state = self._slots[s]
            if state.started and not state.closed:
                out.extend(self._run_slot(state, now_ms))
        retry_due = any(
            tries < CATCHUP_MAX_TRIES and now_ms >= next_ms
            for tries, next_ms in (self._catchup.get(s, (0, 0)) for s in self._missing)
        )
        if gap or missed or retry_due:
            out.extend(self.catch_up(now_ms))
        out.extend(self._check_reachability(now_ms))
        out.extend(self._delivery_due(now_ms))
        self._prune()
        self._last_tick = now_ms
        return out

    def _run_slot(self, state: _Slot, now_ms: int) -> list[Output]:
        out: list[Output] = []
        timers = self._timers(state.slot)
        while state.rounds_done < DIGEST_ROUNDS and now_ms >= timers[state.rounds_done]:
            if now_ms < timers[DIGEST_ROUNDS]:  # skip digests once attestation is due
                out.extend(self._digest(state, now_ms, first=state.rounds_done == 0))
            state.rounds_done += 1
        if not state.frozen and now_ms >= timers[DIGEST_ROUNDS]:
            out.extend(self._attest(state, now_ms))
        if state.frozen and not state.retried and now_ms >= timers[DIGEST_ROUNDS + 1]:
            state.retried = True
            out.extend(self._retry(state, now_ms))
        if now_ms >= timers[DIGEST_ROUNDS + 2]:
            state.closed = True
            if state.final is None:
                state.void = True
                self._missing.add(state.slot)
                out.append(SlotVoid(state.slot, "no_quorum"))
                data = self._seal("fetch", {"slot": state.slot, "book": ""}, now_ms)
                groups = sorted(self._tally(state).values(), key=lambda ms: (-len(ms), ms))
                prefer = [m for group in groups for m in sorted(group)]
                out.extend(Send(a, data) for a in self._pick_peers(now_ms, CATCHUP_PEERS, prefer))
        return out

    def _digest(self, state: _Slot, now_ms: int, *, first: bool) -> list[Output]:
        ids, root = state.bid_ids(), state.root()
        payload = {"slot": state.slot, "root": root, "full": False, "bids": []}
        data = self._seal("digest", payload, now_ms)
        relays = self._relays(state, now_ms)
        g = self.rules.gate_closure_ms(state.slot)
        if relays and self.member_id not in relays:
            # To the relays; later rounds only if our set changed since we told them and
            # they have not shown us the same set (a relay pushes what it learns itself).
            targets = [
                m
                for m in relays
                if first or (state.heard.get(m) != ids and state.told.get(m) != root)
            ]
        elif first:
            return self._to_relays(state, data, now_ms)  # a relay: to the other relays
        else:  # rounds 1, 2: whoever last showed us another set
            # A relay asks members it has not heard from only in the last round: under load
            # their first digests may simply not have been read yet.
            wait = bool(relays) and state.rounds_done < DIGEST_ROUNDS - 1
            targets = [
                m
                for m in self.membership.roster(g)
                if m != self.member_id
                and state.heard.get(m) != ids
                and not (wait and m not in state.heard)
            ]
        for m in targets:
            state.told[m] = root
        to = self._addresses(targets)
        return [Broadcast(to, data)] if to else []

    def _book(self, state: _Slot) -> tuple[_Bid, ...]:
        return tuple(
            next(iter(per.values()))
            for member, per in sorted(state.bids.items())
            if len(per) == 1 and member not in state.equivocators
        )

    def _clear(
        self, slot: int, bids: Sequence[_Bid], fair: FairnessState
    ) -> tuple[str, str, SlotResult]:
        orders = [o for bid in bids for o in bid.orders]
        result = clear_slot(orders, self.rules.market, slot_start=slot, fairness=fair)
        book = book_hash(self.community_id, slot, self.rules, (b.bid_id for b in bids), fair)
        return book, result_hash(result), result

    def _attest(self, state: _Slot, now_ms: int) -> list[Output]:
        state.frozen = True
        if state.final is not None:  # a quorum was faster than our clock: support it
            book, res = state.final.book_hash, state.final.result_hash
        else:
            bids = self._book(state)
            fair = self._fairness
            book, res, result = self._clear(state.slot, bids, fair)
            state.books[book] = bids
            state.fairness[book] = fair
            state.results[book] = result
            state.result_hashes[book] = res
        state.my_book, state.my_result = book, res
        if self.member_id not in self.membership.roster(self.rules.gate_closure_ms(state.slot)):
            return []  # joined after gate closure: observe only
        env = self._seal_env("attest", {"slot": state.slot, "book": book, "result": res}, now_ms)
        record = env.to_dict()
        self._seen.add(digest_of(record).hex())
        state.attests.setdefault(self.member_id, {})[(book, res)] = _Attest(
            self.member_id, book, res, record
        )
        out = self._to_relays(state, env.to_wire(), now_ms)
        out.extend(self._check_final(state, now_ms))
        return out

    def _retry(self, state: _Slot, now_ms: int) -> list[Output]:
        """Half-way through the attestation window: resend our attestation to peers we
        have not heard an attestation from, and fetch a quorum's book we lack."""
        out: list[Output] = []
        mine = state.attests.get(self.member_id, {}).get((state.my_book, state.my_result))
        if state.final is not None and self._relays(state, now_ms):
            mine = None  # with relays, a final peer leaves the fallback to those not final
        if mine is not None:
            g = self.rules.gate_closure_ms(state.slot)
            to = tuple(
                addr
                for m in self.membership.roster(g)
                if m != self.member_id
                and m not in state.attests
                and (addr := self.membership.address_of(m))
            )
            if to:
                out.append(Broadcast(to, canonical_bytes(mine.env)))
        state.fetched.clear()
        out.extend(self._check_final(state, now_ms))
        return out

    # -- finality --
    def _tally(self, state: _Slot) -> dict[tuple[str, str], list[str]]:
        g = self.rules.gate_closure_ms(state.slot)
        roster = set(self.membership.roster(g))
        tally: dict[tuple[str, str], list[str]] = {}
        for member, per in state.attests.items():
            if member in state.att_equivocators or member not in roster or len(per) != 1:
                continue
            key = next(iter(per))
            tally.setdefault(key, []).append(member)
        return tally

    def _quorum(self, slot: int) -> int:
        return self.rules.quorum(len(self.membership.roster(self.rules.gate_closure_ms(slot))))

    def _check_final(self, state: _Slot, now_ms: int) -> list[Output]:
        if state.final is not None or not state.attests:
            return []
        need = self._quorum(state.slot)
        for (book, res), members in sorted(self._tally(state).items()):
            if len(members) < need:
                continue
            if book in state.books and book in state.result_hashes:
                if state.result_hashes[book] == res:
                    return self._finalise(state, book, sorted(members), now_ms)
                continue  # pragma: no cover - a quorum attested a result that does not verify
            if book not in state.fetched:
                state.fetched.add(book)
                data = self._seal("fetch", {"slot": state.slot, "book": book}, now_ms)
                addrs = [a for m in sorted(members) if (a := self.membership.address_of(m))]
                start = int(book[:8], 16) % len(addrs) if addrs else 0
                pick = addrs[start:] + addrs[:start]
                return [Send(a, data) for a in pick[:CATCHUP_PEERS]]
        return []

    def _finalise(self, state: _Slot, book: str, attesters: list[str], now_ms: int) -> list[Output]:
        bids = state.books[book]
        final = FinalSlot(
            slot=state.slot,
            book_hash=book,
            result_hash=state.result_hashes[book],
            orders=tuple(o for b in bids for o in b.orders),
            result=state.results[book],
            attesters=tuple(attesters),
            late=now_ms >= self._timers(state.slot)[-1],
        )
        state.final = final
        self._finals[state.slot] = final
        self._missing.discard(state.slot)
        if state.slot > self._fair_slot:
            self._fair_slot = state.slot
            self._fairness = final.result.fairness
        out: list[Output] = [SlotCleared(final)]
        if not final.late and self.member_id in self._relays(state, now_ms):
            # A relay hands everyone the quorum's signed attestations: one message each.
            out.extend(self._bundle(state, self._others(), now_ms))
        return out

    # -- receiving --
    def receive(self, data: bytes, sender_address: str, now_ms: int) -> list[Output]:
        """Handle one incoming message; never raises (bad input gives ``Rejected``)."""
        try:
            return self._receive(data, sender_address, now_ms)
        except Exception as err:  # the contract: bad input never raises
            return [
                Rejected(RejectCode.MALFORMED.value, f"{type(err).__name__}: {err}", sender_address)
            ]

    def _receive(self, data: bytes, sender_address: str, now_ms: int) -> list[Output]:
        keyring = self.membership.keyring
        join_sender = _peek_join_sender(data)
        if join_sender is not None and self._joined and keyring.resolve(join_sender) is None:
            keyring = keyring.with_member(join_sender, 0)
        result = validate(
            data, policy=self._policy, keyring=keyring, now_ms=now_ms, guard=self._guard
        )
        env = result.envelope
        if env is None:
            return [Rejected(str(result.error), result.detail, sender_address)]
        if env.type == "welcome":
            return self._on_welcome(env, sender_address, now_ms)
        if not self._joined:
            return [Rejected(Reject.NOT_JOINED.value, "not a member yet", sender_address)]
        if env.type == "join":
            return self._on_join(env, sender_address, now_ms)
        member = self.membership.member_of(env.sender, env.ts_ms)
        if member is None:  # pragma: no cover - validate() resolved the key
            return [Rejected(RejectCode.UNKNOWN_SENDER.value, "", sender_address)]
        out = self._heard_from(member, now_ms)
        if env.type == "attest":
            out.extend(self._on_direct_attest(env, member, sender_address, now_ms))
        elif env.type in RECORD_TYPES:
            out.extend(self._on_record(env, member, sender_address, now_ms))
        elif env.type == "digest":
            out.extend(self._on_digest(env, member, sender_address, now_ms))
        elif env.type == "records":
            out.extend(self._on_records(env.payload["records"], sender_address, now_ms))
        elif env.type == "fetch":
            out.extend(self._on_fetch(env, member, now_ms))
        elif env.type == "slot_data":
            out.extend(self._on_slot_data(env, sender_address, now_ms))
        elif env.type == "catchup":
            out.extend(self._on_catchup(env, member, now_ms))
        elif env.type == "trade_terms":
            out.extend(self._on_trade_terms(env, member, sender_address, now_ms))
        elif env.type == "trade_sig":
            out.extend(self._on_trade_sig(env, member, sender_address, now_ms))
        elif env.type == "delivery":
            out.extend(self._on_delivery(env, member, sender_address, now_ms))
        return out

    # -- settlement --
    def settle(self, slot: int, *, prev: str, balance: int, now_ms: int) -> list[Output]:
        """Start countersigning this home's trades of a final slot.

        ``prev`` is the hash of this home's newest source-chain entry and ``balance`` its
        credit balance (milli-minor units) before the slot, both from its ledger. For each
        fill this home is party to (self-trades excepted), in fill order, it sends the
        counterparty its half of the terms: ``prev`` and its balance after that trade.
        When both halves are known each party signs the ``TradeTerms`` and broadcasts its
        signature; with both signatures a ``TradeSigned`` event follows (for observers too).
        Raises ``ProtocolError`` if the slot is not final here.
        """
        final = self._finals.get(slot)
        if final is None:
            raise ProtocolError("only a final slot can be settled")
        st = self._settlement(slot)
        halves: dict[str, list[dict[str, Any]]] = {}
        fills = final.result.fills
        if not st.mine:
            running = balance
            for i, fill in enumerate(fills):
                if fill.buyer == fill.seller or self.member_id not in (fill.buyer, fill.seller):
                    continue
                buyer = fill.buyer == self.member_id
                value = fill.energy_wh * fill.price
                running += -(value + fill.energy_wh * fill.fee) if buyer else value
                role = "buyer" if buyer else "seller"
                st.mine[i] = {"fill": i, "role": role, "prev": prev, "balance": running}
        for i, half in sorted(st.mine.items()):  # called again: resend what is not done
            if i not in st.done:
                fill = fills[i]
                other = fill.seller if half["role"] == "buyer" else fill.buyer
                halves.setdefault(other, []).append(half)
        out: list[Output] = []
        for other, items in sorted(halves.items()):
            addr = self.membership.address_of(other)
            if addr:
                out.append(
                    Send(addr, self._seal("trade_terms", {"slot": slot, "halves": items}, now_ms))
                )
        for i in sorted(st.mine):
            out.extend(self._try_sign(slot, i, now_ms))
        return out

    def _settlement(self, slot: int) -> _Settling:
        st = self._settle.get(slot)
        if st is None:
            st = self._settle[slot] = _Settling()
        return st

    def _terms(self, slot: int, i: int) -> TradeTerms | None:
        st = self._settlement(slot)
        if i in st.terms:
            return st.terms[i]
        mine, theirs = st.mine.get(i), st.theirs.get(i)
        if mine is None or theirs is None:
            return None
        fill = self._finals[slot].result.fills[i]
        b, sl = (mine, theirs) if mine["role"] == "buyer" else (theirs, mine)
        terms = TradeTerms(
            self.community_id,
            slot,
            fill.buyer,
            fill.seller,
            fill.energy_wh,
            fill.price,
            fill.fee,
            fill.clean,
            True,
            b["prev"],
            sl["prev"],
            b["balance"],
            sl["balance"],
        )
        st.terms[i] = terms
        return terms

    def _try_sign(self, slot: int, i: int, now_ms: int) -> list[Output]:
        terms = self._terms(slot, i)
        st = self._settlement(slot)
        if terms is None or self.member_id in st.sigs.get(i, {}):
            return []
        sig = sign_trade(terms, self.identity)
        sigs = st.sigs.setdefault(i, {})
        sigs[self.member_id] = sig
        for other, (offered, half) in st.pending.pop(i, {}).items():
            if offered == terms:  # the counterparty signed before we did
                sigs[other] = half
        payload = {"slot": slot, "fill": i, "terms": terms.to_dict(), "sig": sig.sig}
        out = self._to_all(self._seal("trade_sig", payload, now_ms))
        out.extend(self._complete(slot, i, now_ms))
        return out

    def _complete(self, slot: int, i: int, now_ms: int) -> list[Output]:
        st = self._settlement(slot)
        terms = st.terms.get(i)
        sigs = st.sigs.get(i, {})
        if terms is None or i in st.done or not {terms.buyer, terms.seller} <= set(sigs):
            return []
        trade = SignedTrade(terms, sigs[terms.buyer], sigs[terms.seller])
        if not verify_trade(trade).ok:  # pragma: no cover - each half was checked
            return []
        st.done[i] = trade
        party = self.member_id in (terms.buyer, terms.seller)
        out: list[Output] = [TradeSigned(slot, i, trade, party)]
        if party and st.metered is not None:  # metered before the trade was countersigned
            out.extend(self._send_reports(slot, [i], now_ms))
        out.extend(self._try_settle_delivery(slot, i, deadline=False))
        return out

    def _on_trade_terms(
        self, env: Envelope, member: str, sender_address: str, now_ms: int
    ) -> list[Output]:
        slot = _i(env, "slot")
        final = self._finals.get(slot)
        if final is None:
            return [Rejected(Reject.BAD_TRADE.value, "slot is not final here", sender_address)]
        st = self._settlement(slot)
        out: list[Output] = []
        fills = final.result.fills
        halves: Any = env.payload["halves"]
        for half in halves:
            ok = (
                isinstance(half, dict)
                and type(half.get("fill")) is int
                and 0 <= half["fill"] < len(fills)
                and half.get("role") in ("buyer", "seller")
                and isinstance(half.get("prev"), str)
                and type(half.get("balance")) is int
            )
            if not ok:
                out.append(Rejected(Reject.BAD_TRADE.value, "malformed half", sender_address))
                continue
            i: int = half["fill"]
            fill = fills[i]
            party = fill.buyer if half["role"] == "buyer" else fill.seller
            other = fill.seller if half["role"] == "buyer" else fill.buyer
            if st.theirs.get(i) == half:  # a resend: answer with our signature again
                mine = st.sigs.get(i, {}).get(self.member_id)
                terms = st.terms.get(i)
                addr = self.membership.address_of(member)
                if mine is not None and terms is not None and addr:
                    payload = {"slot": slot, "fill": i, "terms": terms.to_dict(), "sig": mine.sig}
                    out.append(Send(addr, self._seal("trade_sig", payload, now_ms)))
                continue
            if party != member or other != self.member_id or i in st.theirs:
                out.append(
                    Rejected(Reject.BAD_TRADE.value, "not a fill between us", sender_address)
                )
                continue
            st.theirs[i] = dict(half)
            out.extend(self._try_sign(slot, i, now_ms))
        return out

    def _on_trade_sig(
        self, env: Envelope, member: str, sender_address: str, now_ms: int
    ) -> list[Output]:
        slot, i = _i(env, "slot"), _i(env, "fill")
        final = self._finals.get(slot)
        if final is None or not 0 <= i < len(final.result.fills):
            return [Rejected(Reject.BAD_TRADE.value, "no such fill here", sender_address)]
        fill = final.result.fills[i]
        try:
            terms = TradeTerms.from_dict(env.payload["terms"])  # type: ignore[arg-type]
        except ValueError as err:
            return [Rejected(Reject.BAD_TRADE.value, str(err), sender_address)]
        agreed = (
            terms.community == self.community_id
            and terms.slot == slot
            and (terms.buyer, terms.seller) == (fill.buyer, fill.seller)
            and (terms.energy_wh, terms.price, terms.fee, terms.clean)
            == (fill.energy_wh, fill.price, fill.fee, fill.clean)
            and member in (fill.buyer, fill.seller)
        )
        st = self._settlement(slot)
        known = st.terms.get(i)
        if not agreed or (known is not None and known != terms):
            return [Rejected(Reject.BAD_TRADE.value, "terms differ from the fill", sender_address)]
        half = TradeSignature(member, _s(env, "sig"))
        if not _half_valid(terms, half):
            return [
                Rejected(Reject.BAD_TRADE.value, "trade signature does not verify", sender_address)
            ]
        if known is None:
            if self.member_id in (fill.buyer, fill.seller):  # checked once we build ours
                st.pending.setdefault(i, {})[member] = (terms, half)
                return []
            st.terms[i] = terms
        st.sigs.setdefault(i, {})[member] = half
        return self._complete(slot, i, now_ms)

    # -- delivery --
    def report_delivery(
        self, slot: int, *, exported_wh: int, imported_wh: int, now_ms: int
    ) -> list[Output]:
        """Report what this home's meter measured during ``slot`` (after it ended).

        ``exported_wh``/``imported_wh``: the home's net energy to and from the grid
        connection during the slot. The export is assigned to this home's sell fills and
        the import to its buy fills in fill order, each up to the fill's energy (the
        community's trades come before the grid's). For every countersigned trade this
        home signs a ``DeliveryReport`` and sends it to all members; trades countersigned
        later are reported when they complete. Each peer settles a trade when both
        reports are in, or at the delivery deadline (one slot after the slot's end) with
        the seller's alone; without the seller's report the trade is ``DeliveryUnreported``.
        Returns nothing if the slot is not final here (void slots have no trades).
        """
        if type(exported_wh) is not int or type(imported_wh) is not int:
            raise ProtocolError("metered energy must be integer Wh")
        if exported_wh < 0 or imported_wh < 0:
            raise ProtocolError("metered energy cannot be negative")
        final = self._finals.get(slot)
        if final is None:
            return []
        st = self._settlement(slot)
        if st.metered is not None:
            return []  # reported once; a second reading would be a second story
        st.metered = (exported_wh, imported_wh)
        mine = [
            i
            for i, f in enumerate(final.result.fills)
            if f.buyer != f.seller and self.member_id in (f.buyer, f.seller) and i in st.done
        ]
        return self._send_reports(slot, mine, now_ms)

    def delivery_deadline_ms(self, slot: int) -> int:
        """Until when reports for ``slot``'s trades are waited for (then settle or give up)."""
        return (slot + 2 * self.rules.slot_seconds) * 1000

    def _metered_share(self, slot: int, i: int) -> tuple[Role, int]:
        """This home's metered energy assigned to fill ``i`` (see ``report_delivery``)."""
        metered = self._settlement(slot).metered
        assert metered is not None
        exported, imported = metered
        fills = self._finals[slot].result.fills
        seller = fills[i].seller == self.member_id
        remaining = exported if seller else imported
        for f in fills[:i]:
            if f.buyer != f.seller and (f.seller if seller else f.buyer) == self.member_id:
                remaining -= f.energy_wh
        share = max(0, min(fills[i].energy_wh, remaining))
        return (Role.SELLER if seller else Role.BUYER), share

    def _send_reports(self, slot: int, fills: Sequence[int], now_ms: int) -> list[Output]:
        st = self._settlement(slot)
        items: list[dict[str, Any]] = []
        for i in fills:
            role, share = self._metered_share(slot, i)
            held = st.reports.setdefault(i, {})
            if role.value in held:
                continue
            trade: SignedTrade = st.done[i]
            report = report_delivery(
                trade.terms, self.identity, self.member_id, role, share, now_ms
            )
            held[role.value] = report
            items.append({"fill": i, "report": report.to_dict()})
        if not items:
            return []
        out = self._to_all(self._seal("delivery", {"slot": slot, "reports": items}, now_ms))
        for item in items:
            out.extend(self._try_settle_delivery(slot, item["fill"], deadline=False))
        return out

    def _on_delivery(
        self, env: Envelope, member: str, sender_address: str, now_ms: int
    ) -> list[Output]:
        slot = _i(env, "slot")
        final = self._finals.get(slot)
        if final is None:
            return [Rejected(Reject.BAD_DELIVERY.value, "slot is not final here", sender_address)]
        st = self._settlement(slot)
        fills = final.result.fills
        keyring = self.membership.keyring
        out: list[Output] = []
        items: Any = env.payload["reports"]
        for item in items:
            i = item.get("fill") if isinstance(item, dict) else None
            if type(i) is not int or not 0 <= i < len(fills):
                out.append(Rejected(Reject.BAD_DELIVERY.value, "no such fill", sender_address))
                continue
            fill = fills[i]
            role = Role.SELLER if fill.seller == member else Role.BUYER
            try:
                report = DeliveryReport.from_dict(item["report"])
            except (ValueError, AttributeError) as err:
                out.append(Rejected(Reject.BAD_DELIVERY.value, str(err), sender_address))
                continue
            done: SignedTrade | None = st.done.get(i)
            if (
                fill.buyer == fill.seller
                or member not in (fill.buyer, fill.seller)
                or not report.valid_for(member, role, keyring)
                or (done is not None and report.trade_id != done.trade_id)
            ):
                out.append(
                    Rejected(Reject.BAD_DELIVERY.value, "not this party's report", sender_address)
                )
                continue
            held = st.reports.setdefault(i, {})
            if role.value not in held:  # the first signed reading counts
                held[role.value] = report
                out.extend(self._try_settle_delivery(slot, i, deadline=False))
        return out

    def _try_settle_delivery(self, slot: int, i: int, *, deadline: bool) -> list[Output]:
        st = self._settlement(slot)
        trade: SignedTrade | None = st.done.get(i)
        if trade is None or i in st.settled:
            return []
        held = st.reports.get(i, {})
        seller = held.get(Role.SELLER.value)
        buyer = held.get(Role.BUYER.value)
        tid = trade.trade_id
        seller = seller if seller is not None and seller.trade_id == tid else None
        buyer = buyer if buyer is not None and buyer.trade_id == tid else None
        terms = trade.terms
        party = self.member_id in (terms.buyer, terms.seller)
        if seller is not None and (buyer is not None or deadline):
            st.settled.add(i)
            price = self.rules.market.import_price
            return [DeliverySettled(slot, i, settle_delivery(terms, seller, buyer, price), party)]
        if deadline:
            st.settled.add(i)
            return [DeliveryUnreported(slot, i, trade, party)]
        return []

    def _delivery_due(self, now_ms: int) -> list[Output]:
        out: list[Output] = []
        for slot, st in sorted(self._settle.items()):
            if now_ms < self.delivery_deadline_ms(slot):
                continue
            for i in sorted(st.done):
                out.extend(self._try_settle_delivery(slot, i, deadline=True))
        return out

    def _delivery_wakeup(self) -> int | None:
        pending = [
            self.delivery_deadline_ms(slot)
            for slot, st in self._settle.items()
            if any(i not in st.settled for i in st.done)
        ]
        return min(pending, default=None)

    def _heard_from(self, member: str, now_ms: int) -> list[Output]:
        self._heard[member] = now_ms
        if member in self._unreachable:
            self._unreachable.discard(member)
            return [PeerReachable(member)]
        return []

    def _check_reachability(self, now_ms: int) -> list[Output]:
        limit = 3 * self.rules.slot_seconds * 1000
        out: list[Output] = []
        for member in self.membership.roster():
            if member == self.member_id or member in self._unreachable:
                continue
            last = self._heard.setdefault(member, now_ms)
            if now_ms - last > limit:
                self._unreachable.add(member)
                out.append(PeerUnreachable(member, last))
        return out

    def _on_records(self, items: object, sender_address: str, now_ms: int) -> list[Output]:
        out: list[Output] = []
        if not isinstance(items, list):  # pragma: no cover - schema checked
            return out
        pending = list(items)
        progress = True
        while pending and progress:  # membership records may depend on each other
            progress = False
            retry: list[Any] = []
            for item in pending:
                try:
                    key = digest_of(item).hex()
                except CanonicalError:
                    out.append(Rejected(RejectCode.MALFORMED.value, "record", sender_address))
                    continue
                if key in self._seen:
                    continue
                env, code, detail = verify_record(
                    item, community=self.community_id, keyring=self.membership.keyring
                )
                if env is None:
                    if code == RejectCode.UNKNOWN_SENDER.value:
                        retry.append(item)
                    else:
                        out.append(Rejected(code, detail, sender_address))
                    continue
                member = self.membership.member_of(env.sender, env.ts_ms)
                assert member is not None
                self._seen.add(key)
                progress = True
                out.extend(self._on_record(env, member, sender_address, now_ms))
            pending = retry
        out.extend(
            Rejected(RejectCode.UNKNOWN_SENDER.value, "record from a non-member", sender_address)
            for _ in pending
        )
        return out

    def _on_record(
        self, env: Envelope, member: str, sender_address: str, now_ms: int
    ) -> list[Output]:
        if env.type == "bid":
            return self._on_bid(env, member, sender_address, now_ms)
        if env.type == "attest":
            return self._on_attest(env, member, sender_address, now_ms)
        return self._apply_membership(env, member, sender_address)

    def _slot(self, slot: int) -> _Slot:
        state = self._slots.get(slot)
        if state is None:
            state = self._slots[slot] = _Slot(slot)
        return state

    def _slot_in_range(self, slot: int, now_ms: int) -> bool:
        oldest = self._next_slot - self._retain * self.rules.slot_seconds
        return slot % self.rules.slot_seconds == 0 and oldest <= slot <= now_ms // 1000 + HORIZON_S

    def _parse_bid(self, env: Envelope, member: str) -> tuple[tuple[Order, ...] | None, str, str]:
        return parse_bid(env, member, self.rules)

    def _on_bid(self, env: Envelope, member: str, sender_address: str, now_ms: int) -> list[Output]:
        slot = _i(env, "slot")
        orders, code, detail = self._parse_bid(env, member)
        if orders is None:
            return [Rejected(code, detail, sender_address)]
        if not self._slot_in_range(slot, now_ms):
            return [Rejected(Reject.STALE_SLOT.value, f"slot {slot}", sender_address)]
        if max_spend(orders, self.rules) > self._headroom(member):
            return [Rejected(Reject.OVER_CREDIT_LIMIT.value, "bid exceeds limit", sender_address)]
        state = self._slot(slot)
        bid_id = record_id(member, env)
        if bid_id in state.bids.get(member, {}):
            return []
        per = state.add_bid(_Bid(bid_id, member, env.to_dict(), orders))
        if len(per) == 2 and member not in state.equivocators:
            state.equivocators.add(member)
            a, b = sorted(per.values(), key=lambda x: x.bid_id)
            proof = EquivocationProof("bid", member, slot, a.env, b.env)
            out: list[Output] = [EquivocationDetected(proof)]
            data = self._seal("records", {"records": [a.env, b.env]}, now_ms)
            out.extend(self._spread(state, data, now_ms))
            return out
        return []

    def _on_attest(
        self, env: Envelope, member: str, sender_address: str, now_ms: int
    ) -> list[Output]:
        slot, book, res = _i(env, "slot"), _s(env, "book"), _s(env, "result")
        if not self._slot_in_range(slot, now_ms):
            return [Rejected(Reject.STALE_SLOT.value, f"slot {slot}", sender_address)]
        if len(book) != 64 or len(res) != 64:
            return [Rejected(Reject.BAD_ATTESTATION.value, "hashes are 64 hex", sender_address)]
        if env.ts_ms < self.rules.gate_closure_ms(slot):
            return [
                Rejected(
                    Reject.BAD_ATTESTATION.value, "attested before gate closure", sender_address
                )
            ]
        state = self._slot(slot)
        per = state.attests.setdefault(member, {})
        if (book, res) in per:
            return []
        per[(book, res)] = _Attest(member, book, res, env.to_dict())
        out: list[Output] = []
        # (no quorum is possible while fewer members than the quorum have attested at all)
        enough = len(state.attests) >= self._quorum(slot)
        if len(per) == 2 and member not in state.att_equivocators:
            state.att_equivocators.add(member)
            a, b = sorted(per.values(), key=lambda x: (x.book, x.result))
            proof = EquivocationProof("attest", member, slot, a.env, b.env)
            out.append(EquivocationDetected(proof))
            data = self._seal("records", {"records": [a.env, b.env]}, now_ms)
            out.extend(self._spread(state, data, now_ms))
        if enough:
            out.extend(self._check_final(state, now_ms))
        return out

    def _on_direct_attest(
        self, env: Envelope, member: str, sender_address: str, now_ms: int
    ) -> list[Output]:
        """An attestation sent to us (not forwarded). Marked seen, so that a relay's bundle
        holding it costs no second signature check. With relays, one that arrives after
        the retry point comes from a peer that is not final (the fallback): the relays and
        the next ``CATCHUP_PEERS`` members in relay order answer it with the quorum's
        records, once per peer and slot, if they are final."""
        self._seen.add(digest_of(env.to_dict()).hex())
        out = self._on_attest(env, member, sender_address, now_ms)
        state = self._slots.get(_i(env, "slot"))
        if (
            state is None
            or state.final is None
            or member in state.answered
            or now_ms < self._timers(state.slot)[DIGEST_ROUNDS + 1]
            or not self._relays(state, now_ms)
        ):
            return out
        if state.helper is None:
            g = self.rules.gate_closure_ms(state.slot)
            ranked = relay_order(self.community_id, state.slot, self.membership.roster(g))
            helpers = (*ranked[: RELAYS_PER_SLOT + CATCHUP_PEERS], *(state.relays or ()))
            state.helper = self.member_id in helpers
        addr = self.membership.address_of(member)
        if state.helper and addr:
            state.answered.add(member)
            out.extend(self._bundle(state, [addr], now_ms))
        return out

    def _on_digest(
        self, env: Envelope, member: str, sender_address: str, now_ms: int
    ) -> list[Output]:
        slot, ids = _i(env, "slot"), env.payload["bids"]
        if not isinstance(ids, list):  # pragma: no cover - schema checked
            return []
        if not self._slot_in_range(slot, now_ms) or not all(isinstance(i, str) for i in ids):
            return [Rejected(Reject.STALE_SLOT.value, "digest", sender_address)]
        state = self._slot(slot)
        addr = self.membership.address_of(member)
        mine = state.bid_ids()
        my_root = state.root()
        if env.payload["root"] == my_root:
            state.heard[member] = mine
            return []
        if addr is None:  # pragma: no cover - members have addresses
            return []
        out: list[Output] = []
        if env.payload["full"] is True:
            theirs = frozenset(str(i) for i in ids)
            state.heard[member] = theirs
            missing = [
                bid.env
                for per in state.bids.values()
                for bid_id, bid in sorted(per.items())
                if bid_id not in theirs
            ]
            out.extend(self._send_records(addr, missing, now_ms))
            if theirs <= mine:
                return out
        if state.replied.get(member) != my_root:  # tell them what we hold, once per state
            state.replied[member] = state.told[member] = my_root
            full = {"slot": slot, "root": my_root, "full": True, "bids": sorted(mine)}
            out.append(Send(addr, self._seal("digest", full, now_ms)))
        return out

    def _on_fetch(self, env: Envelope, member: str, now_ms: int) -> list[Output]:
        slot, book = _i(env, "slot"), _s(env, "book")
        state = self._slots.get(slot)
        addr = self.membership.address_of(member)
        if state is None or addr is None:
            return []
        if not book:
            if state.final is None:
                return []
            book = state.final.book_hash
        return self._slot_data(state, book, addr, now_ms)

    def _slot_data(self, state: _Slot, book: str, addr: str, now_ms: int) -> list[Output]:
        payload = self._slot_payload(state, book)
        if payload is None:
            return []
        return [Send(addr, self._seal("slot_data", payload, now_ms))]

    def _slot_payload(self, state: _Slot, book: str) -> dict[str, Any] | None:
        bids = state.books.get(book)
        if bids is None:
            return None
        res = state.result_hashes[book]
        attests = [
            a.env
            for per in state.attests.values()
            for (b, r), a in per.items()
            if b == book and r == res
        ]
        return {
            "slot": state.slot,
            "bids": [b.env for b in bids],
            "attests": attests,
            "fairness": state.fairness[book].to_dict(),
        }

    def _on_slot_data(self, env: Envelope, sender_address: str, now_ms: int) -> list[Output]:
        slot = _i(env, "slot")
        state = self._slots.get(slot)
        if state is not None and state.final is not None:
            return []
        if not self._slot_in_range(slot, now_ms):
            return [Rejected(Reject.STALE_SLOT.value, f"slot {slot}", sender_address)]
        problem = self._adopt(slot, env.payload, sender_address, now_ms)
        if isinstance(problem, Rejected):
            return [problem]
        return problem

    def _adopt(
        self, slot: int, payload: Mapping[str, Any], sender_address: str, now_ms: int
    ) -> list[Output] | Rejected:
        def bad(detail: str) -> Rejected:
            return Rejected(Reject.BAD_SLOT_DATA.value, detail, sender_address)

        try:
            fair, ordered = _book_from_payload(slot, payload, self.membership)
        except ValueError as err:
            return bad(str(err))
        keyring = self.membership.keyring
        book, res, result = self._clear(slot, ordered, fair)
        state = self._slot(slot)
        state.books[book] = ordered
        state.fairness[book] = fair
        state.results[book] = result
        state.result_hashes[book] = res
        for item in payload["attests"]:
            key = digest_of(item).hex()
            env, code, detail = verify_record(item, community=self.community_id, keyring=keyring)
            if env is None or env.type != "attest":
                return bad(f"attestation does not verify: {code} {detail}")
            member = keyring.member_of(env.sender, env.ts_ms)
            assert member is not None
            if key not in self._seen:
                self._seen.add(key)
                self._on_attest(env, member, sender_address, now_ms)
        if state.final is not None:  # finalised while recording the attestations
            return [SlotCleared(state.final)]
        need = self._quorum(slot)
        members = self._tally(state).get((book, res), [])
        if len(members) < need:
            return bad("the book's result has no quorum of attestations")
        return self._finalise(state, book, sorted(members), now_ms)

    def _on_catchup(self, env: Envelope, member: str, now_ms: int) -> list[Output]:
        since = _i(env, "since")
        addr = self.membership.address_of(member)
        if addr is None:
            return []
        out = self._send_records(addr, list(self.membership.records.values()), now_ms)
        for slot in sorted(self._finals):
            if slot >= since:
                out.extend(
                    self._slot_data(self._slots[slot], self._finals[slot].book_hash, addr, now_ms)
                )
        return out

    # -- membership --
    def _apply_membership(
        self, env: Envelope, member: str, sender_address: str = ""
    ) -> list[Output]:
        key = digest_of(env.to_dict()).hex()
        if key in self.membership.records:
            return []
        p = env.payload
        ms = self.membership
        event: Output
        try:
            if env.type == "member":
                target = str(p["member"])
                ms.add(target, str(p["address"]), member, env.ts_ms)
                event = PeerJoined(target, str(p["address"]), member)
            elif env.type in {"leave", "remove"}:
                target = str(p["member"])
                if env.type == "leave" and target != member:
                    raise CommunityError("a member can only leave for itself")
                if env.type == "remove" and target == member:
                    raise CommunityError("use leave to leave")
                ms.end(target, member, env.ts_ms)
                event = PeerLeft(target, member, env.type == "remove")
                if target == self.member_id:
                    self._joined = False
            elif env.type == "address":
                ms.set_address(member, str(p["address"]))
                ms.remember(key, env.to_dict())
                return []
            else:
                enrolment = _enrolment(p["enrolment"])
                if enrolment is None or enrolment.member != member:
                    raise CommunityError("enrolment is malformed or for another member")
                binding = ms.enrol(enrolment)
                event = DeviceEnrolled(member, binding.asset_id, enrolment.kind, binding.key)
        except CommunityError as err:
            code = Reject.COMMUNITY_FULL if "full" in str(err) else Reject.BAD_MEMBERSHIP
            return [Rejected(code.value, str(err), sender_address)]
        ms.remember(key, env.to_dict())
        return [event]

    def _on_join(self, env: Envelope, sender_address: str, now_ms: int) -> list[Output]:
        p = env.payload
        inv_id, address, proof = str(p["invitation"]), str(p["address"]), str(p["proof"])
        inv = self._invitations.get(inv_id)
        used_by = self._used_invitations.get(inv_id)
        # A used invitation only answers the key it admitted (a repeated join: the welcome
        # was lost, e.g. the joiner restarted), even after its expiry.
        if (
            inv is None
            or (used_by is None and inv.expired(now_ms))
            or (used_by is not None and used_by != env.sender)
        ):
            return [
                Rejected(Reject.BAD_INVITATION.value, "unknown, used or expired", sender_address)
            ]
        if not inv.check_proof(env.sender, address, proof):
            return [Rejected(Reject.BAD_PROOF.value, "join proof does not match", sender_address)]
        if used_by is not None:
            # A former member's key is refused by validate() already (unknown sender).
            if not self.membership.is_member(env.sender):  # pragma: no cover - see above
                return [Rejected(Reject.BAD_INVITATION.value, "used", sender_address)]
            # Only to the address on record: a repeated join cannot aim the welcome
            # elsewhere (the joiner resends exactly what it sent first).
            if address != self.membership.address_of(env.sender):
                detail = "used for another address"
                return [Rejected(Reject.BAD_INVITATION.value, detail, sender_address)]
            return [self._welcome(address, now_ms)]
        record = self._seal_env("member", {"member": env.sender, "address": address}, now_ms)
        others = self._others()
        events = self._apply_membership(record, self.member_id, sender_address)
        if any(isinstance(e, Rejected) for e in events):
            return events
        self._used_invitations[inv_id] = env.sender
        out: list[Output] = []
        if others:
            out.append(Broadcast(others, record.to_wire()))
        out.append(self._welcome(address, now_ms))
        out.extend(events)
        return out

    def _welcome(self, address: str, now_ms: int) -> Send:
        """The current charter and every membership record, for a newcomer at ``address``."""
        welcome = {
            "charter": self.membership.charter.to_dict(),
            "records": list(self.membership.records.values()),
        }
        return Send(address, self._seal("welcome", welcome, now_ms))

    def _on_welcome(self, env: Envelope, sender_address: str, now_ms: int) -> list[Output]:
        if self._joined or env.sender != self._inviter:
            return [Rejected(Reject.BAD_MEMBERSHIP.value, "unexpected welcome", sender_address)]
        try:
            charter = Charter.from_dict(env.payload["charter"])
        except CommunityError as err:
            return [Rejected(Reject.BAD_MEMBERSHIP.value, str(err), sender_address)]
        if charter.community_id != self.community_id:
            return [
                Rejected(
                    Reject.BAD_MEMBERSHIP.value, "charter of another community", sender_address
                )
            ]
        founder_address = self.membership.addresses.get(self._inviter, "")
        self.membership = Membership(
            charter, founder_address if charter.founder == self._inviter else ""
        )
        self.rules = charter.rules
        step = self.rules.slot_seconds
        self._next_slot = -(-(now_ms // 1000 + self.rules.gate_closure_lead_s + 1) // step) * step
        self._seen.clear()
        out = self._on_records(env.payload["records"], sender_address, now_ms)
        if not self.membership.is_member(self.member_id):
            return [
                *out,
                Rejected(Reject.BAD_MEMBERSHIP.value, "welcome lacks our record", sender_address),
            ]
        self._joined = True
        self._join_invitation = None  # its secret is not needed any more
        return out

    def _prune(self) -> None:
        oldest = self._next_slot - self._retain * self.rules.slot_seconds
        for slot in [s for s in self._slots if s < oldest]:
            del self._slots[slot]
            self._finals.pop(slot, None)
            self._settle.pop(slot, None)
        if len(self._seen) > 200_000:
            self._seen.clear()


def _half_valid(terms: TradeTerms, half: TradeSignature) -> bool:
    """One party's signature over the trade terms (its key is its member id)."""
    try:
        body = terms.body()
    except CanonicalError:
        return False
    return verify_hex(half.key, Purpose.TRADE, body, half.sig)


def _i(env: Envelope, name: str) -> int:
    """An integer payload field (the schema guarantees the type)."""
    value = env.payload[name]
    if type(value) is not int:  # pragma: no cover - schema checked
        raise TypeError(name)
    return value


def _s(env: Envelope, name: str) -> str:
    """A string payload field (the schema guarantees the type)."""
    value = env.payload[name]
    if type(value) is not str:  # pragma: no cover - schema checked
        raise TypeError(name)
    return value


def _peek_join_sender(data: bytes) -> str | None:
    """The sender key of a ``join`` message, before validation (cheap prefilter)."""
    if b'"type":"join"' not in data[:MAX_MESSAGE_BYTES]:
        return None
    try:
        value = decode(data)
    except CanonicalError:
        return None
    if isinstance(value, dict) and value.get("type") == "join":
        sender = value.get("sender")
        if is_key_hex(sender):
            assert isinstance(sender, str)
            return sender
    return None


def _enrolment(data: object) -> AssetEnrolment | None:
    if not isinstance(data, Mapping):
        return None
    try:
        enrolment = AssetEnrolment(
            str(data["member"]),
            str(data["home_key"]),
            str(data["asset_key"]),
            str(data["asset_id"]),
            str(data["kind"]),
            int(data["enrolled_ms"]),
            str(data["home_sig"]),
            str(data["asset_sig"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return enrolment if verify_enrolment(enrolment) else None
