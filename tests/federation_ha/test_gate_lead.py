"""The gate closure lead: the form refuses one that cannot trade; the slot clock and the
protocol use the same lead; a stored community whose lead leaves no time to bid raises a
repair issue instead of being clamped in silence."""

from __future__ import annotations

from typing import Any

from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
import pytest

from custom_components.peer_energy.community_flow import validate_create
from custom_components.peer_energy.const import (
    CONF_GATE_CLOSURE_LEAD_S,
    CONF_SLOT_MINUTES,
    DEFAULT_GATE_CLOSURE_LEAD_S,
    DOMAIN,
    SUBENTRY_COMMUNITY,
)
from custom_components.peer_energy.gate import (
    MIN_GATE_LEAD_S,
    async_check_gate_lead,
    gate_lead_error,
    gate_lead_issue_id,
    max_gate_lead_s,
)
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry

from .conftest import Clock, Home
from .test_flows import HOME, create_form

ADDRESS = "http://10.0.0.2:8123"


@pytest.mark.parametrize(
    ("minutes", "lead", "error"),
    [
        ("1", DEFAULT_GATE_CLOSURE_LEAD_S, "gate_lead_too_long"),  # the old default never traded
        ("1", 30, "gate_lead_too_long"),  # half a slot: no time left to bid
        ("1", 29, None),
        ("1", 20, None),
        ("1", 19, "gate_lead_too_short"),  # windows shorter than one HTTP attempt
        ("1", 8, "gate_lead_too_short"),
        ("5", 149, None),
        ("5", 150, "gate_lead_too_long"),
        ("15", DEFAULT_GATE_CLOSURE_LEAD_S, None),
        ("60", 1799, None),
        ("60", 1800, "gate_lead_too_long"),
    ],
)
def test_form_bounds(minutes: str, lead: int, error: str | None) -> None:
    """Less than half a slot to leave time to bid, at least 20 s to agree: on the field."""
    form = create_form(ADDRESS, **{CONF_SLOT_MINUTES: minutes, CONF_GATE_CLOSURE_LEAD_S: lead})
    data, errors = validate_create(form, HOME)
    if error is None:
        assert errors == {}
        assert data["rules"]["gate_closure_lead_s"] == lead
    else:
        assert errors == {CONF_GATE_CLOSURE_LEAD_S: error}


def test_bounds_agree() -> None:
    """The error function and the bound the slot clock checks are the same numbers."""
    for slot in (60, 300, 900, 1800, 3600):
        top = max_gate_lead_s(slot)
        assert 2 * top < slot <= 2 * (top + 1)
        assert gate_lead_error(top, slot) is None
        assert gate_lead_error(top + 1, slot) == "gate_lead_too_long"
        assert gate_lead_error(MIN_GATE_LEAD_S - 1, slot) == "gate_lead_too_short"


async def test_default_lead_with_one_minute_slots_is_refused(
    hass: HomeAssistant, clock: Clock, http_address: str
) -> None:
    """The form's default lead (60 s) with 1-minute slots is refused on the field; the
    community is not created until the lead fits."""
    from tests.conftest import make_entry

    entry = make_entry(assets={})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_COMMUNITY), context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "create_community"}
    )
    form: dict[str, Any] = create_form(http_address)
    del form[CONF_GATE_CLOSURE_LEAD_S]  # the schema fills in the default
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_GATE_CLOSURE_LEAD_S: "gate_lead_too_long"}
    assert not any(s.subentry_type == SUBENTRY_COMMUNITY for s in entry.subentries.values())
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**form, CONF_GATE_CLOSURE_LEAD_S: 25}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    market = entry.runtime_data.market
    link = entry.runtime_data.federation
    assert market is not None
    assert link is not None
    assert link.rules is not None
    # the slot clock, the market view and the protocol: one lead
    assert market.gate_lead_seconds == link.rules.gate_closure_lead_s == 25
    slot = 1_800_000_060
    assert market.gate_closure(slot) * 1000 == link.rules.gate_closure_ms(slot)


async def test_member_lead_is_not_clamped(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home]
) -> None:
    """A member's slot clock uses the community's lead as the protocol does."""
    entry, a = home_a
    market = entry.runtime_data.market
    assert market is not None
    assert a.link.rules is not None
    assert market.gate_lead_seconds == a.link.rules.gate_closure_lead_s
    assert ir.async_get(hass).async_get_issue(DOMAIN, gate_lead_issue_id(entry.entry_id)) is None


async def test_stored_lead_without_time_to_bid_raises_a_repair(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """A community founded before the bounds (60 s lead, 60 s slots) is reported, not
    clamped; the issue goes away when the lead fits (here: the home left)."""
    registry = ir.async_get(hass)
    assert not async_check_gate_lead(hass, "e1", 60, 60)
    issue = registry.async_get_issue(DOMAIN, gate_lead_issue_id("e1"))
    assert issue is not None
    assert issue.translation_key == "gate_lead_unworkable"
    assert issue.translation_placeholders == {"lead": "60", "slot": "60", "max_lead": "29"}
    assert "leaves no time to bid" in caplog.text
    assert async_check_gate_lead(hass, "e1", None, 60)
    assert registry.async_get_issue(DOMAIN, gate_lead_issue_id("e1")) is None
    assert async_check_gate_lead(hass, "e1", 10, 60)  # short but workable: no issue
    assert registry.async_get_issue(DOMAIN, gate_lead_issue_id("e1")) is None
