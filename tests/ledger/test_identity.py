"""Identities, key rotation, asset enrolment and the key ring."""

from __future__ import annotations

from dataclasses import replace

import pytest

from custom_components.peer_energy.core.trust.identity import (
    Identity,
    KeyRing,
    KeyRingError,
    KeyRole,
    KeyRotation,
    Purpose,
    enrol_asset,
    rotate_key,
    verify,
    verify_enrolment,
    verify_hex,
    verify_rotation,
)

from .conftest import make_identity


def test_seed_round_trip_and_secret_not_in_repr() -> None:
    ident = Identity.generate()
    again = Identity.from_seed_hex(ident.seed_hex())
    assert again.public_key == ident.public_key
    assert ident.seed_hex() not in repr(ident)
    assert len(ident.public_key) == 64


@pytest.mark.parametrize("seed", ["zz", "00" * 31, ""])
def test_bad_seed_is_refused(seed: str) -> None:
    with pytest.raises(ValueError, match="seed"):
        Identity.from_seed_hex(seed)


def test_signatures_are_domain_separated() -> None:
    ident = make_identity("home")
    sig = ident.sign(Purpose.ENVELOPE, b"body")
    assert verify(ident.public_key, Purpose.ENVELOPE, b"body", sig)
    assert not verify(ident.public_key, Purpose.ENTRY, b"body", sig)
    assert not verify(ident.public_key, Purpose.ENVELOPE, b"bodY", sig)
    assert not verify(make_identity("other").public_key, Purpose.ENVELOPE, b"body", sig)


@pytest.mark.parametrize(
    ("key", "sig"),
    [("nothex", "00" * 64), ("AB" * 32, "00" * 64), ("ab" * 32, "00" * 63), ("ab" * 32, "zz")],
)
def test_verify_never_raises_on_garbage(key: str, sig: str) -> None:
    assert not verify_hex(key, Purpose.ENVELOPE, b"x", sig)


def test_verify_rejects_short_signature() -> None:
    assert not verify(make_identity("a").public_key, Purpose.ENVELOPE, b"x", b"\x00" * 10)


def test_rotation_signed_by_old_and_new() -> None:
    old, new = make_identity("old"), make_identity("new")
    rot = rotate_key(old.public_key, old, new, 1000)
    assert verify_rotation(rot)
    assert KeyRotation.from_dict(rot.to_dict()) == rot
    forged = rotate_key(old.public_key, make_identity("thief"), new, 1000)
    assert not verify_rotation(replace(forged, old_key=old.public_key))
    assert not verify_rotation(replace(rot, effective_ms=1001))
    assert not verify_rotation(replace(rot, new_sig=rot.old_sig))
    assert not verify_rotation(replace(rot, effective_ms=1.5))  # type: ignore[arg-type]


@pytest.mark.parametrize("missing", ["member", "old_sig"])
def test_rotation_from_bad_dict(missing: str) -> None:
    old, new = make_identity("old"), make_identity("new")
    data: dict[str, object] = dict(rotate_key(old.public_key, old, new, 1).to_dict())
    del data[missing]
    assert KeyRotation.from_dict(data) is None
    data[missing] = 5
    assert KeyRotation.from_dict(data) is None


def test_key_ring_rotation_changes_active_key() -> None:
    old, new = make_identity("old"), make_identity("new")
    member = old.public_key
    ring = KeyRing().with_member(member, since_ms=0)
    ring2 = ring.with_rotation(rotate_key(member, old, new, 5000))
    assert ring2.member_of(old.public_key, 4999) == member
    assert ring2.member_of(old.public_key, 5000) is None
    assert ring2.member_of(new.public_key, 5000) == member
    assert ring2.member_of(new.public_key, 4999) is None
    assert ring2.current_home_key(member) == new.public_key
    assert ring.current_home_key(member) == old.public_key
    assert ring2.members() == frozenset({member})
    with pytest.raises(KeyRingError, match="already rotated"):
        ring2.with_rotation(rotate_key(member, old, make_identity("third"), 6000))


def test_key_ring_refuses_bad_rotations() -> None:
    old, new, other = make_identity("old"), make_identity("new"), make_identity("other")
    ring = KeyRing().with_member(old.public_key, 100).with_member(other.public_key)
    with pytest.raises(KeyRingError, match="do not verify"):
        ring.with_rotation(replace(rotate_key(old.public_key, old, new, 200), effective_ms=1))
    with pytest.raises(KeyRingError, match="not a home key"):
        ring.with_rotation(rotate_key(other.public_key, old, new, 200))
    with pytest.raises(KeyRingError, match="already bound"):
        ring.with_rotation(rotate_key(old.public_key, old, other, 200))
    with pytest.raises(KeyRingError, match="predates"):
        ring.with_rotation(rotate_key(old.public_key, old, new, 50))
    with pytest.raises(KeyRingError, match="already bound"):
        ring.with_member(old.public_key)
    with pytest.raises(KeyRingError, match="hex public key"):
        ring.with_member("not a key")


def test_asset_enrolment_binds_asset_to_home() -> None:
    home, plug = make_identity("home"), make_identity("plug")
    member = home.public_key
    enrolment = enrol_asset(member, home, plug, "plug.kitchen", "plug", 10)
    assert verify_enrolment(enrolment)
    assert enrolment.to_dict()["asset_id"] == "plug.kitchen"
    ring = KeyRing().with_member(member).with_enrolment(enrolment)
    binding = ring.resolve(plug.public_key, 10)
    assert binding is not None
    assert binding.role is KeyRole.ASSET
    assert binding.member == member
    assert binding.asset_id == "plug.kitchen"
    assert ring.resolve(plug.public_key, 9) is None
    with pytest.raises(KeyRingError, match="already bound"):
        ring.with_enrolment(enrolment)


def test_enrolment_needs_both_signatures_and_an_active_home_key() -> None:
    home, plug, stranger = make_identity("home"), make_identity("plug"), make_identity("x")
    member = home.public_key
    enrolment = enrol_asset(member, home, plug, "p", "plug", 10)
    assert not verify_enrolment(replace(enrolment, asset_id="other"))
    assert not verify_enrolment(replace(enrolment, asset_sig=enrolment.home_sig))
    assert not verify_enrolment(replace(enrolment, kind=2.0))  # type: ignore[arg-type]
    ring = KeyRing().with_member(member)
    with pytest.raises(KeyRingError, match="do not verify"):
        ring.with_enrolment(replace(enrolment, asset_id="other"))
    with pytest.raises(KeyRingError, match="active home key"):
        ring.with_enrolment(enrol_asset(member, stranger, plug, "p", "plug", 10))
    late_ring = KeyRing().with_member(member, since_ms=100)
    with pytest.raises(KeyRingError, match="active home key"):
        late_ring.with_enrolment(enrolment)
