"""After a final slot, every fill becomes a trade countersigned by buyer and seller."""

from __future__ import annotations

import pytest

from custom_components.peer_energy.core.federation.protocol import (
    ProtocolError,
    Rejected,
    TradeSigned,
)
from custom_components.peer_energy.core.trust.credit import CreditLedger, verify_trade
from custom_components.peer_energy.core.trust.envelope import seal

from .helpers import build, next_slot, run_slot, submit_all


def _signed(net, address: str, slot: int) -> dict[int, TradeSigned]:
    return {
        e.fill: e for _, e in net.events[address] if isinstance(e, TradeSigned) and e.slot == slot
    }


def test_fills_become_countersigned_trades() -> None:
    net, peers = build(6)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    fills = peers[0].finals[slot].result.fills
    trades = [i for i, f in enumerate(fills) if f.buyer != f.seller]
    assert trades
    with pytest.raises(ProtocolError, match="final"):
        peers[0].settle(slot + 60, prev="h", balance=0, now_ms=net.now)
    # homes settle at different moments (halves arrive before or after their own call), and
    # jitter lets a signature overtake the half it answers
    net.jitter_ms = 20
    for k, peer in enumerate(peers):
        net.apply(peer.address, peer.settle(slot, prev=f"head-{k}", balance=0, now_ms=net.now))
        # calling again resends the halves still open; answered, never refused
        net.apply(peer.address, peer.settle(slot, prev=f"head-{k}", balance=0, now_ms=net.now))
        net.run_until(net.now + 3)
    net.run_until(net.now + 100)
    assert not any(isinstance(e, Rejected) for p in peers for _, e in net.events[p.address])
    ledger = CreditLedger(peers[0].community_id)
    reference = _signed(net, "p0", slot)
    assert sorted(reference) == trades
    for i in trades:
        trade = reference[i].trade
        assert verify_trade(trade).ok
        fill = fills[i]
        assert (trade.terms.buyer, trade.terms.seller, trade.terms.energy_wh) == (
            fill.buyer,
            fill.seller,
            fill.energy_wh,
        )
        # buyer and seller (and every observer) hold the same countersigned trade
        for peer in peers:
            event = _signed(net, peer.address, slot)[i]
            assert event.trade == trade
            assert event.party == (peer.member_id in (fill.buyer, fill.seller))
        # applied in fill order they keep the mutual-credit ledger exact and zero-sum
        assert ledger.apply_trade(trade).ok
    assert ledger.total() == 0
    # each party committed to its own chain head
    assert {reference[i].trade.terms.buyer_prev for i in trades} <= {f"head-{k}" for k in range(6)}


def test_bad_trade_messages_are_refused() -> None:
    net, peers = build(4)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    fills = peers[0].finals[slot].result.fills
    i = next(k for k, f in enumerate(fills) if f.buyer != f.seller)
    fill = fills[i]
    buyer = next(p for p in peers if p.member_id == fill.buyer)
    seller = next(p for p in peers if p.member_id == fill.seller)
    third = next(p for p in peers if p not in (buyer, seller))
    seq = [10**13]

    def send(sender, to, type_, payload) -> str:
        seq[0] += 1
        env = seal(
            sender.identity,
            community=sender.community_id,
            seq=seq[0],
            ts_ms=net.now,
            type=type_,
            payload=payload,
        )
        before = len(net.events[to])
        net.inject(to, env.to_wire(), sender="inject")
        net.run_until(net.now + 3)
        codes = [e.code for _, e in net.events[to][before:] if isinstance(e, Rejected)]
        return codes[-1] if codes else ""

    # honest settlement first (the injected messages below spoil the senders' sequence)
    for p in (buyer, seller):
        net.apply(p.address, p.settle(slot, prev="h", balance=0, now_ms=net.now))
    net.run_until(net.now + 50)
    half = {"fill": i, "role": "buyer", "prev": "x", "balance": 0}
    assert (
        send(buyer, seller.address, "trade_terms", {"slot": slot + 60, "halves": [half]})
        == "bad_trade"
    )
    assert (
        send(buyer, seller.address, "trade_terms", {"slot": slot, "halves": ["x"]}) == "bad_trade"
    )
    assert (
        send(third, seller.address, "trade_terms", {"slot": slot, "halves": [half]}) == "bad_trade"
    )
    terms = {"community": buyer.community_id}
    assert (
        send(
            buyer,
            seller.address,
            "trade_sig",
            {"slot": slot, "fill": 999, "terms": terms, "sig": ""},
        )
        == "bad_trade"
    )
    assert (
        send(
            buyer, seller.address, "trade_sig", {"slot": slot, "fill": i, "terms": terms, "sig": ""}
        )
        == "bad_trade"
    )
    good = _signed(net, third.address, slot)[i].trade.terms.to_dict()
    altered = good | {"price": good["price"] + 1}
    assert (
        send(
            buyer,
            third.address,
            "trade_sig",
            {"slot": slot, "fill": i, "terms": altered, "sig": "0" * 128},
        )
        == "bad_trade"
    )
    fresh = (
        next(k for k, f in enumerate(fills) if f.buyer != f.seller and k != i)
        if len(fills) > 1
        else None
    )
    if fresh is not None:
        f2 = fills[fresh]
        t2 = good | {
            "buyer": f2.buyer,
            "seller": f2.seller,
            "energy_wh": f2.energy_wh,
            "price": f2.price,
            "clean": f2.clean,
        }
        signer = next(p for p in peers if p.member_id == f2.buyer)
        assert (
            send(
                signer,
                third.address,
                "trade_sig",
                {"slot": slot, "fill": fresh, "terms": t2, "sig": "0" * 128},
            )
            == "bad_trade"
        )
