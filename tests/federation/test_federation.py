"""Many peers over the in-memory network clear every slot together (properties 1 and 2)."""

from __future__ import annotations

import pytest

from custom_components.peer_energy.core.federation.protocol import (
    SlotCleared,
    book as book_module,
    result_hash,
    round as round_module,
)
from custom_components.peer_energy.core.market import orders as orders_module
from custom_components.peer_energy.core.market.clearing import clear_slot

from .helpers import build, next_slot, outcome, run_slot, submit_all


def test_fifty_peers_clear_identical_results() -> None:
    net, peers = build(50)
    assert all(len(p.roster()) == 50 for p in peers)
    for _ in range(2):
        slot = next_slot(net, peers)
        submit_all(net, peers, slot)
        run_slot(net, peers, slot)
        outcomes = {outcome(net, p.address, slot) for p in peers}
        assert len(outcomes) == 1
        assert None not in outcomes
        assert "void" not in outcomes
        finals = [p.finals[slot] for p in peers]
        # bit-identical results everywhere, with real trades between members
        assert len({result_hash(f.result) for f in finals}) == 1
        assert all(f.result == finals[0].result for f in finals)
        assert finals[0].result.volume_wh > 0
        assert len(finals[0].orders) == 50
        assert len(finals[0].attesters) >= peers[0].rules.quorum(50)
        assert not any(f.late for f in finals)


def test_result_recomputes_from_the_orders() -> None:
    net, peers = build(4)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    final = peers[3].finals[slot]
    again = clear_slot(
        list(final.orders),
        peers[3].rules.market,
        slot_start=slot,
        fairness=peers[0].fairness.__class__(),
    )
    assert result_hash(again) == final.result_hash
    cleared = [e for _, e in net.events["p3"] if isinstance(e, SlotCleared)]
    assert [c.final.slot for c in cleared] == [slot]


def test_gate_closure_clears_the_orders_parsed_on_arrival(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Orders are checked when each bid arrives; gate closure only clears and hashes what
    the peers hold (the work ``bench/clearing.py`` times as ``gate``)."""
    net, peers = build(4)
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    r = peers[0].rules
    net.run_until(r.gate_closure_ms(slot) - 1)  # every bid delivered and parsed
    held = [len(p._round.slots[slot].bids) for p in peers]
    assert held == [4, 4, 4, 4]

    def no_parsing(*args: object, **kwargs: object) -> object:
        raise AssertionError("orders parsed again after gate closure")

    monkeypatch.setattr(orders_module, "validate_order", no_parsing)
    monkeypatch.setattr(book_module, "validate_order", no_parsing)
    monkeypatch.setattr(book_module, "qualified_orders", no_parsing)
    monkeypatch.setattr(round_module, "qualified_orders", no_parsing)
    run_slot(net, peers, slot)
    outcomes = {outcome(net, p.address, slot) for p in peers}
    assert len(outcomes) == 1
    assert None not in outcomes
    assert "void" not in outcomes
