"""Federation benchmark over a real Mosquitto: N homes, spread over several OS processes.

Every home is a fan-out ``Peer`` in a ``BrokerChannel`` (sealed frames, community key) on
its own ``MqttTransport`` (its own paho client and network thread), as a home would run
it. The homes are spread over ``--procs`` worker processes (default: one per core plus one,
so that a worker waiting on its sockets leaves a core to another) so that no single
process's CPU is the bottleneck; the broker is one Mosquitto on
127.0.0.1 and a free port, started by the script (``/usr/sbin/mosquitto``).

The community is formed first, in memory (the in-memory broker, real invitations, joins
and key grants), at the real time; every worker restores its homes from their snapshots
and key chains, connects them, and runs their clocks on the real clock (each home ticks
when its ``next_wakeup_ms`` is due); the slots are chosen once every worker reports its homes
connected. For each of K slots every home submits one small
random order before gate closure. Figures:

* **final ms**: per home and slot, from gate closure to the home's ``SlotCleared``;
  median and p95 over all homes and measured slots, and the median and p95 of each
  measured slot on its own (the first ``--warmup`` slots after the restore, 1 by default,
  are run but not counted: neither their times nor their traffic; the restored homes do
  not ask for the slots that ran before the bench started, which nobody ran);
* **pubs/home/slot**: publications per home per slot (bids, digests, attestations and
  whatever repair traffic there was), and its growth from one N to the next (O(1) in N:
  the broker fans out);
* whether every home holds the same result for every slot (exit status 1 if not);
* **cpu ms/home/slot**: the workers' process time (every thread: the homes, their paho
  clients, this harness) from the first measured slot to the end, per home and slot;
* **one home's own CPU**: per home and measured slot, the event loop thread's CPU time
  spent in that home's frames, clock and bid (median, p95 and worst over the homes): what
  a home pays on its own machine, apart from its MQTT client's network thread (with
  ``--share-verify`` the signature checks another home of the process made are missing);
* **load**: the load average (1 minute) before and after the run.

    .venv/bin/python bench/federation_mqtt.py                    # N = 10, 50, 100; K = 3
    .venv/bin/python bench/federation_mqtt.py --homes 10 --slots 2
    .venv/bin/python bench/federation_mqtt.py --homes 100 --slots 3 --warmup 2
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
import getpass
import hashlib
import multiprocessing as mp
import os
from pathlib import Path
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from paho.mqtt.client import Client, MQTTProtocolVersion
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.peer_energy.core.federation.brokernet import BrokerNet
from custom_components.peer_energy.core.federation.channel import (
    ALL,
    BrokerChannel,
    found_on_broker,
)
from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.federation.protocol import Peer, SlotCleared
from custom_components.peer_energy.core.federation.sealing import KeyChain
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side
from custom_components.peer_energy.core.trust import envelope
from custom_components.peer_energy.core.trust.canonical import decode
from custom_components.peer_energy.core.trust.identity import Identity
from custom_components.peer_energy.mqtt_transport import (
    BrokerConfig,
    BrokerState,
    BrokerStatus,
    MqttHome,
    MqttTransport,
    topics,
)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SLOT_CHOICES = (10, 12, 15, 16, 18, 20, 24, 30, 36, 40, 45, 48, 60, 90, 120)  # divide a day


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def identity(i: int) -> Identity:
    return Identity(hashlib.sha256(f"bench-mqtt:{i}".encode()).digest())


def make_rules(n: int, slot_s: int, sync_ms: int, attest_ms: int) -> CommunityRules:
    lead_s = (sync_ms + attest_ms) // 1000 + 2
    return CommunityRules(
        market=MarketRules(slot_seconds=slot_s, distributor_fee=1),
        gate_closure_lead_s=lead_s,
        sync_window_ms=sync_ms,
        attest_window_ms=attest_ms,
        max_members=max(n, 2),
    )


def random_order(rng: random.Random, order_id: str, member: str, slot: int) -> Order:
    """One home's bench order: buy or sell 100-499 Wh at 10-29 minor units per kWh."""
    side = Side.SELL if rng.random() < 0.5 else Side.BUY
    return Order.single(
        order_id, member, side, slot, 100 + rng.randrange(400), 10 + rng.randrange(20)
    )


def form(n: int, rules: CommunityRules) -> list[dict[str, Any]]:
    """The community, formed in memory at the real time: each home's snapshot and keys."""
    net = BrokerNet(start_ms=now_ms())
    founder = found_on_broker(
        identity(0), name="Bench street", rules=rules, now_ms=net.now, nonce=os.urandom(16)
    )
    joiners = (identity(i) for i in range(1, n))
    channels = net.form(founder, joiners, lambda _i: os.urandom(32), step_ms=20)
    net.run_until(net.now + 100)
    assert all(len(c.peer.roster()) == n for c in channels), "formation failed"
    return [{"peer": c.peer.snapshot(), "keys": c.keys.to_dict()} for c in channels]


@dataclass
class Job:
    host: str
    port: int
    homes: list[tuple[int, dict[str, Any]]]
    share_verify: bool = False
    shared_connection: bool = False


class SharedConnection:
    """One paho client for all the homes of a worker process (bench only).

    With ``--shared-connection`` the broker delivers each frame of the community topic once
    per worker instead of once per home, and the worker hands it to each of its homes (each
    home still opens, checks and handles it itself; a home drops its own publications as it
    does on its own connection). Publications go out through the same client, to the same
    topics and at the same QoS as ``MqttTransport``. What it saves is the per-home cost of
    the MQTT client (a network thread, parsing and acknowledging every frame, waking the
    event loop), which on separate machines each home pays on its own CPU.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, config: BrokerConfig, community: str):
        self.loop = loop
        self.community_topic, _ = topics(config.prefix, community, "0" * 32)
        self.config = config
        self.community = community
        self.homes: list[tuple[Any, Any]] = []  # (facade, on_frame(route, frame))
        self.inboxes: dict[str, tuple[str, Any]] = {}  # inbox topic -> (route, on_frame)
        self.ready = asyncio.Event()
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-shared-{os.getpid()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.on_connect = self._connected
        client.on_message = self._message
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        self.client = client

    def add(self, inbox: str, on_frame: Any) -> SharedFacade:
        facade = SharedFacade(self, inbox)
        self.homes.append((facade, on_frame))
        self.inboxes[topics(self.config.prefix, self.community, inbox)[1]] = (inbox, on_frame)
        return facade

    async def start(self) -> None:
        self.client.connect(self.config.host, self.config.port)
        self.client.loop_start()
        await asyncio.wait_for(self.ready.wait(), 30)

    async def stop(self) -> None:
        await self.loop.run_in_executor(None, self.client.disconnect)
        await self.loop.run_in_executor(None, self.client.loop_stop)

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        subs = [(self.community_topic, SubscribeOptions(qos=1))]
        subs += [(topic, SubscribeOptions(qos=1)) for topic in self.inboxes]
        client.subscribe(subs)
        self.loop.call_soon_threadsafe(self.ready.set)

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        self.loop.call_soon_threadsafe(self._dispatch, message.topic, bytes(message.payload))

    def _dispatch(self, topic: str, frame: bytes) -> None:
        if topic == self.community_topic:
            for _, on_frame in self.homes:
                on_frame(ALL, frame)
        elif topic in self.inboxes:
            route, on_frame = self.inboxes[topic]
            on_frame(route, frame)


class SharedFacade:
    """What ``MqttHome`` and the bench use of a transport, on a ``SharedConnection``."""

    def __init__(self, shared: SharedConnection, inbox: str) -> None:
        self.shared = shared
        self.inbox_topic = topics(shared.config.prefix, shared.community, inbox)[1]
        self.base = self.inbox_topic.rsplit("/in/", 1)[0]
        self.published = 0
        self.state = BrokerState(BrokerStatus.CONNECTED)

    def publish(self, route: str, frame: bytes) -> bool:
        topic = self.shared.community_topic if route == ALL else f"{self.base}/in/{route}"
        self.shared.client.publish(topic, frame, qos=1, retain=False)
        self.published += 1
        return True

    async def async_start(self) -> None:
        return None

    async def async_stop(self) -> None:
        return None


def share_verification() -> None:
    """Let the homes of this worker process share Ed25519 results (bench only).

    Each home still decrypts, decodes and checks every frame and runs its own protocol; only
    the signature check of envelope bytes that another home of the same process already
    verified with the same key is looked up instead of computed again. On separate machines
    every home checks each signature once on its own CPU; here the 2 cores would otherwise
    check each one once per simulated home.
    """
    verified: set[tuple[str, bytes, str]] = set()
    check = envelope.verify_hex

    def shared(public_key: str, purpose: Any, body: bytes, sig: str, *, cache: bool = True) -> bool:
        key = (public_key, body, sig)
        if key in verified:
            return True
        good = check(public_key, purpose, body, sig, cache=cache)
        if good and cache:
            if len(verified) > 50_000:
                verified.clear()
            verified.add(key)
        return good

    envelope.verify_hex = shared  # type: ignore[assignment]


async def _worker(job: Job, queue: Any, start: Any) -> dict[str, Any]:
    if job.share_verify:
        share_verification()
    loop = asyncio.get_running_loop()
    config = BrokerConfig.from_url(f"mqtt://{job.host}:{job.port}")
    homes: list[MqttHome] = []
    cleared: list[tuple[int, int, int, str]] = []  # (home, slot, at ms, result hash)
    kinds: dict[str, int] = {}  # message type -> publications in the measured slots
    counting = [False]

    # When each home's clock is due next: recomputed only after the home handled something
    # (asking every peer every 5 ms would cost this process more than the homes' own work).
    due: dict[int, int] = {}
    dirty: set[int] = set()

    # Each home's own CPU on the event loop thread (its frames, its clock, its bids) in the
    # measured slots: what one home pays on its own machine (its MQTT client's network
    # thread, the harness and, with --share-verify, the signature checks another home of the
    # process already made are not in it).
    home_cpu: dict[int, float] = {}

    def timed(index: int, work: Any, *args: Any) -> Any:
        if not counting[0]:
            return work(*args)
        before = time.thread_time()
        try:
            return work(*args)
        finally:
            home_cpu[index] = home_cpu.get(index, 0.0) + time.thread_time() - before

    def on_frame(home: MqttHome, index: int, route: str, frame: bytes) -> None:
        timed(index, home.frame, route, frame)
        dirty.add(index)

    shared: SharedConnection | None = None
    for index, data in job.homes:
        ident = identity(index)
        peer = Peer.restore(ident, data["peer"], now_ms())
        # The slots between the formation and now were run by nobody: a restored home would
        # ask for them (catch-up with backoff) during the measured slots. Not a steady state.
        peer.tick(now_ms())
        peer._round.missing.clear()
        peer._round.catchup.clear()
        channel = BrokerChannel(peer, keys=KeyChain.from_dict(ident, data["keys"]))
        box: list[MqttHome] = []

        def on_events(events: list[Any], i: int = index) -> None:
            t = now_ms()
            for e in events:
                if isinstance(e, SlotCleared):
                    cleared.append((i, e.final.slot, t, e.final.result_hash))

        deliver = lambda route, frame, b=box, i=index: on_frame(b[0], i, route, frame)  # noqa: E731
        transport: Any
        if job.shared_connection:
            if shared is None:
                shared = SharedConnection(loop, config, peer.community_id)
            transport = shared.add(channel.inbox, deliver)
        else:
            transport = MqttTransport(
                loop,
                config,
                community=peer.community_id,
                inbox=channel.inbox,
                client_id=f"bench-{index}",
                on_frame=deliver,
                on_status=lambda s: None,
            )
        home = MqttHome(channel, transport, clock_ms=now_ms, on_events=on_events)
        outgoing = channel.outgoing

        def counted(outputs: Any, t: int, out: Any = outgoing) -> Any:
            pubs, events = out(outputs, t)
            if counting[0]:
                for o in outputs:
                    data = getattr(o, "data", None)
                    if data is not None:
                        kind = decode(data).get("type", "?")  # type: ignore[union-attr]
                        kinds[str(kind)] = kinds.get(str(kind), 0) + 1
            return pubs, events

        channel.outgoing = counted  # type: ignore[method-assign]
        box.append(home)
        homes.append(home)
        await transport.async_start()
    if shared is not None:
        await shared.start()
    deadline = time.monotonic() + 30
    while any(h.transport.state.status is not BrokerStatus.CONNECTED for h in homes):
        if time.monotonic() > deadline:
            raise RuntimeError("homes did not connect")
        await asyncio.sleep(0.05)

    rules = homes[0].channel.peer.rules
    rng = random.Random(os.getpid())
    submitted: set[tuple[int, int]] = set()
    queue.put("ready")  # the slots come once every worker's homes are connected
    slots: list[int] = []
    end = counted_from = 2**62
    published_at_start: dict[int, int] = {}
    cpu_from = [float("inf")]  # process time (every thread) when counting started
    while now_ms() < end + 3_000:
        t = now_ms()
        if not slots and not start.empty():
            slots, warmup = start.get()
            g_last = rules.gate_closure_ms(slots[-1])
            end = g_last + rules.sync_window_ms + rules.attest_window_ms
            # From just before the first measured slot's bids (after the warm-up slots).
            counted_from = rules.gate_closure_ms(slots[warmup]) - 3_500
        for home, (index, _) in zip(homes, job.homes, strict=True):
            peer = home.channel.peer
            if t >= counted_from and index not in published_at_start:
                published_at_start[index] = home.transport.published
                counting[0] = True
                cpu_from[0] = min(cpu_from[0], time.process_time())
            for slot in slots:
                g = rules.gate_closure_ms(slot)
                if (index, slot) not in submitted and g - 3_000 <= t < g - 500:
                    order = random_order(rng, f"o{index}", peer.member_id, slot)
                    timed(index, _submit, home, slot, order, t)
                    submitted.add((index, slot))
                    dirty.add(index)
            if index in dirty or index not in due:
                dirty.discard(index)
                due[index] = peer.next_wakeup_ms()
            if due[index] <= t:
                timed(index, home.tick)
                due[index] = peer.next_wakeup_ms()
        await asyncio.sleep(0.005)
    cpu = time.process_time() - cpu_from[0]
    published = {
        index: h.transport.published - published_at_start.get(index, 0)
        for h, (index, _) in zip(homes, job.homes, strict=True)
    }
    for h in homes:
        await h.transport.async_stop()
    if shared is not None:
        await shared.stop()
    return {
        "cleared": cleared,
        "published": published,
        "kinds": kinds,
        "cpu": cpu,
        "home_cpu": home_cpu,
    }


def worker(job: Job, queue: Any, start: Any) -> None:
    queue.put(asyncio.run(_worker(job, queue, start)))


def start_mosquitto(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = tmp / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"user {getpass.getuser()}\nmax_queued_messages 100000\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.025)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def run(
    n: int,
    k: int,
    warmup: int,
    procs: int,
    slot_s: int,
    sync_ms: int,
    attest_ms: int,
    share: bool,
    connection: bool,
) -> dict[str, Any]:
    rules = make_rules(n, slot_s, sync_ms, attest_ms)
    data = form(n, rules)
    with tempfile.TemporaryDirectory() as tmp:
        broker, port = start_mosquitto(Path(tmp))
        try:
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            starts = [ctx.Queue() for _ in range(procs)]
            jobs = [
                Job(
                    "127.0.0.1", port, [(i, data[i]) for i in range(p, n, procs)], share, connection
                )
                for p in range(procs)
            ]
            workers = [
                ctx.Process(target=worker, args=(job, queue, start))
                for job, start in zip(jobs, starts, strict=True)
            ]
            for w in workers:
                w.start()
            for _ in workers:  # every home restored and connected
                if queue.get(timeout=600) != "ready":
                    raise RuntimeError("a worker failed to start")
            begin = now_ms() + 1_000
            first = -(-(begin // 1000 + rules.gate_closure_lead_s) // slot_s) * slot_s
            slots = [first + i * slot_s for i in range(warmup + k)]  # warm-up slots first
            for start in starts:
                start.put((slots, warmup))
            results = [queue.get(timeout=600) for _ in workers]
            for w in workers:
                w.join(30)
        finally:
            broker.terminate()
            broker.wait(5)
    measured = slots[warmup:]
    finals: list[int] = []
    per_slot: list[tuple[float, int]] = []  # (median, p95) of each measured slot
    agree = True
    for slot in measured:
        g = rules.gate_closure_ms(slot)
        per_home = {
            home: (at, result) for r in results for home, s, at, result in r["cleared"] if s == slot
        }
        if len(per_home) != n or len({res for _, res in per_home.values()}) != 1:
            agree = False
            print(f"      slot {slot}: {len(per_home)} of {n} homes final", flush=True)
        times = sorted(at - g for at, _ in per_home.values())
        finals.extend(times)
        if times:
            per_slot.append((statistics.median(times), _p95(times)))
    published = [count for r in results for count in r["published"].values()]
    kinds: dict[str, int] = {}
    for r in results:
        for kind, count in r["kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    finals.sort()
    home_cpu = sorted(ms * 1000 / len(measured) for r in results for ms in r["home_cpu"].values())
    return {
        "per_slot": per_slot,
        "home_cpu": (
            (statistics.median(home_cpu), _p95(home_cpu), home_cpu[-1]) if home_cpu else None
        ),
        "n": n,
        "median": statistics.median(finals) if finals else float("nan"),
        "p95": _p95(finals) if finals else float("nan"),
        "pubs": sum(published) / n / len(measured),
        "agree": agree,
        "finals": len(finals),
        "expected": n * len(measured),
        "kinds": {k: round(v / n / len(measured), 2) for k, v in sorted(kinds.items())},
        "cpu_ms": sum(r["cpu"] for r in results) * 1000 / n / len(measured),
    }


def _submit(home: MqttHome, slot: int, order: Order, t: int) -> None:
    home.handle(home.channel.peer.submit_orders(slot, [order], t), t)


def _p95(values: list[int] | list[float]) -> Any:
    """The 95th percentile of sorted ``values`` (nearest rank)."""
    return values[max(0, -(-95 * len(values) // 100) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--homes", default="10,50,100")
    parser.add_argument("--slots", type=int, default=3, help="measured slots")
    parser.add_argument(
        "--warmup", type=int, default=1, help="slots run first and not counted (default 1)"
    )
    parser.add_argument("--procs", type=int, default=(os.cpu_count() or 2) + 1)
    parser.add_argument("--slot-s", type=int, default=0, help="default: about max(10, N / 3)")
    parser.add_argument("--sync-ms", type=int, default=500)
    parser.add_argument("--attest-ms", type=int, default=0, help="default: max(2000, 50 N)")
    parser.add_argument(
        "--share-verify",
        action="store_true",
        help="homes of one worker share signature checks (see share_verification)",
    )
    parser.add_argument(
        "--shared-connection",
        action="store_true",
        help="one MQTT client per worker for all its homes (see SharedConnection)",
    )
    args = parser.parse_args()
    print(
        "homes procs median final ms p95 final ms pubs/home/slot growth finals agree "
        "cpu ms/home/slot  load"
    )
    previous: float | None = None
    ok = True
    for n in (int(x) for x in args.homes.split(",")):
        slot_s = args.slot_s or next(s for s in SLOT_CHOICES if s >= max(10, n // 3))
        attest_ms = args.attest_ms or max(2000, 50 * n)
        load = os.getloadavg()[0]
        r = run(
            n,
            args.slots,
            args.warmup,
            args.procs,
            slot_s,
            args.sync_ms,
            attest_ms,
            args.share_verify,
            args.shared_connection,
        )
        growth = "-" if previous is None else f"x{r['pubs'] / previous:.2f}"
        previous = r["pubs"]
        ok = ok and r["agree"]
        print(
            f"{n:5d} {args.procs:5d} {r['median']:14.0f} {r['p95']:11.0f} "
            f"{r['pubs']:14.1f} {growth:>6} {r['finals']:>3}/{r['expected']:<3} "
            f"{'yes' if r['agree'] else 'NO':>5} {r['cpu_ms']:16.1f}  "
            f"{load:.1f}-{os.getloadavg()[0]:.1f}",
            flush=True,
        )
        print(f"      per home per slot by type: {r['kinds']}", flush=True)
        slots = ", ".join(f"{m:.0f}/{p}" for m, p in r["per_slot"])
        print(f"      each measured slot, median/p95 final ms: {slots}", flush=True)
        if r["home_cpu"] is not None:
            med, p95, worst = r["home_cpu"]
            print(
                f"      one home's own CPU per slot (event loop thread): median {med:.1f} ms, "
                f"p95 {p95:.1f} ms, worst {worst:.1f} ms",
                flush=True,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
