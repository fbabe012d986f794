"""A community: its charter and rules, invitations, and who is a member when.

* **Charter** (``Charter``): name, founder, creation time, a nonce, the ``CommunityRules``
  and the admins. The **community id** is the first 32 hex characters of the SHA-256 of the
  charter's canonical bytes, so a charter is authenticated by the id alone (no signature).
  Rules and admins are fixed for the life of the community (changing them means founding a
  new community).
* **Rules** (``CommunityRules``): the market rules every peer clears with (slot length, fee,
  fair-share cap, grid prices), the gate closure lead, the protocol windows, the credit limit
  base, the maximum number of members and the attestation quorum.
* **Invitation** (``Invitation``): one copyable string ``"peerenergy1:" + base64url(canonical
  JSON)`` (no padding) carrying the community id, the inviter's key and address, a one-time
  32-byte secret and an expiry. The joiner proves it knows the secret with
  ``HMAC-SHA256(secret, "peer-energy/v1/join\\n" + canonical({community, member, address,
  invitation}))``: the proof binds the joiner's own key and address and reveals nothing about
  the secret. The secret is identified by ``invitation_id`` (a hash of it).
* **Membership** (``Membership``): the key ring of the community (who speaks for whom, since
  and until when), member addresses, admins and the signed membership records (``member``,
  ``leave``, ``remove``, ``address``, ``enrol`` envelopes, see ``docs/protocol.md``) that a
  sponsor hands to a newcomer. The protocol verifies the envelopes; this module applies them.

Public API: ``CommunityRules``, ``Charter``, ``Invitation``, ``Membership``,
``CommunityError``, ``InvitationError``, ``join_proof``, ``INVITATION_PREFIX``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
import hashlib
import hmac
from types import MappingProxyType
from typing import Any

from ..market.orders import MarketRules, OrderError
from ..trust.canonical import CanonicalError, canonical_bytes, decode, digest, digest_of
from ..trust.credit import DEFAULT_BASE_LIMIT
from ..trust.identity import KeyBinding, KeyRing, KeyRingError, KeyRole, is_key_hex

INVITATION_PREFIX = "peerenergy1:"
SECRET_LEN = 32
MAX_ADDRESS_LEN = 512
MAX_NAME_LEN = 100
# A member's display name (what neighbours see instead of its short id).
MAX_DISPLAY_NAME_LEN = 40
COMMUNITY_ID_HEX = 32
_JOIN_CONTEXT = b"peer-energy/v1/join\n"


class CommunityError(ValueError):
    """Rules, a charter or a membership change is invalid."""


_HTTP_FIELDS = frozenset({"c", "i", "a", "s", "e"})
_BROKER_FIELDS = _HTTP_FIELDS | {"b", "p"}


class InvitationError(ValueError):
    """An invitation string cannot be used."""


MAX_MEMBERS = 10_000  # with the order bounds, a slot's book stays within MAX_SLOT_ENERGY_WH
MAX_WINDOW_MS = 3_600_000
MAX_CREDIT = 10**15  # milli-minor units


def _int(data: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    value = data.get(name, default)
    if type(value) is not int or value < minimum:
        raise CommunityError(f"rules.{name} must be an integer >= {minimum}")
    return value


@dataclass(frozen=True, slots=True)
class CommunityRules:
    """Rules every member applies identically (all integers).

    ``gate_closure_lead_s``: orders for a slot close this many seconds before it starts.
    ``sync_window_ms``: after gate closure, peers exchange digests this long.
    ``attest_window_ms``: then they exchange attestations; a slot without a quorum of
    matching attestations by its end is void. ``quorum_bp``: share of the slot's roster (in
    basis points, more than 5000) whose attestations make a result final.
    ``credit_limit_base``: credit limit of every member in milli-minor units (orders that
    could spend more than balance + limit are refused at admission).
    """

    market: MarketRules = field(default_factory=MarketRules)
    gate_closure_lead_s: int = 60
    sync_window_ms: int = 10_000
    attest_window_ms: int = 10_000
    credit_limit_base: int = DEFAULT_BASE_LIMIT
    max_members: int = 100
    quorum_bp: int = 5001

    def __post_init__(self) -> None:
        """Check the windows fit before the slot starts and the quorum is a majority."""
        if self.gate_closure_lead_s < 1:
            raise CommunityError("gate closure lead must be at least 1 s")
        if self.sync_window_ms < 1 or self.attest_window_ms < 1:
            raise CommunityError("protocol windows must be positive")
        if self.sync_window_ms + self.attest_window_ms > self.gate_closure_lead_s * 1000:
            raise CommunityError("sync and attestation windows must end before the slot starts")
        if not 5000 < self.quorum_bp <= 10_000:
            raise CommunityError("quorum must be more than half (5001..10000 basis points)")
        if not 2 <= self.max_members <= MAX_MEMBERS:
            raise CommunityError(f"a community has room for 2..{MAX_MEMBERS} members")
        if not 0 <= self.credit_limit_base <= MAX_CREDIT:
            raise CommunityError(f"credit limit base must be in 0..{MAX_CREDIT}")
        if (
            self.gate_closure_lead_s > 86_400
            or max(self.sync_window_ms, self.attest_window_ms) > MAX_WINDOW_MS
        ):
            raise CommunityError("gate closure lead and protocol windows are too long")
        try:
            self.market.check()
        except OrderError as err:
            raise CommunityError(str(err)) from None

    @property
    def slot_seconds(self) -> int:
        """Slot length in seconds."""
        return self.market.slot_seconds

    @property
    def fee(self) -> int:
        """Distributor fee in minor units per kWh, paid by buyers."""
        return self.market.distributor_fee

    @property
    def fair_share_bp(self) -> int:
        """Fair-share cap: most one seller may fill of a slot, in basis points."""
        return self.market.fair_share_bp

    def gate_closure_ms(self, slot: int) -> int:
        """Gate closure of the slot starting at ``slot`` (Unix seconds), in Unix ms."""
        return (slot - self.gate_closure_lead_s) * 1000

    def quorum(self, roster_size: int) -> int:
        """Matching attestations needed for a roster of ``roster_size`` members."""
        return max(1, -(-roster_size * self.quorum_bp // 10_000))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (canonical)."""
        return {
            "market": self.market.to_dict(),
            "gate_closure_lead_s": self.gate_closure_lead_s,
            "sync_window_ms": self.sync_window_ms,
            "attest_window_ms": self.attest_window_ms,
            "credit_limit_base": self.credit_limit_base,
            "max_members": self.max_members,
            "quorum_bp": self.quorum_bp,
        }

    @classmethod
    def from_dict(cls, data: object) -> CommunityRules:
        """Parse and validate; raises ``CommunityError``."""
        if not isinstance(data, Mapping):
            raise CommunityError("rules must be an object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise CommunityError(f"rules has unknown fields: {', '.join(sorted(unknown))}")
        try:
            market = MarketRules.from_dict(data.get("market", {}))
        except OrderError as err:
            raise CommunityError(str(err)) from None
        d = cls()
        return cls(
            market=market,
            gate_closure_lead_s=_int(data, "gate_closure_lead_s", d.gate_closure_lead_s, 1),
            sync_window_ms=_int(data, "sync_window_ms", d.sync_window_ms, 1),
            attest_window_ms=_int(data, "attest_window_ms", d.attest_window_ms, 1),
            credit_limit_base=_int(data, "credit_limit_base", d.credit_limit_base, 0),
            max_members=_int(data, "max_members", d.max_members, 2),
            quorum_bp=_int(data, "quorum_bp", d.quorum_bp, 5001),
        )


@dataclass(frozen=True, slots=True)
class Charter:
    """The founding document; its hash is the community id."""

    name: str
    founder: str
    created_ms: int
    nonce: str
    rules: CommunityRules = field(default_factory=CommunityRules)
    admins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Validate names, keys and the admin list (the founder is always an admin)."""
        if not isinstance(self.name, str) or not 0 < len(self.name) <= MAX_NAME_LEN:
            raise CommunityError(f"community name must be 1..{MAX_NAME_LEN} characters")
        if not is_key_hex(self.founder):
            raise CommunityError("founder must be a member id (64 hex)")
        if type(self.created_ms) is not int or self.created_ms < 0:
            raise CommunityError("created_ms must be a non-negative integer")
        if not isinstance(self.nonce, str) or len(self.nonce) > 64:
            raise CommunityError("nonce must be a string of at most 64 characters")
        if not all(is_key_hex(a) for a in self.admins):
            raise CommunityError("admins must be member ids")
        admins = tuple(sorted(set(self.admins) | {self.founder}))
        object.__setattr__(self, "admins", admins)

    @property
    def community_id(self) -> str:
        """32 hex characters of the SHA-256 of the canonical charter."""
        return digest_of(self.to_dict()).hex()[:COMMUNITY_ID_HEX]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (canonical)."""
        return {
            "name": self.name,
            "founder": self.founder,
            "created_ms": self.created_ms,
            "nonce": self.nonce,
            "rules": self.rules.to_dict(),
            "admins": list(self.admins),
        }

    @classmethod
    def from_dict(cls, data: object) -> Charter:
        """Parse and validate; raises ``CommunityError``."""
        if not isinstance(data, Mapping):
            raise CommunityError("charter must be an object")
        try:
            admins = data.get("admins", [])
            if not isinstance(admins, list):
                raise CommunityError("charter.admins must be a list")
            return cls(
                name=data["name"],
                founder=data["founder"],
                created_ms=data["created_ms"],
                nonce=data["nonce"],
                rules=CommunityRules.from_dict(data.get("rules", {})),
                admins=tuple(admins),
            )
        except KeyError as err:
            raise CommunityError(f"charter field {err} missing") from None


# --- Invitations ------------------------------------------------------------------------


def join_proof(secret: bytes, community: str, member: str, address: str, invitation: str) -> str:
    """HMAC proving knowledge of ``secret``, bound to the joiner's key and address."""
    body = canonical_bytes(
        {"community": community, "member": member, "address": address, "invitation": invitation}
    )
    return hmac.new(secret, _JOIN_CONTEXT + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Invitation:
    """A one-time invitation. ``secret`` is 32 bytes; keep the string private.

    On a broker community ``broker`` is the broker's URL (``mqtt://`` or ``mqtts://``,
    never with credentials) and ``prefix`` its topic prefix: what a joiner needs besides
    the inviter's address (``mqtt:<inbox>``). Both are empty for an HTTP community, whose
    invitations keep the five fields of before.
    """

    community: str
    inviter: str
    address: str
    secret: bytes = field(repr=False)
    expires_ms: int
    broker: str = ""
    prefix: str = ""

    def __post_init__(self) -> None:
        """Validate every field."""
        if not isinstance(self.community, str) or len(self.community) != COMMUNITY_ID_HEX:
            raise InvitationError("invitation community id is malformed")
        if not is_key_hex(self.inviter):
            raise InvitationError("invitation inviter is not a member id")
        if not isinstance(self.address, str) or not 0 < len(self.address) <= MAX_ADDRESS_LEN:
            raise InvitationError("invitation address is malformed")
        if not isinstance(self.secret, bytes) or len(self.secret) != SECRET_LEN:
            raise InvitationError("invitation secret must be 32 bytes")
        if type(self.expires_ms) is not int or self.expires_ms < 0:
            raise InvitationError("invitation expiry is malformed")
        for value in (self.broker, self.prefix):
            if not isinstance(value, str) or len(value) > MAX_ADDRESS_LEN:
                raise InvitationError("invitation broker is malformed")
        if bool(self.broker) != bool(self.prefix) or "@" in self.broker:
            raise InvitationError("invitation broker is malformed")
        if self.broker and not self.broker.startswith(("mqtt://", "mqtts://")):
            raise InvitationError("invitation broker is malformed")

    @property
    def transport(self) -> str:
        """``mqtt`` for a broker community, else ``http``."""
        return "mqtt" if self.broker else "http"

    @property
    def invitation_id(self) -> str:
        """Public identifier of the secret (hash), used in the join request."""
        return digest(b"invitation\n" + self.secret).hex()[:32]

    def expired(self, now_ms: int) -> bool:
        """True once ``now_ms`` is past the expiry."""
        return now_ms > self.expires_ms

    def proof(self, member: str, address: str) -> str:
        """The joiner's proof of knowledge of the secret."""
        return join_proof(self.secret, self.community, member, address, self.invitation_id)

    def check_proof(self, member: str, address: str, proof: str) -> bool:
        """Constant-time comparison of a joiner's proof (any string: a non-ASCII one is
        simply wrong)."""
        return proof.isascii() and hmac.compare_digest(self.proof(member, address), proof)

    def encode(self) -> str:
        """The copyable string."""
        fields: dict[str, Any] = {
            "c": self.community,
            "i": self.inviter,
            "a": self.address,
            "s": self.secret.hex(),
            "e": self.expires_ms,
        }
        if self.broker:
            fields |= {"b": self.broker, "p": self.prefix}
        body = canonical_bytes(fields)
        return INVITATION_PREFIX + base64.urlsafe_b64encode(body).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Invitation:
        """Parse a pasted invitation (whitespace around it is ignored)."""
        if not isinstance(text, str):
            raise InvitationError("an invitation is text")
        text = "".join(text.split())
        if not text.startswith(INVITATION_PREFIX):
            raise InvitationError(f"an invitation starts with {INVITATION_PREFIX!r}")
        raw = text[len(INVITATION_PREFIX) :]
        try:
            body = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            data = decode(body)
        except (binascii.Error, ValueError, CanonicalError):
            raise InvitationError("invitation text is damaged (copy it again)") from None
        if not isinstance(data, dict) or set(data) not in (_HTTP_FIELDS, _BROKER_FIELDS):
            raise InvitationError("invitation has the wrong fields")
        secret_hex = data["s"]
        if not isinstance(secret_hex, str):
            raise InvitationError("invitation secret is malformed")
        try:
            secret = bytes.fromhex(secret_hex)
        except ValueError:
            raise InvitationError("invitation secret is malformed") from None
        return cls(
            data["c"],  # type: ignore[arg-type]
            data["i"],  # type: ignore[arg-type]
            data["a"],  # type: ignore[arg-type]
            secret,
            data["e"],  # type: ignore[arg-type]
            data.get("b", ""),  # type: ignore[arg-type]
            data.get("p", ""),  # type: ignore[arg-type]
        )


# --- Membership -------------------------------------------------------------------------


class Membership:
    """Who is a member when, their addresses, and the records that say so.

    Mutable state holder owned by one protocol peer. Every change method checks and
    raises ``CommunityError`` without changing anything when the change is not allowed.
    """

    def __init__(self, charter: Charter, founder_address: str = "") -> None:
        """Start with the founder as the only member (since the charter's creation)."""
        self.charter = charter
        self.community = charter.community_id
        self.keyring = KeyRing().with_member(charter.founder, charter.created_ms)
        self.addresses: dict[str, str] = {}
        if founder_address:
            self.addresses[charter.founder] = founder_address
        self.sponsors: dict[str, str] = {charter.founder: ""}
        # Display names members chose for themselves: member -> (signed at, name).
        self.names: dict[str, tuple[int, str]] = {}
        self.records: dict[str, dict[str, Any]] = {}  # record id -> envelope dict, in order
        self._rosters: dict[int | None, tuple[str, ...]] = {}

    @property
    def admins(self) -> tuple[str, ...]:
        """Members allowed to remove others."""
        return self.charter.admins

    def is_member(self, member: str, at_ms: int | None = None) -> bool:
        """True if ``member`` is (or was at ``at_ms``) a member."""
        binding = self.keyring.resolve(member, at_ms)
        if binding is None or binding.member != member:
            return False
        if at_ms is None:
            return binding.until_ms is None
        return True

    def member_of(self, key: str, at_ms: int | None = None) -> str | None:
        """The member a key speaks for (at ``at_ms``)."""
        return self.keyring.member_of(key, at_ms)

    def roster(self, at_ms: int | None = None) -> tuple[str, ...]:
        """Sorted member ids active at ``at_ms`` (now, without it)."""
        cached = self._rosters.get(at_ms)
        if cached is None:
            if len(self._rosters) > 256:
                self._rosters.clear()
            members = self.keyring.members()
            cached = tuple(sorted(m for m in members if self.is_member(m, at_ms)))
            self._rosters[at_ms] = cached
        return cached

    def add(self, member: str, address: str, sponsor: str, since_ms: int) -> None:
        """Admit ``member`` sponsored by a member active at ``since_ms``."""
        if not is_key_hex(member):
            raise CommunityError("a member id is a 64-hex public key")
        _check_address(address)
        if not self.is_member(sponsor, since_ms):
            raise CommunityError("sponsor is not a member")
        if member in self.keyring.bindings:
            raise CommunityError("already a member (or a former member's key)")
        if len(self.roster(since_ms)) >= self.charter.rules.max_members:
            raise CommunityError("the community is full")
        self._rosters.clear()
        try:
            self.keyring = self.keyring.with_member(member, since_ms)
        except KeyRingError as err:  # pragma: no cover - checked above
            raise CommunityError(str(err)) from None
        self.addresses[member] = address
        self.sponsors[member] = sponsor

    def end(self, member: str, by: str, at_ms: int) -> None:
        """``member`` leaves (``by == member``) or is removed by an admin at ``at_ms``."""
        if not self.is_member(member) or not self.is_member(member, at_ms):
            raise CommunityError("not a current member")
        if by != member and not (by in self.admins and self.is_member(by, at_ms)):
            raise CommunityError("only the member itself or an admin can end a membership")
        if member == self.charter.founder and by != member:
            raise CommunityError("the founder cannot be removed")
        ended = {
            key: replace(binding, until_ms=at_ms)
            for key, binding in self.keyring.bindings.items()
            if binding.member == member and binding.until_ms is None
        }
        merged: dict[str, KeyBinding] = dict(self.keyring.bindings) | ended
        self._rosters.clear()
        self.keyring = KeyRing(MappingProxyType(merged))
        self.addresses.pop(member, None)
        self.names.pop(member, None)

    def set_address(self, member: str, address: str) -> None:
        """A member announces a new address."""
        _check_address(address)
        if not self.is_member(member):
            raise CommunityError("not a current member")
        self.addresses[member] = address

    def set_name(self, member: str, name: str, at_ms: int) -> None:
        """A member announces its display name, signed at ``at_ms``; a name signed earlier
        than the one held (a record delivered late) changes nothing."""
        check_display_name(name)
        if not self.is_member(member):
            raise CommunityError("not a current member")
        held = self.names.get(member)
        if held is None or at_ms >= held[0]:
            self.names[member] = (at_ms, name)

    def name_of(self, member: str) -> str | None:
        """The display name a current member chose, if any."""
        held = self.names.get(member)
        return None if held is None else held[1]

    def enrol(self, enrolment: Any) -> KeyBinding:
        """Apply a verified ``AssetEnrolment``; returns the new asset binding."""
        if not self.is_member(enrolment.member):
            raise CommunityError("not a current member")
        self._rosters.clear()
        try:
            self.keyring = self.keyring.with_enrolment(enrolment)
        except KeyRingError as err:
            raise CommunityError(str(err)) from None
        binding = self.keyring.bindings[enrolment.asset_key]
        assert binding.role is KeyRole.ASSET
        return binding

    def address_of(self, member: str) -> str | None:
        """Where to reach a current member."""
        return self.addresses.get(member)

    def remember(self, record_id: str, record: dict[str, Any]) -> None:
        """Keep an applied membership record to hand to newcomers and returning peers."""
        self.records[record_id] = record


def check_display_name(name: object) -> None:
    """A display name: 1..40 printable characters without surrounding spaces."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_DISPLAY_NAME_LEN
        or not name.isprintable()
        or name != name.strip()
    ):
        raise CommunityError(f"a display name is 1..{MAX_DISPLAY_NAME_LEN} printable characters")


def _check_address(address: object) -> None:
    if not isinstance(address, str) or not 0 < len(address) <= MAX_ADDRESS_LEN:
        raise CommunityError(f"an address is 1..{MAX_ADDRESS_LEN} characters")
