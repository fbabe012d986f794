"""The values agents and the planner exchange with the home: asset bids and allocations,
the owner's policy, the price outlook and the horizon.

Energy is Wh, power W, prices minor units per kWh, all integers.

Public API: :class:`AssetKind`, :class:`PriceOutlook`, :class:`OwnerPolicy`,
:class:`Horizon`, :class:`AssetBid`, :class:`AssetAllocation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from math import isqrt

from ..market.orders import Priority, Reason, Side, Step

SECONDS_PER_HOUR = 3600


class AssetKind(StrEnum):
    """The kinds of asset an agent exists for."""

    PV = "pv"
    BATTERY = "battery"
    EV = "ev"
    PLUG = "plug"
    BASE_LOAD = "base_load"


@dataclass(frozen=True, slots=True)
class PriceOutlook:
    """Grid prices and the expected community price for each slot of the horizon.

    ``import_price`` and ``feed_in_tariff`` are the current slot's grid prices;
    ``import_prices`` and ``feed_in_tariffs`` optionally give the known grid prices of the
    coming slots (a dynamic tariff's published day-ahead prices), slot ``k`` at index ``k``.
    """

    import_price: int
    feed_in_tariff: int
    expected: tuple[int, ...]
    import_prices: tuple[int, ...] = ()
    feed_in_tariffs: tuple[int, ...] = ()

    @property
    def mean(self) -> int:
        """Mean expected price, floored (import price when nothing is expected)."""
        if not self.expected:
            return self.import_price
        return sum(self.expected) // len(self.expected)

    @property
    def spread(self) -> int:
        """Integer standard deviation of the expected prices."""
        if not self.expected:
            return 0
        m = self.mean
        return isqrt(sum((p - m) ** 2 for p in self.expected) // len(self.expected))

    def at(self, k: int) -> int:
        """Expected price of slot ``k`` of the horizon (the mean beyond the forecast)."""
        return self.expected[k] if k < len(self.expected) else self.mean

    def import_at(self, k: int) -> int:
        """Import price of slot ``k``: the known (e.g. day-ahead) price, else the current one."""
        return self.import_prices[k] if k < len(self.import_prices) else self.import_price

    def feed_in_at(self, k: int) -> int:
        """Feed-in tariff of slot ``k``: the known one, else the current one."""
        return self.feed_in_tariffs[k] if k < len(self.feed_in_tariffs) else self.feed_in_tariff


@dataclass(frozen=True, slots=True)
class OwnerPolicy:
    """The owner's choices that every agent of the home respects."""

    clean_only: bool = False
    max_buy_price: int | None = None
    min_sell_price: int | None = None
    peak_margin_pct: int = 20
    priority: Priority = Priority.HOUSEHOLD
    # How much of a trade's expected gain the home risks on a forecast miss, in percent
    # (the graded uncertainty margin, see ``netting.graded_margin``).
    sale_risk_pct: int = 5


@dataclass(frozen=True, slots=True)
class Horizon:
    """The coming slots to bid for (slot starts, ascending) and the slot length."""

    slots: tuple[int, ...]
    slot_seconds: int = 900

    def energy(self, power_w: int) -> int:
        """Energy in Wh that ``power_w`` delivers in one slot."""
        return power_w * self.slot_seconds // SECONDS_PER_HOUR


@dataclass(frozen=True, slots=True)
class AssetBid:
    """One asset's bid or offer for one slot, with its reason."""

    asset_id: str
    kind: AssetKind
    slot_start: int
    side: Side
    steps: tuple[Step, ...]
    reason: Reason
    clean: bool = False

    @property
    def energy_wh(self) -> int:
        """Total energy of the steps."""
        return sum(s.energy_wh for s in self.steps)


@dataclass(frozen=True, slots=True)
class AssetAllocation:
    """What one asset does in a slot: ``energy_wh`` > 0 consumes, < 0 produces.

    ``market_wh`` came from (or went to) other members, ``internal_wh`` from (or to) other
    assets of the same home, ``grid_wh`` from (or to) the grid.
    """

    asset_id: str
    slot_start: int
    energy_wh: int
    market_wh: int
    internal_wh: int
    grid_wh: int
    reason: Reason
