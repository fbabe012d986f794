"""The error policy: a peer's bad message is refused with a code and changes nothing; our
own bugs propagate; strangers cost no per-key state."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from custom_components.peer_energy.core.federation.protocol import (
    EquivocationDetected,
    Peer,
    Rejected,
    SlotCleared,
)
from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.core.trust.envelope import seal
from custom_components.peer_energy.core.trust.identity import Identity

from .helpers import build, next_slot, orders_for, run_slot, secret, submit_all


def _signed(peer: Peer, type_: str, payload: dict[str, Any], now: int, seq: int) -> bytes:
    return seal(
        peer.identity, community=peer.community_id, seq=seq, ts_ms=now, type=type_,
        payload=payload,
    ).to_wire()  # fmt: skip


def _codes(out: list[Any]) -> list[str]:
    return [o.code for o in out if isinstance(o, Rejected)]


def test_our_own_bug_propagates_out_of_receive(monkeypatch: pytest.MonkeyPatch) -> None:
    net, peers = build(2)
    slot = next_slot(net, peers)
    out = peers[1].submit_orders(slot, orders_for(peers[1], 1, slot), net.now)
    data = out[0].data  # type: ignore[union-attr]

    def broken(msg: object) -> None:
        raise ZeroDivisionError("a bug in a check")

    handler = peers[0]._handlers["bid"]
    monkeypatch.setitem(peers[0]._handlers, "bid", type(handler)(broken, handler.apply))
    with pytest.raises(ZeroDivisionError):
        peers[0].receive(data, "p1", net.now)


def test_strangers_joins_leave_no_per_key_state() -> None:
    """Validly signed joins from 3,000 fresh keys: all refused, no replay-guard entry,
    nobody counted as heard from, memory flat."""
    net, peers = build(2)
    founder = peers[0]
    open_invitation = founder.invite(secret("open"), net.now)
    guard = founder._ctx.guard
    before = (guard.highest(), dict(founder._ctx.heard), len(founder._ctx.seen))

    def join(k: int) -> list[Any]:
        stranger = Identity(k.to_bytes(32, "big"))
        payload = {
            "invitation": open_invitation.invitation_id if k % 2 else f"{k:032x}",
            "address": f"http://10.0.{k % 250}.1:8123",
            "proof": f"{k:064x}",
        }
        data = _signed_from(stranger, founder.community_id, payload, net.now, k + 1)
        return founder.receive(data, "stranger", net.now)

    for k in range(1, 301):  # warm up (caches, interned strings)
        assert _codes(join(k)) in (["bad_invitation"], ["bad_proof"])
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for k in range(301, 3_301):
            assert _codes(join(k)) in (["bad_invitation"], ["bad_proof"])
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert (guard.highest(), dict(founder._ctx.heard), len(founder._ctx.seen)) == before
    assert grown < 20_000  # bytes for 3,000 joins (a guard entry and a cached key were ~450 each)


def _signed_from(
    who: Identity, community: str, payload: dict[str, Any], now: int, seq: int
) -> bytes:
    return seal(
        who, community=community, seq=seq, ts_ms=now, type="join", payload=payload
    ).to_wire()


def test_a_join_proof_that_is_not_ascii_is_a_wrong_proof() -> None:
    net, peers = build(2)
    inv = peers[0].invite(secret("x"), net.now)
    payload = {"invitation": inv.invitation_id, "address": "s", "proof": "é" * 64}
    data = _signed_from(Identity(b"\x07" * 32), peers[0].community_id, payload, net.now, 1)
    assert _codes(peers[0].receive(data, "s", net.now)) == ["bad_proof"]


def test_a_record_of_no_known_type_is_refused_whatever_its_type_field() -> None:
    net, peers = build(2)
    for k, bad_type in enumerate(([], {}, None, 3)):
        item = {"type": bad_type, "ts": net.now}
        data = _signed(peers[1], "records", {"records": [item]}, net.now, 10**13 + k)
        assert _codes(peers[0].receive(data, "p1", net.now)) == ["not_a_record"]


def test_a_refused_record_is_not_remembered_and_is_checked_again() -> None:
    net, peers = build(3)
    p0, p1, p2 = peers
    slot = next_slot(net, peers)
    order = Order.single("x", p1.member_id, Side.BUY, slot, 1_000, 20)  # costs 21,000
    bid = p1.submit_orders(slot, [order], net.now)[0].data  # type: ignore[union-attr]
    from custom_components.peer_energy.core.trust.canonical import decode

    record = decode(bid)
    p0.set_balances({p1.member_id: 20_000 - p0.rules.credit_limit_base})
    bundle = _signed(p2, "records", {"records": [record]}, net.now, 10**13)
    assert _codes(p0.receive(bundle, "p2", net.now)) == ["over_credit_limit"]
    assert p0._slots.get(slot) is None or not p0._slots[slot].bids  # nothing kept
    p0.set_balances({p1.member_id: 0})  # the ledger moved on: the same record is fine now
    again = _signed(p2, "records", {"records": [record]}, net.now, 10**13 + 1)
    assert _codes(p0.receive(again, "p2", net.now)) == []
    assert p1.member_id in p0._slots[slot].bids


def test_a_delivery_item_without_its_report_is_refused() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    final = peers[0].finals[slot]
    fill = next(i for i, f in enumerate(final.result.fills) if f.buyer != f.seller)
    party = next(p for p in peers if p.member_id == final.result.fills[fill].seller)
    target = next(p for p in peers if p is not party)
    for item in ({"fill": fill}, {"fill": fill, "report": None}, {"fill": fill, "report": []}):
        data = _signed(
            party, "delivery", {"slot": slot, "reports": [item]}, net.now, 10**13 + len(str(item))
        )
        assert _codes(target.receive(data, party.address, net.now)) == ["bad_delivery"]


def _void_at_p3() -> tuple[Any, list[Peer], int]:
    net, peers = build(4)
    slot = next_slot(net, peers)
    net.partition([["p0", "p1", "p2"], ["p3"]])
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    return net, peers, slot


def test_slot_data_with_an_attestation_of_another_slot_changes_nothing() -> None:
    net, peers, slot = _void_at_p3()
    state = peers[3]._slots[slot]
    books, attests = dict(state.books), {m: dict(p) for m, p in state.attests.items()}
    data = peers[0].slot_data(slot)
    assert data is not None
    other = dict(data["attests"][0]) | {
        "payload": {**data["attests"][0]["payload"], "slot": slot + 60}
    }
    bad = _signed(
        peers[2], "slot_data", data | {"attests": [*data["attests"], other]}, net.now, 10**13
    )
    assert _codes(peers[3].receive(bad, "p2", net.now)) == ["bad_slot_data"]
    assert (state.books, {m: dict(p) for m, p in state.attests.items()}) == (books, attests)
    assert peers[3]._slots.get(slot + 60) is None


def test_valid_slot_data_short_of_a_quorum_is_kept_not_refused() -> None:
    net, peers, slot = _void_at_p3()
    data = peers[0].slot_data(slot)
    assert data is not None
    first = _signed(peers[2], "slot_data", data | {"attests": data["attests"][:1]}, net.now, 10**13)
    out = peers[3].receive(first, "p2", net.now)
    assert out == [] or not _codes(out)  # accepted: valid, not final yet
    state = peers[3]._slots[slot]
    assert peers[0].finals[slot].book_hash in state.books
    assert slot not in peers[3].finals
    rest = _signed(peers[2], "slot_data", data, net.now, 10**13 + 1)
    assert any(isinstance(o, SlotCleared) for o in peers[3].receive(rest, "p2", net.now))


def test_a_welcome_without_our_record_changes_nothing() -> None:
    net, peers = build(3)
    inv = peers[0].invite(secret("late"), net.now)
    joiner, _ = Peer.joining(Identity(b"\x05" * 32), inv, address="j", now_ms=net.now)
    membership, rules = joiner.membership, joiner.rules
    ms = peers[0].membership
    welcome = {"charter": ms.charter.to_dict(), "records": list(ms.records.values())}
    data = _signed(peers[0], "welcome", welcome, net.now, 10**13)
    assert _codes(joiner.receive(data, "p0", net.now)) == ["bad_membership"]
    assert joiner.membership is membership
    assert joiner.rules is rules
    assert not joiner.joined


def test_an_equivocators_further_bids_are_not_stored() -> None:
    net, peers = build(3)
    slot = next_slot(net, peers)
    p1 = peers[1]
    out: list[Any] = []
    for k in range(5):
        order = Order.single("x", p1.member_id, Side.SELL, slot, 100, 10 + k).to_dict()
        data = _signed(p1, "bid", {"slot": slot, "orders": [order]}, net.now, 10**13 + k)
        out.extend(peers[0].receive(data, "p1", net.now))
    assert sum(isinstance(o, EquivocationDetected) for o in out) == 1
    assert len(peers[0]._slots[slot].bids[p1.member_id]) == 2  # the proof, nothing more
