"""Bounds of the gate closure lead: what leaves time to bid and time to agree.

A slot ``S`` is prepared (the home's order computed and sent) when the slot before it
starts, at ``S - slot``; its orders close at ``S - lead``; the homes then exchange digests
and attestations in two windows of a quarter of the lead each (10 s at most), so the result
is final before ``S``. Two bounds follow:

* **time to bid**: ``lead`` must be less than half a slot (``2 * lead < slot``), so at least
  half a slot passes between the moment a home prepares its order and gate closure (planning,
  signing and delivering the bid to every member);
* **time to agree**: ``lead >= MIN_GATE_LEAD_S`` (20 s): each protocol window is then at
  least 5 s, the time-out of one HTTP attempt between homes, so a digest or an attestation
  whose first attempt is slow still arrives inside its window.

The create-community form refuses a lead outside these bounds; the slot clock and the
protocol use the community's lead as it is (no clamp). A stored community whose lead leaves
no time to bid (founded before these bounds, rules cannot change) raises a repair issue and
a warning: the fix is to leave it and found a new one.
"""

from __future__ import annotations

from typing import Final

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN, LOGGER

MIN_GATE_LEAD_S: Final = 20
ISSUE_GATE_LEAD: Final = "gate_lead_unworkable"
ERROR_GATE_LEAD_TOO_SHORT: Final = "gate_lead_too_short"
ERROR_GATE_LEAD_TOO_LONG: Final = "gate_lead_too_long"


def max_gate_lead_s(slot_seconds: int) -> int:
    """The longest lead that leaves at least half a slot to bid (``2 * lead < slot``)."""
    return max(0, (slot_seconds - 1) // 2)


def gate_lead_error(lead_s: int, slot_seconds: int) -> str | None:
    """Why a lead does not fit a slot length (an error key of the form), or None."""
    if lead_s > max_gate_lead_s(slot_seconds):
        return ERROR_GATE_LEAD_TOO_LONG
    if lead_s < MIN_GATE_LEAD_S:
        return ERROR_GATE_LEAD_TOO_SHORT
    return None


def gate_lead_issue_id(entry_id: str) -> str:
    """Repair issue id of an entry's community rules."""
    return f"{ISSUE_GATE_LEAD}_{entry_id}"


def async_check_gate_lead(
    hass: HomeAssistant, entry_id: str, lead_s: int | None, slot_seconds: int
) -> bool:
    """Raise (or clear) the repair issue of a community whose lead leaves no time to bid.

    ``lead_s`` None: not in a community (the home clears alone; nothing to check).
    Returns whether the lead leaves time to bid. Only the time-to-bid bound raises the
    issue: a shorter lead than ``MIN_GATE_LEAD_S`` still trades on a fast network (tests
    use slots of a few seconds).
    """
    issue_id = gate_lead_issue_id(entry_id)
    if lead_s is None or lead_s <= max_gate_lead_s(slot_seconds):
        ir.async_delete_issue(hass, DOMAIN, issue_id)
        return True
    LOGGER.warning(
        "The community's gate closure lead (%s s) leaves no time to bid in %s s slots: "
        "no slot can trade; leave the community and found one with a lead of at most %s s",
        lead_s,
        slot_seconds,
        max_gate_lead_s(slot_seconds),
    )
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=ISSUE_GATE_LEAD,
        translation_placeholders={
            "lead": str(lead_s),
            "slot": str(slot_seconds),
            "max_lead": str(max_gate_lead_s(slot_seconds)),
        },
    )
    return False
