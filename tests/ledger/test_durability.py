"""Durability: SIGKILL the writer at random points; nothing acknowledged is lost."""

from __future__ import annotations

from pathlib import Path
import random
import signal
import subprocess
import sys

from custom_components.peer_energy.core.trust.chain import VerifyMode
from custom_components.peer_energy.core.trust.home_ledger import HomeLedger
from custom_components.peer_energy.core.trust.identity import Identity

from .durability_writer import COMMUNITY, HOME_SEED, NEIGHBOUR_SEED, START_MS

WRITER = Path(__file__).with_name("durability_writer.py")
HOME = Identity(HOME_SEED)
NEIGHBOUR = Identity(NEIGHBOUR_SEED)


def run_and_kill(path: Path, rng: random.Random) -> list[tuple[int, int]]:
    """Start the writer, SIGKILL it after a random number of acknowledgements."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    acknowledged: list[tuple[int, int]] = []
    wanted = rng.randint(1, 40)
    for line in proc.stdout:
        seq, balance = line.split()
        acknowledged.append((int(seq), int(balance)))
        if len(acknowledged) >= wanted:
            break
    proc.send_signal(signal.SIGKILL)
    rest, err = proc.communicate(timeout=10)
    # Lines already printed when the kill landed were acknowledged too.
    for line in rest.splitlines():
        if line.strip():
            seq, balance = line.split()
            acknowledged.append((int(seq), int(balance)))
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert acknowledged, err.decode()
    return acknowledged


def test_acknowledged_entries_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    rng = random.Random(4)  # fixed seed: reproducible kill points
    for _ in range(5):
        acknowledged = run_and_kill(path, rng)
        ledger = HomeLedger.open(path, HOME, COMMUNITY, now_ms=START_MS)
        try:
            member = HOME.public_key
            last_seq, last_balance = acknowledged[-1]
            assert ledger.head.seq >= last_seq
            for seq, _ in acknowledged:
                assert ledger.db.entry(member, seq) is not None
            report = ledger.verify(VerifyMode.FULL)
            assert report.ok, report.reason
            assert report.length == ledger.head.seq + 1
            # Balances on disk are consistent with the chain: at least what was acknowledged.
            assert ledger.credit.balance(member) >= last_balance
            assert ledger.credit.total() == 0
            assert ledger.credit.balance(NEIGHBOUR.public_key) == -ledger.credit.balance(member)
            # Every slot is atomic: 3 entries (order, fill, trade) per slot after genesis.
            assert ledger.head.seq % 3 == 0
            trades = ledger.db.records(kind="trade")
            assert len(trades) == ledger.head.seq // 3
            assert sum(t.body["terms"]["energy_wh"] * 20 for t in trades) == ledger.credit.balance(
                member
            )
        finally:
            ledger.close()
