"""Writer process for the durability test: appends slots forever, acknowledging each.

Usage: python tests/ledger/durability_writer.py DB_PATH

It imports the engine package as top-level ``core`` (the engine uses only relative
imports) so the process starts in a fraction of a second instead of importing Home
Assistant through ``custom_components/peer_energy/__init__.py``.

After every commit it prints ``<head seq> <buyer balance>`` and flushes: a printed line
is an acknowledgement that the slot is durable. The test kills it with SIGKILL.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
import sys

HOME_SEED = hashlib.sha256(b"durable-home").digest()
NEIGHBOUR_SEED = hashlib.sha256(b"durable-neighbour").digest()
START_MS = 1_800_000_000_000
SLOT_MS = 900_000
COMMUNITY = "durable"


def main(path: str) -> None:
    """Append slots until killed."""
    sys.path.insert(
        0, str(Path(__file__).resolve().parents[2] / "custom_components" / "peer_energy")
    )
    from core.trust.credit import SignedTrade, sign_trade  # type: ignore[import-not-found]
    from core.trust.home_ledger import HomeLedger  # type: ignore[import-not-found]
    from core.trust.identity import Identity  # type: ignore[import-not-found]

    home = Identity(HOME_SEED)
    neighbour = Identity(NEIGHBOUR_SEED)
    ledger = HomeLedger.open(path, home, COMMUNITY, now_ms=START_MS)
    slot = ledger.head.seq
    while True:
        slot += 1
        ts = START_MS + slot * SLOT_MS
        terms, _ = ledger.credit.propose_trade(
            slot=ts // 1000,
            buyer=neighbour.public_key,
            seller=home.public_key,
            energy_wh=100 + slot % 7,
            price=20,
            seller_prev=ledger.head.hash_hex,
        )
        assert terms is not None
        trade = SignedTrade(terms, sign_trade(terms, neighbour), sign_trade(terms, home))
        ledger.commit_slot(
            ts,
            entries=[("order", {"slot": slot, "wh": 100}), ("fill", {"slot": slot})],
            trades=[trade],
        )
        print(ledger.head.seq, ledger.credit.balance(home.public_key), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
