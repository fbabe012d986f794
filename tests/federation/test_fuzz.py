"""Property 3 by fuzzing: any change to a signed message is refused, garbage is refused with
a code, and generated messages (``fuzzer.py``) crash nothing and forge nothing."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from custom_components.peer_energy.core.federation.protocol import Broadcast, Rejected
from custom_components.peer_energy.core.trust.canonical import CanonicalError, decode

from .fuzzer import run
from .helpers import build, next_slot, orders_for

NET, PEERS = build(3)
SLOT = next_slot(NET, PEERS)
_OUT = PEERS[1].submit_orders(SLOT, orders_for(PEERS[1], 1, SLOT), NET.now)
assert isinstance(_OUT[0], Broadcast)
WIRE = _OUT[0].data


def _same(data: bytes) -> bool:
    try:
        return decode(data) == decode(WIRE)
    except CanonicalError:
        return False


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.integers(0, len(WIRE) - 1), st.integers(1, 255))
def test_any_flipped_byte_is_refused(position: int, flip: int) -> None:
    data = bytearray(WIRE)
    data[position] ^= flip
    out = PEERS[0].receive(bytes(data), "fuzz", NET.now)
    assert _same(bytes(data)) or (len(out) == 1 and isinstance(out[0], Rejected))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.binary(max_size=300) | st.just(WIRE[:-1]) | st.just(WIRE + b"x"))
def test_garbage_never_raises(data: bytes) -> None:
    out = PEERS[2].receive(data, "fuzz", NET.now)
    assert len(out) == 1
    assert isinstance(out[0], Rejected)


def test_generated_messages_crash_nothing_and_forge_nothing() -> None:
    """5,000 structure-aware messages (``bench/fuzz_protocol.py`` runs 100,000 and more)."""
    report = run(5_000, seed=7, per_round=1_000)
    assert report.crashes == 0, "\n".join(report.crash_traces)
    assert report.forgeries == []
    assert report.stranger_guard_entries == 0
    # The generator reaches past the envelope into every part of the protocol.
    assert report.rounds >= 5  # one of them against a home still joining
    assert {"bid", "attest", "digest", "slot_data", "delivery", "trade_sig"} <= set(
        report.accepted_types
    )
    assert {"bad_bid", "late_bid", "bad_trade", "bad_delivery", "bad_invitation"} <= set(
        report.codes
    )
