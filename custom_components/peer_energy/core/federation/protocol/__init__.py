"""The federation protocol: a sans-I/O state machine, one instance per home.

No sockets, no clock, no randomness: the caller hands in bytes and the time (Unix ms) and
gets back ``Output`` values: ``Send`` (bytes for one address), ``Broadcast`` (bytes for a
list of addresses) and events (``SlotCleared``, ``SlotVoid``, ``PeerJoined``, ``PeerLeft``,
``DeviceEnrolled``, ``EquivocationDetected``, ``PeerUnreachable``, ``PeerReachable``,
``Rejected``). Secrets (invitation secrets, the founding nonce) are passed in. The wire
format is specified in ``docs/protocol.md``.

Per slot (``s`` = slot start, ``G`` = gate closure = ``s - gate_closure_lead_s``):

1. **Orders** until ``G``: each member signs at most one ``bid`` (its complete order set for
   the slot) and broadcasts it. Bids are self-authenticating records that anyone may forward.
2. **Sync** ``[G, G + sync_window)``: three digest rounds; each peer tells the others which
   bid ids it holds and pushes the bids a peer lacks. Two different bids of one member for
   one slot are an **equivocation**: both signed bids are the proof, they are forwarded to
   everyone, and the member is left out of the slot's book by every peer that knows it.
3. **Attestation** at ``A = G + sync_window``: each peer freezes its book (its bids minus
   proven equivocators, plus the fairness state after the previous final slot), clears it
   with ``clear_slot``, and broadcasts one signed ``attest`` (slot, book hash, result hash).
   A member attests at most once per slot; two different attestations are an equivocation.
4. **Final** as soon as attestations matching one (book, result) come from a quorum (more
   than half, ``quorum_bp``) of the members on the roster at ``G``. A peer whose own book
   differs fetches the quorum's book (``fetch`` -> ``slot_data``), re-clears it and adopts
   the result if it verifies. Two quorums intersect, so honest peers (who attest once) can
   never finalise two different results.
5. **Void** at ``D = A + attest_window`` when no quorum is known: ``SlotVoid``, nothing is
   recorded. The peer then asks others for a final result; if a verifiable one arrives later
   (or during catch-up after being offline) it is reported as ``SlotCleared(late=True)``.
   A missing slot is asked for at most ``CATCHUP_MAX_TRIES`` times, with doubling waits.

**Relays** (``RELAY_MIN_MEMBERS`` or more on the roster at ``G``): steps 2 and 3 go through
``RELAYS_PER_SLOT`` members ranked first by ``relay_order`` for the slot instead of all-to-all.
Digests and attestations go to the relays; a relay that finalises sends every member one
``records`` bundle of the attestations it holds (a quorum's first). Every attestation in a
bundle is checked on its own signature, so safety never rests on a relay. At half the
attestation window a peer that is still not final falls back to sending its attestation
to everyone it has none from; the relays and the next ``CATCHUP_PEERS`` members in relay
order answer it with their bundle. Messages after gate closure are O(N) in all.

Public API: ``Peer`` (``found``, ``joining``, ``restore``; ``receive``, ``tick``,
``next_wakeup_ms``; ``submit_orders``, ``invite``, ``join_again``, ``leave``, ``remove``,
``set_address``, ``enrol``, ``catch_up``, ``set_balances``; ``snapshot``, ``slot_data``,
``is_void``, ``roster``, ``latest_invitation``, ``open_invitations``; properties
``joined``, ``finals``, ``fairness``, ``member_id``, ``community_id``, ``rules``,
``address``, ``membership``), the outputs listed above,
``FinalSlot``, ``EquivocationProof``, ``verify_equivocation``, ``verify_slot_data``,
``verify_record``, ``relay_order``, ``Reject``, ``ProtocolError``, ``MESSAGE_TYPES``.

Parts (one concern each): ``wire`` (message types, limits, reject codes, the record and
envelope checks, ``Incoming`` and ``Handler``), ``outputs`` (what a peer returns), ``book``
(pure: bids, book and result hashes, relay order, verifying a final slot or an
equivocation proof), ``slots`` (one slot's state and its ``SlotPhase``), ``relays``,
``round`` (``SlotRound``: bids, digests, attestations, finality, catch-up), ``settlement``
(``Settlement``: countersigning trades, delivery reports), ``members`` (``Members``:
invitations, joins, membership records), ``context`` (``PeerContext``: what the parts
share) and ``peer`` (``Peer``: construction, persistence, the clock, and the message
table). Every message is handled in two phases: ``check`` (may reject with a reject code,
changes nothing) then ``apply``; in a ``records`` bundle, a ``trade_terms`` or a
``delivery`` message each item is checked and applied in turn.

Threading: a ``Peer`` is not thread-safe; call it from one thread (or one executor job at a
time). Each call is short (a signature check per message, under a millisecond); the slot's
clearing runs once at attestation and when a fetched book is verified (milliseconds).
"""

from .book import (
    book_hash,
    max_spend,
    parse_bid,
    qualified_orders,
    relay_order,
    result_hash,
    set_root,
    verify_equivocation,
    verify_slot_data,
)
from .outputs import (
    COMMUNITY,
    Broadcast,
    DeliverySettled,
    DeliveryUnreported,
    DeviceEnrolled,
    EquivocationDetected,
    EquivocationProof,
    Event,
    FinalSlot,
    LedgerRecords,
    LedgerWanted,
    Output,
    PeerJoined,
    PeerLeft,
    PeerReachable,
    PeerUnreachable,
    Rejected,
    Send,
    SlotCleared,
    SlotVoid,
    TradeSigned,
)
from .peer import Peer
from .slots import SlotPhase
from .wire import (
    ATTESTS_PER_MESSAGE,
    CATCHUP_MAX_TRIES,
    CATCHUP_PEERS,
    DEFAULT_INVITATION_TTL_MS,
    DEFAULT_RETAIN_SLOTS,
    DIGEST_ROUNDS,
    HORIZON_S,
    MAX_LOCAL_ID,
    MAX_MESSAGE_BYTES,
    MAX_ORDERS_PER_BID,
    MAX_PAYLOAD_BYTES,
    MEMBERSHIP_TYPES,
    MESSAGE_TYPES,
    RECORD_TYPES,
    RECORDS_PER_MESSAGE,
    RELAY_MIN_MEMBERS,
    RELAYS_PER_SLOT,
    REPLAY_WINDOW,
    ProtocolError,
    Reject,
    record_id,
    verify_record,
)

__all__ = [
    "ATTESTS_PER_MESSAGE",
    "CATCHUP_MAX_TRIES",
    "CATCHUP_PEERS",
    "COMMUNITY",
    "DEFAULT_INVITATION_TTL_MS",
    "DEFAULT_RETAIN_SLOTS",
    "DIGEST_ROUNDS",
    "HORIZON_S",
    "MAX_LOCAL_ID",
    "MAX_MESSAGE_BYTES",
    "MAX_ORDERS_PER_BID",
    "MAX_PAYLOAD_BYTES",
    "MEMBERSHIP_TYPES",
    "MESSAGE_TYPES",
    "RECORDS_PER_MESSAGE",
    "RECORD_TYPES",
    "RELAYS_PER_SLOT",
    "RELAY_MIN_MEMBERS",
    "REPLAY_WINDOW",
    "Broadcast",
    "DeliverySettled",
    "DeliveryUnreported",
    "DeviceEnrolled",
    "EquivocationDetected",
    "EquivocationProof",
    "Event",
    "FinalSlot",
    "LedgerRecords",
    "LedgerWanted",
    "Output",
    "Peer",
    "PeerJoined",
    "PeerLeft",
    "PeerReachable",
    "PeerUnreachable",
    "ProtocolError",
    "Reject",
    "Rejected",
    "Send",
    "SlotCleared",
    "SlotPhase",
    "SlotVoid",
    "TradeSigned",
    "book_hash",
    "max_spend",
    "parse_bid",
    "qualified_orders",
    "record_id",
    "relay_order",
    "result_hash",
    "set_root",
    "verify_equivocation",
    "verify_record",
    "verify_slot_data",
]
