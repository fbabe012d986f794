"""The MQTT transport: one home's connection to its community's broker.

A dedicated ``paho-mqtt`` client (the library Home Assistant's MQTT integration ships; see
``docs/architecture.md`` for why not the integration itself) runs its network loop in its
own thread (``loop_start``). Every callback is handed to Home Assistant's event loop with
``loop.call_soon_threadsafe``, so the protocol peer and the channel are only touched
there; ``publish`` may be called from the event loop (paho's publish is thread-safe and
only queues the packet).

Topics (``prefix`` defaults to ``peer_energy``)::

    <prefix>/<community>/all            every member publishes and subscribes
    <prefix>/<community>/in/<inbox>     one member's inbox (``channel.inbox_of``)

where ``<community>`` is ``channel.topic_of(community id)``, a hash: the broker learns
neither the community id nor the members' keys.

MQTT 5, QoS 1 (at least once: the protocol drops duplicates), never retained (a retained
frame would be handed to every newcomer; the protocol would refuse it as a replay, but
there is nothing to gain), ``no_local`` on the community topic (a home does not get its
own publications back). Payloads are sealed frames (``core/federation/sealing.py``): the
broker sees topics, sizes and timing, never content.

TLS (``mqtts://``, optional CA file) and username/password are options. paho reconnects
with a doubling backoff (1 s to 2 min). The transport's ``BrokerState`` (connected, or why
not: unreachable, refused credentials, not authorised, TLS) goes to ``on_status`` so the
link can raise a repair that names the broker and the reason.

This module does not import Home Assistant: it needs only an asyncio loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
import logging
import ssl
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .core.federation.channel import ALL, BrokerChannel, broker_address, topic_of
from .core.federation.protocol import Broadcast, Peer, Send
from .core.federation.sealing import KeyChain
from .transport import ACCEPTED, Parcel

_LOGGER = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "peer_energy"
DEFAULT_PORT: Final = 1883
DEFAULT_TLS_PORT: Final = 8883
QOS: Final = 1
KEEPALIVE_S: Final = 30
RECONNECT_MIN_S: Final = 1
RECONNECT_MAX_S: Final = 120
MAX_FRAME_BYTES: Final = 1100 * 1024  # what ``sealing.MAX_FRAME_BYTES`` opens


class BrokerError(ValueError):
    """A broker URL or topic prefix that cannot be used."""


class BrokerStatus(StrEnum):
    """Where the connection to the broker stands."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"  # no TCP connection (refused, no route, DNS, timeout)
    BAD_CREDENTIALS = "bad_credentials"  # the broker refused the username or password
    NOT_AUTHORIZED = "not_authorized"  # authenticated, but not allowed (ACL)
    TLS_ERROR = "tls_error"  # certificate or handshake failure
    DISCONNECTED = "disconnected"  # was connected; paho reconnects with backoff
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class BrokerState:
    """The status and, when not connected, the reason in the broker's own words."""

    status: BrokerStatus
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """How to reach the community's broker. ``password`` is never shown in ``repr``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    prefix: str = DEFAULT_PREFIX

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        username: str | None = None,
        password: str | None = None,
        ca_certs: str | None = None,
    ) -> BrokerConfig:
        """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (credentials in the URL are
        refused: an invitation carries the URL, never a password)."""
        parts = urlsplit(url.strip())
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise BrokerError("a broker URL is mqtt://host:port or mqtts://host:port")
        if parts.username or parts.password:
            raise BrokerError("no credentials in a broker URL")
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise BrokerError("a broker URL has no path")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
        except ValueError as err:
            raise BrokerError("the port is not a number from 1 to 65535") from err
        check_prefix(prefix)
        return cls(unquote(parts.hostname), port, tls, username, password, ca_certs, prefix)

    @property
    def url(self) -> str:
        """The URL (no credentials), for repairs and invitations."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def check_prefix(prefix: str) -> None:
    """A topic prefix: 1 to 64 characters, no wildcards, no leading or empty levels."""
    if not 0 < len(prefix) <= 64 or any(c in prefix for c in "#+\0"):
        raise BrokerError("a topic prefix is 1 to 64 characters without # or +")
    if prefix.startswith("$") or any(level == "" for level in prefix.split("/")):
        raise BrokerError("a topic prefix has no empty levels and does not start with $")


def topics(prefix: str, community: str, inbox: str) -> tuple[str, str]:
    """The community topic and the inbox topic of one home."""
    base = f"{prefix}/{topic_of(community)}"
    return f"{base}/{ALL}", f"{base}/in/{inbox}"


def _state_of(reason: ReasonCode) -> BrokerState:
    """A CONNACK or DISCONNECT reason as a status."""
    value = reason.value
    if value in {0x86, 0x04}:  # bad user name or password (v5; v3 code 4)
        return BrokerState(BrokerStatus.BAD_CREDENTIALS, str(reason))
    if value in {0x87, 0x05}:  # not authorized (v5; v3 code 5)
        return BrokerState(BrokerStatus.NOT_AUTHORIZED, str(reason))
    return BrokerState(BrokerStatus.DISCONNECTED, str(reason))


class MqttTransport:
    """One home's client on the community broker (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: BrokerConfig,
        *,
        community: str,
        inbox: str,
        client_id: str,
        on_frame: Callable[[str, bytes], None],
        on_status: Callable[[BrokerState], None],
    ) -> None:
        """``on_frame(route, frame)`` gets each received frame (``route``: ``ALL`` or
        this home's inbox), ``on_status`` each change of ``BrokerState``; both run on
        ``loop``."""
        self._loop = loop
        self.config = config
        self.community_topic, self.inbox_topic = topics(config.prefix, community, inbox)
        self._base = f"{config.prefix}/{topic_of(community)}"
        self._stopping = False
        self._refused = False  # the broker refused the last CONNECT (network thread)
        self._inbox = inbox
        self._on_frame = on_frame
        self._on_status = on_status
        self.state = BrokerState(BrokerStatus.STOPPED)
        self.published = 0
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._connected
        client.on_connect_fail = self._connect_failed
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        self._client = client

    # -- lifecycle (event loop) --
    async def async_start(self) -> None:
        """Connect in the background (TLS context and DNS in the executor); the state
        follows through ``on_status``."""
        self._stopping = False
        self._refused = False  # the broker refused the last CONNECT (network thread)
        self._set_state(BrokerState(BrokerStatus.CONNECTING))
        await self._loop.run_in_executor(None, self._start)

    def _start(self) -> None:
        if self.config.tls:
            context = ssl.create_default_context(cafile=self.config.ca_certs)
            self._client.tls_set_context(context)
        self._client.connect_async(self.config.host, self.config.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()

    async def async_stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._stopping = True
        await self._loop.run_in_executor(None, self._stop)
        self._set_state(BrokerState(BrokerStatus.STOPPED))

    def _stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, route: str, frame: bytes) -> bool:
        """Queue ``frame`` for ``route`` (``ALL`` or an inbox) at QoS 1, not retained.
        False when not connected (the protocol's retries and catch-up recover)."""
        if self.state.status is not BrokerStatus.CONNECTED:
            return False
        topic = self.community_topic if route == ALL else f"{self._base}/in/{route}"
        info = self._client.publish(topic, frame, qos=QOS, retain=False)
        self.published += 1
        return info.rc == 0

    # -- paho callbacks (network thread) --
    def _connected(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refused = True  # the disconnect that follows keeps this reason
            self._post(_state_of(reason))
            return
        self._refused = False
        client.subscribe(
            [
                (self.community_topic, SubscribeOptions(qos=QOS, noLocal=True)),
                (self.inbox_topic, SubscribeOptions(qos=QOS)),
            ]
        )
        self._post(BrokerState(BrokerStatus.CONNECTED))

    def _connect_failed(self, client: Client, userdata: Any) -> None:
        self._post(BrokerState(BrokerStatus.UNREACHABLE, "no connection to the broker"))

    def _disconnected(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self._stopping and not self._refused:
            self._post(_state_of(reason))

    def _message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        if message.retain or len(message.payload) > MAX_FRAME_BYTES:
            return  # we never retain: a retained frame is someone else's trick
        if message.topic == self.community_topic:
            route = ALL
        elif message.topic == self.inbox_topic:
            route = self._inbox
        else:  # pragma: no cover - only our two subscriptions
            return
        self._loop.call_soon_threadsafe(self._on_frame, route, bytes(message.payload))

    # -- state --
    def _post(self, state: BrokerState) -> None:
        try:
            self._loop.call_soon_threadsafe(self._set_state, state)
        except RuntimeError:  # pragma: no cover - the loop closed during shutdown
            _LOGGER.debug("broker state %s after the event loop closed", state.status)

    def _set_state(self, state: BrokerState) -> None:
        if self._stopping and state.status is not BrokerStatus.STOPPED:
            return  # a late callback after stop
        if state == self.state:
            return
        self.state = state
        self._on_status(state)


class MqttHome:
    """A ``BrokerChannel`` on an ``MqttTransport``: frames in go to the channel, the
    channel's publications go out; the peer's events go to ``on_events``. Timers: call
    ``tick`` when ``channel.peer.next_wakeup_ms()`` is due."""

    def __init__(
        self,
        channel: Any,
        transport: MqttTransport,
        *,
        clock_ms: Callable[[], int],
        on_events: Callable[[list[Any]], None],
    ) -> None:
        """Wire ``channel`` (a ``core.federation.channel.BrokerChannel``) to ``transport``."""
        self.channel = channel
        self.transport = transport
        self._clock_ms = clock_ms
        self._on_events = on_events

    def frame(self, route: str, frame: bytes) -> None:
        """A frame from the broker (``on_frame`` of the transport)."""
        now = self._clock_ms()
        try:
            outputs = self.channel.incoming(frame, now)
        except Exception:  # a bug of ours: log it with its traceback, go on
            _LOGGER.exception("Peer Energy could not handle a frame from the broker")
            return
        self.handle(outputs, now)

    def handle(self, outputs: list[Any], now_ms: int) -> None:
        """Publish what the peer sends; hand its events on."""
        pubs, events = self.channel.outgoing(outputs, now_ms)
        for pub in pubs:
            self.transport.publish(pub.route, pub.frame)
        if events:
            self._on_events(events)

    def tick(self) -> None:
        """Run the peer's clock now."""
        now = self._clock_ms()
        self.handle(self.channel.peer.tick(now), now)


class MqttCarrier:
    """The federation link's carrier on a broker (``transport.Carrier``).

    A fan-out peer behind a ``BrokerChannel`` (sealing, keys, routes) on an
    ``MqttTransport``. The transport is created when a peer is bound (its topics follow
    from the community and the member) and connects once the link starts.
    """

    kind = "mqtt"
    fanout = True

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: BrokerConfig,
        *,
        on_status: Callable[[BrokerState], None] | None = None,
        transport_factory: Callable[..., MqttTransport] = MqttTransport,
    ) -> None:
        """A carrier for the broker in ``config``; ``on_status`` gets each broker state."""
        self._loop = loop
        self.config = config
        self.channel: BrokerChannel | None = None
        self.transport: MqttTransport | None = None
        self._factory = transport_factory
        self._on_status = on_status
        self._inbound: Any = None
        self._started = False
        self._connected = asyncio.Event()
        self._changed = False
        self._epoch = -1
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def state(self) -> BrokerState:
        """Where the broker connection stands."""
        return (
            self.transport.state
            if self.transport is not None
            else BrokerState(BrokerStatus.STOPPED)
        )

    def attach(self, inbound: Any, on_status: Callable[[BrokerState], None]) -> None:
        """The link's entry for received messages and broker states."""
        self._inbound = inbound
        self._on_status = on_status

    def own_address(self, community: str, member: str) -> str | None:
        """A member's address on a broker: its inbox."""
        return broker_address(community, member)

    def bind(self, peer: Peer | None, saved: Mapping[str, Any] | None = None) -> None:
        """Carry ``peer``'s messages (``saved``: the key chain of a previous ``snapshot``)."""
        if peer is None:
            self.channel = None
            self._replace_transport(None)
            return
        keys: KeyChain | None = None
        raw = (saved or {}).get("keys")
        if isinstance(raw, Mapping) and raw.get("community") == peer.community_id:
            try:
                keys = KeyChain.from_dict(peer.identity, raw)
            except ValueError as err:
                _LOGGER.warning("Stored community keys are damaged (%s): waiting for a grant", err)
        self.channel = BrokerChannel(peer, keys=keys)
        self._epoch = self.channel.keys.epoch
        self._changed = keys is None and peer.joined  # a founder's new key: save it
        community, inbox = peer.community_id, self.channel.inbox
        current = self.transport
        wanted = topics(self.config.prefix, community, inbox)
        if current is not None and (current.community_topic, current.inbox_topic) == wanted:
            return
        self._replace_transport(
            self._factory(
                self._loop,
                self.config,
                community=community,
                inbox=inbox,
                client_id=f"peer-energy-{inbox[:20]}",
                on_frame=self._frame,
                on_status=self._status,
            )
        )

    def _replace_transport(self, new: MqttTransport | None) -> None:
        old, self.transport = self.transport, new
        self._connected.clear()
        if old is not None:
            self._spawn(old.async_stop())
        if new is not None and self._started:
            self._spawn(new.async_start())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro, loop=self._loop)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def package(self, outputs: Sequence[Any], now_ms: int) -> tuple[list[Any], list[Any]]:
        """Seal and route the peer's outputs (one publication per route)."""
        channel = self.channel
        if channel is None:
            return [], [o for o in outputs if not isinstance(o, Send | Broadcast)]
        pubs, events = channel.outgoing(outputs, now_ms)
        self._note_keys()
        return [Parcel(p.route, p.frame) for p in pubs], events

    async def async_deliver(self, parcel: Any) -> int:
        """Publish at QoS 1; ``ACCEPTED`` when queued, 0 when not connected."""
        transport = self.transport
        if transport is None:
            return 0
        return ACCEPTED if transport.publish(parcel.to, parcel.data) else 0

    async def async_info(self, address: str) -> dict[str, Any] | None:
        """No info endpoint on a broker."""
        return None

    async def async_ready(self, timeout_s: float) -> bool:
        """Wait for the broker connection."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def async_start(self) -> None:
        """Connect (in the background; the state follows through ``on_status``)."""
        self._started = True
        if self.transport is not None:
            await self.transport.async_start()

    async def async_stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._started = False
        if self.transport is not None:
            await self.transport.async_stop()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def snapshot(self) -> dict[str, Any] | None:
        """The community keys held (secrets: the private store only)."""
        return {"keys": self.channel.keys.to_dict()} if self.channel is not None else None

    def take_changed(self) -> bool:
        """True once after the keys changed (the link then saves)."""
        changed, self._changed = self._changed, False
        return changed

    def invitation_fields(self) -> dict[str, str]:
        """The broker's URL and the topic prefix (never a credential)."""
        return {"broker": self.config.url, "prefix": self.config.prefix}

    # -- from the transport (event loop) --
    def _note_keys(self) -> None:
        if self.channel is not None and self.channel.keys.epoch != self._epoch:
            self._epoch = self.channel.keys.epoch
            self._changed = True

    def _frame(self, route: str, frame: bytes) -> None:
        channel = self.channel
        if channel is None or self._inbound is None:
            return
        self._inbound(lambda now: self._incoming(channel, frame, now))

    def _incoming(self, channel: BrokerChannel, frame: bytes, now_ms: int) -> list[Any]:
        outputs: list[Any] = channel.incoming(frame, now_ms)
        self._note_keys()
        return outputs

    def _status(self, state: BrokerState) -> None:
        if state.status is BrokerStatus.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        if self._on_status is not None:
            self._on_status(state)


async def async_check_broker(
    loop: asyncio.AbstractEventLoop, config: BrokerConfig, timeout_s: float = 5.0
) -> BrokerState:
    """Connect once with ``config`` and report how it went (the forms use this): the
    first state after ``CONNECTING``, or ``UNREACHABLE`` after ``timeout_s``."""
    states: asyncio.Queue[BrokerState] = asyncio.Queue()
    probe = MqttTransport(
        loop,
        config,
        community="check",
        inbox="0" * 32,
        client_id=f"peer-energy-check-{id(states):x}",
        on_frame=lambda route, frame: None,
        on_status=states.put_nowait,
    )
    await probe.async_start()
    state = BrokerState(BrokerStatus.UNREACHABLE, "no answer from the broker")
    try:
        async with asyncio.timeout(timeout_s):
            while (next_state := await states.get()).status is BrokerStatus.CONNECTING:
                pass
            state = next_state
    except TimeoutError:
        pass
    finally:
        await probe.async_stop()
    return state


def broker_config(data: Mapping[str, Any], invitation: Any = None) -> BrokerConfig | None:
    """The broker of a community subentry's data (``transport`` mqtt), or of the
    ``invitation`` being joined; None for HTTP. Raises ``BrokerError`` if unusable."""
    url = str(data.get("broker_url") or (invitation.broker if invitation is not None else ""))
    if data.get("transport") != "mqtt" and not url:
        return None
    prefix = str(data.get("topic_prefix") or (invitation.prefix if invitation is not None else ""))
    return BrokerConfig.from_url(
        url,
        prefix=prefix or DEFAULT_PREFIX,
        username=data.get("broker_username") or None,
        password=data.get("broker_password") or None,
    )
