"""Runtime data of a Peer Energy config entry (``entry.runtime_data``).

This is the object later parts of the shell (slot clock, agents, ledger, federation)
read: the parsed assets, the live readings through the coordinator, the owner's
per-asset controls set through the switch, number and time entities, and the federation
link with the rate limiter of the HTTP message view.

Nothing of an entry lives in ``hass.data``: the HTTP views (registered once per run) and
the community actions find the running link through the config entry
(``async_serving_link``), also while the entry is still setting up (a joining home's
welcome arrives then).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from typing import TYPE_CHECKING, Any, Final

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant, callback

from .const import CONF_BATTERY_RESERVE_PCT, DEFAULT_BATTERY_RESERVE_PCT, DOMAIN
from .coordinator import AssetConfig, PeerEnergyCoordinator

if TYPE_CHECKING:
    from .federation import FederationLink
    from .forecasts import HomeForecaster
    from .http import RateLimiter
    from .ledger import PeerLedger
    from .market import SlotClock
    from .savings import SavingsTracker

DEFAULT_EV_DEPARTURE: Final = time(7, 0)
DEFAULT_EV_ENERGY_NEEDED_WH: Final = 10_000
DEFAULT_PLUG_MAX_DELAY_MIN: Final = 120
# States in which an entry's link serves the HTTP views and the actions: from the moment
# its runtime data is built during set-up until the link stops during the unload.
SERVING_STATES: Final = frozenset(
    {
        ConfigEntryState.SETUP_IN_PROGRESS,
        ConfigEntryState.LOADED,
        ConfigEntryState.UNLOAD_IN_PROGRESS,
    }
)


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
    # The home's federation link, a member of a community or not (federation_setup.py;
    # stopped on unload): the HTTP views, the community flow and actions use it.
    link: FederationLink
    # The rate limiter of the HTTP message view, for the life of this set-up.
    limiter: RateLimiter
    # The home's durable ledger (federation_setup.py; closed on unload).
    ledger: PeerLedger | None = None
    # The home's forecaster (forecasts.py), made on first use.
    forecaster: HomeForecaster | None = None
    # The link while this home is a member of a community at set-up (None otherwise): the
    # slot clock trades through it. A join completed later reloads the entry.
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


@callback
def entry_link(entry: ConfigEntry[Any]) -> FederationLink | None:
    """The entry's link while it runs: built (the entry sets up, is loaded or unloads)
    and not stopped. Runtime data left behind by a failed set-up does not count."""
    runtime = getattr(entry, "runtime_data", None)
    if entry.state not in SERVING_STATES or not isinstance(runtime, PeerEnergyRuntime):
        return None
    return None if runtime.link.stopped else runtime.link


@callback
def async_serving_runtime(hass: HomeAssistant) -> PeerEnergyRuntime | None:
    """The runtime of the entry whose link runs (``entry_link``), if any.

    The HTTP views are registered once per run and outlive every entry, so they look
    the entry up on each request; Peer Energy has one entry at most."""
    for entry in hass.config_entries.async_entries(
        DOMAIN, include_ignore=False, include_disabled=False
    ):
        if entry_link(entry) is not None:
            runtime: PeerEnergyRuntime = entry.runtime_data
            return runtime
    return None


@callback
def async_serving_link(hass: HomeAssistant) -> FederationLink | None:
    """The running link of the entry (``async_serving_runtime``), if any."""
    runtime = async_serving_runtime(hass)
    return None if runtime is None else runtime.link
