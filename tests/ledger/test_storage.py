"""SQLite storage and the home ledger: atomic slots, restart, export, tampering on disk."""

from __future__ import annotations

import csv
from dataclasses import replace
import io
import json
from pathlib import Path
import random
import sqlite3

import pytest

from custom_components.peer_energy.core.trust.chain import (
    ChainError,
    Comparison,
    ForkProof,
    VerifyMode,
    genesis_entry,
    next_entry,
)
from custom_components.peer_energy.core.trust.credit import (
    CreditPolicy,
    Refusal,
    Role,
    SignedTrade,
    Transfer,
    report_delivery,
    settle_delivery,
    sign_trade,
    sign_transfer,
)
from custom_components.peer_energy.core.trust.home_ledger import (
    CSV_COLUMNS,
    HomeLedger,
    HomeLedgerError,
)
from custom_components.peer_energy.core.trust.identity import KeyRing
from custom_components.peer_energy.core.trust.ledger_db import (
    ChainConflictError,
    LedgerDB,
    LedgerDBError,
    StoredRecord,
)
from custom_components.peer_energy.core.trust.reputation import delivery_evidence

from .conftest import make_identity

HOME, PEER, THIRD = make_identity("home"), make_identity("peer"), make_identity("third")
H, P, T = HOME.public_key, PEER.public_key, THIRD.public_key
RING = KeyRing().with_member(H).with_member(P).with_member(T)
T0 = 1_800_000_000_000
SLOT_MS = 900_000
KEYS = {H: HOME, P: PEER, T: THIRD}


def open_ledger(path: Path, identity=HOME) -> HomeLedger:  # type: ignore[no-untyped-def]
    return HomeLedger.open(
        path,
        identity,
        "street-7",
        now_ms=T0,
        policy=CreditPolicy(base_limit=1_000_000),
        keyring=RING,
    )


def make_trade(ledger: HomeLedger, buyer: str, seller: str, wh: int, slot: int) -> SignedTrade:
    terms, result = ledger.credit.propose_trade(
        slot=(T0 + slot * SLOT_MS) // 1000,
        buyer=buyer,
        seller=seller,
        energy_wh=wh,
        price=25,
        fee=1,
        clean=slot % 2 == 0,
        buyer_prev=ledger.head.hash_hex if buyer == H else "",
        seller_prev=ledger.head.hash_hex if seller == H else "",
    )
    assert terms is not None, result
    return SignedTrade(terms, sign_trade(terms, KEYS[buyer]), sign_trade(terms, KEYS[seller]))


# --- LedgerDB ---


def test_db_refuses_entries_that_do_not_extend_the_chain(tmp_path: Path) -> None:
    db = LedgerDB(tmp_path / "l.sqlite")
    g = genesis_entry(HOME, T0, "c")
    e1 = next_entry(HOME, g, T0 + 1, "order", {"n": 1})
    e2 = next_entry(HOME, e1, T0 + 2, "order", {"n": 2})
    with pytest.raises(ChainConflictError, match="genesis"):
        db.commit_slot(entries=[(H, e1)])
    db.commit_slot(entries=[(H, g), (H, e1)])
    with pytest.raises(ChainConflictError, match="already stored") as info:
        db.commit_slot(entries=[(H, e1)])
    assert info.value.stored == e1
    fork = next_entry(HOME, g, T0 + 1, "order", {"n": "fork"})
    with pytest.raises(ChainConflictError, match="conflicts") as info:
        db.commit_slot(entries=[(H, fork)])
    assert info.value.stored == e1
    e3 = next_entry(HOME, e2, T0 + 3, "order", {"n": 3})
    with pytest.raises(ChainConflictError, match="does not extend"):
        db.commit_slot(entries=[(H, e3)])
    assert db.chain(H) == [g, e1]
    assert db.chains() == [H]
    assert db.entry_count() == db.entry_count(H) == 2
    assert db.stored_bytes() > 0
    db.close()


def test_a_failed_slot_writes_nothing(tmp_path: Path) -> None:
    db = LedgerDB(tmp_path / "l.sqlite")
    g = genesis_entry(HOME, T0, "c")
    e1 = next_entry(HOME, g, T0 + 1, "order", {})
    bad = next_entry(HOME, g, T0 + 1, "order", {"other": 1})
    with pytest.raises(ChainConflictError):
        db.commit_slot(entries=[(H, g), (H, e1), (H, bad)], meta={"x": "y"})
    assert db.entry_count() == 0
    assert db.get_meta("x") is None
    db.commit_slot(entries=[(H, g), (H, e1)])  # the head cache was rolled back too
    assert db.head(H) == e1
    db.close()


def test_records_after_a_row_in_the_order_stored(tmp_path: Path) -> None:
    """A reader that keeps the last row it read finds a record stored later with an older
    time (learnt by reconciling), which a read by time from its last record's time misses."""
    db = LedgerDB(tmp_path / "l.sqlite")
    new = StoredRecord("new", "settlement", T0 + 10 * SLOT_MS, {"n": 1})
    db.commit_slot(records=[new, StoredRecord("t", "trade", T0, {"n": 2})])
    rows = db.records_after("settlement", 0)
    assert [record for _, record in rows] == [new]
    last = rows[-1][0]
    old = StoredRecord("old", "settlement", T0 - 3 * SLOT_MS, {"n": 3})
    db.commit_slot(records=[old])
    assert [record for _, record in db.records_after("settlement", last)] == [old]
    assert [r.record_id for _, r in db.records_after(None, 0)] == ["new", "t", "old"]
    assert db.records("settlement", new.ts_ms) == [new]
    db.close()


def test_db_open_errors(tmp_path: Path) -> None:
    with pytest.raises(LedgerDBError, match="cannot open"):
        LedgerDB(tmp_path)  # a directory
    path = tmp_path / "l.sqlite"
    LedgerDB(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LedgerDBError, match="schema version 99"):
        LedgerDB(path)


def test_db_wraps_sqlite_errors_on_commit(tmp_path: Path) -> None:
    db = LedgerDB(tmp_path / "l.sqlite")
    db.close()
    with pytest.raises(LedgerDBError, match="commit failed"):
        db.commit_slot(meta={"a": "b"})


def test_db_is_wal_and_fully_synchronous(tmp_path: Path) -> None:
    db = LedgerDB(tmp_path / "l.sqlite")
    assert db._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.close()


# --- HomeLedger ---


def busy_ledger(path: Path) -> HomeLedger:
    ledger = open_ledger(path)
    for slot in range(1, 6):
        ts = T0 + slot * SLOT_MS
        sold = make_trade(ledger, P, H, 400 + slot, slot)
        result = ledger.commit_slot(
            ts,
            entries=[("order", {"slot": slot, "wh": 400})],
            trades=[sold],
            evidence=[delivery_evidence(P, 100, 100, ts)],
        )
        assert result.refused == ()
        assert len(result.entries) == 2
    return ledger


def test_restart_gives_identical_state(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = busy_ledger(path)
    observed = make_trade(ledger, T, P, 50, 6)  # a trade between two neighbours
    result = ledger.commit_slot(T0 + 6 * SLOT_MS, trades=[observed])
    assert result.accepted == (observed.trade_id,)
    assert result.entries == ()  # not our trade: recorded, not on our chain
    before = (
        dict(ledger.credit.balances),
        dict(ledger.credit.tallies),
        ledger.head,
        ledger.scores(T0),
        ledger.export_json(include_chain=True),
        ledger.export_csv(),
    )
    ledger.close()
    again = open_ledger(path)
    after = (
        dict(again.credit.balances),
        dict(again.credit.tallies),
        again.head,
        again.scores(T0),
        again.export_json(include_chain=True),
        again.export_csv(),
    )
    assert after == before
    assert again.credit.total() == 0
    assert again.verify(VerifyMode.FULL).ok
    # A restart must not forget what was already recorded.
    assert again.commit_slot(T0 + 7 * SLOT_MS, trades=[observed]).refused[0][1].refusal is (
        Refusal.DUPLICATE
    )
    again.close()


def test_refused_records_are_not_recorded(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "l.sqlite")
    good = make_trade(ledger, P, H, 100, 1)
    half = SignedTrade(good.terms, good.buyer, sign_trade(good.terms, THIRD))
    result = ledger.commit_slot(T0 + SLOT_MS, trades=[half])
    assert result.accepted == ()
    assert result.refused[0][1].refusal is Refusal.BAD_SIGNATURE
    assert ledger.db.record_count() == 0
    assert ledger.head.seq == 0
    # The buyer's limit is checked before the home records a trade it is party to.
    ledger.credit.scores = {H: 0}
    terms, refusal = ledger.credit.propose_trade(
        slot=T0 // 1000, buyer=H, seller=P, energy_wh=1, price=1
    )
    assert terms is None
    assert refusal.refusal is Refusal.OVER_LIMIT
    ledger.close()


def test_a_countersigned_trade_is_recorded_whatever_this_home_thinks_of_the_buyer(
    tmp_path: Path,
) -> None:
    """The limit is checked before signing (the buyer's orders, the bids the community
    admits, ``propose_trade``), not when a trade both parties signed is recorded: a seller
    whose reputation view gives the buyer no credit at all records it like everyone."""
    ledger = open_ledger(tmp_path / "l.sqlite")
    trade = make_trade(ledger, P, H, 100, 1)  # this home sells to P
    ledger.credit.scores = {P: 0}
    assert ledger.credit.limit(P) == 0
    result = ledger.commit_slot(T0 + SLOT_MS, trades=[trade])
    assert result.accepted == (trade.trade_id,)
    assert ledger.credit.balance(P) == -trade.terms.cost
    assert ledger.head.kind == "trade"
    ledger.close()


def test_donations_settlements_and_duplicates(tmp_path: Path) -> None:
    ledger = busy_ledger(tmp_path / "l.sqlite")
    gift = sign_transfer(
        Transfer(
            "street-7", H, "ext:school", 1000, T0 + 6 * SLOT_MS, "", ledger.head.hash_hex,
            ledger.credit.balance(H) - 1000,
        ),
        HOME,
    )  # fmt: skip
    trade = ledger.db.records(kind="trade")[0]
    terms = SignedTrade.from_dict(trade.body).terms
    seller = report_delivery(terms, HOME, H, Role.SELLER, terms.energy_wh - 100, T0)
    buyer = report_delivery(terms, PEER, P, Role.BUYER, terms.energy_wh - 100, T0)
    settlement = settle_delivery(terms, seller, buyer, import_price=30)
    result = ledger.commit_slot(
        T0 + 6 * SLOT_MS, transfers=[gift, gift], settlements=[settlement, settlement]
    )
    assert len(result.accepted) == 2
    assert [r.refusal for _, r in result.refused] == [Refusal.DUPLICATE, Refusal.DUPLICATE]
    assert [e.kind for e in result.entries] == ["transfer", "settlement"]
    assert ledger.credit.balance("ext:school") == 1000
    assert ledger.credit.total() == 0
    assert ledger.verify(VerifyMode.FULL).ok
    rows = list(csv.reader(io.StringIO(ledger.export_csv())))
    assert tuple(rows[0]) == CSV_COLUMNS
    kinds = [row[0] for row in rows[1:]]
    assert kinds.count("trade") == 5
    assert kinds.count("transfer") == kinds.count("settlement") == 1
    balances = {row[5]: int(row[9]) for row in rows[1:] if row[0] == "balance"}
    assert balances == ledger.credit.balances
    settle_row = next(row for row in rows if row[0] == "settlement")
    assert (settle_row[4], settle_row[5], int(settle_row[9])) == (H, P, 100 * 30)
    ledger.close()
    # Transfers recorded before a restart stay duplicates after it.
    again = open_ledger(tmp_path / "l.sqlite")
    assert again.commit_slot(T0 + 7 * SLOT_MS, transfers=[gift]).refused[0][1].refusal is (
        Refusal.DUPLICATE
    )
    again.close()


def short_delivery(ledger: HomeLedger, short_wh: int) -> None:
    """The home (seller of the first trade) delivers ``short_wh`` less than it sold."""
    terms = SignedTrade.from_dict(ledger.db.records(kind="trade")[0].body).terms
    seller = report_delivery(terms, HOME, H, Role.SELLER, terms.energy_wh - short_wh, T0)
    settlement = settle_delivery(terms, seller, None, import_price=30)
    assert ledger.commit_slot(T0 + 6 * SLOT_MS, settlements=[settlement]).refused == ()


def test_settled_amounts_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = busy_ledger(path)
    short_delivery(ledger, 100)
    assert ledger.credit.settled == {H: -3000, P: 3000}
    signed = ledger.credit.signed_balance(H)
    assert signed == ledger.credit.balance(H) + 3000
    ledger.close()
    again = open_ledger(path)
    assert again.credit.settled == {H: -3000, P: 3000}
    assert again.credit.signed_balance(H) == signed
    # The next trade commits to the signed balance and is accepted after the restart.
    later = make_trade(again, P, H, 10, 7)
    assert again.commit_slot(T0 + 7 * SLOT_MS, trades=[later]).refused == ()
    again.close()


def _downgrade_to_v1(path: Path) -> None:
    """What a file written by the previous version looks like: no ``settled`` column."""
    with sqlite3.connect(path) as raw:
        raw.execute("ALTER TABLE accounts DROP COLUMN settled")
        raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")


def test_a_version_1_ledger_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = busy_ledger(path)
    short_delivery(ledger, 100)
    before = (dict(ledger.credit.balances), dict(ledger.credit.settled), ledger.head)
    ledger.close()
    _downgrade_to_v1(path)
    again = open_ledger(path)
    assert (dict(again.credit.balances), dict(again.credit.settled), again.head) == before
    assert again.db.get_meta("schema_version") == "2"
    assert again.verify(VerifyMode.FULL).ok
    again.close()
    LedgerDB(path).close()  # opened again as version 2: nothing to migrate


def test_a_broken_version_1_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    busy_ledger(path).close()
    _downgrade_to_v1(path)
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO records VALUES ('x', 'settlement', 0, CAST('{}' AS BLOB))")
    with pytest.raises(LedgerDBError, match="cannot migrate"):
        LedgerDB(path)
    with sqlite3.connect(path) as raw:  # nothing of the migration was kept
        assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "1",
        )


def test_export_json_is_plain_json(tmp_path: Path) -> None:
    ledger = busy_ledger(tmp_path / "l.sqlite")
    data = json.loads(json.dumps(ledger.export_json(include_chain=True)))
    assert data["format"] == "peer-energy-ledger"
    assert data["member"] == H
    assert len(data["chain"]) == ledger.head.seq + 1
    assert data["accounts"][H]["balance_mmu"] == ledger.credit.balance(H)
    assert "chain" not in ledger.export_json()
    ledger.close()


def test_summary_has_no_secrets(tmp_path: Path) -> None:
    ledger = busy_ledger(tmp_path / "l.sqlite")
    summary = ledger.summary()
    assert HOME.seed_hex() not in json.dumps(summary)
    assert summary["chain_length"] == 11
    assert summary["community_total_mmu"] == 0
    assert summary["balance_mmu"] == ledger.credit.balance(H) > 0
    ledger.close()


def test_key_rotation_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = busy_ledger(path)
    new = make_identity("home-2")
    ledger.rotate_key(new, T0 + 10 * SLOT_MS)
    ledger.commit_slot(T0 + 11 * SLOT_MS, entries=[("order", {"after": 1})])
    ledger.close()
    again = open_ledger(path, new)
    assert again.member == H
    assert again.verify().current_key == new.public_key
    again.close()
    with pytest.raises(HomeLedgerError, match="another key"):
        open_ledger(path, THIRD)
    with pytest.raises(HomeLedgerError, match="another key"):
        open_ledger(path, HOME)  # the rotated-away key may no longer write


def test_ledger_belongs_to_one_community(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    open_ledger(path).close()
    with pytest.raises(HomeLedgerError, match="community"):
        HomeLedger.open(path, HOME, "elsewhere", now_ms=T0)


def test_fork_proofs_are_stored_and_cost_reputation(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "l.sqlite")
    g = genesis_entry(PEER, T0, "street-7")
    a = next_entry(PEER, g, T0 + 1, "order", {"bid": 1})
    b = next_entry(PEER, g, T0 + 1, "order", {"bid": 2})
    assert not ledger.record_fork(ForkProof(a, a), T0)
    assert ledger.record_fork(ForkProof(a, b), T0)
    assert ledger.record_fork(ForkProof(a, b), T0)  # idempotent
    assert ledger.db.proof_count() == 1
    assert ledger.db.proofs()[0].member == P
    assert ledger.scores(T0)[P] < 300
    ledger.close()


def test_a_failing_commit_rolls_memory_back(tmp_path: Path) -> None:
    ledger = busy_ledger(tmp_path / "l.sqlite")
    balances = dict(ledger.credit.balances)
    head = ledger.head
    trade = make_trade(ledger, P, H, 10, 9)

    def disk_full(**_: object) -> None:
        raise LedgerDBError("disk full")

    real_commit = ledger.db.commit_slot
    ledger.db.commit_slot = disk_full  # type: ignore[method-assign]
    with pytest.raises(LedgerDBError):
        ledger.commit_slot(T0 + 9 * SLOT_MS, entries=[("order", {})], trades=[trade])
    assert ledger.credit.balances == balances
    assert ledger.head == head
    assert trade.trade_id not in ledger.credit.applied
    assert trade.trade_id not in ledger.credit.trades
    ledger.db.commit_slot = real_commit  # type: ignore[method-assign]
    assert ledger.commit_slot(T0 + 9 * SLOT_MS, trades=[trade]).accepted == (trade.trade_id,)
    ledger.db.close()
    with pytest.raises(LedgerDBError):
        ledger.commit_slot(T0 + 10 * SLOT_MS, trades=[make_trade(ledger, P, H, 10, 10)])


def tamper_db(path: Path, rng: random.Random) -> tuple[int, str]:
    with sqlite3.connect(path) as raw:
        seqs = [r[0] for r in raw.execute("SELECT seq FROM entries")]
        seq = rng.choice(seqs)
        column = rng.choice(["signed", "sig"])
        blob = bytearray(
            raw.execute(f"SELECT {column} FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
        )
        pos = rng.randrange(len(blob))
        blob[pos] ^= 1 << rng.randrange(8)
        raw.execute(f"UPDATE entries SET {column} = ? WHERE seq = ?", (bytes(blob), seq))
    return seq, column


def test_a_flipped_bit_in_the_stored_chain_is_detected(tmp_path: Path) -> None:
    rng = random.Random(7)
    detected = 0
    source = tmp_path / "clean.sqlite"
    busy_ledger(source).close()
    for attempt in range(25):
        path = tmp_path / f"t{attempt}.sqlite"
        with sqlite3.connect(source) as src, sqlite3.connect(path) as dst:
            src.backup(dst)
        tamper_db(path, rng)
        db = LedgerDB(path)
        try:
            ledger = HomeLedger(db, HOME, "street-7", now_ms=T0, keyring=RING)
            report = ledger.verify(VerifyMode.AUTHOR)
        except (ChainError, HomeLedgerError):
            detected += 1  # the stored bytes no longer parse, or the head's author changed
        else:
            detected += not report.ok
        finally:
            db.close()
    assert detected == 25


def test_our_trades_must_commit_to_our_chain(tmp_path: Path) -> None:
    ledger = busy_ledger(tmp_path / "l.sqlite")
    old_prev = ledger.db.entry(H, 2)
    assert old_prev is not None
    terms, _ = ledger.credit.propose_trade(
        slot=T0 // 1000, buyer=P, seller=H, energy_wh=5, price=20, seller_prev="ab" * 32
    )
    assert terms is not None
    foreign = SignedTrade(terms, sign_trade(terms, PEER), sign_trade(terms, HOME))
    result = ledger.commit_slot(T0 + 9 * SLOT_MS, trades=[foreign])
    assert result.refused[0][1].refusal is Refusal.INVALID_TERMS
    assert ledger.db.has_entry_hash(H, old_prev.hash_hex)
    assert not ledger.db.has_entry_hash(H, "zz")
    # An older entry of our chain is fine (the trade was agreed a little while ago).
    terms, _ = ledger.credit.propose_trade(
        slot=T0 // 1000, buyer=P, seller=H, energy_wh=5, price=20, seller_prev=old_prev.hash_hex
    )
    assert terms is not None
    agreed = SignedTrade(terms, sign_trade(terms, PEER), sign_trade(terms, HOME))
    assert ledger.commit_slot(T0 + 9 * SLOT_MS, trades=[agreed]).refused == ()
    assert ledger.verify(VerifyMode.FULL).ok
    ledger.close()


def test_peer_chain_copies_extend_and_forks_are_proven(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "l.sqlite")
    g = genesis_entry(PEER, T0, "street-7")
    chain = [g]
    for i in range(1, 4):
        chain.append(next_entry(PEER, chain[-1], T0 + i, "order", {"i": i}))
    assert ledger.sync_peer_chain(chain[:2], T0).outcome is Comparison.EXTENDS
    assert ledger.sync_peer_chain(chain, T0).outcome is Comparison.EXTENDS
    assert ledger.db.chain(P) == chain
    assert ledger.sync_peer_chain(chain, T0).outcome is Comparison.SAME
    assert ledger.sync_peer_chain(chain[:2], T0).outcome is Comparison.SHORTER
    # A copy that does not verify, an empty one, or our own chain: ignored.
    broken = [*chain[:3], replace(chain[3], sig=bytes(64))]
    assert ledger.sync_peer_chain(broken, T0).outcome is Comparison.SAME
    assert ledger.sync_peer_chain([], T0).outcome is Comparison.SAME
    assert ledger.sync_peer_chain(ledger.db.chain(H), T0).outcome is Comparison.SAME
    # The peer rewrites entry 2: a fork, proven and stored, and the peer's score drops.
    rewritten = [*chain[:2], next_entry(PEER, chain[1], T0 + 2, "order", {"i": "other"})]
    result = ledger.sync_peer_chain(rewritten, T0)
    assert result.outcome is Comparison.FORK
    assert ledger.db.proof_count() == 1
    assert ledger.scores(T0)[P] < 300
    assert ledger.db.chain(P) == chain  # our copy is unchanged
    ledger.close()


def test_two_homes_and_an_observer_agree(tmp_path: Path) -> None:
    """Each party records its side on its own chain; every view ends identical."""
    home = open_ledger(tmp_path / "home.sqlite", HOME)
    peer = open_ledger(tmp_path / "peer.sqlite", PEER)
    observer = open_ledger(tmp_path / "third.sqlite", THIRD)
    rng = random.Random(11)
    for slot in range(1, 30):
        ts = T0 + slot * SLOT_MS
        buyer, seller = (home, peer) if rng.random() < 0.5 else (peer, home)
        terms, result = buyer.credit.propose_trade(
            slot=ts // 1000,
            buyer=buyer.member,
            seller=seller.member,
            energy_wh=rng.randint(1, 3000),
            price=rng.randint(5, 40),
            fee=1,
            clean=rng.random() < 0.5,
            buyer_prev=buyer.head.hash_hex,
            seller_prev=seller.head.hash_hex,
        )
        if terms is None:
            assert result.refusal is Refusal.OVER_LIMIT
            continue
        trade = SignedTrade(
            terms, sign_trade(terms, buyer.identity), sign_trade(terms, seller.identity)
        )
        for ledger in (home, peer, observer):
            assert ledger.commit_slot(ts, trades=[trade]).accepted == (trade.trade_id,)
    assert home.credit.balances == peer.credit.balances == observer.credit.balances
    assert home.credit.tallies == peer.credit.tallies == observer.credit.tallies
    assert home.credit.total() == 0
    for ledger in (home, peer):
        assert ledger.verify(VerifyMode.FULL).ok
    # The observer holds copies of both chains and finds them consistent.
    for ledger in (home, peer):
        copy = ledger.db.chain(ledger.member)
        assert observer.sync_peer_chain(copy, T0).outcome is Comparison.EXTENDS
    assert observer.db.proof_count() == 0
    for ledger in (home, peer, observer):
        ledger.close()
