"""Time: the EV's departure time (by when the energy needed should be charged).

The value lives in the runtime (``entry.runtime_data.controls``) and survives restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import time

from homeassistant.components.time import TimeEntity, TimeEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import AssetKind
from .entity import ControlFns, PeerEnergyControlEntity, async_add_controls
from .runtime import PeerEnergyConfigEntry

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class PeerEnergyTimeDescription(TimeEntityDescription, ControlFns[time]):
    """A control time of an asset."""


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
    async_add_controls(entry, async_add_entities, TIMES, PeerEnergyTime)


class PeerEnergyTime(PeerEnergyControlEntity[time], TimeEntity):
    """A per-asset time stored in the runtime and restored after a restart."""

    entity_description: PeerEnergyTimeDescription

    async def async_restored_value(self) -> time | None:
        """The last time, if it was one."""
        last = await self.async_get_last_state()
        if last is None:
            return None
        try:
            return time.fromisoformat(last.state)
        except ValueError:
            return None

    @property
    def native_value(self) -> time:
        """Return the current time."""
        return self.control_value

    async def async_set_value(self, value: time) -> None:
        """Change the time."""
        await self.async_store(value)
