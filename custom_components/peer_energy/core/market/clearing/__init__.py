"""Slot clearing: a welfare-maximising double auction with clean-only buyers.

Every peer runs :func:`clear_book` (or :func:`clear_slot`) on the same validated orders and
gets bit-identical results, whatever the order of the input: every sort uses explicit keys
down to the order id, and all arithmetic is on integers. ``docs/market.md`` explains the
mechanism; the short version:

1. *Effective prices.* The grid is buyer and seller of last resort, so a buy step's limit is
   capped at the import price and reduced by the distributor fee (the buyer pays the fee on
   top of the price), and a sell step's limit is raised to the feed-in tariff. Nobody pays more
   than the import price or receives less than the feed-in tariff.
2. *Allocation.* Each step is a unit. Clean-only buyers may take only clean supply. The
   allocation maximises traded surplus under that constraint: if some surplus-maximising
   allocation of the merged market (everyone with everyone) can serve clean-only demand from
   clean supply, it is used with a single price; otherwise the optimum separates into a clean
   market (clean-only buyers, clean sellers) and a general market (other buyers, other
   sellers), each cleared on its own, with a clean price >= the general price. (By concavity
   the constrained optimum lies on the boundary "clean-only volume == clean volume" whenever
   the relaxed optimum violates it; on that boundary the two markets decouple.)
   Among surplus-maximising allocations the largest volume is chosen.
3. *Price.* A pool clearing ``Q`` Wh has the competitive price interval
   ``[max(a_Q, b_Q+1), min(b_Q, a_Q+1)]`` (``b_k``/``a_k``: effective bid/ask of the k-th
   unit in merit order); the price is its midpoint rounded down (towards minus infinity).
4. *Rationing.* Steps strictly better than the price are filled completely; steps exactly at
   the price share what is left pro rata (clean supply and indifferent demand first in the
   merged market, which keeps clean-only buyers served), with leftovers settled by
   :class:`~.fairness.Divider`.
5. *Scarcity* (grid unavailable, or the import capacity would be exceeded): the same volume
   goes to the buyers willing to pay the price by priority class instead of by bid
   (:func:`.scarcity.priority_split`).
6. *Fair share*: with ``V`` the uncapped cleared volume, no seller owner may offer more than
   ``max(V * fair_share_bp // 10000, V - what all others offer at acceptable asks)``; its
   dearest steps are cut and the slot is cleared again (others take over, at their prices).
7. *Fills* pair buyer steps with seller steps: preferred partners first, then merit order.
   Pay-as-clear fills are at the pool price, pay-as-bid fills at the buyer's effective bid.
   The buyer pays ``energy x (price + fee)``, the seller receives ``energy x price``.
8. *Grid residuals*: unfilled buy steps at or above the import price import from the grid,
   unsold sell steps at or below the feed-in tariff export, within the capacities; the rest is
   reported as unserved or curtailed.

Public API: :func:`clear_book`, :func:`clear_slot`, :class:`Fill`,
:class:`OrderResult`, :class:`MemberResult`, :class:`SlotResult`, :class:`ClearingResult`.
"""

from .clear import clear_book, clear_slot
from .results import ClearingResult, Fill, MemberResult, OrderResult, SlotResult

__all__ = [
    "ClearingResult",
    "Fill",
    "MemberResult",
    "OrderResult",
    "SlotResult",
    "clear_book",
    "clear_slot",
]
