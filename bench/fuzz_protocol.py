"""Fuzz the federation protocol with generated messages and print what happened.

Run: .venv/bin/python bench/fuzz_protocol.py [--messages 100000] [--seed 0]

The messages come from ``tests/federation/fuzzer.py``: structure-aware mutations of every
kind of valid message (signed again by the member, or left with the old signature), byte
damage, garbage and joins from strangers, against the peers of a small community that has
just run a slot with trades and deliveries (a new community every 2,000 messages; one round
in five the target is a home still joining). Exit code 1 if anything crashed (an exception
from ``Peer.receive`` or ``Peer.tick``), a forgery was accepted, or a stranger left state.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.federation.fuzzer import FuzzReport, run


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()

    def progress(report: FuzzReport) -> None:
        if report.rounds % 10 == 0:
            print(f"  {report.messages} messages, {report.crashes} crashes", file=sys.stderr)

    report = run(args.messages, seed=args.seed, progress=progress)
    elapsed = time.perf_counter() - start
    print(f"messages: {report.messages} in {report.rounds} rounds, {elapsed:.1f} s")
    print("generated: " + ", ".join(f"{k} {v}" for k, v in report.kinds.most_common()))
    print(f"accepted without refusal: {report.accepted}")
    print("  by type: " + ", ".join(f"{k} {v}" for k, v in report.accepted_types.most_common()))
    print("refusals: " + ", ".join(f"{k} {v}" for k, v in report.codes.most_common()))
    print(f"crashes (exceptions): {report.crashes}")
    for trace in report.crash_traces:
        print(trace)
    print(f"accepted forgeries: {len(report.forgeries)}")
    for forgery in report.forgeries[:10]:
        print("  " + forgery)
    print(f"strangers' replay-guard entries: {report.stranger_guard_entries}")
    rss, blocks = report.rss_kib, report.blocks
    if len(rss) > 1:
        print(
            f"Python heap (allocated blocks) after round 1: {blocks[0]}, after the last: "
            f"{blocks[-1]} ({(blocks[-1] - blocks[0]) / blocks[0]:+.1%}); resident memory "
            f"{rss[0]} KiB -> {rss[-1]} KiB"
        )
    failed = report.crashes or report.forgeries or report.stranger_guard_entries
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
