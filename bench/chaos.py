"""Chaos with real processes: 100 SIGKILLs and 100 entry reloads of three real Home
Assistant homes at random points of 10-second slots; prints the figures. The seller
delivers 30 of every 50 Wh it sells, so every delivery settlement moves money.

    .venv/bin/python bench/chaos.py [--kills 100] [--reloads 100] [--seed 1] [--keep]

Takes about an hour (each event waits a random part of a slot, then until every ledger
agrees). The homes run in a temporary directory on 127.0.0.1, removed at the end unless
``--keep`` (or the run stops on an error): their logs and ledgers stay there to read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.real import chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--reloads", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the homes' folder")
    args = parser.parse_args()
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="peer_energy_chaos_"))
    print(f"homes in {base}", file=sys.stderr)
    homes = chaos.start_community(base)
    try:
        figures = chaos.run(homes, kills=args.kills, reloads=args.reloads, seed=args.seed)
    finally:
        chaos.stop(homes)
    problems = chaos.verify_chains(homes)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    summary = figures.summary()
    summary["chains_not_verifying"] = len(problems)
    summary["minutes"] = round((time.monotonic() - started) / 60, 1)
    print(json.dumps(summary, indent=1))
    for failure in figures.failures + problems:
        print("FAILED:", failure)
    return 1 if figures.failures or problems or figures.equivocations or figures.lost else 0


if __name__ == "__main__":
    sys.exit(main())
