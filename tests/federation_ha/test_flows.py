"""Community steps of the config flow and the community subentry flow, end to end."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, UnknownHandler
import pytest

from custom_components.peer_energy.community_flow import valid_address
from custom_components.peer_energy.const import (
    CONF_ADDRESS,
    CONF_COMMUNITY_ACTION,
    CONF_COMMUNITY_NAME,
    CONF_CREDIT_LIMIT,
    CONF_CURRENCY,
    CONF_EXPORT_PRICE,
    CONF_FAIR_SHARE_PCT,
    CONF_FEE,
    CONF_GATE_CLOSURE_LEAD_S,
    CONF_HOME_NAME,
    CONF_IMPORT_PRICE,
    CONF_INVITATION,
    CONF_MAX_MEMBERS,
    CONF_SLOT_MINUTES,
    DOMAIN,
    SUBENTRY_COMMUNITY,
)
from custom_components.peer_energy.core.federation.community import Invitation
from custom_components.peer_energy.federation import FederationError
from custom_components.peer_energy.federation_setup import community_subentry

from .conftest import Clock, Home, HomeFactory, fast_rules, settle

HOME = {
    CONF_HOME_NAME: "Oak Lane 3",
    CONF_CURRENCY: "EUR",
    CONF_IMPORT_PRICE: 0.32,
    CONF_EXPORT_PRICE: 0.07,
}


def create_form(address: str, **change: Any) -> dict[str, Any]:
    form = {
        CONF_COMMUNITY_NAME: "Oak Lane",
        CONF_SLOT_MINUTES: "1",
        CONF_GATE_CLOSURE_LEAD_S: 20,
        CONF_FEE: 0.01,
        CONF_CREDIT_LIMIT: 15,
        CONF_FAIR_SHARE_PCT: 60,
        CONF_MAX_MEMBERS: 12,
        CONF_ADDRESS: address,
    }
    form.update(change)
    return form


async def _menu(hass: HomeAssistant) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], HOME)
    assert result["type"] is FlowResultType.MENU
    assert result["step_id"] == "community"
    return result


async def test_config_flow_creates_community(
    hass: HomeAssistant, clock: Clock, http_address: str
) -> None:
    """Home, then "create a community": the entry sets up as the community's founder."""
    result = await _menu(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "create_community"}
    )
    assert result["step_id"] == "create_community"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], create_form("ftp://nowhere")
    )
    assert result["errors"] == {CONF_ADDRESS: "invalid_address"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], create_form(http_address, **{CONF_GATE_CLOSURE_LEAD_S: 3600})
    )
    assert result["errors"] == {CONF_GATE_CLOSURE_LEAD_S: "gate_lead_too_long"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], create_form(http_address + "/")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    entry = result["result"]
    link = entry.runtime_data.federation
    assert link is not None
    assert link.community_name == "Oak Lane"
    rules = link.rules
    assert rules is not None
    assert rules.slot_seconds == 60
    assert rules.fee == 1  # 0.01 EUR/kWh = 1 cent
    assert rules.credit_limit_base == 1_500_000  # 15 EUR in milli-cents
    assert rules.fair_share_bp == 6000
    assert rules.max_members == 12
    assert rules.market.import_price == 32
    assert link.address == http_address
    subentry = community_subentry(entry)
    assert subentry is not None
    assert subentry.data[CONF_COMMUNITY_ACTION] == "member"
    assert subentry.data["community_id"] == link.community_id


async def test_config_flow_joins_community(
    hass: HomeAssistant, clock: Clock, http_address: str, make_home: HomeFactory
) -> None:
    """Home, then "join": the invitation is checked, the home joins after set-up."""
    founder = await make_home("F")
    await founder.link.async_found("Birch Row", fast_rules(), founder.address)
    other = await make_home("O")
    await other.link.async_found("Elsewhere", fast_rules(), other.address)
    good = (await founder.link.async_create_invitation(3_600_000)).encode()
    inv = Invitation.decode(good)
    expired = Invitation(inv.community, inv.inviter, inv.address, b"\1" * 32, clock.now - 1)
    silent = Invitation(
        inv.community, inv.inviter, "http://127.0.0.1:9", b"\2" * 32, inv.expires_ms
    )
    moved = Invitation(inv.community, inv.inviter, other.address, b"\3" * 32, inv.expires_ms)

    result = await _menu(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "join_community"}
    )
    for text, errors in (
        ("hello", {CONF_INVITATION: "invalid_invitation"}),
        (expired.encode(), {CONF_INVITATION: "invitation_expired"}),
        (silent.encode(), {"base": "cannot_connect"}),
        (moved.encode(), {"base": "wrong_community"}),
    ):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_INVITATION: text, CONF_ADDRESS: http_address}
        )
        assert result.get("errors") == errors, (text[:20], result)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_INVITATION: good, CONF_ADDRESS: "nope"}
    )
    assert result["errors"] == {CONF_ADDRESS: "invalid_address"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_INVITATION: f"  {good[:30]}\n{good[30:]} ", CONF_ADDRESS: http_address},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    await hass.async_block_till_done()
    link = entry.runtime_data.link
    assert await link.async_wait_joined(5) is None
    await settle(founder, Home("J", link, http_address))  # the acknowledgement of the welcome
    await hass.async_block_till_done()
    assert entry.runtime_data.federation is not None
    assert entry.runtime_data.federation.community_id == founder.link.community_id
    assert founder.link.members == 2
    subentry = community_subentry(entry)
    assert subentry is not None
    assert subentry.title == "Birch Row"
    assert CONF_INVITATION not in subentry.data  # the one-time secret is not kept


async def test_subentry_flow_adds_one_community(
    hass: HomeAssistant, clock: Clock, http_address: str
) -> None:
    """An entry without a community gets one through "Add community"; only one."""
    from tests.conftest import make_entry

    entry = make_entry(assets={})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.federation is None

    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_COMMUNITY), context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "create_community"}
    )
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], create_form(http_address, **{CONF_GATE_CLOSURE_LEAD_S: 900})
    )
    assert result["errors"] == {CONF_GATE_CLOSURE_LEAD_S: "gate_lead_too_long"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], create_form(http_address)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.runtime_data.federation is not None
    assert entry.runtime_data.federation.community_name == "Oak Lane"

    # A home in a community is not offered "Add community" any more.
    assert SUBENTRY_COMMUNITY not in entry.supported_subentry_types
    with pytest.raises(UnknownHandler):
        await hass.config_entries.subentries.async_init(
            (entry.entry_id, SUBENTRY_COMMUNITY), context={"source": config_entries.SOURCE_USER}
        )


async def test_subentry_join_form_shows(hass: HomeAssistant, http_address: str) -> None:
    """The join step of the subentry flow shows its form and checks the invitation."""
    from tests.conftest import make_entry

    entry = make_entry(assets={})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_COMMUNITY), context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "join_community"}
    )
    assert result["step_id"] == "join_community"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_INVITATION: "peerenergy1:xx", CONF_ADDRESS: http_address}
    )
    assert result["errors"] == {CONF_INVITATION: "invalid_invitation"}


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("http://192.168.1.5:8123", True),
        ("https://home.example.org", True),
        ("http://", False),
        ("http://host/?a=1", False),
        ("ws://host", False),
        ("no scheme", False),
        ("http://[::1", False),
    ],
)
def test_valid_address(address: str, ok: bool) -> None:
    assert valid_address(address) is ok


async def test_subentry_join_then_removed_by_admin(
    hass: HomeAssistant, clock: Clock, http_address: str, make_home: HomeFactory
) -> None:
    """Join through "Add community"; when the admin removes this home, it forgets the
    community and its community entry disappears."""
    from tests.conftest import make_entry

    founder = await make_home("F")
    await founder.link.async_found("Hazel Green", fast_rules(), founder.address)
    text = (await founder.link.async_create_invitation(3_600_000)).encode()
    entry = make_entry(assets={})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_COMMUNITY), context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "join_community"}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_INVITATION: text, CONF_ADDRESS: http_address}
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    await hass.async_block_till_done()
    result = await hass.config_entries.subentries.async_configure(result["flow_id"])
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Hazel Green"
    await settle(founder)
    await hass.async_block_till_done()
    link = entry.runtime_data.federation
    assert link is not None
    assert founder.link.members == 2

    await founder.link.async_remove(link.member_key)
    await settle(founder)
    await hass.async_block_till_done()
    await hass.async_block_till_done()
    assert community_subentry(entry) is None
    assert entry.runtime_data.federation is None
    assert founder.link.members == 1


def test_validate_create_rejects_bad_numbers() -> None:
    """Amounts that are not numbers and rules out of range are form errors."""
    from custom_components.peer_energy.community_flow import validate_create

    form = create_form("http://10.0.0.2:8123", **{CONF_FEE: float("nan")})
    assert validate_create(form, HOME)[1] == {"base": "invalid_amount"}
    form = create_form("http://10.0.0.2:8123", **{CONF_FAIR_SHARE_PCT: 0, CONF_COMMUNITY_NAME: ""})
    assert validate_create(form, HOME)[1] == {
        CONF_COMMUNITY_NAME: "name_required",
        "base": "invalid_rules",
    }


async def test_default_address(hass: HomeAssistant) -> None:
    """The address field proposes Home Assistant's URL, or nothing when there is none."""
    from unittest.mock import patch

    from homeassistant.helpers.network import NoURLAvailableError

    from custom_components.peer_energy.community_flow import default_address

    with patch(
        "custom_components.peer_energy.community_flow.get_url",
        side_effect=NoURLAvailableError,
    ):
        assert default_address(hass) == ""
    with patch(
        "custom_components.peer_energy.community_flow.get_url", return_value="http://h:8123"
    ):
        assert default_address(hass) == "http://h:8123"


async def test_change_address_tells_the_community(
    hass: HomeAssistant, clock: Clock, http_address: str, make_home: HomeFactory
) -> None:
    """The address on the home's "Reconfigure" form is announced to every member."""
    from .conftest import community_entry, join

    entry = community_entry(http_address)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    from .conftest import Home

    a = Home("A", entry.runtime_data.link, http_address)
    b = await make_home("B")
    await join(hass, a, b, [])
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    fields = {str(key) for key in result["data_schema"].schema}
    # In a community: the address is asked, the slot length is the community's rule.
    assert CONF_ADDRESS in fields
    assert CONF_SLOT_MINUTES not in fields
    home = {key: entry.data[key] for key in HOME}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**home, CONF_ADDRESS: "not a url"}
    )
    assert result["errors"] == {CONF_ADDRESS: "invalid_address"}
    new = "http://127.0.0.1:9"
    with patch.object(a.link, "async_set_address", side_effect=FederationError("offline")):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {**home, CONF_ADDRESS: new}
        )
    assert result["errors"] == {CONF_ADDRESS: "address_not_sent"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**home, CONF_ADDRESS: new + "/"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await settle(a, b)
    await hass.async_block_till_done()
    assert b.link.peer is not None
    assert b.link.peer.membership.address_of(a.link.member_key) == new
    assert entry.runtime_data.link.address == new
    assert community_subentry(entry).data[CONF_ADDRESS] == new  # type: ignore[union-attr]
