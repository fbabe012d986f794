"""Community charter, invitations, joining, leaving, removal and device enrolment."""

from __future__ import annotations

import pytest

from custom_components.peer_energy.core.community import (
    INVITATION_PREFIX,
    Charter,
    CommunityError,
    CommunityRules,
    Invitation,
    InvitationError,
    Membership,
)
from custom_components.peer_energy.core.identity import enrol_asset
from custom_components.peer_energy.core.memnet import MemNet
from custom_components.peer_energy.core.orders import MarketRules
from custom_components.peer_energy.core.protocol import (
    DeviceEnrolled,
    Peer,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Rejected,
)

from .helpers import START_MS, build, make_identity, rules, secret


def _events(net: MemNet, address: str, kind: type) -> list:
    return [e for _, e in net.events[address] if isinstance(e, kind)]


def _codes(net: MemNet, address: str) -> list[str]:
    return [e.code for e in _events(net, address, Rejected)]


def test_invitation_round_trip_and_damage() -> None:
    founder = make_identity("a")
    inv = Invitation("ab" * 16, founder.public_key, "http://a:8123", secret("x"), START_MS)
    text = inv.encode()
    assert text.startswith(INVITATION_PREFIX)
    assert secret("x").hex() not in text  # base64, not the raw hex
    again = Invitation.decode("  " + text[:20] + "\n" + text[20:] + " ")
    assert again == inv
    assert again.invitation_id == inv.invitation_id
    assert len(inv.invitation_id) == 32
    assert "secret" not in repr(inv)
    with pytest.raises(InvitationError, match="starts with"):
        Invitation.decode("hello")
    with pytest.raises(InvitationError, match="damaged"):
        Invitation.decode(text[:-7] + "!!!")
    with pytest.raises(InvitationError, match="damaged"):
        Invitation.decode(INVITATION_PREFIX + "e3")  # not JSON
    with pytest.raises(InvitationError, match="malformed"):
        Invitation.decode(
            INVITATION_PREFIX
            + __import__("base64")
            .urlsafe_b64encode(
                b'{"a":"x","c":"'
                + b"ab" * 16
                + b'","e":1,"i":"'
                + founder.public_key.encode()
                + b'","s":"zz"}'
            )
            .decode()
        )
    with pytest.raises(InvitationError, match="wrong fields"):
        Invitation.decode(INVITATION_PREFIX + "e30=")
    with pytest.raises(InvitationError):
        Invitation("ab" * 16, founder.public_key, "a", b"short", START_MS)
    with pytest.raises(InvitationError):
        Invitation("xy", founder.public_key, "a", secret("x"), START_MS)
    proof = inv.proof(founder.public_key, "addr")
    assert inv.check_proof(founder.public_key, "addr", proof)
    assert not inv.check_proof(founder.public_key, "other", proof)


def test_rules_and_charter_validation() -> None:
    r = rules()
    assert CommunityRules.from_dict(r.to_dict()) == r
    assert r.quorum(3) == 2
    assert r.quorum(50) == 26
    assert r.quorum(1) == 1
    with pytest.raises(CommunityError, match="before the slot starts"):
        CommunityRules(gate_closure_lead_s=5, sync_window_ms=4000, attest_window_ms=2000)
    with pytest.raises(CommunityError, match="more than half"):
        CommunityRules(quorum_bp=5000)
    with pytest.raises(CommunityError):
        CommunityRules(max_members=1)
    with pytest.raises(CommunityError):
        CommunityRules(credit_limit_base=-1)
    with pytest.raises(CommunityError):
        CommunityRules(sync_window_ms=0)
    with pytest.raises(CommunityError):
        CommunityRules(gate_closure_lead_s=0)
    with pytest.raises(CommunityError, match="unknown fields"):
        CommunityRules.from_dict({"colour": 1})
    with pytest.raises(CommunityError, match="an object"):
        CommunityRules.from_dict([])
    with pytest.raises(CommunityError, match="max_members"):
        CommunityRules.from_dict({"max_members": "many"})
    with pytest.raises(CommunityError, match="slot_seconds"):
        CommunityRules.from_dict({"market": {"slot_seconds": 7}})
    founder = make_identity("a").public_key
    charter = Charter("Street", founder, START_MS, "n", r)
    assert charter.admins == (founder,)
    assert Charter.from_dict(charter.to_dict()) == charter
    assert len(charter.community_id) == 32
    assert Charter("Street", founder, START_MS, "m", r).community_id != charter.community_id
    for bad in (
        {"name": ""},
        {"founder": "x"},
        {"created_ms": -1},
        {"nonce": "n" * 65},
        {"admins": ("x",)},
    ):
        fields = {"name": "S", "founder": founder, "created_ms": 0, "nonce": "", **bad}
        with pytest.raises(CommunityError):
            Charter(**fields)  # type: ignore[arg-type]
    with pytest.raises(CommunityError, match="missing"):
        Charter.from_dict({"name": "S"})
    with pytest.raises(CommunityError):
        Charter.from_dict("charter")
    with pytest.raises(CommunityError):
        Charter.from_dict({**charter.to_dict(), "admins": "all"})
    assert r.slot_seconds == 60
    assert r.fee == 1
    assert r.fair_share_bp == 10_000


def test_membership_rules() -> None:
    a, b, c = (make_identity(n).public_key for n in "abc")
    ms = Membership(Charter("S", a, 0, "", rules(max_members=2)), "addr-a")
    with pytest.raises(CommunityError, match="sponsor"):
        ms.add(b, "addr-b", c, 10)
    with pytest.raises(CommunityError, match="64-hex"):
        ms.add("nope", "addr", a, 10)
    with pytest.raises(CommunityError, match="address"):
        ms.add(b, "", a, 10)
    ms.add(b, "addr-b", a, 10)
    assert ms.roster() == tuple(sorted((a, b)))
    assert ms.roster(5) == (a,)
    with pytest.raises(CommunityError, match="already"):
        ms.add(b, "addr-b", a, 20)
    with pytest.raises(CommunityError, match="full"):
        ms.add(c, "addr-c", a, 20)
    with pytest.raises(CommunityError, match="admin"):
        ms.end(a, b, 30)
    with pytest.raises(CommunityError, match="not a current"):
        ms.end(c, a, 30)
    with pytest.raises(CommunityError, match="not a current"):
        ms.set_address(c, "x")
    ms.set_address(b, "addr-b2")
    assert ms.address_of(b) == "addr-b2"
    ms.end(b, a, 30)
    assert not ms.is_member(b)
    assert ms.is_member(b, 20)
    assert ms.address_of(b) is None
    assert ms.admins == (a,)
    ms2 = Membership(Charter("S", a, 0, "", rules(), (b,)), "x")
    ms2.add(b, "addr-b", a, 1)
    with pytest.raises(CommunityError, match="founder"):
        ms2.end(a, b, 5)


def test_join_through_invitations_and_second_sponsor() -> None:
    net, peers = build(3)
    p0, p1, _ = peers
    assert all(p.joined for p in peers)
    assert {e.member for e in _events(net, "p0", PeerJoined)} == {
        peers[1].member_id,
        peers[2].member_id,
    }
    # p1 (not the founder) sponsors p3; p3 still learns everyone's address
    inv = p1.invite(secret("p3"), net.now)
    p3, outs = Peer.joining(make_identity("p3"), inv.encode(), address="p3", now_ms=net.now)
    assert not p3.joined
    with pytest.raises(ProtocolError):
        p3.submit_orders(0, [], net.now)
    net.add(p3)
    net.apply("p3", outs)
    net.run_until(net.now + 100)
    assert p3.joined
    assert p3.community_id == p0.community_id
    assert p3.rules == p0.rules
    assert p3.membership.address_of(p0.member_id) == "p0"
    for p in (*peers, p3):
        assert len(p.roster()) == 4
    joined = _events(net, "p2", PeerJoined)
    assert joined[-1].member == p3.member_id
    assert joined[-1].sponsor == p1.member_id


def test_bad_joins_are_rejected() -> None:
    net, peers = build(2, community_rules=rules(max_members=3))
    p0 = peers[0]
    inv = p0.invite(secret("j"), net.now, ttl_ms=60_000)
    # a proof made with another secret
    forged = Invitation(inv.community, inv.inviter, inv.address, secret("guess"), inv.expires_ms)
    bad, outs = Peer.joining(make_identity("bad"), forged, address="bad", now_ms=net.now)
    net.add(bad)
    net.apply("bad", outs)
    net.run_until(net.now + 50)
    assert _codes(net, "p0")[-1] == "bad_invitation"  # its id is not a pending invitation
    joiner, outs = Peer.joining(make_identity("j"), inv.encode(), address="j", now_ms=net.now)
    net.add(joiner)
    net.apply("j", outs)
    net.run_until(net.now + 50)
    assert joiner.joined
    # reuse of a one-time invitation
    again, outs = Peer.joining(make_identity("k"), inv.encode(), address="k", now_ms=net.now)
    net.add(again)
    net.apply("k", outs)
    net.run_until(net.now + 50)
    assert not again.joined
    assert _codes(net, "p0")[-1] == "bad_invitation"
    # full community
    inv2 = p0.invite(secret("l"), net.now)
    late, outs = Peer.joining(make_identity("l"), inv2, address="l", now_ms=net.now)
    net.add(late)
    net.apply("l", outs)
    net.run_until(net.now + 50)
    assert not late.joined
    assert _codes(net, "p0")[-1] == "community_full"
    # expired invitation: refused locally and by the inviter
    inv3 = p0.invite(secret("m"), net.now, ttl_ms=10)
    with pytest.raises(InvitationError, match="expired"):
        Peer.joining(make_identity("m"), inv3, address="m", now_ms=net.now + 11)
    # a wrong proof for a valid invitation
    inv4 = p0.invite(secret("n"), net.now)
    liar, outs = Peer.joining(make_identity("n"), inv4, address="n", now_ms=net.now)
    liar.address = "n"
    wrong = Invitation(inv4.community, inv4.inviter, inv4.address, secret("n"), inv4.expires_ms)
    assert wrong.invitation_id == inv4.invitation_id
    net.add(liar)
    from custom_components.peer_energy.core.envelope import seal

    env2 = seal(
        liar.identity,
        community=p0.community_id,
        seq=1,
        ts_ms=net.now,
        type="join",
        payload={"invitation": inv4.invitation_id, "address": "n", "proof": "00" * 32},
    )
    net.inject("p0", env2.to_wire(), sender="n")
    net.run_until(net.now + 50)
    assert _codes(net, "p0")[-1] == "bad_proof"
    with pytest.raises(ProtocolError):
        liar.invite(secret("z"), net.now)


def test_leave_remove_address_and_enrolment() -> None:
    net, peers = build(4)
    p0, p1, p2, p3 = peers
    # a device enrolment is announced to everyone
    home = make_identity("p1")
    asset = make_identity("p1-battery")
    enrolment = enrol_asset(p1.member_id, home, asset, "battery-1", "battery", net.now)
    net.apply("p1", p1.enrol(enrolment, net.now))
    net.run_until(net.now + 50)
    enrolled = _events(net, "p2", DeviceEnrolled)
    assert enrolled[-1] == DeviceEnrolled(p1.member_id, "battery-1", "battery", asset.public_key)
    # someone else's enrolment is refused
    other = enrol_asset(p2.member_id, make_identity("p2"), make_identity("x"), "x", "plug", net.now)
    with pytest.raises(ProtocolError):
        p1.enrol(other, net.now)
    # a new address reaches everyone
    net.apply("p3", p3.set_address("p3-new", net.now))
    net.peers["p3-new"] = net.peers.pop("p3")
    net.events["p3-new"] = net.events["p3"]
    net.run_until(net.now + 50)
    assert p0.membership.address_of(p3.member_id) == "p3-new"
    # only admins remove
    with pytest.raises(ProtocolError, match="admins"):
        p1.remove(p2.member_id, net.now)
    net.apply("p0", p0.remove(p2.member_id, net.now))
    net.run_until(net.now + 50)
    left = _events(net, "p1", PeerLeft)
    assert left[-1] == PeerLeft(p2.member_id, p0.member_id, True)
    assert not p2.joined
    assert p2.member_id not in p1.roster()
    # a removed member's messages are refused as from a non-member
    net.apply("p2", [])
    from custom_components.peer_energy.core.envelope import seal

    stale = seal(
        p2.identity,
        community=p0.community_id,
        seq=10**13,
        ts_ms=net.now,
        type="digest",
        payload={"slot": 0, "root": "", "full": False, "bids": []},
    )
    net.inject("p1", stale.to_wire(), sender="p2")
    net.run_until(net.now + 50)
    assert _codes(net, "p1")[-1] == "unknown_sender"
    # leaving
    net.apply("p1", p1.leave(net.now))
    net.run_until(net.now + 50)
    assert not p1.joined
    assert _events(net, "p0", PeerLeft)[-1] == PeerLeft(p1.member_id, p1.member_id, False)
    assert len(p0.roster()) == 2
    assert len(net.peers["p3-new"].roster()) == 2
    with pytest.raises(ProtocolError):
        p1.leave(net.now)


def test_founding_with_rules() -> None:
    r = CommunityRules(market=MarketRules(slot_seconds=900, distributor_fee=2), max_members=10)
    peer = Peer.found(
        make_identity("f"), name="Lane", rules=r, address="f", now_ms=START_MS, nonce=b"1" * 16
    )
    assert peer.roster() == (peer.member_id,)
    assert peer.membership.admins == (peer.member_id,)
    assert peer.rules.fee == 2
    assert peer.next_wakeup_ms() == r.gate_closure_ms(peer._next_slot)
    assert peer.tick(START_MS) == []
