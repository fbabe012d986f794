"""Fixed examples at the boundaries of the clearing's rules (the random tests cover them
only by chance): pro-rata rationing at the price and its leftover Wh, fair-share
relaxation when the others cannot cover and its boundary, and the exact Python kernels."""

from __future__ import annotations

import pytest

from custom_components.peer_energy.core.market.clearing import SlotResult, clear_slot, kernels
from custom_components.peer_energy.core.market.fairness import FairnessState
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side

SLOT = 1_800_000_000 - 1_800_000_000 % 900
RULES = MarketRules(import_price=30, feed_in_tariff=8)


def buy(oid: str, owner: str, wh: int, price: int) -> Order:
    return Order.single(oid, owner, Side.BUY, SLOT, wh, price)


def sell(oid: str, owner: str, wh: int, price: int) -> Order:
    return Order.single(oid, owner, Side.SELL, SLOT, wh, price)


def _sold(res: SlotResult) -> dict[str, int]:
    return {o.order_id: o.filled_wh for o in res.orders if o.side == "sell"}


def test_sellers_at_the_price_share_pro_rata() -> None:
    # 90 Wh wanted, two sellers at the same ask (the price): 100:50 gives 60 and 30.
    res = clear_slot([buy("b", "x", 90, 30), sell("s1", "p", 100, 10), sell("s2", "q", 50, 10)],
                     RULES, slot_start=SLOT)  # fmt: skip
    assert res.general_price == 10
    assert _sold(res) == {"s1": 60, "s2": 30}
    assert res.fairness == FairnessState()  # no leftover Wh: nobody won a tie


def test_the_leftover_wh_goes_to_the_larger_remainder_then_to_fewer_wins() -> None:
    book = [buy("b", "x", 91, 30), sell("s1", "p", 100, 10), sell("s2", "q", 50, 10)]
    # 91 x 100/150 = 60.67 and 91 x 50/150 = 30.33: the leftover Wh goes to s1 (remainder)
    res = clear_slot(book, RULES, slot_start=SLOT)
    assert _sold(res) == {"s1": 61, "s2": 30}
    assert res.fairness.wins() == {"p": 1}
    # next time s1's owner has a win more: the leftover goes to s2 instead
    again = clear_slot(book, RULES, slot_start=SLOT, fairness=res.fairness)
    assert _sold(again) == {"s1": 60, "s2": 31}
    assert again.fairness.wins() == {"p": 1, "q": 1}


def test_a_seller_strictly_better_than_the_price_is_filled_first() -> None:
    res = clear_slot([buy("b", "x", 90, 30), sell("s1", "p", 40, 9), sell("s2", "q", 100, 10)],
                     RULES, slot_start=SLOT)  # fmt: skip
    assert res.general_price == 10
    assert _sold(res) == {"s1": 40, "s2": 50}


FAIR = MarketRules(import_price=30, feed_in_tariff=8, fair_share_bp=5_000)


@pytest.mark.parametrize(
    ("other_wh", "big_sells", "other_sells", "capped"),
    [
        (30, 70, 30, {"p": 1}),  # the others cannot cover: the cap relaxes to V - others
        (49, 51, 49, {"p": 1}),  # still relaxed, by one Wh
        (50, 50, 50, {"p": 1}),  # the boundary: V - others == the cap (50 % of 100)
        (80, 50, 50, {"p": 1, "q": 1}),  # both over their share: both capped at 50
    ],
)
def test_fair_share_relaxes_only_as_far_as_the_others_cannot_cover(
    other_wh: int, big_sells: int, other_sells: int, capped: dict[str, int]
) -> None:
    book = [buy("b", "x", 100, 30), sell("big", "p", 100, 10), sell("o", "q", other_wh, 12)]
    res = clear_slot(book, FAIR, slot_start=SLOT)
    assert res.volume_wh == 100
    assert _sold(res) == {"big": big_sells, "o": other_sells}
    assert res.fairness.wins() == capped  # a capped seller scores a win


def test_fair_share_does_not_touch_a_seller_within_its_share() -> None:
    book = [buy("b", "x", 100, 30), sell("a", "p", 50, 10), sell("c", "q", 50, 12)]
    res = clear_slot(book, FAIR, slot_start=SLOT)
    assert _sold(res) == {"a": 50, "c": 50}
    assert res.fairness == FairnessState()


SHIFT = 1 << 60  # beyond the int64 kernels' price bound


def _shifted(order: Order) -> Order:
    return order._replace(steps=tuple(s._replace(price=s.price + SHIFT) for s in order.steps))


def test_the_exact_python_kernels_ration_and_pair_like_the_numpy_ones() -> None:
    book = [
        buy("b1", "x", 91, 30),
        buy("b2", "y", 40, 25),
        sell("s1", "p", 100, 10),
        sell("s2", "q", 50, 10),
        sell("s3", "r", 30, 20),
    ]
    rules = MarketRules(import_price=30, feed_in_tariff=8, fair_share_bp=6_000)
    fast = clear_slot(book, rules, slot_start=SLOT)
    assert fast._parts.ctx.fb.arrays() is not None  # the int64 path
    wide = MarketRules(import_price=30 + SHIFT, feed_in_tariff=8 + SHIFT, fair_share_bp=6_000)
    exact = clear_slot([_shifted(o) for o in book], wide, slot_start=SLOT)
    assert exact._parts.ctx.fb.arrays() is None  # the exact path
    assert [(o.order_id, o.filled_wh, o.steps_filled) for o in exact.orders] == [
        (o.order_id, o.filled_wh, o.steps_filled) for o in fast.orders
    ]
    assert [(f.buyer_order, f.seller_order, f.energy_wh, f.price - SHIFT) for f in exact.fills] == [
        (f.buyer_order, f.seller_order, f.energy_wh, f.price) for f in fast.fills
    ]
    assert exact.fairness == fast.fairness
    assert (exact.volume_wh, exact.surplus_milli) == (fast.volume_wh, fast.surplus_milli)
    # and the same book forced through the exact kernels gives the same digest
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "SAFE_PRICE", 0)
        assert clear_slot(book, rules, slot_start=SLOT).digest() == fast.digest()
