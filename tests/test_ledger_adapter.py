"""The Home Assistant ledger adapter: key store, SQLite in the executor, restart, exports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import threading
from typing import Any
from unittest.mock import patch

from homeassistant.components.diagnostics import REDACTED
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
import pytest
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)

from custom_components.peer_energy.core.trust.chain import VerifyMode
from custom_components.peer_energy.core.trust.credit import (
    MAX_ENERGY_WH,
    CreditPolicy,
    Role,
    SignedTrade,
    report_delivery,
    settle_delivery,
    sign_trade,
)
from custom_components.peer_energy.core.trust.identity import Identity
from custom_components.peer_energy.core.trust.ledger_db import LedgerDBError
from custom_components.peer_energy.core.trust.reputation import delivery_evidence
from custom_components.peer_energy.diagnostics import async_get_config_entry_diagnostics
from custom_components.peer_energy.ledger import (
    LedgerClosedError,
    LedgerSetupError,
    PeerLedger,
    ledger_path,
)

ENTRY = "entry1"
STORE_KEY = "peer_energy.identity.entry1"
NEIGHBOUR = Identity(bytes(range(32)))
T0 = 1_800_000_000_000


@pytest.fixture
def config_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """Keep the SQLite file out of the shared test config directory."""
    hass.config.config_dir = str(tmp_path)
    return tmp_path


async def open_ledger(hass: HomeAssistant) -> PeerLedger:
    return await PeerLedger.async_open(
        hass, ENTRY, "street-7", policy=CreditPolicy(base_limit=1_000_000)
    )


async def sell(ledger: PeerLedger, slot: int, wh: int) -> SignedTrade:
    terms, result = ledger._ledger.credit.propose_trade(
        slot=(T0 + slot * 900_000) // 1000,
        buyer=NEIGHBOUR.public_key,
        seller=ledger.member,
        energy_wh=wh,
        price=22,
        clean=True,
        seller_prev=ledger._ledger.head.hash_hex,
    )
    assert terms is not None, result
    return SignedTrade(
        terms, sign_trade(terms, NEIGHBOUR), sign_trade(terms, ledger._ledger.identity)
    )


async def test_key_created_once_and_kept_private(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    config_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = await open_ledger(hass)
    seed = hass_storage[STORE_KEY]["data"]["seed"]
    assert Identity.from_seed_hex(seed).public_key == ledger.member == ledger.public_key
    ours = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(("custom_components", "homeassistant"))
    ]
    assert ours  # the creation is logged, by public key prefix only
    assert not any(seed in message for message in ours)
    await ledger.async_close()
    again = await open_ledger(hass)
    assert again.member == ledger.member
    assert hass_storage[STORE_KEY]["data"]["seed"] == seed
    assert ledger_path(hass, ENTRY).is_relative_to(config_dir / ".storage")
    assert ledger_path(hass, ENTRY).exists()
    await again.async_close()


async def test_restart_gives_identical_balances(
    hass: HomeAssistant, hass_storage: dict[str, Any], config_dir: Path
) -> None:
    ledger = await open_ledger(hass)
    for slot in range(1, 4):
        result = await ledger.async_commit_slot(
            T0 + slot * 900_000,
            entries=[("order", {"slot": slot})],
            trades=[await sell(ledger, slot, 300 * slot)],
            evidence=[delivery_evidence(NEIGHBOUR.public_key, 10, 10, T0)],
        )
        assert result.refused == ()
    await ledger.async_refresh_limits(T0)
    before = (ledger.balances(), ledger.balance(), ledger.scores(), ledger.credit_limit())
    assert ledger.balance() == 22 * 300 * 6
    assert ledger.balance(NEIGHBOUR.public_key) == -ledger.balance()
    assert ledger.max_buy_wh(22) == (ledger.balance() + ledger.credit_limit()) // 22
    await ledger.async_close()

    again = await open_ledger(hass)
    await again.async_refresh_limits(T0)
    after = (again.balances(), again.balance(), again.scores(), again.credit_limit())
    assert after == before
    report = await again.async_verify(VerifyMode.FULL)
    assert report.ok
    assert report.length == 7
    await again.async_close()


async def test_trade_halves_commit_to_the_signed_balance(
    hass: HomeAssistant, hass_storage: dict[str, Any], config_dir: Path
) -> None:
    """A shortfall payment moves the balance but not what the next trade half commits to
    (the committed view the shell passes to ``Peer.settle``), also after a restart."""
    ledger = await open_ledger(hass)
    trade = await sell(ledger, 1, 500)
    await ledger.async_commit_slot(T0 + 900_000, trades=[trade])
    assert ledger.signed_balance() == ledger.balance() == 22 * 500
    identity = ledger._ledger.identity
    report = report_delivery(trade.terms, identity, ledger.member, Role.SELLER, 400, T0)
    settlement = settle_delivery(trade.terms, report, None, import_price=30)
    await ledger.async_commit_slot(T0 + 2 * 900_000, settlements=[settlement])
    assert ledger.balance() == 22 * 500 - 100 * 30
    assert ledger.signed_balance() == 22 * 500
    await ledger.async_close()
    again = await open_ledger(hass)
    assert (again.balance(), again.signed_balance()) == (22 * 500 - 100 * 30, 22 * 500)
    later = await sell(again, 3, 100)
    assert later.terms.seller_balance == 22 * 600
    result = await again.async_commit_slot(T0 + 3 * 900_000, trades=[later])
    assert result.refused == ()
    await again.async_close()


async def test_exports_and_diagnostics(
    hass: HomeAssistant, hass_storage: dict[str, Any], config_dir: Path
) -> None:
    ledger = await open_ledger(hass)
    await ledger.async_commit_slot(T0, trades=[await sell(ledger, 1, 500)])
    records = await ledger.async_records("trade")
    assert [r.kind for r in records] == ["trade"]
    assert await ledger.async_records("transfer") == []
    assert await ledger.async_records(since_ms=T0 * 2) == []
    text = await ledger.async_export("csv")
    assert isinstance(text, str)
    assert text.splitlines()[0].startswith("kind,id,ts_ms")
    assert "trade" in text
    data = await ledger.async_export("json", include_chain=True)
    assert isinstance(data, dict)
    assert len(data["chain"]) == 2
    with pytest.raises(HomeAssistantError, match="unknown export format"):
        await ledger.async_export("xml")
    for fmt in ("csv", "json"):
        path = await ledger.async_write_export(fmt)
        assert path.is_relative_to(config_dir / "peer_energy_exports")
        assert path.read_text(encoding="utf-8")
    json.loads((await ledger.async_write_export("json")).read_text(encoding="utf-8"))

    diagnostics = await ledger.async_diagnostics()
    seed = hass_storage[STORE_KEY]["data"]["seed"]
    assert seed not in json.dumps(diagnostics)
    assert diagnostics["identity"]["seed"] == "**REDACTED**"
    assert diagnostics["identity"]["public_key"] == ledger.member
    assert diagnostics["ledger"]["balance_mmu"] == 500 * 22
    await ledger.async_close()


async def test_key_rotation_and_interrupted_rotation(
    hass: HomeAssistant, hass_storage: dict[str, Any], config_dir: Path
) -> None:
    ledger = await open_ledger(hass)
    member = ledger.member
    new_key = await ledger.async_rotate_key()
    assert ledger.public_key == new_key != member
    assert ledger.member == member
    assert set(hass_storage[STORE_KEY]["data"]) == {"seed"}
    await ledger.async_close()

    # Crash after the chain announced a rotation but before the store dropped the old key.
    again = await open_ledger(hass)
    current = hass_storage[STORE_KEY]["data"]["seed"]
    with patch.object(type(again._store), "async_save", autospec=True) as save:
        await again.async_rotate_key()
    pending_seed = save.call_args_list[0].args[1]["next_seed"]
    hass_storage[STORE_KEY]["data"] = {"seed": current, "next_seed": pending_seed}
    await again.async_close()
    recovered = await open_ledger(hass)
    assert recovered.public_key == Identity.from_seed_hex(pending_seed).public_key
    assert hass_storage[STORE_KEY]["data"] == {"seed": pending_seed}
    assert (await recovered.async_verify()).ok
    await recovered.async_close()

    # Crash before the chain announced it: the pending key is dropped.
    other = Identity.generate()
    hass_storage[STORE_KEY]["data"] = {"seed": pending_seed, "next_seed": other.seed_hex()}
    kept = await open_ledger(hass)
    assert kept.public_key == Identity.from_seed_hex(pending_seed).public_key
    assert hass_storage[STORE_KEY]["data"] == {"seed": pending_seed}
    await kept.async_close()


@pytest.mark.parametrize(
    "stored",
    [{"seed": "not hex"}, {}, {"seed": "00" * 32, "next_seed": 5}],
)
async def test_broken_key_store_is_a_clear_error(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    config_dir: Path,
    stored: dict[str, Any],
) -> None:
    hass_storage[STORE_KEY] = {"version": 1, "minor_version": 1, "key": STORE_KEY, "data": stored}
    with pytest.raises(LedgerSetupError):
        await open_ledger(hass)


async def test_wrong_key_or_unreadable_file_is_a_clear_error(
    hass: HomeAssistant, hass_storage: dict[str, Any], config_dir: Path
) -> None:
    ledger = await open_ledger(hass)
    await ledger.async_close()
    hass_storage[STORE_KEY]["data"] = {"seed": Identity.generate().seed_hex()}
    with pytest.raises(LedgerSetupError, match="another key"):
        await open_ledger(hass)
    hass_storage[STORE_KEY]["data"] = {
        "seed": Identity.generate().seed_hex(),
        "next_seed": Identity.generate().seed_hex(),
    }
    with pytest.raises(LedgerSetupError, match="another key"):
        await open_ledger(hass)
    path = ledger_path(hass, ENTRY)
    path.unlink()
    path.mkdir()
    with pytest.raises(LedgerSetupError, match="cannot open"):
        await open_ledger(hass)


async def test_write_failure_becomes_a_home_assistant_error(
    hass: HomeAssistant, hass_storage: dict[str, Any], config_dir: Path
) -> None:
    ledger = await open_ledger(hass)
    with (
        patch.object(ledger._ledger, "commit_slot", side_effect=LedgerDBError("disk full")),
        pytest.raises(HomeAssistantError, match="disk full"),
    ):
        await ledger.async_commit_slot(T0)
    await ledger.async_close()


async def test_peer_chains_keyring_and_limits(
    hass: HomeAssistant, hass_storage: dict[str, Any], config_dir: Path
) -> None:
    from custom_components.peer_energy.core.trust.chain import Comparison, genesis_entry, next_entry
    from custom_components.peer_energy.core.trust.identity import KeyRing
    from custom_components.peer_energy.core.trust.reputation import equivocation_evidence

    ledger = await open_ledger(hass)
    g = genesis_entry(NEIGHBOUR, T0, "street-7")
    copy = [g, next_entry(NEIGHBOUR, g, T0 + 1, "order", {"wh": 5})]
    result = await ledger.async_sync_peer_chain(copy)
    assert result.outcome is Comparison.EXTENDS
    ledger.set_keyring(KeyRing().with_member(ledger.member).with_member(NEIGHBOUR.public_key))
    base = ledger._ledger.credit.limit(NEIGHBOUR.public_key)
    await ledger.async_commit_slot(T0, evidence=[equivocation_evidence(NEIGHBOUR.public_key, T0)])
    await ledger.async_refresh_limits(T0)
    assert ledger._ledger.credit.limit(NEIGHBOUR.public_key) < base
    scores = await ledger.async_refresh_limits()
    assert scores[NEIGHBOUR.public_key] < 500
    assert ledger.scores() == scores
    await ledger.async_close()


async def test_reads_come_from_committed_state(
    hass: HomeAssistant, hass_storage: dict[str, Any], config_dir: Path
) -> None:
    """Balances and the head read on the event loop are those of the last commit, not
    of a commit still running in the executor; a closed ledger answers cleanly."""
    ledger = await open_ledger(hass)
    before = (ledger.balance(), ledger.head_hash, ledger.balances())
    trade = await sell(ledger, 1, 500)
    started, release = threading.Event(), threading.Event()
    commit = ledger._ledger.commit_slot

    def slow_commit(*args: Any, **kwargs: Any) -> Any:
        result = commit(*args, **kwargs)  # the objects change here ...
        started.set()
        release.wait(10)  # ... and the transaction is not over yet
        return result

    with patch.object(ledger._ledger, "commit_slot", slow_commit):
        task = hass.async_create_task(ledger.async_commit_slot(T0, trades=[trade]))
        await hass.async_add_executor_job(started.wait, 10)
        assert ledger._ledger.credit.balance(ledger.member) == 500 * 22
        assert (ledger.balance(), ledger.head_hash, ledger.balances()) == before
        release.set()
        result = await task
    assert result.accepted == (trade.trade_id,)
    assert ledger.balance() == 500 * 22
    assert ledger.balance(NEIGHBOUR.public_key) == -500 * 22
    assert ledger.head_hash != before[1]
    assert ledger.max_buy_wh(22) == (500 * 22 + ledger.credit_limit()) // 22
    assert ledger.max_buy_wh(0) == MAX_ENERGY_WH
    (record,) = await ledger.async_credit_records(0, 10)
    assert record == trade

    await ledger.async_close()
    await ledger.async_close()  # twice is harmless
    assert ledger.closed
    assert ledger.balance() == 500 * 22  # the committed view still answers
    assert (await ledger.async_diagnostics())["ledger"] == {"closed": True}
    assert await ledger.async_refresh_limits(T0) == ledger.scores()
    for call in (
        ledger.async_records(),
        ledger.async_export("csv"),
        ledger.async_verify(),
        ledger.async_credit_records(0, 1),
        ledger.async_commit_slot(T0),
    ):
        with pytest.raises(LedgerClosedError):
            await call


async def test_diagnostics_during_a_reload(
    hass: HomeAssistant,
    hass_client: Any,
    init_integration: Any,
) -> None:
    """Diagnostics while the entry reloads (old ledger closed, new one not open yet)
    answer with what they can say instead of failing on the closed database."""
    gate = asyncio.Event()
    opened = PeerLedger.async_open

    async def slow_open(*args: Any, **kwargs: Any) -> PeerLedger:
        await gate.wait()
        return await opened(*args, **kwargs)

    old = init_integration.runtime_data.ledger
    # the diagnostics component and the HTTP client are up before the reload starts
    await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    with patch.object(PeerLedger, "async_open", slow_open):
        reload = hass.async_create_task(hass.config_entries.async_reload(init_integration.entry_id))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if old is not None and old.closed:
                break
        assert old is not None
        assert old.closed
        async with asyncio.timeout(5):
            result = await async_get_config_entry_diagnostics(hass, init_integration)
        gate.set()
        assert await reload
    assert result["state"] in ("unload_in_progress", "not_loaded", "setup_in_progress")
    assert result["entry"]["title"] == REDACTED
