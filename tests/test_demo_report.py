"""The demo's ``--minutes N`` report: delivered / sold and each home's payments for its own
shortfalls, from the trades and delivery settlements that the homes' market views list.
(``./scripts/demo --minutes 30`` runs it for real.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
import sys
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))

from peer_demo.neighbourhood import parse_args
from peer_demo.report import DeliveryLog

START = 1_796_000_000 // 60 * 60


def iso(slot: int) -> str:
    return datetime.fromtimestamp(slot, UTC).isoformat()


def trade(slot: int, role: str, other: str, wh: int) -> dict[str, Any]:
    return {"slot_start": iso(slot), "role": role, "counterparty": other, "energy_wh": wh}


def settled(slot: int, role: str, other: str, wh: int, short: int, pay: int) -> dict[str, Any]:
    """A settlement as the market view lists it: ``payment_mmu`` signed for this home."""
    return {
        **trade(slot, role, other, wh),
        "delivered_wh": wh - short,
        "shortfall_wh": short,
        "payment_mmu": pay,
    }


def view(trades: list[dict[str, Any]], settlements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"price_digits": 2, "trades": trades, "settlements": settlements}


def test_delivered_over_sold_and_shortfall_payments_per_home() -> None:
    log = DeliveryLog(start=START, end=START + 3 * 60)
    s1 = START + 60
    # Home 1 sold 80 Wh to home 2 and delivered all; home 3 sold 40 Wh, delivered 30 and
    # paid home 2 3000 milli-cents (0.03000 EUR) for the rest.
    log.add(
        "home 1",
        view([trade(s1, "seller", "b2", 80)], [settled(s1, "seller", "b2", 80, 0, 0)]),
    )
    log.add(
        "home 3",
        view([trade(s1, "seller", "b2", 40)], [settled(s1, "seller", "b2", 40, 10, -3000)]),
    )
    home2 = view(
        [trade(s1, "buyer", "a1", 80), trade(s1, "buyer", "c3", 40)],
        [settled(s1, "buyer", "a1", 80, 0, 0), settled(s1, "buyer", "c3", 40, 10, 3000)],
    )
    log.add("home 2", home2)
    log.add("home 2", home2)  # polled again: nothing counts twice
    one, two, three = (log.figures(f"home {i}") for i in (1, 2, 3))
    assert (one.sold_wh, one.delivered_wh, one.paid_for_shortfalls) == (80, 80, 0)
    assert (three.sold_wh, three.delivered_wh, three.shortfall_wh) == (40, 30, 10)
    assert three.paid_for_shortfalls == 3000
    assert (two.sold_wh, two.bought_wh, two.received_for_shortfalls) == (0, 120, 3000)
    log.exported["home 1"] = 95  # its simulated grid meter, from the history
    lines = log.lines(["home 1", "home 2", "home 3"])
    assert "sold 120 Wh, delivered 110 Wh, delivered / sold 91.7 %" in lines[1]
    assert "delivered 80 Wh (100.0 %) of 95 Wh exported, shortfall 0 Wh" in lines[2]
    assert "paid for its own shortfalls 0.03000" in lines[4]
    assert lines[-1].startswith("target delivered / sold >= 95 %: missed")
    assert lines[-1].endswith("by their own shortfalls: home 3")


def test_only_the_measured_slots_and_settled_sales_count() -> None:
    log = DeliveryLog(start=START, end=START + 2 * 60)
    before, inside, after = START - 60, START + 60, START + 120
    log.add(
        "home 1",
        view(
            [
                trade(before, "seller", "b2", 50),
                trade(inside, "seller", "b2", 70),
                trade(START, "seller", "b2", 20),
                trade(after, "seller", "b2", 90),
            ],
            [
                settled(before, "seller", "b2", 50, 50, -15000),
                settled(inside, "seller", "b2", 70, 0, 0),
                settled(after, "seller", "b2", 90, 90, -27000),
            ],
        ),
    )
    fig = log.figures("home 1")
    assert (fig.sold_wh, fig.delivered_wh, fig.paid_for_shortfalls) == (70, 70, 0)
    assert (fig.sales_unsettled, fig.unsettled_wh) == (1, 20)
    assert log.unsettled() == 1
    lines = log.lines(["home 1"])
    assert "1 sales not settled yet (not counted)" in lines[1]
    assert lines[-1] == (
        "target delivered / sold >= 95 %: met; homes whose balance moved against them by "
        "their own shortfalls: none"
    )


@pytest.mark.parametrize(
    "argv",
    [["--minutes", "5", "--homes", "1"], ["--minutes", "5", "--check"], ["--minutes", "-1"]],
)
def test_minutes_needs_a_community_and_no_check(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert parse_args(["--minutes", "30"]).minutes == 30
