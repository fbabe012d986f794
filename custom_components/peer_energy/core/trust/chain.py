"""The source chain: a home's append-only, hash-linked record of its own signed entries.

Entry ``n`` is the canonical encoding of::

    {"author": key, "seq": n, "prev": hash of entry n-1 (hex, "" for n = 0),
     "ts": Unix ms, "kind": str, "body": object}

signed by ``author`` (purpose ``entry``). The entry hash is
``SHA-256(b"peer-energy/v1/entry-hash\\n" + signed bytes + signature)``, so it covers
the signature too. Entry 0 is the genesis entry, authored by the home's genesis key
(its member id). A ``rotation`` entry, signed by the current key, carries a
``KeyRotation`` record; later entries are signed by the new key.

Verification modes (``VerifyMode``):

* ``LINKS``: sequence numbers, hash links, timestamps, key succession. Detects any
  change to any stored byte of any entry except the last one.
* ``AUTHOR`` (default): ``LINKS`` plus the signatures of the genesis, every rotation
  and the head. Because every entry commits to the hash of its predecessor, one valid
  signature on the head authenticates every earlier byte: forging an earlier entry
  would need a SHA-256 collision. This is what a home-year verify uses.
* ``FULL``: every signature, plus an optional per-entry check (the credit module
  passes one that verifies trade countersignatures).

Two different signed entries with the same sequence number prove a fork
(``ForkProof``); a signed head claim that is shorter than an entry the same member
signed earlier proves a rollback (``RollbackProof``). Anyone with the public keys can
check both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .canonical import (
    Canonical,
    CanonicalError,
    canonical_bytes,
    decode,
    decode_trusted,
    digest,
)
from .identity import (
    Identity,
    KeyRing,
    KeyRotation,
    Purpose,
    is_key_hex,
    rotate_key,
    verify,
    verify_hex,
    verify_rotation,
)

HASH_PREFIX = b"peer-energy/v1/entry-hash\n"
GENESIS = "genesis"
ROTATION = "rotation"
_ENTRY_KEYS = frozenset({"author", "seq", "prev", "ts", "kind", "body"})


class ChainError(ValueError):
    """An entry cannot be parsed or appended."""


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One signed entry. ``signed`` is exactly what ``sig`` covers; build with
    ``genesis_entry``/``next_entry`` or parse with ``parse_entry``."""

    signed: bytes
    sig: bytes
    author: str
    seq: int
    prev: str
    ts_ms: int
    kind: str
    body: Mapping[str, Any]
    hash: bytes

    @property
    def hash_hex(self) -> str:
        """The entry hash as hex (what the next entry's ``prev`` holds)."""
        return self.hash.hex()

    def signature_valid(self) -> bool:
        """True if ``sig`` is the author's signature over ``signed``."""
        return verify(self.author, Purpose.ENTRY, self.signed, self.sig)

    def to_dict(self) -> dict[str, Any]:
        """Export form: the signed object and the signature as hex."""
        return {
            "entry": {
                "author": self.author,
                "seq": self.seq,
                "prev": self.prev,
                "ts": self.ts_ms,
                "kind": self.kind,
                "body": dict(self.body),
            },
            "sig": self.sig.hex(),
        }


def entry_hash(signed: bytes, sig: bytes) -> bytes:
    """Hash of an entry from its stored parts."""
    return digest(HASH_PREFIX + signed + sig)


def parse_entry(signed: bytes, sig: bytes, *, trusted: bool = False) -> ChainEntry:
    """Rebuild an entry from its parts; ``ChainError`` if malformed.

    The signature is not checked here (see ``verify_chain``). ``trusted`` selects the
    fast parser for bytes this home validated when storing them (``LedgerDB`` reads).
    """
    try:
        data = decode_trusted(signed) if trusted else decode(signed)
    except CanonicalError as err:
        raise ChainError(f"entry is not canonical JSON: {err}") from err
    if not isinstance(data, dict) or set(data) != _ENTRY_KEYS:
        raise ChainError("entry does not have exactly the entry fields")
    author, seq, prev, ts, kind, body = (
        data["author"],
        data["seq"],
        data["prev"],
        data["ts"],
        data["kind"],
        data["body"],
    )
    if (
        not is_key_hex(author)
        or type(seq) is not int
        or seq < 0
        or type(prev) is not str
        or type(ts) is not int
        or type(kind) is not str
        or not isinstance(body, dict)
        or len(sig) != 64
    ):
        raise ChainError("entry field of the wrong type")
    assert isinstance(author, str)  # for the type checker; checked above
    return ChainEntry(signed, sig, author, seq, prev, ts, kind, body, entry_hash(signed, sig))


def entry_from_dict(data: Mapping[str, Any]) -> ChainEntry:
    """Parse the export form (``ChainEntry.to_dict``); ``ChainError`` if malformed."""
    try:
        signed = canonical_bytes(data["entry"])
        sig = bytes.fromhex(data["sig"])
    except (KeyError, TypeError, ValueError) as err:
        raise ChainError(f"malformed exported entry: {err}") from err
    return parse_entry(signed, sig)


def _sign_entry(
    identity: Identity, seq: int, prev: str, ts_ms: int, kind: str, body: Mapping[str, Canonical]
) -> ChainEntry:
    data: dict[str, Any] = {
        "author": identity.public_key,
        "seq": seq,
        "prev": prev,
        "ts": ts_ms,
        "kind": kind,
        "body": dict(body),
    }
    signed = canonical_bytes(data)
    sig = identity.sign(Purpose.ENTRY, signed)
    return ChainEntry(
        signed, sig, identity.public_key, seq, prev, ts_ms, kind, data["body"],
        entry_hash(signed, sig),
    )  # fmt: skip


def genesis_entry(identity: Identity, ts_ms: int, community: str) -> ChainEntry:
    """Entry 0 of a home's chain: its member id is ``identity.public_key``."""
    return _sign_entry(
        identity, 0, "", ts_ms, GENESIS, {"member": identity.public_key, "community": community}
    )


def next_entry(
    identity: Identity, head: ChainEntry, ts_ms: int, kind: str, body: Mapping[str, Canonical]
) -> ChainEntry:
    """The entry after ``head``, signed by ``identity`` (the current key).

    Raises ``ChainError`` for a genesis/rotation kind (use the dedicated builders), a
    timestamp before the head's, or a key that is not the head's current key, and
    ``CanonicalError`` for a body that is not canonical.
    """
    if kind in (GENESIS, ROTATION):
        raise ChainError(f"use the dedicated builder for {kind!r} entries")
    if ts_ms < head.ts_ms:
        raise ChainError("timestamps never go back on a chain")
    if identity.public_key != current_key(head):
        raise ChainError("entry must be signed by the chain's current key")
    return _sign_entry(identity, head.seq + 1, head.hash_hex, ts_ms, kind, body)


def rotation_entry(
    member: str, old: Identity, new: Identity, head: ChainEntry, ts_ms: int
) -> tuple[ChainEntry, KeyRotation]:
    """Append a key rotation (signed by ``old``); later entries are signed by ``new``."""
    if old.public_key != current_key(head):
        raise ChainError("rotation must be signed by the chain's current key")
    if ts_ms < head.ts_ms:
        raise ChainError("timestamps never go back on a chain")
    rotation = rotate_key(member, old, new, ts_ms)
    entry = _sign_entry(old, head.seq + 1, head.hash_hex, ts_ms, ROTATION, rotation.to_dict())
    return entry, rotation


def current_key(entry: ChainEntry) -> str:
    """The key that signs the entry after ``entry`` (the chain's current key)."""
    if entry.kind == ROTATION:
        new_key = entry.body.get("new_key")
        if isinstance(new_key, str):
            return new_key
    return entry.author


class VerifyMode(StrEnum):
    """How much of a chain to check; see the module docstring."""

    LINKS = "links"
    AUTHOR = "author"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Result of ``verify_chain``. ``bad_seq`` is the first failing entry, if any."""

    ok: bool
    member: str
    length: int
    head_hash: str
    current_key: str
    bad_seq: int | None = None
    reason: str = ""


def verify_chain(
    entries: Iterable[ChainEntry],
    *,
    mode: VerifyMode = VerifyMode.AUTHOR,
    member: str | None = None,
    entry_check: Callable[[ChainEntry, str], str | None] | None = None,
) -> ChainReport:
    """Verify a whole chain from genesis, streaming (constant memory); never raises.

    ``member`` (optional) is the expected member id. ``entry_check(entry, member)``
    runs on every entry in ``FULL`` mode and returns a reason to refuse, or ``None``.
    """
    iterator = iter(entries)
    first = next(iterator, None)
    if first is None:
        return ChainReport(False, member or "", 0, "", "", 0, "empty chain")
    owner = first.author
    count = 1

    def fail(seq: int, reason: str, key: str = "") -> ChainReport:
        return ChainReport(False, owner, count, "", key, seq, reason)

    if first.seq != 0 or first.prev != "" or first.kind != GENESIS:
        return fail(0, "first entry is not a genesis entry")
    if first.body.get("member") != owner or (member is not None and owner != member):
        return fail(0, "genesis does not name its author as the member")
    signatures = mode is not VerifyMode.LINKS
    if signatures and not first.signature_valid():
        return fail(0, "bad genesis signature")
    key = owner
    previous = first
    previous_checked = True
    full = mode is VerifyMode.FULL
    for entry in iterator:
        index = count
        count += 1
        if entry.seq != index:
            return fail(index, f"sequence {entry.seq} where {index} expected", key)
        if entry.prev != previous.hash_hex:
            return fail(index, "hash link broken", key)
        if entry.ts_ms < previous.ts_ms:
            return fail(index, "timestamp goes back", key)
        if entry.author != key:
            return fail(index, "not signed by the chain's current key", key)
        is_rotation = entry.kind == ROTATION
        previous_checked = signatures and (full or is_rotation)
        if previous_checked and not entry.signature_valid():
            return fail(index, "bad signature", key)
        if is_rotation:
            rotation = KeyRotation.from_dict(entry.body)
            if rotation is None or rotation.member != owner or rotation.old_key != key:
                return fail(index, "malformed rotation", key)
            if signatures and not verify_rotation(rotation):
                return fail(index, "rotation signatures do not verify", key)
            key = rotation.new_key
        if full and entry_check is not None:
            reason = entry_check(entry, owner)
            if reason is not None:
                return fail(index, reason, key)
        previous = entry
    # The head's signature authenticates every earlier byte through the hash links.
    if signatures and not previous_checked and not previous.signature_valid():
        return fail(previous.seq, "bad signature", key)
    return ChainReport(True, owner, count, previous.hash_hex, key)


# --- Fork and rollback proofs ---------------------------------------------------------


def _same_member(key_a: str, key_b: str, keyring: KeyRing | None) -> bool:
    if key_a == key_b:
        return True
    if keyring is None:
        return False
    member = keyring.member_of(key_a)
    return member is not None and member == keyring.member_of(key_b)


@dataclass(frozen=True, slots=True)
class ForkProof:
    """Two different entries with the same sequence number, both signed by one member."""

    first: ChainEntry
    second: ChainEntry

    def to_dict(self) -> dict[str, Any]:
        """Plain data to gossip to other peers."""
        return {"first": self.first.to_dict(), "second": self.second.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ForkProof:
        """Parse; ``ChainError`` if malformed."""
        try:
            return cls(entry_from_dict(data["first"]), entry_from_dict(data["second"]))
        except (KeyError, TypeError) as err:
            raise ChainError("malformed fork proof") from err


def verify_fork_proof(proof: ForkProof, keyring: KeyRing | None = None) -> bool:
    """True if the proof shows one member signing two entries at one sequence number."""
    a, b = proof.first, proof.second
    return (
        a.seq == b.seq
        and a.hash != b.hash
        and _same_member(a.author, b.author, keyring)
        and a.signature_valid()
        and b.signature_valid()
    )


@dataclass(frozen=True, slots=True)
class HeadClaim:
    """A signed statement "my chain's head is ``seq`` with ``head_hash`` at ``ts_ms``"."""

    author: str
    seq: int
    head_hash: str
    ts_ms: int
    sig: str

    def body(self) -> bytes:
        """Canonical bytes the signature covers."""
        return canonical_bytes(
            {"author": self.author, "seq": self.seq, "head": self.head_hash, "ts": self.ts_ms}
        )

    def signature_valid(self) -> bool:
        """True if signed by ``author``; never raises."""
        try:
            body = self.body()
        except CanonicalError:
            return False
        return verify_hex(self.author, Purpose.HEAD, body, self.sig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, e.g. as an envelope payload."""
        return {
            "author": self.author,
            "seq": self.seq,
            "head": self.head_hash,
            "ts": self.ts_ms,
            "sig": self.sig,
        }


def claim_head(identity: Identity, head: ChainEntry, ts_ms: int) -> HeadClaim:
    """Sign a head claim for ``head``."""
    unsigned = HeadClaim(identity.public_key, head.seq, head.hash_hex, ts_ms, "")
    return HeadClaim(
        identity.public_key,
        head.seq,
        head.hash_hex,
        ts_ms,
        identity.sign_hex(Purpose.HEAD, unsigned.body()),
    )


@dataclass(frozen=True, slots=True)
class RollbackProof:
    """The member signed ``entry``, then later claimed a shorter chain."""

    entry: ChainEntry
    claim: HeadClaim


def verify_rollback_proof(proof: RollbackProof, keyring: KeyRing | None = None) -> bool:
    """True if the claim is later than the entry yet names a lower sequence number."""
    return (
        proof.claim.seq < proof.entry.seq
        and proof.claim.ts_ms >= proof.entry.ts_ms
        and _same_member(proof.entry.author, proof.claim.author, keyring)
        and proof.entry.signature_valid()
        and proof.claim.signature_valid()
    )


def check_head_claim(
    known: Sequence[ChainEntry], claim: HeadClaim, keyring: KeyRing | None = None
) -> RollbackProof | None:
    """Compare a peer's new head claim with the copy of its chain we hold.

    Returns a rollback proof if the claim is validly signed by the same member, no older
    than the head we hold, and names a lower sequence number; else ``None``. (A claim at
    a sequence number we hold but with another hash hints at a fork: fetch the entry
    and ``compare_chains`` proves it.)
    """
    if not known or not claim.signature_valid():
        return None
    head = known[-1]
    if not _same_member(head.author, claim.author, keyring):
        return None
    if claim.seq < head.seq and claim.ts_ms >= head.ts_ms:
        return RollbackProof(head, claim)
    return None


class Comparison(StrEnum):
    """How a presented copy of a chain relates to the one we hold."""

    SAME = "same"
    EXTENDS = "extends"  # presented continues ours: accept the new entries
    SHORTER = "shorter"  # presented is a prefix of ours (stale copy or rollback)
    FORK = "fork"  # same sequence number, different entry: see ``proof``


@dataclass(frozen=True, slots=True)
class ChainComparison:
    """Result of ``compare_chains``."""

    outcome: Comparison
    proof: ForkProof | None = None


def compare_chains(known: Sequence[ChainEntry], presented: Sequence[ChainEntry]) -> ChainComparison:
    """Compare two copies of one member's chain (both already verified)."""
    for ours, theirs in zip(known, presented, strict=False):
        if ours.hash != theirs.hash:
            return ChainComparison(Comparison.FORK, ForkProof(ours, theirs))
    if len(presented) == len(known):
        return ChainComparison(Comparison.SAME)
    if len(presented) > len(known):
        return ChainComparison(Comparison.EXTENDS)
    return ChainComparison(Comparison.SHORTER)
