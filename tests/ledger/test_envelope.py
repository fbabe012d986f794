"""The signed envelope: sealing, validation and one reject code per failure."""

from __future__ import annotations

from collections.abc import Callable
import json
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.peer_energy.core.trust.canonical import canonical_bytes
from custom_components.peer_energy.core.trust.envelope import (
    Envelope,
    EnvelopePolicy,
    FieldType,
    RejectCode,
    ReplayGuard,
    seal,
    validate,
)
from custom_components.peer_energy.core.trust.identity import KeyRing, Purpose

from .conftest import make_identity

ALICE = make_identity("alice")
MALLORY = make_identity("mallory")
COMMUNITY = "street-7"
NOW = 1_800_000_000_000
POLICY = EnvelopePolicy(
    community=COMMUNITY,
    known_types={
        "order": {"slot": FieldType.INT, "wh": FieldType.INT, "clean": FieldType.BOOL},
        "hello": {},
        "note": {
            "who": FieldType.KEY,
            "text": FieldType.STR,
            "xs": FieldType.LIST,
            "o": FieldType.OBJECT,
        },
    },
    max_payload_bytes=200,
    max_message_bytes=2000,
)
RING = KeyRing().with_member(ALICE.public_key)


def order(seq: int = 1, ts: int = NOW, **payload: Any) -> Envelope:
    body = {"slot": 7, "wh": 500, "clean": True} | payload
    return seal(ALICE, community=COMMUNITY, seq=seq, ts_ms=ts, type="order", payload=body)


def check(message: Any, guard: ReplayGuard | None = None) -> RejectCode | None:
    return validate(message, policy=POLICY, keyring=RING, now_ms=NOW, guard=guard).error


def wire_with(change: Callable[[dict[str, Any]], None]) -> bytes:
    data = order().to_dict()
    change(data)
    return json.dumps(data).encode()


def resigned(**fields: Any) -> dict[str, Any]:
    """An envelope with changed fields, correctly re-signed by ALICE."""
    data = order().to_dict() | fields
    unsigned = {k: v for k, v in data.items() if k != "sig"}
    data["sig"] = ALICE.sign_hex(Purpose.ENVELOPE, canonical_bytes(unsigned))
    return data


def test_valid_envelope_round_trip() -> None:
    env = order()
    result = validate(env.to_wire(), policy=POLICY, keyring=RING, now_ms=NOW, guard=ReplayGuard())
    assert result.ok
    assert result.envelope == env
    assert validate(env.to_dict(), policy=POLICY, keyring=RING, now_ms=NOW).ok


def test_pretty_printed_json_is_accepted() -> None:
    assert check(json.dumps(order().to_dict(), indent=2).encode()) is None


def flip_sig(d: dict[str, Any]) -> None:
    d["sig"] = ("0" if d["sig"][0] != "0" else "1") + d["sig"][1:]


CASES: list[tuple[RejectCode, Callable[[], Any]]] = [
    (RejectCode.MALFORMED, lambda: b"not json"),
    (RejectCode.MALFORMED, lambda: b"[1,2]"),
    (RejectCode.MALFORMED, lambda: wire_with(lambda d: d.pop("ts"))),
    (RejectCode.MALFORMED, lambda: wire_with(lambda d: d.update(extra=1))),
    (RejectCode.MALFORMED, lambda: b'{"v":1,"v":1}'),
    (RejectCode.MALFORMED, lambda: 12345),
    (RejectCode.MALFORMED, lambda: {"v": object()}),
    (RejectCode.FLOAT_NOT_ALLOWED, lambda: wire_with(lambda d: d["payload"].update(wh=500.0))),
    (RejectCode.FLOAT_NOT_ALLOWED, lambda: order().to_dict() | {"ts": float(NOW)}),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d.update(v="1"))),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d.update(seq="1"))),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d.update(seq=0))),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d.update(seq=True))),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d.update(sender="ALICE"))),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d.update(payload=[1]))),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d.update(sig="00"))),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d["payload"].update(wh="500"))),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d["payload"].update(clean=1))),
    (RejectCode.WRONG_FIELD_TYPE, lambda: wire_with(lambda d: d["payload"].pop("slot"))),
    (RejectCode.UNKNOWN_VERSION, lambda: wire_with(lambda d: d.update(v=2))),
    (RejectCode.UNKNOWN_TYPE, lambda: wire_with(lambda d: d.update(type="mint_money"))),
    (RejectCode.OTHER_COMMUNITY, lambda: wire_with(lambda d: d.update(community="elsewhere"))),
    (RejectCode.PAYLOAD_TOO_LARGE, lambda: order(pad="x" * 300).to_wire()),
    (RejectCode.PAYLOAD_TOO_LARGE, lambda: b" " * 2001),
    (
        RejectCode.UNKNOWN_SENDER,
        lambda: seal(
            MALLORY, community=COMMUNITY, seq=1, ts_ms=NOW, type="hello", payload={}
        ).to_wire(),
    ),
    (RejectCode.CLOCK_SKEW, lambda: order(ts=NOW + 30_001).to_wire()),
    (RejectCode.CLOCK_SKEW, lambda: order(ts=NOW - 30_001).to_wire()),
    (RejectCode.BAD_SIGNATURE, lambda: wire_with(flip_sig)),
    (RejectCode.BAD_SIGNATURE, lambda: wire_with(lambda d: d["payload"].update(wh=501))),
    (RejectCode.BAD_SIGNATURE, lambda: wire_with(lambda d: d.update(seq=2))),
]


@pytest.mark.parametrize(
    ("code", "make"), CASES, ids=[f"{c.value}-{i}" for i, (c, _) in enumerate(CASES)]
)
def test_each_rejection_code(code: RejectCode, make: Callable[[], Any]) -> None:
    result = validate(make(), policy=POLICY, keyring=RING, now_ms=NOW, guard=ReplayGuard())
    assert not result.ok
    assert result.error is code
    assert result.envelope is None
    assert result.detail


def test_every_code_is_covered_by_the_cases() -> None:
    covered = {code for code, _ in CASES} | {RejectCode.REPLAY, RejectCode.SEQUENCE_OUT_OF_WINDOW}
    assert covered == set(RejectCode)


def test_replay_and_window() -> None:
    guard = ReplayGuard(window=4)
    assert check(order(seq=5).to_wire(), guard) is None
    assert check(order(seq=5).to_wire(), guard) is RejectCode.REPLAY
    assert check(order(seq=3).to_wire(), guard) is None  # late but inside the window
    assert check(order(seq=3).to_wire(), guard) is RejectCode.REPLAY
    assert check(order(seq=1).to_wire(), guard) is RejectCode.SEQUENCE_OUT_OF_WINDOW
    assert check(order(seq=2).to_wire(), guard) is None
    assert guard.highest() == {ALICE.public_key: 5}


def test_rejected_messages_do_not_poison_the_guard() -> None:
    guard = ReplayGuard()
    forged = wire_with(lambda d: d.update(seq=9, payload={"slot": 1, "wh": 1, "clean": False}))
    assert check(forged, guard) is RejectCode.BAD_SIGNATURE
    assert check(resigned(seq=9), guard) is None


def test_guard_restored_from_highest_refuses_old_messages() -> None:
    guard = ReplayGuard.from_highest({ALICE.public_key: 10}, window=4)
    assert check(order(seq=10).to_wire(), guard) is RejectCode.REPLAY
    assert check(order(seq=6).to_wire(), guard) is RejectCode.SEQUENCE_OUT_OF_WINDOW
    assert check(order(seq=11).to_wire(), guard) is None


def test_guard_prunes_memory() -> None:
    guard = ReplayGuard(window=3)
    for seq in range(1, 50):
        guard.record("k", seq)
    assert guard.check("k", 49) is RejectCode.REPLAY
    assert guard.check("k", 40) is RejectCode.SEQUENCE_OUT_OF_WINDOW
    assert guard.check("k", 50) is None
    with pytest.raises(ValueError, match="window"):
        ReplayGuard(window=0)


def test_rotated_key_is_unknown_after_rotation() -> None:
    from custom_components.peer_energy.core.trust.identity import rotate_key

    new = make_identity("alice-2")
    ring = RING.with_rotation(rotate_key(ALICE.public_key, ALICE, new, NOW - 1000))
    old_msg = order().to_wire()
    assert (
        validate(old_msg, policy=POLICY, keyring=ring, now_ms=NOW).error
        is RejectCode.UNKNOWN_SENDER
    )
    new_msg = seal(new, community=COMMUNITY, seq=1, ts_ms=NOW, type="hello", payload={})
    assert validate(new_msg.to_wire(), policy=POLICY, keyring=ring, now_ms=NOW).ok


def test_payload_schema_field_kinds() -> None:
    env = seal(
        ALICE,
        community=COMMUNITY,
        seq=1,
        ts_ms=NOW,
        type="note",
        payload={"who": ALICE.public_key, "text": "hi", "xs": [1], "o": {}},
    )
    assert check(env.to_wire()) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    result = validate(raw, policy=POLICY, keyring=RING, now_ms=NOW, guard=ReplayGuard())
    assert result.error is not None


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=len(order().to_wire()) - 1), st.integers(1, 255))
def test_any_byte_flip_is_rejected(position: int, delta: int) -> None:
    raw = bytearray(order().to_wire())
    raw[position] = (raw[position] + delta) % 256
    assert check(bytes(raw)) is not None


def test_a_message_exactly_at_the_clock_skew_bound_is_accepted() -> None:
    assert check(order(ts=NOW + 30_000).to_wire()) is None
    assert check(order(ts=NOW - 30_000, seq=2).to_wire()) is None
    assert check(order(ts=NOW + 30_001, seq=3).to_wire()) is RejectCode.CLOCK_SKEW


def test_string_fields_have_a_maximum_length() -> None:
    def note(text: str) -> bytes:
        payload = {"who": ALICE.public_key, "text": text, "xs": [], "o": {}}
        return seal(
            ALICE, community=COMMUNITY, seq=1, ts_ms=NOW, type="note", payload=payload
        ).to_wire()

    wide = EnvelopePolicy(
        community=COMMUNITY, known_types=POLICY.known_types, max_payload_bytes=10_000
    )
    ok = validate(note("x" * 1024), policy=wide, keyring=RING, now_ms=NOW)
    assert ok.error is None
    long = validate(note("x" * 1025), policy=wide, keyring=RING, now_ms=NOW)
    assert long.error is RejectCode.WRONG_FIELD_TYPE


def test_a_stranger_leaves_nothing_in_the_guard() -> None:
    guard = ReplayGuard()
    message = order().to_wire()
    result = validate(message, policy=POLICY, keyring=RING, now_ms=NOW, guard=guard, stranger=True)
    assert result.error is None
    assert guard.highest() == {}
    # (and the same message from a member is remembered)
    validate(message, policy=POLICY, keyring=RING, now_ms=NOW, guard=guard)
    assert guard.highest() == {ALICE.public_key: 1}


def _note(text: str, nested: dict[str, Any]) -> Envelope:
    payload = {"who": ALICE.public_key, "text": text, "xs": [1], "o": nested}
    return seal(ALICE, community=COMMUNITY, seq=3, ts_ms=NOW, type="note", payload=payload)


def test_received_bytes_are_not_encoded_again() -> None:
    """The signature is checked over the received bytes without their ``sig`` member; when
    they are exactly canonical the envelope keeps them, and its digest and record id come
    from them: the same values as encoding what was decoded, including a payload holding a
    nested "sig" and "sender" (the top-level ones are found) and non-ASCII text."""
    from custom_components.peer_energy.core.federation.protocol.wire import record_id
    from custom_components.peer_energy.core.trust.canonical import digest_of

    sent = _note('Zoë\'s "sig":', {"sig": "x", "sender": "y", "z": {"sig": "w"}})
    assert sent.wire == canonical_bytes(sent.to_dict())  # sealed with its wire bytes
    got = validate(sent.to_wire(), policy=POLICY, keyring=RING, now_ms=NOW).envelope
    assert got is not None
    assert got.wire == sent.wire
    assert got.digest() == digest_of(sent.to_dict())
    slow = Envelope(*[getattr(sent, f) for f in Envelope.__slots__ if f != "wire"])
    assert not slow.wire
    assert record_id("m", got) == record_id("m", slow)
    assert got.payload_wire() == canonical_bytes(sent.payload)


def test_bytes_that_are_not_canonical_still_verify_without_their_bytes_kept() -> None:
    sent = _note("text", {})
    data = sent.to_dict()
    spaced = json.dumps(data, indent=1).encode()  # whitespace: the cut body does not verify
    moved = json.dumps({"sig": data.pop("sig"), **data}, separators=(",", ":")).encode()
    escaped = sent.to_wire().replace(b'"text"', b'"t\\u0065xt"')
    for raw in (spaced, moved, escaped):
        got = validate(raw, policy=POLICY, keyring=RING, now_ms=NOW).envelope
        assert got is not None
        assert got.wire == b""  # not canonical: hashed from its decoded form
        assert got.digest() == sent.digest()


def test_a_forged_signature_fails_on_the_cut_body_and_the_encoded_one() -> None:
    sent = _note("text", {})
    forged = sent.to_wire().replace(
        sent.sig.encode(), MALLORY.sign_hex(Purpose.ENVELOPE, b"x").encode()
    )
    assert check(forged) is RejectCode.BAD_SIGNATURE
    # a second "sig" member inside the payload, moved: still refused
    other = sent.to_wire().replace(b'"o":{}', b'"o":{"sig":"' + sent.sig.encode() + b'"}')
    roomy = EnvelopePolicy(
        community=COMMUNITY, known_types=POLICY.known_types, max_payload_bytes=2000
    )
    result = validate(other, policy=roomy, keyring=RING, now_ms=NOW)
    assert result.error is RejectCode.BAD_SIGNATURE
