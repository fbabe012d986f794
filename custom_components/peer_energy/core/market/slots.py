"""Delivery slots: fixed-length intervals aligned to UTC multiples of the slot length.

A slot is named by its start, an integer Unix timestamp in seconds that is a multiple of the
slot length (``slot_seconds``, for example 900 for 15 minutes). Every peer computes the same
slot for the same instant, whatever its time zone.

Public API: :func:`slot_start`, :func:`is_aligned`, :func:`next_slots`, :func:`slot_of_day`,
:data:`DEFAULT_SLOT_SECONDS`.
"""

from __future__ import annotations

DEFAULT_SLOT_SECONDS = 900
SECONDS_PER_DAY = 86_400


def _check_length(slot_seconds: int) -> None:
    if isinstance(slot_seconds, bool) or not isinstance(slot_seconds, int) or slot_seconds <= 0:
        raise ValueError(f"slot length must be a positive integer of seconds, got {slot_seconds!r}")
    if SECONDS_PER_DAY % slot_seconds:
        raise ValueError(f"slot length {slot_seconds} s does not divide a day")


def slot_start(timestamp: int, slot_seconds: int = DEFAULT_SLOT_SECONDS) -> int:
    """Start of the slot that contains ``timestamp`` (integer seconds, UTC)."""
    _check_length(slot_seconds)
    return timestamp - timestamp % slot_seconds


def is_aligned(start: int, slot_seconds: int = DEFAULT_SLOT_SECONDS) -> bool:
    """True when ``start`` is a valid slot start for this slot length."""
    _check_length(slot_seconds)
    return start % slot_seconds == 0


def next_slots(now: int, count: int, slot_seconds: int = DEFAULT_SLOT_SECONDS) -> list[int]:
    """Starts of the ``count`` slots that begin after the slot containing ``now``."""
    first = slot_start(now, slot_seconds) + slot_seconds
    return [first + k * slot_seconds for k in range(max(0, count))]


def slot_of_day(start: int, slot_seconds: int = DEFAULT_SLOT_SECONDS) -> int:
    """Index of the slot within its UTC day (0 .. slots per day - 1)."""
    _check_length(slot_seconds)
    return (start % SECONDS_PER_DAY) // slot_seconds
