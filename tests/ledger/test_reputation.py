"""Reputation: perspective, evidence, decay, equivocation, standing and priority."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.peer_energy.core.trust.reputation import (
    DAY_MS,
    DEFAULT_POLICY,
    NEUTRAL,
    Evidence,
    EvidenceKind,
    ReputationPolicy,
    availability_evidence,
    clean_evidence,
    delivery_evidence,
    demand_response_evidence,
    equivocation_evidence,
    priority_weight,
    prune,
    score,
    scores,
    standing,
)

NOW = 1_800_000_000_000


def test_newcomer_is_neutral() -> None:
    assert score([], "peer", NOW) == NEUTRAL
    assert scores([], NOW) == {}


def test_good_and_bad_delivery_move_the_score_apart() -> None:
    good = [delivery_evidence("good", 1000, 1000, NOW - i * 900_000) for i in range(200)]
    bad = [delivery_evidence("bad", 1000, 100, NOW - i * 900_000) for i in range(200)]
    all_scores = scores(good + bad, NOW)
    assert all_scores["good"] > NEUTRAL > all_scores["bad"]
    assert all_scores["good"] == score(good + bad, "good", NOW)


def test_more_evidence_means_more_confidence() -> None:
    few = [delivery_evidence("p", 1000, 1000, NOW)]
    many = few * 50
    assert NEUTRAL < score(few, "p", NOW) < score(many, "p", NOW)


def test_old_evidence_decays_back_towards_neutral() -> None:
    bad = [delivery_evidence("p", 1000, 0, NOW - DAY_MS) for _ in range(100)]
    fresh = score(bad, "p", NOW)
    later = score(bad, "p", NOW + 365 * DAY_MS)
    assert fresh < later <= NEUTRAL
    # Evidence from the future (clock skew) counts as fresh, not more.
    future = [delivery_evidence("p", 1000, 0, NOW + DAY_MS) for _ in range(100)]
    assert score(future, "p", NOW) == score([delivery_evidence("p", 1000, 0, NOW)] * 100, "p", NOW)


def test_owner_weights_are_a_matter_of_perspective() -> None:
    evidence = [clean_evidence("p", 1000, 0, NOW)] * 20 + [
        delivery_evidence("p", 1000, 1000, NOW)
    ] * 20
    green = ReputationPolicy(
        weights={EvidenceKind.CLEAN: 90, EvidenceKind.DELIVERY: 10},
        priors=DEFAULT_POLICY.priors,
    )
    pragmatic = ReputationPolicy(
        weights={EvidenceKind.CLEAN: 0, EvidenceKind.DELIVERY: 100},
        priors=DEFAULT_POLICY.priors,
    )
    assert score(evidence, "p", NOW, green) < NEUTRAL < score(evidence, "p", NOW, pragmatic)


def test_demand_response_and_availability_count() -> None:
    helpful = [demand_response_evidence("p", 500, 500, NOW)] * 20
    assert score(helpful, "p", NOW) > NEUTRAL
    absent = [availability_evidence("p", False, NOW)] * 500
    present = [availability_evidence("p", True, NOW)] * 500
    assert score(absent, "p", NOW) < NEUTRAL < score(present, "p", NOW)


def test_equivocation_halves_the_score_and_decays_slowly() -> None:
    good = [delivery_evidence("p", 1000, 1000, NOW)] * 100
    clean = score(good, "p", NOW)
    once = score([*good, equivocation_evidence("p", NOW)], "p", NOW)
    twice = score([*good, equivocation_evidence("p", NOW)] * 2, "p", NOW)
    assert once == pytest.approx(clean / 2, abs=1)
    assert twice < once
    a_month = score([equivocation_evidence("p", NOW)], "p", NOW + 30 * DAY_MS)
    assert a_month < NEUTRAL * 0.6


def test_evidence_is_clipped_to_what_was_expected() -> None:
    over = [Evidence("p", EvidenceKind.DELIVERY, NOW, 100, 10_000)]
    exact = [Evidence("p", EvidenceKind.DELIVERY, NOW, 100, 100)]
    negative = [Evidence("p", EvidenceKind.DELIVERY, NOW, -5, -5)]
    assert score(over, "p", NOW) == score(exact, "p", NOW)
    assert score(negative, "p", NOW) == NEUTRAL


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.builds(
            Evidence,
            st.sampled_from(["a", "b"]),
            st.sampled_from(list(EvidenceKind)),
            st.integers(NOW - 400 * DAY_MS, NOW + DAY_MS),
            st.integers(-10, 10_000),
            st.integers(-10, 10_000),
        ),
        max_size=40,
    )
)
def test_scores_are_bounded_and_better_delivery_never_hurts(evidence: list[Evidence]) -> None:
    for subject, value in scores(evidence, NOW).items():
        assert 0 <= value <= 1000
        assert value == score(evidence, subject, NOW)
    improved = [
        Evidence(e.subject, e.kind, e.ts_ms, e.expected, max(e.expected, 0))
        if e.kind is EvidenceKind.DELIVERY
        else e
        for e in evidence
    ]
    for subject in ("a", "b"):
        assert score(improved, subject, NOW) >= score(evidence, subject, NOW)


def test_standing_is_the_median_of_reports() -> None:
    assert standing({}) == NEUTRAL
    assert standing({"x": 900}) == 900
    assert standing({"x": 900, "y": 700}) == 800
    assert standing({"x": 900, "y": 800, "liar": 0}) == 800
    assert standing({"x": 5000, "y": -3, "z": 600}) == 600


def test_priority_weight_tilts_but_does_not_exclude() -> None:
    assert priority_weight(0) == 500
    assert priority_weight(1000) == 1500
    assert priority_weight(2000) == 1500
    assert priority_weight(-1) == 500


def test_prune_drops_only_negligible_evidence() -> None:
    old = delivery_evidence("p", 1, 1, NOW - 400 * DAY_MS)
    recent = delivery_evidence("p", 1, 1, NOW - DAY_MS)
    proof = equivocation_evidence("p", NOW - 400 * DAY_MS)
    assert prune([old, recent, proof], NOW, DEFAULT_POLICY) == [recent, proof]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weights": {EvidenceKind.DELIVERY: -1}},
        {"weights": {}},
        {"priors": {EvidenceKind.DELIVERY: 1}},
        {"half_life_ms": 0},
        {"equivocation_half_life_ms": -1},
    ],
)
def test_policy_refuses_meaningless_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must|needs"):
        ReputationPolicy(**kwargs)  # type: ignore[arg-type]


def test_zero_weight_component_is_ignored() -> None:
    only_delivery = ReputationPolicy(
        weights={EvidenceKind.DELIVERY: 1, EvidenceKind.CLEAN: 0}, priors=DEFAULT_POLICY.priors
    )
    dirty = [clean_evidence("p", 1000, 0, NOW)] * 50
    assert score(dirty, "p", NOW, only_delivery) == NEUTRAL


def test_reputation_feeds_the_credit_limit() -> None:
    from custom_components.peer_energy.core.trust.credit import CreditLedger, CreditPolicy

    evidence = [delivery_evidence("good", 1000, 1000, NOW)] * 100
    evidence += [delivery_evidence("bad", 1000, 0, NOW)] * 100
    led = CreditLedger("c", policy=CreditPolicy(base_limit=100_000))
    led.scores = scores(evidence, NOW)
    assert led.limit("good") > led.limit("newcomer") == 100_000 > led.limit("bad")
