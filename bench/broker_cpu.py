"""One home's protocol CPU per slot on the in-memory broker (fan-out, sealed frames).

N homes form a community over ``BrokerNet`` (real invitations, joins and key grants), each
submits one random order for a slot, and the slot runs to its deadline in one process with
no MQTT client: the process time divided by N is what one home spends on the slot's frames
(opening, checking each signature, handling), its clock and its bid. Run it on two commits to
see what a change costs or saves a home.

    .venv/bin/python bench/broker_cpu.py                 # N = 100, 3 slots
    .venv/bin/python bench/broker_cpu.py --homes 50 --slots 5
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
import random
import statistics
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from federation_mqtt import random_order

from custom_components.peer_energy.core.federation.brokernet import BrokerNet
from custom_components.peer_energy.core.federation.channel import (
    found_on_broker,
)
from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.market.orders import MarketRules
from custom_components.peer_energy.core.trust.identity import Identity


def _identity(i: int) -> Identity:
    return Identity(hashlib.sha256(f"broker-cpu:{i}".encode()).digest())


def run(n: int, slots: int) -> list[float]:
    """CPU ms per home of each slot."""
    rules = CommunityRules(
        market=MarketRules(slot_seconds=36, distributor_fee=1),
        gate_closure_lead_s=8,
        sync_window_ms=500,
        attest_window_ms=5000,
        max_members=n,
    )
    net = BrokerNet(start_ms=1_800_000_000_000)
    founder = found_on_broker(
        _identity(0), name="Bench", rules=rules, now_ms=net.now, nonce=b"0123456789abcdef"
    )
    rng = random.Random(1)
    joiners = (_identity(i) for i in range(1, n))
    channels = net.form(founder, joiners, lambda _i: rng.randbytes(32), step_ms=20)
    net.run_until(net.now + 2_000)
    step = rules.slot_seconds
    slot = (net.now // 1000 + rules.gate_closure_lead_s + 2) // step * step + step
    cpu: list[float] = []
    for _ in range(slots):
        g = rules.gate_closure_ms(slot)
        net.run_until(g - 2_000)
        before = time.process_time()
        for i, channel in enumerate(channels):
            peer = channel.peer
            order = random_order(rng, f"o{i}", peer.member_id, slot)
            net.apply(peer.address, peer.submit_orders(slot, [order], net.now))
        net.run_until(g + rules.sync_window_ms + rules.attest_window_ms + 1_000)
        cpu.append((time.process_time() - before) * 1000 / n)
        if not all(slot in c.peer.finals for c in channels):
            raise SystemExit(f"slot {slot}: not every home is final")
        slot += step
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--homes", type=int, default=100)
    parser.add_argument("--slots", type=int, default=3)
    args = parser.parse_args()
    cpu = run(args.homes, args.slots)
    each = ", ".join(f"{c:.1f}" for c in cpu)
    print(
        f"{args.homes} homes: one home's CPU per slot median {statistics.median(cpu):.1f} ms "
        f"(each slot: {each})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
