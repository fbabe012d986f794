"""Federation benchmark: N peers through K slots over the in-memory network.

Prints, per N: wall time per slot to run all N peers in one process (every message of
every peer handled, signatures made and checked: the CPU cost of the whole community, so
one home's share is that divided by N), the virtual time from gate closure until every
peer holds the same attested result (sync window + network latency; CPU time is not part
of virtual time), and messages and KiB sent per peer per slot, in all and after gate
closure (``after G``: from 12 members on, digests and attestations go to two relays per slot,
which send everyone one bundle of the quorum's attestations, so this stays flat in N).

    .venv/bin/python bench/federation.py                 # N = 10, 50, 100; K = 3
    .venv/bin/python bench/federation.py --peers 20 --slots 5 --latency-ms 20

The HTTP figures of issue 5 (real Home Assistant instances on loopback) are for the HTTP
transport's own benchmark; this one measures the protocol engine.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import Peer, SlotCleared
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side
from custom_components.peer_energy.core.trust.identity import Identity

START_MS = 1_800_000_000_000


def _identity(name: str) -> Identity:
    return Identity(hashlib.sha256(b"bench:" + name.encode()).digest())


def _orders(member: str, index: int, slot: int) -> list[Order]:
    h = hashlib.sha256(f"{index}:{slot}".encode()).digest()
    side = Side.SELL if h[0] % 2 else Side.BUY
    return [Order.single(f"o{index}", member, side, slot, 100 + h[2] * 4, 8 + h[1] % 25)]


def run(n: int, k: int, latency_ms: int, window_ms: int) -> dict[str, float]:
    rules = CommunityRules(
        market=MarketRules(slot_seconds=60, distributor_fee=1),
        gate_closure_lead_s=20,
        sync_window_ms=window_ms,
        attest_window_ms=window_ms,
        max_members=max(n, 2),
    )
    net = MemNet(start_ms=START_MS, latency_ms=latency_ms)
    t0 = time.perf_counter()
    founder = Peer.found(
        _identity("p0"), name="Bench", rules=rules, address="p0", now_ms=net.now, nonce=b"b" * 16
    )
    net.add(founder)
    peers = [founder]
    for i in range(1, n):
        inv = founder.invite(hashlib.sha256(f"s{i}".encode()).digest(), net.now)
        peer, outs = Peer.joining(_identity(f"p{i}"), inv, address=f"p{i}", now_ms=net.now)
        net.add(peer)
        net.apply(peer.address, outs)
        net.run_until(net.now + 2 * latency_ms + 5)
        peers.append(peer)
    net.run_until(net.now + 1_000)
    join_s = time.perf_counter() - t0
    msgs0, bytes0 = sum(net.stats.messages.values()), sum(net.stats.bytes.values())
    wall = 0.0
    finality: list[int] = []
    after_g = 0
    for _ in range(k):
        slot = (net.now // 1000 + rules.gate_closure_lead_s + 1) // 60 * 60 + 60
        gate = rules.gate_closure_ms(slot)
        t1 = time.perf_counter()
        for i, peer in enumerate(peers):
            net.apply(
                peer.address, peer.submit_orders(slot, _orders(peer.member_id, i, slot), net.now)
            )
        net.run_until(gate - 1)
        at_gate = sum(net.stats.messages.values())
        net.run_until(gate + rules.sync_window_ms + rules.attest_window_ms + 1_000)
        wall += time.perf_counter() - t1
        times = [
            at
            for events in net.events.values()
            for at, ev in events
            if isinstance(ev, SlotCleared) and ev.final.slot == slot
        ]
        hashes = {p.finals[slot].result_hash for p in peers if slot in p.finals}
        if len(times) != n or len(hashes) != 1:
            raise SystemExit(f"slot {slot}: {len(times)}/{n} peers final, {len(hashes)} results")
        finality.append(max(times) - gate)
        net.run_until(gate + 20_000)
        after_g += sum(net.stats.messages.values()) - at_gate
    msgs = sum(net.stats.messages.values()) - msgs0
    size = sum(net.stats.bytes.values()) - bytes0
    return {
        "peers": n,
        "join_s": join_s,
        "wall_per_slot_s": wall / k,
        "finality_ms": max(finality),
        "msgs_per_peer_slot": msgs / n / k,
        "after_g_per_peer_slot": after_g / n / k,
        "kib_per_peer_slot": size / n / k / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="*", default=[10, 50, 100])
    parser.add_argument("--slots", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=5)
    parser.add_argument("--window-ms", type=int, default=500, help="sync and attest windows")
    args = parser.parse_args()
    print(
        f"{'peers':>5} {'join s':>7} {'wall s/slot':>11} {'final ms':>9} "
        f"{'msgs/peer/slot':>14} {'after G':>7} {'KiB/peer/slot':>13}"
    )
    for n in args.peers:
        r = run(n, args.slots, args.latency_ms, args.window_ms)
        print(
            f"{r['peers']:>5} {r['join_s']:>7.2f} {r['wall_per_slot_s']:>11.2f} "
            f"{r['finality_ms']:>9.0f} {r['msgs_per_peer_slot']:>14.1f} "
            f"{r['after_g_per_peer_slot']:>7.1f} "
            f"{r['kib_per_peer_slot']:>13.1f}"
        )


if __name__ == "__main__":
    main()
