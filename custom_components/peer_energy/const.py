"""Constants shared by the Peer Energy Home Assistant shell.

This module is the data contract between the config flows (which write entry data,
options and subentries) and the runtime (coordinator, entities, diagnostics).
"""

from __future__ import annotations

from enum import StrEnum
import logging
from typing import Final

DOMAIN: Final = "peer_energy"
NAME: Final = "Peer Energy"
LOGGER: Final = logging.getLogger(__package__)

# --- Config entry data (config flow and reconfigure flow) -------------------------------
CONF_HOME_NAME: Final = "home_name"
CONF_CURRENCY: Final = "currency"
# A price is either a fixed number (currency per kWh) or an existing price entity.
CONF_IMPORT_PRICE: Final = "import_price"
CONF_IMPORT_PRICE_ENTITY: Final = "import_price_entity"
CONF_EXPORT_PRICE: Final = "export_price"
CONF_EXPORT_PRICE_ENTITY: Final = "export_price_entity"
CONF_CARBON_INTENSITY_ENTITY: Final = "carbon_intensity_entity"
CONF_SLOT_MINUTES: Final = "slot_minutes"

SLOT_MINUTES_CHOICES: Final = (5, 15, 30, 60)
DEFAULT_SLOT_MINUTES: Final = 15
DEFAULT_IMPORT_PRICE: Final = 0.30
DEFAULT_EXPORT_PRICE: Final = 0.08

# --- Options (owner policy) ----------------------------------------------------------
CONF_CLEAN_ONLY: Final = "clean_only"
CONF_MAX_BUY_PRICE: Final = "max_buy_price"
CONF_MIN_SELL_PRICE: Final = "min_sell_price"
CONF_PEAK_MARGIN_PCT: Final = "peak_margin_pct"
# The name neighbours see for this home (options; not shared while unset).
CONF_DISPLAY_NAME: Final = "display_name"
CONF_BATTERY_RESERVE_PCT: Final = "battery_reserve_pct"
CONF_CONTROL_MODE: Final = "control_mode"

DEFAULT_CLEAN_ONLY: Final = False
DEFAULT_PEAK_MARGIN_PCT: Final = 20
DEFAULT_BATTERY_RESERVE_PCT: Final = 20


class ControlMode(StrEnum):
    """Whether Peer Energy may switch the user's devices or only advise."""

    ADVISE = "advise"
    CONTROL = "control"


DEFAULT_CONTROL_MODE: Final = ControlMode.ADVISE

# --- Asset subentries ----------------------------------------------------------------
SUBENTRY_ASSET: Final = "asset"
CONF_ASSET_KIND: Final = "kind"
CONF_ASSET_NAME: Final = "name"


class AssetKind(StrEnum):
    """Physical device kinds. Seed roles: generator, storage, consumer, monitor."""

    PV = "pv"
    BATTERY = "battery"
    EV_CHARGER = "ev_charger"
    PLUG = "plug"
    GRID_METER = "grid_meter"


# Source entities an asset maps (entity ids of the user's existing integrations).
CONF_POWER_ENTITY: Final = "power_entity"  # W or kW, all kinds
CONF_ENERGY_ENTITY: Final = "energy_entity"  # kWh/Wh total, pv/ev/plug (optional)
CONF_SOC_ENTITY: Final = "soc_entity"  # battery state of charge, %
CONF_POWER_SIGN: Final = "power_sign"  # battery: which direction is positive
CONF_CAPACITY_KWH: Final = "capacity_kwh"  # battery usable capacity
CONF_MAX_CHARGE_W: Final = "max_charge_w"
CONF_MAX_DISCHARGE_W: Final = "max_discharge_w"
CONF_MODE_ENTITY: Final = "mode_entity"  # battery: optional select for mode control
CONF_SETPOINT_ENTITY: Final = "setpoint_entity"  # battery: optional number for power setpoint
CONF_PLUGGED_ENTITY: Final = "plugged_entity"  # EV: binary_sensor plugged in
CONF_SWITCH_ENTITY: Final = "switch_entity"  # EV enable / plug relay
CONF_CURRENT_ENTITY: Final = "current_entity"  # EV: number, charge current (A)
CONF_IMPORT_ENERGY_ENTITY: Final = "import_energy_entity"  # grid meter
CONF_EXPORT_ENERGY_ENTITY: Final = "export_energy_entity"  # grid meter


class PowerSign(StrEnum):
    """Sign convention of a battery power sensor."""

    POSITIVE_DISCHARGE = "positive_discharge"
    POSITIVE_CHARGE = "positive_charge"


# Grid meter power: positive means importing from the grid (the common convention).

# --- Community subentry (at most one; written by the config flow or the subentry flow) ---
SUBENTRY_COMMUNITY: Final = "community"
CONF_COMMUNITY_ACTION: Final = "action"  # "create" or "join" until done, then "member"
CONF_COMMUNITY_NAME: Final = "community_name"
CONF_COMMUNITY_ID: Final = "community_id"
CONF_INVITATION: Final = "invitation"
CONF_ADDRESS: Final = "address"
CONF_RULES: Final = "rules"
# Transport of the community (chosen when it is created): "http" or "mqtt".
CONF_TRANSPORT: Final = "transport"
CONF_BROKER_URL: Final = "broker_url"
CONF_TOPIC_PREFIX: Final = "topic_prefix"
CONF_BROKER_USERNAME: Final = "broker_username"
CONF_BROKER_PASSWORD: Final = "broker_password"  # noqa: S105 - the key, not a password
TRANSPORT_CHOICES: Final = ("http", "mqtt")
CONF_GATE_CLOSURE_LEAD_S: Final = "gate_closure_lead_s"
CONF_FEE: Final = "fee"
CONF_CREDIT_LIMIT: Final = "credit_limit"
CONF_FAIR_SHARE_PCT: Final = "fair_share_pct"
CONF_MAX_MEMBERS: Final = "max_members"
COMMUNITY_SLOT_MINUTES_CHOICES: Final = (1, 5, 15, 30, 60)
DEFAULT_GATE_CLOSURE_LEAD_S: Final = 60
DEFAULT_FEE: Final = 0.0
DEFAULT_CREDIT_LIMIT: Final = 20.0
DEFAULT_FAIR_SHARE_PCT: Final = 100
DEFAULT_MAX_MEMBERS: Final = 50


class CommunityAction(StrEnum):
    """What the community subentry asks for; ``MEMBER`` once it is done."""

    CREATE = "create"
    JOIN = "join"
    MEMBER = "member"
