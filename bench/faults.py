"""Fault figures of the federation protocol over the in-memory network: a member's clock
off by up to and beyond the allowed skew (30 s), a partition that splits the community and
heals, and a member down for a whole day.

Run: .venv/bin/python bench/faults.py            (--quick: skip the day of 1-minute slots)

Scenarios are in ``tests/federation/faults.py`` (``test_faults.py`` checks them in small).
Columns: slots run; the most slots any honest home declared void at their deadline, and
the most it still had no result for at the end; for the faulty home the same two counts;
the most results any home adopted late; slots on which two homes hold different results;
slots whose final book holds the faulty home's bid; the time from the end of the fault
until every home held every result that exists (virtual time); results never recovered.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.federation.faults import clock_skew, day_rules, describe, member_down, partition


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the slowest scenario")
    args = parser.parse_args()
    rows = []
    start = time.perf_counter()
    for ahead in (10_000, 25_000, 30_000, 31_000, 60_000, -25_000, -30_000, -31_000):
        rows.append((describe(clock_skew(ahead, slots=10), "p4"), "5 homes, 1-min slots"))
    for groups in ((3, 3), (4, 2)):
        rows.append((describe(partition(groups, split_slots=8)), "6 homes, 8 slots split"))
    rows.append((describe(member_down(24), "p4"), "5 homes, 15-min slots"))
    if not args.quick:
        down = member_down(24, rules=day_rules(60))
        rows.append((describe(down, "p4"), "5 homes, 1-min slots"))
    keys = list(rows[0][0])
    widths = [max(len(k), *(len(str(r[k])) for r, _ in rows)) for k in keys]
    print("  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True)) + "  setting")
    for row, setting in rows:
        cells = (str(row[k]).rjust(w) for k, w in zip(keys, widths, strict=True))
        print("  ".join(cells) + f"  {setting}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
