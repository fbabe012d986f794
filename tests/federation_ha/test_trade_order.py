"""A home's trade halves chain up: its halves for a slot commit to its signed balance
after its trades of earlier slots. When one of those is countersigned late (its
counterparty was killed while settling it), the home settles the later slot only after
the earlier trade is recorded, so neither trade is refused anywhere."""

from __future__ import annotations

from homeassistant.core import HomeAssistant

from custom_components.peer_energy.core.market.orders import Side

from .conftest import Clock, fast_rules, next_slot
from .test_crash import (
    MemTransport,
    _bid,
    _close,
    _community,
    _freeze,
    _kill,
    _restart,
    _settle_down,
    assert_consistent,
    net,
    run_slot,
)

__all__ = ["net"]  # the fixture


async def test_a_later_slot_waits_for_an_earlier_trade_countersigned_late(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    homes = await _community(hass, clock, net)
    a, b, _ = homes
    rules = fast_rules()
    first = next_slot(clock, rules)
    second = first + rules.slot_seconds
    for slot in (first, second):
        await _bid(a, slot, Side.SELL, 500, 10)
        await _bid(b, slot, Side.BUY, 500, 20)
    await _settle_down(clock, homes, 1_000)
    _freeze(a)  # the seller is being killed: its halves of the first slot never leave
    await run_slot(clock, homes, first, rules)
    await run_slot(clock, homes, second, rules)  # final at the buyer and the observer
    assert b.link.peer is not None
    assert b.link.peer.unsigned_before(second, clock.now)
    assert second in b.link._deferred  # the buyer's second halves wait for the first
    await _kill(a)
    await _restart(hass, net, clock, a)
    await _settle_down(clock, homes, 6_000)
    balances = await assert_consistent(homes)
    assert b.ledger is not None
    trades = await b.ledger.async_records("trade")
    assert sorted(r.body["terms"]["slot"] for r in trades) == [first, second]
    assert balances[b.link.member_key] == -sum(
        r.body["terms"]["energy_wh"] * (r.body["terms"]["price"] + r.body["terms"]["fee"])
        for r in trades
    )
    for home in homes:
        assert home.link.recorder.trades_refused == 0, home.name
    assert b.link._deferred == {}
    await _close(homes)
