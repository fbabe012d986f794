"""Offline and slow peers cannot hold the market; they catch up when back (property 4)."""

from __future__ import annotations

from custom_components.peer_energy.core.federation.protocol import (
    PeerReachable,
    PeerUnreachable,
    SlotCleared,
    SlotVoid,
)

from .helpers import build, next_slot, outcome, run_slot, submit_all


def _cleared(net, address: str, slot: int) -> list[SlotCleared]:
    return [
        e for _, e in net.events[address] if isinstance(e, SlotCleared) and e.final.slot == slot
    ]


def test_offline_peer_catches_up_with_verified_results() -> None:
    net, peers = build(6)
    net.go_offline("p4")
    slots = []
    for _ in range(2):
        slot = next_slot(net, peers)
        slots.append(slot)
        submit_all(net, peers, slot)
        run_slot(net, peers, slot)
        # the others are not held up by the missing peer
        assert len({outcome(net, p.address, slot) for p in peers if p.address != "p4"}) == 1
        assert outcome(net, "p4", slot) is None
    net.go_online("p4")
    net.run_until(net.now + 2_000)
    for slot in slots:
        cleared = _cleared(net, "p4", slot)
        assert len(cleared) == 1
        assert cleared[0].final.late
        assert cleared[0].final.result_hash == peers[0].finals[slot].result_hash
        assert cleared[0].final.result == peers[0].finals[slot].result
    # and it takes part again in the next slot, with the same fairness state
    assert peers[4].fairness == peers[0].fairness
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    assert len({outcome(net, p.address, slot) for p in peers}) == 1
    assert not _cleared(net, "p4", slot)[0].final.late


def test_isolated_minority_adopts_the_quorum_result() -> None:
    net, peers = build(6)
    slot = next_slot(net, peers)
    r = peers[0].rules
    g = r.gate_closure_ms(slot)
    net.partition([["p0", "p1", "p2", "p3", "p4"], ["p5"]])
    submit_all(net, peers, slot)
    # p5 is cut off until its book is frozen with only its own bid, then rejoins
    net.run_until(g + r.sync_window_ms + 1)
    net.heal()
    run_slot(net, peers, slot)
    outcomes = {outcome(net, p.address, slot) for p in peers}
    assert len(outcomes) == 1
    final = peers[5].finals[slot]
    assert not final.late
    assert len(final.orders) == 5  # its bid never reached the others before their freeze
    assert peers[5].member_id not in final.attesters


def test_partitioned_minority_is_void_then_late_final() -> None:
    net, peers = build(7)
    slot = next_slot(net, peers)
    net.partition([["p0", "p1", "p2", "p3", "p4"], ["p5", "p6"]])
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    assert outcome(net, "p5", slot) == "void"
    assert peers[5].is_void(slot)
    majority = outcome(net, "p0", slot)
    assert isinstance(majority, tuple)
    net.heal()
    slot2 = next_slot(net, peers)
    submit_all(net, peers, slot2)
    run_slot(net, peers, slot2)
    late = _cleared(net, "p5", slot)
    assert len(late) == 1
    assert late[0].final.late
    assert (late[0].final.book_hash, late[0].final.result_hash) == majority
    assert not peers[5].is_void(slot)
    assert len({outcome(net, p.address, slot2) for p in peers}) == 1


def test_no_majority_means_void_everywhere() -> None:
    net, peers = build(4)
    slot = next_slot(net, peers)
    net.partition([["p0", "p1"], ["p2", "p3"]])
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    assert {outcome(net, p.address, slot) for p in peers} == {"void"}
    voids = [e for _, e in net.events["p0"] if isinstance(e, SlotVoid)]
    assert voids[-1].reason == "no_quorum"
    assert slot not in peers[0].finals


def test_silent_peer_is_reported_unreachable_and_back() -> None:
    net, peers = build(3)
    net.go_offline("p2")
    for _ in range(5):
        slot = next_slot(net, peers)
        submit_all(net, peers, slot)
        run_slot(net, peers, slot)
    gone = [e for _, e in net.events["p0"] if isinstance(e, PeerUnreachable)]
    assert [e.member for e in gone] == [peers[2].member_id]
    net.go_online("p2")
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    back = [e for _, e in net.events["p0"] if isinstance(e, PeerReachable)]
    assert [e.member for e in back] == [peers[2].member_id]


def test_bids_delayed_past_gate_closure() -> None:
    net, peers = build(5)
    r = peers[0].rules
    for latency, included in ((1_000, True), (5_000, False)):
        slot = next_slot(net, peers)
        g = r.gate_closure_ms(slot)
        for other in ("p0", "p1", "p2", "p3"):
            net.set_link("p4", other, latency_ms=latency)
        submit_all(net, peers, slot, skip=frozenset({4}))
        net.run_until(g - 500)
        net.apply("p4", peers[4].submit_orders(slot, [], net.now))  # an empty bid, late on the wire
        run_slot(net, peers, slot)
        net.run_until(net.now + 10_000)
        outcomes = {outcome(net, p.address, slot) for p in peers}
        assert len(outcomes) == 1
        final = peers[0].finals[slot]
        # the slow peer never holds the market: the others are final in time either way
        assert not final.late
        book = peers[0]._slots[slot].books[final.book_hash]
        assert (peers[4].member_id in {b.member for b in book}) is included
