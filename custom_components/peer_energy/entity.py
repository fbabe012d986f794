"""Base entity and device info for Peer Energy.

One home device per config entry (identified by the entry id) and one device per asset
subentry, linked to the home device with ``via_device``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import CONF_HOME_NAME, DOMAIN, NAME, AssetKind
from .coordinator import AssetConfig, PeerEnergyCoordinator
from .runtime import PeerEnergyRuntime

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
        entry_type=DeviceEntryType.SERVICE,
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
        """The entry's slot clock (set before the platforms are set up)."""
        market = self.runtime.market
        assert market is not None, "market entities exist only with a slot clock"
        return market

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
