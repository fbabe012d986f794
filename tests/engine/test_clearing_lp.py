"""Traded surplus equals the optimum of the linear program, solved here with HiGHS.

The LP: one variable per compatible (buy step, sell step) pair, bounded by the steps'
energy; maximise the sum of (effective bid - effective ask) x energy. Effective prices are
the clamped ones of ``clearing`` (bid capped at the import price minus the fee, ask raised
to the feed-in tariff). Clean-only buy steps pair only with clean sell steps.
"""

from __future__ import annotations

import highspy  # type: ignore[import-untyped]
from hypothesis import given, settings, strategies as st

from custom_components.peer_energy.core.market.clearing import clear_slot
from custom_components.peer_energy.core.market.orders import MarketRules, Order, Side

from .books import SLOT, orders, rules


def lp_optimum(book: list[Order], r: MarketRules) -> float:
    buys = [
        (min(s.price, r.import_price) - r.distributor_fee, s.energy_wh, o.clean_only)
        for o in book
        if o.side is Side.BUY
        for s in o.steps
    ]
    sells = [
        (max(s.price, r.feed_in_tariff), s.energy_wh, o.clean)
        for o in book
        if o.side is Side.SELL
        for s in o.steps
    ]
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    pairs = []
    for i, (v, _q, konly) in enumerate(buys):
        for j, (c, _p, clean) in enumerate(sells):
            if konly and not clean:
                continue
            pairs.append((i, j, h.addVariable(lb=0, ub=highspy.kHighsInf, obj=v - c)))
    if not pairs:
        return 0.0
    for i, (_v, q, _k) in enumerate(buys):
        terms = [x for (bi, _j, x) in pairs if bi == i]
        if terms:
            h.addConstr(sum(terms[1:], terms[0]) <= q)
    for j, (_c, q, _cl) in enumerate(sells):
        terms = [x for (_i, sj, x) in pairs if sj == j]
        if terms:
            h.addConstr(sum(terms[1:], terms[0]) <= q)
    h.maximize()
    return float(h.getObjectiveValue())


@settings(max_examples=100, deadline=None)
@given(book=orders(max_orders=9), r=rules(fair=False, grid=False))
def test_surplus_equals_lp_optimum(book: list[Order], r: MarketRules) -> None:
    result = clear_slot(book, r, slot_start=SLOT)
    assert result.surplus_milli == round(lp_optimum(book, r))


@settings(max_examples=60, deadline=None)
@given(
    n_clean=st.integers(1, 4),
    n_other=st.integers(1, 4),
    data=st.data(),
)
def test_lp_on_clean_scarce_books(n_clean: int, n_other: int, data: st.DataObject) -> None:
    """Books built so that clean-only demand competes for scarce clean supply."""
    book: list[Order] = []
    k = 0
    for _ in range(n_clean):
        k += 1
        book.append(
            Order.single(
                f"c{k}",
                f"g{k}",
                Side.SELL,
                SLOT,
                data.draw(st.integers(1, 900)),
                data.draw(st.integers(5, 25)),
                clean=True,
            )
        )
        book.append(
            Order.single(
                f"k{k}",
                f"h{k}",
                Side.BUY,
                SLOT,
                data.draw(st.integers(1, 1500)),
                data.draw(st.integers(5, 40)),
                clean_only=True,
            )
        )
    for _ in range(n_other):
        k += 1
        book.append(
            Order.single(
                f"n{k}",
                f"g{k}",
                Side.SELL,
                SLOT,
                data.draw(st.integers(1, 2000)),
                data.draw(st.integers(5, 25)),
            )
        )
        book.append(
            Order.single(
                f"i{k}",
                f"h{k}",
                Side.BUY,
                SLOT,
                data.draw(st.integers(1, 1500)),
                data.draw(st.integers(5, 40)),
            )
        )
    r = MarketRules(import_price=40, feed_in_tariff=5)
    result = clear_slot(book, r, slot_start=SLOT)
    assert result.surplus_milli == round(lp_optimum(book, r))
    if result.mode == "two_prices" and result.clean_price is not None and result.general_price:
        assert result.clean_price >= result.general_price
