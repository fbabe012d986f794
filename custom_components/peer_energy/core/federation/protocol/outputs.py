"""What a ``Peer`` returns: messages to deliver (``Send``, ``Broadcast``) and events for
the home (``SlotCleared``, ``SlotVoid``, membership changes, equivocation, reachability,
``Rejected``, settlement and delivery)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...market.clearing import SlotResult
from ...market.orders import Order
from ...trust.credit import Settlement, SignedTrade

COMMUNITY = "*"
"""The address of every member at once: in fan-out mode a ``Broadcast`` to ``(COMMUNITY,)``
is published once to the community (a broker fans it out); never a member's address."""


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``data`` to the peer at ``to``."""

    to: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Deliver ``data`` to every address in ``to``."""

    to: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class FinalSlot:
    """A final slot: the book that was cleared and its attested result."""

    slot: int
    book_hash: str
    result_hash: str
    orders: tuple[Order, ...]
    result: SlotResult
    attesters: tuple[str, ...]
    late: bool


@dataclass(frozen=True, slots=True)
class SlotCleared:
    """The slot is final: every honest peer holds the same ``final``."""

    final: FinalSlot


@dataclass(frozen=True, slots=True)
class SlotVoid:
    """No quorum by the deadline: nothing is recorded for ``slot`` (for now)."""

    slot: int
    reason: str


@dataclass(frozen=True, slots=True)
class PeerJoined:
    """``member`` became a member (``sponsor`` signed its record)."""

    member: str
    address: str
    sponsor: str


@dataclass(frozen=True, slots=True)
class PeerLeft:
    """``member`` left (``by`` == member) or was removed by the admin ``by``."""

    member: str
    by: str
    removed: bool


@dataclass(frozen=True, slots=True)
class DeviceEnrolled:
    """``member`` enrolled an asset key."""

    member: str
    asset_id: str
    kind: str
    asset_key: str


@dataclass(frozen=True, slots=True)
class EquivocationProof:
    """Two different signed records of one member for one slot (both envelopes).

    ``kind`` is ``"bid"`` or ``"attest"``. Anyone holding the key ring checks it with
    ``verify_equivocation``.
    """

    kind: str
    member: str
    slot: int
    first: Mapping[str, Any]
    second: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the two envelopes as sent)."""
        return {
            "kind": self.kind,
            "member": self.member,
            "slot": self.slot,
            "first": dict(self.first),
            "second": dict(self.second),
        }


@dataclass(frozen=True, slots=True)
class EquivocationDetected:
    """``proof`` shows ``proof.member`` equivocated; it is excluded from the slot."""

    proof: EquivocationProof


@dataclass(frozen=True, slots=True)
class PeerUnreachable:
    """Nothing valid heard from ``member`` since ``since_ms``."""

    member: str
    since_ms: int


@dataclass(frozen=True, slots=True)
class PeerReachable:
    """``member`` is heard again after being unreachable."""

    member: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message (or a record inside one) was ignored; ``code`` says why."""

    code: str
    detail: str
    sender_address: str


@dataclass(frozen=True, slots=True)
class TradeSigned:
    """Both parties signed the trade of one fill of a final slot (``fill``: its index in
    ``SlotResult.fills``). Apply trades of a slot in fill order. ``party``: this home is
    buyer or seller (else it observed the trade)."""

    slot: int
    fill: int
    trade: SignedTrade
    party: bool


@dataclass(frozen=True, slots=True)
class DeliverySettled:
    """The delivery of one trade is settled from the seller's signed meter reading (and
    the buyer's, when it came in time): ``settlement.payment`` (milli-minor units) moves
    from seller to buyer for the energy not delivered. Every peer that saw the reports
    derives the same settlement. ``party``: this home is buyer or seller."""

    slot: int
    fill: int
    settlement: Settlement
    party: bool


@dataclass(frozen=True, slots=True)
class DeliveryUnreported:
    """The delivery deadline passed without a valid report from the seller: the money
    stays as traded (nothing signed says otherwise), but the seller delivered nothing
    that it proved. ``party``: this home is buyer or seller."""

    slot: int
    fill: int
    trade: SignedTrade
    party: bool


@dataclass(frozen=True, slots=True)
class LedgerWanted:
    """``member`` (at ``address``) asks for the credit records (countersigned trades and
    delivery settlements) of the slots from ``since`` on, to reconcile its ledger after a
    restart. The home reads them from its ledger and answers with ``Peer.ledger_answer``."""

    member: str
    address: str
    since: int


@dataclass(frozen=True, slots=True)
class LedgerRecords:
    """Credit records a member sent in answer to ``Peer.ledger_request``, in the order its
    ledger applied them. Each trade's two signatures were checked; the ledger checks the
    rest (balances, reports) when recording them, and refuses duplicates."""

    member: str
    trades: tuple[SignedTrade, ...]
    settlements: tuple[Settlement, ...]
    order: tuple[str, ...]  # "trade" / "settlement", in the order applied


type Event = (
    SlotCleared
    | SlotVoid
    | PeerJoined
    | PeerLeft
    | DeviceEnrolled
    | EquivocationDetected
    | PeerUnreachable
    | PeerReachable
    | Rejected
    | TradeSigned
    | DeliverySettled
    | DeliveryUnreported
    | LedgerWanted
    | LedgerRecords
)
type Output = Send | Broadcast | Event
