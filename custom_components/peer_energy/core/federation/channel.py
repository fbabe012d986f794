"""The broker channel: one home's protocol peer on a publish/subscribe broker (sans-I/O).

A broker (MQTT) is untrusted and fans out. ``BrokerChannel`` sits between a fan-out
``Peer`` and any broker transport (the MQTT client in the shell, ``BrokerNet`` in tests):

* **routes**: a member's address on a broker is ``"mqtt:" + inbox`` where ``inbox`` is
  ``inbox_of(community, member)`` (32 hex characters of a hash: the topic does not show
  the key); ``Broadcast((COMMUNITY,), ...)`` goes to the route ``ALL`` (the community
  topic), anything else to each addressee's inbox;
* **sealing** (``sealing.KeyChain``): every frame is encrypted; the ``join`` is sealed to
  the inviter's key and the ``welcome`` to the joiner's, preceded by a key grant of the
  current community key; everything else uses the community key. Outputs that need the
  community key before this home has one (a joiner's first messages) wait in order
  until the grant comes;
* **keys**: the founder creates the key of epoch 0; on ``PeerLeft`` the designated
  member creates the next epoch's key and grants it to everyone remaining (under the
  old key: the former member sees a grant it cannot open);
* **incoming**: a frame that does not open is dropped (noise, another community, an old
  key); this home's own publications coming back from the community topic are dropped;
  a key grant is taken; everything else goes to ``Peer.receive``.

Methods return ``Publication`` values (route and frame bytes) for the transport to
publish, and the peer's events for the shell.

Public API: ``BrokerChannel``, ``Publication``, ``ALL``, ``inbox_of``, ``broker_address``,
``inbox_of_address``, ``topic_of``, ``found_on_broker``, ``join_on_broker``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
import hashlib
from typing import Any

from ..trust.canonical import CanonicalError, decode
from ..trust.identity import Identity
from .community import Charter, CommunityRules, Invitation
from .protocol import COMMUNITY, Broadcast, Output, Peer, PeerLeft, Send
from .sealing import KeyChain, SealingError, is_grant

ALL = "all"
ADDRESS_PREFIX = "mqtt:"


def inbox_of(community: str, member: str) -> str:
    """The inbox route of ``member`` in ``community`` (32 hex characters)."""
    return hashlib.sha256(f"peer-energy/v1/inbox\n{community}\n{member}".encode()).hexdigest()[:32]


def topic_of(community: str) -> str:
    """The community's topic level (32 hex characters of a hash: the broker does not
    learn the community id, which invitations and signatures carry)."""
    return hashlib.sha256(f"peer-energy/v1/topic\n{community}".encode()).hexdigest()[:32]


def broker_address(community: str, member: str) -> str:
    """The protocol address of ``member`` on a broker."""
    return ADDRESS_PREFIX + inbox_of(community, member)


def inbox_of_address(address: str) -> str | None:
    """The inbox route in a broker address (None for any other address)."""
    inbox = address.removeprefix(ADDRESS_PREFIX)
    if inbox == address or len(inbox) != 32 or not all(c in "0123456789abcdef" for c in inbox):
        return None
    return inbox


@dataclass(frozen=True, slots=True)
class Publication:
    """Publish ``frame`` on ``route`` (``ALL`` or an inbox)."""

    route: str
    frame: bytes


def _envelope(data: bytes) -> dict[str, Any] | None:
    try:
        value = decode(data)
    except CanonicalError:
        return None
    return value if isinstance(value, dict) else None


class BrokerChannel:
    """One home's peer on a broker (see the module docstring). Not thread-safe."""

    def __init__(
        self,
        peer: Peer,
        *,
        keys: KeyChain | None = None,
        random32: Callable[[], bytes] | None = None,
    ) -> None:
        """Wrap a fan-out ``peer``. ``keys``: restored keys (else a new chain; a founder
        without a key creates epoch 0). ``random32``: source of new key secrets (PyNaCl's
        CSPRNG when None; tests pass a seeded one)."""
        if not peer.fanout:
            raise ValueError("a broker channel needs a fan-out peer")
        self.peer = peer
        self.keys = keys or KeyChain(peer.identity, peer.community_id)
        self._random32 = random32
        self._held: list[Output] = []
        if peer.joined and self.keys.current is None:
            self.keys.create(0, self._secret())

    @property
    def inbox(self) -> str:
        """This home's inbox route."""
        return inbox_of(self.peer.community_id, self.peer.member_id)

    def _secret(self) -> bytes | None:
        return self._random32() if self._random32 is not None else None

    # -- outgoing --
    def outgoing(
        self, outputs: Iterable[Output], now_ms: int
    ) -> tuple[list[Publication], list[Output]]:
        """Turn the peer's outputs into publications; return them and the events."""
        pubs: list[Publication] = []
        events: list[Output] = []
        for out in outputs:
            if isinstance(out, Send | Broadcast):
                if self._held or not self._route(out, pubs):
                    self._held.append(out)
            else:
                events.append(out)
                if isinstance(out, PeerLeft):
                    pubs.extend(self._rotate(out, now_ms))
        return pubs, events

    def _route(self, out: Send | Broadcast, pubs: list[Publication]) -> bool:
        """Seal one output into ``pubs``; False if it needs a key not held yet."""
        if isinstance(out, Broadcast):
            targets: Sequence[str] = (ALL,) if out.to == (COMMUNITY,) else out.to
            data = out.data
        else:
            targets, data = (out.to,), out.data
            direct = self._direct(out)
            if direct is not None:
                pubs.extend(direct)
                return True
        if self.keys.current is None:
            return False
        frame = self.keys.seal(data)
        for to in targets:
            route = ALL if to == ALL else inbox_of_address(to)
            if route is not None:
                pubs.append(Publication(route, frame))
        return True

    def _direct(self, out: Send) -> list[Publication] | None:
        """A join (to the inviter's key) or a welcome (a key grant, then the welcome, to
        the joiner's key); None for anything else."""
        if b'"type":"join"' not in out.data and b'"type":"welcome"' not in out.data:
            return None
        env = _envelope(out.data)
        route = inbox_of_address(out.to)
        if env is None or route is None:
            return None
        if env.get("type") == "join":
            inviter = self.peer.membership.charter.founder  # a joiner's placeholder charter
            return [Publication(route, self.keys.seal_direct(inviter, out.data))]
        if env.get("type") != "welcome" or self.keys.current is None:
            return None
        joiner = _welcomed(env, out.to)
        if joiner is None:
            return None
        grant = self.keys.grant(self.keys.current, [joiner], int(env.get("ts", 0)))
        return [
            Publication(route, self.keys.seal_direct(joiner, grant)),
            Publication(route, self.keys.seal_direct(joiner, out.data)),
        ]

    def _rotate(self, left: PeerLeft, now_ms: int) -> list[Publication]:
        """A new key for those who remain, if this home is the one to create it."""
        peer = self.peer
        if not peer.joined or self.keys.current is None:
            return []
        remaining = [m for m in peer.roster() if m != left.member]
        rotator = left.by if left.removed and left.by in remaining else min(remaining, default="")
        if rotator != peer.member_id:
            return []
        key = self.keys.new_key(self.keys.current.epoch + 1, self._secret())
        grant = self.keys.grant(key, [m for m in remaining if m != peer.member_id], now_ms)
        # Under the old key: every remaining member holds it; the one who left cannot open
        # the grant's entries, which are sealed to each remaining member.
        frame = self.keys.seal(grant)
        self.keys.add(key)
        return [Publication(ALL, frame)]

    # -- incoming --
    def incoming(self, frame: bytes, now_ms: int) -> list[Output]:
        """Handle one frame from the broker; returns the peer's outputs (pass them to
        ``outgoing``) plus any held outputs a new key released."""
        data = self.keys.open(frame)
        if data is None:
            return []
        if _sender(data) == self.peer.member_id:
            return []  # our own publication coming back from the community topic
        if is_grant(data):
            env = _envelope(data)
            if env is not None and env.get("type") == "key":
                had = self.keys.current
                if self.keys.accept(data, self.peer.membership.keyring, now_ms) is None:
                    return []
                return self.release() if had is None else []
        out = self.peer.receive(data, "broker", now_ms)
        if self.keys.community != self.peer.community_id:  # pragma: no cover - ids agree
            self.keys.set_community(self.peer.community_id)
        return out

    def release(self) -> list[Output]:
        """The held outputs (once a key is there): hand them to ``outgoing`` again."""
        held, self._held = self._held, []
        return held


def found_on_broker(
    identity: Identity,
    *,
    name: str,
    rules: CommunityRules,
    now_ms: int,
    nonce: bytes,
    admins: Sequence[str] = (),
    random32: Callable[[], bytes] | None = None,
) -> BrokerChannel:
    """Found a community on a broker: a fan-out peer at its broker address, and the
    community key of epoch 0."""
    charter = Charter(name, identity.public_key, now_ms, nonce.hex(), rules, tuple(admins))
    peer = Peer.found(
        identity,
        name=name,
        rules=rules,
        address=broker_address(charter.community_id, identity.public_key),
        now_ms=now_ms,
        nonce=nonce,
        admins=admins,
        fanout=True,
    )
    return BrokerChannel(peer, random32=random32)


def join_on_broker(
    identity: Identity, invitation: Invitation | str, *, now_ms: int
) -> tuple[BrokerChannel, list[Output]]:
    """Start joining a broker community; returns the channel and the join to publish
    (through ``outgoing``). Raises ``InvitationError`` like ``Peer.joining``."""
    inv = Invitation.decode(invitation) if isinstance(invitation, str) else invitation
    address = broker_address(inv.community, identity.public_key)
    peer, out = Peer.joining(identity, inv, address=address, now_ms=now_ms, fanout=True)
    return BrokerChannel(peer), out


def _sender(data: bytes) -> str:
    """The sender key of canonical envelope bytes without decoding them: the top-level
    ``sender`` is the last one (keys are sorted and none after it holds an object; a quote
    inside a string is escaped), so the last ``"sender":"`` is the envelope's own."""
    i = data.rfind(b'"sender":"')
    return data[i + 10 : i + 74].decode("ascii", "replace") if i >= 0 else ""


def _welcomed(env: dict[str, Any], address: str) -> str | None:
    """The member a welcome admits: its ``member`` record with this address."""
    payload = env.get("payload")
    records = payload.get("records") if isinstance(payload, dict) else None
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, dict) or record.get("type") != "member":
            continue
        inner = record.get("payload")
        if isinstance(inner, dict) and inner.get("address") == address:
            member = inner.get("member")
            if isinstance(member, str):
                return member
    return None


__all__ = [
    "ALL",
    "BrokerChannel",
    "Publication",
    "SealingError",
    "broker_address",
    "found_on_broker",
    "inbox_of",
    "inbox_of_address",
    "join_on_broker",
    "topic_of",
]
