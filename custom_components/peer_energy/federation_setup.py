"""Wiring of identity, ledger and federation into a config entry, and the community actions.

At set-up (``async_setup_federation``):

1. load or create the home's key pair (``ledger.identity_store``, a private ``Store``);
2. restore the federation state and carry out what the ``community`` subentry asks:
   found a community (``create``), start joining (``join``, finished in the background:
   the subentry becomes ``member`` and the entry reloads; the join request is resent while
   no welcome comes, and a join pending before a restart is resumed), or leave when the
   user deleted the subentry;
3. open the ledger (one SQLite file per community, ``local`` before joining) in the
   executor;
4. once the caller has put the link into ``entry.runtime_data`` (where the HTTP views
   find it), register the views (once per run), start the join, the slot timers, and
   probe our own address once Home Assistant has started.

Everything is undone by ``entry.async_on_unload`` callbacks: timers stopped, deliveries
cancelled, state saved, ledger closed.

Actions (registered once in ``async_setup``): ``peer_energy.create_invitation`` (admin,
returns the invitation and its local expiry as the action's response; the
"Latest invitation" image shows it as a QR code; no notification) and
``peer_energy.remove_member`` (admin).

Removing the entry (``async_remove_home``) tells the community this home leaves and
deletes the home's stores: key pair, federation state, ledgers, market and savings files.
Every text a user sees (errors, repairs) is translated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import (
    ConfigEntryError,
    HomeAssistantError,
    Unauthorized,
    UnknownUser,
)
from homeassistant.helpers import config_validation as cv, issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.start import async_at_started
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
import voluptuous as vol

from .announce import short
from .community_flow import BROKER_KEYS
from .const import (
    CONF_ADDRESS,
    CONF_BROKER_PASSWORD,
    CONF_COMMUNITY_ACTION,
    CONF_COMMUNITY_ID,
    CONF_COMMUNITY_NAME,
    CONF_INVITATION,
    CONF_RULES,
    DOMAIN,
    LOGGER,
    SUBENTRY_COMMUNITY,
    CommunityAction,
)
from .core.federation.community import (
    CommunityError,
    CommunityRules,
    Invitation,
    InvitationError,
)
from .core.trust.credit import CreditPolicy
from .errors import ActionRefusedError
from .federation import (
    ISSUE_JOIN_FAILED,
    SELF_PROBE_INTERVAL_S,
    FederationError,
    FederationLink,
    federation_store,
)
from .http import HttpTransport, async_register_views
from .ledger import LedgerSetupError, PeerLedger, async_load_identity, identity_store
from .mqtt_transport import BrokerError, MqttCarrier, broker_config
from .runtime import PeerEnergyConfigEntry, async_serving_link
from .transport import Carrier, HttpCarrier

LOCAL_COMMUNITY: Final = "local"
JOIN_TIMEOUT_S: Final = 60.0
# Pauses before the join request is sent again while no welcome has come (within the
# timeout above): a lost welcome costs seconds, not a repair issue.
JOIN_RESEND_S: Final = (5.0, 10.0, 20.0)
SERVICE_CREATE_INVITATION: Final = "create_invitation"
SERVICE_REMOVE_MEMBER: Final = "remove_member"
ATTR_TTL_HOURS: Final = "ttl_hours"
ATTR_MEMBER: Final = "member"
DEFAULT_TTL_HOURS: Final = 168
# How long removing the entry waits for the leave message to reach the members.
LEAVE_TIMEOUT_S: Final = 10.0
# Repair texts of a failed join, by the reason the link reports.
JOIN_FAILED_KEYS: Final = {
    "http_0": "join_failed_no_answer",
    "http_403": "join_failed_refused",
    "http_422": "join_failed_address",  # the inviter cannot reach this home's address
    "timeout": "join_failed_timeout",
}


def community_ledger_path(hass: HomeAssistant, entry_id: str, community: str) -> Path:
    """One ledger file per community (balances of different communities never mix)."""
    name = (
        f"ledger_{entry_id}.sqlite"
        if community == LOCAL_COMMUNITY
        else (f"ledger_{entry_id}_{community}.sqlite")
    )
    return Path(hass.config.path(".storage", DOMAIN, name))


def _ledger_files(hass: HomeAssistant, entry_id: str) -> list[Path]:
    """This entry's ledger files (every community, with SQLite's side files)."""
    folder = Path(hass.config.path(".storage", DOMAIN))
    return sorted(folder.glob(f"ledger_{entry_id}*.sqlite*")) if folder.is_dir() else []


def community_subentry(entry: PeerEnergyConfigEntry) -> ConfigSubentry | None:
    """The entry's community subentry, if any."""
    return next(
        (s for s in entry.subentries.values() if s.subentry_type == SUBENTRY_COMMUNITY), None
    )


@callback
def async_take_broker_password(hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> None:
    """Move the broker password a new entry brought in its data (the config flow hands it
    over there: a new entry's subentries are sent back to the browser, its data is not)
    into the community subentry, where the carrier reads it."""
    password = entry.data.get(CONF_BROKER_PASSWORD)
    if password is None:
        return
    subentry = community_subentry(entry)
    if subentry is not None:
        hass.config_entries.async_update_subentry(
            entry, subentry, data={**subentry.data, CONF_BROKER_PASSWORD: password}
        )
    data = {k: v for k, v in entry.data.items() if k != CONF_BROKER_PASSWORD}
    hass.config_entries.async_update_entry(entry, data=data)


def _member_data(link: FederationLink, previous: Mapping[str, Any]) -> dict[str, Any]:
    """The subentry data of a member (the broker and its credentials kept)."""
    return {
        CONF_COMMUNITY_ACTION: CommunityAction.MEMBER.value,
        CONF_COMMUNITY_ID: link.community_id,
        CONF_COMMUNITY_NAME: link.community_name,
        CONF_ADDRESS: link.address,
        **{key: previous[key] for key in BROKER_KEYS if key in previous},
    }


def _carrier(hass: HomeAssistant, subentry: ConfigSubentry | None, http: HttpTransport) -> Carrier:
    """The community's carrier: MQTT when the subentry (or the invitation it joins) names
    a broker, else HTTP. A broker that cannot be used falls back to HTTP with an error in
    the log (the forms refuse such input)."""
    data: Mapping[str, Any] = subentry.data if subentry is not None else {}
    invitation = None
    if CONF_INVITATION in data:
        try:
            invitation = Invitation.decode(str(data[CONF_INVITATION]))
        except InvitationError:
            invitation = None
    try:
        config = broker_config(data, invitation)
    except BrokerError as err:
        LOGGER.error("The community's broker cannot be used: %s", err)
        config = None
    if config is None:
        return HttpCarrier(http)
    return MqttCarrier(hass.loop, config)


async def async_setup_federation(
    hass: HomeAssistant, entry: PeerEnergyConfigEntry
) -> tuple[PeerLedger, FederationLink, Callable[[], None]]:
    """Identity, federation and ledger of an entry (see the module docstring).

    Returns the ledger, the link and a callback that starts the link: the caller puts
    both into ``entry.runtime_data`` first, where the HTTP views find the link (a joining
    home's welcome may arrive before the set-up ends). The link stops and the ledger
    closes on unload, also when the set-up fails after this.

    Raises ``ConfigEntryError`` (not retried) when the key store is damaged or lost while
    the home already has a ledger: a new key would make the home a stranger to its own
    ledger and community, so the user restores the file from a backup instead.
    """
    store = identity_store(hass, entry.entry_id)
    ledgers = await hass.async_add_executor_job(_ledger_files, hass, entry.entry_id)
    if ledgers and await store.async_load() is None:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="identity_lost",
            translation_placeholders={"file": f".storage/{store.key}"},
        )
    try:
        identity, _pending = await async_load_identity(store)
    except LedgerSetupError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="identity_damaged",
            translation_placeholders={"file": f".storage/{store.key}"},
        ) from err
    link: FederationLink | None = None
    transport = HttpTransport(hass, lambda: (link.address if link else None) or "")
    subentry = community_subentry(entry)
    link = FederationLink(hass, entry.entry_id, identity, _carrier(hass, subentry, transport))
    try:
        status = await link.async_load()
    except FederationError as err:
        LOGGER.error("Starting without the stored community: %s", err)
        status = "none"
    action = subentry.data.get(CONF_COMMUNITY_ACTION) if subentry is not None else None

    if subentry is None and status != "none":
        await _async_leave(hass, link)
    elif subentry is not None and status == "none" and action == CommunityAction.CREATE:
        try:
            rules = CommunityRules.from_dict(subentry.data[CONF_RULES])
            await link.async_found(
                str(subentry.data[CONF_COMMUNITY_NAME]), rules, str(subentry.data[CONF_ADDRESS])
            )
        except (CommunityError, KeyError) as err:
            LOGGER.error("Cannot found the community: %s", err)
    if link.joined:  # a join that failed earlier may have completed since
        ir.async_delete_issue(hass, DOMAIN, ISSUE_JOIN_FAILED)
    if subentry is not None and link.joined and action != CommunityAction.MEMBER:
        # The update listener is not registered yet: no reload.
        hass.config_entries.async_update_subentry(
            entry,
            subentry,
            title=link.community_name or subentry.title,
            data=_member_data(link, subentry.data),
        )

    community = link.community_id if link.joined and link.community_id else LOCAL_COMMUNITY
    policy = (
        CreditPolicy(base_limit=link.rules.credit_limit_base) if link.rules is not None else None
    )
    ledger = await PeerLedger.async_open(
        hass,
        entry.entry_id,
        community,
        policy=policy,
        path=community_ledger_path(hass, entry.entry_id, community),
    )
    link.ledger = ledger
    if link.peer is not None and link.joined:
        ledger.set_keyring(link.peer.membership.keyring)
        link.peer.set_balances(ledger.balances())

    async def _stop() -> None:
        await link.async_stop()
        await ledger.async_close()

    entry.async_on_unload(_stop)

    async def _async_record_joined() -> None:
        # The acknowledgement of the welcome goes out first (confirmed joins): the
        # subentry update below reloads the entry, which stops the link.
        try:
            await link.async_drain()
        except TimeoutError:  # pragma: no cover - deliveries are bounded by the transport
            LOGGER.debug("Deliveries still in flight after joining")
        current = community_subentry(entry)
        if current is not None:
            hass.config_entries.async_update_subentry(
                entry,
                current,
                title=link.community_name or current.title,
                data=_member_data(link, current.data),
            )
        # Without a subentry the join ran in the "Add community" flow, which adds it.

    @callback
    def _joined() -> None:
        entry.async_create_background_task(hass, _async_record_joined(), f"{DOMAIN} joined")

    @callback
    def _left() -> None:
        hass.async_create_task(_async_forget_and_drop(hass, entry, link))

    link.async_on_joined(_joined)
    link.async_on_left(_left)

    wants_join = status == "joining" or (status == "none" and action == CommunityAction.JOIN)

    @callback
    def _probe(_: Any = None) -> None:
        entry.async_create_background_task(hass, link.async_probe_self(), f"{DOMAIN} probe")

    @callback
    def _start() -> None:
        async_register_views(hass)
        if subentry is not None and not link.joined and wants_join:
            entry.async_create_background_task(
                hass, _async_join(hass, entry, link, subentry), f"{DOMAIN} join"
            )
        link.async_start()
        if link.joined:
            entry.async_on_unload(async_at_started(hass, _probe))
            entry.async_on_unload(
                async_track_time_interval(hass, _probe, timedelta(seconds=SELF_PROBE_INTERVAL_S))
            )

    return ledger, link, _start


async def _async_join(
    hass: HomeAssistant,
    entry: PeerEnergyConfigEntry,
    link: FederationLink,
    subentry: ConfigSubentry,
) -> None:
    """Send the join request and wait for the welcome; tell the user if it fails.

    The request is resent a few times while no welcome has come, and a join pending
    from before a restart is resumed: the inviter answers a repeated join from this
    home's key with the welcome again. A join whose address or invitation the user
    changed since (the repair's fix flow) starts again with them. If the join completes
    after a ``join_failed`` issue was raised, the issue is deleted
    (``FederationLink._joined_now``).
    """
    invitation = str(subentry.data[CONF_INVITATION])
    address = str(subentry.data[CONF_ADDRESS])
    stored = link._join
    try:
        if stored is not None and stored == {"invitation": invitation, "address": address}:
            status = await link.async_resume_join()
        else:
            # A corrected address keeps the invitation (the inviter decides on its expiry).
            same = stored is not None and stored["invitation"] == invitation
            status = await link.async_join(invitation, address, resume=same)
    except FederationError as err:
        LOGGER.warning("Joining the community failed: %s", err)
        _join_failed(hass, entry, "join_failed_invitation", address)
        return
    reason = await link.async_wait_joined(JOIN_TIMEOUT_S, resend_s=JOIN_RESEND_S)
    if reason is None or reason == "stopped":
        return
    LOGGER.warning("Joining the community failed: %s (HTTP status %s)", reason, status)
    _join_failed(hass, entry, JOIN_FAILED_KEYS.get(reason, ISSUE_JOIN_FAILED), address, status)


def _join_failed(
    hass: HomeAssistant,
    entry: PeerEnergyConfigEntry,
    translation_key: str,
    address: str,
    status: int = 0,
) -> None:
    """The repair of a failed join; its fix flow (``repairs.py``) corrects the address or
    takes a new invitation and tries again."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        ISSUE_JOIN_FAILED,
        is_fixable=True,
        is_persistent=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=translation_key,
        translation_placeholders={"status": str(status), "address": address},
        data={"entry_id": entry.entry_id},
    )


async def _async_leave(hass: HomeAssistant, link: FederationLink) -> None:
    """The community subentry was deleted: leave (best effort) and forget the community."""
    if link.joined:
        try:
            await link.async_leave()
        except FederationError as err:  # pragma: no cover - checked by link.joined
            LOGGER.warning("Leaving the community: %s", err)
    await link.async_forget()
    ir.async_delete_issue(hass, DOMAIN, ISSUE_JOIN_FAILED)


async def _async_forget_and_drop(
    hass: HomeAssistant, entry: PeerEnergyConfigEntry, link: FederationLink
) -> None:
    """We were removed (or left): forget the community and drop its subentry (reloads)."""
    await link.async_forget()
    if (subentry := community_subentry(entry)) is not None:
        hass.config_entries.async_remove_subentry(entry, subentry.subentry_id)


async def async_remove_home(
    hass: HomeAssistant, entry_id: str, subentry: ConfigSubentry | None = None
) -> None:
    """The entry is deleted: leave the community (best effort) and delete the home's files.

    Runs after the unload, so the link is rebuilt from its store (and, on a broker, from
    the community subentry's broker) only to say goodbye.
    What stays: ledger exports the user made (``peer_energy_exports``) and the other
    members' own records of this home's trades, which are theirs.
    """
    store = identity_store(hass, entry_id)
    if (data := await store.async_load()) is not None and data.get("seed"):
        try:
            identity, _pending = await async_load_identity(store)
            carrier = _carrier(hass, subentry, HttpTransport(hass, lambda: ""))
            link = FederationLink(hass, entry_id, identity, carrier, schedule=False)
            if await link.async_load() == "member" and link.joined:
                async with asyncio.timeout(LEAVE_TIMEOUT_S):
                    await carrier.async_start()  # a broker: connect to say goodbye
                    await carrier.async_ready(LEAVE_TIMEOUT_S)
                    await link.async_leave()
            await link.async_stop()
        except (HomeAssistantError, TimeoutError) as err:
            LOGGER.warning("Could not tell the community that this home leaves: %s", err)
    await federation_store(hass, entry_id).async_remove()
    await store.async_remove()
    for key in (f"{DOMAIN}.market.{entry_id}", f"{DOMAIN}.savings.{entry_id}"):
        await Store[dict[str, Any]](hass, 1, key).async_remove()

    def remove_files() -> None:
        for path in _ledger_files(hass, entry_id):
            path.unlink(missing_ok=True)

    await hass.async_add_executor_job(remove_files)
    ir.async_delete_issue(hass, DOMAIN, ISSUE_JOIN_FAILED)


# --- Actions -----------------------------------------------------------------------------------


async def _require_admin(hass: HomeAssistant, call: ServiceCall) -> None:
    if call.context.user_id:
        user = await hass.auth.async_get_user(call.context.user_id)
        if user is None:
            raise UnknownUser(context=call.context)
        if not user.is_admin:
            raise Unauthorized(context=call.context)


def _member_link(hass: HomeAssistant) -> FederationLink:
    link = async_serving_link(hass)
    if link is None or not link.joined:
        raise ActionRefusedError("not_in_community")
    return link


async def _async_create_invitation(call: ServiceCall) -> ServiceResponse:
    hass = call.hass
    await _require_admin(hass, call)
    link = _member_link(hass)
    hours = int(call.data[ATTR_TTL_HOURS])
    try:
        invitation = await link.async_create_invitation(hours * 3_600_000)
    except FederationError as err:
        LOGGER.debug("No invitation: %s", err)
        raise HomeAssistantError(
            translation_domain=DOMAIN, translation_key="community_busy"
        ) from err
    # The one-time secret goes to the administrator who asked (this response) and to the
    # "Latest invitation" image, never into a notification every user can read.
    return {
        "invitation": invitation.encode(),
        **invitation_expiry(invitation.expires_ms),
        "community": link.community_id,
        "community_name": link.community_name,
    }


def invitation_expiry(expires_ms: int) -> dict[str, str]:
    """An invitation's expiry in Home Assistant's time zone: ``expires`` (ISO 8601 with
    the offset) and ``expires_local`` (date, time and zone, for people)."""
    local = dt_util.as_local(dt_util.utc_from_timestamp(expires_ms / 1000))
    return {
        "expires": local.isoformat(timespec="seconds"),
        "expires_local": local.strftime("%Y-%m-%d %H:%M %Z"),
    }


async def _async_remove_member(call: ServiceCall) -> None:
    hass = call.hass
    await _require_admin(hass, call)
    link = _member_link(hass)
    if not link.is_admin:
        raise ActionRefusedError("not_admin")
    wanted = str(call.data[ATTR_MEMBER]).strip().lower()
    matches = [m for m in link.peer.roster() if m.startswith(wanted)] if link.peer else []
    if len(wanted) < 8 or len(matches) != 1 or matches[0] == link.member_key:
        raise ActionRefusedError("unknown_member", {"member": wanted[:16]})
    try:
        await link.async_remove(matches[0])
    except FederationError as err:
        LOGGER.warning("Could not remove member %s: %s", short(matches[0]), err)
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="remove_member_failed",
            translation_placeholders={"member": short(matches[0])},
        ) from err
    LOGGER.info("Removed member %s", short(matches[0]))


@callback
def async_setup_federation_actions(hass: HomeAssistant) -> None:
    """Register the community actions (once, in ``async_setup``)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_CREATE_INVITATION,
        _async_create_invitation,
        schema=vol.Schema(
            {
                vol.Optional(ATTR_TTL_HOURS, default=DEFAULT_TTL_HOURS): vol.All(
                    vol.Coerce(int), vol.Range(min=1, max=24 * 30)
                )
            }
        ),
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_REMOVE_MEMBER,
        _async_remove_member,
        schema=vol.Schema({vol.Required(ATTR_MEMBER): cv.string}),
    )
