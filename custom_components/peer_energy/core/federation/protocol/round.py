"""The slot round: bids until gate closure, digest rounds, attestation, finality (with a
quorum's book fetched when ours differs), void slots, and catch-up of the final slots a
home missed. The steps are described in the package docstring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...market.clearing import SlotResult
from ...market.fairness import FairnessState
from ...market.orders import Order, OrderError
from ...trust.canonical import canonical_bytes, digest_of
from ...trust.envelope import RejectCode
from . import wire
from .book import (
    Bid,
    book_from_payload,
    clear_book,
    max_spend,
    parse_bid,
    qualified_orders,
    relay_order,
)
from .context import PeerContext
from .outputs import (
    EquivocationDetected,
    EquivocationProof,
    FinalSlot,
    Output,
    Rejected,
    Send,
    SlotCleared,
    SlotVoid,
)
from .relays import bundle, relays_for, spread, to_relays
from .slots import Attest, SlotPhase, SlotState
from .wire import (
    CATCHUP_MAX_TRIES,
    CATCHUP_PEERS,
    DIGEST_ROUNDS,
    HORIZON_S,
    RELAYS_PER_SLOT,
    Handler,
    Incoming,
    ProtocolError,
    Reject,
    record_id,
)


@dataclass(frozen=True, slots=True)
class _BidCheck:
    slot: int
    bid_id: str
    orders: tuple[Order, ...]


@dataclass(frozen=True, slots=True)
class _AttestCheck:
    slot: int
    book: str
    result: str


@dataclass(frozen=True, slots=True)
class _DirectAttest:
    attest: _AttestCheck | None  # None: already held


@dataclass(frozen=True, slots=True)
class _Fetch:
    state: SlotState
    book: str
    address: str


@dataclass(frozen=True, slots=True)
class _Adoption:
    """A verified ``slot_data`` payload: its book cleared, its attestations verified."""

    slot: int
    book: str
    result_hash: str
    result: SlotResult
    fairness: FairnessState
    bids: tuple[Bid, ...]
    # (record digest, the attestation as a message, its check: None when already held)
    attests: tuple[tuple[str, Incoming, _AttestCheck | None], ...]


class SlotRound:
    """The slots of one peer: their state, the clock that runs them, and finality."""

    def __init__(self, ctx: PeerContext, now_ms: int, retain_slots: int) -> None:
        """Start with the first slot whose gate closure is still ahead."""
        self.ctx = ctx
        self.retain = retain_slots
        self.slots: dict[int, SlotState] = {}
        self.finals: dict[int, FinalSlot] = {}
        self.fairness = FairnessState()  # after the newest final slot
        self.fair_slot = -1
        self.missing: set[int] = set()
        self.catchup: dict[int, tuple[int, int]] = {}  # missing slot -> (requests, next ms)
        self.balances: dict[str, int] = {}
        self.restored_bids: set[int] = set()  # slots whose own bid came from a snapshot
        self.last_tick: int | None = None
        self.next_slot = 0
        self.restart_clock(now_ms)
        self.handlers: dict[str, Handler[Any]] = {
            # an attestation sent to us (forwarded ones go to ``record_handlers``)
            "attest": Handler(self._check_direct_attest, self._apply_direct_attest),
            "digest": Handler(self._check_digest, self._apply_digest),
            "fetch": Handler(self._check_fetch, self._apply_fetch),
            "slot_data": Handler(self._check_slot_data, self._apply_slot_data),
            "catchup": Handler(self._check_catchup, self._apply_catchup),
        }
        self.record_handlers: dict[str, Handler[Any]] = {
            "bid": Handler(self._check_bid, self._apply_bid),
            "attest": Handler(self._check_attest, self._apply_attest),
        }

    def restart_clock(self, now_ms: int) -> None:
        """The next slot to run is the first whose gate closure is still ahead."""
        step = self.ctx.rules.slot_seconds
        lead = self.ctx.rules.gate_closure_lead_s
        self.next_slot = -(-(now_ms // 1000 + lead + 1) // step) * step

    # -- state --
    def slot(self, slot: int) -> SlotState:
        """The state of ``slot`` (created empty)."""
        state = self.slots.get(slot)
        if state is None:
            state = self.slots[slot] = SlotState(slot)
        return state

    def in_range(self, slot: int, now_ms: int) -> bool:
        """Whether ``slot`` is aligned, retained and not too far ahead."""
        oldest = self.next_slot - self.retain * self.ctx.rules.slot_seconds
        step = self.ctx.rules.slot_seconds
        return slot % step == 0 and oldest <= slot <= now_ms // 1000 + HORIZON_S

    def timers(self, slot: int) -> list[int]:
        """Digest rounds, attestation, fallback and deadline of ``slot`` (Unix ms)."""
        rules = self.ctx.rules
        g = rules.gate_closure_ms(slot)
        sync, att = rules.sync_window_ms, rules.attest_window_ms
        rounds = [g + sync * k // DIGEST_ROUNDS for k in range(DIGEST_ROUNDS)]
        return [*rounds, g + sync, g + sync + att // 2, g + sync + att]

    def quorum(self, slot: int) -> int:
        """Attestations needed to finalise ``slot`` (of the roster at its gate closure)."""
        rules = self.ctx.rules
        return rules.quorum(len(self.ctx.membership.roster(rules.gate_closure_ms(slot))))

    def headroom(self, member: str) -> int:
        """What ``member`` may spend: balance plus the credit limit."""
        return self.balances.get(member, 0) + self.ctx.rules.credit_limit_base

    def next_step_ms(self, state: SlotState) -> int:
        """When the next step of a running slot falls due (it may be past: a late tick
        takes one step at a time and asks for the next tick at once)."""
        timers = self.timers(state.slot)
        if state.phase is SlotPhase.SYNC:
            return timers[min(state.rounds_done, DIGEST_ROUNDS)]
        if state.phase is SlotPhase.FROZEN:
            return timers[DIGEST_ROUNDS + 1]
        return timers[DIGEST_ROUNDS + 2]

    def wakeups(self) -> list[int]:
        """When the clock next has work: the next gate closure and each running slot's
        next step."""
        times = [self.ctx.rules.gate_closure_ms(self.next_slot)]
        times.extend(self.next_step_ms(s) for s in self.slots.values() if s.running)
        return times

    def slot_payload(self, state: SlotState, book: str) -> dict[str, Any] | None:
        """The ``slot_data`` payload of one of the slot's books (its signed bids, the
        attestations of its result, the fairness state before it)."""
        bids = state.books.get(book)
        if bids is None:
            return None
        res = state.result_hashes[book]
        attests = [
            a.env
            for per in state.attests.values()
            for (b, r), a in per.items()
            if b == book and r == res
        ]
        return {
            "slot": state.slot,
            "bids": [b.env for b in bids],
            "attests": attests,
            "fairness": state.fairness[book].to_dict(),
        }

    def slot_data(self, slot: int) -> dict[str, Any] | None:
        """See ``Peer.slot_data``."""
        final = self.finals.get(slot)
        if final is None:
            return None
        return self.slot_payload(self.slots[slot], final.book_hash)

    def prune(self) -> list[int]:
        """Forget slots older than the retention; returns them."""
        oldest = self.next_slot - self.retain * self.ctx.rules.slot_seconds
        old = [s for s in self.slots if s < oldest]
        for slot in old:
            del self.slots[slot]
            self.finals.pop(slot, None)
        if len(self.ctx.seen) > 200_000:
            self.ctx.seen.clear()
        return old

    # -- local actions --
    def submit_orders(self, slot: int, orders: Sequence[Order], now_ms: int) -> list[Output]:
        """See ``Peer.submit_orders``."""
        ctx = self.ctx
        if not ctx.joined:
            raise ProtocolError("not a member yet")
        if slot % ctx.rules.slot_seconds:
            raise ProtocolError("slot is not aligned to the slot length")
        if now_ms >= ctx.rules.gate_closure_ms(slot):
            raise ProtocolError("gate closure for this slot has passed")
        raw = [o._replace(owner=ctx.member_id).to_dict() for o in orders]
        payload = {"slot": slot, "orders": raw}
        parsed = qualified_orders(ctx.member_id, payload)
        if max_spend(parsed, ctx.rules) > self.headroom(ctx.member_id):
            raise OrderError("these orders could spend more than the credit limit allows")
        state = self.slot(slot)
        mine = state.bids.get(ctx.member_id, {})
        env = ctx.seal_env("bid", payload, now_ms)
        bid_id = record_id(ctx.member_id, env)
        if mine:
            if bid_id in mine:
                return []
            raise ProtocolError("a different bid for this slot was already sent")
        state.add_bid(Bid(bid_id, ctx.member_id, env.to_dict(), parsed))
        return ctx.to_all(env.to_wire())

    def own_bids(self) -> list[dict[str, Any]]:
        """This home's signed bids for the slots still open (for the snapshot)."""
        me = self.ctx.member_id
        return [
            bid.env
            for slot, state in sorted(self.slots.items())
            if state.phase is SlotPhase.OPEN and slot >= self.next_slot
            for bid in state.bids.get(me, {}).values()
        ]

    def restore_own_bids(self, items: Sequence[Any]) -> None:
        """Hold this home's bids from a snapshot again (those still open), so a restart
        re-sends the same bid instead of signing a second one."""
        ctx = self.ctx
        for data in items:
            env, _, _ = wire.verify_record(
                data, community=ctx.community_id, keyring=ctx.membership.keyring
            )
            if env is None or env.type != "bid" or env.sender != ctx.identity.public_key:
                continue  # pragma: no cover - our own signed bid no longer verifies
            slot = env.payload.get("slot")
            if type(slot) is not int or slot < self.next_slot:
                continue  # its gate closure passed while the home was away
            orders, _, _ = parse_bid(env, ctx.member_id, ctx.rules)
            if orders is None:  # pragma: no cover - we signed it after the same checks
                continue
            bid = Bid(record_id(ctx.member_id, env), ctx.member_id, dict(data), orders)
            self.slot(slot).add_bid(bid)
            self.restored_bids.add(slot)

    def resend_own_bid(self, slot: int, now_ms: int) -> list[Output]:
        """This home's bid for ``slot`` again, to every member (as a ``records`` bundle: a
        record is valid whenever it is read, so an old bid is not refused as a replay)."""
        state = self.slots.get(slot)
        mine = state.bids.get(self.ctx.member_id, {}) if state is not None else {}
        if not mine or state is None or state.phase is not SlotPhase.OPEN:
            return []
        envs = [bid.env for bid in mine.values()]
        return self.ctx.to_all(self.ctx.seal("records", {"records": envs}, now_ms))

    def catch_up(self, now_ms: int) -> list[Output]:
        """See ``Peer.catch_up``."""
        ctx = self.ctx
        if not ctx.joined:
            return []
        oldest = self.next_slot - self.retain * ctx.rules.slot_seconds
        self.missing = {s for s in self.missing if s >= oldest and s not in self.finals}
        self.catchup = {s: v for s, v in self.catchup.items() if s in self.missing}
        # Backoff: each missing slot is asked for at most CATCHUP_MAX_TRIES times, the waits
        # doubling from one window; a slot void everywhere is not asked for all retention.
        asked = sorted(
            s for s in self.missing if self.catchup.get(s, (0, 0))[0] < CATCHUP_MAX_TRIES
        )
        window = ctx.rules.sync_window_ms + ctx.rules.attest_window_ms
        for s in asked:
            tries = self.catchup.get(s, (0, 0))[0] + 1
            self.catchup[s] = (tries, now_ms + window * (1 << (tries - 1)))
        # From the oldest slot still missing (also one no longer asked for by itself):
        # whatever the peers hold from there on comes back.
        since = min(self.missing, default=self.next_slot)
        data = ctx.seal("catchup", {"since": since}, now_ms)
        return [Send(addr, data) for addr in ctx.pick_peers(now_ms, CATCHUP_PEERS)]

    # -- the clock --
    def tick(self, now_ms: int) -> list[Output]:
        """Start the slots whose gate closure came, run the running ones, and catch up
        after a gap, a missed slot or when a catch-up retry is due."""
        rules = self.ctx.rules
        out: list[Output] = []
        window = rules.sync_window_ms + rules.attest_window_ms
        # A gap: a timer fell due more than a window before this tick (the home was away),
        # or the peer was just restored (``last_tick == 0``). Idle time between slots, when
        # no timer is due, is not a gap.
        last = self.last_tick
        gap = last == 0
        if last is not None and not gap:
            gap = now_ms - min(self.wakeups()) > window
        missed = False
        while rules.gate_closure_ms(self.next_slot) <= now_ms:
            s = self.next_slot
            g = rules.gate_closure_ms(s)
            # A home that was here (no gap) runs every slot whose deadline is ahead, even
            # when its timer comes late (a loaded CPU): it holds the bids and owes the
            # freeze and its attestation. One that was away runs only a slot still in its
            # sync window (the digest rounds fetch the bids it lacks); it catches up the
            # others.
            if now_ms < g + rules.sync_window_ms or (not gap and now_ms < g + window):
                self.slot(s).advance(SlotPhase.SYNC)
            else:
                missed = True
                self.missing.add(s)
            self.next_slot += rules.slot_seconds
        for s in sorted(self.slots):
            state = self.slots[s]
            if state.running:
                out.extend(self._run_slot(state, now_ms))
        retry_due = any(
            tries < CATCHUP_MAX_TRIES and now_ms >= next_ms
            for tries, next_ms in (self.catchup.get(s, (0, 0)) for s in self.missing)
        )
        if gap or missed or retry_due:
            out.extend(self.catch_up(now_ms))
        return out

    def _run_slot(self, state: SlotState, now_ms: int) -> list[Output]:
        """Take the slot's next step if it is due: one digest round, the freeze (and our
        attestation), the fallback or the close. One step per tick: when a late tick finds
        several due, the next one is due at once (``next_step_ms``), so the messages that
        waited meanwhile (digests, attestations) are read between the steps, in order."""
        out: list[Output] = []
        timers = self.timers(state.slot)
        if now_ms < self.next_step_ms(state):
            return out
        if state.phase is SlotPhase.SYNC and state.rounds_done < DIGEST_ROUNDS:
            if now_ms < timers[DIGEST_ROUNDS]:
                out.extend(self._digest(state, now_ms, first=state.rounds_done == 0))
                state.rounds_done += 1
                return out
            # The others froze their books at the attestation time: a digest now changes
            # no book but ours, and a book that differs from the quorum's is fetched.
            state.rounds_done = DIGEST_ROUNDS
        if state.phase is SlotPhase.SYNC:
            state.advance(SlotPhase.FROZEN)
            out.extend(self._attest(state, now_ms))
        elif state.phase is SlotPhase.FROZEN:
            state.advance(SlotPhase.FALLBACK)
            out.extend(self._fallback(state, now_ms))
        elif state.phase is SlotPhase.FALLBACK:
            state.advance(SlotPhase.CLOSED)
            if state.final is None:
                self.missing.add(state.slot)
                out.append(SlotVoid(state.slot, "no_quorum"))
                data = self.ctx.seal("fetch", {"slot": state.slot, "book": ""}, now_ms)
                groups = sorted(self._tally(state).values(), key=lambda ms: (-len(ms), ms))
                prefer = [m for group in groups for m in sorted(group)]
                out.extend(
                    Send(a, data) for a in self.ctx.pick_peers(now_ms, CATCHUP_PEERS, prefer)
                )
        return out

    def _digest(self, state: SlotState, now_ms: int, *, first: bool) -> list[Output]:
        ctx = self.ctx
        ids, root = state.bid_ids(), state.root()
        payload = {"slot": state.slot, "root": root, "full": False, "bids": []}
        data = ctx.seal("digest", payload, now_ms)
        relays = relays_for(ctx, state, now_ms)
        g = ctx.rules.gate_closure_ms(state.slot)
        if relays and ctx.member_id not in relays:
            # To the relays; later rounds only if our set changed since we told them and
            # they have not shown us the same set (a relay pushes what it learns itself).
            targets = [
                m
                for m in relays
                if first or (state.heard.get(m) != ids and state.told.get(m) != root)
            ]
        elif first:
            return to_relays(ctx, state, data, now_ms)  # a relay: to the other relays
        else:  # rounds 1, 2: whoever last showed us another set
            # A relay asks members it has not heard from only in the last round: under load
            # their first digests may simply not have been read yet.
            wait = bool(relays) and state.rounds_done < DIGEST_ROUNDS - 1
            targets = [
                m
                for m in ctx.membership.roster(g)
                if m != ctx.member_id
                and state.heard.get(m) != ids
                and not (wait and m not in state.heard)
            ]
        for m in targets:
            state.told[m] = root
        return ctx.to_some(ctx.addresses(targets), data)

    def _own_book(self, state: SlotState) -> tuple[Bid, ...]:
        """The bids held, one per member, without proven equivocators."""
        return tuple(
            next(iter(per.values()))
            for member, per in sorted(state.bids.items())
            if len(per) == 1 and member not in state.equivocators
        )

    def _attest(self, state: SlotState, now_ms: int) -> list[Output]:
        ctx = self.ctx
        if state.final is not None:  # a quorum was faster than our clock: support it
            book, res = state.final.book_hash, state.final.result_hash
        else:
            bids = self._own_book(state)
            fair = self.fairness
            book, res, result = clear_book(ctx.community_id, state.slot, ctx.rules, bids, fair)
            state.record_book(book, bids, fair, res, result)
        state.my_book, state.my_result = book, res
        if ctx.member_id not in ctx.membership.roster(ctx.rules.gate_closure_ms(state.slot)):
            return []  # joined after gate closure: observe only
        env = ctx.seal_env("attest", {"slot": state.slot, "book": book, "result": res}, now_ms)
        record = env.to_dict()
        ctx.seen.add(env.digest().hex())
        state.attests.setdefault(ctx.member_id, {})[(book, res)] = Attest(
            ctx.member_id, book, res, record
        )
        out = to_relays(ctx, state, env.to_wire(), now_ms)
        out.extend(self._check_final(state, now_ms))
        return out

    def _fallback(self, state: SlotState, now_ms: int) -> list[Output]:
        """Half-way through the attestation window: resend our attestation to peers we
        have not heard an attestation from, and fetch a quorum's book we lack."""
        ctx = self.ctx
        out: list[Output] = []
        mine = state.attests.get(ctx.member_id, {}).get((state.my_book, state.my_result))
        if state.final is not None and relays_for(ctx, state, now_ms):
            mine = None  # with relays, a final peer leaves the fallback to those not final
        if mine is not None:
            g = ctx.rules.gate_closure_ms(state.slot)
            to = tuple(
                addr
                for m in ctx.membership.roster(g)
                if m != ctx.member_id
                and m not in state.attests
                and (addr := ctx.membership.address_of(m))
            )
            out.extend(ctx.to_some(to, canonical_bytes(mine.env)))
        state.fetched.clear()
        out.extend(self._check_final(state, now_ms))
        return out

    # -- finality --
    def _tally(self, state: SlotState) -> dict[tuple[str, str], list[str]]:
        g = self.ctx.rules.gate_closure_ms(state.slot)
        roster = set(self.ctx.membership.roster(g))
        tally: dict[tuple[str, str], list[str]] = {}
        for member, per in state.attests.items():
            if member in state.att_equivocators or member not in roster or len(per) != 1:
                continue
            key = next(iter(per))
            tally.setdefault(key, []).append(member)
        return tally

    def _check_final(self, state: SlotState, now_ms: int) -> list[Output]:
        if state.final is not None or not state.attests:
            return []
        need = self.quorum(state.slot)
        for (book, res), members in sorted(self._tally(state).items()):
            if len(members) < need:
                continue
            if book in state.books and book in state.result_hashes:
                if state.result_hashes[book] == res:
                    return self._finalise(state, book, sorted(members), now_ms)
                continue  # pragma: no cover - a quorum attested a result that does not verify
            if book not in state.fetched:
                state.fetched.add(book)
                data = self.ctx.seal("fetch", {"slot": state.slot, "book": book}, now_ms)
                ms = self.ctx.membership
                addrs = [a for m in sorted(members) if (a := ms.address_of(m))]
                start = int(book[:8], 16) % len(addrs) if addrs else 0
                pick = addrs[start:] + addrs[:start]
                return [Send(a, data) for a in pick[:CATCHUP_PEERS]]
        return []

    def _finalise(
        self, state: SlotState, book: str, attesters: list[str], now_ms: int
    ) -> list[Output]:
        bids = state.books[book]
        final = FinalSlot(
            slot=state.slot,
            book_hash=book,
            result_hash=state.result_hashes[book],
            orders=tuple(o for b in bids for o in b.orders),
            result=state.results[book],
            attesters=tuple(attesters),
            late=now_ms >= self.timers(state.slot)[-1],
        )
        state.final = final
        self.finals[state.slot] = final
        self.missing.discard(state.slot)
        if state.slot > self.fair_slot:
            self.fair_slot = state.slot
            self.fairness = final.result.fairness
        out: list[Output] = [SlotCleared(final)]
        if not final.late and self.ctx.member_id in relays_for(self.ctx, state, now_ms):
            # A relay hands everyone the quorum's signed attestations: one message each.
            out.extend(bundle(self.ctx, state, self.ctx.others(), now_ms))
        return out

    # -- bids and attestations --
    def _check_bid(self, msg: Incoming) -> _BidCheck | Rejected | None:
        slot = msg.int_field("slot")
        orders, code, detail = parse_bid(msg.env, msg.member, self.ctx.rules)
        if orders is None:
            return Rejected(code, detail, msg.sender_address)
        if not self.in_range(slot, msg.now_ms):
            return msg.reject(Reject.STALE_SLOT, f"slot {slot}")
        if max_spend(orders, self.ctx.rules) > self.headroom(msg.member):
            return msg.reject(Reject.OVER_CREDIT_LIMIT, "bid exceeds limit")
        bid_id = record_id(msg.member, msg.env)
        state = self.slots.get(slot)
        if state is not None and (
            bid_id in state.bids.get(msg.member, {}) or msg.member in state.equivocators
        ):
            return None  # already held, or already proven (two bids are the proof)
        return _BidCheck(slot, bid_id, orders)

    def _apply_bid(self, msg: Incoming, bid: _BidCheck) -> list[Output]:
        member, slot = msg.member, bid.slot
        state = self.slot(slot)
        per = state.add_bid(Bid(bid.bid_id, member, msg.env.to_dict(), bid.orders))
        if len(per) == 2 and member not in state.equivocators:
            state.equivocators.add(member)
            a, b = sorted(per.values(), key=lambda x: x.bid_id)
            proof = EquivocationProof("bid", member, slot, a.env, b.env)
            out: list[Output] = [EquivocationDetected(proof)]
            data = self.ctx.seal("records", {"records": [a.env, b.env]}, msg.now_ms)
            out.extend(spread(self.ctx, state, data, msg.now_ms))
            return out
        return []

    def _check_attest(self, msg: Incoming) -> _AttestCheck | Rejected | None:
        slot, book, res = msg.int_field("slot"), msg.str_field("book"), msg.str_field("result")
        if not self.in_range(slot, msg.now_ms):
            return msg.reject(Reject.STALE_SLOT, f"slot {slot}")
        if len(book) != 64 or len(res) != 64:
            return msg.reject(Reject.BAD_ATTESTATION, "hashes are 64 hex")
        if msg.env.ts_ms < self.ctx.rules.gate_closure_ms(slot):
            return msg.reject(Reject.BAD_ATTESTATION, "attested before gate closure")
        state = self.slots.get(slot)
        if state is not None and (
            (book, res) in state.attests.get(msg.member, {}) or msg.member in state.att_equivocators
        ):
            return None  # already held, or already proven (two attestations are the proof)
        return _AttestCheck(slot, book, res)

    def _apply_attest(self, msg: Incoming, att: _AttestCheck) -> list[Output]:
        member, slot = msg.member, att.slot
        state = self.slot(slot)
        per = state.attests.setdefault(member, {})
        per[(att.book, att.result)] = Attest(member, att.book, att.result, msg.env.to_dict())
        out: list[Output] = []
        # (no quorum is possible while fewer members than the quorum have attested at all)
        enough = len(state.attests) >= self.quorum(slot)
        if len(per) == 2 and member not in state.att_equivocators:
            state.att_equivocators.add(member)
            a, b = sorted(per.values(), key=lambda x: (x.book, x.result))
            proof = EquivocationProof("attest", member, slot, a.env, b.env)
            out.append(EquivocationDetected(proof))
            data = self.ctx.seal("records", {"records": [a.env, b.env]}, msg.now_ms)
            out.extend(spread(self.ctx, state, data, msg.now_ms))
        if enough:
            out.extend(self._check_final(state, msg.now_ms))
        return out

    def _check_direct_attest(self, msg: Incoming) -> _DirectAttest | Rejected:
        checked = self._check_attest(msg)
        if isinstance(checked, Rejected):
            return checked
        return _DirectAttest(checked)

    def _apply_direct_attest(self, msg: Incoming, direct: _DirectAttest) -> list[Output]:
        """An attestation sent to us (not forwarded). Marked seen, so that a relay's bundle
        holding it costs no second signature check. With relays, one that arrives after
        the fallback point comes from a peer that is not final: the relays and the next
        ``CATCHUP_PEERS`` members in relay order answer it with the quorum's records, once
        per peer and slot, if they are final."""
        ctx, member, now_ms = self.ctx, msg.member, msg.now_ms
        ctx.seen.add(msg.env.digest().hex())
        out = [] if direct.attest is None else self._apply_attest(msg, direct.attest)
        state = self.slots.get(msg.int_field("slot"))
        if (
            state is None
            or state.final is None
            or member in state.answered
            or now_ms < self.timers(state.slot)[DIGEST_ROUNDS + 1]
            or not relays_for(ctx, state, now_ms)
        ):
            return out
        if state.helper is None:
            g = ctx.rules.gate_closure_ms(state.slot)
            ranked = relay_order(ctx.community_id, state.slot, ctx.membership.roster(g))
            helpers = (*ranked[: RELAYS_PER_SLOT + CATCHUP_PEERS], *(state.relays or ()))
            state.helper = ctx.member_id in helpers
        addr = ctx.membership.address_of(member)
        if state.helper and addr:
            state.answered.add(member)
            out.extend(bundle(ctx, state, [addr], now_ms))
        return out

    # -- digests --
    def _check_digest(self, msg: Incoming) -> frozenset[str] | Rejected | None:
        slot, ids = msg.int_field("slot"), msg.env.payload["bids"]
        if not isinstance(ids, list):  # pragma: no cover - schema checked
            return None
        if not self.in_range(slot, msg.now_ms):
            return msg.reject(Reject.STALE_SLOT, "digest")
        if not all(type(i) is str and len(i) == 64 for i in ids):
            return msg.reject(RejectCode.WRONG_FIELD_TYPE, "bid ids are 64 characters")
        return frozenset(str(i) for i in ids)

    def _apply_digest(self, msg: Incoming, theirs: frozenset[str]) -> list[Output]:
        ctx, member, now_ms = self.ctx, msg.member, msg.now_ms
        slot = msg.int_field("slot")
        state = self.slot(slot)
        addr = ctx.membership.address_of(member)
        mine = state.bid_ids()
        my_root = state.root()
        if msg.env.payload["root"] == my_root:
            state.heard[member] = mine
            return []
        if addr is None:  # pragma: no cover - members have addresses
            return []
        out: list[Output] = []
        if msg.env.payload["full"] is True:
            state.heard[member] = theirs
            missing = [
                bid.env
                for per in state.bids.values()
                for bid_id, bid in sorted(per.items())
                if bid_id not in theirs
            ]
            out.extend(ctx.send_records(addr, missing, now_ms))
            if theirs <= mine:
                return out
        if state.replied.get(member) != my_root:  # tell them what we hold, once per state
            state.replied[member] = state.told[member] = my_root
            full = {"slot": slot, "root": my_root, "full": True, "bids": sorted(mine)}
            out.append(Send(addr, ctx.seal("digest", full, now_ms)))
        return out

    # -- fetching a book, catching up --
    def _check_fetch(self, msg: Incoming) -> _Fetch | None:
        slot, book = msg.int_field("slot"), msg.str_field("book")
        state = self.slots.get(slot)
        addr = self.ctx.membership.address_of(msg.member)
        if state is None or addr is None:
            return None
        if not book:
            if state.final is None:
                return None
            book = state.final.book_hash
        return _Fetch(state, book, addr)

    def _apply_fetch(self, msg: Incoming, fetch: _Fetch) -> list[Output]:
        return self._send_slot_data(fetch.state, fetch.book, fetch.address, msg.now_ms)

    def _send_slot_data(self, state: SlotState, book: str, addr: str, now_ms: int) -> list[Output]:
        payload = self.slot_payload(state, book)
        if payload is None:
            return []
        return [Send(addr, self.ctx.seal("slot_data", payload, now_ms))]

    def _check_slot_data(self, msg: Incoming) -> _Adoption | Rejected | None:
        slot = msg.int_field("slot")
        state = self.slots.get(slot)
        if state is not None and state.final is not None:
            return None
        if not self.in_range(slot, msg.now_ms):
            return msg.reject(Reject.STALE_SLOT, f"slot {slot}")
        return self.check_adoption(slot, msg.env.payload, msg.sender_address, msg.now_ms)

    def _apply_slot_data(self, msg: Incoming, adoption: _Adoption) -> list[Output]:
        return self.apply_adoption(adoption, msg.now_ms)

    def check_adoption(
        self, slot: int, payload: Mapping[str, Any], sender_address: str, now_ms: int
    ) -> _Adoption | Rejected:
        """Verify a ``slot_data`` payload: its bids (re-cleared) and its attestations
        (each one as if it came on its own: one that is refused refuses the payload)."""
        ctx = self.ctx
        try:
            fair, ordered = book_from_payload(slot, payload, ctx.membership)
        except ValueError as err:
            return Rejected(Reject.BAD_SLOT_DATA.value, str(err), sender_address)
        book, res, result = clear_book(ctx.community_id, slot, ctx.rules, ordered, fair)
        keyring = ctx.membership.keyring
        attests: list[tuple[str, Incoming, _AttestCheck | None]] = []
        for item in payload["attests"]:
            env, code, detail = wire.verify_record(
                item, community=ctx.community_id, keyring=keyring
            )
            if env is None or env.type != "attest" or env.payload.get("slot") != slot:
                detail = f"attestation does not verify: {code} {detail}"
                return Rejected(Reject.BAD_SLOT_DATA.value, detail, sender_address)
            member = keyring.member_of(env.sender, env.ts_ms)
            assert member is not None
            msg = Incoming(env, member, sender_address, now_ms)
            checked = self._check_attest(msg)
            if isinstance(checked, Rejected):
                detail = f"attestation refused: {checked.code} {checked.detail}"
                return Rejected(Reject.BAD_SLOT_DATA.value, detail, sender_address)
            attests.append((digest_of(item).hex(), msg, checked))
        return _Adoption(slot, book, res, result, fair, ordered, tuple(attests))

    def apply_adoption(self, adoption: _Adoption, now_ms: int) -> list[Output]:
        """Keep a verified book and its attestations; final if they are a quorum."""
        slot, book, res = adoption.slot, adoption.book, adoption.result_hash
        state = self.slot(slot)
        state.record_book(book, adoption.bids, adoption.fairness, res, adoption.result)
        for key, msg, checked in adoption.attests:
            self.ctx.seen.add(key)
            if checked is not None and (checked.book, checked.result) not in state.attests.get(
                msg.member, {}
            ):
                self._apply_attest(msg, checked)
        if state.final is not None:  # finalised while recording the attestations
            return [SlotCleared(state.final)]
        members = self._tally(state).get((book, res), [])
        if len(members) < self.quorum(slot):
            return []  # valid but not (yet) a quorum: kept, more attestations may complete it
        return self._finalise(state, book, sorted(members), now_ms)

    def adopt(
        self, slot: int, payload: Mapping[str, Any], sender_address: str, now_ms: int
    ) -> list[Output] | Rejected:
        """``check_adoption``, then ``apply_adoption`` if it verifies."""
        adoption = self.check_adoption(slot, payload, sender_address, now_ms)
        if isinstance(adoption, Rejected):
            return adoption
        return self.apply_adoption(adoption, now_ms)

    def _check_catchup(self, msg: Incoming) -> str | None:
        return self.ctx.membership.address_of(msg.member)

    def _apply_catchup(self, msg: Incoming, addr: str) -> list[Output]:
        since, now_ms = msg.int_field("since"), msg.now_ms
        records = list(self.ctx.membership.records.values())
        out = self.ctx.send_records(addr, records, now_ms)
        for slot in sorted(self.finals):
            if slot >= since:
                out.extend(
                    self._send_slot_data(
                        self.slots[slot], self.finals[slot].book_hash, addr, now_ms
                    )
                )
        return out
