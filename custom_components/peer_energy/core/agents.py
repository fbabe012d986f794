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

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from math import isqrt

from .orders import Order, Priority, Reason, Side, Step

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
    """Grid prices and the expected community price for each slot of the horizon."""

    import_price: int
    feed_in_tariff: int
    expected: tuple[int, ...]

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


def battery_bids(
    state: BatteryState, horizon: Horizon, outlook: PriceOutlook, policy: OwnerPolicy
) -> tuple[AssetBid, ...]:
    """Charge in the cheapest expected slots, discharge in the dearest, as step curves.

    Energy is valued at ``mean x efficiency - degradation`` when charging and at
    ``mean + degradation`` when discharging; each curve has three equal steps spaced by half
    the spread, so more is bought the cheaper and more sold the dearer the price. The
    discharge offered over the whole horizon never exceeds ``soc - reserve`` and the charge
    never exceeds the free capacity (the round-trip loss is booked on charging), so the
    battery stays within its limits even if every bid is filled.
    """
    mean, spread = outlook.mean, outlook.spread
    eff = max(1, min(100, state.efficiency_pct))
    n = len(horizon.slots)
    discharge_budget = max(0, state.soc_wh - state.reserve_wh)
    charge_budget = max(0, state.capacity_wh - state.soc_wh) * 100 // eff
    per_charge = horizon.energy(state.max_charge_w)
    per_discharge = horizon.energy(state.max_discharge_w)
    value = mean * eff // 100 - state.degradation
    ask = max(_sell_floor(outlook, policy), mean + state.degradation)
    half = max(1, spread // 2)
    soc_pct = state.soc_wh * 100 // state.capacity_wh if state.capacity_wh else 0
    bids: list[AssetBid] = []
    charge_order = sorted(range(n), key=lambda k: (outlook.at(k), k))
    for k in charge_order:
        if outlook.at(k) > mean or charge_budget <= 0:
            continue
        qty = min(per_charge, charge_budget)
        charge_budget -= qty
        prices = [_buy_cap(outlook, policy, value - j * half) for j in range(3)]
        steps = tuple(Step(p, q) for p, q in zip(prices, _thirds(qty), strict=True) if q)
        if steps:
            bids.append(
                AssetBid(
                    state.asset_id,
                    AssetKind.BATTERY,
                    horizon.slots[k],
                    Side.BUY,
                    steps,
                    Reason.of(
                        "battery_charge_cheap",
                        expected=outlook.at(k),
                        mean=mean,
                        spread=spread,
                        soc_pct=soc_pct,
                    ),
                )
            )
    discharge_order = sorted(range(n), key=lambda k: (-outlook.at(k), k))
    for k in discharge_order:
        if outlook.at(k) < mean or discharge_budget <= 0:
            continue
        qty = min(per_discharge, discharge_budget)
        discharge_budget -= qty
        steps = tuple(Step(ask + j * half, q) for j, q in enumerate(_thirds(qty)) if q)
        if steps:
            bids.append(
                AssetBid(
                    state.asset_id,
                    AssetKind.BATTERY,
                    horizon.slots[k],
                    Side.SELL,
                    steps,
                    Reason.of(
                        "battery_discharge_dear",
                        expected=outlook.at(k),
                        mean=mean,
                        spread=spread,
                        soc_pct=soc_pct,
                        reserve_pct=state.reserve_pct,
                    ),
                    clean=state.clean,
                )
            )
    return tuple(sorted(bids, key=lambda b: (b.slot_start, b.side)))


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

    At the slot's ``price`` (what the home paid or received per kWh), each asset wants what its
    steps ask for at that price. The home's own supply serves its own demand first
    (``internal``), the market fill covers the rest of its side. Demand is served in order of
    limit price (highest first), supply in order of ask (lowest first), ties in asset order.
    Unserved demand at or above the import price comes from the grid; unsold supply at or
    below the feed-in tariff goes to the grid; anything else is not used this slot.
    """
    mine = [b for b in bids if b.slot_start == slot_start]
    want: list[tuple[int, int, str, int, AssetBid]] = []  # (sort key, k, id, qty, bid)
    offer: list[tuple[int, int, str, int, AssetBid]] = []
    for k, b in enumerate(mine):
        for s in b.steps:
            if b.side is Side.BUY and s.price >= price:
                want.append((-s.price, k, b.asset_id, s.energy_wh, b))
            elif b.side is Side.SELL and s.price <= price:
                offer.append((s.price, k, b.asset_id, s.energy_wh, b))
    want.sort(key=lambda t: (t[0], t[1]))
    offer.sort(key=lambda t: (t[0], t[1]))
    total_want = sum(t[3] for t in want)
    total_offer = sum(t[3] for t in offer)
    market_in = filled_wh if side is Side.BUY else 0
    market_out = filled_wh if side is Side.SELL else 0
    internal = min(total_want, total_offer)
    served = {id(t): 0 for t in want}
    sold = {id(t): 0 for t in offer}
    left = min(total_want, internal + market_in)
    for t in want:
        take = min(left, t[3])
        served[id(t)] = take
        left -= take
    left = min(total_offer, internal + market_out)
    for t in offer:
        take = min(left, t[3])
        sold[id(t)] = take
        left -= take
    # Internal energy is attributed before market energy, in the same priority order.
    out: list[AssetAllocation] = []
    internal_left_in = internal
    internal_left_out = internal
    for b in mine:
        if b.side is Side.BUY:
            got = sum(served[id(t)] for t in want if t[4] is b)
            inside = min(got, internal_left_in)
            internal_left_in -= inside
            market = got - inside
            grid = 0
            if grid_available:
                grid = sum(s.energy_wh for s in b.steps if s.price >= import_price) - sum(
                    served[id(t)] for t in want if t[4] is b and -t[0] >= import_price
                )
                grid = max(0, grid)
            energy = got + grid
            if energy == 0:
                code = "not_served_price"
            elif grid and not got:
                code = "grid_fallback"
            elif market:
                code = "bought_market"
            else:
                code = "served_internal"
            out.append(
                AssetAllocation(
                    b.asset_id,
                    slot_start,
                    energy,
                    market,
                    inside,
                    grid,
                    Reason.of(code, price=price, bid_wh=b.energy_wh),
                )
            )
        else:
            gave = sum(sold[id(t)] for t in offer if t[4] is b)
            inside = min(gave, internal_left_out)
            internal_left_out -= inside
            market = gave - inside
            grid = 0
            if grid_available:
                grid = sum(s.energy_wh for s in b.steps if s.price <= feed_in_tariff) - sum(
                    sold[id(t)] for t in offer if t[4] is b and t[0] <= feed_in_tariff
                )
                grid = max(0, grid)
            energy = gave + grid
            if energy == 0:
                code = "held_back"
            elif grid and not gave:
                code = "exported_feed_in"
            elif market:
                code = "sold_market"
            else:
                code = "used_internal"
            out.append(
                AssetAllocation(
                    b.asset_id,
                    slot_start,
                    -energy,
                    -market,
                    -inside,
                    -grid,
                    Reason.of(code, price=price, offer_wh=b.energy_wh),
                )
            )
    return tuple(out)
