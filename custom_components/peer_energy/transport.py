"""The federation link's transport seam: how one home's messages reach the others.

The protocol peer (``core.federation.protocol.Peer``) is sans-I/O: it returns ``Send`` and
``Broadcast`` outputs with protocol addresses, and events. A ``Carrier`` turns those into
``Parcel`` values (what goes on the wire, and where) and delivers them; it hands what it
receives back to the link. Two carriers:

* ``HttpCarrier``: every message is POSTed to each addressee's Home Assistant
  (``http.HttpTransport``; the views of ``http.py`` hand incoming messages to
  ``FederationLink.receive``). The peer sends all-to-all, with relays.
* ``MqttCarrier`` (``mqtt_transport.py``): a fan-out peer behind a
  ``core.federation.channel.BrokerChannel`` on a dedicated paho client: each message is
  sealed and published once to the community topic or to one member's inbox.

The link keeps the timers, the protocol peer and the write-ahead rule (a committing
message is packaged, then the state is saved, then it is delivered); the carrier owns the
wire. A carrier is bound to each new peer (founding, joining, restoring), because on a
broker the topics and keys follow from the community and the member.

This module does not import Home Assistant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .core.federation.protocol import Broadcast, Output, Peer, Send

TRANSPORT_HTTP: Final = "http"
TRANSPORT_MQTT: Final = "mqtt"
# Delivery status of a parcel: what HTTP answers (202 accepted), 0 when nobody took it.
ACCEPTED: Final = 202


class Transport(Protocol):
    """A point-to-point transport (``http.HttpTransport`` in production)."""

    async def async_send(self, address: str, data: bytes) -> int:
        """Deliver one message; return the HTTP status (0 when nobody answered)."""

    async def async_info(self, address: str) -> dict[str, Any] | None:
        """The public info of the home at ``address`` (None when unreachable)."""


@dataclass(frozen=True, slots=True)
class Parcel:
    """One thing to put on the wire: ``data`` for ``to`` (an address or a broker route)."""

    to: str
    data: bytes


# The link's entry for what a carrier receives: ``receive(now_ms) -> outputs`` runs the
# peer on the message; the link acts on the outputs (and notices a completed join).
type Inbound = Callable[[Callable[[int], list[Output]]], list[Output]]


class Carrier(Protocol):
    """What the link needs from a transport (see the module docstring)."""

    @property
    def kind(self) -> str:
        """``TRANSPORT_HTTP`` or ``TRANSPORT_MQTT``."""

    @property
    def fanout(self) -> bool:
        """True when the peer publishes once to the community (a broker)."""

    def own_address(self, community: str, member: str) -> str | None:
        """The protocol address of ``member`` on this transport (None: the user's URL)."""

    def attach(self, inbound: Inbound, on_status: Callable[[Any], None]) -> None:
        """Where received messages (``inbound``) and connection states go (the link)."""

    def bind(self, peer: Peer | None, saved: Mapping[str, Any] | None = None) -> None:
        """Carry ``peer``'s messages from now on (``saved``: this carrier's ``snapshot``)."""

    def package(self, outputs: Sequence[Output], now_ms: int) -> tuple[list[Parcel], list[Output]]:
        """Split the peer's outputs into parcels to deliver and events for the link."""

    async def async_deliver(self, parcel: Parcel) -> int:
        """Deliver one parcel; ``ACCEPTED`` (or 200) when taken, else a failure status."""

    async def async_info(self, address: str) -> dict[str, Any] | None:
        """The info of the home at ``address`` (HTTP only; None elsewhere)."""

    async def async_ready(self, timeout_s: float) -> bool:
        """Wait until the carrier can deliver (a broker connection); False on timeout."""

    async def async_start(self) -> None:
        """Start (connect) once Home Assistant runs the link."""

    async def async_stop(self) -> None:
        """Stop (disconnect)."""

    def snapshot(self) -> dict[str, Any] | None:
        """What the carrier needs after a restart (secrets: the private store only)."""

    def take_changed(self) -> bool:
        """True once after the ``snapshot`` changed by itself (the link saves then)."""

    def invitation_fields(self) -> dict[str, str]:
        """What a joiner needs besides the inviter's address (never a password)."""


def point_parcels(outputs: Sequence[Output]) -> tuple[list[Parcel], list[Output]]:
    """All-to-all: one parcel per addressee of each ``Send``/``Broadcast``."""
    parcels: list[Parcel] = []
    events: list[Output] = []
    for out in outputs:
        if isinstance(out, Send):
            parcels.append(Parcel(out.to, out.data))
        elif isinstance(out, Broadcast):
            parcels.extend(Parcel(to, out.data) for to in out.to)
        else:
            events.append(out)
    return parcels, events


class HttpCarrier:
    """Messages over HTTP to every addressee (``transport``: an ``http.HttpTransport``)."""

    kind = TRANSPORT_HTTP
    fanout = False

    def __init__(self, transport: Transport) -> None:
        """Wrap a point-to-point transport (tests replace ``transport`` at will)."""
        self.transport = transport

    def own_address(self, community: str, member: str) -> str | None:
        """On HTTP a home is where the user says it is."""
        return None

    def attach(self, inbound: Inbound, on_status: Callable[[Any], None]) -> None:
        """Incoming messages come through the views of ``http.py``, not from here."""

    def bind(self, peer: Peer | None, saved: Mapping[str, Any] | None = None) -> None:
        """Nothing to set up: every message names its addressee's URL."""

    def package(self, outputs: Sequence[Output], now_ms: int) -> tuple[list[Parcel], list[Output]]:
        """One POST per addressee."""
        return point_parcels(outputs)

    async def async_deliver(self, parcel: Parcel) -> int:
        """POST the message; the HTTP status."""
        return await self.transport.async_send(parcel.to, parcel.data)

    async def async_info(self, address: str) -> dict[str, Any] | None:
        """GET the info of the home at ``address``."""
        return await self.transport.async_info(address)

    async def async_ready(self, timeout_s: float) -> bool:
        """Always ready (each POST connects on its own)."""
        return True

    async def async_start(self) -> None:
        """Nothing to start (Home Assistant's client session is shared)."""

    async def async_stop(self) -> None:
        """Nothing to stop."""

    def snapshot(self) -> dict[str, Any] | None:
        """Nothing to keep."""
        return None

    def take_changed(self) -> bool:
        """Never changes."""
        return False

    def invitation_fields(self) -> dict[str, str]:
        """The inviter's URL in the invitation is all a joiner needs."""
        return {}
