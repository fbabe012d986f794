"""A home whose timers fire late (a loaded CPU) still takes every step of the slot it
owes, in order: it freezes its book and attests even when its first tick after gate
closure comes after the attestation time, and a tick that is past several timers at once
takes one step at a time, handling the messages that waited in between."""

from __future__ import annotations

from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import Peer, SlotCleared, SlotVoid
from custom_components.peer_energy.core.trust.canonical import decode

from .helpers import build, next_slot, outcome, submit_all

LATE = ("p1", "p2", "p3")  # a majority of five: without them no quorum


def _bids_in(n: int) -> tuple[MemNet, list[Peer], int, CommunityRules, int]:
    """``n`` homes that have all bid for the next slot: the net, the homes, the slot, the
    rules and the slot's gate closure (ms)."""
    net, peers = build(n)
    slot = next_slot(net, peers)
    r = peers[0].rules
    submit_all(net, peers, slot)
    return net, peers, slot, r, r.gate_closure_ms(slot)


def _voids(net: MemNet, address: str, slot: int) -> int:
    return sum(1 for _, e in net.events[address] if isinstance(e, SlotVoid) and e.slot == slot)


def _cleared(net: MemNet, address: str, slot: int) -> list[SlotCleared]:
    return [
        e for _, e in net.events[address] if isinstance(e, SlotCleared) and e.final.slot == slot
    ]


def test_a_majority_whose_first_tick_comes_after_the_attestation_time_still_attests() -> None:
    # Online all along, holding every bid, but their CPU is busy from before gate closure
    # until past the attestation time: they owe the freeze and their attestation.
    net, peers, slot, r, g = _bids_in(5)
    net.run_until(g - 10)
    late_by = r.sync_window_ms + r.attest_window_ms // 4  # before the fallback point
    for address in LATE:
        net.set_busy(address, g + late_by)
    net.run_until(g + r.sync_window_ms + r.attest_window_ms + 2_000)
    results = {p.address: outcome(net, p.address, slot) for p in peers}
    assert "void" not in results.values(), results
    assert None not in results.values(), results
    assert len(set(results.values())) == 1
    for p in peers:
        (cleared,) = _cleared(net, p.address, slot)
        assert not cleared.final.late  # before the deadline
        assert _voids(net, p.address, slot) == 0
    # the late homes attested (a quorum needs one of them at least)
    assert {p.member_id for p in peers[1:4]} <= set(peers[0]._slots[slot].attests)


def test_one_late_home_attests_and_holds_the_result() -> None:
    net, peers, slot, r, g = _bids_in(3)
    net.run_until(g - 10)
    net.set_busy("p1", g + r.sync_window_ms + 100)
    sent: list[str] = []

    def tap(sender: str, _to: str, data: bytes) -> None:
        if sender == "p1":
            sent.append(str(decode(data)["type"]))

    net.tap = tap
    net.run_until(g + r.sync_window_ms + r.attest_window_ms + 2_000)
    assert "attest" in sent  # the freeze it owed
    assert peers[1].member_id in peers[0]._slots[slot].attests
    assert outcome(net, "p1", slot) == outcome(net, "p0", slot) != "void"
    (cleared,) = _cleared(net, "p1", slot)
    assert not cleared.final.late
    assert _voids(net, "p1", slot) == 0


def test_a_tick_past_the_deadline_reads_the_waiting_attestations_before_closing() -> None:
    # They ran the digest rounds on time, then their CPU was taken until after the
    # deadline: their own attestation and the others' (waiting in their inbox since before
    # the deadline) make the quorum; a home that closed the slot in the same step as it
    # froze would call it void first and then final.
    net, peers, slot, r, g = _bids_in(5)
    net.run_until(g + r.sync_window_ms - 100)  # every digest round done
    deadline = g + r.sync_window_ms + r.attest_window_ms
    for address in LATE:
        net.set_busy(address, deadline + 100)
    net.run_until(deadline + 2_000)
    results = {p.address: outcome(net, p.address, slot) for p in peers}
    assert len(set(results.values())) == 1, results
    assert "void" not in results.values()
    for address in LATE:
        (cleared,) = _cleared(net, address, slot)
        assert cleared.final.late
        assert _voids(net, address, slot) == 0  # never announced void, then final
    # the homes on time waited until the deadline, then learnt the result late
    for address in ("p0", "p4"):
        assert _voids(net, address, slot) == 1
        assert _cleared(net, address, slot)[0].final.late
