"""Base entities and device info for Peer Energy.

One home device per config entry (identified by the entry id) and one device per asset
subentry, linked to the home device with ``via_device``. The owner's per-asset controls
(switch, number and time platforms) share one generic entity, ``PeerEnergyControlEntity``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import CONF_HOME_NAME, DOMAIN, NAME, AssetKind
from .coordinator import AssetConfig, PeerEnergyCoordinator
from .runtime import AssetControls, PeerEnergyConfigEntry, PeerEnergyRuntime

if TYPE_CHECKING:
    from .market import SlotClock

# Model names shown on the asset devices.
ASSET_MODELS: dict[AssetKind, str] = {
    AssetKind.PV: "PV inverter",
    AssetKind.BATTERY: "Battery",
    AssetKind.EV_CHARGER: "EV charger",
    AssetKind.PLUG: "Plug",
    AssetKind.GRID_METER: "Grid meter",
}


def home_device_info(entry: ConfigEntry[Any]) -> DeviceInfo:
    """Device info of the home device of an entry."""
    return DeviceInfo(
        identifiers={(DOMAIN, entry.entry_id)},
        name=str(entry.data.get(CONF_HOME_NAME) or entry.title),
        manufacturer=NAME,
        model="Home",
        # A device, not a "service" (set explicitly: earlier versions registered one).
        entry_type=None,
    )


def asset_device_info(entry: ConfigEntry[Any], asset: AssetConfig) -> DeviceInfo:
    """Device info of one asset device, linked to the home device."""
    return DeviceInfo(
        identifiers={(DOMAIN, f"{entry.entry_id}_{asset.subentry_id}")},
        name=asset.name,
        manufacturer=NAME,
        model=ASSET_MODELS[asset.kind],
        via_device=(DOMAIN, entry.entry_id),
    )


class PeerEnergyEntity(CoordinatorEntity[PeerEnergyCoordinator]):
    """An entity of the home device (``asset`` None) or of an asset device."""

    _attr_has_entity_name = True

    def __init__(
        self,
        coordinator: PeerEnergyCoordinator,
        description: EntityDescription,
        asset: AssetConfig | None = None,
    ) -> None:
        """Set unique id and device from the entry and the asset."""
        super().__init__(coordinator)
        self.entity_description = description
        self.asset = asset
        entry = coordinator.config_entry
        if asset is None:
            self._attr_unique_id = f"{entry.entry_id}_{description.key}"
            self._attr_device_info = home_device_info(entry)
        else:
            self._attr_unique_id = f"{entry.entry_id}_{asset.subentry_id}_{description.key}"
            self._attr_device_info = asset_device_info(entry, asset)

    @property
    def runtime(self) -> PeerEnergyRuntime:
        """The entry's runtime data (controls, assets, coordinator)."""
        runtime: PeerEnergyRuntime = self.coordinator.config_entry.runtime_data
        return runtime


class PeerEnergyMarketEntity(PeerEnergyEntity):
    """An entity showing the slot clock's state, written when the clock changes.

    Source readings alone do not change market values, so coordinator updates are ignored.
    """

    @property
    def market(self) -> SlotClock:
        """The entry's slot clock."""
        return self.runtime.market

    async def async_added_to_hass(self) -> None:
        """Follow the slot clock."""
        await super().async_added_to_hass()
        self.async_on_remove(self.market.async_add_listener(self._handle_market_update))

    @callback
    def _handle_market_update(self) -> None:
        self.async_write_ha_state()

    @callback
    def _handle_coordinator_update(self) -> None:
        """Readings do not change market values; nothing to write."""


# --- The owner's per-asset controls (switch, number, time) --------------------------------


@dataclass(frozen=True, kw_only=True)
class ControlFns[T]:
    """How a control reads and changes its field of an asset's ``AssetControls``.

    Mixed into each platform's frozen, ``kw_only`` entity description.
    """

    exists_fn: Callable[[AssetConfig], bool]
    value_fn: Callable[[AssetControls], T]
    set_fn: Callable[[AssetControls, T], AssetControls]


class PeerEnergyControlEntity[T](PeerEnergyEntity, RestoreEntity):
    """A per-asset setting of the owner, kept in the runtime and restored after a restart.

    It controls Peer Energy itself, not the user's devices. A platform adds its entity
    base class and maps its own reads and writes onto ``control_value`` and
    ``async_store``; ``async_restored_value`` reads the last value back after a restart.
    """

    asset: AssetConfig

    def __init__(
        self,
        coordinator: PeerEnergyCoordinator,
        description: EntityDescription,
        asset: AssetConfig,
    ) -> None:
        """Bind the description to one asset."""
        super().__init__(coordinator, description, asset)

    @property
    def _fns(self) -> ControlFns[T]:
        # Every platform's description mixes ControlFns into its entity description.
        return cast("ControlFns[T]", self.entity_description)

    @property
    def control_value(self) -> T:
        """The current setting."""
        return self._fns.value_fn(self.runtime.controls_for(self.asset.subentry_id))

    async def async_added_to_hass(self) -> None:
        """Put the value from before the restart back into the runtime."""
        await super().async_added_to_hass()
        restored = await self.async_restored_value()
        if restored is not None:
            self._set(restored)

    async def async_restored_value(self) -> T | None:
        """The value from before the restart, or None (none, or no longer valid)."""
        raise NotImplementedError

    async def async_store(self, value: T) -> None:
        """Change the setting and show it."""
        self._set(value)
        self.async_write_ha_state()

    def _set(self, value: T) -> None:
        sid = self.asset.subentry_id
        self.runtime.async_set_controls(
            sid, self._fns.set_fn(self.runtime.controls_for(sid), value)
        )


def async_add_controls[D: ControlFns[Any]](
    entry: PeerEnergyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    descriptions: Iterable[D],
    entity_class: Callable[[PeerEnergyCoordinator, D, AssetConfig], Entity],
) -> None:
    """Create each asset's controls of one platform (on the asset's subentry)."""
    coordinator = entry.runtime_data.coordinator
    for subentry_id, asset in entry.runtime_data.assets.items():
        async_add_entities(
            (
                entity_class(coordinator, description, asset)
                for description in descriptions
                if description.exists_fn(asset)
            ),
            config_subentry_id=subentry_id,
        )
