"""Fuzz the peer endpoints of a real Home Assistant over HTTP and print what happened.

Run: .venv/bin/python bench/fuzz_http.py [--requests 10000] [--seed 0] [--slow 8]
     .venv/bin/python bench/fuzz_http.py --requests 60000 --tracemalloc
     .venv/bin/python bench/fuzz_http.py --requests 60000 --malloc

Starts a real Home Assistant process on 127.0.0.1 (a throw-away configuration in a temporary
folder) whose Peer Energy home founds a community, joins it from this process as a second
member through a real invitation, then sends generated requests to
``POST /api/peer_energy/v1/message`` (``tests/real/http_fuzzer.py``: structure-aware
mutations of valid signed messages, garbage, oversized bodies, bad encodings, gzip lies,
malformed HTTP, slow bodies, join floods, replays, strangers). Prints the requests, the
status histogram, 5xx answers, accepted forgeries, tracebacks and error lines in the home's
log, and the process's resident memory before and after, and every 5,000 requests (every
quarter of a shorter run: the curve shows whether it grows without bound or levels off).
Exit code 1 if the oracle found anything.

``--tracemalloc`` starts Home Assistant with Python's allocation tracing (``tracemalloc``,
16 frames per allocation; it makes Home Assistant several times slower) and a bench-only
``sitecustomize`` module in a temporary folder (nothing in the integration): on ``SIGUSR1``
the process writes a snapshot of its live allocations. The bench takes one after the first
5,000 requests (when the caches and pools that fill on first use are full), one halfway and
one at the end, and prints the growth over each half by owner (what grows in both halves
grows with the requests; what grew in the first only was filling up): allocations with a frame in
``custom_components/peer_energy`` are ours, the others go to the package of their innermost
frame (``homeassistant``, ``aiohttp``, the standard library, ...), with the largest sites.

``--malloc`` (glibc only) asks the process at every sample, through the same kind of hook on
``SIGUSR2``, for what C's allocator holds (``mallinfo2``: bytes in use, bytes free but kept),
the blocks Python's allocator has out (``sys.getallocatedblocks``), the number of objects
the garbage collector tracks and pymalloc's arenas, bytes in blocks, free blocks and unused
pools (``sys._debugmallocstats``), then has it return the free memory (``malloc_trim(0)``) and
samples the resident memory again, anonymous and file-backed apart: growth that
``malloc_trim`` gives back was memory the allocator kept after short-lived buffers, growth
that stays is memory in use.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
import json
import os
from pathlib import Path
import signal
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.real.http_fuzzer import HttpFuzzReport, fuzz, rss_kib, start_home
from tests.realhome import RealHome

EVERY = 5_000  # requests between two memory samples
FRAMES = 16

SITECUSTOMIZE = """\
import os, signal, threading, tracemalloc
_folder = os.environ["PEER_ENERGY_BENCH_SNAPSHOTS"]
_taken = [0]
def _dump(path):
    tracemalloc.take_snapshot().dump(path + ".part")
    os.replace(path + ".part", path)
def _snapshot(signum, frame):  # off the event loop: a file write there would be flagged
    _taken[0] += 1
    path = os.path.join(_folder, f"snapshot-{_taken[0]}.pickle")
    threading.Thread(target=_dump, args=(path,), daemon=True).start()
if tracemalloc.is_tracing():
    signal.signal(signal.SIGUSR1, _snapshot)
"""

MALLOC_HOOK = """\
import ctypes, gc, json, os, signal, sys, threading
_folder = os.environ["PEER_ENERGY_BENCH_SNAPSHOTS"]
_libc = ctypes.CDLL("libc.so.6")
class _Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
_libc.mallinfo2.restype = _Info
_taken = [0]
def _pymalloc():
    # sys._debugmallocstats writes to C's stderr: catch it in a file for a moment.
    import tempfile
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    stats = {}
    for line in text.splitlines():
        name, _, value = line.rpartition("=")
        if name.strip() and value.strip().replace(",", "").isdigit():
            key = name.strip().lstrip("#").strip()
            if "unused pools" in key:
                key = "bytes in unused pools"
            stats[key] = int(value.strip().replace(",", ""))
    return stats
def _report(path):
    info = _libc.mallinfo2()
    py = _pymalloc()
    data = {"in_use": info.uordblks + info.hblkhd, "free_kept": info.fordblks,
            "mmapped": info.hblkhd, "arena": info.arena, "python_blocks": sys.getallocatedblocks(),
            "gc_objects": len(gc.get_objects()),
            "py_arenas": py.get("arenas allocated current", -1),
            "py_allocated_blocks_bytes": py.get("bytes in allocated blocks", -1),
            "py_available_blocks_bytes": py.get("bytes in available blocks", -1),
            "py_unused_pools_bytes": py.get("bytes in unused pools", -1)}
    _libc.malloc_trim(0)
    with open(path + ".part", "w") as out:
        json.dump(data, out)
    os.replace(path + ".part", path)
def _malloc(signum, frame):  # off the event loop
    _taken[0] += 1
    path = os.path.join(_folder, f"malloc-{_taken[0]}.json")
    threading.Thread(target=_report, args=(path,), daemon=True).start()
signal.signal(signal.SIGUSR2, _malloc)
"""


def owner(frames: tracemalloc.Traceback) -> str:
    """Who allocated: ours if any frame is in the integration, else the innermost package
    (a traceback lists its frames from the oldest to the most recent)."""
    for frame in frames:
        if "custom_components/peer_energy" in frame.filename:
            return "peer_energy (ours)"
    path = frames[-1].filename
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/lib/python3" in path:
        return "python stdlib"
    return path


def site(frames: tracemalloc.Traceback) -> str:
    """The innermost frame, and the first frame of ours if there is one."""
    inner = frames[-1]
    text = f"{_short(inner.filename)}:{inner.lineno}"
    for frame in reversed(frames):
        if "custom_components/peer_energy" in frame.filename and frame is not inner:
            return f"{text} (from {_short(frame.filename)}:{frame.lineno})"
    return text


def _short(path: str) -> str:
    for marker in ("site-packages/", "custom_components/", "/lib/python3.13/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _database_kib(folder: Path) -> int:
    """Size of the recorder's SQLite database and its write-ahead log, in KiB."""
    files = (folder / name for name in ("home-assistant_v2.db", "home-assistant_v2.db-wal"))
    return sum(f.stat().st_size for f in files if f.exists()) // 1024


def _wait_for(path: Path, timeout: float = 300.0) -> tracemalloc.Snapshot:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no snapshot {path.name}")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(str(path))


def _allocator(folder: Path, k: int, requests: int, home: RealHome) -> str:
    """The allocator figures the hook wrote for sample ``k``, with the resident memory
    after its ``malloc_trim``."""
    path = folder / f"malloc-{k}.json"
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            return f"{requests}: no allocator figures"
        time.sleep(0.05)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert home.process is not None
    trimmed = rss_kib(home.process.pid)
    kinds = rss_kinds_kib(home.process.pid)
    mib = 2**20
    return (
        f"{requests}: malloc in use {data['in_use'] / mib:.1f} MiB "
        f"(mmapped {data['mmapped'] / mib:.1f}), free but kept {data['free_kept'] / mib:.1f} "
        f"MiB, Python blocks {data['python_blocks']}, gc objects {data['gc_objects']}; "
        f"pymalloc: {data['py_arenas']} arenas, in blocks "
        f"{data['py_allocated_blocks_bytes'] / mib:.1f} MiB, free blocks "
        f"{data['py_available_blocks_bytes'] / mib:.1f} MiB, unused pools "
        f"{data['py_unused_pools_bytes'] / mib:.1f} MiB; RSS after malloc_trim "
        f"{trimmed / 1024:.1f} MiB (anonymous {kinds['RssAnon'] / 1024:.1f}, files "
        f"{kinds['RssFile'] / 1024:.1f})"
    )


def rss_kinds_kib(pid: int) -> dict[str, int]:
    """Resident memory by kind (Linux): anonymous (heaps, stacks) and file-backed (code,
    mapped files), in KiB."""
    out = {"RssAnon": 0, "RssFile": 0, "RssShmem": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name = line.split(":", 1)[0]
        if name in out:
            out[name] = int(line.split()[1])
    return out


def growth_by_owner(first: tracemalloc.Snapshot, last: tracemalloc.Snapshot) -> list[str]:
    """The growth between two snapshots, summed by owner, and the largest sites."""
    diffs = last.compare_to(first, "traceback")
    by_owner: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    by_site: Counter[str] = Counter()
    for diff in diffs:
        who = owner(diff.traceback)
        by_owner[who] += diff.size_diff
        blocks[who] += diff.count_diff
        by_site[f"{who}: {site(diff.traceback)}"] += diff.size_diff
    total = sum(by_owner.values())
    lines = [f"traced heap growth between the snapshots: {total / 1024:+.1f} KiB, by owner:"]
    for who, size in sorted(by_owner.items(), key=lambda kv: -abs(kv[1]))[:12]:
        lines.append(f"  {who:<28} {size / 1024:+9.1f} KiB {blocks[who]:+8d} blocks")
    lines.append("largest growing sites:")
    for where, size in by_site.most_common(12):
        lines.append(f"  {size / 1024:+9.1f} KiB  {where}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow", type=int, default=8, help="slow bodies sent alongside")
    parser.add_argument("--keep", action="store_true", help="keep the configuration folder")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace allocations in Home Assistant"
    )
    parser.add_argument(
        "--malloc",
        action="store_true",
        help="sample C's allocator in Home Assistant and trim it at every sample (glibc)",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="peer-energy-fuzz-"))
    snapshots = folder / "snapshots"
    if args.tracemalloc or args.malloc:
        hook = folder / "hook"
        hook.mkdir()
        snapshots.mkdir()
        code = (SITECUSTOMIZE if args.tracemalloc else "") + (MALLOC_HOOK if args.malloc else "")
        (hook / "sitecustomize.py").write_text(code, encoding="utf-8")
        # The harness passes this process's environment on to Home Assistant.
        path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(hook) + (os.pathsep + path if path else "")
        if args.tracemalloc:
            os.environ["PYTHONTRACEMALLOC"] = str(FRAMES)
        os.environ["PEER_ENERGY_BENCH_SNAPSHOTS"] = str(snapshots)
    print(f"Home Assistant in {folder}", file=sys.stderr)
    home = start_home(folder)
    samples: list[tuple[int, int]] = []
    allocator: list[str] = []
    database: list[int] = []
    signalled: list[int] = []
    mid = (args.requests + EVERY) // 2
    every = max(1_000, min(EVERY, args.requests // 4 // 1_000 * 1_000))
    next_at = [every]

    def progress(report: HttpFuzzReport) -> None:
        if report.requests < next_at[0]:
            return
        next_at[0] = report.requests + every
        assert home.process is not None
        samples.append((report.requests, rss_kib(home.process.pid)))
        database.append(_database_kib(folder))
        if args.tracemalloc and (not signalled or (len(signalled) == 1 and report.requests >= mid)):
            home.process.send_signal(signal.SIGUSR1)
            signalled.append(report.requests)
        print(
            f"  {report.requests} requests, {len(report.server_errors)} 5xx, "
            f"RSS {samples[-1][1] / 1024:.1f} MiB, recorder database {database[-1] / 1024:.1f} MiB",
            file=sys.stderr,
        )
        if args.malloc:
            home.process.send_signal(signal.SIGUSR2)
            allocator.append(_allocator(snapshots, len(allocator) + 1, report.requests, home))
            print(f"    {allocator[-1]}", file=sys.stderr)

    try:
        report = asyncio.run(
            fuzz(home, args.requests, seed=args.seed, slow=args.slow, progress=progress)
        )
        taken: list[tracemalloc.Snapshot] = []
        if signalled:
            assert home.process is not None
            taken = [
                _wait_for(snapshots / f"snapshot-{k}.pickle") for k in (1, 2)[: len(signalled)]
            ]
            home.process.send_signal(signal.SIGUSR1)
            taken.append(_wait_for(snapshots / f"snapshot-{len(taken) + 1}.pickle"))
            signalled.append(report.requests)
    finally:
        home.stop()
    for line in report.lines():
        print(line)
    curve = ", ".join(f"{n}: {kib / 1024:.1f}" for n, kib in samples)
    print(f"resident memory (MiB) after N requests: {curve}")
    sizes = ", ".join(
        f"{n}: {kib / 1024:.1f}" for (n, _), kib in zip(samples, database, strict=True)
    )
    print(f"recorder database with its log (MiB) after N requests: {sizes}")
    if allocator:
        print("C allocator and Python heap at each sample (then malloc_trim):")
        for line in allocator:
            print(f"  {line}")
    for k in range(len(taken) - 1):
        print(
            f"from the snapshot after {signalled[k]} requests to the one after {signalled[k + 1]}:"
        )
        for line in growth_by_owner(taken[k], taken[k + 1]):
            print(line)
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
