"""Scarcity allocation (the LastWatt rule) when the grid cannot cover the community.

Used by the clearing when the grid is unavailable (islanded, outage) or the community's
import capacity would be exceeded: the energy that is available goes to buyers by community
priority instead of by price alone.

1. ``essential`` demand (medical devices, heating in a cold snap, community buildings) first;
2. then ``household`` demand;
3. then ``other`` demand (businesses, comfort loads), weighted by the stakes members placed on
   its owner: every member holds one stake per period and may move it to any member it wants
   to back; demand whose owner holds no stake comes last.

Within a class the split is max-min fair: equal weights (stakes for ``other``), nobody gets
more than it asked for, and what a small demand does not need goes to the others. Integer
leftovers follow :class:`~.fairness.Divider`.

Public API: :func:`priority_split`, :func:`stake_weights`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .fairness import Divider
from .orders import Priority


def priority_split(
    volume: int,
    demands: Sequence[int],
    priorities: Sequence[Priority],
    owners: Sequence[str],
    ids: Sequence[str],
    stake_weight: Mapping[str, int],
    div: Divider,
) -> list[int]:
    """LastWatt scarcity rule: split ``volume`` among demands by priority class.

    Essential demand first, then household demand, each shared max-min fairly (equal weights,
    nobody gets more than asked); then ``other`` demand weighted by the stakes members placed
    on its owner, and finally other demand whose owner holds no stake, equally.
    """
    n = len(demands)
    alloc = [0] * n
    rest = volume
    groups: list[tuple[list[int], list[int]]] = []
    for cls in (Priority.ESSENTIAL, Priority.HOUSEHOLD):
        idx = [i for i in range(n) if priorities[i] is cls]
        groups.append((idx, [1] * len(idx)))
    other = [i for i in range(n) if priorities[i] is Priority.OTHER]
    staked = [i for i in other if stake_weight.get(owners[i], 0) > 0]
    groups.append((staked, [stake_weight[owners[i]] for i in staked]))
    unstaked = [i for i in other if stake_weight.get(owners[i], 0) <= 0]
    groups.append((unstaked, [1] * len(unstaked)))
    for idx, weights in groups:
        if rest <= 0:
            break
        if not idx:
            continue
        caps = [demands[i] for i in idx]
        got = div.waterfill(rest, weights, caps, [owners[i] for i in idx], [ids[i] for i in idx])
        for i, g in zip(idx, got, strict=True):
            alloc[i] = g
            rest -= g
    return alloc


def stake_weights(stakes: Mapping[str, str] | Sequence[tuple[str, str]]) -> dict[str, int]:
    """Number of stakes placed on each member (each staker backs exactly one member)."""
    pairs = stakes.items() if isinstance(stakes, Mapping) else stakes
    weights: dict[str, int] = {}
    for _staker, backed in pairs:
        weights[backed] = weights.get(backed, 0) + 1
    return weights
