"""Community steps of the UI: create a community or join one with a pasted invitation.

They appear twice: in the config flow right after the home step (menu ``community`` with
``create_community``, ``join_community`` and ``skip_community``), and later as the
``community`` subentry flow of the entry ("Add community"; at most one). Both write one
subentry of type ``community`` whose data asks the runtime to act:

* ``{"action": "create", "community_name", "address", "rules"}``: the runtime founds the
  community at set-up (no network needed);
* ``{"action": "join", "invitation", "address"}``: the runtime sends the join request and
  waits for the welcome in the background; then the data becomes
  ``{"action": "member", "community_id", "community_name", "address"}`` and the entry
  reloads. Deleting the subentry leaves the community.

Form fields (create): community_name, slot_minutes ("1", "5", "15", "30", "60"),
gate_closure_lead_s (at least ``gate.MIN_GATE_LEAD_S`` and less than half a slot, refused
on the field otherwise), fee and credit_limit (currency per kWh and currency, converted to
integer engine units here), fair_share_pct, max_members, address, and the transport:
``http`` (every home reaches every other at its address) or ``mqtt`` (every home connects
out to the community's broker: broker_url ``mqtt://host:port`` or ``mqtts://``,
topic_prefix, optional broker_username and broker_password; the form connects once to
check them). Join: invitation, address (HTTP only), and broker_username/broker_password
when the invitation names a broker that needs them. The broker's URL and prefix come
from the invitation; the password stays in the subentry data (redacted in diagnostics,
never logged or shown in a notification).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigSubentryData,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.network import NoURLAvailableError, get_url
from homeassistant.helpers.selector import (
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
from yarl import URL

from . import federation
from .const import (
    COMMUNITY_SLOT_MINUTES_CHOICES,
    CONF_ADDRESS,
    CONF_BROKER_PASSWORD,
    CONF_BROKER_URL,
    CONF_BROKER_USERNAME,
    CONF_COMMUNITY_ACTION,
    CONF_COMMUNITY_ID,
    CONF_COMMUNITY_NAME,
    CONF_CREDIT_LIMIT,
    CONF_CURRENCY,
    CONF_EXPORT_PRICE,
    CONF_FAIR_SHARE_PCT,
    CONF_FEE,
    CONF_GATE_CLOSURE_LEAD_S,
    CONF_IMPORT_PRICE,
    CONF_INVITATION,
    CONF_MAX_MEMBERS,
    CONF_RULES,
    CONF_SLOT_MINUTES,
    CONF_TOPIC_PREFIX,
    CONF_TRANSPORT,
    DEFAULT_CREDIT_LIMIT,
    DEFAULT_EXPORT_PRICE,
    DEFAULT_FAIR_SHARE_PCT,
    DEFAULT_FEE,
    DEFAULT_GATE_CLOSURE_LEAD_S,
    DEFAULT_IMPORT_PRICE,
    DEFAULT_MAX_MEMBERS,
    SUBENTRY_COMMUNITY,
    TRANSPORT_CHOICES,
    CommunityAction,
)
from .core.federation.community import MAX_NAME_LEN, CommunityError, Invitation, InvitationError
from .federation import community_rules
from .gate import gate_lead_error
from .http import HttpTransport
from .mqtt_transport import (
    DEFAULT_PREFIX,
    BrokerConfig,
    BrokerError,
    BrokerStatus,
    async_check_broker,
    check_prefix,
)
from .prices import InvalidPriceError, fixed_price_to_minor
from .runtime import entry_link

ERROR_NAME_REQUIRED: Final = "name_required"
ERROR_INVALID_ADDRESS: Final = "invalid_address"
ERROR_INVALID_RULES: Final = "invalid_rules"
ERROR_INVALID_AMOUNT: Final = "invalid_amount"
ERROR_INVALID_INVITATION: Final = "invalid_invitation"
ERROR_INVITATION_EXPIRED: Final = "invitation_expired"
ERROR_CANNOT_CONNECT: Final = "cannot_connect"
ERROR_WRONG_COMMUNITY: Final = "wrong_community"
ERROR_JOIN_FAILED: Final = "join_failed"
# Why a join in the flow failed, by the link's reason code (form errors).
JOIN_ERRORS: Final = {
    "http_0": "join_no_answer",
    "http_403": "join_refused",
    "http_409": "join_full",
    "http_422": "join_address_unreachable",
    "timeout": "join_timeout",
    "invitation": ERROR_INVALID_INVITATION,
}
# The flow waits for the welcome like the background join, resending the request.
JOIN_FLOW_TIMEOUT_S: Final = 60.0
JOIN_FLOW_RESEND_S: Final = (5.0, 10.0, 20.0)
ERROR_INVALID_BROKER: Final = "invalid_broker"
ERROR_INVALID_PREFIX: Final = "invalid_prefix"
ERROR_BROKER_UNREACHABLE: Final = "broker_unreachable"
ERROR_BROKER_REFUSED: Final = "broker_refused"
BROKER_KEYS: Final = (
    CONF_TRANSPORT,
    CONF_BROKER_URL,
    CONF_TOPIC_PREFIX,
    CONF_BROKER_USERNAME,
    CONF_BROKER_PASSWORD,
)
ABORT_ALREADY_IN_COMMUNITY: Final = "already_in_community"
ABORT_NOT_MEMBER: Final = "not_member"
COMMUNITY_UNIQUE_ID: Final = "community"
MENU_OPTIONS: Final = ["create_community", "join_community"]


def default_address(hass: HomeAssistant) -> str:
    """Where peers reach this home: Home Assistant's internal URL (IP allowed)."""
    try:
        return get_url(hass, prefer_external=False, allow_ip=True)
    except NoURLAvailableError:
        return ""


def valid_address(address: str) -> bool:
    """An http(s) base URL with a host, without query or fragment."""
    try:
        url = URL(address)
    except (ValueError, TypeError):
        return False
    return (
        url.scheme in ("http", "https")
        and bool(url.host)
        and not url.query_string
        and not url.fragment
        and len(address) <= 512
    )


def create_schema(hass: HomeAssistant, currency: str) -> vol.Schema:
    """The create-community form."""
    box = NumberSelectorMode.BOX
    return vol.Schema(
        {
            vol.Required(CONF_COMMUNITY_NAME): TextSelector(),
            vol.Required(CONF_SLOT_MINUTES, default="15"): SelectSelector(
                SelectSelectorConfig(
                    options=[str(m) for m in COMMUNITY_SLOT_MINUTES_CHOICES],
                    mode=SelectSelectorMode.LIST,
                    translation_key="community_slot_minutes",
                )
            ),
            vol.Required(
                CONF_GATE_CLOSURE_LEAD_S, default=DEFAULT_GATE_CLOSURE_LEAD_S
            ): NumberSelector(
                # Bounds depend on the slot length: checked in validate_create, with an
                # error on the field (see gate.py).
                NumberSelectorConfig(min=1, max=3600, step=1, unit_of_measurement="s", mode=box)
            ),
            vol.Required(CONF_FEE, default=DEFAULT_FEE): NumberSelector(
                NumberSelectorConfig(
                    min=0, step="any", unit_of_measurement=f"{currency}/kWh", mode=box
                )
            ),
            vol.Required(CONF_CREDIT_LIMIT, default=DEFAULT_CREDIT_LIMIT): NumberSelector(
                NumberSelectorConfig(min=0, step="any", unit_of_measurement=currency, mode=box)
            ),
            vol.Required(CONF_FAIR_SHARE_PCT, default=DEFAULT_FAIR_SHARE_PCT): NumberSelector(
                NumberSelectorConfig(
                    min=1, max=100, step=1, unit_of_measurement="%", mode=NumberSelectorMode.SLIDER
                )
            ),
            vol.Required(CONF_MAX_MEMBERS, default=DEFAULT_MAX_MEMBERS): NumberSelector(
                NumberSelectorConfig(min=2, max=1000, step=1, mode=box)
            ),
            vol.Required(CONF_ADDRESS, default=default_address(hass)): TextSelector(
                TextSelectorConfig(type=TextSelectorType.URL)
            ),
            vol.Required(CONF_TRANSPORT, default=TRANSPORT_CHOICES[0]): SelectSelector(
                SelectSelectorConfig(
                    options=list(TRANSPORT_CHOICES),
                    mode=SelectSelectorMode.LIST,
                    translation_key="community_transport",
                )
            ),
            vol.Optional(CONF_BROKER_URL): TextSelector(),
            vol.Optional(CONF_TOPIC_PREFIX, default=DEFAULT_PREFIX): TextSelector(),
            **_credential_fields(),
        }
    )


def _credential_fields() -> dict[Any, Any]:
    return {
        vol.Optional(CONF_BROKER_USERNAME): TextSelector(
            TextSelectorConfig(autocomplete="username")
        ),
        vol.Optional(CONF_BROKER_PASSWORD): TextSelector(
            TextSelectorConfig(type=TextSelectorType.PASSWORD, autocomplete="current-password")
        ),
    }


def _broker_input(
    user_input: Mapping[str, Any], url: str, prefix: str
) -> tuple[dict[str, Any], BrokerConfig | None, dict[str, str]]:
    """The broker fields of a form (subentry data), their config and errors by field."""
    username = str(user_input.get(CONF_BROKER_USERNAME, "") or "").strip()
    password = str(user_input.get(CONF_BROKER_PASSWORD, "") or "")
    data: dict[str, Any] = {CONF_TRANSPORT: "mqtt", CONF_BROKER_URL: url, CONF_TOPIC_PREFIX: prefix}
    if username:
        data[CONF_BROKER_USERNAME] = username
    if password:
        data[CONF_BROKER_PASSWORD] = password
    try:
        check_prefix(prefix)
    except BrokerError:
        return data, None, {CONF_TOPIC_PREFIX: ERROR_INVALID_PREFIX}
    try:
        config = BrokerConfig.from_url(
            url, prefix=prefix, username=username or None, password=password or None
        )
    except BrokerError:
        return data, None, {CONF_BROKER_URL: ERROR_INVALID_BROKER}
    return data, config, {}


async def async_check_broker_input(hass: HomeAssistant, data: Mapping[str, Any]) -> dict[str, str]:
    """Connect once to the broker of checked subentry data (MQTT only); errors for the
    form (nothing for HTTP)."""
    if data.get(CONF_TRANSPORT) != "mqtt":
        return {}
    config = BrokerConfig.from_url(
        str(data[CONF_BROKER_URL]),
        prefix=str(data[CONF_TOPIC_PREFIX]),
        username=data.get(CONF_BROKER_USERNAME),
        password=data.get(CONF_BROKER_PASSWORD),
    )
    state = await async_check_broker(hass.loop, config)
    if state.status is BrokerStatus.CONNECTED:
        return {}
    if state.status in (BrokerStatus.BAD_CREDENTIALS, BrokerStatus.NOT_AUTHORIZED):
        return {"base": ERROR_BROKER_REFUSED}
    return {"base": ERROR_BROKER_UNREACHABLE}


def is_broker_community(data: Mapping[str, Any]) -> bool:
    """Whether a community subentry's data is on an MQTT broker (created, joining or a
    member: the broker keys are kept through every stage)."""
    return data.get(CONF_TRANSPORT) == "mqtt"


def broker_schema() -> dict[Any, Any]:
    """The broker fields of the reconfigure form: URL, username and password (the
    password is never prefilled: an empty one keeps the stored password)."""
    return {vol.Required(CONF_BROKER_URL): TextSelector(), **_credential_fields()}


def broker_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """The stored broker URL and username as form values (never the password)."""
    return {key: data[key] for key in (CONF_BROKER_URL, CONF_BROKER_USERNAME) if data.get(key)}


async def async_validate_broker_change(
    hass: HomeAssistant, stored: Mapping[str, Any], user_input: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check new broker settings for a community subentry; return (its new data, errors by
    field). An empty password keeps the stored one; an empty username means no login (the
    password goes too). The topic prefix is the community's and stays. When the URL or
    the credentials changed, the broker is connected to once, like at set-up: a broker
    that does not answer is an error on the URL, one that refuses the login an error on
    the password. Unchanged settings are not checked (a broker that is down for a while
    must not block changing the home's prices)."""
    url = str(user_input.get(CONF_BROKER_URL, "") or "").strip()
    prefix = str(stored.get(CONF_TOPIC_PREFIX) or DEFAULT_PREFIX)
    username = str(user_input.get(CONF_BROKER_USERNAME, "") or "").strip()
    password = str(user_input.get(CONF_BROKER_PASSWORD, "") or "")
    if username and not password:
        password = str(stored.get(CONF_BROKER_PASSWORD, "") or "")
    form = {CONF_BROKER_USERNAME: username, CONF_BROKER_PASSWORD: password if username else ""}
    broker, config, errors = _broker_input(form, url, prefix)
    data = {k: v for k, v in stored.items() if k not in BROKER_KEYS} | broker
    if config is None:
        return data, errors
    if all(data.get(k) == stored.get(k) for k in BROKER_KEYS):
        return data, {}
    errors = await async_check_broker_input(hass, data)
    if errors.get("base") == ERROR_BROKER_REFUSED:
        return data, {CONF_BROKER_PASSWORD: ERROR_BROKER_REFUSED}
    if errors:
        return data, {CONF_BROKER_URL: ERROR_BROKER_UNREACHABLE}
    return data, {}


def join_schema(hass: HomeAssistant) -> vol.Schema:
    """The join form."""
    return vol.Schema(
        {
            vol.Required(CONF_INVITATION): TextSelector(TextSelectorConfig(multiline=True)),
            vol.Required(CONF_ADDRESS, default=default_address(hass)): TextSelector(
                TextSelectorConfig(type=TextSelectorType.URL)
            ),
            **_credential_fields(),
        }
    )


def _minor(value: Any, currency: str, default: float) -> int:
    return fixed_price_to_minor(value if isinstance(value, int | float) else default, currency)


def validate_create(
    user_input: Mapping[str, Any], home: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check the create form; return (subentry data, errors by field).

    Grid prices of the rules come from the home's fixed prices (defaults when the home
    uses price entities): every member clears with the same integers.
    """
    errors: dict[str, str] = {}
    currency = str(home.get(CONF_CURRENCY, "EUR"))
    name = str(user_input.get(CONF_COMMUNITY_NAME, "")).strip()
    if not 0 < len(name) <= MAX_NAME_LEN:
        errors[CONF_COMMUNITY_NAME] = ERROR_NAME_REQUIRED
    address = str(user_input.get(CONF_ADDRESS, "")).strip().rstrip("/")
    mqtt = user_input.get(CONF_TRANSPORT) == "mqtt"
    broker: dict[str, Any] = {}
    if mqtt:  # homes meet on the broker: no address of this home is announced
        url = str(user_input.get(CONF_BROKER_URL, "") or "").strip()
        prefix = str(user_input.get(CONF_TOPIC_PREFIX, "") or DEFAULT_PREFIX).strip()
        broker, _config, broker_errors = _broker_input(user_input, url, prefix)
        errors.update(broker_errors)
    elif not valid_address(address):
        errors[CONF_ADDRESS] = ERROR_INVALID_ADDRESS
    try:
        fee = fixed_price_to_minor(user_input[CONF_FEE], currency)
        limit = fixed_price_to_minor(user_input[CONF_CREDIT_LIMIT], currency) * 1000
    except InvalidPriceError:
        errors["base"] = ERROR_INVALID_AMOUNT
        return {}, errors
    try:
        rules = community_rules(
            slot_minutes=int(user_input[CONF_SLOT_MINUTES]),
            gate_closure_lead_s=round(user_input[CONF_GATE_CLOSURE_LEAD_S]),
            fee=fee,
            credit_limit_base=limit,
            fair_share_pct=round(user_input[CONF_FAIR_SHARE_PCT]),
            max_members=round(user_input[CONF_MAX_MEMBERS]),
            import_price=_minor(home.get(CONF_IMPORT_PRICE), currency, DEFAULT_IMPORT_PRICE),
            feed_in_tariff=_minor(home.get(CONF_EXPORT_PRICE), currency, DEFAULT_EXPORT_PRICE),
        )
    except (CommunityError, ValueError):
        errors["base"] = ERROR_INVALID_RULES
        return {}, errors
    # The form checks what the user chose; a test's forced short slots replace both.
    lead_s = round(user_input[CONF_GATE_CLOSURE_LEAD_S])
    slot_s = int(user_input[CONF_SLOT_MINUTES]) * 60
    if (problem := gate_lead_error(lead_s, slot_s)) is not None:
        errors[CONF_GATE_CLOSURE_LEAD_S] = problem
    data = {
        CONF_COMMUNITY_ACTION: CommunityAction.CREATE.value,
        CONF_COMMUNITY_NAME: name,
        CONF_ADDRESS: address,
        CONF_RULES: rules.to_dict(),
        **broker,
    }
    return data, errors


async def validate_join(
    hass: HomeAssistant, user_input: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str], str]:
    """Check the join form and that the inviter answers; return (data, errors, name)."""
    errors: dict[str, str] = {}
    text = "".join(str(user_input.get(CONF_INVITATION, "")).split())
    address = str(user_input.get(CONF_ADDRESS, "")).strip().rstrip("/")
    try:
        invitation = Invitation.decode(text)
    except InvitationError:
        errors[CONF_INVITATION] = ERROR_INVALID_INVITATION
        return {}, errors, ""
    if invitation.expired(federation.now_ms()):
        errors[CONF_INVITATION] = ERROR_INVITATION_EXPIRED
        return {}, errors, ""
    if invitation.transport == "mqtt":  # the broker named by the invitation, no address
        broker, config, errors = _broker_input(user_input, invitation.broker, invitation.prefix)
        if config is None:
            errors = {CONF_INVITATION: ERROR_INVALID_INVITATION}
        else:
            errors = await async_check_broker_input(hass, broker)
        data = {
            CONF_COMMUNITY_ACTION: CommunityAction.JOIN.value,
            CONF_INVITATION: text,
            CONF_ADDRESS: "",
            **broker,
        }
        return data, errors, f"Community {invitation.community[:8]}"
    if not valid_address(address):
        errors[CONF_ADDRESS] = ERROR_INVALID_ADDRESS
    if errors:
        return {}, errors, ""
    info = await HttpTransport(hass, lambda: address, attempts=1).async_info(invitation.address)
    if info is None:
        errors["base"] = ERROR_CANNOT_CONNECT
    elif info.get("community") != invitation.community:
        errors["base"] = ERROR_WRONG_COMMUNITY
    data = {
        CONF_COMMUNITY_ACTION: CommunityAction.JOIN.value,
        CONF_INVITATION: text,
        CONF_ADDRESS: address,
    }
    return data, errors, f"Community {invitation.community[:8]}"


async def _async_join_now(entry: ConfigEntry[Any], data: Mapping[str, Any]) -> str | None:
    """Join with the entry's running link (the "Add community" flow); None when joined
    (and the acknowledgement of the welcome is out), else the reason code of the link
    (``http_<status>``, ``timeout``), or ``invitation`` / ``not_set_up``."""
    link = entry_link(entry)
    if link is None or link.joined:
        return "not_set_up"
    try:
        await link.async_join(str(data[CONF_INVITATION]), str(data[CONF_ADDRESS]))
    except federation.FederationError:
        return "invitation"
    reason = await link.async_wait_joined(JOIN_FLOW_TIMEOUT_S, resend_s=JOIN_FLOW_RESEND_S)
    if reason is None:
        await link.async_drain()
    return reason


def community_subentry(title: str, data: Mapping[str, Any]) -> ConfigSubentryData:
    """The subentry the config flow creates with the entry."""
    return ConfigSubentryData(
        data=dict(data),
        subentry_type=SUBENTRY_COMMUNITY,
        title=title,
        unique_id=COMMUNITY_UNIQUE_ID,
    )


class CommunitySubentryFlow(ConfigSubentryFlow):
    """Add a community to an existing entry: create one or join one."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Choose between creating and joining (one community per home)."""
        entry = self._get_entry()
        if any(s.subentry_type == SUBENTRY_COMMUNITY for s in entry.subentries.values()):
            return self.async_abort(reason=ABORT_ALREADY_IN_COMMUNITY)
        return self.async_show_menu(step_id="user", menu_options=MENU_OPTIONS)

    async def async_step_create_community(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Name and rules of a new community."""
        entry = self._get_entry()
        currency = str(entry.data.get(CONF_CURRENCY, "EUR"))
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors = validate_create(user_input, entry.data)
            if not errors:
                errors = await async_check_broker_input(self.hass, data)
            if not errors:
                return self.async_create_entry(
                    title=data[CONF_COMMUNITY_NAME], data=data, unique_id=COMMUNITY_UNIQUE_ID
                )
        return self.async_show_form(
            step_id="create_community",
            data_schema=self.add_suggested_values_to_schema(
                create_schema(self.hass, currency), user_input
            ),
            errors=errors,
        )

    _join_input: dict[str, Any] | None = None
    _join_data: dict[str, Any] | None = None
    _join_task: asyncio.Task[str | None] | None = None
    _join_error: str | None = None

    async def async_step_join_community(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Paste an invitation and confirm the address peers reach this home at; then
        join (``joining``). A failed join comes back here with its reason."""
        errors: dict[str, str] = {}
        if self._join_error is not None:
            errors["base"], self._join_error = self._join_error, None
            user_input, self._join_input = self._join_input, None
        elif user_input is not None:
            data, errors, _title = await validate_join(self.hass, user_input)
            if not errors:
                self._join_input, self._join_data = user_input, data
                return await self.async_step_joining()
        return self.async_show_form(
            step_id="join_community",
            data_schema=self.add_suggested_values_to_schema(join_schema(self.hass), user_input),
            errors=errors,
        )

    async def async_step_joining(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Join now and show progress until the inviter's welcome is acknowledged."""
        if self._join_task is None:
            assert self._join_data is not None
            self._join_task = self.hass.async_create_task(
                _async_join_now(self._get_entry(), self._join_data), "peer_energy join flow"
            )
        if not self._join_task.done():
            return self.async_show_progress(
                step_id="joining",
                progress_action="joining",
                progress_task=self._join_task,
                description_placeholders={"address": str((self._join_data or {})[CONF_ADDRESS])},
            )
        reason = self._join_task.result()
        self._join_task = None
        if reason is None:
            return self.async_show_progress_done(next_step_id="joined")
        self._join_error = JOIN_ERRORS.get(reason, ERROR_JOIN_FAILED)
        return self.async_show_progress_done(next_step_id="join_community")

    async def async_step_joined(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Joined: the subentry carries the community's name (the entry reloads)."""
        link = entry_link(self._get_entry())
        if link is None or not link.joined:  # pragma: no cover - stopped meanwhile
            return self.async_abort(reason=ABORT_NOT_MEMBER)
        return self.async_create_entry(
            title=link.community_name or "",
            data={
                CONF_COMMUNITY_ACTION: CommunityAction.MEMBER.value,
                CONF_COMMUNITY_ID: link.community_id,
                CONF_COMMUNITY_NAME: link.community_name,
                CONF_ADDRESS: link.address,
            },
            unique_id=COMMUNITY_UNIQUE_ID,
        )
