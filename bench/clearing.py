"""Median clearing time for one slot of 100, 1k, 10k and 100k orders.

Run: .venv/bin/python bench/clearing.py            (add --quick for fewer repeats)

Books are random but seeded (reproducible): half buyers, half sellers, one to three steps
per order, prices 1..45 minor units per kWh, energies 1..5000 Wh, 30 % clean sellers, 20 %
clean-only buyers, 200 members. Timing covers ``clear_slot`` on already validated orders.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import random
import statistics
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.peer_energy.core.clearing import clear_slot  # noqa: E402
from custom_components.peer_energy.core.orders import (  # noqa: E402
    MarketRules,
    Order,
    Side,
    Step,
)

SLOT = 1_800_000_000 - 1_800_000_000 % 900
RULES = MarketRules(import_price=40, feed_in_tariff=6, distributor_fee=1)


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


def median_ms(n: int, repeats: int) -> float:
    """Median wall time of clearing a book of ``n`` orders, in milliseconds."""
    book = make_book(n)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        clear_slot(book, RULES, slot_start=SLOT)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    sizes = [(100, 51), (1_000, 31), (10_000, 21), (100_000, 5)]
    previous = None
    print(f"{'orders':>8} {'median ms':>10} {'growth':>8}  (n log n predicts x{10 * 1.2:.1f}-x13)")
    for n, repeats in sizes:
        ms = median_ms(n, 3 if args.quick else repeats)
        growth = f"x{ms / previous:.1f}" if previous else ""
        print(f"{n:>8} {ms:>10.2f} {growth:>8}")
        previous = ms
    target = median_ms(10_000, 3 if args.quick else 21)
    print(f"target 10k orders <= 20 ms median: {'met' if target <= 20 else 'NOT met'} ({target:.2f} ms)")


if __name__ == "__main__":
    main()
