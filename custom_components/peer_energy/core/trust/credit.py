"""Mutual credit: countersigned trades, exact zero-sum balances, limits, donations, delivery.

Units: energy in Wh, prices in minor currency units per kWh, money (balances, values,
fees, limits) in *milli-minor units* (Wh x minor/kWh, exact integers).

* A **trade** is one canonical record (``TradeTerms``): slot, buyer, seller, energy,
  price, distributor fee, attributes (clean, local), each party's previous chain-entry
  hash and each party's *signed balance* after the trade (see below). Both parties sign
  the same bytes; a ``SignedTrade`` needs both signatures, neither half is valid alone.
  The buyer pays ``energy x (price + fee)``, the seller receives ``energy x price``, the
  fee account receives ``energy x fee`` (the clearing engine's convention).
* **Balances** start at zero and every record moves money between accounts, so the sum
  over the community (members, fee account, outside recipients) is exactly zero. Each
  record is applied as a delta. An account's balance has two parts: the **signed
  balance**, moved only by the records its owner signs (trades and donations), and the
  **settled** sum, moved only by delivery settlements. Trades and donations commit to
  the signed balance after them, which settlements never change, so a settlement and a
  trade commute: a ledger may record them in either order (a shortfall payment recorded
  between the two halves of a trade no longer makes the trade's balances wrong). A
  countersigned trade whose stated balance still differs from a ledger's (a party signed
  from a ledger that lacked some of its own records) is recorded all the same and the
  difference reported: both parties agreed to it, and the ledger moves by its amounts.
  Sellers issue credit by delivering; buyers spend it and may go negative down to their
  **credit limit**: ``base x factor(reputation)``, see ``CreditPolicy``. A trade that
  would take the buyer past its limit is refused before anything is signed or recorded.
* A **donation** (``Transfer``) moves surplus value to a named recipient inside or
  outside the community, signed by the donor; it may not make the donor's signed
  balance negative (only surplus can be given away).
* **Delivery**: after the slot each party signs a ``DeliveryReport`` of its metered
  energy. ``settle_delivery`` turns the seller's shortfall into an imbalance payment
  from seller to buyer at the grid import price (the buyer had to buy the missing
  energy from the grid), and flags a dispute when the buyer reports less than the
  seller claims. Settlements are obligations: they are not refused by the limit.
* Every member has a running **tally** of clean and non-clean Wh bought and sold
  (traded energy, reduced by settled shortfalls).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .canonical import CanonicalError, canonical_bytes, digest
from .chain import ChainEntry
from .identity import Identity, KeyRing, KeyRole, Purpose, is_key_hex, verify_hex

MAX_ENERGY_WH = 10**9
MAX_PRICE = 10**6
SCORE_SCALE = 1000  # reputation scores are integers in permille, 0..1000
DEFAULT_BASE_LIMIT = 2_000_000  # milli-minor units: 20.00 in major units

# Chain entry kinds for credit records.
TRADE = "trade"
TRANSFER = "transfer"
DELIVERY = "delivery"
SETTLEMENT = "settlement"


class Refusal(StrEnum):
    """Why a credit record was refused (and not recorded)."""

    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_MEMBER = "unknown_member"
    INVALID_TERMS = "invalid_terms"
    OTHER_COMMUNITY = "other_community"
    DUPLICATE = "duplicate"
    BALANCE_MISMATCH = "balance_mismatch"
    OVER_LIMIT = "over_limit"
    INSUFFICIENT_SURPLUS = "insufficient_surplus"
    REPORT_MISMATCH = "report_mismatch"
    UNKNOWN_TRADE = "unknown_trade"


@dataclass(frozen=True, slots=True)
class CreditResult:
    """Outcome of a check or an apply: ``refusal`` is ``None`` when accepted.

    ``disagreed`` names the parties of an accepted trade whose stated balance differs from
    this ledger's (reported, not refused: see ``CreditLedger.check_trade``).
    """

    refusal: Refusal | None = None
    detail: str = ""
    disagreed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True if accepted."""
        return self.refusal is None


_OK = CreditResult()


def _refuse(refusal: Refusal, detail: str) -> CreditResult:
    return CreditResult(refusal, detail)


@dataclass(frozen=True, slots=True)
class CreditPolicy:
    """Community credit rules (configurable).

    ``limit = base_limit x factor / 1000`` with
    ``factor = min_factor + (max_factor - min_factor) x score / 1000`` (permille).
    With the defaults a newcomer (neutral score 500) gets exactly ``base_limit``, a
    perfect record twice that, a proven cheat (score 0) nothing.
    """

    base_limit: int = DEFAULT_BASE_LIMIT
    min_factor: int = 0
    max_factor: int = 2000
    fee_account: str = "fee:distributor"

    def limit(self, score: int) -> int:
        """Credit limit in milli-minor units for a reputation score (permille)."""
        score = max(0, min(SCORE_SCALE, score))
        factor = self.min_factor + (self.max_factor - self.min_factor) * score // SCORE_SCALE
        return self.base_limit * factor // 1000


# --- Trades ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TradeTerms:
    """What both parties sign. ``slot`` is the slot start in Unix seconds."""

    community: str
    slot: int
    buyer: str
    seller: str
    energy_wh: int
    price: int
    fee: int
    clean: bool
    local: bool
    buyer_prev: str
    seller_prev: str
    buyer_balance: int  # the buyer's signed balance after the trade
    seller_balance: int  # the seller's signed balance after the trade

    @property
    def value(self) -> int:
        """What the seller receives (milli-minor units)."""
        return self.energy_wh * self.price

    @property
    def fee_value(self) -> int:
        """What the fee account receives (milli-minor units)."""
        return self.energy_wh * self.fee

    @property
    def cost(self) -> int:
        """What the buyer pays (milli-minor units)."""
        return self.energy_wh * (self.price + self.fee)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the signed object)."""
        return {
            "community": self.community,
            "slot": self.slot,
            "buyer": self.buyer,
            "seller": self.seller,
            "energy_wh": self.energy_wh,
            "price": self.price,
            "fee": self.fee,
            "clean": self.clean,
            "local": self.local,
            "buyer_prev": self.buyer_prev,
            "seller_prev": self.seller_prev,
            "buyer_balance": self.buyer_balance,
            "seller_balance": self.seller_balance,
        }

    def body(self) -> bytes:
        """Canonical bytes both signatures cover."""
        return canonical_bytes(self.to_dict())

    @property
    def trade_id(self) -> str:
        """Hex hash identifying the trade."""
        return digest(b"trade\n" + self.body()).hex()

    def problem(self) -> str | None:
        """Why the terms are malformed, or ``None``."""
        ints: tuple[object, ...] = (self.slot, self.energy_wh, self.price, self.fee)
        ints += (self.buyer_balance, self.seller_balance)
        if any(type(v) is not int for v in ints):
            return "numbers must be integers"
        if type(self.clean) is not bool or type(self.local) is not bool:
            return "attributes must be booleans"
        if not (is_key_hex(self.buyer) and is_key_hex(self.seller)):
            return "buyer and seller must be member ids"
        if self.buyer == self.seller:
            return "buyer and seller are the same member"
        if not 0 < self.energy_wh <= MAX_ENERGY_WH:
            return "energy out of range"
        if not (0 <= self.price <= MAX_PRICE and 0 <= self.fee <= MAX_PRICE):
            return "price or fee out of range"
        if not all(isinstance(v, str) for v in (self.community, self.buyer_prev, self.seller_prev)):
            return "community and previous hashes must be strings"
        return None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TradeTerms:
        """Parse; ``ValueError`` if fields are missing."""
        try:
            return cls(**{name: data[name] for name in _TERMS_FIELDS})
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed trade terms: {err}") from err


_TERMS_FIELDS = (
    "community",
    "slot",
    "buyer",
    "seller",
    "energy_wh",
    "price",
    "fee",
    "clean",
    "local",
    "buyer_prev",
    "seller_prev",
    "buyer_balance",
    "seller_balance",
)


@dataclass(frozen=True, slots=True)
class TradeSignature:
    """One party's half: its signing key and signature over the terms."""

    key: str
    sig: str


def sign_trade(terms: TradeTerms, identity: Identity) -> TradeSignature:
    """Sign the terms as buyer or seller (raises ``CanonicalError`` on bad terms)."""
    return TradeSignature(identity.public_key, identity.sign_hex(Purpose.TRADE, terms.body()))


@dataclass(frozen=True, slots=True)
class SignedTrade:
    """A trade with both halves. A missing half is an empty ``TradeSignature``."""

    terms: TradeTerms
    buyer: TradeSignature
    seller: TradeSignature

    @property
    def trade_id(self) -> str:
        """The terms' id."""
        return self.terms.trade_id

    def to_dict(self) -> dict[str, Any]:
        """Plain data, e.g. a chain entry body."""
        return {
            "terms": self.terms.to_dict(),
            "buyer_key": self.buyer.key,
            "buyer_sig": self.buyer.sig,
            "seller_key": self.seller.key,
            "seller_sig": self.seller.sig,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedTrade:
        """Parse; ``ValueError`` if malformed."""
        try:
            return cls(
                TradeTerms.from_dict(data["terms"]),
                TradeSignature(str(data["buyer_key"]), str(data["buyer_sig"])),
                TradeSignature(str(data["seller_key"]), str(data["seller_sig"])),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed signed trade: {err}") from err


def _home_member(keyring: KeyRing, key: str, at_ms: int) -> str | None:
    """The member ``key`` is a *home* key of at ``at_ms``: only homes sign money.

    Enrolled asset keys may sign envelopes and delivery reports, never trades or
    transfers.
    """
    binding = keyring.resolve(key, at_ms)
    if binding is None or binding.role is not KeyRole.HOME:
        return None
    return binding.member


def _signed_by(
    member: str, half: TradeSignature, at_ms: int, body: bytes, keyring: KeyRing | None
) -> CreditResult:
    if not half.key or not half.sig:
        return _refuse(Refusal.MISSING_SIGNATURE, "a party has not signed")
    owner = half.key if keyring is None else _home_member(keyring, half.key, at_ms)
    if owner is None:
        return _refuse(Refusal.UNKNOWN_MEMBER, "signing key is not a member key")
    if owner != member:
        return _refuse(Refusal.BAD_SIGNATURE, "signed by a key of another member")
    if not verify_hex(half.key, Purpose.TRADE, body, half.sig):
        return _refuse(Refusal.BAD_SIGNATURE, "signature does not verify")
    return _OK


def verify_trade(trade: SignedTrade, keyring: KeyRing | None = None) -> CreditResult:
    """Both halves present, made by keys of buyer and seller, valid. Never raises.

    Without ``keyring`` the signing keys must be the member ids themselves.
    """
    problem = trade.terms.problem()
    if problem is not None:
        return _refuse(Refusal.INVALID_TERMS, problem)
    try:
        body = trade.terms.body()
    except CanonicalError as err:
        return _refuse(Refusal.INVALID_TERMS, str(err))
    at_ms = trade.terms.slot * 1000
    result = _signed_by(trade.terms.buyer, trade.buyer, at_ms, body, keyring)
    if result.ok:
        result = _signed_by(trade.terms.seller, trade.seller, at_ms, body, keyring)
    return result


# --- Donations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer:
    """A donation of ``amount`` milli-minor units from ``sender`` to ``recipient``.

    ``recipient`` is a member id or any named account (e.g. ``"ext:school-dhaka"``)
    outside the community, whose balance the community then holds on its behalf.
    """

    community: str
    sender: str
    recipient: str
    amount: int
    ts_ms: int
    memo: str
    sender_prev: str
    sender_balance: int
    key: str = ""
    sig: str = ""

    def unsigned(self) -> dict[str, Any]:
        """The signed object."""
        return {
            "community": self.community,
            "sender": self.sender,
            "recipient": self.recipient,
            "amount": self.amount,
            "ts": self.ts_ms,
            "memo": self.memo,
            "sender_prev": self.sender_prev,
            "sender_balance": self.sender_balance,
        }

    @property
    def transfer_id(self) -> str:
        """Hex hash identifying the transfer."""
        return digest(b"transfer\n" + canonical_bytes(self.unsigned())).hex()

    def to_dict(self) -> dict[str, Any]:
        """Plain data with key and signature."""
        return self.unsigned() | {"key": self.key, "sig": self.sig}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transfer:
        """Parse; ``ValueError`` if malformed."""
        try:
            return cls(
                data["community"],
                data["sender"],
                data["recipient"],
                data["amount"],
                data["ts"],
                data["memo"],
                data["sender_prev"],
                data["sender_balance"],
                data["key"],
                data["sig"],
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed transfer: {err}") from err


def sign_transfer(transfer: Transfer, identity: Identity) -> Transfer:
    """Return ``transfer`` signed by ``identity``."""
    sig = identity.sign_hex(Purpose.TRANSFER, canonical_bytes(transfer.unsigned()))
    return replace(transfer, key=identity.public_key, sig=sig)


# --- Delivery reports and settlement --------------------------------------------------


class Role(StrEnum):
    """A party's side of a trade."""

    BUYER = "buyer"
    SELLER = "seller"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A party's signed meter reading for one trade: energy delivered or received."""

    trade_id: str
    reporter: str
    role: Role
    metered_wh: int
    ts_ms: int
    key: str = ""
    sig: str = ""

    def unsigned(self) -> dict[str, Any]:
        """The signed object."""
        return {
            "trade_id": self.trade_id,
            "reporter": self.reporter,
            "role": self.role.value,
            "metered_wh": self.metered_wh,
            "ts": self.ts_ms,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain data with key and signature."""
        return self.unsigned() | {"key": self.key, "sig": self.sig}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryReport:
        """Parse; ``ValueError`` if malformed."""
        try:
            return cls(
                data["trade_id"],
                data["reporter"],
                Role(data["role"]),
                data["metered_wh"],
                data["ts"],
                data["key"],
                data["sig"],
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed delivery report: {err}") from err

    def valid_for(self, member: str, role: Role, keyring: KeyRing | None) -> bool:
        """Signed by a key of ``member`` in ``role``, integer reading; never raises."""
        if self.reporter != member or self.role is not role:
            return False
        if type(self.metered_wh) is not int or self.metered_wh < 0:
            return False
        owner = self.key if keyring is None else keyring.member_of(self.key)
        if owner != member:
            return False
        try:
            body = canonical_bytes(self.unsigned())
        except CanonicalError:
            return False
        return verify_hex(self.key, Purpose.DELIVERY, body, self.sig)


def report_delivery(
    trade: TradeTerms, identity: Identity, member: str, role: Role, metered_wh: int, ts_ms: int
) -> DeliveryReport:
    """Sign a meter reading for ``trade`` as ``role``."""
    report = DeliveryReport(trade.trade_id, member, role, metered_wh, ts_ms)
    sig = identity.sign_hex(Purpose.DELIVERY, canonical_bytes(report.unsigned()))
    return replace(report, key=identity.public_key, sig=sig)


@dataclass(frozen=True, slots=True)
class Settlement:
    """Imbalance settlement of one trade, derived from the signed reports.

    ``shortfall_wh`` = cleared energy not delivered by the seller's own meter;
    ``payment`` = ``shortfall_wh x import_price`` from seller to buyer;
    ``disputed`` = the buyer reports receiving less than the seller claims delivered.
    """

    terms: TradeTerms
    seller_report: DeliveryReport
    buyer_report: DeliveryReport | None
    import_price: int
    shortfall_wh: int
    payment: int
    disputed: bool

    @property
    def settlement_id(self) -> str:
        """One settlement per trade."""
        return digest(b"settlement\n" + self.terms.trade_id.encode()).hex()

    @property
    def delivered_wh(self) -> int:
        """Energy the seller delivered against the trade (at most the cleared energy)."""
        return self.terms.energy_wh - self.shortfall_wh

    def to_dict(self) -> dict[str, Any]:
        """Plain data, e.g. a chain entry body."""
        return {
            "terms": self.terms.to_dict(),
            "seller_report": self.seller_report.to_dict(),
            "buyer_report": None if self.buyer_report is None else self.buyer_report.to_dict(),
            "import_price": self.import_price,
            "shortfall_wh": self.shortfall_wh,
            "payment": self.payment,
            "disputed": self.disputed,
        }


def settle_delivery(
    terms: TradeTerms,
    seller_report: DeliveryReport,
    buyer_report: DeliveryReport | None,
    import_price: int,
) -> Settlement:
    """Compute the imbalance settlement of a trade (pure arithmetic, no checks)."""
    delivered = min(terms.energy_wh, max(0, seller_report.metered_wh))
    shortfall = terms.energy_wh - delivered
    disputed = buyer_report is not None and buyer_report.metered_wh < delivered
    return Settlement(
        terms,
        seller_report,
        buyer_report,
        import_price,
        shortfall,
        shortfall * import_price,
        disputed,
    )


# --- The ledger -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    """Energy a member bought and sold, clean and not (Wh)."""

    clean_bought_wh: int = 0
    clean_sold_wh: int = 0
    other_bought_wh: int = 0
    other_sold_wh: int = 0

    def to_dict(self) -> dict[str, int]:
        """Plain data."""
        return {
            "clean_bought_wh": self.clean_bought_wh,
            "clean_sold_wh": self.clean_sold_wh,
            "other_bought_wh": self.other_bought_wh,
            "other_sold_wh": self.other_sold_wh,
        }


@dataclass(slots=True)
class CreditLedger:
    """The community's balances as this home sees them (mutable state holder).

    ``check_*`` methods only look; ``apply_*`` methods check and, only if accepted,
    record. A refused record leaves the ledger unchanged. ``scores`` is this home's
    perspective (member -> permille) used for credit limits; unknown members get the
    neutral 500.

    Every record is applied as a delta of ``balances``; ``settled`` is the part of each
    balance that delivery settlements moved, so ``signed_balance = balance - settled`` is
    what trades and donations commit to. Settlements never change a signed balance, so
    a settlement commutes with every trade and donation.
    """

    community: str
    policy: CreditPolicy = field(default_factory=CreditPolicy)
    keyring: KeyRing | None = None
    scores: Mapping[str, int] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)
    tallies: dict[str, Tally] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    trades: dict[str, TradeTerms] = field(default_factory=dict)

    # -- queries --
    def balance(self, account: str) -> int:
        """Balance in milli-minor units (0 if never seen)."""
        return self.balances.get(account, 0)

    def signed_balance(self, account: str) -> int:
        """The balance without delivery settlements: what the next trade half or
        donation of ``account`` commits to (milli-minor units)."""
        return self.balance(account) - self.settled.get(account, 0)

    def _after_ok(self, account: str, stated: int, delta: int) -> bool:
        """``stated`` is ``account``'s balance after a record that moves it by ``delta``.

        The rule: the signed balance after the record. Also accepted: the whole balance
        after it, which homes of earlier versions signed (and which any record received
        from before an update carries); either way the ledger applies only the delta.
        """
        return stated in (self.signed_balance(account) + delta, self.balance(account) + delta)

    def total(self) -> int:
        """Sum of all balances: always exactly 0."""
        return sum(self.balances.values())

    def tally(self, member: str) -> Tally:
        """The member's clean/non-clean tally."""
        return self.tallies.get(member, Tally())

    def limit(self, member: str) -> int:
        """The member's credit limit under this home's reputation scores."""
        return self.policy.limit(self.scores.get(member, SCORE_SCALE // 2))

    def headroom(self, member: str) -> int:
        """How much more the member may spend (milli-minor units, never negative)."""
        return max(0, self.balance(member) + self.limit(member))

    def max_buy_wh(self, member: str, price: int, fee: int = 0) -> int:
        """Most energy the member may buy at ``price`` + ``fee`` without passing its limit.

        The market uses this to refuse or cap an order before it reaches the market.
        """
        unit = price + fee
        if unit <= 0:
            return MAX_ENERGY_WH
        return min(MAX_ENERGY_WH, self.headroom(member) // unit)

    def check_order(self, member: str, energy_wh: int, price: int, fee: int = 0) -> CreditResult:
        """Refuse a buy order whose full execution at its limit price would pass the
        member's credit limit, before it reaches the market."""
        if type(energy_wh) is not int or type(price) is not int or type(fee) is not int:
            return _refuse(Refusal.INVALID_TERMS, "order numbers must be integers")
        if energy_wh <= 0 or price < 0 or fee < 0:
            return _refuse(
                Refusal.INVALID_TERMS, "order energy must be positive, prices not negative"
            )
        if energy_wh > self.max_buy_wh(member, price, fee):
            return _refuse(
                Refusal.OVER_LIMIT,
                f"at most {self.max_buy_wh(member, price, fee)} Wh within the credit limit",
            )
        return _OK

    def forget_before(self, ts_ms: int) -> None:
        """Drop trades of slots before ``ts_ms`` from memory (bounded memory).

        They can no longer be settled here, and the durable store still refuses them
        as duplicates.
        """
        cut = ts_ms // 1000
        if self.trades and next(iter(self.trades.values())).slot < cut:
            for trade_id in [i for i, t in self.trades.items() if t.slot < cut]:
                del self.trades[trade_id]
                self.applied.discard(trade_id)

    # -- trades --
    def propose_trade(
        self,
        *,
        slot: int,
        buyer: str,
        seller: str,
        energy_wh: int,
        price: int,
        fee: int = 0,
        clean: bool = False,
        local: bool = True,
        buyer_prev: str = "",
        seller_prev: str = "",
    ) -> tuple[TradeTerms | None, CreditResult]:
        """Terms with the resulting balances filled in, or a refusal (e.g. over limit)."""
        terms = TradeTerms(
            self.community,
            slot,
            buyer,
            seller,
            energy_wh,
            price,
            fee,
            clean,
            local,
            buyer_prev,
            seller_prev,
            0,
            0,
        )
        problem = terms.problem()
        if problem is not None:
            return None, _refuse(Refusal.INVALID_TERMS, problem)
        terms = replace(
            terms,
            buyer_balance=self.signed_balance(buyer) - terms.cost,
            seller_balance=self.signed_balance(seller) + terms.value,
        )
        result = self._check_terms(terms, enforce_limit=True)
        return (terms if result.ok else None), result

    def _check_terms(self, terms: TradeTerms, *, enforce_limit: bool) -> CreditResult:
        problem = terms.problem()
        if problem is not None:
            return _refuse(Refusal.INVALID_TERMS, problem)
        if terms.community != self.community:
            return _refuse(Refusal.OTHER_COMMUNITY, "trade of another community")
        if terms.trade_id in self.applied:
            return _refuse(Refusal.DUPLICATE, "trade already recorded")
        owed = terms.cost - self.balance(terms.buyer)  # settlements included
        if enforce_limit and owed > self.limit(terms.buyer):
            return _refuse(
                Refusal.OVER_LIMIT,
                f"buyer would owe {owed}, limit {self.limit(terms.buyer)}",
            )
        disagreed = tuple(
            party
            for party, stated, delta in (
                (terms.buyer, terms.buyer_balance, -terms.cost),
                (terms.seller, terms.seller_balance, terms.value),
            )
            if not self._after_ok(party, stated, delta)
        )
        if disagreed:
            return CreditResult(None, "stated balance differs from this ledger's", disagreed)
        return _OK

    def check_trade(self, trade: SignedTrade, *, enforce_limit: bool = True) -> CreditResult:
        """Would ``apply_trade`` accept it? Never raises, never changes the ledger.

        A trade both parties signed is not refused for its stated balances: a party whose
        ledger lacked some of its records when it signed (it was killed before recording
        them, and learnt them later) states a balance this ledger does not hold, and the
        trade is valid all the same (it is applied as a delta, like every record). Refusing
        it here but not elsewhere, or everywhere while both parties signed it, would leave
        ledgers apart for good. The parties whose stated balance differs are reported in
        ``disagreed``.
        """
        result = verify_trade(trade, self.keyring)
        if result.ok:
            result = self._check_terms(trade.terms, enforce_limit=enforce_limit)
        return result

    def apply_trade(self, trade: SignedTrade, *, enforce_limit: bool = True) -> CreditResult:
        """Record a countersigned trade if it passes every check.

        ``enforce_limit=False`` is for an observer replaying trades both parties already
        signed (limits are each party's own perspective); parties always enforce.
        """
        result = self.check_trade(trade, enforce_limit=enforce_limit)
        if not result.ok:
            return result
        t = trade.terms
        self.balances[t.buyer] = self.balance(t.buyer) - t.cost
        self.balances[t.seller] = self.balance(t.seller) + t.value
        if t.fee_value:
            account = self.policy.fee_account
            self.balances[account] = self.balance(account) + t.fee_value
        self._count(t, t.energy_wh)
        self.applied.add(t.trade_id)
        self.trades[t.trade_id] = t
        return result

    def _count(self, t: TradeTerms, wh: int) -> None:
        buyer, seller = self.tally(t.buyer), self.tally(t.seller)
        if t.clean:
            buyer = replace(buyer, clean_bought_wh=buyer.clean_bought_wh + wh)
            seller = replace(seller, clean_sold_wh=seller.clean_sold_wh + wh)
        else:
            buyer = replace(buyer, other_bought_wh=buyer.other_bought_wh + wh)
            seller = replace(seller, other_sold_wh=seller.other_sold_wh + wh)
        self.tallies[t.buyer] = buyer
        self.tallies[t.seller] = seller

    # -- donations --
    def check_transfer(self, transfer: Transfer) -> CreditResult:
        """Would ``apply_transfer`` accept it? Never raises."""
        t = transfer
        if any(type(v) is not int for v in (t.amount, t.ts_ms, t.sender_balance)):
            return _refuse(Refusal.INVALID_TERMS, "numbers must be integers")
        if not all(isinstance(v, str) for v in (t.recipient, t.memo, t.sender_prev, t.key)):
            return _refuse(Refusal.INVALID_TERMS, "text fields must be strings")
        if t.amount <= 0 or not t.recipient or t.recipient == t.sender:
            return _refuse(Refusal.INVALID_TERMS, "amount must be positive, to someone else")
        if t.community != self.community:
            return _refuse(Refusal.OTHER_COMMUNITY, "transfer of another community")
        try:
            body = canonical_bytes(t.unsigned())
        except CanonicalError as err:
            return _refuse(Refusal.INVALID_TERMS, str(err))
        if t.transfer_id in self.applied:
            return _refuse(Refusal.DUPLICATE, "transfer already recorded")
        if not t.sig:
            return _refuse(Refusal.MISSING_SIGNATURE, "transfer is not signed")
        owner = t.key if self.keyring is None else _home_member(self.keyring, t.key, t.ts_ms)
        if owner is None:
            return _refuse(Refusal.UNKNOWN_MEMBER, "signing key is not a member key")
        if owner != t.sender or not verify_hex(t.key, Purpose.TRANSFER, body, t.sig):
            return _refuse(Refusal.BAD_SIGNATURE, "not signed by the sender")
        if not self._after_ok(t.sender, t.sender_balance, -t.amount):
            return _refuse(Refusal.BALANCE_MISMATCH, "sender's resulting balance is wrong")
        if t.sender_balance < 0:
            return _refuse(Refusal.INSUFFICIENT_SURPLUS, "only surplus can be donated")
        return _OK

    def apply_transfer(self, transfer: Transfer) -> CreditResult:
        """Record a donation if it passes every check."""
        result = self.check_transfer(transfer)
        if result.ok:
            self.balances[transfer.sender] = self.balance(transfer.sender) - transfer.amount
            self.balances[transfer.recipient] = self.balance(transfer.recipient) + transfer.amount
            self.applied.add(transfer.transfer_id)
        return result

    # -- settlement --
    def check_settlement(self, settlement: Settlement) -> CreditResult:
        """Would ``apply_settlement`` accept it? Never raises."""
        t = settlement.terms
        trade_id = t.trade_id
        if trade_id not in self.trades:
            return _refuse(Refusal.UNKNOWN_TRADE, "settlement of a trade not recorded")
        if settlement.settlement_id in self.applied:
            return _refuse(Refusal.DUPLICATE, "trade already settled")
        seller_report, buyer_report = settlement.seller_report, settlement.buyer_report
        if seller_report.trade_id != trade_id or (
            buyer_report is not None and buyer_report.trade_id != trade_id
        ):
            return _refuse(Refusal.REPORT_MISMATCH, "report of another trade")
        if not seller_report.valid_for(t.seller, Role.SELLER, self.keyring):
            return _refuse(Refusal.BAD_SIGNATURE, "seller report not signed by the seller")
        if buyer_report is not None and not buyer_report.valid_for(
            t.buyer, Role.BUYER, self.keyring
        ):
            return _refuse(Refusal.BAD_SIGNATURE, "buyer report not signed by the buyer")
        if type(settlement.import_price) is not int or settlement.import_price < 0:
            return _refuse(Refusal.INVALID_TERMS, "import price must be a non-negative integer")
        expected = settle_delivery(t, seller_report, buyer_report, settlement.import_price)
        if expected != settlement:
            return _refuse(Refusal.REPORT_MISMATCH, "settlement does not follow from the reports")
        return _OK

    def apply_settlement(self, settlement: Settlement) -> CreditResult:
        """Record an imbalance settlement (not limited: it is an obligation)."""
        result = self.check_settlement(settlement)
        if result.ok:
            t = settlement.terms
            if settlement.payment:
                payment = settlement.payment
                self.balances[t.seller] = self.balance(t.seller) - payment
                self.balances[t.buyer] = self.balance(t.buyer) + payment
                self.settled[t.seller] = self.settled.get(t.seller, 0) - payment
                self.settled[t.buyer] = self.settled.get(t.buyer, 0) + payment
            if settlement.shortfall_wh:
                self._count(t, -settlement.shortfall_wh)
            self.applied.add(settlement.settlement_id)
        return result


# --- Chain integration ----------------------------------------------------------------


def trade_entry_checker(keyring: KeyRing | None = None) -> Callable[[ChainEntry, str], str | None]:
    """An ``entry_check`` for ``verify_chain(mode=FULL)`` that checks credit records.

    For every ``trade`` entry: both countersignatures verify, the chain's member is
    buyer or seller, and the previous hash the member committed to in the terms is an
    earlier entry of this chain. ``transfer`` entries must be validly signed by the
    member. Other kinds pass.
    """
    seen: set[str] = set()

    def check(entry: ChainEntry, member: str) -> str | None:
        seen.add(entry.prev)
        if entry.kind == TRADE:
            try:
                trade = SignedTrade.from_dict(entry.body)
            except ValueError as err:
                return str(err)
            result = verify_trade(trade, keyring)
            if not result.ok:
                return f"trade: {result.detail}"
            terms = trade.terms
            if member == terms.buyer:
                prev = terms.buyer_prev
            elif member == terms.seller:
                prev = terms.seller_prev
            else:
                return "trade does not involve the chain's member"
            if prev not in seen:
                return "trade commits to a previous hash that is not on this chain"
        elif entry.kind == TRANSFER:
            try:
                transfer = Transfer.from_dict(entry.body)
            except ValueError as err:
                return str(err)
            scratch = CreditLedger(transfer.community, keyring=keyring)
            scratch.balances[transfer.sender] = transfer.sender_balance + transfer.amount
            if transfer.sender != member:
                return "transfer does not come from the chain's member"
            result = scratch.check_transfer(transfer)
            if not result.ok:
                return f"transfer: {result.detail}"
        return None

    return check
