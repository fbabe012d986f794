"""Sealing: what a home puts on an untrusted broker is encrypted as well as signed.

The protocol's envelopes are signed end to end; on a broker they are also encrypted, so
the broker and its other clients learn nothing but sizes and timing. Two frame kinds:

* **community frame** ``0x01 | key id (8 bytes) | SecretBox(envelope)``: every message to
  the community or to a member, encrypted with the **community key** (XSalsa20-Poly1305,
  a fresh random 24-byte nonce per frame). The key id is the first 8 bytes of the
  SHA-256 of the key, so a receiver picks the right key after a rotation.
* **direct frame** ``0x02 | SealedBox(envelope)``: to one member's key (the Curve25519
  form of its Ed25519 identity key), for what is sent before the receiver holds the
  community key: the ``join`` (to the inviter's key from the invitation) and the
  ``welcome`` with its key grant (to the joiner's key).

The community key travels in a signed **key grant** (an envelope of type ``key``, never a
protocol message): ``{"epoch": int, "key_id": hex, "grants": {member: hex(SealedBox(key))}}``.
The founder creates the key of epoch 0; the sponsor of a joiner grants the current key to
the joiner with the welcome; when a member leaves or is removed, one remaining member
(the one who signed the removal, else the first remaining member in key order) creates the
key of the next epoch and grants it to every remaining member, sealed to each one's key,
so a former member cannot read what follows. A home keeps the last ``KEEP_KEYS`` keys, so
frames sealed just before a rotation still open; it sends with the key of the highest
epoch (ties: the smallest key id, so every home converges on one).

Randomness (new keys, nonces) is passed in or drawn from PyNaCl's CSPRNG; nothing else
here does I/O. Replay, reordering and duplicates are the protocol's business (sequence
numbers, record ids): a frame only hides and authenticates bytes.

Public API: ``CommunityKey``, ``KeyChain``, ``seal_to``, ``open_sealed``, ``KEY_TYPE``,
``FRAME_COMMUNITY``, ``FRAME_DIRECT``, ``SealingError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import hashlib
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.secret import SecretBox
from nacl.signing import SigningKey, VerifyKey
import nacl.utils

from ..trust.canonical import Canonical, CanonicalError, decode
from ..trust.envelope import Envelope, EnvelopePolicy, FieldType, seal, validate
from ..trust.identity import Identity, KeyRing, is_key_hex

FRAME_COMMUNITY = 0x01
FRAME_DIRECT = 0x02
KEY_ID_LEN = 8
KEY_TYPE = "key"
KEEP_KEYS = 8
MAX_FRAME_BYTES = 1100 * 1024  # a protocol message (1 MiB) plus the box's overhead
_GRANT_SCHEMA = {"epoch": FieldType.INT, "key_id": FieldType.STR, "grants": FieldType.OBJECT}


class SealingError(ValueError):
    """A key or grant cannot be used (a local call with wrong input)."""


@dataclass(frozen=True, slots=True)
class CommunityKey:
    """One epoch's symmetric community key (``secret``: 32 random bytes)."""

    epoch: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != SecretBox.KEY_SIZE or self.epoch < 0:
            raise SealingError("a community key is 32 bytes with an epoch >= 0")

    @property
    def key_id(self) -> bytes:
        """First 8 bytes of the key's SHA-256 (names the key in a frame, reveals nothing)."""
        return hashlib.sha256(b"peer-energy/v1/community-key\n" + self.secret).digest()[:8]


def _curve_public(member: str) -> PublicKey:
    return VerifyKey(bytes.fromhex(member)).to_curve25519_public_key()


def _curve_private(identity: Identity) -> PrivateKey:
    return SigningKey(bytes.fromhex(identity.seed_hex())).to_curve25519_private_key()


def seal_to(member: str, data: bytes) -> bytes:
    """``data`` readable only by the holder of ``member``'s identity key."""
    if not is_key_hex(member):
        raise SealingError("not a member key")
    return bytes(SealedBox(_curve_public(member)).encrypt(data))


def open_sealed(identity: Identity, data: bytes) -> bytes | None:
    """Open what ``seal_to`` sealed to this identity (None if it was not, or damaged)."""
    try:
        return bytes(SealedBox(_curve_private(identity)).decrypt(data))
    except (CryptoError, ValueError, TypeError):
        return None


class KeyChain:
    """One home's community keys: sealing and opening frames, granting and accepting keys.

    Not thread-safe; the shell uses it next to its ``Peer`` on one thread.
    """

    def __init__(self, identity: Identity, community: str) -> None:
        """Keys of ``community`` for ``identity`` (none yet: ``create`` or a grant)."""
        self.identity = identity
        self.community = community
        self._curve = _curve_private(identity)
        self._keys: dict[bytes, CommunityKey] = {}
        self._seq = 0

    # -- keys --
    @property
    def current(self) -> CommunityKey | None:
        """The key to send with: the highest epoch, then the smallest key id."""
        if not self._keys:
            return None
        return min(self._keys.values(), key=lambda k: (-k.epoch, k.key_id))

    @property
    def epoch(self) -> int:
        """The current key's epoch (-1 without a key)."""
        current = self.current
        return -1 if current is None else current.epoch

    def add(self, key: CommunityKey) -> bool:
        """Keep ``key`` (the ``KEEP_KEYS`` newest are kept); True if it was new."""
        if key.key_id in self._keys:
            return False
        self._keys[key.key_id] = key
        if len(self._keys) > KEEP_KEYS:
            oldest = min(self._keys.values(), key=lambda k: (k.epoch, k.key_id))
            del self._keys[oldest.key_id]
        return True

    @staticmethod
    def new_key(epoch: int, secret: bytes | None = None) -> CommunityKey:
        """A new key of ``epoch`` (``secret``: 32 random bytes; drawn here if None)."""
        return CommunityKey(epoch, secret if secret is not None else nacl.utils.random(32))

    def create(self, epoch: int, secret: bytes | None = None) -> CommunityKey:
        """``new_key``, kept (and current if its epoch is the highest)."""
        key = self.new_key(epoch, secret)
        self.add(key)
        return key

    # -- persistence (the secrets: keep it in a private store, never log it) --
    def to_dict(self) -> dict[str, Any]:
        """Plain data of the keys held."""
        return {
            "community": self.community,
            "keys": [
                {"epoch": k.epoch, "secret": k.secret.hex()}
                for k in sorted(self._keys.values(), key=lambda k: (k.epoch, k.key_id))
            ],
        }

    @classmethod
    def from_dict(cls, identity: Identity, data: Mapping[str, Any]) -> KeyChain:
        """Rebuild from ``to_dict`` data; ``ValueError`` if it is damaged."""
        try:
            chain = cls(identity, str(data["community"]))
            for raw in data["keys"]:
                chain.add(CommunityKey(int(raw["epoch"]), bytes.fromhex(str(raw["secret"]))))
        except (KeyError, TypeError, SealingError) as err:
            raise ValueError(f"damaged key chain: {err}") from None
        return chain

    def set_community(self, community: str) -> None:
        """The community id (a joiner learns the final one with the welcome)."""
        self.community = community

    # -- frames --
    def seal(self, data: bytes, nonce: bytes | None = None) -> bytes:
        """A community frame of ``data`` with the current key."""
        key = self.current
        if key is None:
            raise SealingError("no community key yet")
        box = SecretBox(key.secret)
        return bytes([FRAME_COMMUNITY]) + key.key_id + bytes(box.encrypt(data, nonce))

    def seal_direct(self, member: str, data: bytes) -> bytes:
        """A direct frame of ``data`` to ``member``'s key."""
        return bytes([FRAME_DIRECT]) + seal_to(member, data)

    def open(self, frame: bytes) -> bytes | None:
        """The bytes inside a frame, or None when it is not for us (unknown key, not
        sealed to us, damaged, too large): such a frame is dropped like noise."""
        if not frame or len(frame) > MAX_FRAME_BYTES:
            return None
        if frame[0] == FRAME_COMMUNITY:
            key = self._keys.get(bytes(frame[1 : 1 + KEY_ID_LEN]))
            if key is None:
                return None
            try:
                return bytes(SecretBox(key.secret).decrypt(bytes(frame[1 + KEY_ID_LEN :])))
            except (CryptoError, ValueError, TypeError):
                return None
        if frame[0] == FRAME_DIRECT:
            try:
                return bytes(SealedBox(self._curve).decrypt(bytes(frame[1:])))
            except (CryptoError, ValueError, TypeError):
                return None
        return None

    # -- grants --
    def grant(self, key: CommunityKey, members: Iterable[str], now_ms: int) -> bytes:
        """A signed key grant: ``key`` sealed to each of ``members``."""
        grants = {m: seal_to(m, key.secret).hex() for m in sorted(set(members))}
        self._seq = max(self._seq + 1, now_ms)
        payload: dict[str, Canonical] = {
            "epoch": key.epoch,
            "key_id": key.key_id.hex(),
            "grants": dict(grants),
        }
        env = seal(
            self.identity,
            community=self.community,
            seq=self._seq,
            ts_ms=now_ms,
            type=KEY_TYPE,
            payload=payload,
        )
        return env.to_wire()

    def accept(self, data: bytes, keyring: KeyRing, now_ms: int) -> CommunityKey | None:
        """Take the key granted to this home from a key grant signed by a key of
        ``keyring`` (a member's; for a joiner, its inviter's). None if ``data`` is no
        valid grant for us (not a grant, a stranger's, not sealed to us, key id wrong)."""
        env = _grant_envelope(data, self.community, keyring, now_ms)
        if env is None:
            return None
        grants = env.payload["grants"]
        sealed = grants.get(self.identity.public_key) if isinstance(grants, Mapping) else None
        if not isinstance(sealed, str) or len(sealed) > 256:
            return None
        try:
            secret = SealedBox(self._curve).decrypt(bytes.fromhex(sealed))
            epoch = env.payload["epoch"]
            assert type(epoch) is int  # checked by _grant_envelope
            key = CommunityKey(epoch, bytes(secret))
        except (CryptoError, ValueError, TypeError):
            return None
        if key.key_id.hex() != env.payload["key_id"]:
            return None
        self.add(key)
        return key


def is_grant(data: bytes) -> bool:
    """Whether ``data`` looks like a key grant (cheap check before ``accept``)."""
    return b'"type":"key"' in data[:MAX_FRAME_BYTES]


def _grant_envelope(data: bytes, community: str, keyring: KeyRing, now_ms: int) -> Envelope | None:
    try:
        value: Any = decode(data)
    except CanonicalError:
        return None
    if not isinstance(value, dict) or value.get("type") != KEY_TYPE:
        return None
    policy = EnvelopePolicy(
        community=community,
        known_types={KEY_TYPE: _GRANT_SCHEMA},
        max_message_bytes=MAX_FRAME_BYTES,
        max_payload_bytes=MAX_FRAME_BYTES,
        max_clock_skew_ms=86_400_000,  # a grant is a statement, replays are harmless
    )
    result = validate(value, policy=policy, keyring=keyring, now_ms=now_ms)
    epoch = value.get("payload", {}).get("epoch") if result.envelope is not None else None
    if result.envelope is None or type(epoch) is not int or epoch < 0:
        return None
    return result.envelope
