"""The home agent: a slot's asset bids netted into the home's order(s), and the home's
result split back to its assets.

- :func:`home_bid`: the two-sided order (a buy and a sell order that never cross) the
  planner's bids become; :func:`home_order` / :func:`home_orders`: the one-sided order of
  the per-asset agents (the slot clock's today).
- :func:`split_fill` / :func:`split_result`: the home's fill back to its assets, with
  reasons; :func:`home_price`: the home's own price without a community trade;
  :func:`persistence_outlook`: the slot clock's price outlook without a forecast.

Public API: the functions above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import isqrt

from ..market.clearing import clear_slot
from ..market.orders import MAX_STEPS, MarketRules, Order, Reason, Side, Step
from .bids import AssetAllocation, AssetBid, Horizon, OwnerPolicy, PriceOutlook

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
    return Order(
        order_id=f"{owner}:{slot_start}",
        owner=owner,
        side=side,
        slot_start=slot_start,
        steps=tuple(steps),
        clean=sell and all(b.clean for b in contributing),
        clean_only=(not sell) and policy.clean_only,
        priority=policy.priority,
        # Signed and sent to every member: only the aggregate leaves the home, so the
        # reason says what the order is, not how many assets or how much each side held.
        reason=Reason.of("home_net"),
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


def graded_margin(sd_wh: int, gain: int, loss: int, risk_pct: int, cap_wh: int) -> int:
    """Energy (Wh) to keep back of an uncertain quantity for a trade at one price.

    ``sd_wh`` is the standard deviation of what the home will really have (the forecast's
    miss), ``gain`` what each Wh gains over the grid if it is delivered (or used), ``loss``
    what each Wh costs if it is not (bought back at the import price, or left over at the
    feed-in tariff). The home keeps back ``k`` standard deviations, with ``k`` the smallest
    for which the expected loss of the last Wh is at most ``risk_pct`` percent of its
    expected gain, whatever the forecast's distribution: by the one-sided Chebyshev
    (Cantelli) bound the chance of a miss beyond ``k`` standard deviations is at most
    ``a = 1 / (1 + k^2)``, and ``a * loss <= risk_pct / 100 * (1 - a) * gain`` gives
    ``k^2 = 100 * loss / (risk_pct * gain)``. Nothing is kept back where a miss costs
    nothing; ``cap_wh`` (and no trade beyond it) where the trade gains nothing.
    """
    if sd_wh <= 0 or loss <= 0:
        return 0
    cap = max(cap_wh, 0)
    if gain <= 0 or risk_pct <= 0:
        return cap
    return min(isqrt(sd_wh * sd_wh * 100 * loss // (risk_pct * gain)), cap)


# Extra prices a graded margin is evaluated at, evenly between the feed-in tariff and the
# import price (the margin shrinks towards the side where a trade gains most).
GRADED_POINTS = 6


def home_bid(
    owner: str,
    slot_start: int,
    bids: Sequence[AssetBid],
    policy: OwnerPolicy,
    import_price: int,
    feed_in_tariff: int,
    *,
    margin_wh: int = 0,
    edge_margin_wh: int | None = None,
    sd_wh: int | None = None,
) -> tuple[Order, ...]:
    """The home's two-sided order for one slot: a buy order and a sell order that never cross.

    With the net demand ``N(p)`` of the slot's asset bids (buy steps with limit >= p minus
    sell steps with ask <= p, non-increasing in ``p``), the home buys ``max(N(p) - m_b(p),
    0)`` and sells ``max(-N(p) - m_s(p), 0)`` at each price ``p`` in ``[feed_in_tariff,
    import_price]``, ``m_b`` and ``m_s`` being the margins kept back for the forecast's
    uncertainty. Every buy step's limit is a price where ``N > 0`` and every sell step's
    ask one where ``N < 0``, so every buy limit lies strictly below every sell ask: the two
    orders can never trade with each other (``clear_slot`` would pair a member's own buy and
    sell like any other two orders), and at any single price at most one of them fills.

    **Graded margin** (``sd_wh`` given: the standard deviation of the slot's net demand):
    at price ``p`` the sell side keeps back :func:`graded_margin` with the gain ``p -
    feed_in_tariff`` (what a delivered Wh earns over exporting it) and the loss
    ``import_price - p`` (what a Wh sold and not there costs, bought back at the import
    price), with the owner's :attr:`~.bids.OwnerPolicy.sale_risk_pct`; the buy side the
    same with gain and loss swapped (a Wh bought and not used leaves at the feed-in tariff).
    So a sale near the import price keeps back little (a miss costs little), a sale near the
    feed-in tariff much, and at the feed-in tariff itself, where the trade gains nothing,
    ``edge_margin_wh`` (default: ``margin_wh``) caps it; ``margin_wh`` is the least kept back
    at any price (what a shortfall costs the home's reputation is not in its bill).
    ``m_s`` falls and ``m_b`` rises with ``p``, so both sides stay monotone.

    Without ``sd_wh`` the margin is flat: ``margin_wh`` on both sides, and ``edge_margin_wh``
    (at least ``margin_wh``) where the trade gains the home nothing over the grid (selling
    at the feed-in tariff and buying at the import price). The owner's
    ``max_buy_price`` caps the buy limits and ``min_sell_price`` floors the sell asks here,
    on what leaves the home (its own PV still serves its own load at any price), which
    only moves the two sides further apart. Ids are ``"<owner>:<slot_start>:buy"`` and
    ``"...:sell"``; none, one or two orders are returned.
    """
    mine = [b for b in bids if b.slot_start == slot_start and b.steps]
    if not mine:
        return ()
    lo, hi = min(feed_in_tariff, import_price), import_price
    prices, net = _net_curve(mine, lo, hi)
    margin = max(margin_wh, 0)
    edge = margin if edge_margin_wh is None else max(edge_margin_wh, margin)
    extra: set[int] = set()
    if (edge > margin or sd_wh is not None) and hi > lo:  # the first price with a gain
        extra.update((lo + 1, hi - 1))
    if sd_wh is not None and hi - lo > GRADED_POINTS:
        extra.update(lo + (hi - lo) * j // (GRADED_POINTS + 1) for j in range(1, GRADED_POINTS + 1))
    for p in extra:
        if p not in net:
            net[p] = _net_at(mine, p)
    prices = sorted(net)

    def keep(p: int, buying: bool) -> int:
        if sd_wh is None:
            return edge if (p >= hi if buying else p <= lo) else margin
        gain, loss = (hi - p, p - lo) if buying else (p - lo, hi - p)
        return max(graded_margin(sd_wh, gain, loss, policy.sale_risk_pct, edge), margin)

    cap, floor = policy.max_buy_price, policy.min_sell_price
    buy: list[Step] = []
    prev = 0
    for p in reversed(prices):
        d = max(net[p] - keep(p, True), 0)
        if d > prev:
            buy.append(Step(p if cap is None else min(p, cap), d - prev))
            prev = d
    sell: list[Step] = []
    prev = 0
    for p in prices:
        s = max(-net[p] - keep(p, False), 0)
        if s > prev:
            sell.append(Step(p if floor is None else max(p, floor), s - prev))
            prev = s
    buy, sell = _fit_steps(_merge_steps(buy)), _fit_steps(_merge_steps(sell))
    # Signed and sent to every member: no asset count, gross figures or margin (the
    # home's own plan keeps those); only the aggregate leaves the home.
    reason = Reason.of("home_net")
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


def _fit_steps(steps: list[Step]) -> list[Step]:
    """At most ``MAX_STEPS`` steps (given in the order the home would trade them): the last
    ones become one step at the last one's price, which only asks more for a sale or bids
    less for a purchase."""
    if len(steps) <= MAX_STEPS:
        return steps
    head = steps[: MAX_STEPS - 1]
    tail = steps[MAX_STEPS - 1 :]
    return [*head, Step(tail[-1].price, sum(s.energy_wh for s in tail))]


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
