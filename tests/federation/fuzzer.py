"""Structure-aware fuzzing of the federation protocol, for the test suite (a few thousand
messages) and ``bench/fuzz_protocol.py`` (100,000 and more).

Each round builds a community of four over the in-memory network and records every message
on the wire while it runs one slot to the end: joins, welcomes, membership records, bids,
digests, attestations, relay bundles, catch-up, trade terms and signatures, delivery reports,
an address change, an enrolment, a leave. Those valid messages are the seeds. A target peer
then receives generated messages:

* ``resigned``: the payload mutated (values replaced by other types, extreme integers, long
  or odd strings, keys removed or added, lists cut or grown) and signed again by the
  sender's own key: a member sending nonsense, which must be refused or handled, never
  crash anything;
* ``inner``: a record inside ``records``/``slot_data``/``welcome`` mutated without its own
  signature, the outer message signed again: the record must be refused;
* ``envelope``: one envelope field changed (version, community, sender, seq, ts, type, sig),
  signed again when the sender is one of ours;
* ``unsigned``: the payload mutated, the signature kept; ``bytes``: bytes flipped, cut,
  inserted or duplicated; ``garbage``: random bytes or random JSON: each must be refused
  unless its content is still exactly the signed one;
* ``join``: a join signed by a fresh key (a stranger), for a real or an invented invitation.

After the messages the target's clock runs through the next slots (clearing what it
accepted). The oracle: no exception anywhere (a crash), no message whose signed content
changed is accepted, and every record the target holds at the end verifies (no accepted
forgery). A long-lived peer receives all the strangers' traffic of the whole run: its
replay guard and its other per-key state must not grow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
import gc
import json
import os
import random
import sys
import traceback
from typing import Any

from custom_components.peer_energy.core.federation.protocol import Peer, Rejected, Send
from custom_components.peer_energy.core.trust.canonical import (
    CanonicalError,
    canonical_bytes,
    decode,
)
from custom_components.peer_energy.core.trust.credit import verify_trade
from custom_components.peer_energy.core.trust.envelope import Envelope, seal
from custom_components.peer_energy.core.trust.identity import (
    Identity,
    Purpose,
    enrol_asset,
    verify_hex,
)

from .helpers import build, make_identity, next_slot, secret, submit_all

KINDS = ("resigned", "bid", "inner", "envelope", "unsigned", "bytes", "garbage", "join")
WEIGHTS = (30, 15, 10, 10, 10, 10, 5, 10)
INNER_TYPES = ("records", "slot_data", "welcome")
FUTURE_SLOTS = 40  # fuzzed bids go to one of the next slots (one bid per member is a book)


def _interesting_ints(now_ms: int, slot: int) -> list[int]:
    return [
        0,
        1,
        -1,
        2,
        59,
        60,
        255,
        2**31 - 1,
        2**31,
        2**32,
        2**53 + 1,
        2**62,
        2**63 - 1,
        -(2**63),
        10**15,
        now_ms,
        now_ms - 30_000,
        now_ms + 30_001,
        slot,
        slot + 60,
        slot + 120,
        slot - 60,
        slot + 1,
        10**9,
    ]


_STRS = [
    "",
    "a",
    "0" * 64,
    "f" * 64,
    "F" * 64,
    "0" * 128,
    "é",
    "\u2028",
    "\x00",
    "x" * 1000,
    "buy",
    "sell",
    "seller",
    "buyer",
    "pay_as_bid",
    "essential",
    "p1",
    "http://127.0.0.1:1",
    "o1",
]


@dataclass
class FuzzReport:
    """What a fuzz run found."""

    messages: int = 0
    rounds: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    accepted: int = 0  # no refusal at all
    accepted_types: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    crash_traces: list[str] = field(default_factory=list)
    forgeries: list[str] = field(default_factory=list)
    stranger_guard_entries: int = 0  # non-members in the strangers' target's replay guard
    rss_kib: list[int] = field(default_factory=list)  # resident memory after each round
    blocks: list[int] = field(default_factory=list)  # Python's allocated blocks, likewise

    def merge_trace(self, trace: str) -> None:
        """Keep the first few distinct crash traces."""
        self.crashes += 1
        if len(self.crash_traces) < 10 and trace not in self.crash_traces:
            self.crash_traces.append(trace)


class Scenario:
    """One community of four with a slot run to the end, every wire message recorded."""

    def __init__(self, seed: int) -> None:
        """Build it (deterministic for ``seed``)."""
        self.wire: list[tuple[str, str, bytes]] = []

        def tap(sender: str, to: str, data: bytes) -> None:
            self.wire.append((sender, to, data))

        self.net, self.peers = build(4, seed=seed, tap=tap)
        net, peers = self.net, self.peers
        self.identities: dict[str, Identity] = {
            p.member_id: make_identity(f"p{i}") for i, p in enumerate(peers)
        }
        self.asset = make_identity(f"asset-{seed}")
        self.identities[self.asset.public_key] = self.asset
        p0, p1, p2, p3 = peers
        enrolment = enrol_asset(
            p1.member_id, make_identity("p1"), self.asset, "bat", "battery", net.now
        )
        net.apply("p1", p1.enrol(enrolment, net.now))
        net.apply("p2", p2.set_address("p2", net.now))
        net.run_until(net.now + 50)
        self.slot = slot = next_slot(net, peers)
        submit_all(net, peers, slot)
        rules = p0.rules
        net.run_until(rules.gate_closure_ms(slot) + rules.sync_window_ms + 10)
        net.apply("p3", p3.catch_up(net.now))
        net.run_until(rules.gate_closure_ms(slot) + rules.sync_window_ms + rules.attest_window_ms)
        for k, peer in enumerate(peers):
            if slot in peer.finals:
                net.apply(peer.address, peer.settle(slot, prev=f"h{k}", balance=0, now_ms=net.now))
        net.inject("p0", p1._seal("fetch", {"slot": slot, "book": ""}, net.now), sender="p1")
        net.run_until((slot + rules.slot_seconds) * 1000 + 10)
        for peer in peers:
            net.apply(
                peer.address,
                peer.report_delivery(slot, exported_wh=50, imported_wh=50, now_ms=net.now),
            )
        net.run_until(net.now + 100)
        self.invitation = p0.invite(secret(f"fuzz-{seed}"), net.now)
        # A home still joining (a target too), and the welcome the sponsor answers it with.
        ticket = p0.invite(secret(f"fuzz-joiner-{seed}"), net.now)
        self.joiner, join = Peer.joining(
            make_identity(f"joiner-{seed}"), ticket, address="j", now_ms=net.now
        )
        self.wire.extend(("j", "p0", out.data) for out in join if isinstance(out, Send))
        answer = p0.receive(self.wire[-1][2], "j", net.now)
        self.wire.extend(("p0", "j", out.data) for out in answer if isinstance(out, Send))
        self.now = net.now
        self.keys: list[str] = sorted(self.identities)

    def leave_message(self) -> bytes:
        """A valid ``leave`` of p3 (not sent in the scenario: it would shrink the roster)."""
        p3 = self.peers[3]
        return p3._seal("leave", {"member": p3.member_id}, self.now)


class Fuzzer:
    """Generates messages from a scenario's seeds and checks the oracle."""

    def __init__(self, seed: int, report: FuzzReport, strangers: Peer | None = None) -> None:
        """``strangers``: a long-lived peer that also gets every stranger's message."""
        self.rng = random.Random(seed)
        self.report = report
        self.strangers = strangers
        self.seq = 10**13

    # -- values --
    def value(self, depth: int = 0) -> Any:
        """A random JSON value (sometimes not canonical: floats, huge integers)."""
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return rng.choice(self.ints)
        if r < 0.55:
            return rng.choice(self.strs)
        if r < 0.62:
            return rng.choice([None, True, False])
        if r < 0.65:
            return rng.choice([1.5, 2**64, -(2**64), 10**30])
        if r < 0.82 and depth < 4:
            return [self.value(depth + 1) for _ in range(rng.randrange(4))]
        if depth < 4:
            return {rng.choice(self.names): self.value(depth + 1) for _ in range(rng.randrange(4))}
        return rng.choice(self.ints)

    def mutate(self, value: Any, depth: int = 0) -> Any:
        """One structure-aware change somewhere inside ``value``."""
        rng = self.rng
        if isinstance(value, dict) and value and rng.random() < 0.8:
            key = rng.choice(sorted(value))
            out = dict(value)
            op = rng.random()
            if op < 0.6:
                out[key] = self.mutate(value[key], depth + 1)
            elif op < 0.75:
                del out[key]
            else:
                out[rng.choice(self.names)] = self.value()
            return out
        if isinstance(value, list) and value and rng.random() < 0.8:
            out_l = list(value)
            i = rng.randrange(len(out_l))
            op = rng.random()
            if op < 0.55:
                out_l[i] = self.mutate(out_l[i], depth + 1)
            elif op < 0.7:
                del out_l[i]
            elif op < 0.85:
                out_l.insert(i, out_l[i])
            elif op < 0.93:
                out_l = out_l[: rng.randrange(len(out_l) + 1)]
            else:
                out_l.append(self.value())
            return out_l
        if type(value) is int and rng.random() < 0.5:
            return value + rng.choice([-1, 1, -60, 60, 1000, -(10**6)])
        return self.value(depth)

    # -- encoding --
    def encode(self, obj: Any) -> bytes:
        """Canonical bytes when possible, else plain JSON (floats, huge integers...)."""
        try:
            return canonical_bytes(obj)
        except CanonicalError:
            return json.dumps(
                obj, sort_keys=True, separators=(",", ":"), ensure_ascii=self.rng.random() < 0.5
            ).encode("utf-8", "surrogatepass")

    def resign(self, env: dict[str, Any], identity: Identity) -> bytes | None:
        """``env`` signed by ``identity`` (fresh seq and ts unless asked to keep them)."""
        self.seq += 1
        try:
            return seal(
                identity,
                community=env["community"],
                seq=env["seq"] if env.get("_keep") else self.seq,
                ts_ms=env["ts"] if env.get("_keep") else self.now,
                type=env["type"],
                payload=env["payload"],
                version=env["v"],
            ).to_wire()
        except (CanonicalError, TypeError, KeyError, ValueError):
            return None

    # -- one round --
    def round(self, scenario: Scenario, target_index: int, messages: int) -> None:
        """``messages`` generated messages to one peer of ``scenario``, then its clock runs."""
        self.now = scenario.now
        self.ints = _interesting_ints(scenario.now, scenario.slot)
        self.strs = [*_STRS, *scenario.keys, scenario.invitation.invitation_id]
        seeds = [(s, t, d) for s, t, d in scenario.wire]
        seeds.append(("p3", "p0", scenario.leave_message()))
        names: set[str] = set()
        decoded: list[dict[str, Any]] = []
        for _, _, data in seeds:
            env = decode(data)
            assert isinstance(env, dict)
            decoded.append(env)
            _names(env, names)
        self.names = sorted(names)
        bundles = [env for env in decoded if env["type"] in INNER_TYPES] or decoded
        bids = [env for env in decoded if env["type"] == "bid"] or decoded
        welcomes = [env for env in decoded if env["type"] == "welcome"]
        target = scenario.peers[target_index] if target_index < 4 else scenario.joiner
        for _ in range(messages):
            kind = self.rng.choices(KINDS, WEIGHTS)[0]
            pool = bundles if kind == "inner" else bids if kind == "bid" else decoded
            if target is scenario.joiner and kind in {"resigned", "inner"}:
                pool = welcomes  # what a joining home acts on
            seed = self.rng.choice(pool)
            # ``generate`` changes its copy; the oracle compares with the signed original.
            data, must_refuse, stranger = self.generate(kind, dict(seed), scenario)
            if data is None:
                continue
            self.report.kinds[kind] += 1
            self.report.messages += 1
            self.deliver(target, data, must_refuse, kind, seed)
            if stranger and self.strangers is not None:
                self.deliver(self.strangers, data, True, kind, seed)
        self.run_clock(target, scenario)
        self.check_state(target, scenario)
        self.report.rounds += 1

    def generate(
        self, kind: str, env: dict[str, Any], scenario: Scenario
    ) -> tuple[bytes | None, bool, bool]:
        """(bytes, whether they must be refused, whether a stranger could send them)."""
        rng = self.rng
        signer = scenario.identities.get(env["sender"])
        if kind == "resigned":
            env["payload"] = self.mutate(env["payload"])
            for _ in range(rng.randrange(3)):
                env["payload"] = self.mutate(env["payload"])
            if signer is None:
                return None, False, False
            data = self.resign(env, signer)
            return (data if data is not None else self.encode(env)), data is None, False
        if kind == "bid":  # a bid for a slot still open, its orders changed a little
            if env["type"] != "bid" or signer is None:
                return None, False, False
            slot = (
                scenario.slot
                + rng.randrange(2, FUTURE_SLOTS) * scenario.peers[0].rules.slot_seconds
            )
            orders = [
                dict(o, slot_start=slot) if isinstance(o, dict) else o
                for o in env["payload"]["orders"]
            ]
            if rng.random() < 0.4:  # an extreme amount, where sums and products overflow
                order = orders[0]
                if isinstance(order, dict):
                    big = rng.choice([2**62, 2**63 - 1, 10**15, -(2**62), 10**9])
                    price = rng.choice([order.get("price", 1), 1, big, -big])
                    orders[0] = {k: v for k, v in order.items() if k != "steps"} | {
                        "side": rng.choice(["sell", order.get("side")]),
                        "price": price,
                        "energy_wh": abs(big),
                    }
            else:
                for _ in range(rng.randrange(1, 3)):
                    orders = self.mutate(orders)
            env["payload"] = {"slot": slot, "orders": orders}
            data = self.resign(env, signer)
            return (data if data is not None else self.encode(env)), data is None, False
        if kind == "inner":
            if env["type"] not in INNER_TYPES or signer is None:
                return None, False, False
            key = "bids" if env["type"] == "slot_data" else "records"
            items = list(env["payload"].get(key) or [])
            if not items:
                return None, False, False
            i = rng.randrange(len(items))
            inner = dict(items[i])
            inner["payload"] = self.mutate(inner["payload"])
            if rng.random() < 0.3:  # also signed again by its own sender
                inner_signer = scenario.identities.get(inner["sender"])
                if inner_signer is not None:
                    resigned = self.resign(inner, inner_signer)
                    if resigned is not None:
                        inner = json.loads(resigned)
            items[i] = inner
            env["payload"] = {**env["payload"], key: items}
            data = self.resign(env, signer)
            return (data if data is not None else self.encode(env)), data is None, False
        if kind == "envelope":
            name = rng.choice(["v", "community", "sender", "seq", "ts", "type", "sig"])
            if name == "sender":
                env["sender"] = rng.choice([*scenario.keys, "0" * 64, rng.randbytes(32).hex()])
            elif name == "type":
                env["type"] = rng.choice([*_TYPES, "x", ""])
            else:
                env[name] = self.mutate(env[name])
            key = env.get("sender")
            who = scenario.identities.get(key) if isinstance(key, str) else None
            if name != "sig" and who is not None and rng.random() < 0.7:
                env["_keep"] = name in {"seq", "ts"}
                data = self.resign(env, who)
                if data is not None:
                    return data, False, False
                env.pop("_keep", None)
            env.pop("_keep", None)
            return self.encode(env), True, True
        if kind == "unsigned":
            env["payload"] = self.mutate(env["payload"])
            return self.encode(env), True, True
        if kind == "bytes":
            raw = bytearray(canonical_bytes(env))
            op = rng.random()
            if op < 0.4:
                for _ in range(rng.randrange(1, 4)):
                    raw[rng.randrange(len(raw))] ^= rng.randrange(1, 256)
            elif op < 0.6:
                raw = raw[: rng.randrange(len(raw))]
            elif op < 0.8:
                at = rng.randrange(len(raw))
                raw[at:at] = rng.choice([b" ", b"\n", b"\xff", b'"', b"{", b",", b"\\ud800"])
            else:  # a key written twice (the first one would win in a lenient parser)
                raw = bytearray(raw.replace(b'"payload":', b'"payload":{},"payload":', 1))
            return bytes(raw), True, True
        if kind == "garbage":
            if rng.random() < 0.5:
                return rng.randbytes(rng.randrange(200)), True, True
            return self.encode(self.value()), True, True
        # join: a stranger's key, a real or invented invitation, a proof that is wrong
        stranger = Identity(rng.randbytes(32))
        inv = scenario.invitation
        payload = {
            "invitation": inv.invitation_id if rng.random() < 0.5 else rng.randbytes(16).hex(),
            "address": rng.choice(["s", "http://10.0.0.1:8123", "x" * 600]),
            "proof": rng.choice([rng.randbytes(32).hex(), "é" * 64, ""]),
        }
        self.seq += 1
        env = seal(
            stranger,
            community=scenario.peers[0].community_id,
            seq=self.seq,
            ts_ms=self.now,
            type="join",
            payload=payload,
        ).to_dict()
        return canonical_bytes(env), True, True

    def deliver(
        self, target: Peer, data: bytes, must_refuse: bool, kind: str, original: dict[str, Any]
    ) -> None:
        """Hand ``data`` to ``target`` and check the outputs.

        ``original``: the signed message ``data`` was generated from, unchanged. A message
        that must be refused is refused when the only output is one ``Rejected`` (what the
        HTTP view answers with a 4xx); anything else accepted it, which is a forgery unless
        ``data`` still decodes to exactly ``original`` (a mutation that changed nothing)."""
        try:
            out = target.receive(data, "fuzz", self.now)
        except Exception:  # that is what the fuzzer looks for
            self.report.merge_trace(traceback.format_exc())
            return
        refused = [o for o in out if isinstance(o, Rejected)]
        for o in refused:
            self.report.codes[o.code] += 1
        if not refused:
            self.report.accepted += 1
            self.report.accepted_types[str(original.get("type"))] += 1
        if must_refuse and not (len(out) == 1 and refused) and not _same(data, original):
            self.report.forgeries.append(f"{kind}: accepted {data[:200]!r} -> {out[:3]!r}")

    def run_clock(self, target: Peer, scenario: Scenario) -> None:
        """Run ``target``'s clock through the next slots: clear what it accepted."""
        rules = target.rules
        end = (scenario.slot + (FUTURE_SLOTS + 1) * rules.slot_seconds) * 1000
        now = self.now
        while now < end:
            now = max(now + 1, min(target.next_wakeup_ms(), end))
            try:
                target.tick(now)
            except Exception:  # that is what the fuzzer looks for
                self.report.merge_trace(traceback.format_exc())
                return

    def check_state(self, target: Peer, scenario: Scenario) -> None:
        """Every record and trade the target holds verifies (nothing forged got in)."""
        community = target.community_id
        records: list[dict[str, Any]] = list(target.membership.records.values())
        for state in target._slots.values():
            records.extend(b.env for per in state.bids.values() for b in per.values())
            records.extend(a.env for per in state.attests.values() for a in per.values())
        for record in records:
            if record.get("community") != community or not _signed(record):
                self.report.forgeries.append(f"held record is not signed by its sender: {record}")
        for st in target._settlement.settling.values():
            for trade in st.done.values():
                if not verify_trade(trade).ok:
                    self.report.forgeries.append("held trade does not verify")


_TYPES = (
    "bid",
    "attest",
    "member",
    "leave",
    "remove",
    "address",
    "enrol",
    "digest",
    "records",
    "fetch",
    "slot_data",
    "catchup",
    "join",
    "welcome",
    "trade_terms",
    "trade_sig",
    "delivery",
)


def _names(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            out.add(key)
            _names(item, out)
    elif isinstance(value, list):
        for item in value:
            _names(item, out)


def _signed(record: dict[str, Any]) -> bool:
    """Whether a record's signature is its sender's (membership aside: a member may leave
    with a ``ts`` before records of its that were accepted earlier)."""
    env = Envelope(
        record["v"],
        record["community"],
        record["sender"],
        record["seq"],
        record["ts"],
        record["type"],
        record["payload"],
        record["sig"],
    )
    return verify_hex(env.sender, Purpose.ENVELOPE, env.signed_body(), env.sig)


def _same(data: bytes, original: dict[str, Any]) -> bool:
    """Whether ``data`` still decodes to exactly the signed message."""
    try:
        return decode(data) == decode(canonical_bytes(original))
    except CanonicalError:
        return False


def stranger_target() -> Peer:
    """A long-lived member peer for the strangers' traffic of a whole run."""
    return Scenario(10**6).peers[0]


def run(
    messages: int,
    *,
    seed: int = 0,
    per_round: int = 2_000,
    progress: Callable[[FuzzReport], None] | None = None,
) -> FuzzReport:
    """Fuzz with ``messages`` generated messages in rounds of ``per_round``."""
    report = FuzzReport()
    strangers = stranger_target()
    fuzzer = Fuzzer(seed, report, strangers)
    k = 0
    while report.messages < messages:
        scenario = Scenario(seed * 7919 + k)
        left = messages - report.messages
        fuzzer.round(scenario, k % 5, min(per_round, left))
        k += 1
        gc.collect()
        report.rss_kib.append(rss_kib())
        report.blocks.append(sys.getallocatedblocks())
        if progress is not None:
            progress(report)
    keyring = strangers.membership.keyring
    guarded = [k for k in strangers._ctx.guard.highest() if keyring.resolve(k) is None]
    report.stranger_guard_entries = len(guarded)
    return report


def rss_kib() -> int:
    """Resident memory of this process (KiB; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except OSError:
        return 0
