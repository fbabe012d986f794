"""The sealing layer: community frames, direct frames, key grants, persistence."""

from __future__ import annotations

import hashlib

import pytest

from custom_components.peer_energy.core.federation.sealing import (
    FRAME_COMMUNITY,
    FRAME_DIRECT,
    KEEP_KEYS,
    CommunityKey,
    KeyChain,
    SealingError,
    open_sealed,
    seal_to,
)
from custom_components.peer_energy.core.trust.identity import KeyRing

from .helpers import make_identity

COMMUNITY = "c" * 32
NOW = 1_800_000_000_000


def _secret(i: int) -> bytes:
    return hashlib.sha256(f"k{i}".encode()).digest()


def test_community_frame_roundtrip_and_wrong_key() -> None:
    a = KeyChain(make_identity("a"), COMMUNITY)
    b = KeyChain(make_identity("b"), COMMUNITY)
    outsider = KeyChain(make_identity("x"), COMMUNITY)
    key = a.create(0, _secret(0))
    b.add(key)
    outsider.create(0, _secret(99))
    frame = a.seal(b'{"type":"bid"}')
    assert frame[0] == FRAME_COMMUNITY
    assert b"bid" not in frame
    assert b.open(frame) == b'{"type":"bid"}'
    assert outsider.open(frame) is None  # another key: dropped like noise
    damaged = frame[:-1] + bytes([frame[-1] ^ 1])
    assert b.open(damaged) is None
    assert b.open(b"") is None
    assert b.open(b"\x07garbage") is None
    # two frames of the same bytes differ (fresh nonce)
    assert a.seal(b"x") != a.seal(b"x")


def test_no_key_no_frame() -> None:
    chain = KeyChain(make_identity("a"), COMMUNITY)
    assert chain.current is None
    assert chain.epoch == -1
    with pytest.raises(SealingError):
        chain.seal(b"x")
    with pytest.raises(SealingError):
        CommunityKey(0, b"short")


def test_direct_frame_only_for_its_member() -> None:
    alice, bob = make_identity("a"), make_identity("b")
    chain = KeyChain(alice, COMMUNITY)
    frame = chain.seal_direct(bob.public_key, b"welcome")
    assert frame[0] == FRAME_DIRECT
    assert KeyChain(bob, COMMUNITY).open(frame) == b"welcome"
    assert KeyChain(alice, COMMUNITY).open(frame) is None
    assert open_sealed(bob, seal_to(bob.public_key, b"k")) == b"k"
    assert open_sealed(alice, b"not sealed") is None
    with pytest.raises(SealingError):
        seal_to("nokey", b"x")


def test_newest_epoch_is_current_and_old_keys_still_open() -> None:
    chain = KeyChain(make_identity("a"), COMMUNITY)
    k0 = chain.create(0, _secret(0))
    old_frame = chain.seal(b"before")
    k1 = chain.create(1, _secret(1))
    assert chain.current == k1
    assert chain.epoch == 1
    assert chain.open(old_frame) == b"before"
    assert not chain.add(k0)  # already held
    # two keys of one epoch: every home picks the smaller key id
    other = KeyChain.new_key(1, _secret(2))
    chain.add(other)
    assert chain.current == min((k1, other), key=lambda k: k.key_id)
    for i in range(3, 3 + KEEP_KEYS):
        chain.create(i, _secret(i))
    assert chain.open(old_frame) is None  # the oldest keys are forgotten


def test_grant_for_members_only() -> None:
    alice, bob, carol, mallory = (make_identity(n) for n in ("a", "b", "c", "m"))
    ring = KeyRing().with_member(alice.public_key).with_member(bob.public_key)
    a = KeyChain(alice, COMMUNITY)
    key = a.create(3, _secret(3))
    grant = a.grant(key, [bob.public_key], NOW)
    assert key.secret not in grant
    assert key.secret.hex().encode() not in grant
    b = KeyChain(bob, COMMUNITY)
    assert b.accept(grant, ring, NOW) == key
    assert b.current == key
    # not granted to carol
    assert KeyChain(carol, COMMUNITY).accept(grant, ring, NOW) is None
    # a grant signed by a non-member is refused
    m = KeyChain(mallory, COMMUNITY)
    forged = m.grant(m.create(9, _secret(9)), [bob.public_key], NOW)
    assert KeyChain(bob, COMMUNITY).accept(forged, ring, NOW) is None
    # garbage and other types
    assert b.accept(b"{]", ring, NOW) is None
    assert b.accept(b'{"type":"bid"}', ring, NOW) is None
    # a grant of another community
    other = KeyChain(alice, "d" * 32)
    assert b.accept(other.grant(key, [bob.public_key], NOW), ring, NOW) is None


def test_grant_with_a_wrong_key_id_is_refused() -> None:
    alice, bob = make_identity("a"), make_identity("b")
    ring = KeyRing().with_member(alice.public_key)
    a = KeyChain(alice, COMMUNITY)
    key = a.create(0, _secret(0))
    liar = CommunityKey(0, _secret(5))
    grant = a.grant(key, [bob.public_key], NOW)
    fake = grant.replace(key.key_id.hex().encode(), liar.key_id.hex().encode())
    assert KeyChain(bob, COMMUNITY).accept(fake, ring, NOW) is None  # signature breaks
    assert KeyChain(bob, COMMUNITY).accept(grant, ring, NOW) == key


def test_key_chain_persists() -> None:
    alice = make_identity("a")
    chain = KeyChain(alice, COMMUNITY)
    chain.create(0, _secret(0))
    chain.create(1, _secret(1))
    frame = chain.seal(b"x")
    data = chain.to_dict()
    assert "seed" not in str(data)
    again = KeyChain.from_dict(alice, data)
    assert again.current == chain.current
    assert again.open(frame) == b"x"
    with pytest.raises(ValueError, match="damaged"):
        KeyChain.from_dict(alice, {"community": COMMUNITY, "keys": [{"epoch": 0}]})
    with pytest.raises(ValueError, match="damaged"):
        KeyChain.from_dict(alice, {"community": COMMUNITY, "keys": [{"epoch": 0, "secret": "00"}]})
