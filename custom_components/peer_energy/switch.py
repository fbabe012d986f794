"""Switches: the owner's per-asset choices (participation, flexible plug).

They control Peer Energy itself, not the user's devices. Their values live in the
runtime (``entry.runtime_data.controls``) and survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.const import STATE_OFF, STATE_ON, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import AssetKind
from .entity import ControlFns, PeerEnergyControlEntity, async_add_controls
from .runtime import PeerEnergyConfigEntry

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class PeerEnergySwitchDescription(SwitchEntityDescription, ControlFns[bool]):
    """A control switch of an asset."""


SWITCHES: tuple[PeerEnergySwitchDescription, ...] = (
    PeerEnergySwitchDescription(
        key="participation",
        translation_key="participation",
        entity_category=EntityCategory.CONFIG,
        # A grid meter only measures; it has nothing to offer or to ask for.
        exists_fn=lambda asset: asset.kind is not AssetKind.GRID_METER,
        value_fn=lambda controls: controls.participating,
        set_fn=lambda controls, on: replace(controls, participating=on),
    ),
    PeerEnergySwitchDescription(
        key="flexible",
        translation_key="plug_flexible",
        entity_category=EntityCategory.CONFIG,
        exists_fn=lambda asset: asset.kind is AssetKind.PLUG,
        value_fn=lambda controls: controls.plug_flexible,
        set_fn=lambda controls, on: replace(controls, plug_flexible=on),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: PeerEnergyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create each asset's control switches (on the asset's subentry)."""
    async_add_controls(entry, async_add_entities, SWITCHES, PeerEnergySwitch)


class PeerEnergySwitch(PeerEnergyControlEntity[bool], SwitchEntity):
    """A per-asset on/off choice stored in the runtime and restored after a restart."""

    entity_description: PeerEnergySwitchDescription

    async def async_restored_value(self) -> bool | None:
        """The last state, when it was on or off."""
        last = await self.async_get_last_state()
        if last is None or last.state not in (STATE_ON, STATE_OFF):
            return None
        return last.state == STATE_ON

    @property
    def is_on(self) -> bool:
        """Return the current choice."""
        return self.control_value

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Switch the control on."""
        await self.async_store(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Switch the control off."""
        await self.async_store(False)
