"""The slot clock: every slot, read the home, plan it, trade, and act on the result.

The SlotClock is the shell's market loop. It holds no market logic of its own: the home
planner, the home's orders, clearing and the split of a fill back to the assets all come
from the engine (``core.home.slot_plan``, ``core.home.planner``, ``core.market.clearing``).
What it does, per slot ``S`` (slot starts are aligned to UTC multiples of the slot length):

1. At the start of the slot before ``S`` it *prepares* ``S``: it reads the assets' states from
   the coordinator, the per-asset controls from the runtime, the grid prices and the owner's
   policy into plain data (``slot_inputs``), builds the home's forecast of the next day
   (``forecasts.async_home_forecast``) and runs the planner in the executor
   (``core.home.slot_plan.plan_slot``): it plans the whole home over the horizon and derives
   the home's two-sided order for ``S`` (a buy and a sell order that never cross) with every
   asset's bids and reasons. In advise mode the home offers only what it will export with
   its devices following their own logic; in control mode what the plan makes them do. Only
   the aggregate orders leave the house.
2. In a community (``runtime.federation`` set) it hands the orders to
   ``federation.async_submit_orders``; the federation clears ``S`` with the peers at gate
   closure and calls back with a ``SlotOutcome``. Without a community the home clears on
   its own at gate closure (``S - lead``): its assets trade with each other and the grid
   only, so the owner sees what the plan would do and why.
3. On the outcome it splits the home's result back to the assets (``split_result``), each
   allocation with a reason, updates the entities and fires ``peer_energy_slot_cleared``.
4. At the start of ``S`` it *acts*: in control mode (``ControlMode.CONTROL``) it switches
   plugs and the EV charger, sets the charge current and the battery's mode or setpoint
   through the entities the owner mapped, logging every action with its reason at info
   level. In advise mode it only shows the same actions as advice.

An asset without readings sits the slot out with a reason; a missing forecast or price is a
fallback with a reason, never a crash. Units: energy Wh, power W, prices minor units per
kWh, money milli-minor units (Wh x minor/kWh), all integers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
import inspect
import math
from pathlib import Path
import shutil
from typing import TYPE_CHECKING, Any, Final, Protocol

from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON
from homeassistant.core import HassJob, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from .const import (
    CONF_CLEAN_ONLY,
    CONF_CONTROL_MODE,
    CONF_CURRENCY,
    CONF_CURRENT_ENTITY,
    CONF_EXPORT_PRICE,
    CONF_EXPORT_PRICE_ENTITY,
    CONF_IMPORT_PRICE,
    CONF_IMPORT_PRICE_ENTITY,
    CONF_MAX_BUY_PRICE,
    CONF_MIN_SELL_PRICE,
    CONF_MODE_ENTITY,
    CONF_PEAK_MARGIN_PCT,
    CONF_PLUGGED_ENTITY,
    CONF_SETPOINT_ENTITY,
    CONF_SLOT_MINUTES,
    CONF_SWITCH_ENTITY,
    DEFAULT_PEAK_MARGIN_PCT,
    DEFAULT_SLOT_MINUTES,
    DOMAIN,
    LOGGER,
    AssetKind,
    ControlMode,
    PowerSign,
)
from .coordinator import AssetReading, EnergyIntegrator
from .core.home.agents import (
    AssetAllocation,
    AssetBid,
    AssetKind as AgentKind,
    OwnerPolicy,
    home_price,
    split_result,
)
from .core.home.forecast import HomeForecast
from .core.home.outlook import OUTLOOK_DAYS, same_slot_outlook
from .core.home.peerbank import (
    Observation,
    PeerBankConfig,
    PeerBankState,
    PeerCapacity,
    step as peer_bank_step,
)
from .core.home.slot_plan import (
    AssetInput,
    DeviceMemory,
    SitOut,
    SlotDecision,
    SlotInputs,
    plan_slot,
)
from .core.market.clearing import Fill, SlotResult
from .core.market.orders import MarketRules, Order, Reason, Side, Step
from .forecast_build import NoPriceError, inflexible_load_w
from .forecasts import async_home_forecast
from .gate import async_check_gate_lead, max_gate_lead_s
from .prices import (
    InvalidPriceError,
    fixed_price_to_minor,
    minor_digits,
    price_state_to_minor,
)
from .recording import SIGNAL_LEDGER_UPDATED

if TYPE_CHECKING:
    from homeassistant.config_entries import ConfigEntry

    from .coordinator import AssetConfig, PeerEnergyData
    from .runtime import PeerEnergyRuntime

EVENT_SLOT_CLEARED: Final = f"{DOMAIN}_slot_cleared"
EVENT_REPLENISHMENT_REQUESTED: Final = f"{DOMAIN}_replenishment_requested"

# Gate closure lead without a community: orders of a slot are final this long before it.
DEFAULT_GATE_LEAD_S: Final = 60
# Horizon the planner plans over (slots, at most a day); only the first slot is ordered.
MAX_HORIZON_SLOTS: Final = 96
# Bids of the home's inflexible load and of manual orders use these asset ids.
BASE_LOAD_ID: Final = "base_load"
MANUAL_ID: Final = "manual"
# Agent defaults for limits the owner did not configure.
DEFAULT_EV_POWER_W: Final = 11_000
SECONDS_PER_DAY: Final = 86_400
SECONDS_PER_HOUR: Final = 3600
# Peer Bank thresholds on the community's predicted net inventory per slot (Wh): below
# the low one the community asks peers for energy, above the high one it cancels requests.
PEER_BANK_LOW_WH: Final = 0
PEER_BANK_HIGH_WH: Final = 2_000
# The clearing prices of the last day are kept in .storage/peer_energy.market.<entry id>.
MARKET_STORE_VERSION: Final = 1
# Largest manual order (Wh), a guard against typos.
MAX_MANUAL_WH: Final = 1_000_000


# Every reason code an asset can show (the planner's codes and ours), the options of the
# per-asset reason sensor; translated in strings.json. A code not listed shows as "other".
AGENT_REASON_CODES: Final = (
    "pv_surplus",
    "base_load",
    "battery_charge_cheap",
    "battery_discharge_dear",
    "battery_self_consumption",
    "ev_charge",
    "ev_deadline",
    "plug_run",
    "plug_delay_exhausted",
    "bought_market",
    "served_internal",
    "grid_fallback",
    "not_served_price",
    "sold_market",
    "used_internal",
    "exported_feed_in",
    "held_back",
    "ev_on_plug_in",
    "plug_on",
)
REASON_CODES: Final = (*AGENT_REASON_CODES, *(code.value for code in SitOut))


class FederationLike(Protocol):
    """What the slot clock uses of the federation link."""

    @property
    def gate_closure_lead_ms(self) -> int:
        """Gate closure lead before a slot starts (ms)."""

    @property
    def slot_ms(self) -> int:
        """The community's slot length (ms)."""

    @property
    def member_key(self) -> str:
        """This home's member id."""

    @property
    def peers_online(self) -> int:
        """Other members heard from recently."""

    @property
    def members(self) -> int:
        """Current members, this home included."""

    async def async_submit_orders(self, slot_start_ms: int, orders: Sequence[Order]) -> None:
        """Send the home's orders for one slot to the community."""

    def async_add_result_listener(self, cb: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``cb(outcome)`` for every slot outcome; return an unsubscriber."""

    def async_report_delivery(self, slot_start_ms: int, exported_wh: int, imported_wh: int) -> None:
        """Report the home's metered grid export and import during a past slot."""


# What the home decided for one slot before gate closure (the engine's answer).
SlotPlan = SlotDecision


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetAction:
    """A service call on one of the owner's entities, with the reason for it."""

    asset_id: str
    domain: str
    service: str
    entity_id: str
    data: Mapping[str, Any]
    reason: Reason
    applied: bool = False
    error: str | None = None

    def describe(self) -> str:
        """Short text for logs and attributes, such as ``switch.turn_off switch.plug``."""
        extra = "".join(f" {key}={value}" for key, value in sorted(self.data.items()))
        return f"{self.domain}.{self.service} {self.entity_id}{extra}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotReport:
    """The outcome of one slot for this home, split back to its assets."""

    slot_start: int
    price: int | None
    clean_price: int | None
    own_price: int | None
    void: bool
    void_reason: str | None
    local: bool
    position_wh: int
    bought_wh: int
    sold_wh: int
    paid_milli: int
    received_milli: int
    allocations: Mapping[str, AssetAllocation]
    reasons: Mapping[str, Reason]


@dataclass(slots=True)
class MarketTotals:
    """Running totals since installation (restored across restarts by their sensors)."""

    bought_wh: int = 0
    sold_wh: int = 0
    earned_milli: int = 0
    spent_milli: int = 0
    restored: set[str] = field(default_factory=set)


def utc_from_ts(ts: int) -> datetime:
    """A UTC datetime from integer Unix seconds."""
    return datetime.fromtimestamp(ts, UTC)


def price_to_major(price: int | None, currency: str) -> float | None:
    """A price in minor units per kWh shown in major units per kWh (display only)."""
    if price is None:
        return None
    return float(price / 10 ** minor_digits(currency))


def major_to_milli_amount(milli: int, currency: str) -> float:
    """A milli-minor amount shown in major currency units (display only)."""
    return float(milli / (1000 * 10 ** minor_digits(currency)))


def _policy_price(options: Mapping[str, Any], key: str, currency: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    try:
        return fixed_price_to_minor(value, currency)
    except (InvalidPriceError, TypeError):
        return None


def _reason_params(reason: Reason) -> dict[str, int | str]:
    return dict(reason.params)


class SlotClock:
    """Runs the home's market every slot (see the module docstring)."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
        """Bind to a loaded entry; ``async_start`` starts the timers."""
        self.hass = hass
        self.entry = entry
        self.currency = str(entry.data.get(CONF_CURRENCY) or hass.config.currency)
        self.plans: dict[int, SlotPlan] = {}
        self.reports: dict[int, SlotReport] = {}
        self.actions: dict[str, tuple[AssetAction, ...]] = {}
        self.actions_slot: int | None = None
        self.prices: dict[int, int] = {}
        self.manual: dict[int, list[AssetBid]] = {}
        self.totals = MarketTotals()
        self._store: Store[dict[str, Any]] = Store(
            hass, MARKET_STORE_VERSION, f"{DOMAIN}.market.{entry.entry_id}"
        )
        self.peer_bank = PeerBankState()
        self._listeners: list[Callable[[], None]] = []
        self._unsubs: list[Callable[[], None]] = []
        self._timers: dict[str, Callable[[], None]] = {}
        self.memory = DeviceMemory()
        self._last_import: int | None = None
        self._last_export: int | None = None
        self._manual_seq = 0
        self._stopped = True
        # Metering for delivery reports: the home's grid power integrated over each slot
        # (a grid meter's own energy counters when it has both), and the totals at the
        # last slot boundary: (slot start, source, import Wh, export Wh).
        self._grid = EnergyIntegrator()
        self._meter_mark: tuple[int, str, int, int] | None = None
        self._meter_gap = False  # the grid reading was unavailable during this slot
        self.metered: dict[int, tuple[int, int]] = {}  # slot -> (exported, imported) Wh

    # --- configuration read each slot ---------------------------------------------------

    @property
    def runtime(self) -> PeerEnergyRuntime:
        """The entry's runtime data."""
        runtime: PeerEnergyRuntime = self.entry.runtime_data
        return runtime

    @property
    def federation(self) -> FederationLike | None:
        """The community link, or None while the home is in no community."""
        return self.runtime.federation

    @property
    def slot_seconds(self) -> int:
        """Slot length: the community's when in one, else the entry's."""
        if (federation := self.federation) is not None and federation.slot_ms > 0:
            return max(1, federation.slot_ms // 1000)
        minutes = self.entry.data.get(CONF_SLOT_MINUTES, DEFAULT_SLOT_MINUTES)
        try:
            seconds = int(minutes) * 60
        except (TypeError, ValueError):
            seconds = DEFAULT_SLOT_MINUTES * 60
        if seconds <= 0 or SECONDS_PER_DAY % seconds:
            seconds = DEFAULT_SLOT_MINUTES * 60
        return seconds

    @property
    def gate_lead_seconds(self) -> int:
        """How long before a slot its orders are final: the community's lead exactly as
        the protocol uses it (a lead that leaves no time to bid raises a repair issue at
        start, see ``gate.py``), else the local default (at most half a slot)."""
        federation = self.federation
        if federation is not None:
            return max(0, federation.gate_closure_lead_ms // 1000)
        return min(DEFAULT_GATE_LEAD_S, max_gate_lead_s(self.slot_seconds))

    @property
    def control_mode(self) -> ControlMode:
        """Whether the owner allowed Peer Energy to act on the devices."""
        try:
            return ControlMode(self.entry.options.get(CONF_CONTROL_MODE, ControlMode.ADVISE))
        except ValueError:
            return ControlMode.ADVISE

    @property
    def peak_margin_pct(self) -> int:
        """The owner's peak margin in percent."""
        value = self.entry.options.get(CONF_PEAK_MARGIN_PCT, DEFAULT_PEAK_MARGIN_PCT)
        try:
            return max(0, int(value))
        except (TypeError, ValueError):
            return DEFAULT_PEAK_MARGIN_PCT

    @property
    def member(self) -> str:
        """The id this home's orders carry."""
        if (federation := self.federation) is not None:
            return federation.member_key
        if (ledger := self.runtime.ledger) is not None:
            return str(ledger.member)
        return self.entry.entry_id

    def policy(self) -> OwnerPolicy:
        """The owner's policy from the options."""
        options = self.entry.options
        return OwnerPolicy(
            clean_only=bool(options.get(CONF_CLEAN_ONLY, False)),
            max_buy_price=_policy_price(options, CONF_MAX_BUY_PRICE, self.currency),
            min_sell_price=_policy_price(options, CONF_MIN_SELL_PRICE, self.currency),
            peak_margin_pct=self.peak_margin_pct,
        )

    def _price(self, fixed_key: str, entity_key: str) -> int | None:
        data = self.entry.data
        if (entity_id := data.get(entity_key)) is not None:
            try:
                return price_state_to_minor(self.hass.states.get(entity_id), self.currency)
            except InvalidPriceError as err:
                LOGGER.debug("Price entity %s has no usable price: %s", entity_id, err.code)
                return None
        if (value := data.get(fixed_key)) is None:
            return None
        try:
            return fixed_price_to_minor(value, self.currency)
        except (InvalidPriceError, TypeError):
            return None

    def grid_prices(self) -> tuple[int, int] | None:
        """(import price, feed-in tariff) now; the last known ones while an entity is away."""
        import_price = self._price(CONF_IMPORT_PRICE, CONF_IMPORT_PRICE_ENTITY)
        export_price = self._price(CONF_EXPORT_PRICE, CONF_EXPORT_PRICE_ENTITY)
        if import_price is not None:
            self._last_import = import_price
        if export_price is not None:
            self._last_export = export_price
        if self._last_import is None or self._last_export is None:
            return None
        return self._last_import, self._last_export

    # --- views for entities -------------------------------------------------------------

    def slot_now(self, now: datetime | None = None) -> int:
        """Start of the slot that contains ``now`` (Unix seconds)."""
        ts = int((now or dt_util.utcnow()).timestamp())
        return ts - ts % self.slot_seconds

    @property
    def current(self) -> SlotReport | None:
        """The outcome of the slot running now."""
        return self.reports.get(self.slot_now())

    @property
    def next(self) -> SlotReport | None:
        """The outcome of the next slot, once it is known (after its gate closure)."""
        return self.reports.get(self.slot_now() + self.slot_seconds)

    @property
    def next_plan(self) -> SlotPlan | None:
        """The plan (orders) for the next slot."""
        return self.plans.get(self.slot_now() + self.slot_seconds)

    def average_price(self) -> int | None:
        """Mean clearing price over the last day (floored), None without history."""
        start = self.slot_now() - SECONDS_PER_DAY
        recent = [price for slot, price in self.prices.items() if slot >= start]
        if not recent:
            return None
        return sum(recent) // len(recent)

    def price_peak(self) -> bool | None:
        """Whether the current price is above the average by more than the peak margin."""
        current = self.current
        average = self.average_price()
        if current is None or current.price is None or average is None:
            return None
        return current.price * 100 > average * (100 + self.peak_margin_pct)

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` whenever plans, outcomes or actions change."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    @callback
    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    @callback
    def restore_total(self, name: str, value: int) -> None:
        """Add a total restored by its sensor (once per name)."""
        if name in self.totals.restored or value < 0 or not hasattr(self.totals, name):
            return
        self.totals.restored.add(name)
        setattr(self.totals, name, getattr(self.totals, name) + value)
        self._notify()

    # --- timers -------------------------------------------------------------------------

    async def async_load(self) -> None:
        """Load the clearing prices of the last day (expected prices, price peak average),
        the meter mark and the EV sessions."""
        data = await self._store.async_load()
        mark = data.get("meter_mark") if isinstance(data, dict) else None
        if (
            isinstance(mark, list)
            and len(mark) == 4
            and mark[1] == "meter"
            and all(type(v) is int for v in (mark[0], mark[2], mark[3]))
        ):
            self._meter_mark = (mark[0], "meter", mark[2], mark[3])
        if isinstance(data, dict):
            self.memory.restore_ev(data.get("ev"))
        prices = data.get("prices") if isinstance(data, dict) else None
        if not isinstance(prices, dict):
            return
        for key, value in prices.items():
            if not (isinstance(key, str) and key.isdigit()):
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                self.prices[int(key)] = value

    @callback
    def _save_store(self) -> None:
        """Write the price history (small: one day of slots), the meter mark and the EV
        sessions in the background."""
        data: dict[str, Any] = {
            "prices": {str(slot): price for slot, price in sorted(self.prices.items())}
        }
        if self._meter_mark is not None and self._meter_mark[1] == "meter":
            data["meter_mark"] = list(self._meter_mark)
        data["ev"] = self.memory.ev_state()
        self.entry.async_create_background_task(
            self.hass, self._store.async_save(data), f"{DOMAIN} save prices"
        )

    @callback
    def async_start(self) -> None:
        """Prepare the next slot now and start the slot timers."""
        self._stopped = False
        federation = self.federation
        if federation is not None:
            self._unsubs.append(federation.async_add_result_listener(self.async_handle_outcome))
        async_check_gate_lead(
            self.hass,
            self.entry.entry_id,
            None if federation is None else self.gate_lead_seconds,
            self.slot_seconds,
        )
        coordinator = self.runtime.coordinator
        self._unsubs.append(coordinator.async_add_listener(self._on_reading))
        self._unsubs.append(
            async_dispatcher_connect(
                self.hass, f"{SIGNAL_LEDGER_UPDATED}_{self.entry.entry_id}", self._notify
            )
        )
        self._on_reading()
        now = dt_util.utcnow()
        current = self.slot_now(now)
        upcoming = current + self.slot_seconds
        if int(now.timestamp()) < upcoming - self.gate_lead_seconds:
            self._schedule_prepare(upcoming)
        self._schedule("boundary", utc_from_ts(upcoming), self._async_boundary)

    @callback
    def async_stop(self) -> None:
        """Cancel every timer and subscription (called on unload)."""
        self._stopped = True
        for unsub in self._timers.values():
            unsub()
        self._timers.clear()
        while self._unsubs:
            self._unsubs.pop()()

    @property
    def timers(self) -> tuple[str, ...]:
        """Names of the pending timers (for tests and diagnostics)."""
        return tuple(sorted(self._timers))

    @callback
    def _schedule(self, name: str, when: datetime, action: Callable[[datetime], Any]) -> None:
        if (old := self._timers.pop(name, None)) is not None:
            old()

        @callback
        def fire(now: datetime) -> None:
            self._timers.pop(name, None)
            result = action(now)
            if inspect.iscoroutine(result):
                self.entry.async_create_task(self.hass, result, f"{DOMAIN} {name}")

        self._timers[name] = async_track_point_in_utc_time(
            self.hass, HassJob(fire, f"{DOMAIN} {name}"), when
        )

    @callback
    def _schedule_prepare(self, slot: int) -> None:
        """Prepare ``slot`` now (as a task); clear it locally at its gate closure."""
        self.entry.async_create_task(self.hass, self.async_prepare(slot), f"{DOMAIN} prepare")
        if self.federation is None:
            gate = utc_from_ts(slot - self.gate_lead_seconds)
            self._schedule("gate", gate, lambda _now: self._local_clear(slot))

    async def _async_boundary(self, now: datetime) -> None:
        """A slot starts: act on its outcome, prepare the next one, re-arm the timer."""
        if self._stopped:
            return
        slot = self.slot_now(now)
        nxt = slot + self.slot_seconds
        self._meter_slot(slot)
        self._prune(slot)
        self._schedule("boundary", utc_from_ts(nxt), self._async_boundary)
        self._schedule_prepare(nxt)
        await self.async_act(slot)

    @callback
    def _on_reading(self) -> None:
        data = self.runtime.coordinator.data
        power = None if data is None else data.grid_power_w
        self._meter_gap = self._meter_gap or power is None
        self._grid.update(power, dt_util.utcnow())

    def _meter_totals(self) -> tuple[str, int, int]:
        """Cumulative (source, import Wh, export Wh) of the home's grid connection, read
        now: a grid meter's energy counters (its own or integrated from its power), else
        the integrated estimate of the home's net grid power."""
        coordinator = self.runtime.coordinator
        data = coordinator.async_update_now()  # calls _on_reading
        if data.grid_import_wh is not None and data.grid_export_wh is not None:
            # "meter": the meter's own counters, which keep counting while Home Assistant is
            # down, so a mark stored before a restart stays valid; "integrated" ones do not.
            integrated = coordinator.integrates_import or coordinator.integrates_export
            source = "integrated" if integrated else "meter"
            return source, data.grid_import_wh, data.grid_export_wh
        return "power", self._grid.import_wh, self._grid.export_wh

    def _meter_slot(self, slot: int) -> None:
        """At a boundary: meter the slot that just ended and report it to the community.

        Only a slot metered from boundary to boundary is reported: not the one during
        which Home Assistant started (unless the grid meter's own counters were read at its
        start, before a restart), nor one across a change of meter source, nor one during
        which the grid reading was unavailable (what is unknown is not reported; the
        community then counts the delivery as unproven).
        """
        totals = self._meter_totals()
        mark, self._meter_mark = self._meter_mark, (slot, *totals)
        if totals[0] == "meter":
            self._save_store()  # keeps the mark across a restart
        gap = self._meter_gap
        self._meter_gap = self.runtime.coordinator.data.grid_power_w is None
        previous = slot - self.slot_seconds
        if mark is None or mark[:2] != (previous, totals[0]) or gap:
            return
        exported = max(0, totals[2] - mark[3])
        imported = max(0, totals[1] - mark[2])
        self.metered[previous] = (exported, imported)
        federation = self.federation
        if federation is not None:
            federation.async_report_delivery(previous * 1000, exported, imported)

    def _prune(self, slot: int) -> None:
        keep = slot - SECONDS_PER_DAY
        for old in [s for s in self.metered if s < keep]:
            del self.metered[old]
        for store in (self.plans, self.reports, self.manual):
            for old in [s for s in store if s < keep]:
                del store[old]
        # the community outlook weighs the same slot on the last days
        keep_prices = slot - OUTLOOK_DAYS * SECONDS_PER_DAY
        for old in [s for s in self.prices if s < keep_prices]:
            del self.prices[old]

    # --- step 1: plan the slot ----------------------------------------------------------

    async def async_prepare(self, slot: int) -> SlotPlan | None:
        """Plan ``slot``, keep the plan and submit its orders (community) or keep them (local)."""
        plan = await self.async_plan_slot(slot)
        if self._stopped:
            return None
        self.plans[slot] = plan
        self._notify()
        federation = self.federation
        if federation is None:
            return plan
        try:
            await federation.async_submit_orders(slot * 1000, plan.orders)
        except HomeAssistantError as err:
            LOGGER.warning("Could not send the orders for slot %s: %s", utc_from_ts(slot), err)
        return plan

    @property
    def horizon_slots(self) -> int:
        """Slots the planner plans over (a day, at most ``MAX_HORIZON_SLOTS``)."""
        return max(1, min(MAX_HORIZON_SLOTS, SECONDS_PER_DAY // self.slot_seconds))

    async def async_plan_slot(self, slot: int) -> SlotPlan:
        """Plan ``slot``: read the home (here), forecast it, run the planner in the executor."""
        inputs = self.slot_inputs(slot)
        forecast = await self._async_forecast(slot)
        return await self.hass.async_add_executor_job(plan_slot, inputs, forecast)

    async def _async_forecast(self, slot: int) -> HomeForecast | None:
        """The home's forecast from ``slot``, None when there is none (the planner then
        falls back to the readings now, or to no order without a price)."""
        try:
            return await async_home_forecast(
                self.hass,
                self.entry,
                start=slot,
                slot_seconds=self.slot_seconds,
                slots=self.horizon_slots,
            )
        except NoPriceError:
            LOGGER.debug("No price for the forecast of slot %s", utc_from_ts(slot))
        except (ValueError, HomeAssistantError) as err:
            LOGGER.warning("No forecast for slot %s: %s", utc_from_ts(slot), err)
        except Exception:  # our bug: surface it, keep the market running on readings
            LOGGER.exception("The forecast of slot %s failed", utc_from_ts(slot))
        return None

    def slot_inputs(self, slot: int) -> SlotInputs:
        """The home as plain data for the planner: assets, readings, controls and policy."""
        runtime = self.runtime
        data: PeerEnergyData = runtime.coordinator.data
        prices = self.grid_prices()
        assets: list[AssetInput] = []
        for sid, asset in runtime.assets.items():
            controls = runtime.controls_for(sid)
            reading = data.assets.get(sid) or AssetReading()
            sources = asset.sources
            common: dict[str, Any] = {
                "asset_id": sid,
                "kind": asset.kind.value,
                "participating": controls.participating,
                "has_reading": sid in data.assets,
                "power_w": reading.power_w,
            }
            if asset.kind is AssetKind.BATTERY:
                assets.append(
                    AssetInput(
                        **common,
                        controllable=CONF_SETPOINT_ENTITY in sources or CONF_MODE_ENTITY in sources,
                        capacity_wh=asset.capacity_wh,
                        soc_pct=reading.soc_pct,
                        reserve_pct=controls.battery_reserve_pct,
                        max_charge_w=asset.max_charge_w,
                        max_discharge_w=asset.max_discharge_w,
                    )
                )
            elif asset.kind is AssetKind.EV_CHARGER:
                departure = self._departure(slot, controls.ev_departure)
                need = self.memory.ev_need(
                    sid, departure, controls.ev_energy_needed_wh, reading.plugged
                )
                plugged = reading.plugged is True or (
                    reading.plugged is None and CONF_PLUGGED_ENTITY not in sources
                )
                run = self.memory.ev_session(sid, slot, plugged, need)
                assets.append(
                    AssetInput(
                        **common,
                        controllable=CONF_SWITCH_ENTITY in sources,
                        plugged=reading.plugged,
                        plugged_known=CONF_PLUGGED_ENTITY in sources,
                        need_wh=need,
                        departure=departure,
                        max_charge_w=asset.max_charge_w,
                        plugged_at=None if run is None else run.plugged_at,
                        plug_need_wh=0 if run is None else run.need_wh,
                        spent=0 if run is None else run.spent,
                        plug_prices=None
                        if run is None or run.prices is None
                        else tuple(run.prices),
                    )
                )
            elif asset.kind is AssetKind.PLUG:
                max_delay = controls.plug_max_delay_min * 60
                power = (
                    self.memory.plug_seen(sid, reading.power_w)
                    if controls.plug_flexible
                    else reading.power_w
                )
                assets.append(
                    AssetInput(
                        **common | {"power_w": power},
                        controllable=CONF_SWITCH_ENTITY in sources,
                        flexible=controls.plug_flexible,
                        wait_left_s=self.memory.plug_wait_left(sid, max_delay),
                        waited_s=self.memory.plug_waited.get(sid, 0),
                    )
                )
            else:
                assets.append(AssetInput(**common))
        return SlotInputs(
            owner=self.member,
            slot_start=slot,
            slot_seconds=self.slot_seconds,
            horizon_slots=self.horizon_slots,
            control=self.control_mode is ControlMode.CONTROL,
            policy=self.policy(),
            import_price=None if prices is None else prices[0],
            feed_in_tariff=None if prices is None else prices[1],
            assets=tuple(assets),
            base_load_w=inflexible_load_w(runtime.assets, data, runtime.controls_for),
            manual=tuple(self.manual.get(slot, ())),
            **self._outlook(slot),
            now=int(dt_util.utcnow().timestamp()),
            capacity_share_w=self._capacity_share_w(),
        )

    def _capacity_share_w(self) -> int | None:
        """This home's share of the community's import capacity (W): the capacity in the
        community's rules shared equally among its members (None without a community or
        a capacity). Only the aggregate is known to each home, so the share is equal."""
        federation = self.federation
        rules = getattr(federation, "rules", None)
        market_rules = getattr(rules, "market", None)
        capacity_wh = getattr(market_rules, "import_capacity_wh", None)
        if federation is None or not isinstance(capacity_wh, int):
            return None
        members = max(1, federation.members)
        return capacity_wh * SECONDS_PER_HOUR // self.slot_seconds // members

    def _outlook(self, slot: int) -> dict[str, tuple[int, ...]]:
        """The community outlook of the horizon, as far as it is known from the first slot
        on: a purchase expected at the dearest price the same slot cleared at on the last
        days, a sale at the cheapest (``core.home.outlook``; nothing without a community)."""
        if self.federation is None:
            return {"expected_price": (), "expected_sale_price": ()}
        buy, sale = same_slot_outlook(self.prices, slot, self.horizon_slots, self.slot_seconds)
        known = next((k for k, price in enumerate(buy) if price is None), len(buy))
        return {
            "expected_price": tuple(p for p in buy[:known] if p is not None),
            "expected_sale_price": tuple(p for p in sale[:known] if p is not None),
        }

    def _departure(self, slot: int, departure: Any) -> int:
        """Next departure (Unix seconds) after the slot starts."""
        local = dt_util.as_local(utc_from_ts(slot))
        when = local.replace(hour=departure.hour, minute=departure.minute, second=0, microsecond=0)
        if when <= local:
            when += timedelta(days=1)
        return int(when.timestamp())

    # --- manual orders ------------------------------------------------------------------

    def add_manual_order(self, slot: int, side: Side, energy_wh: int, price: int) -> str:
        """Add the owner's own bid or offer to a slot's home order; return its id.

        The caller checks that the slot is still open (before its gate closure).
        """
        self._manual_seq += 1
        asset_id = f"{MANUAL_ID}_{self._manual_seq}"
        bid = AssetBid(
            asset_id,
            AgentKind.BASE_LOAD,
            slot,
            side,
            (Step(price, energy_wh),),
            Reason.of(SitOut.MANUAL_ORDER, energy_wh=energy_wh, limit=price),
        )
        self.manual.setdefault(slot, []).append(bid)
        return asset_id

    def gate_closure(self, slot: int) -> int:
        """Gate closure of ``slot`` (Unix seconds)."""
        return slot - self.gate_lead_seconds

    # --- step 2/3: outcome --------------------------------------------------------------

    @callback
    def _local_clear(self, slot: int) -> None:
        """Clear ``slot`` for this home alone: its assets with each other and the grid."""
        plan = self.plans.get(slot)
        if plan is None or self.federation is not None:
            return
        self._record(self._report(plan, fills=(), result=None, local=True), plan)

    @callback
    def async_handle_outcome(self, outcome: Any) -> None:
        """Take a community ``SlotOutcome`` (from the federation link)."""
        slot = int(outcome.slot_start_ms) // 1000
        result: SlotResult | None = outcome.result
        if result is not None:
            self._peer_bank_step(slot, result)
        plan = self.plans.get(slot)
        if plan is None:
            LOGGER.debug("Outcome for slot %s without a plan here; ignored", slot)
            return
        void_reason: str | None = outcome.void_reason
        report = self._report(
            plan,
            fills=tuple(outcome.own_fills),
            result=result,
            local=False,
            void_reason=void_reason if result is None else None,
        )
        self._record(report, plan)
        if slot == self.slot_now() and self.actions_slot == slot and not self.actions:
            # The outcome came after the slot started (a late community result): act now.
            self.entry.async_create_task(self.hass, self.async_act(slot), f"{DOMAIN} act")

    def _report(
        self,
        plan: SlotPlan,
        *,
        fills: Sequence[Fill],
        result: SlotResult | None,
        local: bool,
        void_reason: str | None = None,
    ) -> SlotReport:
        me = self.member
        bought = sum(f.energy_wh for f in fills if f.buyer == me)
        sold = sum(f.energy_wh for f in fills if f.seller == me)
        paid = sum(f.energy_wh * (f.price + f.fee) for f in fills if f.buyer == me)
        received = sum(f.energy_wh * f.price for f in fills if f.seller == me)
        traded = bought + sold
        void = not local and result is None
        clean_price = None if result is None else result.clean_price
        # Volume-weighted price of this home's own fills (fees excluded).
        own_price = sum(f.energy_wh * f.price for f in fills) // traded if traded else None
        community_price = None
        if result is not None:
            community_price = (
                result.general_price if result.general_price is not None else clean_price
            )
        # The slot's price: the community's (the same for every member), else this home's.
        price = community_price
        if price is None:
            price = own_price if own_price is not None else self._home_price(plan)
        allocations = split_result(
            plan.bids,
            plan.slot_start,
            bought,
            sold,
            own_price if own_price is not None else price,
            plan.import_price,
            plan.feed_in_tariff,
        )
        by_asset = _merge_allocations(allocations)
        reasons: dict[str, Reason] = {}
        for key, asset_plan in plan.assets.items():
            alloc = by_asset.get(asset_plan.asset_id)
            if alloc is None:
                reasons[key] = asset_plan.reason
            elif void:
                reasons[key] = Reason.of(
                    SitOut.SLOT_VOID,
                    void_reason=void_reason or "unknown",
                    **dict(alloc.reason.params),
                )
            else:
                reasons[key] = alloc.reason
        position = sum(a.market_wh + a.grid_wh for a in allocations)
        return SlotReport(
            slot_start=plan.slot_start,
            price=price if plan.orders or community_price is not None else None,
            clean_price=clean_price,
            own_price=own_price,
            void=void,
            void_reason=void_reason if void else None,
            local=local,
            position_wh=position,
            bought_wh=bought,
            sold_wh=sold,
            paid_milli=paid,
            received_milli=received,
            allocations={
                key: by_asset[p.asset_id]
                for key, p in plan.assets.items()
                if p.asset_id in by_asset
            },
            reasons=reasons,
        )

    def _home_price(self, plan: SlotPlan) -> int:
        """The home's own price without a peer trade (see ``core.agents.home_price``)."""
        rules = MarketRules(
            import_price=plan.import_price,
            feed_in_tariff=plan.feed_in_tariff,
            slot_seconds=self.slot_seconds,
        )
        return home_price(plan.bids, plan.order, rules, plan.slot_start)

    @callback
    def _record(self, report: SlotReport, plan: SlotPlan) -> None:
        """Keep an outcome, update totals and the device memory, tell entities and the bus."""
        slot = report.slot_start
        self.reports[slot] = report
        if report.price is not None:
            self.prices[slot] = report.price
            self._save_store()
        totals = self.totals
        totals.bought_wh += report.bought_wh
        totals.sold_wh += report.sold_wh
        totals.spent_milli += report.paid_milli
        totals.earned_milli += report.received_milli
        self._after_slot(report, plan)
        LOGGER.debug(
            "Slot %s cleared%s: price %s, position %s Wh",
            utc_from_ts(slot).isoformat(),
            " (void)" if report.void else "",
            report.price,
            report.position_wh,
        )
        self.hass.bus.async_fire(
            EVENT_SLOT_CLEARED,
            {
                "config_entry_id": self.entry.entry_id,
                "slot_start": utc_from_ts(slot).isoformat(),
                "price": price_to_major(report.price, self.currency),
                "price_minor": report.price,
                "own_price": price_to_major(report.own_price, self.currency),
                "currency": self.currency,
                "position_wh": report.position_wh,
                "bought_wh": report.bought_wh,
                "sold_wh": report.sold_wh,
                "void": report.void,
                "void_reason": report.void_reason,
                "local": report.local,
            },
        )
        self._notify()

    def _after_slot(self, report: SlotReport, plan: SlotPlan) -> None:
        """Update what the planner remembers across slots (EV energy charged, plug waits)."""
        kinds = {sid: asset.kind.value for sid, asset in self.runtime.assets.items()}
        energy = {sid: alloc.energy_wh for sid, alloc in report.allocations.items()}
        for sid, asset_plan in plan.assets.items():
            if asset_plan.reason.code == SitOut.PLUG_WAIT:
                energy.setdefault(sid, 0)
        self.memory.after_slot(
            kinds, energy, self.slot_seconds, slot=plan.slot_start, import_price=plan.import_price
        )
        if self.memory.ev_runs:
            self._save_store()  # the EV sessions survive a restart

    # --- step 4: act --------------------------------------------------------------------

    async def async_act(self, slot: int) -> tuple[AssetAction, ...]:
        """Turn the slot's allocations into actions; carry them out in control mode."""
        report = self.reports.get(slot)
        if report is None:
            self.actions = {}
            self.actions_slot = slot
            self._notify()
            return ()
        control = self.control_mode is ControlMode.CONTROL
        done: list[AssetAction] = []
        for sid, asset in self.runtime.assets.items():
            alloc = report.allocations.get(sid)
            if alloc is None:
                continue
            reason = report.reasons.get(sid, alloc.reason)
            for planned in self._actions_for(asset, alloc, reason):
                if control:
                    done.append(await self._async_apply(asset, planned, slot))
                else:
                    LOGGER.debug("Advice for %s: %s", asset.name, planned.describe())
                    done.append(planned)
        grouped: dict[str, list[AssetAction]] = {}
        for action in done:
            grouped.setdefault(action.asset_id, []).append(action)
        self.actions = {sid: tuple(actions) for sid, actions in grouped.items()}
        self.actions_slot = slot
        self._notify()
        return tuple(done)

    def _actions_for(
        self, asset: AssetConfig, alloc: AssetAllocation, reason: Reason
    ) -> list[AssetAction]:
        """The service calls that make an asset follow its allocation (not yet applied)."""
        sources = asset.sources
        sid = asset.subentry_id
        actions: list[AssetAction] = []

        def add(domain: str, service: str, entity_id: str, **data: Any) -> None:
            actions.append(
                AssetAction(
                    asset_id=sid,
                    domain=domain,
                    service=service,
                    entity_id=entity_id,
                    data=data,
                    reason=reason,
                )
            )

        power = alloc.energy_wh * 3600 // self.slot_seconds
        if asset.kind in (AssetKind.PLUG, AssetKind.EV_CHARGER):
            switch = sources.get(CONF_SWITCH_ENTITY)
            on = alloc.energy_wh > 0
            if switch is not None:
                add("switch", "turn_on" if on else "turn_off", switch)
            current = sources.get(CONF_CURRENT_ENTITY)
            if asset.kind is AssetKind.EV_CHARGER and on and current is not None:
                amps = self._charge_current(current, power, asset.max_charge_w)
                if amps is not None:
                    add("number", "set_value", current, value=amps)
        elif asset.kind is AssetKind.BATTERY:
            if (setpoint := sources.get(CONF_SETPOINT_ENTITY)) is not None:
                # Our allocation: positive charges. The entity's sign follows the sensor's.
                value = power if asset.power_sign is PowerSign.POSITIVE_CHARGE else -power
                value = self._clamp(setpoint, value)
                add("number", "set_value", setpoint, value=value)
            if (mode := sources.get(CONF_MODE_ENTITY)) is not None:
                option = self._battery_option(mode, power)
                if option is not None:
                    add("select", "select_option", mode, option=option)
        return actions

    def _clamp(self, entity_id: str, value: int) -> int:
        state = self.hass.states.get(entity_id)
        if state is None:
            return value
        low = _finite(state.attributes.get("min"))
        high = _finite(state.attributes.get("max"))
        if low is not None:
            value = max(value, math.ceil(low))
        if high is not None:
            value = min(value, math.floor(high))
        return value

    def _charge_current(self, entity_id: str, power_w: int, max_power_w: int | None) -> int | None:
        """Charge current (A) for ``power_w``: a share of the number's range by power."""
        state = self.hass.states.get(entity_id)
        if state is None:
            return None
        high = _finite(state.attributes.get("max"))
        low = _finite(state.attributes.get("min"))
        if high is None or high <= 0:
            return None
        full = max_power_w or DEFAULT_EV_POWER_W
        amps = math.ceil(high * min(power_w, full) / full)
        if low is not None:
            amps = max(amps, math.ceil(low))
        return min(amps, math.floor(high))

    def _battery_option(self, entity_id: str, power: int) -> str | None:
        """Pick the select option for charging, discharging or automatic operation."""
        state = self.hass.states.get(entity_id)
        options = [] if state is None else state.attributes.get("options") or []
        names = [str(option) for option in options]
        if power > 0:
            wanted: Iterable[str] = ("force_charge", "charge", "charging")
        elif power < 0:
            wanted = ("force_discharge", "discharge", "discharging")
        else:
            wanted = ("auto", "automatic", "self_consumption", "self consumption", "normal", "idle")
        lowered = {name.lower(): name for name in names}
        for word in wanted:
            if word in lowered:
                return lowered[word]
        for word in wanted:
            for low, name in lowered.items():
                if word in low and (power <= 0 or "discharge" not in low):
                    return name
        return None

    async def _async_apply(self, asset: AssetConfig, action: AssetAction, slot: int) -> AssetAction:
        """Carry one action out (unless the entity is already there) and log it."""
        state = self.hass.states.get(action.entity_id)
        if state is not None and _already(action, state.state):
            return replace(action, applied=True)
        params = _reason_params(action.reason)
        LOGGER.info(
            "Slot %s: %s for %s because %s %s",
            utc_from_ts(slot).isoformat(),
            action.describe(),
            asset.name,
            action.reason.code,
            params,
        )
        try:
            await self.hass.services.async_call(
                action.domain,
                action.service,
                {ATTR_ENTITY_ID: action.entity_id, **action.data},
                blocking=True,
            )
        except (HomeAssistantError, ValueError) as err:
            LOGGER.warning("Could not %s for %s: %s", action.describe(), asset.name, err)
            return replace(action, error=str(err))
        return replace(action, applied=True)

    # --- diagnostics --------------------------------------------------------------------

    def diagnostics(self) -> dict[str, Any]:
        """The clock's settings and last outcome (plain data, nothing secret)."""
        last = self.reports[max(self.reports)] if self.reports else None
        return {
            "slot_seconds": self.slot_seconds,
            "gate_lead_seconds": self.gate_lead_seconds,
            "control_mode": self.control_mode.value,
            "community": self.federation is not None,
            "manual_orders": sum(len(bids) for bids in self.manual.values()),
            # each EV session since plug-in; without every price since then its budget is
            # counted from the slot planned (as without a session)
            "ev_sessions": {
                sid: {
                    "plugged_in": utc_from_ts(run.plugged_at).isoformat(),
                    "need_wh": run.need_wh,
                    "spent": run.spent,
                    "budget_from_plug_in": run.prices is not None,
                }
                for sid, run in self.memory.ev_runs.items()
            },
            "plan": self._plan_diagnostics(),
            "last_outcome": None
            if last is None
            else {
                "slot_start": utc_from_ts(last.slot_start).isoformat(),
                "price": last.price,
                "position_wh": last.position_wh,
                "void": last.void,
                "void_reason": last.void_reason,
                "local": last.local,
                "reasons": sorted({reason.code for reason in last.reasons.values()}),
            },
            "totals": {
                "bought_wh": self.totals.bought_wh,
                "sold_wh": self.totals.sold_wh,
                "earned_mmu": self.totals.earned_milli,
                "spent_mmu": self.totals.spent_milli,
            },
            "peer_bank": {
                "observations": len(self.peer_bank.history),
                "open_requests": len(self.peer_bank.open_requests),
            },
        }

    def _plan_diagnostics(self) -> dict[str, Any] | None:
        """The newest plan in short: its mode, fallback, horizon and order sides."""
        if not self.plans:
            return None
        plan = self.plans[max(self.plans)]
        return {
            "slot_start": utc_from_ts(plan.slot_start).isoformat(),
            "mode": None if plan.plan is None else plan.plan.mode.value,
            "fallback": plan.fallback,
            "slots": 0 if plan.plan is None else len(plan.plan.slots),
            "margin_wh": None if plan.plan is None else plan.plan.margin_wh,
            "orders": [order.side.value for order in plan.orders],
        }

    # --- Peer Bank ----------------------------------------------------------------------

    def _peer_bank_step(self, slot: int, result: SlotResult) -> None:
        """Run the Peer Bank model on a community result; fire the requests for this home.

        Every member runs the same model on the same attested results, so all agree on
        who is asked. The community inventory of a slot is what it exported minus what it
        imported or left unserved; a member's capacity to help is what it sold in the slot
        (it had surplus). The thresholds are a first, fixed choice (PEER_BANK_LOW_WH,
        PEER_BANK_HIGH_WH); the model's state is kept in memory only.
        """
        members = getattr(result, "members", ())
        observation = Observation(
            slot_start=slot,
            inventory_wh=int(result.grid_export_wh)
            - int(result.grid_import_wh)
            - int(result.unserved_wh),
            consumption_wh=int(result.volume_wh) + int(result.grid_import_wh),
            replenishment_wh=0,
        )
        peers = [PeerCapacity(m.owner, int(m.sold_wh)) for m in members if m.sold_wh > 0]
        config = PeerBankConfig(
            low_wh=PEER_BANK_LOW_WH, high_wh=PEER_BANK_HIGH_WH, slot_seconds=self.slot_seconds
        )
        self.peer_bank, decision = peer_bank_step(self.peer_bank, observation, peers, config)
        me = self.member
        for request in decision.requests:
            if request.peer == me:
                LOGGER.info(
                    "The community asks this home for %s Wh in slot %s (%s)",
                    request.energy_wh,
                    utc_from_ts(request.slot_start).isoformat(),
                    decision.reason.code,
                )
                self.async_request_replenishment(
                    energy_wh=request.energy_wh,
                    slot_start=request.slot_start,
                    requested_by="peer_bank",
                )

    @callback
    def async_request_replenishment(
        self, *, energy_wh: int, slot_start: int, requested_by: str = "community"
    ) -> None:
        """Tell automations that the community asks this home for energy.

        Fired when the Peer Bank model (or a peer through the federation) solicits
        replenishment; the battery blueprint answers it.
        """
        power = energy_wh * 3600 // self.slot_seconds
        self.hass.bus.async_fire(
            EVENT_REPLENISHMENT_REQUESTED,
            {
                "config_entry_id": self.entry.entry_id,
                "slot_start": utc_from_ts(slot_start).isoformat(),
                "slot_end": utc_from_ts(slot_start + self.slot_seconds).isoformat(),
                "energy_wh": energy_wh,
                "power_w": power,
                "requested_by": requested_by,
            },
        )


def _merge_allocations(allocations: Iterable[AssetAllocation]) -> dict[str, AssetAllocation]:
    """One allocation per asset: an asset with a bid and an offer in a slot gets their sum.

    The reason is that of the part that moved energy (the first one when none did).
    """
    merged: dict[str, AssetAllocation] = {}
    for alloc in allocations:
        old = merged.get(alloc.asset_id)
        if old is None:
            merged[alloc.asset_id] = alloc
            continue
        reason = old.reason if old.energy_wh or not alloc.energy_wh else alloc.reason
        merged[alloc.asset_id] = AssetAllocation(
            alloc.asset_id,
            alloc.slot_start,
            old.energy_wh + alloc.energy_wh,
            old.market_wh + alloc.market_wh,
            old.internal_wh + alloc.internal_wh,
            old.grid_wh + alloc.grid_wh,
            reason,
        )
    return merged


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _already(action: AssetAction, state: str) -> bool:
    """Whether the entity is already where the action would put it."""
    if action.service == "turn_on":
        return state == STATE_ON
    if action.service == "turn_off":
        return state == STATE_OFF
    if action.service == "select_option":
        return state == action.data.get("option")
    if action.service == "set_value":
        try:
            return float(state) == float(action.data["value"])
        except (TypeError, ValueError):
            return False
    return False


# --- Blueprints ---------------------------------------------------------------------------

BLUEPRINT_SOURCE: Final = Path(__file__).parent / "blueprints"
BLUEPRINT_FOLDER: Final = ("blueprints", "automation", DOMAIN)


async def async_populate_blueprints(hass: HomeAssistant) -> list[str]:
    """Copy our automation blueprints into the user's config (missing files only).

    Runs in the executor. A file the user already has, perhaps edited, is never replaced.
    Returns the names of the files copied.
    """
    target = Path(hass.config.path(*BLUEPRINT_FOLDER))

    def copy() -> list[str]:
        copied: list[str] = []
        try:
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted(BLUEPRINT_SOURCE.glob("*.yaml")):
                destination = target / source.name
                if not destination.exists():
                    shutil.copyfile(source, destination)
                    copied.append(source.name)
        except OSError as err:
            LOGGER.warning("Could not copy the Peer Energy blueprints to %s: %s", target, err)
        return copied

    copied = await hass.async_add_executor_job(copy)
    if copied:
        LOGGER.info("Added Peer Energy blueprints to %s: %s", target, ", ".join(copied))
    return copied


async def async_add_blueprints(hass: HomeAssistant) -> None:
    """Start-up hook (``async_at_started``): add the blueprints the user does not have."""
    await async_populate_blueprints(hass)
