"""Three real Home Assistant processes form an MQTT community through the flows over REST,
trade over a real Mosquitto, and survive the broker's restart.

The founder creates the community with "Through an MQTT broker" (10-second slots forced by
``PEER_ENERGY_TEST_SLOT_SECONDS``), the others join with its invitations (which carry the
broker); the founder sells to the others' base load. The broker is stopped: every home
reports it away (diagnostics) while trading with the grid; it starts again: every home
reconnects and the community trades again, every ledger ending with the same records.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import time
from typing import Any

import pytest

from tests.real.chaos import (
    BUYER_SOURCES,
    SELLER_SOURCES,
    SLOT_S,
    converged,
    keep_trading,
    stop,
)
from tests.realhome import DOMAIN, HarnessError, RealHome

from .conftest import Broker

WAIT_S = 12 * SLOT_S


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(socket_enabled: None) -> None:
    """Real Home Assistant processes only: no test instance of it here, sockets open."""


def _federation(home: RealHome) -> dict[str, Any]:
    diag = home.request("GET", f"/api/diagnostics/config_entry/{home.entry_id}")
    return dict(diag["data"].get("federation") or {})


def _until(what: str, cond: Callable[[], bool], homes: list[RealHome], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (HarnessError, OSError, KeyError):
            pass  # a home reloading
        time.sleep(1.0)
    logs = "\n".join(h.log_tail(30) for h in homes)
    raise AssertionError(f"{what} not reached in {wait_s} s:\n{logs}")


def test_real_homes_trade_over_mosquitto_and_survive_its_restart(
    mosquitto: Broker, tmp_path: Path
) -> None:
    env = {"PEER_ENERGY_TEST_SLOT_SECONDS": str(SLOT_S)}
    homes = [
        RealHome(tmp_path / "founder", name="Founder", sources=SELLER_SOURCES, env=env),
        RealHome(tmp_path / "buyer1", name="Buyer one", sources=BUYER_SOURCES, env=env),
        RealHome(tmp_path / "buyer2", name="Buyer two", sources=BUYER_SOURCES, env=env),
    ]
    try:
        for home in homes:
            home.write_config()
            home.add_login()
            home.start()
            home.login()
        founder = homes[0]
        founder.set_up_peer_energy(
            community_extra={"transport": "mqtt", "broker_url": mosquitto.url}
        )
        for home in homes[1:]:
            invitation = founder.call(DOMAIN, "create_invitation")["invitation"]
            home.join_peer_energy(invitation)

        def formed() -> bool:
            states = [_federation(h) for h in homes]
            return all(
                s.get("joined") and s.get("members") == 3 and s.get("broker") == "connected"
                for s in states
            )

        _until("a community of three on the broker", formed, homes, WAIT_S)
        assert all(_federation(h)["transport"] == "mqtt" for h in homes)

        keep_trading(homes)
        ok, detail, records = converged(homes, WAIT_S)
        assert ok, detail
        _until("trades on every ledger", lambda: converged(homes, 1)[2] > 0, homes, WAIT_S)
        before = converged(homes, WAIT_S)[2]

        mosquitto.stop()
        _until(
            "every home reporting the broker away",
            lambda: all(_federation(h).get("broker") != "connected" for h in homes),
            homes,
            WAIT_S,
        )
        mosquitto.start()
        _until(
            "every home back on the broker",
            lambda: all(_federation(h).get("broker") == "connected" for h in homes),
            homes,
            WAIT_S + 120,  # paho's reconnect backoff doubles up to 2 minutes
        )
        keep_trading(homes)

        def traded_again() -> bool:
            ok, _detail, count = converged(homes, 1)
            return ok and count > before

        _until("new trades on every ledger after the restart", traded_again, homes, WAIT_S)
        assert all(_federation(h)["members"] == 3 for h in homes)
        assert records >= 0
    finally:
        stop(homes)
