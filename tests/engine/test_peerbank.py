"""Peer Bank: Gaussian inventory prediction, thresholds, fair replenishment, records."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings, strategies as st

from custom_components.peer_energy.core.home.peerbank import (
    Observation,
    PeerBankConfig,
    PeerBankState,
    PeerCapacity,
    predict,
    split_request,
    step,
)

DAY = 86_400
T0 = 1_800_000_000 - 1_800_000_000 % DAY
SLOTS_PER_DAY = 96


def _daily(k: int) -> int:
    return round(2000 * math.sin(2 * math.pi * k / SLOTS_PER_DAY))


def _history(days: int, offsets: list[int], upto: int) -> list[Observation]:
    out = []
    for d in range(days):
        for k in range(SLOTS_PER_DAY):
            t = T0 + d * DAY + 900 * k
            if t > upto:
                break
            out.append(Observation(t, _daily(k) + offsets[d], 500, 0))
    return out


def test_gaussian_uses_todays_deviation() -> None:
    rng = random.Random(7)
    offsets = [rng.randint(-1500, 1500) for _ in range(15)]
    now = T0 + 14 * DAY + 900 * 40
    history = _history(15, offsets, now)
    config = PeerBankConfig(low_wh=-500, high_wh=500, horizon_slots=4, lags=4)
    pred = predict(history, now, config)
    assert pred.method == "gaussian"
    assert pred.samples == 14
    truth = _daily(44) + offsets[14]
    daily_mean = _daily(44) + sum(offsets[:14]) // 14
    assert abs(pred.mean_wh - truth) < abs(daily_mean - truth)
    assert abs(pred.mean_wh - truth) <= 50
    assert pred.slot_start == now + 4 * 900


def test_prediction_fallbacks() -> None:
    config = PeerBankConfig(low_wh=0, high_wh=10)
    assert predict([], T0, config).method == "persistence"
    one = [Observation(T0 + 900 * k, 100 * k, 0, 0) for k in range(8)]
    pred = predict(one, T0 + 900 * 7, config)
    assert (pred.method, pred.mean_wh) == ("persistence", 700)
    two_days = _history(2, [0, 0], T0 + DAY + 900 * 10)
    pred = predict(two_days, T0 + DAY + 900 * 10, config)
    assert pred.method == "daily_mean"
    assert pred.mean_wh == _daily(14)


def test_split_request_caps_shares_and_rotates() -> None:
    peers = [PeerCapacity(p, 10_000) for p in ("a", "b", "c", "d")]
    reqs = split_request(
        3000, peers, slot_start=T0, max_share_bp=3334, contributed={}, last_asked=()
    )
    assert sum(r.energy_wh for r in reqs) == 3000
    assert max(r.energy_wh for r in reqs) <= 3000 * 3334 // 10_000 + 1
    # peers asked last time weigh half
    reqs = split_request(
        3000, peers, slot_start=T0, max_share_bp=10_000, contributed={}, last_asked=("a", "b")
    )
    got = {r.peer: r.energy_wh for r in reqs}
    assert got == {"a": 500, "b": 500, "c": 1000, "d": 1000}


def test_split_request_relaxes_cap_when_others_cannot_cover() -> None:
    peers = [PeerCapacity("big", 10_000), PeerCapacity("small", 100, "demand_reduction")]
    reqs = split_request(
        2000, peers, slot_start=T0, max_share_bp=3334, contributed={}, last_asked=()
    )
    got = {r.peer: (r.energy_wh, r.means) for r in reqs}
    assert got == {"big": (1900, "storage"), "small": (100, "demand_reduction")}
    assert (
        split_request(0, peers, slot_start=T0, max_share_bp=1, contributed={}, last_asked=()) == ()
    )
    assert split_request(5, [], slot_start=T0, max_share_bp=1, contributed={}, last_asked=()) == ()


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(1, 50_000),
    avail=st.lists(st.integers(0, 20_000), min_size=1, max_size=8),
    share=st.integers(1000, 10_000),
)
def test_split_request_properties(total: int, avail: list[int], share: int) -> None:
    peers = [PeerCapacity(f"p{i}", a) for i, a in enumerate(avail)]
    reqs = split_request(
        total, peers, slot_start=T0, max_share_bp=share, contributed={}, last_asked=()
    )
    got = {r.peer: r.energy_wh for r in reqs}
    assert sum(got.values()) == min(total, sum(avail))
    cap = max(1, total * share // 10_000)
    for p in peers:
        assert got.get(p.peer, 0) <= p.available_wh
        if got.get(p.peer, 0) > cap + 1:
            # only when every other peer is already at its limit or at the raised cap
            others = [q for q in peers if q.peer != p.peer]
            assert all(got.get(q.peer, 0) >= min(q.available_wh, cap) for q in others)


def test_step_requests_below_low_and_cancels_above_high() -> None:
    config = PeerBankConfig(low_wh=0, high_wh=2000, horizon_slots=2, lags=1, min_samples=99)
    peers = [PeerCapacity(p, 5000) for p in ("a", "b", "c")]
    state = PeerBankState()
    state, decision = step(state, Observation(T0, -3000, 800, 0), peers, config)
    assert decision.action == "request"
    assert decision.reason.code == "inventory_below_low"
    assert sum(r.energy_wh for r in decision.requests) == 1000 + 3000
    assert {r.slot_start for r in decision.requests} == {T0 + 1800}
    assert len(state.open_requests) == 3
    # The level recovers on its own: the open requests are cancelled.
    state, decision = step(state, Observation(T0 + 900, 5000, 700, 0), peers, config)
    assert decision.action == "cancel"
    assert decision.reason.code == "inventory_above_high"
    assert state.open_requests == ()
    state, decision = step(state, Observation(T0 + 1800, -3000, 700, 0), peers, config)
    assert decision.action == "request"
    state, decision = step(state, Observation(T0 + 2700, -3000, 700, 0), peers, config)
    assert decision.action == "hold"
    assert decision.reason.code == "inventory_below_low_covered"
    # The requested slot comes: its requests count as contributions and forecasts.
    state, decision = step(state, Observation(T0 + 3600, 1000, 700, 4000), peers, config)
    assert decision.reason.code == "inventory_in_band"
    assert sum(v for _, v in state.contributed) == 4000
    assert state.cum_forecast_replenishment_wh == 4000
    assert state.cum_actual_replenishment_wh == 4000
    assert state.cum_actual_consumption_wh == 800 + 4 * 700


def test_no_peer_carries_the_replenishment_repeatedly() -> None:
    config = PeerBankConfig(low_wh=0, high_wh=2000, horizon_slots=1, lags=1, min_samples=99)
    peers = [PeerCapacity(p, 100_000) for p in ("a", "b", "c", "d", "e")]
    state = PeerBankState()
    t = T0
    for _ in range(40):
        state, _decision = step(state, Observation(t, -1001, 100, 0), peers, config)
        t += 900
    shares = dict(state.contributed)
    assert set(shares) == {"a", "b", "c", "d", "e"}
    assert max(shares.values()) - min(shares.values()) <= 2


def test_consumption_forecast_and_records_accumulate() -> None:
    config = PeerBankConfig(low_wh=-(10**9), high_wh=10**9, horizon_slots=1, lags=1)
    state = PeerBankState()
    for d in range(3):
        for k in range(2):
            obs = Observation(T0 + d * DAY + 900 * k, 0, 100 * (k + 1) + d, 0)
            state, decision = step(state, obs, [], config)
            assert decision.action == "hold"
    assert state.cum_actual_consumption_wh == sum(
        100 * (k + 1) + d for d in range(3) for k in range(2)
    )
    assert state.cum_forecast_consumption_wh > 0
    no_capacity = PeerBankConfig(low_wh=10, high_wh=20, horizon_slots=1, lags=1)
    _, decision = step(PeerBankState(), Observation(T0, 0, 0, 0), [], no_capacity)
    assert decision.reason.code == "inventory_below_low_no_capacity"
