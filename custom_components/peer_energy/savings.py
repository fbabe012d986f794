"""Savings versus not trading, kept exactly and durably.

For every slot outcome of this home the slot clock records, the saving compared with
trading with the grid alone is

* a bought fill: energy x (import price - price paid, fee included),
* a sold fill: energy x (price received - feed-in tariff),

with the grid prices the home planned the slot with. Energy is in Wh and prices in minor
units per kWh, so a saving is an exact integer in milli-minor units (a thousandth of a
cent in euro).

A delivery settlement (a seller delivered less than it sold; ``docs/ledger.md``) corrects
the saving of its trade once, when this home's ledger holds it:

* as the buyer: the payment received minus the shortfall bought from the grid instead
  (shortfall x import price),
* as the seller: the shortfall x feed-in tariff (the fill's saving subtracted the feed-in
  for energy the seller did not export) minus the payment made,

with the grid prices of the trade's slot while the slot clock still has its plan, else
today's. Each settlement in the ledger counts once by its ledger id, older ones too: the
whole ledger is read at start, then at every ledger update what was stored since (by the
ledger's row order, so a settlement of an old trade learnt by reconciling counts when it
is recorded); the ids stay in the store so that none counts twice.

The totals (today, this month, since the home started trading) live in Home Assistant's
``Store`` (``.storage/peer_energy.savings.<entry id>``): they survive restarts without
depending on the restore-state cache, and an outcome delivered twice (a late community
result, a restart) is counted once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from .const import DOMAIN, LOGGER
from .core.trust.credit import TradeTerms
from .core.trust.ledger_db import LedgerDBError
from .recording import SIGNAL_LEDGER_UPDATED

if TYPE_CHECKING:
    from .ledger import PeerLedger
    from .market import SlotClock, SlotPlan, SlotReport

SAVINGS_STORE_VERSION: Final = 1
SAVE_DELAY_S: Final = 1
# Slots whose saving is remembered (to count a repeated outcome once): two days.
KEEP_SLOTS_S: Final = 2 * 86_400
KEEP_BUCKETS: Final = 3


def slot_saving(report: SlotReport, import_price: int, feed_in_tariff: int) -> int:
    """The saving of one slot outcome versus not trading, in milli-minor units.

    ``report.paid_milli`` and ``report.received_milli`` are the sums of energy (Wh) x
    price (minor units per kWh) of this home's own fills, so both sides are exact.
    """
    bought = report.bought_wh * import_price - report.paid_milli
    sold = report.received_milli - report.sold_wh * feed_in_tariff
    return bought + sold


def settlement_saving(
    role: str, shortfall_wh: int, payment: int, import_price: int, feed_in_tariff: int
) -> int:
    """The correction of a trade's saving by its delivery settlement (milli-minor units).

    ``role``: this home's side of the trade; ``payment``: what the seller paid the buyer for
    the shortfall. The buyer got ``shortfall_wh`` less from its neighbour and bought it from
    the grid; the seller exported that much less, so it also forgoes no feed-in for it.
    """
    if role == "buyer":
        return payment - shortfall_wh * import_price
    return shortfall_wh * feed_in_tariff - payment


def _day_key(slot: int) -> str:
    return dt_util.as_local(dt_util.utc_from_timestamp(slot)).date().isoformat()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class SavingsTracker:
    """Counts each slot outcome's saving into today, this month and the total."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Create an empty tracker; ``async_load`` reads the stored totals."""
        self.hass = hass
        self._store: Store[dict[str, Any]] = Store(
            hass, SAVINGS_STORE_VERSION, f"{DOMAIN}.savings.{entry_id}"
        )
        self.total_milli = 0
        self.since: str | None = None  # local date of the first counted slot
        self.days: dict[str, int] = {}  # "YYYY-MM-DD" -> saving
        self.months: dict[str, int] = {}  # "YYYY-MM" -> saving
        self.counted: dict[int, int] = {}  # slot -> saving counted for it
        # Delivery settlements with a shortfall counted so far: ledger id -> correction.
        self.settled: dict[str, int] = {}
        self.settled_payment_milli = 0  # received (+) and paid (-) for shortfalls
        self.settled_saving_milli = 0  # their corrections of the savings
        # The ledger's last settlement row read (in memory: a start reads them all again).
        self._scanned_row = 0
        self._listeners: list[Callable[[], None]] = []

    # --- views -------------------------------------------------------------------------

    def today_milli(self, now: datetime | None = None) -> int:
        """Saving of the slots of the local day of ``now`` (default: now)."""
        return self.days.get(self._today(now).isoformat(), 0)

    def month_milli(self, now: datetime | None = None) -> int:
        """Saving of the slots of the local month of ``now`` (default: now)."""
        return self.months.get(self._today(now).isoformat()[:7], 0)

    @staticmethod
    def _today(now: datetime | None) -> date:
        return dt_util.as_local(now or dt_util.utcnow()).date()

    # --- counting ----------------------------------------------------------------------

    @callback
    def async_count(self, slot: int, report: SlotReport, plan: SlotPlan) -> bool:
        """Count a slot outcome (again: only the change); True when a total changed."""
        saving = slot_saving(report, plan.import_price, plan.feed_in_tariff)
        delta = saving - self.counted.get(slot, 0)
        if slot not in self.counted and saving == 0:
            return False
        self.counted[slot] = saving
        if delta == 0:
            return False
        self._add(slot, delta)
        self._prune(slot)
        self._changed()
        return True

    @callback
    def async_count_settlement(
        self,
        record_id: str,
        slot: int,
        role: str,
        shortfall_wh: int,
        payment: int,
        prices: tuple[int, int],
    ) -> bool:
        """Count a delivery settlement of this home's trade once; True when counted now.

        ``slot``: the trade's slot (Unix seconds); ``prices``: (import price, feed-in
        tariff) of that slot. A settlement without shortfall changes nothing.
        """
        if shortfall_wh <= 0 or record_id in self.settled:
            return False
        saving = settlement_saving(role, shortfall_wh, payment, *prices)
        self.settled[record_id] = saving
        self.settled_payment_milli += payment if role == "buyer" else -payment
        self.settled_saving_milli += saving
        if saving:
            self._add(slot, saving)
            self._prune_buckets()
        self._changed()
        return True

    def _add(self, slot: int, delta: int) -> None:
        day = _day_key(slot)
        self.total_milli += delta
        self.days[day] = self.days.get(day, 0) + delta
        self.months[day[:7]] = self.months.get(day[:7], 0) + delta
        if self.since is None or day < self.since:
            self.since = day

    def _changed(self) -> None:
        self._store.async_delay_save(self._data, SAVE_DELAY_S)
        for listener in list(self._listeners):
            listener()

    def _prune(self, slot: int) -> None:
        for old in [s for s in self.counted if s < slot - KEEP_SLOTS_S]:
            del self.counted[old]
        self._prune_buckets()

    def _prune_buckets(self) -> None:
        for buckets in (self.days, self.months):
            for key in sorted(buckets)[:-KEEP_BUCKETS]:
                del buckets[key]

    @callback
    def async_follow(self, clock: SlotClock) -> Callable[[], None]:
        """Count every outcome the slot clock records; return an unsubscriber."""

        @callback
        def changed() -> None:
            for slot, report in list(clock.reports.items()):
                if (plan := clock.plans.get(slot)) is not None:
                    self.async_count(slot, report, plan)

        return clock.async_add_listener(changed)

    async def async_scan_settlements(self, ledger: PeerLedger, clock: SlotClock) -> int:
        """Count this home's delivery settlements stored in the ledger since the last scan
        (the first scan reads them all) that are not counted yet; return how many were
        counted now.

        A ledger that closes meanwhile (the entry reloads) is left for the next scan.
        """
        try:
            rows = await ledger.async_records_after("settlement", self._scanned_row)
        except (HomeAssistantError, LedgerDBError) as err:
            LOGGER.debug("Delivery settlements not read for the savings: %s", err)
            return 0
        if rows:
            self._scanned_row = max(self._scanned_row, rows[-1][0])
        me = ledger.member
        counted = 0
        for _row, record in rows:
            body = record.body
            try:
                terms = TradeTerms.from_dict(body["terms"])
            except (KeyError, TypeError, ValueError):
                continue
            if terms.seller == me and terms.buyer != me:
                role = "seller"
            elif terms.buyer == me and terms.seller != me:
                role = "buyer"
            else:
                continue  # another pair's trade (the ledger records those too)
            shortfall, payment = _int(body.get("shortfall_wh")), _int(body.get("payment"))
            if shortfall is None or payment is None:
                continue
            plan = clock.plans.get(terms.slot)
            prices = (
                (plan.import_price, plan.feed_in_tariff)
                if plan is not None
                else clock.grid_prices() or (_int(body.get("import_price")) or 0, 0)
            )
            if self.async_count_settlement(
                record.record_id, terms.slot, role, shortfall, payment, prices
            ):
                counted += 1
        return counted

    @callback
    def async_follow_ledger(
        self, ledger: PeerLedger, clock: SlotClock, entry_id: str
    ) -> Callable[[], None]:
        """Count every delivery settlement in the ledger now (all of them, however old),
        then those stored since whenever the ledger changes; return an unsubscriber."""
        tasks: set[asyncio.Task[int]] = set()

        @callback
        def scan() -> None:
            task = self.hass.async_create_background_task(
                self.async_scan_settlements(ledger, clock),
                f"{DOMAIN} savings settlements",
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        scan()
        unsub = async_dispatcher_connect(self.hass, f"{SIGNAL_LEDGER_UPDATED}_{entry_id}", scan)

        @callback
        def stop() -> None:
            unsub()
            for task in tasks:
                task.cancel()

        return stop

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` whenever a total changes; return an unsubscriber."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    # --- storage -----------------------------------------------------------------------

    def _data(self) -> dict[str, Any]:
        return {
            "total_mmu": self.total_milli,
            "since": self.since,
            "days": dict(self.days),
            "months": dict(self.months),
            "counted": {str(slot): value for slot, value in sorted(self.counted.items())},
            "settled": dict(self.settled),
            "settled_payment_mmu": self.settled_payment_milli,
            "settled_saving_mmu": self.settled_saving_milli,
        }

    async def async_load(self) -> None:
        """Read the stored totals (a malformed field is left at zero, never a crash)."""
        data = await self._store.async_load()
        if not isinstance(data, dict):
            return
        self.total_milli = _int(data.get("total_mmu")) or 0
        since = data.get("since")
        self.since = since if isinstance(since, str) else None
        for name, target in (("days", self.days), ("months", self.months)):
            stored = data.get(name)
            if isinstance(stored, dict):
                target.update(
                    {k: v for k, v in stored.items() if isinstance(k, str) and _int(v) is not None}
                )
        counted = data.get("counted")
        if isinstance(counted, dict):
            for key, value in counted.items():
                if isinstance(key, str) and key.isdigit() and _int(value) is not None:
                    self.counted[int(key)] = value
        settled = data.get("settled")
        if isinstance(settled, dict):
            self.settled.update(
                {k: v for k, v in settled.items() if isinstance(k, str) and _int(v) is not None}
            )
        self.settled_payment_milli = _int(data.get("settled_payment_mmu")) or 0
        self.settled_saving_milli = _int(data.get("settled_saving_mmu")) or 0

    async def async_flush(self) -> None:
        """Write the totals now (on unload; a pending delayed write is replaced)."""
        await self._store.async_save(self._data())

    async def async_remove(self) -> None:
        """Delete the stored totals (the entry is removed)."""
        await self._store.async_remove()
