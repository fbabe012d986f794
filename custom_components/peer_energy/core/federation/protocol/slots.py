"""One slot's state at one peer: its phase in the round, the bids and attestations held,
the books cleared, and the final result once known."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ...market.clearing import SlotResult
from ...market.fairness import FairnessState
from .book import Bid, set_root
from .outputs import FinalSlot


class SlotPhase(StrEnum):
    """Where a slot is in this peer's round (driven by ``tick``).

    ``OPEN`` -> ``SYNC`` -> ``FROZEN`` -> ``FALLBACK`` -> ``CLOSED``, one step per tick
    (a late tick that finds several due takes one and the next tick is due at once). A
    slot whose gate closure passed while the home was away is never run: it stays
    ``OPEN`` and is caught up instead.
    Finality is not a phase: a slot becomes final whenever a quorum is known (before or
    after its deadline, or from catch-up); a ``CLOSED`` slot that is not final is void.
    """

    OPEN = "open"  # bids until gate closure (or a slot the clock did not run)
    SYNC = "sync"  # gate closure passed: digest rounds
    FROZEN = "frozen"  # book frozen and cleared; our attestation sent (if on the roster)
    FALLBACK = "fallback"  # half the attestation window: the fallback was sent
    CLOSED = "closed"  # deadline passed


_NEXT: dict[SlotPhase, SlotPhase] = {
    SlotPhase.OPEN: SlotPhase.SYNC,
    SlotPhase.SYNC: SlotPhase.FROZEN,
    SlotPhase.FROZEN: SlotPhase.FALLBACK,
    SlotPhase.FALLBACK: SlotPhase.CLOSED,
}
_RUNNING = frozenset({SlotPhase.SYNC, SlotPhase.FROZEN, SlotPhase.FALLBACK})


@dataclass(slots=True)
class Attest:
    """A verified attestation record."""

    member: str
    book: str
    result: str
    env: dict[str, Any]


@dataclass(slots=True)
class SlotState:
    """One slot at this peer."""

    slot: int
    phase: SlotPhase = SlotPhase.OPEN
    rounds_done: int = 0  # digest rounds run (in ``SYNC``)
    bids: dict[str, dict[str, Bid]] = field(default_factory=dict)  # member -> id -> bid
    attests: dict[str, dict[tuple[str, str], Attest]] = field(default_factory=dict)
    equivocators: set[str] = field(default_factory=set)
    att_equivocators: set[str] = field(default_factory=set)
    heard: dict[str, frozenset[str]] = field(default_factory=dict)  # digests received
    replied: dict[str, str] = field(default_factory=dict)  # member -> our root we sent it
    my_book: str = ""
    my_result: str = ""
    books: dict[str, tuple[Bid, ...]] = field(default_factory=dict)  # book hash -> bids
    fairness: dict[str, FairnessState] = field(default_factory=dict)  # book hash -> state
    results: dict[str, SlotResult] = field(default_factory=dict)  # book hash -> result
    result_hashes: dict[str, str] = field(default_factory=dict)  # book hash -> result hash
    fetched: set[str] = field(default_factory=set)
    final: FinalSlot | None = None
    relays: tuple[str, ...] | None = None  # fixed at gate closure; () means all-to-all
    told: dict[str, str] = field(default_factory=dict)  # member -> our root we sent it
    answered: set[str] = field(default_factory=set)  # stragglers sent the quorum's records
    helper: bool | None = None  # whether we answer stragglers (relays and a few next ones)

    _ids: frozenset[str] | None = None
    _root: str = ""

    def advance(self, to: SlotPhase) -> None:
        """Move to the next phase; anything else is a bug (``RuntimeError``)."""
        if _NEXT.get(self.phase) is not to:
            raise RuntimeError(f"slot {self.slot}: no transition from {self.phase} to {to}")
        self.phase = to

    @property
    def running(self) -> bool:
        """Started by the clock and not past its deadline."""
        return self.phase in _RUNNING

    @property
    def frozen(self) -> bool:
        """The book is frozen (attestation time passed)."""
        return self.phase in {SlotPhase.FROZEN, SlotPhase.FALLBACK, SlotPhase.CLOSED}

    @property
    def void(self) -> bool:
        """The deadline passed without a known result."""
        return self.phase is SlotPhase.CLOSED and self.final is None

    def record_book(
        self, book: str, bids: tuple[Bid, ...], fair: FairnessState, res: str, result: SlotResult
    ) -> None:
        """Keep a cleared book (ours, or one fetched from a quorum)."""
        self.books[book] = bids
        self.fairness[book] = fair
        self.results[book] = result
        self.result_hashes[book] = res

    def bid_ids(self) -> frozenset[str]:
        """Ids of every bid held."""
        if self._ids is None:
            self._ids = frozenset(i for per in self.bids.values() for i in per)
        return self._ids

    def root(self) -> str:
        """``set_root`` of the bids held."""
        if not self._root:
            self._root = set_root(self.bid_ids())
        return self._root

    def add_bid(self, bid: Bid) -> dict[str, Bid]:
        """Hold ``bid``; returns the member's bids for the slot."""
        per = self.bids.setdefault(bid.member, {})
        per[bid.bid_id] = bid
        self._ids = None
        self._root = ""
        return per
