"""Savings include delivery settlements: each settlement of this home's trades corrects the
saving of its trade exactly once (older settlements too, across restarts), in the savings
sensors and in the market view's ``savings.delivery_settlements``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers.dispatcher import async_dispatcher_send
import pytest

from custom_components.peer_energy.core.trust.credit import (
    Role,
    SignedTrade,
    TradeTerms,
    report_delivery,
    settle_delivery,
    sign_trade,
)
from custom_components.peer_energy.core.trust.identity import Identity
from custom_components.peer_energy.ledger import PeerLedger
from custom_components.peer_energy.market import SlotClock
from custom_components.peer_energy.recording import SIGNAL_LEDGER_UPDATED
from custom_components.peer_energy.savings import SavingsTracker, settlement_saving
from custom_components.peer_energy.websocket_api import WS_TYPE_MARKET
from tests.market_ha.conftest import (  # noqa: F401 (fixtures)
    NEXT_SLOT,
    START,
    control_mode,
    frozen,
    market,
    mock_config_entry,
    platforms,
    source_states,
)

NEIGHBOUR = Identity(bytes(range(32)))
NEXT_TS = int(NEXT_SLOT.timestamp())
# Three days before the test's start: older than the savings' two-day memory of slots.
OLD_TS = int((START - timedelta(days=3)).timestamp()) // 900 * 900
PRICE = 22  # minor units per kWh
SETTLE_IMPORT = 30  # the community's import price the shortfall is paid at


def test_settlement_saving() -> None:
    """The buyer is paid for the shortfall and bought it from the grid instead; the seller
    pays for it and gets back the feed-in the fill's saving had subtracted for it."""
    # 100 Wh short, paid at 30 (3000 mmu); the home's own prices are 30 and 8.
    assert settlement_saving("buyer", 100, 3000, 30, 8) == 0
    assert settlement_saving("buyer", 100, 3000, 35, 8) == -500
    assert settlement_saving("seller", 100, 3000, 30, 8) == 800 - 3000
    assert settlement_saving("seller", 0, 0, 30, 8) == 0


def _trade(ledger: PeerLedger, slot: int, energy_wh: int, *, sell: bool) -> SignedTrade:
    """A trade of this home with the neighbour, signed by both (``sell``: this home sells)."""
    me, other = ledger.member, NEIGHBOUR.public_key
    head = ledger._ledger.head.hash_hex
    terms, result = ledger._ledger.credit.propose_trade(
        slot=slot,
        buyer=other if sell else me,
        seller=me if sell else other,
        energy_wh=energy_wh,
        price=PRICE,
        clean=True,
        seller_prev=head if sell else "",
        buyer_prev="" if sell else head,
    )
    assert terms is not None, result
    mine = sign_trade(terms, ledger._ledger.identity)
    theirs = sign_trade(terms, NEIGHBOUR)
    return SignedTrade(terms, theirs, mine) if sell else SignedTrade(terms, mine, theirs)


async def _settle(ledger: PeerLedger, terms: TradeTerms, delivered_wh: int) -> None:
    """Record the trade's delivery settlement: the seller's meter shows ``delivered_wh``."""
    me = ledger.member
    if terms.seller == me:
        report = report_delivery(terms, ledger._ledger.identity, me, Role.SELLER, delivered_wh, 0)
    else:
        report = report_delivery(
            terms, NEIGHBOUR, NEIGHBOUR.public_key, Role.SELLER, delivered_wh, 0
        )
    settlement = settle_delivery(terms, report, None, import_price=SETTLE_IMPORT)
    result = await ledger.async_commit_slot((terms.slot + 1800) * 1000, settlements=[settlement])
    assert result.refused == (), result


async def _trade_and_settle(
    ledger: PeerLedger, slot: int, energy_wh: int, delivered_wh: int, *, sell: bool
) -> None:
    trade = _trade(ledger, slot, energy_wh, sell=sell)
    result = await ledger.async_commit_slot(slot * 1000, trades=[trade])
    assert result.refused == (), result
    await _settle(ledger, trade.terms, delivered_wh)


async def _view(hass_ws_client: Any, hass: HomeAssistant) -> dict[str, Any]:
    client = await hass_ws_client(hass)
    await client.send_json_auto_id({"type": WS_TYPE_MARKET})
    msg = await client.receive_json()
    assert msg["success"], msg
    result: dict[str, Any] = msg["result"]
    return result


def _total(hass: HomeAssistant) -> float:
    state = hass.states.get("sensor.maple_street_7_saved_in_total")
    assert state is not None
    return float(state.state)


async def test_settlements_counted_once_old_ones_too(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    market: SlotClock,  # noqa: F811
    hass_ws_client: Any,
) -> None:
    """A settlement already in the ledger at start (three days old) and one recorded while
    running both reach the savings once; repeated ledger updates and a restart of the
    tracker count nothing again."""
    runtime = market.entry.runtime_data
    ledger, savings = runtime.ledger, runtime.savings
    assert ledger is not None
    assert savings is not None
    plan = market.plans[NEXT_TS]
    import_price, feed_in = plan.import_price, plan.feed_in_tariff
    grid_prices = market.grid_prices()
    assert grid_prices is not None
    # the tracker's first scan (a background task started at set-up) has read the ledger
    await hass.async_block_till_done(wait_background_tasks=True)
    assert savings.total_milli == 0

    # Three days old (the slot clock has no plan for it any more): this home sold 500 Wh
    # and delivered 400; today's grid prices value the shortfall.
    await _trade_and_settle(ledger, OLD_TS, 500, 400, sell=True)
    assert OLD_TS not in market.plans
    old = settlement_saving("seller", 100, 100 * SETTLE_IMPORT, *grid_prices)
    assert old == 100 * grid_prices[1] - 3000
    # A full scan (as at start) finds it although it is older than two days.
    assert await savings.async_scan_settlements(ledger, market) == 1
    assert savings.total_milli == old
    assert savings.today_milli() == 0  # counted on its own (old) day

    # The next slot: this home bought 600 Wh, the neighbour delivered 250. The ledger
    # update makes the tracker look (the link sends it after every credit record).
    await _trade_and_settle(ledger, NEXT_TS, 600, 250, sell=False)
    entry_id = market.entry.entry_id
    for _ in range(3):  # repeated updates count it once
        async_dispatcher_send(hass, f"{SIGNAL_LEDGER_UPDATED}_{entry_id}")
        await hass.async_block_till_done(wait_background_tasks=True)  # the scans it starts
    new = settlement_saving("buyer", 350, 350 * SETTLE_IMPORT, import_price, feed_in)
    assert new == 350 * (SETTLE_IMPORT - import_price)
    assert savings.total_milli == old + new
    assert len(savings.settled) == 2
    payments = 350 * SETTLE_IMPORT - 100 * SETTLE_IMPORT
    assert savings.settled_payment_milli == payments

    # Scanning the whole ledger again counts nothing twice.
    assert await savings.async_scan_settlements(ledger, market) == 0
    assert savings.total_milli == old + new

    # The sensor and the market view show the same.
    await hass.async_block_till_done()
    assert _total(hass) == pytest.approx((old + new) / 100_000)
    view = await _view(hass_ws_client, hass)
    assert view["savings"]["since_joining"]["mmu"] == old + new
    assert view["savings"]["delivery_settlements"] == {
        "count": 2,
        "payment": {"value": payments / 100_000, "mmu": payments},
        "saving": {"value": (old + new) / 100_000, "mmu": old + new},
    }

    # A restart: the stored ids keep both settlements from counting again.
    await savings.async_flush()
    again = SavingsTracker(hass, entry_id)
    await again.async_load()
    assert (again.total_milli, again.settled) == (savings.total_milli, savings.settled)
    assert await again.async_scan_settlements(ledger, market) == 0
    assert again.total_milli == old + new
    assert again.settled_payment_milli == payments


async def test_settlement_without_shortfall_changes_nothing(
    hass: HomeAssistant,
    market: SlotClock,  # noqa: F811
) -> None:
    """A trade delivered in full settles with no payment: the savings stay as they are and
    nothing is stored for it."""
    runtime = market.entry.runtime_data
    ledger, savings = runtime.ledger, runtime.savings
    assert ledger is not None
    assert savings is not None
    await _trade_and_settle(ledger, NEXT_TS, 300, 300, sell=True)
    assert await savings.async_scan_settlements(ledger, market) == 0
    assert (savings.total_milli, savings.settled, savings.settled_payment_milli) == (0, {}, 0)


async def test_late_settlement_of_an_old_trade_counted_when_recorded(
    hass: HomeAssistant,
    market: SlotClock,  # noqa: F811
) -> None:
    """A settlement of a three-day-old trade recorded while the home runs (a neighbour's
    ledger reconciled late) reaches the savings at that ledger update, not only at the
    next start."""
    runtime = market.entry.runtime_data
    ledger, savings = runtime.ledger, runtime.savings
    assert ledger is not None
    assert savings is not None
    grid_prices = market.grid_prices()
    assert grid_prices is not None
    await hass.async_block_till_done(wait_background_tasks=True)  # the start's scan
    assert await savings.async_scan_settlements(ledger, market) == 0

    await _trade_and_settle(ledger, OLD_TS, 500, 400, sell=True)
    async_dispatcher_send(hass, f"{SIGNAL_LEDGER_UPDATED}_{market.entry.entry_id}")
    await hass.async_block_till_done(wait_background_tasks=True)
    old = settlement_saving("seller", 100, 100 * SETTLE_IMPORT, *grid_prices)
    assert savings.total_milli == old
    assert len(savings.settled) == 1
