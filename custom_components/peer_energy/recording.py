"""Recording into the home ledger what the community settled (for ``federation.py``).

``LedgerRecorder`` writes to the home's ``PeerLedger`` what the federation link's peer
produced: a final slot's entry (the attested hashes and this home's fills), countersigned
trades in fill order (the balances after each trade chain up), delivery settlements and
the evidence about each seller, equivocation evidence, and the credit records a member sent
when this home reconciled. It keeps the counts the diagnostics show, reports trades whose
stated balance differs from this ledger's, and raises the "ledger out of step" repair when
trades keep being refused.

Everything else (the peer, the wire, timers, when to settle) stays with the link, which
the recorder reaches through ``RecorderHost``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, Protocol

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.dispatcher import async_dispatcher_send

from .announce import Announcer, short
from .const import DOMAIN, LOGGER
from .core.federation.protocol import LedgerRecords, Peer
from .core.trust.credit import Refusal, Settlement, SignedTrade, TradeTerms
from .core.trust.home_ledger import SlotResult
from .core.trust.reputation import Evidence, delivery_evidence
from .ledger import PeerLedger

# Refused trades in a row (after reconciling) before a repair says the ledger is out of step.
OUT_OF_STEP_AFTER: Final = 3
ISSUE_OUT_OF_STEP: Final = "ledger_out_of_step"
# Dispatcher signal (suffixed with the entry id) sent when delivery settlements or
# evidence changed the ledger (balances, reputation).
SIGNAL_LEDGER_UPDATED: Final = f"{DOMAIN}_ledger_updated"


class RecorderHost(Protocol):
    """What the recorder needs of the federation link."""

    hass: HomeAssistant
    entry_id: str
    announcer: Announcer
    peer: Peer | None
    ledger: PeerLedger | None
    clock: Callable[[], int]

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` as a background task of the link (dropped once it stopped)."""

    def request_ledger(self, now: int) -> None:
        """Ask members for the credit records of recent slots (reconcile)."""

    def settle_waiting(self) -> None:
        """Settle the slots that waited for earlier trades, if reconciled by now."""

    def reconciled(self, added: int) -> None:
        """A member's records were recorded (``added`` of them new): settle what waited."""

    async def refresh_scores(self) -> None:
        """Score the members again from the evidence in the ledger."""


class LedgerRecorder:
    """Records the community's outcomes for this home in its ledger, in order."""

    def __init__(self, host: RecorderHost) -> None:
        """Nothing recorded yet."""
        self._host = host
        # Countersigned trades waiting for the ones before them (fill order), per slot.
        self._trades: dict[int, dict[int, SignedTrade]] = {}
        self._next_fill: dict[int, int] = {}
        self._recording: dict[int, int] = {}  # trade batches being recorded, per slot
        self.trades_recorded = 0
        self.trades_refused = 0
        self.settlements_recorded = 0
        self.trades_reconciled = 0
        self.balance_disagreements = 0  # trades recorded whose stated balance differed
        # Delivery settlements whose trade is not in the ledger yet (fill order), by id.
        self.waiting_settlements: dict[str, tuple[int, Settlement]] = {}
        # Deliveries to record, by slot: one ledger transaction per slot and one score
        # refresh per batch (every member's trades settle at about the same moment).
        self._deliveries: dict[int, tuple[list[Settlement], list[Evidence]]] = {}
        self._flushing = False
        self._out_of_step = 0
        self.out_of_step = False  # the repair is raised

    def unrecorded_before(self, slot: int, now: int, me: str, slot_ms: int) -> bool:
        """Whether one of our trades of a slot before ``slot`` is countersigned and not
        recorded yet, or still waits for the trades before it (until the earlier slot's
        delivery deadline; then it is given up)."""
        if any(earlier < slot and count for earlier, count in self._recording.items()):
            return True
        return any(
            earlier < slot
            and now < earlier * 1000 + 2 * slot_ms
            and any(me in (t.terms.buyer, t.terms.seller) for t in waiting.values())
            for earlier, waiting in self._trades.items()
        )

    # --- final slots ---

    def record_final(self, slot: int, body: dict[str, Any]) -> None:
        """Record a final slot's entry (hashes and this home's fills) in the background."""
        self._host.spawn(self._record_final(slot, body), "settle")

    async def _record_final(self, slot: int, body: dict[str, Any]) -> None:
        ledger = self._host.ledger
        assert ledger is not None
        try:
            await ledger.async_commit_slot(slot * 1000, entries=[("slot", body)])
        except HomeAssistantError as err:
            LOGGER.error("Could not record slot %s in the ledger: %s", slot, err)

    # --- trades ---

    def on_trade(self, slot: int, fill: int, trade: SignedTrade) -> None:
        """Record countersigned trades in fill order (balances after each trade chain up)."""
        host = self._host
        final = host.peer.finals.get(slot) if host.peer is not None else None
        if host.ledger is None or final is None:
            return
        order = [i for i, f in enumerate(final.result.fills) if f.buyer != f.seller]
        waiting = self._trades.setdefault(slot, {})
        waiting[fill] = trade
        position = self._next_fill.get(slot, 0)
        batch: list[SignedTrade] = []
        while position < len(order) and order[position] in waiting:
            batch.append(waiting.pop(order[position]))
            position += 1
        self._next_fill[slot] = position
        if position >= len(order):
            self._trades.pop(slot, None)
            self._next_fill.pop(slot, None)
        if batch:
            self._recording[slot] = self._recording.get(slot, 0) + 1
            host.spawn(self.record_trades(slot, batch), "trades")

    async def record_trades(self, slot: int, trades: list[SignedTrade]) -> None:
        """Record a batch of trades of ``slot``, then settle the slots that waited."""
        try:
            await self._record_trade_batch(slot, trades)
        finally:
            left = self._recording.get(slot, 1) - 1
            if left > 0:
                self._recording[slot] = left
            else:
                self._recording.pop(slot, None)
        self._host.settle_waiting()  # later slots waited for these trades

    async def _commit_checked(
        self, slot: int, what: str, trades: Sequence[SignedTrade] = (), **records: Any
    ) -> SlotResult | None:
        """Commit ``trades`` or ``records`` of ``slot`` with the members' current keys;
        a disk failure is logged (``what`` names what was lost) and gives None."""
        host = self._host
        ledger = host.ledger
        assert ledger is not None
        if host.peer is not None:
            ledger.set_keyring(host.peer.membership.keyring)
        try:
            return await ledger.async_commit_slot(slot * 1000, trades=trades, **records)
        except HomeAssistantError as err:
            LOGGER.error("Could not record the %s of slot %s: %s", what, slot, err)
            return None

    async def _record_trade_batch(self, slot: int, trades: list[SignedTrade]) -> None:
        host = self._host
        ledger = host.ledger
        assert ledger is not None
        result = await self._commit_checked(slot, "trades", trades)
        if result is None:
            return
        self.trades_recorded += len(result.accepted)
        refused = [(t, r) for t, r in result.refused if r.refusal is not Refusal.DUPLICATE]
        self.trades_refused += len(refused)
        for trade_id, refusal in refused:
            LOGGER.warning(
                "Trade %s of slot %s not recorded (%s): asking members for recent records",
                trade_id[:12],
                slot,
                refusal,
            )
        self._report_disagreed(slot, result.disagreed)
        self._track_step(slot, bool(result.accepted), bool(refused or result.disagreed))
        if host.peer is not None:
            host.peer.set_balances(ledger.balances())
        if self.waiting_settlements:  # their trades may be recorded now
            waiting = list(self.waiting_settlements.values())
            self.waiting_settlements.clear()
            for wslot, settlement in waiting:
                self._queue_delivery(wslot, settlement, None)

    def _report_disagreed(self, slot: int, disagreed: Sequence[str]) -> None:
        """Trades both parties signed are recorded even when a party's stated balance
        differs from ours (it signed from a ledger that lacked some records): say so."""
        for trade_id in disagreed:
            self.balance_disagreements += 1
            LOGGER.info(
                "Trade %s of slot %s recorded with a stated balance that differs from this "
                "ledger's (a party signed from a ledger out of step)",
                trade_id[:12],
                slot,
            )

    def _track_step(self, slot: int, accepted: bool, refused: bool) -> None:
        """Count trades refused in a row; reconcile, and after ``OUT_OF_STEP_AFTER``
        attempts raise a repair (cleared by the next trade recorded without refusal)."""
        host = self._host
        if refused:
            self._out_of_step += 1
            host.request_ledger(host.clock())
            if self._out_of_step >= OUT_OF_STEP_AFTER and not self.out_of_step:
                self.out_of_step = True
                LOGGER.warning(
                    "This home's ledger is out of step with the community since slot %s", slot
                )
                host.announcer.issue(ISSUE_OUT_OF_STEP, ISSUE_OUT_OF_STEP, {"slot": str(slot)})
        elif accepted:
            self._out_of_step = 0
            if self.out_of_step:
                self.out_of_step = False
                host.announcer.clear(ISSUE_OUT_OF_STEP)

    # --- reconciliation ---

    async def record_ledger(self, event: LedgerRecords) -> None:
        """Record what a member's ledger holds and ours lacks, in its order (one record per
        transaction: each trade's balances follow from the records before it)."""
        host = self._host
        ledger = host.ledger
        if ledger is None:
            return
        if host.peer is not None:
            ledger.set_keyring(host.peer.membership.keyring)
        trades, settlements = iter(event.trades), iter(event.settlements)
        added = 0
        try:
            for kind in event.order:
                if kind == "trade":
                    trade = next(trades)
                    result = await ledger.async_commit_slot(trade.terms.slot * 1000, trades=[trade])
                else:
                    settlement = next(settlements)
                    result = await ledger.async_commit_slot(
                        settlement.terms.slot * 1000, settlements=[settlement]
                    )
                added += len(result.accepted)
                self._report_disagreed(trade.terms.slot if kind == "trade" else 0, result.disagreed)
        except HomeAssistantError as err:
            LOGGER.debug("Could not record reconciled records: %s", err)
            return
        host.reconciled(added)
        if added:
            LOGGER.info("Recorded %s credit records from %s", added, short(event.member))
            self.trades_reconciled += added
            self._track_step(0, True, False)
            if host.peer is not None:
                host.peer.set_balances(ledger.balances())
            async_dispatcher_send(host.hass, f"{SIGNAL_LEDGER_UPDATED}_{host.entry_id}")

    # --- delivery ---

    def on_delivery(
        self, slot: int, terms: TradeTerms, delivered_wh: int, settlement: Settlement | None
    ) -> None:
        """Record a settled (or unreported) delivery and its evidence about the seller."""
        if self._host.ledger is None:
            return
        evidence = delivery_evidence(
            terms.seller, terms.energy_wh, delivered_wh, self._host.clock()
        )
        self._queue_delivery(slot, settlement, evidence)

    def _queue_delivery(
        self, slot: int, settlement: Settlement | None, evidence: Evidence | None
    ) -> None:
        settlements, items = self._deliveries.setdefault(slot, ([], []))
        if settlement is not None:
            settlements.append(settlement)
        if evidence is not None:
            items.append(evidence)
        if not self._flushing:
            self._flushing = True
            self._host.spawn(self._flush_deliveries(), "delivery")

    async def _flush_deliveries(self) -> None:
        """Record the queued deliveries (also those queued meanwhile), then rescore once."""
        host = self._host
        assert host.ledger is not None
        try:
            while self._deliveries:
                slot = min(self._deliveries)
                settlements, evidence = self._deliveries.pop(slot)
                await self._record_delivery(slot, settlements, evidence)
        finally:
            self._flushing = False
        if host.peer is not None:
            host.peer.set_balances(host.ledger.balances())
        await host.refresh_scores()

    async def _record_delivery(
        self, slot: int, settlements: list[Settlement], evidence: list[Evidence]
    ) -> None:
        result = await self._commit_checked(
            slot, "delivery", settlements=settlements, evidence=evidence
        )
        if result is None:  # pragma: no cover - disk failure
            return
        self.settlements_recorded += len(result.accepted)
        by_id = {s.settlement_id: s for s in settlements}
        for record_id, refusal in result.refused:
            if refusal.refusal is Refusal.UNKNOWN_TRADE and record_id in by_id:
                # its trade waits for an earlier fill: retried when trades are recorded
                self.waiting_settlements[record_id] = (slot, by_id[record_id])
            else:
                LOGGER.debug("Settlement %s not recorded: %s", record_id[:12], refusal)

    # --- evidence ---

    def record_evidence(self, slot: int, evidence: Evidence) -> None:
        """Record equivocation evidence in the background."""
        self._host.spawn(self._record_evidence(slot, evidence), "evidence")

    async def _record_evidence(self, slot: int, evidence: Evidence) -> None:
        ledger = self._host.ledger
        assert ledger is not None
        try:
            await ledger.async_commit_slot(slot * 1000, evidence=[evidence])
        except HomeAssistantError as err:  # pragma: no cover - disk failure
            LOGGER.error("Could not record equivocation evidence: %s", err)
