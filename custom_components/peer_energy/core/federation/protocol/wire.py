"""The wire format: message types and their payload schemas, limits, reject codes, and the
checks every incoming message and forwarded record goes through.

A message reaches a protocol part as an ``Incoming`` (its envelope verified, its sender
resolved to a member) and is handled in two phases by a ``Handler``: ``check`` may reject
it (a ``Rejected`` with a reject code) and changes nothing; ``apply`` then changes the
peer's state and returns the outputs. The message table itself is in ``peer.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from ...trust.canonical import CanonicalError, canonical_bytes, decode, digest, digest_of
from ...trust.envelope import (
    Envelope,
    EnvelopePolicy,
    FieldType,
    PayloadSchema,
    RejectCode,
    validate,
)
from ...trust.identity import KeyRing, is_key_hex
from .outputs import Output, Rejected

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 1000 * 1024
MAX_ORDERS_PER_BID = 32
MAX_LOCAL_ID = 100
RECORDS_PER_MESSAGE = 64
LEDGER_RECORDS_PER_MESSAGE = 32  # a trade record is about 1.2 kB, a settlement 2.5 kB
LEDGER_RECORDS_MAX = 512  # most credit records one ledger answer carries
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
PENDING_JOIN_MS = 600_000  # a welcomed joiner must acknowledge within this (confirmed joins)

_I, _S, _L, _O, _K = (FieldType.INT, FieldType.STR, FieldType.LIST, FieldType.OBJECT, FieldType.KEY)

MESSAGE_TYPES: Mapping[str, PayloadSchema] = {
    # records: signed statements anyone may forward
    "bid": {"slot": _I, "orders": _L},
    "attest": {"slot": _I, "book": _S, "result": _S},
    "member": {"member": _K, "address": _S},
    "leave": {"member": _K},
    "remove": {"member": _K},
    "address": {"address": _S},
    # the display name neighbours see for the signer (its own choice; newest wins)
    "name": {"name": _S},
    "enrol": {"enrolment": _O},
    # control messages: point to point (or to all), never forwarded
    "digest": {"slot": _I, "root": _S, "full": FieldType.BOOL, "bids": _L},
    "records": {"records": _L},
    "fetch": {"slot": _I, "book": _S},
    "slot_data": {"slot": _I, "bids": _L, "attests": _L, "fairness": _O},
    "catchup": {"since": _I},
    "join": {"invitation": _S, "address": _S, "proof": _S},
    # the joiner got the welcome (and, on a broker, the community key): admit it now
    "joined": {"invitation": _S},
    "welcome": {"charter": _O, "records": _L},
    # settlement: countersigning the trades of a final slot
    "trade_terms": {"slot": _I, "halves": _L},
    "trade_sig": {"slot": _I, "fill": _I, "terms": _O, "sig": _S},
    # delivery: each party's signed meter reading for its trades of a past slot
    "delivery": {"slot": _I, "reports": _L},
    # reconciliation after a restart: the credit records of recent slots
    "ledger_req": {"since": _I},
    "ledger": {"records": _L},
}
RECORD_TYPES = frozenset({"bid", "attest", "member", "leave", "remove", "address", "name", "enrol"})
MEMBERSHIP_TYPES = frozenset({"member", "leave", "remove", "address", "name", "enrol"})


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
    BAD_LEDGER = "bad_ledger"  # a ledger record that is malformed or not signed by its parties


# --- Handling one message -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message (or a forwarded record) whose envelope verified: ``member`` is the member
    its sender key speaks for (the joiner's own key for a ``join``), ``sender_address``
    where it came from (``"snapshot"`` when restoring), ``now_ms`` the time of handling."""

    env: Envelope
    member: str
    sender_address: str
    now_ms: int

    def reject(self, code: Reject | RejectCode, detail: str) -> Rejected:
        """The ``Rejected`` output for this message."""
        return Rejected(code.value, detail, self.sender_address)

    def int_field(self, name: str) -> int:
        """An integer payload field (the schema guarantees the type)."""
        value = self.env.payload[name]
        if type(value) is not int:  # pragma: no cover - schema checked
            raise TypeError(name)
        return value

    def str_field(self, name: str) -> str:
        """A string payload field (the schema guarantees the type)."""
        value = self.env.payload[name]
        if type(value) is not str:  # pragma: no cover - schema checked
            raise TypeError(name)
        return value


@dataclass(frozen=True, slots=True)
class Handler[T]:
    """How one message type is handled: ``check`` reads the message and the peer's state
    and returns what ``apply`` needs, a ``Rejected`` (nothing changed), or ``None`` (valid
    but nothing to do, e.g. already known); ``apply`` changes the state."""

    check: Callable[[Incoming], T | Rejected | None]
    apply: Callable[[Incoming, T], list[Output]]

    def __call__(self, msg: Incoming) -> list[Output]:
        """Check, then apply if the check passed."""
        checked = self.check(msg)
        if checked is None:
            return []
        if isinstance(checked, Rejected):
            return [checked]
        return self.apply(msg, checked)


# --- Envelope and record checks (pure) ------------------------------------------------


def envelope_policy(community: str) -> EnvelopePolicy:
    """The envelope checks of the protocol's messages in ``community``."""
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
    type_ = data.get("type")
    if not isinstance(type_, str) or type_ not in RECORD_TYPES:
        return None, Reject.NOT_A_RECORD.value, f"type {type_!r} is not a record"
    ts = data.get("ts")
    if type(ts) is not int:
        return None, RejectCode.WRONG_FIELD_TYPE.value, "field 'ts' has the wrong type"
    result = validate(data, policy=envelope_policy(community), keyring=keyring, now_ms=ts)
    if result.envelope is None:
        return None, str(result.error), result.detail
    return result.envelope, "", ""


def record_id(member: str, env: Envelope) -> str:
    """Identity of a record's statement: member and payload (not seq, ts or signature)."""
    payload = env.payload_wire()
    if payload is None:
        return digest_of({"member": member, "type": env.type, "payload": env.payload}).hex()
    # The same canonical bytes, with the payload's cut from the wire instead of encoded.
    return digest(
        b'{"member":'
        + canonical_bytes(member)
        + b',"payload":'
        + payload
        + b',"type":'
        + canonical_bytes(env.type)
        + b"}"
    ).hex()


def peek_join_sender(data: bytes) -> str | None:
    """The sender key of a ``join`` or ``joined`` message, before validation (cheap
    prefilter): the two messages a key that is not a member's yet may send."""
    head = data[:MAX_MESSAGE_BYTES]
    if b'"type":"join"' not in head and b'"type":"joined"' not in head:
        return None
    try:
        value = decode(data)
    except CanonicalError:
        return None
    if isinstance(value, dict) and value.get("type") in {"join", "joined"}:
        sender = value.get("sender")
        if is_key_hex(sender):
            assert isinstance(sender, str)
            return sender
    return None
