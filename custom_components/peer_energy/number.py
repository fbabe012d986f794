"""Numbers: the owner's per-asset settings (battery reserve, EV energy needed, plug delay).

Their values live in the runtime (``entry.runtime_data.controls``) in exact integer
units and survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from homeassistant.components.number import (
    NumberDeviceClass,
    NumberEntityDescription,
    NumberMode,
    RestoreNumber,
)
from homeassistant.const import PERCENTAGE, EntityCategory, UnitOfEnergy, UnitOfTime
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import AssetKind
from .entity import ControlFns, PeerEnergyControlEntity, async_add_controls
from .runtime import PeerEnergyConfigEntry

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class PeerEnergyNumberDescription(NumberEntityDescription, ControlFns[float]):
    """A control number of an asset."""


NUMBERS: tuple[PeerEnergyNumberDescription, ...] = (
    PeerEnergyNumberDescription(
        key="reserve_soc",
        translation_key="battery_reserve",
        entity_category=EntityCategory.CONFIG,
        native_unit_of_measurement=PERCENTAGE,
        native_min_value=0,
        native_max_value=100,
        native_step=1,
        mode=NumberMode.SLIDER,
        exists_fn=lambda asset: asset.kind is AssetKind.BATTERY,
        value_fn=lambda controls: controls.battery_reserve_pct,
        set_fn=lambda controls, value: replace(controls, battery_reserve_pct=round(value)),
    ),
    PeerEnergyNumberDescription(
        key="energy_needed",
        translation_key="ev_energy_needed",
        entity_category=EntityCategory.CONFIG,
        device_class=NumberDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        native_min_value=0,
        native_max_value=200,
        native_step=0.5,
        mode=NumberMode.BOX,
        exists_fn=lambda asset: asset.kind is AssetKind.EV_CHARGER,
        value_fn=lambda controls: controls.ev_energy_needed_wh / 1000,
        set_fn=lambda controls, value: replace(controls, ev_energy_needed_wh=round(value * 1000)),
    ),
    PeerEnergyNumberDescription(
        key="max_delay",
        translation_key="plug_max_delay",
        entity_category=EntityCategory.CONFIG,
        device_class=NumberDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MINUTES,
        native_min_value=0,
        native_max_value=1440,
        native_step=15,
        mode=NumberMode.BOX,
        exists_fn=lambda asset: asset.kind is AssetKind.PLUG,
        value_fn=lambda controls: controls.plug_max_delay_min,
        set_fn=lambda controls, value: replace(controls, plug_max_delay_min=round(value)),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: PeerEnergyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create each asset's control numbers (on the asset's subentry)."""
    async_add_controls(entry, async_add_entities, NUMBERS, PeerEnergyNumber)


class PeerEnergyNumber(PeerEnergyControlEntity[float], RestoreNumber):
    """A per-asset setting stored in the runtime and restored after a restart."""

    entity_description: PeerEnergyNumberDescription

    async def async_restored_value(self) -> float | None:
        """The last value, if it is still in range."""
        last = await self.async_get_last_number_data()
        if last is None or last.native_value is None:
            return None
        if not self.native_min_value <= last.native_value <= self.native_max_value:
            return None
        return last.native_value

    @property
    def native_value(self) -> float:
        """Return the current setting."""
        return self.control_value

    async def async_set_native_value(self, value: float) -> None:
        """Change the setting (Home Assistant has checked min, max and step)."""
        await self.async_store(value)
