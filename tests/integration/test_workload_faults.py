"""A COMMIT whose outcome the client cannot know is resolved by looking its key up, never guessed."""

from __future__ import annotations

from decimal import Decimal

import psycopg2
import psycopg2.extensions
import pytest

from paymigrate_dev.demo.seed import create_schema
from paymigrate_dev.workload import ops
from paymigrate_dev.workload.client import COMMITTED, Client

pytestmark = pytest.mark.integration


def _flaky(really_commit: bool, faults: list):
    """A connection whose next COMMIT (while ``faults`` is not empty) is followed, or replaced,
    by the connection dropping: the client cannot tell whether it committed."""

    class Flaky(psycopg2.extensions.connection):
        def commit(self):
            if not faults:
                return super().commit()
            faults.pop()
            if really_commit:
                super().commit()
            else:
                super().rollback()
            self.close()
            raise psycopg2.OperationalError("server closed the connection unexpectedly")

    return lambda dsn: psycopg2.connect(dsn, connection_factory=Flaky)


@pytest.fixture
def dsn(databases):
    conn = psycopg2.connect(databases[0])
    with conn, conn.cursor() as cur:
        create_schema(cur)
        cur.execute("INSERT INTO accounts (id, external_ref, name, kind, currency) VALUES "
                    "(1, 'c1', 'C', 'customer', 'EUR'), (2, 'm1', 'M', 'merchant', 'EUR'), "
                    "(3, 'x1', 'X', 'clearing', 'EUR')")
    conn.close()
    return databases[0]


def _counts(dsn: str, op: ops.Operation) -> tuple[int, int, int]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM payment_events WHERE idempotency_key = %s), "
                    "(SELECT count(*) FROM payments WHERE id = %s), "
                    "(SELECT count(*) FROM ledger_lines WHERE txn_id = %s)",
                    (op.key, op.after.id, str(op.txn)))
        row = cur.fetchone()
    conn.close()
    return row


@pytest.mark.parametrize("really_commit,attempts", [(True, 1), (False, 2)])
def test_unknown_commit_outcome_is_looked_up(dsn, really_commit, attempts):
    retries = []
    client = Client(dsn=dsn, connect=_flaky(really_commit, faults=[1]),
                    on_retry=lambda kind, op, detail: retries.append(kind))
    op = ops.authorize(key=f"k-{really_commit}", currency="EUR", amount=Decimal("12.34"),
                       payer=1, payee=2, clearing=3)
    outcome = client.run(op)
    assert outcome.status == COMMITTED and outcome.attempts == attempts
    assert outcome.resolved_by_lookup is really_commit
    assert retries == ["commit_outcome_unknown"]
    assert _counts(dsn, op) == (1, 1, 2)  # applied exactly once either way
    # A later operation on the same payment whose COMMIT is lost the same way.
    cap = ops.capture(key=f"c-{really_commit}", payment=op.after)
    client2 = Client(dsn=dsn, connect=_flaky(really_commit, faults=[1]))
    assert client2.run(cap).status == COMMITTED
    assert _counts(dsn, cap) == (1, 1, 2)
    client.close()
    client2.close()
