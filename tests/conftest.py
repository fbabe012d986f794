"""Shared fixtures.

Home Assistant's test harness puts its own ``testing_config`` first on ``sys.path``;
its ``custom_components`` package would then shadow ours. Importing our package here,
before any ``hass`` fixture runs, pins the right one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
import logging
import os
from typing import Any
from unittest.mock import patch

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from hypothesis import settings as hypothesis_settings
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion

from custom_components.peer_energy.const import (  # (import pins our package)
    CONF_ASSET_KIND,
    CONF_ASSET_NAME,
    CONF_BATTERY_RESERVE_PCT,
    CONF_CAPACITY_KWH,
    CONF_CONTROL_MODE,
    CONF_CURRENCY,
    CONF_CURRENT_ENTITY,
    CONF_ENERGY_ENTITY,
    CONF_EXPORT_PRICE,
    CONF_HOME_NAME,
    CONF_IMPORT_PRICE,
    CONF_MAX_CHARGE_W,
    CONF_MAX_DISCHARGE_W,
    CONF_PLUGGED_ENTITY,
    CONF_POWER_ENTITY,
    CONF_POWER_SIGN,
    CONF_SLOT_MINUTES,
    CONF_SOC_ENTITY,
    CONF_SWITCH_ENTITY,
    DOMAIN,
    SUBENTRY_ASSET,
    AssetKind,
    ControlMode,
    PowerSign,
)

# Property tests draw the same examples on every run (a test run must not pass or fail by
# chance). ``HYPOTHESIS_PROFILE=explore`` draws new ones, to look for failures on purpose.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", max_examples=500)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# The test harness logs every SQL statement of the recorder at INFO (tens of thousands of
# lines in a run with statistics); a failing test's log is easier to read without them.
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)

ENTRY_ID = "01JPEERENERGYENTRY000000000"
PV_ID = "01JPEERENERGYPV000000000000"
BATTERY_ID = "01JPEERENERGYBATTERY0000000"
EV_ID = "01JPEERENERGYEV000000000000"
PLUG_ID = "01JPEERENERGYPLUG0000000000"
GRID_ID = "01JPEERENERGYGRID0000000000"

# Source entity states: (state, attributes).
SOURCE_STATES: dict[str, tuple[str, dict[str, Any]]] = {
    "sensor.pv_power": ("2500", {"unit_of_measurement": "W", "device_class": "power"}),
    "sensor.pv_energy": ("1234.5", {"unit_of_measurement": "kWh", "device_class": "energy"}),
    # The battery reports kW, positive while charging: 0.8 kW charging is -800 W for us.
    "sensor.battery_power": ("0.8", {"unit_of_measurement": "kW", "device_class": "power"}),
    "sensor.battery_soc": ("55", {"unit_of_measurement": "%", "device_class": "battery"}),
    "sensor.ev_power": ("3700", {"unit_of_measurement": "W", "device_class": "power"}),
    "sensor.ev_energy": ("5000", {"unit_of_measurement": "Wh", "device_class": "energy"}),
    "binary_sensor.ev_plugged": ("on", {"device_class": "plug"}),
    "switch.ev_charger": ("on", {}),
    "number.ev_current": ("16", {"unit_of_measurement": "A"}),
    "sensor.plug_power": ("150", {"unit_of_measurement": "W", "device_class": "power"}),
    "sensor.plug_energy": ("12.3", {"unit_of_measurement": "kWh", "device_class": "energy"}),
    "switch.plug": ("on", {}),
    "sensor.grid_power": ("500", {"unit_of_measurement": "W", "device_class": "power"}),
}

ASSETS: dict[str, dict[str, Any]] = {
    PV_ID: {
        CONF_ASSET_KIND: AssetKind.PV,
        CONF_ASSET_NAME: "Roof PV",
        CONF_POWER_ENTITY: "sensor.pv_power",
        CONF_ENERGY_ENTITY: "sensor.pv_energy",
    },
    BATTERY_ID: {
        CONF_ASSET_KIND: AssetKind.BATTERY,
        CONF_ASSET_NAME: "Home battery",
        CONF_POWER_ENTITY: "sensor.battery_power",
        CONF_POWER_SIGN: PowerSign.POSITIVE_CHARGE,
        CONF_SOC_ENTITY: "sensor.battery_soc",
        CONF_CAPACITY_KWH: 10.0,
        CONF_MAX_CHARGE_W: 5000,
        CONF_MAX_DISCHARGE_W: 5000,
    },
    EV_ID: {
        CONF_ASSET_KIND: AssetKind.EV_CHARGER,
        CONF_ASSET_NAME: "Wallbox",
        CONF_POWER_ENTITY: "sensor.ev_power",
        CONF_ENERGY_ENTITY: "sensor.ev_energy",
        CONF_PLUGGED_ENTITY: "binary_sensor.ev_plugged",
        CONF_SWITCH_ENTITY: "switch.ev_charger",
        CONF_CURRENT_ENTITY: "number.ev_current",
    },
    PLUG_ID: {
        CONF_ASSET_KIND: AssetKind.PLUG,
        CONF_ASSET_NAME: "Dishwasher",
        CONF_POWER_ENTITY: "sensor.plug_power",
        CONF_ENERGY_ENTITY: "sensor.plug_energy",
        CONF_SWITCH_ENTITY: "switch.plug",
    },
    GRID_ID: {
        CONF_ASSET_KIND: AssetKind.GRID_METER,
        CONF_ASSET_NAME: "Grid meter",
        CONF_POWER_ENTITY: "sensor.grid_power",
    },
}


def make_entry(
    assets: dict[str, dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
) -> MockConfigEntry:
    """A Peer Energy entry with the given asset subentries (default: one of each kind)."""
    assets = ASSETS if assets is None else assets
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        title="Maple Street 7",
        unique_id=DOMAIN,
        data={
            CONF_HOME_NAME: "Maple Street 7",
            CONF_CURRENCY: "EUR",
            CONF_IMPORT_PRICE: 0.30,
            CONF_EXPORT_PRICE: 0.08,
            CONF_SLOT_MINUTES: 15,
        },
        options=(
            {CONF_BATTERY_RESERVE_PCT: 25, CONF_CONTROL_MODE: ControlMode.ADVISE}
            if options is None
            else options
        ),
        subentries_data=[
            {
                "data": data,
                "subentry_id": subentry_id,
                "subentry_type": SUBENTRY_ASSET,
                "title": data[CONF_ASSET_NAME],
                "unique_id": None,
            }
            for subentry_id, data in assets.items()
        ],
    )


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    enable_custom_integrations: None,
) -> Generator[None]:
    """Let Home Assistant load integrations from custom_components."""
    return


@pytest.fixture(autouse=True)
def isolated_config_dir(request: pytest.FixtureRequest, tmp_path_factory: Any) -> None:
    """Each Home Assistant test gets its own config directory.

    The ledger is a real SQLite file under ``.storage`` while the key Store is in memory in
    tests: a file left in the harness's shared testing_config by an earlier test holds
    another key and would refuse to open.
    """
    if "hass" in request.fixturenames:
        hass = request.getfixturevalue("hass")
        hass.config.config_dir = str(tmp_path_factory.mktemp("config"))


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots with Home Assistant's serializer, stored in tests/snapshots/.

    (The plugin's own fixture of that name loses to syrupy's in plugin order.)
    """
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture
def platforms() -> list[Platform]:
    """Platforms to load; a test module overrides this to snapshot one platform."""
    return [Platform.NUMBER, Platform.SENSOR, Platform.SWITCH, Platform.TIME]


@pytest.fixture
def mock_config_entry() -> MockConfigEntry:
    """An entry with one asset of each kind."""
    return make_entry()


@pytest.fixture
def source_states(hass: HomeAssistant) -> dict[str, tuple[str, dict[str, Any]]]:
    """Set the states of every mapped source entity."""
    for entity_id, (state, attributes) in SOURCE_STATES.items():
        hass.states.async_set(entity_id, state, attributes)
    return SOURCE_STATES


@pytest.fixture
async def init_integration(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    source_states: dict[str, tuple[str, dict[str, Any]]],
    platforms: list[Platform],
) -> AsyncGenerator[MockConfigEntry]:
    """Set the integration up with the sources in place (only ``platforms``)."""
    mock_config_entry.add_to_hass(hass)
    with patch("custom_components.peer_energy.PLATFORMS", platforms):
        assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
        yield mock_config_entry
