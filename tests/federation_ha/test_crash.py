"""A home killed or reloaded at the worst moments of a slot loses no trade and is never
taken for an equivocator (the write-ahead rule and reconciliation after a restart).

"Killed" here is what SIGKILL leaves: every save of the federation store and every ledger
commit started after the freeze never completes, tasks in flight die, and the home comes
back from what its store and its SQLite file held before. The real-process version of
these tests is ``tests/real/test_chaos.py``.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.core.federation.protocol import (
    EquivocationDetected,
    LedgerRecords,
    LedgerWanted,
)
from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.core.trust.chain import VerifyMode
from custom_components.peer_energy.core.trust.credit import CreditResult, Refusal
from custom_components.peer_energy.federation import (
    TEST_SLOT_ENV,
    FederationLink,
    community_rules,
    federation_store,
    forced_slot_seconds,
)
from custom_components.peer_energy.recording import ISSUE_OUT_OF_STEP

from .conftest import Clock, Home, fast_rules, next_slot, open_ledger, settle
from .test_link import MemTransport, make_link, mem_join


@pytest.fixture
def net() -> MemTransport:
    return MemTransport()


async def _community(hass: HomeAssistant, clock: Clock, net: MemTransport) -> list[Home]:
    a = await make_link(hass, net, clock, "a")
    await a.link.async_found("Birch Row", fast_rules(), "a")
    b = await make_link(hass, net, clock, "b")
    c = await make_link(hass, net, clock, "c")
    await mem_join(hass, a, b)
    await mem_join(hass, a, c)
    homes = [a, b, c]
    for home in homes:
        await open_ledger(hass, home)
        home.link.async_start()
    return homes


async def _bid(home: Home, slot: int, side: Side, wh: int, price: int) -> None:
    order = Order.single(side.value, "", side, slot, wh, price)
    await home.link.async_submit_orders(slot * 1000, [order])


async def tick_all(clock: Clock, homes: list[Home], to_ms: int) -> None:
    """Move the clock and let every home act; a frozen (dying) home is not waited for."""
    clock.now = to_ms
    for home in homes:
        home.link.async_tick()
    await settle(*[h for h in homes if not getattr(h, "frozen", False)])


async def run_slot(clock: Clock, homes: list[Home], slot: int, rules: Any) -> None:
    """Step through gate closure, the digest rounds, attestation and the deadline."""
    g = rules.gate_closure_ms(slot)
    for t in sorted({*homes[0].link.peer._timers(slot), g}):  # type: ignore[union-attr]
        await tick_all(clock, homes, t)
    await tick_all(clock, homes, g + rules.sync_window_ms + rules.attest_window_ms + 100)


def _freeze(home: Home) -> None:
    """From now on the home's saves and ledger commits never finish (it is being killed)."""
    never = asyncio.Event()

    async def hang(*_: Any, **__: Any) -> Any:
        await never.wait()

    home.link.store.async_save = hang  # type: ignore[method-assign]
    assert home.ledger is not None
    home.ledger.async_commit_slot = hang  # type: ignore[method-assign]
    home.frozen = True  # type: ignore[attr-defined]


async def _kill(home: Home) -> None:
    """SIGKILL: nothing more is saved or sent; the SQLite file keeps what was committed."""
    link = home.link
    link._stopped = True
    tasks = list(link._tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert home.ledger is not None
    await home.ledger.async_close()
    home.frozen = False  # type: ignore[attr-defined]


async def _restart(
    hass: HomeAssistant, net: MemTransport, clock: Clock, home: Home, *, clean: bool = False
) -> None:
    """Start the home again from its store and its ledger file (``clean``: it stopped
    normally first, saving its state, as an entry reload does)."""
    old = home.link
    if clean:
        await old.async_stop()
        assert home.ledger is not None
        await home.ledger.async_close()
    link = FederationLink(
        hass,
        old.entry_id,
        old.identity,
        net,
        store=federation_store(hass, old.entry_id),
        clock=clock,
        schedule=False,
        announce=old._announce,
    )
    assert await link.async_load() == "member"
    home.link = link
    home.outcomes.clear()
    link.async_add_result_listener(home.outcomes.append)
    net.links[home.address] = link
    await open_ledger(hass, home)
    assert link.peer is not None
    assert home.ledger is not None
    home.ledger.set_keyring(link.peer.membership.keyring)
    link.peer.set_balances(home.ledger.balances())
    link.async_start()


async def _settle_down(clock: Clock, homes: list[Home], ms: int = 3_000) -> None:
    """Let catch-up, settlement and reconciliation run for ``ms`` of fake time."""
    for _ in range(ms // 500):
        await tick_all(clock, homes, clock.now + 500)
    for home in homes:
        await home.link.async_drain()


async def assert_consistent(homes: list[Home]) -> dict[str, int]:
    """Every trade and settlement on every ledger, the same non-zero balances everywhere,
    summing to zero, every chain verifying, no equivocation evidence; the balances."""
    trades: list[set[str]] = []
    settlements: list[set[str]] = []
    balances: list[dict[str, int]] = []
    for home in homes:
        ledger = home.ledger
        assert ledger is not None
        trades.append({r.record_id for r in await ledger.async_records("trade")})
        settlements.append({r.record_id for r in await ledger.async_records("settlement")})
        balances.append({k: v for k, v in ledger.balances().items() if v})
        assert (await ledger.async_verify(VerifyMode.FULL)).ok, home.name
        summary = (await ledger.async_diagnostics())["ledger"]
        assert summary["evidence"] == 0 or not summary.get("proofs"), home.name
    names = [h.name for h in homes]
    assert all(t == trades[0] for t in trades), dict(zip(names, trades, strict=True))
    assert all(s == settlements[0] for s in settlements), names
    assert all(b == balances[0] for b in balances), dict(zip(names, balances, strict=True))
    assert sum(balances[0].values()) == 0
    return balances[0]


async def _close(homes: list[Home]) -> None:
    for home in homes:
        await home.link.async_stop()
        assert home.ledger is not None
        await home.ledger.async_close()


async def test_killed_while_countersigning_loses_no_trade(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """The buyer dies while it countersigns: its signature never left before it was
    stored, and after the restart it catches the slot up and signs the same trade."""
    homes = await _community(hass, clock, net)
    a, b, _ = homes
    rules = fast_rules()
    slot = next_slot(clock, rules)
    await _bid(a, slot, Side.SELL, 500, 10)
    await _bid(b, slot, Side.BUY, 500, 20)
    _freeze(b)  # killed during the slot: nothing b saves from here on reaches the disk
    await run_slot(clock, homes, slot, rules)
    await _kill(b)
    await _restart(hass, net, clock, b)
    await _settle_down(clock, homes)
    balances = await assert_consistent(homes)
    assert balances[b.link.member_key] < 0  # the trade is there, on every ledger
    assert a.ledger is not None
    assert len(await a.ledger.async_records("trade")) == 1
    await _close(homes)


async def test_killed_after_bidding_is_no_equivocator(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """A bid killed before it was stored never left; the home bids anew after the restart
    and nobody holds two bids of it."""
    homes = await _community(hass, clock, net)
    a, b, c = homes
    rules = fast_rules()
    slot = next_slot(clock, rules)
    await _bid(a, slot, Side.SELL, 500, 10)
    _freeze(b)
    await _bid(b, slot, Side.BUY, 400, 20)
    await asyncio.sleep(0)
    await _kill(b)
    await _restart(hass, net, clock, b)
    await _bid(b, slot, Side.BUY, 300, 25)  # a new plan after the restart
    await run_slot(clock, homes, slot, rules)
    await _settle_down(clock, homes)
    for home in (a, c):
        assert home.link.peer is not None
        assert not home.link.peer._slots[slot].equivocators
    balances = await assert_consistent(homes)
    assert balances[b.link.member_key] == -(300 * 10 + 300 * rules.market.distributor_fee)
    await _close(homes)


async def test_reload_before_gate_closure_resends_the_same_bid(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """An entry reload between the bid and gate closure keeps the signed bid: the slot
    clock's new plan is not signed, the stored bid is sent again."""
    homes = await _community(hass, clock, net)
    a, b, c = homes
    rules = fast_rules()
    slot = next_slot(clock, rules)
    await _bid(a, slot, Side.SELL, 500, 10)
    await _bid(b, slot, Side.BUY, 400, 20)
    await _settle_down(clock, homes, 1_000)
    events: list[Any] = []
    original = a.link._handle

    def spy(outputs: Any) -> None:
        events.extend(o for o in outputs if isinstance(o, EquivocationDetected))
        original(outputs)

    a.link._handle = spy  # type: ignore[method-assign]
    await _restart(hass, net, clock, b, clean=True)
    assert b.link.peer is not None
    assert b.link.peer.bid_restored(slot)
    await _bid(b, slot, Side.BUY, 300, 25)  # the slot clock plans again after the reload
    await b.link.async_drain()
    await run_slot(clock, homes, slot, rules)
    await _settle_down(clock, homes)
    assert events == []
    for home in (a, c):
        assert home.link.peer is not None
        assert not home.link.peer._slots[slot].equivocators
    balances = await assert_consistent(homes)
    assert balances[b.link.member_key] == -(400 * 10 + 400 * rules.market.distributor_fee)
    await _close(homes)


async def test_observer_away_during_the_slot_reconciles_its_ledger(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """A home that was down while two others traded records their trade after its
    restart (members send it the records of recent slots), so balances agree again."""
    homes = await _community(hass, clock, net)
    a, b, c = homes
    rules = fast_rules()
    slot = next_slot(clock, rules)
    await _bid(a, slot, Side.SELL, 500, 10)
    await _bid(b, slot, Side.BUY, 500, 20)
    await _settle_down(clock, homes, 1_000)
    net.down.add("c")
    await run_slot(clock, homes, slot, rules)
    await _settle_down(clock, homes)
    assert c.ledger is not None
    assert await c.ledger.async_records("trade") == []
    await _kill(c)
    net.down.discard("c")
    await _restart(hass, net, clock, c)
    await _settle_down(clock, homes)
    await assert_consistent(homes)
    assert c.link.diagnostics()["records_reconciled"] == 1
    await _close(homes)


async def test_a_ledger_out_of_step_raises_a_repair(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """Trades refused again and again (nobody answers the reconciliation) end in a
    translated repair and a warning; a trade recorded later clears it."""
    a = await make_link(hass, net, clock, "a", announce=True)
    await a.link.async_found("Oak Lane", fast_rules(), "a")
    await open_ledger(hass, a)
    link = a.link
    result = type(
        "R", (), {"accepted": (), "refused": (("t" * 64, _refusal()),), "disagreed": ()}
    )()

    async def refuse(*_: Any, **__: Any) -> Any:
        return result

    assert a.ledger is not None
    a.ledger.async_commit_slot = refuse  # type: ignore[method-assign]
    for slot in (60, 120, 180):
        await link.recorder.record_trades(slot, [])
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_OUT_OF_STEP) is not None
    assert link.diagnostics()["ledger_out_of_step"] is True
    result.refused = ()
    result.accepted = ("t" * 64,)
    await link.recorder.record_trades(240, [])
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_OUT_OF_STEP) is None
    # records from a member: nothing to add is nothing to report
    await link.recorder.record_ledger(LedgerRecords("m", (), (), ()))
    await link.async_stop()
    await a.ledger.async_close()


async def test_stated_balances_that_differ_are_reported_and_count_as_out_of_step(
    hass: HomeAssistant, clock: Clock, net: MemTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """Trades recorded although a party's stated balance differs from this ledger's: an
    info line each, counted in the diagnostics, and in a row they raise the repair."""
    a = await make_link(hass, net, clock, "a", announce=True)
    await a.link.async_found("Oak Lane", fast_rules(), "a")
    await open_ledger(hass, a)
    link = a.link
    trade_id = "d" * 64
    result = type("R", (), {"accepted": (trade_id,), "refused": (), "disagreed": (trade_id,)})()

    async def record(*_: Any, **__: Any) -> Any:
        return result

    assert a.ledger is not None
    a.ledger.async_commit_slot = record  # type: ignore[method-assign]
    caplog.set_level(logging.INFO)
    await link.recorder.record_trades(60, [])
    assert link.diagnostics()["balance_disagreements"] == 1
    assert f"Trade {'d' * 12} of slot 60 recorded with a stated balance" in caplog.text
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_OUT_OF_STEP) is None
    for slot in (120, 180):
        await link.recorder.record_trades(slot, [])
    assert link.diagnostics()["balance_disagreements"] == 3
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_OUT_OF_STEP) is not None
    result.disagreed = ()
    await link.recorder.record_trades(240, [])
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_OUT_OF_STEP) is None
    await link.async_stop()
    await a.ledger.async_close()


def _refusal() -> Any:
    return CreditResult(Refusal.BALANCE_MISMATCH, "missed a record")


def test_short_slots_only_for_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PEER_ENERGY_TEST_SLOT_SECONDS`` gives a new community slots of a few seconds
    (tests with real processes); anything else keeps the form's rules."""
    form = {
        "slot_minutes": 1,
        "gate_closure_lead_s": 20,
        "fee": 1,
        "credit_limit_base": 0,
        "fair_share_pct": 100,
        "max_members": 5,
        "import_price": 30,
        "feed_in_tariff": 8,
    }
    assert community_rules(**form).slot_seconds == 60
    monkeypatch.setenv(TEST_SLOT_ENV, "10")
    rules = community_rules(**form)
    assert (rules.slot_seconds, rules.gate_closure_lead_s) == (10, 4)
    assert rules.sync_window_ms == rules.attest_window_ms == 1_000
    for value in ("3", "7", "ten", "120"):
        monkeypatch.setenv(TEST_SLOT_ENV, value)
        assert forced_slot_seconds() is None
        assert community_rules(**form).slot_seconds == 60


async def test_reconciliation_while_the_ledger_is_closed(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """A reload closes the ledger under a reconciliation: nothing is sent or recorded,
    nothing fails (the member asks again later)."""
    homes = await _community(hass, clock, net)
    a, b, _ = homes
    assert a.ledger is not None
    await a.ledger.async_close()
    await a.link._answer_ledger(LedgerWanted(b.link.member_key, "b", 0))
    fake = SimpleNamespace(terms=SimpleNamespace(slot=60))
    await a.link.recorder.record_ledger(LedgerRecords("m", (fake,), (), ("trade",)))  # type: ignore[arg-type]
    assert a.link.recorder.trades_reconciled == 0
    for home in homes:
        await home.link.async_stop()
    for home in homes[1:]:
        assert home.ledger is not None
        await home.ledger.async_close()
