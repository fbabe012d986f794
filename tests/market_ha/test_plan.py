"""The slot clock's plan: the planner's next day on a sensor and in the market view, the
fallbacks (no forecast, a device that cannot be controlled) and control mode acting on it."""

from __future__ import annotations

import logging
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
import pytest

from custom_components.peer_energy.const import CONF_MODE_ENTITY, CONF_SETPOINT_ENTITY, ControlMode
from custom_components.peer_energy.core.home.forecast import HomeForecast
from custom_components.peer_energy.core.home.slot_plan import PLAN_COLUMNS
from custom_components.peer_energy.market import SitOut, SlotClock
from custom_components.peer_energy.websocket_api import async_market_view
from tests.conftest import ASSETS, BATTERY_ID, EV_ID, GRID_ID, PLUG_ID, PV_ID
from tests.market_ha.conftest import NEXT_SLOT

NEXT_TS = int(NEXT_SLOT.timestamp())
FORECAST = "custom_components.peer_energy.market.async_home_forecast"


def _forecast(
    slots: int = 96,
    *,
    pv: int = 0,
    load: int = 100,
    prices: list[int] | None = None,
    start: int = NEXT_TS,
) -> HomeForecast:
    imp = prices or [30] * slots
    return HomeForecast(
        start=start,
        slot_seconds=900,
        pv_wh=(pv,) * slots,
        pv_sd_wh=(0,) * slots,
        load_wh=(load,) * slots,
        load_sd_wh=(0,) * slots,
        import_price=tuple(imp),
        feed_in_tariff=(8,) * slots,
    )


async def test_plan_sensor_shows_the_next_day(hass: HomeAssistant, market: SlotClock) -> None:
    """The plan sensor: the next slot's planned grid energy, the next day as attributes
    that the recorder leaves out."""
    plan = market.plans[NEXT_TS]
    assert plan.plan is not None
    state = hass.states.get("sensor.maple_street_7_planned_grid_energy")
    assert state is not None
    first = plan.plan.slots[0]
    assert int(state.state) == first.import_wh - first.export_wh
    attrs = state.attributes
    assert attrs["mode"] == "advise"
    assert attrs["fallback"] is None
    assert attrs["slot_start"] == NEXT_SLOT.isoformat()
    assert attrs["slot_seconds"] == 900
    for name in PLAN_COLUMNS:
        assert len(attrs[name]) == 96, name
    assert attrs["start"][0] == NEXT_TS
    assert attrs["pv_wh"][0] == first.pv_wh
    # The car charges from plug-in (its own logic); the battery covers what PV does not.
    assert attrs["ev_wh"][0] > 0
    assert attrs["battery_wh"][0] == first.battery_wh < 0
    assert attrs["import_wh"][0] == first.import_wh
    entity = next(
        e
        for e in hass.data["sensor"].entities
        if e.entity_id == "sensor.maple_street_7_planned_grid_energy"
    )
    assert set(PLAN_COLUMNS) | {"mode", "slot_start"} <= entity._unrecorded_attributes


async def test_market_view_carries_the_plan(
    hass: HomeAssistant, market: SlotClock, init_integration: Any
) -> None:
    """The market view has the plan of the next slot's day and both sides of the order."""
    view = await async_market_view(hass, init_integration)
    plan = view["plan"]
    assert plan["slot_start"] == NEXT_SLOT.isoformat()
    assert plan["mode"] == "advise"
    assert plan["start"][0] == NEXT_SLOT.isoformat()
    assert len(plan["expected_price"]) == 96
    assert plan["fallback"] is None
    order = view["next"]["order"]
    assert order["reason"]["code"] == "home_net"
    assert [o["side"] for o in order["orders"]] == [
        o.side.value for o in market.plans[NEXT_TS].orders
    ]


async def test_without_a_forecast_the_readings_are_persisted(
    hass: HomeAssistant, market: SlotClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A forecast that cannot be built falls back to the readings now, with a reason."""
    with patch(FORECAST, side_effect=ValueError("no horizon")):
        plan = await market.async_plan_slot(NEXT_TS)
    assert plan.fallback == "forecast_persistence"
    assert plan.plan is not None
    assert plan.orders
    assert "No forecast for slot" in caplog.text
    # Our own bug in the forecast is logged with its traceback; the market carries on.
    with patch(FORECAST, side_effect=KeyError("bug")), caplog.at_level(logging.ERROR):
        plan = await market.async_plan_slot(NEXT_TS)
    assert plan.fallback == "forecast_persistence"
    assert "Traceback" in caplog.text


async def test_no_price_anywhere(hass: HomeAssistant, market: SlotClock) -> None:
    """No forecast and no grid price: no order, every asset says why."""
    market._last_import = None
    with (
        patch(FORECAST, return_value=None),
        patch.object(SlotClock, "grid_prices", return_value=None),
    ):
        plan = await market.async_plan_slot(NEXT_TS)
    assert plan.orders == ()
    assert plan.plan is None
    assert {p.reason.code for p in plan.assets.values()} == {SitOut.NO_PRICE}


@pytest.mark.parametrize("control_mode", [ControlMode.CONTROL])
async def test_control_mode_plans_with_the_lp(hass: HomeAssistant, market: SlotClock) -> None:
    """In control mode the plan decides: a flexible plug waits for a cheaper slot within its
    waiting time, and the EV charges in the cheap hours."""
    market.runtime.async_update_controls(PLUG_ID, plug_flexible=True, plug_max_delay_min=60)
    market.runtime.async_update_controls(BATTERY_ID, participating=False)
    prices = [30, 30] + [10] * 94
    with patch(FORECAST, return_value=_forecast(prices=prices)):
        plan = await market.async_plan_slot(NEXT_TS)
    assert plan.fallback is None
    assert plan.plan is not None
    assert plan.plan.mode.value == "control"
    # At the grid's price the plan waits; it runs the plug in a cheap slot within the hour
    # it may wait, unless the community's price now is as cheap (its bid says so).
    assert plan.plan.slots[0].plug_wh == 0
    assert any(row.plug_wh > 0 for row in plan.plan.slots[2:5])
    plug = plan.assets[PLUG_ID]
    assert all(step.price <= 10 for bid in plug.bids for step in bid.steps)
    assert plan.assets[EV_ID].reason.code in ("ev_charge", "ev_deadline")
    assert plan.plan.slots[0].ev_wh == 0
    assert sum(row.ev_wh for row in plan.plan.slots) == 10_000
    # Cheap now: the plug runs at once.
    with patch(FORECAST, return_value=_forecast(prices=[10] * 96)):
        plan = await market.async_plan_slot(NEXT_TS)
    assert plan.plan.slots[0].plug_wh > 0
    assert plan.assets[PLUG_ID].signed_wh > 0


@pytest.mark.parametrize("control_mode", [ControlMode.CONTROL])
async def test_control_mode_needs_controllable_devices(
    hass: HomeAssistant, market: SlotClock
) -> None:
    """A battery Peer Energy cannot steer follows its own logic: the home plans in advise
    mode and says so, so it never offers what the battery will not do."""
    from dataclasses import replace

    assets = dict(market.runtime.assets)
    battery = assets[BATTERY_ID]
    sources = {
        k: v
        for k, v in battery.sources.items()
        if k not in (CONF_SETPOINT_ENTITY, CONF_MODE_ENTITY)
    }
    assets[BATTERY_ID] = replace(battery, sources=sources)
    market.runtime.assets = assets
    plan = await market.async_plan_slot(NEXT_TS)
    assert plan.fallback == "not_controllable"
    assert plan.plan is not None
    assert plan.plan.mode.value == "advise"


async def test_pv_split_between_two_inverters(hass: HomeAssistant, market: SlotClock) -> None:
    """The PV forecast is for all panels; each inverter offers its share by its power now."""
    from dataclasses import replace

    from custom_components.peer_energy.coordinator import AssetConfig, AssetReading

    second = "01JPEERENERGYPV200000000000"
    assets = dict(market.runtime.assets)
    assets[second] = AssetConfig(
        subentry_id=second, kind=assets[PV_ID].kind, name="Garage PV", sources={}
    )
    market.runtime.assets = assets
    data = market.runtime.coordinator.data
    market.runtime.coordinator.data = replace(
        data, assets={**data.assets, second: AssetReading(power_w=500)}
    )
    with patch(FORECAST, return_value=_forecast(pv=600, load=0)):
        plan = await market.async_plan_slot(NEXT_TS)
    # the forecast blended with the 3 kW read now (the nowcast), shared 2.5 : 0.5 kW
    assert plan.plan is not None
    total = plan.plan.slots[0].pv_wh
    assert total > 600
    assert plan.assets[PV_ID].signed_wh + plan.assets[second].signed_wh == -total
    assert abs(plan.assets[PV_ID].signed_wh * 6 + total * 5) <= 6
    assert plan.assets[GRID_ID].reason.code == SitOut.METER_ONLY
    assert ASSETS  # (the shared assets are unchanged)


async def test_the_clock_s_forecaster_goes_with_the_entry(
    hass: HomeAssistant, market: SlotClock, init_integration: Any
) -> None:
    """The forecaster the slot clock used while the entry set up lives in the entry's
    runtime data and is dropped on reload."""
    first = init_integration.runtime_data.forecaster
    assert first is not None
    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert init_integration.runtime_data.forecaster is not first
