"""The pages a user sees, in a real Chromium against a real Home Assistant.

The market view at a phone's, a laptop's and a wide screen's width (every reason visible
inside the window, nothing cut off or squeezed, no console error), the integration page,
the home device page and the "Add asset" form. Screenshots are saved to build/browser/
(PEER_ENERGY_BROWSER_ARTIFACTS to change it).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from .harness import RealHome
from .shoot import (
    INTEGRATION_PAGE,
    WIDTHS,
    Browser,
    open_add_battery,
    open_entry_menu,
    open_home_device,
)

CLEARED_TIMEOUT = 150.0  # 1-minute slots: the running slot has an outcome within ~80 s


async def _wait_for_cleared_running_slot(browser: Browser) -> dict[str, Any]:
    """The market view once the running slot has a community outcome."""
    await browser.open("/peer-energy", 1280)
    deadline = time.monotonic() + CLEARED_TIMEOUT
    while True:
        view: dict[str, Any] = await browser.call_ws({"type": "peer_energy/market"})
        if view["current"]["outcome"] is not None:
            return view
        assert time.monotonic() < deadline, f"no slot cleared: {view['current']}"
        await asyncio.sleep(2)


async def test_integration_page(real_home: RealHome, browser: Browser) -> None:
    """The entry with its assets; a device, not a service; no Add community inside one."""
    browser.log.clear()
    page = await browser.open(INTEGRATION_PAGE, 1280)
    await page.get_by_text("Maple Street 7").first.wait_for()
    await page.get_by_text("Roof PV").first.wait_for()
    text = await page.locator("body").inner_text()
    assert "service" not in text.lower()
    # The entry's menu offers assets, not a second community.
    page = await open_entry_menu(browser, "Maple Street 7")
    menu = await page.locator("ha-md-menu-item, mwc-list-item").all_inner_texts()
    assert any("Add asset" in item for item in menu)
    assert not any("Add community" in item for item in menu)
    await browser.screenshot("integration_page", full_page=False)
    await page.keyboard.press("Escape")
    assert not browser.log.server_errors


async def test_home_device_page(real_home: RealHome, browser: Browser) -> None:
    """The home device page loads without a server error (no image without an invitation)."""
    browser.log.clear()
    page, home = await open_home_device(browser, real_home.entry_id)
    assert home["entry_type"] is None  # a device, not a service
    await page.get_by_text("Maple Street 7").first.wait_for()
    await browser.screenshot("home_device", full_page=True)
    assert not browser.log.server_errors
    assert not browser.log.errors, browser.log.errors


async def test_add_asset_form_shows_errors_on_the_fields(
    real_home: RealHome, browser: Browser
) -> None:
    """The battery form starts empty (no 0.1 kWh, no 0 W); submitting it empty shows an
    error under the fields, where the user is looking."""
    page = await open_add_battery(browser, "Maple Street 7")
    capacity = page.get_by_label("Usable capacity")
    assert await capacity.input_value() == ""
    assert await page.get_by_label("Maximum charge power").input_value() == ""
    browser.log.clear()
    await page.get_by_role("button", name="Submit").click()
    errors = page.get_by_text("Fill in this field.")
    await errors.first.wait_for()
    assert await errors.count() >= 4  # state of charge, power, capacity, charge, discharge power
    box = await errors.last.bounding_box()
    viewport = page.viewport_size
    assert box is not None
    assert viewport is not None
    assert 0 <= box["y"] <= viewport["height"], "the error is out of sight"
    await browser.screenshot("add_asset_battery_errors", full_page=False)
    assert not browser.log.server_errors
    await page.keyboard.press("Escape")


@pytest.mark.parametrize("width", WIDTHS)
async def test_market_view_at_every_width(
    real_home: RealHome, browser: Browser, width: int
) -> None:
    """Every reason is readable inside the window: not cut off, not squeezed, no console
    error, at 390 (phone), 1280 (laptop) and 1920 px (wide screen)."""
    view = await _wait_for_cleared_running_slot(browser)
    browser.log.clear()
    result = await browser.market_view(width)
    await browser.screenshot(f"market_view_{width}")
    assert "error" not in result, result
    assert not result["problems"], result["problems"]
    shown = [row for slot in (view["current"], view["next"]) for row in slot["assets"]]
    expected = sum(1 for row in shown if row["kind"] != "grid_meter" and row["reason"])
    assert len(result["reasons"]) == expected
    assert all(result["reasons"]), "a reason without words"
    # Parameters in words with units, never raw keys; the meter is not an order row.
    for raw in ("event_in_slots", "_wh", "_pct", "spread", "value:"):
        assert raw not in result["text"], raw
    assert "Grid meter" not in result["text"]
    assert "cleared with neighbours" in result["text"]
    # The chart of the last day and the plan: an element for every series, the lines drawn.
    assert view["plan"] is not None
    series = result["series"]
    for name in ("price", "bought", "sold", "expected", "import", "export", "battery", "ev"):
        assert name in series, (name, series)
    for name in ("price", "expected", "battery", "ev"):
        assert series[name] >= 1, (name, series)
    assert "Last day and next 24 hours" in result["text"]
    # Counted texts agree with their number: "Table (1 slot)", never "(1 slots)".
    assert not re.search(r"\b1 (slots|neighbours|delivery settlements)\b", result["text"])
    assert re.search(r"Table \((1 slot|\d+ slots)\)", result["text"]), result["text"]
    assert not browser.log.errors, browser.log.errors
    assert not browser.log.server_errors
    # A balance smaller than the usual digits is not shown as zero.
    owes = await browser.panel_text("_balanceWords", -0.00003)
    assert owes.startswith("Your home owes the community 0.00003 EUR"), owes
    assert await browser.panel_text("_money", 0.00003) == "0.00003 EUR"
    assert await browser.panel_text("_money", 0.5) == "0.5000 EUR"
    assert await browser.panel_text("_money", 0) == "0.00 EUR"
