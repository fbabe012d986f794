"""Durable ledger storage: SQLite (standard library), WAL, one transaction per slot.

Synchronous API: the Home Assistant shell calls it from the executor, never from the
event loop. One ``LedgerDB`` per database file, used from one thread at a time.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``. A commit returns only after
the write-ahead log has been fsync'ed, so an entry whose ``commit_slot`` returned
("acknowledged") survives a process kill *and* a power cut. (``NORMAL`` would survive a
process kill but may lose the last commits on power loss; we trade some throughput,
recovered by committing a whole slot at once, for "acknowledged = durable".)

Tables:

* ``entries``: every chain entry held (our own chain and copies of peers' chains),
  stored as the exact signed bytes plus signature, keyed by (author chain, seq).
  ``commit_slot`` refuses an entry that does not extend its chain's stored head.
* ``records``: accepted credit records (trades, transfers, settlements) as canonical
  JSON, for export and settlement.
* ``accounts``: balance, clean/non-clean tally and the part of the balance moved by
  delivery settlements (``settled``) per account after the last slot.
* ``evidence``: reputation evidence this home collected.
* ``proofs``: fork and rollback proofs received or found.
* ``meta``: small key/value settings (schema version, community, member id).

Schema versions: 1 had no ``settled`` column; opening a version-1 file adds it, fills
it from the stored settlements and marks the file version 2, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
import contextlib
from dataclasses import dataclass
from pathlib import Path
import sqlite3
from typing import Any

from .canonical import canonical_bytes, decode
from .chain import ChainEntry, parse_entry
from .credit import Tally
from .reputation import Evidence, EvidenceKind

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    signed BLOB NOT NULL,
    sig BLOB NOT NULL,
    UNIQUE (chain, seq)
);
CREATE INDEX IF NOT EXISTS entries_hash ON entries (hash);
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    balance INTEGER NOT NULL,
    clean_bought_wh INTEGER NOT NULL,
    clean_sold_wh INTEGER NOT NULL,
    other_bought_wh INTEGER NOT NULL,
    other_sold_wh INTEGER NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS evidence (
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    expected INTEGER NOT NULL,
    achieved INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS evidence_ts ON evidence (ts);
CREATE TABLE IF NOT EXISTS proofs (
    id TEXT PRIMARY KEY,
    member TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


class LedgerDBError(Exception):
    """The database cannot be opened or a commit was refused."""


class ChainConflictError(LedgerDBError):
    """An entry does not extend its chain's stored head (gap, fork or replay).

    ``stored`` is the entry already held at that sequence number, if any: together with
    the refused entry it may form a fork proof.
    """

    def __init__(self, message: str, stored: ChainEntry | None = None) -> None:
        """Keep the stored entry for a fork proof."""
        super().__init__(message)
        self.stored = stored


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """An accepted credit record as stored."""

    record_id: str
    kind: str
    ts_ms: int
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Account:
    """A balance (milli-minor units), its energy tally and the part of the balance that
    delivery settlements moved (``balance - settled`` is the signed balance)."""

    balance: int
    tally: Tally
    settled: int = 0


@dataclass(frozen=True, slots=True)
class StoredProof:
    """A fork or rollback proof against ``member``."""

    proof_id: str
    member: str
    kind: str
    ts_ms: int
    body: Mapping[str, Any]


class LedgerDB:
    """One SQLite ledger file. Not thread-safe: use from one executor job at a time."""

    def __init__(self, path: str | Path) -> None:
        """Open (creating if needed) the database at ``path``; ``LedgerDBError`` if not."""
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._version()
            if version == "1":
                self._migrate_v1()
            elif version is not None and version != str(SCHEMA_VERSION):
                raise LedgerDBError(f"unsupported ledger schema version {version}")
            self._db.executescript(_SCHEMA)
            if version is None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
        except LedgerDBError:
            self._db.close()
            raise
        except (sqlite3.Error, OSError) as err:
            raise LedgerDBError(f"cannot open ledger {self.path.name}: {err}") from err
        self._heads: dict[str, tuple[int, bytes]] = {}

    def _version(self) -> str | None:
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if exists is None:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

    def _migrate_v1(self) -> None:
        """Version 1 to 2: add ``accounts.settled`` and fill it from the stored
        settlements (seller pays, buyer receives), all in one transaction."""
        db = self._db
        settled: dict[str, int] = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("ALTER TABLE accounts ADD COLUMN settled INTEGER NOT NULL DEFAULT 0")
            for (raw,) in db.execute("SELECT body FROM records WHERE kind = 'settlement'"):
                body = _object(bytes(raw))
                payment = int(body["payment"])
                terms = body["terms"]
                settled[terms["seller"]] = settled.get(terms["seller"], 0) - payment
                settled[terms["buyer"]] = settled.get(terms["buyer"], 0) + payment
            db.executemany(
                "UPDATE accounts SET settled = ? WHERE account = ?",
                [(amount, name) for name, amount in settled.items() if amount],
            )
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
            )
            db.execute("COMMIT")
        except BaseException as err:
            db.execute("ROLLBACK")
            if isinstance(err, KeyError | TypeError | ValueError):
                raise LedgerDBError(f"cannot migrate ledger {self.path.name}: {err}") from err
            raise

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._db.close()

    def _q(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run a read; SQLite errors become ``LedgerDBError``."""
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as err:
            raise LedgerDBError(f"ledger read failed: {err}") from err

    # --- meta ---

    def get_meta(self, key: str) -> str | None:
        """A stored setting, or ``None``."""
        row = self._q("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # --- chains ---

    def _head(self, chain: str) -> tuple[int, bytes] | None:
        head = self._heads.get(chain)
        if head is None:
            row = self._q(
                "SELECT seq, hash FROM entries WHERE chain = ? ORDER BY seq DESC LIMIT 1",
                (chain,),
            ).fetchone()
            if row is not None:
                head = (int(row[0]), bytes(row[1]))
                self._heads[chain] = head
        return head

    def head(self, chain: str) -> ChainEntry | None:
        """The last stored entry of ``chain`` (a member id)."""
        row = self._q(
            "SELECT signed, sig FROM entries WHERE chain = ? ORDER BY seq DESC LIMIT 1",
            (chain,),
        ).fetchone()
        return None if row is None else parse_entry(bytes(row[0]), bytes(row[1]))

    def entry(self, chain: str, seq: int) -> ChainEntry | None:
        """The stored entry ``seq`` of ``chain``."""
        row = self._q(
            "SELECT signed, sig FROM entries WHERE chain = ? AND seq = ?", (chain, seq)
        ).fetchone()
        return None if row is None else parse_entry(bytes(row[0]), bytes(row[1]))

    def iter_chain(self, chain: str, start: int = 0) -> Iterator[ChainEntry]:
        """Entries of ``chain`` from ``start`` in order (parsed, not verified)."""
        cursor = self._q(
            "SELECT signed, sig FROM entries WHERE chain = ? AND seq >= ? ORDER BY seq",
            (chain, start),
        )
        for signed, sig in cursor:
            yield parse_entry(bytes(signed), bytes(sig), trusted=True)

    def has_entry_hash(self, chain: str, entry_hash_hex: str) -> bool:
        """True if ``chain`` holds an entry with this hash (hex)."""
        try:
            digest = bytes.fromhex(entry_hash_hex)
        except ValueError:
            return False
        row = self._q(
            "SELECT 1 FROM entries WHERE hash = ? AND chain = ?", (digest, chain)
        ).fetchone()
        return row is not None

    def chain(self, chain: str, start: int = 0) -> list[ChainEntry]:
        """Entries of ``chain`` from ``start`` as a list."""
        return list(self.iter_chain(chain, start))

    def chains(self) -> list[str]:
        """All chains (member ids) held."""
        rows = self._q("SELECT DISTINCT chain FROM entries ORDER BY chain")
        return [str(r[0]) for r in rows]

    def entry_count(self, chain: str | None = None) -> int:
        """Number of stored entries (of one chain, or all)."""
        if chain is None:
            row = self._q("SELECT COUNT(*) FROM entries").fetchone()
        else:
            row = self._q("SELECT COUNT(*) FROM entries WHERE chain = ?", (chain,)).fetchone()
        return int(row[0])

    def stored_bytes(self) -> int:
        """Bytes of entry data (signed bytes + signature + hash) stored."""
        row = self._q(
            "SELECT COALESCE(SUM(LENGTH(signed) + LENGTH(sig) + LENGTH(hash)), 0) FROM entries"
        ).fetchone()
        return int(row[0])

    def file_bytes(self) -> int:
        """Size of the database file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            candidate = Path(str(self.path) + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total

    # --- the one write path ---

    def commit_slot(
        self,
        *,
        entries: Sequence[tuple[str, ChainEntry]] = (),
        records: Sequence[StoredRecord] = (),
        accounts: Mapping[str, Account] | None = None,
        evidence: Sequence[Evidence] = (),
        proofs: Sequence[StoredProof] = (),
        meta: Mapping[str, str] | None = None,
    ) -> None:
        """Write one slot atomically: all of it, or (on any error) none of it.

        ``entries`` are ``(chain, entry)`` pairs; each must extend its chain's stored
        head (``ChainConflictError`` otherwise). ``accounts`` replaces the stored rows of
        the accounts given. Returns after the commit is durable (fsync'ed).
        """
        heads = dict(self._heads)
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            rows = []
            for chain, entry in entries:
                head = self._head(chain)
                self._check_link(chain, entry, head)
                self._heads[chain] = (entry.seq, entry.hash)
                rows.append(
                    (chain, entry.seq, entry.hash, entry.ts_ms, entry.kind, entry.signed, entry.sig)
                )
            db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?)",
                [(r.record_id, r.kind, r.ts_ms, canonical_bytes(r.body)) for r in records],
            )
            if accounts:
                db.executemany(
                    "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            name,
                            a.balance,
                            a.tally.clean_bought_wh,
                            a.tally.clean_sold_wh,
                            a.tally.other_bought_wh,
                            a.tally.other_sold_wh,
                            a.settled,
                        )
                        for name, a in accounts.items()
                    ],
                )
            db.executemany(
                "INSERT INTO evidence VALUES (?, ?, ?, ?, ?)",
                [(e.subject, e.kind.value, e.ts_ms, e.expected, e.achieved) for e in evidence],
            )
            db.executemany(
                "INSERT OR IGNORE INTO proofs VALUES (?, ?, ?, ?, ?)",
                [(p.proof_id, p.member, p.kind, p.ts_ms, canonical_bytes(p.body)) for p in proofs],
            )
            if meta:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
            db.execute("COMMIT")
        except BaseException as err:
            self._heads = heads
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise LedgerDBError(f"ledger commit failed: {err}") from err
            raise

    def _check_link(self, chain: str, entry: ChainEntry, head: tuple[int, bytes] | None) -> None:
        if head is None:
            if entry.seq != 0 or entry.prev != "":
                raise ChainConflictError(f"chain {chain[:8]} must start with its genesis")
            return
        seq, digest = head
        if entry.seq <= seq:
            stored = self.entry(chain, entry.seq)
            if stored is not None and stored.hash == entry.hash:
                raise ChainConflictError("entry already stored", stored)
            raise ChainConflictError(f"entry {entry.seq} conflicts with a stored entry", stored)
        if entry.seq != seq + 1 or entry.prev != digest.hex():
            raise ChainConflictError(f"entry {entry.seq} does not extend head {seq}")

    # --- reads for restore and export ---

    def accounts(self) -> dict[str, Account]:
        """Every stored account."""
        rows = self._q(
            "SELECT account, balance, clean_bought_wh, clean_sold_wh, other_bought_wh,"
            " other_sold_wh, settled FROM accounts ORDER BY account"
        )
        return {
            str(r[0]): Account(
                int(r[1]), Tally(int(r[2]), int(r[3]), int(r[4]), int(r[5])), int(r[6])
            )
            for r in rows
        }

    def records(self, kind: str | None = None, since_ms: int = 0) -> list[StoredRecord]:
        """Accepted credit records, oldest first."""
        rows = self._records_where("id, kind, ts, body", "ts >= ?", since_ms, kind, "ts, id")
        return [_record(r) for r in rows]

    def records_after(self, kind: str | None, after_row: int) -> list[tuple[int, StoredRecord]]:
        """Accepted credit records stored after row ``after_row`` (0: all of them), in the
        order they were stored, each with its row number. A reader that keeps the last row
        it read finds every record stored since, however old its time (a record of an old
        trade learnt by reconciling)."""
        rows = self._records_where(
            "rowid, id, kind, ts, body", "rowid > ?", after_row, kind, "rowid"
        )
        return [(int(r[0]), _record(r[1:])) for r in rows]

    def _records_where(
        self, columns: str, where: str, bound: int, kind: str | None, order: str
    ) -> list[Any]:
        """Rows of the records table matching ``where`` (one bound parameter) and, when
        given, ``kind``; the column, condition and order texts are this module's own."""
        query = f"SELECT {columns} FROM records WHERE {where}"  # noqa: S608
        params: list[Any] = [bound]
        if kind is not None:
            query += " AND kind = ?"
            params.append(kind)
        return self._q(query + f" ORDER BY {order}", params).fetchall()

    def records_applied(self, since_ms: int, limit: int) -> list[StoredRecord]:
        """The newest ``limit`` accepted credit records from ``since_ms`` on, in the order
        they were applied (insertion order: what a ledger replaying them needs)."""
        rows = self._q(
            "SELECT id, kind, ts, body FROM records WHERE ts >= ? ORDER BY rowid DESC LIMIT ?",
            (since_ms, limit),
        ).fetchall()
        return [_record(r) for r in reversed(rows)]

    def record_count(self) -> int:
        """Number of accepted credit records."""
        return int(self._q("SELECT COUNT(*) FROM records").fetchone()[0])

    def proof_count(self) -> int:
        """Number of stored fork and rollback proofs."""
        return int(self._q("SELECT COUNT(*) FROM proofs").fetchone()[0])

    def has_record(self, record_id: str) -> bool:
        """True if a record with this id was accepted."""
        row = self._q("SELECT 1 FROM records WHERE id = ?", (record_id,)).fetchone()
        return row is not None

    def evidence(self, since_ms: int = 0) -> list[Evidence]:
        """Stored reputation evidence, oldest first."""
        rows = self._q(
            "SELECT subject, kind, ts, expected, achieved FROM evidence WHERE ts >= ? ORDER BY ts",
            (since_ms,),
        )
        return [
            Evidence(str(r[0]), EvidenceKind(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows
        ]

    def proofs(self) -> list[StoredProof]:
        """Stored fork and rollback proofs."""
        rows = self._q("SELECT id, member, kind, ts, body FROM proofs ORDER BY ts")
        return [
            StoredProof(str(r[0]), str(r[1]), str(r[2]), int(r[3]), _object(bytes(r[4])))
            for r in rows
        ]


def _object(raw: bytes) -> dict[str, Any]:
    value = decode(raw)
    if not isinstance(value, dict):  # pragma: no cover - we only ever store objects
        raise LedgerDBError("stored body is not an object")
    return value


def _record(row: Sequence[Any]) -> StoredRecord:
    return StoredRecord(str(row[0]), str(row[1]), int(row[2]), _object(bytes(row[3])))
