"""A Home Assistant restart mid-slot: the peer is rebuilt from its snapshot and catches up."""

from __future__ import annotations

import pytest

from custom_components.peer_energy.core.federation.protocol import Peer, SlotCleared

from .helpers import build, make_identity, next_slot, outcome, run_slot, secret, submit_all


def _restart(net, peers: list[Peer], index: int) -> Peer:
    old = peers[index]
    data = old.snapshot()
    restored = Peer.restore(make_identity(f"p{index}"), data, net.now)
    net.peers[old.address] = restored
    net.go_online(old.address)
    peers[index] = restored
    return restored


def test_restart_mid_slot_catches_up_and_keeps_state() -> None:
    net, peers = build(5)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    # restart p2 in the middle of the next slot's sync window
    slot2 = next_slot(net, peers)
    submit_all(net, peers, slot2)
    r = peers[0].rules
    net.run_until(r.gate_closure_ms(slot2) + r.sync_window_ms // 2)
    net.go_offline("p2")
    net.run_until(net.now + 1_500)
    restored = _restart(net, peers, 2)
    assert restored.joined
    assert restored.roster() == peers[0].roster()
    assert restored.fairness == peers[0].fairness
    run_slot(net, peers, slot2)
    net.run_until(net.now + 5_000)
    late = [e for _, e in net.events["p2"] if isinstance(e, SlotCleared) and e.final.slot == slot2]
    assert late
    assert late[-1].final.result_hash == peers[0].finals[slot2].result_hash
    # it trades normally in the next slot
    slot3 = next_slot(net, peers)
    submit_all(net, peers, slot3)
    run_slot(net, peers, slot3)
    assert len({outcome(net, p.address, slot3) for p in peers}) == 1
    assert restored.fairness == peers[0].fairness


def test_pending_invitation_survives_a_restart() -> None:
    net, peers = build(2)
    inv = peers[0].invite(secret("late"), net.now)
    founder = _restart(net, peers, 0)
    assert founder.membership.admins == (founder.member_id,)
    joiner, outs = Peer.joining(make_identity("late"), inv.encode(), address="late", now_ms=net.now)
    net.add(joiner)
    net.apply("late", outs)
    net.run_until(net.now + 100)
    assert joiner.joined
    assert len(peers[1].roster()) == 3
    # a joiner restarted before its welcome keeps waiting for it
    inv2 = founder.invite(secret("slow"), net.now)
    slow, outs = Peer.joining(make_identity("slow"), inv2, address="slow", now_ms=net.now)
    again = Peer.restore(make_identity("slow"), slow.snapshot(), net.now)
    assert not again.joined
    assert again.community_id == founder.community_id
    net.add(again)
    net.apply("slow", outs)
    net.run_until(net.now + 100)
    assert again.joined


def test_damaged_snapshots_are_refused() -> None:
    net, peers = build(2)
    data = peers[1].snapshot()
    ident = make_identity("p1")
    with pytest.raises(ValueError, match="version"):
        Peer.restore(ident, {"version": 9}, net.now)
    with pytest.raises(ValueError, match="damaged"):
        Peer.restore(ident, {k: v for k, v in data.items() if k != "charter"}, net.now)
    with pytest.raises(ValueError, match="does not match"):
        Peer.restore(ident, data | {"community": "0" * 32}, net.now)
    bad_record = dict(data["records"][-1]) | {"sig": "0" * 128}
    with pytest.raises(ValueError, match="does not verify"):
        Peer.restore(ident, data | {"records": [*data["records"][:-1], bad_record]}, net.now)
