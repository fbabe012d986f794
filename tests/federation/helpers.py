"""Build federations over the in-memory network for the protocol tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import hashlib
from typing import Any

from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.federation.memnet import Malice, MemNet
from custom_components.peer_energy.core.federation.protocol import Peer, SlotCleared, SlotVoid
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side
from custom_components.peer_energy.core.trust.identity import Identity

START_MS = 1_800_000_000_000  # a Unix time in 2027, aligned to the minute
SLOT_S = 60


def make_identity(name: str) -> Identity:
    """Deterministic identity for tests (never for production)."""
    return Identity(hashlib.sha256(b"fed:" + name.encode()).digest())


def secret(name: str) -> bytes:
    """Deterministic 32-byte invitation secret for tests."""
    return hashlib.sha256(b"secret:" + name.encode()).digest()


def rules(**kwargs: Any) -> CommunityRules:
    """Fast test rules: 60 s slots, gate closure 20 s before, 2 s windows."""
    base: dict[str, Any] = {
        "market": MarketRules(slot_seconds=SLOT_S, distributor_fee=1),
        "gate_closure_lead_s": 20,
        "sync_window_ms": 2_000,
        "attest_window_ms": 2_000,
    }
    base.update(kwargs)
    return CommunityRules(**base)


def build(
    n: int,
    *,
    seed: int = 0,
    community_rules: CommunityRules | None = None,
    malice: dict[int, Malice] | None = None,
    tap: Callable[[str, str, bytes], None] | None = None,
    **net_kwargs: Any,
) -> tuple[MemNet, list[Peer]]:
    """Found a community and join ``n - 1`` peers through real invitations (lossless)."""
    net = MemNet(start_ms=START_MS, seed=seed, tap=tap)
    founder = Peer.found(
        make_identity("p0"),
        name="Test street",
        rules=community_rules or rules(),
        address="p0",
        now_ms=net.now,
        nonce=b"nonce-0123456789",
    )
    net.add(founder)
    peers = [founder]
    for i in range(1, n):
        inv = founder.invite(secret(f"p{i}"), net.now)
        peer, outs = Peer.joining(
            make_identity(f"p{i}"), inv.encode(), address=f"p{i}", now_ms=net.now
        )
        net.add(peer, malice=(malice or {}).get(i))
        net.apply(peer.address, outs)
        net.run_until(net.now + 30)
        peers.append(peer)
    net.run_until(net.now + 200)
    for key, value in net_kwargs.items():
        setattr(net, key, value)
    return net, peers


def orders_for(peer: Peer, index: int, slot: int) -> list[Order]:
    """A deterministic mix of buyers and sellers with varied prices."""
    h = hashlib.sha256(f"{index}:{slot}".encode()).digest()
    side = Side.SELL if h[0] % 2 else Side.BUY
    price = 8 + h[1] % 25
    energy = 100 + h[2] * 4
    return [
        Order.single(f"o{index}", peer.member_id, side, slot, energy, price, clean=bool(h[3] % 2))
    ]


def next_slot(net: MemNet, peers: Sequence[Peer]) -> int:
    """The next slot whose gate closure is still ahead for everyone."""
    r = peers[0].rules
    s = (net.now // 1000 + r.gate_closure_lead_s + 1) // r.slot_seconds * r.slot_seconds
    while r.gate_closure_ms(s) <= net.now + 100:
        s += r.slot_seconds
    return s


def submit_all(
    net: MemNet, peers: Sequence[Peer], slot: int, skip: frozenset[int] = frozenset()
) -> None:
    """Every peer (not skipped, online) submits its orders for ``slot``."""
    for i, peer in enumerate(peers):
        if i in skip or peer.address in net.offline or not peer.joined:
            continue
        net.apply(peer.address, peer.submit_orders(slot, orders_for(peer, i, slot), net.now))


def run_slot(net: MemNet, peers: Sequence[Peer], slot: int) -> None:
    """Run the network until the slot's deadline has passed (plus late fetches)."""
    r = peers[0].rules
    end = r.gate_closure_ms(slot) + r.sync_window_ms + r.attest_window_ms + 1_000
    net.run_until(end)


def outcome(net: MemNet, address: str, slot: int) -> tuple[str, str] | str | None:
    """(book hash, result hash) if final, "void" if void, else None."""
    final: tuple[str, str] | None = None
    void = False
    for _, ev in net.events[address]:
        if isinstance(ev, SlotCleared) and ev.final.slot == slot:
            final = (ev.final.book_hash, ev.final.result_hash)
        elif isinstance(ev, SlotVoid) and ev.slot == slot:
            void = True
    if final is not None:
        return final
    return "void" if void else None
