"""Community charter, invitations, joining, leaving, removal and device enrolment."""

from __future__ import annotations

import json

import pytest

from custom_components.peer_energy.core.federation.community import (
    INVITATION_PREFIX,
    Charter,
    CommunityError,
    CommunityRules,
    Invitation,
    InvitationError,
    Membership,
)
from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import (
    DeviceEnrolled,
    Peer,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Rejected,
    Send,
)
from custom_components.peer_energy.core.market.orders import MarketRules
from custom_components.peer_energy.core.trust.envelope import seal
from custom_components.peer_energy.core.trust.identity import enrol_asset

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
    from custom_components.peer_energy.core.trust.envelope import seal

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
    from custom_components.peer_energy.core.trust.envelope import seal

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


def _welcome_to(outputs: list, address: str) -> bytes:
    """The one welcome in ``outputs``, sent to ``address``."""
    sends = [o for o in outputs if isinstance(o, Send) and b'"type":"welcome"' in o.data]
    assert [s.to for s in sends] == [address]
    return sends[0].data


def test_repeated_join_gets_the_welcome_again() -> None:
    """A lost welcome (the joiner restarted) is not fatal: the same key sending the same
    join again gets the welcome again, also from a restored inviter and after the expiry;
    another key, a wrong proof or a member who has left are still refused."""
    now = START_MS
    p0 = Peer.found(
        make_identity("p0"), name="Lane", rules=rules(), address="p0", now_ms=now, nonce=b"n" * 16
    )
    inv = p0.invite(secret("j"), now, ttl_ms=60_000)
    joiner = make_identity("j")
    j, outs = Peer.joining(joiner, inv.encode(), address="j", now_ms=now)
    first = p0.receive(outs[0].data, "j", now + 1)
    assert [type(o) for o in first] == [Send, PeerJoined]
    assert not j.joined  # the welcome is lost
    assert p0.open_invitations(now + 1) == 0

    again = p0.receive(j.join_again(now + 2)[0].data, "j", now + 2)
    welcome = _welcome_to(again, "j")
    assert not any(isinstance(o, PeerJoined | Rejected) for o in again)  # no second record
    assert len(p0.roster()) == 2
    assert [e.member for e in j.receive(welcome, "p0", now + 3)] == [joiner.public_key]
    assert j.joined
    assert j.roster() == p0.roster()
    with pytest.raises(ProtocolError, match="not joining"):
        j.join_again(now + 4)
    # the first welcome arriving late is ignored
    assert [e.code for e in j.receive(_welcome_to(first, "j"), "p0", now + 4)] == ["bad_membership"]

    # another key with the used invitation is refused, as is the same key with a bad proof
    k, k_outs = Peer.joining(make_identity("k"), inv, address="k", now_ms=now + 5)
    assert [e.code for e in p0.receive(k_outs[0].data, "k", now + 5)] == ["bad_invitation"]
    forged = Invitation(inv.community, inv.inviter, inv.address, secret("x"), inv.expires_ms)
    fake = seal(
        joiner,
        community=p0.community_id,
        seq=now + 10_000,
        ts_ms=now + 6,
        type="join",
        payload={
            "invitation": inv.invitation_id,
            "address": "j",
            "proof": forged.proof(joiner.public_key, "j"),
        },
    )
    assert [e.code for e in p0.receive(fake.to_wire(), "j", now + 6)] == ["bad_proof"]
    # the same key with a valid proof for another address: the welcome goes nowhere else
    _, moved = Peer.joining(joiner, inv, address="elsewhere", now_ms=now + 7)
    assert [e.code for e in p0.receive(moved[0].data, "j", now + 7)] == ["bad_invitation"]

    # the inviter restarts (snapshot through JSON); the joiner resumes after the expiry
    later = inv.expires_ms + 1_000
    data = json.loads(json.dumps(p0.snapshot()))
    assert [i.get("used_by") for i in data["invitations"]] == [joiner.public_key]
    p0r = Peer.restore(p0.identity, data, later)
    assert p0r.open_invitations(later) == 0
    with pytest.raises(InvitationError, match="expired"):
        Peer.joining(joiner, inv.encode(), address="j", now_ms=later)
    j2, outs2 = Peer.joining(joiner, inv.encode(), address="j", now_ms=later, resume=True)
    welcome2 = _welcome_to(p0r.receive(outs2[0].data, "j", later), "j")
    assert [type(e) for e in j2.receive(welcome2, "p0", later + 1)] == [PeerJoined]
    assert j2.joined
    k2, k2_outs = Peer.joining(make_identity("k"), inv, address="k", now_ms=later, resume=True)
    assert [e.code for e in p0r.receive(k2_outs[0].data, "k", later)] == ["bad_invitation"]

    # once the member has left, its key is refused and the used invitation is not stored
    p0r.receive(j2.leave(later + 2)[0].data, "j", later + 2)
    assert len(p0r.roster()) == 1
    j3, outs3 = Peer.joining(joiner, inv.encode(), address="j", now_ms=later + 3, resume=True)
    assert [e.code for e in p0r.receive(outs3[0].data, "j", later + 3)] == ["unknown_sender"]
    restarted = p0r.snapshot()
    assert restarted["invitations"] == []
    assert restarted["used_invitations"] == [inv.invitation_id]


def test_old_snapshot_without_used_by_still_loads() -> None:
    """A snapshot written before repeated joins (used invitations dropped, ids only) loads;
    its open invitations still work and the used ones stay refused."""
    net, peers = build(2)
    p0, p1 = peers
    pending = p0.invite(secret("open"), net.now)
    data = p0.snapshot()
    old = {
        **data,
        "invitations": [
            {k: v for k, v in i.items() if k != "used_by"}
            for i in data["invitations"]
            if "used_by" not in i
        ],
    }
    assert len(old["invitations"]) == 1
    restored = Peer.restore(p0.identity, old, net.now)
    assert restored.latest_invitation(net.now) == pending
    assert restored.open_invitations(net.now) == 1
    used = next(iter(p0._used_invitations))
    assert restored._used_invitations[used] == ""
    # p1 repeats its join: the secret of its invitation is not known any more
    first = Invitation(pending.community, p0.member_id, "p0", secret("p1"), pending.expires_ms)
    assert first.invitation_id == used
    _, outs = Peer.joining(p1.identity, first, address="p1", now_ms=net.now)
    assert [e.code for e in restored.receive(outs[0].data, "p1", net.now)] == ["bad_invitation"]
    newcomer, outs = Peer.joining(make_identity("q"), pending, address="q", now_ms=net.now)
    assert any(isinstance(o, PeerJoined) for o in restored.receive(outs[0].data, "q", net.now))


def test_latest_invitation_survives_a_restart() -> None:
    """The newest invitation is known after a restore (issue order is kept); it stops being
    "latest" once used or expired, and an older open one does not take its place."""
    now = START_MS
    p0 = Peer.found(
        make_identity("p0"), name="Lane", rules=rules(), address="p0", now_ms=now, nonce=b"n" * 16
    )
    assert p0.latest_invitation(now) is None
    invs = [p0.invite(secret(name), now, ttl_ms=60_000) for name in ("z", "a", "m")]
    assert sorted(invs, key=lambda i: i.invitation_id) != invs  # not id order by chance
    restored = Peer.restore(p0.identity, json.loads(json.dumps(p0.snapshot())), now)
    assert restored.latest_invitation(now) == invs[-1]
    assert restored.latest_invitation(invs[-1].expires_ms + 1) is None
    _, outs = Peer.joining(make_identity("q"), invs[-1], address="q", now_ms=now)
    restored.receive(outs[0].data, "q", now)
    assert restored.latest_invitation(now) is None
    assert restored.open_invitations(now) == 2


def test_display_names_reach_everyone_newcomers_and_restarts() -> None:
    """A member's signed name record reaches every member, a newcomer gets it with the
    welcome, the newest name wins, a bad name is refused, and a restart keeps names."""
    net, peers = build(3)
    p0, p1, p2 = peers
    net.apply("p1", p1.set_name("Maple Street 7", net.now))
    net.run_until(net.now + 50)
    for peer in peers:
        assert peer.membership.name_of(p1.member_id) == "Maple Street 7"
    assert p0.membership.name_of(p2.member_id) is None
    # A rename: the newest signed name wins everywhere.
    net.apply("p1", p1.set_name("The Millers", net.now + 1))
    net.run_until(net.now + 50)
    assert {peer.membership.name_of(p1.member_id) for peer in peers} == {"The Millers"}
    # A record signed earlier (delivered late) changes nothing.
    p0.membership.set_name(p1.member_id, "Old name", START_MS)
    assert p0.membership.name_of(p1.member_id) == "The Millers"
    # Malformed names are refused locally and from a peer, changing nothing.
    for bad in ("", " padded ", "x" * 41, "line\nbreak"):
        with pytest.raises(ProtocolError):
            p2.set_name(bad, net.now)
    forged = seal(
        p2.identity,
        community=p0.community_id,
        seq=10**13,
        ts_ms=net.now,
        type="name",
        payload={"name": "bad\x00name"},
    )
    net.inject("p0", forged.to_wire(), sender="p2")
    net.run_until(net.now + 50)
    assert _codes(net, "p0")[-1] == "bad_membership"
    assert p0.membership.name_of(p2.member_id) is None
    # A newcomer learns the name from the welcome's records.
    inv = p0.invite(secret("p3"), net.now)
    p3, outs = Peer.joining(make_identity("p3"), inv.encode(), address="p3", now_ms=net.now)
    net.add(p3)
    net.apply("p3", outs)
    net.run_until(net.now + 200)
    assert p3.joined
    assert p3.membership.name_of(p1.member_id) == "The Millers"
    # A restart keeps it (the records are in the snapshot).
    again = Peer.restore(p0.identity, json.loads(json.dumps(p0.snapshot())), net.now)
    assert again.membership.name_of(p1.member_id) == "The Millers"
    # Leaving drops the name.
    net.apply("p1", p1.leave(net.now))
    net.run_until(net.now + 50)
    assert p0.membership.name_of(p1.member_id) is None
