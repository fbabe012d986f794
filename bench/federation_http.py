"""Federation benchmark over real HTTP on loopback: N protocol peers, each behind its own
aiohttp web server on 127.0.0.1, through K slots.

Every peer is a ``Peer`` of ``core/federation/protocol/`` behind
``POST /api/peer_energy/v1/message``
on its own port (answers 202 when accepted, like ``http.py``); its ``Send``/``Broadcast``
outputs become one POST per address, concurrently, each with a timeout (``--timeout-s``, 30 s:
``HttpTransport`` uses 5 s per attempt, but here a POST also waits behind the whole
community's work; no retries: nothing is lost on loopback and a failure is counted). Timers
follow each peer's ``next_wakeup_ms`` on the real clock. The community is formed over HTTP:
the founder invites every other peer in turn and the joiner's ``join`` and the founder's
``welcome``/records travel as POSTs. Then, for every slot, every peer submits one small
random order before gate closure; the figure per slot is the time from gate closure until
every peer holds a ``SlotCleared`` with the same result hash.

All peers share one process and one event loop (2 shared cores on the bench machine), so
the whole community's CPU work (signing, checking, HTTP) is serialised: a real home only
does its own share. The sending side uses one shared aiohttp session with Home Assistant's
connection limits (4096 in all, 100 per host). The views' rate limiter is not modelled.

From ``RELAY_MIN_MEMBERS`` (12) members on, the protocol sends digests and attestations to
two relays per slot, which send every member one bundle of the quorum's attestations
(``docs/protocol.md``, "Relays"), so the messages after gate closure grow as O(N) in all, not
O(N^2); bids are still sent by each home to every other one before gate closure.

Community rules are short but legal: a sync window of ``--sync-ms`` (default 500 ms) and an
attestation window of ``--attest-ms`` (default max(1 s, 50 N ms): the window is only a
deadline, a slot is final as soon as a quorum is known, but the fallback at half the window
must not fire while one process is still verifying everybody's bundles), gate closure both
windows plus 1 s before the slot, and the shortest slot (10 s to 600 s) leaving time to
deliver every bid (N (N - 1) POSTs) before gate closure. The time to final cannot be
shorter than the sync window: attestations start when it ends. ``CPU s/slot`` is the
process CPU time per slot for the whole community (client and server side of every POST,
signatures, clearing): one home's share is about that divided by N.

Messages are counted per peer per slot in all (bids included) and after gate closure
(``after G``), with the busiest relay and the busiest other peer shown apart.

    .venv/bin/python bench/federation_http.py                       # N = 10, 50, 100; K = 3
    .venv/bin/python bench/federation_http.py --peers 10 --slots 2 --sync-ms 300
    .venv/bin/python bench/federation_http.py --window-ms 20000    # both windows (old runs)

Exits with status 1 if peers disagree on a result (or do not all reach one).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
import hashlib
from pathlib import Path
import random
import socket
import statistics
import sys
import time

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.federation.protocol import (
    RELAY_MIN_MEMBERS,
    RELAYS_PER_SLOT,
    Broadcast,
    Output,
    Peer,
    Rejected,
    Send,
    SlotCleared,
    SlotVoid,
    relay_order,
)
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side
from custom_components.peer_energy.core.trust.identity import Identity

MESSAGE_PATH = "/api/peer_energy/v1/message"
ADDRESS_HEADER = "X-Peer-Energy-Address"
HOST = "127.0.0.1"
MAX_IDLE_S = 60.0  # bound on one timer sleep (next_wakeup_ms is at most a slot away)


def now_ms() -> int:
    """The real clock in Unix milliseconds (what Home Assistant's peers use)."""
    return time.time_ns() // 1_000_000


@dataclass
class Stats:
    """Messages and bytes sent, and failures, across all nodes."""

    messages: int = 0
    bytes: int = 0
    failed: int = 0
    rejected: int = 0
    inflight: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    gate_ms: int = 1 << 62  # messages from this time on count as "after gate closure"
    after_types: dict[str, int] = field(default_factory=dict)
    after_senders: dict[str, int] = field(default_factory=dict)

    def reset_after(self, gate_ms: int) -> tuple[dict[str, int], dict[str, int]]:
        """Start counting a new slot's messages after ``gate_ms``; returns the old counts."""
        old = (self.after_types, self.after_senders)
        self.gate_ms, self.after_types, self.after_senders = gate_ms, {}, {}
        return old


def _kind(data: bytes) -> str:
    """A message's type: the last ``"type"`` key of canonical JSON is the envelope's own
    (keys are sorted and ``payload`` comes before ``type``)."""
    at = data.rfind(b'"type":"')
    if at < 0:
        return "?"
    start = at + 8
    return data[start : data.find(b'"', start)].decode(errors="replace")


@dataclass
class Node:
    """One peer behind its own web server."""

    index: int
    identity: Identity
    sock: socket.socket
    address: str
    peer: Peer | None = None
    runner: web.AppRunner | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cleared: dict[int, tuple[int, str]] = field(default_factory=dict)  # slot: (ms, result)
    void: set[int] = field(default_factory=set)


class Community:
    """N nodes in one process, talking HTTP to each other on loopback."""

    def __init__(self, session: ClientSession, stats: Stats, timeout_s: float) -> None:
        """Empty community; ``add_node`` adds peers."""
        self.session = session
        self.timeout = ClientTimeout(total=timeout_s)
        self.stats = stats
        self.nodes: list[Node] = []
        self.by_address: dict[str, Node] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.timers: list[asyncio.Task[None]] = []

    # --- transport ---

    async def _post(self, sender: str, to: str, data: bytes) -> None:
        self.stats.messages += 1
        self.stats.bytes += len(data)
        self.stats.inflight += 1
        headers = {"Content-Type": "application/json", ADDRESS_HEADER: sender}
        try:
            async with self.session.post(
                to + MESSAGE_PATH, data=data, headers=headers, timeout=self.timeout
            ) as response:
                await response.read()
                if response.status != 202:
                    self.stats.rejected += 1
                    self.stats.codes[response.status] = self.stats.codes.get(response.status, 0) + 1
        except (ClientError, TimeoutError, OSError):
            self.stats.failed += 1
        finally:
            self.stats.inflight -= 1

    def _spawn(self, sender: str, to: str, data: bytes) -> None:
        stats = self.stats
        if now_ms() >= stats.gate_ms:
            kind = _kind(data)
            stats.after_types[kind] = stats.after_types.get(kind, 0) + 1
            stats.after_senders[sender] = stats.after_senders.get(sender, 0) + 1
        task = asyncio.get_running_loop().create_task(self._post(sender, to, data))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def handle(self, node: Node, outputs: list[Output]) -> None:
        """Act on a peer's outputs: POSTs for messages, bookkeeping for events."""
        for out in outputs:
            if isinstance(out, Send):
                self._spawn(node.address, out.to, out.data)
            elif isinstance(out, Broadcast):
                for to in out.to:
                    self._spawn(node.address, to, out.data)
            elif isinstance(out, SlotCleared):
                node.cleared[out.final.slot] = (now_ms(), out.final.result_hash)
            elif isinstance(out, SlotVoid):
                node.void.add(out.slot)
        node.wake.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait (bounded) until no POST is in flight; True if it drained."""
        deadline = time.monotonic() + timeout_s
        while self.tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self.tasks), timeout=left)  # sends may spawn more sends
        return not self.tasks

    # --- nodes ---

    async def _message(self, request: web.Request) -> web.Response:
        node: Node = request.app["node"]
        body = await request.read()
        if node.peer is None:
            return web.json_response({"error": "no_community"}, status=503)
        outputs = node.peer.receive(body, request.headers.get(ADDRESS_HEADER, ""), now_ms())
        self.handle(node, outputs)
        if len(outputs) == 1 and isinstance(outputs[0], Rejected):
            self.stats.reasons[outputs[0].code] = self.stats.reasons.get(outputs[0].code, 0) + 1
            return web.json_response({"error": outputs[0].code}, status=422)
        return web.json_response({"ok": True}, status=202)

    async def add_node(self, index: int) -> Node:
        """Start a web server on a free loopback port (no peer yet)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        identity = Identity(hashlib.sha256(f"bench-http:{index}".encode()).digest())
        node = Node(index, identity, sock, f"http://{HOST}:{port}")
        app = web.Application(client_max_size=256 * 1024)
        app["node"] = node
        app.router.add_post(MESSAGE_PATH, self._message)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        node.runner = runner
        self.nodes.append(node)
        self.by_address[node.address] = node
        return node

    def start_timer(self, node: Node) -> None:
        """Tick the peer at its ``next_wakeup_ms`` (re-checked after every message)."""
        self.timers.append(asyncio.get_running_loop().create_task(self._timer(node)))

    async def _timer(self, node: Node) -> None:
        while True:
            peer = node.peer
            assert peer is not None
            delay = max(0.0, min((peer.next_wakeup_ms() - now_ms()) / 1000, MAX_IDLE_S))
            node.wake.clear()
            if delay > 0:
                try:
                    await asyncio.wait_for(node.wake.wait(), delay)
                    continue  # a message may have moved the next wakeup: recompute
                except TimeoutError:
                    pass
            self.handle(node, peer.tick(now_ms()))
            await asyncio.sleep(0)

    async def close(self) -> None:
        """Stop timers, pending sends and servers."""
        for task in [*self.timers, *self.tasks]:
            task.cancel()
        await asyncio.gather(*self.timers, *self.tasks, return_exceptions=True)
        for node in self.nodes:
            if node.runner is not None:
                await node.runner.cleanup()


def _margin_s(n: int) -> int:
    """Seconds before gate closure to submit: one process delivers ~1000 POSTs/s, at times
    half that (bids still in flight at gate closure make peers tick late and skip the slot)."""
    return 3 + n * n // 500


def _rules(n: int, sync_ms: int, attest_ms: int) -> CommunityRules:
    """Short windows (the rules allow any positive window ending before the slot starts)."""
    lead_s = max(2, -(-(sync_ms + attest_ms) // 1000) + 1)
    need = lead_s + _margin_s(n) + 3
    slot_s = next(s for s in (10, 15, 20, 30, 60, 120, 300, 600) if s >= need)
    return CommunityRules(
        market=MarketRules(slot_seconds=slot_s, distributor_fee=1),
        gate_closure_lead_s=lead_s,
        sync_window_ms=sync_ms,
        attest_window_ms=attest_ms,
        max_members=max(n, 2),
    )


def auto_attest_ms(n: int) -> int:
    """Default attestation window: its half (the fallback) must come after one process has
    verified a quorum's bundle at every peer (about 0.1 ms per signature, N / 2 per peer)."""
    return max(1_000, 50 * n // 100 * 100)


def _order(rng: random.Random, peer: Peer, index: int, slot: int) -> list[Order]:
    side = rng.choice((Side.BUY, Side.SELL))
    energy = rng.randint(100, 1_100)
    price = rng.randint(8, 32)
    return [Order.single(f"o{index}-{slot}", peer.member_id, side, slot, energy, price)]


def _joined(peer: Peer) -> bool:
    return peer.joined


def _settled(nodes: list[Node], slot: int) -> bool:
    return all(slot in nd.cleared for nd in nodes)


async def _wait(cond: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``cond()`` until true or ``timeout_s`` passes (bounded)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def form(com: Community, n: int, rules: CommunityRules) -> float:
    """Found the community and join n - 1 peers over HTTP; returns seconds taken."""
    t0 = time.perf_counter()
    founder = await com.add_node(0)
    founder.peer = Peer.found(
        founder.identity,
        name="Bench HTTP",
        rules=rules,
        address=founder.address,
        now_ms=now_ms(),
        nonce=b"bench-http-nonce",
    )
    com.start_timer(founder)
    for i in range(1, n):
        node = await com.add_node(i)
        inv = founder.peer.invite(hashlib.sha256(f"inv{i}".encode()).digest(), now_ms())
        peer, outs = Peer.joining(node.identity, inv, address=node.address, now_ms=now_ms())
        node.peer = peer
        com.handle(node, outs)
        if not await _wait(partial(_joined, peer), 10.0):
            raise SystemExit(f"peer {i} did not join within 10 s")
        com.start_timer(node)
    ok = await _wait(
        lambda: all(nd.peer is not None and len(nd.peer.roster()) == n for nd in com.nodes),
        30.0,
    )
    if not ok:
        raise SystemExit("not every peer sees the whole roster after 30 s")
    await com.drain(10.0)
    return time.perf_counter() - t0


@dataclass
class Result:
    """Figures for one community size."""

    peers: int
    sync_ms: int
    attest_ms: int
    join_s: float
    finals_ms: list[int]
    msgs_per_peer_slot: float
    after_per_peer_slot: float
    relay_max: int  # most messages one relay sent after gate closure in one slot
    other_max: int  # most messages one non-relay sent after gate closure in one slot
    after_types: dict[str, int]  # messages after gate closure by type, all slots
    late: int  # peers that first declared a slot void and cleared it late
    kib_per_peer_slot: float
    failed: int
    rejected: int
    cpu_s_per_slot: float


def _slot_relays(com: Community, slot: int) -> set[str]:
    """Addresses of the slot's relays (empty in a community too small for relays)."""
    peer = com.nodes[0].peer
    assert peer is not None
    roster = peer.roster(peer.rules.gate_closure_ms(slot))
    if len(roster) < RELAY_MIN_MEMBERS:
        return set()
    chosen = relay_order(peer.community_id, slot, roster)[:RELAYS_PER_SLOT]
    return {a for m in chosen if (a := peer.membership.address_of(m))}


async def run(
    n: int, k: int, sync_ms: int, attest_ms: int, seed: int, verbose: bool, timeout_s: float
) -> Result:
    """Form a community of ``n`` over HTTP and measure ``k`` slots."""
    rules = _rules(n, sync_ms, attest_ms or auto_attest_ms(n))
    rng = random.Random(seed)
    stats = Stats()
    connector = TCPConnector(limit=4096, limit_per_host=100)
    async with ClientSession(connector=connector) as session:
        com = Community(session, stats, timeout_s)
        try:
            join_s = await form(com, n, rules)
            finals: list[int] = []
            msgs0, bytes0 = stats.messages, stats.bytes
            cpu0 = time.process_time()
            step = rules.slot_seconds
            # Submissions need time to reach everyone before gate closure (`_margin_s`).
            lead = rules.gate_closure_lead_s + _margin_s(n)
            first = -(-(now_ms() // 1000 + lead) // step) * step
            after_total = relay_max = other_max = late = 0
            after_types: dict[str, int] = {}
            slots: list[int] = []

            def account() -> None:  # the previous slot's messages after its gate closure
                nonlocal after_total, relay_max, other_max
                types, senders = stats.reset_after(1 << 62)
                if not slots:
                    return
                relays = _slot_relays(com, slots[-1])
                after_total += sum(senders.values())
                for kind, count in types.items():
                    after_types[kind] = after_types.get(kind, 0) + count
                for address, count in senders.items():
                    if address in relays:
                        relay_max = max(relay_max, count)
                    else:
                        other_max = max(other_max, count)
                if verbose:
                    print(
                        f"  n={n} slot {slots[-1]}: after gate closure "
                        f"{dict(sorted(types.items()))}"
                    )

            for j in range(k):
                slot = first + j * step
                gate = rules.gate_closure_ms(slot)
                if gate - now_ms() < 1_000:
                    raise SystemExit(f"slot {slot}: too late to submit before gate closure")
                account()
                slots.append(slot)
                t_sub = time.perf_counter()
                for node in com.nodes:
                    assert node.peer is not None
                    orders = _order(rng, node.peer, node.index, slot)
                    com.handle(node, node.peer.submit_orders(slot, orders, now_ms()))
                stats.reset_after(gate)
                if not await com.drain(max(0.5, (gate - now_ms()) / 1000)):
                    print(f"  warning: slot {slot}: bids still in flight at gate closure")
                if verbose:
                    print(
                        f"  n={n} slot {slot}: bids delivered in "
                        f"{time.perf_counter() - t_sub:.2f} s, {stats.messages - msgs0} POSTs"
                    )
                # A peer that went void may still clear late (it fetches the attested book).
                end_s = (gate + 2 * (rules.sync_window_ms + rules.attest_window_ms) + 5_000) / 1000
                await _wait(
                    partial(_settled, com.nodes, slot),
                    max(0.0, end_s - time.time()),
                )
                hashes = {nd.cleared[slot][1] for nd in com.nodes if slot in nd.cleared}
                done = sum(slot in nd.cleared for nd in com.nodes)
                if done != n or len(hashes) != 1:
                    void = sum(slot in nd.void for nd in com.nodes)
                    print(
                        f"FAIL: {n} peers, slot {slot}: {done}/{n} final, {void} void, "
                        f"{len(hashes)} distinct results; POSTs failed {stats.failed}, "
                        f"refused {stats.rejected}"
                    )
                    sys.exit(1)
                finals.append(max(nd.cleared[slot][0] for nd in com.nodes) - gate)
                went_void = sum(slot in nd.void for nd in com.nodes)
                late += went_void
                if verbose:
                    print(
                        f"  n={n} slot {slot}: all final {finals[-1]} ms after gate closure "
                        f"({went_void} peers went void first and cleared late)"
                    )
            await com.drain(10.0)
            account()
            if verbose:
                print(f"  n={n}: failed {stats.failed}, refused {stats.codes} {stats.reasons}")
            msgs, size = stats.messages - msgs0, stats.bytes - bytes0
            cpu = time.process_time() - cpu0
        finally:
            await com.close()
    return Result(
        n,
        rules.sync_window_ms,
        rules.attest_window_ms,
        join_s,
        finals,
        msgs / n / k,
        after_total / n / k,
        relay_max,
        other_max,
        after_types,
        late,
        size / n / k / 1024,
        stats.failed,
        stats.rejected,
        cpu / k,
    )


async def main_async(
    peers: list[int],
    k: int,
    sync_ms: int,
    attest_ms: int,
    seed: int,
    verbose: bool,
    timeout_s: float,
) -> None:
    """Run every size and print the table."""
    print(
        f"{'peers':>5} {'join s':>6} {'median final ms':>15} {'max final ms':>12} "
        f"{'msgs/peer/slot':>14} {'after G':>7} {'growth':>6} {'relay max':>9} "
        f"{'other max':>9} {'KiB/peer/slot':>13} {'failed':>6} {'late':>4} "
        f"{'sync/attest ms':>14} {'CPU s/slot':>10}"
    )
    prev: Result | None = None
    results: list[Result] = []
    for n in peers:
        r = await run(n, k, sync_ms, attest_ms, seed, verbose, timeout_s)
        growth = "-"
        if prev is not None:
            ratio = r.msgs_per_peer_slot / prev.msgs_per_peer_slot
            growth = f"x{ratio:.2f}"  # linear in N: ratio close to n / prev.peers
        windows = f"{r.sync_ms}/{r.attest_ms}"
        print(
            f"{r.peers:>5} {r.join_s:>6.1f} {statistics.median(r.finals_ms):>15.0f} "
            f"{max(r.finals_ms):>12.0f} {r.msgs_per_peer_slot:>14.1f} "
            f"{r.after_per_peer_slot:>7.1f} {growth:>6} {r.relay_max:>9} {r.other_max:>9} "
            f"{r.kib_per_peer_slot:>13.1f} {r.failed + r.rejected:>6} {r.late:>4} "
            f"{windows:>14} {r.cpu_s_per_slot:>10.1f}",
            flush=True,
        )
        prev = r
        results.append(r)
    for r in results:
        print(f"  n={r.peers} after gate closure, all slots: {dict(sorted(r.after_types.items()))}")


def _sizes(text: str) -> list[int]:
    sizes = [int(x) for x in text.split(",") if x.strip()]
    if not sizes or min(sizes) < 2 or max(sizes) > 500:
        raise argparse.ArgumentTypeError("peers: comma-separated sizes between 2 and 500")
    return sizes


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", type=_sizes, default=[10, 50, 100], help="e.g. 10,50,100")
    parser.add_argument("--slots", type=int, default=3, choices=range(1, 21), metavar="K")
    parser.add_argument("--sync-ms", type=int, default=500, help="sync window (ms)")
    parser.add_argument(
        "--attest-ms",
        type=int,
        default=0,
        help="attestation window (default: per N, max(1000, 50*N) ms)",
    )
    parser.add_argument(
        "--window-ms", type=int, default=0, help="both windows at once (overrides the others)"
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=30.0,
        help="per POST (Home Assistant uses 5 s, but here a POST also queues behind the "
        "whole community's work in one process)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="per-slot details")
    args = parser.parse_args()
    sync_ms, attest_ms = args.sync_ms, args.attest_ms
    if args.window_ms:
        sync_ms = attest_ms = args.window_ms
    if sync_ms < 1 or attest_ms < 0:
        parser.error("windows must be positive")
    asyncio.run(
        main_async(
            args.peers, args.slots, sync_ms, attest_ms, args.seed, args.verbose, args.timeout_s
        )
    )


if __name__ == "__main__":
    main()
