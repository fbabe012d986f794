"""Delivery after a slot, through the federation links: reports, settlements, reputation."""

from __future__ import annotations

from unittest.mock import patch

from homeassistant.core import HomeAssistant
import pytest

from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.core.trust.credit import SignedTrade
from custom_components.peer_energy.federation import FederationLink, federation_store
from custom_components.peer_energy.recording import LedgerRecorder

from .conftest import Clock, Home, fast_rules, next_slot, open_ledger, run_slot, tick_all
from .test_link import MemTransport, make_link, mem_join


@pytest.fixture
def net() -> MemTransport:
    return MemTransport()


async def _trade(
    hass: HomeAssistant, clock: Clock, net: MemTransport, *, recorded: bool = True
) -> tuple[list[Home], int]:
    """Home a sells 500 Wh to home b at a final slot; c watches."""
    a = await make_link(hass, net, clock, "a")
    await a.link.async_found("Elder Way", fast_rules(), "a")
    b = await make_link(hass, net, clock, "b")
    c = await make_link(hass, net, clock, "c")
    await mem_join(hass, a, b)
    await mem_join(hass, a, c)
    homes = [a, b, c]
    for home in homes:
        await open_ledger(hass, home)
        home.link.async_start()
    rules = fast_rules()
    slot = next_slot(clock, rules)
    await a.link.async_submit_orders(slot * 1000, [Order.single("s", "", Side.SELL, slot, 500, 10)])
    await b.link.async_submit_orders(slot * 1000, [Order.single("b", "", Side.BUY, slot, 500, 20)])
    await run_slot(clock, homes, slot, rules)
    for home in homes:
        await home.link.async_drain()
        assert home.link.recorder.trades_recorded == (1 if recorded else 0)
    return homes, slot


async def _close(homes: list[Home]) -> None:
    for home in homes:
        await home.link.async_stop()
        assert home.ledger is not None
        await home.ledger.async_close()


async def test_metered_shortfall_settles_in_every_ledger_and_costs_reputation(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    homes, slot = await _trade(hass, clock, net)
    a, b, c = homes
    rules = fast_rules()
    assert a.link.own_reputation is None  # no evidence yet: the sensor stays unavailable
    end = (slot + rules.slot_seconds) * 1000
    await tick_all(clock, homes, end)
    a.link.async_report_delivery(slot * 1000, exported_wh=400, imported_wh=0)  # 100 short
    b.link.async_report_delivery(slot * 1000, exported_wh=0, imported_wh=500)
    c.link.async_report_delivery(slot * 1000, exported_wh=0, imported_wh=0)  # no trade: nothing
    for home in homes:
        await home.link.async_drain()
    assert (a.link.deliveries_reported, b.link.deliveries_reported) == (1, 1)
    assert c.link.deliveries_reported == 0
    price = rules.market.import_price
    balances = []
    for home in homes:
        assert home.ledger is not None
        assert home.link.recorder.settlements_recorded == 1, home.name
        records = await home.ledger.async_records("settlement")
        assert len(records) == 1
        assert records[0].body["shortfall_wh"] == 100
        assert records[0].body["payment"] == 100 * price
        balances.append(home.ledger.balances())
        # every home scores a below a perfect deliverer, from the same shared evidence
        assert home.link.reputations[a.link.member_key] < 1000
    assert balances[0] == balances[1] == balances[2]
    assert sum(balances[0].values()) == 0
    assert a.ledger is not None
    terms = (await a.ledger.async_records("trade"))[0].body["terms"]
    assert terms["energy_wh"] == 500
    # a was paid for 500 Wh and paid back the 100 Wh it did not deliver
    assert balances[0][a.link.member_key] == 500 * terms["price"] - 100 * price
    # a's own reputation is known now (the sensor becomes available)
    assert a.link.own_reputation == a.link.reputations[a.link.member_key]
    diag = a.link.diagnostics()
    assert (diag["settlements_recorded"], diag["deliveries_unreported"]) == (1, 0)
    # restarted links read the stored evidence again
    await a.link.async_stop()
    a.link._scores = {}
    a.link._stopped = False
    a.link.async_start()
    await a.link.async_drain()
    assert a.link.own_reputation is not None
    await _close(homes)


async def test_a_seller_that_never_reports_is_recorded_as_not_delivering(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    homes, slot = await _trade(hass, clock, net)
    a, b, _ = homes
    rules = fast_rules()
    await tick_all(clock, homes, (slot + rules.slot_seconds) * 1000)
    b.link.async_report_delivery(slot * 1000, exported_wh=0, imported_wh=500)
    assert a.link.peer is not None
    await tick_all(clock, homes, a.link.peer.delivery_deadline_ms(slot) + 1)
    for home in homes:
        await home.link.async_drain()
        assert home.link.deliveries_unreported == 1
        assert home.link.recorder.settlements_recorded == 0
        # promised 500 Wh, proved none: the lowest delivery score
        assert home.link.reputations[a.link.member_key] < 500
        assert home.ledger is not None
        # the money stays as traded
        terms = (await home.ledger.async_records("trade"))[0].body["terms"]
        assert home.ledger.balances()[a.link.member_key] == 500 * terms["price"]
    await _close(homes)


async def test_a_settlement_waits_for_its_trade(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """A settlement that reaches the ledger before its trade is kept and recorded after."""
    recorded: list[tuple[int, list[SignedTrade]]] = []

    async def hold(_recorder: LedgerRecorder, slot: int, trades: list[SignedTrade]) -> None:
        recorded.append((slot, trades))

    with patch.object(LedgerRecorder, "record_trades", autospec=True) as record:
        record.side_effect = hold
        homes, slot = await _trade(hass, clock, net, recorded=False)
    a, b, c = homes
    assert c.ledger is not None
    assert await c.ledger.async_records("trade") == []
    ((_, trades), *_) = recorded
    rules = fast_rules()
    await tick_all(clock, homes, (slot + rules.slot_seconds) * 1000)
    a.link.async_report_delivery(slot * 1000, exported_wh=500, imported_wh=0)
    b.link.async_report_delivery(slot * 1000, exported_wh=0, imported_wh=500)
    await c.link.async_drain()
    assert c.link.recorder.settlements_recorded == 0
    assert c.link.diagnostics()["settlements_waiting"] == 1
    await c.link.recorder.record_trades(slot, trades)  # the trade arrives
    await c.link.async_drain()
    assert c.link.recorder.trades_recorded == 1
    assert c.link.recorder.settlements_recorded == 1
    assert c.link.diagnostics()["settlements_waiting"] == 0
    await _close(homes)


async def test_delivery_state_survives_a_restart_of_the_seller(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """The seller reports, restarts, and still settles when the buyer's report comes in."""
    homes, slot = await _trade(hass, clock, net)
    a, b, _ = homes
    rules = fast_rules()
    await tick_all(clock, homes, (slot + rules.slot_seconds) * 1000)
    a.link.async_report_delivery(slot * 1000, exported_wh=500, imported_wh=0)
    await a.link.async_drain()
    await a.link.async_stop()  # saves the store
    again = FederationLink(
        hass,
        a.link.entry_id,
        a.link.identity,
        net,
        store=federation_store(hass, a.link.entry_id),
        clock=clock,
        schedule=False,
        announce=False,
    )
    assert await again.async_load() == "member"
    again.ledger = a.ledger
    net.links["a"] = again
    assert again.peer is not None
    assert slot in again.peer.finals  # rebuilt from the stored signed slot data
    b.link.async_report_delivery(slot * 1000, exported_wh=0, imported_wh=500)
    await b.link.async_drain()
    await again.async_drain()
    assert again.recorder.settlements_recorded == 1
    assert a.ledger is not None
    (record,) = await a.ledger.async_records("settlement")
    assert record.body["buyer_report"] is not None
    a.link = again
    await _close(homes)
