"""``--minutes N``: N minutes of trading, measured from the homes' own ledgers.

Every home's market view (the websocket command ``peer_energy/market``, what its panel
shows) lists its trades and delivery settlements of the last day. :class:`DeliveryLog`
collects those of the measured slots from every home while the demo runs and reports, over
all homes and per home:

- sold: the energy of the seller's trades (countersigned by both homes);
- delivered: what the settlement of each sale says was delivered (from both homes' signed
  meter reports: the seller's export in the slot, at most what it sold); delivered / sold;
- the balance moved against each seller by its own shortfalls: the payments it made to its
  buyers for what it did not deliver (delivery settlements against it).
- what each home's simulated grid meter exported over the measured slots (Home Assistant's
  history), so that what was sold can be set against what the home had.

A sale is counted once its delivery is settled; the report says how many were not yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
import os
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from .client import Api
from .util import DemoError, say

WS_MARKET = "peer_energy/market"
EXPORT_METER = "sensor.sim_grid_export_energy"
POLL_SECONDS = 20.0
# After the last measured slot: how long to wait for its deliveries to be settled (a
# delivery is settled once both homes metered the slot, or at the deadline a slot later).
SETTLE_WAIT = 240.0
TARGET_PCT = 95


def _slot(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


@dataclass
class HomeFigures:
    """One home's figures over the measured slots (energy Wh, money milli-minor units)."""

    sold_wh: int = 0  # in sales whose delivery is settled
    delivered_wh: int = 0
    shortfall_wh: int = 0
    paid_for_shortfalls: int = 0  # what its own shortfalls cost it (>= 0)
    sales_settled: int = 0
    sales_unsettled: int = 0
    unsettled_wh: int = 0
    bought_wh: int = 0
    received_for_shortfalls: int = 0  # what its sellers' shortfalls paid it (>= 0)

    @property
    def delivered_pct(self) -> Decimal | None:
        if not self.sold_wh:
            return None
        return (Decimal(100 * self.delivered_wh) / self.sold_wh).quantize(Decimal("0.1"))


@dataclass
class DeliveryLog:
    """The trades and delivery settlements of the slots ``[start, end)`` (Unix s), per home
    label, as each home's market view lists them (keyed, so polling again adds nothing)."""

    start: int
    end: int
    trades: dict[str, dict[tuple[int, str, str], Mapping[str, Any]]] = field(default_factory=dict)
    settlements: dict[str, dict[tuple[int, str, str], Mapping[str, Any]]] = field(
        default_factory=dict
    )
    digits: int = 2
    # What each home's simulated grid meter exported over the measured slots (Wh).
    exported: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, view: Mapping[str, Any]) -> None:
        """Take what one home's market view lists of the measured slots."""
        self.digits = int(view.get("price_digits", self.digits))
        for kind, store in (("trades", self.trades), ("settlements", self.settlements)):
            mine = store.setdefault(label, {})
            for record in view.get(kind) or ():
                slot = _slot(record["slot_start"])
                if self.start <= slot < self.end:
                    mine[(slot, record["role"], record["counterparty"])] = record

    def figures(self, label: str) -> HomeFigures:
        out = HomeFigures()
        settled = self.settlements.get(label, {})
        for key, trade in self.trades.get(label, {}).items():
            if trade["role"] == "buyer":
                out.bought_wh += int(trade["energy_wh"])
                if (s := settled.get(key)) is not None:
                    out.received_for_shortfalls += max(int(s["payment_mmu"]), 0)
                continue
            s = settled.get(key)
            if s is None:
                out.sales_unsettled += 1
                out.unsettled_wh += int(trade["energy_wh"])
                continue
            out.sales_settled += 1
            out.sold_wh += int(s["energy_wh"])
            out.delivered_wh += int(s["delivered_wh"])
            out.shortfall_wh += int(s["shortfall_wh"])
            out.paid_for_shortfalls += max(-int(s["payment_mmu"]), 0)
        return out

    def unsettled(self) -> int:
        return sum(self.figures(label).sales_unsettled for label in self.trades)

    def money(self, milli: int) -> str:
        """Milli-minor units in major units (exact: a shortfall of a few Wh costs less than
        a cent)."""
        return f"{Decimal(milli) / (1000 * 10**self.digits):.{self.digits + 3}f}"

    def lines(self, labels: Sequence[str]) -> list[str]:
        """The report: over all homes, then per home."""
        per = {label: self.figures(label) for label in labels}
        sold = sum(f.sold_wh for f in per.values())
        delivered = sum(f.delivered_wh for f in per.values())
        sales = sum(f.sales_settled for f in per.values())
        unsettled = sum(f.sales_unsettled for f in per.values())
        against = [label for label, f in per.items() if f.paid_for_shortfalls or f.shortfall_wh]
        pct = None if not sold else (Decimal(100 * delivered) / sold).quantize(Decimal("0.1"))
        out = [
            f"slots measured: {(self.end - self.start) // 60} one-minute slots from "
            f"{datetime.fromtimestamp(self.start, UTC):%Y-%m-%d %H:%M} UTC",
            f"all homes: {sales} sales settled, sold {sold} Wh, delivered {delivered} Wh, "
            f"delivered / sold {'-' if pct is None else f'{pct} %'}"
            + (f"; {unsettled} sales not settled yet (not counted)" if unsettled else ""),
        ]
        for label, f in per.items():
            exported = self.exported.get(label)
            out.append(
                f"{label}: sold {f.sold_wh} Wh in {f.sales_settled} sales, delivered "
                f"{f.delivered_wh} Wh"
                + ("" if f.delivered_pct is None else f" ({f.delivered_pct} %)")
                + ("" if exported is None else f" of {exported} Wh exported")
                + f", shortfall {f.shortfall_wh} Wh, paid for its own shortfalls "
                f"{self.money(f.paid_for_shortfalls)}; bought {f.bought_wh} Wh, received for "
                f"its sellers' shortfalls {self.money(f.received_for_shortfalls)}"
                + (
                    f"; {f.sales_unsettled} sales ({f.unsettled_wh} Wh) not settled yet"
                    if f.sales_unsettled
                    else ""
                )
            )
        met = pct is not None and pct >= TARGET_PCT
        out.append(
            f"target delivered / sold >= {TARGET_PCT} %: {'met' if met else 'missed'}; "
            "homes whose balance moved against them by their own shortfalls: "
            + (", ".join(against) if against else "none")
        )
        return out


async def exported_wh(api: Api, start: int, end: int) -> int | None:
    """What the home's simulated grid meter exported from ``start`` to ``end`` (Unix s),
    from Home Assistant's history (the meter's states every 10 s); None if unknown."""
    since = datetime.fromtimestamp(start, UTC).isoformat()
    until = datetime.fromtimestamp(end, UTC).isoformat()
    path = (
        f"/api/history/period/{quote(since)}?end_time={quote(until)}"
        f"&filter_entity_id={EXPORT_METER}&minimal_response&no_attributes"
    )
    try:
        history = await api.request("GET", path, limit=60)
    except (DemoError, aiohttp.ClientError, TimeoutError):
        return None
    values = []
    for state in history[0] if history else ():
        with contextlib.suppress(TypeError, ValueError):
            values.append(float(state["state"]))
    if len(values) < 2:
        return None
    return round((values[-1] - values[0]) * 1000)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


async def measure(
    apis: Sequence[Api],
    entries: Sequence[str],
    labels: Sequence[str],
    minutes: int,
    pause: Any,
) -> list[str]:
    """Trade for ``minutes`` one-minute slots from the next slot on, then wait for their
    deliveries to be settled; return the report. ``pause(seconds)`` waits (and raises
    ``StopRequestedError`` on a stop signal)."""
    now = int(time.time())
    start = (now // 60 + 1) * 60
    log = DeliveryLog(start=start, end=start + minutes * 60)
    loads = [load_average()]
    say(
        f"measuring {minutes} minutes of trading, slots from "
        f"{datetime.fromtimestamp(start, UTC):%H:%M} UTC (load average {loads[0]})"
    )

    async def poll() -> None:
        for api, entry, label in zip(apis, entries, labels, strict=True):
            view = await api.ws_command({"type": WS_MARKET, "entry_id": entry}, limit=60)
            log.add(label, view)

    last_note = 0.0
    while time.time() < log.end:
        await pause(POLL_SECONDS)
        await poll()
        if time.monotonic() - last_note >= 60:
            last_note = time.monotonic()
            done = max(0, min(minutes, (int(time.time()) - start) // 60))
            total = [log.figures(label) for label in labels]
            say(
                f"{done} of {minutes} slots over: sold {sum(f.sold_wh for f in total)} Wh "
                f"(settled), delivered {sum(f.delivered_wh for f in total)} Wh, "
                f"{log.unsettled()} sales waiting for their settlement"
            )
    loads.append(load_average())
    waited = time.monotonic()
    await poll()
    while log.unsettled() and time.monotonic() - waited < SETTLE_WAIT:
        await pause(POLL_SECONDS)
        await poll()
    for api, label in zip(apis, labels, strict=True):
        exported = await exported_wh(api, log.start, log.end)
        if exported is not None:
            log.exported[label] = exported
    lines = log.lines(labels)
    lines.append(f"load average (1, 5, 15 min) at start {loads[0]}, at the end {loads[1]}")
    return lines
