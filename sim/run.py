"""The slot loop: the engine's planner bids, the engine clears, the ledger settles.

Nothing here decides a price or an allocation: every slot goes through the same code that
runs inside Home Assistant (``custom_components.peer_energy.core``):

1. **Planner.** Each home's inputs (``sim/homes.py``: its forecast of the horizon, the
   device states, EV sessions, plug tasks and the community price it expects per slot) go
   to :func:`~custom_components.peer_energy.core.home.planner.plan_home`, in control or
   advise mode.
2. **Orders.** ``agents.home_bid`` turns the plan's bids into the home's two-sided order.
3. **Credit.** A buy order is capped at what the buyer's credit headroom allows at the import
   price (``CreditLedger.max_buy_wh``), dearest steps kept.
4. **Clearing.** :func:`~custom_components.peer_energy.core.market.clearing.clear_slot` with the
   slot's tariff, threading the fairness state; or, with ``federation=True``, through the
   federation protocol: every home is a ``protocol.Peer`` on the in-memory transport
   (``memnet.MemNet``), signs and broadcasts its bid, and the slot's attested final result
   is used (:class:`Federation`).
5. **Ledger.** Every fill becomes a trade: proposed with the resulting balances, signed by
   both homes' Ed25519 identities, verified and applied by the engine's ``CreditLedger``.
6. **Devices.** ``agents.split_result`` splits each home's result back to its assets at the
   home's price; in control mode the devices do that (checked against their limits, the
   battery also covering the forecast's miss), in advise mode they follow their own logic;
   the meter settles the rest with the grid.

``trading=False`` is the "alone but smart" baseline: the same planner, no market. Anything
the planner asks the devices to do beyond their limits is clipped and counted
(``extra["device_violations"]``).
"""

from __future__ import annotations

from dataclasses import replace
import hashlib
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import Peer
from custom_components.peer_energy.core.home import agents as ag
from custom_components.peer_energy.core.home.planner import PlanMode, PlannerSettings, plan_home
from custom_components.peer_energy.core.market.clearing import SlotResult, clear_slot
from custom_components.peer_energy.core.market.fairness import FairnessState
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side, Step
from custom_components.peer_energy.core.trust.credit import CreditLedger, SignedTrade, sign_trade
from custom_components.peer_energy.core.trust.identity import Identity

from .baselines import Batteries
from .community import Community
from .homes import (
    BATTERY,
    EV,
    LOAD,
    PV,
    DeviceState,
    PlannerInputs,
    PriceMemory,
    capacity_shares,
    own_logic,
)
from .kpi import RunResult

COMMUNITY_ID = "sim-community"


def identities(c: Community, seed: int) -> list[Identity]:
    """Deterministic Ed25519 identities per home (same seed, same keys)."""
    return [
        Identity.from_seed_hex(
            hashlib.sha256(f"peer-energy-sim:{seed}:{h.home_id}".encode()).hexdigest()
        )
        for h in c.homes
    ]


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
        by_owner: dict[str, list[Order]] = {}
        for o in orders:
            by_owner.setdefault(o.owner, []).append(o)
        for peer in self.peers:
            mine = by_owner.get(peer.member_id)
            if mine:
                self.net.apply(peer.address, peer.submit_orders(slot, mine, self.net.now))
        r = self.rules
        self.net.run_until(r.gate_closure_ms(slot) + r.sync_window_ms + r.attest_window_ms + 1000)
        finals = [p.finals.get(slot) for p in self.peers]
        first = finals[0]
        if first is None or any(f is None for f in finals):
            raise RuntimeError(f"slot {slot} is void or not final at every peer")
        if any(f is not None and f.result_hash != first.result_hash for f in finals):
            raise RuntimeError(f"slot {slot}: peers hold different results")
        return first.result


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
    return order._replace(steps=tuple(kept)) if kept else None


def market(
    c: Community,
    *,
    rules: MarketRules | None = None,
    seed: int = 1,
    mode: str = "control",
    trading: bool = True,
    horizon_hours: int = 24,
    outlook: str = "community",
    federation: bool = False,
    settings: PlannerSettings | None = None,
    capacity_w: int | None = None,
    sale_risk_pct: int | None = None,
) -> tuple[RunResult, CreditLedger]:
    """Run the community with the planner; returns the result and the final ledger.

    ``mode`` is the planner's mode of every home (``"control"`` or ``"advise"``);
    ``trading=False`` is the "alone but smart" baseline: the same planner, no market (each
    home's result is split at its own price, as the integration does without a community).
    ``outlook="community"`` lets the homes expect each slot at the community price the same
    slot cleared at on the last two days (purchases at the dearest, sales at the cheapest;
    :class:`~.homes.PriceMemory`); ``"grid"`` values later slots at grid prices only.
    ``capacity_w`` is the community's import capacity: each home plans with its share of
    it (:func:`~.homes.capacity_shares`); None: no capacity. ``sale_risk_pct`` sets every
    home's :attr:`~.bids.OwnerPolicy.sale_risk_pct` (None: the default).
    """
    began = time.perf_counter()
    cpu_began = time.process_time()
    plan_mode = PlanMode(mode)
    if outlook not in ("community", "grid"):
        raise ValueError("outlook must be 'community' or 'grid'")
    base_rules = rules or MarketRules(slot_seconds=c.slot_seconds)
    settings = settings or default_settings(c)
    ids = identities(c, seed)
    keys = [i.public_key for i in ids]
    index = {k: n for n, k in enumerate(keys)}
    ledger = CreditLedger(COMMUNITY_ID)
    n_h, n_t, sec = c.n_homes, c.n_slots, c.slot_seconds
    bat = Batteries(c)
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
        "shortfall",
    )
    arrays: dict[str, NDArray[Any]] = {k: np.zeros((n_h, n_t), dtype=np.int64) for k in names}
    price = np.full(n_t, np.nan)
    policies = [
        ag.OwnerPolicy(clean_only=h.clean_only)
        if sale_risk_pct is None
        else ag.OwnerPolicy(clean_only=h.clean_only, sale_risk_pct=sale_risk_pct)
        for h in c.homes
    ]
    states = [DeviceState(soc=int(bat.soc0[i])) for i in range(n_h)]
    has_pv = c.pv_wh.sum(axis=1) > 0
    inputs = PlannerInputs(c, max(1, horizon_hours * 3600 // sec))
    memory = PriceMemory(c)
    shares = capacity_shares(c, capacity_w) if capacity_w is not None else None
    fairness = FairnessState()
    fed = Federation(c, ids, _slot_rules(c, base_rules, 0), seed) if federation else None
    counters = {
        "trades": 0,
        "refused_trades": 0,
        "capped_orders": 0,
        "device_violations": 0,
        "unfinished_wh": 0,
        "metered_vs_cleared_wh": 0,
        "lp_solves": 0,
        "lp_fallbacks": 0,
    }
    plan_cpu = 0.0
    for t in range(n_t):
        r, f = int(c.import_price[t]), int(c.feed_in[t])
        slot = int(c.slots[t])
        slot_rules = _slot_rules(c, base_rules, t)
        plans = []
        orders: list[Order] = []
        expected: tuple[int, ...] = ()
        expected_sale: tuple[int, ...] = ()
        if trading and outlook == "community":
            expected, expected_sale = memory.expected(t, *inputs.prices(t))
        for i in range(n_h):
            st = states[i]
            battery = inputs.battery(i, st.soc, clean=bool(has_pv[i]))
            tic = time.process_time()
            plan = plan_home(
                inputs.forecast(i, t),
                batteries=() if battery is None else (battery,),
                evs=inputs.evs(i, t, st),
                plugs=inputs.plugs(i, t, st),
                mode=plan_mode,
                policy=policies[i],
                expected_price=expected,
                expected_sale_price=expected_sale,
                settings=settings,
                capacity_share_w=()
                if shares is None
                else tuple(int(x) for x in shares[i, t : inputs.end(t)]),
            )
            plan_cpu += time.process_time() - tic
            counters["lp_solves"] += plan.solves
            counters["lp_fallbacks"] += plan.fallbacks
            plans.append(plan)
            if not trading:
                continue
            for order in ag.home_bid(
                keys[i],
                slot,
                plan.bids,
                policies[i],
                r,
                f,
                margin_wh=plan.margin_wh,
                edge_margin_wh=plan.edge_margin_wh,
                sd_wh=plan.sd_wh,
            ):
                if order.side is Side.BUY:
                    headroom = ledger.max_buy_wh(keys[i], r, slot_rules.distributor_fee)
                    if order.energy_wh > headroom:
                        counters["capped_orders"] += 1
                        capped = _cap(order, headroom)
                        if capped is not None:
                            orders.append(capped)
                        continue
                orders.append(order)

        result: SlotResult | None = None
        if trading:
            if fed is not None:
                result = fed.clear(slot, orders)
            else:
                result = clear_slot(orders, slot_rules, slot_start=slot, fairness=fairness)
                fairness = result.fairness
        fills = result.fills if result is not None else ()
        if fills:
            vol = sum(fl.energy_wh for fl in fills)
            price[t] = sum(fl.price * fl.energy_wh for fl in fills) / vol
        own_value: dict[str, int] = {}
        own_volume: dict[str, int] = {}
        for fill in fills:
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
        members = {m.owner: m for m in result.members} if result is not None else {}
        general = result.general_price if result is not None else None
        for i in range(n_h):
            key = keys[i]
            st = states[i]
            plan = plans[i]
            bought, sold = int(arrays["bought"][i, t]), int(arrays["sold"][i, t])
            if own_volume.get(key):
                p = own_value[key] // own_volume[key]
            elif general is not None:
                p = general
            else:
                p = ag.home_price(plan.bids, None, slot_rules, slot)
            allocs = ag.split_result(plan.bids, slot, bought, sold, p, r, f)
            charge, discharge = _dispatch(
                c,
                i,
                t,
                st,
                allocs,
                plan_mode,
                bat,
                arrays,
                counters,
                deviation=int(c.load_wh[i, t])
                - plan.slots[0].load_wh
                - (int(c.pv_wh[i, t]) - plan.slots[0].pv_wh),
            )
            arrays["ch"][i, t] = charge
            arrays["dis"][i, t] = discharge
            st.soc += charge * int(bat.eff[i]) // 100 - discharge
            net = (
                int(c.load_wh[i, t])
                + int(arrays["ev"][i, t])
                + int(arrays["flex"][i, t])
                + charge
                - discharge
                - int(c.pv_wh[i, t])
            )
            grid = net - (bought - sold)
            arrays["imp"][i, t] = max(grid, 0)
            arrays["exp"][i, t] = max(-grid, 0)
            # sold but not delivered: the home's outflow fell short of its net sale
            arrays["shortfall"][i, t] = max(0, min(sold, (sold - bought) + net))
            m = members.get(key)
            engine_grid = (m.grid_import_wh - m.grid_export_wh) if m else 0
            if trading:
                counters["metered_vs_cleared_wh"] += abs(grid - engine_grid)
        # how the slot cleared, for the homes' expectations of the same slot tomorrow
        imported = arrays["imp"][:, t].sum() >= arrays["exp"][:, t].sum()
        memory.record(t, None if np.isnan(price[t]) else float(price[t]), bool(imported))
        for i, home in enumerate(c.homes):
            if home.ev is not None:
                for k, s in enumerate(home.ev.sessions):
                    if s.depart == t + 1:
                        counters["unfinished_wh"] += states[i].ev_left.get(k, s.energy_wh)
            for k, task in enumerate(home.flex):
                if task.deadline == t + 1:
                    counters["unfinished_wh"] += states[i].plug_left.get(k, task.energy_wh)
    soc_end = np.asarray([st.soc for st in states], dtype=np.int64)
    run = RunResult(
        "market" if trading else "alone but smart",
        arrays["imp"],
        arrays["exp"],
        arrays["bought"],
        arrays["sold"],
        arrays["paid"],
        arrays["received"],
        arrays["ch"],
        arrays["dis"],
        bat.soc0,
        soc_end,
        arrays["ev"],
        arrays["flex"],
        arrays["clean_bought"],
        price,
        runtime_s=time.perf_counter() - began,
        shortfall=arrays["shortfall"],
        extra={
            **counters,
            "mode": plan_mode.value,
            "cpu_s": round(time.process_time() - cpu_began, 2),
            "planner_cpu_s": round(plan_cpu, 2),
            "planner_ms_per_home_slot": round(1000 * plan_cpu / max(1, n_h * n_t), 2),
        },
    )
    return run, ledger


def default_settings(c: Community) -> PlannerSettings:
    """The planner's settings for the simulated homes (the curve resolves the community's
    price unit: a cent, or a hundredth of one)."""
    return replace(PlannerSettings(), price_step=c.price_scale, pv_id=PV, load_id=LOAD)


def _dispatch(
    c: Community,
    i: int,
    t: int,
    st: DeviceState,
    allocs: tuple[ag.AssetAllocation, ...],
    mode: PlanMode,
    bat: Batteries,
    arrays: dict[str, NDArray[Any]],
    counters: dict[str, int],
    *,
    deviation: int,
) -> tuple[int, int]:
    """What home ``i``'s devices do in slot ``t``; returns (charge, discharge).

    Control mode: the devices follow the allocations (checked against their limits); the
    battery also covers the forecast's miss of this slot (``deviation``: actual minus
    forecast net demand) within its limits, where that saves grid energy (a shortfall as far
    as the home would import, a surplus as far as it would export). Advise mode: the
    devices' own logic on the actual load and PV.
    """
    home = c.homes[i]
    room = max(0, min(int(bat.pw[i]), (int(bat.cap[i]) - st.soc) * 100 // int(bat.eff[i])))
    stock = max(0, min(int(bat.pw[i]), st.soc - int(bat.reserve[i])))
    if mode is PlanMode.ADVISE:
        ev_wh, ev_use, plug_use = own_logic(c, i, t, st)
    else:
        ev_wh, ev_use, plug_use = 0, {}, {}
        for a in allocs:
            if a.asset_id == EV and a.energy_wh:
                for k, s in enumerate(home.ev.sessions if home.ev else ()):
                    if s.arrive <= t < s.depart:
                        use = max(0, min(a.energy_wh, st.ev_left.get(k, s.energy_wh)))
                        if use != a.energy_wh:
                            counters["device_violations"] += 1
                        ev_use[k] = ev_use.get(k, 0) + use
            elif a.asset_id.startswith("plug") and a.energy_wh:
                k = int(a.asset_id[4:])
                task = home.flex[k]
                use = max(0, min(a.energy_wh, st.plug_left.get(k, task.energy_wh)))
                if use != a.energy_wh or not task.earliest <= t < task.deadline:
                    counters["device_violations"] += 1
                plug_use[k] = plug_use.get(k, 0) + use
        ev_wh = sum(ev_use.values())
    st.spend(c, t, ev_use, plug_use)
    for k, use in ev_use.items():
        st.ev_left[k] = st.ev_left.get(k, home.ev.sessions[k].energy_wh if home.ev else 0) - use
    for k, use in plug_use.items():
        st.plug_left[k] = st.plug_left.get(k, home.flex[k].energy_wh) - use
    arrays["ev"][i, t] = ev_wh
    arrays["flex"][i, t] = sum(plug_use.values())
    if home.battery is None:
        return 0, 0
    if mode is PlanMode.ADVISE:
        net = int(c.load_wh[i, t]) + ev_wh + int(arrays["flex"][i, t]) - int(c.pv_wh[i, t])
        return min(max(-net, 0), room), min(max(net, 0), stock)
    planned = sum(a.energy_wh for a in allocs if a.asset_id == BATTERY)
    if planned > room or -planned > stock:
        counters["device_violations"] += 1
    # The forecast's miss goes to the battery only where it saves grid energy: a shortfall
    # it covers only as far as the home would otherwise import, a surplus it stores only as
    # far as the home would otherwise export. It never discharges to hold a planned export
    # (stored energy sold at the feed-in tariff) nor charges to hold a planned import.
    actual = int(c.load_wh[i, t]) + ev_wh + int(arrays["flex"][i, t]) - int(c.pv_wh[i, t])
    bought, sold = int(arrays["bought"][i, t]), int(arrays["sold"][i, t])
    grid = actual + planned - (bought - sold)  # with the battery as planned
    want = planned
    if deviation > 0 and grid > 0:
        want -= min(deviation, grid)
    elif deviation < 0 and grid < 0:
        want += min(-deviation, -grid)
    return min(max(want, 0), room), min(max(-want, 0), stock)


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
