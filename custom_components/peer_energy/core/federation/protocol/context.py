"""What every part of one peer shares: who it is, the community it belongs to (charter,
rules, membership), sealing messages, addresses, and when each member was last heard."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...trust.canonical import digest_of
from ...trust.envelope import Envelope, ReplayGuard, seal
from ...trust.identity import Identity
from ..community import Charter, CommunityRules, Membership
from .outputs import COMMUNITY, Broadcast, Output, PeerReachable, PeerUnreachable, Send
from .wire import RECORDS_PER_MESSAGE, REPLAY_WINDOW, envelope_policy


class PeerContext:
    """The state the protocol parts of one peer share (not thread-safe, like ``Peer``)."""

    def __init__(
        self,
        identity: Identity,
        membership: Membership,
        address: str,
        *,
        joined: bool,
        fanout: bool = False,
    ) -> None:
        """This home's identity and address in ``membership``'s community. ``fanout``: what
        goes to every member is one ``Broadcast`` to ``(COMMUNITY,)`` (a broker fans it
        out), and there are no relays."""
        self.identity = identity
        self.member_id = identity.public_key
        self.membership = membership
        self.address = address
        self.rules: CommunityRules = membership.charter.rules
        self.community_id = membership.community
        self.policy = envelope_policy(self.community_id)
        self.guard = ReplayGuard(REPLAY_WINDOW)
        self.joined = joined
        self.fanout = fanout
        self.seen: set[str] = set()  # digests of the records already handled
        self.heard: dict[str, int] = {}  # member -> when a valid message last came
        self.unreachable: set[str] = set()
        self._seq = 0

    def set_community(self, community_id: str) -> None:
        """Use ``community_id`` (a joining peer's community, before its charter is known)."""
        self.membership.community = self.community_id = community_id
        self.policy = envelope_policy(community_id)

    def adopt_charter(self, charter: Charter, founder_address: str) -> None:
        """Start over with the membership of ``charter`` (a welcome)."""
        self.membership = Membership(charter, founder_address)
        self.rules = charter.rules
        self.seen.clear()

    # -- sending --
    def seal_env(self, type_: str, payload: Mapping[str, Any], now_ms: int) -> Envelope:
        """A signed envelope from this home (sequence numbers never repeat)."""
        self._seq = max(self._seq + 1, now_ms)
        return seal(
            self.identity,
            community=self.community_id,
            seq=self._seq,
            ts_ms=now_ms,
            type=type_,
            payload=payload,
        )

    def seal(self, type_: str, payload: Mapping[str, Any], now_ms: int) -> bytes:
        """``seal_env`` as bytes on the wire."""
        return self.seal_env(type_, payload, now_ms).to_wire()

    def others(self) -> tuple[str, ...]:
        """Addresses of every other current member."""
        return tuple(
            addr
            for m in self.membership.roster()
            if m != self.member_id and (addr := self.membership.address_of(m))
        )

    def to_all(self, data: bytes) -> list[Output]:
        """``data`` to every other current member."""
        to = self.others()
        if not to:
            return []
        return [Broadcast((COMMUNITY,) if self.fanout else to, data)]

    def to_some(self, to: tuple[str, ...], data: bytes) -> list[Output]:
        """``data`` to the addresses ``to``; in fan-out mode one publication to the
        community instead (the others ignore what they already hold)."""
        if not to:
            return []
        return [Broadcast((COMMUNITY,) if self.fanout else to, data)]

    def send_records(
        self, to: str, records: Sequence[Mapping[str, Any]], now_ms: int
    ) -> list[Output]:
        """``records`` messages to ``to``, ``RECORDS_PER_MESSAGE`` records each."""
        out: list[Output] = []
        for i in range(0, len(records), RECORDS_PER_MESSAGE):
            chunk = [dict(r) for r in records[i : i + RECORDS_PER_MESSAGE]]
            out.append(Send(to, self.seal("records", {"records": chunk}, now_ms)))
        return out

    def addresses(self, members: Iterable[str]) -> tuple[str, ...]:
        """Addresses of ``members`` (this home and members without one left out)."""
        return tuple(
            addr for m in members if m != self.member_id and (addr := self.membership.address_of(m))
        )

    def pick_peers(self, now_ms: int, count: int, prefer: Sequence[str] = ()) -> list[str]:
        """``count`` peers to ask: ``prefer`` first, then peers heard from most recently,
        rotated by time so that retries ask others."""
        others = [m for m in self.membership.roster() if m != self.member_id]
        if not others:
            return []
        start = int(digest_of({"me": self.member_id, "t": now_ms}).hex()[:8], 16) % len(others)
        rotated = others[start:] + others[:start]
        recent = sorted(rotated, key=lambda m: -self.heard.get(m, 0))
        chosen: list[str] = []
        for m in [*prefer, *recent[: max(1, count - 1)], *rotated]:
            if m != self.member_id and m in others and m not in chosen:
                chosen.append(m)
        chosen = chosen[:count]
        return [a for m in chosen if (a := self.membership.address_of(m))]

    # -- reachability --
    def heard_from(self, member: str, now_ms: int) -> list[Output]:
        """A valid message came from ``member``."""
        self.heard[member] = now_ms
        if member in self.unreachable:
            self.unreachable.discard(member)
            return [PeerReachable(member)]
        return []

    def check_reachability(self, now_ms: int) -> list[Output]:
        """Members not heard from for three slots become unreachable."""
        limit = 3 * self.rules.slot_seconds * 1000
        out: list[Output] = []
        for member in self.membership.roster():
            if member == self.member_id or member in self.unreachable:
                continue
            last = self.heard.setdefault(member, now_ms)
            if now_ms - last > limit:
                self.unreachable.add(member)
                out.append(PeerUnreachable(member, last))
        return out
