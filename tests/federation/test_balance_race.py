"""A delivery settlement that moves money, recorded between the two halves of a trade.

Each party's half of a trade carries its running balance after the trade, computed from
its ledger when it settles. A shortfall payment of an earlier slot can reach a ledger in
between: after one party computed its half but before the trade is recorded. The trade
must still be recorded on every ledger (parties and observers, whatever the order), the
balances must agree everywhere and sum to zero, and the chains must verify.
"""

from __future__ import annotations

from pathlib import Path

from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import (
    DeliverySettled,
    Peer,
    Rejected,
    TradeSigned,
)
from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.core.trust.chain import VerifyMode
from custom_components.peer_energy.core.trust.credit import Settlement, SignedTrade
from custom_components.peer_energy.core.trust.home_ledger import HomeLedger

from .helpers import build, make_identity, next_slot, run_slot

SOLD_WH = 500
SHORT_WH = 200  # the seller's meter sees 300 Wh of the 500 Wh it sold


def _ledgers(tmp_path: Path, peers: list[Peer], now_ms: int) -> list[HomeLedger]:
    return [
        HomeLedger.open(
            tmp_path / f"p{k}.sqlite",
            make_identity(f"p{k}"),
            peer.community_id,
            now_ms=now_ms,
            keyring=peer.membership.keyring,
        )
        for k, peer in enumerate(peers)
    ]


def _final_slot(net: MemNet, peers: list[Peer]) -> int:
    """p0 sells 500 Wh to p1 in the next slot; p2 only watches."""
    seller, buyer = peers[0], peers[1]
    slot = next_slot(net, peers)
    net.apply(
        seller.address,
        seller.submit_orders(
            slot, [Order.single("s", seller.member_id, Side.SELL, slot, SOLD_WH, 10)], net.now
        ),
    )
    net.apply(
        buyer.address,
        buyer.submit_orders(
            slot, [Order.single("b", buyer.member_id, Side.BUY, slot, SOLD_WH, 25)], net.now
        ),
    )
    run_slot(net, peers, slot)
    assert all(slot in p.finals for p in peers)
    return slot


def _settle(net: MemNet, peer: Peer, ledger: HomeLedger, slot: int) -> None:
    """What the shell does: the half commits to the ledger's head and signed balance."""
    net.apply(
        peer.address,
        peer.settle(
            slot,
            prev=ledger.head.hash_hex,
            balance=ledger.credit.signed_balance(ledger.member),
            now_ms=net.now,
        ),
    )


def _trade(net: MemNet, peer: Peer, slot: int) -> SignedTrade:
    trades = [e.trade for _, e in net.events[peer.address] if isinstance(e, TradeSigned)]
    return next(t for t in trades if t.terms.slot == slot)


def _settlement(net: MemNet, peer: Peer, slot: int) -> Settlement:
    settled = [e for _, e in net.events[peer.address] if isinstance(e, DeliverySettled)]
    return next(e.settlement for e in settled if e.slot == slot)


def _short_delivery(net: MemNet, peers: list[Peer], slot: int) -> None:
    net.run_until((slot + peers[0].rules.slot_seconds) * 1000 + 500)  # the slot is over
    for k, peer in enumerate(peers[:2]):
        exported, imported = (SOLD_WH - SHORT_WH, 0) if k == 0 else (0, SOLD_WH - SHORT_WH)
        out = peer.report_delivery(slot, exported_wh=exported, imported_wh=imported, now_ms=net.now)
        net.apply(peer.address, out)
    net.run_until(net.now + 200)


def test_shortfall_payment_between_the_halves_of_a_trade(tmp_path: Path) -> None:
    net, peers = build(3)
    ledgers = _ledgers(tmp_path, peers, net.now)
    seller, buyer, observer = peers
    # Slot 1: traded and recorded everywhere; the seller then delivers short.
    first = _final_slot(net, peers)
    _settle(net, seller, ledgers[0], first)
    _settle(net, buyer, ledgers[1], first)
    net.run_until(net.now + 200)
    trade1 = _trade(net, observer, first)
    for ledger in ledgers:
        assert ledger.commit_slot(first * 1000, trades=[trade1]).accepted == (trade1.trade_id,)
    _short_delivery(net, peers, first)
    settlement = _settlement(net, observer, first)
    price = peers[0].rules.market.import_price
    assert settlement.payment == SHORT_WH * price > 0
    # Slot 2 is final. The seller signs its half, then the shortfall payment of slot 1 is
    # recorded on every ledger, then the buyer's half arrives.
    second = _final_slot(net, peers)
    _settle(net, seller, ledgers[0], second)
    net.run_until(net.now + 100)
    for ledger in ledgers:
        assert ledger.commit_slot(first * 1000, settlements=[settlement]).accepted == (
            settlement.settlement_id,
        )
    _settle(net, buyer, ledgers[1], second)
    net.run_until(net.now + 200)
    assert not [e for p in peers for _, e in net.events[p.address] if isinstance(e, Rejected)]
    trade2 = _trade(net, observer, second)
    for ledger in ledgers:
        result = ledger.commit_slot(second * 1000, trades=[trade2])
        assert result.refused == (), result.refused
    balances = [dict(ledger.credit.balances) for ledger in ledgers]
    assert balances[0] == balances[1] == balances[2]
    assert sum(balances[0].values()) == 0
    cost1 = trade1.terms.cost
    assert balances[0][buyer.member_id] == -2 * cost1 + settlement.payment
    for ledger in ledgers:
        assert ledger.verify(VerifyMode.FULL).ok
        ledger.close()


def test_settlement_and_trade_commute_on_every_ledger(tmp_path: Path) -> None:
    """The same records in either order give the same balances on every ledger."""
    net, peers = build(3)
    ledgers = _ledgers(tmp_path, peers, net.now)
    seller, buyer, observer = peers
    first = _final_slot(net, peers)
    for peer, ledger in zip(peers[:2], ledgers, strict=False):
        _settle(net, peer, ledger, first)
    net.run_until(net.now + 200)
    trade1 = _trade(net, observer, first)
    for ledger in ledgers:
        ledger.commit_slot(first * 1000, trades=[trade1])
    _short_delivery(net, peers, first)
    settlement = _settlement(net, observer, first)
    # Both halves of slot 2 computed before the settlement is recorded anywhere.
    second = _final_slot(net, peers)
    for peer, ledger in zip(peers[:2], ledgers, strict=False):
        _settle(net, peer, ledger, second)
    net.run_until(net.now + 200)
    trade2 = _trade(net, observer, second)
    # The seller records the trade first, the buyer and the observer the settlement first.
    ledgers[0].commit_slot(second * 1000, trades=[trade2])
    ledgers[0].commit_slot(first * 1000, settlements=[settlement])
    for ledger in ledgers[1:]:
        assert ledger.commit_slot(first * 1000, settlements=[settlement]).refused == ()
        assert ledger.commit_slot(second * 1000, trades=[trade2]).refused == ()
    balances = [dict(ledger.credit.balances) for ledger in ledgers]
    assert balances[0] == balances[1] == balances[2]
    assert sum(balances[0].values()) == 0
    for ledger in ledgers:
        ledger.close()


def test_an_observer_that_missed_a_signature_gets_it_when_the_party_resumes(
    tmp_path: Path,
) -> None:
    """A party killed after saving its signature but before it reached the observers
    sends it to every member again when it resumes, so observers complete the trade (and
    can settle its delivery) instead of depending on a later reconciliation."""
    net, peers = build(3)
    seller, buyer, observer = peers
    slot = _final_slot(net, peers)
    net.apply(buyer.address, buyer.settle(slot, prev="hb", balance=0, now_ms=net.now))
    net.run_until(net.now + 100)
    net.set_link(seller.address, observer.address, latency_ms=1, drop_bp=10_000)
    net.apply(seller.address, seller.settle(slot, prev="hs", balance=0, now_ms=net.now))
    net.run_until(net.now + 100)  # the observer got the buyer's signature, not the seller's
    net.set_link(seller.address, observer.address, latency_ms=1)
    signed = [e for _, e in net.events[observer.address] if isinstance(e, TradeSigned)]
    assert signed == []
    assert [e for _, e in net.events[buyer.address] if isinstance(e, TradeSigned)]
    net.apply(seller.address, seller.resume_settlement(net.now))
    net.run_until(net.now + 100)
    signed = [e for _, e in net.events[observer.address] if isinstance(e, TradeSigned)]
    assert [e.trade for e in signed] == [_trade(net, buyer, slot)]
    assert not signed[0].party


def test_unsigned_before_tells_whether_a_later_slot_must_wait() -> None:
    net, peers = build(3)
    seller, buyer, observer = peers
    slot = _final_slot(net, peers)
    later = slot + peers[0].rules.slot_seconds
    net.apply(buyer.address, buyer.settle(slot, prev="hb", balance=0, now_ms=net.now))
    net.run_until(net.now + 100)
    assert buyer.unsigned_before(later, net.now)  # its half is out, the trade not signed
    assert not buyer.unsigned_before(slot, net.now)  # only earlier slots count
    assert not seller.unsigned_before(later, net.now)  # has not settled: nothing pending
    assert not observer.unsigned_before(later, net.now)
    deadline = (slot + 2 * peers[0].rules.slot_seconds) * 1000
    assert not buyer.unsigned_before(later, deadline)  # given up at the delivery deadline
    net.apply(seller.address, seller.settle(slot, prev="hs", balance=0, now_ms=net.now))
    net.run_until(net.now + 100)
    assert not buyer.unsigned_before(later, net.now)
    assert not seller.unsigned_before(later, net.now)


def test_a_half_signed_from_a_ledger_out_of_step_is_recorded_everywhere(tmp_path: Path) -> None:
    """The buyer's ledger lacks its own trade of slot 1 when it signs its half of slot 2
    (it was killed before recording it): the half states a balance without that trade.
    Both parties signed, so every ledger records the trade, reports the stated balance
    that differs, and the balances still agree everywhere and sum to zero."""
    net, peers = build(3)
    ledgers = _ledgers(tmp_path, peers, net.now)
    seller, buyer, observer = peers
    first = _final_slot(net, peers)
    _settle(net, seller, ledgers[0], first)
    _settle(net, buyer, ledgers[1], first)
    net.run_until(net.now + 200)
    trade1 = _trade(net, observer, first)
    for k in (0, 2):  # the buyer lost it
        assert ledgers[k].commit_slot(first * 1000, trades=[trade1]).accepted
    second = _final_slot(net, peers)
    for peer, ledger in zip(peers[:2], ledgers, strict=False):
        _settle(net, peer, ledger, second)
    net.run_until(net.now + 200)
    trade2 = _trade(net, observer, second)
    assert trade2.terms.buyer_balance == -trade2.terms.cost  # without slot 1's trade
    # The buyer learns slot 1's trade from a member (reconciliation), then slot 2's.
    assert ledgers[1].commit_slot(first * 1000, trades=[trade1]).accepted
    for ledger in ledgers:
        result = ledger.commit_slot(second * 1000, trades=[trade2])
        assert result.refused == (), result.refused
        assert result.accepted == (trade2.trade_id,)
        assert result.disagreed == (trade2.trade_id,)
    balances = [dict(ledger.credit.balances) for ledger in ledgers]
    assert balances[0] == balances[1] == balances[2]
    assert sum(balances[0].values()) == 0
    assert balances[0][buyer.member_id] == -trade1.terms.cost - trade2.terms.cost
    for ledger in ledgers:
        assert ledger.verify(VerifyMode.FULL).ok
        ledger.close()
