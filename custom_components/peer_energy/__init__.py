"""Peer Energy: a peer-to-peer energy market among neighbouring Home Assistant homes.

This module sets a config entry up and down. The entry's asset subentries are parsed,
a push coordinator mirrors their source entities, and the platforms create one home
device plus one device per asset. Adding, editing or removing an asset, or changing
the options, reloads the entry.
"""

from __future__ import annotations

from typing import Any

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.start import async_at_started
from homeassistant.helpers.typing import ConfigType

from .config_flow import async_refresh_subentry_types
from .const import DOMAIN, LOGGER, SUBENTRY_ASSET
from .coordinator import PeerEnergyCoordinator, UnknownAssetKindError, assets_from_entry
from .core.trust.home_ledger import HomeLedgerError
from .entity import home_device_info
from .federation_setup import (
    async_remove_home,
    async_setup_federation,
    async_setup_federation_actions,
    async_take_broker_password,
    community_subentry,
)
from .http import RateLimiter
from .issues import async_clear_issues, async_watch_sources
from .ledger import LedgerSetupError
from .market import SlotClock, async_add_blueprints
from .runtime import PeerEnergyConfigEntry, PeerEnergyRuntime, default_controls
from .savings import SavingsTracker
from .services import async_setup_services
from .websocket_api import async_register_panel, async_remove_panel, async_setup_websocket

__all__ = ["PeerEnergyConfigEntry", "PeerEnergyRuntime"]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.IMAGE,
    Platform.NUMBER,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.TIME,
]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions, so they exist (and explain themselves) before an entry loads."""
    async_setup_services(hass)
    async_setup_federation_actions(hass)
    async_setup_websocket(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> bool:
    """Set up Peer Energy from a config entry."""
    async_take_broker_password(hass, entry)  # before anything reads the community
    seen = _entry_state(entry)
    try:
        assets = assets_from_entry(entry)
    except UnknownAssetKindError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="unknown_asset_kind",
            translation_placeholders={"kind": str(err)},
        ) from err

    coordinator = PeerEnergyCoordinator(hass, entry, assets)
    await coordinator.async_config_entry_first_refresh()
    try:
        ledger, link, start_federation = await async_setup_federation(hass, entry)
    except LedgerSetupError as err:
        LOGGER.debug("The ledger cannot be opened: %s", err)
        if isinstance(err.__cause__, HomeLedgerError):
            # Written by another key or for another community: retrying cannot help.
            raise ConfigEntryError(
                translation_domain=DOMAIN, translation_key="ledger_damaged"
            ) from err
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN, translation_key="ledger_unavailable"
        ) from err
    defaults = default_controls(entry)
    # The slot clock exists before the platforms (its entities read it) and starts after
    # them (its first plan and restored totals then reach the entities).
    market = SlotClock(hass, entry)
    savings = SavingsTracker(hass, entry.entry_id)
    # Built in one step, before the link starts: from here on the HTTP views find the link
    # through this entry (also while it still sets up).
    entry.runtime_data = PeerEnergyRuntime(
        coordinator=coordinator,
        assets=assets,
        market=market,
        savings=savings,
        controls=dict.fromkeys(assets, defaults),
        ledger=ledger,
        link=link,
        limiter=RateLimiter(),
        federation=link if link.joined else None,
    )
    start_federation()

    # The home device exists before the asset devices so that their via_device links resolve.
    dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, **home_device_info(entry)
    )

    coordinator.async_start()
    entry.async_on_unload(coordinator.async_stop)
    entry.async_on_unload(async_watch_sources(hass, entry, assets))
    entry.async_on_unload(entry.add_update_listener(_async_update_listener))
    if _entry_state(entry) != seen:
        # An asset or option changed while this set-up was waiting, before the update
        # listener existed: that change would be lost without one more reload.
        hass.config_entries.async_schedule_reload(entry.entry_id)

    await market.async_load()
    await savings.async_load()
    entry.async_on_unload(savings.async_follow(market))
    if ledger is not None:  # delivery settlements correct the savings of their trades
        entry.async_on_unload(savings.async_follow_ledger(ledger, market, entry.entry_id))
    entry.async_on_unload(savings.async_flush)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    market.async_start()
    entry.async_on_unload(market.async_stop)
    # Once Home Assistant runs (after the automation integration has added its own example
    # blueprints, which it skips when the folder already exists), add ours.
    entry.async_on_unload(async_at_started(hass, async_add_blueprints))
    # The "Peer Energy" sidebar panel (market view) shows while the entry is loaded.
    await async_register_panel(hass)
    entry.async_on_unload(lambda: async_remove_panel(hass))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> bool:
    """Unload a config entry; its subscriptions go through ``async_on_unload``."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        # Rebuilt by the next set-up where they still apply (issues.py).
        async_clear_issues(hass)
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> None:
    """The entry is deleted: leave the community and delete the home's stored files."""
    await async_remove_home(hass, entry.entry_id, community_subentry(entry))
    async_clear_issues(hass)


def _entry_state(entry: PeerEnergyConfigEntry) -> tuple[Any, ...]:
    """The options and assets a set-up reads (to notice the user changing them during the
    set-up). The community subentry is left out: the set-up itself updates it."""
    assets = {
        sid: dict(sub.data)
        for sid, sub in entry.subentries.items()
        if sub.subentry_type == SUBENTRY_ASSET
    }
    return dict(entry.options), assets


async def _async_update_listener(hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> None:
    """Reload when options or subentries change ("Add community" follows the community)."""
    async_refresh_subentry_types(entry)
    await hass.config_entries.async_reload(entry.entry_id)
