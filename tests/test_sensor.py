"""Sensor platform: mirrored readings, derived home values, availability, restore."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.peer_energy.const import (
    CONF_ASSET_KIND,
    CONF_ASSET_NAME,
    CONF_EXPORT_ENERGY_ENTITY,
    CONF_IMPORT_ENERGY_ENTITY,
    CONF_POWER_ENTITY,
    DOMAIN,
    AssetKind,
)

from .conftest import ASSETS, ENTRY_ID, EV_ID, GRID_ID, PLUG_ID, PV_ID, make_entry


@pytest.fixture
def platforms() -> list[Platform]:
    """Only the sensor platform."""
    return [Platform.SENSOR]


@pytest.fixture(autouse=True)
def _fixed_time(freezer: FrozenDateTimeFactory) -> None:
    """A fixed start time: the slot clock's timers depend on it."""
    freezer.move_to("2026-11-22T12:07:30+00:00")


@pytest.fixture(autouse=True)
def _no_asset_market_sensors() -> Generator[None]:
    """Leave out the per-asset order/allocation/reason sensors and the plan: their values
    follow the planner (tested in tests/market_ha); this module is about readings."""
    with (
        patch("custom_components.peer_energy.sensor.ASSET_MARKET_SENSORS", ()),
        patch("custom_components.peer_energy.sensor.PLAN_SENSORS", ()),
    ):
        yield


def _state(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


@pytest.mark.usefixtures("init_integration")
async def test_sensors_snapshot(
    hass: HomeAssistant,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every sensor's state and registry entry."""
    await snapshot_platform(hass, entity_registry, snapshot, ENTRY_ID)


@pytest.mark.usefixtures("init_integration")
async def test_devices(hass: HomeAssistant, device_registry: dr.DeviceRegistry) -> None:
    """One home device and one device per asset, linked to the home with via_device."""
    home = device_registry.async_get_device(identifiers={(DOMAIN, ENTRY_ID)})
    assert home is not None
    assert home.name == "Maple Street 7"
    devices = dr.async_entries_for_config_entry(device_registry, ENTRY_ID)
    assert len(devices) == 6
    assets = [device for device in devices if device.id != home.id]
    assert {device.name for device in assets} == {a[CONF_ASSET_NAME] for a in ASSETS.values()}
    for device in assets:
        assert device.via_device_id == home.id
        # Each asset device belongs to its subentry (removed with it).
        (subentry_id,) = device.config_entries_subentries[ENTRY_ID]
        assert (DOMAIN, f"{ENTRY_ID}_{subentry_id}") in device.identifiers
    assert device_registry.async_get_device(identifiers={(DOMAIN, f"{ENTRY_ID}_{PV_ID}")})


@pytest.mark.usefixtures("init_integration")
async def test_values_in_standard_units(hass: HomeAssistant) -> None:
    """kW and Wh sources are converted; the battery sign is applied; home values derived."""
    assert _state(hass, "sensor.roof_pv_power") == "2500"
    assert _state(hass, "sensor.roof_pv_energy_produced") == "1234.5"
    # 0.8 kW "positive while charging" becomes -800 W (positive = discharging).
    assert _state(hass, "sensor.home_battery_power") == "-800"
    assert _state(hass, "sensor.home_battery_state_of_charge") == "55.0"
    assert _state(hass, "sensor.wallbox_energy_charged") == "5.0"
    assert _state(hass, "sensor.maple_street_7_net_grid_power") == "500"
    # Home load = 500 + 2500 - 800 = 2200 W, so 300 W of PV go into the battery: that
    # much PV could be sold instead.
    assert _state(hass, "sensor.maple_street_7_pv_surplus_available") == "300"

    hass.states.async_set("sensor.grid_power", "-1.2", {"unit_of_measurement": "kW"})
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_net_grid_power") == "-1200"
    assert _state(hass, "sensor.maple_street_7_pv_surplus_available") == "2000"


@pytest.mark.parametrize(
    ("state", "attributes"),
    [
        (STATE_UNAVAILABLE, {"unit_of_measurement": "W"}),
        (STATE_UNKNOWN, {"unit_of_measurement": "W"}),
        ("abc", {"unit_of_measurement": "W"}),
        ("nan", {"unit_of_measurement": "W"}),
        ("inf", {"unit_of_measurement": "W"}),
        ("100", {"unit_of_measurement": "A"}),
    ],
)
@pytest.mark.usefixtures("init_integration")
async def test_power_source_unusable(
    hass: HomeAssistant, state: str, attributes: dict[str, Any]
) -> None:
    """An unusable source makes its sensor and the values derived from it unavailable."""
    hass.states.async_set("sensor.pv_power", state, attributes)
    await hass.async_block_till_done()
    assert _state(hass, "sensor.roof_pv_power") == STATE_UNAVAILABLE
    assert _state(hass, "sensor.maple_street_7_pv_surplus_available") == STATE_UNAVAILABLE
    # Unrelated readings keep going.
    assert _state(hass, "sensor.maple_street_7_net_grid_power") == "500"

    hass.states.async_set("sensor.pv_power", "900", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    assert _state(hass, "sensor.roof_pv_power") == "900"


@pytest.mark.parametrize(
    "state", [STATE_UNAVAILABLE, STATE_UNKNOWN, "abc", "nan", "-inf", "-5", "1e999"]
)
@pytest.mark.usefixtures("init_integration")
async def test_energy_source_unusable(hass: HomeAssistant, state: str) -> None:
    """Unusable or negative energy makes the energy sensor unavailable."""
    hass.states.async_set("sensor.plug_energy", state, {"unit_of_measurement": "kWh"})
    await hass.async_block_till_done()
    assert _state(hass, "sensor.dishwasher_energy_consumed") == STATE_UNAVAILABLE
    assert _state(hass, "sensor.dishwasher_power") == "150"


@pytest.mark.usefixtures("init_integration")
async def test_source_removed(hass: HomeAssistant) -> None:
    """A source whose state disappears gives an unavailable sensor."""
    hass.states.async_remove("sensor.grid_power")
    await hass.async_block_till_done()
    assert _state(hass, "sensor.grid_meter_grid_power") == STATE_UNAVAILABLE
    assert _state(hass, "sensor.maple_street_7_net_grid_power") == STATE_UNAVAILABLE
    assert _state(hass, "sensor.maple_street_7_pv_surplus_available") == STATE_UNAVAILABLE


@pytest.mark.parametrize("state", ["101", "-1", "abc"])
@pytest.mark.usefixtures("init_integration")
async def test_soc_out_of_range(hass: HomeAssistant, state: str) -> None:
    """A state of charge outside 0..100 % is unavailable."""
    hass.states.async_set("sensor.battery_soc", state, {"unit_of_measurement": "%"})
    await hass.async_block_till_done()
    assert _state(hass, "sensor.home_battery_state_of_charge") == STATE_UNAVAILABLE


@pytest.mark.usefixtures("init_integration")
async def test_integrated_grid_energy(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Without meter energy entities, import and export are integrated from grid power."""
    assert _state(hass, "sensor.maple_street_7_grid_import_energy") == "0.0"
    # 500 W for one hour, then a steady export of 1 kW for half an hour (ticks only).
    freezer.tick(3600)
    hass.states.async_set("sensor.grid_power", "-1000", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_grid_import_energy") == "0.5"
    assert _state(hass, "sensor.maple_street_7_grid_export_energy") == "0.0"
    for _ in range(60):
        freezer.tick(30)
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_grid_export_energy") == "0.5"
    # An outage adds nothing: 1 kW until it went unavailable, nothing while unavailable.
    freezer.tick(360)
    hass.states.async_set("sensor.grid_power", STATE_UNAVAILABLE)
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_grid_export_energy") == "0.6"
    freezer.tick(3600)
    hass.states.async_set("sensor.grid_power", "0", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_grid_export_energy") == "0.6"
    assert _state(hass, "sensor.maple_street_7_grid_import_energy") == "0.5"


async def test_integrated_energy_restored(
    hass: HomeAssistant,
    source_states: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    """Integrated totals continue from the exact stored value after a restart."""
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State("sensor.maple_street_7_grid_import_energy", "12.345"),
                {"energy_wms": 12_345_678 * 3_600},  # 12345.678 Wh in W·ms
            ),
            # Old state without extra data: fall back to the kWh shown.
            (State("sensor.maple_street_7_grid_export_energy", "2.5"), {}),
        ],
    )
    entry = make_entry()
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_grid_import_energy") == "12.345"
    assert _state(hass, "sensor.maple_street_7_grid_export_energy") == "2.5"
    freezer.tick(3600)  # 500 W for an hour
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_grid_import_energy") == "12.845"

    runtime = entry.runtime_data
    stored = runtime.coordinator.integrator.import_wms
    assert stored == (12_345_678 + 500_000) * 3_600
    # A second restore (e.g. a late entity) must not add the total twice.
    runtime.coordinator.restore_total("import", 10**9)
    assert runtime.coordinator.integrator.import_wms == stored


async def test_meter_energy_mirrored(hass: HomeAssistant, source_states: dict[str, Any]) -> None:
    """With meter energy entities the totals mirror them (and are not integrated)."""
    hass.states.async_set("sensor.grid_import", "4321.5", {"unit_of_measurement": "kWh"})
    hass.states.async_set("sensor.grid_export", "2.5", {"unit_of_measurement": "MWh"})
    assets = dict(ASSETS)
    assets[GRID_ID] = {
        **ASSETS[GRID_ID],
        CONF_IMPORT_ENERGY_ENTITY: "sensor.grid_import",
        CONF_EXPORT_ENERGY_ENTITY: "sensor.grid_export",
    }
    entry = make_entry(assets)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_grid_import_energy") == "4321.5"
    assert _state(hass, "sensor.maple_street_7_grid_export_energy") == "2500.0"
    assert not entry.runtime_data.coordinator.integrates_import
    hass.states.async_set("sensor.grid_import", "-1", {"unit_of_measurement": "kWh"})
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_grid_import_energy") == STATE_UNAVAILABLE


async def test_no_grid_meter_estimates(hass: HomeAssistant, source_states: dict[str, Any]) -> None:
    """Without a grid meter, net grid power is estimated from the metered assets."""
    assets = {key: value for key, value in ASSETS.items() if key != GRID_ID}
    entry = make_entry(assets)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    # Loads 3700 + 150, PV 2500, battery -800 (charging): 3850 - 2500 + 800 = 2150 W import.
    assert _state(hass, "sensor.maple_street_7_net_grid_power") == "2150"
    # The battery charges from the grid and PV is all used at home: no surplus.
    assert _state(hass, "sensor.maple_street_7_pv_surplus_available") == "0"
    # No meter: no energy totals for the Energy dashboard.
    assert hass.states.get("sensor.maple_street_7_grid_import_energy") is None
    hass.states.async_set("sensor.ev_power", "abc", {"unit_of_measurement": "W"})
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_net_grid_power") == STATE_UNAVAILABLE


async def test_only_plug(hass: HomeAssistant, source_states: dict[str, Any]) -> None:
    """A home with only a plug: net grid power from the plug, no PV surplus sensor."""
    entry = make_entry({PLUG_ID: ASSETS[PLUG_ID]})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert _state(hass, "sensor.maple_street_7_net_grid_power") == "150"
    assert hass.states.get("sensor.maple_street_7_pv_surplus_available") is None


async def test_no_assets(hass: HomeAssistant) -> None:
    """An entry without assets loads with a home device and only the home's market sensors
    (and the invitation image)."""
    from custom_components.peer_energy.binary_sensor import BINARY_SENSORS
    from custom_components.peer_energy.image import INVITATION_IMAGE
    from custom_components.peer_energy.sensor import (
        MARKET_SENSORS,
        PRICE_SENSORS,
        SAVINGS_SENSORS,
        UNREACHABLE_SENSOR,
    )

    entry = make_entry({})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    entries = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert {e.unique_id for e in entries} == {
        f"{entry.entry_id}_{d.key}"
        for d in (
            *MARKET_SENSORS,
            *PRICE_SENSORS,
            *SAVINGS_SENSORS,
            UNREACHABLE_SENSOR,
            *BINARY_SENSORS,
            INVITATION_IMAGE,
        )
    }


async def test_defaults_for_odd_subentry_data(hass: HomeAssistant) -> None:
    """Missing units, bad numbers and an unknown sign in the subentry fall back safely."""
    hass.states.async_set("sensor.bat", "300")  # no unit: taken as W
    hass.states.async_set("sensor.bat_energy", "7")  # no unit: taken as kWh
    entry = make_entry(
        {
            "01JPEERENERGYODD00000000000": {
                CONF_ASSET_KIND: AssetKind.BATTERY,
                CONF_ASSET_NAME: "Odd battery",
                CONF_POWER_ENTITY: "sensor.bat",
                "energy_entity": "sensor.bat_energy",
                "power_sign": "sideways",
                "capacity_kwh": "lots",
                "max_charge_w": float("nan"),
                "max_discharge_w": True,
            }
        }
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert _state(hass, "sensor.odd_battery_power") == "300"
    assert _state(hass, "sensor.odd_battery_energy") == "7.0"
    (asset,) = entry.runtime_data.assets.values()
    assert asset.capacity_wh is None
    assert asset.max_charge_w is None
    assert asset.max_discharge_w is None


async def test_unknown_asset_kind(hass: HomeAssistant) -> None:
    """A subentry of a kind this version does not know fails set-up with a clear error."""
    entry = make_entry({PV_ID: {CONF_ASSET_KIND: "heat_pump", CONF_ASSET_NAME: "Heat pump"}})
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state.name == "SETUP_ERROR"


async def test_availability_logged_once(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """Unavailability of a power source is logged once, and its return once."""
    for _ in range(2):
        hass.states.async_set("sensor.pv_power", STATE_UNAVAILABLE)
        await hass.async_block_till_done()
    assert caplog.text.count("Power source of asset Roof PV is unavailable") == 1
    for value in ("1", "2"):
        hass.states.async_set("sensor.pv_power", value, {"unit_of_measurement": "W"})
        await hass.async_block_till_done()
    assert caplog.text.count("Power source of asset Roof PV is available again") == 1


async def test_odd_sources(hass: HomeAssistant, source_states: dict[str, Any]) -> None:
    """Wrong energy units, a vanished plug sensor and an asset without power entity."""
    hass.states.async_set("sensor.pv_energy", "5", {"unit_of_measurement": "A"})
    assets = dict(ASSETS)
    assets[PV_ID] = {key: value for key, value in ASSETS[PV_ID].items() if key != CONF_POWER_ENTITY}
    entry = make_entry(assets)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert _state(hass, "sensor.roof_pv_energy_produced") == STATE_UNAVAILABLE
    assert hass.states.get("sensor.roof_pv_power") is None
    coordinator = entry.runtime_data.coordinator
    assert coordinator.data.assets[EV_ID].plugged is True
    hass.states.async_remove("binary_sensor.ev_plugged")
    await hass.async_block_till_done()
    assert coordinator.data.assets[EV_ID].plugged is None
    hass.states.async_set("binary_sensor.ev_plugged", "off")
    await hass.async_block_till_done()
    assert coordinator.data.assets[EV_ID].plugged is False
    hass.states.async_set("binary_sensor.ev_plugged", "unavailable")
    await hass.async_block_till_done()
    assert coordinator.data.assets[EV_ID].plugged is None
