"""Sensors: each asset's live power, energy and state of charge; home-level grid values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, UnitOfEnergy, UnitOfPower
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import ExtraStoredData, RestoreEntity
from homeassistant.helpers.typing import StateType

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
from .entity import PeerEnergyEntity
from .runtime import PeerEnergyConfigEntry

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
    async_add_entities(home)
    for subentry_id, asset in entry.runtime_data.assets.items():
        async_add_entities(
            (
                PeerEnergyAssetSensor(coordinator, description, asset)
                for description in ASSET_SENSORS
                if description.exists_fn(asset)
            ),
            config_subentry_id=subentry_id,
        )


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
