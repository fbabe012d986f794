"""An in-memory network that drives many protocol peers in one process on a virtual clock.

The simulator for tests and benchmarks: it delivers the ``Send``/``Broadcast`` outputs of
``protocol.Peer`` after a per-link latency (plus seeded jitter), drops or duplicates
messages with given probabilities, cuts links by partitions, takes peers offline (they
neither receive, send nor tick) and back online, runs a peer's clock ahead or behind
(``set_skew``), keeps a peer busy for a while (``set_busy``: a loaded CPU, its timers and
messages wait and are handled late, in the order they fell due), and ticks every peer
exactly when its ``next_wakeup_ms`` says. All
randomness comes from one seeded ``random.Random``, so a run is reproducible.

Malicious behaviour (``Malice``) is applied to a peer's outgoing traffic:

* ``FORGER``: also sends, in the name of another member, a copy of each message with the
  sender field replaced (the signature no longer matches), and a copy with an altered
  payload under the original signature;
* ``REPLAYER``: re-sends every message it ever received to everyone, later;
* ``EQUIVOCATOR``: for each of its bids, signs a second, different bid for the same slot
  and sends one bid to half the members and the other to the rest.

Public API: ``MemNet``, ``Malice``, ``Delivery``, ``NetStats``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
import heapq
import random
from typing import Any

from ..market.orders import Order, Step
from ..trust.canonical import canonical_bytes, decode
from ..trust.envelope import seal
from .protocol import Broadcast, Output, Peer, Send


class Malice(StrEnum):
    """What a malicious peer does to its outgoing traffic."""

    FORGER = "forger"
    REPLAYER = "replayer"
    EQUIVOCATOR = "equivocator"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message in flight."""

    at_ms: int
    sender: str
    to: str
    data: bytes


@dataclass(slots=True)
class NetStats:
    """Counters per sending address: messages and bytes handed to the network."""

    messages: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    delivered: int = 0

    def count(self, sender: str, size: int) -> None:
        """Record one message of ``size`` bytes from ``sender``."""
        self.messages[sender] = self.messages.get(sender, 0) + 1
        self.bytes[sender] = self.bytes.get(sender, 0) + size


class MemNet:
    """A virtual network of ``Peer`` objects addressed by strings."""

    def __init__(
        self,
        *,
        start_ms: int,
        seed: int = 0,
        latency_ms: int = 5,
        jitter_ms: int = 0,
        drop_bp: int = 0,
        duplicate_bp: int = 0,
        tap: Callable[[str, str, bytes], None] | None = None,
    ) -> None:
        """Create an empty network at virtual time ``start_ms``.

        ``drop_bp``/``duplicate_bp``: probability in basis points that a message is lost or
        delivered twice; ``jitter_ms``: extra uniform random delay (reorders messages);
        ``tap``: called with (sender, to, bytes) for every message put on the wire.
        """
        self.now = start_ms
        self.rng = random.Random(seed)  # noqa: S311 - simulated faults, not secrets
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.drop_bp = drop_bp
        self.duplicate_bp = duplicate_bp
        self.tap = tap
        self.peers: dict[str, Peer] = {}
        self.events: dict[str, list[tuple[int, Any]]] = {}
        self.offline: set[str] = set()
        self.malice: dict[str, Malice] = {}
        self.links: dict[tuple[str, str], tuple[int, int]] = {}  # (a, b) -> latency, drop_bp
        self.groups: list[frozenset[str]] | None = None
        self.skew: dict[str, int] = {}  # address -> how far its clock is ahead (ms)
        self.busy: dict[str, int] = {}  # address -> until when its ticks and messages wait
        self.stats = NetStats()
        self._queue: list[tuple[int, int, str, str, bytes]] = []
        self._counter = 0
        self._scheduled: dict[str, int] = {}
        self._captured: dict[str, list[bytes]] = {}

    # -- set-up --
    def add(self, peer: Peer, *, malice: Malice | None = None) -> None:
        """Attach ``peer`` at its own address."""
        self.peers[peer.address] = peer
        self.events.setdefault(peer.address, [])
        if malice is not None:
            self.malice[peer.address] = malice
        self._schedule(peer.address, self.now)

    def set_link(self, a: str, b: str, *, latency_ms: int, drop_bp: int = 0) -> None:
        """Override latency and loss of the link between ``a`` and ``b`` (both ways)."""
        self.links[(a, b)] = self.links[(b, a)] = (latency_ms, drop_bp)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Only peers in the same group can talk (addresses in no group are isolated)."""
        self.groups = [frozenset(g) for g in groups]

    def heal(self) -> None:
        """Remove the partition."""
        self.groups = None

    def set_skew(self, address: str, ahead_ms: int) -> None:
        """The peer's clock runs ``ahead_ms`` ahead of the network's (behind if negative):
        it signs, receives and ticks on its own time."""
        self.skew[address] = ahead_ms
        self._scheduled.pop(address, None)
        self._schedule(address, self.peers[address].next_wakeup_ms() - ahead_ms)

    def set_busy(self, address: str, until_ms: int) -> None:
        """The peer's CPU is taken until ``until_ms`` (network time): its ticks and the
        messages that reach it meanwhile wait, and are handled then, in the order they
        fell due (a loaded event loop runs its late timers and queued reads in turn)."""
        self.busy[address] = until_ms

    def local_now(self, address: str) -> int:
        """The time on ``address``'s own clock."""
        return self.now + self.skew.get(address, 0)

    def go_offline(self, address: str) -> None:
        """The peer stops: no messages in or out, no ticks."""
        self.offline.add(address)

    def go_online(self, address: str) -> None:
        """The peer is back; it ticks at once (and notices the gap)."""
        self.offline.discard(address)
        self._schedule(address, self.now)

    # -- driving --
    def inject(self, to: str, data: bytes, *, sender: str = "outsider", delay_ms: int = 0) -> None:
        """Put raw bytes on the wire to ``to`` (tests of forged or replayed messages)."""
        self._push(self.now + delay_ms, sender, to, data)

    def apply(self, address: str, outputs: Iterable[Output]) -> None:
        """Hand a peer's outputs to the network (events are recorded)."""
        for out in outputs:
            if isinstance(out, Send):
                self._send(address, out.to, out.data)
            elif isinstance(out, Broadcast):
                for to in out.to:
                    self._send(address, to, out.data)
            else:
                self.events[address].append((self.now, out))
        self._schedule(address, self.peers[address].next_wakeup_ms() - self.skew.get(address, 0))

    def run_until(self, end_ms: int) -> None:
        """Process deliveries and ticks in time order up to ``end_ms``."""
        while self._queue and self._queue[0][0] <= end_ms:
            at, counter, kind, address, data = heapq.heappop(self._queue)
            busy = self.busy.get(address, 0)
            if at < busy:  # handled once the peer is free, in the same order
                heapq.heappush(self._queue, (busy, counter, kind, address, data))
                if kind == "tick" and self._scheduled.get(address) == at:
                    self._scheduled[address] = busy
                continue
            self.now = max(self.now, at)
            if kind == "tick":
                if self._scheduled.get(address) != at:
                    continue
                del self._scheduled[address]
                if address in self.offline or address not in self.peers:
                    continue
                self.apply(address, self.peers[address].tick(self.local_now(address)))
            else:
                sender, _, _ = kind.partition("|")
                if address in self.offline or address not in self.peers:
                    self.stats.dropped += 1
                    continue
                self.stats.delivered += 1
                if self.malice.get(address) is Malice.REPLAYER:
                    self._captured.setdefault(address, []).append(data)
                peer = self.peers[address]
                self.apply(address, peer.receive(data, sender, self.local_now(address)))
        self.now = max(self.now, end_ms)

    # -- internals --
    def _schedule(self, address: str, at_ms: int) -> None:
        at_ms = max(at_ms, self.now)
        current = self._scheduled.get(address)
        if current is not None and current <= at_ms:
            return
        self._scheduled[address] = at_ms
        self._counter += 1
        heapq.heappush(self._queue, (at_ms, self._counter, "tick", address, b""))

    def _push(self, at_ms: int, sender: str, to: str, data: bytes) -> None:
        if self.tap is not None:
            self.tap(sender, to, data)
        self._counter += 1
        heapq.heappush(self._queue, (at_ms, self._counter, f"{sender}|msg", to, data))

    def _connected(self, a: str, b: str) -> bool:
        if a in self.offline or b in self.offline:
            return False
        if self.groups is None:
            return True
        return any(a in g and b in g for g in self.groups)

    def _send(self, sender: str, to: str, data: bytes) -> None:
        malice = self.malice.get(sender)
        if malice is not None:
            for variant_to, variant in self._malicious(sender, malice, to, data):
                self._transmit(sender, variant_to, variant)
            return
        self._transmit(sender, to, data)

    def _transmit(self, sender: str, to: str, data: bytes) -> None:
        self.stats.count(sender, len(data))
        if not self._connected(sender, to):
            self.stats.dropped += 1
            return
        latency, drop = self.links.get((sender, to), (self.latency_ms, self.drop_bp))
        if drop and self.rng.randrange(10_000) < drop:
            self.stats.dropped += 1
            return
        delay = latency + (self.rng.randrange(self.jitter_ms + 1) if self.jitter_ms else 0)
        self._push(self.now + delay, sender, to, data)
        if self.duplicate_bp and self.rng.randrange(10_000) < self.duplicate_bp:
            self._push(self.now + delay + 1, sender, to, data)

    def _malicious(
        self, sender: str, malice: Malice, to: str, data: bytes
    ) -> list[tuple[str, bytes]]:
        peer = self.peers[sender]
        msg: dict[str, Any] = decode(data)  # type: ignore[assignment]
        out: list[tuple[str, bytes]] = [(to, data)]
        if malice is Malice.FORGER:
            victims = [m for m in peer.roster() if m != peer.member_id]
            if victims:
                forged = dict(msg) | {"sender": victims[0]}
                out.append((to, canonical_bytes(forged)))
            altered = dict(msg) | {"payload": dict(msg["payload"]) | {"forged": True}}
            out.append((to, canonical_bytes(altered)))
        elif malice is Malice.REPLAYER:
            for old in self._captured.get(sender, [])[-5:]:
                out.append((to, old))
        elif malice is Malice.EQUIVOCATOR and msg.get("type") == "bid":
            roster = [m for m in peer.roster() if m != peer.member_id]
            targets = {peer.membership.address_of(m) for m in roster[len(roster) // 2 :]}
            if to in targets:
                payload: dict[str, Any] = dict(msg["payload"])
                orders = [Order.from_dict(o) for o in payload["orders"]]
                changed = [
                    Order(
                        o.order_id,
                        o.owner,
                        o.side,
                        o.slot_start,
                        tuple(Step(s.price + 1, s.energy_wh) for s in o.steps),
                    ).to_dict()
                    for o in orders
                ]
                seq, ts = msg["seq"], msg["ts"]
                assert isinstance(seq, int)
                assert isinstance(ts, int)
                other = seal(
                    peer.identity,
                    community=peer.community_id,
                    seq=seq,
                    ts_ms=ts,
                    type="bid",
                    payload={"slot": payload["slot"], "orders": changed},  # type: ignore[dict-item]
                )
                out = [(to, other.to_wire())]
        return out
