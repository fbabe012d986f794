"""Each slot moves through explicit phases with the clock, and a message is checked before
it changes anything."""

from __future__ import annotations

from itertools import pairwise

import pytest

from custom_components.peer_energy.core.federation.protocol import (
    Rejected,
    SlotCleared,
    SlotPhase,
)
from custom_components.peer_energy.core.federation.protocol.slots import SlotState
from custom_components.peer_energy.core.trust.envelope import seal

from .helpers import build, next_slot, outcome, run_slot, submit_all

_ORDER = [SlotPhase.OPEN, SlotPhase.SYNC, SlotPhase.FROZEN, SlotPhase.FALLBACK, SlotPhase.CLOSED]


def test_phases_advance_one_step_at_a_time() -> None:
    state = SlotState(60)
    for earlier, later in pairwise(_ORDER):
        assert state.phase is earlier
        for wrong in _ORDER:
            if wrong is not later:
                with pytest.raises(RuntimeError, match="no transition"):
                    state.advance(wrong)
        state.advance(later)
    assert state.phase is SlotPhase.CLOSED
    assert state.void  # closed without a final result
    with pytest.raises(RuntimeError):
        state.advance(SlotPhase.OPEN)


def test_a_slot_follows_the_clock_through_its_phases() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    r = peers[0].rules
    g = r.gate_closure_ms(slot)
    a = g + r.sync_window_ms
    submit_all(net, peers, slot)
    assert peers[0]._slots[slot].phase is SlotPhase.OPEN
    for until, phase in [
        (g + 1, SlotPhase.SYNC),
        (a + 1, SlotPhase.FROZEN),
        (a + r.attest_window_ms // 2 + 1, SlotPhase.FALLBACK),
        (a + r.attest_window_ms + 1, SlotPhase.CLOSED),
    ]:
        net.run_until(until)
        assert {p._slots[slot].phase for p in peers} == {phase}
    assert all(slot in p.finals and not p.is_void(slot) for p in peers)


def test_slot_data_with_one_bad_attestation_changes_nothing() -> None:
    net, peers = build(4)
    slot = next_slot(net, peers)
    net.partition([["p0", "p1", "p2"], ["p3"]])
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    assert outcome(net, "p3", slot) == "void"
    state = peers[3]._slots[slot]
    books = dict(state.books)
    attests = {m: dict(per) for m, per in state.attests.items()}
    data = peers[0].slot_data(slot)
    assert data is not None
    forged = dict(data["attests"][-1]) | {"sig": "0" * 128}

    def slot_data(payload: dict[str, object], seq: int) -> bytes:
        env = seal(
            peers[2].identity,
            community=peers[0].community_id,
            seq=seq,
            ts_ms=net.now,
            type="slot_data",
            payload=payload,
        )
        return env.to_wire()

    bad = slot_data(data | {"attests": [*data["attests"][:-1], forged]}, 10**13)
    out = peers[3].receive(bad, "p2", net.now)
    assert [o.code for o in out if isinstance(o, Rejected)] == ["bad_slot_data"]
    assert state.books == books  # the book was not kept, no attestation was counted
    assert {m: dict(per) for m, per in state.attests.items()} == attests
    assert slot not in peers[3].finals
    # the intact data finalises the slot (late)
    out = peers[3].receive(slot_data(data, 10**13 + 1), "p2", net.now)
    cleared = [o for o in out if isinstance(o, SlotCleared)]
    assert len(cleared) == 1
    assert cleared[0].final.late
    assert cleared[0].final.result_hash == peers[0].finals[slot].result_hash
