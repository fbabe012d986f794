"""A join that proves itself: a joiner is admitted only once it acknowledged the welcome;
an unreachable joiner or a lost welcome leaves no ghost member and no unreachable event."""

from __future__ import annotations

from custom_components.peer_energy.core.federation.channel import join_on_broker
from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import (
    PeerJoined,
    PeerUnreachable,
    Rejected,
    Send,
)
from custom_components.peer_energy.core.federation.protocol.peer import Peer
from custom_components.peer_energy.core.federation.protocol.wire import PENDING_JOIN_MS

from .broker_helpers import build_broker
from .helpers import START_MS, make_identity, rules, secret


def _community(n: int) -> tuple[MemNet, list[Peer]]:
    """``n`` members (HTTP-like addresses) with confirmed joins."""
    net = MemNet(start_ms=START_MS)
    founder = Peer.found(
        make_identity("p0"),
        name="Street",
        rules=rules(),
        address="p0",
        now_ms=net.now,
        nonce=b"nonce-0123456789",
        confirm_joins=True,
    )
    net.add(founder)
    peers = [founder]
    for i in range(1, n):
        peer, outs = _start_join(net, founder, f"p{i}")
        net.apply(peer.address, outs)
        net.run_until(net.now + 50)
        peers.append(peer)
    return net, peers


def _start_join(net: MemNet, inviter: Peer, name: str) -> tuple[Peer, list]:  # type: ignore[type-arg]
    inv = inviter.invite(secret(name), net.now)
    peer, outs = Peer.joining(
        make_identity(name), inv.encode(), address=name, now_ms=net.now, confirm_joins=True
    )
    net.add(peer)
    return peer, outs


def _events(net: MemNet, kind: type) -> list:  # type: ignore[type-arg]
    return [e for evs in net.events.values() for _, e in evs if isinstance(e, kind)]


def test_a_confirmed_join_admits_after_the_acknowledgement() -> None:
    net, peers = _community(4)
    for p in peers:
        assert p.joined
        assert len(p.roster()) == 4
    assert peers[0].pending_joins() == ()
    joined = _events(net, PeerJoined)
    assert len({(e.member) for e in joined}) == 3
    assert _events(net, Rejected) == []


def test_welcome_pending_until_acknowledged() -> None:
    net, peers = _community(3)
    founder = peers[0]
    joiner, outs = _start_join(net, founder, "late")
    (join,) = outs
    welcome = founder.receive(join.data, joiner.address, net.now)
    assert founder.pending_joins() == (joiner.member_id,)
    assert joiner.member_id not in founder.roster()
    assert not any(isinstance(o, PeerJoined) for o in welcome)
    # the welcome admits the joiner on its side, which acknowledges it
    (send,) = welcome
    ack = joiner.receive(send.data, founder.address, net.now)  # type: ignore[union-attr]
    assert joiner.joined
    (ack_send,) = [o for o in ack if isinstance(o, Send)]
    out = founder.receive(ack_send.data, joiner.address, net.now)
    assert any(isinstance(o, PeerJoined) for o in out)
    assert joiner.member_id in founder.roster()
    assert founder.pending_joins() == ()


def _no_ghost(net: MemNet, peers: list[Peer], joiner: Peer) -> None:
    for p in peers:
        assert joiner.member_id not in p.roster()
        assert len(p.roster()) == len(peers)
    assert not [e for e in _events(net, PeerJoined) if e.member == joiner.member_id]
    assert not [e for e in _events(net, PeerUnreachable) if e.member == joiner.member_id]
    assert peers[0].pending_joins() == ()


def test_unreachable_joiner_leaves_no_ghost() -> None:
    net, peers = _community(3)
    joiner, outs = _start_join(net, peers[0], "unreachable")
    net.apply(joiner.address, outs)
    net.go_offline(joiner.address)  # its address does not answer: the welcome is lost
    net.run_until(net.now + 100)
    assert peers[0].pending_joins() == (joiner.member_id,)
    net.run_until(net.now + PENDING_JOIN_MS + 4 * 60_000)
    _no_ghost(net, peers, joiner)


def test_lost_welcome_leaves_no_ghost_and_a_retry_works() -> None:
    net, peers = _community(3)
    founder = peers[0]
    inv = founder.invite(secret("lost"), net.now)
    joiner, outs = Peer.joining(
        make_identity("lost"), inv.encode(), address="lost", now_ms=net.now, confirm_joins=True
    )
    net.add(joiner)
    net.apply(joiner.address, outs)  # the join is on its way
    net.set_link(founder.address, joiner.address, latency_ms=5, drop_bp=10_000)
    net.run_until(net.now + 100)
    assert not joiner.joined
    net.run_until(net.now + PENDING_JOIN_MS + 60_000)
    _no_ghost(net, peers, joiner)
    assert founder.invitation_open(inv.invitation_id, net.now)  # usable again
    # the link heals; the joiner asks again and gets in
    net.set_link(founder.address, joiner.address, latency_ms=5, drop_bp=0)
    net.apply(joiner.address, joiner.join_again(net.now))
    net.run_until(net.now + 200)
    assert joiner.joined
    for p in peers:
        assert joiner.member_id in p.roster()


def test_lost_acknowledgement_is_resent() -> None:
    net, peers = _community(2)
    founder = peers[0]
    joiner, outs = _start_join(net, founder, "flaky")
    (join,) = outs
    (welcome,) = founder.receive(join.data, joiner.address, net.now)
    joiner.receive(welcome.data, founder.address, net.now)  # type: ignore[union-attr]
    # the acknowledgement was lost; the joiner's clock resends it
    net.run_until(net.now + 10_000)
    assert joiner.member_id in founder.roster()
    assert founder.pending_joins() == ()


def test_pending_join_survives_a_restart() -> None:
    net, peers = _community(2)
    founder = peers[0]
    joiner, outs = _start_join(net, founder, "restart")
    (join,) = outs
    (welcome,) = founder.receive(join.data, joiner.address, net.now)
    restored = Peer.restore(founder.identity, founder.snapshot(), net.now)
    assert restored.pending_joins() == (joiner.member_id,)
    ack = joiner.receive(welcome.data, founder.address, net.now)  # type: ignore[union-attr]
    (ack_send,) = [o for o in ack if isinstance(o, Send)]
    out = restored.receive(ack_send.data, joiner.address, net.now + 1)
    assert any(isinstance(o, PeerJoined) for o in out)
    # a repeated acknowledgement is answered with the record again, nothing else happens
    (again,) = joiner.tick(net.now + 5_000)
    assert isinstance(again, Send)
    out2 = restored.receive(again.data, joiner.address, net.now + 5_000)
    assert not any(isinstance(o, PeerJoined) for o in out2)
    assert [type(o) for o in out2] == [Send], out2


def test_broker_joiner_that_vanishes_leaves_no_ghost() -> None:
    net, peers = build_broker(3)
    inv = peers[0].invite(secret("vanish"), net.now)
    channel, outs = join_on_broker(make_identity("vanish"), inv.encode(), now_ms=net.now)
    net.add(channel)
    net.apply(channel.peer.address, outs)
    net.go_offline(channel.peer.address)
    net.run_until(net.now + PENDING_JOIN_MS + 4 * 60_000)
    for p in peers:
        assert channel.peer.member_id not in p.roster()
    unreachable = [
        e for evs in net.events.values() for _, e in evs if isinstance(e, PeerUnreachable)
    ]
    assert unreachable == []
    assert peers[0].pending_joins() == ()


def test_a_joiner_gives_up_acknowledging_after_the_pending_time() -> None:
    net, peers = _community(2)
    founder = peers[0]
    joiner, outs = _start_join(net, founder, "silent")
    (join,) = outs
    (welcome,) = founder.receive(join.data, joiner.address, net.now)
    joiner.receive(welcome.data, founder.address, net.now)  # type: ignore[union-attr]
    # the inviter never answers: resent each sync window, then given up
    acks = []
    t = net.now
    while t < net.now + PENDING_JOIN_MS + 10_000:
        t = joiner.next_wakeup_ms()
        acks += [o for o in joiner.tick(t) if isinstance(o, Send) and b'"joined"' in o.data]
    assert 10 < len(acks) < PENDING_JOIN_MS // 1_000
    assert all(o.to == founder.address for o in acks)


def test_joined_messages_that_do_not_fit() -> None:
    net, peers = _community(2)
    founder = peers[0]
    joiner, outs = _start_join(net, founder, "odd")
    (join,) = outs
    (welcome,) = founder.receive(join.data, joiner.address, net.now)
    ack = [o for o in joiner.receive(welcome.data, founder.address, net.now) if isinstance(o, Send)]
    # an acknowledgement for another invitation is refused, the join stays pending
    stranger, outs2 = _start_join(net, founder, "other")
    bogus = stranger._members.ctx.seal("joined", {"invitation": "0" * 32}, net.now)
    refused = founder.receive(bogus, stranger.address, net.now)
    assert [o.code for o in refused if isinstance(o, Rejected)] == ["bad_invitation"]
    # the same joiner asking again from another address is refused
    again = founder.receive(join.data, joiner.address, net.now + 1)
    assert [type(o) for o in again] == [Send]  # the welcome again, same address
    assert founder.pending_joins() == (joiner.member_id,)
    done = founder.receive(ack[0].data, joiner.address, net.now + 2)
    assert any(isinstance(o, PeerJoined) for o in done)


def test_a_full_community_keeps_no_pending_joiner() -> None:
    net = MemNet(start_ms=START_MS)
    founder = Peer.found(
        make_identity("f"),
        name="Tiny",
        rules=rules(max_members=2),
        address="f",
        now_ms=net.now,
        nonce=b"nonce-0123456789",
        confirm_joins=True,
    )
    net.add(founder)
    first, outs = _start_join(net, founder, "first")
    (join1,) = outs
    founder.receive(join1.data, first.address, net.now)
    second, outs = _start_join(net, founder, "second")
    (join2,) = outs
    out = founder.receive(join2.data, second.address, net.now)
    assert [o.code for o in out if isinstance(o, Rejected)] == ["community_full"]
    assert founder.pending_joins() == (first.member_id,)


def test_a_damaged_pending_record_is_dropped_on_restore() -> None:
    net, peers = _community(2)
    founder = peers[0]
    joiner, outs = _start_join(net, founder, "damaged")
    (join,) = outs
    founder.receive(join.data, joiner.address, net.now)
    data = founder.snapshot()
    data["pending_joins"][0]["record"]["sig"] = "0" * 128
    restored = Peer.restore(founder.identity, data, net.now)
    assert restored.pending_joins() == ()


def test_new_join_is_checked_without_changing_anything() -> None:
    """``new_join`` names the joiner and the address of a valid new join (for the
    transport's reachability check) and changes nothing; anything else gives None."""
    net, peers = _community(2)
    founder = peers[0]
    joiner, outs = _start_join(net, founder, "probe")
    (join,) = outs
    before = founder.snapshot()
    assert founder.new_join(join.data, net.now) == (joiner.member_id, "probe")
    assert founder.new_join(join.data, net.now) == (joiner.member_id, "probe")
    assert founder.snapshot() == before
    assert founder.pending_joins() == ()
    assert founder.new_join(b"garbage", net.now) is None
    forged = join.data.replace(b'"proof":"', b'"proof":"0', 1)
    assert founder.new_join(forged, net.now) is None
    founder.receive(join.data, joiner.address, net.now)  # welcomed: pending now
    assert founder.new_join(join.data, net.now) is None  # a repeated join is not new
    assert not joiner.joined
    assert joiner.new_join(join.data, net.now) is None  # not a member: cannot admit


def test_a_pending_joiner_can_correct_its_address() -> None:
    """The welcome to a wrong address is lost; the same key joins again with the right
    address (a new proof) and gets in at once, not after the pending join expired."""
    net, peers = _community(2)
    founder = peers[0]
    inv = founder.invite(secret("moved"), net.now)
    identity = make_identity("moved")
    wrong, outs = Peer.joining(
        identity, inv.encode(), address="nowhere", now_ms=net.now, confirm_joins=True
    )
    (join,) = outs
    (welcome,) = founder.receive(join.data, "nowhere", net.now)  # to "nowhere": lost
    assert isinstance(welcome, Send)
    assert founder.pending_joins() == (wrong.member_id,)
    right, outs = Peer.joining(
        identity, inv.encode(), address="moved", now_ms=net.now + 1, confirm_joins=True
    )
    net.add(right)
    assert founder.new_join(outs[0].data, net.now + 1) == (right.member_id, "moved")
    net.apply(right.address, outs)
    net.run_until(net.now + 200)
    assert right.joined
    for p in peers:
        assert right.member_id in p.roster()
        assert p.membership.address_of(right.member_id) == "moved"
    assert founder.pending_joins() == ()
    assert not founder.invitation_open(inv.invitation_id, net.now)


def test_another_invitation_frees_the_pending_one() -> None:
    net, peers = _community(2)
    founder = peers[0]
    first = founder.invite(secret("a"), net.now)
    second = founder.invite(secret("b"), net.now)
    identity = make_identity("twice")
    lost, outs = Peer.joining(
        identity, first.encode(), address="lost", now_ms=net.now, confirm_joins=True
    )
    founder.receive(outs[0].data, "lost", net.now)
    assert not founder.invitation_open(first.invitation_id, net.now)
    again, outs = Peer.joining(
        identity, second.encode(), address="lost", now_ms=net.now + 1, confirm_joins=True
    )
    founder.receive(outs[0].data, "lost", net.now + 1)
    assert founder.pending_joins() == (again.member_id,)
    assert founder.invitation_open(first.invitation_id, net.now + 1)  # free again
    assert not founder.invitation_open(second.invitation_id, net.now + 1)
