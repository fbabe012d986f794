"""Switches: the owner's per-asset choices (participation, flexible plug).

They control Peer Energy itself, not the user's devices. Their values live in the
runtime (``entry.runtime_data.controls``) and survive restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.const import STATE_OFF, STATE_ON, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity

from .const import AssetKind
from .coordinator import AssetConfig, PeerEnergyCoordinator
from .entity import PeerEnergyEntity
from .runtime import AssetControls, PeerEnergyConfigEntry

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class PeerEnergySwitchDescription(SwitchEntityDescription):
    """A control switch of an asset."""

    exists_fn: Callable[[AssetConfig], bool]
    value_fn: Callable[[AssetControls], bool]
    set_fn: Callable[[AssetControls, bool], AssetControls]


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
    coordinator = entry.runtime_data.coordinator
    for subentry_id, asset in entry.runtime_data.assets.items():
        async_add_entities(
            (
                PeerEnergySwitch(coordinator, description, asset)
                for description in SWITCHES
                if description.exists_fn(asset)
            ),
            config_subentry_id=subentry_id,
        )


class PeerEnergySwitch(PeerEnergyEntity, SwitchEntity, RestoreEntity):
    """A per-asset control stored in the runtime and restored after a restart."""

    entity_description: PeerEnergySwitchDescription
    asset: AssetConfig

    def __init__(
        self,
        coordinator: PeerEnergyCoordinator,
        description: PeerEnergySwitchDescription,
        asset: AssetConfig,
    ) -> None:
        """Bind the description to one asset."""
        super().__init__(coordinator, description, asset)

    @property
    def _controls(self) -> AssetControls:
        return self.runtime.controls_for(self.asset.subentry_id)

    async def async_added_to_hass(self) -> None:
        """Restore the last choice into the runtime."""
        await super().async_added_to_hass()
        last = await self.async_get_last_state()
        if last is not None and last.state in (STATE_ON, STATE_OFF):
            self._set(last.state == STATE_ON)

    @property
    def is_on(self) -> bool:
        """Return the current choice."""
        return self.entity_description.value_fn(self._controls)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Switch the control on."""
        self._set(True)
        self.async_write_ha_state()

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Switch the control off."""
        self._set(False)
        self.async_write_ha_state()

    def _set(self, on: bool) -> None:
        self.runtime.async_set_controls(
            self.asset.subentry_id, self.entity_description.set_fn(self._controls, on)
        )
