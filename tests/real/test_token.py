"""The harness keeps talking to a real Home Assistant after its access token expires (they
last 30 minutes; the long chaos run takes longer): it refreshes the token before it
expires, and once more when a request is refused with 401."""

from __future__ import annotations

from pathlib import Path

import pytest_socket

from tests.realhome import RealHome


def test_an_expired_access_token_is_refreshed(tmp_path: Path) -> None:
    pytest_socket.enable_socket()
    home = RealHome(tmp_path / "home", name="Token home")
    home.write_config()
    home.add_login()
    home.start()
    try:
        home.login()
        first = home.token
        assert home.request("GET", "/api/")["message"] == "API running."
        # About to expire: refreshed before the request.
        home.tokens["expires"] = 0
        assert home.request("GET", "/api/")["message"] == "API running."
        assert home.tokens["expires"] > 0  # a new token (within the same second: same text)
        # Refused (expired meanwhile): refreshed, and the request made again.
        refused = first[:-4] + "xxxx"
        home.token = refused
        assert home.request("GET", "/api/config/config_entries/entry") is not None
        assert home.token != refused
    finally:
        home.stop()
