"""The workload's business operations as plain data: what each writes and what the report expects.

Every operation has its own idempotency key, and every id it writes derives from that key: the
payment id and refund id by uuid5, the ledger transaction id by md5 (the rule the seed uses too).
A retry under the same key therefore writes the very same keys, and the database's keys refuse
a second copy. Every operation also appends exactly one ``payment_events`` row carrying its key:
that row is how a client whose COMMIT outcome is unknown finds out whether it committed.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal

KINDS = ("authorize", "capture", "settle", "refund", "expire")
# Payment status order for "this state or a later one"; expired branches off authorized.
STATUS_RANK = {"authorized": 1, "captured": 2, "settled": 3, "partially_refunded": 4,
               "refunded": 5, "expired": 2}
# The status an operation leaves its payment in, and the ones it may start from.
AFTER = {"authorize": "authorized", "capture": "captured", "settle": "settled",
         "expire": "expired"}
BEFORE = {"capture": ("authorized",), "settle": ("captured",), "expire": ("authorized",),
          "refund": ("settled", "partially_refunded")}
CENT = Decimal("0.0001")
_NS = uuid.UUID("6f1d3c52-8d3e-4c59-9a57-3b0f1f6a2d10")


def txn_id(key: str) -> uuid.UUID:
    """The ledger transaction id of the operation with idempotency key ``key``."""
    return uuid.UUID(hashlib.md5(key.encode()).hexdigest())


def key_uuid(key: str, role: str = "") -> uuid.UUID:
    return uuid.uuid5(_NS, key + role)


def reached(status: str, wanted: str) -> bool:
    """Whether a payment in ``status`` shows ``wanted`` or a later state on the same branch."""
    if status == "expired":
        return wanted in ("authorized", "expired")
    if wanted == "expired":
        return False
    return STATUS_RANK.get(status, 0) >= STATUS_RANK[wanted]


@dataclass(frozen=True)
class Payment:
    """A client's knowledge of one payment it wrote."""

    id: str
    currency: str
    amount: Decimal
    payer: int
    payee: int
    clearing: int
    status: str = "authorized"
    refunded: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.amount <= 0 or not 0 <= self.refunded <= self.amount:
            raise ValueError(f"payment {self.id}: amount {self.amount} refunded {self.refunded}")
        if self.status not in STATUS_RANK:
            raise ValueError(f"payment {self.id}: unknown status {self.status!r}")


@dataclass(frozen=True)
class Operation:
    """One business transaction: its key, the payment before and after, the ledger lines."""

    kind: str
    key: str
    before: Payment | None
    after: Payment
    lines: tuple[tuple[int, int, Decimal], ...] = ()  # (line_no, account, signed amount)
    refund: Decimal | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"operation kind {self.kind!r}; known: {', '.join(KINDS)}")
        if sum((a for _, _, a in self.lines), Decimal(0)) != 0:
            raise ValueError(f"operation {self.key}: ledger lines do not sum to zero: {self.lines}")

    @property
    def txn(self) -> uuid.UUID:
        return txn_id(self.key)

    @property
    def refund_id(self) -> uuid.UUID:
        return key_uuid(self.key, ":refund")

    def record(self) -> dict:
        """What the ledger keeps: enough for the report to find every effect and count it."""
        rec = {"kind": self.kind, "key": self.key, "payment": self.after.id,
               "currency": self.after.currency, "amount": str(self.after.amount),
               "status": self.after.status, "txn": str(self.txn),
               "lines": [[n, acct, str(amt)] for n, acct, amt in self.lines]}
        if self.refund is not None:
            rec.update(refund_id=str(self.refund_id), refund=str(self.refund),
                       refunded=str(self.after.refunded))
        return rec


def _two(debit: int, credit: int, amount: Decimal) -> tuple[tuple[int, int, Decimal], ...]:
    return ((1, credit, -amount), (2, debit, amount))


def authorize(*, key: str, currency: str, amount: Decimal, payer: int, payee: int,
              clearing: int, meta: dict | None = None) -> Operation:
    """Hold ``amount`` on the payer: payer credited, clearing debited."""
    amount = Decimal(amount).quantize(CENT)
    p = Payment(id=str(key_uuid(key)), currency=currency, amount=amount, payer=payer,
                payee=payee, clearing=clearing)
    return Operation("authorize", key, None, p, _two(clearing, payer, amount), meta=meta or {})


def capture(*, key: str, payment: Payment) -> Operation:
    """Move the held funds from clearing to the payee and release the hold."""
    _require(payment, "capture")
    return Operation("capture", key, payment, replace(payment, status="captured"),
                     _two(payment.payee, payment.clearing, payment.amount))


def settle(*, key: str, payment: Payment) -> Operation:
    """Stage the payment in the settlement file; no money moves in the ledger."""
    _require(payment, "settle")
    return Operation("settle", key, payment, replace(payment, status="settled"))


def expire(*, key: str, payment: Payment) -> Operation:
    """Void an authorization: the hold goes and the funds return from clearing to the payer."""
    _require(payment, "expire")
    return Operation("expire", key, payment, replace(payment, status="expired"),
                     _two(payment.payer, payment.clearing, payment.amount))


def refund(*, key: str, payment: Payment, amount: Decimal) -> Operation:
    """Return ``amount`` (at most what is left) from the payee to the payer."""
    _require(payment, "refund")
    amount = Decimal(amount).quantize(CENT)
    left = payment.amount - payment.refunded
    if not 0 < amount <= left:
        raise ValueError(f"refund of {amount} on payment {payment.id}: only {left} is refundable")
    refunded = payment.refunded + amount
    status = "refunded" if refunded == payment.amount else "partially_refunded"
    return Operation("refund", key, payment, replace(payment, status=status, refunded=refunded),
                     _two(payment.payer, payment.payee, amount), refund=amount)


def _require(payment: Payment, kind: str) -> None:
    if payment.status not in BEFORE[kind]:
        raise ValueError(f"cannot {kind} payment {payment.id} in status {payment.status}")
