"""The market view: a sidebar panel and the websocket command that feeds it.

``peer_energy/market`` (optional ``entry_id``) returns one snapshot of the home's market:
the running and next slot (prices, own position, every asset's order, allocation and
reason), the last day of slots, this home's trades and delivery settlements, credit,
totals, reputation and the community. It only *reads* the runtime of the loaded entry
(slot clock, federation link, ledger); there is no market logic here. Exact integers are
kept next to their display values in major currency units (converted at this edge only).

Nothing secret leaves: no keys, seeds or invitations; other homes appear only as their
short member id (8 hex characters) and the display name it chose, if any,
and, for this home's own trades, with the meter readings of their delivery settlement.

The panel (``frontend/peer-energy-panel.js``, a plain ES module without a build step) and
its texts (``frontend/translations/<language>.json``) are served as static files from the
``frontend`` folder; the panel is registered as a sidebar panel while an entry is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components import frontend, panel_custom, websocket_api
from homeassistant.components.http import StaticPathConfig
from homeassistant.components.websocket_api.connection import ActiveConnection
from homeassistant.components.websocket_api.const import ERR_NOT_FOUND
from homeassistant.components.websocket_api.decorators import async_response, websocket_command
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.translation import async_get_exception_message
from homeassistant.util import dt as dt_util
import voluptuous as vol

from .announce import short
from .const import CONF_HOME_NAME, DOMAIN, LOGGER
from .core.home.slot_plan import AssetPlan, plan_columns
from .core.trust.credit import TradeTerms
from .core.trust.ledger_db import LedgerDBError
from .core.trust.reputation import reputation_status
from .market import (
    MANUAL_ID,
    SECONDS_PER_DAY,
    AssetAction,
    SlotClock,
    SlotPlan,
    SlotReport,
    major_to_milli_amount,
    price_to_major,
    utc_from_ts,
)
from .prices import minor_digits

if TYPE_CHECKING:
    from .coordinator import AssetReading
    from .core.home.agents import AssetAllocation
    from .core.market.orders import Reason, Step
    from .federation import FederationLink
    from .ledger import PeerLedger
    from .runtime import PeerEnergyConfigEntry, PeerEnergyRuntime
    from .savings import SavingsTracker

WS_TYPE_MARKET: Final = f"{DOMAIN}/market"
PANEL_URL_PATH: Final = "peer-energy"
PANEL_COMPONENT: Final = "peer-energy-panel"
PANEL_TITLE: Final = "Peer Energy"
PANEL_ICON: Final = "mdi:transmission-tower"
FRONTEND_DIR: Final = Path(__file__).parent / "frontend"
PANEL_FILE: Final = FRONTEND_DIR / "peer-energy-panel.js"
STATIC_PATH: Final = f"/{DOMAIN}_static"
STATIC_URL: Final = f"{STATIC_PATH}/peer-energy-panel.js"
# Most trades and settlements listed (newest first).
MAX_RECORDS: Final = 100

# Market sensors of the home device whose changes make the panel refresh.
_HOME_KEYS: Final = ("clearing_price", "next_clearing_price", "net_position", "credit_balance")
_ASSET_KEYS: Final = ("market_order", "allocation", "market_reason")


# --- websocket command ----------------------------------------------------------------------


@callback
def async_setup_websocket(hass: HomeAssistant) -> None:
    """Register the websocket command (idempotent; called from ``async_setup``)."""
    websocket_api.async_register_command(hass, ws_market)


@websocket_command({vol.Required("type"): WS_TYPE_MARKET, vol.Optional("entry_id"): str})
@async_response
async def ws_market(hass: HomeAssistant, connection: ActiveConnection, msg: dict[str, Any]) -> None:
    """Send the market view of an entry (the loaded one when no ``entry_id`` is given).

    Errors carry a translation key of the integration's exceptions (the panel shows its own
    text for the key in the user's language; the message is the English text)."""
    entry = _loaded_entry(hass, msg.get("entry_id"))
    if entry is None:
        if "entry_id" not in msg:
            _send_error(connection, msg["id"], "no_entry_loaded", {})
        elif (known := hass.config_entries.async_get_entry(msg["entry_id"])) is not None:
            _send_error(connection, msg["id"], "entry_not_loaded", {"title": known.title})
        else:
            _send_error(connection, msg["id"], "entry_not_found", {"entry_id": msg["entry_id"]})
        return
    try:
        view = await async_market_view(hass, entry)
    except LedgerDBError:  # the entry is reloading: its ledger closed meanwhile
        _send_error(connection, msg["id"], "ledger_closed", {})
        return
    connection.send_result(msg["id"], view)


def _send_error(
    connection: ActiveConnection, msg_id: int, key: str, placeholders: dict[str, str]
) -> None:
    connection.send_error(
        msg_id,
        ERR_NOT_FOUND,
        async_get_exception_message(DOMAIN, key, placeholders),
        translation_key=key,
        translation_domain=DOMAIN,
        translation_placeholders=placeholders,
    )


def _loaded_entry(hass: HomeAssistant, entry_id: str | None) -> PeerEnergyConfigEntry | None:
    """The loaded entry with ``entry_id`` (any loaded one when None); its slot clock is set
    before the entry counts as loaded."""
    entries: list[PeerEnergyConfigEntry] = hass.config_entries.async_loaded_entries(DOMAIN)
    return next((e for e in entries if entry_id in (None, e.entry_id)), None)


async def async_market_view(hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> dict[str, Any]:
    """The whole market view of a loaded entry as JSON-ready data (see docs/market_view.md)."""
    runtime = entry.runtime_data
    market = runtime.market
    currency = market.currency
    now = market.slot_now()
    step = market.slot_seconds
    federation = runtime.federation
    ledger = runtime.ledger
    me = ledger.member if ledger is not None else market.member
    names = _names(federation)
    trades, settlements = await _async_records(ledger, me, now - SECONDS_PER_DAY, currency, names)
    return {
        "entry_id": entry.entry_id,
        "home_name": str(entry.data.get(CONF_HOME_NAME) or entry.title),
        "member_id": short(me),
        "currency": currency,
        "price_digits": minor_digits(currency),
        "now": dt_util.utcnow().isoformat(),
        "slot_seconds": step,
        "gate_lead_seconds": market.gate_lead_seconds,
        "control_mode": market.control_mode.value,
        "community": None
        if federation is None
        else {
            "name": federation.community_name,
            "members": federation.members,
            "peers_online": federation.peers_online,
            "unreachable": [
                {"member": short(member), "name": names.get(member)}
                for member in federation.unreachable_members
            ],
        },
        "home_now": _home_now(entry),
        "current": _slot_view(hass, entry, market, now),
        "next": _slot_view(hass, entry, market, now + step),
        "history": _history(market, now + step),
        "plan": _plan(market, now + step),
        "trades": trades,
        "settlements": settlements,
        "credit": _credit(ledger, currency),
        "totals": {
            "bought_wh": market.totals.bought_wh,
            "sold_wh": market.totals.sold_wh,
            "earned": major_to_milli_amount(market.totals.earned_milli, currency),
            "earned_mmu": market.totals.earned_milli,
            "spent": major_to_milli_amount(market.totals.spent_milli, currency),
            "spent_mmu": market.totals.spent_milli,
        },
        "reputation": _reputation(federation, me, names),
        "savings": _savings(runtime.savings, currency),
        "entities": _watched_entities(hass, entry),
    }


def _savings(savings: SavingsTracker | None, currency: str) -> dict[str, Any] | None:
    """Savings versus not trading (see savings.py): major units to show, exact mmu."""
    if savings is None:
        return None

    def money(milli: int) -> dict[str, Any]:
        return {"value": major_to_milli_amount(milli, currency), "mmu": milli}

    return {
        "today": money(savings.today_milli()),
        "month": money(savings.month_milli()),
        "since_joining": money(savings.total_milli),
        "since": savings.since,
        # Included above: trades whose seller delivered less (counted once each).
        "delivery_settlements": {
            "count": len(savings.settled),
            "payment": money(savings.settled_payment_milli),
            "saving": money(savings.settled_saving_milli),
        },
    }


# --- slots ------------------------------------------------------------------------------------


def _price(value: int | None, currency: str) -> dict[str, Any]:
    return {"value": price_to_major(value, currency), "minor": value}


def _reason(reason: Reason | None) -> dict[str, Any] | None:
    if reason is None:
        return None
    return {"code": reason.code, "params": dict(reason.params)}


def _slot_view(
    hass: HomeAssistant, entry: PeerEnergyConfigEntry, market: SlotClock, slot: int
) -> dict[str, Any]:
    """One slot: what the home ordered and, once cleared, what it got and why."""
    currency = market.currency
    plan = market.plans.get(slot)
    report = market.reports.get(slot)
    if report is None:
        status = "open" if plan is not None else "unknown"
    elif report.void:
        status = "void"
    else:
        status = "local" if report.local else "cleared"
    view: dict[str, Any] = {
        "slot_start": utc_from_ts(slot).isoformat(),
        "slot_end": utc_from_ts(slot + market.slot_seconds).isoformat(),
        "gate_closure": utc_from_ts(market.gate_closure(slot)).isoformat(),
        "status": status,
        "import_price": _price(None if plan is None else plan.import_price, currency),
        "feed_in_tariff": _price(None if plan is None else plan.feed_in_tariff, currency),
        "order": _order(plan, currency),
        "outcome": None if report is None else _outcome(report, currency),
        "assets": _assets(hass, entry, market, plan, report),
    }
    return view


def _plan(market: SlotClock, slot: int) -> dict[str, Any] | None:
    """The planner's plan made for ``slot`` (the next day, one value per slot; energy Wh,
    prices minor units per kWh), with the fallback it had to take, if any."""
    plan = market.plans.get(slot)
    if plan is None:
        return None
    view: dict[str, Any] = {
        "slot_start": utc_from_ts(slot).isoformat(),
        "fallback": plan.fallback,
        "mode": None,
    }
    if plan.plan is not None:
        view |= plan_columns(plan.plan)
        view["start"] = [utc_from_ts(start).isoformat() for start in view["start"]]
    return view


def _order(plan: SlotPlan | None, currency: str) -> dict[str, Any] | None:
    """The one aggregate order that left the house (no partner preferences)."""
    if plan is None or plan.order is None:
        return None
    order = plan.order
    return {
        "side": order.side.value,
        "energy_wh": order.energy_wh,
        "clean": order.clean,
        "steps": _steps(order.steps, currency),
        "reason": _reason(order.reason),
        # Both sides when the home would buy while cheap and sell while dear.
        "orders": [
            {
                "side": o.side.value,
                "energy_wh": o.energy_wh,
                "clean": o.clean,
                "steps": _steps(o.steps, currency),
            }
            for o in plan.orders
        ],
    }


def _steps(steps: Iterable[Step], currency: str) -> list[dict[str, Any]]:
    return [
        {"price": price_to_major(s.price, currency), "price_minor": s.price, "wh": s.energy_wh}
        for s in steps
    ]


def _outcome(report: SlotReport, currency: str) -> dict[str, Any]:
    return {
        "price": _price(report.price, currency),
        "clean_price": _price(report.clean_price, currency),
        "own_price": _price(report.own_price, currency),
        "void": report.void,
        "void_reason": report.void_reason,
        "local": report.local,
        "position_wh": report.position_wh,
        "bought_wh": report.bought_wh,
        "sold_wh": report.sold_wh,
        "paid": major_to_milli_amount(report.paid_milli, currency),
        "paid_mmu": report.paid_milli,
        "received": major_to_milli_amount(report.received_milli, currency),
        "received_mmu": report.received_milli,
    }


def _assets(
    hass: HomeAssistant,
    entry: PeerEnergyConfigEntry,
    market: SlotClock,
    plan: SlotPlan | None,
    report: SlotReport | None,
) -> list[dict[str, Any]]:
    """Each asset (and the base load, manual orders) with its bids, allocation and reason."""
    runtime: PeerEnergyRuntime = entry.runtime_data
    keys: list[str] = list(runtime.assets)
    for source in (plan.assets if plan is not None else {}, report.reasons if report else {}):
        keys.extend(key for key in source if key not in keys)
    registry = er.async_get(hass)
    readings = runtime.coordinator.data.assets
    rows: list[dict[str, Any]] = []
    for key in keys:
        asset = runtime.assets.get(key)
        asset_plan: AssetPlan | None = None if plan is None else plan.assets.get(key)
        alloc = None if report is None else report.allocations.get(key)
        reason = report.reasons.get(key) if report is not None else None
        if reason is None and asset_plan is not None:
            reason = asset_plan.reason
        rows.append(
            {
                "id": key,
                "name": asset.name if asset is not None else None,
                "kind": asset.kind.value
                if asset is not None
                else MANUAL_ID
                if key.startswith(MANUAL_ID)
                else key,
                "order_wh": None if asset_plan is None else asset_plan.signed_wh,
                "bids": [] if asset_plan is None else _bids(asset_plan, market.currency),
                "allocation": _allocation(alloc),
                "reason": _reason(reason),
                "now": _reading(readings.get(key)),
                "actions": [_action(action) for action in market.actions.get(key, ())]
                if report is not None and market.actions_slot == report.slot_start
                else [],
                "reason_entity_id": None
                if asset is None
                else registry.async_get_entity_id(
                    Platform.SENSOR, DOMAIN, f"{entry.entry_id}_{key}_market_reason"
                ),
            }
        )
    return rows


def _bids(asset_plan: AssetPlan, currency: str) -> list[dict[str, Any]]:
    return [
        {
            "side": bid.side.value,
            "energy_wh": bid.energy_wh,
            "clean": bid.clean,
            "steps": [
                {
                    "price": price_to_major(s.price, currency),
                    "price_minor": s.price,
                    "wh": s.energy_wh,
                }
                for s in bid.steps
            ],
        }
        for bid in asset_plan.bids
    ]


def _action(action: AssetAction) -> dict[str, Any]:
    """A service call made (control mode) or advised (advise mode) at the slot start."""
    return {
        "call": action.describe(),
        "service": f"{action.domain}.{action.service}",
        "entity_id": action.entity_id,
        "value": action.data.get("value", action.data.get("option")),
        "applied": action.applied,
        "error": action.error,
    }


def _reading(reading: AssetReading | None) -> dict[str, Any] | None:
    """What the device does now, from its mapped sources (power: W, positive when it
    produces (PV), discharges (battery), consumes (EV charger, plug) or imports (grid
    meter); state of charge: %)."""
    if reading is None:
        return None
    return {"power_w": reading.power_w, "soc_pct": reading.soc_pct}


def _home_now(entry: PeerEnergyConfigEntry) -> dict[str, Any]:
    """The home's grid power now (positive importing) and where it comes from."""
    data = entry.runtime_data.coordinator.data
    return {
        "grid_power_w": data.grid_power_w,
        "grid_source": data.grid_source,
        "pv_surplus_w": data.pv_surplus_w,
    }


def _allocation(alloc: AssetAllocation | None) -> dict[str, int] | None:
    if alloc is None:
        return None
    return {
        "energy_wh": alloc.energy_wh,
        "market_wh": alloc.market_wh,
        "internal_wh": alloc.internal_wh,
        "grid_wh": alloc.grid_wh,
    }


HISTORY_MAX_ROWS = 192  # two days of 15-minute slots; 3.2 hours of 1-minute slots


def _history(market: SlotClock, last: int) -> list[dict[str, Any]]:
    """Every slot of the last day up to ``last`` that has an outcome or a price, oldest
    first, at most the newest ``HISTORY_MAX_ROWS``.

    After a restart only the prices are known (the outcomes are kept in memory).
    """
    first = last - SECONDS_PER_DAY
    slots = sorted(s for s in {*market.reports, *market.prices} if first < s <= last)
    slots = slots[-HISTORY_MAX_ROWS:]
    rows: list[dict[str, Any]] = []
    for slot in slots:
        report = market.reports.get(slot)
        price = report.price if report is not None else market.prices.get(slot)
        rows.append(
            {
                "slot_start": utc_from_ts(slot).isoformat(),
                "price": price_to_major(price, market.currency),
                "price_minor": price,
                "clean_price": None
                if report is None
                else price_to_major(report.clean_price, market.currency),
                "bought_wh": None if report is None else report.bought_wh,
                "sold_wh": None if report is None else report.sold_wh,
                "position_wh": None if report is None else report.position_wh,
                "void": False if report is None else report.void,
                "void_reason": None if report is None else report.void_reason,
                "local": None if report is None else report.local,
            }
        )
    return rows


# --- ledger -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Side:
    """This home's side of a trade: its role and the other party (short id and name)."""

    role: str
    counterparty: str
    name: str | None = None


def _side(terms: TradeTerms, me: str, names: Mapping[str, str] | None = None) -> _Side | None:
    names = names or {}
    if terms.seller == me and terms.buyer != me:
        return _Side("seller", short(terms.buyer), names.get(terms.buyer))
    if terms.buyer == me and terms.seller != me:
        return _Side("buyer", short(terms.seller), names.get(terms.seller))
    return None  # another pair's trade (the ledger also records those)


def _names(federation: FederationLink | None) -> dict[str, str]:
    """Display names the community's members chose, by member id (signed ``name`` records;
    the panel falls back to the short id wherever a name is None)."""
    return {} if federation is None else federation.member_names


def _terms(body: Mapping[str, Any]) -> TradeTerms | None:
    try:
        return TradeTerms.from_dict(body["terms"])
    except (KeyError, TypeError, ValueError):
        return None


async def _async_records(
    ledger: PeerLedger | None,
    me: str,
    since: int,
    currency: str,
    names: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """This home's trades and delivery settlements since ``since`` (newest first)."""
    if ledger is None:
        return [], []
    trades: list[dict[str, Any]] = []
    for record in await ledger.async_records("trade", since * 1000):
        if (terms := _terms(record.body)) is None or (side := _side(terms, me, names)) is None:
            continue
        amount = terms.value if side.role == "seller" else -terms.cost
        trades.append(
            {
                "slot_start": utc_from_ts(terms.slot).isoformat(),
                "role": side.role,
                "counterparty": side.counterparty,
                "counterparty_name": side.name,
                "energy_wh": terms.energy_wh,
                "price": price_to_major(terms.price, currency),
                "price_minor": terms.price,
                "fee_minor": terms.fee,
                "amount": major_to_milli_amount(amount, currency),
                "amount_mmu": amount,
                "clean": terms.clean,
                "local": terms.local,
            }
        )
    settlements: list[dict[str, Any]] = []
    for record in await ledger.async_records("settlement", since * 1000):
        terms = _terms(record.body)
        if terms is None or (side := _side(terms, me, names)) is None:
            continue
        shortfall = _int(record.body.get("shortfall_wh"))
        payment = _int(record.body.get("payment"))
        # The seller pays the buyer for what it did not deliver.
        signed = -payment if side.role == "seller" else payment
        disputed = bool(record.body.get("disputed", False))
        seller_metered = _metered(record.body.get("seller_report"))
        import_price = record.body.get("import_price")
        settlements.append(
            {
                "slot_start": utc_from_ts(terms.slot).isoformat(),
                "role": side.role,
                "counterparty": side.counterparty,
                "counterparty_name": side.name,
                "energy_wh": terms.energy_wh,
                "delivered_wh": terms.energy_wh - shortfall,
                "shortfall_wh": shortfall,
                "payment": major_to_milli_amount(signed, currency),
                "payment_mmu": signed,
                "import_price": price_to_major(_int(import_price), currency)
                if import_price is not None
                else None,
                "disputed": disputed,
                "seller_metered_wh": seller_metered,
                "buyer_metered_wh": _metered(record.body.get("buyer_report")),
                "shortfall_reason": _shortfall_reason(shortfall, disputed, seller_metered),
            }
        )
    return trades[::-1][:MAX_RECORDS], settlements[::-1][:MAX_RECORDS]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _metered(report: Any) -> int | None:
    """The meter reading (Wh) of a signed delivery report in a settlement record."""
    if not isinstance(report, Mapping):
        return None
    value = report.get("metered_wh")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _shortfall_reason(shortfall: int, disputed: bool, seller_metered: int | None) -> str | None:
    """Why a trade was not delivered in full, as far as the signed reports tell.

    ``seller_metered``: the seller's signed meter reading for the trade shows less than it
    sold; ``disputed``: the buyer's meter shows less received than the seller reports.
    """
    if disputed:
        return "disputed"
    if shortfall > 0 and seller_metered is not None:
        return "seller_metered"
    return None


def _credit(ledger: PeerLedger | None, currency: str) -> dict[str, Any] | None:
    if ledger is None:
        return None
    balance = ledger.balance()
    limit = ledger.credit_limit()
    # What this home may still spend with neighbours before its balance reaches -limit.
    available = max(0, balance + limit)
    return {
        "balance": major_to_milli_amount(balance, currency),
        "balance_mmu": balance,
        "limit": major_to_milli_amount(limit, currency),
        "limit_mmu": limit,
        "available": major_to_milli_amount(available, currency),
        "available_mmu": available,
    }


def _reputation(federation: Any, me: str, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Own reputation and this home's score of each neighbour, in percent, with its status
    in words (``score`` None and ``not_rated`` while there is no evidence about it yet;
    ``own`` is None then too: "not rated yet")."""
    if federation is None:
        return {"own": None, "peers": []}
    own = federation.own_reputation
    scores: dict[str, int] = federation.reputations
    names = names or {}
    peers = []
    for member in federation.neighbours:
        if member in (me, federation.member_key):
            continue
        score = scores.get(member)
        peers.append(
            {
                "member": short(member),
                "name": names.get(member),
                "score": None if score is None else score / 10,
                "status": reputation_status(score),
            }
        )
    return {"own": None if own is None else own / 10, "peers": peers}


def _watched_entities(hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> list[str]:
    """The market sensors whose state changes make the panel refresh."""
    registry = er.async_get(hass)
    unique_ids = {f"{entry.entry_id}_{key}" for key in _HOME_KEYS} | {
        f"{entry.entry_id}_{sid}_{key}" for sid in entry.runtime_data.assets for key in _ASSET_KEYS
    }
    return sorted(
        item.entity_id
        for item in er.async_entries_for_config_entry(registry, entry.entry_id)
        if item.unique_id in unique_ids
    )


# --- panel ------------------------------------------------------------------------------------


def _file_hash() -> str:
    """A hash of every file the panel loads (the module and its translations)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in FRONTEND_DIR.rglob("*") if p.is_file()):
        digest.update(path.relative_to(FRONTEND_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


async def async_register_panel(hass: HomeAssistant) -> None:
    """Serve the panel's files (once per run) and show the "Peer Energy" sidebar panel.

    Only with the frontend loaded (an after-dependency: every Home Assistant with a user
    interface has it; without it there is no sidebar to show a panel in).
    """
    if frontend.DOMAIN not in hass.config.components:
        return
    # Static paths cannot be unregistered: the router itself tells whether ours is in, so
    # nothing is kept in hass.data. A hash of the folder's files (the panel and its
    # translations) in the module URL makes browsers load a changed panel after an update.
    url = f"{STATIC_URL}?v={await hass.async_add_executor_job(_file_hash)}"
    if not any(res.canonical == STATIC_PATH for res in hass.http.app.router.resources()):
        try:
            await hass.http.async_register_static_paths(
                [StaticPathConfig(STATIC_PATH, str(FRONTEND_DIR), cache_headers=True)]
            )
        except RuntimeError as err:  # a frozen router (only aiohttp's test server freezes)
            LOGGER.warning("Cannot serve the market view panel file: %s", err)
    if PANEL_URL_PATH in hass.data.get(frontend.DATA_PANELS, {}):
        return
    await panel_custom.async_register_panel(
        hass,
        frontend_url_path=PANEL_URL_PATH,
        webcomponent_name=PANEL_COMPONENT,
        sidebar_title=PANEL_TITLE,
        sidebar_icon=PANEL_ICON,
        module_url=url,
        require_admin=False,
    )


@callback
def async_remove_panel(hass: HomeAssistant) -> None:
    """Take the sidebar panel away (the entry unloads)."""
    frontend.async_remove_panel(hass, PANEL_URL_PATH, warn_if_unknown=False)
