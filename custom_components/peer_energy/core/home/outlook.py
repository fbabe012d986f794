"""The community outlook: what a home expects coming slots to clear at, from how the same
slots cleared on the last days.

The planner values two things with it (``plan_home(expected_price=..., expected_sale_price=...)``):
a later purchase from the neighbours (an EV or a plug may wait for it) and a later sale to
them (a battery may keep its energy for it, the PV surplus may go to them). Each is taken
from the same time of day on the last :data:`OUTLOOK_DAYS` days that have cleared, on the
safe side: a purchase at the dearest of those prices, a sale at the cheapest. The home then
counts on the community only as far as every one of those days bore it out.

Why not simply yesterday's price: in a week of changing weather yesterday is often the
wrong day. After a dull day every midday slot cleared at the import price, and on a sunny
day the batteries then charged from the grid an hour before the neighbours' PV surplus
arrived, planning to sell their own surplus at the import price, which went to the grid at
the feed-in tariff instead; after a sunny day the plugs waited for midday energy at the
feed-in tariff that did not come (measured in ``docs/performance.md``).

Values are whatever the caller keeps per slot (prices in minor units, or the simulator's
place of the price within the slot's grid band); slots are Unix seconds.

Public API: :data:`OUTLOOK_DAYS`, :func:`same_slot_outlook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["OUTLOOK_DAYS", "same_slot_outlook"]

SECONDS_PER_DAY = 86_400
# How many earlier days of the same slot the outlook weighs.
OUTLOOK_DAYS = 2

V = TypeVar("V", int, float)


def same_slot_outlook(
    past: Mapping[int, V],
    first: int,
    count: int,
    step: int,
    *,
    days: int = OUTLOOK_DAYS,
    day: int = SECONDS_PER_DAY,
) -> tuple[list[V | None], list[V | None]]:
    """The (purchase, sale) outlook of the ``count`` slots from ``first`` (every ``step`` s).

    For slot ``s`` it looks up ``past`` at ``s - d * day`` for the ``days`` smallest ``d``
    whose slot lies before ``first`` (has cleared); the purchase outlook is the largest of
    the values found, the sale outlook the smallest, both None where none is known.
    """
    buy: list[V | None] = []
    sale: list[V | None] = []
    for k in range(max(count, 0)):
        slot = first + k * step
        d = max(1, -(-(slot - first + 1) // day))  # the first day back that has cleared
        seen = [past[s] for s in (slot - (d + j) * day for j in range(max(days, 1))) if s in past]
        buy.append(max(seen) if seen else None)
        sale.append(min(seen) if seen else None)
    return buy, sale
