"""Fault scenarios over the in-memory network, for ``test_faults.py`` (small) and
``bench/faults.py`` (the figures in ``docs/performance.md``): a member's clock off by up to
and beyond the allowed skew, a partition that splits the community and heals, and a member
down for a whole day.

Every home bids each slot by its own clock, 15 s before its gate closure (as the slot clock
does). The figures count, per scenario, the slots that were final or void at each home,
the slots on which two homes hold different results (must be 0), the results adopted late,
the time a home took to recover, and what it never got back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from custom_components.peer_energy.core.federation.community import CommunityRules
from custom_components.peer_energy.core.federation.memnet import MemNet
from custom_components.peer_energy.core.federation.protocol import (
    DEFAULT_RETAIN_SLOTS,
    Peer,
    ProtocolError,
    SlotCleared,
    SlotVoid,
)
from custom_components.peer_energy.core.market.orders import MarketRules

from .helpers import build, next_slot, orders_for

BID_BEFORE_GATE_MS = 15_000


@dataclass
class Figures:
    """What one scenario showed."""

    name: str
    slots: int = 0
    final: dict[str, int] = field(default_factory=dict)  # address -> final slots
    late: dict[str, int] = field(default_factory=dict)  # address -> finals adopted late
    voided: dict[str, int] = field(default_factory=dict)  # address -> void at the deadline
    disagreements: int = 0  # slots where two homes hold different results
    included: int = 0  # slots whose final book holds the faulty home's bid
    recovered_ms: int | None = None  # after the fault ended, until the home caught up
    lost: int = 0  # final slots the faulty home never got
    notes: list[str] = field(default_factory=list)

    def void(self, address: str) -> int:
        """Slots without a result at ``address``."""
        return self.slots - self.final.get(address, 0)


def day_rules(slot_seconds: int = 900) -> CommunityRules:
    """Rules of a real community: 15-minute slots, the default lead and windows."""
    return CommunityRules(market=MarketRules(slot_seconds=slot_seconds, distributor_fee=1))


def _finals(net: MemNet, address: str) -> dict[int, tuple[str, bool]]:
    """slot -> (result hash, late) of every result ``address`` reported."""
    out: dict[int, tuple[str, bool]] = {}
    for _, event in net.events[address]:
        if isinstance(event, SlotCleared):
            out[event.final.slot] = (event.final.result_hash, event.final.late)
    return out


def run_slots(net: MemNet, peers: Sequence[Peer], first: int, count: int) -> None:
    """``count`` slots from ``first``: each online home bids by its own clock."""
    rules = peers[0].rules
    for k in range(count):
        slot = first + k * rules.slot_seconds
        gate = rules.gate_closure_ms(slot)
        # submit in true-time order: a home whose clock is ahead bids earlier
        due = sorted(
            (gate - BID_BEFORE_GATE_MS - net.skew.get(p.address, 0), i) for i, p in enumerate(peers)
        )
        for at, i in due:
            peer = peers[i]
            net.run_until(max(net.now, at))
            if peer.address in net.offline or not peer.joined:
                continue
            try:
                out = peer.submit_orders(
                    slot, orders_for(peer, i, slot), net.local_now(peer.address)
                )
            except ProtocolError:
                continue  # its own gate closure has passed: it does not bid
            net.apply(peer.address, out)
    last = first + (count - 1) * rules.slot_seconds
    net.run_until(
        rules.gate_closure_ms(last) + rules.sync_window_ms + rules.attest_window_ms + 1000
    )


def tally(
    figures: Figures, net: MemNet, peers: Sequence[Peer], slots: Sequence[int], faulty: str = ""
) -> None:
    """Count finals, late ones, disagreements and inclusion of ``faulty``'s bids."""
    figures.slots = len(slots)
    finals = {p.address: _finals(net, p.address) for p in peers}
    wanted = set(slots)
    for address, held in finals.items():
        figures.voided[address] = sum(
            1 for _, ev in net.events[address] if isinstance(ev, SlotVoid) and ev.slot in wanted
        )
        figures.final[address] = sum(1 for s in slots if s in held)
        figures.late[address] = sum(1 for s in slots if s in held and held[s][1])
    for s in slots:
        hashes = {held[s][0] for held in finals.values() if s in held}
        figures.disagreements += len(hashes) > 1
    if faulty:
        member = next(p.member_id for p in peers if p.address == faulty)
        for s in slots:
            final = next((p.finals.get(s) for p in peers if s in p.finals), None)
            if final is not None and any(o.owner == member for o in final.orders):
                figures.included += 1


def clock_skew(ahead_ms: int, *, n: int = 5, slots: int = 8) -> Figures:
    """One home's clock ``ahead_ms`` ahead (behind if negative) of the others'."""
    figures = Figures(f"clock {ahead_ms / 1000:+g} s")
    net, peers = build(n)
    faulty = peers[-1].address
    net.set_skew(faulty, ahead_ms)
    first = next_slot(net, peers) + 2 * peers[0].rules.slot_seconds
    run_slots(net, peers, first, slots)
    step = peers[0].rules.slot_seconds
    tally(figures, net, peers, [first + k * step for k in range(slots)], faulty)
    refused = [ev.code for _, ev in net.events[peers[0].address] if hasattr(ev, "code")]
    figures.notes.append(f"messages refused at an honest home: {len(refused)}")
    return figures


def partition(
    groups: Sequence[int], *, split_slots: int = 4, after: int = 4, idle_ms: int = 0
) -> Figures:
    """The community split into ``groups`` (sizes) for ``split_slots`` slots (and
    ``idle_ms`` more, without bids), then healed."""
    figures = Figures("split " + "/".join(map(str, groups)))
    net, peers = build(sum(groups))
    addresses = [p.address for p in peers]
    cut, parts = 0, []
    for size in groups:
        parts.append(addresses[cut : cut + size])
        cut += size
    step = peers[0].rules.slot_seconds
    first = next_slot(net, peers) + step
    net.partition(parts)
    run_slots(net, peers, first, split_slots)
    net.run_until(net.now + idle_ms)
    net.heal()
    healed_at = net.now
    resumed = first + split_slots * step
    while rules_gate(peers, resumed) <= net.now:
        resumed += step
    run_slots(net, peers, resumed, after)
    all_slots = [first + k * step for k in range(split_slots)]
    all_slots += [resumed + k * step for k in range(after)]
    tally(figures, net, peers, all_slots)
    # recovery: from the heal until every home holds every result of the split's slots
    # that exists anywhere (a minority catches up with the majority's results)
    split = set(all_slots[:split_slots])
    reported = [
        t - healed_at
        for p in peers
        for t, ev in net.events[p.address]
        if isinstance(ev, SlotCleared) and ev.final.slot in split and t >= healed_at
    ]
    figures.recovered_ms = max(reported, default=0)
    after_heal = all_slots[split_slots:]
    figures.notes.append(
        "slots without a result after the heal: "
        f"{sum(1 for p in peers for s in after_heal if s not in _finals(net, p.address))}"
    )
    split_finals = {
        p.address: sum(1 for s in all_slots[:split_slots] if s in _finals(net, p.address))
        for p in peers
    }
    figures.notes.append(f"results of the split slots per home: {split_finals}")
    return figures


def rules_gate(peers: Sequence[Peer], slot: int) -> int:
    """Gate closure of ``slot`` (Unix ms)."""
    return peers[0].rules.gate_closure_ms(slot)


def member_down(hours: float, *, rules: CommunityRules | None = None, n: int = 5) -> Figures:
    """One home offline for ``hours`` while the others trade every slot, then back."""
    figures = Figures(f"down {hours:g} h")
    net, peers = build(n, community_rules=rules or day_rules())
    faulty = peers[-1]
    step = peers[0].rules.slot_seconds
    first = next_slot(net, peers) + step
    count = int(hours * 3600 // step)
    net.go_offline(faulty.address)
    run_slots(net, peers, first, count)
    slots = [first + k * step for k in range(count)]
    net.go_online(faulty.address)
    back_at = net.now
    honest = _finals(net, peers[0].address)
    retained = [s for s in slots if s in honest and s in peers[0].finals]
    limit = back_at + 3_600_000
    while net.now < limit:
        net.run_until(net.now + 1_000)
        held = _finals(net, faulty.address)
        if all(s in held for s in retained):
            figures.recovered_ms = net.now - back_at
            break
    tally(figures, net, peers, slots)
    held = _finals(net, faulty.address)
    figures.lost = sum(1 for s in slots if s in honest and s not in held)
    figures.notes.append(
        f"{count} slots of {step} s; results kept by the others: {len(retained)} "
        f"(retention {DEFAULT_RETAIN_SLOTS} slots)"
    )
    return figures


def describe(f: Figures, faulty: str = "") -> dict[str, Any]:
    """Plain figures for printing."""
    honest = [a for a in f.final if a != faulty]
    return {
        "scenario": f.name,
        "slots": f.slots,
        "void at deadline": max((f.voided[a] for a in honest), default=0),
        "no result in the end": max((f.void(a) for a in honest), default=0),
        "faulty: void / no result": f"{f.voided[faulty]} / {f.void(faulty)}" if faulty else "",
        "late": max(f.late.values(), default=0),
        "disagree": f.disagreements,
        "bid in book": f.included if faulty else "",
        "recovered s": "" if f.recovered_ms is None else f"{f.recovered_ms / 1000:.1f}",
        "lost": f.lost,
    }
