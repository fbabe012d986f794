"""The fuzzers' forgery oracles are exact: they catch the forgeries a deliberately weakened
signature check lets in, and do not count a harmless acceptance as a forgery.

The HTTP fuzzer (``tests/real/http_fuzzer.py``) runs here in-process against a home of an
in-memory community, its requests answered as the HTTP view answers them (body inflated as
declared, then ``Peer.receive`` and the view's status for its outputs)."""

from __future__ import annotations

import gzip
from typing import Any
import zlib

import pytest

from custom_components.peer_energy.core.federation.protocol import Peer
from custom_components.peer_energy.core.trust import envelope
from custom_components.peer_energy.core.trust.canonical import canonical_bytes, decode
from custom_components.peer_energy.http import MAX_BODY_BYTES, status_of
from tests.real.http_fuzzer import (
    ForgeryOracle,
    FuzzRequest,
    HttpFuzzer,
    HttpFuzzReport,
    member_seeds,
)

from .fuzzer import Fuzzer, FuzzReport, run
from .helpers import build, make_identity, secret


def _weaken_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every envelope signature verifies: a message whose content changed is accepted."""
    monkeypatch.setattr(envelope, "verify_hex", lambda *args, **kwargs: True)


def _answer(home: Peer, request: FuzzRequest, now_ms: int) -> int:
    """The status the HTTP view would answer ``request`` with (no rate limit)."""
    if request.kind == "raw":
        return 400  # broken HTTP: aiohttp answers before any view
    body = request.body
    try:
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        elif request.headers.get("Content-Encoding") == "deflate":
            body = zlib.decompress(body)
    except (OSError, EOFError, zlib.error):
        return 400
    if len(body) > MAX_BODY_BYTES:
        return 413
    status, _code, _detail = status_of(home.receive(body, "fuzz", now_ms))
    return status


def _fuzz_in_process(requests: int, seed: int = 3) -> HttpFuzzReport:
    """``requests`` generated requests from member p1 to home p0, judged by the oracle."""
    net, peers = build(2)
    home, member = peers
    # An invitation used up (as the one the fuzzing member joined with over HTTP).
    invitation = home.invite(secret("used"), net.now).encode()
    joiner, outputs = Peer.joining(make_identity("joined"), invitation, address="j", now_ms=net.now)
    net.add(joiner)
    net.apply("j", outputs)
    net.run_until(net.now + 200)
    assert joiner.joined
    fuzzer = HttpFuzzer(
        seed,
        member,
        make_identity("p1"),
        invitation,
        member_seeds(member, net.now),
        clock=lambda: net.now,
    )
    for _ in range(requests):
        request = fuzzer.generate()
        status = _answer(home, request, net.now)
        fuzzer.report.statuses[status] += 1
        fuzzer.check(request, status)
        net.now += 1
    return fuzzer.report


def test_http_oracle_finds_nothing_against_an_honest_home() -> None:
    report = _fuzz_in_process(600)
    assert report.forgeries == []
    assert report.statuses[202] > 10  # the member's valid messages get through


def test_http_oracle_catches_what_a_weakened_signature_check_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _weaken_signature_check(monkeypatch)
    report = _fuzz_in_process(600)
    kinds = {line.split(":", 1)[0] for line in report.forgeries}
    assert {"unsigned", "envelope"} <= kinds, report.forgeries[:5]


@pytest.fixture
def signed() -> tuple[bytes, dict[str, Any]]:
    """A bid the member signed and has not sent: its wire bytes and its message."""
    net, peers = build(2)
    data = member_seeds(peers[1], net.now)[0]
    message = decode(data)
    assert isinstance(message, dict)
    return data, message


def test_http_oracle_cases(signed: tuple[bytes, dict[str, Any]]) -> None:
    """Each way an answer can be right or wrong, judged exactly."""
    data, message = signed
    oracle = ForgeryOracle()
    # A refusal is never a forgery.
    assert oracle.judge(FuzzRequest("garbage", b"{", {}, True), 400) is None
    # A mutation that changed nothing, accepted for the first time: harmless.
    assert oracle.judge(FuzzRequest("envelope", data, {}, True, message), 202) is None
    # The same message accepted a second time, by any request: a replay got through.
    replay = oracle.judge(FuzzRequest("unsigned", data, {}, True, message), 202)
    assert replay is not None
    assert "accepted again" in replay
    # The payload changed (a float: it cannot be signed again, the old signature kept).
    forged = dict(message, payload={**message["payload"], "slot": 1.5})
    body = repr(forged).encode()  # not even JSON; compared with the original, not itself
    assert oracle.judge(FuzzRequest("resigned", body, {}, True, message), 202) is not None
    changed = dict(message, seq=message["seq"] + 1)
    assert oracle.judge(FuzzRequest("unsigned", canonical_bytes(changed), {}, True, message), 202)
    # Must be refused and has no original (a stranger, a join, a gzip lie): any 202 is one.
    fresh = dict(message, seq=message["seq"] + 2)
    lie = FuzzRequest("encoding", canonical_bytes(fresh), {"Content-Encoding": "gzip"}, True)
    assert oracle.judge(lie, 202) is not None
    # A true gzip body may be accepted; sent again with its header, it is a replay.
    fresh = dict(message, seq=message["seq"] + 3)
    zipped = FuzzRequest(
        "encoding", gzip.compress(canonical_bytes(fresh)), {"Content-Encoding": "gzip"}, False
    )
    assert oracle.judge(zipped, 202) is None
    again = FuzzRequest("replay", zipped.body, zipped.headers, True)
    assert oracle.judge(again, 202) is not None


def test_protocol_oracle_catches_what_a_weakened_signature_check_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The protocol fuzzer compares with the signed original, not with its own mutation:
    payloads changed under the old signature and accepted are reported as forgeries."""
    _weaken_signature_check(monkeypatch)
    report = run(1_000, seed=7, per_round=1_000)
    kinds = {line.split(":", 1)[0] for line in report.forgeries}
    assert "unsigned" in kinds, report.forgeries[:5]


def test_protocol_oracle_harmless_acceptance() -> None:
    """A message that must be refused but is still exactly its signed original (a mutation
    that changed nothing) may be accepted once; accepted again, it is a forgery."""
    net, peers = build(3)
    target, member = peers[0], peers[2]
    data = member_seeds(member, net.now)[0]
    original = decode(data)
    assert isinstance(original, dict)
    fuzzer = Fuzzer(0, FuzzReport())
    fuzzer.now = net.now
    fuzzer.deliver(target, data, True, "unsigned", original)
    assert fuzzer.report.forgeries == []
    assert fuzzer.report.accepted == 1
