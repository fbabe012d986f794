"""Creating and joining an MQTT community through the forms, against a real Mosquitto:
the broker is checked when the form is sent, the invitation carries the broker (never the
password), the joiner gives only credentials, and diagnostics redact them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from homeassistant import config_entries
from homeassistant.components import persistent_notification
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
import pytest

from custom_components.peer_energy.const import (
    CONF_ADDRESS,
    CONF_BROKER_PASSWORD,
    CONF_BROKER_URL,
    CONF_BROKER_USERNAME,
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
    CONF_TOPIC_PREFIX,
    CONF_TRANSPORT,
    DOMAIN,
)
from custom_components.peer_energy.core.federation.community import Invitation
from custom_components.peer_energy.diagnostics import async_get_config_entry_diagnostics
from custom_components.peer_energy.federation import FederationLink
from custom_components.peer_energy.federation_setup import community_subentry
from custom_components.peer_energy.mqtt_transport import BrokerConfig, MqttCarrier
from tests.federation.helpers import make_identity, rules

from .conftest import Broker, _free_port

HOME = {
    CONF_HOME_NAME: "Oak Lane 3",
    CONF_CURRENCY: "EUR",
    CONF_IMPORT_PRICE: 0.32,
    CONF_EXPORT_PRICE: 0.07,
}


def create_form(**change: Any) -> dict[str, Any]:
    form = {
        CONF_COMMUNITY_NAME: "Broker Lane",
        CONF_SLOT_MINUTES: "15",
        CONF_GATE_CLOSURE_LEAD_S: 60,
        CONF_FEE: 0.01,
        CONF_CREDIT_LIMIT: 15,
        CONF_FAIR_SHARE_PCT: 60,
        CONF_MAX_MEMBERS: 12,
        CONF_ADDRESS: "",
        CONF_TRANSPORT: "mqtt",
        CONF_TOPIC_PREFIX: "lane",
    }
    form.update(change)
    return form


async def _step(hass: HomeAssistant, step: str) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], HOME)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": step}
    )
    assert result["step_id"] == step
    return result


async def _until(cond: Callable[[], bool], wait_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + wait_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_create_an_mqtt_community_through_the_form(
    hass: HomeAssistant, mosquitto_factory: Callable[..., Broker]
) -> None:
    broker = mosquitto_factory(users={"anna": "s3cret-pw"})
    result = await _step(hass, "create_community")
    flow = result["flow_id"]
    configure = hass.config_entries.flow.async_configure
    for change, errors in (
        ({CONF_BROKER_URL: "http://x"}, {CONF_BROKER_URL: "invalid_broker"}),
        ({CONF_BROKER_URL: "mqtt://u:p@host"}, {CONF_BROKER_URL: "invalid_broker"}),
        (
            {CONF_BROKER_URL: broker.url, CONF_TOPIC_PREFIX: "a/#"},
            {CONF_TOPIC_PREFIX: "invalid_prefix"},
        ),
        ({CONF_BROKER_URL: f"mqtt://127.0.0.1:{_free_port()}"}, {"base": "broker_unreachable"}),
        (
            {CONF_BROKER_URL: broker.url, CONF_BROKER_USERNAME: "anna", CONF_BROKER_PASSWORD: "no"},
            {"base": "broker_refused"},
        ),
    ):
        result = await configure(flow, create_form(**change))
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == errors
    result = await configure(
        flow,
        create_form(
            **{
                CONF_BROKER_URL: broker.url,
                CONF_BROKER_USERNAME: "anna",
                CONF_BROKER_PASSWORD: "s3cret-pw",
            }
        ),
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    entry = result["result"]
    link = entry.runtime_data.federation
    assert link is not None
    assert link.transport_kind == "mqtt"
    assert link.address is not None
    assert link.address.startswith("mqtt:")
    await _until(lambda: link.broker_state is not None and link.broker_state.status == "connected")
    subentry = community_subentry(entry)
    assert subentry is not None
    assert subentry.data[CONF_COMMUNITY_ACTION] == "member"
    assert subentry.data[CONF_BROKER_PASSWORD] == "s3cret-pw"  # kept for reconnecting
    assert subentry.data[CONF_TOPIC_PREFIX] == "lane"
    invitation = await link.async_create_invitation(3_600_000)
    text = invitation.encode()
    decoded = Invitation.decode(text)
    assert (decoded.broker, decoded.prefix) == (broker.url, "lane")
    assert "s3cret" not in text
    assert "anna" not in str(decoded)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert "s3cret-pw" not in str(diagnostics)
    assert diagnostics["federation"]["transport"] == "mqtt"
    await hass.config_entries.async_unload(entry.entry_id)


async def test_join_an_mqtt_community_through_the_form(
    hass: HomeAssistant, mosquitto: Broker
) -> None:
    founder = FederationLink(
        hass,
        "entry_founder",
        make_identity("founder"),
        MqttCarrier(hass.loop, BrokerConfig.from_url(mosquitto.url, prefix="lane")),
        schedule=False,
        announce=False,
    )
    await founder.async_found("Broker Lane", rules(), "")
    founder.async_start()
    try:
        text = (await founder.async_create_invitation(3_600_000)).encode()
        result = await _step(hass, "join_community")
        # No address is asked for a broker community (an empty one is fine).
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_INVITATION: text, CONF_ADDRESS: ""}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        entry = result["result"]
        await hass.async_block_till_done()
        await _until(lambda: founder.members == 2)
        # Joined: the subentry becomes a member's and the entry reloads.
        await _until(
            lambda: (s := community_subentry(entry)) is not None
            and s.data[CONF_COMMUNITY_ACTION] == "member"
        )
        await hass.async_block_till_done()
        await _until(lambda: entry.state is ConfigEntryState.LOADED)
        link = entry.runtime_data.federation
        assert link is not None
        assert link.joined
        assert link.transport_kind == "mqtt"
        assert link.community_name == "Broker Lane"
        await _until(
            lambda: link.broker_state is not None and link.broker_state.status == "connected"
        )
        subentry = community_subentry(entry)
        assert subentry is not None
        assert subentry.data[CONF_BROKER_URL] == mosquitto.url
        assert subentry.data[CONF_TOPIC_PREFIX] == "lane"
        # Deleting the entry says goodbye over the broker: the founder is alone again.
        await hass.config_entries.async_remove(entry.entry_id)
        await _until(lambda: founder.members == 1)
    finally:
        await founder.async_stop()


async def test_a_join_of_a_broken_broker_invitation_is_refused(hass: HomeAssistant) -> None:
    """An invitation naming a broker URL that cannot be used (no host) is refused on the
    form, without connecting anywhere."""
    inviter = make_identity("inviter").public_key
    bad = Invitation("c" * 32, inviter, "mqtt:" + "0" * 32, b"\1" * 32, 2**62, "mqtt://", "p")
    result = await _step(hass, "join_community")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_INVITATION: bad.encode(), CONF_ADDRESS: ""}
    )
    assert result["errors"] == {CONF_INVITATION: "invalid_invitation"}


async def test_an_unusable_broker_in_the_entry_falls_back_to_http(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture, socket_enabled: None
) -> None:
    """Entry data naming a broker that cannot be used (edited by hand): the home starts on
    HTTP and the log says why; a damaged invitation is ignored the same way (on HTTP the
    home probes its own address, a closed loopback port here)."""
    from tests.federation_ha.conftest import community_entry, fast_rules

    entry = community_entry(
        "http://127.0.0.1:9",
        community={
            CONF_COMMUNITY_ACTION: "create",
            CONF_COMMUNITY_NAME: "Elm Street",
            CONF_ADDRESS: "http://127.0.0.1:9",
            "rules": fast_rules().to_dict(),
            CONF_TRANSPORT: "mqtt",
            CONF_BROKER_URL: "ftp://nowhere",
            CONF_INVITATION: "damaged",
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    link = entry.runtime_data.federation
    assert link is not None
    assert link.transport_kind == "http"
    assert "broker cannot be used" in caplog.text
    await hass.config_entries.async_unload(entry.entry_id)


def _suggested(form: dict[str, Any]) -> dict[str, Any]:
    """What a form (as JSON, like the browser gets it) shows prefilled."""
    return {
        field["name"]: (field.get("description") or {}).get("suggested_value")
        for field in form["data_schema"]
    }


async def test_reconfigure_changes_the_broker_and_its_credentials(
    hass: HomeAssistant,
    hass_client: Any,
    mosquitto_factory: Callable[..., Broker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The entry's Reconfigure step of a home in an MQTT community asks for the broker's
    URL, username and password (not the HTTP address); an empty password keeps the stored
    one; a changed broker is connected to once, with translated errors on the fields; and
    the password shows up nowhere: not in what the flows send to the browser (forms,
    results), the entry, the repairs, the notifications, the diagnostics or the log."""
    from homeassistant.setup import async_setup_component

    caplog.set_level("DEBUG")
    first_pw, second_pw = "first-s3cret-pw", "second-s3cret-pw"
    broker = mosquitto_factory(users={"anna": first_pw, "ben": second_pw})
    from custom_components.peer_energy.http import async_register_views

    assert await async_setup_component(hass, "config", {})
    # The test server freezes its router when it starts: the views the set-up registers,
    # and those of the image component (the invitation's QR image), go in first.
    async_register_views(hass)
    assert await async_setup_component(hass, "image", {})
    client = await hass_client()
    shown: list[str] = []  # every answer the browser got

    async def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(f"/api/config/config_entries/flow{url}", json=body)
        assert response.status == 200, await response.text()
        shown.append(await response.text())
        answer: dict[str, Any] = await response.json()
        return answer

    form = await post("", {"handler": DOMAIN})
    form = await post(f"/{form['flow_id']}", HOME)
    form = await post(f"/{form['flow_id']}", {"next_step_id": "create_community"})
    login = {CONF_BROKER_USERNAME: "anna", CONF_BROKER_PASSWORD: first_pw}
    done = await post(f"/{form['flow_id']}", create_form(**{CONF_BROKER_URL: broker.url, **login}))
    assert done["type"] == "create_entry"
    await hass.async_block_till_done()
    entry = hass.config_entries.async_get_entry(done["result"]["entry_id"])
    assert entry is not None

    def connected() -> bool:
        link = entry.runtime_data.federation if entry.state is ConfigEntryState.LOADED else None
        status = link.broker_state.status if link and link.broker_state else None
        return status == "connected"

    await _until(connected)
    subentry = community_subentry(entry)
    assert subentry is not None
    assert subentry.data[CONF_BROKER_PASSWORD] == first_pw  # kept for reconnecting
    assert CONF_BROKER_PASSWORD not in entry.data
    form = await post("", {"handler": DOMAIN, "entry_id": entry.entry_id})
    assert form["step_id"] == "reconfigure"
    values = _suggested(form)
    assert CONF_ADDRESS not in values  # an MQTT home has no address to change
    assert values[CONF_BROKER_URL] == broker.url
    assert values[CONF_BROKER_USERNAME] == "anna"
    assert values[CONF_BROKER_PASSWORD] is None  # never prefilled
    home = {**HOME, CONF_BROKER_URL: broker.url, CONF_BROKER_USERNAME: "anna"}
    unreachable = f"mqtt://127.0.0.1:{_free_port()}"
    for change, errors in (
        ({CONF_BROKER_URL: "http://x"}, {CONF_BROKER_URL: "invalid_broker"}),
        ({CONF_BROKER_URL: unreachable}, {CONF_BROKER_URL: "broker_unreachable"}),
        ({CONF_BROKER_PASSWORD: "wrong-pw"}, {CONF_BROKER_PASSWORD: "broker_refused"}),
        ({CONF_BROKER_USERNAME: "ben"}, {CONF_BROKER_PASSWORD: "broker_refused"}),  # anna's pw
    ):
        form = await post(f"/{form['flow_id']}", {**home, **change})
        assert form["type"] == "form"
        assert form["errors"] == errors
        assert _suggested(form)[CONF_BROKER_PASSWORD] is None
    # Nothing changed on the broker (an empty password keeps the stored one): saved
    # without a check, the password kept.
    done = await post(f"/{form['flow_id']}", {**home, CONF_HOME_NAME: "Oak Lane 5"})
    assert done["type"] == "abort"
    assert done["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    subentry = community_subentry(entry)
    assert subentry is not None
    assert subentry.data[CONF_BROKER_PASSWORD] == first_pw
    assert entry.title == "Oak Lane 5"
    await _until(connected)
    # The community's broker moved and the home has a new login: checked, saved, used.
    moved = mosquitto_factory(users={"ben": second_pw})
    form = await post("", {"handler": DOMAIN, "entry_id": entry.entry_id})
    moved_login = {CONF_BROKER_USERNAME: "ben", CONF_BROKER_PASSWORD: second_pw}
    done = await post(f"/{form['flow_id']}", {**home, CONF_BROKER_URL: moved.url, **moved_login})
    assert done["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    subentry = community_subentry(entry)
    assert subentry is not None
    assert subentry.data[CONF_BROKER_URL] == moved.url
    assert subentry.data[CONF_BROKER_USERNAME] == "ben"
    assert subentry.data[CONF_BROKER_PASSWORD] == second_pw
    assert subentry.data[CONF_TOPIC_PREFIX] == "lane"  # the community's, unchanged
    await _until(connected)
    link = entry.runtime_data.federation
    assert link.carrier.config.url == moved.url
    # The broker goes away: a repair names the broker, never the password.
    moved.stop()
    await _until(lambda: any(d == DOMAIN for d, _ in ir.async_get(hass).issues), 60)
    invitation = (await link.async_create_invitation(60_000)).encode()
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    issues = [
        (i.translation_key, i.translation_placeholders)
        for (d, _), i in ir.async_get(hass).issues.items()
        if d == DOMAIN
    ]
    places = {
        "what the flows sent to the browser": shown,
        "flows in progress": hass.config_entries.flow.async_progress(),
        "entry title and data": (entry.title, dict(entry.data), dict(entry.options)),
        "subentry titles": [s.title for s in entry.subentries.values()],
        "diagnostics": diagnostics,
        "repairs": issues,
        "notifications": persistent_notification._async_get_or_create_notifications(hass),
        "invitation": invitation,
        "log": caplog.text,
    }
    for place, what in places.items():
        for secret in (first_pw, second_pw):
            assert secret not in str(what), place
    await hass.config_entries.async_unload(entry.entry_id)


def test_broker_repairs_point_to_reconfigure() -> None:
    """The repairs of a broker that is unreachable or refuses the home say where to change
    it (Reconfigure), in every language."""
    import json
    from pathlib import Path

    import custom_components.peer_energy as integration

    folder = Path(integration.__file__).parent / "translations"
    words = {
        "en": "Reconfigure",
        "de": "Neu konfigurieren",
        "nl": "Opnieuw configureren",
        "fr": "Reconfigurer",
    }
    for language, word in words.items():
        issues = json.loads((folder / f"{language}.json").read_text())["issues"]
        for key in ("broker_unreachable", "broker_bad_credentials", "broker_not_authorized"):
            assert word in issues[key]["description"], (language, key)
