"""What the planner plans for, besides batteries: EV sessions and flexible plug tasks, and
the slot arithmetic they share with the planner.

Public API: :class:`EvSession`, :class:`PlugTask`, :func:`energy_wh`, :func:`flat_out_cost`,
:func:`first_slot`, :func:`last_slot`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class EvSession:
    """An EV charging session: ``energy_wh`` still needed by ``depart`` (Unix s, exclusive).

    ``arrive`` is when the car is (expected to be) plugged in: at or before the horizon's
    start for a car plugged in now. ``cost_cap`` is the most the energy still needed may cost
    at the import prices (Wh x minor units per kWh): what charging flat out from plug-in
    costs, less what the session has spent; None: what charging flat out from now costs.
    """

    asset_id: str
    depart: int
    energy_wh: int
    max_power_w: int
    arrive: int = 0
    cost_cap: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlugTask:
    """A flexible plug's task: ``energy_wh`` to run between ``earliest`` and ``deadline``
    (Unix s, exclusive end) at up to ``power_w`` (interruptible). ``cost_cap`` as for
    :class:`EvSession` (running flat out from ``earliest``)."""

    asset_id: str
    energy_wh: int
    power_w: int
    deadline: int
    earliest: int = 0
    cost_cap: int | None = None


def energy_wh(power_w: int, seconds: int) -> int:
    return max(0, power_w) * seconds // SECONDS_PER_HOUR


def flat_out_cost(prices: Iterable[int], energy: int, per_slot_wh: int) -> int:
    """What ``energy`` (Wh) costs bought flat out, ``per_slot_wh`` a slot, at the import
    ``prices`` of the slots it may use, in order (what an EV or a plug spends on its own
    logic; the base of its cost budget, ``cost_cap``)."""
    cost, left = 0, energy
    for price in prices:
        if left <= 0:
            break
        take = min(per_slot_wh, left)
        cost += take * int(price)
        left -= take
    return cost


def first_slot(moment: int, start: int, seconds: int) -> int:
    """Index of the first slot that starts at or after ``moment``."""
    return max(0, -(-(moment - start) // seconds))


def last_slot(moment: int, start: int, seconds: int) -> int:
    """Number of slots that end at or before ``moment`` (an exclusive end)."""
    return max(0, (moment - start) // seconds)
