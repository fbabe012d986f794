"""Fuzz the peer endpoints of a real Home Assistant over HTTP (``bench/fuzz_http.py`` and
``tests/real/test_fuzz_http.py``).

A real Home Assistant process (``tests/realhome.py``) is set up through its REST
flows: a home that founds a community (1-minute slots). This process then joins that
community as a second member, through a real invitation (``peer_energy.create_invitation``)
and its own small HTTP server for the welcome, so it holds valid signed messages of its
own: bids, fetches, catch-up requests, and whatever the home sent it. From those seeds it
sends generated requests to ``POST /api/peer_energy/v1/message``:

* ``resigned``: the payload mutated (``tests/federation/fuzzer.py``'s structure-aware
  mutations) and signed again by the member: a member sending nonsense;
* ``unsigned``, ``envelope``, ``bytes``, ``garbage``: the signed content changed without the
  member's key, or no message at all: must be refused;
* ``stranger``: a well-signed message from a key that is no member's; ``join``: a join flood
  from fresh keys with the used invitation or an invented one; ``replay``: a message the
  home accepted, sent again: all must be refused;
* ``encoding``: a ``Content-Encoding`` the body does not follow (gzip, deflate), a valid gzip
  body, invalid UTF-8, odd content types; ``oversized``: over 1 MiB declared or sent in
  chunks; ``raw``: a declared length shorter than the body, broken chunks, a body cut by a
  hang-up (through a plain socket); ``slow``: bodies that trickle in slower than the view's
  read time-out.

Requests come from many loopback source addresses (127.0.0.2, ...) so that the per-address
rate limit does not turn most of them into ``429`` before they are checked; a share comes
from 127.0.0.1 and meets the limiter.

The oracle: no answer is a 5xx, no forgery is accepted (``ForgeryOracle``: an answer
``202`` to a request that must be refused, unless the request still carries exactly the
signed message it was generated from and the home had not accepted that message before; and
any message accepted twice), the home's log gets no traceback and no error line during the
run, the member count is unchanged, and the home still answers. Memory: the process's
resident set before and after.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
import gzip
import json
from pathlib import Path
import random
import time
from typing import Any
import zlib

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web
from yarl import URL

from custom_components.peer_energy.core.federation.community import Invitation
from custom_components.peer_energy.core.federation.protocol import Broadcast, Peer, Send
from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.core.trust.canonical import (
    CanonicalError,
    canonical_bytes,
    decode,
)
from custom_components.peer_energy.core.trust.envelope import seal
from custom_components.peer_energy.core.trust.identity import Identity
from custom_components.peer_energy.http import INFO_PATH, MAX_BODY_BYTES, MESSAGE_PATH
from tests.federation.fuzzer import (
    _STRS,
    _TYPES,
    Fuzzer,
    FuzzReport,
    _interesting_ints,
    _names,
)
from tests.realhome import DOMAIN, HarnessError, RealHome, free_port

KINDS: dict[str, int] = {
    "resigned": 26,
    "unsigned": 9,
    "envelope": 8,
    "bytes": 10,
    "garbage": 5,
    "stranger": 7,
    "join": 9,
    "replay": 5,
    "encoding": 10,
    "oversized": 2,
    "raw": 9,
}
SOURCE_ADDRESSES = 200  # 127.0.0.2 ... (and 127.0.0.1 for one request in ten)
CONCURRENCY = 12
SLOW_REQUESTS = 8
HOME = {"home_name": "Fuzz target", "currency": "EUR", "import_price": 0.30, "export_price": 0.08}


def community_form(url: str) -> dict[str, Any]:
    """The create-community form: 1-minute slots, a 20 s gate closure lead."""
    return {
        "community_name": "Fuzz street",
        "slot_minutes": "1",
        "gate_closure_lead_s": 20,
        "fee": 0.01,
        "credit_limit": 20,
        "fair_share_pct": 100,
        "max_members": 10,
        "address": url,
    }


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class FuzzRequest:
    """One generated request and what the oracle needs to judge its answer."""

    kind: str
    body: bytes
    headers: dict[str, str]
    must_refuse: bool
    # The signed message the request was generated from, unchanged: accepting a request
    # that still decodes to exactly it is harmless (a mutation that changed nothing).
    original: dict[str, Any] | None = None


def message_of(body: bytes, headers: dict[str, str]) -> dict[str, Any] | None:
    """The message a body carries as the home reads it (inflated when its
    ``Content-Encoding`` holds), or None when it is no canonical JSON object."""
    encoding = headers.get("Content-Encoding", "")
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        message = decode(body)
    except (CanonicalError, OSError, EOFError, zlib.error):
        return None
    return message if isinstance(message, dict) else None


class ForgeryOracle:
    """Judges the home's answers: an exact list of accepted forgeries.

    An answer other than ``202`` refused the request. A ``202`` accepted it, and that is a
    forgery when

    * the message it carries was accepted before (same sender and sequence number: a
      replay, whatever request carried it, also two copies in flight at once), or
    * the request must be refused and does not carry exactly its signed original (no
      original: garbage, a stranger's message, a join from a fresh key, a body the home
      must not read, a replay).

    A request that must be refused but still decodes to exactly the signed message it was
    made from (a mutation that changed nothing), accepted for the first time, is no forgery.
    """

    def __init__(self) -> None:
        """Nothing accepted yet."""
        self.seen: set[tuple[str, int]] = set()

    def judge(self, request: FuzzRequest, status: int) -> str | None:
        """What is wrong with ``status`` as the answer to ``request`` (None: nothing)."""
        if status != 202:
            return None
        message = message_of(request.body, request.headers)
        sender, seq = (message or {}).get("sender"), (message or {}).get("seq")
        key = (sender, seq) if isinstance(sender, str) and type(seq) is int else None
        problem = None
        if key is not None and key in self.seen:
            problem = "accepted again"
        elif request.must_refuse and (
            request.original is None or not _same(request.body, request.original, request.headers)
        ):
            problem = "accepted"
        if key is not None:
            self.seen.add(key)
        if problem is None:
            return None
        return f"{request.kind}: {problem} {request.body[:160]!r}"


def rss_kib(pid: int) -> int:
    """Resident memory of a process (Linux), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class HttpFuzzReport:
    """What a run found."""

    requests: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer (hung up)
    codes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    forgeries: list[str] = field(default_factory=list)
    tracebacks: int = 0
    error_lines: list[str] = field(default_factory=list)
    parse_errors: int = 0  # requests the web server could not parse as HTTP (see below)
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    members_before: int = 0
    members_after: int = 0
    healthy_after: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """Whether the oracle found anything."""
        return bool(
            self.server_errors
            or self.forgeries
            or self.tracebacks
            or self.error_lines
            or self.members_after != self.members_before
            or not self.healthy_after
        )

    def lines(self) -> list[str]:
        """The report as printed."""
        hist = ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(self.statuses.items()))
        return [
            f"requests: {self.requests} in {self.seconds:.1f} s",
            "generated: " + ", ".join(f"{k} {v}" for k, v in self.kinds.most_common()),
            f"status histogram: {hist}",
            "codes: " + ", ".join(f"{k} {v}" for k, v in self.codes.most_common()),
            f"5xx answers: {len(self.server_errors)}",
            *(f"  {line}" for line in self.server_errors[:10]),
            f"accepted forgeries: {len(self.forgeries)}",
            *(f"  {line}" for line in self.forgeries[:10]),
            f"tracebacks in the log: {self.tracebacks}; error lines: {len(self.error_lines)}",
            *(f"  {line}" for line in self.error_lines[:10]),
            f"requests the web server could not parse as HTTP (logged by aiohttp with a "
            f"traceback, answered 400 before any view): {self.parse_errors}",
            f"members before/after: {self.members_before}/{self.members_after}; "
            f"answers after the run: {self.healthy_after}",
            f"Home Assistant resident memory: {self.rss_before_kib} KiB before, "
            f"{self.rss_after_kib} KiB after ({self.rss_after_kib - self.rss_before_kib:+d} KiB)",
        ]


def start_home(config_dir: Path) -> RealHome:
    """A real Home Assistant whose Peer Energy home founded a community (no assets)."""
    home = RealHome(config_dir)
    home.write_config()
    home.add_login()
    try:
        home.start()
        home.login()
        result = home.flow(
            "/api/config/config_entries/flow",
            {"handler": DOMAIN, "show_advanced_options": False},
            HOME,
            {"next_step_id": "create_community"},
            community_form(home.url),
        )
        if result.get("type") != "create_entry":
            raise HarnessError(f"config flow: {result}")
        home.entry_id = str(result["result"]["entry_id"])
        home.wait_loaded()
    except BaseException:
        home.stop()
        raise
    return home


class Member:
    """This process as a member of the home's community, with an inbox on loopback."""

    def __init__(self, home_url: str) -> None:
        """Nothing runs before ``start``."""
        self.home_url = home_url
        self.identity = Identity.generate()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.peer: Peer | None = None
        self.received: list[bytes] = []
        self.outbox: list[bytes] = []  # what the peer answers (the welcome's acknowledgement)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def inbox(request: web.Request) -> web.Response:
            data = await request.read()
            self.received.append(data)
            if self.peer is not None:
                outputs = self.peer.receive(data, "home", now_ms())
                self.outbox.extend(o.data for o in outputs if isinstance(o, Send))
            return web.json_response({"ok": True}, status=202)

        async def info(request: web.Request) -> web.Response:
            # The home checks that a joiner's own key answers at its address.
            return web.json_response({"protocol": 1, "member": self.identity.public_key})

        app = web.Application()
        app.router.add_post(MESSAGE_PATH, inbox)
        app.router.add_get(INFO_PATH, info)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def join(self, session: ClientSession, invitation: str, timeout_s: float = 30) -> None:
        """Send the join request, wait for the welcome and acknowledge it (the home admits
        a joiner only then)."""
        self.peer, outputs = Peer.joining(
            self.identity, invitation, address=self.url, now_ms=now_ms(), confirm_joins=True
        )
        for out in outputs:
            if isinstance(out, Send):
                async with session.post(self.home_url + MESSAGE_PATH, data=out.data) as resp:
                    await resp.read()
        deadline = time.monotonic() + timeout_s
        while not self.peer.joined:
            if time.monotonic() > deadline:
                raise HarnessError("the welcome did not come")
            await asyncio.sleep(0.1)
        while self.outbox:
            async with session.post(self.home_url + MESSAGE_PATH, data=self.outbox.pop(0)) as resp:
                await resp.read()

    def seeds(self) -> list[bytes]:
        """Valid messages signed by this member (bids, fetches, a catch-up request)."""
        assert self.peer is not None
        return member_seeds(self.peer, now_ms())


def member_seeds(peer: Peer, now: int) -> list[bytes]:
    """Valid messages signed by ``peer``, a member (bids, fetches, a catch-up request), not
    sent yet."""
    rules = peer.rules
    step = rules.slot_seconds
    out: list[bytes] = []
    first = (now // 1000 + rules.gate_closure_lead_s + 5) // step * step + step
    for k, slot in enumerate(range(first + step, first + 6 * step, step)):
        side = Side.BUY if k % 2 else Side.SELL
        orders = [Order.single(f"f{k}", peer.member_id, side, slot, 200 + 50 * k, 10 + k)]
        for o in peer.submit_orders(slot, orders, now):
            if isinstance(o, Send | Broadcast):
                out.append(o.data)
    for slot in (first - step, first - 2 * step, first + step):
        out.append(peer._seal("fetch", {"slot": slot, "book": ""}, now))
    out.extend(o.data for o in peer.catch_up(now) if isinstance(o, Send | Broadcast))
    return out


class HttpFuzzer:
    """Generates requests from the member's seeds and checks each answer."""

    def __init__(
        self,
        seed: int,
        peer: Peer,
        identity: Identity,
        invitation: str,
        seeds: list[bytes],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """``peer``: the member (key ``identity``) whose valid messages ``seeds`` are;
        ``invitation``: the one it joined with (used up by now); ``clock``: Unix ms."""
        self.rng = random.Random(seed)
        self.identity = identity
        self.clock = clock
        self.invitation = invitation
        self.report = HttpFuzzReport()
        self.oracle = ForgeryOracle()
        self.accepted: list[FuzzRequest] = []
        self.seeds: list[dict[str, Any]] = []
        for data in seeds:
            try:
                env = decode(data)
            except CanonicalError:
                continue
            if isinstance(env, dict) and env.get("type") not in {"leave", "remove", "address"}:
                self.seeds.append(env)
        # The protocol fuzzer's value and mutation machinery, with this run's values.
        self.mutator = Fuzzer(seed, FuzzReport())
        names: set[str] = set()
        for env in self.seeds:
            _names(env, names)
        self.mutator.names = sorted(names)
        slot = next((e["payload"].get("slot") for e in self.seeds if e["type"] == "bid"), 0)
        self.mutator.ints = _interesting_ints(clock(), int(slot or 0))
        self.mutator.strs = [*_STRS, peer.member_id, peer.community_id or ""]
        self.seq = clock() * 1000

    # -- generation --
    def _seal(self, identity: Identity, env: dict[str, Any]) -> bytes | None:
        self.seq += 1
        try:
            return seal(
                identity,
                community=env["community"],
                seq=self.seq,
                ts_ms=self.clock(),
                type=env["type"],
                payload=env["payload"],
            ).to_wire()
        except (CanonicalError, TypeError, KeyError, ValueError):
            return None

    def generate(self) -> FuzzRequest:
        """One request of a random kind."""
        rng = self.rng
        kind = rng.choices(list(KINDS), list(KINDS.values()))[0]
        mutator = self.mutator
        mutator.now = self.clock()
        identity = self.identity
        seed = rng.choice(self.seeds)
        if kind in {"unsigned", "envelope", "bytes"}:
            # Signed afresh first (a sequence number the home has not seen): a changed copy
            # of it then meets the signature check, not the replay guard.
            fresh = decode(self._seal(identity, seed) or b"null")
            if isinstance(fresh, dict):
                seed = fresh
        env = dict(seed)  # ``seed``: the signed original, never changed
        if kind == "resigned":
            env["payload"] = mutator.mutate(env["payload"])
            data = self._seal(identity, env)
            if data is not None:
                return FuzzRequest(kind, data, {}, False)
            return FuzzRequest(kind, mutator.encode(env), {}, True, seed)
        if kind == "unsigned":
            env["payload"] = mutator.mutate(env["payload"])
            return FuzzRequest(kind, mutator.encode(env), {}, True, seed)
        if kind == "envelope":
            name = rng.choice(["v", "community", "sender", "seq", "ts", "type", "sig"])
            env[name] = (
                rng.choice([*_TYPES, "x", ""]) if name == "type" else mutator.mutate(env[name])
            )
            return FuzzRequest(kind, mutator.encode(env), {}, True, seed)
        if kind == "bytes":
            raw = bytearray(json.dumps(env, separators=(",", ":"), sort_keys=True).encode())
            op = rng.random()
            if op < 0.4:
                for _ in range(rng.randrange(1, 4)):
                    raw[rng.randrange(len(raw))] ^= rng.randrange(1, 256)
            elif op < 0.7:
                raw = raw[: rng.randrange(len(raw))]
            else:
                at = rng.randrange(len(raw))
                raw[at:at] = rng.choice([b"\xff", b'"', b"{", b",", b"\\ud800", b"\xc3"])
            return FuzzRequest(kind, bytes(raw), {}, True, seed)
        if kind == "garbage":
            if rng.random() < 0.5:
                return FuzzRequest(kind, rng.randbytes(rng.randrange(1, 300)), {}, True)
            return FuzzRequest(kind, mutator.encode(mutator.value()), {}, True)
        if kind == "stranger":
            data = self._seal(Identity(rng.randbytes(32)), env)
            return FuzzRequest(kind, data or b"{}", {}, True)
        if kind == "join":
            invitation = self.invitation
            if rng.random() < 0.5:  # an invitation of the same community with a made-up secret
                invitation = _other_secret(invitation, rng)
            try:
                _, outputs = Peer.joining(
                    Identity(rng.randbytes(32)),
                    invitation,
                    address=rng.choice(["http://127.0.0.1:9", "x" * 600, "s"]),
                    now_ms=self.clock(),
                )
            except ValueError:
                return FuzzRequest(kind, b"{}", {}, True)
            data = next(o.data for o in outputs if isinstance(o, Send))
            return FuzzRequest(kind, data, {}, True)
        if kind == "replay" and self.accepted:
            # A request the home accepted, sent again exactly (its headers too).
            again = rng.choice(self.accepted)
            return FuzzRequest(kind, again.body, again.headers, True)
        if kind == "encoding":
            data = self._seal(identity, env) or b"{}"
            op = rng.randrange(6)
            if op == 0:  # a gzip lie
                return FuzzRequest(kind, data, {"Content-Encoding": "gzip"}, True)
            if op == 1:
                return FuzzRequest(kind, data, {"Content-Encoding": "deflate"}, True)
            if op == 2:  # a true gzip body: handled like the plain one
                return FuzzRequest(kind, gzip.compress(data), {"Content-Encoding": "gzip"}, False)
            if op == 3:
                cut = zlib.compress(data)[: rng.randrange(2, 12)]
                return FuzzRequest(kind, cut, {"Content-Encoding": "deflate"}, True)
            if op == 4:
                return FuzzRequest(kind, data.replace(b'"', b"\xff", 1), {}, True)
            headers = {"Content-Type": rng.choice(["text/plain", "x/y; charset=bogus", ""])}
            return FuzzRequest(kind, data, headers, False)
        if kind == "oversized":
            return FuzzRequest(kind, b" " * (MAX_BODY_BYTES + rng.randrange(1, 4096)), {}, True)
        # raw (and replay before anything was accepted): sent through a plain socket
        return FuzzRequest("raw", self._seal(identity, env) or b"{}", {}, True)

    def check(self, request: FuzzRequest, status: int) -> None:
        """Judge the answer ``status`` to ``request`` (the forgery oracle)."""
        if (forgery := self.oracle.judge(request, status)) is not None:
            self.report.forgeries.append(forgery)
        if status == 202:
            self.accepted.append(request)

    # -- sending --
    async def send(self, session: ClientSession, url: str) -> None:
        request = self.generate()
        kind, body, headers = request.kind, request.body, request.headers
        report = self.report
        report.requests += 1
        report.kinds[kind] += 1
        if kind == "raw":
            status, text = await self.send_raw(url, body)
        elif kind == "oversized" and self.rng.random() < 0.5:
            status, text = await self._post(session, url, _chunks(body), headers)
        else:
            status, text = await self._post(session, url, body, headers)
        report.statuses[status] += 1
        code = _code(text)
        if code:
            report.codes[code] += 1
        if status >= 500:
            report.server_errors.append(f"{kind} -> {status} {text[:120]!r} for {body[:80]!r}")
        self.check(request, status)

    async def _post(
        self, session: ClientSession, url: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, str]:
        try:
            async with session.post(
                url + MESSAGE_PATH, data=body, headers=headers, compress=None
            ) as resp:
                return resp.status, (await resp.read()).decode(errors="replace")
        except (ClientError, TimeoutError, OSError):
            return 0, ""

    async def send_raw(self, url: str, data: bytes) -> tuple[int, str]:
        """A malformed request through a plain socket: a short length, broken chunks, or a
        body cut by a hang-up (no answer expected then)."""
        rng = self.rng
        target = URL(url)
        head = f"POST {MESSAGE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        op = rng.randrange(4)
        if op == 0:
            request = f"{head}Content-Length: {rng.randrange(len(data))}\r\n\r\n".encode() + data
        elif op == 1:
            request = f"{head}Transfer-Encoding: chunked\r\n\r\nzz\r\n".encode() + data
        elif op == 2:
            size = f"{len(data) + 10:x}"
            request = f"{head}Transfer-Encoding: chunked\r\n\r\n{size}\r\n".encode() + data
        else:
            request = f"{head}Content-Length: {len(data) + 500}\r\n\r\n".encode() + data
        try:
            reader, writer = await asyncio.open_connection(
                target.host, target.port, local_addr=(_source(rng), 0)
            )
        except OSError:
            return 0, ""
        try:
            writer.write(request)
            await writer.drain()
            if op >= 2:  # hang up in the middle of the body
                writer.close()
                return 0, ""
            answer = await asyncio.wait_for(reader.read(4096), 15)
        except (OSError, TimeoutError):
            return 0, ""
        finally:
            writer.close()
        text = answer.decode(errors="replace")
        parts = text.split(" ", 2)
        status = int(parts[1]) if text.startswith("HTTP/1.") and parts[1].isdigit() else 0
        return status, text.split("\r\n\r\n", 1)[-1]

    async def send_slow(self, url: str, delay_s: float) -> None:
        """A body that trickles in: its second half comes after ``delay_s``."""
        report = self.report
        report.requests += 1
        report.kinds["slow"] += 1
        data = self._seal(self.identity, dict(self.rng.choice(self.seeds))) or b"{}"
        target = URL(url)
        head = (
            f"POST {MESSAGE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        status, text = 0, ""
        try:
            reader, writer = await asyncio.open_connection(
                target.host, target.port, local_addr=(_source(self.rng), 0)
            )
            writer.write(head + data[: len(data) // 2])
            await writer.drain()
            await asyncio.sleep(delay_s)
            try:
                writer.write(data[len(data) // 2 :])
                await writer.drain()
            except OSError:
                pass
            answer = await asyncio.wait_for(reader.read(4096), 30)
            writer.close()
            decoded = answer.decode(errors="replace")
            parts = decoded.split(" ", 2)
            if decoded.startswith("HTTP/1.") and parts[1].isdigit():
                status, text = int(parts[1]), decoded.split("\r\n\r\n", 1)[-1]
        except (OSError, TimeoutError):
            pass
        report.statuses[status] += 1
        if code := _code(text):
            report.codes[code] += 1
        if status >= 500:
            report.server_errors.append(f"slow -> {status} {text[:120]!r}")
        self.check(FuzzRequest("slow", data, {}, False), status)


def _same(body: bytes, original: dict[str, Any], headers: dict[str, str]) -> bool:
    """Whether ``body`` still carries exactly the signed message ``original``."""
    message = message_of(body, headers)
    return message is not None and message == decode(canonical_bytes(original))


def _chunks(body: bytes) -> Any:
    async def gen() -> Any:
        for at in range(0, len(body), 256 * 1024):
            yield body[at : at + 256 * 1024]

    return gen()


def _code(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    if isinstance(data, dict):
        return str(data.get("error") or ("accepted" if data.get("ok") else ""))
    return ""


def _source(rng: random.Random) -> str:
    """A loopback source address: 127.0.0.1 one time in ten, else one of many others."""
    if rng.random() < 0.1:
        return "127.0.0.1"
    n = 2 + rng.randrange(SOURCE_ADDRESSES)
    return f"127.0.{n // 256}.{n % 256 or 1}"


def _other_secret(invitation: str, rng: random.Random) -> str:
    """The invitation with its secret replaced (same community, inviter and address)."""
    inv = Invitation.decode(invitation)
    return replace(inv, secret=rng.randbytes(32)).encode()


# Home Assistant's web server (aiohttp) logs every request it cannot parse as HTTP (a broken
# chunk size, bytes after the declared length, a compressed body that ends mid-stream) with a
# traceback at error level, for any URL and before or after any view; it answers them 400
# itself. Counted apart: not Peer Energy's code.
_PARSE_ERROR = "[aiohttp.server] Error handling request from"
_PARSE_EXCEPTIONS = (
    "aiohttp.http_exceptions.BadHttpMessage",
    "aiohttp.http_exceptions.LineTooLong",
    "aiohttp.http_exceptions.ContentEncodingError",
    "aiohttp.http_exceptions.TransferEncodingError",
    "aiohttp.http_exceptions.ContentLengthError",
)


def _log_findings(log: Path, offset: int) -> tuple[int, list[str], int]:
    """(tracebacks, error lines, HTTP parse errors) the home logged after ``offset``."""
    with log.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    records: list[list[str]] = []
    for line in text.splitlines():
        if line[:4].isdigit() and line[4:5] == "-":  # a new log record
            records.append([line])
        elif records:
            records[-1].append(line)
    tracebacks, errors, parse_errors = 0, [], 0
    for record in records:
        head = record[0]
        if not (" ERROR " in head or " CRITICAL " in head or "Traceback" in "".join(record)):
            continue
        if _PARSE_ERROR in head and any(line.startswith(_PARSE_EXCEPTIONS) for line in record[1:]):
            parse_errors += 1
            continue
        tracebacks += sum("Traceback (most recent call last)" in line for line in record)
        errors.append(head)
    return tracebacks, errors, parse_errors


def _info(home: RealHome) -> dict[str, Any]:
    info: dict[str, Any] = home.request("GET", "/api/peer_energy/v1/info", auth=False)
    return info


async def fuzz(
    home: RealHome,
    requests: int,
    *,
    seed: int = 0,
    slow: int = SLOW_REQUESTS,
    slow_delay_s: float = 11.0,
    progress: Callable[[HttpFuzzReport], None] | None = None,
) -> HttpFuzzReport:
    """Join the home's community as a member, then send ``requests`` generated requests
    (plus ``slow`` slow bodies alongside); return the report."""
    member = Member(home.url)
    await member.start()
    sessions: list[ClientSession] = []
    try:
        result = home.request(
            "POST", f"/api/services/{DOMAIN}/create_invitation?return_response", {}
        )
        invitation = str(result["service_response"]["invitation"])
        timeout = ClientTimeout(total=30)
        async with ClientSession(timeout=timeout) as plain:
            await member.join(plain, invitation)
        await asyncio.sleep(1.0)  # the welcome's follow-ups (records) arrive
        assert member.peer is not None
        fuzzer = HttpFuzzer(
            seed,
            member.peer,
            member.identity,
            invitation,
            [*member.seeds(), *member.received],
        )
        report = fuzzer.report
        report.members_before = int(_info(home)["members"])
        assert home.process is not None
        report.rss_before_kib = rss_kib(home.process.pid)
        offset = home.log_path.stat().st_size if home.log_path.exists() else 0
        sources = ["127.0.0.1"] + [
            f"127.0.{n // 256}.{n % 256 or 1}" for n in range(2, 2 + SOURCE_ADDRESSES)
        ]
        sessions = [
            ClientSession(connector=TCPConnector(local_addr=(addr, 0), limit=4), timeout=timeout)
            for addr in sources
        ]
        start = time.perf_counter()
        slow_tasks = [
            asyncio.create_task(fuzzer.send_slow(home.url, slow_delay_s)) for _ in range(slow)
        ]
        queue = iter(range(requests))
        lock = asyncio.Lock()

        async def worker() -> None:
            while True:
                async with lock:
                    if next(queue, None) is None:
                        return
                rng = fuzzer.rng
                session = sessions[0] if rng.random() < 0.1 else rng.choice(sessions[1:])
                await fuzzer.send(session, home.url)
                if progress is not None and report.requests % 1000 == 0:
                    progress(report)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        await asyncio.gather(*slow_tasks)
        report.seconds = time.perf_counter() - start
        await asyncio.sleep(2.0)  # anything the home does after the last answer
        report.rss_after_kib = rss_kib(home.process.pid)
        info = _info(home)
        report.members_after = int(info["members"])
        report.healthy_after = info.get("community") == (member.peer.community_id or "")
        report.tracebacks, report.error_lines, report.parse_errors = _log_findings(
            home.log_path, offset
        )
        return report
    finally:
        for session in sessions:
            await session.close()
        await member.stop()
