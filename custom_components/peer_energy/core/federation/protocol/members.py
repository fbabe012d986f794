"""Membership: invitations, joins and welcomes, and the membership records (``member``,
``leave``, ``remove``, ``address``, ``name``, ``enrol``) a peer signs or receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...trust.canonical import digest_of
from ...trust.envelope import Envelope
from ...trust.identity import AssetEnrolment, verify_enrolment
from ..community import Charter, CommunityError, Invitation
from .context import PeerContext
from .outputs import DeviceEnrolled, Output, PeerJoined, PeerLeft, Rejected, Send
from .wire import (
    DEFAULT_INVITATION_TTL_MS,
    PENDING_JOIN_MS,
    Handler,
    Incoming,
    ProtocolError,
    Reject,
    verify_record,
)


@dataclass(frozen=True, slots=True)
class _Change:
    """A membership record that passed the protocol's checks (``key``: its digest)."""

    key: str
    target: str
    enrolment: AssetEnrolment | None


@dataclass(frozen=True, slots=True)
class _Join:
    """A join with a matching proof (``again``: a repeated join of the admitted key)."""

    invitation_id: str
    address: str
    again: bool


@dataclass(frozen=True, slots=True)
class _Pending:
    """A welcomed joiner not admitted yet (confirmed joins): its signed ``member`` record
    waits for the joiner's ``joined``."""

    invitation_id: str
    address: str
    record: Envelope
    expires_ms: int


class Members:
    """Invitations this peer issued, its own join, and membership records.

    With ``confirm_joins`` a join is admitted only when the joiner acknowledges the
    welcome (``joined``) over the transport it will use: until then the joiner is
    pending here (shown by ``pending``, unknown to everyone else, so no home can find
    it unreachable), and a pending join that is not acknowledged within
    ``PENDING_JOIN_MS`` is forgotten (its invitation can be used again until it expires).
    """

    def __init__(self, ctx: PeerContext, inviter: str = "", *, confirm_joins: bool = False) -> None:
        """``inviter``: the member whose invitation this peer is joining with."""
        self.ctx = ctx
        self.inviter = inviter
        self.confirm_joins = confirm_joins
        self.pending: dict[str, _Pending] = {}  # joiner key -> its pending admission
        self.awaiting_ack_until = 0  # a joiner: resend ``joined`` until the inviter answers
        self.next_ack_ms = 0
        self.joined_invitation = ""
        # Invitations this peer issued, in issue order (used ones too, while their member
        # is current: a repeated join from that member gets the welcome again).
        self.invitations: dict[str, Invitation] = {}
        # Used invitation id -> the member key it admitted ("" when unknown: old snapshot).
        self.used_invitations: dict[str, str] = {}
        self.join_invitation: Invitation | None = None  # while joining
        self.record_handler: Handler[Any] = Handler(self._check_record, self._apply_record)
        self.join_handler: Handler[Any] = Handler(self._check_join, self._apply_join)
        self.joined_handler: Handler[Any] = Handler(self._check_joined, self._apply_joined)

    # -- invitations --
    def invite(
        self, secret: bytes, now_ms: int, ttl_ms: int = DEFAULT_INVITATION_TTL_MS
    ) -> Invitation:
        """See ``Peer.invite``."""
        ctx = self.ctx
        if not ctx.joined:
            raise ProtocolError("only members can invite")
        inv = Invitation(ctx.community_id, ctx.member_id, ctx.address, secret, now_ms + ttl_ms)
        self.invitations[inv.invitation_id] = inv
        return inv

    def open_invitations(self, now_ms: int) -> int:
        """See ``Peer.open_invitations``."""
        return sum(
            1
            for inv_id, inv in self.invitations.items()
            if inv_id not in self.used_invitations and not inv.expired(now_ms)
        )

    def invitation_open(self, invitation_id: str, now_ms: int) -> bool:
        """See ``Peer.invitation_open``."""
        inv = self.invitations.get(invitation_id)
        return (
            inv is not None
            and invitation_id not in self.used_invitations
            and not inv.expired(now_ms)
        )

    def latest_invitation(self, now_ms: int) -> Invitation | None:
        """See ``Peer.latest_invitation``."""
        if not self.invitations:
            return None
        inv_id = next(reversed(self.invitations))
        return self.invitations[inv_id] if self.invitation_open(inv_id, now_ms) else None

    def snapshot(self) -> list[dict[str, Any]]:
        """The invitations to keep (in issue order; a used one while the member it
        admitted is current, with ``used_by``)."""
        return [
            {
                "community": inv.community,
                "inviter": inv.inviter,
                "address": inv.address,
                "secret": inv.secret.hex(),
                "expires_ms": inv.expires_ms,
                **({"used_by": used_by} if used_by else {}),
            }
            for inv_id, inv in self.invitations.items()
            if (used_by := self.used_invitations.get(inv_id)) is None
            or (used_by and (self.ctx.membership.is_member(used_by) or used_by in self.pending))
        ]

    def restore(self, invitations: list[Any], used: list[Any]) -> None:
        """Rebuild the invitations from ``snapshot`` data."""
        for raw in invitations:
            inv = Invitation(
                str(raw["community"]),
                str(raw["inviter"]),
                str(raw["address"]),
                bytes.fromhex(str(raw["secret"])),
                int(raw["expires_ms"]),
            )
            self.invitations[inv.invitation_id] = inv
            if "used_by" in raw:  # absent in snapshots before repeated joins
                self.used_invitations[inv.invitation_id] = str(raw["used_by"])
        for inv_id in used:
            self.used_invitations.setdefault(str(inv_id), "")

    # -- joining (this peer) --
    def join_again(self, now_ms: int) -> list[Output]:
        """See ``Peer.join_again``."""
        ctx = self.ctx
        inv = self.join_invitation
        if inv is None or ctx.joined:
            raise ProtocolError("this peer is not joining")
        payload = {
            "invitation": inv.invitation_id,
            "address": ctx.address,
            "proof": inv.proof(ctx.member_id, ctx.address),
        }
        return [Send(inv.address, ctx.seal("join", payload, now_ms))]

    def check_welcome(self, msg: Incoming) -> Charter | Rejected:
        """A welcome from our inviter with a charter of our community."""
        if self.ctx.joined or msg.env.sender != self.inviter:
            return msg.reject(Reject.BAD_MEMBERSHIP, "unexpected welcome")
        try:
            charter = Charter.from_dict(msg.env.payload["charter"])
        except CommunityError as err:
            return msg.reject(Reject.BAD_MEMBERSHIP, str(err))
        if charter.community_id != self.ctx.community_id:
            return msg.reject(Reject.BAD_MEMBERSHIP, "charter of another community")
        return charter

    def adopt_welcome(self, charter: Charter) -> None:
        """Start over with the welcome's charter (its records follow)."""
        ms = self.ctx.membership
        founder_address = ms.addresses.get(self.inviter, "")
        self.ctx.adopt_charter(charter, founder_address if charter.founder == self.inviter else "")

    def finish_welcome(self, msg: Incoming) -> list[Output]:
        """Joined if the welcome's records hold ours."""
        ctx = self.ctx
        if not ctx.membership.is_member(ctx.member_id):
            return [msg.reject(Reject.BAD_MEMBERSHIP, "welcome lacks our record")]
        ctx.joined = True
        inv = self.join_invitation
        self.join_invitation = None  # its secret is not needed any more
        if not self.confirm_joins or inv is None:
            return []
        self.joined_invitation = inv.invitation_id
        self.awaiting_ack_until = msg.now_ms + PENDING_JOIN_MS
        return self.ack(msg.now_ms)

    def ack(self, now_ms: int) -> list[Output]:
        """A joiner's ``joined`` to its inviter (again, while it has not answered)."""
        addr = self.ctx.membership.address_of(self.inviter)
        self.next_ack_ms = now_ms + self.ctx.rules.sync_window_ms
        if addr is None:  # pragma: no cover - the welcome holds the inviter's record
            return []
        payload = {"invitation": self.joined_invitation}
        return [Send(addr, self.ctx.seal("joined", payload, now_ms))]

    def heard_from_inviter(self) -> None:
        """The inviter answered after the welcome: the admission is confirmed."""
        self.awaiting_ack_until = 0

    def due(self, now_ms: int) -> list[Output]:
        """Expire pending joins; a joiner resends its ``joined`` while unanswered."""
        for member, pending in list(self.pending.items()):
            if now_ms >= pending.expires_ms:
                del self.pending[member]
                if self.used_invitations.get(pending.invitation_id) == member:
                    del self.used_invitations[pending.invitation_id]
        if self.awaiting_ack_until and now_ms >= self.awaiting_ack_until:
            self.awaiting_ack_until = 0  # the inviter never answered: give up
        if self.awaiting_ack_until and now_ms >= self.next_ack_ms:
            return self.ack(now_ms)
        return []

    def wakeup(self) -> int | None:
        """When ``due`` next has work."""
        times = [p.expires_ms for p in self.pending.values()]
        if self.awaiting_ack_until:
            times.append(min(self.next_ack_ms, self.awaiting_ack_until))
        return min(times, default=None)

    def pending_snapshot(self) -> list[dict[str, Any]]:
        """The pending joins to keep across a restart."""
        return [
            {
                "invitation": p.invitation_id,
                "address": p.address,
                "record": p.record.to_dict(),
                "expires_ms": p.expires_ms,
            }
            for p in self.pending.values()
        ]

    def restore_pending(self, items: list[Any]) -> None:
        """Rebuild pending joins from ``pending_snapshot`` data (a record that no longer
        verifies is dropped)."""
        ctx = self.ctx
        for raw in items:
            env, _, _ = verify_record(
                raw["record"], community=ctx.community_id, keyring=ctx.membership.keyring
            )
            if env is None or env.type != "member":
                continue
            member = str(env.payload["member"])
            self.pending[member] = _Pending(
                str(raw["invitation"]), str(raw["address"]), env, int(raw["expires_ms"])
            )

    # -- joins (of others) --
    def _check_join(self, msg: Incoming) -> _Join | Rejected:
        p, now_ms, sender = msg.env.payload, msg.now_ms, msg.env.sender
        inv_id, address, proof = str(p["invitation"]), str(p["address"]), str(p["proof"])
        inv = self.invitations.get(inv_id)
        used_by = self.used_invitations.get(inv_id)
        # A used invitation only answers the key it admitted (a repeated join: the welcome
        # was lost, e.g. the joiner restarted), even after its expiry.
        if (
            inv is None
            or (used_by is None and inv.expired(now_ms))
            or (used_by is not None and used_by != sender)
        ):
            return msg.reject(Reject.BAD_INVITATION, "unknown, used or expired")
        if not inv.check_proof(sender, address, proof):
            return msg.reject(Reject.BAD_PROOF, "join proof does not match")
        pending = self.pending.get(sender)
        if pending is not None:  # welcomed, not acknowledged yet
            if address == pending.address and inv_id == pending.invitation_id:
                return _Join(inv_id, address, again=True)  # the welcome again
            # A corrected address (or another invitation) of the same key: its welcome
            # never arrived, so it starts over (the proof binds the key and the address).
            return _Join(inv_id, address, again=False)
        if used_by is not None:
            # A former member's key is refused by validate() already (unknown sender).
            if not self.ctx.membership.is_member(sender):  # pragma: no cover - see above
                return msg.reject(Reject.BAD_INVITATION, "used")
            # Only to the address on record: a repeated join cannot aim the welcome
            # elsewhere (the joiner resends exactly what it sent first).
            if address != self.ctx.membership.address_of(sender):
                return msg.reject(Reject.BAD_INVITATION, "used for another address")
            return _Join(inv_id, address, again=True)
        return _Join(inv_id, address, again=False)

    def check_join(self, msg: Incoming) -> _Join | None:
        """The join's check alone (no state changes); None when it would be refused."""
        checked = self._check_join(msg)
        return checked if isinstance(checked, _Join) else None

    def _apply_join(self, msg: Incoming, join: _Join) -> list[Output]:
        ctx, now_ms = self.ctx, msg.now_ms
        sender = msg.env.sender
        if join.again:
            pending = self.pending.get(sender)
            return [self._welcome(join.address, now_ms, pending.record if pending else None)]
        record = ctx.seal_env("member", {"member": sender, "address": join.address}, now_ms)
        if self.confirm_joins:
            earlier = self.pending.get(sender)
            waiting = len(self.pending) - (earlier is not None)
            if len(ctx.membership.roster()) + waiting >= ctx.rules.max_members:
                return [msg.reject(Reject.COMMUNITY_FULL, "the community is full")]
            if earlier is not None:  # starting over: its earlier invitation is free again
                del self.pending[sender]
                if self.used_invitations.get(earlier.invitation_id) == sender:
                    del self.used_invitations[earlier.invitation_id]
            expires = now_ms + PENDING_JOIN_MS
            self.pending[sender] = _Pending(join.invitation_id, join.address, record, expires)
            self.used_invitations[join.invitation_id] = sender
            return [self._welcome(join.address, now_ms, record)]
        others = ctx.others()  # before the newcomer is on the roster: it gets the welcome
        events = self.record_handler(Incoming(record, ctx.member_id, msg.sender_address, now_ms))
        if any(isinstance(e, Rejected) for e in events):
            return events
        self.used_invitations[join.invitation_id] = sender
        out: list[Output] = ctx.to_some(others, record.to_wire())
        out.append(self._welcome(join.address, now_ms))
        out.extend(events)
        return out

    def _welcome(self, address: str, now_ms: int, pending: Envelope | None = None) -> Send:
        """The current charter and every membership record (and the newcomer's own
        ``member`` record while it is pending), for a newcomer at ``address``."""
        ms = self.ctx.membership
        records = list(ms.records.values())
        if pending is not None:
            records.append(pending.to_dict())
        welcome = {"charter": ms.charter.to_dict(), "records": records}
        return Send(address, self.ctx.seal("welcome", welcome, now_ms))

    # -- acknowledged welcomes (confirmed joins) --
    def _check_joined(self, msg: Incoming) -> _Pending | str | Rejected:
        sender, inv_id = msg.env.sender, msg.str_field("invitation")
        pending = self.pending.get(sender)
        if pending is not None and pending.invitation_id == inv_id:
            return pending
        if self.used_invitations.get(inv_id) == sender and self.ctx.membership.is_member(sender):
            return sender  # acknowledged again (our answer was lost): answer again
        return msg.reject(Reject.BAD_INVITATION, "no pending join")

    def _apply_joined(self, msg: Incoming, pending: _Pending | str) -> list[Output]:
        """Admit the joiner: apply its record, tell everyone, answer the joiner."""
        ctx, now_ms = self.ctx, msg.now_ms
        if isinstance(pending, str):
            return self.confirm(pending, now_ms)
        others = ctx.others()
        record = pending.record
        events = self.record_handler(Incoming(record, ctx.member_id, msg.sender_address, now_ms))
        if any(isinstance(e, Rejected) for e in events):
            return events
        del self.pending[msg.env.sender]
        self.used_invitations[pending.invitation_id] = msg.env.sender
        out: list[Output] = ctx.to_some(others, record.to_wire())
        out.extend(self.confirm(msg.env.sender, now_ms))
        out.extend(events)
        return out

    def confirm(self, member: str, now_ms: int) -> list[Output]:
        """The admitted joiner's own record back, as the answer to its ``joined``."""
        addr = self.ctx.membership.address_of(member)
        record = next(
            (
                r
                for r in self.ctx.membership.records.values()
                if r.get("type") == "member" and r.get("payload", {}).get("member") == member
            ),
            None,
        )
        if addr is None or record is None:  # pragma: no cover - just admitted
            return []
        return self.ctx.send_records(addr, [record], now_ms)

    # -- membership records --
    def act(self, type_: str, payload: Mapping[str, Any], now_ms: int) -> list[Output]:
        """Sign a membership record of this home, apply it and send it to everyone (and
        to the member it is about). Raises ``ProtocolError`` if it is not allowed."""
        ctx = self.ctx
        if not ctx.joined:
            raise ProtocolError("not a member")
        env = ctx.seal_env(type_, payload, now_ms)
        to = ctx.others()
        target = payload.get("member")
        extra = ctx.membership.address_of(target) if isinstance(target, str) else None
        out: list[Output] = []
        events = self.record_handler(Incoming(env, ctx.member_id, "", now_ms))
        for event in events:
            if isinstance(event, Rejected):
                raise ProtocolError(event.detail)
        if extra and extra not in to and not ctx.fanout:
            to = (*to, extra)
        out.extend(ctx.to_some(to, env.to_wire()))
        if type_ in {"leave", "remove"} and payload.get("member") == ctx.member_id:
            ctx.joined = False
        out.extend(events)
        return out

    def _check_record(self, msg: Incoming) -> _Change | Rejected | None:
        env, member = msg.env, msg.member
        key = digest_of(env.to_dict()).hex()
        if key in self.ctx.membership.records:
            return None
        p = env.payload
        target = str(p.get("member", ""))
        enrolment = None
        if env.type == "leave" and target != member:
            return msg.reject(Reject.BAD_MEMBERSHIP, "a member can only leave for itself")
        if env.type == "remove" and target == member:
            return msg.reject(Reject.BAD_MEMBERSHIP, "use leave to leave")
        if env.type == "enrol":
            enrolment = _enrolment(p["enrolment"])
            if enrolment is None or enrolment.member != member:
                detail = "enrolment is malformed or for another member"
                return msg.reject(Reject.BAD_MEMBERSHIP, detail)
        return _Change(key, target, enrolment)

    def _apply_record(self, msg: Incoming, change: _Change) -> list[Output]:
        """Apply a checked record. ``Membership`` checks the change against the roster
        and refuses it (``CommunityError``) without changing anything."""
        env, member = msg.env, msg.member
        ms = self.ctx.membership
        p = env.payload
        target = change.target
        event: Output
        try:
            if env.type == "member":
                ms.add(target, str(p["address"]), member, env.ts_ms)
                event = PeerJoined(target, str(p["address"]), member)
            elif env.type in {"leave", "remove"}:
                ms.end(target, member, env.ts_ms)
                event = PeerLeft(target, member, env.type == "remove")
                if target == self.ctx.member_id:
                    self.ctx.joined = False
            elif env.type == "address":
                ms.set_address(member, str(p["address"]))
                ms.remember(change.key, env.to_dict())
                return []
            elif env.type == "name":
                ms.set_name(member, str(p["name"]), env.ts_ms)
                ms.remember(change.key, env.to_dict())
                return []
            else:
                assert change.enrolment is not None
                binding = ms.enrol(change.enrolment)
                kind = change.enrolment.kind
                event = DeviceEnrolled(member, binding.asset_id, kind, binding.key)
        except CommunityError as err:
            code = Reject.COMMUNITY_FULL if "full" in str(err) else Reject.BAD_MEMBERSHIP
            return [msg.reject(code, str(err))]
        ms.remember(change.key, env.to_dict())
        return [event]


def _enrolment(data: object) -> AssetEnrolment | None:
    if not isinstance(data, Mapping):
        return None
    try:
        enrolment = AssetEnrolment(
            str(data["member"]),
            str(data["home_key"]),
            str(data["asset_key"]),
            str(data["asset_id"]),
            str(data["kind"]),
            int(data["enrolled_ms"]),
            str(data["home_sig"]),
            str(data["asset_sig"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return enrolment if verify_enrolment(enrolment) else None
