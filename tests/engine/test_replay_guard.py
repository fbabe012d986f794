"""The replay guard: same answers as a plain set of accepted numbers, bounded memory."""

from __future__ import annotations

import random

import pytest

from custom_components.peer_energy.core.trust.envelope import RejectCode, ReplayGuard


class SetGuard:
    """The reference: every accepted number in a set, the window from the highest."""

    def __init__(self, window: int, highest: dict[str, int] | None = None) -> None:
        self.window = window
        self.highest: dict[str, int] = {}
        self.seen: dict[str, set[int]] = {}
        for sender, seq in (highest or {}).items():
            self.highest[sender] = seq
            self.seen[sender] = set(range(max(1, seq - window + 1), seq + 1))

    def check(self, sender: str, seq: int) -> RejectCode | None:
        if sender not in self.highest:
            return None
        if seq <= self.highest[sender] - self.window:
            return RejectCode.SEQUENCE_OUT_OF_WINDOW
        return RejectCode.REPLAY if seq in self.seen[sender] else None

    def record(self, sender: str, seq: int) -> None:
        self.seen.setdefault(sender, set()).add(seq)
        self.highest[sender] = max(seq, self.highest.get(sender, seq))


@pytest.mark.parametrize("window", [1, 2, 3, 8, 64, 1024])
@pytest.mark.parametrize("restored", [False, True])
def test_the_guard_answers_as_a_set_of_accepted_numbers(window: int, restored: bool) -> None:
    rng = random.Random(window * 2 + restored)
    highest = {"a": rng.randint(0, 3 * window)} if restored else {}
    guard = ReplayGuard.from_highest(highest, window) if restored else ReplayGuard(window)
    model = SetGuard(window, highest)
    for _ in range(3_000):
        sender = rng.choice("ab")
        top = model.highest.get(sender, 0)
        seq = (
            rng.randint(max(1, top - 2 * window), top + 2 * window + 2)
            if rng.random() < 0.95
            else rng.randint(1, 2**62)
        )
        code = guard.check(sender, seq)
        assert code == model.check(sender, seq), (sender, seq)
        if code is None:
            guard.record(sender, seq)
            model.record(sender, seq)
        assert guard.highest() == model.highest


def test_memory_per_sender_stays_within_the_window() -> None:
    window = 1 << 16
    guard = ReplayGuard(window)
    for seq in range(1, 3 * window, 7):
        assert guard.check("a", seq) is None
        guard.record("a", seq)
    state = guard._senders["a"]
    assert state.seen.bit_length() <= window
    assert guard.check("a", 1) is RejectCode.SEQUENCE_OUT_OF_WINDOW
    restored = ReplayGuard.from_highest({"a": 10**12}, window)
    assert restored._senders["a"].seen.bit_length() == window
    assert restored.check("a", 10**12 - window + 1) is RejectCode.REPLAY
    assert restored.check("a", 10**12 - window) is RejectCode.SEQUENCE_OUT_OF_WINDOW
    assert restored.check("a", 10**12 + 1) is None
