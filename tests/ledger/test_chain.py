"""Source chain: building, verification, tampering, forks and rollbacks."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.peer_energy.core.trust.chain import (
    ChainEntry,
    ChainError,
    Comparison,
    ForkProof,
    RollbackProof,
    VerifyMode,
    check_head_claim,
    claim_head,
    compare_chains,
    entry_from_dict,
    genesis_entry,
    next_entry,
    parse_entry,
    rotation_entry,
    verify_chain,
    verify_fork_proof,
    verify_rollback_proof,
)
from custom_components.peer_energy.core.trust.identity import KeyRing

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


CHAIN = build(6)


@pytest.mark.parametrize("mode", list(VerifyMode))
def test_valid_chain_verifies_in_every_mode(mode: VerifyMode) -> None:
    report = verify_chain(CHAIN, mode=mode, member=HOME.public_key)
    assert report.ok, report.reason
    assert report.length == 6
    assert report.head_hash == CHAIN[-1].hash_hex
    assert report.current_key == HOME.public_key


def test_export_round_trip() -> None:
    for entry in CHAIN:
        assert entry_from_dict(entry.to_dict()) == entry
    with pytest.raises(ChainError):
        entry_from_dict({"entry": {}, "sig": "zz"})
    with pytest.raises(ChainError):
        entry_from_dict({"sig": "00"})


def tamper(entries: list[ChainEntry], index: int, position: int, delta: int) -> list[ChainEntry]:
    """Flip one byte in entry ``index`` (signed bytes then signature), as stored."""
    entry = entries[index]
    raw = bytearray(entry.signed + entry.sig)
    raw[position % len(raw)] = (raw[position % len(raw)] + delta) % 256
    cut = len(entry.signed)
    changed = parse_entry(bytes(raw[:cut]), bytes(raw[cut:]))
    return [*entries[:index], changed, *entries[index + 1 :]]


def detected(
    entries: list[ChainEntry], index: int, position: int, delta: int, mode: VerifyMode
) -> bool:
    try:
        changed = tamper(entries, index, position, delta)
    except ChainError:
        return True  # the stored bytes no longer even parse as an entry
    return not verify_chain(changed, mode=mode, member=HOME.public_key).ok


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 5), st.integers(0, 10_000), st.integers(1, 255))
def test_any_flipped_byte_is_detected(index: int, position: int, delta: int) -> None:
    assert detected(CHAIN, index, position, delta, VerifyMode.AUTHOR)
    assert detected(CHAIN, index, position, delta, VerifyMode.FULL)


def test_every_byte_of_an_inner_entry_is_covered_even_by_links() -> None:
    entry = CHAIN[2]
    size = len(entry.signed) + len(entry.sig)
    assert all(detected(CHAIN, 2, pos, 1, VerifyMode.LINKS) for pos in range(size))


def test_links_mode_cannot_see_a_forged_head_signature_but_author_mode_can() -> None:
    forged = replace(CHAIN[-1], sig=bytes(64))
    chain = [*CHAIN[:-1], forged]
    assert verify_chain(chain, mode=VerifyMode.LINKS).ok
    report = verify_chain(chain, mode=VerifyMode.AUTHOR)
    assert not report.ok
    assert report.bad_seq == 5


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda c: [], "empty"),
        (lambda c: c[1:], "genesis"),
        (lambda c: [c[0], c[2], *c[3:]], "sequence"),
        (lambda c: [*c[:3], *c[4:]], "sequence"),
        (lambda c: [c[0], *build(3, OTHER)[1:]], "link"),
    ],
)
def test_structural_damage_is_detected(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    report = verify_chain(mutate(CHAIN))
    assert not report.ok
    assert reason in report.reason


def test_genesis_must_name_its_member() -> None:
    assert "member" in verify_chain(CHAIN, member=OTHER.public_key).reason
    other_start = [genesis_entry(OTHER, T0, "x"), *CHAIN[1:]]
    assert not verify_chain(other_start).ok
    bad_sig = [replace(CHAIN[0], sig=bytes(64)), *CHAIN[1:]]
    assert "genesis signature" in verify_chain(bad_sig).reason


def test_builder_refuses_misuse() -> None:
    with pytest.raises(ChainError, match="dedicated"):
        next_entry(HOME, CHAIN[-1], T0 * 2, "rotation", {})
    with pytest.raises(ChainError, match="timestamps"):
        next_entry(HOME, CHAIN[-1], T0, "order", {})
    with pytest.raises(ChainError, match="current key"):
        next_entry(OTHER, CHAIN[-1], T0 * 2, "order", {})


@pytest.mark.parametrize(
    "signed",
    [b"not json", b"[1]", b'{"author":"x","seq":0,"prev":"","ts":0,"kind":"k","body":{}}'],
)
def test_parse_refuses_malformed(signed: bytes) -> None:
    with pytest.raises(ChainError):
        parse_entry(signed, bytes(64))


def rotated_chain() -> list[ChainEntry]:
    entries = build(3)
    rot, _ = rotation_entry(HOME.public_key, HOME, NEW, entries[-1], T0 * 2)
    entries.append(rot)
    entries.append(next_entry(NEW, rot, T0 * 2 + 1, "order", {"after": True}))
    return entries


def test_rotation_on_the_chain() -> None:
    entries = rotated_chain()
    for mode in VerifyMode:
        report = verify_chain(entries, mode=mode)
        assert report.ok, report.reason
        assert report.current_key == NEW.public_key
        assert report.member == HOME.public_key
    with pytest.raises(ChainError, match="current key"):
        next_entry(HOME, entries[3], T0 * 3, "order", {})
    with pytest.raises(ChainError, match="current key"):
        rotation_entry(HOME.public_key, OTHER, NEW, entries[-1], T0 * 3)
    with pytest.raises(ChainError, match="timestamps"):
        rotation_entry(HOME.public_key, NEW, OTHER, entries[-1], T0)


def test_old_key_cannot_sign_after_rotation() -> None:
    entries = rotated_chain()[:4]
    # The old key keeps signing after announcing the rotation: refused.
    from custom_components.peer_energy.core.trust.chain import _sign_entry

    bad = _sign_entry(HOME, 4, entries[-1].hash_hex, T0 * 3, "order", {})
    report = verify_chain([*entries, bad])
    assert "current key" in report.reason


def test_forged_rotation_is_refused() -> None:
    entries = build(3)
    from custom_components.peer_energy.core.trust.chain import _sign_entry
    from custom_components.peer_energy.core.trust.identity import rotate_key

    rot = rotate_key(HOME.public_key, HOME, NEW, T0 * 2)
    body = rot.to_dict() | {"new_sig": rot.old_sig}
    bad = _sign_entry(HOME, 3, entries[-1].hash_hex, T0 * 2, "rotation", body)
    assert "rotation signatures" in verify_chain([*entries, bad]).reason
    assert verify_chain([*entries, bad], mode=VerifyMode.LINKS).ok
    bad2 = _sign_entry(HOME, 3, entries[-1].hash_hex, T0 * 2, "rotation", {"x": 1})
    assert "malformed rotation" in verify_chain([*entries, bad2]).reason


def test_full_mode_runs_the_entry_check() -> None:
    def refuse_third(entry: ChainEntry, member: str) -> str | None:
        assert member == HOME.public_key
        return "no" if entry.seq == 3 else None

    assert verify_chain(CHAIN, mode=VerifyMode.AUTHOR, entry_check=refuse_third).ok
    report = verify_chain(CHAIN, mode=VerifyMode.FULL, entry_check=refuse_third)
    assert (report.ok, report.bad_seq, report.reason) == (False, 3, "no")


def test_full_mode_checks_inner_signatures() -> None:
    from custom_components.peer_energy.core.trust.chain import _sign_entry

    # An inner entry whose signature is wrong but whose links are intact can only be
    # made by the author itself; FULL mode still notices it.
    forged_inner = replace(CHAIN[2], sig=bytes(64))
    rest = [forged_inner]
    for i in range(3, 6):
        rest.append(_sign_entry(HOME, i, rest[-1].hash_hex, T0 + i * 900_000, "order", {}))
    chain = [*CHAIN[:2], *rest]
    assert verify_chain(chain, mode=VerifyMode.AUTHOR).ok
    assert verify_chain(chain, mode=VerifyMode.FULL).bad_seq == 2


def test_timestamps_must_not_go_back() -> None:
    from custom_components.peer_energy.core.trust.chain import _sign_entry

    back = _sign_entry(HOME, 1, CHAIN[0].hash_hex, T0 - 1, "order", {})
    assert "timestamp" in verify_chain([CHAIN[0], back]).reason


def test_fork_is_detected_and_provable() -> None:
    honest = CHAIN
    forked = CHAIN[:3] + [next_entry(HOME, CHAIN[2], CHAIN[3].ts_ms, "order", {"i": "other"})]
    comparison = compare_chains(honest, forked)
    assert comparison.outcome is Comparison.FORK
    proof = comparison.proof
    assert proof is not None
    assert verify_fork_proof(proof)
    # Another peer checks it from the gossiped form alone.
    assert verify_fork_proof(ForkProof.from_dict(proof.to_dict()))
    with pytest.raises(ChainError):
        ForkProof.from_dict({"first": 1})


def test_fork_proof_cannot_be_faked() -> None:
    a = CHAIN[3]
    b = next_entry(HOME, CHAIN[2], a.ts_ms, "order", {"i": "other"})
    assert not verify_fork_proof(ForkProof(a, a))  # same entry twice
    assert not verify_fork_proof(ForkProof(a, CHAIN[4]))  # different seq
    assert not verify_fork_proof(ForkProof(a, replace(b, sig=bytes(64))))  # unsigned
    other = build(4, OTHER)[3]
    assert not verify_fork_proof(ForkProof(a, other))  # two different members


def test_fork_across_a_rotation_needs_the_key_ring() -> None:
    entries = rotated_chain()
    from custom_components.peer_energy.core.trust.chain import _sign_entry
    from custom_components.peer_energy.core.trust.identity import rotate_key

    # The old key signs a different entry 4 after rotating away.
    rogue = _sign_entry(HOME, 4, entries[3].hash_hex, T0 * 3, "order", {"rogue": True})
    proof = ForkProof(entries[4], rogue)
    assert not verify_fork_proof(proof)
    ring = (
        KeyRing()
        .with_member(HOME.public_key)
        .with_rotation(rotate_key(HOME.public_key, HOME, NEW, T0 * 2))
    )
    assert verify_fork_proof(proof, ring)


def test_compare_chains_outcomes() -> None:
    assert compare_chains(CHAIN, CHAIN).outcome is Comparison.SAME
    assert compare_chains(CHAIN[:3], CHAIN).outcome is Comparison.EXTENDS
    assert compare_chains(CHAIN, CHAIN[:3]).outcome is Comparison.SHORTER
    assert compare_chains(CHAIN, CHAIN).proof is None


def test_rollback_is_detected_and_provable() -> None:
    held = CHAIN
    claim = claim_head(HOME, CHAIN[2], CHAIN[-1].ts_ms + 1)  # later, but shorter
    proof = check_head_claim(held, claim)
    assert isinstance(proof, RollbackProof)
    assert verify_rollback_proof(proof)
    assert claim.to_dict()["seq"] == 2


def test_honest_head_claims_are_not_rollbacks() -> None:
    assert check_head_claim(CHAIN, claim_head(HOME, CHAIN[-1], T0 * 2)) is None
    # A stale claim (older than our head) is just old news.
    assert check_head_claim(CHAIN, claim_head(HOME, CHAIN[2], CHAIN[2].ts_ms)) is None
    assert check_head_claim([], claim_head(HOME, CHAIN[2], T0 * 2)) is None
    forged = replace(claim_head(HOME, CHAIN[2], T0 * 2), seq=1)
    assert check_head_claim(CHAIN, forged) is None
    assert not forged.signature_valid()
    assert check_head_claim(CHAIN, claim_head(OTHER, CHAIN[2], T0 * 2)) is None
    assert not replace(forged, ts_ms=1.5).signature_valid()  # type: ignore[arg-type]


def test_rollback_proof_cannot_be_faked() -> None:
    claim = claim_head(HOME, CHAIN[2], CHAIN[-1].ts_ms + 1)
    assert not verify_rollback_proof(RollbackProof(CHAIN[1], claim))  # not shorter
    early = claim_head(HOME, CHAIN[2], CHAIN[-1].ts_ms - 1)
    assert not verify_rollback_proof(RollbackProof(CHAIN[-1], early))  # older claim
    assert not verify_rollback_proof(RollbackProof(CHAIN[-1], claim_head(OTHER, CHAIN[2], T0 * 3)))
