"""The community outlook: the same slot on the last days, purchases at the dearest price,
sales at the cheapest."""

from __future__ import annotations

from custom_components.peer_energy.core.home.outlook import OUTLOOK_DAYS, same_slot_outlook

DAY = 86_400
SLOT = 900
T0 = 1_800_000_000 - 1_800_000_000 % DAY


def test_purchase_at_the_dearest_and_sale_at_the_cheapest_of_the_last_days() -> None:
    # yesterday the slot cleared at 30 (a dull day), the day before at 9 (a sunny one)
    past = {T0 - DAY: 30, T0 - 2 * DAY: 9, T0 - 3 * DAY: 2}
    buy, sale = same_slot_outlook(past, T0, 1, SLOT)
    assert OUTLOOK_DAYS == 2
    assert (buy, sale) == ([30], [9])  # three days back is not weighed
    assert same_slot_outlook(past, T0, 1, SLOT, days=3) == ([30], [2])
    assert same_slot_outlook(past, T0, 1, SLOT, days=1) == ([30], [30])  # yesterday alone


def test_only_cleared_days_count_and_unknown_slots_are_none() -> None:
    past = {T0 - DAY: 20, T0 + SLOT - DAY: 25, T0 + SLOT - 2 * DAY: 12}
    buy, sale = same_slot_outlook(past, T0, 3, SLOT)
    assert buy == [20, 25, None]
    assert sale == [20, 12, None]
    # a horizon longer than a day: the slot a day after the first looks one and two days
    # further back, not at the first slot itself, which has not cleared yet
    later = {T0 - DAY: 40, T0: 31, T0 - 2 * DAY: 7}
    buy, sale = same_slot_outlook(later, T0, DAY // SLOT + 1, SLOT)
    assert (buy[-1], sale[-1]) == (40, 7)


def test_floats_and_empty_history() -> None:
    assert same_slot_outlook({}, T0, 2, SLOT) == ([None, None], [None, None])
    assert same_slot_outlook({0: 0.5, 4: 1.0}, 8, 1, 1, day=4) == ([1.0], [0.5])
    assert same_slot_outlook({0: 0.5}, 8, 0, 1, day=4) == ([], [])
