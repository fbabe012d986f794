"""Three real Home Assistant homes trade while one is killed (SIGKILL) or reloaded at
random points of the slot cycle, 20 times in all; the seller delivers less than it sells,
so delivery settlements move money while trades are countersigned; nothing is lost,
nobody is accused.

``python bench/chaos.py`` runs 100 kills and 100 reloads with the same driver.
"""

from __future__ import annotations

from collections.abc import Generator
import os
from pathlib import Path

import pytest
import pytest_socket

from tests.realhome import RealHome

from . import chaos

KILLS = int(os.environ.get("PEER_ENERGY_CHAOS_KILLS", "10"))
RELOADS = int(os.environ.get("PEER_ENERGY_CHAOS_RELOADS", "10"))


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> Generator[list[RealHome]]:
    pytest_socket.enable_socket()
    homes = chaos.start_community(Path(tmp_path_factory.mktemp("chaos")), log=lambda _: None)
    try:
        yield homes
    finally:
        chaos.stop(homes)


def test_kills_and_reloads_lose_nothing(community: list[RealHome]) -> None:
    lines: list[str] = []
    figures = chaos.run(community, kills=KILLS, reloads=RELOADS, seed=7, log=lines.append)
    summary = figures.summary()
    assert figures.kills + figures.reloads >= 20, summary
    assert not figures.failures, "\n".join([*lines, *figures.failures])
    assert figures.trades > 0, summary  # the homes did trade meanwhile
    assert figures.payments > 0, summary  # and the seller's shortfalls moved money
    assert figures.equivocations == 0, summary
    assert figures.lost == 0, summary  # no trade both signed is missing from every ledger
    chaos.stop(community)
    assert chaos.verify_chains(community) == []
