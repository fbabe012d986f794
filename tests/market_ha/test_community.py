"""The slot clock in a real community: home A (this entry, with assets and agents) and a
neighbour B trade one slot over HTTP on loopback; both see the same clearing."""

from __future__ import annotations

from datetime import UTC, datetime

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
)

from custom_components.peer_energy.const import DOMAIN, SUBENTRY_ASSET
from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.market import EVENT_SLOT_CLEARED, SitOut
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry
from tests.conftest import ASSETS, GRID_ID, PV_ID, SOURCE_STATES
from tests.federation_ha.conftest import (  # noqa: F401 (fixtures)
    Clock,
    Home,
    HomeFactory,
    clock,
    community_entry,
    fast_rules,
    http_address,
    join,
    make_home,
    next_slot,
    run_slot,
    settle,
)

MY_ASSETS = {PV_ID: ASSETS[PV_ID], GRID_ID: ASSETS[GRID_ID]}


@pytest.fixture
async def market_home(
    hass: HomeAssistant,
    clock: Clock,  # noqa: F811
    http_address: str,  # noqa: F811
    freezer: FrozenDateTimeFactory,
) -> tuple[PeerEnergyConfigEntry, Home]:
    """This entry: PV exporting 2 kW, founder of "Elm Street" (60 s slots), in Nairobi (where
    the sun is up at the test clock's time, so the PV forecast follows the PV now)."""
    hass.config.latitude, hass.config.longitude = -1.29, 36.82
    freezer.move_to(datetime.fromtimestamp(clock.now / 1000, UTC))
    for entity_id, (state, attributes) in SOURCE_STATES.items():
        hass.states.async_set(entity_id, state, attributes)
    hass.states.async_set("sensor.grid_power", "-2000", {"unit_of_measurement": "W"})
    base = community_entry(http_address)
    entry = MockConfigEntry(
        domain=DOMAIN,
        entry_id=base.entry_id,
        title=base.title,
        unique_id=DOMAIN,
        data=dict(base.data),
        options=dict(base.options),
        subentries_data=[
            *(
                {
                    "data": dict(subentry.data),
                    "subentry_id": subentry.subentry_id,
                    "subentry_type": subentry.subentry_type,
                    "title": subentry.title,
                    "unique_id": subentry.unique_id,
                }
                for subentry in base.subentries.values()
            ),
            *(
                {
                    "data": data,
                    "subentry_id": sid,
                    "subentry_type": SUBENTRY_ASSET,
                    "title": data["name"],
                    "unique_id": None,
                }
                for sid, data in MY_ASSETS.items()
            ),
        ],
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    link = entry.runtime_data.link
    home = Home("A", link, http_address)
    link.async_add_result_listener(home.outcomes.append)
    return entry, home


async def test_agents_trade_with_a_neighbour(
    hass: HomeAssistant,
    clock: Clock,  # noqa: F811
    market_home: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,  # noqa: F811
) -> None:
    """A's agents offer its PV surplus; B buys; both hold the same result and price."""
    entry, a = market_home
    market = entry.runtime_data.market
    assert market is not None
    # Reloaded as a member: the clock follows the community's slot length and gate lead.
    assert market.federation is a.link
    assert (market.slot_seconds, market.gate_lead_seconds) == (60, 20)
    b = await make_home("B")
    await join(hass, a, b, [])

    rules = fast_rules()
    slot = next_slot(clock, rules)
    plan = await market.async_prepare(slot)
    assert plan is not None
    assert plan.order is not None
    assert plan.order.side is Side.SELL
    assert plan.assets[PV_ID].reason.code == "pv_surplus"
    assert plan.assets[GRID_ID].reason.code == SitOut.METER_ONLY
    # 2500 W of PV for one minute is about 41 Wh (following the sun); the household uses
    # 500 W (8 Wh) of it itself; the rest is offered, less the forecast's uncertainty margin
    # (the least of it where a sale gains most, more at cheaper asks).
    pv_wh = -plan.assets[PV_ID].signed_wh
    assert plan.plan is not None
    margin = plan.plan.margin_wh
    assert 40 <= pv_wh <= 43
    assert margin > 0
    assert plan.order.energy_wh == pv_wh - 8 - margin >= 20
    assert plan.order.clean
    # B bids near the import price: there a shortfall would cost A little, so A's graded
    # margin keeps back least and all 20 Wh are on offer
    await b.link.async_submit_orders(slot * 1000, [Order.single("buy", "", Side.BUY, slot, 20, 29)])
    events = async_capture_events(hass, EVENT_SLOT_CLEARED)
    await settle(a, b)
    await run_slot(clock, [a, b], slot, rules)
    await hass.async_block_till_done()

    (outcome_a,) = a.outcomes
    (outcome_b,) = b.outcomes
    assert outcome_a.result is not None
    assert outcome_b.result is not None
    report = market.reports[slot]
    # The same clearing price in both homes; A sold what B bought.
    assert report.price == outcome_a.result.general_price == outcome_b.result.general_price
    assert report.sold_wh == 20 == sum(f.energy_wh for f in outcome_b.own_fills)
    assert report.void is False
    assert report.local is False
    (event,) = events
    assert event.data["sold_wh"] == 20
    # The PV asset's allocation: 8 Wh to the home, 20 Wh to the neighbour, the rest to the grid.
    pv = report.allocations[PV_ID]
    assert (pv.energy_wh, pv.internal_wh, pv.market_wh) == (-pv_wh, -8, -20)
    assert pv.grid_wh == -(pv_wh - 28)
    sold = hass.states.get("sensor.maple_street_7_energy_sold_to_peers")
    assert sold is not None
    assert float(sold.state) == pytest.approx(0.02)
    earned = hass.states.get("sensor.maple_street_7_credit_earned")
    assert earned is not None
    assert float(earned.state) == pytest.approx(20 * report.price / 100_000)
    peers = hass.states.get("sensor.maple_street_7_peers_online")
    assert peers is not None
    assert peers.attributes["members"] == 2
