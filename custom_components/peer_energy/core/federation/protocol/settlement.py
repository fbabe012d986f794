"""Settlement and delivery of final slots: both parties of each fill countersign its trade
(``trade_terms``, ``trade_sig``), then each reports what its meter measured (``delivery``)
and every peer settles the delivery the same way.

After a restart a home reconciles (``resume``, ``ledger_req``/``ledger``): it sends its
halves, signatures and reports of the slots it still settles again (a counterparty that
already holds them answers with its own signature), and asks members for the credit
records of recent slots, so a trade known to either side ends up on both ledgers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...trust.canonical import CanonicalError, canonical_bytes
from ...trust.credit import (
    DeliveryReport,
    Role,
    Settlement as CreditSettlement,
    SignedTrade,
    TradeSignature,
    TradeTerms,
    report_delivery,
    settle_delivery,
    sign_trade,
    verify_trade,
)
from ...trust.identity import Purpose, verify_hex
from .context import PeerContext
from .outputs import (
    DeliverySettled,
    DeliveryUnreported,
    FinalSlot,
    LedgerRecords,
    LedgerWanted,
    Output,
    Rejected,
    Send,
    TradeSigned,
)
from .round import SlotRound
from .wire import (
    HORIZON_S,
    LEDGER_RECORDS_MAX,
    LEDGER_RECORDS_PER_MESSAGE,
    Handler,
    Incoming,
    ProtocolError,
    Reject,
)


@dataclass(slots=True)
class Settling:
    """One final slot's settlement and delivery state at this peer, by fill index."""

    mine: dict[int, dict[str, Any]] = field(default_factory=dict)  # our halves
    theirs: dict[int, dict[str, Any]] = field(default_factory=dict)  # counterparty halves
    terms: dict[int, TradeTerms] = field(default_factory=dict)
    sigs: dict[int, dict[str, TradeSignature]] = field(default_factory=dict)
    # a counterparty's signature that came before our own terms: member -> (terms, sig)
    pending: dict[int, dict[str, tuple[TradeTerms, TradeSignature]]] = field(default_factory=dict)
    done: dict[int, SignedTrade] = field(default_factory=dict)
    metered: tuple[int, int] | None = None  # (exported Wh, imported Wh) this home metered
    reports: dict[int, dict[str, DeliveryReport]] = field(default_factory=dict)  # by role
    settled: set[int] = field(default_factory=set)  # DeliverySettled/Unreported emitted


# Settlement messages held for slots not final here yet: at most this many, each small.
EARLY_MAX = 512
EARLY_MAX_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class _Early:
    """A settlement message for ``slot``, which is not final here yet: hold it."""

    slot: int


@dataclass(frozen=True, slots=True)
class _Half:
    """A counterparty's half of the terms of fill ``fill`` (``resend``: we hold it)."""

    fill: int
    half: dict[str, Any]
    resend: bool


@dataclass(frozen=True, slots=True)
class _Sig:
    slot: int
    fill: int
    terms: TradeTerms
    half: TradeSignature


@dataclass(frozen=True, slots=True)
class _Report:
    fill: int
    role: Role
    report: DeliveryReport


class Settlement:
    """The settlement and delivery state of this peer's final slots."""

    def __init__(self, ctx: PeerContext, round_: SlotRound) -> None:
        """Settle the final slots of ``round_``."""
        self.ctx = ctx
        self.round = round_
        self.settling: dict[int, Settling] = {}
        # Settlement messages for a slot that is not final here yet (a member finalised it
        # first): held, bounded, and handled when the slot becomes final.
        self.early: dict[int, list[Incoming]] = {}
        self.handlers: dict[str, Handler[Any]] = {
            "trade_terms": Handler(
                self._early(self._check_trade_terms), self._or_early(self._apply_trade_terms)
            ),
            "trade_sig": Handler(
                self._early(self._check_trade_sig), self._or_early(self._apply_trade_sig)
            ),
            "delivery": Handler(
                self._early(self._check_delivery), self._or_early(self._apply_delivery)
            ),
            "ledger_req": Handler(self._check_ledger_req, self._apply_ledger_req),
            "ledger": Handler(self._check_ledger, self._apply_ledger),
        }

    def _settlement(self, slot: int) -> Settling:
        st = self.settling.get(slot)
        if st is None:
            st = self.settling[slot] = Settling()
        return st

    def forget(self, slots: Sequence[int]) -> None:
        """Drop the state of pruned slots."""
        for slot in slots:
            self.settling.pop(slot, None)
            self.early.pop(slot, None)

    # -- messages that come before the slot is final here --
    def _early[T](
        self, check: Callable[[Incoming], T | Rejected | None]
    ) -> Callable[[Incoming], T | _Early | Rejected | None]:
        """``check``, unless the slot is not final here but may be soon: its gate
        closure passed and it is retained. Such a message is held (``EARLY_MAX`` in all,
        small ones only) instead of refused, and handled when the slot becomes final."""

        def run(msg: Incoming) -> T | _Early | Rejected | None:
            slot = msg.int_field("slot")
            round_ = self.round
            if slot in round_.finals:
                return check(msg)
            if (
                not round_.in_range(slot, msg.now_ms)
                or self.ctx.rules.gate_closure_ms(slot) > msg.now_ms
                or sum(len(held) for held in self.early.values()) >= EARLY_MAX
                or len(canonical_bytes(msg.env.payload)) > EARLY_MAX_BYTES
            ):
                return check(msg)
            return _Early(slot)

        return run

    def _or_early[T](
        self, apply: Callable[[Incoming, T], list[Output]]
    ) -> Callable[[Incoming, T | _Early], list[Output]]:
        def run(msg: Incoming, checked: T | _Early) -> list[Output]:
            if isinstance(checked, _Early):
                self.early.setdefault(checked.slot, []).append(msg)
                return []
            return apply(msg, checked)

        return run

    def released(self, slot: int, now_ms: int) -> list[Output]:
        """Handle the messages held for ``slot`` (it just became final here)."""
        out: list[Output] = []
        for msg in self.early.pop(slot, []):
            out.extend(self.handlers[msg.env.type](replace(msg, now_ms=now_ms)))
        return out

    # -- countersigning --
    def settle(self, slot: int, *, prev: str, balance: int, now_ms: int) -> list[Output]:
        """See ``Peer.settle``."""
        ctx = self.ctx
        final = self.round.finals.get(slot)
        if final is None:
            raise ProtocolError("only a final slot can be settled")
        st = self._settlement(slot)
        halves: dict[str, list[dict[str, Any]]] = {}
        fills = final.result.fills
        if not st.mine:
            running = balance
            for i, fill in enumerate(fills):
                if fill.buyer == fill.seller or ctx.member_id not in (fill.buyer, fill.seller):
                    continue
                buyer = fill.buyer == ctx.member_id
                value = fill.energy_wh * fill.price
                running += -(value + fill.energy_wh * fill.fee) if buyer else value
                role = "buyer" if buyer else "seller"
                st.mine[i] = {"fill": i, "role": role, "prev": prev, "balance": running}
        for i, half in sorted(st.mine.items()):  # called again: resend what is not done
            if i not in st.done:
                fill = fills[i]
                other = fill.seller if half["role"] == "buyer" else fill.buyer
                halves.setdefault(other, []).append(half)
        out: list[Output] = []
        for other, items in sorted(halves.items()):
            addr = ctx.membership.address_of(other)
            if addr:
                payload = {"slot": slot, "halves": items}
                out.append(Send(addr, ctx.seal("trade_terms", payload, now_ms)))
        for i in sorted(st.mine):
            out.extend(self._try_sign(slot, i, now_ms))
        return out

    def _terms(self, slot: int, i: int) -> TradeTerms | None:
        st = self._settlement(slot)
        if i in st.terms:
            return st.terms[i]
        mine, theirs = st.mine.get(i), st.theirs.get(i)
        if mine is None or theirs is None:
            return None
        fill = self.round.finals[slot].result.fills[i]
        b, sl = (mine, theirs) if mine["role"] == "buyer" else (theirs, mine)
        terms = TradeTerms(
            self.ctx.community_id,
            slot,
            fill.buyer,
            fill.seller,
            fill.energy_wh,
            fill.price,
            fill.fee,
            fill.clean,
            True,
            b["prev"],
            sl["prev"],
            b["balance"],
            sl["balance"],
        )
        st.terms[i] = terms
        return terms

    def _try_sign(self, slot: int, i: int, now_ms: int) -> list[Output]:
        ctx = self.ctx
        terms = self._terms(slot, i)
        st = self._settlement(slot)
        if terms is None or ctx.member_id in st.sigs.get(i, {}):
            return []
        sig = sign_trade(terms, ctx.identity)
        sigs = st.sigs.setdefault(i, {})
        sigs[ctx.member_id] = sig
        for other, (offered, half) in st.pending.pop(i, {}).items():
            if offered == terms:  # the counterparty signed before we did
                sigs[other] = half
        payload = {"slot": slot, "fill": i, "terms": terms.to_dict(), "sig": sig.sig}
        out = ctx.to_all(ctx.seal("trade_sig", payload, now_ms))
        out.extend(self._complete(slot, i, now_ms))
        return out

    def _complete(self, slot: int, i: int, now_ms: int) -> list[Output]:
        st = self._settlement(slot)
        terms = st.terms.get(i)
        sigs = st.sigs.get(i, {})
        if terms is None or i in st.done or not {terms.buyer, terms.seller} <= set(sigs):
            return []
        trade = SignedTrade(terms, sigs[terms.buyer], sigs[terms.seller])
        if not verify_trade(trade).ok:  # pragma: no cover - each half was checked
            return []
        st.done[i] = trade
        party = self.ctx.member_id in (terms.buyer, terms.seller)
        out: list[Output] = [TradeSigned(slot, i, trade, party)]
        if party and st.metered is not None:  # metered before the trade was countersigned
            out.extend(self._send_reports(slot, [i], now_ms))
        out.extend(self._try_settle_delivery(slot, i, deadline=False))
        return out

    def _check_trade_terms(self, msg: Incoming) -> FinalSlot | Rejected:
        final = self.round.finals.get(msg.int_field("slot"))
        if final is None:
            return msg.reject(Reject.BAD_TRADE, "slot is not final here")
        return final

    def _apply_trade_terms(self, msg: Incoming, final: FinalSlot) -> list[Output]:
        """Each half is checked, then applied, in order (a rejected one changes nothing)."""
        out: list[Output] = []
        halves: Any = msg.env.payload["halves"]
        for half in halves:
            checked = self._check_half(msg, final, half)
            if isinstance(checked, Rejected):
                out.append(checked)
            else:
                out.extend(self._apply_half(msg, checked))
        return out

    def _check_half(self, msg: Incoming, final: FinalSlot, half: object) -> _Half | Rejected:
        fills = final.result.fills
        ok = (
            isinstance(half, dict)
            and type(half.get("fill")) is int
            and 0 <= half["fill"] < len(fills)
            and half.get("role") in ("buyer", "seller")
            and isinstance(half.get("prev"), str)
            and type(half.get("balance")) is int
        )
        if not ok:
            return msg.reject(Reject.BAD_TRADE, "malformed half")
        assert isinstance(half, dict)
        i: int = half["fill"]
        fill = fills[i]
        party = fill.buyer if half["role"] == "buyer" else fill.seller
        other = fill.seller if half["role"] == "buyer" else fill.buyer
        st = self.settling.get(final.slot)
        theirs = st.theirs if st is not None else {}
        if theirs.get(i) == half:
            return _Half(i, half, resend=True)
        if party != msg.member or other != self.ctx.member_id or i in theirs:
            return msg.reject(Reject.BAD_TRADE, "not a fill between us")
        return _Half(i, half, resend=False)

    def _apply_half(self, msg: Incoming, half: _Half) -> list[Output]:
        ctx, slot, i = self.ctx, msg.int_field("slot"), half.fill
        st = self._settlement(slot)
        if half.resend:  # answer with our signature again
            mine = st.sigs.get(i, {}).get(ctx.member_id)
            terms = st.terms.get(i)
            addr = ctx.membership.address_of(msg.member)
            if mine is not None and terms is not None and addr:
                payload = {"slot": slot, "fill": i, "terms": terms.to_dict(), "sig": mine.sig}
                return [Send(addr, ctx.seal("trade_sig", payload, msg.now_ms))]
            return []
        st.theirs[i] = dict(half.half)
        return self._try_sign(slot, i, msg.now_ms)

    def _check_trade_sig(self, msg: Incoming) -> _Sig | Rejected | None:
        member = msg.member
        slot, i = msg.int_field("slot"), msg.int_field("fill")
        final = self.round.finals.get(slot)
        if final is None or not 0 <= i < len(final.result.fills):
            return msg.reject(Reject.BAD_TRADE, "no such fill here")
        fill = final.result.fills[i]
        try:
            terms = TradeTerms.from_dict(msg.env.payload["terms"])  # type: ignore[arg-type]
        except ValueError as err:
            return msg.reject(Reject.BAD_TRADE, str(err))
        agreed = (
            terms.community == self.ctx.community_id
            and terms.slot == slot
            and (terms.buyer, terms.seller) == (fill.buyer, fill.seller)
            and (terms.energy_wh, terms.price, terms.fee, terms.clean)
            == (fill.energy_wh, fill.price, fill.fee, fill.clean)
            and member in (fill.buyer, fill.seller)
        )
        st = self.settling.get(slot)
        known = st.terms.get(i) if st is not None else None
        if not agreed or (known is not None and known != terms):
            return msg.reject(Reject.BAD_TRADE, "terms differ from the fill")
        half = TradeSignature(member, msg.str_field("sig"))
        if not _half_valid(terms, half):
            return msg.reject(Reject.BAD_TRADE, "trade signature does not verify")
        return _Sig(slot, i, terms, half)

    def _apply_trade_sig(self, msg: Incoming, sig: _Sig) -> list[Output]:
        slot, i, member = sig.slot, sig.fill, msg.member
        fill = self.round.finals[slot].result.fills[i]
        st = self._settlement(slot)
        if i not in st.terms:
            if self.ctx.member_id in (fill.buyer, fill.seller):  # checked once we build ours
                st.pending.setdefault(i, {})[member] = (sig.terms, sig.half)
                mine = st.mine.get(i)
                if i not in st.theirs and mine is not None and _holds_half(sig.terms, mine):
                    # Their half never reached us (we restarted, or it was lost), but
                    # their signed terms carry it, and they agree with ours: sign them.
                    st.theirs[i] = _other_half(sig.terms, mine)
                    return self._try_sign(slot, i, msg.now_ms)
                return []
            st.terms[i] = sig.terms
        st.sigs.setdefault(i, {})[member] = sig.half
        return self._complete(slot, i, msg.now_ms)

    # -- reconciliation after a restart --
    def resume(self, now_ms: int) -> list[Output]:
        """See ``Peer.resume_settlement``."""
        ctx = self.ctx
        out: list[Output] = []
        for slot, st in sorted(self.settling.items()):
            if not st.mine or slot not in self.round.finals:
                continue
            # the trades both signed: recorded again (the ledger refuses duplicates)
            out.extend(TradeSigned(slot, i, t, True) for i, t in sorted(st.done.items()))
            # our halves of the trades not countersigned yet (and our signatures of them)
            out.extend(self.settle(slot, prev="", balance=0, now_ms=now_ms))
            # our signatures, to every member (as when we signed): the counterparty may
            # lack it, and so may observers, which need both to record the trade and
            # settle its delivery (a kill between saving and sending loses them)
            for i in sorted(st.mine):
                mine = st.sigs.get(i, {}).get(ctx.member_id)
                terms = st.terms.get(i)
                if mine is None or terms is None or i in st.settled:
                    continue
                payload = {"slot": slot, "fill": i, "terms": terms.to_dict(), "sig": mine.sig}
                out.extend(ctx.to_all(ctx.seal("trade_sig", payload, now_ms)))
            # our delivery reports of trades whose delivery is not settled yet
            items = [
                {"fill": i, "report": held[role].to_dict()}
                for i, held in sorted(st.reports.items())
                if i not in st.settled
                for role in sorted(held)
                if held[role].reporter == ctx.member_id
            ]
            if items:
                payload = {"slot": slot, "reports": items}
                out.extend(ctx.to_all(ctx.seal("delivery", payload, now_ms)))
        return out

    def ledger_request(self, since: int, now_ms: int, peers: Sequence[str]) -> list[Output]:
        """See ``Peer.ledger_request``."""
        data = self.ctx.seal("ledger_req", {"since": since}, now_ms)
        return [Send(addr, data) for addr in peers]

    def ledger_answer(
        self,
        to: str,
        records: Sequence[SignedTrade | CreditSettlement],
        now_ms: int,
    ) -> list[Output]:
        """See ``Peer.ledger_answer``."""
        items: list[dict[str, Any]] = []
        for record in records[-LEDGER_RECORDS_MAX:]:
            if isinstance(record, SignedTrade):
                items.append({"kind": "trade", "body": record.to_dict()})
            else:
                items.append({"kind": "settlement", "body": record.to_dict()})
        out: list[Output] = []
        for k in range(0, max(1, len(items)), LEDGER_RECORDS_PER_MESSAGE):
            chunk = items[k : k + LEDGER_RECORDS_PER_MESSAGE]
            out.append(Send(to, self.ctx.seal("ledger", {"records": chunk}, now_ms)))
        return out

    def _check_ledger_req(self, msg: Incoming) -> int | Rejected:
        since = msg.int_field("since")
        if not 0 <= since <= msg.now_ms // 1000 + HORIZON_S:
            return msg.reject(Reject.BAD_LEDGER, "since out of range")
        if not self.ctx.membership.address_of(msg.member):
            return msg.reject(Reject.BAD_LEDGER, "no address for the sender")
        return since

    def _apply_ledger_req(self, msg: Incoming, since: int) -> list[Output]:
        addr = self.ctx.membership.address_of(msg.member)
        assert addr is not None
        return [LedgerWanted(msg.member, addr, since)]

    def _check_ledger(self, msg: Incoming) -> LedgerRecords | Rejected:
        """Every record parses, is of this community and carries both parties' valid
        signatures (a settlement: the seller's report too); otherwise nothing is taken."""
        items: Any = msg.env.payload["records"]
        if len(items) > LEDGER_RECORDS_PER_MESSAGE:
            return msg.reject(Reject.BAD_LEDGER, "too many records")
        trades: list[SignedTrade] = []
        settlements: list[CreditSettlement] = []
        order: list[str] = []
        keyring = self.ctx.membership.keyring
        for item in items:
            kind = item.get("kind") if isinstance(item, dict) else None
            body = item.get("body") if isinstance(item, dict) else None
            try:
                if kind == "trade" and isinstance(body, dict):
                    trade = SignedTrade.from_dict(body)
                    terms = trade.terms
                elif kind == "settlement" and isinstance(body, dict):
                    settlement = settlement_from_dict(body)
                    terms = settlement.terms
                else:
                    return msg.reject(Reject.BAD_LEDGER, "unknown record kind")
            except (ValueError, TypeError, KeyError, AttributeError) as err:
                return msg.reject(Reject.BAD_LEDGER, f"malformed record: {err}")
            if terms.community != self.ctx.community_id:
                return msg.reject(Reject.BAD_LEDGER, "record of another community")
            if kind == "trade":
                if not verify_trade(trade, keyring).ok:
                    return msg.reject(Reject.BAD_LEDGER, "trade signatures do not verify")
                trades.append(trade)
            else:
                if not settlement.seller_report.valid_for(terms.seller, Role.SELLER, keyring):
                    return msg.reject(Reject.BAD_LEDGER, "seller report does not verify")
                settlements.append(settlement)
            order.append(str(kind))
        return LedgerRecords(msg.member, tuple(trades), tuple(settlements), tuple(order))

    def _apply_ledger(self, msg: Incoming, records: LedgerRecords) -> list[Output]:
        return [records]  # also when empty: the member had nothing we might lack

    # -- delivery --
    def report_delivery(
        self, slot: int, *, exported_wh: int, imported_wh: int, now_ms: int
    ) -> list[Output]:
        """See ``Peer.report_delivery``."""
        if type(exported_wh) is not int or type(imported_wh) is not int:
            raise ProtocolError("metered energy must be integer Wh")
        if exported_wh < 0 or imported_wh < 0:
            raise ProtocolError("metered energy cannot be negative")
        final = self.round.finals.get(slot)
        if final is None:
            return []
        st = self._settlement(slot)
        if st.metered is not None:
            return []  # reported once; a second reading would be a second story
        st.metered = (exported_wh, imported_wh)
        me = self.ctx.member_id
        mine = [
            i
            for i, f in enumerate(final.result.fills)
            if f.buyer != f.seller and me in (f.buyer, f.seller) and i in st.done
        ]
        return self._send_reports(slot, mine, now_ms)

    def unsigned_before(self, slot: int, now_ms: int) -> bool:
        """See ``Peer.unsigned_before``."""
        for earlier, st in self.settling.items():
            if earlier >= slot or earlier not in self.round.finals:
                continue
            if now_ms < self.deadline_ms(earlier) and any(i not in st.done for i in st.mine):
                return True
        return False

    def deadline_ms(self, slot: int) -> int:
        """Until when reports for ``slot``'s trades are waited for (then settle or give up)."""
        return (slot + 2 * self.ctx.rules.slot_seconds) * 1000

    def _metered_share(self, slot: int, i: int) -> tuple[Role, int]:
        """This home's metered energy assigned to fill ``i`` (see ``report_delivery``)."""
        me = self.ctx.member_id
        metered = self._settlement(slot).metered
        assert metered is not None
        exported, imported = metered
        fills = self.round.finals[slot].result.fills
        seller = fills[i].seller == me
        remaining = exported if seller else imported
        for f in fills[:i]:
            if f.buyer != f.seller and (f.seller if seller else f.buyer) == me:
                remaining -= f.energy_wh
        share = max(0, min(fills[i].energy_wh, remaining))
        return (Role.SELLER if seller else Role.BUYER), share

    def _send_reports(self, slot: int, fills: Sequence[int], now_ms: int) -> list[Output]:
        ctx = self.ctx
        st = self._settlement(slot)
        items: list[dict[str, Any]] = []
        for i in fills:
            role, share = self._metered_share(slot, i)
            held = st.reports.setdefault(i, {})
            if role.value in held:
                continue
            trade: SignedTrade = st.done[i]
            report = report_delivery(trade.terms, ctx.identity, ctx.member_id, role, share, now_ms)
            held[role.value] = report
            items.append({"fill": i, "report": report.to_dict()})
        if not items:
            return []
        out = ctx.to_all(ctx.seal("delivery", {"slot": slot, "reports": items}, now_ms))
        for item in items:
            out.extend(self._try_settle_delivery(slot, item["fill"], deadline=False))
        return out

    def _check_delivery(self, msg: Incoming) -> FinalSlot | Rejected:
        final = self.round.finals.get(msg.int_field("slot"))
        if final is None:
            return msg.reject(Reject.BAD_DELIVERY, "slot is not final here")
        return final

    def _apply_delivery(self, msg: Incoming, final: FinalSlot) -> list[Output]:
        """Each report is checked, then applied, in order (a rejected one changes nothing)."""
        out: list[Output] = []
        items: Any = msg.env.payload["reports"]
        for item in items:
            checked = self._check_report(msg, final, item)
            if isinstance(checked, Rejected):
                out.append(checked)
            elif checked is not None:
                held = self._settlement(final.slot).reports.setdefault(checked.fill, {})
                held[checked.role.value] = checked.report
                out.extend(self._try_settle_delivery(final.slot, checked.fill, deadline=False))
        return out

    def _check_report(
        self, msg: Incoming, final: FinalSlot, item: Any
    ) -> _Report | Rejected | None:
        member = msg.member
        fills = final.result.fills
        i = item.get("fill") if isinstance(item, dict) else None
        if type(i) is not int or not 0 <= i < len(fills):
            return msg.reject(Reject.BAD_DELIVERY, "no such fill")
        fill = fills[i]
        role = Role.SELLER if fill.seller == member else Role.BUYER
        try:
            report = DeliveryReport.from_dict(item.get("report"))
        except (ValueError, AttributeError) as err:
            return msg.reject(Reject.BAD_DELIVERY, str(err))
        st = self.settling.get(final.slot)
        done: SignedTrade | None = st.done.get(i) if st is not None else None
        if (
            fill.buyer == fill.seller
            or member not in (fill.buyer, fill.seller)
            or not report.valid_for(member, role, self.ctx.membership.keyring)
            or (done is not None and report.trade_id != done.trade_id)
        ):
            return msg.reject(Reject.BAD_DELIVERY, "not this party's report")
        if st is not None and role.value in st.reports.get(i, {}):
            return None  # the first signed reading counts
        return _Report(i, role, report)

    def _try_settle_delivery(self, slot: int, i: int, *, deadline: bool) -> list[Output]:
        st = self._settlement(slot)
        trade: SignedTrade | None = st.done.get(i)
        if trade is None or i in st.settled:
            return []
        held = st.reports.get(i, {})
        seller = held.get(Role.SELLER.value)
        buyer = held.get(Role.BUYER.value)
        tid = trade.trade_id
        seller = seller if seller is not None and seller.trade_id == tid else None
        buyer = buyer if buyer is not None and buyer.trade_id == tid else None
        terms = trade.terms
        party = self.ctx.member_id in (terms.buyer, terms.seller)
        if seller is not None and (buyer is not None or deadline):
            st.settled.add(i)
            price = self.ctx.rules.market.import_price
            return [DeliverySettled(slot, i, settle_delivery(terms, seller, buyer, price), party)]
        if deadline:
            st.settled.add(i)
            return [DeliveryUnreported(slot, i, trade, party)]
        return []

    def due(self, now_ms: int) -> list[Output]:
        """Settle (or give up on) the deliveries whose deadline passed."""
        out: list[Output] = []
        for slot, st in sorted(self.settling.items()):
            if now_ms < self.deadline_ms(slot):
                continue
            for i in sorted(st.done):
                out.extend(self._try_settle_delivery(slot, i, deadline=True))
        return out

    def wakeup(self) -> int | None:
        """The next delivery deadline with a trade still to settle."""
        pending = [
            self.deadline_ms(slot)
            for slot, st in self.settling.items()
            if any(i not in st.settled for i in st.done)
        ]
        return min(pending, default=None)

    # -- persistence --
    def snapshot(self) -> list[dict[str, Any]]:
        """Settlement and delivery state of the final slots this home traded in whose
        delivery is not settled yet, with the slot's signed data to rebuild the final."""
        out: list[dict[str, Any]] = []
        for slot, st in sorted(self.settling.items()):
            if slot not in self.round.finals or not st.mine:
                continue
            if st.done and all(i in st.settled for i in st.done):
                continue
            data = self.round.slot_data(slot)
            if data is None:  # pragma: no cover - a final slot always has its data
                continue
            out.append(
                {
                    "slot": slot,
                    "data": data,
                    "mine": {str(i): h for i, h in st.mine.items()},
                    "theirs": {str(i): h for i, h in st.theirs.items()},
                    "sigs": {
                        str(i): {m: sig.sig for m, sig in sigs.items()}
                        for i, sigs in st.sigs.items()
                    },
                    "terms": {str(i): t.to_dict() for i, t in st.terms.items()},
                    "done": {str(i): t.to_dict() for i, t in st.done.items()},
                    "metered": None if st.metered is None else list(st.metered),
                    "reports": {
                        str(i): {role: r.to_dict() for role, r in held.items()}
                        for i, held in st.reports.items()
                    },
                    "settled": sorted(st.settled),
                }
            )
        return out

    def restore(self, items: Sequence[Mapping[str, Any]], now_ms: int) -> None:
        """Rebuild what ``snapshot`` kept: the final slot from its signed data (verified
        and cleared again) and the settlement and delivery state on top."""
        for item in items:
            slot = int(item["slot"])
            adopted = self.round.adopt(slot, item["data"], "snapshot", now_ms)
            if isinstance(adopted, Rejected) or slot not in self.round.finals:
                continue  # pragma: no cover - our own signed data no longer verifies
            st = self._settlement(slot)
            st.mine = {int(i): dict(h) for i, h in item["mine"].items()}
            st.theirs = {int(i): dict(h) for i, h in item["theirs"].items()}
            st.sigs = {
                int(i): {m: TradeSignature(m, str(sig)) for m, sig in sigs.items()}
                for i, sigs in item["sigs"].items()
            }
            st.terms = {int(i): TradeTerms.from_dict(t) for i, t in item["terms"].items()}
            st.done = {int(i): SignedTrade.from_dict(t) for i, t in item["done"].items()}
            if item["metered"] is not None:
                exported, imported = (int(v) for v in item["metered"])
                st.metered = (exported, imported)
            st.reports = {
                int(i): {role: DeliveryReport.from_dict(r) for role, r in held.items()}
                for i, held in item["reports"].items()
            }
            st.settled = {int(i) for i in item["settled"]}


def _holds_half(terms: TradeTerms, mine: Mapping[str, Any]) -> bool:
    """Whether ``terms`` carry our half ``mine`` (its previous hash and balance)."""
    if mine.get("role") == "buyer":
        return (terms.buyer_prev, terms.buyer_balance) == (mine.get("prev"), mine.get("balance"))
    return (terms.seller_prev, terms.seller_balance) == (mine.get("prev"), mine.get("balance"))


def _other_half(terms: TradeTerms, mine: Mapping[str, Any]) -> dict[str, Any]:
    """The counterparty's half of ``terms`` (we hold ``mine``)."""
    if mine["role"] == "buyer":
        return {
            "fill": mine["fill"],
            "role": "seller",
            "prev": terms.seller_prev,
            "balance": terms.seller_balance,
        }
    return {
        "fill": mine["fill"],
        "role": "buyer",
        "prev": terms.buyer_prev,
        "balance": terms.buyer_balance,
    }


def settlement_from_dict(data: Mapping[str, Any]) -> CreditSettlement:
    """A delivery settlement from ``Settlement.to_dict`` data; raises ``ValueError``,
    ``TypeError`` or ``KeyError`` if malformed (the ledger checks its arithmetic)."""
    buyer = data["buyer_report"]
    values = (data["import_price"], data["shortfall_wh"], data["payment"])
    if any(type(v) is not int for v in values) or type(data["disputed"]) is not bool:
        raise ValueError("settlement amounts must be integers")
    return CreditSettlement(
        TradeTerms.from_dict(data["terms"]),
        DeliveryReport.from_dict(data["seller_report"]),
        None if buyer is None else DeliveryReport.from_dict(buyer),
        data["import_price"],
        data["shortfall_wh"],
        data["payment"],
        data["disputed"],
    )


def _half_valid(terms: TradeTerms, half: TradeSignature) -> bool:
    """One party's signature over the trade terms (its key is its member id)."""
    try:
        body = terms.body()
    except CanonicalError:
        return False
    return verify_hex(half.key, Purpose.TRADE, body, half.sig)
