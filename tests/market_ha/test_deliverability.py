"""Advise mode delivers what it sells, through the real slot clock.

A home with PV and a battery that runs its own self-consumption logic (Peer Energy only
advises) trades 1-minute slots in a community for 90 minutes. The house is simulated minute
by minute (PV following the sun with noise, a base load with appliances that switch on at
random, the battery storing surplus and covering deficits) and its sensors are set from the
simulation; a neighbour buys everything the home offers; the slot clock meters the home's
grid export every slot, as it reports delivery to the community. Delivered / sold >= 95 %.
"""

from __future__ import annotations

from datetime import timedelta
from random import Random
from types import SimpleNamespace
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.peer_energy.const import ControlMode
from custom_components.peer_energy.core.home.forecast import Site, sun_height
from custom_components.peer_energy.core.market.clearing import clear_slot
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side
from custom_components.peer_energy.market import SlotClock
from tests.conftest import ASSETS, BATTERY_ID, GRID_ID, PV_ID, make_entry
from tests.market_ha.conftest import START

CAPACITY_WH = 10_000  # the shared battery asset: 10 kWh, 5 kW, reports kW positive charging
MAX_W = 5000
MINUTES = 90
PERCENT = {"unit_of_measurement": "%"}


class CommunityLink:
    """A community of one neighbour who buys every offer (the slot clock's federation)."""

    gate_closure_lead_ms = 20_000
    slot_ms = 60_000
    member_key = "me" * 16
    peers_online = 1
    members = 2

    def __init__(self) -> None:
        self.listeners: list[Any] = []
        self.sold: dict[int, int] = {}
        self.delivered: dict[int, int] = {}

    async def async_submit_orders(self, slot_start_ms: int, orders: Any) -> None:
        slot = slot_start_ms // 1000
        sells = [o for o in orders if o.side is Side.SELL]
        offered = sum(o.energy_wh for o in sells)
        buyer = Order.single("n", "neighbour" * 4, Side.BUY, slot, max(offered, 1), 30)
        result = clear_slot([*sells, buyer], MarketRules(30, 8), slot_start=slot)
        own = tuple(f for f in result.fills if self.member_key in (f.buyer, f.seller))
        self.sold[slot] = sum(f.energy_wh for f in own if f.seller == self.member_key)
        outcome = SimpleNamespace(
            slot_start_ms=slot_start_ms, result=result, void_reason=None, own_fills=own
        )
        for listener in list(self.listeners):
            listener(outcome)

    def async_add_result_listener(self, cb: Any) -> Any:
        self.listeners.append(cb)
        return lambda: self.listeners.remove(cb)

    def async_report_delivery(self, slot_start_ms: int, exported_wh: int, imported_wh: int) -> None:
        self.delivered[slot_start_ms // 1000] = exported_wh


@pytest.fixture
def mock_config_entry() -> MockConfigEntry:
    """PV, a battery in its own self-consumption mode (nothing to control) and a grid meter."""
    return make_entry(
        {PV_ID: ASSETS[PV_ID], BATTERY_ID: ASSETS[BATTERY_ID], GRID_ID: ASSETS[GRID_ID]},
        {"control_mode": ControlMode.ADVISE},
    )


class House:
    """The simulated house: PV, base load with appliances, a self-consumption battery."""

    def __init__(self, hass: HomeAssistant, seed: int) -> None:
        self.hass = hass
        self.rng = Random(seed)
        self.site = Site(hass.config.latitude, hass.config.longitude)
        self.soc_wh = 9_600.0
        self.appliance = (0.0, 0)

    def step(self, ts: int) -> None:
        """Set the sensors for the minute from ``ts`` (what the meters will see)."""
        rng = self.rng
        pv = 10_000 * sun_height(ts + 30, self.site) * (1 + rng.gauss(0, 0.05))
        power, left = self.appliance
        if left <= 0 and rng.random() < 0.02:
            power, left = rng.uniform(800, 2000), rng.randint(2, 15)
        self.appliance = (power, left - 1)
        load = max(0.0, 400 + (power if left > 0 else 0) + rng.gauss(0, 60))
        surplus = pv - load
        if surplus > 0:
            battery = min(surplus, MAX_W, (CAPACITY_WH - self.soc_wh) * 60)
        else:
            battery = -min(-surplus, MAX_W, max(0.0, (self.soc_wh - 0.1 * CAPACITY_WH) * 60))
        self.soc_wh += battery / 60
        grid = load - pv + battery
        states = {
            "sensor.pv_power": (f"{pv:.0f}", {"unit_of_measurement": "W"}),
            "sensor.battery_power": (f"{battery / 1000:.3f}", {"unit_of_measurement": "kW"}),
            "sensor.battery_soc": (
                f"{self.soc_wh * 100 / CAPACITY_WH:.1f}",
                {"unit_of_measurement": "%"},
            ),
            "sensor.grid_power": (f"{grid:.0f}", {"unit_of_measurement": "W"}),
        }
        for entity_id, (state, attributes) in states.items():
            self.hass.states.async_set(entity_id, state, attributes)


@pytest.mark.parametrize("seed", [7])
async def test_advise_mode_delivers_what_it_sells(
    hass: HomeAssistant,
    market: SlotClock,
    frozen: FrozenDateTimeFactory,
    seed: int,
) -> None:
    link = CommunityLink()
    market.async_stop()
    market.runtime.federation = link  # type: ignore[assignment]
    market.async_start()
    house = House(hass, seed)
    first = START.replace(second=0) + timedelta(minutes=1)
    for minute in range(MINUTES):
        when = first + timedelta(minutes=minute)
        frozen.move_to(when)
        house.step(int(when.timestamp()))
        await hass.async_block_till_done()
        async_fire_time_changed(hass, when)
        await hass.async_block_till_done()
    slots = [s for s in link.sold if s in link.delivered]
    sold = sum(link.sold[s] for s in slots)
    delivered = sum(min(link.sold[s], link.delivered[s]) for s in slots)
    assert len(slots) >= MINUTES - 3
    assert sold > 1000, sold  # the surplus the full battery cannot take
    assert delivered * 100 >= 95 * sold, (delivered, sold)
    # Every order says why, and the battery's plan says it follows its own logic.
    plan = market.plans[max(market.plans)]
    assert plan.assets[BATTERY_ID].reason.code == "battery_self_consumption"
    assert all(order.reason is not None for order in plan.orders)
