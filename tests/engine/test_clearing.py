"""Unit tests of orders, slots, fair division and clearing on hand-checked books."""

from __future__ import annotations

import pytest

from custom_components.peer_energy.core.market.clearing import clear_book, clear_slot
from custom_components.peer_energy.core.market.fairness import Divider, FairnessState
from custom_components.peer_energy.core.market.orders import (
    MarketRules,
    Order,
    OrderBook,
    OrderError,
    Pricing,
    Priority,
    Reason,
    Side,
    Step,
    parse_book,
    validate_order,
)
from custom_components.peer_energy.core.market.scarcity import priority_split
from custom_components.peer_energy.core.market.slots import (
    is_aligned,
    next_slots,
    slot_of_day,
    slot_start,
)

SLOT = 1_800_000_000 - 1_800_000_000 % 900
RULES = MarketRules(import_price=30, feed_in_tariff=8)


def buy(oid: str, owner: str, wh: int, price: int, **kw: object) -> Order:
    return Order.single(oid, owner, Side.BUY, SLOT, wh, price, **kw)


def sell(oid: str, owner: str, wh: int, price: int, **kw: object) -> Order:
    return Order.single(oid, owner, Side.SELL, SLOT, wh, price, **kw)


# --- slots -------------------------------------------------------------------------------


def test_slots_are_aligned_to_utc_multiples() -> None:
    assert slot_start(1_800_000_123, 900) == 1_799_999_100 + 900
    assert is_aligned(SLOT, 900)
    assert not is_aligned(SLOT + 1, 900)
    assert next_slots(SLOT + 5, 3, 900) == [SLOT + 900, SLOT + 1800, SLOT + 2700]
    assert next_slots(SLOT, 0) == []
    assert slot_of_day(86_400 + 3600, 900) == 4
    with pytest.raises(ValueError, match="divide a day"):
        slot_start(0, 7)
    with pytest.raises(ValueError, match="positive"):
        slot_start(0, 0)


# --- orders ------------------------------------------------------------------------------


def test_order_round_trips_through_plain_data() -> None:
    order = Order(
        "o1",
        "alice",
        Side.BUY,
        SLOT,
        (Step(20, 100), Step(10, 50)),
        clean_only=True,
        preferred_partners=("bob",),
        priority=Priority.ESSENTIAL,
        reason=Reason.of("ev_deadline", hours_left=3, mode="grid"),
    )
    data = order.to_dict()
    assert data["steps"] == [[20, 100], [10, 50]]
    assert Order.from_dict(data) == order
    assert order.energy_wh == 150
    for value in data.values():
        assert isinstance(value, int | str | bool | list | dict)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"side": "hold"}, "side must be"),
        ({"energy_wh": -1}, r"energy_wh must be in 0\.\.10000000, got -1"),
        ({"energy_wh": 10_000_001}, "energy_wh must be in"),
        ({"energy_wh": 2**64}, "got 18446744073709551616"),
        ({"energy_wh": 10**5000}, "an integer of 16610 bits"),
        ({"price": 100_001}, r"price must be in -100000\.\.100000"),
        ({"price": -100_001}, "price must be in"),
        ({"slot_start": 253_402_300_800}, "slot_start must be in"),
        ({"owner": "\ud800"}, "valid Unicode"),
        ({"order_id": "x" * 129}, "order_id"),
        ({"preferred_partners": ["m"] * 33}, "at most 32"),
        ({"preferred_partners": None}, "preferred_partners"),
        ({"priority": None}, "priority"),
        ({"priority": ["household"]}, "priority"),
        ({"side": ["buy"]}, "side must be"),
        ({"reason": {"code": "x", "params": {"code": 1}}}, None),
        ({"reason": {"code": "x", "params": {"a": 2**63}}}, "64 bits"),
        ({"reason": {"code": "x", "params": {"a": "\udfff"}}}, "reason.params.a"),
        ({"reason": {"code": "x", "params": {str(k): k for k in range(17)}}}, "at most 16"),
        ({"energy_wh": True}, "energy_wh must be an integer"),
        ({"owner": ""}, "owner"),
        ({"slot_start": -900}, "slot_start"),
        ({"steps": [[1, 2]]}, "either steps"),
        ({"clean_only": "yes"}, "clean_only"),
        ({"priority": "vip"}, "priority"),
        ({"preferred_partners": "bob"}, "preferred_partners"),
        ({"colour": "green"}, "unknown fields"),
        ({"reason": {"code": "x", "params": {"a": 1.5}}}, "reason.params"),
        ({"reason": "x"}, "reason must be an object"),
    ],
)
def test_invalid_orders_are_rejected(patch: dict[str, object], message: str | None) -> None:
    data: dict[str, object] = {
        "order_id": "o1",
        "owner": "alice",
        "side": "buy",
        "slot_start": SLOT,
        "price": 10,
        "energy_wh": 5,
    }
    data.update(patch)
    if message is None:  # valid: a reason parameter may be called "code"
        assert validate_order(data).reason == Reason("x", (("code", 1),))
        return
    with pytest.raises(OrderError, match=message):
        validate_order(data)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "steps must be"),
        ([[1]], "step 0"),
        ([[1, -1]], "step 0 energy_wh"),
        ("x", "steps"),
        ([[1, 6_000_000], [2, 4_000_001]], "energy of all steps must be at most 10000000 Wh"),
        ([[100_001, 1]], "step 0 price"),
        ([[1, 1]] * 65, "1..64"),
    ],
)
def test_invalid_steps_are_rejected(steps: object, message: str) -> None:
    data = {"order_id": "o", "owner": "a", "side": "sell", "slot_start": 0, "steps": steps}
    with pytest.raises(OrderError, match=message):
        validate_order(data)


def test_clean_only_is_for_buyers() -> None:
    data = {"order_id": "o", "owner": "a", "side": "sell", "slot_start": 0, "price": 1,
            "energy_wh": 1, "clean_only": True}  # fmt: skip
    with pytest.raises(OrderError, match="buyer preference"):
        validate_order(data)


def test_book_validation() -> None:
    order = {"order_id": "o", "owner": "a", "side": "sell", "slot_start": 900, "price": 1,
             "energy_wh": 1}  # fmt: skip
    with pytest.raises(OrderError, match="duplicate"):
        parse_book({"orders": [order, order]})
    with pytest.raises(OrderError, match="not aligned"):
        parse_book({"orders": [order | {"slot_start": 901}]})
    with pytest.raises(OrderError, match="unknown fields"):
        parse_book({"order": []})
    with pytest.raises(OrderError, match="orders must be a list"):
        parse_book({"orders": {}})
    with pytest.raises(OrderError, match="fair_share_bp"):
        parse_book({"rules": {"fair_share_bp": 20_000}})
    with pytest.raises(OrderError, match="slot_seconds"):
        parse_book({"rules": {"slot_seconds": 7}})
    with pytest.raises(OrderError, match="rules has unknown"):
        parse_book({"rules": {"tax": 1}})
    with pytest.raises(OrderError, match="import_capacity_wh"):
        parse_book({"rules": {"import_capacity_wh": -1}})
    with pytest.raises(OrderError, match="stake"):
        parse_book({"stakes": {"a": 3}})
    book = parse_book(
        {
            "rules": {"import_capacity_wh": 5, "export_capacity_wh": 6, "pricing": "pay_as_bid"},
            "orders": [order],
            "stakes": {"a": "b"},
            "fairness": {"margin_wins": {"a": 2}},
        }
    )
    assert parse_book(book.to_dict()) == book
    assert book.rules.to_dict()["import_capacity_wh"] == 5


def test_fairness_state_validation() -> None:
    with pytest.raises(ValueError, match="object"):
        FairnessState.from_dict([])
    with pytest.raises(ValueError, match="margin_wins"):
        FairnessState.from_dict({"other": {}})
    state = FairnessState.from_dict({"margin_wins": {"b": 1, "a": 0}})
    assert state.margin_wins == (("b", 1),)
    assert state.add({"a": 2}).wins() == {"a": 2, "b": 1}


# --- fair division --------------------------------------------------------------------------


def test_waterfill_is_max_min_fair_and_exact() -> None:
    div = Divider(FairnessState(), SLOT)
    got = div.waterfill(10, [1, 1, 1], [2, 100, 100], ["a", "b", "c"], ["1", "2", "3"])
    assert got == [2, 4, 4]
    got = div.waterfill(10, [1, 1, 1], [100, 100, 100], ["a", "b", "c"], ["1", "2", "3"])
    assert sorted(got) == [3, 3, 4]
    assert div.waterfill(0, [1], [5], ["a"], ["1"]) == [0]
    assert div.waterfill(99, [1, 0], [5, 5], ["a", "b"], ["1", "2"]) == [5, 0]


def test_leftover_goes_to_fewest_past_wins() -> None:
    state = FairnessState((("a", 3),))
    div = Divider(state, SLOT)
    caps = [10, 10]
    assert div.waterfill(5, caps, caps, ["a", "b"], ["1", "2"]) == [2, 3]
    assert div.won == {"b": 1}
    assert div.state_after(state).wins() == {"a": 3, "b": 1}


def test_priority_split_lastwatt_rule() -> None:
    div = Divider(FairnessState(), SLOT)
    got = priority_split(
        1000,
        [300, 500, 400, 600, 600, 100],
        [
            Priority.OTHER,
            Priority.ESSENTIAL,
            Priority.HOUSEHOLD,
            Priority.OTHER,
            Priority.OTHER,
            Priority.HOUSEHOLD,
        ],  # fmt: skip
        ["biz1", "clinic", "h1", "biz2", "biz3", "h2"],
        ["1", "2", "3", "4", "5", "6"],
        {"biz2": 3, "biz1": 1},
        div,
    )
    # essential 500, households 400 + 100 = 1000 used up: nothing for the others.
    assert got == [0, 500, 400, 0, 0, 100]
    got = priority_split(
        1800,
        [300, 500, 400, 600, 600, 100],
        [
            Priority.OTHER,
            Priority.ESSENTIAL,
            Priority.HOUSEHOLD,
            Priority.OTHER,
            Priority.OTHER,
            Priority.HOUSEHOLD,
        ],  # fmt: skip
        ["biz1", "clinic", "h1", "biz2", "biz3", "h2"],
        ["1", "2", "3", "4", "5", "6"],
        {"biz2": 3, "biz1": 1},
        div,
    )
    # 800 left for "other": stakes 3:1 -> biz2 600, biz1 200; biz3 (no stake) nothing.
    assert got == [200, 500, 400, 600, 0, 100]


# --- clearing edge cases --------------------------------------------------------------------


@pytest.mark.parametrize(
    "orders",
    [
        [],
        [buy("b", "x", 100, 20)],
        [sell("s", "x", 100, 20)],
        [buy("b", "x", 100, 10), sell("s", "y", 100, 20)],
        [buy("b", "x", 0, 20), sell("s", "y", 0, 10)],
    ],
    ids=["empty", "buyers_only", "sellers_only", "no_cross", "zero_quantities"],
)
def test_books_without_trade(orders: list[Order]) -> None:
    res = clear_slot(orders, RULES, slot_start=SLOT)
    assert res.mode == "no_trade"
    assert res.volume_wh == 0
    assert res.fills == ()
    assert res.general_price is None
    assert len(res.orders) == len(orders)


def test_equal_prices_trade() -> None:
    res = clear_slot([buy("b", "x", 100, 20), sell("s", "y", 100, 20)], RULES, slot_start=SLOT)
    assert (res.volume_wh, res.general_price, res.surplus_milli) == (100, 20, 0)


def test_enormous_quantities_are_exact() -> None:
    big = 10**15
    res = clear_slot([buy("b", "x", big, 30), sell("s", "y", big, 10)], RULES, slot_start=SLOT)
    assert res.volume_wh == big
    assert res.general_price == 20
    assert res.members[0].paid_milli == big * 20


def test_buyer_limit_above_import_price_is_capped() -> None:
    res = clear_slot([buy("b", "x", 100, 99), sell("s", "y", 100, 20)], RULES, slot_start=SLOT)
    assert res.general_price == 25  # midpoint of [20, 30]: the bid counts as 30


def test_seller_below_feed_in_is_floored_and_exports_rest() -> None:
    res = clear_slot([buy("b", "x", 100, 10), sell("s", "y", 300, 1)], RULES, slot_start=SLOT)
    assert res.general_price == 8
    seller = next(o for o in res.orders if o.side == "sell")
    assert (seller.filled_wh, seller.grid_wh) == (100, 200)


def test_clean_only_scarce_gives_two_prices() -> None:
    orders = [
        buy("k", "erin", 1000, 28, clean_only=True),
        buy("i", "frank", 1000, 30),
        sell("c", "gina", 600, 10, clean=True),
        sell("n", "hugo", 2000, 14),
    ]
    res = clear_slot(orders, RULES, slot_start=SLOT)
    assert res.mode == "two_prices"
    assert (res.clean_price, res.general_price) == (28, 14)
    assert {(f.buyer, f.seller, f.energy_wh) for f in res.fills} == {
        ("erin", "gina", 600),
        ("frank", "hugo", 1000),
    }


def test_clean_supply_is_not_wasted_on_indifferent_buyer() -> None:
    # A greedy pass giving cheap clean energy to the first (indifferent) buyer would leave
    # the clean-only buyer with nothing; the optimum serves both.
    orders = [
        buy("i", "a", 100, 30),
        buy("k", "b", 100, 29, clean_only=True),
        sell("c", "c", 100, 9, clean=True),
        sell("n", "d", 100, 20),
    ]
    res = clear_slot(orders, RULES, slot_start=SLOT)
    assert res.volume_wh == 200
    assert {(f.buyer, f.seller) for f in res.fills} == {("a", "d"), ("b", "c")}
    assert res.mode == "single_price"


def test_preferred_partner_is_paired_first() -> None:
    orders = [
        buy("b1", "alice", 100, 30, preferred_partners=("zoe",)),
        buy("b2", "bob", 100, 30),
        sell("s1", "yann", 100, 10),
        sell("s2", "zoe", 100, 10),
    ]
    res = clear_slot(orders, RULES, slot_start=SLOT)
    assert {(f.buyer, f.seller) for f in res.fills} == {("alice", "zoe"), ("bob", "yann")}


def test_fee_is_paid_by_buyer_and_balances() -> None:
    rules = MarketRules(import_price=30, feed_in_tariff=8, distributor_fee=3)
    res = clear_slot([buy("b", "x", 100, 30), sell("s", "y", 100, 10)], rules, slot_start=SLOT)
    assert res.general_price == 18  # midpoint of [10, 27]
    x, y = res.members
    assert (x.paid_milli, x.fee_milli, y.received_milli) == (2100, 300, 1800)
    assert res.fees_milli == 300


def test_pay_as_bid_prices_each_fill_at_the_bid() -> None:
    rules = MarketRules(import_price=30, feed_in_tariff=8, pricing=Pricing.BID)
    orders = [buy("b1", "x", 100, 25), buy("b2", "w", 100, 15), sell("s", "y", 200, 10)]
    res = clear_slot(orders, rules, slot_start=SLOT)
    assert sorted(f.price for f in res.fills) == [15, 25]


def test_scarcity_by_priority_when_islanded() -> None:
    rules = MarketRules(import_price=30, feed_in_tariff=8, grid_available=False)
    orders = [
        buy("a", "home", 1000, 30),
        buy("b", "clinic", 600, 30, priority=Priority.ESSENTIAL),
        sell("s", "pv", 1000, 8, clean=True),
    ]
    res = clear_slot(orders, rules, slot_start=SLOT)
    assert res.scarcity
    got = {o.order_id: (o.filled_wh, o.unserved_wh) for o in res.orders if o.side == "buy"}
    assert got == {"a": (400, 600), "b": (600, 0)}


def test_scarcity_keeps_clean_only_buyers_on_clean_supply() -> None:
    rules = MarketRules(import_price=30, feed_in_tariff=8, grid_available=False)
    orders = [
        buy("k", "kate", 1000, 30, clean_only=True, priority=Priority.ESSENTIAL),
        buy("i", "ivan", 1000, 30),
        sell("c", "pv", 300, 8, clean=True),
        sell("n", "gen", 500, 8),
    ]
    res = clear_slot(orders, rules, slot_start=SLOT)
    for f in res.fills:
        if f.buyer == "kate":
            assert f.clean
    assert res.volume_wh == 800


def test_export_capacity_curtails_pro_rata() -> None:
    rules = MarketRules(import_price=30, feed_in_tariff=8, export_capacity_wh=300)
    orders = [sell("s1", "a", 400, 8), sell("s2", "b", 200, 8)]
    res = clear_slot(orders, rules, slot_start=SLOT)
    got = {o.order_id: (o.grid_wh, o.curtailed_wh) for o in res.orders}
    assert got == {"s1": (200, 200), "s2": (100, 100)}


def test_clear_book_threads_fairness_across_slots() -> None:
    def slot_orders(k: int, start: int) -> list[Order]:
        return [
            Order.single(f"b{k}", "q", Side.BUY, start, 1001, 20),
            Order.single(f"r{k}", "rosa", Side.SELL, start, 1000, 12),
            Order.single(f"s{k}", "sam", Side.SELL, start, 1000, 12),
        ]

    orders = tuple(slot_orders(1, SLOT) + slot_orders(2, SLOT + 900))
    result = clear_book(OrderBook(rules=RULES, orders=orders))
    winners = []
    for slot in result.slots:
        winner = max((o for o in slot.orders if o.side == "sell"), key=lambda o: o.filled_wh).owner
        winners.append(winner)
    assert winners[0] != winners[1]  # the tie does not go to the same seller twice
    assert result.fairness.wins() == {"rosa": 1, "sam": 1}
    assert result.to_dict()["fairness"] == {"margin_wins": {"rosa": 1, "sam": 1}}


def test_orders_of_other_slots_are_ignored() -> None:
    other = Order.single("x", "x", Side.BUY, SLOT + 900, 100, 30)
    res = clear_slot([other, sell("s", "y", 100, 10)], RULES, slot_start=SLOT)
    assert [o.order_id for o in res.orders] == ["s"]


def test_totals_beyond_int64_use_exact_python_paths() -> None:
    huge = 1 << 62
    orders = [
        buy("b1", "x", huge, 30),
        buy("b2", "w", huge, 25),
        sell("s1", "y", huge, 10),
        sell("s2", "z", huge, 12, clean=True),
    ]
    res = clear_slot(orders, RULES, slot_start=SLOT)
    assert res.volume_wh == 2 * huge
    assert sum(f.energy_wh for f in res.fills) == 2 * huge
    assert [(f.buyer_order, f.seller_order) for f in res.fills] == sorted(
        (f.buyer_order, f.seller_order) for f in res.fills
    )
    small = clear_slot(
        [
            buy("b1", "x", 4, 30),
            buy("b2", "w", 4, 25),
            sell("s1", "y", 4, 10),
            sell("s2", "z", 4, 12, clean=True),
        ],  # fmt: skip
        RULES,
        slot_start=SLOT,
    )
    # Same pairing structure whichever path computed it.
    assert [(f.buyer_order, f.seller_order, f.price) for f in res.fills] == [
        (f.buyer_order, f.seller_order, f.price) for f in small.fills
    ]


def test_prices_beyond_int64_are_exact() -> None:
    big = 1 << 70
    rules = MarketRules(import_price=big, feed_in_tariff=0)
    res = clear_slot([buy("b", "x", 10, big), sell("s", "y", 10, 2)], rules, slot_start=SLOT)
    assert res.general_price == (big + 2) // 2
    assert res.surplus_milli == 10 * (big - 2)


def test_results_compare_by_content() -> None:
    a = clear_slot([buy("b", "x", 10, 20), sell("s", "y", 10, 10)], RULES, slot_start=SLOT)
    b = clear_slot([sell("s", "y", 10, 10), buy("b", "x", 10, 20)], RULES, slot_start=SLOT)
    assert a == b
    assert a != "a result"
    assert a != clear_slot([], RULES, slot_start=SLOT)
