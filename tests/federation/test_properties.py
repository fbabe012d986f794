"""Property tests over random loss, latency, reordering, duplication and offline schedules.

For every schedule: honest peers never finalise different results (1); every final result
verifies from the signed bids alone at another peer (2); an equivocator never gets orders
into a final book and is reported (5); after the network recovers, every peer that was
online ends with the same result or all agree the slot is void, and returning peers catch
up (1, 4). Forged and replayed traffic (3) is covered by a forger in some schedules.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.peer_energy.core.federation.memnet import Malice
from custom_components.peer_energy.core.federation.protocol import (
    EquivocationDetected,
    Rejected,
    SlotCleared,
    verify_slot_data,
)

from .helpers import build, next_slot, run_slot, submit_all

N = 7


@st.composite
def schedules(draw: st.DrawFn) -> dict:
    return {
        "seed": draw(st.integers(0, 2**16)),
        "drop_bp": draw(st.sampled_from([0, 500, 1500, 3000])),
        "jitter_ms": draw(st.sampled_from([0, 50, 400, 1500])),
        "duplicate_bp": draw(st.sampled_from([0, 1000])),
        "offline": draw(st.sets(st.integers(1, N - 1), max_size=3)),
        "offline_at": draw(st.integers(0, 25_000)),
        "malice": draw(st.sampled_from([None, Malice.EQUIVOCATOR, Malice.FORGER])),
    }


@settings(
    max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(schedules())
def test_agreement_under_faults(s: dict) -> None:
    malice = {N - 1: s["malice"]} if s["malice"] else None
    net, peers = build(N, seed=s["seed"], malice=malice)
    net.drop_bp, net.jitter_ms, net.duplicate_bp = s["drop_bp"], s["jitter_ms"], s["duplicate_bp"]
    honest = [p for i, p in enumerate(peers) if not (malice and i == N - 1)]
    slot = next_slot(net, peers)
    r = peers[0].rules
    submit_all(net, peers, slot)
    net.run_until(r.gate_closure_ms(slot) - 20_000 + s["offline_at"])
    for i in s["offline"]:
        net.go_offline(f"p{i}")
    run_slot(net, peers, slot)

    # (1) safety: no two honest peers hold different results for the slot
    finals = {p.address: p.finals[slot] for p in honest if slot in p.finals}
    assert len({(f.book_hash, f.result_hash) for f in finals.values()}) <= 1
    for address, final in finals.items():
        # (2) anyone can re-verify it from the signed bids and attestations
        data = net.peers[address].slot_data(slot)
        assert data is not None
        checked = verify_slot_data(data, membership=honest[0].membership)
        assert checked.result == final.result
        # (5) an equivocator's orders never enter a final book
        if s["malice"] is Malice.EQUIVOCATOR:
            assert all(o.owner != peers[N - 1].member_id for o in final.orders)

    # recovery: the network heals, everyone comes back, the next slot runs
    net.drop_bp, net.jitter_ms, net.duplicate_bp = 0, 0, 0
    for i in s["offline"]:
        net.go_online(f"p{i}")
    slot2 = next_slot(net, peers)
    submit_all(net, peers, slot2)
    run_slot(net, peers, slot2)
    net.run_until(net.now + 2_000)
    for when in (slot, slot2):
        results = {
            (p.finals[when].book_hash, p.finals[when].result_hash) if when in p.finals else None
            for p in honest
        }
        # (1, 4) all honest peers agree: the same result everywhere, or void everywhere
        assert len(results) == 1, (when, results)
    assert all(slot2 in p.finals for p in honest)
    # events are consistent with the state
    for p in honest:
        cleared = [e for _, e in net.events[p.address] if isinstance(e, SlotCleared)]
        assert len({e.final.slot for e in cleared}) == len(cleared)
    if s["malice"] is Malice.EQUIVOCATOR:
        assert any(
            isinstance(e, EquivocationDetected) for p in honest for _, e in net.events[p.address]
        )
    if s["malice"] is Malice.FORGER:
        codes = {
            e.code for p in honest for _, e in net.events[p.address] if isinstance(e, Rejected)
        }
        assert "bad_signature" in codes
