"""Paths, timeouts and constants shared by the demo's modules."""

from __future__ import annotations

from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "peer_energy"
SUBENTRY_TYPE = "asset"
HASS_BIN = Path(sys.executable).parent / "hass"
DEMO_ROOT = ROOT / ".demo"
ONBOARDING_DOMAINS = ("met", "google_translate", "radio_browser", "shopping_list")
UNAVAILABLE = {"unknown", "unavailable", "none", ""}

START_TIMEOUT = 900.0  # first start pip-installs the frontend and friends
FLOW_TIMEOUT = 180.0  # a flow step may wait for requirements to install
LIVE_WINDOW = 45.0  # how long --check watches for values to move
