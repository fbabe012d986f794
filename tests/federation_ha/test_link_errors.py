"""The link and the protocol's error policy: a bug of our own (an exception from the
protocol) is logged at error level with its traceback, and the home keeps running."""

from __future__ import annotations

import logging
from unittest.mock import patch

from homeassistant.core import HomeAssistant
import pytest

from custom_components.peer_energy.core.federation.protocol import Rejected

from .conftest import Clock, fast_rules
from .test_link import MemTransport, make_link


async def test_a_protocol_bug_on_a_message_is_logged_with_its_traceback(
    hass: HomeAssistant, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    net = MemTransport()
    a = await make_link(hass, net, clock, "a")
    await a.link.async_found("Lime Walk", fast_rules(), "a")
    assert a.link.peer is not None
    with (
        caplog.at_level(logging.ERROR),
        patch.object(type(a.link.peer), "receive", side_effect=ZeroDivisionError("a bug")),
    ):
        out = a.link.receive(b"{}", "somewhere")
    assert [(o.code, o.sender_address) for o in out if isinstance(o, Rejected)] == [
        ("internal_error", "somewhere")
    ]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "somewhere" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is ZeroDivisionError
    # the next message is handled as usual
    assert [o.code for o in a.link.receive(b"not json", "x") if isinstance(o, Rejected)] == [
        "malformed"
    ]


async def test_a_protocol_bug_at_the_timer_is_logged_and_retried_later(
    hass: HomeAssistant, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    net = MemTransport()
    a = await make_link(hass, net, clock, "a")
    await a.link.async_found("Lime Walk", fast_rules(), "a")
    peer = a.link.peer
    assert peer is not None
    with (
        caplog.at_level(logging.ERROR),
        patch.object(type(peer), "tick", side_effect=RuntimeError("a bug at the timer")),
    ):
        a.link.async_tick()  # must not raise
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is RuntimeError
    assert a.link._retry_after_ms == clock.now + 1000  # not again before a second
    a.link.async_tick()  # the protocol works again: the timer goes on
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
