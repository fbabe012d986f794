"""A few hundred generated requests against the peer endpoints of a real Home Assistant
(``tests/real/http_fuzzer.py``; ``bench/fuzz_http.py`` sends 10,000): no 5xx, no accepted
forgery, no traceback in the log, the membership unchanged."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_socket

from tests.realhome import RealHome

from .http_fuzzer import fuzz, start_home

REQUESTS = 400


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory: pytest.TempPathFactory) -> Generator[RealHome]:
    """A real Home Assistant whose home founded a community, on 127.0.0.1."""
    pytest_socket.enable_socket()
    home = start_home(Path(tmp_path_factory.mktemp("fuzz_home")))
    try:
        yield home
    finally:
        home.stop()


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(socket_enabled: None) -> Any:
    """No test instance of Home Assistant here: the real one is tested from outside."""
    return None


async def test_fuzz_real_views(fuzz_home: RealHome) -> None:
    """Every kind of request is refused or handled with a 4xx/202; the oracle finds nothing."""
    report = await fuzz(fuzz_home, REQUESTS, seed=1, slow=2, slow_delay_s=11.0)
    text = "\n".join(report.lines())
    assert report.requests >= REQUESTS, text
    assert not report.server_errors, text
    assert not report.forgeries, text
    assert report.tracebacks == 0, text
    assert not report.error_lines, text
    assert report.members_after == report.members_before == 2, text
    assert report.healthy_after, text
    assert report.statuses[408] >= 1, text  # the slow bodies were cut off
    assert report.codes["bad_body"] >= 1, text  # gzip and deflate lies
    assert report.codes["accepted"] >= 1, text  # the member's valid messages get through
    for kind in ("resigned", "stranger", "join", "encoding", "raw", "oversized"):
        assert report.kinds[kind] > 0, text
