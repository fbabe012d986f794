"""Push coordinator: mirrors the user's source entities in standard units.

The coordinator listens to state changes of the entities each asset subentry maps
(``async_track_state_change_event``; no polling) and turns them into plain, typed
readings: power in integer W, energy in integer Wh, state of charge in percent.
It also derives the home-level values (net grid power, PV surplus available and
grid import/export energy totals). It holds no market logic.

Sign conventions of the readings:
- PV, EV charger, plug: the source value as is (production for PV, consumption for loads).
- Battery: positive means discharging (power delivered to the home), negative charging;
  sources that report the other way round (``PowerSign.POSITIVE_CHARGE``) are negated.
- Grid meter and net grid power: positive means importing from the grid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
import math
from typing import TYPE_CHECKING, Any, Final, Literal

from homeassistant.const import (
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    UnitOfEnergy,
    UnitOfPower,
)
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.helpers.event import (
    async_track_state_change_event,
    async_track_time_interval,
)
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import EnergyConverter, PowerConverter

from .const import (
    CONF_ASSET_KIND,
    CONF_ASSET_NAME,
    CONF_CAPACITY_KWH,
    CONF_CURRENT_ENTITY,
    CONF_ENERGY_ENTITY,
    CONF_EXPORT_ENERGY_ENTITY,
    CONF_IMPORT_ENERGY_ENTITY,
    CONF_MAX_CHARGE_W,
    CONF_MAX_DISCHARGE_W,
    CONF_MODE_ENTITY,
    CONF_PLUGGED_ENTITY,
    CONF_POWER_ENTITY,
    CONF_POWER_SIGN,
    CONF_SETPOINT_ENTITY,
    CONF_SOC_ENTITY,
    CONF_SWITCH_ENTITY,
    DOMAIN,
    LOGGER,
    SUBENTRY_ASSET,
    AssetKind,
    PowerSign,
)

if TYPE_CHECKING:
    from homeassistant.config_entries import ConfigEntry, ConfigSubentry

# Every subentry key that names a source entity. All of them are watched for the
# "source entity disappeared" repair; the readings use a subset.
SOURCE_KEYS: Final = (
    CONF_POWER_ENTITY,
    CONF_ENERGY_ENTITY,
    CONF_SOC_ENTITY,
    CONF_PLUGGED_ENTITY,
    CONF_SWITCH_ENTITY,
    CONF_CURRENT_ENTITY,
    CONF_MODE_ENTITY,
    CONF_SETPOINT_ENTITY,
    CONF_IMPORT_ENERGY_ENTITY,
    CONF_EXPORT_ENERGY_ENTITY,
)

# How often integrated grid energy is brought up to date while the power is steady.
INTEGRATION_INTERVAL: Final = timedelta(seconds=30)
# Energy accumulators count watt-milliseconds, an exact integer unit: 1 Wh = 3_600_000 W·ms.
WMS_PER_WH: Final = 3_600_000

type GridSource = Literal["grid_meter", "assets"]


class UnknownAssetKindError(ValueError):
    """A subentry names an asset kind this version does not know."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetConfig:
    """One asset subentry, parsed into typed settings."""

    subentry_id: str
    kind: AssetKind
    name: str
    sources: Mapping[str, str]
    power_sign: PowerSign = PowerSign.POSITIVE_DISCHARGE
    capacity_wh: int | None = None
    max_charge_w: int | None = None
    max_discharge_w: int | None = None

    @classmethod
    def from_subentry(cls, subentry: ConfigSubentry) -> AssetConfig:
        """Parse an asset subentry; raise UnknownAssetKindError for a foreign kind."""
        data = subentry.data
        try:
            kind = AssetKind(str(data.get(CONF_ASSET_KIND)))
        except ValueError as err:
            raise UnknownAssetKindError(str(data.get(CONF_ASSET_KIND))) from err
        try:
            sign = PowerSign(data.get(CONF_POWER_SIGN, PowerSign.POSITIVE_DISCHARGE))
        except ValueError:
            sign = PowerSign.POSITIVE_DISCHARGE
        capacity = _optional_number(data.get(CONF_CAPACITY_KWH))
        max_charge = _optional_number(data.get(CONF_MAX_CHARGE_W))
        max_discharge = _optional_number(data.get(CONF_MAX_DISCHARGE_W))
        return cls(
            subentry_id=subentry.subentry_id,
            kind=kind,
            name=str(data.get(CONF_ASSET_NAME) or subentry.title),
            sources={
                key: value
                for key in SOURCE_KEYS
                if isinstance(value := data.get(key), str) and value
            },
            power_sign=sign,
            capacity_wh=None if capacity is None else round(capacity * 1000),
            max_charge_w=None if max_charge is None else round(max_charge),
            max_discharge_w=None if max_discharge is None else round(max_discharge),
        )


def assets_from_entry(entry: ConfigEntry[Any]) -> dict[str, AssetConfig]:
    """Parse all asset subentries of an entry, in the entry's order."""
    return {
        subentry_id: AssetConfig.from_subentry(subentry)
        for subentry_id, subentry in entry.subentries.items()
        if subentry.subentry_type == SUBENTRY_ASSET
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetReading:
    """Readings of one asset in standard units; None means unavailable or not mapped."""

    power_w: int | None = None
    energy_wh: int | None = None
    soc_pct: float | None = None
    plugged: bool | None = None
    switch_on: bool | None = None
    import_energy_wh: int | None = None
    export_energy_wh: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerEnergyData:
    """One consistent snapshot of the home, published to the entities."""

    assets: Mapping[str, AssetReading] = field(default_factory=dict)
    grid_power_w: int | None = None
    grid_source: GridSource | None = None
    pv_surplus_w: int | None = None
    grid_import_wh: int | None = None
    grid_export_wh: int | None = None


# --- Conversions of a source state to standard units -------------------------------------


def _optional_number(value: object) -> float | None:
    """Return a finite float from a config value, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def state_number(state: State | None) -> float | None:
    """Return the finite numeric value of a state, or None when it has none."""
    if state is None or state.state in (STATE_UNAVAILABLE, STATE_UNKNOWN):
        return None
    return _optional_number(state.state)


def power_w(state: State | None) -> int | None:
    """Return a power state in integer W (a missing unit is taken as W)."""
    value = state_number(state)
    if value is None or state is None:
        return None
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) or UnitOfPower.WATT
    if unit not in PowerConverter.VALID_UNITS:
        return None
    return round(PowerConverter.convert(value, unit, UnitOfPower.WATT))


def energy_wh(state: State | None) -> int | None:
    """Return a (non-negative) energy total in integer Wh (a missing unit is taken as kWh)."""
    value = state_number(state)
    if value is None or state is None or value < 0:
        return None
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) or UnitOfEnergy.KILO_WATT_HOUR
    if unit not in EnergyConverter.VALID_UNITS:
        return None
    return round(EnergyConverter.convert(value, unit, UnitOfEnergy.WATT_HOUR))


def soc_pct(state: State | None) -> float | None:
    """Return a state of charge in percent, or None outside 0..100."""
    value = state_number(state)
    if value is None or not 0 <= value <= 100:
        return None
    return value


def on_off(state: State | None) -> bool | None:
    """Return True/False for an on/off state (binary sensor, switch), else None."""
    if state is None:
        return None
    if state.state == STATE_ON:
        return True
    if state.state == STATE_OFF:
        return False
    return None


def read_asset(hass: HomeAssistant, asset: AssetConfig) -> AssetReading:
    """Read one asset's mapped sources from the state machine."""

    def get(key: str) -> State | None:
        entity_id = asset.sources.get(key)
        return None if entity_id is None else hass.states.get(entity_id)

    power = power_w(get(CONF_POWER_ENTITY))
    if (
        power is not None
        and asset.kind is AssetKind.BATTERY
        and asset.power_sign is PowerSign.POSITIVE_CHARGE
    ):
        power = -power
    return AssetReading(
        power_w=power,
        energy_wh=energy_wh(get(CONF_ENERGY_ENTITY)),
        soc_pct=soc_pct(get(CONF_SOC_ENTITY)),
        plugged=on_off(get(CONF_PLUGGED_ENTITY)),
        switch_on=on_off(get(CONF_SWITCH_ENTITY)),
        import_energy_wh=energy_wh(get(CONF_IMPORT_ENERGY_ENTITY)),
        export_energy_wh=energy_wh(get(CONF_EXPORT_ENERGY_ENTITY)),
    )


def _sum_power(
    assets: Mapping[str, AssetConfig],
    readings: Mapping[str, AssetReading],
    kinds: tuple[AssetKind, ...],
) -> tuple[int, bool] | None:
    """Sum the power of all assets of the given kinds.

    Return (total, any_asset) or None when one of them is unavailable.
    """
    total = 0
    found = False
    for subentry_id, asset in assets.items():
        if asset.kind not in kinds:
            continue
        found = True
        power = readings[subentry_id].power_w
        if power is None:
            return None
        total += max(power, 0) if asset.kind is AssetKind.PV else power
    return total, found


def derive_home(
    assets: Mapping[str, AssetConfig], readings: Mapping[str, AssetReading]
) -> tuple[int | None, GridSource | None, int | None]:
    """Derive (net grid power W, its source, PV surplus W) from the asset readings.

    Net grid power comes from the first grid meter when there is one. Without a grid
    meter it is estimated from the metered assets as loads (EV chargers, plugs) minus
    PV production minus battery discharge; household load that no asset meters is not
    included, so it is a lower bound of import (documented in docs/entities.md).

    PV surplus is the PV power the home does not use itself: what goes to the grid
    plus what charges the battery, capped at PV production and never negative.
    """
    meters = [sid for sid, asset in assets.items() if asset.kind is AssetKind.GRID_METER]
    pv = _sum_power(assets, readings, (AssetKind.PV,))
    battery = _sum_power(assets, readings, (AssetKind.BATTERY,))
    grid: int | None
    source: GridSource | None
    if meters:
        grid, source = readings[meters[0]].power_w, "grid_meter"
    else:
        loads = _sum_power(assets, readings, (AssetKind.EV_CHARGER, AssetKind.PLUG))
        if pv is None or battery is None or loads is None:
            grid, source = None, "assets"
        elif not (pv[1] or battery[1] or loads[1]):
            grid, source = None, None
        else:
            grid, source = loads[0] - pv[0] - battery[0], "assets"
    surplus: int | None = None
    if pv is not None and pv[1] and battery is not None and grid is not None:
        surplus = min(max(-grid - battery[0], 0), pv[0])
    return grid, source, surplus


class EnergyIntegrator:
    """Integrates a signed power into import and export energy (left Riemann sum).

    Counts in exact integer watt-milliseconds. A value holds until the next one; an
    unavailable value stops the integration until a value comes back, so an outage
    (or Home Assistant being down) adds nothing.
    """

    def __init__(self) -> None:
        """Start at zero with no value."""
        self.import_wms = 0
        self.export_wms = 0
        self._last_power: int | None = None
        self._last_time: datetime | None = None

    def update(self, power: int | None, now: datetime) -> None:
        """Close the interval since the last update and start one with ``power``."""
        if self._last_power is not None and self._last_time is not None:
            elapsed_ms = max(0, round((now - self._last_time).total_seconds() * 1000))
            amount = self._last_power * elapsed_ms
            if amount > 0:
                self.import_wms += amount
            else:
                self.export_wms -= amount
        self._last_power = power
        self._last_time = now

    @property
    def import_wh(self) -> int:
        """Imported energy in whole Wh."""
        return self.import_wms // WMS_PER_WH

    @property
    def export_wh(self) -> int:
        """Exported energy in whole Wh."""
        return self.export_wms // WMS_PER_WH


class PeerEnergyCoordinator(DataUpdateCoordinator[PeerEnergyData]):
    """Mirrors the mapped source entities; pushes a new snapshot on every change."""

    config_entry: ConfigEntry[Any]

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry[Any],
        assets: Mapping[str, AssetConfig],
    ) -> None:
        """Set up a coordinator for the entry's assets (no polling)."""
        super().__init__(hass, LOGGER, config_entry=entry, name=DOMAIN, update_interval=None)
        self.assets = assets
        self.integrator = EnergyIntegrator()
        self._restored: set[str] = set()
        self._unsubscribers: list[Callable[[], None]] = []
        self._was_available: dict[str, bool] = {}

    @property
    def tracked_entity_ids(self) -> set[str]:
        """All source entity ids the coordinator watches."""
        return {entity_id for asset in self.assets.values() for entity_id in asset.sources.values()}

    @property
    def has_grid_meter(self) -> bool:
        """Whether one of the assets is a grid meter."""
        return self._grid_meter is not None

    @property
    def integrates_import(self) -> bool:
        """Whether grid import energy is integrated here (no import meter entity)."""
        meter = self._grid_meter
        return meter is not None and CONF_IMPORT_ENERGY_ENTITY not in meter.sources

    @property
    def integrates_export(self) -> bool:
        """Whether grid export energy is integrated here (no export meter entity)."""
        meter = self._grid_meter
        return meter is not None and CONF_EXPORT_ENERGY_ENTITY not in meter.sources

    @property
    def _grid_meter(self) -> AssetConfig | None:
        return next(
            (asset for asset in self.assets.values() if asset.kind is AssetKind.GRID_METER),
            None,
        )

    @callback
    def async_start(self) -> None:
        """Subscribe to the source entities and the integration tick."""
        if entity_ids := self.tracked_entity_ids:
            self._unsubscribers.append(
                async_track_state_change_event(self.hass, entity_ids, self._async_source_changed)
            )
        if self.integrates_import or self.integrates_export:
            self._unsubscribers.append(
                async_track_time_interval(self.hass, self._async_tick, INTEGRATION_INTERVAL)
            )

    @callback
    def async_stop(self) -> None:
        """Drop every subscription (called on unload)."""
        while self._unsubscribers:
            self._unsubscribers.pop()()

    @callback
    def restore_total(self, direction: Literal["import", "export"], wms: int) -> None:
        """Add a restored energy total (once per direction) to the integrator."""
        if direction in self._restored or wms < 0:
            return
        self._restored.add(direction)
        if direction == "import":
            self.integrator.import_wms += wms
        else:
            self.integrator.export_wms += wms
        self.async_set_updated_data(self._snapshot(update_integrator=False))

    @callback
    def async_update_now(self) -> PeerEnergyData:
        """Read every source now (closing the integration interval) and publish it."""
        self.async_set_updated_data(self._snapshot())
        return self.data

    async def _async_update_data(self) -> PeerEnergyData:
        """Read everything once (first refresh); later updates are pushed."""
        return self._snapshot()

    @callback
    def _async_source_changed(self, event: Event[EventStateChangedData]) -> None:
        self.async_set_updated_data(self._snapshot())

    @callback
    def _async_tick(self, now: datetime) -> None:
        self.async_set_updated_data(self._snapshot())

    def _snapshot(self, *, update_integrator: bool = True) -> PeerEnergyData:
        readings = {sid: read_asset(self.hass, asset) for sid, asset in self.assets.items()}
        self._log_availability(readings)
        grid, source, surplus = derive_home(self.assets, readings)
        meter = self._grid_meter
        grid_import = grid_export = None
        if meter is not None:
            if update_integrator:
                self.integrator.update(grid, dt_util.utcnow())
            reading = readings[meter.subentry_id]
            grid_import = (
                self.integrator.import_wh if self.integrates_import else reading.import_energy_wh
            )
            grid_export = (
                self.integrator.export_wh if self.integrates_export else reading.export_energy_wh
            )
        return PeerEnergyData(
            assets=readings,
            grid_power_w=grid,
            grid_source=source,
            pv_surplus_w=surplus,
            grid_import_wh=grid_import,
            grid_export_wh=grid_export,
        )

    def _log_availability(self, readings: Mapping[str, AssetReading]) -> None:
        """Log once when an asset's power goes unavailable and once when it is back."""
        for subentry_id, reading in readings.items():
            asset = self.assets[subentry_id]
            if CONF_POWER_ENTITY not in asset.sources:
                continue
            available = reading.power_w is not None
            before = self._was_available.get(subentry_id)
            self._was_available[subentry_id] = available
            if before is None or before == available:
                continue
            if available:
                LOGGER.info("Power source of asset %s is available again", asset.name)
            else:
                LOGGER.info("Power source of asset %s is unavailable", asset.name)
