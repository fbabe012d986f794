"""Only the home's aggregate leaves the home: a slot's wire messages carry no device name,
entity id, asset count or gross figure before netting."""

from __future__ import annotations

from typing import Any

import pytest

from custom_components.peer_energy.core.federation.protocol import ProtocolError
from custom_components.peer_energy.core.home.agents import (
    AssetBid,
    AssetKind,
    OwnerPolicy,
    home_bid,
    home_order,
)
from custom_components.peer_energy.core.market.orders import Reason, Side, Step
from custom_components.peer_energy.core.trust.canonical import decode
from custom_components.peer_energy.core.trust.identity import enrol_asset

from .helpers import build, make_identity, next_slot, outcome, run_slot

# Private figures of each home: asset ids that are entity ids and device names, and gross
# energies chosen so that they appear nowhere else (the net is their difference).
ASSETS = {
    0: [("sensor.anna_tesla_model_y", Side.BUY, 3137), ("Anna's rooftop PV", Side.SELL, 4999)],
    1: [("switch.bob_dishwasher", Side.BUY, 2711), ("sensor.bob_fronius_power", Side.SELL, 719)],
    2: [("number.carla_battery_current", Side.SELL, 1583), ("Carla heat pump", Side.BUY, 613)],
}
GROSS = {wh for assets in ASSETS.values() for _, _, wh in assets}
NAMES = [name for assets in ASSETS.values() for name, _, _ in assets]
FORBIDDEN_KEYS = {"assets", "asset_buy_wh", "asset_sell_wh", "margin_wh", "asset_id"}


def _bids(i: int, slot: int) -> list[AssetBid]:
    return [
        AssetBid(
            name,
            AssetKind.PV if side is Side.SELL else AssetKind.BASE_LOAD,
            slot,
            side,
            (Step(8 if side is Side.SELL else 30, wh),),
            Reason.of("device", entity=name, wh=wh),
            side is Side.SELL,
        )
        for name, side, wh in ASSETS[i]
    ]


def _walk(value: Any, found: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in FORBIDDEN_KEYS:
                found.append(f"key {key}")
            _walk(item, found)
    elif isinstance(value, list):
        for item in value:
            _walk(item, found)
    elif isinstance(value, str):
        found.extend(f"name {n!r}" for n in NAMES if n in value)
    elif type(value) is int and value in GROSS:
        found.append(f"gross figure {value}")


@pytest.mark.parametrize("two_sided", [False, True])
def test_a_slot_on_the_wire_reveals_only_aggregates(two_sided: bool) -> None:
    wire: list[bytes] = []
    net, peers = build(3, tap=lambda sender, to, data: wire.append(data))
    wire.clear()  # the joins are not the slot's traffic
    slot = next_slot(net, peers)
    for i, peer in enumerate(peers):
        bids = _bids(i, slot)
        if two_sided:
            orders = list(home_bid(peer.member_id, slot, bids, OwnerPolicy(), 30, 8, margin_wh=7))
        else:
            order = home_order(peer.member_id, slot, bids, 20, OwnerPolicy(), 30, 8)
            assert order is not None
            orders = [order]
        net.apply(peer.address, peer.submit_orders(slot, orders, net.now))
    run_slot(net, peers, slot)
    results = {outcome(net, p.address, slot) for p in peers}
    assert len(results) == 1
    assert isinstance(next(iter(results)), tuple)  # the slot cleared: the test saw a trade
    assert wire
    found: list[str] = []
    for data in wire:
        _walk(decode(data), found)
    assert found == []


def test_the_check_finds_what_it_looks_for() -> None:
    """The walk would see an asset count, a name or a gross figure if they were sent."""
    found: list[str] = []
    _walk({"reason": {"code": "home_net", "params": {"assets": 2}}}, found)
    _walk({"orders": [{"id": "switch.bob_dishwasher:1"}]}, found)
    _walk({"steps": [[30, 3137]]}, found)
    assert len(found) == 3


def test_enrolment_refuses_entity_ids() -> None:
    net, peers = build(2)
    home, asset = make_identity("p1"), make_identity("asset")
    leaky = enrol_asset(peers[1].member_id, home, asset, "sensor.anna_tesla", "battery", net.now)
    with pytest.raises(ProtocolError, match="opaque"):
        peers[1].enrol(leaky, net.now)
    opaque = enrol_asset(peers[1].member_id, home, asset, "a1b2c3d4", "battery", net.now)
    assert peers[1].enrol(opaque, net.now)


def test_settlement_messages_reach_only_who_needs_them() -> None:
    """A party's half (its chain head and running balance before signing) goes to its
    counterparty only; signed trades and delivery reports go to members only (every member
    records every trade: the credit check of each bid needs every member's balance, see
    docs/security.md)."""
    from .helpers import submit_all

    sent: list[tuple[str, str, bytes]] = []
    net, peers = build(4, tap=lambda sender, to, data: sent.append((sender, to, data)))
    slot = next_slot(net, peers)
    submit_all(net, peers, slot)
    run_slot(net, peers, slot)
    fills = peers[0].finals[slot].result.fills
    assert any(f.buyer != f.seller for f in fills)
    sent.clear()
    for k, peer in enumerate(peers):
        net.apply(peer.address, peer.settle(slot, prev=f"head-{k}", balance=0, now_ms=net.now))
    net.run_until(net.now + 100)
    by_address = {p.address: p.member_id for p in peers}
    pairs = {frozenset((f.buyer, f.seller)) for f in fills if f.buyer != f.seller}
    kinds: set[str] = set()
    for sender, to, data in sent:
        kind = str(decode(data)["type"])
        kinds.add(kind)
        assert to in by_address, (kind, to)
        if kind == "trade_terms":
            assert frozenset((by_address[sender], by_address[to])) in pairs
    assert {"trade_terms", "trade_sig"} <= kinds
