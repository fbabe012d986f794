"""Runtime data of a Peer Energy config entry (``entry.runtime_data``).

This is the object later parts of the shell (slot clock, agents, ledger, federation)
read: the parsed assets, the live readings through the coordinator, and the owner's
per-asset controls set through the switch, number and time entities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from typing import TYPE_CHECKING, Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import callback

from .const import CONF_BATTERY_RESERVE_PCT, DEFAULT_BATTERY_RESERVE_PCT
from .coordinator import AssetConfig, PeerEnergyCoordinator

if TYPE_CHECKING:
    from .federation import FederationLink
    from .ledger import PeerLedger
    from .market import SlotClock
    from .savings import SavingsTracker

DEFAULT_EV_DEPARTURE: Final = time(7, 0)
DEFAULT_EV_ENERGY_NEEDED_WH: Final = 10_000
DEFAULT_PLUG_MAX_DELAY_MIN: Final = 120


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetControls:
    """The owner's settings for one asset; replaced whole on every change.

    Fields that do not apply to an asset's kind keep their defaults and are unused.
    """

    participating: bool = True
    battery_reserve_pct: int = DEFAULT_BATTERY_RESERVE_PCT
    ev_departure: time = DEFAULT_EV_DEPARTURE
    ev_energy_needed_wh: int = DEFAULT_EV_ENERGY_NEEDED_WH
    plug_flexible: bool = False
    plug_max_delay_min: int = DEFAULT_PLUG_MAX_DELAY_MIN


type ControlsListener = Callable[[str, AssetControls], None]


@dataclass(slots=True, kw_only=True)
class PeerEnergyRuntime:
    """Everything a loaded entry holds at run time, built in one step by
    ``async_setup_entry`` (the slot clock and the savings tracker included)."""

    coordinator: PeerEnergyCoordinator
    assets: Mapping[str, AssetConfig]
    # The slot clock (market.py); started once the platforms are set up.
    market: SlotClock
    # Savings versus not trading (savings.py).
    savings: SavingsTracker
    controls: dict[str, AssetControls] = field(default_factory=dict)
    # The home's durable ledger (federation_setup.py; closed on unload).
    ledger: PeerLedger | None = None
    # The federation link while this home is a member of a community (None otherwise).
    federation: FederationLink | None = None
    _listeners: list[ControlsListener] = field(default_factory=list)

    def controls_for(self, subentry_id: str) -> AssetControls:
        """Return the current controls of an asset (defaults until an entity sets them)."""
        return self.controls.get(subentry_id) or AssetControls()

    @callback
    def async_set_controls(self, subentry_id: str, controls: AssetControls) -> None:
        """Store new controls for an asset and tell the listeners."""
        self.controls[subentry_id] = controls
        for listener in list(self._listeners):
            listener(subentry_id, controls)

    @callback
    def async_update_controls(self, subentry_id: str, **changes: Any) -> AssetControls:
        """Change some control fields of an asset; return the new controls."""
        controls = replace(self.controls_for(subentry_id), **changes)
        self.async_set_controls(subentry_id, controls)
        return controls

    @callback
    def async_add_controls_listener(self, listener: ControlsListener) -> Callable[[], None]:
        """Call ``listener(subentry_id, controls)`` on every change; return an unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)


def default_controls(entry: ConfigEntry[Any]) -> AssetControls:
    """Controls an asset starts with before anything is restored."""
    reserve = entry.options.get(CONF_BATTERY_RESERVE_PCT, DEFAULT_BATTERY_RESERVE_PCT)
    return AssetControls(battery_reserve_pct=int(reserve))


type PeerEnergyConfigEntry = ConfigEntry[PeerEnergyRuntime]
