"""Edge cases of individual messages and records, each refused with its code."""

from __future__ import annotations

from typing import Any

import pytest

from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import (
    MAX_ORDERS_PER_BID,
    Peer,
    Rejected,
    qualified_orders,
    verify_record,
)
from custom_components.peer_energy.core.market.orders import Order, OrderError, Side
from custom_components.peer_energy.core.trust.envelope import seal

from .helpers import build, make_identity, next_slot, secret

_SEQ = [10**13]


def _send(
    net: MemNet, sender: Peer, to: str, type_: str, payload: dict[str, Any], ts: int | None = None
) -> str:
    _SEQ[0] += 1
    env = seal(
        sender.identity,
        community=sender.community_id,
        seq=_SEQ[0],
        ts_ms=net.now if ts is None else ts,
        type=type_,
        payload=payload,
    )
    before = len(net.events[to])
    net.inject(to, env.to_wire(), sender="inject")
    net.run_until(net.now + 5)
    codes = [
        e.code
        for _, e in net.events[to][before:]
        if isinstance(e, Rejected) and e.sender_address == "inject"
    ]
    return codes[-1] if codes else ""


def _record(peer: Peer, type_: str, payload: dict[str, Any], ts: int) -> dict[str, Any]:
    _SEQ[0] += 1
    return seal(
        peer.identity,
        community=peer.community_id,
        seq=_SEQ[0],
        ts_ms=ts,
        type=type_,
        payload=payload,
    ).to_dict()


def test_verify_record_refusals() -> None:
    net, peers = build(2)
    kr, cid = peers[0].membership.keyring, peers[0].community_id
    assert verify_record("x", community=cid, keyring=kr)[1] == "malformed"
    assert verify_record({"type": "digest"}, community=cid, keyring=kr)[1] == "not_a_record"
    assert (
        verify_record({"type": "bid", "ts": "1"}, community=cid, keyring=kr)[1]
        == "wrong_field_type"
    )
    order = Order.single("x", "m", Side.BUY, 0, 1, 1).to_dict()
    with pytest.raises(OrderError, match="at most"):
        qualified_orders("m", {"slot": 0, "orders": [order] * (MAX_ORDERS_PER_BID + 1)})


def test_attestation_and_digest_refusals() -> None:
    net, peers = build(3)
    p0, p1 = peers[0], peers[1]
    slot = next_slot(net, peers)
    g = p0.rules.gate_closure_ms(slot)
    good = "a" * 64
    assert (
        _send(net, p1, "p0", "attest", {"slot": slot, "book": "short", "result": good})
        == "bad_attestation"
    )
    assert (
        _send(net, p1, "p0", "attest", {"slot": slot, "book": good, "result": good})
        == "bad_attestation"
    )
    far = slot + 3 * 86_400
    assert (
        _send(net, p1, "p0", "attest", {"slot": far, "book": good, "result": good}) == "stale_slot"
    )
    assert (
        _send(net, p1, "p0", "digest", {"slot": far, "root": "", "full": False, "bids": []})
        == "stale_slot"
    )
    assert (
        _send(net, p1, "p0", "slot_data", {"slot": far, "bids": [], "attests": [], "fairness": {}})
        == "stale_slot"
    )
    # fetch of an unknown slot or book: silently nothing
    assert _send(net, p1, "p0", "fetch", {"slot": slot, "book": good}) == ""
    assert _send(net, p1, "p0", "fetch", {"slot": slot + 60, "book": ""}) == ""
    net.run_until(g + 1)
    assert _send(net, p1, "p0", "fetch", {"slot": slot, "book": ""}) == ""


def test_forwarded_records_refusals() -> None:
    net, peers = build(3)
    p0, p1, p2 = peers
    outsider = Peer.found(
        make_identity("o"), name="Other", rules=p0.rules, address="o", now_ms=net.now, nonce=b"o"
    )
    foreign = _record(outsider, "address", {"address": "x"}, net.now)
    foreign["community"] = p0.community_id
    items = [
        "not a record",
        _record(p1, "address", {"address": "x"}, net.now) | {"type": "digest"},
        foreign,
    ]
    before = len(net.events["p0"])
    _send(net, p2, "p0", "records", {"records": items})
    codes = [
        e.code
        for _, e in net.events["p0"][before:]
        if isinstance(e, Rejected) and e.sender_address == "inject"
    ]
    assert codes == ["malformed", "not_a_record", "unknown_sender"]
    # membership records that are not allowed
    leave_other = _record(p1, "leave", {"member": p2.member_id}, net.now)
    remove_self = _record(p1, "remove", {"member": p1.member_id}, net.now)
    bad_enrol = _record(p1, "enrol", {"enrolment": {"member": p1.member_id}}, net.now)
    before = len(net.events["p0"])
    _send(net, p2, "p0", "records", {"records": [leave_other, remove_self, bad_enrol]})
    codes = [
        e.code
        for _, e in net.events["p0"][before:]
        if isinstance(e, Rejected) and e.sender_address == "inject"
    ]
    assert codes == ["bad_membership"] * 3
    assert len(p0.roster()) == 3


def test_welcome_and_joining_refusals() -> None:
    net, peers = build(2)
    p0, p1 = peers
    charter = p0.membership.charter.to_dict()
    # a member never accepts a welcome
    assert _send(net, p1, "p0", "welcome", {"charter": charter, "records": []}) == "bad_membership"
    inv = p0.invite(secret("w"), net.now)
    joiner, _ = Peer.joining(make_identity("w"), inv, address="w", now_ms=net.now)
    net.add(joiner)
    # not from the inviter
    assert _send(net, p1, "w", "welcome", {"charter": charter, "records": []}) == "unknown_sender"
    # a member message before the welcome
    assert (
        _send(net, p0, "w", "digest", {"slot": 0, "root": "", "full": False, "bids": []})
        == "not_joined"
    )
    # a damaged charter, or one of another community
    assert (
        _send(net, p0, "w", "welcome", {"charter": {"name": "x"}, "records": []})
        == "bad_membership"
    )
    other = dict(charter) | {"nonce": "other"}
    assert _send(net, p0, "w", "welcome", {"charter": other, "records": []}) == "bad_membership"
    # the right charter but no record admitting the joiner
    assert _send(net, p0, "w", "welcome", {"charter": charter, "records": []}) == "bad_membership"
    assert not joiner.joined
    assert joiner.tick(net.now) == []
    assert joiner.catch_up(net.now) == []
