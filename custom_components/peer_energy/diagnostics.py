"""Diagnostics for a Peer Energy config entry.

Personal or secret data is redacted: the home and asset names, the entity ids of the
user's devices (they often carry names of people, cars or rooms), the community's name
and id, addresses, and any key, token or invitation secret. What stays is what helps debugging:
asset kinds, which roles are mapped, the readings in standard units and each source's
status (ok, unavailable, missing) and unit, and what each forecast came from (a forecast of the
next 48 hours is built for the diagnostics; its sources name roles, never entity ids).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Final

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er

from .const import (
    CONF_ASSET_NAME,
    CONF_CARBON_INTENSITY_ENTITY,
    CONF_COMMUNITY_ID,
    CONF_COMMUNITY_NAME,
    CONF_EXPORT_PRICE_ENTITY,
    CONF_HOME_NAME,
    CONF_IMPORT_PRICE_ENTITY,
)
from .coordinator import SOURCE_KEYS, on_off, state_number
from .core.trust.ledger_db import LedgerDBError
from .federation import FederationLink
from .forecasts import forecaster_for
from .runtime import PeerEnergyConfigEntry, entry_link

TO_REDACT: Final = {
    CONF_HOME_NAME,
    CONF_ASSET_NAME,
    "title",
    "unique_id",
    *SOURCE_KEYS,
    CONF_IMPORT_PRICE_ENTITY,
    CONF_EXPORT_PRICE_ENTITY,
    CONF_CARBON_INTENSITY_ENTITY,
    # Secrets of later releases (identity keys, federation invitations, tokens).
    "private_key",
    "signing_key",
    "secret",
    "invitation",
    "invite_code",
    "token",
    "access_token",
    "password",
    "broker_password",
    "broker_username",
    "broker_url",
    # Federation: where this home is reached is personal; key material never leaves.
    "address",
    "seed",
    "next_seed",
    # The community's name and id identify the neighbourhood.
    CONF_COMMUNITY_NAME,
    CONF_COMMUNITY_ID,
    "community",
    "community_name",
    "community_id",
}
# Horizon of the forecast built for the diagnostics.
FORECAST_HOURS: Final = 48
# The ledger summary and identity: public, but per-home values that identify the home.
LEDGER_REDACT: Final = {
    "member",
    "public_key",
    "head_hash",
    "seed",
    "next_seed",
    "database_bytes",
    "community",
}


def _source_status(hass: HomeAssistant, entity_id: str) -> dict[str, Any]:
    state = hass.states.get(entity_id)
    if state is None:
        registered = er.async_get(hass).async_get(entity_id) is not None
        return {"status": "no_state" if registered else "missing"}
    return {
        "status": (
            "ok"
            if state_number(state) is not None or on_off(state) is not None
            else state.state[:20]
        ),
        "unit": state.attributes.get(ATTR_UNIT_OF_MEASUREMENT),
    }


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: PeerEnergyConfigEntry
) -> dict[str, Any]:
    """Return redacted diagnostics for a config entry.

    An entry that is not loaded (set-up failed, or a reload is under way) has no runtime
    to describe: its state and redacted settings only. A ledger closed meanwhile (a reload
    starting during the download) is reported as such, not as an error of the download.
    """
    if entry.state is not ConfigEntryState.LOADED:
        return {"state": entry.state.value, "entry": _entry_section(entry)}
    runtime = entry.runtime_data
    coordinator = runtime.coordinator
    data = coordinator.data
    assets: dict[str, Any] = {}
    for subentry_id, asset in runtime.assets.items():
        controls = asdict(runtime.controls_for(subentry_id))
        controls["ev_departure"] = controls["ev_departure"].isoformat()
        reading = data.assets.get(subentry_id)
        assets[subentry_id] = {
            "kind": asset.kind.value,
            "power_sign": asset.power_sign.value,
            "capacity_wh": asset.capacity_wh,
            "max_charge_w": asset.max_charge_w,
            "max_discharge_w": asset.max_discharge_w,
            "sources": {
                key: _source_status(hass, entity_id) for key, entity_id in asset.sources.items()
            },
            "reading": None if reading is None else asdict(reading),
            "controls": controls,
        }
    ledger_section: dict[str, Any] | None = None
    if (ledger := runtime.ledger) is not None:
        try:
            ledger_section = async_redact_data(await ledger.async_diagnostics(), LEDGER_REDACT)
        except LedgerDBError as err:
            ledger_section = {"unavailable": str(err)}
    link = entry_link(entry)
    slot_seconds = runtime.market.slot_seconds
    forecasts = await forecaster_for(hass, entry).async_diagnostics(
        slot_seconds, FORECAST_HOURS * 3600 // slot_seconds
    )
    return {
        "state": entry.state.value,
        "ledger": ledger_section,
        "federation": _federation_section(link) if link is not None else None,
        "market": runtime.market.diagnostics(),
        "forecasts": forecasts,
        "entry": _entry_section(entry),
        "assets": assets,
        "home": {
            "grid_power_w": data.grid_power_w,
            "grid_source": data.grid_source,
            "pv_surplus_w": data.pv_surplus_w,
            "grid_import_wh": data.grid_import_wh,
            "grid_export_wh": data.grid_export_wh,
            "integrates_import": coordinator.integrates_import,
            "integrates_export": coordinator.integrates_export,
        },
    }


def _entry_section(entry: PeerEnergyConfigEntry) -> dict[str, Any]:
    """The entry's settings and subentries, redacted."""
    return async_redact_data(
        {
            "title": entry.title,
            "version": entry.version,
            "minor_version": entry.minor_version,
            "data": dict(entry.data),
            "options": dict(entry.options),
            "subentries": [
                {
                    "subentry_id": subentry.subentry_id,
                    "subentry_type": subentry.subentry_type,
                    "title": subentry.title,
                    "data": dict(subentry.data),
                }
                for subentry in entry.subentries.values()
            ],
        },
        TO_REDACT,
    )


def _federation_section(link: FederationLink) -> dict[str, Any]:
    """The link's diagnostics, and how many joiners wait for their welcome to be
    acknowledged here (confirmed joins: counted by no home until then)."""
    section = async_redact_data(link.diagnostics(), TO_REDACT)
    section["pending_joins"] = len(link.peer.pending_joins()) if link.peer is not None else 0
    return section
