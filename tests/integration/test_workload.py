"""The workload through PgBouncer against a seeded test database, and its report under faults."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest
from conftest import sql_rows as _sql

from paymigrate_dev.demo.seed import seed
from paymigrate_dev.workload import Workload, report, start_background, stop_background
from paymigrate_dev.workload.ledger import ledger_files, read_ledger

pytestmark = pytest.mark.integration


def _admin(stack, command: str) -> None:
    conn = psycopg2.connect(stack.dsn("router-admin"))
    conn.autocommit = True  # the admin console has no transactions
    try:
        with conn.cursor() as cur:
            cur.execute(command)
    finally:
        conn.close()


@pytest.fixture
def app(stack, databases):
    """A seeded test database reachable through PgBouncer: ``(router_dsn, source_dsn, name)``."""
    source = databases[0]
    name = psycopg2.extensions.parse_dsn(source)["dbname"]
    seed(dsn=source, rows=300, seed=1)
    stack.add_route(name)
    yield stack.dsn("router", dbname=name), source, name
    stack.remove_route(name)


def test_report_finds_every_commit_then_an_injected_loss_duplicate_and_imbalance(app, tmp_path):
    router, source, _ = app
    w = Workload(dsn=router, directory=tmp_path, clients=3, tps=300, count=240, seed=4).start()
    assert w.wait(60)
    stats = w.stop()
    assert stats.committed == 240 and stats.read_mismatches == 0
    clean = report(directory=tmp_path, against_dsn=source)
    assert (clean.committed, clean.found, clean.lost, clean.duplicated) == (240, 240, 0, 0)
    assert clean.invariants_ok and clean.ok and clean.latency_ms["p50"] > 0

    ops = [r for f in ledger_files(tmp_path) for r in read_ledger(f) if r["type"] == "op"]
    by_payment = {}
    for r in ops:
        by_payment.setdefault(r["payment"], []).append(r)
    victim = next(p for p, rs in by_payment.items() if len(rs) == 1)  # authorized, nothing after
    _sql(source, "DELETE FROM payment_holds WHERE payment_id = %s;"
                 "DELETE FROM ledger_lines WHERE payment_id = %s;"
                 "DELETE FROM payments WHERE id = %s", (victim,) * 3)
    lost = report(directory=tmp_path, against_dsn=source)
    assert (lost.lost, lost.found, lost.duplicated) == (1, 239, 0) and not lost.ok
    assert lost.lost_examples[0]["payment"] == victim

    twice = next(r for r in ops if r["kind"] == "capture")
    _sql(source, "INSERT INTO payment_events (payment_id, idempotency_key, kind, payload) "
                 "SELECT payment_id, idempotency_key, kind, payload FROM payment_events "
                 "WHERE idempotency_key = %s", (twice["key"],))
    dup = report(directory=tmp_path, against_dsn=source)
    assert (dup.lost, dup.duplicated) == (1, 1)
    assert dup.duplicated_examples[0]["key"] == twice["key"]

    _sql(source, "UPDATE ledger_lines SET amount = amount + 0.0001 "
                 "WHERE (txn_id, line_no) = (SELECT txn_id, line_no FROM ledger_lines LIMIT 1)")
    bad = report(directory=tmp_path, against_dsn=source)
    assert not bad.invariants_ok
    assert bad.invariants["unbalanced_ledger_transactions"] == 1
    assert bad.invariants["unbalanced_currencies"] == 1


def test_a_pgbouncer_pause_shows_as_a_stall_with_no_failed_transaction(stack, app, tmp_path):
    router, source, name = app
    w = Workload(dsn=router, directory=tmp_path, clients=4, tps=80, duration=6, seed=2).start()
    time.sleep(1.5)
    _admin(stack, f"PAUSE {name}")
    paused = time.monotonic()
    time.sleep(2)
    _admin(stack, f"RESUME {name}")
    assert time.monotonic() - paused < 3
    assert w.wait(60)
    w.stop()
    r = report(directory=tmp_path, against_dsn=source)
    assert r.ok and r.failed == 0 and r.committed > 100
    assert 1.7 <= r.longest_stall_seconds <= 3.5, r.longest_stall_seconds
    assert r.latency_ms["max"] >= 1700


def test_a_backend_killed_mid_transaction_is_retried_under_the_same_key_once(app, tmp_path):
    router, source, name = app
    # Hold inserts into the event log so the workload's first transaction waits mid-way.
    blocker = psycopg2.connect(source)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE payment_events IN EXCLUSIVE MODE")
    w = Workload(dsn=router, directory=tmp_path, clients=1, tps=50, count=5, seed=9).start()
    deadline = time.monotonic() + 20
    victim = None
    while victim is None and time.monotonic() < deadline:
        rows = _sql(source, "SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                            "usename = 'payments_app' AND wait_event_type = 'Lock'", (name,))
        victim = rows[0][0] if rows else time.sleep(0.05)
    assert victim, "the workload's transaction never waited on the lock"
    _sql(source, "SELECT pg_terminate_backend(%s)", (victim,))
    blocker.rollback()
    blocker.close()
    assert w.wait(60)
    stats = w.stop()
    assert stats.committed == 5 and stats.retries_by_kind.get("connection_lost", 0) >= 1
    r = report(directory=tmp_path, against_dsn=source)
    assert (r.committed, r.found, r.lost, r.duplicated) == (5, 5, 0, 0) and r.ok
    keys = _sql(source, "SELECT idempotency_key, count(*) FROM payment_events "
                        "WHERE idempotency_key LIKE 'wl-%%' GROUP BY 1")
    assert len(keys) == 5 and {n for _, n in keys} == {1}


def test_background_start_stop_and_cli_report(app, tmp_path, capsys):
    from paymigrate_dev.cli import main as cli_main

    router, source, _ = app
    pid = start_background(dsn=router, directory=tmp_path, clients=2, tps=100, duration=60)
    time.sleep(1.5)
    assert stop_background(tmp_path) == pid
    assert stop_background(tmp_path) is None
    records = [r for f in ledger_files(tmp_path) for r in read_ledger(f)]
    assert records[-1]["type"] == "end" and records[-1]["stats"]["committed"] > 20
    assert cli_main(["workload", "report", "--dir", str(tmp_path), "--against", source,
                     "--json"]) == 0
    assert '"lost": 0' in capsys.readouterr().out


def test_workload_refuses_an_unseeded_database(databases, tmp_path):
    from paymigrate.errors import WorkloadError

    with pytest.raises(WorkloadError, match="seed it first"):
        Workload(dsn=databases[0], directory=tmp_path, count=1).start()
    with pytest.raises(WorkloadError, match="clients=0"):
        Workload(dsn=databases[0], directory=tmp_path, clients=0)
    assert not threading.active_count() > 50
