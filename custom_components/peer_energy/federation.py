"""The federation link: one home's protocol peer, driven by Home Assistant's clock.

``FederationLink`` wraps the sans-I/O ``core.protocol.Peer``:

* it hands incoming messages to the peer (from the views in ``http.py``, or from the
  broker through the MQTT carrier) and the time to ``Peer.tick``, scheduling the next
  tick at ``Peer.next_wakeup_ms`` with ``async_track_point_in_utc_time``;
* it hands the peer's ``Send``/``Broadcast`` outputs to its ``transport.Carrier``: HTTP
  (``HttpCarrier`` around ``http.HttpTransport``, all-to-all) or MQTT
  (``mqtt_transport.MqttCarrier``: a fan-out peer, sealed frames on the community's
  broker), each delivery a background task so the event loop never waits on the network;
  a broker that is away or refuses the home raises a repair naming it and why;
* it turns the peer's events into Home Assistant through an ``announce.Announcer``:
  result listeners (the slot clock of ``market.py`` subscribes), bus events and translated
  persistent notifications when a peer joins or leaves or a device is enrolled, a
  signal when a neighbour becomes unreachable or reachable again, and ledger entries for
  final slots;
* it persists what a restart needs in a private ``Store``
  (``.storage/peer_energy.federation.<entry_id>``): the charter, the signed membership
  records, the announced address, invitations with their one-time secrets (open ones, and
  used ones while the member they admitted is current, so a repeated join gets the welcome
  again), the fairness state after the newest final slot, which slots were settled and,
  on a broker, the community keys.

The interface the slot clock uses (``FederationLike`` in ``market.py``):
``async_submit_orders``, ``async_add_result_listener``, ``peers_online``, ``members``,
``gate_closure_lead_ms``, ``slot_ms`` and ``member_key``.

Settlement (recorded by ``recording.LedgerRecorder``; this module decides when to settle):
a final slot is recorded in this home's own chain (one ``slot`` entry with
the attested hashes and this home's fills); its fills are then countersigned as trades
(``trade_terms``/``trade_sig``) and recorded in fill order, which moves the credit
balances. After the slot the slot clock hands in the home's metered grid export and
import (``async_report_delivery``); the peers exchange signed delivery reports and every
home records the same delivery settlements (shortfall paid back at the community import
price) and delivery evidence, from which the reputation scores and credit limits follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
import dataclasses
from dataclasses import dataclass
from datetime import datetime
import os
import secrets
import time
from typing import Any, Final, cast

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from .announce import Announcer, short
from .const import CONF_DISPLAY_NAME, DOMAIN, LOGGER
from .core.federation.community import (
    Charter,
    CommunityError,
    CommunityRules,
    Invitation,
    InvitationError,
)
from .core.federation.protocol import (
    Broadcast,
    DeliverySettled,
    DeliveryUnreported,
    DeviceEnrolled,
    EquivocationDetected,
    LedgerRecords,
    LedgerWanted,
    Output,
    Peer,
    PeerJoined,
    PeerLeft,
    PeerReachable,
    PeerUnreachable,
    ProtocolError,
    Rejected,
    Send,
    SlotCleared,
    SlotVoid,
    TradeSigned,
)
from .core.federation.protocol.wire import LEDGER_RECORDS_MAX
from .core.market.clearing import Fill, SlotResult
from .core.market.orders import MarketRules, Order, OrderError
from .core.trust.identity import Identity
from .core.trust.reputation import equivocation_evidence
from .ledger import PeerLedger
from .recording import (
    SIGNAL_LEDGER_UPDATED,
    LedgerRecorder,
)
from .transport import Carrier, HttpCarrier, Parcel, Transport

STORE_VERSION: Final = 1
SETTLED_KEPT: Final = 500
# Reconciliation: the credit records of this many recent slots are asked for after a
# restart and when the ledger refuses a trade it cannot place (a record it missed).
RECONCILE_SLOTS: Final = 24
# After a restart the records of recent slots are asked for again each slot for this many
# slots (the deliveries of trades observed before the restart settle meanwhile).
RECONCILE_AFTER_START_SLOTS: Final = 4
# Bids remembered for sending again when the broker comes back before their gate closure.
BID_SLOTS_KEPT: Final = 4
# How long a join waits for the broker connection before it counts as not answered.
JOIN_READY_S: Final = 10.0
# Messages that commit this home to something: they leave only after the state they
# commit to is saved (the write-ahead rule).
COMMITTING_TYPES: Final = frozenset({"bid", "trade_terms", "trade_sig", "delivery"})
SELF_PROBE_INTERVAL_S: Final = 3600
TEST_SLOT_ENV: Final = "PEER_ENERGY_TEST_SLOT_SECONDS"

# Bus events (documented in docs/community.md).
EVENT_PEER_JOINED: Final = f"{DOMAIN}_peer_joined"
EVENT_PEER_LEFT: Final = f"{DOMAIN}_peer_left"
EVENT_DEVICE_ENROLLED: Final = f"{DOMAIN}_device_enrolled"
EVENT_EQUIVOCATION: Final = f"{DOMAIN}_equivocation"
EVENT_COMMUNITY_JOINED: Final = f"{DOMAIN}_community_joined"
# Dispatcher signal (suffixed with the entry id) sent when an invitation is created.
SIGNAL_INVITATION_CREATED: Final = f"{DOMAIN}_invitation_created"
# Sent (with the entry id appended) when a neighbour becomes unreachable or reachable again.
SIGNAL_REACHABILITY: Final = f"{DOMAIN}_reachability"

# Repair issues (translations in strings.json under "issues").
# Repairs of neighbours' outages made by earlier versions (deleted at start: a neighbour's
# outage is not for this user to fix; the "Unreachable neighbours" sensor shows it).
ISSUE_PEER_UNREACHABLE: Final = "peer_unreachable"
ISSUE_SELF_UNREACHABLE: Final = "address_unreachable"
ISSUE_JOIN_FAILED: Final = "join_failed"
# The community's broker is away; the translation key adds the status (``broker_<status>``).
ISSUE_BROKER: Final = "broker"
BROKER_PROBLEMS: Final = frozenset(
    {"unreachable", "bad_credentials", "not_authorized", "tls_error", "disconnected"}
)
# A lost connection (not refused credentials or TLS) raises its repair only when it lasts
# this long: a broker restart or a short network drop heals itself, bids are resent.
BROKER_GRACE_S: Final = 30
BROKER_TRANSIENT: Final = frozenset({"unreachable", "disconnected"})


class FederationError(HomeAssistantError):
    """A community action cannot be done now (message in English, details in the log)."""


@dataclass(frozen=True, slots=True)
class SlotOutcome:
    """What the community decided for one slot (handed to the slot clock).

    ``result`` is the attested clearing of the slot, or ``None`` when the slot is void
    (``void_reason`` then says why and nothing is recorded). ``own_fills`` are the fills
    in which this home is buyer or seller.
    """

    slot_start_ms: int
    result: SlotResult | None
    void_reason: str | None
    own_fills: tuple[Fill, ...]
    late: bool = False


type ResultListener = Callable[[SlotOutcome], None]


def now_ms() -> int:
    """Wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


def federation_store(hass: HomeAssistant, entry_id: str) -> Store[dict[str, Any]]:
    """The private store of the entry's federation state (holds invitation secrets)."""
    return Store(
        hass, STORE_VERSION, f"{DOMAIN}.federation.{entry_id}", private=True, atomic_writes=True
    )


def _retryable(reason: str) -> bool:
    """Whether a join wait ended for a reason a resent join request may cure."""
    return reason in ("timeout", "http_0", "http_429") or reason.startswith("http_5")


def message_type(data: bytes) -> str:
    """The type of one of our own sealed messages. Canonical JSON sorts the envelope's
    keys, so its ``type`` is the last one before ``v``, after the payload."""
    at = data.rfind(b'"type":"')
    if at < 0:
        return ""
    start = at + len(b'"type":"')
    return data[start : data.find(b'"', start)].decode("ascii", "replace")


# --- Protocol state across restarts ---------------------------------------------------------


def peer_restore(identity: Identity, data: Mapping[str, Any], now: int) -> Peer:
    """Rebuild a peer from ``Peer.snapshot`` data; raises ``FederationError`` if damaged.

    The membership records are verified again (signatures, sponsors, order), exactly as
    a newcomer checks the records of its welcome.
    """
    try:
        # Confirmed joins on every transport (communities stored before them too).
        return Peer.restore(identity, {**data, "confirm_joins": True}, now)
    except ValueError as err:
        raise FederationError(f"stored federation state is damaged: {err}") from err


def forced_slot_seconds() -> int | None:
    """Slots of a few seconds for tests with real processes (never for users).

    ``PEER_ENERGY_TEST_SLOT_SECONDS`` (5 to 60, a divisor of a day), read when a community
    is created: its slots then last that many seconds and gate closure comes 40 % of a
    slot before each (the form's slot length and lead are ignored). Unset, or any other
    value: the form's rules, with their minimum of one minute.
    """
    value = os.environ.get(TEST_SLOT_ENV, "")
    if not value.isdigit() or not 5 <= int(value) <= 60 or 86_400 % int(value):
        return None
    return int(value)


def community_rules(
    *,
    slot_minutes: int,
    gate_closure_lead_s: int,
    fee: int,
    credit_limit_base: int,
    fair_share_pct: int,
    max_members: int,
    import_price: int,
    feed_in_tariff: int,
) -> CommunityRules:
    """Rules from the create form (integers in engine units); raises ``CommunityError``.

    The protocol windows take at most a quarter of the gate closure lead each (10 s at most),
    so digests and attestations finish well before the slot starts.
    """
    slot_seconds = slot_minutes * 60
    if (test_slot := forced_slot_seconds()) is not None:
        slot_seconds = test_slot
        gate_closure_lead_s = test_slot * 2 // 5
    window = max(1, min(10_000, gate_closure_lead_s * 1000 // 4))
    if slot_minutes < 1 or not 0 < fair_share_pct <= 100 or fee < 0 or import_price < 0:
        raise CommunityError("slot length, fair-share cap, fee and prices must be in range")
    market = MarketRules(
        import_price=import_price,
        feed_in_tariff=feed_in_tariff,
        distributor_fee=fee,
        fair_share_bp=fair_share_pct * 100,
        slot_seconds=slot_seconds,
    )
    return CommunityRules(
        market=market,
        gate_closure_lead_s=gate_closure_lead_s,
        sync_window_ms=window,
        attest_window_ms=window,
        credit_limit_base=credit_limit_base,
        max_members=max_members,
    )


# --- The link -------------------------------------------------------------------------------


class FederationLink:
    """One home's place in a community, as Home Assistant runs it."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        identity: Identity,
        transport: Transport | Carrier,
        *,
        store: Store[dict[str, Any]] | None = None,
        clock: Callable[[], int] | None = None,
        schedule: bool = True,
        announce: bool = True,
    ) -> None:
        """Create a link without a peer; use ``async_load``, ``async_found`` or joining.

        ``transport``: a ``transport.Carrier`` (HTTP or MQTT), or a point-to-point
        ``Transport`` (wrapped in an ``HttpCarrier``). ``schedule=False`` leaves ticking to
        the caller; ``announce=False`` keeps events, notifications and repair issues off
        Home Assistant (several homes in one test).
        """
        self.hass = hass
        self.entry_id = entry_id
        self.identity = identity
        self.carrier: Carrier = (
            cast(Carrier, transport) if hasattr(transport, "package") else HttpCarrier(transport)
        )
        self.carrier.attach(self.receive_with, self._on_broker)
        self.announcer = Announcer(hass, enabled=announce)
        self.broker_state: Any = None
        self.broker_grace_s: float = BROKER_GRACE_S
        self._broker_grace: asyncio.TimerHandle | None = None
        self.store = store if store is not None else federation_store(hass, entry_id)
        self.clock: Callable[[], int] = clock or (lambda: now_ms())
        self.peer: Peer | None = None
        self.ledger: PeerLedger | None = None
        self._schedule = schedule
        self._announce = announce
        self._settled: list[int] = []
        self.recorder = LedgerRecorder(self)
        self.deliveries_reported = 0
        self.deliveries_unreported = 0
        # This home's reputation scores (permille) as of the last delivery recorded.
        self._scores: dict[str, int] = {}
        self._join: dict[str, str] | None = None
        self._join_done: asyncio.Future[str | None] | None = None
        self._listeners: list[ResultListener] = []
        self._on_joined: list[Callable[[], None]] = []
        self._on_left: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsub_timer: CALLBACK_TYPE | None = None
        self._timer_at: int | None = None
        self._unreachable: set[str] = set()
        self._stopped = False
        self._retry_after_ms = 0  # after a failed tick (our bug): not before this time
        self.rejected = 0
        self._reconcile_asked: int | None = None
        self._reconcile_until = 0
        self._unreconciled_until = 0  # after a restart: settle only once reconciled
        self._restored = False
        self._bid_slots: list[int] = []  # slots of the latest bids (resent after an outage)
        self._deferred: dict[int, tuple[Fill, ...]] = {}

    @property
    def transport(self) -> Transport:
        """The point-to-point transport of an HTTP carrier (tests wrap it)."""
        return self.carrier.transport  # type: ignore[attr-defined,no-any-return]

    @transport.setter
    def transport(self, value: Transport) -> None:
        self.carrier.transport = value  # type: ignore[attr-defined]

    @property
    def transport_kind(self) -> str:
        """``http`` or ``mqtt``."""
        return self.carrier.kind

    def _set_peer(self, peer: Peer | None, saved: Mapping[str, Any] | None = None) -> None:
        """Use ``peer`` from now on; the carrier follows (topics and keys on a broker)."""
        self.peer = peer
        self.carrier.bind(peer, saved)

    # --- the interface for the slot clock (market.py) ---

    @property
    def stopped(self) -> bool:
        """Whether ``async_stop`` ran (the entry unloads or its set-up failed)."""
        return self._stopped

    @property
    def joined(self) -> bool:
        """True when this home is a member of a community."""
        return self.peer is not None and self.peer.joined

    @property
    def member_key(self) -> str:
        """This home's member id (its public key)."""
        return self.identity.public_key

    @property
    def members(self) -> int:
        """Current members of the community (this home included)."""
        return len(self.peer.roster()) if self.peer is not None and self.joined else 0

    @property
    def neighbours(self) -> tuple[str, ...]:
        """The other current members (member ids, sorted; none before joining)."""
        if self.peer is None or not self.joined:
            return ()
        return tuple(m for m in self.peer.roster() if m != self.member_key)

    @property
    def peers_online(self) -> int:
        """Other members heard from recently (not reported unreachable)."""
        return sum(1 for m in self.neighbours if m not in self._unreachable)

    @property
    def member_names(self) -> dict[str, str]:
        """Display names current members chose for themselves (member id -> name)."""
        if self.peer is None or not self.joined:
            return {}
        membership = self.peer.membership
        return {
            member: name
            for member in self.peer.roster()
            if (name := membership.name_of(member)) is not None
        }

    @property
    def unreachable_members(self) -> tuple[str, ...]:
        """Other members the protocol reports unreachable now (member ids, sorted)."""
        return tuple(sorted(self._unreachable))

    @property
    def rules(self) -> CommunityRules | None:
        """The community's rules (None before joining)."""
        return self.peer.rules if self.peer is not None and self.joined else None

    @property
    def gate_closure_lead_ms(self) -> int:
        """Orders for a slot close this long before it starts."""
        return (self.rules or CommunityRules()).gate_closure_lead_s * 1000

    @property
    def slot_ms(self) -> int:
        """Slot length in milliseconds."""
        return (self.rules or CommunityRules()).slot_seconds * 1000

    @property
    def community_id(self) -> str | None:
        """The community id (None when not in a community)."""
        return self.peer.community_id if self.peer is not None else None

    @property
    def community_name(self) -> str | None:
        """The community's name (None when not a member)."""
        return self.peer.membership.charter.name if self.peer is not None and self.joined else None

    @property
    def address(self) -> str | None:
        """The address this home announces."""
        return self.peer.address if self.peer is not None else None

    @property
    def is_admin(self) -> bool:
        """True if this home may remove members."""
        return self.joined and self.member_key in self.peer.membership.admins  # type: ignore[union-attr]

    async def async_submit_orders(self, slot_start_ms: int, orders: Sequence[Order]) -> None:
        """Sign and send this home's aggregate orders for one slot.

        Raises ``FederationError`` when not a member, after gate closure, for a second,
        different bid for the slot, for malformed orders or orders over the credit limit.
        """
        peer = self._member_peer()
        slot = slot_start_ms // 1000
        if peer.bid_restored(slot):
            # Bid before a restart or reload: that signed bid stands (a second, different
            # one would make this home an equivocator); send it again instead.
            LOGGER.info("Kept the bid for slot %s sent before the restart", slot)
            if slot not in self._bid_slots:  # sent again after a broker outage too
                self._bid_slots = [*self._bid_slots[-(BID_SLOTS_KEPT - 1) :], slot]
            self._handle(peer.resend_bid(slot, self.clock()))
            return
        try:
            outputs = peer.submit_orders(slot, orders, self.clock())
        except (ProtocolError, OrderError) as err:
            raise FederationError(f"orders not sent: {err}") from err
        self._bid_slots = [*self._bid_slots[-(BID_SLOTS_KEPT - 1) :], slot]
        self._handle(outputs)

    @callback
    def async_add_result_listener(self, cb: ResultListener) -> Callable[[], None]:
        """Call ``cb(SlotOutcome)`` when a slot is final or void; return an unsubscriber."""
        self._listeners.append(cb)

        @callback
        def _remove() -> None:
            if cb in self._listeners:
                self._listeners.remove(cb)

        return _remove

    @callback
    def async_on_joined(self, cb: Callable[[], None]) -> None:
        """Call ``cb`` once a pending join completes (the entry reloads then)."""
        self._on_joined.append(cb)

    @callback
    def async_on_left(self, cb: Callable[[], None]) -> None:
        """Call ``cb`` when this home left or was removed."""
        self._on_left.append(cb)

    # --- loading, founding, joining ---

    async def async_load(self) -> str:
        """Restore from the store; return the status: "none", "joining" or "member"."""
        data = await self.store.async_load()
        if not data:
            return "none"
        self._settled = [int(s) for s in data.get("settled", [])]
        if "peer" in data:
            peer = peer_restore(self.identity, data["peer"], self.clock())
            self._set_peer(peer, data.get("carrier"))
            if peer.joined:
                self._restored = True
                return "member"
        if join := data.get("join"):
            self._join = {"invitation": str(join["invitation"]), "address": str(join["address"])}
            return "joining"
        return "none"

    async def async_found(self, name: str, rules: CommunityRules, address: str) -> str:
        """Found a community with this home as its first member; return its id.

        On a broker the address is this home's inbox there (``address`` is ignored)."""
        now = self.clock()
        nonce = secrets.token_bytes(16)
        me = self.identity.public_key
        community = Charter(name, me, now, nonce.hex(), rules, ()).community_id
        peer = Peer.found(
            self.identity,
            name=name,
            rules=rules,
            address=self.carrier.own_address(community, me) or address,
            now_ms=now,
            nonce=nonce,
            fanout=self.carrier.fanout,
            confirm_joins=True,
        )
        self._set_peer(peer)
        await self.async_save()
        LOGGER.info("Founded community %s", peer.community_id)
        return peer.community_id

    async def async_join(self, invitation: str, address: str, *, resume: bool = False) -> int:
        """Send a join request for a pasted invitation; return the inviter's HTTP status.

        The inviter answers with a ``welcome`` message to ``address`` (through the views);
        ``async_wait_joined`` waits for it. Raises ``FederationError`` for a damaged or
        expired invitation (``resume``: no expiry check, see ``async_resume_join``).
        """
        try:
            inv = Invitation.decode(invitation)
            own = self.carrier.own_address(inv.community, self.identity.public_key)
            peer, outputs = Peer.joining(
                self.identity,
                inv,
                address=own or address,
                now_ms=self.clock(),
                resume=resume,
                fanout=self.carrier.fanout,
                confirm_joins=True,
            )
        except InvitationError as err:
            raise FederationError(str(err)) from err
        self._set_peer(peer)
        self._join = {"invitation": invitation, "address": address}
        self._join_done = self.hass.loop.create_future()
        await self.async_save()
        return await self._async_send_join(outputs)

    async def _async_send_join(self, outputs: Sequence[Output]) -> int:
        """Deliver the join request; anything but 202 ends the current wait with its code."""
        status = 0
        parcels, _ = self.carrier.package([o for o in outputs if isinstance(o, Send)], self.clock())
        if parcels and not await self.carrier.async_ready(JOIN_READY_S):
            parcels = []  # no broker connection yet: retried like an inviter that is away
        for parcel in parcels:  # the one join request (on a broker, sealed to the inviter)
            status = await self.carrier.async_deliver(parcel)
        if status != 202 and self._join_done is not None and not self._join_done.done():
            self._join_done.set_result(f"http_{status}")
        return status

    async def async_wait_joined(
        self, timeout_s: float, *, resend_s: Sequence[float] = ()
    ) -> str | None:
        """Wait for the welcome; return None when joined, else a reason code.

        ``resend_s`` are the pauses (a bounded backoff) after which the join request is
        sent again while no welcome has come, all within ``timeout_s``: the inviter answers
        a repeated join from this key with the welcome again, so a lost welcome or an
        inviter that did not answer is retried. A refusal (4xx) ends the wait at once.
        """
        if self.joined:
            return None
        if self._join_done is None:
            return "not_joining"
        loop = self.hass.loop
        deadline = loop.time() + timeout_s
        pauses = list(resend_s)
        while True:
            until = min(deadline, loop.time() + pauses.pop(0)) if pauses else deadline
            reason: str | None = "timeout"
            try:
                async with asyncio.timeout_at(until):
                    reason = await asyncio.shield(self._join_done)
                    if reason is not None and _retryable(reason) and until < deadline:
                        # The inviter did not answer: wait out the pause, but wake up
                        # for a welcome (its answer may be all that got lost) or a stop.
                        self._join_done = loop.create_future()
                        reason = await asyncio.shield(self._join_done)
            except TimeoutError:
                pass
            if reason is None or not _retryable(reason) or until >= deadline:
                return reason
            peer = self.peer
            if peer is None or self._stopped:  # pragma: no cover - a stop ends the wait above
                return "stopped"
            await self._async_send_join(peer.join_again(self.clock()))

    async def async_resume_join(self) -> int:
        """After a restart while joining: send the stored join request again.

        Safe when the inviter already admitted this home (its welcome was lost, e.g. it
        arrived while Home Assistant restarted): it sends the welcome again. No expiry
        check here for the same reason; an inviter that never saw the join refuses it.
        """
        assert self._join is not None
        return await self.async_join(self._join["invitation"], self._join["address"], resume=True)

    def _member_peer(self) -> Peer:
        if self.peer is None or not self.peer.joined:
            raise FederationError("this home is not a member of a community")
        return self.peer

    # --- community actions ---

    async def async_create_invitation(self, ttl_ms: int) -> Invitation:
        """A new one-time invitation (its secret is stored until used or expired)."""
        if self._stopped:
            raise FederationError("Peer Energy is reloading; try again in a moment")
        peer = self._member_peer()
        try:
            inv = peer.invite(secrets.token_bytes(32), self.clock(), ttl_ms)
        except ProtocolError as err:  # pragma: no cover - checked by _member_peer
            raise FederationError(str(err)) from err
        await self.async_save()
        async_dispatcher_send(self.hass, f"{SIGNAL_INVITATION_CREATED}_{self.entry_id}")
        return self._for_joiner(inv)

    def _for_joiner(self, inv: Invitation) -> Invitation:
        """The invitation with what a joiner needs to reach this transport (a broker's
        URL and topic prefix; never a credential)."""
        fields = self.carrier.invitation_fields()
        if not fields:
            return inv
        return dataclasses.replace(
            inv, broker=fields.get("broker", ""), prefix=fields.get("prefix", "")
        )

    def latest_open_invitation(self) -> Invitation | None:
        """The most recent invitation while it is neither used nor expired.

        The peer keeps its invitations (with their secrets, in the private store) in the
        order they were made, so this survives a restart.
        """
        peer = self.peer
        inv = peer.latest_invitation(self.clock()) if peer is not None and peer.joined else None
        return self._for_joiner(inv) if inv is not None else None

    async def async_leave(self) -> None:
        """Tell everyone this home leaves (deliveries awaited, bounded by the transport)."""
        peer = self._member_peer()
        outputs = peer.leave(self.clock())
        await self._deliver_now(outputs)
        self._handle([o for o in outputs if not isinstance(o, Send | Broadcast)])

    async def async_remove(self, member: str) -> None:
        """Remove ``member`` (admins only)."""
        peer = self._member_peer()
        if not peer.membership.is_member(member):
            raise FederationError(f"{short(member)} is not a current member")
        try:
            outputs = peer.remove(member, self.clock())
        except ProtocolError as err:
            raise FederationError(str(err)) from err
        self._handle(outputs)
        await self.async_save()

    async def async_set_address(self, address: str) -> None:
        """Announce a new address to every member."""
        peer = self._member_peer()
        try:
            outputs = peer.set_address(address, self.clock())
        except ProtocolError as err:
            raise FederationError(str(err)) from err
        self._handle(outputs)
        await self.async_save()

    async def _deliver_now(self, outputs: Sequence[Output]) -> None:
        parcels, _ = self.carrier.package(
            [o for o in outputs if isinstance(o, Send | Broadcast)], self.clock()
        )
        if parcels:
            await asyncio.gather(*(self.carrier.async_deliver(p) for p in parcels))

    # --- the wire ---

    @callback
    def receive(self, data: bytes, sender_address: str) -> list[Output]:
        """Hand one incoming message to the peer; act on and return its outputs."""
        peer = self.peer
        if peer is None:
            return []
        return self.receive_with(
            lambda now: peer.receive(data, sender_address, now), sender_address
        )

    @callback
    def receive_with(
        self, receive: Callable[[int], list[Output]], origin: str = "broker"
    ) -> list[Output]:
        """Run ``receive(now_ms)`` (the peer, or a carrier's channel, on one incoming
        message); act on and return its outputs."""
        if self.peer is None or self._stopped:
            return []
        was_joined = self.peer.joined
        try:
            outputs = receive(self.clock())
        except Exception:  # our own bug (a bad message is a Rejected): surface it, go on
            LOGGER.exception("Failed to handle a message from %s", origin)
            return [Rejected("internal_error", "this home failed on the message", origin)]
        self._handle(outputs)
        if self.carrier.take_changed():
            self.spawn(self.async_save(), "save")  # new community keys
        if not was_joined and self.peer is not None and self.peer.joined:
            self._joined_now()
        return outputs

    @callback
    def async_tick(self) -> None:
        """Advance the peer's clock now (also called by the timer)."""
        if self.peer is None or self._stopped:
            return
        now = self.clock()
        try:
            outputs = self.peer.tick(now)
        except Exception:  # our own bug: surface it, keep the timer (not in a tight loop)
            LOGGER.exception("The federation protocol failed at its timer")
            self._retry_after_ms = now + 1000
            return
        self._handle(outputs)

    @callback
    def _handle(self, outputs: Sequence[Output]) -> None:
        """Act on the peer's outputs. Messages that commit this home (a bid, a trade half
        or signature, a delivery report) are sent only once the state is saved."""
        save = False
        committing = any(
            message_type(o.data) in COMMITTING_TYPES
            for o in outputs
            if isinstance(o, Send | Broadcast)
        )
        # Packaged now, in output order (a broker channel seals and may hold some back
        # until it has the community key); delivered below, after the save if committing.
        sends, events = self.carrier.package(outputs, self.clock())
        for out in events:
            if isinstance(out, LedgerWanted):
                self.spawn(self._answer_ledger(out), "ledger answer")
            elif isinstance(out, LedgerRecords):
                self.spawn(self.recorder.record_ledger(out), "ledger records")
            elif isinstance(out, SlotCleared):
                save = True
                self._on_cleared(out)
            elif isinstance(out, SlotVoid):
                self._notify_listeners(SlotOutcome(out.slot * 1000, None, out.reason, ()))
            elif isinstance(out, PeerJoined):
                save = True
                self._event_peer(EVENT_PEER_JOINED, out.member, sponsor=out.sponsor)
            elif isinstance(out, PeerLeft):
                save = True
                self._on_peer_left(out)
            elif isinstance(out, DeviceEnrolled):
                save = True
                self._on_device(out)
            elif isinstance(out, EquivocationDetected):
                self._on_equivocation(out)
            elif isinstance(out, PeerUnreachable):
                self._on_unreachable(out.member, out.since_ms)
            elif isinstance(out, PeerReachable):
                self._on_reachable(out.member)
            elif isinstance(out, TradeSigned):
                save = save or out.party  # the peer keeps its settlement state across restarts
                self.recorder.on_trade(out.slot, out.fill, out.trade)
            elif isinstance(out, DeliverySettled):
                save = save or out.party
                s = out.settlement
                self.recorder.on_delivery(out.slot, s.terms, s.delivered_wh, s)
            elif isinstance(out, DeliveryUnreported):
                save = save or out.party
                self.deliveries_unreported += 1
                self.recorder.on_delivery(out.slot, out.trade.terms, 0, None)
            elif isinstance(out, Rejected):
                self.rejected += 1
                LOGGER.debug(
                    "Ignored a message from %s: %s (%s)", out.sender_address, out.code, out.detail
                )
        if self.carrier.take_changed():
            save = True  # a new community key (after a member left)
        if committing:
            self.spawn(self._save_then_send(sends), "save and send")
        else:
            if save:
                self.spawn(self.async_save(), "save")
            for parcel in sends:
                self.spawn(self._send(parcel), "send")
        self._reschedule()

    async def _save_then_send(self, sends: list[Parcel]) -> None:
        """The write-ahead rule: save what the messages commit to, then send them (each
        delivery on its own, so a slow peer does not hold up the others)."""
        await self.async_save()
        for parcel in sends:
            self.spawn(self._send(parcel), "send")

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        if self._stopped:
            coro.close()
            return
        task = self.hass.async_create_background_task(coro, f"{DOMAIN} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, parcel: Parcel) -> None:
        status = await self.carrier.async_deliver(parcel)
        if status not in (200, 202):
            LOGGER.debug("Delivery to %s failed with status %s", parcel.to, status)

    async def async_drain(self) -> None:
        """Wait until every delivery and save started so far has finished (tests, unload)."""
        async with asyncio.timeout(60):
            while self._tasks:
                await asyncio.wait(list(self._tasks))

    # --- timers ---

    @callback
    def _reschedule(self) -> None:
        if not self._schedule or self._stopped or self.peer is None or not self.peer.joined:
            return
        wake = max(self.peer.next_wakeup_ms(), self._retry_after_ms)
        if self._timer_at == wake and self._unsub_timer is not None:
            return
        if self._unsub_timer is not None:
            self._unsub_timer()
        self._timer_at = wake
        self._unsub_timer = async_track_point_in_utc_time(
            self.hass, self._on_timer, dt_util.utc_from_timestamp(wake / 1000)
        )

    @callback
    def _on_timer(self, _now: datetime) -> None:
        self._unsub_timer = None
        self._timer_at = None
        self.async_tick()
        self._reschedule()

    @callback
    def async_start(self) -> None:
        """Start the carrier and the slot timers (and catch up on slots missed while
        stopped)."""
        self.spawn(self.carrier.async_start(), "connect")
        if self._announce:
            self._delete_old_unreachable_issues()
        self._publish_name()
        if self.peer is not None and self.peer.joined:
            now = self.clock()
            self._handle(self.peer.catch_up(now))
            if self.ledger is not None:
                # Reconcile after a restart: what this home still settles goes out again,
                # and members are asked for the credit records of recent slots.
                self._handle(self.peer.resume_settlement(now))
                self.request_ledger(now)
                # Deliveries of trades observed before the restart settle in the next
                # slots without us (their state was not kept): ask again meanwhile.
                self._reconcile_until = now + RECONCILE_AFTER_START_SLOTS * self.slot_ms
                if self._restored:
                    self._unreconciled_until = now + 2 * self.slot_ms
        if self.ledger is not None:  # reputation from the evidence already stored
            self.spawn(self.refresh_scores(), "scores")
        self._reschedule()

    async def refresh_scores(self) -> None:
        assert self.ledger is not None
        self._scores = await self.ledger.async_refresh_limits(self.clock())
        async_dispatcher_send(self.hass, f"{SIGNAL_LEDGER_UPDATED}_{self.entry_id}")

    async def async_stop(self) -> None:
        """Stop timers, cancel deliveries in flight and save the state."""
        self._stopped = True
        if self._unsub_timer is not None:
            self._unsub_timer()
            self._unsub_timer = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._tasks.clear()
        if self._join_done is not None and not self._join_done.done():
            self._join_done.set_result("stopped")
        self._cancel_broker_grace()
        await self.carrier.async_stop()
        if self.broker_state is not None:  # not connecting any more: nothing to repair
            self.announcer.clear(ISSUE_BROKER)
        if self.peer is not None:
            await self.async_save()

    # --- the broker ---

    @callback
    def _on_broker(self, state: Any) -> None:
        """A broker carrier's connection changed: a repair names the broker and why while
        it is away (the slot clock trades with the grid meanwhile: no bid leaves, so the
        slots void or clear without this home); when it is back, the repair goes and this
        home catches up on what it missed (the protocol drops what it already has)."""
        previous, self.broker_state = self.broker_state, state
        status = str(state.status)
        url = getattr(self.carrier, "config", None)
        broker = url.url if url is not None else "?"
        if status == "connected":
            self._cancel_broker_grace()
            self.announcer.clear(ISSUE_BROKER)
            if previous is not None and str(previous.status) != "connecting":
                LOGGER.info("Back on the community's broker %s", broker)
            # Also on the first connection after a start or reload: what the start sent
            # (the catch-up, the settlement resumed, the ledger request, a kept bid) was
            # published before the broker connected and went nowhere.
            self._resume_after_outage()
            return
        if status in BROKER_PROBLEMS:
            LOGGER.warning("Community broker %s: %s (%s)", broker, status, state.reason)
            if status not in BROKER_TRANSIENT or self.broker_grace_s <= 0:
                self._cancel_broker_grace()
                self._broker_repair(broker)
            elif self._broker_grace is None:  # a short drop heals itself: no repair yet
                self._broker_grace = self.hass.loop.call_later(
                    self.broker_grace_s, self._broker_repair, broker
                )

    def _broker_repair(self, broker: str) -> None:
        """The repair naming the broker and why it is away (now, or after the grace)."""
        self._broker_grace = None
        state = self.broker_state
        status = str(state.status) if state is not None else ""
        if self._stopped or status not in BROKER_PROBLEMS:
            return
        self.announcer.issue(
            ISSUE_BROKER,
            f"{ISSUE_BROKER}_{status}",
            {"broker": broker, "reason": state.reason or status},
            severity=ir.IssueSeverity.ERROR,
        )

    def _cancel_broker_grace(self) -> None:
        if self._broker_grace is not None:
            self._broker_grace.cancel()
            self._broker_grace = None

    def _resume_after_outage(self) -> None:
        """After the broker was away: send this home's open bids again (the same signed
        bids, so nothing new is committed), ask for missed finals and settle what is open
        (the protocol drops duplicates, so nothing is committed twice)."""
        peer = self.peer
        if peer is None or not peer.joined or self._stopped:
            return
        now = self.clock()
        for slot in self._bid_slots:  # the same signed bid again, if its gate is still open
            self._handle(peer.resend_bid(slot, now))
        self._handle(peer.catch_up(now))
        if self.ledger is not None:
            self._handle(peer.resume_settlement(now))
            self._reconcile_asked = None
            self.request_ledger(now)

    # --- events ---

    def _fire(self, event_type: str, data: dict[str, Any]) -> None:
        self.announcer.fire(event_type, data)

    def _notify(self, key: str, notification_id: str, **placeholders: str) -> None:
        self.announcer.notify(key, placeholders, notification_id=notification_id)

    def _notify_listeners(self, outcome: SlotOutcome) -> None:
        for listener in list(self._listeners):
            try:
                listener(outcome)
            except Exception:  # a listener's bug must not stop the federation
                LOGGER.exception("A slot result listener failed")

    def _on_cleared(self, event: SlotCleared) -> None:
        final = event.final
        me = self.member_key
        if (now := self.clock()) < self._reconcile_until:
            self.request_ledger(now)
        if self._deferred and now >= self._unreconciled_until:
            self.settle_deferred()
        fills = tuple(f for f in final.result.fills if me in (f.buyer, f.seller))
        if final.slot not in self._settled:
            self._settled = [*self._settled, final.slot][-SETTLED_KEPT:]
            self._start_settlement(final.slot, fills)
            if self.ledger is not None and fills:
                body = {
                    "slot": final.slot,
                    "book": final.book_hash,
                    "result": final.result_hash,
                    "fills": [f._asdict() for f in fills],
                }
                self.recorder.record_final(final.slot, body)
        self._notify_listeners(
            SlotOutcome(final.slot * 1000, final.result, None, fills, late=final.late)
        )

    def settle_deferred(self) -> None:
        """Settle the slots that waited (for reconciliation after a restart, or for our
        trades of earlier slots), in slot order; a slot that must still wait waits again."""
        self._unreconciled_until = 0
        deferred, self._deferred = self._deferred, {}
        for slot, fills in sorted(deferred.items()):
            self._start_settlement(slot, fills)

    def settle_waiting(self) -> None:
        """Settle the slots that waited for earlier trades, once reconciled after a
        restart (the recorder calls this after recording trades)."""
        if self._deferred and self.clock() >= self._unreconciled_until:
            self.settle_deferred()

    def reconciled(self, added: int) -> None:
        """A member's credit records were recorded (``added`` new ones; the recorder calls
        this): settle what waited, and keep asking for a while when records were missing."""
        self._unreconciled_until = 0
        self.settle_deferred()
        if added:
            # Trades learnt this way settle their deliveries in the next slots without
            # this home deriving them (it never held both signatures): ask again meanwhile.
            self._reconcile_until = max(
                self._reconcile_until,
                self.clock() + RECONCILE_AFTER_START_SLOTS * self.slot_ms,
            )

    def _earlier_unrecorded(self, slot: int) -> bool:
        """Whether one of our trades of a slot before ``slot`` may still change our
        signed balance: not countersigned yet, or countersigned and not yet recorded
        (until the earlier slot's delivery deadline; then it is given up)."""
        assert self.peer is not None
        now, me = self.clock(), self.member_key
        if any(earlier < slot for earlier in self._deferred):
            return True
        if self.recorder.unrecorded_before(slot, now, me, self.slot_ms):
            return True
        return self.peer.unsigned_before(slot, now)

    def _start_settlement(self, slot: int, fills: Sequence[Fill]) -> None:
        """Exchange trade halves for our fills with other members (countersigning)."""
        peer = self.peer
        if self.ledger is None or peer is None or not peer.joined:
            return
        if not any(f.buyer != f.seller for f in fills):
            return
        if self.clock() < self._unreconciled_until:
            # Just restarted: our halves commit to our balance, which may lack records the
            # members are sending; settle once their first answer is recorded.
            self._deferred[slot] = tuple(fills)
            return
        if self._earlier_unrecorded(slot):
            # Our halves commit to our signed balance after our earlier trades: settle
            # once those are recorded, or our halves would be refused everywhere.
            self._deferred[slot] = tuple(fills)
            return
        try:
            outputs = peer.settle(
                slot,
                prev=self.ledger.head_hash,
                balance=self.ledger.signed_balance(),
                now_ms=self.clock(),
            )
        except ProtocolError as err:  # pragma: no cover - the slot was just finalised
            LOGGER.warning("Cannot settle slot %s: %s", slot, err)
            return
        self._handle(outputs)

    # --- reconciliation ---

    def request_ledger(self, now: int) -> None:
        """Ask members for the credit records of recent slots (at most once per slot)."""
        peer = self.peer
        if peer is None or not peer.joined or self.ledger is None:
            return
        step = peer.rules.slot_seconds
        if self._reconcile_asked is not None and now - self._reconcile_asked < step * 1000:
            return
        self._reconcile_asked = now
        since = max(0, now // 1000 - RECONCILE_SLOTS * step)
        self._handle(peer.ledger_request(since, now))

    async def _answer_ledger(self, event: LedgerWanted) -> None:
        """A member reconciles: send it our credit records of the slots it asked for."""
        if self.ledger is None or self.peer is None:
            return
        try:
            records = await self.ledger.async_credit_records(event.since * 1000, LEDGER_RECORDS_MAX)
        except HomeAssistantError as err:  # closed while reloading: it will ask again
            LOGGER.debug("Could not read the ledger for %s: %s", short(event.member), err)
            return
        if self.peer is not None:  # also when empty: the member then knows it is in step
            self._handle(self.peer.ledger_answer(event.address, records, self.clock()))

    # --- delivery ---

    @property
    def own_reputation(self) -> int | None:
        """This home's reputation (permille) from the delivery evidence every member
        shares, scored by this home's policy; None before any evidence about it."""
        return self._scores.get(self.member_key) if self.peer is not None else None

    @property
    def reputations(self) -> dict[str, int]:
        """This home's reputation score of each member it has evidence about (permille)."""
        return dict(self._scores)

    @callback
    def async_report_delivery(self, slot_start_ms: int, exported_wh: int, imported_wh: int) -> None:
        """Report what this home's meter measured during a past slot (the slot clock
        calls this at the next slot boundary); the reports go to every member."""
        peer = self.peer
        if peer is None or not peer.joined or self._stopped:
            return
        try:
            outputs = peer.report_delivery(
                slot_start_ms // 1000,
                exported_wh=exported_wh,
                imported_wh=imported_wh,
                now_ms=self.clock(),
            )
        except ProtocolError as err:
            LOGGER.warning("Cannot report the delivery of %s: %s", slot_start_ms, err)
            return
        if outputs:
            self.deliveries_reported += 1
        self._handle(outputs)
        self.spawn(self.async_save(), "save")  # the reading survives a restart

    def _event_peer(self, event_type: str, member: str, **extra: Any) -> None:
        if member == self.member_key or not self._announce:
            return
        self._fire(event_type, {"member": member, **extra})
        joined = event_type == EVENT_PEER_JOINED
        self._notify(
            "peer_joined_notification" if joined else "peer_left_notification",
            f"{DOMAIN}_peer_{short(member)}",
            member=short(member),
        )

    def _on_peer_left(self, event: PeerLeft) -> None:
        if event.member == self.member_key:
            self._notify(
                "removed_notification" if event.removed else "left_notification",
                f"{DOMAIN}_left",
            )
            for cb in list(self._on_left):
                cb()
            return
        self._on_reachable(event.member)
        self._event_peer(EVENT_PEER_LEFT, event.member, by=event.by, removed=event.removed)

    def _on_device(self, event: DeviceEnrolled) -> None:
        if not self._announce:
            return
        self._fire(
            EVENT_DEVICE_ENROLLED,
            {"member": event.member, "asset_id": event.asset_id, "kind": event.kind},
        )
        self._notify(
            "device_enrolled_notification",
            f"{DOMAIN}_device_{event.asset_id[:16]}",
            member=short(event.member),
            kind=event.kind,
        )

    def _on_equivocation(self, event: EquivocationDetected) -> None:
        proof = event.proof
        LOGGER.warning(
            "Member %s signed two different %s records for slot %s (equivocation)",
            short(proof.member),
            proof.kind,
            proof.slot,
        )
        self._fire(
            EVENT_EQUIVOCATION, {"member": proof.member, "slot": proof.slot, "kind": proof.kind}
        )
        if self.ledger is not None:
            evidence = equivocation_evidence(proof.member, self.clock())
            self.recorder.record_evidence(proof.slot, evidence)

    def _on_unreachable(self, member: str, since_ms: int) -> None:
        """A neighbour went silent: the "Unreachable neighbours" sensor shows it (no repair:
        this user cannot fix another home's outage)."""
        if member in self._unreachable:
            return
        self._unreachable.add(member)
        LOGGER.info(
            "Neighbour %s unreachable since %s",
            short(member),
            dt_util.utc_from_timestamp(since_ms / 1000).isoformat(),
        )
        self._reachability_changed()

    def _on_reachable(self, member: str) -> None:
        if member not in self._unreachable:
            return
        self._unreachable.discard(member)
        LOGGER.info("Neighbour %s reachable again", short(member))
        self._reachability_changed()

    def _reachability_changed(self) -> None:
        if self._announce:
            async_dispatcher_send(self.hass, f"{SIGNAL_REACHABILITY}_{self.entry_id}")

    def _publish_name(self) -> None:
        """Announce the display name of the options (a signed ``name`` record) when the
        community holds another one for this home. Unset: nothing is shared (neighbours see
        the short id); a name once shared stays with the others until replaced."""
        if self.peer is None or not self.joined:
            return
        entry = self.hass.config_entries.async_get_entry(self.entry_id)
        wanted = None if entry is None else entry.options.get(CONF_DISPLAY_NAME)
        if not isinstance(wanted, str) or not wanted:
            return
        if wanted == self.peer.membership.name_of(self.member_key):
            return
        try:
            outputs = self.peer.set_name(wanted, self.clock())
        except ProtocolError as err:  # validated by the options flow
            LOGGER.warning("Display name not announced: %s", err)
            return
        self._handle(outputs)
        self.spawn(self.async_save(), "save")

    def _delete_old_unreachable_issues(self) -> None:
        """Delete the neighbour-outage repairs earlier versions created."""
        prefix = f"{ISSUE_PEER_UNREACHABLE}_"
        old = [
            issue_id
            for (domain, issue_id) in ir.async_get(self.hass).issues
            if domain == DOMAIN and issue_id.startswith(prefix)
        ]
        for issue_id in old:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)

    def _joined_now(self) -> None:
        assert self.peer is not None
        self._join = None
        if self._join_done is not None and not self._join_done.done():
            self._join_done.set_result(None)
        if self._announce:
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_JOIN_FAILED)
        self._fire(
            EVENT_COMMUNITY_JOINED,
            {"community": self.peer.community_id, "name": self.peer.membership.charter.name},
        )
        self._notify(
            "community_joined_notification",
            f"{DOMAIN}_joined",
            community=self.peer.membership.charter.name,
        )
        self.spawn(self.async_save(), "save")
        self._publish_name()
        for cb in list(self._on_joined):
            cb()

    # --- reachability of our own address ---

    async def async_probe_self(self) -> bool:
        """Ask our own announced address for its info; raise or clear the repair issue
        (HTTP only: on a broker the connection state is the check)."""
        if self.peer is None or not self.peer.joined or self.carrier.fanout:
            return True
        info = await self.transport.async_info(self.peer.address)
        ok = info is not None and info.get("member") == self.member_key
        if ok:
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_SELF_UNREACHABLE)
        else:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                ISSUE_SELF_UNREACHABLE,
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key=ISSUE_SELF_UNREACHABLE,
                translation_placeholders={"address": self.peer.address},
            )
        return ok

    # --- persistence ---

    def snapshot(self) -> dict[str, Any]:
        """Everything stored (contains invitation secrets: never log it)."""
        data: dict[str, Any] = {"settled": list(self._settled)}
        if self.peer is not None and (self.peer.joined or self._join is None):
            data["peer"] = self.peer.snapshot()
        if self._join is not None:
            data["join"] = dict(self._join)
        if self.peer is not None and (carrier := self.carrier.snapshot()) is not None:
            data["carrier"] = carrier
        return data

    async def async_save(self) -> None:
        """Write the state to the private store now."""
        await self.store.async_save(self.snapshot())

    async def async_forget(self) -> None:
        """Drop the stored community (after leaving)."""
        self._set_peer(None)
        self._join = None
        await self.store.async_remove()

    def info(self) -> dict[str, Any]:
        """Public facts for ``GET /api/peer_energy/v1/info`` (no secrets, no addresses)."""
        return {
            "protocol": 1,
            "member": self.member_key,
            "community": self.community_id if self.joined else None,
            "joined": self.joined,
            "members": self.members,
        }

    def diagnostics(self) -> dict[str, Any]:
        """Federation section of the diagnostics (secrets and addresses left out)."""
        peer = self.peer
        return {
            "joined": self.joined,
            "joining": self._join is not None,
            "community": self.community_id,
            "members": self.members,
            "peers_online": self.peers_online,
            "admin": self.is_admin,
            "rules": self.rules.to_dict() if self.rules is not None else None,
            "open_invitations": peer.open_invitations(self.clock()) if peer is not None else 0,
            "finals_retained": len(peer.finals) if peer is not None else 0,
            "settled_slots": len(self._settled),
            "rejected_messages": self.rejected,
            "recent_finals": (
                {
                    str(slot): final.result_hash[:16]
                    for slot, final in sorted(peer.finals.items())[-5:]
                }
                if peer is not None
                else {}
            ),
            "trades_recorded": self.recorder.trades_recorded,
            "trades_refused": self.recorder.trades_refused,
            "deliveries_reported": self.deliveries_reported,
            "settlements_recorded": self.recorder.settlements_recorded,
            "deliveries_unreported": self.deliveries_unreported,
            "own_reputation": self.own_reputation,
            "settlements_waiting": len(self.recorder.waiting_settlements),
            "records_reconciled": self.recorder.trades_reconciled,
            "ledger_out_of_step": self.recorder.out_of_step,
            "balance_disagreements": self.recorder.balance_disagreements,
            "unreachable": sorted(short(m) for m in self._unreachable),
            "transport": self.carrier.kind,
            "broker": str(self.broker_state.status) if self.broker_state is not None else None,
        }
