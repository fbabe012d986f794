"""Chaos with real processes: three Home Assistant homes trade in a community with slots of
a few seconds while one of them is killed (SIGKILL) or has its entry reloaded at random
points of the slot cycle. After each event the homes must converge: every trade and
delivery settlement known to any home is on every ledger, balances are identical on every
home and sum to zero, and nobody recorded an equivocation. Everything is read through the
public APIs a user has (the ``export_ledger`` action with a response, the REST reload);
the chains are verified from the SQLite files after the run.

Used by ``tests/real/test_chaos.py`` (a short run in the test command) and
``bench/chaos.py`` (100 kills and 100 reloads, with figures).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
import json
from pathlib import Path
import random
import re
import statistics
import threading
import time
from typing import Any

from tests.realhome import DOMAIN, SOURCES, HarnessError, RealHome

SLOT_S = 10  # PEER_ENERGY_TEST_SLOT_SECONDS: gate closure 4 s before each slot
CONVERGE_S = 6 * SLOT_S  # a trade is countersigned and delivered within three slots

# The founder has PV to spare (its battery is full); the two others import and have
# empty batteries. The founder sells 50 Wh per slot but its export meter counts up only
# 30 Wh per slot (``ExportMeter``): every delivery falls short, so every settlement moves
# money (seller to buyer at the import price) while the next slots' trades are being
# countersigned, the interleaving that used to make ledgers refuse trades.
SOLD_WH = 50
EXPORTED_WH = 30
SELLER_SOURCES = [
    (name, {"Test PV power": "8000", "Test battery SoC": "100", "Test battery power": "0",
            "Test grid power": "-6000"}.get(name, state), unit, cls)
    for name, state, unit, cls in SOURCES
]  # fmt: skip
BUYER_SOURCES = [
    (name, "0" if "PV power" in name else ("10" if "SoC" in name else state), unit, cls)
    for name, state, unit, cls in SOURCES
]
BUYER_SOURCES = [
    (name, "40000" if name == "Test grid power" else state, unit, cls)
    for name, state, unit, cls in BUYER_SOURCES
]


class ExportMeter(threading.Thread):
    """Counts the founder's grid export meter up every second through the REST API
    (``POST /api/states``), as a real meter would, also right after a restart."""

    def __init__(self, home: RealHome) -> None:
        super().__init__(daemon=True)
        self.home = home
        self.stopped = threading.Event()
        self.start_kwh = 2980.2
        self.t0 = time.monotonic()

    def run(self) -> None:
        attributes = {
            "unit_of_measurement": "kWh",
            "device_class": "energy",
            "state_class": "total_increasing",
        }
        while not self.stopped.wait(1.0):
            value = self.start_kwh + (time.monotonic() - self.t0) * EXPORTED_WH / 1000 / SLOT_S
            try:
                self.home.request(
                    "POST",
                    "/api/states/sensor.test_grid_export",
                    {"state": f"{value:.3f}", "attributes": attributes},
                )
            except (HarnessError, OSError):  # restarting
                continue


@dataclass
class Figures:
    """What a run measured."""

    kills: int = 0
    reloads: int = 0
    converge_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    trades: int = 0
    settlements: int = 0
    payments: int = 0
    paid_mmu: int = 0
    equivocations: int = 0
    # trades a ledger refused (id prefixes, from the homes' logs; duplicates are not logged)
    refused: set[str] = field(default_factory=set)
    lost: int = 0  # of those, the ones no ledger holds at the end: signed, recorded nowhere
    # trades recorded with a stated balance that differs from a ledger's (id prefixes)
    disagreed: set[str] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        times = sorted(self.converge_s) or [0.0]
        return {
            "kills": self.kills,
            "reloads": self.reloads,
            "trades_on_every_ledger": self.trades,
            "settlements_on_every_ledger": self.settlements,
            "settlements_with_a_payment": self.payments,
            "paid_by_the_seller_mmu": self.paid_mmu,
            "not_converged": len(self.failures),
            "equivocations_recorded": self.equivocations,
            "trades_refused": len(self.refused),
            "signed_trades_recorded_nowhere": self.lost,
            "stated_balance_disagreements": len(self.disagreed),
            "converge_median_s": round(statistics.median(times), 1),
            "converge_max_s": round(times[-1], 1),
        }


def start_community(base: Path, log: Callable[[str], None] = print) -> list[RealHome]:
    """Three homes on 127.0.0.1: the founder creates the community, two join it."""
    env = {"PEER_ENERGY_TEST_SLOT_SECONDS": str(SLOT_S)}
    kw: dict[str, Any] = {"env": env}
    homes = [
        RealHome(base / "founder", name="Founder", sources=SELLER_SOURCES, **kw),
        RealHome(base / "buyer1", name="Buyer one", sources=BUYER_SOURCES, **kw),
        RealHome(base / "buyer2", name="Buyer two", sources=BUYER_SOURCES, **kw),
    ]
    try:
        for home in homes:
            home.write_config()
            home.add_login()
            home.start()
            home.login()
        founder = homes[0]
        founder.set_up_peer_energy()
        log(f"founder {founder.url} set up")
        for home in homes[1:]:
            invitation = founder.call(DOMAIN, "create_invitation")["invitation"]
            home.join_peer_energy(invitation)
            log(f"{home.name} {home.url} joined")
    except BaseException:
        stop(homes)
        raise
    return homes


def stop(homes: list[RealHome]) -> None:
    for home in homes:
        home.stop()


def ledger_of(home: RealHome) -> dict[str, Any]:
    """The home's ledger as the ``export_ledger`` action returns it (JSON)."""
    response = home.call(DOMAIN, "export_ledger", {"format": "json"})
    data: dict[str, Any] = response["data"]
    return data


def state(homes: list[RealHome]) -> tuple[list[set[str]], list[dict[str, int]]]:
    """Each home's credit record ids and non-zero balances."""
    records: list[set[str]] = []
    balances: list[dict[str, int]] = []
    for home in homes:
        data = ledger_of(home)
        records.append({r["id"] for r in data["records"]})
        balances.append(
            {k: int(v["balance_mmu"]) for k, v in data["accounts"].items() if v["balance_mmu"]}
        )
    return records, balances


def converged(homes: list[RealHome], timeout_s: float) -> tuple[bool, str, int]:
    """Wait until every home holds the same records and balances (summing to 0)."""
    deadline = time.monotonic() + timeout_s
    detail = ""
    while True:
        try:
            records, balances = state(homes)
        except (HarnessError, OSError, KeyError) as err:  # a home still starting
            detail = f"unreadable: {err}"
        else:
            same = all(r == records[0] for r in records) and all(b == balances[0] for b in balances)
            if same and sum(balances[0].values()) == 0:
                return True, "", len(records[0])
            missing = [len(records[0] | r) - len(r) for r in records]
            detail = f"records missing per home {missing}, balances {balances}"
        if time.monotonic() >= deadline:
            return False, detail, 0
        time.sleep(1.0)


def equivocations(homes: list[RealHome]) -> int:
    """Equivocation warnings in the homes' logs (every home here is honest)."""
    count = 0
    for home in homes:
        if home.log_path.exists():
            text = home.log_path.read_text(encoding="utf-8", errors="replace")
            count += text.count("(equivocation)")
    return count


_REFUSED = re.compile(r"Trade ([0-9a-f]{12}) of slot \d+ not recorded \(")
_DISAGREED = re.compile(r"Trade ([0-9a-f]{12}) of slot \d+ recorded with a stated balance")


def _logged(homes: list[RealHome], pattern: re.Pattern[str]) -> set[str]:
    found: set[str] = set()
    for home in homes:
        if home.log_path.exists():
            text = home.log_path.read_text(encoding="utf-8", errors="replace")
            found.update(pattern.findall(text))
    return found


def refused_trades(homes: list[RealHome]) -> set[str]:
    """Id prefixes of the trades a home's ledger refused (its log)."""
    return _logged(homes, _REFUSED)


def disagreed_trades(homes: list[RealHome]) -> set[str]:
    """Id prefixes of the trades a home recorded with a stated balance that differs."""
    return _logged(homes, _DISAGREED)


def keep_trading(homes: list[RealHome], slots: int = 12) -> None:
    """The founder offers ``SOLD_WH`` at 10 ct/kWh in each of the next ``slots`` slots
    (manual orders through ``place_order``; kept in memory, so placed again after every
    event), which the others' base load buys at the import price."""
    founder = homes[0]
    now = int(time.time())
    for k in range(1, slots + 1):
        slot = now - now % SLOT_S + k * SLOT_S
        when = datetime.fromtimestamp(slot, UTC).isoformat()
        data = {"side": "sell", "energy_kwh": SOLD_WH / 1000, "limit_price": 0.10, "slot": when}
        try:
            founder.call(DOMAIN, "place_order", data)
        except HarnessError:  # gate closure passed, or the slot's bid is already out
            continue


def run(
    homes: list[RealHome],
    *,
    kills: int,
    reloads: int,
    seed: int,
    log: Callable[[str], None] = print,
) -> Figures:
    """Kill and reload homes at random points of the slot cycle; check after each."""
    rng = random.Random(seed)
    figures = Figures()
    events = ["kill"] * kills + ["reload"] * reloads
    rng.shuffle(events)
    meter = ExportMeter(homes[0])
    meter.start()
    try:
        _events(homes, events, rng, figures, log)
    finally:
        meter.stopped.set()
    data = ledger_of(homes[0])
    figures.trades = sum(1 for r in data["records"] if r["kind"] == "trade")
    settlements = [r["body"] for r in data["records"] if r["kind"] == "settlement"]
    figures.settlements = len(settlements)
    figures.payments = sum(1 for s in settlements if s["payment"] > 0)
    figures.paid_mmu = sum(int(s["payment"]) for s in settlements)
    figures.equivocations += equivocations(homes)
    figures.refused |= refused_trades(homes)
    figures.disagreed |= disagreed_trades(homes)
    recorded = {r["id"][:12] for r in data["records"] if r["kind"] == "trade"}
    figures.lost = len(figures.refused - recorded)
    return figures


def _events(
    homes: list[RealHome],
    events: list[str],
    rng: random.Random,
    figures: Figures,
    log: Callable[[str], None],
) -> None:
    keep_trading(homes)
    ok, detail, _ = converged(homes, CONVERGE_S)
    if not ok:
        figures.failures.append(f"before the first event: {detail}")
    for n, event in enumerate(events, 1):
        victim = rng.choice(homes)
        time.sleep(rng.uniform(0, SLOT_S))  # a random point of the slot cycle
        at = time.time() % SLOT_S
        if event == "kill":
            figures.equivocations += equivocations([victim])  # its log starts anew
            figures.refused |= refused_trades([victim])
            figures.disagreed |= disagreed_trades([victim])
            victim.kill()
            victim.start()
            victim.wait_loaded()
            figures.kills += 1
        else:
            victim.reload_entry()
            figures.reloads += 1
        started = time.monotonic()
        keep_trading(homes)
        ok, detail, count = converged(homes, CONVERGE_S)
        figures.converge_s.append(time.monotonic() - started)
        log(
            f"{n:3d} {event:6s} {victim.name:9s} at {at:4.1f} s of the slot: "
            f"{'ok' if ok else 'NOT CONVERGED'} ({count} records) {detail}"
        )
        if not ok:
            figures.failures.append(f"{event} of {victim.name}: {detail}")


def verify_chains(homes: list[RealHome]) -> list[str]:
    """Open each home's SQLite ledger (after the run, processes stopped) and verify its
    own chain end to end; returns the problems found."""
    from custom_components.peer_energy.core.trust.chain import VerifyMode
    from custom_components.peer_energy.core.trust.home_ledger import HomeLedger
    from custom_components.peer_energy.core.trust.identity import Identity

    problems: list[str] = []
    for home in homes:
        storage = home.config_dir / ".storage"
        seed = json.loads((storage / f"{DOMAIN}.identity.{home.entry_id}").read_text())
        identity = Identity.from_seed_hex(seed["data"]["seed"])
        files = sorted((storage / DOMAIN).glob(f"ledger_{home.entry_id}_*.sqlite"))
        for path in files:
            community = path.stem.split("_", 2)[2]
            ledger = HomeLedger.open(path, identity, community, now_ms=int(time.time() * 1000))
            try:
                report = ledger.verify(VerifyMode.FULL)
                if not report.ok:
                    problems.append(f"{home.name}: {report}")
            finally:
                ledger.close()
    return problems
