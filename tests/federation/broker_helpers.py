"""Build communities on the in-memory broker (fan-out peers with sealed frames)."""

from __future__ import annotations

from collections.abc import Sequence
import hashlib
import random
from typing import Any

from custom_components.peer_energy.core.federation.brokernet import BrokerNet
from custom_components.peer_energy.core.federation.channel import (
    BrokerChannel,
    found_on_broker,
)
from custom_components.peer_energy.core.federation.protocol import Peer, SlotCleared, SlotVoid

from .helpers import START_MS, make_identity, orders_for, rules, secret


def seeded_random32(seed: int) -> Any:
    rng = random.Random(seed)
    return lambda: rng.randbytes(32)


def build_broker(n: int, *, seed: int = 0, **net_kwargs: Any) -> tuple[BrokerNet, list[Peer]]:
    """Found a community on a broker and join ``n - 1`` homes through invitations."""
    net = BrokerNet(start_ms=START_MS, seed=seed, **net_kwargs)
    founder = found_on_broker(
        make_identity("p0"),
        name="Broker street",
        rules=rules(),
        now_ms=net.now,
        nonce=b"nonce-0123456789",
        random32=seeded_random32(seed),
    )
    joiners = (make_identity(f"p{i}") for i in range(1, n))
    channels = net.form(founder, joiners, lambda i: secret(f"p{i}"), step_ms=30)
    net.run_until(net.now + 200)
    return net, [c.peer for c in channels]


def channel_of(net: BrokerNet, peer: Peer) -> BrokerChannel:
    return net.homes[peer.address]


def next_slot(net: BrokerNet, peers: Sequence[Peer]) -> int:
    r = peers[0].rules
    s = (net.now // 1000 + r.gate_closure_lead_s + 1) // r.slot_seconds * r.slot_seconds
    while r.gate_closure_ms(s) <= net.now + 100:
        s += r.slot_seconds
    return s


def submit_all(net: BrokerNet, peers: Sequence[Peer], slot: int) -> None:
    for i, peer in enumerate(peers):
        if peer.address in net.offline or not peer.joined:
            continue
        net.apply(peer.address, peer.submit_orders(slot, orders_for(peer, i, slot), net.now))


def run_slot(net: BrokerNet, peers: Sequence[Peer], slot: int) -> None:
    r = peers[0].rules
    net.run_until(r.gate_closure_ms(slot) + r.sync_window_ms + r.attest_window_ms + 1_000)


def outcome(net: BrokerNet, address: str, slot: int) -> tuple[str, str] | str | None:
    final: tuple[str, str] | None = None
    void = False
    for _, ev in net.events[address]:
        if isinstance(ev, SlotCleared) and ev.final.slot == slot:
            final = (ev.final.book_hash, ev.final.result_hash)
        elif isinstance(ev, SlotVoid) and ev.slot == slot:
            void = True
    return final if final is not None else ("void" if void else None)


def digest_name(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()
