"""Peer Bank inventory control (seed 000): forecast the community inventory, ask for help fairly.

The community *inventory* of a slot is its net energy position: supply (generation and
storage discharge) minus demand, in Wh. Every period (slot) :func:`step`:

1. records the observed inventory, consumption and replenishment (and adds them to the
   cumulative actuals, next to the cumulative forecasts made for the same periods);
2. predicts the inventory ``horizon`` slots ahead with a Gaussian model: for the current time
   of day, the vectors ``(inventory of the last `lags` slots, inventory `horizon` later)`` seen
   on past days give a mean and a covariance (numpy); the prediction is the conditional mean
   given today's last ``lags`` slots, with its standard deviation. With too little history it
   falls back to the mean of the same slot of day, then to persistence;
3. compares the prediction with a low and a high threshold: below the low threshold it asks
   peers for replenishment (storage discharge, flexible generation or demand reduction) worth
   ``target - predicted`` where the target is the midpoint of the thresholds; above the high
   threshold it cancels the open requests;
4. splits a request fairly (:func:`split_request`): nobody is asked for more than
   ``max_share_bp`` of it while others can cover the rest, peers that were asked last period
   weigh half as much as the others (rotation), and leftover Wh go to the peers that have
   contributed least so far.

The model uses floats internally but every output is an integer Wh, so the advice is exact
and comparable; the inputs are the community's recorded history, which every peer holds.

Public API: :class:`PeerBankConfig`, :class:`PeerCapacity`, :class:`Observation`,
:class:`Prediction`, :class:`Request`, :class:`Decision`, :class:`PeerBankState`,
:func:`predict`, :func:`split_request`, :func:`step`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..market.fairness import Divider, FairnessState
from ..market.orders import BASIS_POINTS, Reason
from ..market.slots import SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class PeerBankConfig:
    """Thresholds and model settings."""

    low_wh: int
    high_wh: int
    horizon_slots: int = 4
    lags: int = 4
    slot_seconds: int = 900
    max_days: int = 28
    min_samples: int = 3
    max_share_bp: int = 3_334


@dataclass(frozen=True, slots=True)
class PeerCapacity:
    """What one peer could contribute to a replenishment now (Wh) and how."""

    peer: str
    available_wh: int
    means: str = "storage"


@dataclass(frozen=True, slots=True)
class Observation:
    """One period's measured community figures."""

    slot_start: int
    inventory_wh: int
    consumption_wh: int
    replenishment_wh: int


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted inventory at ``slot_start`` with its standard deviation and method."""

    slot_start: int
    mean_wh: int
    std_wh: int
    method: str
    samples: int


@dataclass(frozen=True, slots=True)
class Request:
    """A replenishment request to one peer for one slot."""

    peer: str
    slot_start: int
    energy_wh: int
    means: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What the Peer Bank decided this period, and why."""

    action: str
    prediction: Prediction
    requests: tuple[Request, ...]
    reason: Reason


@dataclass(frozen=True, slots=True)
class PeerBankState:
    """Everything carried from one period to the next (plain data)."""

    history: tuple[Observation, ...] = ()
    open_requests: tuple[Request, ...] = ()
    contributed: tuple[tuple[str, int], ...] = ()
    last_asked: tuple[str, ...] = ()
    forecast_consumption: Mapping[int, int] = field(default_factory=dict)
    cum_forecast_consumption_wh: int = 0
    cum_forecast_replenishment_wh: int = 0
    cum_actual_consumption_wh: int = 0
    cum_actual_replenishment_wh: int = 0


def _series(history: Sequence[Observation]) -> dict[int, int]:
    return {o.slot_start: o.inventory_wh for o in history}


def predict(history: Sequence[Observation], now: int, config: PeerBankConfig) -> Prediction:
    """Predict the inventory ``config.horizon_slots`` after slot ``now`` (see module doc)."""
    series = _series(history)
    dt = config.slot_seconds
    target = now + config.horizon_slots * dt
    lags = [now - k * dt for k in range(config.lags - 1, -1, -1)]
    rows = []
    for d in range(1, config.max_days + 1):
        back = d * SECONDS_PER_DAY
        keys = [t - back for t in lags] + [target - back]
        if all(k in series for k in keys) and target - back <= now:
            rows.append([series[k] for k in keys])
    x_now = [series.get(t) for t in lags]
    if len(rows) >= config.min_samples and all(v is not None for v in x_now):
        z = np.array(rows, dtype=float)
        mu = z.mean(axis=0)
        cov = np.cov(z, rowvar=False, bias=False)
        n = config.lags
        ridge = 1.0 + 1e-6 * float(np.trace(cov))
        cxx = cov[:n, :n] + ridge * np.eye(n)
        cyx = cov[n, :n]
        x = np.array([float(v) for v in x_now if v is not None])
        weights = np.linalg.solve(cxx, cyx)
        mean = float(mu[n] + weights @ (x - mu[:n]))
        var = max(0.0, float(cov[n, n] - weights @ cyx))
        return Prediction(target, round(mean), round(var**0.5), "gaussian", len(rows))
    same = [
        series[target - d * SECONDS_PER_DAY]
        for d in range(1, config.max_days + 1)
        if target - d * SECONDS_PER_DAY in series
    ]
    if same:
        arr = np.array(same, dtype=float)
        return Prediction(target, round(float(arr.mean())), round(float(arr.std())), "daily_mean",
                          len(same))  # fmt: skip
    last = series.get(now, history[-1].inventory_wh if history else 0)
    return Prediction(target, last, 0, "persistence", 0)


def split_request(
    total_wh: int,
    peers: Sequence[PeerCapacity],
    *,
    slot_start: int,
    max_share_bp: int,
    contributed: Mapping[str, int],
    last_asked: Sequence[str],
) -> tuple[Request, ...]:
    """Split a replenishment request fairly among peers (see the module docstring, item 4)."""
    able = sorted((p for p in peers if p.available_wh > 0), key=lambda p: p.peer)
    if total_wh <= 0 or not able:
        return ()
    cap = max(1, total_wh * max_share_bp // BASIS_POINTS)
    need = min(total_wh, sum(p.available_wh for p in able))
    if sum(min(p.available_wh, cap) for p in able) < need:
        # Raise the per-peer cap just enough for the peers together to cover the need.
        rest = need
        avail = sorted(p.available_wh for p in able)
        for idx, a in enumerate(avail):
            left = len(avail) - idx
            if a * left >= rest:
                cap = max(cap, -(-rest // left))
                break
            rest -= a
    caps = [min(p.available_wh, cap) for p in able]
    asked = set(last_asked)
    weights = [1 if p.peer in asked else 2 for p in able]
    state = FairnessState(tuple(sorted((k, v) for k, v in contributed.items() if v > 0)))
    shares = Divider(state, slot_start).waterfill(
        total_wh, weights, caps, [p.peer for p in able], [p.peer for p in able]
    )
    return tuple(
        Request(p.peer, slot_start, wh, p.means)
        for p, wh in zip(able, shares, strict=True)
        if wh > 0
    )


def _consumption_forecast(history: Sequence[Observation], slot: int) -> int:
    same = [
        o.consumption_wh
        for o in history
        if (slot - o.slot_start) % SECONDS_PER_DAY == 0 and o.slot_start < slot
    ][-7:]
    if same:
        return sum(same) // len(same)
    return history[-1].consumption_wh if history else 0


def step(
    state: PeerBankState,
    observation: Observation,
    peers: Sequence[PeerCapacity],
    config: PeerBankConfig,
) -> tuple[PeerBankState, Decision]:
    """Record one period, update the model, and decide (request / cancel / hold)."""
    keep_from = observation.slot_start - config.max_days * SECONDS_PER_DAY - SECONDS_PER_DAY
    history = (*(o for o in state.history if o.slot_start >= keep_from), observation)
    forecast_now = state.forecast_consumption.get(observation.slot_start, 0)
    # Replenishment forecast for this period: what was requested for it.
    requested_now = sum(
        r.energy_wh for r in state.open_requests if r.slot_start == observation.slot_start
    )
    contributed = dict(state.contributed)
    for r in state.open_requests:
        if r.slot_start == observation.slot_start:
            contributed[r.peer] = contributed.get(r.peer, 0) + r.energy_wh
    still_open = tuple(r for r in state.open_requests if r.slot_start > observation.slot_start)

    prediction = predict(history, observation.slot_start, config)
    next_slot = observation.slot_start + config.slot_seconds
    forecasts = {s: v for s, v in state.forecast_consumption.items() if s > observation.slot_start}
    forecasts[next_slot] = _consumption_forecast(history, next_slot)

    if prediction.mean_wh < config.low_wh:
        target = (config.low_wh + config.high_wh) // 2
        already = sum(r.energy_wh for r in still_open if r.slot_start <= prediction.slot_start)
        need = target - prediction.mean_wh - already
        requests = split_request(
            need,
            peers,
            slot_start=prediction.slot_start,
            max_share_bp=config.max_share_bp,
            contributed=contributed,
            last_asked=state.last_asked,
        )
        action = "request" if requests else "hold"
        open_requests = still_open + requests
        asked = tuple(sorted({r.peer for r in requests})) if requests else state.last_asked
        if requests:
            code = "inventory_below_low"
        elif need <= 0:
            code = "inventory_below_low_covered"
        else:
            code = "inventory_below_low_no_capacity"
        reason = Reason.of(
            code,
            predicted_wh=prediction.mean_wh,
            low_wh=config.low_wh,
            requested_wh=sum(r.energy_wh for r in requests),
        )
    elif prediction.mean_wh > config.high_wh and still_open:
        requests = ()
        action = "cancel"
        open_requests = ()
        asked = state.last_asked
        reason = Reason.of(
            "inventory_above_high",
            predicted_wh=prediction.mean_wh,
            high_wh=config.high_wh,
            cancelled=len(still_open),
        )
    else:
        requests = ()
        action = "hold"
        open_requests = still_open
        asked = state.last_asked
        reason = Reason.of("inventory_in_band", predicted_wh=prediction.mean_wh)

    new_state = replace(
        state,
        history=history,
        open_requests=open_requests,
        contributed=tuple(sorted(contributed.items())),
        last_asked=asked,
        forecast_consumption=forecasts,
        cum_forecast_consumption_wh=state.cum_forecast_consumption_wh + forecast_now,
        cum_forecast_replenishment_wh=state.cum_forecast_replenishment_wh + requested_now,
        cum_actual_consumption_wh=state.cum_actual_consumption_wh + observation.consumption_wh,
        cum_actual_replenishment_wh=(
            state.cum_actual_replenishment_wh + observation.replenishment_wh
        ),
    )
    return new_state, Decision(action, prediction, requests, reason)
