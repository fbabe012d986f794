"""Fault scenarios (``faults.py``; the figures come from ``bench/faults.py``): a member's
clock off, a partition that heals, a member down for hours. Whatever happens, no two homes
ever hold different results, and what the others finalised comes back to the home that
missed it."""

from __future__ import annotations

from .faults import clock_skew, member_down, partition


def test_a_clock_within_the_attestation_window_changes_nothing() -> None:
    f = clock_skew(1_000, slots=4)
    assert f.disagreements == 0
    assert all(v == 0 for v in f.voided.values())
    assert f.final == dict.fromkeys(f.final, 4)
    assert f.included == 4


def test_a_clock_off_within_the_skew_bound_still_trades_but_learns_results_late() -> None:
    f = clock_skew(25_000, slots=4)
    assert f.disagreements == 0
    assert f.final == dict.fromkeys(f.final, 4)  # every home ends with every result
    assert f.included == 4  # its bids are in the books
    assert f.voided["p4"] == 4  # but it gave up at its own (early) deadline each time
    assert f.late["p4"] == 4
    assert all(f.voided[a] == 0 for a in ("p0", "p1", "p2", "p3"))


def test_a_clock_beyond_the_skew_bound_isolates_only_that_home() -> None:
    for ahead in (31_000, -31_000):
        f = clock_skew(ahead, slots=4)
        assert f.disagreements == 0
        assert all(f.final[a] == 4 for a in ("p0", "p1", "p2", "p3"))
        assert f.final["p4"] == 0
        assert f.included == 0  # its messages are refused (clock_skew)


def test_a_minority_cut_off_catches_up_every_result_after_the_heal() -> None:
    f = partition((4, 2), split_slots=6, after=2)
    assert f.disagreements == 0
    assert f.voided["p4"] == f.voided["p5"] == 6  # void while cut off
    assert f.final == dict.fromkeys(f.final, 8)  # then every result, late
    assert f.late["p4"] == 6
    assert f.lost == 0


def test_a_slot_no_longer_asked_for_by_itself_still_comes_back() -> None:
    # 3 slots cut off, then 15 s more: the first slot's catch-up requests are used up
    # (six, over about two minutes) before the heal; a later request fetches it too.
    f = partition((4, 2), split_slots=3, after=1, idle_ms=15_000)
    assert f.disagreements == 0
    assert f.final == dict.fromkeys(f.final, 4)
    assert f.lost == 0


def test_a_split_in_halves_is_void_everywhere_then_trades_again() -> None:
    f = partition((3, 3), split_slots=3, after=2)
    assert f.disagreements == 0
    assert f.final == dict.fromkeys(f.final, 2)  # the 3 split slots have no result anywhere
    assert all(v == 3 for v in f.voided.values())


def test_a_member_down_for_hours_gets_every_result_back() -> None:
    f = member_down(3)  # 12 slots of 15 minutes
    assert f.slots == 12
    assert f.final["p4"] == 12
    assert f.late["p4"] == 12
    assert f.lost == 0
    assert f.recovered_ms is not None
    assert f.recovered_ms <= 60_000
