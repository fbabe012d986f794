"""UI set-up for Peer Energy: config, reconfigure, options and asset subentry flows.

Step ids and field names are part of the public surface (the demo drives them over REST):

- Config flow ``user``: home_name, currency, import_price | import_price_entity,
  export_price | export_price_entity, carbon_intensity_entity. A price entity, when picked,
  is used instead of the fixed price.
- Config flow ``reconfigure``: the same, plus slot_minutes ("5", "15", "30", "60") while the
  home is in no community (a community's slot length is its rule, set when it is created),
  address (where neighbours reach this home) while it is a member of one on HTTP, and
  broker_url, broker_username, broker_password while its community is on an MQTT broker
  (an empty password keeps the stored one; a changed broker is connected to once).
- Config flow, after ``user``: menu ``community`` with create_community, join_community,
  skip_community (fields in community_flow.py); the subentry type ``community`` ("Add
  community") offers the same create/join steps later, only while the home is in none.
- Options flow ``init``: clean_only, max_buy_price, min_sell_price, peak_margin_pct,
  battery_reserve_pct, control_mode ("advise", "control").
- Subentry type ``asset``: menu ``user`` with the options pv, battery, ev_charger, plug,
  grid_meter, each leading to a form step of the same name; ``reconfigure`` opens the form
  of the asset's kind directly.

Prices are stored as entered (major currency units per kWh, a float) and converted to the
engine's integer minor units per kWh by prices.fixed_price_to_minor at the border.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentry,
    ConfigSubentryFlow,
    OptionsFlow,
    SubentryFlowResult,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.generated.currencies import ACTIVE_CURRENCIES
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import voluptuous as vol

from .community_flow import (
    ERROR_INVALID_ADDRESS,
    MENU_OPTIONS,
    CommunitySubentryFlow,
    async_check_broker_input,
    async_validate_broker_change,
    broker_schema,
    broker_values,
    community_subentry,
    create_schema,
    is_broker_community,
    join_schema,
    valid_address,
    validate_create,
    validate_join,
)
from .const import (
    CONF_ADDRESS,
    CONF_ASSET_KIND,
    CONF_ASSET_NAME,
    CONF_BATTERY_RESERVE_PCT,
    CONF_BROKER_PASSWORD,
    CONF_CAPACITY_KWH,
    CONF_CARBON_INTENSITY_ENTITY,
    CONF_CLEAN_ONLY,
    CONF_COMMUNITY_NAME,
    CONF_CONTROL_MODE,
    CONF_CURRENCY,
    CONF_CURRENT_ENTITY,
    CONF_DISPLAY_NAME,
    CONF_ENERGY_ENTITY,
    CONF_EXPORT_ENERGY_ENTITY,
    CONF_EXPORT_PRICE,
    CONF_EXPORT_PRICE_ENTITY,
    CONF_HOME_NAME,
    CONF_IMPORT_ENERGY_ENTITY,
    CONF_IMPORT_PRICE,
    CONF_IMPORT_PRICE_ENTITY,
    CONF_MAX_BUY_PRICE,
    CONF_MAX_CHARGE_W,
    CONF_MAX_DISCHARGE_W,
    CONF_MIN_SELL_PRICE,
    CONF_MODE_ENTITY,
    CONF_PEAK_MARGIN_PCT,
    CONF_PLUGGED_ENTITY,
    CONF_POWER_ENTITY,
    CONF_POWER_SIGN,
    CONF_SETPOINT_ENTITY,
    CONF_SLOT_MINUTES,
    CONF_SOC_ENTITY,
    CONF_SWITCH_ENTITY,
    DEFAULT_BATTERY_RESERVE_PCT,
    DEFAULT_CLEAN_ONLY,
    DEFAULT_CONTROL_MODE,
    DEFAULT_EXPORT_PRICE,
    DEFAULT_IMPORT_PRICE,
    DEFAULT_PEAK_MARGIN_PCT,
    DEFAULT_SLOT_MINUTES,
    DOMAIN,
    SLOT_MINUTES_CHOICES,
    SUBENTRY_ASSET,
    SUBENTRY_COMMUNITY,
    AssetKind,
    ControlMode,
    PowerSign,
)
from .core.federation.community import CommunityError, check_display_name
from .federation import FederationError, FederationLink
from .prices import (
    InvalidPriceError,
    SourceKind,
    fixed_price_to_minor,
    validate_price_entity,
    validate_source,
)

# Error and abort codes that are not source errors (those come from prices.SourceError).
ERROR_NAME_REQUIRED: Final = "name_required"
ERROR_NAME_IN_USE: Final = "name_in_use"
ERROR_POWER_IN_USE: Final = "power_entity_in_use"
ERROR_REQUIRED: Final = "required"
ERROR_PRICE_REQUIRED: Final = "price_required"
ERROR_EXPORT_ABOVE_IMPORT: Final = "export_above_import"
ERROR_ADDRESS_NOT_SENT: Final = "address_not_sent"
ERROR_MIN_SELL_ABOVE_MAX_BUY: Final = "min_sell_above_max_buy"
ERROR_INVALID_DISPLAY_NAME: Final = "invalid_display_name"
ABORT_SINGLE_INSTANCE: Final = "single_instance_allowed"
ABORT_UNKNOWN_KIND: Final = "unknown_asset_kind"

PRICE_ENTITY_DOMAINS: Final = ["sensor", "input_number"]
# Fixed grid prices suggested in the home form (major units per kWh): typical household
# retail and feed-in prices of the euro area. Other currencies get no suggestion.
SUGGESTED_PRICES: Final[Mapping[str, tuple[float, float]]] = {
    "EUR": (DEFAULT_IMPORT_PRICE, DEFAULT_EXPORT_PRICE),
}


# --- Entry settings (config flow and reconfigure flow) ------------------------------------


def _price_selector(currency: str) -> NumberSelector:
    """A fixed price in major currency units per kWh, typed into a box."""
    return NumberSelector(
        NumberSelectorConfig(
            mode=NumberSelectorMode.BOX, step="any", unit_of_measurement=f"{currency}/kWh"
        )
    )


def _default_currency(hass: HomeAssistant) -> str:
    """Home Assistant's currency, unless it is a historic one the selector does not offer."""
    return hass.config.currency if hass.config.currency in ACTIVE_CURRENCIES else "EUR"


def _settings_schema(
    hass: HomeAssistant, currency: str, *, slot_length: bool = False, address: bool = False
) -> vol.Schema:
    """The entry's settings form; defaults come from Home Assistant's own configuration.

    ``slot_length``: ask for the home's own slot length (only while it is in no community:
    in one, the community's rule applies). ``address``: ask where neighbours reach this
    home (only while it is a member of a community).
    """
    price_entity = EntitySelector(EntitySelectorConfig(domain=PRICE_ENTITY_DOMAINS))
    fields: dict[vol.Marker, Any] = {
        vol.Required(CONF_HOME_NAME, default=hass.config.location_name): TextSelector(),
        vol.Required(CONF_CURRENCY, default=_default_currency(hass)): SelectSelector(
            SelectSelectorConfig(
                options=sorted(ACTIVE_CURRENCIES), mode=SelectSelectorMode.DROPDOWN
            )
        ),
        vol.Optional(CONF_IMPORT_PRICE): _price_selector(currency),
        vol.Optional(CONF_IMPORT_PRICE_ENTITY): price_entity,
        vol.Optional(CONF_EXPORT_PRICE): _price_selector(currency),
        vol.Optional(CONF_EXPORT_PRICE_ENTITY): price_entity,
        vol.Optional(CONF_CARBON_INTENSITY_ENTITY): EntitySelector(
            EntitySelectorConfig(domain="sensor")
        ),
    }
    if slot_length:
        fields[vol.Required(CONF_SLOT_MINUTES, default=str(DEFAULT_SLOT_MINUTES))] = SelectSelector(
            SelectSelectorConfig(
                options=[str(minutes) for minutes in SLOT_MINUTES_CHOICES],
                mode=SelectSelectorMode.LIST,
                translation_key=CONF_SLOT_MINUTES,
            )
        )
    if address:
        fields[vol.Required(CONF_ADDRESS)] = TextSelector(
            TextSelectorConfig(type=TextSelectorType.URL)
        )
    return vol.Schema(fields)


def _suggested_prices(currency: str) -> dict[str, float]:
    """Typical fixed prices for a new home in ``currency`` (none for most currencies)."""
    if (prices := SUGGESTED_PRICES.get(currency)) is None:
        return {}
    return {CONF_IMPORT_PRICE: prices[0], CONF_EXPORT_PRICE: prices[1]}


def _suggested_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """Entry data as form values (the slot length is a string in the form)."""
    values = dict(data)
    values[CONF_SLOT_MINUTES] = str(values.get(CONF_SLOT_MINUTES, DEFAULT_SLOT_MINUTES))
    return values


def _validate_price(
    hass: HomeAssistant,
    user_input: Mapping[str, Any],
    currency: str,
    fixed_key: str,
    entity_key: str,
    data: dict[str, Any],
    errors: dict[str, str],
) -> int | None:
    """Check one price (fixed number xor entity); return the fixed price in minor units."""
    fixed: Any = user_input.get(fixed_key)
    entity_id: Any = user_input.get(entity_key)
    if fixed is None and not entity_id:
        errors[fixed_key] = ERROR_PRICE_REQUIRED
        return None
    if entity_id:
        # A picked price entity is used instead of the fixed price (the form suggests one).
        if error := validate_price_entity(hass.states.get(entity_id), currency):
            errors[entity_key] = error
        else:
            data[entity_key] = entity_id
        return None
    try:
        minor = fixed_price_to_minor(fixed, currency)
    except InvalidPriceError as err:
        errors[fixed_key] = err.code
        return None
    data[fixed_key] = float(fixed)
    return minor


def validate_settings(
    hass: HomeAssistant, user_input: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate the settings form; return (entry data, errors by field).

    The slot length is kept from ``current`` (the entry's data) when the form did not ask
    for it (a new home starts with 15 minutes; in a community the community's applies).
    """
    errors: dict[str, str] = {}
    currency = str(user_input[CONF_CURRENCY])
    name = str(user_input[CONF_HOME_NAME]).strip()
    if not name:
        errors[CONF_HOME_NAME] = ERROR_NAME_REQUIRED
    slot = user_input.get(CONF_SLOT_MINUTES, (current or {}).get(CONF_SLOT_MINUTES))
    data: dict[str, Any] = {
        CONF_HOME_NAME: name,
        CONF_CURRENCY: currency,
        CONF_SLOT_MINUTES: int(slot) if slot is not None else DEFAULT_SLOT_MINUTES,
    }
    import_minor = _validate_price(
        hass, user_input, currency, CONF_IMPORT_PRICE, CONF_IMPORT_PRICE_ENTITY, data, errors
    )
    export_minor = _validate_price(
        hass, user_input, currency, CONF_EXPORT_PRICE, CONF_EXPORT_PRICE_ENTITY, data, errors
    )
    # Only two fixed prices can be compared at set-up: a price entity moves every slot and
    # may legitimately dip below a fixed feed-in tariff (negative day-ahead prices).
    if import_minor is not None and export_minor is not None and export_minor > import_minor:
        errors[CONF_EXPORT_PRICE] = ERROR_EXPORT_ABOVE_IMPORT
    if carbon := user_input.get(CONF_CARBON_INTENSITY_ENTITY):
        if error := validate_source(hass.states.get(carbon), SourceKind.CARBON):
            errors[CONF_CARBON_INTENSITY_ENTITY] = error
        else:
            data[CONF_CARBON_INTENSITY_ENTITY] = carbon
    return data, errors


class PeerEnergyConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up Peer Energy: one entry per Home Assistant instance."""

    VERSION = 1
    MINOR_VERSION = 1
    _home: dict[str, Any]

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> PeerEnergyOptionsFlow:
        """Return the owner-policy options flow."""
        return PeerEnergyOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Assets (PV, battery, EV charger, plug, grid meter) are subentries, and so is
        the community; "Add community" is offered only while the home is in none."""
        if in_community(config_entry):
            return {SUBENTRY_ASSET: AssetSubentryFlow}
        return {SUBENTRY_ASSET: AssetSubentryFlow, SUBENTRY_COMMUNITY: CommunitySubentryFlow}

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the home's name, currency, prices and carbon signal."""
        if self._async_current_entries():
            return self.async_abort(reason=ABORT_SINGLE_INSTANCE)
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors = validate_settings(self.hass, user_input)
            if not errors:
                await self.async_set_unique_id(DOMAIN)
                self._abort_if_unique_id_configured()
                self._home = data
                return await self.async_step_community()
        currency = (user_input or {}).get(CONF_CURRENCY, _default_currency(self.hass))
        values = user_input if user_input is not None else _suggested_prices(currency)
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                _settings_schema(self.hass, currency), values
            ),
            errors=errors,
        )

    async def async_step_community(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """After the home: create a community, join one, or skip for now."""
        return self.async_show_menu(
            step_id="community", menu_options=[*MENU_OPTIONS, "skip_community"]
        )

    async def async_step_skip_community(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Create the entry without a community (trading locally against the grid)."""
        return self.async_create_entry(title=self._home[CONF_HOME_NAME], data=self._home)

    async def async_step_create_community(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Name and rules of a new community; it is founded when the entry sets up."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors = validate_create(user_input, self._home)
            if not errors:
                errors = await async_check_broker_input(self.hass, data)
            if not errors:
                home, data = _hand_over_password(self._home, data)
                return self.async_create_entry(
                    title=self._home[CONF_HOME_NAME],
                    data=home,
                    subentries=[community_subentry(data[CONF_COMMUNITY_NAME], data)],
                )
        return self.async_show_form(
            step_id="create_community",
            data_schema=self.add_suggested_values_to_schema(
                create_schema(self.hass, self._home[CONF_CURRENCY]), user_input
            ),
            errors=errors,
        )

    async def async_step_join_community(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Paste an invitation; the join completes in the background after set-up."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors, title = await validate_join(self.hass, user_input)
            if not errors:
                home, data = _hand_over_password(self._home, data)
                return self.async_create_entry(
                    title=self._home[CONF_HOME_NAME],
                    data=home,
                    subentries=[community_subentry(title, data)],
                )
        return self.async_show_form(
            step_id="join_community",
            data_schema=self.add_suggested_values_to_schema(join_schema(self.hass), user_input),
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the entry's settings with the same form and checks, then reload.

        The slot length is asked only while the home is in no community; the address
        neighbours reach it at only while it is a member of one (every member is told).
        """
        entry = self._get_reconfigure_entry()
        broker = _broker_subentry(entry)
        link = _member_link(entry) if broker is None else None  # an address: HTTP only
        slot_length = not in_community(entry)
        errors: dict[str, str] = {}
        broker_data: dict[str, Any] | None = None
        if user_input is not None:
            data, errors = validate_settings(self.hass, user_input, entry.data)
            if broker is not None:
                broker_data, broker_errors = await async_validate_broker_change(
                    self.hass, broker.data, user_input
                )
                errors.update(broker_errors)
            address = str(user_input.get(CONF_ADDRESS, "")).strip().rstrip("/")
            if link is not None and not valid_address(address):
                errors[CONF_ADDRESS] = ERROR_INVALID_ADDRESS
            if (
                not errors
                and link is not None
                and address != link.address
                and (error := await _async_announce(self.hass, entry, link, address)) is not None
            ):
                errors[CONF_ADDRESS] = error
            if not errors:
                if broker is not None and broker_data is not None and broker_data != broker.data:
                    # the reload below connects to the broker with the new settings
                    self.hass.config_entries.async_update_subentry(entry, broker, data=broker_data)
                return self.async_update_reload_and_abort(
                    entry, title=data[CONF_HOME_NAME], data=data
                )
        values = dict(user_input) if user_input is not None else _suggested_settings(entry.data)
        values.pop(CONF_BROKER_PASSWORD, None)  # never sent back to the browser
        if link is not None and user_input is None:
            values[CONF_ADDRESS] = link.address
        if broker is not None and user_input is None:
            values.update(broker_values(broker.data))
        currency = values.get(CONF_CURRENCY, self.hass.config.currency)
        schema = _settings_schema(
            self.hass, currency, slot_length=slot_length, address=link is not None
        )
        if broker is not None:
            schema = schema.extend(broker_schema())
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(schema, values),
            errors=errors,
        )


def _hand_over_password(
    home: Mapping[str, Any], community: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(entry data, community subentry data) of a new entry: the broker password travels
    in the entry's data, because Home Assistant sends a new entry's subentries back to the
    browser (never its data); the set-up moves it into the subentry
    (``federation_setup.async_take_broker_password``)."""
    data = dict(community)
    password = data.pop(CONF_BROKER_PASSWORD, None)
    return ({**home, CONF_BROKER_PASSWORD: password} if password else dict(home)), data


def in_community(entry: ConfigEntry) -> bool:
    """Whether the entry has a community (being created, being joined, or a member)."""
    return any(sub.subentry_type == SUBENTRY_COMMUNITY for sub in entry.subentries.values())


@callback
def async_refresh_subentry_types(entry: ConfigEntry) -> None:
    """Let Home Assistant ask again which subentries can be added (after a community was
    added or left): it keeps the answer on the entry object and has no public way to
    forget it, so "Add community" would otherwise show or hide wrongly until a restart."""
    object.__setattr__(entry, "_supported_subentry_types", None)
    entry.clear_state_cache()


def _broker_subentry(entry: ConfigEntry) -> ConfigSubentry | None:
    """The entry's community subentry when the community is on an MQTT broker."""
    return next(
        (
            sub
            for sub in entry.subentries.values()
            if sub.subentry_type == SUBENTRY_COMMUNITY and is_broker_community(sub.data)
        ),
        None,
    )


def _member_link(entry: ConfigEntry) -> FederationLink | None:
    """The loaded entry's federation link while the home is a member of a community."""
    if not in_community(entry) or entry.state is not ConfigEntryState.LOADED:
        return None
    link: FederationLink | None = entry.runtime_data.federation
    return link if link is not None and link.joined else None


async def _async_announce(
    hass: HomeAssistant, entry: ConfigEntry, link: FederationLink, address: str
) -> str | None:
    """Tell every member this home's new address and keep it in the community subentry;
    return an error code when the community could not be told."""
    try:
        await link.async_set_address(address)
    except FederationError:
        return ERROR_ADDRESS_NOT_SENT
    for sub in entry.subentries.values():
        if sub.subentry_type == SUBENTRY_COMMUNITY:
            hass.config_entries.async_update_subentry(
                entry, sub, data={**sub.data, CONF_ADDRESS: address}
            )
    return None


# --- Options (owner policy) ---------------------------------------------------------------


def _options_schema(currency: str) -> vol.Schema:
    """The owner's policy form."""
    percent_box = NumberSelectorConfig(
        min=0, max=500, step=1, unit_of_measurement="%", mode=NumberSelectorMode.BOX
    )
    return vol.Schema(
        {
            vol.Required(CONF_CLEAN_ONLY, default=DEFAULT_CLEAN_ONLY): BooleanSelector(),
            vol.Optional(CONF_MAX_BUY_PRICE): _price_selector(currency),
            vol.Optional(CONF_MIN_SELL_PRICE): _price_selector(currency),
            vol.Required(CONF_PEAK_MARGIN_PCT, default=DEFAULT_PEAK_MARGIN_PCT): NumberSelector(
                percent_box
            ),
            vol.Required(
                CONF_BATTERY_RESERVE_PCT, default=DEFAULT_BATTERY_RESERVE_PCT
            ): NumberSelector(
                NumberSelectorConfig(
                    min=0, max=100, step=1, unit_of_measurement="%", mode=NumberSelectorMode.SLIDER
                )
            ),
            vol.Required(CONF_CONTROL_MODE, default=DEFAULT_CONTROL_MODE.value): SelectSelector(
                SelectSelectorConfig(
                    options=[mode.value for mode in ControlMode],
                    mode=SelectSelectorMode.LIST,
                    translation_key=CONF_CONTROL_MODE,
                )
            ),
            vol.Optional(CONF_DISPLAY_NAME): TextSelector(),
        }
    )


def validate_options(
    user_input: Mapping[str, Any], currency: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate the policy form; return (options, errors by field)."""
    errors: dict[str, str] = {}
    options: dict[str, Any] = {
        CONF_CLEAN_ONLY: bool(user_input[CONF_CLEAN_ONLY]),
        CONF_PEAK_MARGIN_PCT: round(user_input[CONF_PEAK_MARGIN_PCT]),
        CONF_BATTERY_RESERVE_PCT: round(user_input[CONF_BATTERY_RESERVE_PCT]),
        CONF_CONTROL_MODE: ControlMode(user_input[CONF_CONTROL_MODE]).value,
    }
    limits: dict[str, int] = {}
    for key in (CONF_MAX_BUY_PRICE, CONF_MIN_SELL_PRICE):
        if (value := user_input.get(key)) is None:
            continue
        try:
            limits[key] = fixed_price_to_minor(value, currency)
        except InvalidPriceError as err:
            errors[key] = err.code
        else:
            options[key] = float(value)
    if name := str(user_input.get(CONF_DISPLAY_NAME) or "").strip():
        try:
            check_display_name(name)
        except CommunityError:
            errors[CONF_DISPLAY_NAME] = ERROR_INVALID_DISPLAY_NAME
        else:
            options[CONF_DISPLAY_NAME] = name
    if (
        CONF_MAX_BUY_PRICE in limits
        and CONF_MIN_SELL_PRICE in limits
        and limits[CONF_MIN_SELL_PRICE] > limits[CONF_MAX_BUY_PRICE]
    ):
        errors[CONF_MIN_SELL_PRICE] = ERROR_MIN_SELL_ABOVE_MAX_BUY
    return options, errors


class PeerEnergyOptionsFlow(OptionsFlow):
    """The owner's policies: what to buy, price limits, reserve and control."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and save the policy form."""
        currency = str(self.config_entry.data.get(CONF_CURRENCY, self.hass.config.currency))
        errors: dict[str, str] = {}
        if user_input is not None:
            options, errors = validate_options(user_input, currency)
            if not errors:
                return self.async_create_entry(data=options)
        values = user_input if user_input is not None else dict(self.config_entry.options)
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(_options_schema(currency), values),
            errors=errors,
            description_placeholders={"currency": currency},
        )


# --- Asset subentries ----------------------------------------------------------------------

_POWER_SENSOR: Final = EntitySelector(EntitySelectorConfig(domain="sensor", device_class="power"))
_ENERGY_SENSOR: Final = EntitySelector(EntitySelectorConfig(domain="sensor", device_class="energy"))
_SOC_SENSOR: Final = EntitySelector(EntitySelectorConfig(domain="sensor", device_class="battery"))
_SWITCH: Final = EntitySelector(EntitySelectorConfig(domain=["switch", "input_boolean"]))
_NUMBER: Final = EntitySelector(EntitySelectorConfig(domain=["number", "input_number"]))
_SELECT: Final = EntitySelector(EntitySelectorConfig(domain=["select", "input_select"]))
_PLUGGED: Final = EntitySelector(
    EntitySelectorConfig(domain="binary_sensor", device_class=["plug", "battery_charging", "power"])
)


def _watts(maximum: int) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(
            min=1, max=maximum, step=1, unit_of_measurement="W", mode=NumberSelectorMode.BOX
        )
    )


def _asset_schema(fields: dict[vol.Marker, Any]) -> vol.Schema:
    """An asset form: the asset's name first, then its kind's fields.

    Fields the asset needs are still ``vol.Optional`` here: the frontend fills a required
    number field with its minimum (a battery of 0.1 kWh) and refuses an incomplete form
    with a message at the top of a long dialog, out of sight. ``validate_asset`` checks
    ``REQUIRED_FIELDS`` instead and answers with an error on each empty field.
    """
    return vol.Schema({vol.Optional(CONF_ASSET_NAME): TextSelector(), **fields})


# What each kind needs (besides the name); checked by validate_asset.
REQUIRED_FIELDS: Final[Mapping[AssetKind, tuple[str, ...]]] = {
    AssetKind.PV: (CONF_POWER_ENTITY,),
    AssetKind.BATTERY: (
        CONF_SOC_ENTITY,
        CONF_POWER_ENTITY,
        CONF_CAPACITY_KWH,
        CONF_MAX_CHARGE_W,
        CONF_MAX_DISCHARGE_W,
    ),
    AssetKind.EV_CHARGER: (CONF_POWER_ENTITY,),
    AssetKind.PLUG: (CONF_SWITCH_ENTITY, CONF_POWER_ENTITY),
    AssetKind.GRID_METER: (CONF_POWER_ENTITY,),
}

ASSET_SCHEMAS: Final[Mapping[AssetKind, vol.Schema]] = {
    AssetKind.PV: _asset_schema(
        {
            vol.Optional(CONF_POWER_ENTITY): _POWER_SENSOR,
            vol.Optional(CONF_ENERGY_ENTITY): _ENERGY_SENSOR,
        }
    ),
    AssetKind.BATTERY: _asset_schema(
        {
            vol.Optional(CONF_SOC_ENTITY): _SOC_SENSOR,
            vol.Optional(CONF_POWER_ENTITY): _POWER_SENSOR,
            vol.Required(
                CONF_POWER_SIGN, default=PowerSign.POSITIVE_DISCHARGE.value
            ): SelectSelector(
                SelectSelectorConfig(
                    options=[sign.value for sign in PowerSign],
                    mode=SelectSelectorMode.LIST,
                    translation_key=CONF_POWER_SIGN,
                )
            ),
            vol.Optional(CONF_CAPACITY_KWH): NumberSelector(
                NumberSelectorConfig(
                    min=0.1,
                    max=1000,
                    step=0.1,
                    unit_of_measurement="kWh",
                    mode=NumberSelectorMode.BOX,
                )
            ),
            vol.Optional(CONF_MAX_CHARGE_W): _watts(1_000_000),
            vol.Optional(CONF_MAX_DISCHARGE_W): _watts(1_000_000),
            vol.Optional(CONF_MODE_ENTITY): _SELECT,
            vol.Optional(CONF_SETPOINT_ENTITY): _NUMBER,
        }
    ),
    AssetKind.EV_CHARGER: _asset_schema(
        {
            vol.Optional(CONF_POWER_ENTITY): _POWER_SENSOR,
            vol.Optional(CONF_ENERGY_ENTITY): _ENERGY_SENSOR,
            vol.Optional(CONF_PLUGGED_ENTITY): _PLUGGED,
            vol.Optional(CONF_SWITCH_ENTITY): _SWITCH,
            vol.Optional(CONF_CURRENT_ENTITY): _NUMBER,
        }
    ),
    AssetKind.PLUG: _asset_schema(
        {
            vol.Optional(CONF_SWITCH_ENTITY): _SWITCH,
            vol.Optional(CONF_POWER_ENTITY): _POWER_SENSOR,
            vol.Optional(CONF_ENERGY_ENTITY): _ENERGY_SENSOR,
        }
    ),
    AssetKind.GRID_METER: _asset_schema(
        {
            vol.Optional(CONF_POWER_ENTITY): _POWER_SENSOR,
            vol.Optional(CONF_IMPORT_ENERGY_ENTITY): _ENERGY_SENSOR,
            vol.Optional(CONF_EXPORT_ENERGY_ENTITY): _ENERGY_SENSOR,
        }
    ),
}

# The role of every entity field, which decides how it is checked (prices.validate_source).
SOURCE_ROLES: Final[Mapping[str, SourceKind]] = {
    CONF_POWER_ENTITY: SourceKind.POWER,
    CONF_ENERGY_ENTITY: SourceKind.ENERGY,
    CONF_IMPORT_ENERGY_ENTITY: SourceKind.ENERGY,
    CONF_EXPORT_ENERGY_ENTITY: SourceKind.ENERGY,
    CONF_SOC_ENTITY: SourceKind.SOC,
    CONF_PLUGGED_ENTITY: SourceKind.ANY,
    CONF_SWITCH_ENTITY: SourceKind.ANY,
    CONF_CURRENT_ENTITY: SourceKind.ANY,
    CONF_MODE_ENTITY: SourceKind.ANY,
    CONF_SETPOINT_ENTITY: SourceKind.ANY,
}


def validate_asset(
    hass: HomeAssistant,
    kind: AssetKind,
    user_input: Mapping[str, Any],
    others: list[ConfigSubentry],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate an asset form against its sources and the entry's other assets.

    Return (subentry data, errors by field). The power entity identifies the physical
    device (it is the subentry's unique_id), so two assets cannot share it: the home's
    power balance would count that device twice.
    """
    errors: dict[str, str] = {}
    name = str(user_input.get(CONF_ASSET_NAME) or "").strip()
    if not name:
        errors[CONF_ASSET_NAME] = ERROR_NAME_REQUIRED
    elif any(other.title.strip().casefold() == name.casefold() for other in others):
        errors[CONF_ASSET_NAME] = ERROR_NAME_IN_USE
    for key in REQUIRED_FIELDS[kind]:
        if user_input.get(key) in (None, ""):
            errors[key] = ERROR_REQUIRED
    data: dict[str, Any] = {CONF_ASSET_KIND: kind.value, CONF_ASSET_NAME: name}
    for key, role in SOURCE_ROLES.items():
        if not (entity_id := user_input.get(key)):
            continue
        if error := validate_source(hass.states.get(entity_id), role):
            errors[key] = error
        else:
            data[key] = entity_id
    power = user_input.get(CONF_POWER_ENTITY)
    if CONF_POWER_ENTITY not in errors and any(
        power in (other.unique_id, other.data.get(CONF_POWER_ENTITY)) for other in others
    ):
        errors[CONF_POWER_ENTITY] = ERROR_POWER_IN_USE
    if kind is AssetKind.BATTERY and not errors:
        data[CONF_POWER_SIGN] = PowerSign(user_input[CONF_POWER_SIGN]).value
        data[CONF_CAPACITY_KWH] = float(user_input[CONF_CAPACITY_KWH])
        data[CONF_MAX_CHARGE_W] = round(user_input[CONF_MAX_CHARGE_W])
        data[CONF_MAX_DISCHARGE_W] = round(user_input[CONF_MAX_DISCHARGE_W])
    return data, errors


class AssetSubentryFlow(ConfigSubentryFlow):
    """Add or edit one asset: a menu picks the kind, then a form maps its entities."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Choose what kind of device to add."""
        return self.async_show_menu(step_id="user", menu_options=[kind.value for kind in AssetKind])

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Edit an asset: open the form of its kind with its current values."""
        subentry = self._get_reconfigure_subentry()
        try:
            kind = AssetKind(str(subentry.data.get(CONF_ASSET_KIND)))
        except ValueError:
            return self.async_abort(reason=ABORT_UNKNOWN_KIND)
        return await self._async_asset_form(kind, None)

    async def async_step_pv(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """PV inverter."""
        return await self._async_asset_form(AssetKind.PV, user_input)

    async def async_step_battery(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Home battery."""
        return await self._async_asset_form(AssetKind.BATTERY, user_input)

    async def async_step_ev_charger(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """EV charger."""
        return await self._async_asset_form(AssetKind.EV_CHARGER, user_input)

    async def async_step_plug(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Smart plug with a flexible load."""
        return await self._async_asset_form(AssetKind.PLUG, user_input)

    async def async_step_grid_meter(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Grid connection meter (monitor only)."""
        return await self._async_asset_form(AssetKind.GRID_METER, user_input)

    async def _async_asset_form(
        self, kind: AssetKind, user_input: dict[str, Any] | None
    ) -> SubentryFlowResult:
        """Show the kind's form, or validate it and create or update the subentry."""
        editing = self.source == SOURCE_RECONFIGURE
        current = self._get_reconfigure_subentry() if editing else None
        entry = self._get_entry()
        others = [
            other
            for other in entry.subentries.values()
            if other.subentry_type == SUBENTRY_ASSET
            and (current is None or other.subentry_id != current.subentry_id)
        ]
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors = validate_asset(self.hass, kind, user_input, others)
            if not errors:
                title = data[CONF_ASSET_NAME]
                unique_id = data[CONF_POWER_ENTITY]
                if current is not None:
                    return self.async_update_and_abort(
                        entry, current, data=data, title=title, unique_id=unique_id
                    )
                return self.async_create_entry(title=title, data=data, unique_id=unique_id)
        values: Mapping[str, Any] | None = user_input
        if values is None and current is not None:
            values = current.data
        return self.async_show_form(
            step_id=kind.value,
            data_schema=self.add_suggested_values_to_schema(ASSET_SCHEMAS[kind], values),
            errors=errors,
        )
