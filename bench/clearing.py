"""Median clearing time for one slot of 100, 1k, 10k and 100k orders, and the growth.

Run: .venv/bin/python bench/clearing.py            (--quick: fewer repeats)

Books are random but seeded (reproducible): half buyers, half sellers, one to three steps
per order, prices 1..45 minor units per kWh, energies 1..5000 Wh, 30 % clean sellers, 20 %
clean-only buyers, 200 members, a distributor fee. ``clear`` times :func:`clear_slot` on
validated orders: sorting, merit order, allocation, prices, rationing, pairing, grid
residuals, fairness state. ``+results`` also builds every Fill, OrderResult and MemberResult
object (they are otherwise built on first access). The median wall time is what the target
refers to; the best wall time and the median CPU time are printed too because the reference
machine is shared and wall time is noisy when other jobs run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import math
from pathlib import Path
import random
import statistics
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.peer_energy.core.market.clearing import clear_slot
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side, Step

SLOT = 1_800_000_000 - 1_800_000_000 % 900
RULES = MarketRules(import_price=40, feed_in_tariff=6, distributor_fee=1)
TARGET_MS = 20.0


def make_book(n: int, seed: int = 42) -> list[Order]:
    """A reproducible random book of ``n`` orders in one slot."""
    rng = random.Random(seed)
    book = []
    for k in range(n):
        buy = rng.random() < 0.5
        steps = tuple(
            Step(rng.randint(1, 45), rng.randint(1, 5000)) for _ in range(rng.randint(1, 3))
        )
        book.append(
            Order(
                order_id=f"o{k:06d}",
                owner=f"m{rng.randrange(200):03d}",
                side=Side.BUY if buy else Side.SELL,
                slot_start=SLOT,
                steps=steps,
                clean=not buy and rng.random() < 0.3,
                clean_only=buy and rng.random() < 0.2,
            )
        )
    return book


def _times(fn: Callable[[], object], repeats: int, clock: Callable[[], float]) -> list[float]:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    sizes = [(100, 101), (1_000, 51), (10_000, 31), (100_000, 7)]
    header = ("orders", "median ms", "best ms", "cpu ms", "+results", "growth", "n log n")
    print("{:>8} {:>10} {:>8} {:>8} {:>9} {:>7} {:>8}".format(*header))
    previous: tuple[int, float] | None = None
    at_10k = math.inf
    for n, repeats in sizes:
        reps = 3 if args.quick else repeats
        book = make_book(n)

        def clear(book: list[Order] = book) -> object:
            return clear_slot(book, RULES, slot_start=SLOT)

        def full(book: list[Order] = book) -> object:
            res = clear_slot(book, RULES, slot_start=SLOT)
            return res.fills, res.orders, res.members

        walls = _times(clear, reps, time.perf_counter)
        wall, best = statistics.median(walls), min(walls)
        cpu = statistics.median(_times(clear, reps, time.process_time))
        with_results = statistics.median(_times(full, reps, time.perf_counter))
        growth = predicted = ""
        if previous is not None:
            growth = f"x{wall / previous[1]:.1f}"
            predicted = f"x{n * math.log(n) / (previous[0] * math.log(previous[0])):.1f}"
        print(
            f"{n:>8} {wall:>10.2f} {best:>8.2f} {cpu:>8.2f} {with_results:>9.2f} {growth:>7} "
            f"{predicted:>8}"
        )
        previous = (n, wall)
        if n == 10_000:
            at_10k = wall
    verdict = "met" if at_10k <= TARGET_MS else "NOT met"
    print(f"target: 10k orders <= {TARGET_MS:.0f} ms median wall time: {verdict} ({at_10k:.2f} ms)")


if __name__ == "__main__":
    main()
