"""Savings versus not trading: exact per-slot savings, counted once, stored, by period;
and the grid prices with neighbours' trades that the Energy dashboard multiplies by."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.peer_energy.market import SlotClock
from custom_components.peer_energy.savings import SavingsTracker, slot_saving
from custom_components.peer_energy.sensor import _effective_price

from .market_ha.conftest import (  # noqa: F401 (fixtures)
    NEXT_SLOT,
    START,
    control_mode,
    frozen,
    market,
    mock_config_entry,
    platforms,
)

NEXT_TS = int(NEXT_SLOT.timestamp())
START_TS = int(START.timestamp()) - int(START.timestamp()) % 900


def _report(
    bought: int = 0, sold: int = 0, paid: int = 0, received: int = 0, position: int = 0
) -> Any:
    return SimpleNamespace(
        bought_wh=bought,
        sold_wh=sold,
        paid_milli=paid,
        received_milli=received,
        position_wh=position,
    )


def _plan(import_price: int = 30, feed_in: int = 8) -> Any:
    return SimpleNamespace(import_price=import_price, feed_in_tariff=feed_in)


def test_slot_saving_is_exact() -> None:
    """Bought at 20 instead of 30 and sold at 20 instead of 8, fee included in paid."""
    # 400 Wh bought at 20 + fee 1 (8,400 mmu) instead of 30 (12,000): 3,600 saved.
    assert slot_saving(_report(bought=400, paid=400 * 21), 30, 8) == 3_600
    # 250 Wh sold at 20 (5,000 mmu) instead of 8 (2,000): 3,000 saved.
    assert slot_saving(_report(sold=250, received=250 * 20), 30, 8) == 3_000
    # Nothing traded: nothing saved; a trade worse than the grid is a negative saving.
    assert slot_saving(_report(), 30, 8) == 0
    assert slot_saving(_report(bought=100, paid=100 * 31), 30, 8) == -100


async def test_counted_once_by_period_and_stored(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, hass_storage: dict[str, Any]
) -> None:
    """A repeated outcome counts its change only; days and months split; restart keeps all."""
    freezer.move_to(START)
    tracker = SavingsTracker(hass, "entry1")
    await tracker.async_load()
    changes: list[int] = []
    unsub = tracker.async_add_listener(lambda: changes.append(tracker.total_milli))
    report = _report(bought=400, paid=400 * 20)
    assert tracker.async_count(NEXT_TS, report, _plan())
    assert not tracker.async_count(NEXT_TS, report, _plan())  # the same outcome again
    assert tracker.total_milli == tracker.today_milli() == tracker.month_milli() == 4_000
    # A late community result replaces the outcome: only the difference is added.
    assert tracker.async_count(NEXT_TS, _report(bought=400, paid=400 * 25), _plan())
    assert tracker.total_milli == 2_000
    # A slot with nothing traded is not remembered.
    assert not tracker.async_count(NEXT_TS + 900, _report(), _plan())
    assert NEXT_TS + 900 not in tracker.counted
    assert changes == [4_000, 2_000]
    unsub()

    # Next day: today starts at zero, the month and the total carry on.
    tomorrow = START + dt_util.dt.timedelta(days=1)
    assert tracker.today_milli(tomorrow) == 0
    assert tracker.month_milli(tomorrow) == 2_000
    tracker.async_count(NEXT_TS + 86_400, _report(sold=100, received=100 * 18), _plan())
    assert tracker.today_milli(tomorrow) == 1_000
    assert tracker.total_milli == 3_000
    assert tracker.since == dt_util.as_local(NEXT_SLOT).date().isoformat()

    await tracker.async_flush()
    stored = hass_storage["peer_energy.savings.entry1"]["data"]
    assert stored["total_mmu"] == 3_000
    again = SavingsTracker(hass, "entry1")
    await again.async_load()
    assert (again.total_milli, again.since) == (3_000, tracker.since)
    assert again.today_milli(tomorrow) == 1_000
    # The outcome delivered again after the restart is not counted twice.
    assert not again.async_count(NEXT_TS, _report(bought=400, paid=400 * 25), _plan())
    await again.async_remove()
    assert "peer_energy.savings.entry1" not in hass_storage


async def test_old_slots_and_buckets_pruned(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """Slots of the last two days (both ends included) and three days and months are kept."""
    freezer.move_to(START)
    tracker = SavingsTracker(hass, "entry2")
    for day in range(40):
        slot = NEXT_TS + day * 86_400
        tracker.async_count(slot, _report(bought=10, paid=10 * 20), _plan())
    assert tracker.total_milli == 40 * 100
    assert len(tracker.days) == 3
    assert len(tracker.months) == 2  # November and December 2026
    assert sorted(tracker.counted) == [NEXT_TS + day * 86_400 for day in (37, 38, 39)]


@pytest.mark.parametrize(
    "data",
    [
        None,
        "garbage",
        {"total_mmu": "1", "since": 3, "days": [], "months": {"2026-11": 1.5}},
        {"counted": {"x": 1, "5": True, "7": 2}},
    ],
)
async def test_malformed_store_is_zero(
    hass: HomeAssistant, hass_storage: dict[str, Any], data: Any
) -> None:
    """A damaged file never crashes the set-up: unusable fields start at zero."""
    if data is not None:
        hass_storage["peer_energy.savings.entry3"] = {"version": 1, "key": "x", "data": data}
    tracker = SavingsTracker(hass, "entry3")
    await tracker.async_load()
    assert tracker.total_milli == 0
    assert tracker.since is None
    assert tracker.months == {}
    assert tracker.counted in ({}, {7: 2})


async def test_sensors_and_energy_prices(
    hass: HomeAssistant,
    market: SlotClock,  # noqa: F811
    frozen: FrozenDateTimeFactory,  # noqa: F811
    init_integration: MockConfigEntry,
) -> None:
    """The savings sensors follow the tracker; prices blend neighbours' trades in."""
    savings = init_integration.runtime_data.savings
    assert savings is not None
    today = hass.states.get("sensor.maple_street_7_saved_today")
    assert today is not None
    assert today.state == "0.0"
    assert today.attributes["last_reset"] == dt_util.start_of_local_day().isoformat()
    month = hass.states.get("sensor.maple_street_7_saved_this_month")
    assert month is not None
    local = dt_util.as_local(START)
    first = dt_util.start_of_local_day(datetime(local.year, local.month, 1))
    assert month.attributes["last_reset"] == first.isoformat()
    total = hass.states.get("sensor.maple_street_7_saved_in_total")
    assert total is not None
    assert "last_reset" not in total.attributes

    savings.async_count(START_TS, _report(bought=1000, paid=1000 * 20), _plan())
    await hass.async_block_till_done()
    for entity_id in (
        "sensor.maple_street_7_saved_today",
        "sensor.maple_street_7_saved_this_month",
        "sensor.maple_street_7_saved_in_total",
    ):
        state = hass.states.get(entity_id)
        assert state is not None
        assert float(state.state) == 0.1  # 1 kWh x 10 cents
        assert state.attributes["saving_mmu"] == 10_000
        assert state.attributes["unit_of_measurement"] == "EUR"

    # Running slot: 1 kWh expected import, 400 Wh of it bought from a neighbour at 20 + 1.
    market.plans[START_TS] = _plan()
    market.reports[START_TS] = _report(bought=400, paid=400 * 21, position=1000)
    assert _effective_price(market, "import") == pytest.approx((400 * 21 + 600 * 30) / 1000 / 100)
    assert _effective_price(market, "export") == pytest.approx(0.08)
    # Selling 300 Wh at 20 of 200 Wh expected export: all of the export at the traded price
    # (the home exports what it sold).
    market.reports[START_TS] = _report(sold=300, received=300 * 20, position=-200)
    assert _effective_price(market, "export") == pytest.approx(0.20)
    assert _effective_price(market, "import") == pytest.approx(0.30)
    # No plan for the running slot: the grid prices now.
    del market.plans[START_TS]
    del market.reports[START_TS]
    assert _effective_price(market, "import") == pytest.approx(0.30)
    market._last_import = market._last_export = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(market, "_price", lambda *_args: None)
        assert _effective_price(market, "import") is None


async def test_per_slot_attributes_are_not_recorded(
    hass: HomeAssistant,
    market: SlotClock,  # noqa: F811
    init_integration: MockConfigEntry,
) -> None:
    """Attributes that change every slot stay out of the recorder's history."""
    from homeassistant.const import MATCH_ALL

    component = hass.data["sensor"]

    def unrecorded(entity_id: str) -> frozenset[str]:
        entity = component.get_entity(entity_id)
        assert entity is not None, entity_id
        return entity._Entity__combined_unrecorded_attributes  # type: ignore[no-any-return]

    assert MATCH_ALL in unrecorded("sensor.wallbox_order")
    assert MATCH_ALL in unrecorded("sensor.home_battery_allocation")
    assert MATCH_ALL in unrecorded("sensor.roof_pv_reason")
    assert {"slot_start", "bought_from_peers_wh"} <= unrecorded(
        "sensor.maple_street_7_clearing_price"
    )
    assert "saving_mmu" in unrecorded("sensor.maple_street_7_saved_today")
