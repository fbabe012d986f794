"""``Peer``: one home's protocol state machine. It owns the parts (``SlotRound``,
``Settlement``, ``Members``, sharing one ``PeerContext``), verifies each incoming envelope,
and hands the message to its part through one table of ``Handler`` values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...market.fairness import FairnessState
from ...market.orders import Order
from ...trust.canonical import CanonicalError, digest_of
from ...trust.credit import Settlement as CreditSettlement, SignedTrade
from ...trust.envelope import RejectCode, validate
from ...trust.identity import AssetEnrolment, Identity
from ..community import (
    Charter,
    CommunityError,
    CommunityRules,
    Invitation,
    InvitationError,
    Membership,
    check_display_name,
)
from . import wire
from .context import PeerContext
from .members import Members
from .outputs import FinalSlot, Output, Rejected, SlotCleared
from .round import SlotRound
from .settlement import Settlement
from .slots import SlotState
from .wire import (
    DEFAULT_INVITATION_TTL_MS,
    DEFAULT_RETAIN_SLOTS,
    MEMBERSHIP_TYPES,
    Handler,
    Incoming,
    Reject,
    peek_join_sender,
)


class Peer:
    """One home's protocol state machine (see the package docstring).

    Build with ``Peer.found`` (new community) or ``Peer.joining`` (from an invitation).
    Every method that takes ``now_ms`` returns the outputs to act on, in order.
    """

    def __init__(
        self,
        identity: Identity,
        membership: Membership,
        address: str,
        now_ms: int,
        *,
        joined: bool,
        inviter: str = "",
        retain_slots: int = DEFAULT_RETAIN_SLOTS,
        fanout: bool = False,
        confirm_joins: bool | None = None,
    ) -> None:
        """Low-level constructor; prefer ``found`` and ``joining``. ``fanout``: the
        transport fans out (a broker): what goes to every member is one ``Broadcast`` to
        ``(COMMUNITY,)`` and there are no relays; HTTP keeps it False. ``confirm_joins``
        (default: ``fanout``): a joiner is admitted only once it acknowledges the welcome
        (see ``Members``)."""
        self._ctx = ctx = PeerContext(identity, membership, address, joined=joined, fanout=fanout)
        self._round = SlotRound(ctx, now_ms, retain_slots)
        self._settlement = Settlement(ctx, self._round)
        confirm = fanout if confirm_joins is None else confirm_joins
        self._members = Members(ctx, inviter, confirm_joins=confirm)
        # Records, sent directly or forwarded in ``records`` bundles.
        self._record_handlers: dict[str, Handler[Any]] = {
            **self._round.record_handlers,
            **dict.fromkeys(MEMBERSHIP_TYPES, self._members.record_handler),
        }
        # Messages from members (``join`` and ``welcome`` come from others: ``_receive``).
        self._handlers: dict[str, Handler[Any]] = {
            **self._record_handlers,
            **self._round.handlers,  # its "attest": one sent to us, not forwarded
            "records": Handler(_check_records, self._apply_records_message),
            **self._settlement.handlers,
        }
        self._welcome = Handler(self._check_welcome, self._apply_welcome)

    # -- construction --
    @classmethod
    def found(
        cls,
        identity: Identity,
        *,
        name: str,
        rules: CommunityRules,
        address: str,
        now_ms: int,
        nonce: bytes,
        admins: Sequence[str] = (),
        fanout: bool = False,
        confirm_joins: bool | None = None,
    ) -> Peer:
        """Found a community; this home is its first member and an admin."""
        charter = Charter(name, identity.public_key, now_ms, nonce.hex(), rules, tuple(admins))
        membership = Membership(charter, address)
        peer = cls(
            identity,
            membership,
            address,
            now_ms,
            joined=True,
            fanout=fanout,
            confirm_joins=confirm_joins,
        )
        env = peer._ctx.seal_env("address", {"address": address}, now_ms)
        peer.membership.remember(digest_of(env.to_dict()).hex(), env.to_dict())
        return peer

    @classmethod
    def joining(
        cls,
        identity: Identity,
        invitation: Invitation | str,
        *,
        address: str,
        now_ms: int,
        resume: bool = False,
        fanout: bool = False,
        confirm_joins: bool | None = None,
    ) -> tuple[Peer, list[Output]]:
        """Start joining with a pasted invitation; returns the join request to send.

        Raises ``InvitationError`` for a damaged or expired invitation. ``resume`` (a join
        sent before a restart) skips the expiry check: the inviter may have admitted this
        key before the expiry and then answers the repeated join with the welcome again.
        """
        inv = Invitation.decode(invitation) if isinstance(invitation, str) else invitation
        if inv.expired(now_ms) and not resume:
            raise InvitationError("the invitation has expired; ask for a new one")
        # Provisional charter: replaced by the sponsor's welcome (checked against the id).
        placeholder = Charter("joining", inv.inviter, 0, "", CommunityRules())
        membership = Membership(placeholder, inv.address)
        membership.community = inv.community
        peer = cls(
            identity,
            membership,
            address,
            now_ms,
            joined=False,
            inviter=inv.inviter,
            fanout=fanout,
            confirm_joins=confirm_joins,
        )
        peer._members.join_invitation = inv
        return peer, peer.join_again(now_ms)

    def join_again(self, now_ms: int) -> list[Output]:
        """The join request (again) while no welcome has come; the inviter answers a
        repeated join from the same key with the welcome again, so resending is safe.

        Raises ``ProtocolError`` unless this peer is joining.
        """
        return self._members.join_again(now_ms)

    # -- persistence --
    def snapshot(self) -> dict[str, Any]:
        """Plain data to persist (Home Assistant ``Store``) so a restart loses nothing that
        matters: charter, membership records, pending invitations (their secrets: keep the
        store private), the fairness state and the slots still to catch up. In-flight slot
        state is not kept: after a restart the peer catches up instead. The identity's seed
        is not included (it lives in the key store)."""
        ctx, round_ = self._ctx, self._round
        return {
            "version": 1,
            "address": ctx.address,
            "joined": ctx.joined,
            "fanout": ctx.fanout,
            "confirm_joins": self._members.confirm_joins,
            "pending_joins": self._members.pending_snapshot(),
            "awaiting_ack_until": self._members.awaiting_ack_until,
            "joined_invitation": self._members.joined_invitation,
            "inviter": self._members.inviter,
            "community": ctx.community_id,
            "charter": ctx.membership.charter.to_dict(),
            "records": list(ctx.membership.records.values()),
            # In issue order (the newest is the "latest invitation" after a restart); a
            # used one stays while the member it admitted is current, with "used_by".
            "invitations": self._members.snapshot(),
            "used_invitations": sorted(self._members.used_invitations),
            "fairness": round_.fairness.to_dict(),
            "fair_slot": round_.fair_slot,
            "next_slot": round_.next_slot,
            "missing": sorted(round_.missing),
            "settling": self._settlement.snapshot(),
            # this home's signed bids for open slots: re-sent, never signed again
            "own_bids": round_.own_bids(),
        }

    @classmethod
    def restore(cls, identity: Identity, data: Mapping[str, Any], now_ms: int) -> Peer:
        """Rebuild a peer from ``snapshot`` data; raises ``ValueError`` if it is damaged.

        The first ``tick`` after a restore asks peers for the slots missed meanwhile.
        """
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise ValueError("unknown peer snapshot version")
        try:
            charter = Charter.from_dict(data["charter"])
            address = str(data["address"])
            joined = data["joined"] is True
            inviter = str(data.get("inviter", ""))
            peer = cls(
                identity,
                Membership(charter),
                address,
                now_ms,
                joined=True,
                inviter=inviter,
                fanout=data.get("fanout") is True,
                confirm_joins=data.get("confirm_joins") is True,
            )
            ctx, round_ = peer._ctx, peer._round
            if not joined:  # still joining: keep the placeholder identity of the community
                ctx.set_community(str(data["community"]))
            elif charter.community_id != data["community"]:
                raise ValueError("snapshot community does not match its charter")
            events = peer._apply_records(list(data["records"]), "snapshot", now_ms)
            if any(isinstance(e, Rejected) for e in events):
                raise ValueError("a membership record in the snapshot does not verify")
            ctx.joined = joined and ctx.membership.is_member(ctx.member_id)
            peer._members.restore(data["invitations"], data["used_invitations"])
            peer._members.restore_pending(list(data.get("pending_joins", [])))
            peer._members.awaiting_ack_until = int(data.get("awaiting_ack_until", 0))
            peer._members.joined_invitation = str(data.get("joined_invitation", ""))
            round_.fairness = FairnessState.from_dict(data["fairness"])
            round_.fair_slot = int(data["fair_slot"])
            round_.missing = {int(s) for s in data["missing"]}
            # The slots the home was running when the snapshot was taken, and every slot
            # since, may have become final at the others while it was away (or killed
            # mid-slot): catch them up (the ones final here already are not asked for).
            rules = ctx.rules
            step = rules.slot_seconds
            running = rules.gate_closure_lead_s * 1000 + rules.sync_window_ms
            span = -(-(running + rules.attest_window_ms) // (step * 1000)) + 1
            saved_next = int(data.get("next_slot", round_.next_slot))
            oldest = round_.next_slot - round_.retain * step
            first = max(oldest, saved_next - span * step)
            round_.missing.update(range(first, round_.next_slot, step))
            if ctx.joined:
                peer._settlement.restore(data.get("settling", []), now_ms)
                round_.restore_own_bids(data.get("own_bids", []))
            round_.last_tick = 0  # the first tick sees a gap and catches up
        except (KeyError, TypeError, CommunityError, InvitationError) as err:
            raise ValueError(f"damaged peer snapshot: {err}") from None
        return peer

    # -- read-only views --
    @property
    def identity(self) -> Identity:
        """This home's identity."""
        return self._ctx.identity

    @property
    def member_id(self) -> str:
        """This home's member id (its public key)."""
        return self._ctx.member_id

    @property
    def community_id(self) -> str:
        """The community's id."""
        return self._ctx.community_id

    @property
    def membership(self) -> Membership:
        """Who is a member when, their addresses and the records that say so."""
        return self._ctx.membership

    @property
    def rules(self) -> CommunityRules:
        """The community's rules (from its charter)."""
        return self._ctx.rules

    @property
    def address(self) -> str:
        """Where this home is reached."""
        return self._ctx.address

    @address.setter
    def address(self, address: str) -> None:
        self._ctx.address = address

    @property
    def fanout(self) -> bool:
        """True when the transport fans out (a broker); see the constructor."""
        return self._ctx.fanout

    @property
    def joined(self) -> bool:
        """True once this home is a member."""
        return self._ctx.joined

    @property
    def finals(self) -> Mapping[int, FinalSlot]:
        """Final slots still retained, by slot start."""
        return self._round.finals

    @property
    def fairness(self) -> FairnessState:
        """Fairness state after the newest final slot."""
        return self._round.fairness

    def open_invitations(self, now_ms: int) -> int:
        """How many invitations this peer issued that are neither used nor expired."""
        return self._members.open_invitations(now_ms)

    def pending_joins(self) -> tuple[str, ...]:
        """Joiners this peer welcomed that have not acknowledged yet (not members)."""
        return tuple(sorted(self._members.pending))

    def invitation_open(self, invitation_id: str, now_ms: int) -> bool:
        """Whether this peer's invitation ``invitation_id`` is neither used nor expired."""
        return self._members.invitation_open(invitation_id, now_ms)

    def latest_invitation(self, now_ms: int) -> Invitation | None:
        """The invitation issued last, while it is neither used nor expired (else None).

        Issue order is kept across ``snapshot``/``restore``; a snapshot written before it
        was (sorted by id, used ones left out) makes the last listed open one "latest".
        """
        return self._members.latest_invitation(now_ms)

    def roster(self, at_ms: int | None = None) -> tuple[str, ...]:
        """Member ids (now, or at ``at_ms``)."""
        return self._ctx.membership.roster(at_ms)

    def slot_data(self, slot: int) -> dict[str, Any] | None:
        """The ``slot_data`` payload of a final slot (signed bids, attestations, fairness):
        what catch-up serves and what ``verify_slot_data`` checks."""
        return self._round.slot_data(slot)

    def is_void(self, slot: int) -> bool:
        """True if ``slot`` ended without a known result."""
        state = self._round.slots.get(slot)
        return state is not None and state.void

    def next_wakeup_ms(self) -> int:
        """When ``tick`` next has work (the transport's slot clock schedules it)."""
        times = self._round.wakeups()
        if (due := self._settlement.wakeup()) is not None:
            times.append(due)
        if (due := self._members.wakeup()) is not None:
            times.append(due)
        return min(times)

    def delivery_deadline_ms(self, slot: int) -> int:
        """Until when reports for ``slot``'s trades are waited for (then settle or give up)."""
        return self._settlement.deadline_ms(slot)

    # -- internal views (tests and the shell's tests reach in) --
    @property
    def _slots(self) -> Mapping[int, SlotState]:
        return self._round.slots

    @property
    def _next_slot(self) -> int:
        return self._round.next_slot

    @property
    def _used_invitations(self) -> Mapping[str, str]:
        return self._members.used_invitations

    def _seal(self, type_: str, payload: Mapping[str, Any], now_ms: int) -> bytes:
        return self._ctx.seal(type_, payload, now_ms)

    def _timers(self, slot: int) -> list[int]:
        return self._round.timers(slot)

    # -- local actions --
    def invite(
        self, secret: bytes, now_ms: int, ttl_ms: int = DEFAULT_INVITATION_TTL_MS
    ) -> Invitation:
        """Create a one-time invitation (``secret``: 32 random bytes from the caller)."""
        return self._members.invite(secret, now_ms, ttl_ms)

    def submit_orders(self, slot: int, orders: Sequence[Order], now_ms: int) -> list[Output]:
        """Sign and broadcast this home's bid (all its orders) for ``slot``.

        Each order's owner is set to this home's member id. One bid per slot: submitting
        the same orders again is a no-op, different ones raise ``ProtocolError`` (two
        different bids would be an equivocation). Raises ``ProtocolError`` after gate
        closure, ``OrderError`` for malformed orders or when the bid could spend more than
        this home's balance plus its credit limit.
        """
        return self._round.submit_orders(slot, orders, now_ms)

    def leave(self, now_ms: int) -> list[Output]:
        """Leave the community (a signed ``leave`` record to everyone)."""
        return self._members.act("leave", {"member": self.member_id}, now_ms)

    def remove(self, member: str, now_ms: int) -> list[Output]:
        """Remove ``member`` (admins only)."""
        if self.member_id not in self.membership.admins:
            raise wire.ProtocolError("only admins can remove members")
        return self._members.act("remove", {"member": member}, now_ms)

    def set_address(self, address: str, now_ms: int) -> list[Output]:
        """Announce a new address for this home."""
        out = self._members.act("address", {"address": address}, now_ms)
        self._ctx.address = address
        return out

    def set_name(self, name: str, now_ms: int) -> list[Output]:
        """Announce the display name neighbours see for this home (a signed ``name``
        record, kept with the membership records: newcomers get it with the welcome).
        Raises ``ProtocolError`` for a malformed name or when not a member."""
        try:
            check_display_name(name)
        except CommunityError as err:
            raise wire.ProtocolError(str(err)) from None
        return self._members.act("name", {"name": name}, now_ms)

    def enrol(self, enrolment: AssetEnrolment, now_ms: int) -> list[Output]:
        """Announce a device enrolment signed by this home and the asset.

        The enrolment goes to every member: ``asset_id`` must be an opaque id (for example
        a hash of the asset's configuration id), never an entity id or a device name;
        one that looks like an entity id (``domain.object``) raises ``ProtocolError``."""
        if "." in enrolment.asset_id or " " in enrolment.asset_id:
            raise wire.ProtocolError("an enrolled asset id must be opaque, not an entity id")
        return self._members.act("enrol", {"enrolment": enrolment.to_dict()}, now_ms)

    def catch_up(self, now_ms: int) -> list[Output]:
        """Ask a few peers for final slots this home may have missed (after being away)."""
        return self._round.catch_up(now_ms)

    def set_balances(self, balances: Mapping[str, int]) -> None:
        """Community balances (milli-minor units) from the mutual-credit ledger, used to
        admit bids: a bid that could spend more than balance + ``credit_limit_base`` is
        refused. Every peer should pass the same settled ledger state; a peer whose view
        differs may admit other bids, ends in the minority and adopts the quorum's book."""
        self._round.balances = {m: int(v) for m, v in balances.items()}

    def settle(self, slot: int, *, prev: str, balance: int, now_ms: int) -> list[Output]:
        """Start countersigning this home's trades of a final slot.

        ``prev`` is the hash of this home's newest source-chain entry and ``balance`` its
        signed credit balance (milli-minor units, delivery settlements left out:
        ``CreditLedger.signed_balance``) before the slot, both from its ledger. For each
        fill this home is party to (self-trades excepted), in fill order, it sends the
        counterparty its half of the terms: ``prev`` and its signed balance after that
        trade.
        When both halves are known each party signs the ``TradeTerms`` and broadcasts its
        signature; with both signatures a ``TradeSigned`` event follows (for observers too).
        Raises ``ProtocolError`` if the slot is not final here.
        """
        return self._settlement.settle(slot, prev=prev, balance=balance, now_ms=now_ms)

    def unsigned_before(self, slot: int, now_ms: int) -> bool:
        """True if this home has a trade of a final slot before ``slot`` that both parties
        have not signed yet (its delivery deadline not passed). Its halves for ``slot``
        would commit to a balance without that trade, and be refused once it is recorded:
        the shell settles ``slot`` after it."""
        return self._settlement.unsigned_before(slot, now_ms)

    def resend_bid(self, slot: int, now_ms: int) -> list[Output]:
        """This home's bid for ``slot`` (held, e.g. restored from the snapshot) sent to
        every member again; nothing if it holds none or the slot's gate closure passed."""
        return self._round.resend_own_bid(slot, now_ms)

    def bid_restored(self, slot: int) -> bool:
        """True if this home's bid for ``slot`` came from the snapshot (sent before a
        restart): a new bid for the slot would be an equivocation, so keep that one."""
        return slot in self._round.restored_bids

    def resume_settlement(self, now_ms: int) -> list[Output]:
        """After a restart: the settlement of the restored slots again. ``TradeSigned``
        for the trades both parties signed (record them; the ledger refuses duplicates),
        this home's halves and signatures of the trades not countersigned yet to the
        counterparty (which answers with its own signature if it signed), and this home's
        delivery reports of trades whose delivery is not settled yet to every member."""
        return self._settlement.resume(now_ms)

    def ledger_request(self, since: int, now_ms: int, count: int = 2) -> list[Output]:
        """Ask ``count`` members (the ones heard from most recently) for the credit
        records of the slots from ``since`` on (``LedgerRecords`` comes back)."""
        peers = self._ctx.pick_peers(now_ms, count)
        return self._settlement.ledger_request(since, now_ms, peers)

    def ledger_answer(
        self, to: str, records: Sequence[SignedTrade | CreditSettlement], now_ms: int
    ) -> list[Output]:
        """Answer a ``LedgerWanted``: ``records`` (trades and delivery settlements in the
        order this home's ledger applied them, the newest ``LEDGER_RECORDS_MAX`` kept) in
        ``ledger`` messages to ``to``."""
        return self._settlement.ledger_answer(to, records, now_ms)

    def report_delivery(
        self, slot: int, *, exported_wh: int, imported_wh: int, now_ms: int
    ) -> list[Output]:
        """Report what this home's meter measured during ``slot`` (after it ended).

        ``exported_wh``/``imported_wh``: the home's net energy to and from the grid
        connection during the slot. The export is assigned to this home's sell fills and
        the import to its buy fills in fill order, each up to the fill's energy (the
        community's trades come before the grid's). For every countersigned trade this
        home signs a ``DeliveryReport`` and sends it to all members; trades countersigned
        later are reported when they complete. Each peer settles a trade when both
        reports are in, or at the delivery deadline (one slot after the slot's end) with
        the seller's alone; without the seller's report the trade is ``DeliveryUnreported``.
        Returns nothing if the slot is not final here (void slots have no trades).
        """
        return self._settlement.report_delivery(
            slot, exported_wh=exported_wh, imported_wh=imported_wh, now_ms=now_ms
        )

    # -- the clock --
    def tick(self, now_ms: int) -> list[Output]:
        """Advance the clock: digests, attestation, retries and deadlines that are due."""
        if not self._ctx.joined:
            self._round.last_tick = now_ms
            return []
        out = self._round.tick(now_ms)
        out.extend(self._ctx.check_reachability(now_ms))
        out.extend(self._settlement.due(now_ms))
        out.extend(self._members.due(now_ms))
        self._settlement.forget(self._round.prune())
        self._round.last_tick = now_ms
        return self._release(out, now_ms)

    def _release(self, out: list[Output], now_ms: int) -> list[Output]:
        """Settlement messages held until their slot is final: handled once it is."""
        for event in [o for o in out if isinstance(o, SlotCleared)]:
            out.extend(self._settlement.released(event.final.slot, now_ms))
        return out

    # -- receiving --
    def receive(self, data: bytes, sender_address: str, now_ms: int) -> list[Output]:
        """Handle one incoming message.

        A message that is wrong (the sender's fault: garbage, a forgery, a replay, content
        the protocol does not allow now) gives a ``Rejected`` with its code and changes
        nothing. Any exception is a bug of this peer and propagates: the transport logs
        it (error level, with the traceback) and goes on with the next message.
        """
        ctx = self._ctx
        keyring = ctx.membership.keyring
        join_sender = peek_join_sender(data)
        stranger = join_sender is not None and ctx.joined and keyring.resolve(join_sender) is None
        if stranger:
            # A stranger's join: checked with its key admitted for this message only, and
            # nothing kept about the key (no replay-guard entry: a replayed join is answered
            # like a repeated one, nothing new happens).
            assert join_sender is not None
            keyring = keyring.with_member(join_sender, 0)
        result = validate(
            data,
            policy=ctx.policy,
            keyring=keyring,
            now_ms=now_ms,
            guard=ctx.guard,
            stranger=stranger,
        )
        env = result.envelope
        if env is None:
            return [Rejected(str(result.error), result.detail, sender_address)]
        if env.type == "welcome":
            return self._welcome(Incoming(env, env.sender, sender_address, now_ms))
        if not ctx.joined:
            return [Rejected(Reject.NOT_JOINED.value, "not a member yet", sender_address)]
        if env.type == "join":
            return self._members.join_handler(Incoming(env, env.sender, sender_address, now_ms))
        if env.type == "joined":
            return self._members.joined_handler(Incoming(env, env.sender, sender_address, now_ms))
        member = ctx.membership.member_of(env.sender, env.ts_ms)
        if member is None:  # pragma: no cover - validate() resolved the key
            return [Rejected(RejectCode.UNKNOWN_SENDER.value, "", sender_address)]
        if member == self._members.inviter:
            self._members.heard_from_inviter()
        out = ctx.heard_from(member, now_ms)
        out.extend(self._handlers[env.type](Incoming(env, member, sender_address, now_ms)))
        return self._release(out, now_ms)

    def new_join(self, data: bytes, now_ms: int) -> tuple[str, str] | None:
        """``(joiner key, address)`` of a valid join from a newcomer, else None.

        Changes nothing: the join is checked (signature, invitation, proof) exactly as
        ``receive`` would, so a transport can check that the address answers before it
        hands the join to ``receive`` (a joiner nobody can reach is refused, not welcomed).
        A repeated join, a member's message or anything invalid gives None.
        """
        ctx = self._ctx
        join_sender = peek_join_sender(data)
        if join_sender is None or not ctx.joined:
            return None
        if ctx.membership.keyring.resolve(join_sender) is not None:
            return None
        result = validate(
            data,
            policy=ctx.policy,
            keyring=ctx.membership.keyring.with_member(join_sender, 0),
            now_ms=now_ms,
            guard=ctx.guard,
            stranger=True,
        )
        env = result.envelope
        if env is None or env.type != "join":
            return None
        checked = self._members.check_join(Incoming(env, env.sender, "", now_ms))
        if checked is None or checked.again:
            return None
        return env.sender, checked.address

    def _check_welcome(self, msg: Incoming) -> _Welcome | Rejected:
        """A welcome from our inviter whose records make this home a member. The records
        are applied to a scratch peer first: a welcome that does not admit us changes
        nothing here."""
        charter = self._members.check_welcome(msg)
        if isinstance(charter, Rejected):
            return charter
        ctx = self._ctx
        scratch = Peer(
            ctx.identity,
            ctx.membership,
            ctx.address,
            msg.now_ms,
            joined=False,
            inviter=self._members.inviter,
            fanout=ctx.fanout,
        )
        scratch._members.adopt_welcome(charter)
        records = msg.env.payload["records"]
        events = scratch._apply_records(records, msg.sender_address, msg.now_ms)
        if not scratch.membership.is_member(ctx.member_id):
            return msg.reject(Reject.BAD_MEMBERSHIP, "welcome lacks our record")
        return _Welcome(charter, scratch._ctx.membership, frozenset(scratch._ctx.seen), events)

    def _apply_welcome(self, msg: Incoming, welcome: _Welcome) -> list[Output]:
        self._members.adopt_welcome(welcome.charter)
        self._ctx.membership = welcome.membership
        self._ctx.seen |= welcome.seen
        self._round.restart_clock(msg.now_ms)
        return [*welcome.events, *self._members.finish_welcome(msg)]

    def _apply_records_message(self, msg: Incoming, items: object) -> list[Output]:
        return self._apply_records(items, msg.sender_address, msg.now_ms)

    def _apply_records(self, items: object, sender_address: str, now_ms: int) -> list[Output]:
        """A bundle of records: each verified on its own and handled like a record sent
        directly (membership records may depend on each other, so those from a sender
        not yet known are retried after the others). A record handled without refusal is
        remembered (by its digest) and skipped, signature unchecked, when it comes again."""
        ctx = self._ctx
        out: list[Output] = []
        if not isinstance(items, list):  # pragma: no cover - schema checked
            return out
        pending = list(items)
        progress = True
        while pending and progress:
            progress = False
            retry: list[Any] = []
            for item in pending:
                try:
                    key = digest_of(item).hex()
                except CanonicalError:
                    out.append(Rejected(RejectCode.MALFORMED.value, "record", sender_address))
                    continue
                if key in ctx.seen:
                    continue
                env, code, detail = wire.verify_record(
                    item, community=ctx.community_id, keyring=ctx.membership.keyring
                )
                if env is None:
                    if code == RejectCode.UNKNOWN_SENDER.value:
                        retry.append(item)
                    else:
                        out.append(Rejected(code, detail, sender_address))
                    continue
                member = ctx.membership.member_of(env.sender, env.ts_ms)
                assert member is not None
                progress = True
                handler = self._record_handlers[env.type]
                handled = handler(Incoming(env, member, sender_address, now_ms))
                if not any(isinstance(o, Rejected) for o in handled):
                    ctx.seen.add(key)  # a refused record may be sent again (and checked again)
                out.extend(handled)
            pending = retry
        out.extend(
            Rejected(RejectCode.UNKNOWN_SENDER.value, "record from a non-member", sender_address)
            for _ in pending
        )
        return out


@dataclass(frozen=True, slots=True)
class _Welcome:
    """A checked welcome: the membership its records build, and their events."""

    charter: Charter
    membership: Membership
    seen: frozenset[str]
    events: list[Output]


def _check_records(msg: Incoming) -> object:
    """A ``records`` bundle: its items are checked one by one when applied."""
    return msg.env.payload["records"]
