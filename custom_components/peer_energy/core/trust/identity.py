"""Ed25519 identities: homes, key rotation and asset enrolment.

A home is identified for life by its *member id*: the hex public key it was created
with (its genesis key). Its *signing key* may later change through a key rotation,
which the old key signs (authorisation) and the new key countersigns (proof of
possession). An asset (inverter, battery, charger, plug) gets its own key pair once
its owner enrols it: the home signs an enrolment record binding the asset key to the
home, and the asset key countersigns it.

Every signature in the project is taken over ``DOMAIN_PREFIX + purpose + canonical
bytes``, so a signature made for one purpose (an envelope, a chain entry, a trade)
can never be replayed as another.

Secrets: ``Identity`` keeps its seed out of ``repr`` and offers ``seed_hex()`` only
for the storage adapter. Nothing here logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
import re
from types import MappingProxyType

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from .canonical import CanonicalError, canonical_bytes

DOMAIN_PREFIX = b"peer-energy/v1/"
KEY_HEX_LEN = 64
SIG_HEX_LEN = 128
SEED_LEN = 32


class Purpose(StrEnum):
    """What a signature is for (domain separation)."""

    ENVELOPE = "envelope"
    ENTRY = "entry"
    TRADE = "trade"
    TRANSFER = "transfer"
    DELIVERY = "delivery"
    ROTATION = "rotation"
    ENROLMENT = "enrolment"
    HEAD = "head"


def signing_bytes(purpose: Purpose, body: bytes) -> bytes:
    """The exact bytes that get signed for ``purpose`` over canonical ``body``."""
    return DOMAIN_PREFIX + purpose.value.encode("ascii") + b"\n" + body


def is_key_hex(value: object) -> bool:
    """True if ``value`` is a lowercase 64-character hex string (a public key)."""
    return isinstance(value, str) and len(value) == KEY_HEX_LEN and _is_lower_hex(value)


def is_sig_hex(value: object) -> bool:
    """True if ``value`` is a lowercase 128-character hex string (a signature)."""
    return isinstance(value, str) and len(value) == SIG_HEX_LEN and _is_lower_hex(value)


_LOWER_HEX = re.compile(r"[0-9a-f]*")


def _is_lower_hex(value: str) -> bool:
    return _LOWER_HEX.fullmatch(value) is not None


_VERIFY_CACHE: dict[str, VerifyKey] = {}


def _verify_key(public_key: str, *, cache: bool = True) -> VerifyKey | None:
    key = _VERIFY_CACHE.get(public_key)
    if key is None:
        if not is_key_hex(public_key):
            return None
        try:
            key = VerifyKey(bytes.fromhex(public_key))
        except (CryptoError, ValueError, TypeError):  # pragma: no cover - 32 bytes always load
            return None
        if cache:
            if len(_VERIFY_CACHE) > 4096:
                _VERIFY_CACHE.clear()
            _VERIFY_CACHE[public_key] = key
    return key


def verify(
    public_key: str, purpose: Purpose, body: bytes, signature: bytes, *, cache: bool = True
) -> bool:
    """Check a detached signature; never raises. ``cache=False``: do not keep the loaded
    key (a stranger's, which must cost no memory)."""
    key = _verify_key(public_key, cache=cache)
    if key is None or len(signature) != 64:
        return False
    try:
        key.verify(signing_bytes(purpose, body), signature)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def verify_hex(
    public_key: str, purpose: Purpose, body: bytes, signature_hex: str, *, cache: bool = True
) -> bool:
    """Like ``verify`` with the signature as hex; never raises."""
    if not is_sig_hex(signature_hex):
        return False
    return verify(public_key, purpose, body, bytes.fromhex(signature_hex), cache=cache)


@dataclass(frozen=True, slots=True)
class Identity:
    """An Ed25519 key pair. The seed is secret and never shown in ``repr``."""

    _seed: bytes = field(repr=False)
    public_key: str = field(init=False)
    _signer: SigningKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self._seed, bytes) or len(self._seed) != SEED_LEN:
            raise ValueError("an identity seed is 32 bytes")
        signer = SigningKey(self._seed)
        object.__setattr__(self, "_signer", signer)
        object.__setattr__(self, "public_key", signer.verify_key.encode().hex())

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random key pair."""
        return cls(bytes(SigningKey.generate()))

    @classmethod
    def from_seed_hex(cls, seed_hex: str) -> Identity:
        """Rebuild from the stored seed; ``ValueError`` if malformed."""
        try:
            seed = bytes.fromhex(seed_hex)
        except (ValueError, TypeError) as err:
            raise ValueError("stored identity seed is not hex") from err
        return cls(seed)

    def seed_hex(self) -> str:
        """The secret seed, for the key store only. Never log it."""
        return self._seed.hex()

    def sign(self, purpose: Purpose, body: bytes) -> bytes:
        """Detached signature over ``body`` for ``purpose``."""
        return self._signer.sign(signing_bytes(purpose, body)).signature

    def sign_hex(self, purpose: Purpose, body: bytes) -> str:
        """Detached signature as lowercase hex."""
        return self.sign(purpose, body).hex()


@dataclass(frozen=True, slots=True)
class KeyRotation:
    """The home ``member`` replaces ``old_key`` by ``new_key`` from ``effective_ms`` on."""

    member: str
    old_key: str
    new_key: str
    effective_ms: int
    old_sig: str
    new_sig: str

    def body(self) -> bytes:
        """Canonical bytes both signatures cover."""
        return canonical_bytes(
            {
                "member": self.member,
                "old_key": self.old_key,
                "new_key": self.new_key,
                "effective_ms": self.effective_ms,
            }
        )

    def to_dict(self) -> dict[str, str | int]:
        """Plain data for the wire or a chain entry body."""
        return {
            "member": self.member,
            "old_key": self.old_key,
            "new_key": self.new_key,
            "effective_ms": self.effective_ms,
            "old_sig": self.old_sig,
            "new_sig": self.new_sig,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> KeyRotation | None:
        """Parse plain data; ``None`` if any field is missing or of the wrong type."""
        try:
            rot = cls(
                member=_str(data["member"]),
                old_key=_str(data["old_key"]),
                new_key=_str(data["new_key"]),
                effective_ms=_int(data["effective_ms"]),
                old_sig=_str(data["old_sig"]),
                new_sig=_str(data["new_sig"]),
            )
        except (KeyError, TypeError):
            return None
        return rot


def rotate_key(member: str, old: Identity, new: Identity, effective_ms: int) -> KeyRotation:
    """Announce ``new`` as the signing key of ``member``, signed by ``old`` and ``new``."""
    unsigned = KeyRotation(member, old.public_key, new.public_key, effective_ms, "", "")
    body = unsigned.body()
    return KeyRotation(
        member,
        old.public_key,
        new.public_key,
        effective_ms,
        old.sign_hex(Purpose.ROTATION, body),
        new.sign_hex(Purpose.ROTATION, body),
    )


def verify_rotation(rotation: KeyRotation) -> bool:
    """Both signatures valid, keys well-formed and different; never raises."""
    try:
        body = rotation.body()
    except CanonicalError:
        return False
    return (
        is_key_hex(rotation.member)
        and rotation.old_key != rotation.new_key
        and verify_hex(rotation.old_key, Purpose.ROTATION, body, rotation.old_sig)
        and verify_hex(rotation.new_key, Purpose.ROTATION, body, rotation.new_sig)
    )


@dataclass(frozen=True, slots=True)
class AssetEnrolment:
    """The home ``member`` (signing with ``home_key``) owns the asset holding ``asset_key``."""

    member: str
    home_key: str
    asset_key: str
    asset_id: str
    kind: str
    enrolled_ms: int
    home_sig: str
    asset_sig: str

    def body(self) -> bytes:
        """Canonical bytes both signatures cover."""
        return canonical_bytes(
            {
                "member": self.member,
                "home_key": self.home_key,
                "asset_key": self.asset_key,
                "asset_id": self.asset_id,
                "kind": self.kind,
                "enrolled_ms": self.enrolled_ms,
            }
        )

    def to_dict(self) -> dict[str, str | int]:
        """Plain data for the wire or a chain entry body."""
        return {
            "member": self.member,
            "home_key": self.home_key,
            "asset_key": self.asset_key,
            "asset_id": self.asset_id,
            "kind": self.kind,
            "enrolled_ms": self.enrolled_ms,
            "home_sig": self.home_sig,
            "asset_sig": self.asset_sig,
        }


def enrol_asset(
    member: str,
    home: Identity,
    asset: Identity,
    asset_id: str,
    kind: str,
    enrolled_ms: int,
) -> AssetEnrolment:
    """Bind ``asset`` to the home; the home authorises, the asset proves possession."""
    unsigned = AssetEnrolment(
        member, home.public_key, asset.public_key, asset_id, kind, enrolled_ms, "", ""
    )
    body = unsigned.body()
    return AssetEnrolment(
        member,
        home.public_key,
        asset.public_key,
        asset_id,
        kind,
        enrolled_ms,
        home.sign_hex(Purpose.ENROLMENT, body),
        asset.sign_hex(Purpose.ENROLMENT, body),
    )


def verify_enrolment(enrolment: AssetEnrolment) -> bool:
    """Both signatures valid; never raises. (Whether ``home_key`` belongs to ``member``
    at that time is the key ring's question.)"""
    try:
        body = enrolment.body()
    except CanonicalError:
        return False
    return (
        is_key_hex(enrolment.member)
        and enrolment.home_key != enrolment.asset_key
        and verify_hex(enrolment.home_key, Purpose.ENROLMENT, body, enrolment.home_sig)
        and verify_hex(enrolment.asset_key, Purpose.ENROLMENT, body, enrolment.asset_sig)
    )


class KeyRole(StrEnum):
    """Whom a key speaks for."""

    HOME = "home"
    ASSET = "asset"


@dataclass(frozen=True, slots=True)
class KeyBinding:
    """``key`` speaks for ``member`` from ``since_ms`` until ``until_ms`` (exclusive)."""

    key: str
    member: str
    role: KeyRole
    since_ms: int
    until_ms: int | None = None
    asset_id: str = ""

    def active_at(self, at_ms: int) -> bool:
        """True if the key may sign at ``at_ms``."""
        return self.since_ms <= at_ms and (self.until_ms is None or at_ms < self.until_ms)


class KeyRingError(ValueError):
    """A rotation or enrolment cannot be applied to the key ring."""


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Who is who in a community: every key ever bound to a member, with its validity."""

    bindings: Mapping[str, KeyBinding] = field(default_factory=lambda: MappingProxyType({}))

    def resolve(self, key: str, at_ms: int | None = None) -> KeyBinding | None:
        """The binding of ``key``; with ``at_ms``, only if it was active then."""
        binding = self.bindings.get(key)
        if binding is None or (at_ms is not None and not binding.active_at(at_ms)):
            return None
        return binding

    def member_of(self, key: str, at_ms: int | None = None) -> str | None:
        """The member ``key`` speaks for (at ``at_ms``), else ``None``."""
        binding = self.resolve(key, at_ms)
        return None if binding is None else binding.member

    def current_home_key(self, member: str) -> str | None:
        """The member's home key that is active now (has no end)."""
        for binding in self.bindings.values():
            if (
                binding.member == member
                and binding.role is KeyRole.HOME
                and binding.until_ms is None
            ):
                return binding.key
        return None

    def members(self) -> frozenset[str]:
        """All member ids in the ring."""
        return frozenset(b.member for b in self.bindings.values())

    def _with(self, *bindings: KeyBinding) -> KeyRing:
        merged = dict(self.bindings)
        for binding in bindings:
            merged[binding.key] = binding
        return KeyRing(MappingProxyType(merged))

    def with_member(self, member: str, since_ms: int = 0) -> KeyRing:
        """Admit a home whose member id is its genesis key."""
        if not is_key_hex(member):
            raise KeyRingError("a member id is a 64-character hex public key")
        if member in self.bindings:
            raise KeyRingError("key already bound")
        return self._with(KeyBinding(member, member, KeyRole.HOME, since_ms))

    def with_rotation(self, rotation: KeyRotation) -> KeyRing:
        """Apply a verified rotation: the old key ends, the new key begins."""
        if not verify_rotation(rotation):
            raise KeyRingError("rotation signatures do not verify")
        old = self.bindings.get(rotation.old_key)
        if old is None or old.member != rotation.member or old.role is not KeyRole.HOME:
            raise KeyRingError("old key is not a home key of this member")
        if old.until_ms is not None:
            raise KeyRingError("old key was already rotated away")
        if rotation.new_key in self.bindings:
            raise KeyRingError("new key already bound")
        if rotation.effective_ms < old.since_ms:
            raise KeyRingError("rotation predates the old key")
        ended = KeyBinding(old.key, old.member, old.role, old.since_ms, rotation.effective_ms)
        started = KeyBinding(rotation.new_key, rotation.member, KeyRole.HOME, rotation.effective_ms)
        return self._with(ended, started)

    def with_enrolment(self, enrolment: AssetEnrolment) -> KeyRing:
        """Apply a verified asset enrolment signed by an active home key of the member."""
        if not verify_enrolment(enrolment):
            raise KeyRingError("enrolment signatures do not verify")
        home = self.resolve(enrolment.home_key, enrolment.enrolled_ms)
        if home is None or home.member != enrolment.member or home.role is not KeyRole.HOME:
            raise KeyRingError("enrolment is not signed by an active home key of the member")
        if enrolment.asset_key in self.bindings:
            raise KeyRingError("asset key already bound")
        return self._with(
            KeyBinding(
                enrolment.asset_key,
                enrolment.member,
                KeyRole.ASSET,
                enrolment.enrolled_ms,
                asset_id=enrolment.asset_id,
            )
        )


def _str(value: object) -> str:
    if type(value) is not str:
        raise TypeError("expected str")
    return value


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError("expected int")
    return value
