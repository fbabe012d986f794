"""Mutual credit: countersigned trades, zero sum, limits, donations and settlement."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.peer_energy.core.trust.chain import (
    ChainEntry,
    VerifyMode,
    genesis_entry,
    next_entry,
    verify_chain,
)
from custom_components.peer_energy.core.trust.credit import (
    TRADE,
    TRANSFER,
    CreditLedger,
    CreditPolicy,
    DeliveryReport,
    Refusal,
    Role,
    SignedTrade,
    Tally,
    TradeSignature,
    TradeTerms,
    Transfer,
    report_delivery,
    settle_delivery,
    sign_trade,
    sign_transfer,
    trade_entry_checker,
    verify_trade,
)
from custom_components.peer_energy.core.trust.identity import Identity, KeyRing, rotate_key

from .conftest import make_identity

PEOPLE = [make_identity(name) for name in ("ann", "bob", "cat", "dan")]
ANN, BOB, CAT, DAN = PEOPLE
A, B, C, D = (p.public_key for p in PEOPLE)
KEYS = {p.public_key: p for p in PEOPLE}
RING = KeyRing().with_member(A).with_member(B).with_member(C).with_member(D)
SLOT = 1_800_000_000
POLICY = CreditPolicy(base_limit=100_000, fee_account="fee:dso")


def ledger() -> CreditLedger:
    return CreditLedger("street-7", policy=POLICY, keyring=RING)


def signed(terms: TradeTerms) -> SignedTrade:
    return SignedTrade(
        terms, sign_trade(terms, KEYS[terms.buyer]), sign_trade(terms, KEYS[terms.seller])
    )


def trade(led: CreditLedger, buyer: str, seller: str, wh: int, price: int, **kw) -> SignedTrade:  # type: ignore[no-untyped-def]
    terms, result = led.propose_trade(
        slot=SLOT, buyer=buyer, seller=seller, energy_wh=wh, price=price, **kw
    )
    assert terms is not None, result
    return signed(terms)


def test_trade_moves_money_and_sums_to_zero() -> None:
    led = ledger()
    t = trade(led, A, B, 1500, 20, fee=2, clean=True)
    assert led.apply_trade(t).ok
    assert led.balance(A) == -1500 * 22
    assert led.balance(B) == 1500 * 20
    assert led.balance("fee:dso") == 1500 * 2
    assert led.total() == 0
    assert led.tally(A) == Tally(clean_bought_wh=1500)
    assert led.tally(B) == Tally(clean_sold_wh=1500)
    assert led.tally(C).to_dict() == Tally().to_dict()
    assert SignedTrade.from_dict(t.to_dict()) == t
    assert t.trade_id == t.terms.trade_id


def test_a_replayed_trade_is_a_duplicate() -> None:
    led = ledger()
    t = trade(led, A, B, 100, 20)
    assert led.apply_trade(t).ok
    assert led.apply_trade(t).refusal is Refusal.DUPLICATE


def half(t: SignedTrade, buyer: bool) -> SignedTrade:
    empty = TradeSignature("", "")
    return replace(t, seller=empty) if buyer else replace(t, buyer=empty)


@pytest.mark.parametrize(
    ("make", "refusal"),
    [
        (lambda t: half(t, buyer=True), Refusal.MISSING_SIGNATURE),
        (lambda t: half(t, buyer=False), Refusal.MISSING_SIGNATURE),
        (lambda t: replace(t, buyer=t.seller), Refusal.BAD_SIGNATURE),
        (lambda t: replace(t, seller=sign_trade(t.terms, CAT)), Refusal.BAD_SIGNATURE),
        (
            lambda t: replace(t, seller=TradeSignature(B, t.buyer.sig)),
            Refusal.BAD_SIGNATURE,
        ),
        (lambda t: replace(t, terms=replace(t.terms, energy_wh=1)), Refusal.BAD_SIGNATURE),
        (
            lambda t: replace(t, buyer=sign_trade(t.terms, make_identity("eve"))),
            Refusal.UNKNOWN_MEMBER,
        ),
    ],
)
def test_neither_half_is_valid_alone(make, refusal: Refusal) -> None:  # type: ignore[no-untyped-def]
    led = ledger()
    bad = make(trade(led, A, B, 100, 20))
    result = led.apply_trade(bad)
    assert result.refusal is refusal
    assert led.balances == {}
    assert led.total() == 0


@pytest.mark.parametrize(
    "change",
    [
        {"energy_wh": 0},
        {"energy_wh": -5},
        {"price": -1},
        {"fee": -1},
        {"seller": A},
        {"buyer": "nobody"},
        {"clean": 1},
        {"price": 2.5},
        {"community": 7},
    ],
)
def test_invalid_terms_are_refused(change: dict[str, object]) -> None:
    led = ledger()
    t = trade(led, A, B, 100, 20)
    bad = replace(t, terms=replace(t.terms, **change))  # type: ignore[arg-type]
    assert led.apply_trade(bad).refusal is Refusal.INVALID_TERMS
    assert verify_trade(bad).refusal is Refusal.INVALID_TERMS


def test_other_community_is_refused() -> None:
    led = ledger()
    t = trade(led, A, B, 100, 20)
    assert led.apply_trade(signed(replace(t.terms, community="x"))).refusal is (
        Refusal.OTHER_COMMUNITY
    )
    assert led.balances == {}


def test_a_countersigned_trade_with_a_stated_balance_that_differs_is_recorded() -> None:
    """Both parties signed it: recorded as a delta, the differing party reported."""
    led = ledger()
    t = trade(led, A, B, 100, 20)
    wrong_buyer = signed(replace(t.terms, buyer_balance=0))
    checked = led.check_trade(wrong_buyer)
    assert checked.ok
    assert checked.disagreed == (A,)
    assert led.balances == {}  # a check changes nothing
    result = led.apply_trade(wrong_buyer)
    assert result.ok
    assert result.disagreed == (A,)
    assert (led.balance(A), led.balance(B)) == (-2000, 2000)
    wrong_both = signed(replace(t.terms, slot=SLOT + 60, buyer_balance=1, seller_balance=5))
    assert led.apply_trade(wrong_both).disagreed == (A, B)
    assert (led.balance(A), led.balance(B)) == (-4000, 4000)
    right = trade(led, A, B, 100, 20)
    assert led.apply_trade(right).disagreed == ()
    assert led.total() == 0
    # still checked: one signature alone is not a trade
    half = replace(trade(led, A, B, 50, 20), seller=TradeSignature("", ""))
    assert led.apply_trade(half).refusal is Refusal.MISSING_SIGNATURE


def test_credit_limit_is_refused_before_signing_and_at_apply() -> None:
    led = ledger()
    assert led.limit(A) == 100_000  # neutral score: the base
    assert led.max_buy_wh(A, 20) == 5000
    assert led.max_buy_wh(A, 18, 2) == 5000
    assert led.max_buy_wh(A, 0) > 10**6
    terms, result = led.propose_trade(slot=SLOT, buyer=A, seller=B, energy_wh=5001, price=20)
    assert terms is None
    assert result.refusal is Refusal.OVER_LIMIT
    assert led.apply_trade(trade(led, A, B, 5000, 20)).ok
    assert led.headroom(A) == 0
    # Signed by both anyway: a party still refuses to record it.
    over = signed(TradeTerms("street-7", SLOT, A, C, 1, 1, 0, False, True, "", "", -100_001, 1))
    assert led.apply_trade(over).refusal is Refusal.OVER_LIMIT
    # An observer replaying what both parties signed may skip its own limit view.
    assert led.apply_trade(over, enforce_limit=False).ok
    assert led.total() == 0


def test_reputation_scales_the_limit() -> None:
    led = ledger()
    led.scores = {A: 1000, B: 0, C: 250}
    assert led.limit(A) == 200_000
    assert led.limit(B) == 0
    assert led.limit(C) == 50_000
    assert led.limit(D) == 100_000
    assert POLICY.limit(5000) == 200_000  # clamped
    assert CreditPolicy(base_limit=1000, min_factor=500, max_factor=1500).limit(0) == 500
    _, result = led.propose_trade(slot=SLOT, buyer=B, seller=A, energy_wh=1, price=1)
    assert result.refusal is Refusal.OVER_LIMIT


def test_propose_refuses_bad_input() -> None:
    terms, result = ledger().propose_trade(slot=SLOT, buyer=A, seller=A, energy_wh=1, price=1)
    assert terms is None
    assert result.refusal is Refusal.INVALID_TERMS


def test_from_dict_errors() -> None:
    with pytest.raises(ValueError, match="terms"):
        TradeTerms.from_dict({"community": "x"})
    with pytest.raises(ValueError, match="malformed"):
        SignedTrade.from_dict({"terms": {}})
    with pytest.raises(ValueError, match="transfer"):
        Transfer.from_dict({})
    with pytest.raises(ValueError, match="delivery report"):
        DeliveryReport.from_dict({"role": "buyer"})


members = st.sampled_from([A, B, C, D])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(members, members, st.integers(1, 4000), st.integers(0, 60), st.integers(0, 3)),
        max_size=25,
    ),
    st.dictionaries(members, st.integers(0, 1000)),
)
def test_random_trades_sum_to_zero_and_never_pass_a_limit(
    steps: list[tuple[str, str, int, int, int]], scores: dict[str, int]
) -> None:
    led = ledger()
    led.scores = scores
    for buyer, seller, wh, price, fee in steps:
        before = dict(led.balances)
        terms = TradeTerms(
            "street-7",
            SLOT,
            buyer,
            seller,
            wh,
            price,
            fee,
            wh % 2 == 0,
            True,
            "",
            "",
            led.balance(buyer) - wh * (price + fee),
            led.balance(seller) + wh * price,
        )
        result = led.apply_trade(signed(terms))
        if not result.ok:
            assert led.balances == before  # refused: nothing recorded
        assert led.total() == 0
        for member in (A, B, C, D):
            assert led.balance(member) >= -led.limit(member)
    sold = sum(t.clean_sold_wh + t.other_sold_wh for t in led.tallies.values())
    bought = sum(t.clean_bought_wh + t.other_bought_wh for t in led.tallies.values())
    assert sold == bought


# --- donations ---


def donation(led: CreditLedger, sender=BOB, amount: int = 1000, **kw) -> Transfer:  # type: ignore[no-untyped-def]
    member = sender.public_key
    transfer = Transfer(
        "street-7", member, "ext:school", amount, SLOT * 1000, "for the school", "",
        led.balance(member) - amount,
    )  # fmt: skip
    return sign_transfer(replace(transfer, **kw), sender)


def test_donation_to_a_named_recipient_outside_the_community() -> None:
    led = ledger()
    assert led.apply_trade(trade(led, A, B, 100, 20)).ok
    gift = donation(led, amount=1500)
    assert led.apply_transfer(gift).ok
    assert led.balance("ext:school") == 1500
    assert led.balance(B) == 500
    assert led.total() == 0
    assert led.apply_transfer(gift).refusal is Refusal.DUPLICATE
    assert Transfer.from_dict(gift.to_dict()) == gift


def test_only_surplus_can_be_donated() -> None:
    led = ledger()
    assert led.apply_transfer(donation(led, amount=1)).refusal is Refusal.INSUFFICIENT_SURPLUS
    assert led.balances == {}


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"amount": 0}, Refusal.INVALID_TERMS),
        ({"amount": 1.5}, Refusal.INVALID_TERMS),
        ({"memo": 3}, Refusal.INVALID_TERMS),
        ({"community": "x"}, Refusal.OTHER_COMMUNITY),
        ({"sig": ""}, Refusal.MISSING_SIGNATURE),
        ({"key": ANN.public_key}, Refusal.BAD_SIGNATURE),
        ({"sender_balance": 5}, Refusal.BAD_SIGNATURE),
    ],
)
def test_bad_donations(change: dict[str, object], refusal: Refusal) -> None:
    led = ledger()
    led.apply_trade(trade(led, A, B, 100, 20))
    gift = replace(donation(led), **change)  # type: ignore[arg-type]
    assert led.apply_transfer(gift).refusal is refusal


def test_donation_with_a_wrong_resulting_balance() -> None:
    led = ledger()
    led.apply_trade(trade(led, A, B, 100, 20))
    assert led.apply_transfer(donation(led, sender_balance=5)).refusal is Refusal.BALANCE_MISMATCH


def test_donation_checks_signer_and_recipient() -> None:
    led = ledger()
    led.apply_trade(trade(led, A, B, 100, 20))
    by_eve = sign_transfer(donation(led), make_identity("eve"))
    assert led.apply_transfer(by_eve).refusal is Refusal.UNKNOWN_MEMBER
    to_self = sign_transfer(replace(donation(led), recipient=B), BOB)
    assert led.apply_transfer(to_self).refusal is Refusal.INVALID_TERMS
    bad_text = replace(donation(led), memo="\ud800")
    assert led.apply_transfer(bad_text).refusal is Refusal.INVALID_TERMS


# --- delivery and settlement ---


def delivered(seller_wh: int, buyer_wh: int | None):  # type: ignore[no-untyped-def]
    led = ledger()
    t = trade(led, A, B, 1000, 20, clean=True)
    assert led.apply_trade(t).ok
    seller = report_delivery(t.terms, BOB, B, Role.SELLER, seller_wh, SLOT * 1000 + 900_000)
    buyer = (
        None
        if buyer_wh is None
        else report_delivery(t.terms, ANN, A, Role.BUYER, buyer_wh, SLOT * 1000 + 900_000)
    )
    return led, t, settle_delivery(t.terms, seller, buyer, import_price=30)


def test_full_delivery_settles_nothing() -> None:
    led, _, settlement = delivered(1000, 1000)
    assert (settlement.shortfall_wh, settlement.payment, settlement.disputed) == (0, 0, False)
    assert led.apply_settlement(settlement).ok
    assert led.balance(A) == -20_000
    assert led.apply_settlement(settlement).refusal is Refusal.DUPLICATE


def test_shortfall_is_paid_at_the_import_price() -> None:
    led, _, settlement = delivered(600, 600)
    assert settlement.shortfall_wh == 400
    assert settlement.delivered_wh == 600
    assert settlement.payment == 400 * 30
    assert led.apply_settlement(settlement).ok
    assert led.balance(A) == -20_000 + 12_000
    assert led.balance(B) == 20_000 - 12_000
    assert led.total() == 0
    assert led.tally(A).clean_bought_wh == 600
    assert led.tally(B).clean_sold_wh == 600
    assert settlement.to_dict()["payment"] == 12_000


def test_settlements_move_the_balance_not_the_signed_balance() -> None:
    led, _, settlement = delivered(600, 600)  # bob sold 1000 Wh to ann, delivered 600
    signed_before = (led.signed_balance(A), led.signed_balance(B))
    assert signed_before == (led.balance(A), led.balance(B)) == (-20_000, 20_000)
    assert led.apply_settlement(settlement).ok
    assert (led.signed_balance(A), led.signed_balance(B)) == signed_before
    assert led.settled == {A: 12_000, B: -12_000}
    assert (led.balance(A), led.balance(B)) == (-8_000, 8_000)


def test_a_trade_and_an_earlier_settlement_commute() -> None:
    """A trade whose halves were computed before a shortfall payment was recorded is
    accepted whether a ledger records the payment first or the trade first."""
    first, _, settlement = delivered(600, 600)
    second, _, _ = delivered(600, 600)  # the same records (signatures are deterministic)
    later = trade(first, B, A, 50, 20)  # both halves computed before the payment
    assert first.apply_settlement(settlement).ok
    assert trade(first, B, A, 50, 20) == later  # and after it: the very same terms
    assert first.apply_trade(later).ok
    assert second.apply_trade(later).ok
    assert second.apply_settlement(settlement).ok
    assert first.balances == second.balances
    assert first.settled == second.settled
    assert first.total() == second.total() == 0
    assert first.balance(B) == 20_000 - 12_000 - 50 * 20


def test_stated_balances_that_differ_are_reported_after_a_settlement() -> None:
    led, _, settlement = delivered(600, 600)
    assert led.apply_settlement(settlement).ok
    t = trade(led, B, A, 50, 20).terms
    assert (t.buyer_balance, t.seller_balance) == (20_000 - 1000, -20_000 + 1000)
    for forged in (
        replace(t, buyer_balance=t.buyer_balance + 1),
        replace(t, seller_balance=t.seller_balance - 1),
        replace(t, buyer_balance=t.buyer_balance + 12_000 + 1),
        replace(t, seller_balance=0),
    ):
        assert led.check_trade(signed(forged)).disagreed
    assert led.check_trade(signed(t)).disagreed == ()
    # The whole balance after the trade is what homes of earlier versions signed: still
    # accepted, and the ledger moves by the trade's amounts all the same.
    legacy = replace(
        t, buyer_balance=led.balance(B) - t.cost, seller_balance=led.balance(A) + t.value
    )
    assert legacy != t
    assert led.apply_trade(signed(legacy)).ok
    assert (led.balance(B), led.balance(A)) == (8_000 - 1000, -8_000 + 1000)
    assert led.signed_balance(B) == 20_000 - 1000
    assert led.total() == 0


def test_the_limit_counts_settlement_debts() -> None:
    """The credit limit bounds what a member owes in all, shortfall payments included."""
    led, _, settlement = delivered(600, 600)
    assert led.apply_settlement(settlement).ok  # bob: signed 20,000, owes 12,000 of it
    assert led.max_buy_wh(B, 20) == (8_000 + 100_000) // 20
    terms, result = led.propose_trade(slot=SLOT, buyer=B, seller=C, energy_wh=5500, price=20)
    assert terms is None
    assert result.refusal is Refusal.OVER_LIMIT
    assert "owe 102000" in result.detail
    assert led.apply_trade(trade(led, B, C, 5400, 20)).ok
    assert led.balance(B) == -100_000


def test_donations_commit_to_the_signed_balance() -> None:
    led, _, settlement = delivered(600, 600)
    gift = donation(led, amount=1000, sender_balance=led.signed_balance(B) - 1000)
    assert led.apply_settlement(settlement).ok
    assert led.apply_transfer(gift).ok  # signed before the payment, recorded after it
    assert led.balance(B) == 20_000 - 12_000 - 1000
    assert led.total() == 0


def test_over_delivery_and_disputes() -> None:
    _, _, over = delivered(1500, None)
    assert (over.shortfall_wh, over.payment, over.disputed) == (0, 0, False)
    _, _, dispute = delivered(1000, 700)
    assert dispute.disputed
    assert dispute.payment == 0


def test_settlement_needs_the_parties_signed_reports() -> None:
    led, t, settlement = delivered(600, 600)
    by_buyer = report_delivery(t.terms, ANN, A, Role.SELLER, 1000, 1)
    forged = settle_delivery(t.terms, by_buyer, None, 30)
    assert led.apply_settlement(forged).refusal is Refusal.BAD_SIGNATURE
    fake_buyer = report_delivery(t.terms, CAT, A, Role.BUYER, 0, 1)
    forged2 = settle_delivery(t.terms, settlement.seller_report, fake_buyer, 30)
    assert led.apply_settlement(forged2).refusal is Refusal.BAD_SIGNATURE
    assert led.apply_settlement(replace(settlement, payment=1)).refusal is Refusal.REPORT_MISMATCH
    assert led.apply_settlement(replace(settlement, import_price=-1)).refusal is (
        Refusal.INVALID_TERMS
    )
    other_report = replace(settlement.seller_report, trade_id="00" * 32)
    assert led.apply_settlement(replace(settlement, seller_report=other_report)).refusal is (
        Refusal.REPORT_MISMATCH
    )
    unknown = replace(settlement, terms=replace(t.terms, energy_wh=999))
    assert led.apply_settlement(unknown).refusal is Refusal.UNKNOWN_TRADE
    assert led.balance(A) == -20_000  # nothing moved


def test_report_validity_rules() -> None:
    _, t, settlement = delivered(600, 600)
    report = settlement.seller_report
    assert report.valid_for(B, Role.SELLER, RING)
    assert not report.valid_for(A, Role.SELLER, RING)
    assert not report.valid_for(B, Role.BUYER, RING)
    assert not replace(report, metered_wh=-1).valid_for(B, Role.SELLER, None)
    assert not replace(report, metered_wh=601).valid_for(B, Role.SELLER, None)
    assert not replace(report, ts_ms=1.5).valid_for(B, Role.SELLER, None)
    assert DeliveryReport.from_dict(report.to_dict()) == report


# --- chain integration ---


def chain_with_trade(counter: Identity = BOB) -> tuple[list[ChainEntry], SignedTrade]:
    g = genesis_entry(ANN, SLOT * 1000, "street-7")
    led = ledger()
    t = trade(led, A, counter.public_key, 100, 20, buyer_prev=g.hash_hex)
    entry = next_entry(ANN, g, SLOT * 1000 + 1, TRADE, t.to_dict())
    return [g, entry], t


def test_full_verify_checks_countersignatures() -> None:
    entries, t = chain_with_trade()
    assert verify_chain(entries, mode=VerifyMode.FULL, entry_check=trade_entry_checker(RING)).ok
    forged = replace(t, seller=TradeSignature(B, t.buyer.sig))
    bad = [entries[0], next_entry(ANN, entries[0], SLOT * 1000 + 1, TRADE, forged.to_dict())]
    report = verify_chain(bad, mode=VerifyMode.FULL, entry_check=trade_entry_checker(RING))
    assert "trade" in report.reason
    # The cheaper AUTHOR mode trusts the member's own signature for inner records.
    assert verify_chain(bad, mode=VerifyMode.AUTHOR).ok


def test_trade_must_commit_to_this_chain_and_involve_its_member() -> None:
    g = genesis_entry(ANN, SLOT * 1000, "street-7")
    led = ledger()
    foreign_prev = trade(led, A, B, 100, 20, buyer_prev="ab" * 32)
    e = next_entry(ANN, g, SLOT * 1000 + 1, TRADE, foreign_prev.to_dict())
    report = verify_chain([g, e], mode=VerifyMode.FULL, entry_check=trade_entry_checker())
    assert "previous hash" in report.reason
    others = trade(led, C, B, 100, 20)
    e2 = next_entry(ANN, g, SLOT * 1000 + 1, TRADE, others.to_dict())
    report = verify_chain([g, e2], mode=VerifyMode.FULL, entry_check=trade_entry_checker())
    assert "does not involve" in report.reason
    e3 = next_entry(ANN, g, SLOT * 1000 + 1, TRADE, {"terms": 1})
    assert not verify_chain([g, e3], mode=VerifyMode.FULL, entry_check=trade_entry_checker()).ok
    seller_side = trade(led, B, A, 100, 20, seller_prev=g.hash_hex)
    e4 = next_entry(ANN, g, SLOT * 1000 + 1, TRADE, seller_side.to_dict())
    assert verify_chain([g, e4], mode=VerifyMode.FULL, entry_check=trade_entry_checker()).ok


def test_full_verify_checks_transfers() -> None:
    g = genesis_entry(BOB, SLOT * 1000, "street-7")
    led = ledger()
    led.balances[B] = 5000
    gift = donation(led, amount=100)
    e = next_entry(BOB, g, SLOT * 1000 + 1, TRANSFER, gift.to_dict())
    check = trade_entry_checker
    assert verify_chain([g, e], mode=VerifyMode.FULL, entry_check=check()).ok
    bad = next_entry(BOB, g, SLOT * 1000 + 1, TRANSFER, gift.to_dict() | {"amount": 101})
    assert "transfer" in verify_chain([g, bad], mode=VerifyMode.FULL, entry_check=check()).reason
    broken = next_entry(BOB, g, SLOT * 1000 + 1, TRANSFER, {"x": 1})
    assert not verify_chain([g, broken], mode=VerifyMode.FULL, entry_check=check()).ok
    g2 = genesis_entry(CAT, SLOT * 1000, "street-7")
    e5 = next_entry(CAT, g2, SLOT * 1000 + 1, TRANSFER, gift.to_dict())
    assert "member" in verify_chain([g2, e5], mode=VerifyMode.FULL, entry_check=check()).reason


def test_trades_signed_after_a_key_rotation() -> None:
    new_bob = make_identity("bob-2")
    ring = RING.with_rotation(rotate_key(B, BOB, new_bob, SLOT * 1000 - 10))
    led = CreditLedger("street-7", policy=POLICY, keyring=ring)
    terms, _ = led.propose_trade(slot=SLOT, buyer=A, seller=B, energy_wh=10, price=20)
    assert terms is not None
    good = SignedTrade(terms, sign_trade(terms, ANN), sign_trade(terms, new_bob))
    old = SignedTrade(terms, sign_trade(terms, ANN), sign_trade(terms, BOB))
    assert led.apply_trade(old).refusal is Refusal.UNKNOWN_MEMBER
    assert led.apply_trade(good).ok


def test_old_trades_are_forgotten_from_memory() -> None:
    led, t, settlement = delivered(600, 600)
    led.forget_before(SLOT * 1000)  # nothing older than the trade's slot
    assert t.trade_id in led.trades
    led.forget_before((SLOT + 1) * 1000)
    assert led.trades == {}
    assert t.trade_id not in led.applied
    assert led.apply_settlement(settlement).refusal is Refusal.UNKNOWN_TRADE
    led.forget_before((SLOT + 2) * 1000)  # nothing left: no work


def test_asset_keys_cannot_sign_money() -> None:
    from custom_components.peer_energy.core.trust.identity import enrol_asset

    plug = make_identity("ann-plug")
    ring = RING.with_enrolment(enrol_asset(A, ANN, plug, "plug.kitchen", "plug", 0))
    led = CreditLedger("street-7", policy=POLICY, keyring=ring)
    terms, _ = led.propose_trade(slot=SLOT, buyer=A, seller=B, energy_wh=10, price=20)
    assert terms is not None
    by_plug = SignedTrade(terms, sign_trade(terms, plug), sign_trade(terms, BOB))
    assert led.apply_trade(by_plug).refusal is Refusal.UNKNOWN_MEMBER
    led.balances[A] = 5000
    gift = sign_transfer(Transfer("street-7", A, "ext:x", 10, SLOT * 1000, "", "", 4990), plug)
    assert led.apply_transfer(gift).refusal is Refusal.UNKNOWN_MEMBER


def test_orders_past_the_limit_are_refused_before_the_market() -> None:
    led = ledger()
    assert led.check_order(A, 5000, 20).ok
    assert led.check_order(A, 5001, 20).refusal is Refusal.OVER_LIMIT
    assert led.check_order(A, 4000, 24, 1).ok
    assert led.check_order(A, 4001, 24, 1).refusal is Refusal.OVER_LIMIT
    assert led.check_order(A, 0, 20).refusal is Refusal.INVALID_TERMS
    assert led.check_order(A, 10, -1).refusal is Refusal.INVALID_TERMS
    assert led.check_order(A, 10, 2.5).refusal is Refusal.INVALID_TERMS  # type: ignore[arg-type]
    led.scores = {A: 0}
    assert led.check_order(A, 1, 1).refusal is Refusal.OVER_LIMIT
