"""Boundary cases of the trust checks that a wrong version of them would let pass: proofs
across members, a rollback at the same sequence number, a rotation of a key that is not
the chain's current one, an enrolment signed by an asset key."""

from __future__ import annotations

import pytest

from custom_components.peer_energy.core.trust.chain import (
    ChainEntry,
    ForkProof,
    RollbackProof,
    _sign_entry,
    claim_head,
    genesis_entry,
    next_entry,
    rotation_entry,
    verify_chain,
    verify_fork_proof,
    verify_rollback_proof,
)
from custom_components.peer_energy.core.trust.identity import (
    KeyRing,
    KeyRingError,
    enrol_asset,
    rotate_key,
)

from .conftest import make_identity

HOME = make_identity("home")
NEW = make_identity("home-rotated")
OTHER = make_identity("other")
T0 = 1_800_000_000_000


def build(n: int, identity=HOME) -> list[ChainEntry]:  # type: ignore[no-untyped-def]
    entries = [genesis_entry(identity, T0, "street-7")]
    for i in range(1, n):
        entries.append(next_entry(identity, entries[-1], T0 + i * 900_000, "order", {"i": i}))
    return entries


def test_a_fork_proof_from_two_members_is_refused_even_with_a_key_ring() -> None:
    mine, theirs = build(4)[3], build(4, OTHER)[3]
    ring = KeyRing().with_member(HOME.public_key).with_member(OTHER.public_key)
    assert not verify_fork_proof(ForkProof(mine, theirs), ring)
    # the same member's two entries at one sequence number are a fork, ring or not
    twin = next_entry(HOME, build(3)[2], mine.ts_ms, "order", {"i": "twin"})
    assert verify_fork_proof(ForkProof(mine, twin), ring)


def test_a_head_claim_at_the_same_sequence_number_is_no_rollback() -> None:
    chain = build(5)
    head = chain[-1]
    same = claim_head(HOME, head, head.ts_ms + 1)  # later, same seq: honest
    assert not verify_rollback_proof(RollbackProof(head, same))
    shorter = claim_head(HOME, chain[-2], head.ts_ms + 1)
    assert verify_rollback_proof(RollbackProof(head, shorter))


def test_a_rotation_of_a_key_that_is_not_the_current_one_breaks_the_chain() -> None:
    entries = build(3)
    rot, _ = rotation_entry(HOME.public_key, HOME, NEW, entries[-1], T0 * 2)
    entries.append(rot)  # the current key is now NEW
    # NEW signs a rotation that claims to rotate HOME (not the current key) to OTHER.
    stale = rotate_key(HOME.public_key, HOME, OTHER, T0 * 3)
    bad = _sign_entry(NEW, 4, rot.hash_hex, T0 * 3, "rotation", stale.to_dict())
    report = verify_chain([*entries, bad])
    assert not report.ok
    assert report.bad_seq == 4
    assert "malformed rotation" in report.reason
    good, _ = rotation_entry(HOME.public_key, NEW, OTHER, rot, T0 * 3)
    assert verify_chain([*entries, good]).ok


def test_an_enrolment_signed_by_an_asset_key_is_refused() -> None:
    member = HOME.public_key
    plug, heater = make_identity("plug"), make_identity("heater")
    ring = (
        KeyRing()
        .with_member(member)
        .with_enrolment(enrol_asset(member, HOME, plug, "plug", "plug", 10))
    )
    # The plug's key is the member's (an asset key), but it may not enrol further devices.
    by_asset = enrol_asset(member, plug, heater, "heater", "consumer", 20)
    with pytest.raises(KeyRingError, match="active home key"):
        ring.with_enrolment(by_asset)
    assert ring.with_enrolment(enrol_asset(member, HOME, heater, "heater", "consumer", 20))
