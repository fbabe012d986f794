"""Sensors: each asset's live power, energy and state of charge; home-level grid values;
the market (clearing prices, own position, peer energy and credit totals, reputation,
peers online, unreachable neighbours), each asset's order, allocation and reason from the
slot clock; the savings versus not trading and the grid prices with neighbours' trades for
the Energy dashboard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    MATCH_ALL,
    PERCENTAGE,
    EntityCategory,
    UnitOfEnergy,
    UnitOfPower,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import ExtraStoredData, RestoreEntity
from homeassistant.helpers.typing import StateType
from homeassistant.util import dt as dt_util

from .announce import short
from .const import (
    CONF_ENERGY_ENTITY,
    CONF_POWER_ENTITY,
    CONF_SOC_ENTITY,
    AssetKind,
)
from .coordinator import (
    WMS_PER_WH,
    AssetConfig,
    AssetReading,
    PeerEnergyCoordinator,
    PeerEnergyData,
    state_number,
)
from .core.home.slot_plan import PLAN_COLUMNS, SitOut, plan_columns
from .core.trust.reputation import REPUTATION_STATUSES, reputation_status
from .entity import PeerEnergyEntity, PeerEnergyMarketEntity
from .federation import SIGNAL_REACHABILITY
from .market import REASON_CODES, major_to_milli_amount, price_to_major, utc_from_ts
from .prices import minor_digits
from .runtime import PeerEnergyConfigEntry

if TYPE_CHECKING:
    from .ledger import PeerLedger
    from .market import SlotClock, SlotReport
    from .savings import SavingsTracker

# Values are pushed by the coordinator; entities never update themselves.
PARALLEL_UPDATES = 0


def _kwh(wh: int | None) -> float | None:
    return None if wh is None else wh / 1000


@dataclass(frozen=True, kw_only=True)
class PeerEnergyAssetSensorDescription(SensorEntityDescription):
    """A sensor of an asset device."""

    exists_fn: Callable[[AssetConfig], bool]
    value_fn: Callable[[AssetReading], StateType]


@dataclass(frozen=True, kw_only=True)
class PeerEnergyHomeSensorDescription(SensorEntityDescription):
    """A sensor of the home device."""

    exists_fn: Callable[[PeerEnergyCoordinator], bool]
    value_fn: Callable[[PeerEnergyData], StateType]
    # Set on grid energy totals that the coordinator may integrate (and must restore).
    total: Literal["import", "export"] | None = None


def _maps(kind: AssetKind, key: str) -> Callable[[AssetConfig], bool]:
    return lambda asset: asset.kind is kind and key in asset.sources


def _power(kind: AssetKind, translation_key: str) -> PeerEnergyAssetSensorDescription:
    return PeerEnergyAssetSensorDescription(
        key="power",
        translation_key=translation_key,
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        exists_fn=_maps(kind, CONF_POWER_ENTITY),
        value_fn=lambda reading: reading.power_w,
    )


def _energy(kind: AssetKind, translation_key: str) -> PeerEnergyAssetSensorDescription:
    return PeerEnergyAssetSensorDescription(
        key="energy",
        translation_key=translation_key,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        exists_fn=_maps(kind, CONF_ENERGY_ENTITY),
        value_fn=lambda reading: _kwh(reading.energy_wh),
    )


ASSET_SENSORS: tuple[PeerEnergyAssetSensorDescription, ...] = (
    _power(AssetKind.PV, "pv_power"),
    _energy(AssetKind.PV, "pv_energy"),
    _power(AssetKind.BATTERY, "battery_power"),
    PeerEnergyAssetSensorDescription(
        key="soc",
        translation_key="battery_soc",
        device_class=SensorDeviceClass.BATTERY,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=PERCENTAGE,
        suggested_display_precision=0,
        exists_fn=_maps(AssetKind.BATTERY, CONF_SOC_ENTITY),
        value_fn=lambda reading: reading.soc_pct,
    ),
    _energy(AssetKind.BATTERY, "battery_energy"),
    _power(AssetKind.EV_CHARGER, "ev_power"),
    _energy(AssetKind.EV_CHARGER, "ev_energy"),
    _power(AssetKind.PLUG, "plug_power"),
    _energy(AssetKind.PLUG, "plug_energy"),
    _power(AssetKind.GRID_METER, "grid_meter_power"),
)

HOME_SENSORS: tuple[PeerEnergyHomeSensorDescription, ...] = (
    PeerEnergyHomeSensorDescription(
        key="net_grid_power",
        translation_key="net_grid_power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        exists_fn=lambda coordinator: bool(coordinator.assets),
        value_fn=lambda data: data.grid_power_w,
    ),
    PeerEnergyHomeSensorDescription(
        key="pv_surplus",
        translation_key="pv_surplus",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        exists_fn=lambda coordinator: any(
            asset.kind is AssetKind.PV for asset in coordinator.assets.values()
        ),
        value_fn=lambda data: data.pv_surplus_w,
    ),
    PeerEnergyHomeSensorDescription(
        key="grid_import_energy",
        translation_key="grid_import_energy",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        exists_fn=lambda coordinator: coordinator.has_grid_meter,
        value_fn=lambda data: _kwh(data.grid_import_wh),
        total="import",
    ),
    PeerEnergyHomeSensorDescription(
        key="grid_export_energy",
        translation_key="grid_export_energy",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        exists_fn=lambda coordinator: coordinator.has_grid_meter,
        value_fn=lambda data: _kwh(data.grid_export_wh),
        total="export",
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: PeerEnergyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the home sensors and each asset's sensors (on the asset's subentry)."""
    coordinator = entry.runtime_data.coordinator
    home: list[SensorEntity] = []
    for home_description in HOME_SENSORS:
        if not home_description.exists_fn(coordinator):
            continue
        if home_description.total is not None:
            home.append(PeerEnergyTotalSensor(coordinator, home_description))
        else:
            home.append(PeerEnergyHomeSensor(coordinator, home_description))
    home.extend(PeerEnergyMarketSensor(coordinator, description) for description in MARKET_SENSORS)
    home.extend(PeerEnergyMarketSensor(coordinator, description) for description in PRICE_SENSORS)
    home.extend(
        PeerEnergySavingsSensor(coordinator, description) for description in SAVINGS_SENSORS
    )
    home.extend(PeerEnergyPlanSensor(coordinator, description) for description in PLAN_SENSORS)
    home.append(PeerEnergyUnreachableSensor(coordinator, UNREACHABLE_SENSOR))
    async_add_entities(home)
    for subentry_id, asset in entry.runtime_data.assets.items():
        asset_sensors: list[SensorEntity] = [
            PeerEnergyAssetSensor(coordinator, description, asset)
            for description in ASSET_SENSORS
            if description.exists_fn(asset)
        ]
        if asset.kind is not AssetKind.GRID_METER:
            asset_sensors.extend(
                PeerEnergyAssetMarketSensor(coordinator, description, asset)
                for description in ASSET_MARKET_SENSORS
            )
        async_add_entities(asset_sensors, config_subentry_id=subentry_id)


class PeerEnergyAssetSensor(PeerEnergyEntity, SensorEntity):
    """A reading of an asset, mirrored from its source entity."""

    entity_description: PeerEnergyAssetSensorDescription
    asset: AssetConfig

    def __init__(
        self,
        coordinator: PeerEnergyCoordinator,
        description: PeerEnergyAssetSensorDescription,
        asset: AssetConfig,
    ) -> None:
        """Bind the description to one asset."""
        super().__init__(coordinator, description, asset)

    @property
    def native_value(self) -> StateType:
        """Return the reading in standard units."""
        reading = self.coordinator.data.assets.get(self.asset.subentry_id)
        return None if reading is None else self.entity_description.value_fn(reading)

    @property
    def available(self) -> bool:
        """Follow the source: unavailable while it has no usable value."""
        return super().available and self.native_value is not None


class PeerEnergyHomeSensor(PeerEnergyEntity, SensorEntity):
    """A home-level value derived from the assets."""

    entity_description: PeerEnergyHomeSensorDescription

    @property
    def native_value(self) -> StateType:
        """Return the derived value."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def available(self) -> bool:
        """Unavailable while a value it depends on is unavailable."""
        return super().available and self.native_value is not None


@dataclass(frozen=True, slots=True)
class EnergyTotalStoredData(ExtraStoredData):
    """The exact integrated total, in watt-milliseconds."""

    energy_wms: int

    def as_dict(self) -> dict[str, Any]:
        """Return a dict for the restore cache."""
        return {"energy_wms": self.energy_wms}


class PeerEnergyTotalSensor(PeerEnergyHomeSensor, RestoreEntity):
    """Grid import or export energy total: mirrored from the meter, or integrated and restored."""

    @property
    def _integrated(self) -> bool:
        coordinator = self.coordinator
        if self.entity_description.total == "import":
            return coordinator.integrates_import
        return coordinator.integrates_export

    @property
    def _wms(self) -> int:
        integrator = self.coordinator.integrator
        if self.entity_description.total == "import":
            return integrator.import_wms
        return integrator.export_wms

    async def async_added_to_hass(self) -> None:
        """Give the coordinator the total stored before the restart."""
        await super().async_added_to_hass()
        direction = self.entity_description.total
        if direction is None or not self._integrated:
            return
        restored: int | None = None
        if (extra := await self.async_get_last_extra_data()) is not None:
            value = extra.as_dict().get("energy_wms")
            if isinstance(value, int) and not isinstance(value, bool):
                restored = value
        if restored is None and (kwh := state_number(await self.async_get_last_state())):
            # Older state without extra data: fall back to the shown kWh.
            restored = round(kwh * 1000 * WMS_PER_WH)
        if restored is not None:
            self.coordinator.restore_total(direction, restored)

    @property
    def extra_restore_state_data(self) -> ExtraStoredData | None:
        """Store the exact integrated total (nothing when mirrored from a meter)."""
        return EnergyTotalStoredData(self._wms) if self._integrated else None


# --- Market sensors (slot clock) ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PeerEnergyMarketSensorDescription(SensorEntityDescription):
    """A market sensor of the home device, read from the slot clock."""

    value_fn: Callable[[SlotClock], StateType]
    available_fn: Callable[[SlotClock], bool] = lambda _clock: True
    attrs_fn: Callable[[SlotClock], dict[str, Any]] | None = None
    # Unit from the entry's currency ("{currency}" is replaced), for prices and credit.
    currency_unit: str | None = None
    # MarketTotals field this sensor shows and restores across restarts.
    total: str | None = None


def _report_attrs(report: SlotReport | None, clock: SlotClock) -> dict[str, Any]:
    """The slot's outcome: prices, flags and this home's energy with neighbours.

    ``clean_only``: this home's buy order accepted clean energy only (the owner's option),
    so all of ``bought_from_peers_wh`` is clean (the market matches it with clean offers).
    """
    if report is None:
        return {}
    currency = clock.currency
    plan = clock.plans.get(report.slot_start)
    order = None if plan is None else plan.order
    return {
        "slot_start": utc_from_ts(report.slot_start).isoformat(),
        "clean_price": price_to_major(report.clean_price, currency),
        "own_price": price_to_major(report.own_price, currency),
        "price_minor": report.price,
        "local": report.local,
        "void": report.void,
        "void_reason": report.void_reason,
        "bought_from_peers_wh": report.bought_wh,
        "sold_to_peers_wh": report.sold_wh,
        "clean_only": order is not None and order.clean_only,
    }


def _price(report: SlotReport | None, clock: SlotClock) -> float | None:
    return None if report is None else price_to_major(report.price, clock.currency)


def _ledger(clock: SlotClock) -> PeerLedger | None:
    return clock.runtime.ledger


def _own_reputation(clock: SlotClock) -> float | None:
    """This home's reputation as its peers report it (permille shown as percent)."""
    value = getattr(clock.federation, "own_reputation", None)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value / 10


def _reputation_attrs(clock: SlotClock) -> dict[str, Any]:
    """``status``: "not_rated" until there is evidence about this home (the state is then
    unknown), "rated" after; ``peers``: this home's score of each neighbour (percent),
    keyed by a short member id; ``peers_status``: every neighbour's score in words
    (``not_rated`` before any evidence about it; the reputation status sensor's words)."""
    federation = clock.federation
    if federation is None:
        return {}
    attrs: dict[str, Any] = {
        "status": "not_rated" if _own_reputation(clock) is None else "rated",
    }
    scores = getattr(federation, "reputations", None)
    me = getattr(federation, "member_key", None)
    if isinstance(scores, dict):
        attrs["peers"] = {
            short(member): value / 10 for member, value in sorted(scores.items()) if member != me
        }
        attrs["peers_status"] = {
            short(member): reputation_status(scores.get(member))
            for member in getattr(federation, "neighbours", ())
            if member != me
        }
    return attrs


def _reputation_status(clock: SlotClock) -> StateType:
    if clock.federation is None:
        return None
    value = getattr(clock.federation, "own_reputation", None)
    if isinstance(value, bool) or not isinstance(value, int):
        value = None
    return reputation_status(value)


MARKET_SENSORS: tuple[PeerEnergyMarketSensorDescription, ...] = (
    PeerEnergyMarketSensorDescription(
        key="clearing_price",
        translation_key="clearing_price",
        state_class=SensorStateClass.MEASUREMENT,
        currency_unit="{currency}/kWh",
        suggested_display_precision=3,
        value_fn=lambda clock: _price(clock.current, clock),
        attrs_fn=lambda clock: _report_attrs(clock.current, clock),
    ),
    PeerEnergyMarketSensorDescription(
        key="next_clearing_price",
        translation_key="next_clearing_price",
        currency_unit="{currency}/kWh",
        suggested_display_precision=3,
        value_fn=lambda clock: _price(clock.next, clock),
        attrs_fn=lambda clock: _report_attrs(clock.next, clock),
    ),
    PeerEnergyMarketSensorDescription(
        key="net_position",
        translation_key="net_position",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_display_precision=0,
        value_fn=lambda clock: None if clock.current is None else clock.current.position_wh,
        attrs_fn=lambda clock: {}
        if clock.current is None
        else {
            "slot_start": utc_from_ts(clock.current.slot_start).isoformat(),
            "bought_from_peers_wh": clock.current.bought_wh,
            "sold_to_peers_wh": clock.current.sold_wh,
        },
    ),
    PeerEnergyMarketSensorDescription(
        key="energy_bought_peers",
        translation_key="energy_bought_peers",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=lambda clock: clock.totals.bought_wh / 1000,
        total="bought_wh",
    ),
    PeerEnergyMarketSensorDescription(
        key="energy_sold_peers",
        translation_key="energy_sold_peers",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=lambda clock: clock.totals.sold_wh / 1000,
        total="sold_wh",
    ),
    PeerEnergyMarketSensorDescription(
        key="credit_balance",
        translation_key="credit_balance",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        currency_unit="{currency}",
        suggested_display_precision=2,
        available_fn=lambda clock: _ledger(clock) is not None,
        value_fn=lambda clock: None
        if (ledger := _ledger(clock)) is None
        else major_to_milli_amount(int(ledger.balance()), clock.currency),
        attrs_fn=lambda clock: {}
        if (ledger := _ledger(clock)) is None
        else {
            "balance_mmu": int(ledger.balance()),
            "credit_limit": major_to_milli_amount(int(ledger.credit_limit()), clock.currency),
        },
    ),
    PeerEnergyMarketSensorDescription(
        key="credit_earned",
        translation_key="credit_earned",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        currency_unit="{currency}",
        suggested_display_precision=2,
        value_fn=lambda clock: major_to_milli_amount(clock.totals.earned_milli, clock.currency),
        total="earned_milli",
    ),
    PeerEnergyMarketSensorDescription(
        key="credit_spent",
        translation_key="credit_spent",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        currency_unit="{currency}",
        suggested_display_precision=2,
        value_fn=lambda clock: major_to_milli_amount(clock.totals.spent_milli, clock.currency),
        total="spent_milli",
    ),
    PeerEnergyMarketSensorDescription(
        key="reputation",
        translation_key="reputation",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        # In a community: unknown (not rated yet) until there is evidence about this home.
        available_fn=lambda clock: clock.federation is not None,
        value_fn=_own_reputation,
        attrs_fn=_reputation_attrs,
    ),
    PeerEnergyMarketSensorDescription(
        key="reputation_status",
        translation_key="reputation_status",
        device_class=SensorDeviceClass.ENUM,
        options=list(REPUTATION_STATUSES),
        # In a community: "not_rated" (a state, not unknown) until there is evidence.
        available_fn=lambda clock: clock.federation is not None,
        value_fn=_reputation_status,
    ),
    PeerEnergyMarketSensorDescription(
        key="peers_online",
        translation_key="peers_online",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        available_fn=lambda clock: clock.federation is not None,
        value_fn=lambda clock: None
        if (federation := clock.federation) is None
        else int(federation.peers_online),
        attrs_fn=lambda clock: {}
        if (federation := clock.federation) is None
        else {"members": int(federation.members)},
    ),
)


def _unreachable(clock: SlotClock) -> tuple[str, ...]:
    federation = clock.federation
    members = getattr(federation, "unreachable_members", ())
    return tuple(members) if isinstance(members, tuple) else ()


def _unreachable_attrs(clock: SlotClock) -> dict[str, Any]:
    """The unreachable neighbours by the names they chose, by short member id without one."""
    if clock.federation is None:
        return {}
    names = getattr(clock.federation, "member_names", {})
    names = names if isinstance(names, dict) else {}
    return {"neighbours": [names.get(m) or short(m) for m in _unreachable(clock)]}


# A neighbour's outage is not for this user to fix: a diagnostic sensor, not a repair.
UNREACHABLE_SENSOR = PeerEnergyMarketSensorDescription(
    key="unreachable_neighbours",
    translation_key="unreachable_neighbours",
    state_class=SensorStateClass.MEASUREMENT,
    entity_category=EntityCategory.DIAGNOSTIC,
    available_fn=lambda clock: clock.federation is not None,
    value_fn=lambda clock: None if clock.federation is None else len(_unreachable(clock)),
    attrs_fn=_unreachable_attrs,
)


@dataclass(frozen=True, slots=True)
class MarketTotalStoredData(ExtraStoredData):
    """An exact market total (Wh or milli-minor units)."""

    value: int

    def as_dict(self) -> dict[str, Any]:
        """Return a dict for the restore cache."""
        return {"value": self.value}


class PeerEnergyMarketSensor(PeerEnergyMarketEntity, SensorEntity, RestoreEntity):
    """A market value of the home from the slot clock; totals survive restarts."""

    entity_description: PeerEnergyMarketSensorDescription
    # Attributes that change every slot stay out of the recorder's history (the state
    # and the slot outcomes in the market view carry them).
    _unrecorded_attributes = frozenset(
        {
            "slot_start",
            "clean_price",
            "own_price",
            "price_minor",
            "local",
            "void",
            "void_reason",
            "bought_from_peers_wh",
            "sold_to_peers_wh",
            "clean_only",
            "balance_mmu",
        }
    )

    def __init__(
        self,
        coordinator: PeerEnergyCoordinator,
        description: PeerEnergyMarketSensorDescription,
    ) -> None:
        """Set the unit from the entry's currency where it has one."""
        super().__init__(coordinator, description)
        if description.currency_unit is not None:
            self._attr_native_unit_of_measurement = description.currency_unit.format(
                currency=self.market.currency
            )

    async def async_added_to_hass(self) -> None:
        """Give the slot clock the total stored before the restart."""
        await super().async_added_to_hass()
        name = self.entity_description.total
        if name is None:
            return
        if (extra := await self.async_get_last_extra_data()) is not None:
            value = extra.as_dict().get("value")
            if isinstance(value, int) and not isinstance(value, bool):
                self.market.restore_total(name, value)

    @property
    def extra_restore_state_data(self) -> ExtraStoredData | None:
        """Store the exact total (nothing for other market sensors)."""
        name = self.entity_description.total
        if name is None:
            return None
        return MarketTotalStoredData(int(getattr(self.market.totals, name)))

    @property
    def available(self) -> bool:
        """Unavailable while the value's source (ledger, federation) is missing."""
        return self.entity_description.available_fn(self.market)

    @property
    def native_value(self) -> StateType:
        """Return the value from the slot clock."""
        return self.entity_description.value_fn(self.market)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Context of the value (slot, flags) where the description has some."""
        if self.entity_description.attrs_fn is None:
            return None
        return self.entity_description.attrs_fn(self.market)


class PeerEnergyUnreachableSensor(PeerEnergyMarketSensor):
    """How many neighbours are unreachable now (their names in ``neighbours``), written
    as soon as the federation reports a change (not only at the next slot)."""

    async def async_added_to_hass(self) -> None:
        """Follow the federation's reachability signal as well as the slot clock."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass,
                f"{SIGNAL_REACHABILITY}_{self.coordinator.config_entry.entry_id}",
                self._handle_market_update,
            )
        )


# --- The home's plan (the planner's next day) ----------------------------------------------


def _plan_value(clock: SlotClock) -> StateType:
    """The next slot's planned grid energy (Wh): import minus export."""
    plan = clock.next_plan
    if plan is None or plan.plan is None or not plan.plan.slots:
        return None
    first = plan.plan.slots[0]
    return first.import_wh - first.export_wh


def _plan_attrs(clock: SlotClock) -> dict[str, Any]:
    """The plan of the next day as columns, one value per slot (not recorded)."""
    plan = clock.next_plan
    if plan is None:
        return {}
    attrs: dict[str, Any] = {
        "slot_start": utc_from_ts(plan.slot_start).isoformat(),
        "fallback": plan.fallback,
        "currency": clock.currency,
    }
    if plan.plan is not None:
        attrs |= plan_columns(plan.plan)
    return attrs


PLAN_SENSOR = PeerEnergyMarketSensorDescription(
    key="plan",
    translation_key="plan",
    device_class=SensorDeviceClass.ENERGY,
    native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
    suggested_display_precision=0,
    value_fn=_plan_value,
    attrs_fn=_plan_attrs,
)


PLAN_SENSORS = (PLAN_SENSOR,)


class PeerEnergyPlanSensor(PeerEnergyMarketSensor):
    """The next slot's planned grid energy, with the plan of the next day as attributes.

    The plan is replaced every slot and is large: its attributes are not recorded.
    """

    _unrecorded_attributes = frozenset(
        {"slot_start", "fallback", "currency", "mode", "slot_seconds", "margin_wh", *PLAN_COLUMNS}
    )


@dataclass(frozen=True, kw_only=True)
class PeerEnergyAssetMarketSensorDescription(SensorEntityDescription):
    """A market sensor of an asset device: its order, allocation or reason."""

    value_fn: Callable[[SlotClock, str], StateType]
    attrs_fn: Callable[[SlotClock, str], dict[str, Any]]


def _order_value(clock: SlotClock, sid: str) -> StateType:
    plan = clock.next_plan
    asset = None if plan is None else plan.assets.get(sid)
    return None if asset is None else asset.signed_wh


def _order_attrs(clock: SlotClock, sid: str) -> dict[str, Any]:
    plan = clock.next_plan
    asset = None if plan is None else plan.assets.get(sid)
    if plan is None or asset is None:
        return {}
    return {
        "slot_start": utc_from_ts(plan.slot_start).isoformat(),
        "bids": [
            {
                "side": bid.side.value,
                "steps": [[step.price, step.energy_wh] for step in bid.steps],
                "clean": bid.clean,
                "reason": bid.reason.code,
            }
            for bid in asset.bids
        ],
        "reason": asset.reason.code,
        **dict(asset.reason.params),
    }


def _allocation_value(clock: SlotClock, sid: str) -> StateType:
    report = clock.current
    if report is None:
        return None
    alloc = report.allocations.get(sid)
    return 0 if alloc is None else alloc.energy_wh


def _allocation_attrs(clock: SlotClock, sid: str) -> dict[str, Any]:
    report = clock.current
    if report is None:
        return {}
    alloc = report.allocations.get(sid)
    attrs: dict[str, Any] = {"slot_start": utc_from_ts(report.slot_start).isoformat()}
    if alloc is not None:
        attrs |= {
            "market_wh": alloc.market_wh,
            "internal_wh": alloc.internal_wh,
            "grid_wh": alloc.grid_wh,
        }
    actions = clock.actions.get(sid, ()) if clock.actions_slot == report.slot_start else ()
    attrs["control_mode"] = clock.control_mode.value
    attrs["actions"] = [action.describe() for action in actions if action.applied]
    attrs["advice"] = [action.describe() for action in actions if not action.applied]
    return attrs


def _current_reason(clock: SlotClock, sid: str) -> tuple[str, dict[str, int | str]] | None:
    """The reason of the running slot, else (before the first outcome) of the next plan."""
    if (report := clock.current) is not None and (reason := report.reasons.get(sid)):
        return reason.code, dict(reason.params)
    plan = clock.next_plan
    if plan is not None and (asset := plan.assets.get(sid)) is not None:
        return asset.reason.code, dict(asset.reason.params)
    return None


def _reason_value(clock: SlotClock, sid: str) -> StateType:
    found = _current_reason(clock, sid)
    if found is None:
        return None
    return found[0] if found[0] in REASON_CODES else SitOut.OTHER.value


def _reason_attrs(clock: SlotClock, sid: str) -> dict[str, Any]:
    found = _current_reason(clock, sid)
    if found is None:
        return {}
    code, params = found
    return {"code": code, **params}


ASSET_MARKET_SENSORS: tuple[PeerEnergyAssetMarketSensorDescription, ...] = (
    PeerEnergyAssetMarketSensorDescription(
        key="market_order",
        translation_key="market_order",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_display_precision=0,
        value_fn=_order_value,
        attrs_fn=_order_attrs,
    ),
    PeerEnergyAssetMarketSensorDescription(
        key="allocation",
        translation_key="allocation",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_display_precision=0,
        value_fn=_allocation_value,
        attrs_fn=_allocation_attrs,
    ),
    PeerEnergyAssetMarketSensorDescription(
        key="market_reason",
        translation_key="market_reason",
        device_class=SensorDeviceClass.ENUM,
        options=list(REASON_CODES),
        value_fn=_reason_value,
        attrs_fn=_reason_attrs,
    ),
)


class PeerEnergyAssetMarketSensor(PeerEnergyMarketEntity, SensorEntity):
    """An asset's order for the next slot, its allocation now, or the reason for it."""

    entity_description: PeerEnergyAssetMarketSensorDescription
    asset: AssetConfig
    # Every attribute (slot, steps, energy split, actions, reason parameters) changes every
    # slot: none is recorded, so the history keeps the states only.
    _unrecorded_attributes = frozenset({MATCH_ALL})

    def __init__(
        self,
        coordinator: PeerEnergyCoordinator,
        description: PeerEnergyAssetMarketSensorDescription,
        asset: AssetConfig,
    ) -> None:
        """Bind the description to one asset."""
        super().__init__(coordinator, description, asset)

    @property
    def native_value(self) -> StateType:
        """Return the value for this asset."""
        return self.entity_description.value_fn(self.market, self.asset.subentry_id)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Slot, steps, energy split, actions or reason parameters."""
        return self.entity_description.attrs_fn(self.market, self.asset.subentry_id)


# --- Savings versus not trading, and prices for the Energy dashboard ----------------------


@dataclass(frozen=True, kw_only=True)
class PeerEnergySavingsSensorDescription(SensorEntityDescription):
    """A saving of the home versus not trading (savings.py), in milli-minor units."""

    value_fn: Callable[[SavingsTracker], int]
    # Start of the period the value counts from (None: since the home started trading).
    last_reset_fn: Callable[[datetime], datetime] | None = None


def _start_of_day(now: datetime) -> datetime:
    return dt_util.start_of_local_day(now)


def _start_of_month(now: datetime) -> datetime:
    return dt_util.start_of_local_day(dt_util.as_local(now).replace(day=1))


SAVINGS_SENSORS: tuple[PeerEnergySavingsSensorDescription, ...] = (
    PeerEnergySavingsSensorDescription(
        key="savings_today",
        translation_key="savings_today",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda savings: savings.today_milli(),
        last_reset_fn=_start_of_day,
    ),
    PeerEnergySavingsSensorDescription(
        key="savings_month",
        translation_key="savings_month",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda savings: savings.month_milli(),
        last_reset_fn=_start_of_month,
    ),
    PeerEnergySavingsSensorDescription(
        key="savings_total",
        translation_key="savings_total",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda savings: savings.total_milli,
    ),
)


class PeerEnergySavingsSensor(PeerEnergyMarketEntity, SensorEntity):
    """Money saved versus trading with the grid alone (today, this month, in total)."""

    entity_description: PeerEnergySavingsSensorDescription
    _unrecorded_attributes = frozenset({"saving_mmu"})

    def __init__(
        self,
        coordinator: PeerEnergyCoordinator,
        description: PeerEnergySavingsSensorDescription,
    ) -> None:
        """Show the saving in the entry's currency."""
        super().__init__(coordinator, description)
        self._attr_native_unit_of_measurement = self.market.currency

    @property
    def savings(self) -> SavingsTracker:
        """The entry's savings tracker."""
        return self.runtime.savings

    async def async_added_to_hass(self) -> None:
        """Follow the tracker too (the slot clock's updates cover the day's change)."""
        await super().async_added_to_hass()
        self.async_on_remove(self.savings.async_add_listener(self._handle_market_update))

    @property
    def native_value(self) -> float:
        """The saving in major currency units (kept exactly in the tracker)."""
        milli = self.entity_description.value_fn(self.savings)
        return major_to_milli_amount(milli, self.market.currency)

    @property
    def last_reset(self) -> datetime | None:
        """Start of today or of this month; None for the total."""
        if (reset_fn := self.entity_description.last_reset_fn) is None:
            return None
        return reset_fn(dt_util.utcnow())

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """The exact value (milli-minor units) and since when the home counts."""
        return {
            "saving_mmu": self.entity_description.value_fn(self.savings),
            "counting_since": self.savings.since,
        }


def _effective_price(clock: SlotClock, direction: Literal["import", "export"]) -> float | None:
    """This slot's price per kWh of grid-meter energy, neighbours' trades included.

    The Energy dashboard multiplies the grid meter's energy by this price: the part of the
    slot's expected import (export) bought from (sold to) neighbours at the traded price,
    the rest at the grid's import price (feed-in tariff).
    """
    slot = clock.slot_now()
    report = clock.reports.get(slot)
    plan = clock.plans.get(slot)
    if plan is not None:
        import_price, feed_in = plan.import_price, plan.feed_in_tariff
    elif (prices := clock.grid_prices()) is not None:
        import_price, feed_in = prices
    else:
        return None
    if direction == "import":
        grid, traded, milli = import_price, 0, 0
        if report is not None:
            traded, milli = report.bought_wh, report.paid_milli
        expected = 0 if report is None else max(report.position_wh, 0)
    else:
        grid, traded, milli = feed_in, 0, 0
        if report is not None:
            traded, milli = report.sold_wh, report.received_milli
        expected = 0 if report is None else max(-report.position_wh, 0)
    if traded <= 0:
        return price_to_major(grid, clock.currency)
    energy = max(expected, traded)
    total_milli = milli + (energy - traded) * grid
    return float(total_milli / energy / 10 ** minor_digits(clock.currency))


PRICE_SENSORS: tuple[PeerEnergyMarketSensorDescription, ...] = (
    PeerEnergyMarketSensorDescription(
        key="import_price_with_peers",
        translation_key="import_price_with_peers",
        state_class=SensorStateClass.MEASUREMENT,
        currency_unit="{currency}/kWh",
        suggested_display_precision=4,
        value_fn=lambda clock: _effective_price(clock, "import"),
    ),
    PeerEnergyMarketSensorDescription(
        key="export_price_with_peers",
        translation_key="export_price_with_peers",
        state_class=SensorStateClass.MEASUREMENT,
        currency_unit="{currency}/kWh",
        suggested_display_precision=4,
        value_fn=lambda clock: _effective_price(clock, "export"),
    ),
)
