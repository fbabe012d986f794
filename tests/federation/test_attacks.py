"""Forged, altered, replayed, late and non-member messages are ignored with their code;
equivocation is detected, proven to third parties and excluded (properties 3 and 5)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from custom_components.peer_energy.core.federation.memnet import Malice, MemNet
from custom_components.peer_energy.core.federation.protocol import (
    Broadcast,
    EquivocationDetected,
    EquivocationProof,
    Peer,
    Rejected,
    SlotCleared,
    verify_equivocation,
    verify_slot_data,
)
from custom_components.peer_energy.core.market.orders import Order, OrderError, Side
from custom_components.peer_energy.core.trust.canonical import canonical_bytes, decode
from custom_components.peer_energy.core.trust.envelope import seal

from .helpers import build, make_identity, next_slot, orders_for, outcome, run_slot, submit_all


def _codes(net: MemNet, address: str) -> list[str]:
    return [e.code for _, e in net.events[address] if isinstance(e, Rejected)]


def _bid_wire(peer: Peer, net: MemNet, slot: int, index: int = 1) -> bytes:
    outs = peer.submit_orders(slot, orders_for(peer, index, slot), net.now)
    assert isinstance(outs[0], Broadcast)
    return outs[0].data


def test_forged_altered_replayed_and_foreign_messages() -> None:
    net, peers = build(3)
    p0, p1, p2 = peers
    slot = next_slot(net, peers)
    wire = _bid_wire(p1, net, slot)
    msg = decode(wire)
    assert isinstance(msg, dict)
    cases: list[tuple[bytes, str]] = []
    # altered payload under the original signature
    altered = dict(msg) | {"payload": dict(msg["payload"]) | {"slot": slot + 60}}  # type: ignore[arg-type]
    cases.append((canonical_bytes(altered), "bad_signature"))
    # the same bytes claiming to come from another member
    cases.append((canonical_bytes(dict(msg) | {"sender": p2.member_id}), "bad_signature"))
    # a non-member signing correctly
    outsider = make_identity("outsider")
    foreign = seal(
        outsider,
        community=p0.community_id,
        seq=1,
        ts_ms=net.now,
        type="bid",
        payload=msg["payload"],
    )
    cases.append((foreign.to_wire(), "unknown_sender"))
    # another community
    other = seal(
        p1.identity, community="f" * 32, seq=5, ts_ms=net.now, type="bid", payload=msg["payload"]
    )
    cases.append((other.to_wire(), "other_community"))
    # garbage, floats, unknown types, stale clocks
    cases.append((b"not json", "malformed"))
    cases.append((wire.replace(b'"seq":', b'"seq":1.5,"x":'), "float_not_allowed"))
    odd = seal(
        p1.identity, community=p0.community_id, seq=7, ts_ms=net.now, type="gossip", payload={}
    )
    cases.append((odd.to_wire(), "unknown_type"))
    old = seal(
        p1.identity,
        community=p0.community_id,
        seq=8,
        ts_ms=net.now + 3_600_000,
        type="bid",
        payload=msg["payload"],
    )
    cases.append((old.to_wire(), "clock_skew"))
    for data, code in cases:
        before = len(_codes(net, "p0"))
        net.inject("p0", data, sender="attacker")
        net.run_until(net.now + 10)
        assert _codes(net, "p0")[before:] == [code]
    # the genuine message is accepted once, then refused as a replay
    net.inject("p0", wire, sender="p1")
    net.run_until(net.now + 10)
    net.inject("p0", wire, sender="attacker")
    net.run_until(net.now + 10)
    assert _codes(net, "p0")[-1] == "replay"
    assert p0.receive(b"\xff", "x", net.now)[0].code == "malformed"  # type: ignore[union-attr]


def test_bad_bids_are_refused() -> None:
    net, peers = build(3)
    p0, p1, _ = peers
    slot = next_slot(net, peers)
    g = p0.rules.gate_closure_ms(slot)

    def bid(payload: dict, ts: int, seq: int) -> bytes:
        return seal(
            p1.identity, community=p0.community_id, seq=seq, ts_ms=ts, type="bid", payload=payload
        ).to_wire()

    mine = Order.single("x", p1.member_id, Side.BUY, slot, 100, 20).to_dict()
    theirs = Order.single("y", p0.member_id, Side.BUY, slot, 100, 20).to_dict()
    huge = Order.single("z", p1.member_id, Side.BUY, slot, 10**7, 30).to_dict()
    cases = [
        ({"slot": slot, "orders": [theirs]}, "bad_bid"),
        ({"slot": slot + 1, "orders": [mine]}, "bad_bid"),
        ({"slot": slot + 60, "orders": [mine]}, "bad_bid"),  # orders of another slot
        ({"slot": slot, "orders": [mine, mine]}, "bad_bid"),
        ({"slot": slot, "orders": [huge]}, "over_credit_limit"),
        (
            {"slot": slot + 3 * 86_400, "orders": [mine | {"slot_start": slot + 3 * 86_400}]},
            "stale_slot",
        ),
    ]
    for n, (payload, code) in enumerate(cases):
        net.inject("p0", bid(payload, net.now, 10**13 + n), sender="p1")
        net.run_until(net.now + 10)
        assert _codes(net, "p0")[-1] == code, payload
    # signed after gate closure (delivered inside the clock-skew tolerance)
    net.run_until(g + 1_000)
    net.inject("p0", bid({"slot": slot, "orders": [mine]}, g + 500, 2 * 10**13), sender="p1")
    net.run_until(net.now + 10)
    assert _codes(net, "p0")[-1] == "late_bid"
    with pytest.raises(OrderError, match="credit limit"):
        p1.submit_orders(slot + 60, [Order.from_dict(huge | {"slot_start": slot + 60})], net.now)


def test_submit_orders_rules() -> None:
    net, peers = build(2)
    p1 = peers[1]
    slot = next_slot(net, peers)
    orders = orders_for(p1, 1, slot)
    first = p1.submit_orders(slot, orders, net.now)
    assert first
    assert p1.submit_orders(slot, orders, net.now + 1) == []  # same bid again: no-op
    changed = [orders[0]._replace(steps=(orders[0].steps[0]._replace(price=99),))]
    with pytest.raises(Exception, match="different bid"):
        p1.submit_orders(slot, changed, net.now)
    with pytest.raises(Exception, match="aligned"):
        p1.submit_orders(slot + 1, orders, net.now)
    with pytest.raises(Exception, match="gate closure"):
        p1.submit_orders(slot, orders, p1.rules.gate_closure_ms(slot))


def test_malicious_forger_and_replayer_do_not_break_agreement() -> None:
    net, peers = build(7, malice={5: Malice.FORGER, 6: Malice.REPLAYER})
    for _ in range(2):
        slot = next_slot(net, peers)
        submit_all(net, peers, slot)
        run_slot(net, peers, slot)
        honest = {outcome(net, p.address, slot) for p in peers[:5]}
        assert len(honest) == 1
        assert isinstance(next(iter(honest)), tuple)
    codes = set(_codes(net, "p0"))
    assert {"bad_signature", "replay"} <= codes


def test_equivocator_is_detected_proven_and_excluded() -> None:
    net, peers = build(8, malice={3: Malice.EQUIVOCATOR})
    cheat = peers[3]
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    honest = [p for p in peers if p is not cheat]
    outcomes = {outcome(net, p.address, slot) for p in honest}
    assert len(outcomes) == 1
    assert isinstance(next(iter(outcomes)), tuple)
    final = honest[0].finals[slot]
    assert all(o.owner != cheat.member_id for o in final.orders)
    assert len(final.orders) == 7
    proofs = [e.proof for _, e in net.events["p0"] if isinstance(e, EquivocationDetected)]
    assert len(proofs) == 1
    proof = proofs[0]
    assert proof.member == cheat.member_id
    assert proof.kind == "bid"
    assert proof.slot == slot
    # a third peer checks the proof with its own key ring
    third = peers[7]
    assert verify_equivocation(
        proof, community=third.community_id, keyring=third.membership.keyring
    )
    assert proof.to_dict()["first"] == dict(proof.first)
    # the same message twice, or a record of another member, is no proof
    same = EquivocationProof("bid", proof.member, slot, proof.first, proof.first)
    assert not verify_equivocation(
        same, community=third.community_id, keyring=third.membership.keyring
    )
    framed = EquivocationProof("bid", peers[1].member_id, slot, proof.first, proof.second)
    assert not verify_equivocation(
        framed, community=third.community_id, keyring=third.membership.keyring
    )
    wrong_kind = replace(proof, kind="attest")
    assert not verify_equivocation(
        wrong_kind, community=third.community_id, keyring=third.membership.keyring
    )
    # every honest peer reported it
    for p in honest:
        assert any(isinstance(e, EquivocationDetected) for _, e in net.events[p.address])
    # the final result verifies from the signed bids alone at another peer
    data = honest[2].slot_data(slot)
    assert data is not None
    checked = verify_slot_data(data, membership=honest[4].membership)
    assert checked.result_hash == final.result_hash
    assert checked.book_hash == final.book_hash


def test_attestation_equivocation_is_detected() -> None:
    net, peers = build(4)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    p1 = peers[1]
    final = peers[0].finals[slot]
    twin = seal(
        p1.identity,
        community=p1.community_id,
        seq=10**13,
        ts_ms=net.now,
        type="attest",
        payload={"slot": slot, "book": "0" * 64, "result": final.result_hash},
    )
    net.inject("p0", twin.to_wire(), sender="p1")
    net.run_until(net.now + 10)
    proofs = [e.proof for _, e in net.events["p0"] if isinstance(e, EquivocationDetected)]
    assert [p.kind for p in proofs] == ["attest"]
    assert verify_equivocation(
        proofs[0], community=p1.community_id, keyring=peers[2].membership.keyring
    )


def test_slot_data_that_does_not_verify_is_refused() -> None:
    net, peers = build(4)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    data = peers[0].slot_data(slot)
    assert data is not None
    ms = peers[1].membership
    assert verify_slot_data(data, membership=ms).slot == slot
    with pytest.raises(ValueError, match="quorum"):
        verify_slot_data(data | {"attests": data["attests"][:1]}, membership=ms)
    with pytest.raises(ValueError, match="quorum"):
        verify_slot_data(data | {"bids": data["bids"][1:]}, membership=ms)
    with pytest.raises(ValueError, match="does not verify"):
        verify_slot_data(data | {"bids": [data["bids"][0] | {"sig": "0" * 128}]}, membership=ms)
    with pytest.raises(ValueError, match="two bids"):
        verify_slot_data(data | {"bids": [data["bids"][0]] * 2}, membership=ms)
    with pytest.raises(ValueError, match="attestation"):
        verify_slot_data(data | {"attests": [data["bids"][0]]}, membership=ms)
    with pytest.raises(ValueError, match="margin_wins"):
        verify_slot_data(data | {"fairness": {"margin_wins": {"x": -1}}}, membership=ms)
    with pytest.raises(ValueError, match="integer"):
        verify_slot_data(data | {"slot": "now"}, membership=ms)
    assert peers[0].slot_data(slot + 60) is None
    # a peer refuses a forged slot_data message with a bad code
    bad = seal(
        peers[2].identity,
        community=peers[0].community_id,
        seq=10**13,
        ts_ms=net.now,
        type="slot_data",
        payload=data | {"slot": slot + 120, "attests": []},
    )
    net.inject("p3", bad.to_wire(), sender="p2")
    net.run_until(net.now + 10)
    assert _codes(net, "p3")[-1] == "bad_slot_data"
    cleared = [e for _, e in net.events["p3"] if isinstance(e, SlotCleared)]
    assert len(cleared) == 1


def test_balances_limit_bid_admission() -> None:
    net, peers = build(3)
    p0, p1, _ = peers
    slot = next_slot(net, peers)
    order = Order.single("x", p1.member_id, Side.BUY, slot, 1_000, 20)  # costs 21_000 mmu
    limit = p0.rules.credit_limit_base
    for p in peers:
        p.set_balances({p1.member_id: 20_000 - limit})
    with pytest.raises(OrderError, match="credit limit"):
        p1.submit_orders(slot, [order], net.now)
    for p in peers:
        p.set_balances({p1.member_id: 21_000 - limit})
    net.apply("p1", p1.submit_orders(slot, [order], net.now))
    net.run_until(net.now + 50)
    assert not _codes(net, "p0")
