"""Three homes over real HTTP on loopback: invitation, join, one traded slot, same result."""

from __future__ import annotations

from homeassistant.components import persistent_notification
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.core.federation.protocol import result_hash
from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.federation import (
    EVENT_PEER_JOINED,
    EVENT_PEER_LEFT,
    ISSUE_PEER_UNREACHABLE,
)
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry

from .conftest import (
    Clock,
    Home,
    HomeFactory,
    fast_rules,
    join,
    next_slot,
    run_slot,
    settle,
    tick_all,
)


async def test_three_homes_clear_one_slot_identically(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """B and C join A through invitations; all three hold the same attested result."""
    entry, a = home_a
    assert entry.runtime_data.federation is a.link
    assert a.link.joined
    assert a.link.members == 1
    joined: list[Event] = []
    hass.bus.async_listen(EVENT_PEER_JOINED, joined.append)

    b = await make_home("B")
    c = await make_home("C")
    await join(hass, a, b, [])
    await join(hass, a, c, [b])
    await hass.async_block_till_done()
    assert [e.data["member"] for e in joined] == [b.link.member_key, c.link.member_key]
    notifications = persistent_notification._async_get_or_create_notifications(hass)
    assert f"{DOMAIN}_peer_{b.link.member_key[:8]}" in notifications
    for home in (a, b, c):
        assert home.link.members == 3
        assert home.link.community_id == a.link.community_id

    rules = fast_rules()
    slot = next_slot(clock, rules)
    homes = [a, b, c]
    await a.link.async_submit_orders(
        slot * 1000, [Order.single("sell", "", Side.SELL, slot, 1_000, 10)]
    )
    await b.link.async_submit_orders(
        slot * 1000, [Order.single("buy", "", Side.BUY, slot, 600, 25)]
    )
    await c.link.async_submit_orders(
        slot * 1000, [Order.single("buy", "", Side.BUY, slot, 600, 20)]
    )
    await settle(*homes)
    await run_slot(clock, homes, slot, rules)

    hashes = set()
    for home in homes:
        assert len(home.outcomes) == 1, home.name
        outcome = home.outcomes[0]
        assert outcome.slot_start_ms == slot * 1000
        assert outcome.result is not None
        assert outcome.void_reason is None
        hashes.add(result_hash(outcome.result))
    assert len(hashes) == 1
    result = a.outcomes[0].result
    assert result is not None
    assert result.volume_wh == 1_000
    sold = sum(f.energy_wh for f in a.outcomes[0].own_fills if f.seller == a.link.member_key)
    bought_b = sum(f.energy_wh for f in b.outcomes[0].own_fills)
    bought_c = sum(f.energy_wh for f in c.outcomes[0].own_fills)
    assert sold == 1_000 == bought_b + bought_c
    assert all(b.link.member_key in (f.buyer, f.seller) for f in b.outcomes[0].own_fills)

    # The fills were countersigned: A's ledger holds the trades and A's balance grew by
    # exactly what the buyers paid for the energy (fee excluded), in milli-cents.
    await settle(*homes)
    await a.link.async_drain()
    assert a.link.recorder.trades_recorded == len(result.fills)
    assert a.link.recorder.trades_refused == 0
    ledger_a = entry.runtime_data.ledger
    assert ledger_a is not None
    earned = sum(f.energy_wh * f.price for f in result.fills if f.seller == a.link.member_key)
    assert earned > 0
    assert ledger_a.balance() == earned
    balances = ledger_a.balances()
    assert sum(balances.values()) == 0  # mutual credit sums to zero (fee account included)
    assert b.ledger is not None
    paid_b = sum(f.energy_wh * (f.price + f.fee) for f in b.outcomes[0].own_fills)
    assert b.ledger.balance() == -paid_b
    assert b.ledger.balances() == balances  # every home holds the same community view

    # A recorded its fills in its own chain (one "slot" entry).
    ledger = entry.runtime_data.ledger
    assert ledger is not None
    exported = await ledger.async_export("json", include_chain=True)
    assert isinstance(exported, dict)
    assert '"kind": "slot"' in str(exported).replace("'", '"')


async def test_peer_leaves_and_unreachable_sensor(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
    entity_registry: er.EntityRegistry,
) -> None:
    """A silent peer shows in the "Unreachable neighbours" sensor (no repair: this user
    cannot fix a neighbour's outage) until it is heard again; a repair of an earlier
    version is deleted at start; leaving is told."""
    entry, a = home_a
    sensor = entity_registry.async_get_entity_id(
        "sensor", DOMAIN, f"{entry.entry_id}_unreachable_neighbours"
    )
    assert sensor is not None
    state = hass.states.get(sensor)
    assert state is not None
    assert (state.state, state.attributes["neighbours"]) == ("0", [])
    b = await make_home("B")
    c = await make_home("C")
    await join(hass, a, b, [])
    await join(hass, a, c, [b])
    rules = fast_rules()
    homes = [a, b, c]
    # C goes offline (hears nothing, says nothing) for four slots; A and B keep ticking.
    await tick_all(clock, homes, clock.now + 1)
    c.link._stopped = True
    for _ in range(4):
        await tick_all(clock, [a, b], clock.now + rules.slot_seconds * 1000)
    await hass.async_block_till_done()
    assert a.link.unreachable_members == (c.link.member_key,)
    state = hass.states.get(sensor)
    assert state is not None
    assert (state.state, state.attributes["neighbours"]) == ("1", [c.link.member_key[:8]])
    assert not [i for (d, i) in ir.async_get(hass).issues if d == DOMAIN and "unreachable" in i]
    assert a.link.peers_online == 1
    # C is back: its next message clears it.
    c.link._stopped = False
    await tick_all(clock, homes, clock.now + 1)
    await tick_all(clock, homes, rules.gate_closure_ms(next_slot(clock, rules)) + 10)
    await hass.async_block_till_done()
    assert a.link.unreachable_members == ()
    state = hass.states.get(sensor)
    assert state is not None
    assert (state.state, state.attributes["neighbours"]) == ("0", [])
    assert a.link.peers_online == 2
    # A repair an earlier version left is deleted when the link starts.
    old = f"{ISSUE_PEER_UNREACHABLE}_{c.link.member_key[:16]}"
    ir.async_create_issue(
        hass,
        DOMAIN,
        old,
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key=ISSUE_PEER_UNREACHABLE,
    )
    a.link.async_start()
    assert ir.async_get(hass).async_get_issue(DOMAIN, old) is None

    left = []
    hass.bus.async_listen(EVENT_PEER_LEFT, left.append)
    await c.link.async_leave()
    await settle(*homes)
    await hass.async_block_till_done()
    assert [e.data["member"] for e in left] == [c.link.member_key]
    assert a.link.members == 2
    assert b.link.members == 2
    assert not c.link.joined
