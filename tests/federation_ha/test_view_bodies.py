"""Whatever a stranger does with the body of a request, the message view answers 4xx and
nothing reaches the log as a traceback: gzip lies, truncated bodies, wrong lengths, broken
chunks, oversized and slow bodies. Our own bug answers 500 without details."""

from __future__ import annotations

import asyncio
import gzip
import logging
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
import pytest
from yarl import URL

from custom_components.peer_energy.core.federation.protocol import Rejected
from custom_components.peer_energy.http import MAX_BODY_BYTES, MESSAGE_PATH, status_of
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry

from .conftest import Home


async def _raw(address: str, request: bytes, *, pause_s: float = 0.0, tail: bytes = b"") -> bytes:
    """Send raw bytes to the server (optionally more after a pause); return its answer."""
    url = URL(address)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(request)
        await writer.drain()
        if pause_s:
            await asyncio.sleep(pause_s)
        if tail:
            writer.write(tail)
            await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


def _head(length: int | None, *extra: str) -> bytes:
    lines = [f"POST {MESSAGE_PATH} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *extra]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG)
    yield caplog
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


async def test_gzip_lie_is_a_bad_request(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home], no_tracebacks: Any
) -> None:
    """Content-Encoding gzip with a body that is not gzip: 400, no traceback."""
    _, a = home_a
    body = b'{"not": "gzip"}'
    answer = await _raw(a.address, _head(len(body), "Content-Encoding: gzip") + body)
    assert _status(answer) == 400
    assert b'"bad_body"' in answer


async def test_gzip_bomb_is_too_large(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home], no_tracebacks: Any
) -> None:
    """A small gzip body that inflates beyond the limit: 413 (counted after inflating)."""
    _, a = home_a
    body = gzip.compress(b" " * (MAX_BODY_BYTES * 4))
    assert len(body) < MAX_BODY_BYTES
    answer = await _raw(a.address, _head(len(body), "Content-Encoding: gzip") + body)
    assert _status(answer) == 413


async def test_broken_chunks_and_lengths(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home], no_tracebacks: Any
) -> None:
    """A chunk size that is not hex, a length shorter than the body: 4xx, no traceback."""
    _, a = home_a
    answer = await _raw(a.address, _head(None, "Transfer-Encoding: chunked") + b"zz\r\nabc\r\n")
    assert 400 <= _status(answer) < 500
    answer = await _raw(a.address, _head(3) + b'{"a": 1}')
    assert 400 <= _status(answer) < 500
    answer = await _raw(a.address, _head(None, "Content-Length: x") + b"{}")
    assert 400 <= _status(answer) < 500


async def test_truncated_body_leaves_no_traceback(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home], no_tracebacks: Any
) -> None:
    """The client announces 1000 bytes, sends 10 and hangs up: nothing logged as an error."""
    _, a = home_a
    url = URL(a.address)
    _, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(_head(1000) + b"x" * 10)
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.2)
    chunked = _head(None, "Transfer-Encoding: chunked") + b"10\r\n" + b"x" * 5
    _, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(chunked)
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.2)


async def test_slow_body_times_out(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home], no_tracebacks: Any
) -> None:
    """A body that does not arrive within the read time-out: 408."""
    _, a = home_a
    with patch("custom_components.peer_energy.http.BODY_TIMEOUT_S", 0.2):
        answer = await _raw(a.address, _head(100) + b"{", pause_s=0.5, tail=b"x" * 99)
    assert _status(answer) == 408


async def test_oversized_content_length_is_refused_unread(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home], no_tracebacks: Any
) -> None:
    """A declared length over the limit: 413 before a byte of the body is read."""
    _, a = home_a
    answer = await _raw(a.address, _head(MAX_BODY_BYTES + 1))
    assert _status(answer) == 413


async def test_our_bug_answers_500_without_details(
    hass: HomeAssistant, home_a: tuple[PeerEnergyConfigEntry, Home]
) -> None:
    """``internal_error`` from the link (our bug, logged there): 500 and no detail."""
    _, a = home_a
    assert status_of([Rejected("internal_error", "this home failed", "")])[0] == 500
    with patch.object(
        type(a.link), "receive", return_value=[Rejected("internal_error", "secret detail", "")]
    ):
        answer = await _raw(a.address, _head(2) + b"{}")
    assert _status(answer) == 500
    assert b"secret detail" not in answer
    assert b'"internal_error"' in answer
