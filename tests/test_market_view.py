"""The market view: the ``peer_energy/market`` websocket command and the sidebar panel."""

from __future__ import annotations

from datetime import timedelta
import json
from pathlib import Path
import shutil
import subprocess
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import frontend
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.core.market.clearing import clear_slot
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side
from custom_components.peer_energy.core.trust.credit import TradeTerms
from custom_components.peer_energy.core.trust.ledger_db import LedgerDBError, StoredRecord
from custom_components.peer_energy.ledger import identity_store
from custom_components.peer_energy.market import SlotClock
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry
from custom_components.peer_energy.websocket_api import (
    PANEL_FILE,
    PANEL_URL_PATH,
    STATIC_URL,
    WS_TYPE_MARKET,
    _async_records,
    _credit,
    _int,
    _reputation,
    _side,
    _terms,
    async_market_view,
    async_register_panel,
)
from tests.conftest import BATTERY_ID, GRID_ID, PV_ID
from tests.federation_ha.conftest import (  # noqa: F401 (fixtures)
    Clock,
    Home,
    HomeFactory,
    clock,
    fast_rules,
    home_a,
    http_address,
    join,
    make_home,
    next_slot,
    run_slot,
    settle,
    tick_all,
)
from tests.market_ha.conftest import (  # noqa: F401 (fixtures)
    GATE,
    MARKET_STATES,
    NEXT_SLOT,
    START,
    control_mode,
    frozen,
    market,
    mock_config_entry,
    platforms,
)

NEXT_TS = int(NEXT_SLOT.timestamp())
STRINGS = json.loads(
    (Path(__file__).parent.parent / "custom_components" / DOMAIN / "strings.json").read_text()
)
SENSORS = STRINGS["entity"]["sensor"]
REASON_TEXTS = SENSORS["market_reason"]["state"]
TOP_KEYS = {
    "entry_id",
    "home_name",
    "member_id",
    "currency",
    "price_digits",
    "now",
    "slot_seconds",
    "gate_lead_seconds",
    "control_mode",
    "community",
    "home_now",
    "current",
    "next",
    "history",
    "plan",
    "trades",
    "settlements",
    "credit",
    "totals",
    "reputation",
    "savings",
    "entities",
}


@pytest.fixture
async def frontend_loaded(hass: HomeAssistant) -> None:
    """The frontend and custom panels, as in every Home Assistant with a user interface."""
    assert await async_setup_component(hass, "panel_custom", {})


@pytest.fixture
def source_states(
    hass: HomeAssistant, frontend_loaded: None
) -> dict[str, tuple[str, dict[str, Any]]]:
    """The market sources (set after the frontend, so the entry registers its panel), in
    Amsterdam, where the sun is up at START (the PV forecast follows the PV power now)."""
    hass.config.latitude, hass.config.longitude = 52.37, 4.90
    for entity_id, (state, attributes) in MARKET_STATES.items():
        hass.states.async_set(entity_id, state, attributes)
    return MARKET_STATES


async def _advance(hass: HomeAssistant, freezer: FrozenDateTimeFactory, when: Any) -> None:
    freezer.move_to(when)
    async_fire_time_changed(hass, when)
    await hass.async_block_till_done()


async def _view(hass_ws_client: Any, hass: HomeAssistant, **extra: Any) -> dict[str, Any]:
    client = await hass_ws_client(hass)
    await client.send_json_auto_id({"type": WS_TYPE_MARKET, **extra})
    msg = await client.receive_json()
    assert msg["success"], msg
    result: dict[str, Any] = msg["result"]
    return result


async def _secrets(hass: HomeAssistant, entry_id: str) -> list[str]:
    stored = await identity_store(hass, entry_id).async_load()
    assert stored is not None
    return [str(value) for value in stored.values()]


RENDER_SCRIPT = Path(__file__).parent / "market_view_render.mjs"
TRANSLATIONS = PANEL_FILE.parent / "translations"


def _rendered(view: dict[str, Any], tmp_path: Path, language: str = "en") -> str | None:
    """The panel's text for ``view`` in ``language``, rendered by node with a stand-in DOM
    (None without node: only this check is then skipped; the browser tests always render
    the panel in Chromium)."""
    if shutil.which("node") is None:
        return None
    data = tmp_path / "view.json"
    data.write_text(json.dumps(view), encoding="utf-8")
    # The entity translations as frontend/get_translations returns them (English).
    prefix = f"component.{DOMAIN}.entity.sensor."
    resources = {f"{prefix}{key}.name": item["name"] for key, item in SENSORS.items()} | {
        f"{prefix}{key}.state.{code}": text
        for key in ("market_reason", "reputation_status")
        for code, text in SENSORS[key]["state"].items()
    }
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(resources), encoding="utf-8")
    done = subprocess.run(
        ["node", str(RENDER_SCRIPT), str(PANEL_FILE), str(data), str(texts), language],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_market_view_of_a_cleared_slot(
    hass: HomeAssistant,
    tmp_path: Path,
    market: SlotClock,  # noqa: F811
    frozen: FrozenDateTimeFactory,  # noqa: F811
    hass_ws_client: Any,
) -> None:
    """The command returns the running and next slot, the day, credit and totals."""
    entry: PeerEnergyConfigEntry = market.entry
    view = await _view(hass_ws_client, hass)
    assert set(view) == TOP_KEYS
    assert view["entry_id"] == entry.entry_id
    assert view["home_name"] == "Maple Street 7"
    assert (view["currency"], view["slot_seconds"], view["gate_lead_seconds"]) == ("EUR", 900, 60)
    assert view["control_mode"] == "advise"
    assert view["community"] is None
    # Before the gate closure the next slot is open: its order is known, its outcome not.
    assert view["current"]["status"] == "unknown"
    nxt = view["next"]
    assert nxt["status"] == "open"
    assert nxt["slot_start"] == NEXT_SLOT.isoformat()
    assert nxt["gate_closure"] == GATE.isoformat()
    assert nxt["outcome"] is None
    assert nxt["import_price"] == {"value": 0.3, "minor": 30}
    assert nxt["feed_in_tariff"] == {"value": 0.08, "minor": 8}
    plan = market.plans[NEXT_TS]
    assert plan.order is not None
    assert nxt["order"]["side"] == plan.order.side.value
    assert nxt["order"]["energy_wh"] == plan.order.energy_wh
    assets = {row["id"]: row for row in nxt["assets"]}
    assert assets[PV_ID]["name"] == "Roof PV"
    assert assets[PV_ID]["kind"] == "pv"
    assert assets[PV_ID]["order_wh"] == plan.assets[PV_ID].signed_wh
    assert -640 <= plan.assets[PV_ID].signed_wh <= -600  # 2500 W for 15 minutes, sun-shaped
    pv_reason = plan.assets[PV_ID].reason
    assert pv_reason.code == "pv_surplus"
    assert assets[PV_ID]["reason"] == {"code": "pv_surplus", "params": dict(pv_reason.params)}
    assert assets[PV_ID]["bids"][0]["side"] == "sell"
    assert assets[PV_ID]["bids"][0]["steps"][0]["wh"] == -plan.assets[PV_ID].signed_wh
    assert assets[GRID_ID]["reason"]["code"] == "meter_only"
    assert assets[PV_ID]["reason_entity_id"] == "sensor.roof_pv_reason"
    # What each device does now, from its own sensors (positive: produces, discharges,
    # consumes, imports), next to what the market plans for it.
    assert assets[PV_ID]["now"] == {"power_w": 2500, "soc_pct": None}
    assert assets[BATTERY_ID]["now"] == {"power_w": -800, "soc_pct": 55.0}
    assert assets["base_load"]["now"] is None
    data = entry.runtime_data.coordinator.data
    assert view["home_now"] == {
        "grid_power_w": 500,
        "grid_source": "grid_meter",
        "pv_surplus_w": data.pv_surplus_w,
    }
    assert assets["base_load"]["name"] is None
    assert assets["base_load"]["kind"] == "base_load"
    assert assets["base_load"]["reason_entity_id"] is None
    assert "sensor.maple_street_7_clearing_price" in view["entities"]
    assert "sensor.roof_pv_reason" in view["entities"]
    rendered = _rendered(view, tmp_path)
    if rendered is not None:
        lines = rendered.splitlines()
        statuses = [t for t in lines if t in ("no plan yet", "orders open")]
        assert statuses == ["no plan yet", "orders open"]
        assert REASON_TEXTS["pv_surplus"] in lines

    # At the gate closure the home clears alone: the next slot has its local outcome.
    await _advance(hass, frozen, GATE)
    report = market.reports[NEXT_TS]
    assert report.price is not None
    view = await _view(hass_ws_client, hass, entry_id=entry.entry_id)
    nxt = view["next"]
    assert nxt["status"] == "local"
    outcome = nxt["outcome"]
    assert outcome["price"] == {"value": report.price / 100, "minor": report.price}
    assert outcome["position_wh"] == report.position_wh
    assert (outcome["bought_wh"], outcome["sold_wh"], outcome["void"]) == (0, 0, False)
    assets = {row["id"]: row for row in nxt["assets"]}
    for key, reason in report.reasons.items():
        assert assets[key]["reason"] == {"code": reason.code, "params": dict(reason.params)}
        # The panel renders the text from the reason sensor's translations.
        assert reason.code in REASON_TEXTS
    battery = report.allocations[BATTERY_ID]
    assert assets[BATTERY_ID]["allocation"] == {
        "energy_wh": battery.energy_wh,
        "market_wh": battery.market_wh,
        "internal_wh": battery.internal_wh,
        "grid_wh": battery.grid_wh,
    }
    assert [row["slot_start"] for row in view["history"]] == [NEXT_SLOT.isoformat()]
    assert view["history"][0]["price_minor"] == report.price

    # The slot starts: it is the running slot, with its advice; the one after is planned.
    await _advance(hass, frozen, NEXT_SLOT)
    # A price from before a restart (no outcome in memory) still shows in the day.
    earlier = NEXT_TS - 3600
    market.prices[earlier] = 12
    # A neighbour takes the other side of the following slot's order, with more than the
    # home wants: its price (a seller under retail, a buyer over the feed-in tariff) sets
    # the clearing price, so the trade really saves money.
    later = NEXT_TS + 900
    order = market.plans[later].order
    assert order is not None
    bought = order.side is Side.BUY
    energy = order.energy_wh
    assert energy > 0
    counter = Order.single(
        "p1", "ab" * 32, Side.SELL if bought else Side.BUY, later, energy + 400, 9 if bought else 29
    )
    result = clear_slot([order, counter], MarketRules(30, 8), slot_start=later)
    own = tuple(f for f in result.fills if market.member in (f.buyer, f.seller))
    market.async_handle_outcome(
        SimpleNamespace(slot_start_ms=later * 1000, result=result, void_reason=None, own_fills=own)
    )
    await hass.async_block_till_done()
    view = await _view(hass_ws_client, hass)
    current = view["current"]
    assert current["status"] == "local"
    assert current["slot_start"] == NEXT_SLOT.isoformat()
    actions = {row["id"]: row["actions"] for row in current["assets"]}
    assert actions[BATTERY_ID] == [
        {
            "call": a.describe(),
            "service": f"{a.domain}.{a.service}",
            "entity_id": a.entity_id,
            "value": a.data.get("value", a.data.get("option")),
            "applied": False,
            "error": None,
        }
        for a in market.actions[BATTERY_ID]
    ]
    assert actions[BATTERY_ID]
    nxt = view["next"]
    assert nxt["status"] == "cleared"
    assert nxt["outcome"]["price"]["minor"] == result.general_price
    traded = (energy, 0) if bought else (0, energy)
    assert (nxt["outcome"]["bought_wh"], nxt["outcome"]["sold_wh"]) == traded
    money = sum(f.energy_wh * f.price for f in own)
    key = "paid_mmu" if bought else "received_mmu"
    assert nxt["outcome"][key] == money
    history = view["history"]
    assert [row["slot_start"] for row in history] == [
        (NEXT_SLOT - timedelta(hours=1)).isoformat(),
        NEXT_SLOT.isoformat(),
        (NEXT_SLOT + timedelta(minutes=15)).isoformat(),
    ]
    assert history[0] == {
        "slot_start": (NEXT_SLOT - timedelta(hours=1)).isoformat(),
        "price": 0.12,
        "price_minor": 12,
        "clean_price": None,
        "bought_wh": None,
        "sold_wh": None,
        "position_wh": None,
        "void": False,
        "void_reason": None,
        "local": None,
    }
    assert (history[2]["bought_wh"], history[2]["sold_wh"]) == traded
    assert history[2]["local"] is False
    assert view["totals"]["bought_wh" if bought else "sold_wh"] == energy
    assert view["totals"]["spent_mmu" if bought else "earned_mmu"] == money
    # Saved versus not trading: the energy at the neighbour's price instead of the grid's.
    assert result.general_price == (9 if bought else 29)
    plan = market.plans[later]
    grid = energy * (plan.import_price if bought else plan.feed_in_tariff)
    saved = grid - money if bought else money - grid
    assert saved == energy * (plan.import_price - 9 if bought else 29 - plan.feed_in_tariff)
    assert saved > 0
    day = {"value": saved / 100_000, "mmu": saved}
    assert view["savings"] == {
        "today": day,
        "month": day,
        "since_joining": day,
        "since": NEXT_SLOT.date().isoformat(),
        "delivery_settlements": {
            "count": 0,
            "payment": {"value": 0.0, "mmu": 0},
            "saving": {"value": 0.0, "mmu": 0},
        },
    }
    total = hass.states.get("sensor.maple_street_7_saved_in_total")
    assert total is not None
    assert float(total.state) == saved / 100_000
    assert total.attributes["saving_mmu"] == saved
    # The home's ledger: balance and limit, exact and in euros; no trades without peers.
    ledger = entry.runtime_data.ledger
    assert ledger is not None
    assert view["credit"] == {
        "balance": ledger.balance() / 100_000,
        "balance_mmu": ledger.balance(),
        "limit": ledger.credit_limit() / 100_000,
        "limit_mmu": ledger.credit_limit(),
        # What the home may still buy for before its balance reaches -limit.
        "available": (ledger.balance() + ledger.credit_limit()) / 100_000,
        "available_mmu": ledger.balance() + ledger.credit_limit(),
    }
    assert view["trades"] == view["settlements"] == []
    assert view["reputation"] == {"own": None, "peers": []}
    # Nothing secret, and this home's id only in its short form.
    text = json.dumps(view)
    for secret in await _secrets(hass, entry.entry_id):
        assert secret not in text
    assert view["member_id"] == ledger.member[:8]
    assert ledger.member not in text
    # The panel shows it: both slots, every asset with its reason in words, the day.
    rendered = _rendered(view, tmp_path)
    if rendered is not None:
        lines = rendered.splitlines()
        assert lines[0] == "CALLS frontend/get_translations,peer_energy/market"
        assert lines[1] == "FETCHED translations/en.json"
        headings = (
            "Running slot",
            "Next slot",
            "Last day and next 24 hours",
            "Credit with the community",
        )
        for heading in (*headings, "Community"):
            assert heading in lines
        for name in ("Roof PV", "Home battery", "Wallbox", "Dishwasher", "Household load"):
            assert name in lines
        # The grid meter measures the home; it is not a device with an order.
        assert "Grid meter" not in lines
        for slot in (view["current"], view["next"]):
            for row in slot["assets"]:
                if row["kind"] != "grid_meter":
                    assert REASON_TEXTS[row["reason"]["code"]] in lines
        assert "Table (3 slots)" in lines
        # One chart of the last day and the plan: every series drawn (the plan's import
        # or export in at least one slot), the plan's legend, a line at "now".
        assert view["plan"] is not None
        series = dict(
            item.split("=") for item in lines[-1].removeprefix("SERIES ").split(",") if item
        )
        for name in ("price", "bought", "sold", "expected", "import", "export", "battery", "ev"):
            assert name in series, name
        for name in ("price", "expected", "battery", "ev"):
            assert int(series[name]) >= 1, name
        plan = view["plan"]
        assert int(series["import"]) == sum(1 for wh in plan["import_wh"] if wh)
        assert int(series["export"]) == sum(1 for wh in plan["export_wh"] if wh)
        for legend in (
            "expected price, plan (EUR/kWh, left axis)",
            "battery, plan (up charges, down discharges)",
            "EV charging, plan",
            "now",
        ):
            assert legend in lines, legend
        assert f"{report.price / 100:.3f} EUR/kWh" in lines
        # Reason parameters in words with units and currency, never raw keys or bare cents.
        text = "\n".join(lines)
        for raw in ("_wh", "_pct", "_s:", "event_in_slots", "spread", "value:", "price:"):
            assert raw not in text, raw
        assert "EUR/kWh" in text
        assert "Now: charging 800 W · 55 % full" in lines
        # The savings tile: today's positive figure as its value.
        at = lines.index("Saved today versus not trading")
        value = saved / 100_000
        assert lines[at + 1] == (f"{value:.4f} EUR" if value < 1 else f"{value:.2f} EUR")
        assert "not rated yet" in lines
        # A loss (a delivery settlement can make the savings negative) keeps its sign.
        lost = json.loads(json.dumps(view))
        for period in ("today", "month", "since_joining"):
            lost["savings"][period] = {"value": -0.0021, "mmu": -210}
        shown = _rendered(lost, tmp_path)
        assert shown is not None
        loss = shown.splitlines()
        at = loss.index("Saved today versus not trading")
        assert loss[at + 1] == "−0.0021 EUR"
        assert loss[at + 2].startswith("This month −0.0021 EUR · since joining −0.0021 EUR")
        # Every text comes from the translations: no key is shown as such.
        keys = json.loads((TRANSLATIONS / "en.json").read_text(encoding="utf-8"))
        assert not [line for line in lines if line in keys]
        # In German the same page speaks German (the reason names come from the
        # integration's entity translations, here given in English).
        german = _rendered(view, tmp_path, "de")
        assert german is not None
        assert "FETCHED translations/de.json,translations/en.json" in german
        assert "Laufender Slot" in german.splitlines()


async def test_void_slot_and_community_fields(
    hass: HomeAssistant,
    market: SlotClock,  # noqa: F811
    hass_ws_client: Any,
    tmp_path: Path,
) -> None:
    """A void slot is marked; a community's name, members and scores are shown."""
    me = market.member
    market.runtime.federation = SimpleNamespace(  # type: ignore[assignment]
        community_name="Elm Street",
        members=3,
        peers_online=1,
        unreachable_members=("ef" * 32,),
        member_names={"cd" * 32: "Corner House"},
        member_key=me,
        neighbours=("ab" * 32, "cd" * 32, "ef" * 32),
        own_reputation=875,
        reputations={me: 875, "cd" * 32: 990, "ef" * 32: 400, "12" * 32: 500},
        slot_ms=900_000,
        gate_closure_lead_ms=60_000,
    )
    market.async_handle_outcome(
        SimpleNamespace(
            slot_start_ms=NEXT_TS * 1000, result=None, void_reason="no_quorum", own_fills=()
        )
    )
    view = await _view(hass_ws_client, hass)
    assert view["community"] == {
        "name": "Elm Street",
        "members": 3,
        "peers_online": 1,
        "unreachable": [{"member": "ef" * 4, "name": None}],
    }
    assert view["reputation"] == {
        "own": 87.5,
        # Every neighbour, rated or not yet, with its status in words; a member that left
        # (a score, no neighbour now) is none.
        "peers": [
            {"member": "ab" * 4, "name": None, "score": None, "status": "not_rated"},
            {"member": "cd" * 4, "name": "Corner House", "score": 99.0, "status": "above_neutral"},
            {"member": "ef" * 4, "name": None, "score": 40.0, "status": "below_neutral"},
        ],
    }
    nxt = view["next"]
    assert nxt["status"] == "void"
    assert nxt["outcome"]["void"] is True
    assert nxt["outcome"]["void_reason"] == "no_quorum"
    assets = {row["id"]: row for row in nxt["assets"]}
    assert assets[PV_ID]["reason"]["code"] == "slot_void"
    (row,) = view["history"]
    assert (row["void"], row["void_reason"]) == (True, "no_quorum")
    assert "cd" * 32 not in json.dumps(view)
    # The community card names the unreachable neighbour.
    rendered = _rendered(view, tmp_path)
    if rendered is not None:
        lines = rendered.splitlines()
        at = lines.index("Unreachable neighbours")
        assert lines[at + 1] == "ef" * 4
        # Neighbours by the names they chose, by short id without one.
        assert "Corner House" in lines
        assert "cd" * 4 not in lines
        # Each neighbour's reputation with its status in words.
        at = lines.index("Your neighbours' reputation")
        assert lines[at + 1 : at + 7] == [
            "ab" * 4,
            "not rated yet",
            "Corner House",
            "99.0 % · Above neutral",
            "ef" * 4,
            "40.0 % · Below neutral",
        ]
        assert "Table (1 slot)" in lines  # counted texts agree with their number
        assert "1 of 2 neighbours" in lines
        # One neighbour, and the forms of the other languages.
        view["community"]["members"] = 2
        expected = {
            "en": ("Table (1 slot)", "1 of 1 neighbour"),
            "de": ("Tabelle (1 Slot)", "1 von 1 Nachbarn"),
            "nl": ("Tabel (1 slot)", "1 van 1 buur"),
            "fr": ("Tableau (1 créneau)", "1 voisin sur 1"),
        }
        for language, texts in expected.items():
            shown = _rendered(view, tmp_path, language)
            assert shown is not None
            for text in texts:
                assert text in shown.splitlines(), (language, text)


async def test_unknown_entry_is_a_clean_error(
    hass: HomeAssistant,
    market: SlotClock,  # noqa: F811
    hass_ws_client: Any,
    tmp_path: Path,
) -> None:
    """An unknown entry id, or no loaded entry, is a websocket error (not_found) with a
    translation key of the integration's exceptions, which the panel words in the user's
    language."""
    client = await hass_ws_client(hass)
    await client.send_json_auto_id({"type": WS_TYPE_MARKET, "entry_id": "no_such_entry"})
    msg = await client.receive_json()
    assert not msg["success"]
    assert msg["error"] == {
        "code": "not_found",
        "message": 'No Peer Energy entry has the id "no_such_entry"',
        "translation_key": "entry_not_found",
        "translation_domain": DOMAIN,
        "translation_placeholders": {"entry_id": "no_such_entry"},
    }
    await client.send_json_auto_id({"type": WS_TYPE_MARKET, "entry_id": 12})
    msg = await client.receive_json()
    assert not msg["success"]
    assert msg["error"]["code"] == "invalid_format"
    assert await hass.config_entries.async_unload(market.entry.entry_id)
    await client.send_json_auto_id({"type": WS_TYPE_MARKET})
    msg = await client.receive_json()
    assert not msg["success"]
    assert msg["error"]["code"] == "not_found"
    assert msg["error"]["translation_key"] == "no_entry_loaded"
    await client.send_json_auto_id({"type": WS_TYPE_MARKET, "entry_id": market.entry.entry_id})
    msg = await client.receive_json()
    assert msg["error"]["translation_key"] == "entry_not_loaded"
    assert msg["error"]["translation_placeholders"] == {"title": market.entry.title}
    # The panel shows it in the user's language.
    rendered = _rendered({"__error__": msg["error"]}, tmp_path, "de")
    if rendered is not None:
        title = market.entry.title
        expected = f"Peer Energy „{title}“ ist nicht geladen. Prüfe es unter Einstellungen"
        assert expected in rendered
    # Every key the command sends has a text in the panel's languages.
    for language in ("en", "de", "nl", "fr"):
        texts = json.loads((TRANSLATIONS / f"{language}.json").read_text(encoding="utf-8"))
        for key in ("entry_not_found", "no_entry_loaded", "entry_not_loaded", "ledger_closed"):
            assert f"wserror.{key}" in texts, (language, key)


async def test_panel_registered_while_loaded(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_client: Any
) -> None:
    """The sidebar panel exists while the entry is loaded; its module is served."""
    panels = hass.data[frontend.DATA_PANELS]
    panel = panels[PANEL_URL_PATH]
    assert panel.sidebar_title == "Peer Energy"
    assert panel.require_admin is False
    assert panel.config is not None
    custom = panel.config["_panel_custom"]
    assert custom["name"] == "peer-energy-panel"
    url = custom["module_url"]
    assert url.startswith(f"{STATIC_URL}?v=")
    assert [key for key in hass.data if str(key).startswith(DOMAIN)] == []
    # Registering again (another entry set-up in the same run) changes nothing.
    await async_register_panel(hass)
    assert hass.data[frontend.DATA_PANELS][PANEL_URL_PATH] is panel

    client = await hass_client()
    response = await client.get(url)
    assert response.status == 200
    assert "javascript" in response.headers["Content-Type"]
    body = await response.text()
    assert 'customElements.define("peer-energy-panel"' in body

    # A reload removes and adds it again; an unload takes it away.
    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert PANEL_URL_PATH in hass.data[frontend.DATA_PANELS]
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    assert PANEL_URL_PATH not in hass.data[frontend.DATA_PANELS]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_panel_module_syntax() -> None:
    """The panel is valid JavaScript (checked by node when it is installed)."""
    done = subprocess.run(
        ["node", "--check", str(PANEL_FILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_panel_inserts_text_only() -> None:
    """The panel never inserts HTML strings (text nodes and attributes only)."""
    source = PANEL_FILE.read_text(encoding="utf-8")
    for unsafe in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "http://",
        "https://",
    ):
        if unsafe == "http://":
            # the SVG namespace is the only URL in the file
            assert source.count(unsafe) == 1
            assert "http://www.w3.org/2000/svg" in source
            continue
        assert unsafe not in source


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    for entity_id, (state, attributes) in MARKET_STATES.items():
        hass.states.async_set(entity_id, state, attributes)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def test_no_panel_without_frontend(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,  # noqa: F811
) -> None:
    """Without the frontend (no user interface) there is no panel to show."""
    await _setup(hass, mock_config_entry)
    assert PANEL_URL_PATH not in hass.data.get(frontend.DATA_PANELS, {})


async def test_panel_with_a_frozen_router(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,  # noqa: F811
    frontend_loaded: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A router that refuses the file (aiohttp froze it): a warning, not a failed set-up."""
    with patch.object(
        hass.http,
        "async_register_static_paths",
        side_effect=RuntimeError("Cannot register a resource into frozen router."),
    ):
        await _setup(hass, mock_config_entry)
    assert mock_config_entry.state is ConfigEntryState.LOADED
    assert "Cannot serve the market view panel file" in caplog.text
    assert PANEL_URL_PATH in hass.data[frontend.DATA_PANELS]


def test_record_helpers() -> None:
    """Trades of other pairs and malformed records are skipped, not fatal."""
    terms = TradeTerms("c", 60, "b" * 64, "s" * 64, 5, 10, 1, True, True, "", "", 0, 0)
    assert _side(terms, "x" * 64) is None
    seller = _side(terms, "s" * 64)
    assert seller is not None
    assert (seller.role, seller.counterparty) == ("seller", "b" * 8)
    buyer = _side(terms, "b" * 64)
    assert buyer is not None
    assert (buyer.role, buyer.counterparty) == ("buyer", "s" * 8)
    assert _terms({"terms": terms.to_dict()}) == terms
    assert _terms({}) is None
    assert _terms({"terms": {"slot": 1}}) is None
    assert (_int(5), _int(True), _int("5"), _int(None)) == (5, 0, 0, 0)
    assert _reputation(None, "me") == {"own": None, "peers": []}
    assert _credit(None, "EUR") is None


async def test_records_of_other_pairs_and_malformed_ones_are_skipped() -> None:
    """The ledger also holds other pairs' trades; a damaged body is skipped, not fatal."""
    me, other, third = "a" * 64, "b" * 64, "c" * 64
    mine = TradeTerms("c", 120, other, me, 5, 10, 1, True, True, "", "", 0, 0)
    theirs = TradeTerms("c", 60, other, third, 7, 10, 1, False, True, "", "", 0, 0)
    records = {
        "trade": [
            StoredRecord("1", "trade", 60_000, {"terms": theirs.to_dict()}),
            StoredRecord("2", "trade", 60_000, {"terms": {"slot": 60}}),
            StoredRecord("3", "trade", 120_000, {"terms": mine.to_dict()}),
        ],
        "settlement": [
            StoredRecord("4", "settlement", 61_000, {"terms": theirs.to_dict(), "payment": 3}),
            StoredRecord("5", "settlement", 62_000, {}),
            StoredRecord(
                "6", "settlement", 121_000, {"terms": mine.to_dict(), "shortfall_wh": True}
            ),
        ],
    }

    async def async_records(kind: str, since_ms: int) -> list[StoredRecord]:
        return [r for r in records[kind] if r.ts_ms >= since_ms]

    ledger: Any = SimpleNamespace(async_records=async_records)
    trades, settlements = await _async_records(ledger, me, 0, "EUR")
    assert [(t["role"], t["counterparty"], t["amount_mmu"]) for t in trades] == [
        ("seller", "b" * 8, 50)
    ]
    # Malformed numbers count as zero: nothing short, nothing paid.
    assert [(s["shortfall_wh"], s["delivered_wh"], s["payment_mmu"]) for s in settlements] == [
        (0, 5, 0)
    ]
    assert await _async_records(None, me, 0, "EUR") == ([], [])


async def test_trades_and_settlements_with_a_neighbour(
    hass: HomeAssistant,
    tmp_path: Path,
    clock: Clock,  # noqa: F811
    home_a: tuple[PeerEnergyConfigEntry, Home],  # noqa: F811
    make_home: HomeFactory,  # noqa: F811
) -> None:
    """A sells 500 Wh to B and delivers 400: the view lists the trade and the settlement."""
    entry, a = home_a
    b = await make_home("B")
    await join(hass, a, b, [])
    b.link.async_start()
    rules = fast_rules()
    slot = next_slot(clock, rules)
    await a.link.async_submit_orders(slot * 1000, [Order.single("s", "", Side.SELL, slot, 500, 10)])
    await b.link.async_submit_orders(slot * 1000, [Order.single("b", "", Side.BUY, slot, 500, 20)])
    await settle(a, b)
    await run_slot(clock, [a, b], slot, rules)
    await a.link.async_drain()
    await b.link.async_drain()
    assert a.link.recorder.trades_recorded == 1
    await tick_all(clock, [a, b], (slot + rules.slot_seconds) * 1000)
    a.link.async_report_delivery(slot * 1000, exported_wh=400, imported_wh=0)
    b.link.async_report_delivery(slot * 1000, exported_wh=0, imported_wh=500)
    await settle(a, b)
    await a.link.async_drain()
    await b.link.async_drain()
    await hass.async_block_till_done()
    assert a.link.recorder.settlements_recorded == 1

    view = await async_market_view(hass, entry)
    ledger = a.link.ledger
    assert ledger is not None
    terms = (await ledger.async_records("trade"))[0].body["terms"]
    price = terms["price"]
    assert view["community"] == {
        "name": "Elm Street",
        "members": 2,
        "peers_online": 1,
        "unreachable": [],
    }
    assert view["member_id"] == a.link.member_key[:8]
    (trade,) = view["trades"]
    assert trade == {
        "slot_start": trade["slot_start"],
        "role": "seller",
        "counterparty": b.link.member_key[:8],
        "counterparty_name": None,
        "energy_wh": 500,
        "price": price / 100,
        "price_minor": price,
        "fee_minor": terms["fee"],
        "amount": 500 * price / 100_000,
        "amount_mmu": 500 * price,
        "clean": terms["clean"],
        "local": terms["local"],
    }
    assert trade["slot_start"].startswith("2027-")
    import_price = rules.market.import_price
    (settlement,) = view["settlements"]
    assert settlement == {
        "slot_start": trade["slot_start"],
        "role": "seller",
        "counterparty": b.link.member_key[:8],
        "counterparty_name": None,
        "energy_wh": 500,
        "delivered_wh": 400,
        "shortfall_wh": 100,
        "payment": -100 * import_price / 100_000,
        "payment_mmu": -100 * import_price,
        "import_price": import_price / 100,
        "disputed": False,
        # The seller's signed meter reading for the trade says why: 400 Wh exported.
        "seller_metered_wh": 400,
        "buyer_metered_wh": 500,
        "shortfall_reason": "seller_metered",
    }
    assert view["credit"]["balance_mmu"] == ledger.balance() == 500 * price - 100 * import_price
    own = a.link.own_reputation
    assert own is not None
    assert view["reputation"]["own"] == own / 10
    # Nothing secret: no key seeds, no invitation secrets (an open invitation exists now).
    await a.link.async_create_invitation(600_000)
    view = await async_market_view(hass, entry)
    text = json.dumps(view)
    for member in (a.link.member_key, b.link.member_key):
        assert member not in text
    secrets = [*await _secrets(hass, entry.entry_id), *_secret_values(a.link.snapshot())]
    assert len(secrets) >= 2
    for secret in secrets:
        assert secret not in text

    rendered = _rendered(view, tmp_path)
    if rendered is not None:
        lines = rendered.splitlines()
        short = b.link.member_key[:8]
        for text in ("Elm Street", "Trades with neighbours", "Deliveries"):
            assert text in lines
        assert f"Sold 500 Wh to {short}" in lines  # the trade
        assert f"Sold 500 Wh to {short}: 400 Wh delivered" in lines  # its delivery
        assert any(line.startswith("paid back") and "for 100 Wh" in line for line in lines)
        # The shortfall's reason, from this home's own signed meter reading.
        assert any(line.startswith("Your meter measured 400 Wh") for line in lines)
        assert f"{own / 10:.1f} %" in lines

    # B's side of the same trade and settlement: bought, paid, compensated.
    assert b.ledger is not None
    trades, settlements = await _async_records(b.ledger, b.link.member_key, 0, "EUR")
    assert [(t["role"], t["counterparty"], t["amount_mmu"]) for t in trades] == [
        ("buyer", a.link.member_key[:8], -500 * (price + terms["fee"]))
    ]
    assert [(s["role"], s["payment_mmu"]) for s in settlements] == [("buyer", 100 * import_price)]


def _secret_values(data: Any) -> list[str]:
    """Every value stored under a key that names a secret or a seed."""
    if isinstance(data, dict):
        found: list[str] = []
        for key, value in data.items():
            if isinstance(value, str) and ("secret" in key or "seed" in key):
                found.append(value)
            else:
                found.extend(_secret_values(value))
        return found
    if isinstance(data, list):
        return [item for value in data for item in _secret_values(value)]
    return []


def test_history_keeps_the_newest_rows_only() -> None:
    """One-minute slots would make a day 1440 rows: the view keeps the newest 192."""
    from types import SimpleNamespace

    from custom_components.peer_energy.websocket_api import HISTORY_MAX_ROWS, _history

    last = 1_800_000_000
    prices = {last - 60 * k: 10 + k % 7 for k in range(1440)}
    fake_market = SimpleNamespace(reports={}, prices=prices, currency="EUR")
    rows = _history(fake_market, last)  # type: ignore[arg-type]
    assert len(rows) == HISTORY_MAX_ROWS == 192
    assert rows[-1]["price_minor"] == prices[last]
    assert rows[0]["price_minor"] == prices[last - 60 * 191]


async def test_reloading_entry_is_a_clean_error(
    hass: HomeAssistant,
    market: SlotClock,  # noqa: F811
    hass_ws_client: Any,
) -> None:
    """A ledger closed by a reload under way gives an error the panel shows and retries,
    not an unknown error."""
    ledger = market.entry.runtime_data.ledger
    assert ledger is not None
    client = await hass_ws_client(hass)
    with patch.object(ledger, "async_records", side_effect=LedgerDBError("closed")):
        await client.send_json_auto_id({"type": WS_TYPE_MARKET})
        msg = await client.receive_json()
    assert not msg["success"]
    assert msg["error"]["code"] == "not_found"
    assert msg["error"]["translation_key"] == "ledger_closed"
    assert "reloads" in msg["error"]["message"]
