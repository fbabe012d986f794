"""The slot clock of a member uses the community's gate closure lead unclamped and raises
a repair issue when that lead leaves no time to bid."""

from __future__ import annotations

from types import SimpleNamespace

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.gate import gate_lead_issue_id
from custom_components.peer_energy.market import SlotClock


def _link(lead_ms: int, slot_ms: int) -> SimpleNamespace:
    return SimpleNamespace(
        gate_closure_lead_ms=lead_ms,
        slot_ms=slot_ms,
        member_key="me" * 16,
        async_add_result_listener=lambda cb: lambda: None,
    )


async def test_unworkable_lead_is_used_and_reported(hass: HomeAssistant, market: SlotClock) -> None:
    """Lead 600 s with 900 s slots: the clock closes 600 s ahead like the protocol and the
    owner gets a repair issue; a lead that fits clears it at the next start."""
    issue_id = gate_lead_issue_id(market.entry.entry_id)
    registry = ir.async_get(hass)
    market.async_stop()
    market.runtime.federation = _link(600_000, 900_000)  # type: ignore[assignment]
    market.async_start()
    assert market.gate_lead_seconds == 600
    assert market.gate_closure(1_800_000_000) == 1_800_000_000 - 600
    issue = registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {"lead": "600", "slot": "900", "max_lead": "449"}
    market.async_stop()
    market.runtime.federation = _link(60_000, 900_000)  # type: ignore[assignment]
    market.async_start()
    assert market.gate_lead_seconds == 60
    assert registry.async_get_issue(DOMAIN, issue_id) is None
    market.async_stop()
    market.runtime.federation = None
    market.async_start()


async def test_local_lead_fits_the_slot(hass: HomeAssistant, market: SlotClock) -> None:
    """Without a community the default lead (60 s) is kept below half the entry's slot."""
    assert market.gate_lead_seconds == 60
    hass.config_entries.async_update_entry(
        market.entry, data={**market.entry.data, "slot_minutes": 1}
    )
    assert market.slot_seconds == 60
    assert market.gate_lead_seconds == 29
