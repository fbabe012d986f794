"""Reconciliation after a restart: own bids kept, settlement resumed, ledger records
exchanged (``ledger_req`` / ``ledger``), settlement messages held until a slot is final."""

from __future__ import annotations

import pytest

from custom_components.peer_energy.core.federation.protocol import (
    Broadcast,
    LedgerRecords,
    LedgerWanted,
    Peer,
    ProtocolError,
    Rejected,
    Send,
    TradeSigned,
)
from custom_components.peer_energy.core.federation.protocol.settlement import (
    EARLY_MAX,
    settlement_from_dict,
)
from custom_components.peer_energy.core.federation.protocol.wire import (
    LEDGER_RECORDS_PER_MESSAGE,
)
from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.core.trust.credit import (
    Role,
    SignedTrade,
    report_delivery,
    settle_delivery,
)

from .helpers import build, make_identity, next_slot, orders_for, run_slot, submit_all


def _trades(net, peers: list[Peer], slot: int) -> list[TradeSigned]:
    for k, peer in enumerate(peers):
        net.apply(peer.address, peer.settle(slot, prev=f"head-{k}", balance=0, now_ms=net.now))
    net.run_until(net.now + 100)
    return [e for _, e in net.events["p0"] if isinstance(e, TradeSigned) and e.slot == slot]


def _deliver(peer: Peer, data: bytes, now: int) -> list:
    return peer.receive(data, "x", now)


def test_own_bid_survives_a_restart_and_is_sent_again() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    p1 = peers[1]
    net.apply("p1", p1.submit_orders(slot, orders_for(p1, 1, slot), net.now))
    data = p1.snapshot()
    assert len(data["own_bids"]) == 1
    restored = Peer.restore(make_identity("p1"), data, net.now)
    assert restored.bid_restored(slot)
    assert not restored.bid_restored(slot + 60)
    # a new plan is a second bid: refused, the stored one is sent again instead
    with pytest.raises(ProtocolError, match="different bid"):
        restored.submit_orders(slot, [Order.single("z", "", Side.BUY, slot, 5, 9)], net.now)
    again = restored.resend_bid(slot, net.now)
    assert [type(o) for o in again] == [Broadcast]
    assert restored.resend_bid(slot + 60, net.now) == []
    out = _deliver(peers[0], again[0].data, net.now)  # type: ignore[union-attr]
    assert not [o for o in out if isinstance(o, Rejected)]
    assert not peers[0]._slots[slot].equivocators
    # after gate closure the bid is not kept: the slot runs without a restart's help
    net.run_until(peers[0].rules.gate_closure_ms(slot) + 10)
    assert p1.snapshot()["own_bids"] == []


def test_restored_peer_catches_up_the_slots_it_was_running() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    data = peers[2].snapshot()
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    restored = Peer.restore(make_identity("p2"), data, net.now)
    assert slot in restored._round.missing


def test_ledger_request_and_answer() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    trades = [e.trade for e in _trades(net, peers, slot)]
    assert trades
    p0, p1 = peers[0], peers[1]
    asks = p1.ledger_request(slot, net.now, count=1)
    assert len(asks) == 1
    assert isinstance(asks[0], Send)
    (wanted,) = _deliver(p0, asks[0].data, net.now)
    assert wanted == LedgerWanted(p1.member_id, "p1", slot)
    # a settlement of the first trade, from the seller's signed report
    terms = trades[0].terms
    seller = next(p for p in peers if p.member_id == terms.seller)
    report = report_delivery(
        terms, seller.identity, seller.member_id, Role.SELLER, terms.energy_wh, net.now
    )
    settlement = settle_delivery(terms, report, None, 30)
    assert settlement_from_dict(settlement.to_dict()) == settlement
    records = [*trades, settlement]
    answers = p0.ledger_answer("p1", records, net.now)
    got = [e for a in answers for e in _deliver(p1, a.data, net.now)]  # type: ignore[union-attr]
    (event,) = got
    assert isinstance(event, LedgerRecords)
    assert event.trades == tuple(trades)
    assert event.settlements == (settlement,)
    assert event.order == ("trade",) * len(trades) + ("settlement",)
    # many records: several messages
    many = p0.ledger_answer("p1", trades * (LEDGER_RECORDS_PER_MESSAGE + 1), net.now)
    assert len(many) == -(-len(trades) * (LEDGER_RECORDS_PER_MESSAGE + 1) // 32)
    (empty,) = p0.ledger_answer("p1", [], net.now)  # "nothing here" is an answer too
    assert _deliver(p1, empty.data, net.now) == [LedgerRecords(p0.member_id, (), (), ())]  # type: ignore[union-attr]


def _sealed(peer: Peer, type_: str, payload: dict, now: int) -> bytes:
    return peer._seal(type_, payload, now)


def test_bad_ledger_messages_are_refused() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    trades = [e.trade for e in _trades(net, peers, slot)]
    p0, p1 = peers[0], peers[1]
    now = net.now
    good = trades[0].to_dict()
    forged = SignedTrade.from_dict(
        {**good, "terms": {**good["terms"], "energy_wh": good["terms"]["energy_wh"] + 1}}
    )
    other = {**good, "terms": {**good["terms"], "community": "f" * 32}}
    cases = [
        ("ledger_req", {"since": -1}),
        ("ledger", {"records": [{"kind": "trade", "body": good}] * 40}),
        ("ledger", {"records": [{"kind": "gift", "body": good}]}),
        ("ledger", {"records": ["x"]}),
        ("ledger", {"records": [{"kind": "trade", "body": {"terms": 1}}]}),
        ("ledger", {"records": [{"kind": "settlement", "body": {"x": 1}}]}),
        ("ledger", {"records": [{"kind": "trade", "body": other}]}),
        ("ledger", {"records": [{"kind": "trade", "body": forged.to_dict()}]}),
    ]
    for type_, payload in cases:
        out = _deliver(p1, _sealed(p0, type_, payload, now), now)
        assert [o.code for o in out] == ["bad_ledger"], (type_, payload, out)
    # a settlement whose seller report is not the seller's
    terms = trades[0].terms
    buyer = next(p for p in peers if p.member_id == terms.buyer)
    report = report_delivery(terms, buyer.identity, buyer.member_id, Role.SELLER, 1, now)
    body = settle_delivery(terms, report, None, 30).to_dict()
    out = _deliver(
        p1, _sealed(p0, "ledger", {"records": [{"kind": "settlement", "body": body}]}, now), now
    )
    assert [o.code for o in out] == ["bad_ledger"]
    with pytest.raises(ValueError, match="integers"):
        settlement_from_dict({**body, "payment": 1.5})
    # an empty answer: nothing to record
    (empty,) = _deliver(p1, _sealed(p0, "ledger", {"records": []}, now), now)
    assert isinstance(empty, LedgerRecords)
    assert empty.order == ()


def test_settlement_messages_wait_for_the_slot_to_be_final() -> None:
    """A signature for a slot that is final at the sender but not here yet is held and
    handled once the slot is final (bounded), instead of being lost."""
    net, peers = build(3)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    net.go_offline("p2")
    run_slot(net, peers, slot)
    trades = _trades(net, peers[:2], slot)
    assert trades
    p2 = peers[2]
    by_key = {p.member_id: p for p in peers}
    captured = [
        _sealed(
            by_key[party],
            "trade_sig",
            {
                "slot": slot,
                "fill": e.fill,
                "terms": e.trade.terms.to_dict(),
                "sig": (e.trade.buyer if party == e.trade.terms.buyer else e.trade.seller).sig,
            },
            net.now,
        )
        for e in trades
        for party in (e.trade.terms.buyer, e.trade.terms.seller)
    ]
    net.go_online("p2")
    for data in captured:
        assert not [o for o in _deliver(p2, data, net.now) if isinstance(o, Rejected)]
    assert p2._settlement.early
    net.apply("p2", p2.catch_up(net.now))
    net.run_until(net.now + 2_000)
    observed = [e for _, e in net.events["p2"] if isinstance(e, TradeSigned) and e.slot == slot]
    assert {e.trade for e in observed} == {e.trade for e in trades}
    assert not p2._settlement.early
    # bounded: past EARLY_MAX held messages a message is checked (and refused) at once
    p2._settlement.early = {slot + 60: [None] * EARLY_MAX}  # type: ignore[list-item]
    late = next_slot(net, peers)
    net.run_until(peers[0].rules.gate_closure_ms(late) + 10)
    data = _sealed(
        peers[0], "trade_sig", {"slot": late, "fill": 0, "terms": {}, "sig": ""}, net.now
    )
    assert [o.code for o in _deliver(p2, data, net.now)] == ["bad_trade"]
