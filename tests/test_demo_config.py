"""The demo's Home Assistant configuration: what a new Home Assistant has (automations,
scripts and scenes included, logbook, history), and an Energy dashboard configuration
that Home Assistant's own schema accepts. (``./scripts/demo --check`` runs it for real.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path
import sys
from types import ModuleType

from homeassistant.components.energy.data import (
    DEVICE_CONSUMPTION_SCHEMA,
    ENERGY_SOURCE_SCHEMA,
)
from homeassistant.util.yaml import load_yaml
import pytest

from custom_components.peer_energy.sensor import PRICE_SENSORS, SAVINGS_SENSORS
from custom_components.peer_energy.websocket_api import PANEL_URL_PATH

DEMO = Path(__file__).parent.parent / "scripts" / "demo.py"


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peer_energy_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


OURS = {
    "grid_import_energy": "sensor.demo_home_grid_import_energy",
    "grid_export_energy": "sensor.demo_home_grid_export_energy",
    "import_price_with_peers": "sensor.demo_home_import_price_with_neighbours",
    "export_price_with_peers": "sensor.demo_home_export_price_with_neighbours",
    "price_peak": "binary_sensor.demo_home_price_peak",
    "savings_today": "sensor.demo_home_saved_today",
    "savings_month": "sensor.demo_home_saved_this_month",
    "savings_total": "sensor.demo_home_saved_in_total",
    "01ASSET_market_reason": "sensor.rooftop_pv_reason",
}


def test_configuration_is_a_normal_home_assistant(demo: ModuleType, tmp_path: Path) -> None:
    """The includes resolve to the created files; logbook and history are there."""
    (tmp_path / "custom_components").mkdir()
    demo.write_config(tmp_path, 8123, fast=False)
    config = load_yaml(tmp_path / "configuration.yaml")
    assert isinstance(config, dict)
    assert config["automation"] == []
    assert config["scene"] == []
    assert config["script"] in (None, {})
    for component in ("logbook", "history", "energy", "frontend", "config"):
        assert component in config, component
    assert config["http"]["server_host"] == ["127.0.0.1"]


def test_energy_dashboard_configuration_is_valid(demo: ModuleType) -> None:
    """Home Assistant's own schema accepts it; the grid is priced with the neighbours."""
    prefs = demo.energy_preferences(OURS)
    sources = ENERGY_SOURCE_SCHEMA(prefs["energy_sources"])
    assert [source["type"] for source in sources] == ["grid", "solar", "battery"]
    grid = sources[0]
    assert grid["flow_from"][0]["entity_energy_price"] == OURS["import_price_with_peers"]
    assert grid["flow_to"][0]["entity_energy_price"] == OURS["export_price_with_peers"]
    for device in prefs["device_consumption"]:
        DEVICE_CONSUMPTION_SCHEMA(device)
    # The keys the demo looks up are the sensors' real unique-id keys.
    keys = {d.key for d in (*PRICE_SENSORS, *SAVINGS_SENSORS)}
    assert {"import_price_with_peers", "export_price_with_peers", "savings_total"} <= keys


def test_dashboard_and_automation(demo: ModuleType) -> None:
    """The dashboard links the market view and shows the savings and reasons; the
    automation uses Peer Energy's blueprint with the home's price peak sensor."""
    config = demo.dashboard_config(OURS)
    cards = config["views"][0]["cards"]
    button = next(card for card in cards if card["type"] == "button")
    assert button["tap_action"]["navigation_path"] == f"/{PANEL_URL_PATH}"
    listed = [
        row["entity"] if isinstance(row, dict) else row
        for card in cards
        for row in card.get("entities", [])
    ]
    assert OURS["savings_total"] in listed
    assert OURS["01ASSET_market_reason"] in listed
    # Each reason row is named by its device (the entity's own name, "<device> Reason", is
    # cut off in a card), under a title that fits.
    named = demo.dashboard_config(OURS, {"01ASSET": "Rooftop PV"})
    reasons = next(
        c for c in named["views"][0]["cards"] if c.get("title") == "Each device's reason"
    )
    assert {"entity": OURS["01ASSET_market_reason"], "name": "Rooftop PV"} in reasons["entities"]
    automation = demo.demo_automation(OURS)
    blueprint = Path(__file__).parent.parent / "custom_components" / "peer_energy" / "blueprints"
    assert (blueprint / Path(automation["use_blueprint"]["path"]).name).exists()
    assert automation["use_blueprint"]["input"]["price_peak"] == OURS["price_peak"]


def test_battery_starts_at_the_homes_state_of_charge(demo: ModuleType, tmp_path: Path) -> None:
    """Each home's simulated battery starts at its profile's state of charge: the sunny
    homes' batteries start full, so that they export their surplus (a battery still filling
    stores it, and the home has nothing it can deliver to sell)."""
    (tmp_path / "custom_components").mkdir()
    demo.write_config(tmp_path, 8123, fast=False, battery_soc_pct=100)
    config = load_yaml(tmp_path / "configuration.yaml")
    assert isinstance(config, dict)
    variables = config["template"][0]["variables"]
    assert variables["soc_prev"] == "{{ states('sensor.sim_battery_soc') | float(100) }}"
    neighbourhood = sys.modules["peer_demo.neighbourhood"]
    starts = [neighbourhood.profile_of(i).battery_soc_pct for i in range(4)]
    assert starts == [100, 55, 100, 100]
