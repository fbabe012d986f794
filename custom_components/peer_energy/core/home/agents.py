"""Bidding agents: one per asset kind, and the home agent that nets them into one order.

Each asset agent is a pure function from plain inputs (device state, forecasts, a
:class:`PriceOutlook`, the owner's :class:`OwnerPolicy`) to :class:`AssetBid` values for the
coming slots. Every bid carries a machine-readable :class:`~.orders.Reason` (a code and
integer/str params), so a user can always see why an asset bid what it bid.

- :func:`pv_bids`: offers the forecast production, clean, never below the feed-in tariff.
- :func:`battery_bids`: step curves from the mean and spread of expected prices, respecting
  reserve state of charge, power limits, round-trip efficiency and degradation cost.
- :func:`ev_bids`: the energy needed by departure; willingness to pay rises as the deadline
  nears, up to the import price when only just enough slots remain (the grid then guarantees
  the deadline whenever it is physically possible).
- :func:`plug_bids`: a deferrable load; stays off while the price is above the average by more
  than the owner's peak margin, never beyond its maximum delay; counts the flexibility given.
- :func:`base_load_bids`: inflexible demand at the import price.
- The home agent (:mod:`.netting`, re-exported here): :func:`home_orders` nets all asset bids
  of a slot into ONE order, :func:`home_bid` into a buy and a sell order that never cross;
  :func:`split_fill` / :func:`split_result` split the home's fill back to its assets.
- The shared values (:mod:`.bids`, re-exported here): asset bids and allocations, the
  owner's policy, the price outlook, the horizon.

Energy is Wh, power W, prices minor units per kWh, all integers.

Public API: the names in ``__all__``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..market.orders import Reason, Side, Step
from .bids import (
    SECONDS_PER_HOUR,
    AssetAllocation,
    AssetBid,
    AssetKind,
    Horizon,
    OwnerPolicy,
    PriceOutlook,
)
from .netting import (
    home_bid,
    home_order,
    home_orders,
    home_price,
    persistence_outlook,
    split_fill,
    split_result,
)

__all__ = [
    "SECONDS_PER_HOUR",
    "AssetAllocation",
    "AssetBid",
    "AssetKind",
    "BatteryState",
    "EVState",
    "Horizon",
    "OwnerPolicy",
    "PlugState",
    "PriceOutlook",
    "base_load_bids",
    "battery_bids",
    "ev_bids",
    "home_bid",
    "home_order",
    "home_orders",
    "home_price",
    "persistence_outlook",
    "plug_after_slot",
    "plug_bids",
    "plug_threshold",
    "pv_bids",
    "split_fill",
    "split_result",
]


# --- asset agents --------------------------------------------------------------------------


def _sell_floor(outlook: PriceOutlook, policy: OwnerPolicy) -> int:
    floor = outlook.feed_in_tariff
    if policy.min_sell_price is not None:
        floor = max(floor, policy.min_sell_price)
    return floor


def _buy_cap(outlook: PriceOutlook, policy: OwnerPolicy, price: int) -> int:
    cap = min(price, outlook.import_price)
    if policy.max_buy_price is not None:
        cap = min(cap, policy.max_buy_price)
    return cap


def pv_bids(
    asset_id: str,
    production_wh: Sequence[int],
    horizon: Horizon,
    outlook: PriceOutlook,
    policy: OwnerPolicy,
) -> tuple[AssetBid, ...]:
    """Offer forecast PV production per slot, clean, at no less than the feed-in tariff."""
    floor = _sell_floor(outlook, policy)
    bids = []
    for start, wh in zip(horizon.slots, production_wh, strict=False):
        if wh > 0:
            bids.append(
                AssetBid(
                    asset_id,
                    AssetKind.PV,
                    start,
                    Side.SELL,
                    (Step(floor, wh),),
                    Reason.of("pv_surplus", forecast_wh=wh, floor=floor),
                    clean=True,
                )
            )
    return tuple(bids)


def base_load_bids(
    asset_id: str,
    load_wh: Sequence[int],
    horizon: Horizon,
    outlook: PriceOutlook,
) -> tuple[AssetBid, ...]:
    """Inflexible demand: the forecast load per slot at the import price."""
    return tuple(
        AssetBid(
            asset_id,
            AssetKind.BASE_LOAD,
            start,
            Side.BUY,
            (Step(outlook.import_price, wh),),
            Reason.of("base_load", forecast_wh=wh),
        )
        for start, wh in zip(horizon.slots, load_wh, strict=False)
        if wh > 0
    )


@dataclass(frozen=True, slots=True)
class BatteryState:
    """A home battery. ``efficiency_pct`` is round trip; ``degradation`` per kWh cycled."""

    asset_id: str
    capacity_wh: int
    soc_wh: int
    reserve_pct: int = 20
    max_charge_w: int = 3000
    max_discharge_w: int = 3000
    efficiency_pct: int = 90
    degradation: int = 2
    clean: bool = False

    @property
    def reserve_wh(self) -> int:
        """State of charge the battery never goes below."""
        return self.capacity_wh * self.reserve_pct // 100


def _thirds(total: int) -> list[int]:
    base = total // 3
    return [base + (1 if k < total - 3 * base else 0) for k in range(3)]


@dataclass(frozen=True, slots=True)
class _Continuation:
    """What the battery's self-consumption controller does after this slot (see
    :func:`battery_bids`): its cost for a given state of charge, and the first slot where the
    battery runs empty ("short") or full ("full") on the way."""

    state: BatteryState
    net: tuple[int, ...]  # the home's forecast net demand (load - PV) of slots 1..
    imports: tuple[int, ...]
    feed_ins: tuple[int, ...]
    per_charge: int
    per_discharge: int

    def run(self, soc: int, terminal: int) -> tuple[int, str, int]:
        """Cost (milli-minor units) of slots 1.. from ``soc`` with the content left at the end
        valued at ``terminal`` per kWh; and the first binding event and its slot offset."""
        s = self.state
        eff = max(1, min(100, s.efficiency_pct))
        reserve, cap = s.reserve_wh, s.capacity_wh
        cost = 0
        event, at = "none", 0
        for k, n in enumerate(self.net, start=1):
            if n > 0:
                want = min(n, self.per_discharge)
                d = min(want, max(0, soc - reserve))
                if d < want and event == "none":
                    event, at = "short", k
                soc -= d
                cost += (n - d) * self.imports[k - 1]
            elif n < 0:
                want = min(-n, self.per_charge)
                c = min(want, max(0, cap - soc) * 100 // eff)
                if c < want and event == "none":
                    event, at = "full", k
                soc += c * eff // 100
                cost -= (-n - c) * self.feed_ins[k - 1]
        return cost - soc * terminal, event, at


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def battery_bids(
    state: BatteryState,
    horizon: Horizon,
    outlook: PriceOutlook,
    policy: OwnerPolicy,
    *,
    net_wh: Sequence[int] | None = None,
) -> tuple[AssetBid, ...]:
    """The battery's bids for the first slot of the horizon: self-consumption first, then
    trades priced at the value of stored energy.

    ``net_wh`` is the home's forecast net demand without the battery (load - PV, Wh) for the
    slots of the horizon, the first being the slot bid for. The battery is re-planned every
    slot, so it only bids for that first slot.

    **Self-consumption is the floor.** What the stand-alone controller would do this slot
    (charge from the home's own surplus, cover its own deficit, within power, capacity and
    reserve) is bid as its own step, reason ``battery_self_consumption``: the own surplus
    is stored unless someone pays more than storing it is worth (limit >= the feed-in
    tariff, so surplus nobody buys is always stored), the own deficit is covered unless the
    community sells for less than keeping the energy is worth. :func:`split_fill` gives
    unsold own surplus to the own battery and uncovered own demand to its own discharge.

    **Trades only where they improve on it.** The rest of the power is bid in three
    tranches: charge from the community (``battery_charge_cheap``) at no more than what the
    stored energy is worth x efficiency - degradation, discharge to it
    (``battery_discharge_dear``) at no less than what keeping it is worth + degradation.

    **Value of stored energy.** With a forecast (``net_wh`` of two slots or more), the
    stand-alone controller is run over the rest of the horizon at the grid prices of each
    slot (``PriceOutlook.import_at``/``feed_in_at``: known day-ahead prices when given): a
    tranche is worth the change in that continuation's cost. Energy kept is used where the
    battery would otherwise run short (it avoids importing at that slot's import price) or
    displaces surplus the battery would spill when full (worth the feed-in tariff); the
    content left at the end of the horizon counts at the feed-in tariff when buying and at
    the expected mean when selling, so both sides err towards not trading. Without a
    forecast, stored energy is worth the mean expected price, the tranches step by half the
    spread (the cheaper, the more it buys; the dearer, the more it sells), and it only
    charges in a slot expected at or below the mean, discharges at or above it; the rest of
    its power is bid at the feed-in tariff (charge) and the import price (discharge), with
    reason ``battery_self_consumption``, so it still stores the home's unsold surplus and
    covers its unserved load (:func:`split_fill`).

    Limits: discharge never below ``reserve``, charge never above capacity (the round-trip
    loss is booked on charging), each side within its power, even if every step fills.
    """
    eff = max(1, min(100, state.efficiency_pct))
    deg = state.degradation
    imp0, fit0 = outlook.import_at(0), outlook.feed_in_at(0)
    if not horizon.slots:
        return ()
    slot = horizon.slots[0]
    per_charge = horizon.energy(state.max_charge_w)
    per_discharge = horizon.energy(state.max_discharge_w)
    soc = state.soc_wh
    room_ac = max(0, state.capacity_wh - soc) * 100 // eff
    stock = max(0, soc - state.reserve_wh)
    c_max = max(0, min(per_charge, room_ac))
    d_max = max(0, min(per_discharge, stock))
    net = list(net_wh) if net_wh is not None else []
    n0 = net[0] if net else 0
    c0 = min(-n0, c_max) if n0 < 0 else 0
    d0 = min(n0, d_max) if n0 > 0 else 0
    mean = min(max(outlook.mean, fit0), imp0)
    spread = outlook.spread
    soc_pct = soc * 100 // state.capacity_wh if state.capacity_wh > 0 else 0
    h = min(len(net), len(horizon.slots))
    # A forecast of the whole horizon (or of two slots or more) values stored energy by the
    # continuation; a forecast of only the current slot of a longer horizon does not.
    forecast = h >= 2 or (h == 1 and len(horizon.slots) == 1)
    cont = _Continuation(
        state,
        tuple(net[1:h]),
        tuple(outlook.import_at(k) for k in range(1, h)),
        tuple(outlook.feed_in_at(k) for k in range(1, h)),
        per_charge,
        per_discharge,
    )
    t_acq = outlook.feed_in_at(max(h - 1, 0)) if forecast else mean
    t_rel = max(t_acq, mean)
    s1 = soc + c0 * eff // 100 - d0  # state after the stand-alone controller's slot
    base_acq, event, at = cont.run(s1, t_acq)
    base_rel = cont.run(s1, t_rel)[0] if t_rel != t_acq else base_acq
    half = max(1, spread // 2)

    def acq_value(lo: int, hi: int, qty: int) -> int:
        """Worth of raising the content from ``lo`` to ``hi`` (Wh), per kWh of ``qty``."""
        if not forecast:
            return (hi - lo) * t_acq // qty if qty else t_acq
        a = base_acq if lo == s1 else cont.run(lo, t_acq)[0]
        b = cont.run(hi, t_acq)[0]
        return (a - b) // qty

    def rel_cost(lo: int, hi: int, qty: int) -> int:
        """Cost of lowering the content from ``hi`` to ``lo`` (Wh), per kWh of ``qty``."""
        if not forecast:
            return _ceil_div((hi - lo) * t_rel, qty) if qty else t_rel
        a = cont.run(lo, t_rel)[0]
        b = base_rel if hi == s1 else cont.run(hi, t_rel)[0]
        return _ceil_div(a - b, qty)

    params: dict[str, int | str] = {
        "expected": outlook.at(0),
        "soc_pct": soc_pct,
        "reserve_pct": state.reserve_pct,
        "mean": mean,
        "spread": spread,
        "event": event,
        "event_in_slots": at,
    }
    bids: list[AssetBid] = []

    def add(side: Side, steps: list[Step], code: str, **extra: int | str) -> None:
        steps = [s for s in steps if s.energy_wh > 0]
        if steps:
            bids.append(
                AssetBid(
                    state.asset_id,
                    AssetKind.BATTERY,
                    slot,
                    side,
                    tuple(steps),
                    Reason.of(code, **params, **extra),
                    clean=state.clean and side is Side.SELL,
                )
            )

    # Buying side: store own surplus, then charge from the community.
    buy_top = -1
    if c0 > 0:
        keep = rel_cost(soc, s1, c0)
        limit = min(max(keep, fit0), imp0)
        buy_top = limit
        add(Side.BUY, [Step(limit, c0)], "battery_self_consumption", own_wh=c0, value=keep)
    # Without a forecast the slot's expected price picks the side, as the home will: charge
    # when it is below the mean, discharge when above (both when it is the mean).
    expected0 = outlook.at(0)
    extra_c = c_max - c0 if forecast or expected0 <= outlook.mean else 0
    steps: list[Step] = []
    done = c0
    prev = imp0 if buy_top < 0 else buy_top
    for j, q in enumerate(_thirds(extra_c)):
        if q <= 0:
            continue
        lo = soc + done * eff // 100
        hi = soc + (done + q) * eff // 100
        done += q
        # per AC kWh (with a forecast the charging loss is in the state change)
        value = acq_value(lo, hi, q) if forecast else t_acq * eff // 100 - j * half
        price = value - deg
        price = min(_buy_cap(outlook, policy, price), prev)
        if price < fit0:
            break
        prev = price
        steps.append(Step(price, q))
    if steps:
        buy_top = max(buy_top, steps[0].price)
        add(Side.BUY, steps, "battery_charge_cheap", value=steps[0].price + deg)
    # Without a forecast the home's own surplus is unknown: the rest of the charge power is
    # bid at the feed-in tariff, so surplus nobody pays more for still charges the battery.
    rest_c = c_max - c0 - sum(s.energy_wh for s in steps)
    cap_ok = policy.max_buy_price is None or policy.max_buy_price >= fit0
    if not forecast and rest_c > 0 and cap_ok:
        buy_top = max(buy_top, fit0)
        add(Side.BUY, [Step(fit0, rest_c)], "battery_self_consumption", own_wh=0, value=fit0)

    # Selling side: cover own deficit, then discharge to the community.
    floor_ask = max(fit0, buy_top + 1)
    if d0 > 0:
        worth = acq_value(s1, soc, d0)
        ask = max(worth, floor_ask)
        add(Side.SELL, [Step(ask, d0)], "battery_self_consumption", own_wh=d0, value=worth)
    extra_d = d_max - d0 if forecast or expected0 >= outlook.mean else 0
    steps = []
    done = d0
    prev = floor_ask
    for j, q in enumerate(_thirds(extra_d)):
        if q <= 0:
            continue
        hi = soc - done
        lo = soc - done - q
        done += q
        cost = rel_cost(lo, hi, q) if forecast else t_rel
        ask = cost + deg + (0 if forecast else j * half)
        ask = max(ask, _sell_floor(outlook, policy), prev)
        if ask > imp0:
            break
        prev = ask
        steps.append(Step(ask, q))
    if steps:
        add(Side.SELL, steps, "battery_discharge_dear", value=steps[0].price - deg)
    # Likewise the rest of the discharge power at the import price: the home's own load the
    # community does not serve is still covered by its battery.
    rest_d = d_max - d0 - sum(s.energy_wh for s in steps)
    floor_ok = policy.min_sell_price is None or policy.min_sell_price <= imp0
    if not forecast and rest_d > 0 and floor_ok and imp0 >= floor_ask:
        add(Side.SELL, [Step(imp0, rest_d)], "battery_self_consumption", own_wh=0, value=imp0)
    return tuple(bids)


@dataclass(frozen=True, slots=True)
class EVState:
    """An EV on its charger: energy still needed by the departure time."""

    asset_id: str
    energy_needed_wh: int
    departure: int
    max_charge_w: int = 11_000
    connected: bool = True


def ev_bids(
    state: EVState, horizon: Horizon, outlook: PriceOutlook, policy: OwnerPolicy
) -> tuple[AssetBid, ...]:
    """Bid for the needed energy in every slot before departure, more eagerly near the end.

    With ``needed`` the slots a full-power charge still takes and ``left`` the slots before
    departure (counted from each bid's slot, assuming nothing was charged before it),
    urgency is ``needed / left``; the limit rises from the feed-in tariff to the import
    price with urgency (capped by the owner's maximum price). When ``needed >= left`` the
    bid is at the import price whatever the policy says, so the grid fills what the market
    does not and the deadline is met if it physically can be.
    """
    if not state.connected or state.energy_needed_wh <= 0:
        return ()
    per_slot = horizon.energy(state.max_charge_w)
    if per_slot <= 0:
        return ()
    needed = -(-state.energy_needed_wh // per_slot)
    valid = [s for s in horizon.slots if s + horizon.slot_seconds <= state.departure]
    bids = []
    for start in valid:
        left = (state.departure - start) // horizon.slot_seconds
        lo, hi = outlook.feed_in_tariff, outlook.import_price
        if needed >= left:
            price, code = hi, "ev_deadline"
        else:
            price = _buy_cap(outlook, policy, lo + (hi - lo) * needed // left)
            code = "ev_charge"
        bids.append(
            AssetBid(
                state.asset_id,
                AssetKind.EV,
                start,
                Side.BUY,
                (Step(price, min(per_slot, state.energy_needed_wh)),),
                Reason.of(
                    code,
                    need_wh=state.energy_needed_wh,
                    slots_left=left,
                    urgency_pct=min(100, needed * 100 // left),
                ),
            )
        )
    return tuple(bids)


@dataclass(frozen=True, slots=True)
class PlugState:
    """A deferrable load on a smart plug.

    ``remaining_wh`` is the work still to do, ``delay_used_s`` how long it has already been
    held off, ``flex_wh`` the energy it has shifted out of peaks so far.
    """

    asset_id: str
    remaining_wh: int
    power_w: int
    max_delay_s: int
    delay_used_s: int = 0
    flex_wh: int = 0


def plug_threshold(outlook: PriceOutlook, policy: OwnerPolicy) -> int:
    """The price above which the plug stays off: average x (1 + peak margin)."""
    return outlook.mean * (100 + policy.peak_margin_pct) // 100


def plug_bids(
    state: PlugState, horizon: Horizon, outlook: PriceOutlook, policy: OwnerPolicy
) -> tuple[AssetBid, ...]:
    """Plan the plug over the horizon from expected prices.

    A slot whose expected price is above the threshold gets no bid (the plug is off) as long
    as the delay budget allows; otherwise it bids at the threshold, so it also stays off if
    the cleared price turns out higher. When the remaining delay budget cannot cover another
    slot off, it bids at the import price: the grid then runs it, and it is never held off
    longer than its maximum delay (see :func:`plug_after_slot`).
    """
    threshold = min(plug_threshold(outlook, policy), outlook.import_price)
    per_slot = horizon.energy(state.power_w)
    remaining = state.remaining_wh
    delay = state.delay_used_s
    bids = []
    for k, start in enumerate(horizon.slots):
        if remaining <= 0 or per_slot <= 0:
            break
        qty = min(per_slot, remaining)
        can_wait = delay + horizon.slot_seconds <= state.max_delay_s
        if can_wait and outlook.at(k) > threshold:
            delay += horizon.slot_seconds
            continue
        if can_wait:
            price, code = threshold, "plug_run"
        else:
            price, code = outlook.import_price, "plug_delay_exhausted"
        bids.append(
            AssetBid(
                state.asset_id,
                AssetKind.PLUG,
                start,
                Side.BUY,
                (Step(price, qty),),
                Reason.of(
                    code,
                    threshold=threshold,
                    expected=outlook.at(k),
                    delay_used_s=delay,
                    flex_wh=state.flex_wh,
                ),
            )
        )
        remaining -= qty
    return tuple(bids)


def plug_after_slot(state: PlugState, ran_wh: int, wanted_wh: int, slot_seconds: int) -> PlugState:
    """Update the plug after a slot: work done, delay used, flexibility counted.

    ``wanted_wh`` is what it would have used running flat out; if it ran less, the slot
    counts as delay and the difference as flexibility given.
    """
    remaining = max(0, state.remaining_wh - ran_wh)
    if ran_wh >= wanted_wh or state.remaining_wh <= 0:
        return replace(state, remaining_wh=remaining)
    return replace(
        state,
        remaining_wh=remaining,
        delay_used_s=state.delay_used_s + slot_seconds,
        flex_wh=state.flex_wh + (wanted_wh - ran_wh),
    )
