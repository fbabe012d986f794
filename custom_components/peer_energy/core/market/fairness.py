"""Fair division: the fairness state carried across slots and the integer sharing rules.

Whenever the market must split a quantity among several orders (rationing at the margin,
redistributing a fair-share cap, scarcity allocation) it uses :meth:`Divider.waterfill`:
proportional to weights, capped at each order's quantity (max-min "water filling"), in exact
integers. Flooring leaves at most one Wh per participant undistributed; those leftover Wh go
one each to the participants with the fewest past *margin wins* (then the largest remainder,
then a per-slot rotation derived from SHA-256 of ``"<slot_start>:<owner>"``, then the order
id). Everyone who receives such a Wh, or whose sale was cut by the fair-share cap, scores a
win in the returned :class:`FairnessState`, so the same member does not win ties slot after
slot. The state is an input and an output of clearing; every peer derives it from the same
past results.

Public API: :class:`FairnessState`, :class:`Divider`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
import hashlib
from typing import Any

MAX_WINS = 10**12  # a count a peer may be handed (far beyond any real history)
MAX_OWNER_LENGTH = 128


@dataclass(frozen=True, slots=True)
class FairnessState:
    """Per-member count of tie wins (margin leftovers received, fair-share cuts)."""

    margin_wins: tuple[tuple[str, int], ...] = ()

    def wins(self) -> dict[str, int]:
        """The counts as a dict."""
        return dict(self.margin_wins)

    def add(self, increments: Mapping[str, int]) -> FairnessState:
        """A new state with ``increments`` added (members sorted, zeros dropped)."""
        merged = dict(self.margin_wins)
        for owner, inc in increments.items():
            merged[owner] = merged.get(owner, 0) + inc
        return FairnessState(tuple(sorted((k, v) for k, v in merged.items() if v)))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"margin_wins": dict(self.margin_wins)}

    @classmethod
    def from_dict(cls, data: object) -> FairnessState:
        """Parse and validate; raises ``ValueError``."""
        if not isinstance(data, Mapping):
            raise ValueError("fairness must be an object")
        raw = data.get("margin_wins", {})
        if not isinstance(raw, Mapping) or set(data) - {"margin_wins"}:
            raise ValueError("fairness must be {'margin_wins': {member: count}}")
        for owner, count in raw.items():
            if (
                type(owner) is not str
                or not 0 < len(owner) <= MAX_OWNER_LENGTH
                or type(count) is not int
                or not 0 <= count <= MAX_WINS
            ):
                raise ValueError(
                    f"fairness.margin_wins must map member ids (1..{MAX_OWNER_LENGTH} "
                    f"characters) to counts in 0..{MAX_WINS}"
                )
        return cls(tuple(sorted((k, v) for k, v in raw.items() if v)))


class Divider:
    """Integer fair division for one slot; collects the wins it hands out."""

    def __init__(self, state: FairnessState, slot_start: int) -> None:
        self._wins = state.wins()
        self._slot = slot_start
        self.won: dict[str, int] = {}

    def _rotation(self, owner: str) -> bytes:
        return hashlib.sha256(f"{self._slot}:{owner}".encode()).digest()[:8]

    def win(self, owner: str) -> None:
        """Record one tie win for ``owner``."""
        self.won[owner] = self.won.get(owner, 0) + 1

    def waterfill(
        self,
        total: int,
        weights: Sequence[int],
        caps: Sequence[int],
        owners: Sequence[str],
        ids: Sequence[str],
    ) -> list[int]:
        """Split ``min(total, sum(caps))`` proportionally to positive ``weights``, capped.

        Participants whose cap is below their proportional share get their cap; the rest share
        what is left in proportion to their weights (floored, leftovers as described in the
        module docstring). A participant with weight 0 or cap 0 gets 0.
        """
        n = len(caps)
        alloc = [0] * n
        live = [i for i in range(n) if caps[i] > 0 and weights[i] > 0]
        cap_sum = sum(caps[i] for i in live)
        if total >= cap_sum:
            for i in live:
                alloc[i] = caps[i]
            return alloc
        if total <= 0:
            return alloc
        rest = total
        wsum = sum(weights[i] for i in live)
        k = 0
        if weights is not caps:  # pro rata to caps never saturates anyone below the total
            live.sort(key=lambda i: (Fraction(caps[i], weights[i]), ids[i]))
        while weights is not caps and k < len(live):
            i = live[k]
            if caps[i] * wsum <= rest * weights[i]:
                alloc[i] = caps[i]
                rest -= caps[i]
                wsum -= weights[i]
                k += 1
            else:
                break
        group = live[k:]
        remainders: list[tuple[int, int]] = []
        given = 0
        for i in group:
            q, r = divmod(rest * weights[i], wsum)
            alloc[i] = q
            given += q
            remainders.append((r, i))
        leftover = rest - given
        if leftover > 0:
            remainders.sort(
                key=lambda ri: (
                    self._wins.get(owners[ri[1]], 0),
                    -ri[0],
                    self._rotation(owners[ri[1]]),
                    ids[ri[1]],
                )
            )
            for _, i in remainders[:leftover]:
                alloc[i] += 1
                self.win(owners[i])
        return alloc

    def state_after(self, state: FairnessState) -> FairnessState:
        """The state to carry into the next slot."""
        return state.add(self.won)
