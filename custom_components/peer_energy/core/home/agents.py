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
- :func:`home_orders` nets all asset bids of a slot into ONE order (only this leaves the home);
  :func:`split_fill` splits the home's fill back to its assets, with reasons.

Energy is Wh, power W, prices minor units per kWh, all integers.

Public API: the dataclasses below and the functions listed above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from math import isqrt

from ..market.clearing import clear_slot
from ..market.orders import MarketRules, Order, Priority, Reason, Side, Step

SECONDS_PER_HOUR = 3600


class AssetKind(StrEnum):
    """The kinds of asset an agent exists for."""

    PV = "pv"
    BATTERY = "battery"
    EV = "ev"
    PLUG = "plug"
    BASE_LOAD = "base_load"


@dataclass(frozen=True, slots=True)
class PriceOutlook:
    """Grid prices and the expected community price for each slot of the horizon.

    ``import_price`` and ``feed_in_tariff`` are the current slot's grid prices;
    ``import_prices`` and ``feed_in_tariffs`` optionally give the known grid prices of the
    coming slots (a dynamic tariff's published day-ahead prices), slot ``k`` at index ``k``.
    """

    import_price: int
    feed_in_tariff: int
    expected: tuple[int, ...]
    import_prices: tuple[int, ...] = ()
    feed_in_tariffs: tuple[int, ...] = ()

    @property
    def mean(self) -> int:
        """Mean expected price, floored (import price when nothing is expected)."""
        if not self.expected:
            return self.import_price
        return sum(self.expected) // len(self.expected)

    @property
    def spread(self) -> int:
        """Integer standard deviation of the expected prices."""
        if not self.expected:
            return 0
        m = self.mean
        return isqrt(sum((p - m) ** 2 for p in self.expected) // len(self.expected))

    def at(self, k: int) -> int:
        """Expected price of slot ``k`` of the horizon (the mean beyond the forecast)."""
        return self.expected[k] if k < len(self.expected) else self.mean

    def import_at(self, k: int) -> int:
        """Import price of slot ``k``: the known (e.g. day-ahead) price, else the current one."""
        return self.import_prices[k] if k < len(self.import_prices) else self.import_price

    def feed_in_at(self, k: int) -> int:
        """Feed-in tariff of slot ``k``: the known one, else the current one."""
        return self.feed_in_tariffs[k] if k < len(self.feed_in_tariffs) else self.feed_in_tariff


@dataclass(frozen=True, slots=True)
class OwnerPolicy:
    """The owner's choices that every agent of the home respects."""

    clean_only: bool = False
    max_buy_price: int | None = None
    min_sell_price: int | None = None
    peak_margin_pct: int = 20
    priority: Priority = Priority.HOUSEHOLD


@dataclass(frozen=True, slots=True)
class Horizon:
    """The coming slots to bid for (slot starts, ascending) and the slot length."""

    slots: tuple[int, ...]
    slot_seconds: int = 900

    def energy(self, power_w: int) -> int:
        """Energy in Wh that ``power_w`` delivers in one slot."""
        return power_w * self.slot_seconds // SECONDS_PER_HOUR


@dataclass(frozen=True, slots=True)
class AssetBid:
    """One asset's bid or offer for one slot, with its reason."""

    asset_id: str
    kind: AssetKind
    slot_start: int
    side: Side
    steps: tuple[Step, ...]
    reason: Reason
    clean: bool = False

    @property
    def energy_wh(self) -> int:
        """Total energy of the steps."""
        return sum(s.energy_wh for s in self.steps)


@dataclass(frozen=True, slots=True)
class AssetAllocation:
    """What one asset does in a slot: ``energy_wh`` > 0 consumes, < 0 produces.

    ``market_wh`` came from (or went to) other members, ``internal_wh`` from (or to) other
    assets of the same home, ``grid_wh`` from (or to) the grid.
    """

    asset_id: str
    slot_start: int
    energy_wh: int
    market_wh: int
    internal_wh: int
    grid_wh: int
    reason: Reason


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


# --- home agent ----------------------------------------------------------------------------


def _net_at(bids: Sequence[AssetBid], p: int) -> int:
    """Net demand at price ``p``: buy steps with limit >= p minus sell steps with ask <= p."""
    net = 0
    for b in bids:
        if b.side is Side.BUY:
            net += sum(s.energy_wh for s in b.steps if s.price >= p)
        else:
            net -= sum(s.energy_wh for s in b.steps if s.price <= p)
    return net


def _net_curve(bids: Sequence[AssetBid], lo: int, hi: int) -> tuple[list[int], dict[int, int]]:
    """Candidate prices within ``[lo, hi]`` and the net demand (buy minus sell) at each."""
    points: set[int] = {lo, hi}
    for b in bids:
        for s in b.steps:
            points.update(p for p in (s.price - 1, s.price, s.price + 1) if lo <= p <= hi)
    prices = sorted(points)
    net = {p: _net_at(bids, p) for p in prices}
    return prices, net


def home_order(
    owner: str,
    slot_start: int,
    bids: Sequence[AssetBid],
    outlook_price: int,
    policy: OwnerPolicy,
    import_price: int,
    feed_in_tariff: int,
) -> Order | None:
    """Net one slot's asset bids into the home's single order (None when balanced).

    The net demand ``N(p)`` (buy steps with limit >= p minus sell steps with ask <= p) is
    computed at every step price and its neighbours within ``[feed_in_tariff, import_price]``
    (no price outside that range can clear). If ``N`` is positive at the expected
    price the home buys with the curve ``max(N, 0)``, if negative it sells with
    ``max(-N, 0)``; if zero it sells when it has any surplus to sell at some price. One side
    per slot: whatever the home could do on the other side is left out.
    """
    mine = [b for b in bids if b.slot_start == slot_start and b.steps]
    if not mine:
        return None
    prices, net = _net_curve(mine, min(feed_in_tariff, import_price), import_price)
    ref = min(max(outlook_price, prices[0]), prices[-1])
    demand = sum(s.energy_wh for b in mine if b.side is Side.BUY for s in b.steps if s.price >= ref)
    supply = sum(
        s.energy_wh for b in mine if b.side is Side.SELL for s in b.steps if s.price <= ref
    )
    at = demand - supply
    has_surplus = any(net[p] < 0 for p in prices)
    has_demand = any(net[p] > 0 for p in prices)
    sell = at < 0 or (at == 0 and has_surplus) or not has_demand
    steps: list[Step] = []
    if sell:
        prev = 0
        for p in prices:
            s = max(-net[p], 0)
            if s > prev:
                steps.append(Step(p, s - prev))
                prev = s
    else:
        prev = 0
        for p in reversed(prices):
            d = max(net[p], 0)
            if d > prev:
                steps.append(Step(p, d - prev))
                prev = d
    if not steps:
        return None
    side = Side.SELL if sell else Side.BUY
    contributing = [b for b in mine if b.side is side]
    buy_wh = sum(b.energy_wh for b in mine if b.side is Side.BUY)
    sell_wh = sum(b.energy_wh for b in mine if b.side is Side.SELL)
    return Order(
        order_id=f"{owner}:{slot_start}",
        owner=owner,
        side=side,
        slot_start=slot_start,
        steps=tuple(steps),
        clean=sell and all(b.clean for b in contributing),
        clean_only=(not sell) and policy.clean_only,
        priority=policy.priority,
        reason=Reason.of(
            "home_net",
            assets=len({b.asset_id for b in mine}),
            asset_buy_wh=buy_wh,
            asset_sell_wh=sell_wh,
        ),
    )


def home_orders(
    owner: str,
    bids: Sequence[AssetBid],
    horizon: Horizon,
    outlook: PriceOutlook,
    policy: OwnerPolicy,
) -> tuple[Order, ...]:
    """The home's orders for the horizon: at most one per slot."""
    orders = []
    for k, start in enumerate(horizon.slots):
        order = home_order(
            owner, start, bids, outlook.at(k), policy, outlook.import_price, outlook.feed_in_tariff
        )
        if order is not None:
            orders.append(order)
    return tuple(orders)


def home_bid(
    owner: str,
    slot_start: int,
    bids: Sequence[AssetBid],
    policy: OwnerPolicy,
    import_price: int,
    feed_in_tariff: int,
    *,
    margin_wh: int = 0,
) -> tuple[Order, ...]:
    """The home's two-sided order for one slot: a buy order and a sell order that never cross.

    With the net demand ``N(p)`` of the slot's asset bids (buy steps with limit >= p minus
    sell steps with ask <= p, non-increasing in ``p``), the home buys ``max(N(p) - margin,
    0)`` and sells ``max(-N(p) - margin, 0)`` at each price ``p`` in ``[feed_in_tariff,
    import_price]``. Every buy step's limit is a price where ``N > 0`` and every sell step's
    ask one where ``N < 0``, so every buy limit lies strictly below every sell ask: the two
    orders can never trade with each other (``clear_slot`` would pair a member's own buy and
    sell like any other two orders), and at any single price at most one of them fills.
    ``margin_wh`` (the forecast's uncertainty) is kept back on both sides. The owner's
    ``max_buy_price`` caps the buy limits and ``min_sell_price`` floors the sell asks here,
    on what leaves the home (its own PV still serves its own load at any price), which
    only moves the two sides further apart. Ids are ``"<owner>:<slot_start>:buy"`` and
    ``"...:sell"``; none, one or two orders are returned.
    """
    mine = [b for b in bids if b.slot_start == slot_start and b.steps]
    if not mine:
        return ()
    prices, net = _net_curve(mine, min(feed_in_tariff, import_price), import_price)
    margin = max(margin_wh, 0)
    cap, floor = policy.max_buy_price, policy.min_sell_price
    buy: list[Step] = []
    prev = 0
    for p in reversed(prices):
        d = max(net[p] - margin, 0)
        if d > prev:
            buy.append(Step(p if cap is None else min(p, cap), d - prev))
            prev = d
    sell: list[Step] = []
    prev = 0
    for p in prices:
        s = max(-net[p] - margin, 0)
        if s > prev:
            sell.append(Step(p if floor is None else max(p, floor), s - prev))
            prev = s
    buy, sell = _merge_steps(buy), _merge_steps(sell)
    buy_wh = sum(b.energy_wh for b in mine if b.side is Side.BUY)
    sell_wh = sum(b.energy_wh for b in mine if b.side is Side.SELL)
    reason = Reason.of(
        "home_net",
        assets=len({b.asset_id for b in mine}),
        asset_buy_wh=buy_wh,
        asset_sell_wh=sell_wh,
        margin_wh=margin,
    )
    orders: list[Order] = []
    if buy:
        orders.append(
            Order(
                order_id=f"{owner}:{slot_start}:buy",
                owner=owner,
                side=Side.BUY,
                slot_start=slot_start,
                steps=tuple(buy),
                clean_only=policy.clean_only,
                priority=policy.priority,
                reason=reason,
            )
        )
    if sell:
        sellers = [b for b in mine if b.side is Side.SELL]
        orders.append(
            Order(
                order_id=f"{owner}:{slot_start}:sell",
                owner=owner,
                side=Side.SELL,
                slot_start=slot_start,
                steps=tuple(sell),
                clean=all(b.clean for b in sellers),
                priority=policy.priority,
                reason=reason,
            )
        )
    return tuple(orders)


def _merge_steps(steps: list[Step]) -> list[Step]:
    """Steps at the same price as one step (in the given order)."""
    out: list[Step] = []
    for step in steps:
        if out and out[-1].price == step.price:
            out[-1] = Step(step.price, out[-1].energy_wh + step.energy_wh)
        else:
            out.append(step)
    return out


def split_result(
    bids: Sequence[AssetBid],
    slot_start: int,
    bought_wh: int,
    sold_wh: int,
    price: int,
    import_price: int,
    feed_in_tariff: int,
    grid_available: bool = True,
) -> tuple[AssetAllocation, ...]:
    """:func:`split_fill` for a home that may have bought and sold in one slot.

    Two non-crossing orders fill together only when the slot clears with two prices (the
    home sells clean energy in the clean pool and buys in the general one); the devices
    then see the net, so the net position is split at ``price``.
    """
    net = bought_wh - sold_wh
    side = Side.BUY if net > 0 else Side.SELL if net < 0 else None
    return split_fill(
        bids, slot_start, side, abs(net), price, import_price, feed_in_tariff, grid_available
    )


def split_fill(
    bids: Sequence[AssetBid],
    slot_start: int,
    side: Side | None,
    filled_wh: int,
    price: int,
    import_price: int,
    feed_in_tariff: int,
    grid_available: bool = True,
) -> tuple[AssetAllocation, ...]:
    """Split the home's result for one slot back to its assets.

    1. At the slot's ``price`` (what the home paid or received per kWh), each asset wants
       what its steps ask for at that price. The home's own supply serves its own demand
       first (``internal``), the market fill covers the rest of its side. Demand is served
       in order of limit price (highest first), supply in order of ask (lowest first), ties
       in asset order.
    2. What is left of the home's own supply then serves what is left of its own demand
       wherever the demand's limit is at least the supply's ask (merit order, never an asset
       with itself): the alternatives are the grid's prices, so both sides gain. This is how
       PV surplus nobody bought still charges the home's own battery and a battery still
       covers its home's load when the market did not: self-consumption is the floor.
    3. Unserved demand at or above the import price comes from the grid; unsold supply at or
       below the feed-in tariff goes to the grid; anything else is not used this slot.
    """
    mine = [b for b in bids if b.slot_start == slot_start]
    # per step: [bid index, limit or ask, energy, market, internal, grid]
    demand: list[list[int]] = []
    supply: list[list[int]] = []
    for k, b in enumerate(mine):
        for s in b.steps:
            if s.energy_wh > 0:
                (demand if b.side is Side.BUY else supply).append(
                    [k, s.price, s.energy_wh, 0, 0, 0]
                )
    demand.sort(key=lambda e: (-e[1], e[0]))
    supply.sort(key=lambda e: (e[1], e[0]))
    want = [e for e in demand if e[1] >= price]
    offer = [e for e in supply if e[1] <= price]
    total_want = sum(e[2] for e in want)
    total_offer = sum(e[2] for e in offer)
    internal = min(total_want, total_offer)
    market_in = max(0, min(filled_wh if side is Side.BUY else 0, total_want - internal))
    market_out = max(0, min(filled_wh if side is Side.SELL else 0, total_offer - internal))
    for entries, market in ((want, market_in), (offer, market_out)):
        left_int, left_mkt = internal, market
        for e in entries:
            take = min(left_int, e[2])
            e[4] += take
            left_int -= take
            more = min(left_mkt, e[2] - take)
            e[3] += more
            left_mkt -= more
    for d in demand:
        rest_d = d[2] - d[3] - d[4]
        for u in supply:
            if rest_d <= 0 or u[1] > d[1]:
                break
            rest_u = u[2] - u[3] - u[4]
            if rest_u <= 0 or mine[u[0]].asset_id == mine[d[0]].asset_id:
                continue
            take = min(rest_d, rest_u)
            d[4] += take
            u[4] += take
            rest_d -= take
    if grid_available:
        for d in demand:
            if d[1] >= import_price:
                d[5] = d[2] - d[3] - d[4]
        for u in supply:
            if u[1] <= feed_in_tariff:
                u[5] = u[2] - u[3] - u[4]
    out: list[AssetAllocation] = []
    for k, b in enumerate(mine):
        entries = [e for e in (demand if b.side is Side.BUY else supply) if e[0] == k]
        market = sum(e[3] for e in entries)
        inside = sum(e[4] for e in entries)
        grid = sum(e[5] for e in entries)
        energy = market + inside + grid
        if b.side is Side.BUY:
            if energy == 0:
                code = "not_served_price"
            elif grid and not market and not inside:
                code = "grid_fallback"
            elif market:
                code = "bought_market"
            else:
                code = "served_internal"
            sign = 1
            params: dict[str, int | str] = {"price": price, "bid_wh": b.energy_wh}
        else:
            if energy == 0:
                code = "held_back"
            elif grid and not market and not inside:
                code = "exported_feed_in"
            elif market:
                code = "sold_market"
            else:
                code = "used_internal"
            sign = -1
            params = {"price": price, "offer_wh": b.energy_wh}
        out.append(
            AssetAllocation(
                b.asset_id,
                slot_start,
                sign * energy,
                sign * market,
                sign * inside,
                sign * grid,
                Reason.of(code, **params),
            )
        )
    return tuple(out)


DAY_SECONDS = 86_400


def persistence_outlook(
    history: Mapping[int, int], slots: Sequence[int], import_price: int, feed_in_tariff: int
) -> PriceOutlook:
    """The price outlook the integration's slot clock uses without a forecast.

    Each slot is expected at the home's own price of the same slot a day earlier
    (``history`` maps slot start to price, see :func:`home_price`), else at the midpoint of
    the grid prices.
    """
    mid = (import_price + feed_in_tariff) // 2
    return PriceOutlook(
        import_price=import_price,
        feed_in_tariff=feed_in_tariff,
        expected=tuple(history.get(slot - DAY_SECONDS, mid) for slot in slots),
    )


def home_price(
    bids: Sequence[AssetBid], order: Order | None, rules: MarketRules, slot_start: int
) -> int:
    """The home's own price of a slot without a community trade.

    When its assets trade with each other (bids on both sides that cross), the price of
    that internal clearing; otherwise the grid price the home faces: the feed-in tariff
    when its order sells, else the import price.
    """
    if len({bid.side for bid in bids if bid.steps}) == 2:
        internal = clear_slot(
            [
                Order(
                    order_id=f"{bid.asset_id}.{k}",
                    owner=bid.asset_id,
                    side=bid.side,
                    slot_start=slot_start,
                    steps=bid.steps,
                    clean=bid.clean,
                )
                for k, bid in enumerate(bids)
            ],
            rules,
            slot_start=slot_start,
        )
        if internal.volume_wh > 0 and internal.general_price is not None:
            return internal.general_price
    if order is not None and order.side is Side.SELL:
        return rules.feed_in_tariff
    return rules.import_price
