"""Fuzz the peer endpoints of a real Home Assistant over HTTP and print what happened.

Run: .venv/bin/python bench/fuzz_http.py [--requests 10000] [--seed 0] [--slow 8]

Starts a real Home Assistant process on 127.0.0.1 (a throw-away configuration in a temporary
folder) whose Peer Energy home founds a community, joins it from this process as a second
member through a real invitation, then sends generated requests to
``POST /api/peer_energy/v1/message`` (``tests/real/http_fuzzer.py``: structure-aware
mutations of valid signed messages, garbage, oversized bodies, bad encodings, gzip lies,
malformed HTTP, slow bodies, join floods, replays, strangers). Prints the requests, the
status histogram, 5xx answers, accepted forgeries, tracebacks and error lines in the home's
log, and the process's resident memory before and after. Exit code 1 if the oracle found
anything.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import sys
import tempfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.real.http_fuzzer import HttpFuzzReport, fuzz, start_home


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow", type=int, default=8, help="slow bodies sent alongside")
    parser.add_argument("--keep", action="store_true", help="keep the configuration folder")
    args = parser.parse_args()

    def progress(report: HttpFuzzReport) -> None:
        print(
            f"  {report.requests} requests, {len(report.server_errors)} 5xx",
            file=sys.stderr,
        )

    folder = Path(tempfile.mkdtemp(prefix="peer-energy-fuzz-"))
    print(f"Home Assistant in {folder}", file=sys.stderr)
    home = start_home(folder)
    try:
        report = asyncio.run(
            fuzz(home, args.requests, seed=args.seed, slow=args.slow, progress=progress)
        )
    finally:
        home.stop()
    for line in report.lines():
        print(line)
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
