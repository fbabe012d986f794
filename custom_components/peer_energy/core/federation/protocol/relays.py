"""Relays: from ``RELAY_MIN_MEMBERS`` members on, digests and attestations of a slot go
through ``RELAYS_PER_SLOT`` members ranked first by ``relay_order`` instead of all-to-all,
and a relay hands everyone the quorum's signed attestations in one ``records`` bundle."""

from __future__ import annotations

from collections.abc import Sequence

from .book import relay_order
from .context import PeerContext
from .outputs import Broadcast, Output, Send
from .slots import SlotState
from .wire import ATTESTS_PER_MESSAGE, RELAY_MIN_MEMBERS, RELAYS_PER_SLOT


def relays_for(ctx: PeerContext, state: SlotState, now_ms: int) -> tuple[str, ...]:
    """The slot's relays (member ids), or ``()`` when the community is small enough for
    all-to-all. Ranked by ``relay_order`` over the roster at gate closure, skipping
    members this peer finds unreachable; fixed once gate closure has passed."""
    if state.relays is not None:
        return state.relays
    g = ctx.rules.gate_closure_ms(state.slot)
    roster = ctx.membership.roster(g)
    relays: tuple[str, ...] = ()
    if len(roster) >= RELAY_MIN_MEMBERS and not ctx.fanout:  # a broker fans out instead
        ranked = relay_order(ctx.community_id, state.slot, roster)
        live = [m for m in ranked if m == ctx.member_id or m not in ctx.unreachable]
        relays = tuple((live if len(live) >= RELAYS_PER_SLOT else ranked)[:RELAYS_PER_SLOT])
    if now_ms >= g:
        state.relays = relays
    return relays


def to_relays(ctx: PeerContext, state: SlotState, data: bytes, now_ms: int) -> list[Output]:
    """To the slot's (other) relays; to everyone in a small community."""
    relays = relays_for(ctx, state, now_ms)
    if not relays:
        return ctx.to_all(data)
    to = ctx.addresses(relays)
    return [Broadcast(to, data)] if to else []


def spread(ctx: PeerContext, state: SlotState, data: bytes, now_ms: int) -> list[Output]:
    """Evidence (equivocation proofs) for everyone: a relay sends it to all, another peer
    to the relays, which pass it on."""
    relays = relays_for(ctx, state, now_ms)
    if not relays or ctx.member_id in relays:
        return ctx.to_all(data)
    return to_relays(ctx, state, data, now_ms)


def bundle(ctx: PeerContext, state: SlotState, to: Sequence[str], now_ms: int) -> list[Output]:
    """``records`` with the attestations held for the slot: those of the final result
    first (a quorum, enough to finalise), then any others (they expose equivocators)."""
    if not to or state.final is None:
        return []
    key = (state.final.book_hash, state.final.result_hash)
    held = sorted(
        ((k != key, a.member, k), a.env) for per in state.attests.values() for k, a in per.items()
    )
    out: list[Output] = []
    for i in range(0, len(held), ATTESTS_PER_MESSAGE):
        chunk = [env for _, env in held[i : i + ATTESTS_PER_MESSAGE]]
        data = ctx.seal("records", {"records": chunk}, now_ms)
        out.append(Broadcast(tuple(to), data) if len(to) > 1 else Send(to[0], data))
    return out
