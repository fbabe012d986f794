"""Ledger benchmark: append rate, home-year verify time, bytes per entry.

Run from the repository root:

    .venv/bin/python bench/ledger.py            # full home-year (about a minute)
    .venv/bin/python bench/ledger.py --slots 3000   # quicker, smaller chain

A home-year is 35,040 fifteen-minute slots; in every slot the home records one order
entry and one countersigned trade entry (its chain grows by two entries per slot).
Targets (issue 4): append >= 5,000 entries/s; verify the home-year in <= 2 s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
import statistics
import sys
import tempfile
import time

# Import the engine as top-level ``core`` so Home Assistant is not imported.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "custom_components" / "peer_energy"))

from core.chain import VerifyMode, genesis_entry, next_entry, verify_chain
from core.credit import (
    CreditLedger,
    CreditPolicy,
    SignedTrade,
    sign_trade,
    trade_entry_checker,
)
from core.home_ledger import HomeLedger
from core.identity import Identity
from core.ledger_db import LedgerDB

SLOT_MS = 900_000
START_MS = 1_800_000_000_000
YEAR_SLOTS = 35_040
REPEATS = 3


def ident(name: str) -> Identity:
    return Identity(hashlib.sha256(name.encode()).digest())


HOME, PEER = ident("bench-home"), ident("bench-peer")


def build_year(slots: int) -> list:  # type: ignore[type-arg]
    """The home's chain for ``slots`` slots: an order and a countersigned trade each."""
    credit = CreditLedger("bench", policy=CreditPolicy(base_limit=10**12))
    head = genesis_entry(HOME, START_MS, "bench")
    chain = [head]
    for slot in range(1, slots + 1):
        ts = START_MS + slot * SLOT_MS
        head = next_entry(HOME, head, ts, "order", {"slot": slot, "side": "sell", "wh": 500})
        chain.append(head)
        buyer, seller = (PEER, HOME) if slot % 3 else (HOME, PEER)
        terms, _ = credit.propose_trade(
            slot=ts // 1000,
            buyer=buyer.public_key,
            seller=seller.public_key,
            energy_wh=200 + slot % 300,
            price=18 + slot % 9,
            fee=1,
            clean=slot % 2 == 0,
            buyer_prev=head.hash_hex if buyer is HOME else "",
            seller_prev=head.hash_hex if seller is HOME else "",
        )
        assert terms is not None
        trade = SignedTrade(terms, sign_trade(terms, buyer), sign_trade(terms, seller))
        assert credit.apply_trade(trade).ok
        head = next_entry(HOME, head, ts, "trade", trade.to_dict())
        chain.append(head)
    return chain


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s ({count:,} in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=YEAR_SLOTS)
    parser.add_argument("--append-slots", type=int, default=1000)
    args = parser.parse_args()

    print(f"Building a chain of {args.slots:,} slots (order + countersigned trade each)...")
    t = time.perf_counter()
    chain = build_year(args.slots)
    built = time.perf_counter() - t
    print(f"  built {len(chain):,} entries in {built:.1f} s (includes 3 signatures per slot)")
    print(f"  machine load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory() as tmp:
        # 1. Append rate, durable (synchronous=FULL), one transaction per slot.
        # Best and median of REPEATS runs: the disk is shared, fsync times vary.
        print(f"\nAppend rate, best (median) of {REPEATS} runs; entries signed, hash-linked")
        print("and committed durably (synchronous=FULL), one transaction per slot:")
        ledger = HomeLedger.open(Path(tmp) / "append.sqlite", HOME, "bench", now_ms=START_MS)
        next_slot = 0
        for per_slot in (1, 4, 16):
            n = max(1, args.append_slots // per_slot)
            rates = []
            cpu_rates = []
            for _ in range(REPEATS):
                t = time.perf_counter()
                c = time.process_time()
                for _slot in range(n):
                    next_slot += 1
                    ledger.commit_slot(
                        START_MS + next_slot * SLOT_MS,
                        entries=[("order", {"slot": next_slot, "i": i}) for i in range(per_slot)],
                    )
                rates.append(n * per_slot / (time.perf_counter() - t))
                cpu_rates.append(n * per_slot / max(time.process_time() - c, 1e-9))
            label = f"  {per_slot:>2} entries per slot:"
            print(
                f"{label:<30} {max(rates):>8,.0f}/s ({statistics.median(rates):,.0f}/s median);"
                f" CPU-bound limit {max(cpu_rates):,.0f}/s"
            )
        ledger.close()

        # Chain append in memory only (signing + canonical encoding + hashing).
        head = chain[0]
        n = 20_000
        t = time.perf_counter()
        for i in range(n):
            head = next_entry(HOME, head, START_MS, "order", {"slot": i, "wh": 500})
        print(f"  {'in memory (sign + hash, no disk):':<36} {rate(n, time.perf_counter() - t)}")

        # Bulk store of the whole year (e.g. restoring or importing a chain copy).
        db = LedgerDB(Path(tmp) / "year.sqlite")
        member = HOME.public_key
        t = time.perf_counter()
        for start in range(0, len(chain), 5000):
            db.commit_slot(entries=[(member, e) for e in chain[start : start + 5000]])
        seconds = time.perf_counter() - t
        print(f"  {'bulk store, 5,000 per transaction:':<36} {rate(len(chain), seconds)}")

        # 2. Verify the home-year.
        print(f"\nFull-chain verify of {len(chain):,} entries ({args.slots:,} slots):")
        for mode in (VerifyMode.LINKS, VerifyMode.AUTHOR):
            times = []
            cpu = []
            for _ in range(REPEATS):
                t = time.perf_counter()
                c = time.process_time()
                report = verify_chain(db.iter_chain(member), mode=mode, member=member)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
                assert report.ok, report.reason
            print(
                f"  {mode.value:<7} from SQLite (read + parse + verify): "
                f"{min(times):.2f} s ({statistics.median(times):.2f} s median,"
                f" {min(cpu):.2f} s CPU)"
            )
        t = time.perf_counter()
        report = verify_chain(chain, mode=VerifyMode.AUTHOR, member=member)
        seconds = time.perf_counter() - t
        assert report.ok
        print(f"  author  in memory (already parsed):           {seconds:.2f} s")
        t = time.perf_counter()
        c = time.process_time()
        report = verify_chain(
            db.iter_chain(member),
            mode=VerifyMode.FULL,
            member=member,
            entry_check=trade_entry_checker(),
        )
        seconds = time.perf_counter() - t
        assert report.ok, report.reason
        print(
            f"  full    from SQLite (every signature and countersignature): {seconds:.2f} s"
            f" ({time.process_time() - c:.2f} s CPU)"
        )

        # 3. Bytes per entry.
        count = db.entry_count()
        print("\nBytes per entry:")
        print(f"  signed bytes + signature + hash: {db.stored_bytes() / count:,.0f}")
        db._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"  SQLite file (with indexes):      {db.file_bytes() / count:,.0f}")
        order = chain[1]
        trade = chain[2]
        print(
            f"  order entry: {len(order.signed) + 64 + 32} B, trade entry: "
            f"{len(trade.signed) + 64 + 32} B"
        )
        db.close()


if __name__ == "__main__":
    main()
