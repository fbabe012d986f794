"""Reputation: each home scores its peers from evidence, under its owner's weights.

Reputation is a matter of perspective: nothing here is global or signed. A home keeps
its own list of ``Evidence`` (from its own meter readings, settlements it took part in,
fork proofs it verified, peers being online) and computes a score per peer with its
owner's ``ReputationPolicy``.

The formula (see docs/ledger.md for the reasoning)::

    weight(e)   = 2 ** (-(now - e.ts) / half_life)                      (decay)
    ratio(c)    = (prior(c) / 2 + sum weight(e) * achieved(e))
                  / (prior(c)     + sum weight(e) * expected(e))       for e of component c
    base        = sum_c  w(c) * ratio(c)  /  sum_c w(c)               (owner weights)
    penalty     = 2 ** -(sum over proven equivocations of weight_equivocation(e))
    score       = floor(1000 * base * penalty)                        (permille, 0..1000)

Components: delivery (delivered vs promised Wh), clean share (clean Wh of Wh sold),
demand response (Wh reduced vs requested), availability (slots online vs expected).
A newcomer with no evidence scores exactly 500 (neutral). Scores are computed locally
in floating point and reported as integer permille; they are never signed or stored,
so floats stay out of everything exchanged between peers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

SCALE = 1000
NEUTRAL = SCALE // 2
DAY_MS = 86_400_000


# A score in words: above, at or below the neutral score every newcomer starts with, or
# no evidence about the member yet.
REPUTATION_STATUSES: tuple[str, ...] = ("not_rated", "below_neutral", "neutral", "above_neutral")


def reputation_status(permille: int | None) -> str:
    """The status of a reputation score (permille; None: no evidence yet)."""
    if permille is None:
        return "not_rated"
    if permille < NEUTRAL:
        return "below_neutral"
    return "neutral" if permille == NEUTRAL else "above_neutral"


class EvidenceKind(StrEnum):
    """What a piece of evidence is about."""

    DELIVERY = "delivery"  # expected = promised Wh, achieved = delivered Wh
    CLEAN = "clean"  # expected = Wh sold, achieved = clean Wh sold
    DEMAND_RESPONSE = "demand_response"  # expected = Wh requested, achieved = Wh reduced
    AVAILABILITY = "availability"  # expected = slots, achieved = slots online
    EQUIVOCATION = "equivocation"  # a verified fork or double order; counts, not ratios


COMPONENTS = (
    EvidenceKind.DELIVERY,
    EvidenceKind.CLEAN,
    EvidenceKind.DEMAND_RESPONSE,
    EvidenceKind.AVAILABILITY,
)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One observation about ``subject`` at ``ts_ms`` (integers only)."""

    subject: str
    kind: EvidenceKind
    ts_ms: int
    expected: int = 1
    achieved: int = 0


def _frozen(mapping: Mapping[EvidenceKind, int]) -> Mapping[EvidenceKind, int]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class ReputationPolicy:
    """The owner's weighting. Weights are relative integers; priors are in the
    component's own unit (Wh or slots) and say how much evidence it takes to move a
    newcomer away from neutral."""

    weights: Mapping[EvidenceKind, int] = field(
        default_factory=lambda: _frozen(
            {
                EvidenceKind.DELIVERY: 50,
                EvidenceKind.CLEAN: 15,
                EvidenceKind.DEMAND_RESPONSE: 20,
                EvidenceKind.AVAILABILITY: 15,
            }
        )
    )
    priors: Mapping[EvidenceKind, int] = field(
        default_factory=lambda: _frozen(
            {
                EvidenceKind.DELIVERY: 5_000,
                EvidenceKind.CLEAN: 5_000,
                EvidenceKind.DEMAND_RESPONSE: 2_000,
                EvidenceKind.AVAILABILITY: 96,
            }
        )
    )
    half_life_ms: int = 30 * DAY_MS
    equivocation_half_life_ms: int = 180 * DAY_MS

    def __post_init__(self) -> None:
        """Refuse weights or priors that would make the formula meaningless."""
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        if any(self.priors.get(c, 0) <= 0 for c in COMPONENTS):
            raise ValueError("every component needs a positive prior")
        if self.half_life_ms <= 0 or self.equivocation_half_life_ms <= 0:
            raise ValueError("half-lives must be positive")


DEFAULT_POLICY = ReputationPolicy()


def _decay(age_ms: int, half_life_ms: int) -> float:
    return 1.0 if age_ms <= 0 else float(0.5 ** (age_ms / half_life_ms))


@dataclass(slots=True)
class _Sums:
    achieved: dict[EvidenceKind, float] = field(default_factory=dict)
    expected: dict[EvidenceKind, float] = field(default_factory=dict)
    equivocation: float = 0.0


def _accumulate(sums: _Sums, item: Evidence, now_ms: int, policy: ReputationPolicy) -> None:
    age = now_ms - item.ts_ms
    if item.kind is EvidenceKind.EQUIVOCATION:
        sums.equivocation += _decay(age, policy.equivocation_half_life_ms)
        return
    expected = max(0, item.expected)
    achieved = min(max(0, item.achieved), expected)
    weight = _decay(age, policy.half_life_ms)
    sums.achieved[item.kind] = sums.achieved.get(item.kind, 0.0) + weight * achieved
    sums.expected[item.kind] = sums.expected.get(item.kind, 0.0) + weight * expected


def _score(sums: _Sums, policy: ReputationPolicy) -> int:
    total_weight = 0
    weighted = 0.0
    for component in COMPONENTS:
        w = policy.weights.get(component, 0)
        if not w:
            continue
        prior = policy.priors[component]
        ratio = (prior / 2 + sums.achieved.get(component, 0.0)) / (
            prior + sums.expected.get(component, 0.0)
        )
        weighted += w * ratio
        total_weight += w
    base = weighted / total_weight
    penalty = 0.5**sums.equivocation
    return max(0, min(SCALE, int(SCALE * base * penalty)))


def score(
    evidence: Iterable[Evidence],
    subject: str,
    now_ms: int,
    policy: ReputationPolicy = DEFAULT_POLICY,
) -> int:
    """This home's score of ``subject`` in permille (500 without evidence)."""
    sums = _Sums()
    for item in evidence:
        if item.subject == subject:
            _accumulate(sums, item, now_ms, policy)
    return _score(sums, policy)


def scores(
    evidence: Iterable[Evidence],
    now_ms: int,
    policy: ReputationPolicy = DEFAULT_POLICY,
) -> dict[str, int]:
    """Score of every subject that has evidence, in one pass."""
    by_subject: dict[str, _Sums] = {}
    for item in evidence:
        sums = by_subject.get(item.subject)
        if sums is None:
            sums = by_subject[item.subject] = _Sums()
        _accumulate(sums, item, now_ms, policy)
    return {subject: _score(sums, policy) for subject, sums in by_subject.items()}


def standing(reported: Mapping[str, int]) -> int:
    """A home's own standing: the median of the scores peers report about it.

    The median (not the mean) so a few hostile or flattering peers cannot move it far.
    Neutral without reports.
    """
    values = sorted(max(0, min(SCALE, v)) for v in reported.values())
    if not values:
        return NEUTRAL
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) // 2


def priority_weight(score_permille: int) -> int:
    """Weight for fair-share priority among equal bids: 500 (score 0) .. 1500 (1000).

    A proven cheat still gets a third of a perfect peer's share rather than nothing:
    reputation tilts priority, it does not exclude (exclusion is the credit limit's job).
    """
    return NEUTRAL + max(0, min(SCALE, score_permille))


def delivery_evidence(subject: str, promised_wh: int, delivered_wh: int, ts_ms: int) -> Evidence:
    """Evidence from a delivery (e.g. a settlement or the home's own meter reading)."""
    return Evidence(subject, EvidenceKind.DELIVERY, ts_ms, promised_wh, delivered_wh)


def clean_evidence(subject: str, sold_wh: int, clean_wh: int, ts_ms: int) -> Evidence:
    """Evidence of the clean share of what ``subject`` sold."""
    return Evidence(subject, EvidenceKind.CLEAN, ts_ms, sold_wh, clean_wh)


def demand_response_evidence(
    subject: str, requested_wh: int, reduced_wh: int, ts_ms: int
) -> Evidence:
    """Evidence of demand response given when asked."""
    return Evidence(subject, EvidenceKind.DEMAND_RESPONSE, ts_ms, requested_wh, reduced_wh)


def availability_evidence(subject: str, online: bool, ts_ms: int) -> Evidence:
    """One slot in which ``subject`` was expected to take part."""
    return Evidence(subject, EvidenceKind.AVAILABILITY, ts_ms, 1, 1 if online else 0)


def equivocation_evidence(subject: str, ts_ms: int) -> Evidence:
    """A verified fork or equivocation proof against ``subject``."""
    return Evidence(subject, EvidenceKind.EQUIVOCATION, ts_ms)


def prune(evidence: Sequence[Evidence], now_ms: int, policy: ReputationPolicy) -> list[Evidence]:
    """Drop evidence old enough to weigh less than 1/1024 (ten half-lives)."""
    horizon = 10 * policy.half_life_ms
    eq_horizon = 10 * policy.equivocation_half_life_ms
    return [
        e
        for e in evidence
        if now_ms - e.ts_ms < (eq_horizon if e.kind is EvidenceKind.EQUIVOCATION else horizon)
    ]
