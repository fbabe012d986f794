"""The real Home Assistant and the browser the browser tests share (one of each per run).

Missing Chromium or Playwright fails these tests with a message that says what to
install; PEER_ENERGY_SKIP_BROWSER=1 skips them on purpose (the reason is printed).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_socket

from .harness import RealHome, artifacts_dir
from .shoot import Browser, BrowserMissingError, chromium_path, playwright_module


@pytest.fixture(scope="module")
def real_home(tmp_path_factory: pytest.TempPathFactory) -> Generator[RealHome]:
    """Home Assistant with Peer Energy set up as a user would, on 127.0.0.1."""
    if os.environ.get("PEER_ENERGY_SKIP_BROWSER") == "1":
        pytest.skip("PEER_ENERGY_SKIP_BROWSER=1: browser tests skipped on request")
    try:
        chromium_path()
        playwright_module()
    except BrowserMissingError as err:
        pytest.fail(str(err), pytrace=False)
    # Home Assistant's test plugin blocks sockets in every test; these talk to a real
    # server on 127.0.0.1 (still the only host allowed).
    pytest_socket.enable_socket()
    home = RealHome(Path(tmp_path_factory.mktemp("real_home")))
    home.write_config()
    home.add_login()
    try:
        home.start()
        home.login()
        home.set_up_peer_energy()
    except BaseException:
        home.stop()
        raise
    try:
        yield home
    finally:
        home.stop()


@pytest.fixture
async def browser(real_home: RealHome) -> AsyncGenerator[Browser]:
    """Chromium, logged in to ``real_home``; screenshots go to build/browser/."""
    async with Browser(real_home.url, real_home.tokens, artifacts_dir()) as chromium:
        yield chromium


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(socket_enabled: None) -> Any:
    """These tests talk to a real Home Assistant over 127.0.0.1: no test instance of it is
    started, and sockets stay open."""
    return None
