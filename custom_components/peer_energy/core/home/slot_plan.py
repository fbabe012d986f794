"""The slot clock's planning step as plain data: a home's assets and forecast in, the slot's
home orders and every asset's plan (bids and reason) out.

The Home Assistant shell reads its states into :class:`SlotInputs` (one
:class:`AssetInput` per mapped asset, the owner's policy, the grid prices, the manual bids)
and calls :func:`plan_slot` with the home's :class:`~.forecast.HomeForecast`, in an executor.
:func:`plan_slot` turns the assets into the planner's devices (batteries, EV sessions, plug
tasks), runs :func:`~.planner.plan_home` over the horizon and derives from its plan:

- the home's two-sided order for the first slot (:func:`~.netting.home_bid`, with the plan's
  uncertainty margin): in advise mode only what the home will export or import under the
  model of its uncontrolled devices, in control mode what the plan will make them do;
- one :class:`AssetPlan` per asset: its bids with the planner's reason, or why it sits out
  (:class:`SitOut`).

Fallbacks are explicit, never a crash: without any grid price no order is made and every
asset sits out with ``no_price``; without a forecast (the shell could not build one) a
persistence forecast of the current readings is used and the plan says so
(``fallback="forecast_persistence"``); control mode with a device that cannot be controlled
(no switch, setpoint or mode entity) plans in advise mode (``fallback="not_controllable"``),
so the home never offers what a device will not do; a solver failure plans in advise mode
(``fallback="solver_failed"``). The next hour's PV and load start from the live readings
and blend toward the forecast, and the first slot's PV spread is narrowed to what a reading
minutes old leaves open (:func:`nowcast`).

:class:`DeviceMemory` is what the slot clock remembers across slots for the planner: the EV
energy charged since the last departure, each EV's session since plug-in (:class:`EvRun`,
from which :func:`session_cost_cap` makes its budget) and each plug's power and waiting time.

Units: energy Wh, power W, prices minor units per kWh, all integers.

Public API: :class:`SitOut`, :class:`AssetInput`, :class:`SlotInputs`, :class:`AssetPlan`,
:class:`SlotDecision`, :class:`DeviceMemory`, :class:`EvRun`, :func:`plan_slot`,
:func:`session_cost_cap`,
:func:`persistence_forecast`, :func:`plan_columns`, :data:`SLOT_FALLBACKS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import chain, islice, repeat
from math import isqrt
from typing import Any

from ..market.orders import Order, Reason, Side, Step
from .agents import BatteryState
from .bids import AssetBid, OwnerPolicy
from .devices import EvSession, PlugTask, energy_wh, flat_out_cost
from .forecast import HomeForecast
from .netting import home_bid
from .planner import HomePlan, PlanMode, PlannerSettings, plan_home

__all__ = [
    "PLAN_COLUMNS",
    "SLOT_FALLBACKS",
    "AssetInput",
    "AssetPlan",
    "DeviceMemory",
    "EvRun",
    "SitOut",
    "SlotDecision",
    "SlotInputs",
    "persistence_forecast",
    "plan_columns",
    "plan_slot",
    "session_cost_cap",
]

# The plan's columns (``plan_columns``), one value per slot.
PLAN_COLUMNS = (
    "start",
    "import_price",
    "feed_in_tariff",
    "expected_price",
    "pv_wh",
    "load_wh",
    "battery_wh",
    "soc_wh",
    "ev_wh",
    "plug_wh",
    "import_wh",
    "export_wh",
)
# Why a slot was planned with less than the full picture (shown with the plan).
SLOT_FALLBACKS = ("forecast_persistence", "not_controllable", "solver_failed")

BASE_LOAD_ID = "base_load"
PV_ID = "pv"
DEFAULT_BATTERY_POWER_W = 3000
DEFAULT_EV_POWER_W = 11_000
# The forecasts' spreads are for this lead time (s); a nearer first slot gets less.
NOWCAST_HORIZON_S = 3600
# Persistence forecast spread: half the value, at least this much load (W).
PERSISTENCE_MIN_LOAD_SD_W = 300


class SitOut(StrEnum):
    """Reason codes of an asset that places no bid this slot (besides the planner's codes)."""

    NO_READING = "no_reading"
    NOT_PARTICIPATING = "not_participating"
    NOT_FLEXIBLE = "not_flexible"
    METER_ONLY = "meter_only"
    NOT_PLUGGED = "not_plugged"
    NO_CAPACITY = "no_capacity"
    NO_PRICE = "no_price"
    NO_BID = "no_bid"
    SLOT_VOID = "slot_void"
    PLUG_WAIT = "plug_wait"
    MANUAL_ORDER = "manual_order"
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetInput:
    """One mapped asset as the shell read it (None: unavailable or not mapped).

    ``kind`` is the shell's asset kind: ``pv``, ``battery``, ``ev_charger``, ``plug`` or
    ``grid_meter``. ``controllable``: the shell can make the device follow a plan (a switch,
    a setpoint or a mode entity is mapped).
    """

    asset_id: str
    kind: str
    participating: bool = True
    has_reading: bool = True  # False: no reading of the asset at all
    controllable: bool = False
    power_w: int | None = None
    # battery
    capacity_wh: int | None = None
    soc_pct: float | None = None
    reserve_pct: int = 20
    max_charge_w: int | None = None
    max_discharge_w: int | None = None
    # EV charger: ``plugged`` None with ``plugged_known`` False means no plug sensor (assumed
    # plugged in); ``need_wh`` is still to charge by ``departure`` (Unix s).
    plugged: bool | None = None
    plugged_known: bool = False
    need_wh: int = 0
    departure: int = 0
    # the running session (see :class:`DeviceMemory`): the slot it was plugged in (Unix s,
    # None: not known), the energy it needed then (Wh), what it has spent since at the import
    # prices (Wh x minor units per kWh) and the import price of each slot since plug-in
    # before this one (None: not all known, e.g. after a long restart)
    plugged_at: int | None = None
    plug_need_wh: int = 0
    spent: int = 0
    plug_prices: tuple[int, ...] | None = None
    # plug: ``flexible`` (the owner lets it wait), its running power (the last one seen),
    # how long it may still wait
    flexible: bool = False
    wait_left_s: int = 0
    waited_s: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotInputs:
    """Everything :func:`plan_slot` needs besides the forecast (plain data)."""

    owner: str
    slot_start: int
    slot_seconds: int
    horizon_slots: int
    control: bool  # the owner lets Peer Energy act on the devices
    policy: OwnerPolicy
    import_price: int | None  # now; the forecast's first slot wins when there is one
    feed_in_tariff: int | None
    assets: tuple[AssetInput, ...] = ()
    base_load_w: int | None = None  # the inflexible load now (for the persistence fallback)
    manual: tuple[AssetBid, ...] = ()
    expected_price: tuple[int, ...] = ()  # expected community prices from slot 0 on
    # what a later sale to the neighbours is expected to earn (None: ``expected_price``)
    expected_sale_price: tuple[int, ...] | None = None
    now: int | None = None  # when the readings were taken (Unix s), for the nowcast
    # The home's share of the community's import capacity (W, every slot of the horizon;
    # None: no capacity), see ``planner.plan_home(capacity_share_w=...)``.
    capacity_share_w: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetPlan:
    """One asset in one slot: its bid (None when it sits out) and why."""

    asset_id: str
    bids: tuple[AssetBid, ...]
    reason: Reason

    @property
    def signed_wh(self) -> int:
        """Energy of the bids: positive buys (consumes), negative sells (produces)."""
        return sum(bid.energy_wh if bid.side is Side.BUY else -bid.energy_wh for bid in self.bids)


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotDecision:
    """The planning step's answer for one slot."""

    slot_start: int
    import_price: int
    feed_in_tariff: int
    orders: tuple[Order, ...]
    bids: tuple[AssetBid, ...]
    assets: Mapping[str, AssetPlan]
    plan: HomePlan | None = None
    fallback: str | None = None

    @property
    def order(self) -> Order | None:
        """The home's order on the side it is on at the grid's import price: the sell order
        when it exports even then, else the buy order (None without orders)."""
        by_side = {order.side: order for order in self.orders}
        if Side.SELL in by_side and (Side.BUY not in by_side or self.net_at_import < 0):
            return by_side[Side.SELL]
        return by_side.get(Side.BUY)

    @property
    def net_at_import(self) -> int:
        """Net import of the slot's bids (buy minus sell) at the import price."""
        net = 0
        for bid in self.bids:
            if bid.side is Side.BUY:
                net += sum(s.energy_wh for s in bid.steps if s.price >= self.import_price)
            else:
                net -= sum(s.energy_wh for s in bid.steps if s.price <= self.import_price)
        return net


@dataclass(slots=True)
class EvRun:
    """An EV charging session since plug-in: the slot it was first seen plugged in (Unix s),
    the energy it needed then (Wh), what it has spent since at the import prices (Wh x minor
    units per kWh) and the import price of each of its slots cleared so far, in order (None:
    a slot was missed, so the budget from plug-in is not known)."""

    plugged_at: int
    need_wh: int
    spent: int = 0
    prices: list[int] | None = field(default_factory=list)


@dataclass(slots=True)
class DeviceMemory:
    """What the slot clock remembers across slots for the planner. The EV part
    (:meth:`ev_state`) is kept across a restart by the shell; the plugs' is in memory only."""

    ev_charged: dict[str, int] = field(default_factory=dict)
    ev_departure: dict[str, int] = field(default_factory=dict)
    ev_runs: dict[str, EvRun] = field(default_factory=dict)
    plug_power: dict[str, int] = field(default_factory=dict)
    plug_waited: dict[str, int] = field(default_factory=dict)

    def ev_need(self, asset_id: str, departure: int, need_wh: int, plugged: bool | None) -> int:
        """Energy still to charge before ``departure``: a new departure or an unplugged car
        starts over (and ends the session)."""
        if self.ev_departure.get(asset_id) != departure or plugged is False:
            self.ev_departure[asset_id] = departure
            self.ev_charged[asset_id] = 0
            self.ev_runs.pop(asset_id, None)
        return max(0, need_wh - self.ev_charged.get(asset_id, 0))

    def ev_session(self, asset_id: str, slot: int, plugged: bool, need_wh: int) -> EvRun | None:
        """The running session of a charger seen ``plugged`` (or without a plug sensor) when
        ``slot`` is planned: the first such slot after being unplugged or unknown starts one,
        needing ``need_wh``."""
        if not plugged:
            self.ev_runs.pop(asset_id, None)
            return None
        run = self.ev_runs.get(asset_id)
        if run is None or run.plugged_at > slot:
            run = self.ev_runs[asset_id] = EvRun(plugged_at=slot, need_wh=need_wh)
        return run

    def ev_state(self) -> dict[str, Any]:
        """The EV part as plain JSON data (see :meth:`restore_ev`)."""
        return {
            "charged": dict(self.ev_charged),
            "departure": dict(self.ev_departure),
            "runs": {
                sid: {
                    "plugged_at": run.plugged_at,
                    "need_wh": run.need_wh,
                    "spent": run.spent,
                    "prices": None if run.prices is None else list(run.prices),
                }
                for sid, run in self.ev_runs.items()
            },
        }

    def restore_ev(self, data: Any) -> None:
        """Take back what :meth:`ev_state` gave (malformed parts are left out)."""
        if not isinstance(data, dict):
            return

        def ints(value: Any) -> dict[str, int]:
            if not isinstance(value, dict):
                return {}
            return {k: v for k, v in value.items() if isinstance(k, str) and _is_int(v)}

        self.ev_charged.update(ints(data.get("charged")))
        self.ev_departure.update(ints(data.get("departure")))
        runs = data.get("runs")
        for sid, run in (runs if isinstance(runs, dict) else {}).items():
            if not isinstance(run, dict) or not all(
                _is_int(run.get(key)) for key in ("plugged_at", "need_wh", "spent")
            ):
                continue
            prices = run.get("prices")
            known: list[int] | None = None
            if isinstance(prices, list) and all(_is_int(p) for p in prices):
                known = [int(p) for p in prices]
            self.ev_runs[str(sid)] = EvRun(
                plugged_at=run["plugged_at"],
                need_wh=run["need_wh"],
                spent=run["spent"],
                prices=known,
            )

    def plug_seen(self, asset_id: str, power_w: int | None) -> int | None:
        """The plug's running power: the last positive reading."""
        if power_w is not None and power_w > 0:
            self.plug_power[asset_id] = power_w
        return self.plug_power.get(asset_id)

    def plug_wait_left(self, asset_id: str, max_delay_s: int) -> int:
        """How long the plug may still wait."""
        return max(0, max_delay_s - self.plug_waited.get(asset_id, 0))

    def after_slot(
        self,
        kinds: Mapping[str, str],
        energy: Mapping[str, int],
        slot_seconds: int,
        *,
        slot: int | None = None,
        import_price: int | None = None,
    ) -> None:
        """Count a slot's outcome: EV energy charged and spent, and whether a plug ran or
        waited.

        ``energy`` is each asset's allocation (Wh, positive consumes); a plug that ran its
        slot starts its waiting budget over, one that did not used up a slot of it. A running
        EV session spends its energy at the slot's ``import_price`` and keeps the price; a
        slot that does not follow its last one (or without a price) leaves its prices unknown.
        """
        for sid, kind in kinds.items():
            used = max(energy.get(sid, 0), 0)
            run = self.ev_runs.get(sid) if kind == "ev_charger" else None
            if run is not None and slot is not None and slot >= run.plugged_at:
                if import_price is None:
                    run.prices = None
                else:
                    run.spent += used * import_price
                    if run.prices is not None:
                        if run.plugged_at + len(run.prices) * slot_seconds == slot:
                            run.prices.append(import_price)
                        else:
                            run.prices = None
            if kind == "ev_charger" and sid in energy:
                self.ev_charged[sid] = self.ev_charged.get(sid, 0) + used
            elif kind == "plug" and (power := self.plug_power.get(sid)) is not None:
                if sid not in energy:
                    continue
                if used >= energy_wh(power, slot_seconds):
                    self.plug_waited[sid] = 0
                else:
                    self.plug_waited[sid] = self.plug_waited.get(sid, 0) + slot_seconds


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def session_cost_cap(
    asset: AssetInput, import_price: Sequence[int], slot: int, slot_seconds: int, power_w: int
) -> int | None:
    """An EV session's budget at the import prices (``EvSession.cost_cap``): what charging
    the energy needed at plug-in flat out from plug-in costs, less what the session has spent.

    The slots since plug-in are priced by ``asset.plug_prices`` (one per slot, up to
    ``slot``), those from ``slot`` on by ``import_price`` (the forecast's), and any after the
    horizon at their mean. None (the planner's budget from now) when the session or the price
    of one of its slots is not known.
    """
    past = asset.plug_prices
    if (
        asset.plugged_at is None
        or past is None
        or asset.plugged_at + len(past) * slot_seconds != slot
        or not import_price
    ):
        return None
    per = energy_wh(power_w, slot_seconds)
    if per <= 0:
        return None
    later = sum(import_price) // len(import_price)
    slots = max(0, -(-(asset.departure - asset.plugged_at) // slot_seconds))
    prices = islice(chain(past, import_price, repeat(later)), slots)
    return flat_out_cost(prices, asset.plug_need_wh, per) - asset.spent


def persistence_forecast(
    *,
    start: int,
    slot_seconds: int,
    slots: int,
    pv_w: int,
    load_w: int,
    import_price: int,
    feed_in_tariff: int,
) -> HomeForecast:
    """The fallback forecast: the current PV and load for the whole horizon, spread 50 %."""
    pv = energy_wh(max(pv_w, 0), slot_seconds)
    load = energy_wh(max(load_w, 0), slot_seconds)
    load_sd = max(load // 2, energy_wh(PERSISTENCE_MIN_LOAD_SD_W, slot_seconds))
    n = max(1, slots)
    return HomeForecast(
        start=start,
        slot_seconds=slot_seconds,
        pv_wh=(pv,) * n,
        pv_sd_wh=(pv // 2,) * n,
        load_wh=(load,) * n,
        load_sd_wh=(load_sd,) * n,
        import_price=(import_price,) * n,
        feed_in_tariff=(feed_in_tariff,) * n,
        sources=(("pv", "persistence"), ("load", "persistence"), ("price", "current")),
    )


def nowcast(
    forecast: HomeForecast,
    now: int | None,
    *,
    pv_w: int | None = None,
    load_w: int | None = None,
) -> HomeForecast:
    """The forecast's first hour as seen from readings taken at ``now``.

    **Means.** The next slots start from what the home does now and blend toward the
    forecast over the following hour: slot ``k``'s PV (load) is the reading ``pv_w``
    (``load_w``) with weight ``1 - lead / 1 h`` and the forecast with the rest, ``lead``
    being the time from the reading to the middle of the slot. A sun-following forecast or a
    learned profile knows the hour, not this afternoon's clouds nor the oven that is on:
    minutes ahead, the reading is the better guess (a PV row that offers "0 Wh expected"
    while the inverter makes 2.4 kW, or a buy order while the home exports, is what the
    forecast alone gives). A reading left out (None) leaves its series as it is.

    **Spreads.** The forecasts' spreads are hour-ahead ones. PV minutes ahead of a reading
    is much surer: clouds come and go, and the error of a forecast made from readings
    minutes old grows with the lead time like a random walk (spread times
    ``sqrt(lead / 1 h)``), so the first slot's PV spread is narrowed to that. The
    household's load spread is not: appliances switch on at random whatever the lead time.
    The slot being bid for is at most two slots ahead, so with short slots its margin is
    mostly the load's (what the home offers is then close to what it exports now, less what
    a kettle may take).
    """
    if now is None or forecast.slots == 0:
        return forecast
    sec, start = forecast.slot_seconds, forecast.start
    changes: dict[str, Any] = {}
    for name, live_w in (("pv_wh", pv_w), ("load_wh", load_w)):
        if live_w is None:
            continue
        live = energy_wh(max(live_w, 0), sec)
        values = list(getattr(forecast, name))
        blended = 0
        for k, value in enumerate(values):
            lead = start + k * sec + sec // 2 - now
            weight = NOWCAST_HORIZON_S - max(lead, 0)
            if weight <= 0:
                break
            values[k] = (live * weight + value * (NOWCAST_HORIZON_S - weight)) // NOWCAST_HORIZON_S
            blended += 1
        if blended:
            changes[name] = tuple(values)
    lead = start + sec - now
    if lead < NOWCAST_HORIZON_S:
        lead = max(lead, sec, 1)
        root = isqrt(lead * 10_000 // NOWCAST_HORIZON_S)  # sqrt(lead / 1 h) in hundredths
        changes["pv_sd_wh"] = (forecast.pv_sd_wh[0] * root // 100, *forecast.pv_sd_wh[1:])
    return replace(forecast, **changes) if changes else forecast


def _sit_out(asset_id: str, code: str, **params: int | str) -> AssetPlan:
    return AssetPlan(asset_id=asset_id, bids=(), reason=Reason.of(code, **params))


def plan_slot(inputs: SlotInputs, forecast: HomeForecast | None) -> SlotDecision:
    """Plan the slot ``inputs.slot_start`` (see the module docstring). Pure, CPU only."""
    slot, sec = inputs.slot_start, inputs.slot_seconds
    fallback: str | None = None
    if forecast is None or forecast.slots == 0 or forecast.start != slot:
        if inputs.import_price is None or inputs.feed_in_tariff is None:
            reason = Reason.of(SitOut.NO_PRICE)
            assets = {
                a.asset_id: AssetPlan(asset_id=a.asset_id, bids=(), reason=reason)
                for a in inputs.assets
            }
            return SlotDecision(
                slot_start=slot,
                import_price=0,
                feed_in_tariff=0,
                orders=(),
                bids=(),
                assets=assets,
            )
        pv_now = sum(max(a.power_w or 0, 0) for a in inputs.assets if a.kind == "pv")
        forecast = persistence_forecast(
            start=slot,
            slot_seconds=sec,
            slots=inputs.horizon_slots,
            pv_w=pv_now,
            load_w=inputs.base_load_w or 0,
            import_price=inputs.import_price,
            feed_in_tariff=inputs.feed_in_tariff,
        )
        fallback = "forecast_persistence"
    pv_live = [max(a.power_w, 0) for a in inputs.assets if a.kind == "pv" and a.power_w is not None]
    forecast = nowcast(
        forecast,
        inputs.now,
        pv_w=sum(pv_live) if pv_live else None,
        load_w=inputs.base_load_w,
    )
    imp0, fit0 = forecast.import_price[0], forecast.feed_in_tariff[0]

    plans: dict[str, AssetPlan] = {}
    batteries: list[BatteryState] = []
    evs: list[EvSession] = []
    plugs: list[PlugTask] = []
    pv_assets: list[AssetInput] = []
    controllable = True
    waited = {a.asset_id: a.waited_s for a in inputs.assets}
    for a in inputs.assets:
        sid = a.asset_id
        if a.kind == "grid_meter":
            plans[sid] = _sit_out(sid, SitOut.METER_ONLY)
            continue
        if not a.participating:
            plans[sid] = _sit_out(sid, SitOut.NOT_PARTICIPATING)
            continue
        if not a.has_reading:
            plans[sid] = _sit_out(sid, SitOut.NO_READING, missing="all")
            continue
        if a.kind == "plug" and not a.flexible:
            plans[sid] = _sit_out(sid, SitOut.NOT_FLEXIBLE)
            continue
        if a.kind == "pv":
            if a.power_w is None:
                plans[sid] = _sit_out(sid, SitOut.NO_READING, missing="power")
            else:
                pv_assets.append(a)
        elif a.kind == "battery":
            if not a.capacity_wh:
                plans[sid] = _sit_out(sid, SitOut.NO_CAPACITY)
            elif a.soc_pct is None:
                plans[sid] = _sit_out(sid, SitOut.NO_READING, missing="soc")
            else:
                batteries.append(
                    BatteryState(
                        sid,
                        capacity_wh=a.capacity_wh,
                        soc_wh=round(a.capacity_wh * min(max(a.soc_pct, 0.0), 100.0) / 100),
                        reserve_pct=a.reserve_pct,
                        max_charge_w=a.max_charge_w or DEFAULT_BATTERY_POWER_W,
                        max_discharge_w=a.max_discharge_w or DEFAULT_BATTERY_POWER_W,
                    )
                )
                controllable = controllable and a.controllable
        elif a.kind == "ev_charger":
            if a.plugged_known and a.plugged is None:
                plans[sid] = _sit_out(sid, SitOut.NO_READING, missing="plugged")
            elif a.plugged is False:
                plans[sid] = _sit_out(sid, SitOut.NOT_PLUGGED)
            elif a.need_wh <= 0:
                plans[sid] = _sit_out(sid, SitOut.NO_BID)
            else:
                power = a.max_charge_w or DEFAULT_EV_POWER_W
                cap = session_cost_cap(a, forecast.import_price, slot, sec, power)
                evs.append(
                    EvSession(
                        asset_id=sid,
                        depart=a.departure,
                        energy_wh=a.need_wh,
                        max_power_w=power,
                        arrive=slot if cap is None or a.plugged_at is None else a.plugged_at,
                        cost_cap=cap,
                    )
                )
                controllable = controllable and a.controllable
        elif a.kind == "plug":
            if a.power_w is None or a.power_w <= 0:
                plans[sid] = _sit_out(sid, SitOut.NO_READING, missing="power")
            else:
                plugs.append(
                    PlugTask(
                        asset_id=sid,
                        energy_wh=energy_wh(a.power_w, sec),
                        power_w=a.power_w,
                        earliest=slot,
                        deadline=slot + sec + max(0, a.wait_left_s) // sec * sec,
                    )
                )
                controllable = controllable and a.controllable
        else:
            plans[sid] = _sit_out(sid, SitOut.OTHER)

    mode = PlanMode.CONTROL if inputs.control else PlanMode.ADVISE
    if mode is PlanMode.CONTROL and not controllable:
        mode, fallback = PlanMode.ADVISE, fallback or "not_controllable"
    settings = PlannerSettings(pv_id=PV_ID, load_id=BASE_LOAD_ID)
    kwargs: dict[str, Any] = {
        "batteries": batteries,
        "evs": evs,
        "plugs": plugs,
        "policy": inputs.policy,
        "expected_price": inputs.expected_price[: forecast.slots],
        "expected_sale_price": None
        if inputs.expected_sale_price is None
        else inputs.expected_sale_price[: forecast.slots],
        "settings": settings,
        "capacity_share_w": ()
        if inputs.capacity_share_w is None
        else (max(inputs.capacity_share_w, 0),) * forecast.slots,
    }
    try:
        plan = plan_home(forecast, mode=mode, **kwargs)
    except RuntimeError:
        plan = plan_home(forecast, mode=PlanMode.ADVISE, **kwargs)
        fallback = "solver_failed"

    by_asset: dict[str, list[AssetBid]] = {}
    for bid in plan.bids:
        by_asset.setdefault(bid.asset_id, []).append(bid)
    bids: list[AssetBid] = []
    # PV: the forecast is of all PV together; each PV asset gets a share by its power now.
    pv_bids = by_asset.pop(PV_ID, [])
    if pv_assets:
        weights = [max(a.power_w or 0, 0) for a in pv_assets]
        if not any(weights):
            weights = [1] * len(pv_assets)
        for a, share in zip(pv_assets, _split_bids(pv_bids, pv_assets, weights), strict=True):
            if share:
                plans[a.asset_id] = AssetPlan(
                    asset_id=a.asset_id, bids=tuple(share), reason=share[0].reason
                )
                bids += share
            else:
                plans[a.asset_id] = _sit_out(
                    a.asset_id, "pv_surplus", forecast_wh=0, floor=min(fit0, imp0)
                )
    load_bids = by_asset.pop(BASE_LOAD_ID, [])
    if load_bids:
        plans[BASE_LOAD_ID] = AssetPlan(
            asset_id=BASE_LOAD_ID, bids=tuple(load_bids), reason=load_bids[0].reason
        )
    elif inputs.base_load_w is None:  # nothing forecast, nothing measured
        plans[BASE_LOAD_ID] = _sit_out(BASE_LOAD_ID, SitOut.NO_READING, missing="grid")
    else:
        plans[BASE_LOAD_ID] = _sit_out(BASE_LOAD_ID, "base_load", forecast_wh=0)
    bids += load_bids
    for b in batteries:
        own = by_asset.pop(b.asset_id, [])
        if own:
            plans[b.asset_id] = AssetPlan(
                asset_id=b.asset_id, bids=tuple(own), reason=own[0].reason
            )
            bids += own
        else:
            plans[b.asset_id] = _sit_out(
                b.asset_id,
                "battery_self_consumption" if plan.mode is PlanMode.ADVISE else SitOut.NO_BID,
                soc_pct=b.soc_wh * 100 // b.capacity_wh,
                reserve_pct=b.reserve_pct,
                own_wh=0,
            )
    for ev in evs:
        own = by_asset.pop(ev.asset_id, [])
        if own:
            plans[ev.asset_id] = AssetPlan(
                asset_id=ev.asset_id, bids=tuple(own), reason=own[0].reason
            )
            bids += own
        else:  # the plan charges later
            planned = sum(1 for row in plan.slots if row.ev_wh > 0)
            plans[ev.asset_id] = _sit_out(
                ev.asset_id, "ev_charge", need_wh=ev.energy_wh, slots_left=planned
            )
    for task in plugs:
        own = by_asset.pop(task.asset_id, [])
        if own:
            plans[task.asset_id] = AssetPlan(
                asset_id=task.asset_id, bids=tuple(own), reason=own[0].reason
            )
            bids += own
        else:  # the plan runs it later, within its waiting time
            plans[task.asset_id] = _sit_out(
                task.asset_id,
                SitOut.PLUG_WAIT,
                expected=imp0,
                delay_used_s=waited.get(task.asset_id, 0),
            )
    for rest in by_asset.values():  # an asset the shell did not give (never expected)
        bids += rest
    for k, bid in enumerate(inputs.manual):
        if bid.slot_start != slot:
            continue
        plans[f"manual_{k + 1}"] = AssetPlan(asset_id=bid.asset_id, bids=(bid,), reason=bid.reason)
        bids.append(bid)
    orders = home_bid(
        inputs.owner,
        slot,
        bids,
        inputs.policy,
        imp0,
        fit0,
        margin_wh=plan.margin_wh,
        edge_margin_wh=plan.edge_margin_wh,
        sd_wh=plan.sd_wh,
    )
    return SlotDecision(
        slot_start=slot,
        import_price=imp0,
        feed_in_tariff=fit0,
        orders=orders,
        bids=tuple(bids),
        assets=plans,
        plan=plan,
        fallback=fallback,
    )


def _split_bids(
    bids: Sequence[AssetBid], assets: Sequence[AssetInput], weights: list[int]
) -> list[list[AssetBid]]:
    """Each bid's steps shared among ``assets`` by ``weights`` (exact integers)."""
    out: list[list[AssetBid]] = [[] for _ in assets]
    for bid in bids:
        per: list[list[Step]] = [[] for _ in assets]
        for step in bid.steps:
            for j, part in enumerate(_proportional(step.energy_wh, weights)):
                if part > 0:
                    per[j].append(Step(step.price, part))
        for j, a in enumerate(assets):
            if per[j]:
                out[j].append(
                    AssetBid(
                        a.asset_id,
                        bid.kind,
                        bid.slot_start,
                        bid.side,
                        tuple(per[j]),
                        bid.reason,
                        clean=bid.clean,
                    )
                )
    return out


def _proportional(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder; sums to ``total``)."""
    wsum = sum(weights)
    if total <= 0 or wsum <= 0:
        return [0] * len(weights)
    base = [w * total // wsum for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(weights[i] * total % wsum), i))
    for i in order[: total - sum(base)]:
        base[i] += 1
    return base


def plan_columns(plan: HomePlan, slots: int | None = None) -> dict[str, Any]:
    """The plan's slots as columns (compact plain data for attributes and the market view):
    ``start`` (Unix s) and per slot expected price, PV, load, battery, state of charge, EV,
    plug, import and export (Wh, prices minor units per kWh)."""
    rows = plan.slots if slots is None else plan.slots[:slots]
    return {
        "mode": plan.mode.value,
        "slot_seconds": plan.slot_seconds,
        "margin_wh": plan.margin_wh,
        **{name: [getattr(row, name) for row in rows] for name in PLAN_COLUMNS},
    }
