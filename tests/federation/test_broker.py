"""Fan-out communities on an (in-memory, untrusted) broker: sealed frames, one publication
per message, key rotation, and the protocol's own defences against a broker's replays."""

from __future__ import annotations

from custom_components.peer_energy.core.federation.channel import (
    ALL,
    BrokerChannel,
    inbox_of_address,
)
from custom_components.peer_energy.core.federation.protocol import (
    COMMUNITY,
    Broadcast,
    PeerJoined,
    Rejected,
    SlotCleared,
)
from custom_components.peer_energy.core.federation.sealing import FRAME_COMMUNITY

from .broker_helpers import build_broker, next_slot, outcome, run_slot, submit_all


def _same_final(net, peers, slot):  # type: ignore[no-untyped-def]
    results = {outcome(net, p.address, slot) for p in peers}
    assert len(results) == 1, results
    (result,) = results
    assert isinstance(result, tuple)
    return result


def test_three_homes_clear_a_slot_over_the_broker() -> None:
    net, peers = build_broker(3)
    assert all(p.joined and len(p.roster()) == 3 for p in peers)
    assert all(p.fanout for p in peers)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    _same_final(net, peers, slot)
    rejected = [e for p in peers for _, e in net.events[p.address] if isinstance(e, Rejected)]
    assert rejected == []


def test_a_bid_is_one_publication_to_the_community() -> None:
    net, peers = build_broker(4)
    slot = next_slot(net, peers)
    from .helpers import orders_for

    out = peers[1].submit_orders(slot, orders_for(peers[1], 1, slot), net.now)
    assert out == [Broadcast((COMMUNITY,), out[0].data)]  # type: ignore[union-attr]
    pubs, events = net.homes[peers[1].address].outgoing(out, net.now)
    assert [p.route for p in pubs] == [ALL]
    assert events == []
    assert pubs[0].frame[0] == FRAME_COMMUNITY


def test_nothing_readable_on_the_broker() -> None:
    """Every frame the broker sees is opaque: no key, id, type, price or energy."""
    net, peers = build_broker(3)
    start = len(net.frames)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    frames = [f for _, f in net.frames]
    assert len(frames) > start
    final = peers[0].finals[slot]
    secrets = [p.member_id for p in peers] + [p.community_id for p in peers[:1]]
    secrets += [final.book_hash, final.result_hash]
    words = [b'"type"', b'"orders"', b'"price"', b'"energy', b'"sender"', b"Broker street"]
    for frame in frames:
        for s in secrets:
            assert s.encode() not in frame
            assert bytes.fromhex(s) not in frame
        for w in words:
            assert w not in frame
        assert b'{"community"' not in frame  # no envelope in clear
        assert b'"payload"' not in frame


def test_fifty_homes_in_one_process_publish_o1_per_slot() -> None:
    counts = {}
    for n in (10, 50):
        net, peers = build_broker(n)
        slot = next_slot(net, peers)
        before = sum(net.stats.messages.values())
        submit_all(net, peers, slot)
        run_slot(net, peers, slot)
        _same_final(net, peers, slot)
        counts[n] = (sum(net.stats.messages.values()) - before) / n
    # per home per slot: a bid, a digest, an attestation (and a little repair traffic)
    assert counts[10] <= 6, counts
    assert counts[50] <= 6, counts
    assert counts[50] <= counts[10] + 1, counts


def test_duplicates_reordering_and_replays_by_the_broker_change_nothing() -> None:
    net, peers = build_broker(5, seed=3, duplicate_bp=3_000, jitter_ms=40)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    final = _same_final(net, peers, slot)
    # the broker replays every frame it ever carried to everyone, later
    for _route, frame in list(net.frames):
        for address in net.homes:
            net.replay(address, frame, delay_ms=50)
    net.run_until(net.now + 5_000)
    for p in peers:
        cleared = [e for _, e in net.events[p.address] if isinstance(e, SlotCleared)]
        assert [e.final.slot for e in cleared].count(slot) == 1
        joined = [e for _, e in net.events[p.address] if isinstance(e, PeerJoined)]
        assert len({e.member for e in joined}) == len(joined)  # nobody admitted twice
    assert outcome(net, peers[0].address, slot) == final
    # and the next slot still clears
    slot2 = next_slot(net, peers)
    submit_all(net, peers, slot2)
    run_slot(net, peers, slot2)
    _same_final(net, peers, slot2)


def test_retained_frames_handed_to_a_newcomer_are_harmless() -> None:
    net, peers = build_broker(3, retain=True)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    _same_final(net, peers, slot)
    from custom_components.peer_energy.core.federation.channel import join_on_broker

    from .helpers import make_identity, secret

    inv = peers[0].invite(secret("late"), net.now)
    channel, outs = join_on_broker(make_identity("late"), inv.encode(), now_ms=net.now)
    net.add(channel)  # gets the retained frames of both routes first
    net.apply(channel.peer.address, outs)
    net.run_until(net.now + 500)
    assert channel.peer.joined
    assert len(peers[0].roster()) == 4


def test_removing_a_member_rotates_the_key() -> None:
    net, peers = build_broker(4)
    admin, gone = peers[0], peers[3]
    old_epoch = net.homes[admin.address].keys.epoch
    net.apply(admin.address, admin.remove(gone.member_id, net.now))
    net.run_until(net.now + 500)
    for p in peers[:3]:
        assert gone.member_id not in p.roster()
        assert net.homes[p.address].keys.epoch == old_epoch + 1
    assert net.homes[gone.address].keys.epoch == old_epoch  # never got the new key
    start = len(net.frames)
    slot = next_slot(net, peers)
    submit_all(net, peers[:3], slot)
    run_slot(net, peers, slot)
    _same_final(net, peers[:3], slot)
    gone_keys = net.homes[gone.address].keys
    later = [f for _, f in net.frames[start:]]
    assert later
    assert all(gone_keys.open(f) is None for f in later)


def test_a_member_who_leaves_is_locked_out_too() -> None:
    net, peers = build_broker(3)
    leaver = peers[2]
    net.apply(leaver.address, leaver.leave(net.now))
    net.run_until(net.now + 500)
    epochs = {net.homes[p.address].keys.epoch for p in peers[:2]}
    assert epochs == {1}
    assert net.homes[leaver.address].keys.epoch == 0


def test_inbox_addresses() -> None:
    net, peers = build_broker(2)
    channel = net.homes[peers[1].address]
    assert isinstance(channel, BrokerChannel)
    assert inbox_of_address(peers[1].address) == channel.inbox
    assert inbox_of_address("http://x") is None
    assert inbox_of_address("mqtt:zz") is None


def test_a_channel_needs_a_fanout_peer() -> None:
    import pytest

    from custom_components.peer_energy.core.federation.protocol import Peer

    from .helpers import make_identity, rules

    peer = Peer.found(
        make_identity("h"),
        name="Http",
        rules=rules(),
        address="h",
        now_ms=0,
        nonce=b"nonce-0123456789",
    )
    with pytest.raises(ValueError, match="fan-out"):
        BrokerChannel(peer)


def test_noise_and_own_echo_are_dropped() -> None:
    net, peers = build_broker(2)
    channel = net.homes[peers[0].address]
    assert channel.incoming(b"", net.now) == []
    garbage = channel.incoming(channel.keys.seal(b"not json"), net.now)
    assert [type(o) for o in garbage] == [Rejected]  # a member's garbage: refused
    own = peers[0].submit_orders(
        next_slot(net, peers), [], net.now
    )  # an empty bid, sent to everyone
    pubs, _ = channel.outgoing(own, net.now)
    assert pubs
    assert channel.incoming(pubs[0].frame, net.now) == []  # our own echo


def test_offline_homes_neither_send_nor_receive() -> None:
    net, peers = build_broker(3, drop_bp=0)
    net.go_offline(peers[2].address)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    assert net.stats.dropped > 0
    assert outcome(net, peers[2].address, slot) is None
    net.go_online(peers[2].address)
    net.run_until(net.now + 5_000)
    assert outcome(net, peers[2].address, slot) == outcome(net, peers[0].address, slot)
