"""What each simulated home hands the planner every slot, and what its devices then do.

:class:`PlannerInputs` builds, for home ``i`` at slot ``t``, the same plain values the
integration's slot clock hands the engine's planner (``core/home/planner.py``):

* a :class:`~custom_components.peer_energy.core.home.forecast.HomeForecast` of the horizon
  (from slot ``t`` up to ``horizon`` slots, never past the simulation's end, whose stored
  content the KPIs value at the feed-in tariff like the optimum does): the community's
  forecasts of load and PV (the actual values when it has none), their spread, and the
  grid prices as the home knows them (a dynamic tariff's day-ahead prices are published at
  13:00 local time for the next day; slots beyond are expected at the last known price of
  the same time of day);
* the battery's state, the EV sessions (the one plugged in now with what it still needs,
  and the coming ones within the horizon: the owner's schedule) and the flexible plug
  tasks (running and coming ones), each with its cost cap: what running flat out from its
  start costs at the import prices, less what it has spent so far;
* the community price each slot is expected at (:class:`PriceMemory`).

:func:`own_logic` is what uncontrolled devices do in advise mode (and in the no-trading
baseline): the battery in self-consumption mode on the actual load and PV, the EV flat out
from plug-in, plugs from their earliest start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from custom_components.peer_energy.core.home.agents import BatteryState
from custom_components.peer_energy.core.home.devices import flat_out_cost
from custom_components.peer_energy.core.home.forecast import HomeForecast
from custom_components.peer_energy.core.home.outlook import same_slot_outlook
from custom_components.peer_energy.core.home.planner import EvSession, PlugTask
from custom_components.peer_energy.core.home.slot_plan import nowcast

from .community import Community
from .data import LOCAL_TZ

BATTERY, EV, PV, LOAD = "battery", "ev", "pv", "load"


def plug_id(k: int) -> str:
    """Asset id of a home's ``k``-th plug task."""
    return f"plug{k}"


def capacity_shares(c: Community, capacity_w: int) -> NDArray[Any]:
    """Each home's share of the community's import capacity per slot (W), shape (H, T).

    What the capacity leaves above the members' own inflexible import (the positive part of
    each home's forecast load minus PV, summed) is shared among the homes in proportion to
    the power of the flexible devices they can use in the slot (battery charging, the EV
    charger while a session is plugged in, plugs inside their task's window): a home with
    nothing to move gets nothing. The homes' inflexible imports plus their shares then add
    up to the capacity in every slot.
    """
    load, pv, _, _ = c.forecasts()
    own = np.maximum(load - pv, 0).sum(axis=0)
    room_w = np.maximum(capacity_w - own * 3600 // c.slot_seconds, 0)
    weight = np.zeros(c.load_wh.shape, dtype=np.int64)
    for i, h in enumerate(c.homes):
        if h.battery is not None:
            weight[i] += h.battery.power_w
        if h.ev is not None:
            for s in h.ev.sessions:
                weight[i, s.arrive : s.depart] += h.ev.charger_w
        for task in h.flex:
            weight[i, task.earliest : task.deadline] += task.power_w
    total = weight.sum(axis=0)
    return np.asarray(weight * room_w[None, :] // np.maximum(total, 1)[None, :], dtype=np.int64)


def known_until(c: Community) -> NDArray[Any] | None:
    """For a dynamic tariff, the last slot whose price is known at each slot: day-ahead
    prices are published around 13:00 local time for the next day, so until the end of the
    next local day from 13:00 on, else until the end of the current one. None when fixed."""
    if len(set(c.import_price.tolist())) <= 1 and len(set(c.feed_in.tolist())) <= 1:
        return None
    tz = ZoneInfo(LOCAL_TZ)
    days = [datetime.fromtimestamp(int(s), tz) for s in c.slots]
    out = np.zeros(c.n_slots, dtype=np.int64)
    last = 0
    for t, now in enumerate(days):
        end_date = now.date() + timedelta(days=1 if now.hour >= 13 else 0)
        last = max(last, t)
        while last + 1 < c.n_slots and days[last + 1].date() <= end_date:
            last += 1
        out[t] = last
    return out


@dataclass
class DeviceState:
    """One home's device state between slots."""

    soc: int = 0
    ev_left: dict[int, int] = field(default_factory=dict)  # session index -> Wh still needed
    plug_left: dict[int, int] = field(default_factory=dict)  # task index -> Wh still to run
    # what each session and task has spent at the import prices (Wh x minor units per kWh)
    ev_spent: dict[int, int] = field(default_factory=dict)
    plug_spent: dict[int, int] = field(default_factory=dict)

    def spend(self, c: Community, t: int, ev: dict[int, int], plug: dict[int, int]) -> None:
        """Book slot ``t``'s EV and plug energy (per session and task) at its import price."""
        price = int(c.import_price[t])
        for k, use in ev.items():
            self.ev_spent[k] = self.ev_spent.get(k, 0) + use * price
        for k, use in plug.items():
            self.plug_spent[k] = self.plug_spent.get(k, 0) + use * price


class PriceMemory:
    """The community price each coming slot is expected at: where the same slot cleared
    within its grid band (0 = feed-in tariff, 1 = import price) on the last days, weighed
    like the integration does (``core.home.outlook.same_slot_outlook``): a purchase at the
    highest of those places, a sale at the lowest.

    A slot with trades counts at its traded price, one without at the grid price the
    community faced (the import price when it imported, else the feed-in tariff). Before
    any history, a slot counts at the feed-in tariff when the members' forecasts add up to a
    surplus, else at the import price.
    """

    def __init__(self, c: Community) -> None:
        self.per_day = 86_400 // c.slot_seconds
        load, pv, _, _ = c.forecasts()
        balance = (load - pv).sum(axis=0)
        self.band = np.where(balance < 0, 0.0, 1.0)  # prior, replaced as slots clear
        self.cleared: dict[int, float] = {}
        self.c = c

    def record(self, t: int, price: float | None, imported: bool) -> None:
        """Remember how slot ``t`` cleared."""
        imp, fit = float(self.c.import_price[t]), float(self.c.feed_in[t])
        if price is None or imp <= fit:
            self.band[t] = 1.0 if imported else 0.0
        else:
            self.band[t] = min(1.0, max(0.0, (price - fit) / (imp - fit)))
        self.cleared[t] = float(self.band[t])

    def expected(
        self, t: int, imports: NDArray[Any], feed_ins: NDArray[Any]
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(purchase, sale) outlook of slots ``t, t+1, ...`` (as many as ``imports``) in
        prices, within each slot's band: the highest and the lowest place of the same slot on
        the last days that have cleared (the prior where none has)."""
        n = imports.size
        buy, sale = same_slot_outlook(self.cleared, t, n, 1, day=self.per_day)
        prior = self.band[t : t + n]
        hi = np.asarray([p if b is None else b for b, p in zip(buy, prior, strict=True)])
        lo = np.asarray([p if b is None else b for b, p in zip(sale, prior, strict=True)])

        def prices(band: NDArray[Any]) -> tuple[int, ...]:
            return tuple(int(x) for x in np.rint(feed_ins + band * (imports - feed_ins)))

        return prices(hi), prices(lo)


class PlannerInputs:
    """Builds the planner's inputs for every home and slot (see the module docstring)."""

    def __init__(self, c: Community, horizon_slots: int) -> None:
        self.c = c
        self.horizon = max(1, horizon_slots)
        self.per_day = 86_400 // c.slot_seconds
        self.known = known_until(c)
        load, pv, load_sd, pv_sd = c.forecasts()
        self.load = load.astype(np.int64)
        self.pv = pv.astype(np.int64)
        self.load_sd = load_sd.astype(np.int64)
        self.pv_sd = pv_sd.astype(np.int64)

    def end(self, t: int) -> int:
        """One past the last slot of the horizon that starts at ``t``."""
        return min(self.c.n_slots, t + self.horizon)

    def prices(self, t: int) -> tuple[NDArray[Any], NDArray[Any]]:
        """Import prices and feed-in tariffs of the horizon as known at slot ``t``."""
        c = self.c
        idx = np.arange(t, self.end(t))
        if self.known is not None:
            last = int(self.known[t])
            over = idx > last
            idx[over] = idx[over] - self.per_day * (-(-(idx[over] - last) // self.per_day))
        return c.import_price[idx], c.feed_in[idx]

    def forecast(self, i: int, t: int) -> HomeForecast:
        """Home ``i``'s forecast of the horizon starting at slot ``t``.

        With forecast error, the home also has its readings, as the slot clock does: the
        previous slot's mean PV and load power, taken at the previous slot's start, blended
        into the next hour by :func:`~custom_components.peer_energy.core.home.slot_plan.nowcast`.
        """
        fc = self._day_ahead(i, t)
        c = self.c
        if not c.forecast_error or t == 0:
            return fc
        sec = c.slot_seconds
        return nowcast(
            fc,
            int(c.slots[t]) - sec,
            pv_w=int(c.pv_wh[i, t - 1]) * 3600 // sec,
            load_w=int(c.load_wh[i, t - 1]) * 3600 // sec,
        )

    def _day_ahead(self, i: int, t: int) -> HomeForecast:
        c = self.c
        end = self.end(t)
        imports, feed_ins = self.prices(t)
        return HomeForecast(
            start=int(c.slots[t]),
            slot_seconds=c.slot_seconds,
            pv_wh=tuple(int(x) for x in self.pv[i, t:end]),
            pv_sd_wh=tuple(int(x) for x in self.pv_sd[i, t:end]),
            load_wh=tuple(int(x) for x in self.load[i, t:end]),
            load_sd_wh=tuple(int(x) for x in self.load_sd[i, t:end]),
            import_price=tuple(int(x) for x in imports),
            feed_in_tariff=tuple(int(x) for x in feed_ins),
            sources=(("load", "simulator"), ("pv", "simulator")),
        )

    def battery(self, i: int, soc: int, *, clean: bool) -> BatteryState | None:
        """Home ``i``'s battery at ``soc`` (None without one)."""
        b = self.c.homes[i].battery
        if b is None:
            return None
        return BatteryState(
            BATTERY,
            b.capacity_wh,
            soc,
            reserve_pct=b.reserve_pct,
            max_charge_w=b.power_w,
            max_discharge_w=b.power_w,
            efficiency_pct=b.efficiency_pct,
            degradation=0,
            clean=clean,
        )

    def evs(self, i: int, t: int, state: DeviceState) -> tuple[EvSession, ...]:
        """The EV sessions of home ``i`` that overlap the horizon, with what they still need."""
        c = self.c
        ev = c.homes[i].ev
        if ev is None:
            return ()
        end = self.end(t)
        s0, sec = int(c.slots[0]), c.slot_seconds
        out = []
        for k, s in enumerate(ev.sessions):
            if s.depart <= t or s.arrive >= end:
                continue
            need = state.ev_left.get(k, s.energy_wh) if s.arrive <= t else s.energy_wh
            if need > 0:
                own = flat_out_cost(
                    c.import_price[s.arrive : s.depart], s.energy_wh, c.max_wh(ev.charger_w)
                )
                out.append(
                    EvSession(
                        asset_id=EV,
                        arrive=s0 + s.arrive * sec,
                        depart=s0 + s.depart * sec,
                        energy_wh=need,
                        max_power_w=ev.charger_w,
                        cost_cap=own - state.ev_spent.get(k, 0),
                    )
                )
        return tuple(out)

    def plugs(self, i: int, t: int, state: DeviceState) -> tuple[PlugTask, ...]:
        """The plug tasks of home ``i`` that overlap the horizon, with what they still need."""
        c = self.c
        end = self.end(t)
        s0, sec = int(c.slots[0]), c.slot_seconds
        out = []
        for k, task in enumerate(c.homes[i].flex):
            if task.deadline <= t or task.earliest >= end:
                continue
            need = state.plug_left.get(k, task.energy_wh)
            if need > 0:
                own = flat_out_cost(
                    c.import_price[task.earliest : task.deadline],
                    task.energy_wh,
                    c.max_wh(task.power_w),
                )
                out.append(
                    PlugTask(
                        asset_id=plug_id(k),
                        earliest=s0 + task.earliest * sec,
                        deadline=s0 + task.deadline * sec,
                        energy_wh=need,
                        power_w=task.power_w,
                        cost_cap=own - state.plug_spent.get(k, 0),
                    )
                )
        return tuple(out)


def own_logic(
    c: Community, i: int, t: int, state: DeviceState
) -> tuple[int, dict[int, int], dict[int, int]]:
    """What home ``i``'s uncontrolled EV and plugs do in slot ``t``: (EV Wh, EV Wh per
    session, plug Wh per task); flat out from plug-in and from the earliest start."""
    home = c.homes[i]
    ev_use: dict[int, int] = {}
    if home.ev is not None:
        per = c.max_wh(home.ev.charger_w)
        for k, s in enumerate(home.ev.sessions):
            if s.arrive <= t < s.depart:
                ev_use[k] = min(per, state.ev_left.get(k, s.energy_wh))
    plug_use: dict[int, int] = {}
    for k, task in enumerate(home.flex):
        if task.earliest <= t < task.deadline:
            plug_use[k] = min(c.max_wh(task.power_w), state.plug_left.get(k, task.energy_wh))
    return sum(ev_use.values()), ev_use, plug_use
