"""The read-only route (``payments_ro``) on the real PgBouncers: reads answer from the target,
and no write gets through, whatever the client sets."""

from __future__ import annotations

import psycopg2
import pytest

from paymigrate.db import connection
from paymigrate.routing.access import READ_ONLY_DATABASE
from paymigrate_dev.local.stack import APP_USER, READ_ONLY_USER, ROUTERS

pytestmark = pytest.mark.integration

TABLE = "read_only_route_probe"
WRITES = [
    f"INSERT INTO {TABLE} VALUES (2, 'written')",
    f"UPDATE {TABLE} SET note = 'changed' WHERE id = 1",
    f"DELETE FROM {TABLE}",
    f"CREATE TABLE {TABLE}_new (id int)",
    f"SELECT nextval('{TABLE}_seq')",
]
# What a client may do to make its session writable; none of it gives the role a privilege.
UNLOCKS = [
    "",
    "SET default_transaction_read_only = off",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "BEGIN READ WRITE",
]


@pytest.fixture(scope="module")
def probe(stack):
    """A table and a sequence on the target's database behind the read-only route."""
    with connection(stack.dsn("target"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, note text)")
        cur.execute(f"CREATE SEQUENCE {TABLE}_seq")
        cur.execute(f"INSERT INTO {TABLE} VALUES (1, 'kept')")
    yield
    with connection(stack.dsn("target"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {TABLE}")
        cur.execute(f"DROP SEQUENCE {TABLE}_seq")


def _target_rows(stack):
    with connection(stack.dsn("target")) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, note FROM {TABLE} ORDER BY id")
        return cur.fetchall()


@pytest.mark.parametrize("router", ROUTERS)
def test_reads_through_the_read_only_route_answer_from_the_target(stack, probe, router):
    dsn = stack.dsn(router, user=READ_ONLY_USER, dbname=READ_ONLY_DATABASE)
    with connection(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT inet_server_port(), current_user, note FROM {TABLE} WHERE id = 1")
        assert cur.fetchone() == (stack.port("target"), READ_ONLY_USER, "kept")
        cur.execute(f"SELECT last_value FROM {TABLE}_seq")  # sequences are read too
        assert cur.fetchone() == (1,)


@pytest.mark.parametrize("unlock", UNLOCKS, ids=["as-is", "set-off", "session-read-write", "begin-read-write"])
def test_no_write_gets_through_the_read_only_route_whatever_the_client_sets(stack, probe, unlock):
    refused = []
    for write in WRITES:
        conn = psycopg2.connect(stack.dsn(ROUTERS[0], user=READ_ONLY_USER, dbname=READ_ONLY_DATABASE))
        conn.autocommit = True  # the client's own BEGIN READ WRITE opens the transaction
        try:
            with conn.cursor() as cur:
                if unlock:
                    cur.execute(unlock)
                with pytest.raises(psycopg2.Error) as err:
                    cur.execute(write)
                    cur.execute("COMMIT")
                refused.append(err.value.pgcode)
        finally:
            conn.close()
    # 25006 read-only transaction (the role's default), 42501 permission denied (its privileges).
    assert set(refused) <= {"25006", "42501"} and len(refused) == len(WRITES), refused
    if unlock:
        assert set(refused) == {"42501"}, refused  # the setting is off: the privileges refuse
    assert _target_rows(stack) == [(1, "kept")]


def test_only_the_read_only_role_may_use_the_route_and_it_no_other(stack, probe):
    s = stack.secrets()
    # The application's role, which could write, with its right password.
    with pytest.raises(psycopg2.OperationalError, match="login rejected"):
        psycopg2.connect(stack.dsn(ROUTERS[1], user=APP_USER, dbname=READ_ONLY_DATABASE),
                         password=s["app-db"]).close()
    # The read-only role, with its right password, on the writer's route.
    with pytest.raises(psycopg2.OperationalError, match="login rejected"):
        psycopg2.connect(stack.dsn(ROUTERS[1], user=READ_ONLY_USER), password=s["reader-db"]).close()
    with connection(stack.dsn(ROUTERS[1])) as conn, conn.cursor() as cur:  # the writer's route as before
        cur.execute("SELECT current_user, inet_server_port()")
        assert cur.fetchone() == (APP_USER, stack.port("source"))
