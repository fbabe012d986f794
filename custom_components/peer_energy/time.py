"""Time: the EV's departure time (by when the energy needed should be charged).

The value lives in the runtime (``entry.runtime_data.controls``) and survives restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import time

from homeassistant.components.time import TimeEntity, TimeEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity

from .const import AssetKind
from .coordinator import AssetConfig, PeerEnergyCoordinator
from .entity import PeerEnergyEntity
from .runtime import AssetControls, PeerEnergyConfigEntry

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class PeerEnergyTimeDescription(TimeEntityDescription):
    """A control time of an asset."""

    exists_fn: Callable[[AssetConfig], bool]
    value_fn: Callable[[AssetControls], time]
    set_fn: Callable[[AssetControls, time], AssetControls]


TIMES: tuple[PeerEnergyTimeDescription, ...] = (
    PeerEnergyTimeDescription(
        key="departure",
        translation_key="ev_departure",
        entity_category=EntityCategory.CONFIG,
        exists_fn=lambda asset: asset.kind is AssetKind.EV_CHARGER,
        value_fn=lambda controls: controls.ev_departure,
        set_fn=lambda controls, value: replace(controls, ev_departure=value),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: PeerEnergyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create each asset's control times (on the asset's subentry)."""
    coordinator = entry.runtime_data.coordinator
    for subentry_id, asset in entry.runtime_data.assets.items():
        async_add_entities(
            (
                PeerEnergyTime(coordinator, description, asset)
                for description in TIMES
                if description.exists_fn(asset)
            ),
            config_subentry_id=subentry_id,
        )


class PeerEnergyTime(PeerEnergyEntity, TimeEntity, RestoreEntity):
    """A per-asset time stored in the runtime and restored after a restart."""

    entity_description: PeerEnergyTimeDescription
    asset: AssetConfig

    def __init__(
        self,
        coordinator: PeerEnergyCoordinator,
        description: PeerEnergyTimeDescription,
        asset: AssetConfig,
    ) -> None:
        """Bind the description to one asset."""
        super().__init__(coordinator, description, asset)

    @property
    def _controls(self) -> AssetControls:
        return self.runtime.controls_for(self.asset.subentry_id)

    async def async_added_to_hass(self) -> None:
        """Restore the last time into the runtime."""
        await super().async_added_to_hass()
        last = await self.async_get_last_state()
        if last is None:
            return
        try:
            value = time.fromisoformat(last.state)
        except ValueError:
            return
        self._set(value)

    @property
    def native_value(self) -> time:
        """Return the current time."""
        return self.entity_description.value_fn(self._controls)

    async def async_set_value(self, value: time) -> None:
        """Change the time."""
        self._set(value)
        self.async_write_ha_state()

    def _set(self, value: time) -> None:
        self.runtime.async_set_controls(
            self.asset.subentry_id, self.entity_description.set_fn(self._controls, value)
        )
