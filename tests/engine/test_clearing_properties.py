"""Property tests of the clearing on random order books (hypothesis)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
import hashlib
import random

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.peer_energy.core.market.clearing import SlotResult, clear_slot, kernels
from custom_components.peer_energy.core.market.fairness import FairnessState
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Pricing, Side
from custom_components.peer_energy.core.trust.canonical import canonical_bytes

from .books import SLOT, orders, rules

SETTINGS = settings(max_examples=60, deadline=None)


def _by_id(book: list[Order]) -> dict[str, Order]:
    return {o.order_id: o for o in book}


@SETTINGS
@given(book=orders(), r=rules())
def test_energy_balances(book: list[Order], r: MarketRules) -> None:
    res = clear_slot(book, r, slot_start=SLOT)
    bought = sum(o.filled_wh for o in res.orders if o.side == "buy")
    sold = sum(o.filled_wh for o in res.orders if o.side == "sell")
    assert bought == sold == res.volume_wh == sum(f.energy_wh for f in res.fills)
    orders_ = _by_id(book)
    for o in res.orders:
        order = orders_[o.order_id]
        assert len(o.steps_filled) == len(order.steps)
        assert all(
            0 <= got <= st.energy_wh for got, st in zip(o.steps_filled, order.steps, strict=True)
        )
        assert sum(o.steps_filled) == o.filled_wh
        residual = order.energy_wh - o.filled_wh
        assert 0 <= o.grid_wh + o.unserved_wh + o.curtailed_wh <= residual
    assert res.clean_volume_wh == sum(f.energy_wh for f in res.fills if f.clean)


@SETTINGS
@given(book=orders(), r=rules())
def test_nobody_pays_above_or_receives_below_limit(book: list[Order], r: MarketRules) -> None:
    res = clear_slot(book, r, slot_start=SLOT)
    orders_ = _by_id(book)
    for o in res.orders:
        steps = orders_[o.order_id].steps
        if o.side == "buy":
            limit = sum(
                got * min(s.price, r.import_price)
                for got, s in zip(o.steps_filled, steps, strict=True)
            )
            assert o.amount_milli + o.fee_milli <= limit
        else:
            floor = sum(
                got * max(s.price, r.feed_in_tariff)
                for got, s in zip(o.steps_filled, steps, strict=True)
            )
            assert o.amount_milli >= floor
    for f in res.fills:
        assert r.feed_in_tariff <= f.price
        assert f.price + f.fee <= r.import_price


@SETTINGS
@given(book=orders(), r=rules())
def test_payments_balance_including_fees(book: list[Order], r: MarketRules) -> None:
    res = clear_slot(book, r, slot_start=SLOT)
    paid = sum(m.paid_milli for m in res.members)
    received = sum(m.received_milli for m in res.members)
    assert paid == received + res.fees_milli
    assert res.fees_milli == res.volume_wh * r.distributor_fee
    assert sum(f.energy_wh * (f.price + f.fee) for f in res.fills) == paid


@SETTINGS
@given(book=orders(), r=rules())
def test_clean_only_buyers_get_only_clean_energy(book: list[Order], r: MarketRules) -> None:
    res = clear_slot(book, r, slot_start=SLOT)
    orders_ = _by_id(book)
    for f in res.fills:
        assert f.clean == orders_[f.seller_order].clean
        if orders_[f.buyer_order].clean_only:
            assert f.clean
        assert orders_[f.buyer_order].side is Side.BUY
        assert orders_[f.seller_order].side is Side.SELL


@SETTINGS
@given(book=orders(), r=rules(), seed=st.integers(0, 2**32 - 1))
def test_permutation_invariance(book: list[Order], r: MarketRules, seed: int) -> None:
    shuffled = list(book)
    random.Random(seed).shuffle(shuffled)
    a = clear_slot(book, r, slot_start=SLOT)
    b = clear_slot(shuffled, r, slot_start=SLOT)
    assert a.to_dict() == b.to_dict()
    assert a.fairness == b.fairness


@SETTINGS
@given(book=orders(), r=rules(), share=st.sampled_from([2_500, 4_000, 6_000]))
def test_fair_share_cap_held(book: list[Order], r: MarketRules, share: int) -> None:
    plain = MarketRules(
        import_price=r.import_price,
        feed_in_tariff=r.feed_in_tariff,
        distributor_fee=r.distributor_fee,
    )
    capped = replace(plain, fair_share_bp=share)
    uncapped = clear_slot(book, plain, slot_start=SLOT)
    res = clear_slot(book, capped, slot_start=SLOT)
    volume = uncapped.volume_wh
    cap = volume * share // 10_000
    buys = [o for o in book if o.side is Side.BUY]
    top_bid = max(
        (min(s.price, r.import_price) - r.distributor_fee for o in buys for s in o.steps),
        default=None,
    )
    offered: Counter[str] = Counter()
    for o in book:
        if o.side is Side.SELL and top_bid is not None:
            offered[o.owner] += sum(
                s.energy_wh for s in o.steps if max(s.price, r.feed_in_tariff) <= top_bid
            )
    sold: Counter[str] = Counter()
    for result in res.orders:
        if result.side == "sell":
            sold[result.owner] += result.filled_wh
    total = sum(offered.values())
    for owner, v in sold.items():
        assert v <= max(cap, volume - (total - offered[owner]))
    # Capping never breaks the money balance.
    paid = sum(m.paid_milli for m in res.members)
    assert paid == sum(m.received_milli for m in res.members) + res.fees_milli


@SETTINGS
@given(book=orders(), r=rules(fair=False, grid=False))
def test_pay_as_bid_keeps_volume_and_limits(book: list[Order], r: MarketRules) -> None:
    clear = clear_slot(book, r, slot_start=SLOT)
    bid_rules = MarketRules(
        import_price=r.import_price,
        feed_in_tariff=r.feed_in_tariff,
        distributor_fee=r.distributor_fee,
        pricing=Pricing.BID,
    )
    bid = clear_slot(book, bid_rules, slot_start=SLOT)
    assert bid.volume_wh == clear.volume_wh
    assert bid.surplus_milli == clear.surplus_milli
    orders_ = _by_id(book)
    for f in bid.fills:
        top = max(min(s.price, r.import_price) for s in orders_[f.buyer_order].steps)
        assert f.price + f.fee <= top


@SETTINGS
@given(book=orders(), r=rules())
def test_fairness_state_only_grows(book: list[Order], r: MarketRules) -> None:
    res = clear_slot(book, r, slot_start=SLOT)
    before = dict(res.fairness.margin_wins)
    again = clear_slot(book, r, slot_start=SLOT, fairness=res.fairness)
    after = dict(again.fairness.margin_wins)
    assert all(after.get(k, 0) >= v for k, v in before.items())


SHIFT = 1 << 60  # beyond the int64 fast paths' price bound: forces the exact Python paths


@settings(max_examples=40, deadline=None)
@given(book=orders(), r=rules())
def test_fast_and_exact_paths_agree(book: list[Order], r: MarketRules) -> None:
    shifted_book = [
        o._replace(steps=tuple(s._replace(price=s.price + SHIFT) for s in o.steps)) for o in book
    ]
    shifted_rules = replace(
        r, import_price=r.import_price + SHIFT, feed_in_tariff=r.feed_in_tariff + SHIFT
    )
    fast = clear_slot(book, r, slot_start=SLOT)
    exact = clear_slot(shifted_book, shifted_rules, slot_start=SLOT)
    assert (exact.volume_wh, exact.surplus_milli, exact.mode, exact.scarcity) == (
        fast.volume_wh,
        fast.surplus_milli,
        fast.mode,
        fast.scarcity,
    )
    assert [(f.buyer_order, f.seller_order, f.energy_wh, f.price - SHIFT) for f in exact.fills] == [
        (f.buyer_order, f.seller_order, f.energy_wh, f.price) for f in fast.fills
    ]
    assert [(o.filled_wh, o.grid_wh, o.unserved_wh, o.steps_filled) for o in exact.orders] == [
        (o.filled_wh, o.grid_wh, o.unserved_wh, o.steps_filled) for o in fast.orders
    ]
    assert exact.fairness == fast.fairness


def reference_digest(res: SlotResult, book: list[Order]) -> bytes:
    """The result hash as ``docs/protocol.md`` defines it, built from the public result
    objects (the engine computes it from the clearing's columns instead)."""
    by_id = _by_id(book)
    ranked = sorted(o.order_id for o in book if o.side is Side.BUY)
    ranked += sorted(o.order_id for o in book if o.side is Side.SELL)
    rank = {oid: k for k, oid in enumerate(ranked)}
    outcome = {o.order_id: o for o in res.orders}
    steps: dict[Side, list[int]] = {Side.BUY: [], Side.SELL: []}
    grid: list[tuple[int, int, int]] = []
    for oid in ranked:
        order, got = by_id[oid], outcome[oid]
        steps[order.side].extend(
            v for v, st in zip(got.steps_filled, order.steps, strict=True) if st.energy_wh > 0
        )
        rest = got.unserved_wh if order.side is Side.BUY else got.curtailed_wh
        if got.grid_wh or rest:
            grid.append((rank[oid], got.grid_wh, rest))
    fills = [(rank[f.buyer_order], rank[f.seller_order], f.price, f.energy_wh) for f in res.fills]
    columns = [
        steps[Side.BUY],
        steps[Side.SELL],
        *([list(c) for c in zip(*fills, strict=True)] if fills else [[], [], [], []]),
        *([list(c) for c in zip(*grid, strict=True)] if grid else [[], [], []]),
    ]
    summary = {k: v for k, v in res.to_dict().items() if k not in {"fills", "orders", "members"}}
    head = summary | {"fairness": res.fairness.to_dict(), "columns": [len(c) for c in columns]}
    body = canonical_bytes(head) + b"\n" + canonical_bytes(ranked) + b"\n"
    body += b"".join(v.to_bytes(8, "little", signed=True) for c in columns for v in c)
    return hashlib.sha256(body).digest()


@SETTINGS
@given(book=orders(), r=rules())
def test_result_digest_is_the_documented_function_of_the_result(
    book: list[Order], r: MarketRules
) -> None:
    res = clear_slot(book, r, slot_start=SLOT)
    assert res.digest() == reference_digest(res, book)
    # The exact Python kernels (used when numbers do not fit int64) give the same digest.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "SAFE_PRICE", 0)
        exact = clear_slot(book, r, slot_start=SLOT)
        assert exact._parts.ctx.fb.arrays() is None  # really the Python path
    assert exact.digest() == res.digest()


def test_result_digest_changes_with_every_part_of_the_result() -> None:
    book = [
        Order.single("b1", "x", Side.BUY, SLOT, 100, 30),
        Order.single("b2", "w", Side.BUY, SLOT, 50, 9),
        Order.single("s1", "y", Side.SELL, SLOT, 120, 10),
        Order.single("s2", "z", Side.SELL, SLOT, 70, 5, clean=True),
    ]
    rules_ = MarketRules(import_price=30, feed_in_tariff=8)
    base = clear_slot(book, rules_, slot_start=SLOT)
    assert base.digest() == reference_digest(base, book)
    variants = [
        [*book[:3], Order.single("s2", "z", Side.SELL, SLOT, 71, 5, clean=True)],  # a step
        [book[0], Order.single("b2", "w", Side.BUY, SLOT, 50, 10), *book[2:]],  # a price
        [*book[:3], Order.single("s3", "z", Side.SELL, SLOT, 70, 5, clean=True)],  # an id
    ]
    digests = {base.digest(), *(clear_slot(v, rules_, slot_start=SLOT).digest() for v in variants)}
    assert len(digests) == 4
    fair = clear_slot(book, rules_, slot_start=SLOT, fairness=FairnessState((("q", 1),)))
    assert fair.to_dict() == base.to_dict()
    assert fair.digest() != base.digest()  # the fairness state after the slot is covered
