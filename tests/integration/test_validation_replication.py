"""Under live writes with native logical replication: lag is never reported, a loss always is."""

from __future__ import annotations

import time
from functools import partial

import psycopg2
import pytest
from conftest import BackgroundWriter
from psycopg2.extensions import parse_dsn

from paymigrate.replication.logical import LogicalEngine
from paymigrate.validation import Tuning, validate

pytestmark = pytest.mark.integration

VICTIM = 450  # never touched by the writer, so no later update re-creates it on the target
SMALL = Tuning(rows_per_segment=50, leaf_rows=20, fanout=4)


def _run(dsn, statement, params=None, fetch=False):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if fetch else None
    finally:
        conn.close()


def Writer(dsn: str) -> BackgroundWriter:  # noqa: N802 (it stands for the class it makes)
    """Inserts new accounts and updates existing ones (except the victim) until stopped."""
    next_id = iter(range(100_000, 10**9))

    def step(cur, rng) -> int:
        cur.execute("INSERT INTO accounts VALUES (%s, 0, now())", (next(next_id),))
        cur.execute("UPDATE accounts SET balance = balance + 1, updated_at = now() "
                    "WHERE id = %s", (rng.randint(1, 400),))
        return 2

    return BackgroundWriter(dsn, step, seed=7, pause=0.002)


@pytest.fixture
def replicated(databases, stack):
    src, tgt = databases
    dbname = parse_dsn(src)["dbname"]
    for dsn in databases:
        _run(dsn, "CREATE TABLE accounts (id int PRIMARY KEY, balance numeric(12, 2), "
                  "updated_at timestamptz)")
    _run(src, "INSERT INTO accounts SELECT g, g, now() FROM generate_series(1, 500) g;"
              "CREATE PUBLICATION validation_pub FOR TABLE accounts")
    conninfo = stack.endpoint("source", dbname=dbname).dsn()
    sub = f"sub_{dbname}"
    _run(tgt, f"CREATE SUBSCRIPTION {sub} CONNECTION %s PUBLICATION validation_pub", (conninfo,))
    try:
        deadline = time.monotonic() + 60
        while _run(tgt, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'", fetch=True)[0][0]:
            assert time.monotonic() < deadline, "initial table sync did not finish in 60 s"
            time.sleep(0.2)
        yield src, tgt, sub, LogicalEngine(source=stack.endpoint("source", dbname=dbname),
                                           target=stack.endpoint("target", dbname=dbname),
                                           name=sub, poll=0.2)
    finally:
        _run(tgt, f"DROP SUBSCRIPTION IF EXISTS {sub}")


def test_live_replication_matches_and_a_target_loss_is_always_found(replicated):
    src, tgt, _, engine = replicated
    catch_up = partial(engine.catch_up, timeout=30)
    writer = Writer(src)
    writer.start()
    try:
        time.sleep(0.5)
        for _ in range(3):
            report = validate(source=src, target=tgt, catch_up=catch_up, tuning=SMALL)
            assert report.status == "match", report.to_dict()
        # A loss on the target only: the apply worker must not fight it, the source keeps it.
        _run(tgt, "SET session_replication_role = replica; DELETE FROM accounts WHERE id = %s",
             (VICTIM,))
        for _ in range(2):
            table = validate(source=src, target=tgt, catch_up=catch_up, tuning=SMALL).tables[0]
            assert (list(table.missing), list(table.extra), list(table.different)) == ([VICTIM], [], [])
        assert writer.commits > 50 and writer.error is None
    finally:
        writer.stop.set()
        writer.join(10)


def test_without_catch_up_lag_shows_and_catch_up_waiter_times_out(replicated):
    src, tgt, sub, engine = replicated
    _run(tgt, f"ALTER SUBSCRIPTION {sub} DISABLE")  # replication stops: the source runs ahead
    _run(src, "UPDATE accounts SET balance = -1 WHERE id = 3")
    assert [list(t.different) for t in validate(source=src, target=tgt).tables] == [[3]]
    waiter = partial(engine.catch_up, timeout=1)
    lsn = _run(src, "SELECT pg_current_wal_lsn()::text", fetch=True)[0][0]
    assert waiter(lsn) is False
    table = validate(source=src, target=tgt, catch_up=waiter,
                     tuning=Tuning(recheck_rounds=1)).tables[0]
    assert list(table.different) == [3] and "did not apply" in table.notes[0]
    _run(tgt, f"ALTER SUBSCRIPTION {sub} ENABLE")
    assert validate(source=src, target=tgt, catch_up=engine.catch_up).status == "match"
