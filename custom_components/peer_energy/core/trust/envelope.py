"""The one signed envelope every Peer Energy message travels in.

Wire form: canonical JSON (see ``canonical``) of an object with exactly these keys::

    v          protocol version (int)
    community  community id (str)
    sender     sender's public key, 64 lowercase hex characters
    seq        per-sender sequence number (int >= 1, strictly new per sender)
    ts         sender's clock in Unix milliseconds (int >= 0)
    type       message type (str, e.g. "order")
    payload    the message body (object; integers only, no floats)
    sig        Ed25519 signature (128 hex) over the canonical bytes of all other keys,
               with the ``envelope`` signing purpose (domain separation)

``validate`` checks an incoming message and returns a ``ValidationResult`` with one
``RejectCode`` per failure kind, for any input (bytes or decoded data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from .canonical import (
    Canonical,
    CanonicalError,
    FloatNotAllowedError,
    canonical_bytes,
    decode,
    digest,
    digest_of,
)
from .identity import Identity, KeyRing, Purpose, is_key_hex, is_sig_hex, verify_hex

PROTOCOL_VERSION = 1
ENVELOPE_KEYS = frozenset({"v", "community", "sender", "seq", "ts", "type", "payload", "sig"})
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 32 * 1024
DEFAULT_MAX_CLOCK_SKEW_MS = 30_000
DEFAULT_REPLAY_WINDOW = 1024
MAX_FIELD_CHARS = 1024  # a payload field of type ``str`` (hashes, addresses, proofs)


class RejectCode(StrEnum):
    """Why an envelope was refused; each failure kind has its own code."""

    MALFORMED = "malformed"  # not JSON, not an object, duplicate/missing/extra keys
    FLOAT_NOT_ALLOWED = "float_not_allowed"  # a float anywhere (integers only)
    WRONG_FIELD_TYPE = "wrong_field_type"  # a field of the wrong type or shape
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_TYPE = "unknown_type"
    OTHER_COMMUNITY = "other_community"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_SENDER = "unknown_sender"  # key not bound to a member (or not active then)
    CLOCK_SKEW = "clock_skew"  # timestamp outside the allowed skew
    BAD_SIGNATURE = "bad_signature"
    REPLAY = "replay"  # this sender's sequence number was already accepted
    SEQUENCE_OUT_OF_WINDOW = "sequence_out_of_window"  # too far behind the newest seen


class FieldType(StrEnum):
    """Expected type of a payload field in a ``PayloadSchema``."""

    INT = "int"
    STR = "str"
    BOOL = "bool"
    KEY = "key"  # a 64-hex public key
    LIST = "list"
    OBJECT = "object"


type PayloadSchema = Mapping[str, FieldType]
"""Required payload fields and their types (extra fields are allowed). A ``str`` field
holds at most ``MAX_FIELD_CHARS`` characters."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed message. Build with ``seal``; check incoming ones with ``validate``."""

    version: int
    community: str
    sender: str
    seq: int
    ts_ms: int
    type: str
    payload: Mapping[str, Canonical]
    sig: str
    # Its canonical wire bytes when known (sealed here, or received exactly canonical):
    # sending and hashing it then cost no second encoding.
    wire: bytes = field(default=b"", repr=False, compare=False)

    def signed_body(self) -> bytes:
        """The canonical bytes the signature covers (every field except ``sig``)."""
        return canonical_bytes(
            {
                "v": self.version,
                "community": self.community,
                "sender": self.sender,
                "seq": self.seq,
                "ts": self.ts_ms,
                "type": self.type,
                "payload": self.payload,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data of the whole envelope."""
        return {
            "v": self.version,
            "community": self.community,
            "sender": self.sender,
            "seq": self.seq,
            "ts": self.ts_ms,
            "type": self.type,
            "payload": dict(self.payload),
            "sig": self.sig,
        }

    def to_wire(self) -> bytes:
        """Canonical bytes to send."""
        return self.wire or canonical_bytes(self.to_dict())

    def digest(self) -> bytes:
        """``digest_of(self.to_dict())``, from the wire bytes when known."""
        return digest(self.wire) if self.wire else digest_of(self.to_dict())

    def payload_wire(self) -> bytes | None:
        """The canonical bytes of the payload, cut from the wire bytes when known (the
        first ``"payload":`` follows the community string, which cannot hold a bare
        quote; the last ``,"sender":"`` is the top-level one, after the payload)."""
        if not self.wire:
            return None
        start = self.wire.find(b',"payload":') + len(b',"payload":')
        return self.wire[start : self.wire.rfind(b',"sender":"')]


def seal(
    identity: Identity,
    *,
    community: str,
    seq: int,
    ts_ms: int,
    type: str,  # the protocol's own field name
    payload: Mapping[str, Canonical],
    version: int = PROTOCOL_VERSION,
) -> Envelope:
    """Sign a message. Raises ``CanonicalError`` if the payload is not canonical."""
    unsigned = Envelope(
        version, community, identity.public_key, seq, ts_ms, type, dict(payload), ""
    )
    body = unsigned.signed_body()
    sig = identity.sign_hex(Purpose.ENVELOPE, body)
    # The wire bytes are the body with the signature between "seq" and "ts" (sorted keys;
    # after the top-level "ts" come only "type" and "v", so its last occurrence is it).
    cut = body.rfind(b',"ts":')
    wire = body[:cut] + b',"sig":"' + sig.encode("ascii") + b'"' + body[cut:]
    return Envelope(
        version, community, identity.public_key, seq, ts_ms, type, dict(payload), sig, wire
    )


_SIG_KEY = b',"sig":"'


def _spliced_body(raw: bytes, sig: str) -> tuple[bytes, bool] | None:
    """The signed body of received bytes without encoding them again: the bytes without
    their (last) ``,"sig":"..."`` member, and whether they are exactly canonical (that
    member sits right before ``,"ts":``). Only a hypothesis: it holds if the signature
    verifies over it, because a member signs nothing but canonical bodies, which have no
    top-level ``sig`` (so the member cut was the top-level one, and nothing else differs).
    None when the bytes do not even look like that."""
    cut = raw.rfind(_SIG_KEY)
    end = cut + len(_SIG_KEY) + len(sig)
    if cut <= 0 or raw[end : end + 1] != b'"' or raw[cut + len(_SIG_KEY) : end] != sig.encode():
        return None
    return raw[:cut] + raw[end + 1 :], raw.startswith(b',"ts":', end + 1)


@dataclass(frozen=True, slots=True)
class EnvelopePolicy:
    """What this home accepts."""

    community: str
    known_types: Mapping[str, PayloadSchema]
    versions: frozenset[int] = frozenset({PROTOCOL_VERSION})
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Outcome of ``validate``: ``envelope`` when accepted, else ``error`` and ``detail``."""

    envelope: Envelope | None
    error: RejectCode | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True if the envelope was accepted."""
        return self.error is None


def _reject(code: RejectCode, detail: str) -> ValidationResult:
    return ValidationResult(None, code, detail)


@dataclass(slots=True)
class _SenderWindow:
    highest: int
    seen: int  # bit k set: sequence number ``highest - k`` was accepted (k < window)


class ReplayGuard:
    """Per-sender sliding window of accepted sequence numbers.

    A sequence number is refused as a replay if it was accepted before, and as out of
    window if it is ``window`` or more behind the highest one accepted from that
    sender. Messages within the window may arrive out of order. The guard only
    changes through ``record``, which ``validate`` calls after every other check passed,
    so forged or invalid messages cannot poison it. Together with the clock-skew bound
    it also protects across restarts: restore it with ``from_highest``.

    Memory: one bit per sequence number of the window and sender (8 KiB per sender for a
    window of 65,536), whatever the number of messages; a set of the accepted numbers grew
    to twice the window (about 8 MiB per sender) before it was pruned.
    """

    def __init__(self, window: int = DEFAULT_REPLAY_WINDOW) -> None:
        """Start empty; ``window`` is how far behind the newest a message may arrive."""
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._mask = (1 << window) - 1
        self._senders: dict[str, _SenderWindow] = {}

    @classmethod
    def from_highest(
        cls, highest: Mapping[str, int], window: int = DEFAULT_REPLAY_WINDOW
    ) -> ReplayGuard:
        """Restore: everything up to each sender's highest counts as seen."""
        guard = cls(window)
        for sender, seq in highest.items():
            recent = seq - max(1, seq - window + 1) + 1  # the numbers 1.. in the window
            guard._senders[sender] = _SenderWindow(seq, (1 << max(0, recent)) - 1)
        return guard

    def highest(self) -> dict[str, int]:
        """Highest accepted sequence number per sender (to persist the guard)."""
        return {sender: w.highest for sender, w in self._senders.items()}

    def check(self, sender: str, seq: int) -> RejectCode | None:
        """``None`` if ``seq`` is new for ``sender``, else the reject code."""
        state = self._senders.get(sender)
        if state is None:
            return None
        if seq <= state.highest - self.window:
            return RejectCode.SEQUENCE_OUT_OF_WINDOW
        if seq <= state.highest and state.seen >> (state.highest - seq) & 1:
            return RejectCode.REPLAY
        return None

    def record(self, sender: str, seq: int) -> None:
        """Remember an accepted sequence number (one that ``check`` let through)."""
        state = self._senders.get(sender)
        if state is None:
            self._senders[sender] = _SenderWindow(seq, 1)
        elif seq > state.highest:
            ahead = seq - state.highest
            state.seen = ((state.seen << ahead) | 1) & self._mask if ahead < self.window else 1
            state.highest = seq
        elif seq > state.highest - self.window:
            state.seen |= 1 << (state.highest - seq)


def _check_fields(data: Mapping[str, Any]) -> str | None:
    """Name of the first envelope field with a wrong type, else ``None``."""
    checks: tuple[tuple[str, bool], ...] = (
        ("community", type(data["community"]) is str and data["community"] != ""),
        ("sender", is_key_hex(data["sender"])),
        ("seq", type(data["seq"]) is int and data["seq"] >= 1),
        ("ts", type(data["ts"]) is int and data["ts"] >= 0),
        ("type", type(data["type"]) is str and data["type"] != ""),
        ("payload", type(data["payload"]) is dict),
        ("sig", is_sig_hex(data["sig"])),
    )
    for name, good in checks:
        if not good:
            return name
    return None


_FIELD_CHECKS: Mapping[FieldType, Any] = MappingProxyType(
    {
        FieldType.INT: lambda v: type(v) is int,
        FieldType.STR: lambda v: type(v) is str and len(v) <= MAX_FIELD_CHARS,
        FieldType.BOOL: lambda v: type(v) is bool,
        FieldType.KEY: is_key_hex,
        FieldType.LIST: lambda v: type(v) is list,
        FieldType.OBJECT: lambda v: type(v) is dict,
    }
)


def _check_payload(payload: Mapping[str, Any], schema: PayloadSchema) -> str | None:
    for name, kind in schema.items():
        if name not in payload:
            return f"payload field {name!r} missing"
        if not _FIELD_CHECKS[kind](payload[name]):
            return f"payload field {name!r} is not {kind.value}"
    return None


def validate(
    message: bytes | Mapping[str, Any],
    *,
    policy: EnvelopePolicy,
    keyring: KeyRing,
    now_ms: int,
    guard: ReplayGuard | None = None,
    stranger: bool = False,
) -> ValidationResult:
    """Check an incoming message; on success record its sequence number in ``guard``.

    ``stranger``: the sender's key is not (yet) a member's (a join): nothing is kept about
    it, neither a replay-guard entry nor its loaded key, so strangers cost no memory.

    Checks run cheapest first: size, decoding, structure, field types, version,
    type, community, payload size and schema, sender, clock, replay, signature.
    Any input gives a result with a reject code; an exception is a bug of this module
    (there is no catch-all that would hide it as ``malformed``).
    """
    data: Any = message
    raw: bytes | None = None
    # The canonical form of a decoded payload is never longer than the bytes it came in
    # (it only drops whitespace and shortens escapes): no need to encode it to bound it.
    payload_bounded = False
    try:
        if isinstance(message, bytes | bytearray | memoryview):
            raw = bytes(message)
            if len(raw) > policy.max_message_bytes:
                return _reject(RejectCode.PAYLOAD_TOO_LARGE, f"message is {len(raw)} bytes")
            data = decode(raw)
            payload_bounded = len(raw) <= policy.max_payload_bytes
        else:
            canonical_bytes(data)
    except FloatNotAllowedError as err:
        return _reject(RejectCode.FLOAT_NOT_ALLOWED, str(err))
    except CanonicalError as err:
        return _reject(RejectCode.MALFORMED, str(err))
    if not isinstance(data, Mapping):
        return _reject(RejectCode.MALFORMED, "message is not an object")
    keys = set(data)
    if keys != ENVELOPE_KEYS:
        missing = sorted(ENVELOPE_KEYS - keys)
        extra = sorted(keys - ENVELOPE_KEYS)
        return _reject(RejectCode.MALFORMED, f"missing {missing}, unexpected {extra}")
    if type(data["v"]) is not int:
        return _reject(RejectCode.WRONG_FIELD_TYPE, "field 'v' is not an integer")
    if data["v"] not in policy.versions:
        return _reject(RejectCode.UNKNOWN_VERSION, f"version {data['v']}")
    bad = _check_fields(data)
    if bad is not None:
        return _reject(RejectCode.WRONG_FIELD_TYPE, f"field {bad!r} has the wrong type")
    schema = policy.known_types.get(data["type"])
    if schema is None:
        return _reject(RejectCode.UNKNOWN_TYPE, f"type {data['type']!r}")
    if data["community"] != policy.community:
        return _reject(RejectCode.OTHER_COMMUNITY, "community id does not match")
    if not payload_bounded:
        payload_size = len(canonical_bytes(data["payload"]))
        if payload_size > policy.max_payload_bytes:
            return _reject(RejectCode.PAYLOAD_TOO_LARGE, f"payload is {payload_size} bytes")
    problem = _check_payload(data["payload"], schema)
    if problem is not None:
        return _reject(RejectCode.WRONG_FIELD_TYPE, problem)
    ts_ms: int = data["ts"]
    if keyring.resolve(data["sender"], ts_ms) is None:
        return _reject(RejectCode.UNKNOWN_SENDER, "sender key is not a member key at that time")
    if abs(ts_ms - now_ms) > policy.max_clock_skew_ms:
        return _reject(RejectCode.CLOCK_SKEW, f"timestamp off by {ts_ms - now_ms} ms")
    sender: str = data["sender"]
    seq: int = data["seq"]
    sig: str = data["sig"]
    # Replays are refused before the (costlier) signature check, but a sequence number
    # is only recorded once the signature verified: forgeries cannot poison the guard.
    if stranger:
        guard = None
    if guard is not None:
        code = guard.check(sender, seq)
        if code is not None:
            return _reject(code, f"sequence {seq}")
    # The body cut from the received bytes first (no second encoding); if the signature
    # does not verify over it, over the canonical encoding of what was decoded.
    spliced = _spliced_body(raw, sig) if raw is not None else None
    wire = b""
    if spliced is not None and verify_hex(
        sender, Purpose.ENVELOPE, spliced[0], sig, cache=not stranger
    ):
        wire = raw if raw is not None and spliced[1] else b""
    else:
        unsigned = Envelope(
            data["v"], data["community"], sender, seq, ts_ms, data["type"], data["payload"], ""
        )
        body = unsigned.signed_body()
        if (spliced is not None and body == spliced[0]) or not verify_hex(
            sender, Purpose.ENVELOPE, body, sig, cache=not stranger
        ):
            return _reject(RejectCode.BAD_SIGNATURE, "signature does not verify")
    if guard is not None:
        guard.record(sender, seq)
    envelope = Envelope(
        data["v"], data["community"], sender, seq, ts_ms, data["type"], data["payload"], sig, wire
    )
    return ValidationResult(envelope)
