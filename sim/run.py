"""The slot loop: the engine's agents bid, the engine clears, the ledger settles.

Nothing here decides a price or an allocation: every slot goes through the same code that
runs inside Home Assistant (``custom_components.peer_energy.core``):

1. **Outlook.** ``outlook="home"`` (default) does what the integration's slot clock does
   (``custom_components/peer_energy/market.py``): each home expects for every slot of the
   coming day the price it got in the same slot a day earlier, else the midpoint of the
   import price and the feed-in tariff. ``outlook="community"`` instead uses the engine's
   :func:`~custom_components.peer_energy.core.home.forecast.profile_forecast` over the
   community's past slot prices (a slot without trades counts at the grid price the
   community faced), with "yesterday" assumed to look like the first day's inflexible
   balance before any history exists.
2. **Agents.** Each home's assets bid through :mod:`~custom_components.peer_energy.core.home.agents`
   (``pv_bids``, ``base_load_bids``, ``battery_bids``, ``ev_bids``, ``plug_bids``) and
   ``home_order`` nets them into the home's one order. The simulator gives the agents the
   slot's actual load and PV (a perfect slot-ahead forecast) and the device states.
3. **Credit.** A buy order is capped at what the buyer's credit headroom allows at the import
   price (``CreditLedger.max_buy_wh``), dearest steps kept.
4. **Clearing.** :func:`~custom_components.peer_energy.core.market.clearing.clear_slot` with the
   slot's tariff, threading the fairness state; or, with ``federation=True``, through the
   federation protocol: every home is a ``protocol.Peer`` on the in-memory transport
   (``memnet.MemNet``), signs and broadcasts its bid, and the slot's attested final result
   is used (:class:`Federation`).
5. **Ledger.** Every fill becomes a trade: proposed with the resulting balances, signed by
   both homes' Ed25519 identities, verified and applied by the engine's ``CreditLedger``.
6. **Devices.** ``split_fill`` splits each home's result back to its assets at the home's
   price (as the integration computes it: its own fills' volume-weighted price, else the
   slot's general price, else its assets cleared among themselves); the devices do
   exactly that (checked against their physical limits), and the meter settles the rest
   with the grid. The grid exchange each home pays for is that metered exchange.

Anything the agents ask the devices to do beyond their limits is clipped and counted
(``extra["device_violations"]``); with the current agents the count is zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
import hashlib
import time
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import Peer
from custom_components.peer_energy.core.home import agents as ag
from custom_components.peer_energy.core.home.forecast import profile_forecast
from custom_components.peer_energy.core.market.clearing import SlotResult, clear_slot
from custom_components.peer_energy.core.market.fairness import FairnessState
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side, Step
from custom_components.peer_energy.core.trust.credit import CreditLedger, SignedTrade, sign_trade
from custom_components.peer_energy.core.trust.identity import Identity

from .baselines import Batteries
from .community import Community
from .data import LOCAL_TZ
from .kpi import RunResult

COMMUNITY_ID = "sim-community"
PV, LOAD, BATTERY = "pv", "load", "battery"


@dataclass
class _HomeState:
    """Mutable device state of one home between slots."""

    ev_left: dict[int, int] = field(default_factory=dict)  # session index -> Wh still needed
    plugs: dict[int, ag.PlugState] = field(default_factory=dict)  # task index -> plug state


def identities(c: Community, seed: int) -> list[Identity]:
    """Deterministic Ed25519 identities per home (same seed, same keys)."""
    return [
        Identity.from_seed_hex(
            hashlib.sha256(f"peer-energy-sim:{seed}:{h.home_id}".encode()).hexdigest()
        )
        for h in c.homes
    ]


def _prior_prices(c: Community) -> dict[int, int]:
    """Price history for the day before the start: the first day's inflexible balance."""
    per_day = 86_400 // c.slot_seconds
    n = min(per_day, c.n_slots)
    net = (c.load_wh[:, :n] - c.pv_wh[:, :n]).sum(axis=0)
    return {
        int(c.slots[t]) - 86_400: int(c.import_price[t] if net[t] > 0 else c.feed_in[t])
        for t in range(n)
    }


class Federation:
    """Every home as a protocol ``Peer`` on one in-memory network (``memnet.MemNet``).

    The community is founded by the first home and every other home joins through a real
    invitation. Each slot, every home signs and broadcasts its bid; the peers exchange
    digests and attestations on the virtual clock, and the slot's final, attested result is
    what every peer holds (checked identical). Each bid is verified by every peer, so the
    cost grows with the square of the number of homes: meant for small communities.
    The community rules are fixed for its life, so the tariff must be fixed too.
    """

    def __init__(self, c: Community, ids: list[Identity], market: MarketRules, seed: int) -> None:
        if len(set(c.import_price.tolist())) > 1 or len(set(c.feed_in.tolist())) > 1:
            raise ValueError("the federation needs a fixed tariff (community rules are fixed)")
        self.rules = CommunityRules(market=market, max_members=max(100, c.n_homes))
        self.net = MemNet(start_ms=(int(c.slots[0]) - 3600) * 1000, seed=seed)
        founder = Peer.found(
            ids[0],
            name="Simulated street",
            rules=self.rules,
            address="home0",
            now_ms=self.net.now,
            nonce=hashlib.sha256(f"sim:{seed}".encode()).digest()[:16],
        )
        self.net.add(founder)
        self.peers = [founder]
        for i in range(1, c.n_homes):
            secret = hashlib.sha256(f"sim-invite:{seed}:{i}".encode()).digest()
            invitation = founder.invite(secret, self.net.now)
            peer, outs = Peer.joining(
                ids[i], invitation.encode(), address=f"home{i}", now_ms=self.net.now
            )
            self.net.add(peer)
            self.net.apply(peer.address, outs)
            self.net.run_until(self.net.now + 30)
            self.peers.append(peer)
        self.net.run_until(self.net.now + 500)
        if not all(len(p.roster()) == c.n_homes for p in self.peers):
            raise RuntimeError("not every home joined the federation")

    def clear(self, slot: int, orders: list[Order]) -> SlotResult:
        """Submit each home's order, run the protocol to the slot's deadline, return the
        final result every peer agrees on."""
        by_owner = {o.owner: o for o in orders}
        for peer in self.peers:
            order = by_owner.get(peer.member_id)
            if order is not None:
                self.net.apply(peer.address, peer.submit_orders(slot, [order], self.net.now))
        r = self.rules
        self.net.run_until(r.gate_closure_ms(slot) + r.sync_window_ms + r.attest_window_ms + 1000)
        finals = [p.finals.get(slot) for p in self.peers]
        first = finals[0]
        if first is None or any(f is None for f in finals):
            raise RuntimeError(f"slot {slot} is void or not final at every peer")
        if any(f is not None and f.result_hash != first.result_hash for f in finals):
            raise RuntimeError(f"slot {slot}: peers hold different results")
        return first.result


def _known_until(c: Community) -> NDArray[Any] | None:
    """For a dynamic tariff, the last slot whose price is known at each slot: day-ahead
    prices are published around 13:00 local time for the next day, so until the end of the
    next local day from 13:00 on, else until the end of the current one. None when fixed."""
    if len(set(c.import_price.tolist())) <= 1 and len(set(c.feed_in.tolist())) <= 1:
        return None
    tz = ZoneInfo(LOCAL_TZ)
    days = [datetime.fromtimestamp(int(s), tz) for s in c.slots]
    out = np.zeros(c.n_slots, dtype=np.int64)
    for t, now in enumerate(days):
        end_date = now.date() + timedelta(days=1 if now.hour >= 13 else 0)
        last = t
        while last + 1 < c.n_slots and days[last + 1].date() <= end_date:
            last += 1
        out[t] = last
    return out


def _with_known_tariff(
    c: Community, view: ag.PriceOutlook, t: int, last: int, per_horizon: int
) -> ag.PriceOutlook:
    """The outlook with the known grid prices of the coming slots; expected community prices
    kept within each known slot's feed-in tariff and import price."""
    end = min(t + per_horizon, int(last) + 1)
    imports = tuple(int(x) for x in c.import_price[t:end])
    feed_ins = tuple(int(x) for x in c.feed_in[t:end])
    expected = tuple(
        min(max(e, feed_ins[k]), imports[k]) if k < len(imports) else e
        for k, e in enumerate(view.expected)
    )
    return replace(view, expected=expected, import_prices=imports, feed_in_tariffs=feed_ins)


def _slot_rules(c: Community, base: MarketRules, t: int) -> MarketRules:
    """The market rules of slot ``t``: the community's rules with the slot's tariff."""
    return MarketRules(
        import_price=int(c.import_price[t]),
        feed_in_tariff=int(c.feed_in[t]),
        distributor_fee=base.distributor_fee,
        pricing=base.pricing,
        fair_share_bp=base.fair_share_bp,
        slot_seconds=c.slot_seconds,
    )


def _cap(order: Order, limit: int) -> Order | None:
    """Keep at most ``limit`` Wh of a buy order, dearest steps first."""
    kept: list[Step] = []
    left = max(limit, 0)
    for step in sorted(order.steps, key=lambda s: -s.price):
        take = min(step.energy_wh, left)
        left -= take
        if take:
            kept.append(Step(step.price, take))
    return replace(order, steps=tuple(kept)) if kept else None


def market(
    c: Community,
    *,
    rules: MarketRules | None = None,
    seed: int = 1,
    horizon_hours: int = 24,
    outlook: str = "home",
    federation: bool = False,
) -> tuple[RunResult, CreditLedger]:
    """Run the market over the whole community; returns the result and the final ledger."""
    began = time.perf_counter()
    cpu_began = time.process_time()
    base_rules = rules or MarketRules(slot_seconds=c.slot_seconds)
    ids = identities(c, seed)
    keys = [i.public_key for i in ids]
    index = {k: n for n, k in enumerate(keys)}
    ledger = CreditLedger(COMMUNITY_ID)
    n_h, n_t, sec = c.n_homes, c.n_slots, c.slot_seconds
    bat = Batteries(c)
    soc = bat.soc0.copy()
    names = (
        "imp",
        "exp",
        "ch",
        "dis",
        "ev",
        "flex",
        "bought",
        "sold",
        "paid",
        "received",
        "clean_bought",
    )
    arrays = {k: np.zeros((n_h, n_t), dtype=np.int64) for k in names}
    price = np.full(n_t, np.nan)
    policies = [ag.OwnerPolicy(clean_only=h.clean_only) for h in c.homes]
    states = [_HomeState() for _ in c.homes]
    for i, home in enumerate(c.homes):
        if home.ev is not None:
            states[i].ev_left = {k: s.energy_wh for k, s in enumerate(home.ev.sessions)}
    has_pv = c.pv_wh.sum(axis=1) > 0
    if outlook not in ("home", "community"):
        raise ValueError("outlook must be 'home' or 'community'")
    history = _prior_prices(c)
    own_prices: list[dict[int, int]] = [{} for _ in c.homes]
    per_horizon = max(1, horizon_hours * 3600 // sec)
    per_day = 86_400 // sec
    home_net = c.load_wh - c.pv_wh  # the battery agent's forecast: own history (see below)
    known = _known_until(c)
    fairness = FairnessState()
    fed = Federation(c, ids, _slot_rules(c, base_rules, 0), seed) if federation else None
    counters = {
        "trades": 0,
        "refused_trades": 0,
        "capped_orders": 0,
        "device_violations": 0,
        "unfinished_wh": 0,
        "metered_vs_cleared_wh": 0,
    }
    for t in range(n_t):
        r, f = int(c.import_price[t]), int(c.feed_in[t])
        slot = int(c.slots[t])
        slot_rules = _slot_rules(c, base_rules, t)
        window = tuple(slot + sec * k for k in range(per_horizon))
        shared = ag.PriceOutlook(r, f, profile_forecast(history, window))
        now = ag.Horizon((slot,), sec)
        full = ag.Horizon(window, sec)
        home_bids: list[list[ag.AssetBid]] = []
        orders: list[Order] = []
        room = bat.charge_limit(soc)
        stock = bat.discharge_limit(soc)
        home_orders: list[Order | None] = []
        for i, home in enumerate(c.homes):
            policy = policies[i]
            st = states[i]
            if outlook == "home":
                mine = own_prices[i]
                view = ag.persistence_outlook(mine, window, r, f)
            else:
                view = shared
            if known is not None:
                view = _with_known_tariff(c, view, t, known[t], per_horizon)
            bids: list[ag.AssetBid] = []
            bids += ag.base_load_bids(LOAD, [int(c.load_wh[i, t])], now, view)
            if has_pv[i]:
                bids += ag.pv_bids(PV, [int(c.pv_wh[i, t])], now, view, policy)
            if home.battery is not None:
                b = home.battery
                state = ag.BatteryState(
                    BATTERY,
                    b.capacity_wh,
                    int(soc[i]),
                    reserve_pct=b.reserve_pct,
                    max_charge_w=b.power_w,
                    max_discharge_w=b.power_w,
                    efficiency_pct=b.efficiency_pct,
                    clean=bool(has_pv[i]),
                )
                # Net demand forecast: this slot's (the agents' slot-ahead forecast) and, once a
                # day of history exists, the same slots a day earlier (persistence).
                forecast = [int(home_net[i, t])]
                if t >= per_day:
                    past = home_net[i, t - per_day + 1 : t - per_day + per_horizon]
                    forecast += [int(x) for x in past]
                bids += [
                    x
                    for x in ag.battery_bids(state, full, view, policy, net_wh=forecast)
                    if x.slot_start == slot
                ]
            if home.ev is not None:
                for k, s in enumerate(home.ev.sessions):
                    if s.arrive <= t < s.depart and st.ev_left[k] > 0:
                        ev = ag.EVState(
                            f"ev{k}", st.ev_left[k], slot + (s.depart - t) * sec, home.ev.charger_w
                        )
                        bids += ag.ev_bids(ev, now, view, policy)
            for k, task in enumerate(home.flex):
                if task.earliest <= t < task.deadline:
                    if k not in st.plugs:
                        run_slots = -(-task.energy_wh // c.max_wh(task.power_w))
                        st.plugs[k] = ag.PlugState(
                            f"plug{k}",
                            task.energy_wh,
                            task.power_w,
                            (task.deadline - task.earliest - run_slots) * sec,
                        )
                    if st.plugs[k].remaining_wh > 0:
                        bids += ag.plug_bids(st.plugs[k], now, view, policy)
            home_bids.append(bids)
            order = ag.home_order(keys[i], slot, bids, view.at(0), policy, r, f)
            home_orders.append(order)
            if order is None:
                continue
            if order.side is Side.BUY:
                headroom = ledger.max_buy_wh(keys[i], r, slot_rules.distributor_fee)
                if order.energy_wh > headroom:
                    counters["capped_orders"] += 1
                    order = _cap(order, headroom)
                    if order is None:
                        continue
            orders.append(order)

        if fed is not None:
            result = fed.clear(slot, orders)
        else:
            result = clear_slot(orders, slot_rules, slot_start=slot, fairness=fairness)
            fairness = result.fairness
        if result.fills:
            vol = sum(fl.energy_wh for fl in result.fills)
            price[t] = sum(fl.price * fl.energy_wh for fl in result.fills) / vol
        own_value: dict[str, int] = {}
        own_volume: dict[str, int] = {}
        for fill in result.fills:
            bi, si = index[fill.buyer], index[fill.seller]
            e = fill.energy_wh
            arrays["bought"][bi, t] += e
            arrays["sold"][si, t] += e
            arrays["paid"][bi, t] += e * (fill.price + fill.fee)
            arrays["received"][si, t] += e * fill.price
            for who in (fill.buyer, fill.seller):
                own_value[who] = own_value.get(who, 0) + e * fill.price
                own_volume[who] = own_volume.get(who, 0) + e
            if fill.clean:
                arrays["clean_bought"][bi, t] += e
            counters["trades"] += 1
            if not _settle(ledger, ids[bi], ids[si], slot, e, fill.price, fill.fee, fill.clean):
                counters["refused_trades"] += 1
        side_of = {o.owner: o.side for o in orders}
        members = {m.owner: m for m in result.members}
        charge = np.zeros(n_h, dtype=np.int64)
        discharge = np.zeros(n_h, dtype=np.int64)
        for i in range(n_h):
            key = keys[i]
            side = side_of.get(key)
            m = members.get(key)
            filled = (m.bought_wh if side is Side.BUY else m.sold_wh) if m and side else 0
            if own_volume.get(key):
                p = own_value[key] // own_volume[key]
            elif result.general_price is not None:
                p = result.general_price
            else:
                p = ag.home_price(home_bids[i], home_orders[i], slot_rules, slot)
            if home_orders[i] is not None or own_volume.get(key):
                own_prices[i][slot] = p
            allocs = ag.split_fill(home_bids[i], slot, side, filled, p, r, f)
            net = 0
            st = states[i]
            for a in allocs:
                e = a.energy_wh
                if a.asset_id == BATTERY:
                    if e > 0:
                        use = min(e, int(room[i]))
                        charge[i] += use
                    else:
                        use = -min(-e, int(stock[i]))
                        discharge[i] -= use
                    if use != e:
                        counters["device_violations"] += 1
                    e = use
                elif a.asset_id.startswith("ev"):
                    k = int(a.asset_id[2:])
                    use = max(0, min(e, st.ev_left[k]))
                    if use != e:
                        counters["device_violations"] += 1
                    st.ev_left[k] -= use
                    arrays["ev"][i, t] += use
                    e = use
                elif a.asset_id.startswith("plug"):
                    k = int(a.asset_id[4:])
                    plug = st.plugs[k]
                    use = max(0, min(e, plug.remaining_wh))
                    if use != e:
                        counters["device_violations"] += 1
                    wanted = min(c.max_wh(plug.power_w), plug.remaining_wh)
                    st.plugs[k] = ag.plug_after_slot(plug, use, wanted, sec)
                    arrays["flex"][i, t] += use
                    e = use
                net += e
            # inflexible load and PV happen whatever the allocation says
            covered_load = sum(a.energy_wh for a in allocs if a.asset_id == LOAD)
            covered_pv = -sum(a.energy_wh for a in allocs if a.asset_id == PV)
            net += int(c.load_wh[i, t]) - covered_load - (int(c.pv_wh[i, t]) - covered_pv)
            if covered_load != c.load_wh[i, t] or covered_pv != c.pv_wh[i, t]:
                counters["device_violations"] += 1
            # the meter settles with the grid whatever the market did not cover
            grid = net - (int(arrays["bought"][i, t]) - int(arrays["sold"][i, t]))
            arrays["imp"][i, t] = max(grid, 0)
            arrays["exp"][i, t] = max(-grid, 0)
            engine_grid = (m.grid_import_wh - m.grid_export_wh) if m else 0
            counters["metered_vs_cleared_wh"] += abs(grid - engine_grid)

        both = np.minimum(charge, discharge)
        charge -= both
        discharge -= both
        soc = bat.apply(soc, charge, discharge)
        arrays["ch"][:, t] = charge
        arrays["dis"][:, t] = discharge
        # the slot's price for the outlook: traded price, else the grid price at the margin
        if not np.isnan(price[t]):
            history[slot] = round(price[t])
        else:
            history[slot] = r if arrays["imp"][:, t].sum() >= arrays["exp"][:, t].sum() else f
        # EV sessions and plug tasks that end now must be complete
        for i, home in enumerate(c.homes):
            if home.ev is not None:
                for k, s in enumerate(home.ev.sessions):
                    if s.depart == t + 1 and states[i].ev_left[k] > 0:
                        counters["unfinished_wh"] += states[i].ev_left[k]
            for k, task in enumerate(home.flex):
                if task.deadline == t + 1 and k in states[i].plugs:
                    counters["unfinished_wh"] += states[i].plugs[k].remaining_wh
    run = RunResult(
        "market",
        arrays["imp"],
        arrays["exp"],
        arrays["bought"],
        arrays["sold"],
        arrays["paid"],
        arrays["received"],
        arrays["ch"],
        arrays["dis"],
        bat.soc0,
        soc,
        arrays["ev"],
        arrays["flex"],
        arrays["clean_bought"],
        price,
        runtime_s=time.perf_counter() - began,
        extra={**counters, "cpu_s": round(time.process_time() - cpu_began, 2)},
    )
    return run, ledger


def _settle(
    ledger: CreditLedger,
    buyer: Identity,
    seller: Identity,
    slot: int,
    energy: int,
    price: int,
    fee: int,
    clean: bool,
) -> bool:
    """Propose, countersign and apply one trade in the mutual-credit ledger."""
    terms, _result = ledger.propose_trade(
        slot=slot,
        buyer=buyer.public_key,
        seller=seller.public_key,
        energy_wh=energy,
        price=price,
        fee=fee,
        clean=clean,
    )
    if terms is None:
        return False
    trade = SignedTrade(terms, sign_trade(terms, buyer), sign_trade(terms, seller))
    return ledger.apply_trade(trade).ok
