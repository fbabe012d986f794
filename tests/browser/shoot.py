"""Drive Debian's Chromium through Playwright against a real Home Assistant.

Used by the browser tests, and on its own to take the screenshots of
``docs/market_view.md`` (market view, the demo's "Energy trading" dashboard, the Energy
dashboard and its configuration, the integration page, the home device page and the "Add
asset" flow) from a running demo:

    .venv/bin/python -m tests.browser.shoot URL USERNAME PASSWORD OUT_DIR

Chromium comes from the system's package manager (``apt-get install chromium``;
``scripts/bootstrap`` installs it when it can): Playwright is pointed at that binary
and never downloads a browser of its own.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import shutil
import sys
from typing import Any

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = (390, 1280, 1920)
BRANDS = "https://brands.home-assistant.io/"
BRAND_DIR = Path(__file__).resolve().parents[2] / "custom_components" / "peer_energy" / "brand"
HEIGHTS = {390: 844}  # a phone; desktops get 1000 px
# A transparent 1x1 PNG: the brand image of any other integration.
BLANK_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class BrowserMissingError(RuntimeError):
    """Chromium or Playwright is not installed; the message says how to install it."""


def chromium_path() -> str:
    """The system Chromium (or PEER_ENERGY_CHROMIUM), or a clear error."""
    wanted = os.environ.get("PEER_ENERGY_CHROMIUM")
    for candidate in (wanted, "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    raise BrowserMissingError(
        "Chromium is not installed. Install it from the system's package manager "
        "(as root: `apt-get update && apt-get install -y chromium`, which "
        "./scripts/bootstrap does when it runs as root), or set PEER_ENERGY_CHROMIUM to a "
        "Chromium binary. Do not run `playwright install`."
    )


def playwright_module() -> Any:
    try:
        from playwright import async_api
    except ImportError as err:
        raise BrowserMissingError(
            "The Python package playwright is not installed: run ./scripts/bootstrap "
            "(it is pinned in requirements_test.txt)."
        ) from err
    return async_api


@dataclass
class PageLog:
    """What a page reported: console errors, uncaught exceptions, server errors."""

    errors: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("requestfailed", self._failed)
        page.on(
            "response",
            lambda r: self.server_errors.append(f"{r.status} {r.url}") if r.status >= 500 else None,
        )

    def _failed(self, request: Any) -> None:
        # Requests cut short by leaving the page (ERR_ABORTED) are no failure of the page.
        if "ERR_ABORTED" not in str(request.failure):
            self.errors.append(f"request failed: {request.url} ({request.failure})")

    def clear(self) -> None:
        self.errors.clear()
        self.server_errors.clear()
        self.external.clear()


# Checks run in the page (Playwright's CSS engine and these walk open shadow roots).
FIND_PANEL = """
  const find = (node) => {
    const hit = node.querySelector("peer-energy-panel");
    if (hit) return hit;
    for (const el of node.querySelectorAll("*")) {
      if (el.shadowRoot) {
        const deep = find(el.shadowRoot);
        if (deep) return deep;
      }
    }
    return null;
  };
  const panel = find(document);"""

# One of the panel's own text methods, called with arguments (its words for a value).
PANEL_CALL = (
    """
(call) => {"""
    + FIND_PANEL
    + """
  if (!panel) return {error: "no panel"};
  return panel[call.method](...call.args);
}
"""
)

LAYOUT_CHECK = (
    """
() => {"""
    + FIND_PANEL
    + """
  if (!panel || !panel.shadowRoot) return {error: "no panel"};
  const root = panel.shadowRoot;
  const width = window.innerWidth;
  const problems = [];
  const reasons = [...root.querySelectorAll(".reason")];
  for (const reason of reasons) {
    const box = reason.getBoundingClientRect();
    const cell = reason.closest(".c-why") || reason.parentElement;
    const cellBox = cell.getBoundingClientRect();
    const text = reason.textContent.trim();
    if (!text) problems.push("an empty reason");
    if (box.left < 0 || box.right > width + 0.5) {
      problems.push(`"${text}" leaves the page (${box.left}-${box.right} of ${width})`);
    }
    if (cellBox.width < 150) problems.push(`"${text}" squeezed into ${cellBox.width} px`);
    if (cell.scrollWidth > cell.clientWidth + 1) problems.push(`"${text}" is cut off`);
    const style = getComputedStyle(reason);
    if (style.visibility === "hidden" || style.display === "none") {
      problems.push(`"${text}" hidden`);
    }
  }
  for (const row of root.querySelectorAll(".devices .row:not(.head)")) {
    const height = row.getBoundingClientRect().height;
    if (height > 320) problems.push(`a device row ${height} px tall`);
  }
  for (const card of root.querySelectorAll(".card")) {
    if (card.scrollWidth > card.clientWidth + 1) {
      problems.push(`a card overflows (${card.scrollWidth} > ${card.clientWidth})`);
    }
  }
  const page = root.querySelector(".page");
  if (page && page.scrollWidth > page.clientWidth + 1) problems.push("the page scrolls sideways");
  // The chart's series (<g data-series>): how many marks each drew, and whether the
  // chart fits its card.
  const series = {};
  for (const group of root.querySelectorAll("svg [data-series]")) {
    series[group.dataset.series] = group.childElementCount;
  }
  const chart = root.querySelector(".outlook svg");
  if (chart) {
    const box = chart.getBoundingClientRect();
    const cardBox = chart.closest(".card").getBoundingClientRect();
    if (box.left < cardBox.left - 0.5 || box.right > cardBox.right + 0.5) {
      problems.push(`the chart (${box.left}-${box.right}) leaves its card`);
    }
  }
  return {reasons: reasons.map((r) => r.textContent.trim()), problems, series,
          text: root.textContent};
}
"""
)


class Browser:
    """One Chromium with a logged-in Home Assistant page (Playwright's asyncio API: the
    tests run in pytest's event loop, which the synchronous API would fight with)."""

    def __init__(self, url: str, tokens: dict[str, Any], out_dir: Path) -> None:
        self.url = url
        self.tokens = tokens
        self.out_dir = out_dir
        self.log = PageLog()
        self._api = playwright_module()
        self._pw: Any = None
        self._browser: Any = None
        self._context: Any = None
        self.page: Any = None
        self.width = 0

    async def __aenter__(self) -> Browser:
        executable = chromium_path()
        self._pw = await self._api.async_playwright().start()
        self._browser = await self._pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_FLAGS
        )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._context is not None:
            await self._context.close()
        if self._browser is not None:
            await self._browser.close()
        if self._pw is not None:
            await self._pw.stop()

    async def open(self, path: str, width: int) -> Any:
        """Open ``path`` logged in, in a window ``width`` px wide."""
        if width != self.width:
            if self._context is not None:
                await self._context.close()
            self._context = await self._browser.new_context(
                viewport={"width": width, "height": HEIGHTS.get(width, 1000)}
            )
            tokens = json.dumps(json.dumps(self.tokens))
            await self._context.add_init_script(f"localStorage.setItem('hassTokens', {tokens});")
            await self._context.route("**/*", self._route)
            # Rejected promises carry objects: say what they were.
            await self._context.add_init_script(
                "window.addEventListener('unhandledrejection', (event) => "
                "console.error('unhandled rejection: ' + JSON.stringify(event.reason)));"
            )
            self.page = await self._context.new_page()
            self.page.set_default_timeout(30_000)
            self.log.attach(self.page)
            self.width = width
        await self.page.goto(self.url + path)
        await self.page.wait_for_function("() => !!document.querySelector('home-assistant')?.hass")
        return self.page

    async def _route(self, route: Any) -> None:
        """Nothing leaves the machine. Peer Energy's brand images (Home Assistant fetches
        them from its brands service before 2026.3) get its own icon from brand/, as Home
        Assistant 2026.3 and newer serve it; other integrations' brand images are blank
        (not Peer Energy's icon in their place); any other outside request is refused and
        recorded."""
        url: str = route.request.url
        if url.startswith(self.url):
            await route.continue_()
        elif url.startswith(BRANDS):
            if "/peer_energy/" in url:
                icon = "icon@2x.png" if "@2x" in url else "icon.png"
                body = (BRAND_DIR / icon).read_bytes()
            else:
                body = BLANK_PNG
            await route.fulfill(content_type="image/png", body=body)
        else:
            self.log.external.append(url)
            await route.abort()

    async def call_ws(self, message: dict[str, Any]) -> Any:
        return await self.page.evaluate(
            "(m) => document.querySelector('home-assistant').hass.callWS(m)", message
        )

    async def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        path = self.out_dir / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        return path

    async def market_view(self, width: int) -> dict[str, Any]:
        """Open the market view, wait for its data and check its layout."""
        page = await self.open("/peer-energy", width)
        await page.locator("peer-energy-panel .devices").first.wait_for()
        await page.wait_for_timeout(1000)  # translations and the chart's width settle
        result: dict[str, Any] = await page.evaluate(LAYOUT_CHECK)
        return result

    async def panel_text(self, method: str, *args: Any) -> Any:
        """What the open market view's `method` makes of `args` (its words for a value)."""
        return await self.page.evaluate(PANEL_CALL, {"method": method, "args": list(args)})


async def shoot_market_view(browser: Browser, prefix: str = "market_view") -> list[Path]:
    """Full-page screenshots of the market view at a phone, a laptop and a wide screen."""
    shots = []
    for width in WIDTHS:
        await browser.market_view(width)
        shots.append(await browser.screenshot(f"{prefix}_{width}"))
    return shots


# Pages of a demo home besides the market view: its "Energy trading" dashboard, the
# Energy dashboard and its configuration (scripts/demo.py configures them).
DEMO_PAGES = (
    ("/energy-trading/trading", "energy_trading"),
    ("/energy", "energy_dashboard"),
    ("/config/energy", "energy_config"),
)


async def shoot_demo_pages(browser: Browser, width: int = 1280) -> list[Path]:
    """Screenshots of the demo's dashboards and the Energy configuration with the grid
    consumption's price (a page that is missing shows as such)."""
    shots = []
    for path, name in DEMO_PAGES:
        await browser.open(path, width)
        await browser.page.wait_for_timeout(3000)  # cards and statistics load
        shots.append(await browser.screenshot(f"{name}_{width}"))
    # The grid consumption's edit dialog: the price entity it is costed with.
    await browser.page.get_by_label("Edit consumption").first.click()
    await browser.page.wait_for_timeout(2000)
    shots.append(await browser.screenshot(f"energy_grid_price_{width}", full_page=False))
    await browser.page.keyboard.press("Escape")
    return shots


INTEGRATION_PAGE = "/config/integrations/integration/peer_energy"


async def open_entry_menu(browser: Browser, title: str, width: int = 1280) -> Any:
    """The integration page with the home entry's menu (⋮) open, once "Add asset" shows."""
    page = await browser.open(INTEGRATION_PAGE, width)
    await page.get_by_text(title).first.wait_for()
    await page.get_by_label("Menu").first.click()
    await page.get_by_text("Add asset").first.wait_for()
    await page.wait_for_timeout(500)  # the menu's opening animation
    return page


async def open_home_device(browser: Browser, entry_id: str, width: int = 1280) -> Any:
    """The home device's page; returns the page and the device registry entry."""
    await browser.open(INTEGRATION_PAGE, width)
    devices = await browser.call_ws({"type": "config/device_registry/list"})
    (home,) = [d for d in devices if ["peer_energy", entry_id] in d["identifiers"]]
    page = await browser.open(f"/config/devices/device/{home['id']}", width)
    await page.get_by_text("Net grid power").first.wait_for()
    await page.wait_for_timeout(1500)  # the logbook card and the image load
    return page, home


async def open_add_battery(browser: Browser, title: str, width: int = 1280) -> Any:
    """The "Add asset" flow up to its battery form; the kind menu is shot on the way."""
    page = await open_entry_menu(browser, title, width)
    await page.get_by_text("Add asset").first.click()
    await page.get_by_text("Battery", exact=True).first.wait_for()
    await page.wait_for_timeout(500)
    await browser.screenshot(f"add_asset_kinds_{width}", full_page=False)
    await page.get_by_text("Battery", exact=True).first.click()
    await page.get_by_text("Usable capacity").first.wait_for()
    await page.wait_for_timeout(500)
    return page


async def shoot_setup_pages(browser: Browser, width: int = 1280) -> list[Path]:
    """The integration page (and its entry's menu), the home device page and the "Add
    asset" flow: the kinds, then the battery form submitted empty."""
    (entry,) = await browser.call_ws({"type": "config_entries/get", "domain": "peer_energy"})
    title, entry_id = entry["title"], entry["entry_id"]
    page = await browser.open(INTEGRATION_PAGE, width)
    await page.get_by_text(title).first.wait_for()
    await page.wait_for_timeout(1500)
    shots = [await browser.screenshot(f"integration_page_{width}", full_page=False)]
    await open_entry_menu(browser, title, width)
    shots.append(await browser.screenshot(f"integration_menu_{width}", full_page=False))
    await browser.page.keyboard.press("Escape")
    await open_home_device(browser, entry_id, width)
    shots.append(await browser.screenshot(f"home_device_{width}", full_page=True))
    page = await open_add_battery(browser, title, width)
    shots.append(browser.out_dir / f"add_asset_kinds_{width}.png")
    await page.get_by_role("button", name="Submit").click()
    await page.get_by_text("Fill in this field.").first.wait_for()
    await page.wait_for_timeout(500)
    shots.append(await browser.screenshot(f"add_asset_battery_errors_{width}", full_page=False))
    await page.keyboard.press("Escape")
    return shots


def main(argv: list[str]) -> int:
    """Screenshots of a running Home Assistant (for example the demo's first home)."""
    from tests import realhome
    from tests.realhome import RealHome

    if len(argv) != 4:
        print(__doc__)
        return 2
    url, username, password, out_dir = argv
    home = RealHome(Path(out_dir))
    home.port = int(url.rsplit(":", 1)[1].split("/")[0])
    home.password = password
    realhome.USERNAME = username
    home.login()

    async def shoot() -> list[Path]:
        async with Browser(url, home.tokens, Path(out_dir)) as browser:
            return [
                *await shoot_market_view(browser),
                *await shoot_demo_pages(browser),
                *await shoot_setup_pages(browser),
            ]

    for path in asyncio.run(shoot()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
