"""Mutation check of the engine's safety checks: does a wrong version of each check fail
the tests?

Run: .venv/bin/python bench/mutations.py            (--only NAME: one mutation; --list)

Each mutation below is a hand-made, plausible mistake in one safety check (an off-by-one
at a bound, a check left out, the wrong side of a comparison). For each, the repository's
``custom_components`` and ``tests`` are copied to a temporary directory, the mutation is
applied there (the working tree is never touched), and the tests that guard that area run
(``pytest -x``). A mutation is *killed* when a test fails and *survives* when they all
pass; a survivor is a missing test. Prints one line per mutation and the tally per area;
exit code 1 if any survived.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
CORE = "custom_components/peer_energy/core"


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path``."""

    name: str
    area: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


# Test paths; "|" separates runs (the quick, pointed tests first, then the whole area:
# one pytest call with a file and its folder would collect the file only).
PROTOCOL_TESTS = (
    "tests/federation/test_boundaries.py",
    "tests/federation/test_error_policy.py",
    "tests/federation/test_attacks.py",
    "|",
    "tests/federation",
)
ENVELOPE_TESTS = ("tests/ledger/test_envelope.py", "tests/federation/test_error_policy.py")
CLEARING_TESTS = ("tests/engine/test_clearing.py", "tests/engine/test_clearing_boundaries.py",
                  "tests/engine/test_clearing_properties.py")  # fmt: skip
ORDER_TESTS = ("tests/engine/test_clearing.py", "tests/engine/test_cli.py")
CHAIN_TESTS = ("tests/ledger/test_chain.py", "tests/ledger/test_trust_boundaries.py",
               "tests/ledger/test_identity.py")  # fmt: skip
CANONICAL_TESTS = ("tests/ledger/test_canonical.py", "tests/engine/test_cli.py")

MUTATIONS = (
    # -- protocol --
    Mutation("slot data: quorum - 1 accepted", "protocol", f"{CORE}/federation/protocol/book.py",
             "if len(attesters) < rules.quorum(len(roster)):",
             "if len(attesters) < rules.quorum(len(roster)) - 1:", PROTOCOL_TESTS),
    Mutation("slot data: an equivocator's first attestation counts", "protocol",
             f"{CORE}/federation/protocol/book.py",
             "if seen.get(m) == {(book, res)}", "if (book, res) in seen.get(m, set())",
             PROTOCOL_TESTS),
    Mutation("tally: an equivocator counts", "protocol", f"{CORE}/federation/protocol/round.py",
             "if member in state.att_equivocators or member not in roster or len(per) != 1:",
             "if member not in roster:", PROTOCOL_TESTS),
    Mutation("bid signed at gate closure accepted", "protocol",
             f"{CORE}/federation/protocol/book.py",
             "if env.ts_ms >= rules.gate_closure_ms(slot):",
             "if env.ts_ms > rules.gate_closure_ms(slot):", PROTOCOL_TESTS),
    Mutation("bid: orders of another owner", "protocol", f"{CORE}/federation/protocol/book.py",
             "if order.owner != member:", "if False:", PROTOCOL_TESTS),
    Mutation("bid: orders of another slot", "protocol", f"{CORE}/federation/protocol/book.py",
             "if order.slot_start != slot:", "if False:", PROTOCOL_TESTS),
    Mutation("bid: credit limit off by one", "protocol", f"{CORE}/federation/protocol/round.py",
             "if max_spend(orders, self.ctx.rules) > self.headroom(msg.member):",
             "if max_spend(orders, self.ctx.rules) > self.headroom(msg.member) + 1000:",
             PROTOCOL_TESTS),
    Mutation("attestation before gate closure", "protocol",
             f"{CORE}/federation/protocol/round.py",
             "if msg.env.ts_ms < self.ctx.rules.gate_closure_ms(slot):", "if False:",
             PROTOCOL_TESTS),
    Mutation("equivocation not detected", "protocol", f"{CORE}/federation/protocol/round.py",
             "if len(per) == 2 and member not in state.equivocators:",
             "if len(per) == 3 and member not in state.equivocators:", PROTOCOL_TESTS),
    Mutation("trade half from a party of another fill", "protocol",
             f"{CORE}/federation/protocol/settlement.py",
             "if party != msg.member or other != self.ctx.member_id or i in theirs:",
             "if other != self.ctx.member_id or i in theirs:", PROTOCOL_TESTS),
    Mutation("trade signature not checked", "protocol",
             f"{CORE}/federation/protocol/settlement.py",
             "if not _half_valid(terms, half):", "if False:", PROTOCOL_TESTS),
    Mutation("delivery report of another party", "protocol",
             f"{CORE}/federation/protocol/settlement.py",
             "or not report.valid_for(member, role, self.ctx.membership.keyring)", "",
             PROTOCOL_TESTS),
    Mutation("stranger's join kept in the replay guard", "protocol",
             f"{CORE}/federation/protocol/peer.py", "stranger=stranger,", "stranger=False,",
             PROTOCOL_TESTS),
    Mutation("refused record remembered", "protocol", f"{CORE}/federation/protocol/peer.py",
             "if not any(isinstance(o, Rejected) for o in handled):", "if True:",
             PROTOCOL_TESTS),
    Mutation("welcome applied before it is checked", "protocol",
             f"{CORE}/federation/protocol/peer.py",
             "        if not scratch.membership.is_member(ctx.member_id):\n"
             "            return msg.reject(Reject.BAD_MEMBERSHIP, \"welcome lacks our record\")\n",
             "", PROTOCOL_TESTS),
    Mutation("catch-up only from the oldest slot still asked for", "protocol",
             f"{CORE}/federation/protocol/round.py",
             "since = min(self.missing, default=self.next_slot)",
             "since = asked[0] if asked else self.next_slot", PROTOCOL_TESTS),
    # -- envelopes --
    Mutation("clock skew bound off by one", "envelopes", f"{CORE}/trust/envelope.py",
             "if abs(ts_ms - now_ms) > policy.max_clock_skew_ms:",
             "if abs(ts_ms - now_ms) >= policy.max_clock_skew_ms:", ENVELOPE_TESTS),
    Mutation("replay not refused", "envelopes", f"{CORE}/trust/envelope.py",
             "        if code is not None:\n            return _reject(code,",
             "        if False:\n            return _reject(code,", ENVELOPE_TESTS),
    Mutation("signature not checked", "envelopes", f"{CORE}/trust/envelope.py",
             "if not verify_hex(envelope.sender, Purpose.ENVELOPE, body, envelope.sig, "
             "cache=not stranger):", "if False:", ENVELOPE_TESTS),
    Mutation("other community accepted", "envelopes", f"{CORE}/trust/envelope.py",
             'if data["community"] != policy.community:', "if False:", ENVELOPE_TESTS),
    Mutation("string fields unbounded", "envelopes", f"{CORE}/trust/envelope.py",
             "type(v) is str and len(v) <= MAX_FIELD_CHARS", "type(v) is str", ENVELOPE_TESTS),
    Mutation("guard records before the signature check", "envelopes",
             f"{CORE}/trust/envelope.py",
             "    if guard is not None:\n        code = guard.check(envelope.sender, envelope.seq)",
             "    if guard is not None:\n        guard.record(envelope.sender, envelope.seq)\n"
             "        code = None", ENVELOPE_TESTS),
    # -- canonical encoding --
    Mutation("duplicate keys accepted", "canonical", f"{CORE}/trust/canonical.py",
             "if len(result) != len(pairs):", "if False:", CANONICAL_TESTS),
    Mutation("integers beyond 64 bits", "canonical", f"{CORE}/trust/canonical.py",
             "if not INT_MIN <= value <= INT_MAX:", "if False:", CANONICAL_TESTS),
    # -- orders (bounds) --
    Mutation("price bound off by one", "orders", f"{CORE}/market/orders.py",
             "MAX_PRICE = 100_000  #", "MAX_PRICE = 100_001  #", ORDER_TESTS),
    Mutation("order energy total unchecked", "orders", f"{CORE}/market/orders.py",
             "        if total > MAX_ENERGY_WH:\n            raise OrderError",
             "        if False:\n            raise OrderError", ORDER_TESTS),
    Mutation("lone surrogates accepted", "orders", f"{CORE}/market/orders.py",
             "or not (value.isascii() or _unicode(value))", "or False", ORDER_TESTS),
    Mutation("book side energy unchecked", "orders", f"{CORE}/market/orders.py",
             "if total > MAX_SLOT_ENERGY_WH:", "if False:", ORDER_TESTS),
    # -- clearing --
    Mutation("fair share never relaxed", "clearing", f"{CORE}/market/clearing/allocation.py",
             "allowed = max(cap, volume - (total - offered[owner]))", "allowed = cap",
             CLEARING_TESTS),
    Mutation("fair share relaxed too far", "clearing", f"{CORE}/market/clearing/allocation.py",
             "allowed = max(cap, volume - (total - offered[owner]))",
             "allowed = max(cap, volume - (total - offered[owner]) + 1)", CLEARING_TESTS),
    Mutation("price midpoint rounded up", "clearing", f"{CORE}/market/clearing/allocation.py",
             "return (lo + hi) // 2", "return (lo + hi + 1) // 2", CLEARING_TESTS),
    Mutation("exact kernel ignores the fee", "clearing", f"{CORE}/market/clearing/kernels.py",
             "return [(p if p < cap else cap) - fee for p in price]",
             "return [(p if p < cap else cap) for p in price]", CLEARING_TESTS),
    Mutation("result digest without the fairness state", "clearing",
             f"{CORE}/market/clearing/results.py",
             'summary["fairness"] = self.fairness.to_dict()', "pass", CLEARING_TESTS),
    # -- chain and identity --
    Mutation("fork proof across two members with a key ring", "chain",
             f"{CORE}/trust/chain.py",
             "return member is not None and member == keyring.member_of(key_b)",
             "return member is not None", CHAIN_TESTS),
    Mutation("rollback at the same sequence number", "chain", f"{CORE}/trust/chain.py",
             "proof.claim.seq < proof.entry.seq", "proof.claim.seq <= proof.entry.seq",
             CHAIN_TESTS),
    Mutation("rotation of a key that is not current", "chain", f"{CORE}/trust/chain.py",
             "if rotation is None or rotation.member != owner or rotation.old_key != key:",
             "if rotation is None or rotation.member != owner:", CHAIN_TESTS),
    Mutation("enrolment signed by an asset key", "chain", f"{CORE}/trust/identity.py",
             "if home is None or home.member != enrolment.member or home.role is not "
             "KeyRole.HOME:", "if home is None or home.member != enrolment.member:",
             CHAIN_TESTS),
)  # fmt: skip


def _copy(dest: Path) -> None:
    for name in ("custom_components", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def run(mutation: Mutation, workdir: Path) -> tuple[bool, float]:
    """(killed, seconds): apply ``mutation`` in a fresh copy under ``workdir`` and test."""
    dest = workdir / "repo"
    if dest.exists():
        shutil.rmtree(dest)
    _copy(dest)
    target = dest / mutation.path
    text = target.read_text("utf-8")
    if text.count(mutation.old) != 1:
        raise SystemExit(f"{mutation.name}: the text to mutate is not found exactly once")
    target.write_text(text.replace(mutation.old, mutation.new), "utf-8")
    start = time.perf_counter()
    runs: list[list[str]] = [[]]
    for path in mutation.tests:
        if path == "|":
            runs.append([])
        else:
            runs[-1].append(path)
    for paths in runs:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", *paths],
            cwd=dest,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            return True, time.perf_counter() - start
    return False, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", help="run only the mutation with this name")
    parser.add_argument("--list", action="store_true", help="list the mutations")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only in (None, m.name)]
    if args.list or not chosen:
        for m in MUTATIONS:
            print(f"{m.area:>10}  {m.name}")
        return 0 if args.list else 2
    tally: dict[str, list[int]] = {}
    survivors = []
    with tempfile.TemporaryDirectory(prefix="peer-energy-mutations-") as tmp:
        for m in chosen:
            killed, seconds = run(m, Path(tmp))
            tally.setdefault(m.area, [0, 0])[0 if killed else 1] += 1
            if not killed:
                survivors.append(m.name)
            print(
                f"{'killed' if killed else 'SURVIVED':>8}  {m.area:>10}  {m.name} ({seconds:.0f} s)"
            )
    for area, (killed, survived) in tally.items():
        print(f"{area}: {killed} of {killed + survived} killed")
    total = sum(k for k, _ in tally.values())
    print(f"total: {total} of {len(chosen)} killed; survived: {', '.join(survivors) or 'none'}")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
