"""Actions: place_order and export_ledger, with their validation errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import (
    HomeAssistantError,
    ServiceValidationError,
    Unauthorized,
    UnknownUser,
)
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, MockUser
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    WebSocketGenerator,
)

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.market import SlotClock
from custom_components.peer_energy.services import SERVICE_EXPORT_LEDGER, SERVICE_PLACE_ORDER
from tests.market_ha.conftest import GATE, NEXT_SLOT

NEXT_TS = int(NEXT_SLOT.timestamp())


def utc_iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def _order(hass: HomeAssistant, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, SERVICE_PLACE_ORDER, data, blocking=True, return_response=True
    )
    assert isinstance(response, dict)
    return response


async def test_actions_exist_without_an_entry(hass: HomeAssistant) -> None:
    """The actions are registered at integration set-up and explain that nothing is loaded."""
    assert await async_setup_component(hass, DOMAIN, {})
    assert hass.services.has_service(DOMAIN, SERVICE_PLACE_ORDER)
    assert hass.services.has_service(DOMAIN, SERVICE_EXPORT_LEDGER)
    with pytest.raises(ServiceValidationError) as err:
        await _order(hass, side="buy", energy_kwh=1, limit_price=0.2)
    assert err.value.translation_key == "no_entry_loaded"


async def test_place_order_joins_the_home_order(hass: HomeAssistant, market: SlotClock) -> None:
    """A manual buy for the next slot is added to that slot's plan and home order."""
    before = market.plans[NEXT_TS]
    response = await _order(hass, side="buy", energy_kwh=1.5, limit_price=0.25)
    assert response == {
        "order_id": "manual_1",
        "slot_start": NEXT_SLOT.isoformat(),
        "side": "buy",
        "energy_wh": 1500,
        "limit_price_minor": 25,
    }
    plan = market.plans[NEXT_TS]
    assert plan is not before
    assert plan.assets["manual_1"].signed_wh == 1500
    assert plan.assets["manual_1"].reason.code == "manual_order"
    assert sum(b.energy_wh for b in plan.bids if b.side.value == "buy") == 1500 + sum(
        b.energy_wh for b in before.bids if b.side.value == "buy"
    )


async def test_place_order_for_a_later_slot(hass: HomeAssistant, market: SlotClock) -> None:
    """A slot given as a time is the slot containing it; it is planned when its turn comes."""
    later = NEXT_SLOT + timedelta(minutes=40)
    response = await _order(
        hass,
        side="sell",
        energy_kwh=0.2,
        limit_price=0.1,
        slot=later.isoformat(),
        config_entry_id=market.entry.entry_id,
    )
    slot = NEXT_TS + 1800
    assert response["slot_start"] == (NEXT_SLOT + timedelta(minutes=30)).isoformat()
    assert slot not in market.plans
    plan = await market.async_plan_slot(slot)
    assert plan.assets["manual_1"].signed_wh == -200


async def test_next_open_slot_after_gate(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """After the next slot's gate closure, the default slot is the one after it."""
    frozen.move_to(GATE + timedelta(seconds=5))
    response = await _order(hass, side="buy", energy_kwh=1, limit_price=0.2)
    assert response["slot_start"] == (NEXT_SLOT + timedelta(minutes=15)).isoformat()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"energy_kwh": 0}, "invalid_energy"),
        ({"energy_kwh": -1}, "invalid_energy"),
        ({"energy_kwh": 5000}, "invalid_energy"),
        ({"energy_kwh": float("nan")}, "invalid_energy"),
        ({"limit_price": float("inf")}, "invalid_limit_price"),
        ({"slot": "2026-11-22T12:00:00+00:00"}, "slot_closed"),
        ({"slot": "2026-11-22T12:14:30+00:00"}, "slot_closed"),
        ({"slot": "2026-11-24T12:00:00+00:00"}, "slot_too_far"),
        ({"config_entry_id": "nope"}, "entry_not_found"),
    ],
)
async def test_place_order_errors(
    hass: HomeAssistant, market: SlotClock, data: dict[str, Any], key: str
) -> None:
    """Bad input gets a translated validation error and changes nothing."""
    call = {"side": "buy", "energy_kwh": 1, "limit_price": 0.2, **data}
    with pytest.raises(ServiceValidationError) as err:
        await _order(hass, **call)
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == key
    assert not market.manual


async def test_place_order_in_community_refuses_a_second_order(
    hass: HomeAssistant, market: SlotClock
) -> None:
    """In a community an order already sent for the slot is never replaced (equivocation)."""
    market.runtime.federation = SimpleNamespace(  # type: ignore[assignment]
        slot_ms=900_000, gate_closure_lead_ms=60_000, member_key="me" * 16
    )
    assert NEXT_TS in market.plans  # prepared (and sent) when the running slot started
    with pytest.raises(ServiceValidationError) as err:
        await _order(hass, side="buy", energy_kwh=1, limit_price=0.2, slot=NEXT_SLOT.isoformat())
    assert err.value.translation_key == "order_already_sent"
    assert not market.manual


async def test_place_order_in_community_targets_the_next_open_slot(
    hass: HomeAssistant, market: SlotClock, frozen: FrozenDateTimeFactory
) -> None:
    """Without a slot, a member's order goes to the first slot not sent yet: the one after
    the next (the next one's order left when the running slot started), and it is in the
    order that slot's preparation sends."""
    market.runtime.federation = SimpleNamespace(  # type: ignore[assignment]
        slot_ms=900_000, gate_closure_lead_ms=60_000, member_key="me" * 16
    )
    response = await _order(hass, side="buy", energy_kwh=1, limit_price=0.2)
    after = NEXT_TS + 900
    assert response["slot_start"] == utc_iso(after)
    assert after not in market.plans  # not sent now: sent when its turn comes
    assert (await market.async_plan_slot(after)).assets["manual_1"].signed_wh == 1000
    # after the next slot's gate closure: still the one after it
    frozen.move_to(GATE + timedelta(seconds=5))
    response = await _order(hass, side="sell", energy_kwh=1, limit_price=0.2)
    assert response["slot_start"] == utc_iso(after)
    market.runtime.federation = None


async def test_no_open_slot(hass: HomeAssistant, market: SlotClock) -> None:
    """When every slot of the next day is already sent, the caller is told so."""
    market.runtime.federation = SimpleNamespace(  # type: ignore[assignment]
        slot_ms=900_000, gate_closure_lead_ms=60_000, member_key="me" * 16
    )
    plans = dict(market.plans)
    for k in range(100):
        market.plans[NEXT_TS + 900 * k] = market.plans[NEXT_TS]
    with pytest.raises(ServiceValidationError) as err:
        await _order(hass, side="buy", energy_kwh=1, limit_price=0.2)
    assert err.value.translation_key == "no_open_slot"
    market.plans.clear()
    market.plans.update(plans)
    market.runtime.federation = None


async def test_limit_price_within_the_engine_bounds(hass: HomeAssistant, market: SlotClock) -> None:
    """A limit price the engine's orders cannot carry is refused at the call, not at gate
    closure; the bound itself is accepted."""
    with pytest.raises(ServiceValidationError) as err:
        await _order(hass, side="buy", energy_kwh=1, limit_price=1000.01)
    assert err.value.translation_key == "limit_price_out_of_range"
    assert err.value.translation_placeholders == {"max_price": "1000"}
    assert not market.manual
    response = await _order(hass, side="buy", energy_kwh=1, limit_price=-1000)
    assert response["limit_price_minor"] == -100_000
    assert market.plans[NEXT_TS].order is not None


async def test_actions_are_for_administrators(
    hass: HomeAssistant,
    market: SlotClock,
    hass_admin_user: MockUser,
    hass_read_only_user: MockUser,
) -> None:
    """A non-admin user may neither commit the home to a trade nor read its ledger; an
    administrator and Home Assistant itself (no user: automations) may."""
    for service, data in (
        (SERVICE_PLACE_ORDER, {"side": "buy", "energy_kwh": 1, "limit_price": 0.2}),
        (SERVICE_EXPORT_LEDGER, {"format": "json"}),
    ):
        with pytest.raises(Unauthorized):
            await hass.services.async_call(
                DOMAIN,
                service,
                data,
                blocking=True,
                return_response=True,
                context=Context(user_id=hass_read_only_user.id),
            )
        with pytest.raises(UnknownUser):
            await hass.services.async_call(
                DOMAIN,
                service,
                data,
                blocking=True,
                return_response=True,
                context=Context(user_id="no-such-user"),
            )
        assert len(market.manual.get(NEXT_TS, [])) == (0 if service == SERVICE_PLACE_ORDER else 2)
        for context in (Context(user_id=hass_admin_user.id), Context()):
            response = await hass.services.async_call(
                DOMAIN, service, data, blocking=True, return_response=True, context=context
            )
            assert response
    assert len(market.manual[NEXT_TS]) == 2


async def test_place_order_over_rest(
    hass: HomeAssistant,
    market: SlotClock,
    hass_client: ClientSessionGenerator,
    hass_read_only_access_token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over the REST API: an administrator's order without a slot is accepted (200 with
    the response); a non-admin gets 401; a refusal is a 400 carrying the reason, changes
    nothing and logs no error (no traceback)."""
    assert await async_setup_component(hass, "api", {})
    client = await hass_client()
    url = f"/api/services/{DOMAIN}/{SERVICE_PLACE_ORDER}?return_response"
    resp = await client.post(url, json={"side": "buy", "energy_kwh": 1, "limit_price": 0.2})
    assert resp.status == 200
    body = await resp.json()
    assert body["service_response"]["slot_start"] == NEXT_SLOT.isoformat()
    reader = await hass_client(hass_read_only_access_token)
    resp = await reader.post(url, json={"side": "buy", "energy_kwh": 1, "limit_price": 0.2})
    assert resp.status == 401
    resp = await client.post(url, json={"side": "up", "energy_kwh": 1, "limit_price": 0.2})
    assert resp.status == 400  # schema
    caplog.clear()
    for data, words in (
        ({"energy_kwh": 0}, "energy"),
        ({"slot": "2026-11-22T12:00:00+00:00"}, "2026-11-22T12:00:00+00:00 are closed"),
        ({"slot": NEXT_SLOT.isoformat()}, None),  # accepted: a second manual order
    ):
        call = {"side": "buy", "energy_kwh": 1, "limit_price": 0.2, **data}
        resp = await client.post(url, json=call)
        if words is None:
            assert resp.status == 200
            continue
        assert resp.status == 400
        assert words in (await resp.json())["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(market.manual[NEXT_TS]) == 2


async def _place_order_over_websocket(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, data: dict[str, Any]
) -> dict[str, Any]:
    """Call ``place_order`` the way the UI does and return the websocket's answer."""
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {
            "type": "call_service",
            "domain": DOMAIN,
            "service": SERVICE_PLACE_ORDER,
            "service_data": data,
            "return_response": True,
        }
    )
    msg: dict[str, Any] = await client.receive_json()
    return msg


async def test_closed_slot_over_websocket(
    hass: HomeAssistant, market: SlotClock, hass_ws_client: WebSocketGenerator
) -> None:
    """The UI's path for a slot whose gate has closed: the translated validation error."""
    msg = await _place_order_over_websocket(
        hass,
        hass_ws_client,
        {"side": "buy", "energy_kwh": 1, "limit_price": 0.2, "slot": "2026-11-22T12:00:00+00:00"},
    )
    assert not msg["success"]
    assert msg["error"]["code"] == "service_validation_error"
    assert msg["error"]["translation_key"] == "slot_closed"
    assert msg["error"]["translation_placeholders"] == {"slot": "2026-11-22T12:00:00+00:00"}
    assert "are closed" in msg["error"]["message"]
    assert not market.manual


async def test_place_order_errors_over_websocket(
    hass: HomeAssistant, market: SlotClock, hass_ws_client: WebSocketGenerator
) -> None:
    """The UI's path: a refusal arrives as a translated service validation error."""
    msg = await _place_order_over_websocket(
        hass, hass_ws_client, {"side": "buy", "energy_kwh": 1, "limit_price": 5000}
    )
    assert not msg["success"]
    assert msg["error"]["code"] == "service_validation_error"
    assert msg["error"]["translation_key"] == "limit_price_out_of_range"
    assert not market.manual


async def test_entry_not_loaded(
    hass: HomeAssistant, market: SlotClock, init_integration: MockConfigEntry
) -> None:
    """An entry that is not loaded is named in the error."""
    await hass.config_entries.async_unload(init_integration.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await _order(
            hass,
            side="buy",
            energy_kwh=1,
            limit_price=0.2,
            config_entry_id=init_integration.entry_id,
        )
    assert err.value.translation_key == "entry_not_loaded"


async def test_export_ledger_csv_and_json(hass: HomeAssistant, market: SlotClock) -> None:
    """The ledger comes back as CSV text or JSON data in the response."""
    csv = await hass.services.async_call(
        DOMAIN, SERVICE_EXPORT_LEDGER, {"format": "csv"}, blocking=True, return_response=True
    )
    assert csv is not None
    assert csv["format"] == "csv"
    assert str(csv["content"]).startswith("kind,id,ts_ms")
    data = await hass.services.async_call(
        DOMAIN, SERVICE_EXPORT_LEDGER, {"format": "json"}, blocking=True, return_response=True
    )
    assert data is not None
    assert data["data"]["format"] == "peer-energy-ledger"  # type: ignore[index]
    assert data["data"]["member"] == market.runtime.ledger.member  # type: ignore[index,union-attr]


async def test_export_ledger_to_file(hass: HomeAssistant, market: SlotClock) -> None:
    """Without asking for a response the export is written to a file."""
    await hass.services.async_call(DOMAIN, SERVICE_EXPORT_LEDGER, {"format": "json"}, blocking=True)
    folder = Path(hass.config.path("peer_energy_exports"))
    files = await hass.async_add_executor_job(lambda: sorted(folder.glob("ledger_*.json")))
    assert len(files) == 1
    content = await hass.async_add_executor_job(files[0].read_text)
    assert json.loads(content)["format"] == "peer-energy-ledger"
    response = await hass.services.async_call(
        DOMAIN,
        SERVICE_EXPORT_LEDGER,
        {"format": "csv", "write_file": True},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert str(response["path"]).endswith(".csv")


async def test_export_ledger_errors(hass: HomeAssistant, market: SlotClock) -> None:
    """No ledger, or a failing one, gives a clear translated error."""
    ledger = market.runtime.ledger
    market.runtime.ledger = None
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN, SERVICE_EXPORT_LEDGER, {}, blocking=True, return_response=True
        )
    assert err.value.translation_key == "no_ledger"

    class Broken:
        async def async_export(self, fmt: str) -> str:
            raise OSError("disk full")

    market.runtime.ledger = Broken()  # type: ignore[assignment]
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN, SERVICE_EXPORT_LEDGER, {}, blocking=True, return_response=True
        )
    assert err.value.translation_key == "export_failed"
    assert "disk full" in str(err.value.translation_placeholders)
    market.runtime.ledger = ledger
