"""One workload client: runs operations through PgBouncer and knows which ones committed.

Transaction pooling rules: nothing here relies on session state across transactions; psycopg2
uses the simple query protocol (no named prepared statements).

The retry rules, which are what makes the ledger trustworthy:

- An error before COMMIT was sent (a dropped connection, a terminated backend, a serialization
  failure): the server rolled the transaction back, so the operation is retried under the same
  idempotency key.
- An error while COMMIT was in flight with the connection gone: the outcome is unknown. The
  client reconnects and looks the key up in ``payment_events`` (written by the same transaction),
  and only that answer decides: committed, or retried.
- Even if a lookup raced a COMMIT still in progress on a dead connection, a retry cannot apply
  twice: its first statement either inserts a key-derived primary key or updates a row only from
  the state the operation expects, so it blocks behind the first attempt and then fails or
  changes nothing; the client then looks the key up again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from paymigrate.db import connect as db_connect
from paymigrate_dev.workload.ops import Operation

log = logging.getLogger(__name__)

COMMITTED, FAILED, UNRESOLVED, ABANDONED = "committed", "failed", "unresolved", "abandoned"
# Errors that leave the transaction rolled back and are worth another try as they are.
TRANSIENT = (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected,
             psycopg2.errors.LockNotAvailable, psycopg2.errors.QueryCanceled,
             psycopg2.errors.ReadOnlySqlTransaction, psycopg2.errors.CannotConnectNow)


@dataclass(frozen=True)
class Outcome:
    status: str  # committed, failed, unresolved or abandoned
    attempts: int
    detail: str = ""
    resolved_by_lookup: bool = False


class PreconditionFailed(Exception):
    """A guarded UPDATE found the payment in another state than the operation expects."""


class Client:
    """Runs :class:`Operation` s on one connection, reconnecting as needed.

    ``on_retry(kind, op, detail)`` is called for every retry so the runner can count and log it.
    """

    def __init__(self, *, dsn: str, name: str = "paymigrate-workload",
                 retry_timeout: float = 60.0, should_stop: Callable[[], bool] = lambda: False,
                 on_retry: Callable[[str, Operation, str], None] = lambda *a: None,
                 connect: Callable[[str], psycopg2.extensions.connection] | None = None):
        self.dsn, self.name = dsn, name
        self.retry_timeout = retry_timeout
        self.should_stop, self.on_retry = should_stop, on_retry
        self._connect = connect or (lambda dsn: db_connect(dsn, application_name=name))
        self.conn: psycopg2.extensions.connection | None = None

    # ---- connection -------------------------------------------------------------------------
    def connection(self) -> psycopg2.extensions.connection:
        if self.conn is None or self.conn.closed:
            self.conn = self._connect(self.dsn)
        return self.conn

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None

    def _discard(self) -> None:
        try:
            if self.conn is not None and not self.conn.closed:
                self.conn.rollback()
        except psycopg2.Error:
            self.close()

    # ---- reads ------------------------------------------------------------------------------
    def read_payment(self, payment_id: str) -> tuple[str, str, str] | None:
        """(status, amount, refunded) as the database shows it now, or None."""
        conn = self.connection()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT status::text, amount::text, refunded_amount::text "
                            "FROM payments WHERE id = %s", (payment_id,))
                row = cur.fetchone()
            conn.commit()
        except psycopg2.Error:
            self._discard()
            raise
        return tuple(row) if row else None

    def committed(self, key: str) -> bool:
        """Whether the operation with idempotency key ``key`` committed (its event row exists)."""
        conn = self.connection()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM payment_events WHERE idempotency_key = %s", (key,))
                found = cur.fetchone()[0] > 0
            conn.commit()
        except psycopg2.Error:
            self._discard()
            raise
        return found

    # ---- writes -----------------------------------------------------------------------------
    def run(self, op: Operation) -> Outcome:
        """Apply ``op`` exactly once, or say why not."""
        deadline = time.monotonic() + self.retry_timeout
        attempts, delay = 0, 0.05
        check_first = False  # after a guarded statement changed nothing, or a duplicate key
        while True:
            if check_first:
                known = self._lookup(op, deadline)
                if known is None:
                    return Outcome(UNRESOLVED, attempts, "could not look the key up in time")
                if known:
                    return Outcome(COMMITTED, attempts, resolved_by_lookup=True)
                check_first = False
            attempts += 1
            in_commit = False
            try:
                conn = self.connection()
                with conn.cursor() as cur:
                    apply(cur, op)
                in_commit = True
                conn.commit()
                return Outcome(COMMITTED, attempts)
            except PreconditionFailed as exc:
                self._discard()
                known = self._lookup(op, deadline)
                if known is None:
                    return Outcome(UNRESOLVED, attempts, str(exc))
                if known:
                    return Outcome(COMMITTED, attempts, resolved_by_lookup=True)
                return Outcome(FAILED, attempts, f"precondition: {exc}")
            except psycopg2.errors.UniqueViolation as exc:
                # A key derived from the idempotency key exists: an earlier attempt committed,
                # or something else holds that key. The lookup tells which.
                self._discard()
                self.on_retry("duplicate_key", op, _first_line(exc))
                check_first = True
                continue
            except psycopg2.Error as exc:
                broken = self.conn is None or bool(self.conn.closed) or isinstance(
                    exc, psycopg2.OperationalError | psycopg2.InterfaceError)
                kind = _kind(exc, in_commit=in_commit, broken=broken)
                self._discard()
                if in_commit and broken:
                    self.on_retry(kind, op, _first_line(exc))
                    check_first = True
                elif broken or isinstance(exc, TRANSIENT):
                    self.on_retry(kind, op, _first_line(exc))
                else:
                    return Outcome(FAILED, attempts, f"{type(exc).__name__}: {_first_line(exc)}")
            if time.monotonic() > deadline:
                if check_first:
                    known = self._lookup(op, time.monotonic() + 5)
                    if known:
                        return Outcome(COMMITTED, attempts, resolved_by_lookup=True)
                    if known is None:
                        return Outcome(UNRESOLVED, attempts, "retry time is up")
                return Outcome(FAILED, attempts, f"gave up after {attempts} attempts")
            if self.should_stop() and not check_first:
                return Outcome(ABANDONED, attempts, "stopped while retrying")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _lookup(self, op: Operation, deadline: float) -> bool | None:
        """Whether ``op`` committed, asking until ``deadline``; None when no answer came."""
        delay = 0.05
        while True:
            try:
                return self.committed(op.key)
            except psycopg2.Error as exc:
                self.close()
                self.on_retry("lookup_failed", op, _first_line(exc))
            if time.monotonic() > deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _kind(exc: psycopg2.Error, *, in_commit: bool, broken: bool) -> str:
    if in_commit and broken:
        return "commit_outcome_unknown"
    if broken:
        return "connection_lost"
    return {"40001": "serialization_failure", "40P01": "deadlock", "55P03": "lock_timeout",
            "57014": "query_canceled", "25006": "read_only"}.get(exc.pgcode or "", "error")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def apply(cur, op: Operation) -> None:
    """The statements of one operation, in one transaction (the caller commits).

    The first statement of each is the guard: a key-derived INSERT or an UPDATE from the
    expected state. Each operation then writes its ledger lines and exactly one event."""
    p, b = op.after, op.before
    if op.kind == "authorize":
        cur.execute(
            "INSERT INTO payments (id, idempotency_key, payer_account_id, payee_account_id, amount,"
            " currency, status, metadata) VALUES (%s, %s, %s, %s, %s, %s, 'authorized', %s)",
            (p.id, op.key, p.payer, p.payee, p.amount, p.currency, json.dumps(op.meta)))
        cur.execute("INSERT INTO payment_holds (payment_id, account_id, amount, expires_at) "
                    "VALUES (%s, %s, %s, now() + interval '7 days')", (p.id, p.payer, p.amount))
    elif b is None:
        raise ValueError(f"operation {op.key} ({op.kind}) needs the payment as it was before it")
    elif op.kind == "refund":
        cur.execute("UPDATE payments SET refunded_amount = %s, status = %s, updated_at = now() "
                    "WHERE id = %s AND refunded_amount = %s AND status::text = ANY(%s)",
                    (p.refunded, p.status, p.id, b.refunded, ["settled", "partially_refunded"]))
        _guard(cur, op)
        cur.execute("INSERT INTO refunds (id, payment_id, idempotency_key, amount, currency, reason)"
                    " VALUES (%s, %s, %s, %s, %s, 'customer_request')",
                    (str(op.refund_id), p.id, op.key, op.refund, p.currency))
    else:
        cur.execute("UPDATE payments SET status = %s, updated_at = now() "
                    "WHERE id = %s AND status = %s", (p.status, p.id, b.status))
        _guard(cur, op)
        if op.kind in ("capture", "expire"):
            cur.execute("DELETE FROM payment_holds WHERE payment_id = %s", (p.id,))
        if op.kind == "settle":
            cur.execute("INSERT INTO settlement_staging (file_date, payment_id, idempotency_key, "
                        "payee_account_id, amount, currency) VALUES (current_date, %s, %s, %s, %s, %s)",
                        (p.id, op.key, p.payee, p.amount, p.currency))
    if op.lines:
        rows = [(str(op.txn), n, p.id, acct, amt, p.currency, op.kind) for n, acct, amt in op.lines]
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
        cur.execute("INSERT INTO ledger_lines (txn_id, line_no, payment_id, account_id, amount, "
                    "currency, entry_type) VALUES " + values, [v for r in rows for v in r])
    payload = {"amount": str(op.refund if op.refund is not None else p.amount), "status": p.status}
    cur.execute("INSERT INTO payment_events (payment_id, idempotency_key, kind, payload) "
                "VALUES (%s, %s, %s, %s)", (p.id, op.key, op.kind, json.dumps(payload)))


def _guard(cur, op: Operation) -> None:
    if cur.rowcount != 1:
        raise PreconditionFailed(f"payment {op.after.id} is not in the state {op.kind} expects "
                                 f"({op.before.status if op.before else '-'})")
