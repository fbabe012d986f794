"""Boundary cases of the protocol's safety checks, each of which a wrong version of the
check would let pass: one attestation short of the quorum, an equivocating attester, a
bid signed exactly at gate closure, a trade half from a party of another fill."""

from __future__ import annotations

from typing import Any

import pytest

from custom_components.peer_energy.core.federation.protocol import (
    Peer,
    Rejected,
    SlotCleared,
    verify_slot_data,
)
from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.core.trust.envelope import seal

from .helpers import build, next_slot, orders_for, run_slot, submit_all


def _signed(peer: Peer, type_: str, payload: dict[str, Any], ts: int, seq: int) -> bytes:
    return seal(
        peer.identity, community=peer.community_id, seq=seq, ts_ms=ts, type=type_,
        payload=payload,
    ).to_wire()  # fmt: skip


def _codes(out: list[Any]) -> list[str]:
    return [o.code for o in out if isinstance(o, Rejected)]


def _final_slot(n: int = 4) -> tuple[Any, list[Peer], int, dict[str, Any]]:
    net, peers = build(n)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    data = peers[0].slot_data(slot)
    assert data is not None
    return net, peers, slot, data


def test_verify_slot_data_needs_the_full_quorum() -> None:
    _, peers, slot, data = _final_slot(5)  # quorum: 3 of 5
    ms = peers[0].membership
    assert peers[0].rules.quorum(5) == 3
    assert (
        len(verify_slot_data(data | {"attests": data["attests"][:3]}, membership=ms).attesters) == 3
    )
    with pytest.raises(ValueError, match="quorum"):
        verify_slot_data(data | {"attests": data["attests"][:2]}, membership=ms)


def test_a_fetched_slot_data_one_short_of_the_quorum_is_not_final() -> None:
    net, peers = build(5)
    slot = next_slot(net, peers)
    net.partition([["p0", "p1", "p2", "p3"], ["p4"]])
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    data = peers[0].slot_data(slot)
    assert data is not None
    late = peers[4]
    two = _signed(peers[1], "slot_data", data | {"attests": data["attests"][:2]}, net.now, 10**13)
    assert not any(isinstance(o, SlotCleared) for o in late.receive(two, "p1", net.now))
    assert slot not in late.finals
    three = _signed(
        peers[1], "slot_data", data | {"attests": data["attests"][:3]}, net.now, 10**13 + 1
    )
    assert any(isinstance(o, SlotCleared) for o in late.receive(three, "p1", net.now))


def test_an_equivocating_attester_counts_for_no_result() -> None:
    net, peers, slot, data = _final_slot(5)  # quorum 3
    ms = peers[0].membership
    attests = data["attests"][:3]
    attester = next(p for p in peers if p.member_id == attests[2]["sender"])
    other = {"slot": slot, "book": "0" * 64, "result": "1" * 64}
    second = seal(
        attester.identity, community=attester.community_id, seq=10**13,
        ts_ms=attests[2]["ts"], type="attest", payload=other,
    ).to_dict()  # fmt: skip
    # Its first attestation matched the result: with the second one, it no longer counts.
    with pytest.raises(ValueError, match="quorum"):
        verify_slot_data(data | {"attests": [*attests, second]}, membership=ms)
    # The live tally agrees: a peer that has both does not reach the quorum with them.
    net2, fresh = build(5)
    slot2 = next_slot(net2, fresh)
    net2.partition([["p0", "p1", "p2", "p3"], ["p4"]])
    submit_all(net2, fresh, slot2)
    run_slot(net2, fresh, slot2)
    data2 = fresh[0].slot_data(slot2)
    assert data2 is not None
    first3 = data2["attests"][:3]
    who = next(p for p in fresh if p.member_id == first3[2]["sender"])
    twin = seal(
        who.identity, community=who.community_id, seq=10**13, ts_ms=first3[2]["ts"],
        type="attest", payload={"slot": slot2, "book": "0" * 64, "result": "1" * 64},
    ).to_dict()  # fmt: skip
    late = fresh[4]
    # (the equivocator's matching attestation comes first: it must not count even so)
    bundle = _signed(fresh[1], "records", {"records": [*first3, twin]}, net2.now, 10**13)
    late.receive(bundle, "p1", net2.now)
    book = _signed(fresh[1], "slot_data", data2 | {"attests": first3}, net2.now, 10**13 + 1)
    out = late.receive(book, "p1", net2.now)
    assert not any(isinstance(o, SlotCleared) for o in out)
    assert slot2 not in late.finals  # two honest attestations and an equivocator: no quorum
    # A fourth, honest attestation makes the quorum.
    fourth = _signed(fresh[1], "records", {"records": [data2["attests"][3]]}, net2.now, 10**13 + 2)
    assert any(isinstance(o, SlotCleared) for o in late.receive(fourth, "p1", net2.now))


def test_a_bid_signed_exactly_at_gate_closure_is_late() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    p1 = peers[1]
    gate = p1.rules.gate_closure_ms(slot)
    orders = [o.to_dict() for o in orders_for(p1, 1, slot)]
    at_gate = _signed(p1, "bid", {"slot": slot, "orders": orders}, gate, gate)
    assert _codes(peers[0].receive(at_gate, "p1", gate)) == ["late_bid"]
    just_before = _signed(p1, "bid", {"slot": slot, "orders": orders}, gate - 1, gate + 1)
    assert _codes(peers[0].receive(just_before, "p1", gate)) == []
    assert p1.member_id in peers[0]._slots[slot].bids
    with pytest.raises(Exception, match="gate closure"):
        p1.submit_orders(slot, orders_for(p1, 1, slot), gate)


def test_a_trade_half_from_a_party_of_another_fill_is_refused() -> None:
    net, peers = build(4)
    slot = next_slot(net, peers)
    a, b, c, _ = peers
    # two fills: a sells to b, c sells to ... (b buys from a and c)
    net.apply(
        "p0",
        a.submit_orders(slot, [Order.single("s", a.member_id, Side.SELL, slot, 100, 10)], net.now),
    )
    net.apply(
        "p2",
        c.submit_orders(slot, [Order.single("s", c.member_id, Side.SELL, slot, 100, 10)], net.now),
    )
    net.apply(
        "p1",
        b.submit_orders(slot, [Order.single("b", b.member_id, Side.BUY, slot, 200, 30)], net.now),
    )
    run_slot(net, peers, slot)
    fills = a.finals[slot].result.fills
    mine = next(i for i, f in enumerate(fills) if f.seller == a.member_id)
    others = next(i for i, f in enumerate(fills) if f.seller == c.member_id)
    assert fills[mine].buyer == fills[others].buyer == b.member_id
    # c (seller of the other fill) sends a its half for a's fill, claiming the buyer's role
    half = {"fill": mine, "role": "buyer", "prev": "h", "balance": 0}
    wrong = _signed(c, "trade_terms", {"slot": slot, "halves": [half]}, net.now, 10**13)
    assert _codes(a.receive(wrong, "p2", net.now)) == ["bad_trade"]
    assert a._settlement.settling.get(slot) is None or not a._settlement.settling[slot].theirs
    # the fill's own buyer may
    right = _signed(b, "trade_terms", {"slot": slot, "halves": [half]}, net.now, 10**13)
    assert _codes(a.receive(right, "p1", net.now)) == []
    assert mine in a._settlement.settling[slot].theirs


def test_a_bid_whose_orders_are_for_another_slot_is_refused() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    p1 = peers[1]
    step = p1.rules.slot_seconds
    wrong = [o.to_dict() for o in orders_for(p1, 1, slot + step)]
    data = _signed(p1, "bid", {"slot": slot, "orders": wrong}, net.now, 10**13)
    out = peers[0].receive(data, "p1", net.now)
    assert _codes(out) == ["bad_bid"]
    assert "another slot" in next(o.detail for o in out if isinstance(o, Rejected))
    assert peers[0]._slots.get(slot) is None or not peers[0]._slots[slot].bids


def test_an_attestation_signed_before_gate_closure_is_refused() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    p1 = peers[1]
    gate = p1.rules.gate_closure_ms(slot)
    payload = {"slot": slot, "book": "a" * 64, "result": "b" * 64}
    early = _signed(p1, "attest", payload, gate - 1, gate - 1)
    out = peers[0].receive(early, "p1", gate)
    assert _codes(out) == ["bad_attestation"]
    assert peers[0]._slots.get(slot) is None or not peers[0]._slots[slot].attests
    at_gate = _signed(p1, "attest", payload, gate, gate)
    assert _codes(peers[0].receive(at_gate, "p1", gate)) == []
    assert p1.member_id in peers[0]._slots[slot].attests


def test_a_trade_signature_that_does_not_verify_is_refused() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    final = peers[0].finals[slot]
    i = next(k for k, f in enumerate(final.result.fills) if f.buyer != f.seller)
    fill = final.result.fills[i]
    buyer = next(p for p in peers if p.member_id == fill.buyer)
    seller = next(p for p in peers if p.member_id == fill.seller)
    for p in (buyer, seller):
        net.apply(p.address, p.settle(slot, prev="h", balance=0, now_ms=net.now))
    net.run_until(net.now + 50)
    st = seller._settlement.settling[slot]
    terms = st.terms[i]
    held = dict(st.sigs[i])
    # the exact agreed terms, "signed" by the buyer with the seller's signature bytes
    wrong = {"slot": slot, "fill": i, "terms": terms.to_dict(), "sig": held[seller.member_id].sig}
    data = _signed(buyer, "trade_sig", wrong, net.now, 10**13)
    assert _codes(seller.receive(data, buyer.address, net.now)) == ["bad_trade"]
    assert st.sigs[i] == held  # the buyer's valid signature is still the one held
