"""After a slot, each party reports its metered delivery; every peer settles the same way."""

from __future__ import annotations

from typing import Any

import pytest

from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import (
    DeliverySettled,
    DeliveryUnreported,
    Peer,
    ProtocolError,
    Rejected,
    TradeSigned,
)
from custom_components.peer_energy.core.trust.credit import CreditLedger, Role, report_delivery
from custom_components.peer_energy.core.trust.envelope import seal

from .helpers import build, next_slot, run_slot, submit_all


def _events(net: MemNet, address: str, kind: type, slot: int) -> dict[int, Any]:
    return {e.fill: e for _, e in net.events[address] if isinstance(e, kind) and e.slot == slot}


def _traded(n: int = 6) -> tuple[MemNet, list[Peer], int, list[int]]:
    """A final slot whose trades are countersigned by everyone."""
    net, peers = build(n)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    for k, peer in enumerate(peers):
        net.apply(peer.address, peer.settle(slot, prev=f"h{k}", balance=0, now_ms=net.now))
    net.run_until(net.now + 200)
    fills = peers[0].finals[slot].result.fills
    trades = [i for i, f in enumerate(fills) if f.buyer != f.seller]
    assert trades
    assert sorted(_events(net, peers[0].address, TradeSigned, slot)) == trades
    return net, peers, slot, trades


def _own(peer: Peer, slot: int, role: Role) -> int:
    fills = peer.finals[slot].result.fills
    return sum(
        f.energy_wh
        for f in fills
        if f.buyer != f.seller and (f.seller if role is Role.SELLER else f.buyer) == peer.member_id
    )


def test_full_delivery_settles_without_payment_everywhere() -> None:
    net, peers, slot, trades = _traded()
    net.run_until((slot + 60) * 1000)  # the slot is over
    for peer in peers:
        out = peer.report_delivery(
            slot,
            exported_wh=_own(peer, slot, Role.SELLER),
            imported_wh=_own(peer, slot, Role.BUYER),
            now_ms=net.now,
        )
        net.apply(peer.address, out)
    net.run_until(net.now + 200)
    assert not any(isinstance(e, Rejected) for p in peers for _, e in net.events[p.address])
    reference = _events(net, peers[0].address, DeliverySettled, slot)
    for peer in peers:
        settled = _events(net, peer.address, DeliverySettled, slot)
        assert sorted(settled) == trades  # observers too, before any deadline
        for i, event in settled.items():
            s = event.settlement
            assert (s.shortfall_wh, s.payment, s.disputed) == (0, 0, False)
            assert s.buyer_report is not None
            assert s.delivered_wh == s.terms.energy_wh
            assert event.party == (peer.member_id in (s.terms.buyer, s.terms.seller))
            # every peer derived the very same settlement
            assert event.settlement == reference[i].settlement


def test_shortfall_is_paid_back_at_the_import_price_and_keeps_the_ledger_zero_sum() -> None:
    net, peers, slot, trades = _traded()
    fills = peers[0].finals[slot].result.fills
    seller_id = fills[trades[0]].seller
    seller = next(p for p in peers if p.member_id == seller_id)
    sold = _own(seller, slot, Role.SELLER)
    short = min(sold, 7)
    net.run_until((slot + 60) * 1000)
    for peer in peers:
        exported = _own(peer, slot, Role.SELLER)
        if peer is seller:
            exported -= short  # the meter saw less than was sold
        net.apply(
            peer.address,
            peer.report_delivery(
                slot,
                exported_wh=exported,
                imported_wh=_own(peer, slot, Role.BUYER) + 5,  # grid import on top
                now_ms=net.now,
            ),
        )
    net.run_until(net.now + 200)
    price = peers[0].rules.market.import_price
    reference = _events(net, peers[0].address, DeliverySettled, slot)
    shortfalls = {
        i: e.settlement.shortfall_wh for i, e in reference.items() if e.settlement.shortfall_wh
    }
    assert sum(shortfalls.values()) == short
    # the export is assigned to the seller's fills in fill order: the last ones fall short
    seller_fills = [i for i in trades if fills[i].seller == seller_id]
    assert max(shortfalls) == seller_fills[-1]
    for i, wh in shortfalls.items():
        assert reference[i].settlement.payment == wh * price
    ledger = CreditLedger(peers[0].community_id, keyring=peers[0].membership.keyring)
    for i in trades:
        assert ledger.apply_trade(_events(net, "p0", TradeSigned, slot)[i].trade).ok
    for peer in peers:
        mine = _events(net, peer.address, DeliverySettled, slot)
        assert {i: e.settlement for i, e in mine.items()} == {
            i: e.settlement for i, e in reference.items()
        }
    for event in reference.values():
        assert ledger.apply_settlement(event.settlement).ok
    assert ledger.total() == 0
    assert ledger.balance(seller_id) == sum(
        fills[i].energy_wh * fills[i].price for i in seller_fills
    ) - short * price + sum(
        -(fills[i].energy_wh * (fills[i].price + fills[i].fee))
        for i in trades
        if fills[i].buyer == seller_id
    )


def test_trades_countersigned_after_metering_are_reported_when_they_complete() -> None:
    net, peers = build(4)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    fills = peers[0].finals[slot].result.fills
    trades = [i for i, f in enumerate(fills) if f.buyer != f.seller]
    assert trades
    # everyone meters first (huge readings: every fill is delivered in full) ...
    for peer in peers:
        assert (
            peer.report_delivery(slot, exported_wh=10**6, imported_wh=10**6, now_ms=net.now) == []
        )
        # a second reading for the same slot is ignored
        assert peer.report_delivery(slot, exported_wh=0, imported_wh=0, now_ms=net.now) == []
    # ... then settles: each trade's reports follow its countersignature
    for k, peer in enumerate(peers):
        net.apply(peer.address, peer.settle(slot, prev=f"h{k}", balance=0, now_ms=net.now))
    net.run_until(net.now + 200)
    settled = _events(net, peers[0].address, DeliverySettled, slot)
    assert sorted(settled) == trades
    assert all(e.settlement.shortfall_wh == 0 for e in settled.values())


def test_missing_reports_settle_at_the_deadline() -> None:
    net, peers, slot, trades = _traded()
    fills = peers[0].finals[slot].result.fills
    silent_seller = fills[trades[0]].seller
    net.run_until((slot + 60) * 1000)
    for peer in peers:
        if peer.member_id == silent_seller:
            continue  # never reports
        # buyers stay silent too: the seller's report alone settles at the deadline
        if _own(peer, slot, Role.SELLER):
            net.apply(
                peer.address,
                peer.report_delivery(
                    slot, exported_wh=_own(peer, slot, Role.SELLER), imported_wh=0, now_ms=net.now
                ),
            )
    net.run_until(net.now + 200)
    deadline = peers[0].delivery_deadline_ms(slot)
    assert deadline == (slot + 120) * 1000
    assert peers[0].next_wakeup_ms() <= deadline
    before = _events(net, peers[0].address, DeliveryUnreported, slot)
    assert not before  # nothing is given up before the deadline
    net.run_until(deadline + 1000)
    for peer in peers:
        settled = _events(net, peer.address, DeliverySettled, slot)
        unreported = _events(net, peer.address, DeliveryUnreported, slot)
        assert sorted([*settled, *unreported]) == trades
        assert set(unreported) == {i for i in trades if fills[i].seller == silent_seller}
        # buyer reports were never sent: the seller's alone settled these
        assert all(e.settlement.buyer_report is None for e in settled.values())
    # once settled or given up, nothing more is scheduled for delivery
    assert all(p.next_wakeup_ms() != deadline for p in peers)


def test_bad_delivery_messages_are_refused() -> None:
    net, peers, slot, trades = _traded(4)
    fills = peers[0].finals[slot].result.fills
    i = trades[0]
    fill = fills[i]
    buyer = next(p for p in peers if p.member_id == fill.buyer)
    seller = next(p for p in peers if p.member_id == fill.seller)
    third = next((p for p in peers if p.member_id not in (fill.buyer, fill.seller)), None)
    trade = _events(net, seller.address, TradeSigned, slot)[i].trade
    seq = [10**13]

    def send(sender: Peer, to: str, payload: dict[str, Any]) -> str:
        seq[0] += 1
        env = seal(
            sender.identity,
            community=sender.community_id,
            seq=seq[0],
            ts_ms=net.now,
            type="delivery",
            payload=payload,
        )
        before = len(net.events[to])
        net.inject(to, env.to_wire(), sender="inject")
        net.run_until(net.now + 3)
        codes = [e.code for _, e in net.events[to][before:] if isinstance(e, Rejected)]
        return codes[-1] if codes else ""

    good = report_delivery(trade.terms, seller.identity, seller.member_id, Role.SELLER, 1, net.now)
    assert send(seller, buyer.address, {"slot": slot + 60, "reports": []}) == "bad_delivery"
    assert send(seller, buyer.address, {"slot": slot, "reports": ["x"]}) == "bad_delivery"
    assert send(seller, buyer.address, {"slot": slot, "reports": [{"fill": 999}]}) == "bad_delivery"
    assert (
        send(seller, buyer.address, {"slot": slot, "reports": [{"fill": i, "report": {}}]})
        == "bad_delivery"
    )
    # the buyer cannot report for the seller, a report of another trade is refused, and a
    # report signed by someone else is refused
    as_buyer = {"fill": i, "report": good.to_dict()}
    assert send(buyer, seller.address, {"slot": slot, "reports": [as_buyer]}) == "bad_delivery"
    other = good.to_dict() | {"trade_id": "0" * 64}
    assert (
        send(seller, buyer.address, {"slot": slot, "reports": [{"fill": i, "report": other}]})
        == "bad_delivery"
    )
    if third is not None:
        forged = report_delivery(
            trade.terms, third.identity, seller.member_id, Role.SELLER, 1, net.now
        )
        item = {"fill": i, "report": forged.to_dict()}
        assert send(seller, buyer.address, {"slot": slot, "reports": [item]}) == "bad_delivery"
    # the genuine report is accepted
    assert (
        send(
            seller,
            buyer.address,
            {"slot": slot, "reports": [{"fill": i, "report": good.to_dict()}]},
        )
        == ""
    )
    with pytest.raises(ProtocolError, match="integer"):
        seller.report_delivery(slot, exported_wh=1.5, imported_wh=0, now_ms=net.now)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="negative"):
        seller.report_delivery(slot, exported_wh=-1, imported_wh=0, now_ms=net.now)
    assert seller.report_delivery(slot + 600, exported_wh=1, imported_wh=0, now_ms=net.now) == []


def test_settlement_and_delivery_state_survive_a_restart() -> None:
    """A party restarted after metering still settles with the counterparty's report."""
    import json

    from .helpers import make_identity

    net, peers, slot, trades = _traded(4)
    fills = peers[0].finals[slot].result.fills
    i = trades[0]
    seller = next(p for p in peers if p.member_id == fills[i].seller)
    buyer = next(p for p in peers if p.member_id == fills[i].buyer)
    net.run_until((slot + 60) * 1000)
    # the seller meters and reports, then Home Assistant restarts before the buyer reports
    net.apply(
        seller.address,
        seller.report_delivery(
            slot, exported_wh=_own(seller, slot, Role.SELLER), imported_wh=0, now_ms=net.now
        ),
    )
    net.run_until(net.now + 50)
    data = json.loads(json.dumps(seller.snapshot()))  # what the Store writes and reads
    assert [item["slot"] for item in data["settling"]] == [slot]
    index = peers.index(seller)
    restored = Peer.restore(make_identity(f"p{index}"), data, net.now)
    net.peers[seller.address] = restored
    peers[index] = restored
    assert restored.finals[slot].result_hash == buyer.finals[slot].result_hash
    # reporting again after the restart is ignored: the reading was kept
    assert restored.report_delivery(slot, exported_wh=0, imported_wh=0, now_ms=net.now) == []
    before = len(net.events[seller.address])
    net.apply(
        buyer.address,
        buyer.report_delivery(
            slot, exported_wh=0, imported_wh=_own(buyer, slot, Role.BUYER), now_ms=net.now
        ),
    )
    net.run_until(net.now + 50)
    after = [e for _, e in net.events[seller.address][before:] if isinstance(e, DeliverySettled)]
    assert i in {e.fill for e in after}
    settled = next(e for e in after if e.fill == i)
    assert settled.settlement.buyer_report is not None
    assert settled.settlement.shortfall_wh == 0
    # nothing left to keep once every trade of the slot is settled or given up
    net.run_until(restored.delivery_deadline_ms(slot) + 1000)
    assert restored.snapshot()["settling"] == []
    # a snapshot of an older version (without "settling") still loads
    del data["settling"]
    assert Peer.restore(make_identity(f"p{index}"), data, net.now).joined
