"""One home's ledger: its source chain, the community credit view and its evidence.

``HomeLedger`` ties the pieces together over one ``LedgerDB`` file. It is synchronous
(the Home Assistant shell runs it in the executor) and commits exactly one database
transaction per slot: the chain entries, accepted credit records, changed accounts
and new evidence of a slot become durable together or not at all. If the commit
fails, the in-memory state is rolled back to the last committed slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import csv
from dataclasses import dataclass
import io
from pathlib import Path
from typing import Any

from .chain import (
    ChainComparison,
    ChainEntry,
    ChainReport,
    Comparison,
    ForkProof,
    VerifyMode,
    compare_chains,
    current_key,
    genesis_entry,
    next_entry,
    rotation_entry,
    verify_chain,
    verify_fork_proof,
)
from .credit import (
    SETTLEMENT,
    TRADE,
    TRANSFER,
    CreditLedger,
    CreditPolicy,
    CreditResult,
    Refusal,
    Settlement,
    SignedTrade,
    Tally,
    TradeTerms,
    Transfer,
    trade_entry_checker,
)
from .identity import Identity, KeyRing
from .ledger_db import Account, LedgerDB, StoredProof, StoredRecord
from .reputation import (
    DEFAULT_POLICY,
    Evidence,
    ReputationPolicy,
    equivocation_evidence,
    prune,
    scores,
)

EXPORT_FORMAT = "peer-energy-ledger"
EXPORT_VERSION = 1
RECENT_MS = 7 * 86_400_000  # trades kept in memory for settlement and duplicate checks
CSV_COLUMNS = (
    "kind",
    "id",
    "ts_ms",
    "slot",
    "payer",
    "payee",
    "energy_wh",
    "price",
    "fee",
    "amount_mmu",
    "clean",
    "local",
)


class HomeLedgerError(Exception):
    """The ledger file belongs to another home or community."""


@dataclass(frozen=True, slots=True)
class SlotResult:
    """What one ``commit_slot`` wrote (everything here is durable) and what it refused.

    ``disagreed``: the accepted trades whose stated balance of a party differs from this
    ledger's (recorded all the same, see ``CreditLedger.check_trade``).
    """

    entries: tuple[ChainEntry, ...]
    accepted: tuple[str, ...]
    refused: tuple[tuple[str, CreditResult], ...]
    disagreed: tuple[str, ...] = ()


class HomeLedger:
    """A home's durable ledger. Not thread-safe: one executor job at a time."""

    def __init__(
        self,
        db: LedgerDB,
        identity: Identity,
        community: str,
        *,
        now_ms: int,
        policy: CreditPolicy | None = None,
        keyring: KeyRing | None = None,
        reputation: ReputationPolicy = DEFAULT_POLICY,
    ) -> None:
        """Load the state from ``db``; create the genesis entry on first use."""
        self.db = db
        self.identity = identity
        self.community = community
        self.reputation = reputation
        stored_community = db.get_meta("community")
        if stored_community is not None and stored_community != community:
            raise HomeLedgerError("ledger belongs to another community")
        self.member = db.get_meta("member") or identity.public_key
        self.credit = CreditLedger(community, policy=policy or CreditPolicy(), keyring=keyring)
        head = db.head(self.member)
        if head is None:
            head = genesis_entry(identity, now_ms, community)
            db.commit_slot(
                entries=[(self.member, head)],
                meta={"community": community, "member": self.member},
            )
        elif identity.public_key != current_key(head):
            raise HomeLedgerError("ledger was written by another key")
        self.head: ChainEntry = head
        for name, account in db.accounts().items():
            self.credit.balances[name] = account.balance
            if account.settled:
                self.credit.settled[name] = account.settled
            if account.tally != Tally():
                self.credit.tallies[name] = account.tally
        for record in db.records(since_ms=now_ms - RECENT_MS):
            self.credit.applied.add(record.record_id)
            if record.kind == TRADE:
                terms = SignedTrade.from_dict(record.body).terms
                self.credit.trades[record.record_id] = terms
        self.evidence: list[Evidence] = prune(
            db.evidence(since_ms=now_ms - 10 * reputation.equivocation_half_life_ms),
            now_ms,
            reputation,
        )

    @classmethod
    def open(
        cls,
        path: str | Path,
        identity: Identity,
        community: str,
        *,
        now_ms: int,
        policy: CreditPolicy | None = None,
        keyring: KeyRing | None = None,
        reputation: ReputationPolicy = DEFAULT_POLICY,
    ) -> HomeLedger:
        """Open or create the ledger file at ``path``."""
        db = LedgerDB(path)
        try:
            return cls(
                db,
                identity,
                community,
                now_ms=now_ms,
                policy=policy,
                keyring=keyring,
                reputation=reputation,
            )
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # --- the one write path ---

    def commit_slot(
        self,
        ts_ms: int,
        *,
        entries: Sequence[tuple[str, Mapping[str, Any]]] = (),
        trades: Sequence[SignedTrade] = (),
        transfers: Sequence[Transfer] = (),
        settlements: Sequence[Settlement] = (),
        evidence: Sequence[Evidence] = (),
    ) -> SlotResult:
        """Record one slot in one durable transaction.

        ``entries`` are ``(kind, body)`` pairs for this home's own chain (orders, fills,
        delivery reports, attestations). Credit records are checked against the credit
        ledger; accepted ones are stored, and those this home is party to are also
        appended to its chain. Refused ones are reported and not recorded. A trade both
        parties signed is not refused for its stated balances nor for this home's view
        of the buyer's credit limit (both reported or checked before signing). When this
        returns, everything in the result is on disk.
        """
        credit = self.credit
        saved = (dict(credit.balances), dict(credit.tallies), dict(credit.settled))
        head = self.head
        new_entries: list[ChainEntry] = []
        records: list[StoredRecord] = []
        accepted: list[str] = []
        refused: list[tuple[str, CreditResult]] = []
        disagreed: list[str] = []

        def append(kind: str, body: Mapping[str, Any]) -> None:
            nonlocal head
            head = next_entry(self.identity, head, max(ts_ms, head.ts_ms), kind, body)
            new_entries.append(head)

        try:
            for kind, body in entries:
                append(kind, body)
            for trade in trades:
                record_id = trade.trade_id
                party = self.member in (trade.terms.buyer, trade.terms.seller)
                if self.db.has_record(record_id):
                    result = CreditResult(Refusal.DUPLICATE, "trade already recorded")
                elif party and not self._on_chain(trade, head, new_entries):
                    result = CreditResult(
                        Refusal.INVALID_TERMS, "trade does not commit to an entry of our chain"
                    )
                else:
                    # Both parties signed it: the buyer's limit was checked before signing
                    # (its orders, the bids the community admits); this home's own
                    # reputation view must not make its ledger differ from the others'.
                    result = credit.apply_trade(trade, enforce_limit=False)
                if not result.ok:
                    refused.append((record_id, result))
                    continue
                if result.disagreed:
                    disagreed.append(record_id)
                body = trade.to_dict()
                records.append(StoredRecord(record_id, TRADE, trade.terms.slot * 1000, body))
                accepted.append(record_id)
                if party:
                    append(TRADE, body)
            for transfer in transfers:
                record_id = transfer.transfer_id
                if self.db.has_record(record_id):
                    result = CreditResult(Refusal.DUPLICATE, "transfer already recorded")
                else:
                    result = credit.apply_transfer(transfer)
                if not result.ok:
                    refused.append((record_id, result))
                    continue
                body = transfer.to_dict()
                records.append(StoredRecord(record_id, TRANSFER, transfer.ts_ms, body))
                accepted.append(record_id)
                if transfer.sender == self.member:
                    append(TRANSFER, body)
            for settlement in settlements:
                record_id = settlement.settlement_id
                result = credit.apply_settlement(settlement)
                if not result.ok:
                    refused.append((record_id, result))
                    continue
                body = settlement.to_dict()
                records.append(StoredRecord(record_id, SETTLEMENT, ts_ms, body))
                accepted.append(record_id)
                if self.member in (settlement.terms.buyer, settlement.terms.seller):
                    append(SETTLEMENT, body)
            changed = {
                name: Account(credit.balance(name), credit.tally(name), credit.settled.get(name, 0))
                for name in set(credit.balances) | set(credit.tallies)
                if credit.balances.get(name) != saved[0].get(name)
                or credit.tallies.get(name) != saved[1].get(name)
                or credit.settled.get(name) != saved[2].get(name)
            }
            self.db.commit_slot(
                entries=[(self.member, e) for e in new_entries],
                records=records,
                accounts=changed,
                evidence=evidence,
            )
        except BaseException:
            credit.balances, credit.tallies, credit.settled = saved
            for record_id in accepted:
                credit.applied.discard(record_id)
                credit.trades.pop(record_id, None)
            raise
        self.head = head
        credit.forget_before(ts_ms - RECENT_MS)
        self.evidence.extend(evidence)
        return SlotResult(tuple(new_entries), tuple(accepted), tuple(refused), tuple(disagreed))

    def _on_chain(
        self, trade: SignedTrade, head: ChainEntry, new_entries: Sequence[ChainEntry]
    ) -> bool:
        """Our previous hash in the trade names an entry of our chain."""
        terms = trade.terms
        prev = terms.buyer_prev if terms.buyer == self.member else terms.seller_prev
        if prev == head.hash_hex or any(e.hash_hex == prev for e in new_entries):
            return True
        return self.db.has_entry_hash(self.member, prev)

    def rotate_key(self, new: Identity, ts_ms: int) -> ChainEntry:
        """Append a key rotation signed by the current key and switch to ``new``.

        The caller must have stored ``new`` durably *before* calling this.
        """
        entry, _ = rotation_entry(
            self.member, self.identity, new, self.head, max(ts_ms, self.head.ts_ms)
        )
        self.db.commit_slot(entries=[(self.member, entry)])
        self.head = entry
        self.identity = new
        return entry

    def record_fork(self, proof: ForkProof, ts_ms: int) -> bool:
        """Store a verified fork proof and count it as equivocation evidence."""
        keyring = self.credit.keyring
        if not verify_fork_proof(proof, keyring):
            return False
        author = proof.first.author
        member = (keyring.member_of(author) if keyring else None) or author
        proof_id = proof.first.hash_hex + proof.second.hash_hex
        if any(p.proof_id == proof_id for p in self.db.proofs()):
            return True
        evidence = equivocation_evidence(member, ts_ms)
        self.db.commit_slot(
            proofs=[StoredProof(proof_id, member, "fork", ts_ms, proof.to_dict())],
            evidence=[evidence],
        )
        self.evidence.append(evidence)
        return True

    def sync_peer_chain(self, presented: Sequence[ChainEntry], ts_ms: int) -> ChainComparison:
        """Compare a peer's chain copy with the one we hold and keep the longer honest one.

        The presented chain must verify from genesis (``author`` mode). New entries that
        extend our copy are stored; a fork is proven, stored and counted as equivocation;
        a shorter copy changes nothing (see ``check_head_claim`` for rollbacks). Returns
        the comparison; ``Comparison.SAME`` with no proof also for an unverifiable copy.
        """
        if not presented:
            return ChainComparison(Comparison.SAME)
        member = presented[0].author
        if member == self.member or not verify_chain(presented, member=member).ok:
            return ChainComparison(Comparison.SAME)
        known = self.db.chain(member)
        comparison = compare_chains(known, presented)
        if comparison.outcome is Comparison.FORK and comparison.proof is not None:
            self.record_fork(comparison.proof, ts_ms)
        elif comparison.outcome is Comparison.EXTENDS:
            self.db.commit_slot(entries=[(member, e) for e in presented[len(known) :]])
        return comparison

    # --- reads ---

    def verify(self, mode: VerifyMode = VerifyMode.AUTHOR) -> ChainReport:
        """Verify this home's stored chain end to end (streaming from disk)."""
        check = trade_entry_checker(self.credit.keyring) if mode is VerifyMode.FULL else None
        return verify_chain(
            self.db.iter_chain(self.member), mode=mode, member=self.member, entry_check=check
        )

    def scores(self, now_ms: int) -> dict[str, int]:
        """This home's reputation score of every peer it has evidence about."""
        return scores(self.evidence, now_ms, self.reputation)

    def refresh_limits(self, now_ms: int) -> None:
        """Feed current reputation scores into the credit limits."""
        self.credit.scores = self.scores(now_ms)

    def summary(self) -> dict[str, Any]:
        """Diagnostics-ready summary. Public data only: no key material."""
        member = self.member
        credit = self.credit
        return {
            "member": member,
            "community": self.community,
            "chain_length": self.head.seq + 1,
            "head_hash": self.head.hash_hex,
            "balance_mmu": credit.balance(member),
            "credit_limit_mmu": credit.limit(member),
            "headroom_mmu": credit.headroom(member),
            "tally": credit.tally(member).to_dict(),
            "accounts": len(credit.balances),
            "community_total_mmu": credit.total(),
            "records": self.db.record_count(),
            "fork_proofs": self.db.proof_count(),
            "evidence": len(self.evidence),
            "database_bytes": self.db.file_bytes(),
        }

    # --- export ---

    def export_json(self, *, include_chain: bool = False) -> dict[str, Any]:
        """Everything needed to settle outside the community, as plain data."""
        data: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "community": self.community,
            "member": self.member,
            "head": {"seq": self.head.seq, "hash": self.head.hash_hex},
            "accounts": {
                name: {"balance_mmu": account.balance} | account.tally.to_dict()
                for name, account in self.db.accounts().items()
            },
            "records": [
                {"id": r.record_id, "kind": r.kind, "ts_ms": r.ts_ms, "body": dict(r.body)}
                for r in self.db.records()
            ],
        }
        if include_chain:
            data["chain"] = [entry.to_dict() for entry in self.db.iter_chain(self.member)]
        return data

    def export_csv(self) -> str:
        """Credit records then balances, one row each (amounts in milli-minor units)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for record in self.db.records():
            writer.writerow(_csv_row(record))
        for name, account in self.db.accounts().items():
            writer.writerow(["balance", "", "", "", "", name, "", "", "", account.balance, "", ""])
        return out.getvalue()


def _csv_row(record: StoredRecord) -> list[object]:
    body = record.body
    if record.kind == TRADE:
        t = TradeTerms.from_dict(body["terms"])
        return [
            TRADE, record.record_id, record.ts_ms, t.slot, t.buyer, t.seller,
            t.energy_wh, t.price, t.fee, t.cost, t.clean, t.local,
        ]  # fmt: skip
    if record.kind == TRANSFER:
        return [
            TRANSFER, record.record_id, record.ts_ms, "", body["sender"], body["recipient"],
            "", "", "", body["amount"], "", "",
        ]  # fmt: skip
    t = TradeTerms.from_dict(body["terms"])
    return [
        SETTLEMENT, record.record_id, record.ts_ms, t.slot, t.seller, t.buyer,
        body["shortfall_wh"], body["import_price"], "", body["payment"], t.clean, t.local,
    ]  # fmt: skip
