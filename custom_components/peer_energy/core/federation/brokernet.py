"""An in-memory broker that drives many ``BrokerChannel`` homes in one process.

The fan-out counterpart of ``memnet``: every home publishes sealed frames once to the
community route (``ALL``) or to one inbox, and the broker delivers each frame to every
subscriber of the route after a latency (plus seeded jitter), losing or duplicating frames
with given probabilities. The broker is untrusted: ``tap`` sees every frame, ``replay``
re-delivers any captured frame (a broker's replay or a retained message), and ``retain``
makes the broker hand the last frame of each route to every new subscriber. Homes go
offline and online, and tick exactly when their peer's ``next_wakeup_ms`` says. All
randomness comes from one seeded ``random.Random``.

Public API: ``BrokerNet`` (its ``stats`` is memnet's ``NetStats``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
import heapq
import random
from typing import Any

from ..trust.identity import Identity
from .channel import ALL, BrokerChannel, Publication, join_on_broker
from .memnet import NetStats
from .protocol import Output


class BrokerNet:
    """A virtual broker and its homes, addressed by their protocol addresses."""

    def __init__(
        self,
        *,
        start_ms: int,
        seed: int = 0,
        latency_ms: int = 5,
        jitter_ms: int = 0,
        drop_bp: int = 0,
        duplicate_bp: int = 0,
        retain: bool = False,
        tap: Callable[[str, str, bytes], None] | None = None,
    ) -> None:
        """An empty broker at virtual time ``start_ms``; ``tap(sender, route, frame)``
        sees every publication."""
        self.now = start_ms
        self.rng = random.Random(seed)  # noqa: S311 - simulated faults, not secrets
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.drop_bp = drop_bp
        self.duplicate_bp = duplicate_bp
        self.retain = retain
        self.tap = tap
        self.homes: dict[str, BrokerChannel] = {}
        self.events: dict[str, list[tuple[int, Any]]] = {}
        self.offline: set[str] = set()
        self.stats = NetStats()  # a publication counts as one message
        self.frames: list[tuple[str, bytes]] = []  # every (route, frame) published
        self._subscribers: dict[str, set[str]] = {}
        self._retained: dict[str, bytes] = {}
        self._queue: list[tuple[int, int, str, str, bytes]] = []
        self._counter = 0
        self._scheduled: dict[str, int] = {}

    # -- set-up --
    def form(
        self,
        founder: BrokerChannel,
        joiners: Iterable[Identity],
        secret: Callable[[int], bytes],
        *,
        step_ms: int,
    ) -> list[BrokerChannel]:
        """Attach ``founder`` and join each of ``joiners`` through its own invitation
        (``secret(i)`` for the i-th home, founder 0), running ``step_ms`` after each join;
        returns every home's channel, founder first."""
        self.add(founder)
        channels = [founder]
        for i, identity in enumerate(joiners, start=1):
            inv = founder.peer.invite(secret(i), self.now)
            channel, outs = join_on_broker(identity, inv.encode(), now_ms=self.now)
            self.add(channel)
            self.apply(channel.peer.address, outs)
            self.run_until(self.now + step_ms)
            channels.append(channel)
        return channels

    def add(self, channel: BrokerChannel) -> None:
        """Attach a home: it subscribes to the community route and its inbox."""
        address = channel.peer.address
        self.homes[address] = channel
        self.events.setdefault(address, [])
        for route in (ALL, channel.inbox):
            self._subscribers.setdefault(route, set()).add(address)
            if self.retain and route in self._retained:
                self._push(self.now + self.latency_ms, address, self._retained[route])
        self._schedule(address, self.now)

    def go_offline(self, address: str) -> None:
        """The home stops: nothing in or out, no ticks (the broker does not queue)."""
        self.offline.add(address)

    def go_online(self, address: str) -> None:
        """The home is back and ticks at once."""
        self.offline.discard(address)
        self._schedule(address, self.now)

    # -- driving --
    def apply(self, address: str, outputs: Iterable[Output]) -> None:
        """Hand a home's peer outputs to its channel and publish the result."""
        channel = self.homes[address]
        pubs, events = channel.outgoing(outputs, self.now)
        for pub in pubs:
            self.publish(address, pub)
        self.events[address].extend((self.now, e) for e in events)
        if channel.peer.joined:  # a peer that is not a member has no clock to run
            self._schedule(address, channel.peer.next_wakeup_ms())

    def publish(self, sender: str, pub: Publication) -> None:
        """The broker takes one publication and fans it out to the route's subscribers."""
        self.stats.count(sender, len(pub.frame))
        self.frames.append((pub.route, pub.frame))
        if self.tap is not None:
            self.tap(sender, pub.route, pub.frame)
        if sender in self.offline:
            self.stats.dropped += 1
            return
        if self.retain:
            self._retained[pub.route] = pub.frame
        for to in sorted(self._subscribers.get(pub.route, ())):
            if self.drop_bp and self.rng.randrange(10_000) < self.drop_bp:
                self.stats.dropped += 1
                continue
            jitter = self.rng.randrange(self.jitter_ms + 1) if self.jitter_ms else 0
            self._push(self.now + self.latency_ms + jitter, to, pub.frame)
            if self.duplicate_bp and self.rng.randrange(10_000) < self.duplicate_bp:
                self._push(self.now + self.latency_ms + jitter + 1, to, pub.frame)

    def replay(self, to: str, frame: bytes, *, delay_ms: int = 0) -> None:
        """The broker delivers ``frame`` (captured earlier) to ``to`` again."""
        self._push(self.now + delay_ms, to, frame)

    def run_until(self, end_ms: int) -> None:
        """Process deliveries and ticks in time order up to ``end_ms``."""
        while self._queue and self._queue[0][0] <= end_ms:
            at, _, kind, address, frame = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            if address in self.offline or address not in self.homes:
                if kind == "frame":
                    self.stats.dropped += 1
                elif self._scheduled.get(address) == at:
                    del self._scheduled[address]  # ticks again when back online
                continue
            channel = self.homes[address]
            if kind == "tick":
                if self._scheduled.get(address) != at:
                    continue
                del self._scheduled[address]
                self.apply(address, channel.peer.tick(self.now))
            else:
                self.stats.delivered += 1
                self.apply(address, channel.incoming(frame, self.now))
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

    def _push(self, at_ms: int, to: str, frame: bytes) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (at_ms, self._counter, "frame", to, frame))
