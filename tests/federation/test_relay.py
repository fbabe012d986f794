"""Relay aggregation in larger communities, and catch-up that stays quiet in steady state.

From ``RELAY_MIN_MEMBERS`` members on, digests and attestations go to a few relays per
slot, which hand everyone the quorum's signed attestations: O(N) messages after gate
closure instead of O(N^2). Relays are a shortcut, never a trust assumption: finality still
needs a quorum of individually signed attestations, and dead or withholding relays only
cost time (the fallback at half the attestation window).
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.peer_energy.core.federation import protocol
from custom_components.peer_energy.core.federation.memnet import Malice, MemNet
from custom_components.peer_energy.core.federation.protocol import (
    CATCHUP_MAX_TRIES,
    CATCHUP_PEERS,
    RELAY_MIN_MEMBERS,
    RELAYS_PER_SLOT,
    EquivocationDetected,
    Peer,
    SlotVoid,
    relay_order,
    verify_equivocation,
    verify_slot_data,
)
from custom_components.peer_energy.core.trust.canonical import decode
from custom_components.peer_energy.core.trust.envelope import seal

from .helpers import build, next_slot, outcome, run_slot, submit_all


class _Log:
    """Every message handed to the network: (time, sender address, to, type)."""

    def __init__(self, net: MemNet) -> None:
        self.sent: list[tuple[int, str, str, str]] = []
        self.drop_from: dict[str, set[str]] = {}  # sender -> message types it withholds
        inner = net._transmit

        def transmit(sender: str, to: str, data: bytes) -> None:
            msg = decode(data)
            kind = str(msg["type"]) if isinstance(msg, dict) else ""
            if kind in self.drop_from.get(sender, set()):
                return
            self.sent.append((net.now, sender, to, kind))
            inner(sender, to, data)

        net._transmit = transmit  # type: ignore[method-assign]

    def between(self, start: int, end: int) -> list[tuple[int, str, str, str]]:
        return [m for m in self.sent if start <= m[0] < end]


def _relays(peers: list[Peer], slot: int) -> list[str]:
    """Addresses of the slot's relays (every peer has the same roster here)."""
    p = peers[0]
    roster = p.roster(p.rules.gate_closure_ms(slot))
    by_member = {q.member_id: q.address for q in peers}
    return [by_member[m] for m in relay_order(p.community_id, slot, roster)[:RELAYS_PER_SLOT]]


def _final_everywhere(net: MemNet, peers: list[Peer], slot: int) -> tuple[str, str]:
    outcomes = {outcome(net, p.address, slot) for p in peers}
    assert len(outcomes) == 1, outcomes
    result = next(iter(outcomes))
    assert isinstance(result, tuple)
    assert not any(p.finals[slot].late for p in peers)
    return result


def test_relay_order_is_deterministic_and_per_slot() -> None:
    members = [f"{i:064x}" for i in range(20)]
    a = relay_order("c" * 32, 1_800_000_060, members)
    assert a == relay_order("c" * 32, 1_800_000_060, list(reversed(members)))
    assert sorted(a) == members
    assert a[:3] != relay_order("c" * 32, 1_800_000_120, members)[:3]  # rotates by slot
    assert a[:3] != relay_order("d" * 32, 1_800_000_060, members)[:3]  # and by community


def test_messages_after_gate_closure_grow_linearly() -> None:
    """All-to-all below the threshold; with relays, about 3 k N messages in all."""
    per_size: dict[int, int] = {}
    for n in (RELAY_MIN_MEMBERS - 1, 16, 32):
        net, peers = build(n)
        log = _Log(net)
        slot = next_slot(net, peers)
        g = peers[0].rules.gate_closure_ms(slot)
        submit_all(net, peers, slot)
        run_slot(net, peers, slot)
        _final_everywhere(net, peers, slot)
        after = log.between(g, net.now)
        per_size[n] = len(after)
        kinds = Counter(kind for _, _, _, kind in after)
        if n < RELAY_MIN_MEMBERS:
            # today's behaviour: a digest and an attestation from everyone to everyone
            assert kinds == {"digest": n * (n - 1), "attest": n * (n - 1)}
            continue
        k = RELAYS_PER_SLOT
        relays = set(_relays(peers, slot))
        assert kinds["catchup"] == 0
        assert kinds["attest"] == (n - k) * k + k * (k - 1)
        assert kinds["digest"] == (n - k) * k + k * (k - 1)
        assert kinds["records"] == k * (n - 1)  # one bundle from each relay to each member
        for p in peers:
            sent = [m for m in after if m[1] == p.address]
            assert len(sent) <= (n - 1 + 2 * k if p.address in relays else 2 * k)
        # every peer attests, but only a quorum's records travel in a bundle
        assert all(len(p.finals[slot].attesters) >= p.rules.quorum(n) for p in peers)
    assert per_size[32] <= 3 * RELAYS_PER_SLOT * 32
    assert per_size[32] < 2 * per_size[16] + 20  # linear, not quadratic


def test_each_attestation_signature_is_checked_once_per_peer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, peers = build(16)
    slot = next_slot(net, peers)
    checked: Counter[str] = Counter()
    inner = protocol.wire.verify_record

    def counting(data: object, **kwargs: object) -> object:
        if isinstance(data, dict) and data.get("type") == "attest":
            checked[str(data["sig"])] += 1
        return inner(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(protocol.wire, "verify_record", counting)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    _final_everywhere(net, peers, slot)
    # three relays bundle the same records, yet no peer verifies one twice
    assert checked
    assert max(checked.values()) <= len(peers) - 1


def test_steady_state_sends_no_catchup() -> None:
    for n in (5, 14):
        net, peers = build(n)
        log = _Log(net)
        for _ in range(4):
            slot = next_slot(net, peers)
            submit_all(net, peers, slot)
            run_slot(net, peers, slot)
            _final_everywhere(net, peers, slot)
        net.run_until(net.now + 60_000)
        assert [m for m in log.sent if m[3] == "catchup"] == []


def test_void_slot_catchup_backs_off_and_stops() -> None:
    net, peers = build(4)
    log = _Log(net)
    r = peers[0].rules
    void = next_slot(net, peers)
    net.partition([["p0", "p1"], ["p2", "p3"]])
    submit_all(net, peers, void)
    run_slot(net, peers, void)
    net.heal()
    assert {outcome(net, p.address, void) for p in peers} == {"void"}
    for _ in range(30):  # 30 more slots: the void slot stays in retention all along
        slot = next_slot(net, peers)
        submit_all(net, peers, slot)
        run_slot(net, peers, slot)
        _final_everywhere(net, peers, slot)
    asks = [t for t, sender, _, kind in log.sent if kind == "catchup" and sender == "p0"]
    # without a backoff this was two requests per slot for the whole retention (192 slots)
    assert len(asks) == CATCHUP_MAX_TRIES * CATCHUP_PEERS
    times = sorted(set(asks))
    waits = [b - a for a, b in pairwise(times)]
    window = r.sync_window_ms + r.attest_window_ms
    assert all(w >= window << i for i, w in enumerate(waits))
    assert peers[0].is_void(void)
    # a missing slot is asked for again after a restart (the counter is not persisted)
    restored = Peer.restore(peers[0].identity, peers[0].snapshot(), net.now)
    assert void in restored.snapshot()["missing"]
    ask = [o for o in restored.tick(net.now) if type(o).__name__ == "Send"]
    assert len(ask) == CATCHUP_PEERS


def test_dead_relays_cost_time_not_the_slot() -> None:
    net, peers = build(14)
    slot = next_slot(net, peers)
    relays = _relays(peers, slot)
    submit_all(net, peers, slot)
    net.run_until(peers[0].rules.gate_closure_ms(slot) - 1)
    for address in relays:
        net.go_offline(address)
    run_slot(net, peers, slot)
    alive = [p for p in peers if p.address not in relays]
    result = _final_everywhere(net, alive, slot)
    assert len(alive[0].finals[slot].orders) == 14  # their bids were in before they went
    assert all((p.finals[slot].book_hash, p.finals[slot].result_hash) == result for p in alive)


def test_withholding_relays_cost_time_not_the_slot() -> None:
    net, peers = build(14)
    log = _Log(net)
    slot = next_slot(net, peers)
    relays = _relays(peers, slot)
    for address in relays:  # they take everything in and pass nothing on
        log.drop_from[address] = {"records", "digest", "slot_data"}
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    _final_everywhere(net, peers, slot)
    r = peers[0].rules
    fallback = r.gate_closure_ms(slot) + r.sync_window_ms + r.attest_window_ms // 2
    honest = [p for p in peers if p.address not in relays]
    assert all(
        t >= fallback
        for p in honest
        for t, e in net.events[p.address]
        if type(e).__name__ == "SlotCleared"
    )


def test_one_relay_isolated_still_fast() -> None:
    net, peers = build(14)
    slot = next_slot(net, peers)
    relays = _relays(peers, slot)
    net.go_offline(relays[0])
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    r = peers[0].rules
    alive = [p for p in peers if p.address != relays[0]]
    _final_everywhere(net, alive, slot)
    before_fallback = r.gate_closure_ms(slot) + r.sync_window_ms + r.attest_window_ms // 2
    assert all(
        t < before_fallback
        for p in alive
        for t, e in net.events[p.address]
        if type(e).__name__ == "SlotCleared"
    )


def test_unreachable_member_is_skipped_as_relay() -> None:
    net, peers = build(14)
    r = peers[0].rules
    first = next_slot(net, peers)
    target = first + 4 * r.slot_seconds
    gone = _relays(peers, target)[0]
    net.go_offline(gone)
    for slot in range(first, target + 1, r.slot_seconds):
        submit_all(net, peers, slot)
        run_slot(net, peers, slot)
    alive = [p for p in peers if p.address != gone]
    _final_everywhere(net, alive, target)
    gone_id = net.peers[gone].member_id
    for p in alive:
        relays = p._slots[target].relays
        assert relays is not None
        assert gone_id not in relays
        assert len(relays) == RELAYS_PER_SLOT
    fallback = r.gate_closure_ms(target) + r.sync_window_ms + r.attest_window_ms // 2
    assert all(
        t < fallback
        for p in alive
        for t, e in net.events[p.address]
        if type(e).__name__ == "SlotCleared" and e.final.slot == target
    )


def test_minority_book_adopts_the_quorum_through_a_bundle() -> None:
    net, peers = build(14)
    slot = next_slot(net, peers)
    r = peers[0].rules
    others = [p.address for p in peers if p.address != "p13"]
    net.partition([others, ["p13"]])
    submit_all(net, peers, slot)
    net.run_until(r.gate_closure_ms(slot) + r.sync_window_ms + 1)
    net.heal()
    run_slot(net, peers, slot)
    _final_everywhere(net, peers, slot)
    assert peers[13].member_id not in peers[13].finals[slot].attesters
    assert len(peers[13].finals[slot].orders) == 13


def test_bid_equivocation_is_detected_everywhere_with_relays() -> None:
    net, peers = build(14, malice={5: Malice.EQUIVOCATOR})
    cheat = peers[5]
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    honest = [p for p in peers if p is not cheat]
    _final_everywhere(net, honest, slot)
    assert all(o.owner != cheat.member_id for o in honest[0].finals[slot].orders)
    for p in honest:
        proofs = [e.proof for _, e in net.events[p.address] if isinstance(e, EquivocationDetected)]
        assert [pr.member for pr in proofs] == [cheat.member_id]


def test_attestation_equivocation_spreads_through_relays() -> None:
    net, peers = build(14)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    relays = set(_relays(peers, slot))
    liar = next(p for p in peers if p.address not in relays and p.address != "p0")
    target = next(p for p in peers if p.address not in relays and p is not liar)
    final = target.finals[slot]
    twin = seal(
        liar.identity,
        community=liar.community_id,
        seq=10**13,
        ts_ms=net.now,
        type="attest",
        payload={"slot": slot, "book": "0" * 64, "result": final.result_hash},
    )
    net.inject(target.address, twin.to_wire(), sender=liar.address)
    net.run_until(net.now + 100)
    for p in peers:
        if p is liar:
            continue
        proofs = [e.proof for _, e in net.events[p.address] if isinstance(e, EquivocationDetected)]
        assert [pr.kind for pr in proofs] == ["attest"], p.address
        assert verify_equivocation(
            proofs[0], community=p.community_id, keyring=p.membership.keyring
        )


N = 14


@st.composite
def _schedules(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "seed": draw(st.integers(0, 2**16)),
        "drop_bp": draw(st.sampled_from([0, 1000, 2500])),
        "jitter_ms": draw(st.sampled_from([0, 300, 1200])),
        "duplicate_bp": draw(st.sampled_from([0, 1000])),
        "offline": draw(st.sets(st.integers(1, N - 1), max_size=4)),
    }


@settings(
    max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(_schedules())
def test_agreement_under_faults_with_relays(s: dict[str, Any]) -> None:
    net, peers = build(N, seed=s["seed"])
    net.drop_bp, net.jitter_ms, net.duplicate_bp = s["drop_bp"], s["jitter_ms"], s["duplicate_bp"]
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    net.run_until(peers[0].rules.gate_closure_ms(slot) - 500)
    for i in s["offline"]:
        net.go_offline(f"p{i}")
    run_slot(net, peers, slot)
    finals = {p.address: p.finals[slot] for p in peers if slot in p.finals}
    assert len({(f.book_hash, f.result_hash) for f in finals.values()}) <= 1
    for address, final in finals.items():
        data = net.peers[address].slot_data(slot)
        assert data is not None
        assert verify_slot_data(data, membership=peers[0].membership).result == final.result
    # recovery: everyone back, a clean slot, and the faulted one agreed or void everywhere
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
            for p in peers
        }
        assert len(results) == 1, (when, results)
    assert all(slot2 in p.finals for p in peers)
    online = [p for i, p in enumerate(peers) if i not in s["offline"]]
    if not any(isinstance(e, SlotVoid) for p in online for _, e in net.events[p.address]):
        assert all(slot in p.finals for p in peers)
