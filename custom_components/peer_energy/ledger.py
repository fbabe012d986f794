"""Home Assistant adapter for the ledger: key store, SQLite file, executor, exports.

* The home's Ed25519 key pair lives in Home Assistant's ``Store``
  (``.storage/peer_energy.identity.<entry_id>``, private file mode, atomic writes).
  It is created once at set-up, never logged, and redacted from diagnostics.
* The ledger is one SQLite file per config entry under
  ``.storage/peer_energy/ledger_<entry_id>.sqlite``, opened and written only through
  ``hass.async_add_executor_job`` so the event loop never blocks on disk or CPU.
* Writes are serialised by a lock: one slot commit (one transaction) at a time.
* Reads on the event loop (balances, the head, the credit limit) come from a view of the
  committed state, taken in the executor at the end of each commit under the same lock,
  never from the objects a running commit is changing. Once the ledger is closed (the
  entry unloads or reloads) every read that needs the file raises ``LedgerClosedError``
  (a ``HomeAssistantError``), which callers answer cleanly, and diagnostics say so.

The runtime wires this in: open it in ``async_setup_entry``, commit each slot after
clearing, close it on unload, and call the export methods from an action and from
diagnostics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
import json
from pathlib import Path
import time
from typing import Any, Final

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.storage import Store

from .const import DOMAIN, LOGGER
from .core.federation.protocol.settlement import settlement_from_dict
from .core.trust.chain import ChainComparison, ChainEntry, ChainReport, VerifyMode
from .core.trust.credit import MAX_ENERGY_WH, CreditPolicy, Settlement, SignedTrade, Transfer
from .core.trust.home_ledger import HomeLedger, HomeLedgerError, SlotResult
from .core.trust.identity import Identity, KeyRing
from .core.trust.ledger_db import LedgerDBError, StoredRecord
from .core.trust.reputation import Evidence

IDENTITY_STORE_VERSION: Final = 1
TO_REDACT: Final = {"seed", "next_seed"}
EXPORT_DIR: Final = "peer_energy_exports"


class LedgerSetupError(HomeAssistantError):
    """The key store or the ledger file cannot be used."""


class LedgerClosedError(HomeAssistantError):
    """The ledger was closed (the entry is unloading or reloading); try again shortly."""


@dataclass(frozen=True, slots=True)
class LedgerView:
    """The committed state the event loop reads (taken after a commit, in the executor)."""

    head_hash: str
    balances: Mapping[str, int]
    limit: int
    signed_balance: int = 0


def _view(ledger: HomeLedger) -> LedgerView:
    credit = ledger.credit
    member = ledger.member
    return LedgerView(
        ledger.head.hash_hex,
        dict(credit.balances),
        credit.limit(member),
        credit.signed_balance(member),
    )


def identity_store(hass: HomeAssistant, entry_id: str) -> Store[dict[str, Any]]:
    """The private store holding this entry's key pair."""
    return Store(
        hass,
        IDENTITY_STORE_VERSION,
        f"{DOMAIN}.identity.{entry_id}",
        private=True,
        atomic_writes=True,
    )


def ledger_path(hass: HomeAssistant, entry_id: str) -> Path:
    """Where this entry's SQLite ledger lives."""
    return Path(hass.config.path(".storage", DOMAIN, f"ledger_{entry_id}.sqlite"))


def _seed(data: Mapping[str, Any], key: str) -> Identity | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        return Identity.from_seed_hex(value)
    except (ValueError, TypeError) as err:
        raise LedgerSetupError(f"stored {key} of the home identity is malformed") from err


async def async_load_identity(store: Store[dict[str, Any]]) -> tuple[Identity, Identity | None]:
    """Load the home key pair (and a pending rotation key), creating it on first use."""
    data = await store.async_load()
    if data is None:
        identity = Identity.generate()
        await store.async_save({"seed": identity.seed_hex()})
        LOGGER.info("Created the home identity %s", identity.public_key[:16])
        return identity, None
    stored = _seed(data, "seed")
    if stored is None:
        raise LedgerSetupError("the home identity store has no key")
    return stored, _seed(data, "next_seed")


class PeerLedger:
    """The home's ledger as the Home Assistant shell uses it."""

    def __init__(
        self,
        hass: HomeAssistant,
        store: Store[dict[str, Any]],
        ledger: HomeLedger,
    ) -> None:
        """Wrap an opened ``HomeLedger``; use ``async_open``."""
        self.hass = hass
        self._store = store
        self._ledger = ledger
        self._lock = asyncio.Lock()
        self._closed = False
        self._view = _view(ledger)  # opened: nothing runs in the executor yet

    @classmethod
    async def async_open(
        cls,
        hass: HomeAssistant,
        entry_id: str,
        community: str,
        *,
        policy: CreditPolicy | None = None,
        keyring: KeyRing | None = None,
        path: Path | None = None,
    ) -> PeerLedger:
        """Load or create the key pair, then open (or create) the SQLite ledger.

        ``path`` overrides the default file (the federation keeps one file per community).
        """
        store = identity_store(hass, entry_id)
        identity, pending = await async_load_identity(store)
        path = path or ledger_path(hass, entry_id)
        open_with: Callable[[Identity], HomeLedger] = partial(
            _open, path, community=community, policy=policy, keyring=keyring
        )
        try:
            ledger = await hass.async_add_executor_job(open_with, identity)
        except HomeLedgerError as err:
            if pending is None:
                raise LedgerSetupError(f"cannot open the ledger: {err}") from err
            # A rotation was committed to the chain but the store still has both keys.
            try:
                ledger = await hass.async_add_executor_job(open_with, pending)
            except (HomeLedgerError, LedgerDBError) as err2:
                raise LedgerSetupError(f"cannot open the ledger: {err2}") from err2
            await store.async_save({"seed": pending.seed_hex()})
        except LedgerDBError as err:
            raise LedgerSetupError(f"cannot open the ledger: {err}") from err
        else:
            if pending is not None:  # rotation never reached the chain: forget it
                await store.async_save({"seed": identity.seed_hex()})
        return cls(hass, store, ledger)

    async def async_close(self) -> None:
        """Close the database (waits for a running commit); later reads of the file raise
        ``LedgerClosedError``, reads of the committed view keep answering."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await self.hass.async_add_executor_job(self._ledger.close)

    @property
    def closed(self) -> bool:
        """True once ``async_close`` ran."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerClosedError(translation_domain=DOMAIN, translation_key="ledger_closed")

    async def _run[T](self, job: Callable[[], T]) -> T:
        """Run ``job`` in the executor (the lock held by the caller), then take the view
        of the committed state in the same executor call."""
        self._check_open()

        def run() -> tuple[T, LedgerView]:
            result = job()
            return result, _view(self._ledger)

        try:
            result, self._view = await self.hass.async_add_executor_job(run)
        except BaseException:
            self._view = await self.hass.async_add_executor_job(_view, self._ledger)
            raise
        return result

    # --- reads of the committed view, safe in the event loop ---

    @property
    def member(self) -> str:
        """This home's member id (public key; not secret)."""
        return self._ledger.member

    @property
    def public_key(self) -> str:
        """The key currently signing for this home."""
        return self._ledger.identity.public_key

    @property
    def head_hash(self) -> str:
        """Hash (hex) of the newest committed entry of this home's own chain."""
        return self._view.head_hash

    def balance(self, account: str | None = None) -> int:
        """Committed balance in milli-minor units (this home's by default)."""
        return self._view.balances.get(account or self.member, 0)

    def signed_balance(self) -> int:
        """This home's committed balance without delivery settlements (milli-minor
        units): what its next trade halves commit to, so that a settlement recorded
        between a trade's two halves cannot make the trade's balances wrong."""
        return self._view.signed_balance

    def credit_limit(self) -> int:
        """This home's credit limit in milli-minor units (as of the last commit)."""
        return self._view.limit

    def max_buy_wh(self, price: int, fee: int = 0) -> int:
        """Most energy this home may order at ``price`` without passing its credit limit."""
        unit = price + fee
        if unit <= 0:
            return MAX_ENERGY_WH
        return min(MAX_ENERGY_WH, max(0, self.balance() + self.credit_limit()) // unit)

    def balances(self) -> dict[str, int]:
        """Every known committed account balance (milli-minor units)."""
        return dict(self._view.balances)

    def scores(self) -> dict[str, int]:
        """This home's reputation score of each peer (permille), as of the last
        ``async_refresh_limits``."""
        return dict(self._ledger.credit.scores)

    def set_keyring(self, keyring: KeyRing) -> None:
        """Update the community's member keys (from the federation's membership)."""
        self._ledger.credit.keyring = keyring

    async def async_refresh_limits(self, now_ms: int | None = None) -> dict[str, int]:
        """Recompute reputation scores from the evidence (in the executor: a year of
        evidence is tens of thousands of items) and feed them into the credit limits."""
        at = _now_ms() if now_ms is None else now_ms
        async with self._lock:
            if self._closed:
                return self.scores()
            await self._run(partial(self._ledger.refresh_limits, at))
        return self.scores()

    # --- executor-backed operations ---

    async def async_sync_peer_chain(self, entries: Sequence[ChainEntry]) -> ChainComparison:
        """Store a peer's newer chain copy or prove its fork (see ``HomeLedger``)."""
        async with self._lock:
            return await self._run(partial(self._ledger.sync_peer_chain, entries, _now_ms()))

    async def async_commit_slot(
        self,
        ts_ms: int,
        *,
        entries: Sequence[tuple[str, Mapping[str, Any]]] = (),
        trades: Sequence[SignedTrade] = (),
        transfers: Sequence[Transfer] = (),
        settlements: Sequence[Settlement] = (),
        evidence: Sequence[Evidence] = (),
    ) -> SlotResult:
        """Record one slot durably (one SQLite transaction, in the executor)."""
        job = partial(
            self._ledger.commit_slot,
            ts_ms,
            entries=entries,
            trades=trades,
            transfers=transfers,
            settlements=settlements,
            evidence=evidence,
        )
        async with self._lock:
            try:
                return await self._run(job)
            except LedgerDBError as err:
                raise HomeAssistantError(f"ledger write failed: {err}") from err

    async def async_records(self, kind: str | None = None, since_ms: int = 0) -> list[StoredRecord]:
        """Accepted credit records (``trade``, ``transfer``, ``settlement``), oldest first."""
        async with self._lock:
            self._check_open()
            return await self.hass.async_add_executor_job(
                partial(self._ledger.db.records, kind, since_ms)
            )

    async def async_records_after(
        self, kind: str | None, after_row: int
    ) -> list[tuple[int, StoredRecord]]:
        """Accepted credit records stored after row ``after_row`` (0: all), in the order
        they were stored, with their row numbers (``LedgerDB.records_after``)."""
        async with self._lock:
            self._check_open()
            return await self.hass.async_add_executor_job(
                self._ledger.db.records_after, kind, after_row
            )

    async def async_credit_records(
        self, since_ms: int, limit: int
    ) -> list[SignedTrade | Settlement]:
        """The newest ``limit`` trades and delivery settlements from ``since_ms`` on, in
        the order this ledger applied them (to answer a member reconciling its ledger)."""
        async with self._lock:
            self._check_open()
            rows = await self.hass.async_add_executor_job(
                self._ledger.db.records_applied, since_ms, limit
            )
        out: list[SignedTrade | Settlement] = []
        for row in rows:
            if row.kind == "trade":
                out.append(SignedTrade.from_dict(row.body))
            elif row.kind == "settlement":
                out.append(settlement_from_dict(row.body))
        return out

    async def async_rotate_key(self) -> str:
        """Replace the signing key; the new key is stored before the chain announces it."""
        async with self._lock:
            self._check_open()
            new = Identity.generate()
            current = self._ledger.identity
            await self._store.async_save({"seed": current.seed_hex(), "next_seed": new.seed_hex()})
            await self._run(partial(self._ledger.rotate_key, new, _now_ms()))
            await self._store.async_save({"seed": new.seed_hex()})
            return new.public_key

    async def async_verify(self, mode: VerifyMode = VerifyMode.AUTHOR) -> ChainReport:
        """Verify this home's chain end to end from disk."""
        async with self._lock:
            self._check_open()
            return await self.hass.async_add_executor_job(self._ledger.verify, mode)

    async def async_export(self, fmt: str, *, include_chain: bool = False) -> str | dict[str, Any]:
        """The ledger as CSV text (``fmt="csv"``) or JSON-ready data (``fmt="json"``)."""
        async with self._lock:
            self._check_open()
            if fmt == "csv":
                return await self.hass.async_add_executor_job(self._ledger.export_csv)
            if fmt == "json":
                return await self.hass.async_add_executor_job(
                    partial(self._ledger.export_json, include_chain=include_chain)
                )
        raise HomeAssistantError(f"unknown export format {fmt!r}; use csv or json")

    async def async_write_export(self, fmt: str, *, include_chain: bool = False) -> Path:
        """Write an export file under ``<config>/peer_energy_exports/`` and return its path."""
        content = await self.async_export(fmt, include_chain=include_chain)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = Path(self.hass.config.path(EXPORT_DIR, f"ledger_{stamp}.{fmt}"))
        await self.hass.async_add_executor_job(_write, path, content)
        return path

    async def async_diagnostics(self) -> dict[str, Any]:
        """Ledger section for diagnostics: public summary, key material redacted."""
        async with self._lock:
            if self._closed:  # the entry reloads: say so instead of failing the download
                summary: dict[str, Any] = {"closed": True}
            else:
                summary = await self.hass.async_add_executor_job(self._ledger.summary)
        stored = await self._store.async_load() or {}
        return {
            "ledger": summary,
            "identity": async_redact_data({"public_key": self.public_key, **stored}, TO_REDACT),
        }


def _open(
    path: Path,
    identity: Identity,
    *,
    community: str,
    policy: CreditPolicy | None,
    keyring: KeyRing | None,
) -> HomeLedger:
    return HomeLedger.open(
        path, identity, community, now_ms=_now_ms(), policy=policy, keyring=keyring
    )


def _write(path: Path, content: str | dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content, indent=1)
    path.write_text(text, encoding="utf-8")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
