"""postgres-logical engine against the real local clusters: copy, CDC under writes, crash, reverse."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from conftest import sql_rows as run

from paymigrate.errors import PreflightError, ReplicationError
from paymigrate.replication import engine_for, snapshot
from paymigrate.replication.logical import LogicalEngine

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE accounts (id bigserial PRIMARY KEY, owner text NOT NULL,
                       balance numeric(19,4) NOT NULL DEFAULT 0,
                       created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE payments (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                       account_id bigint NOT NULL REFERENCES accounts,
                       amount numeric(19,4) NOT NULL, currency char(3) NOT NULL, meta jsonb,
                       created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX payments_account_idx ON payments (account_id);
CREATE TABLE ledger_entries (payment_id uuid NOT NULL, line int NOT NULL,
                             amount numeric(19,4) NOT NULL, PRIMARY KEY (payment_id, line));
CREATE TABLE audit_log (at timestamptz NOT NULL DEFAULT now(), message text NOT NULL);
CREATE SEQUENCE invoice_numbers START 5000;
INSERT INTO accounts (owner, balance) SELECT 'owner ' || g, g * 10 FROM generate_series(1, 200) g;
INSERT INTO payments (account_id, amount, currency, meta)
  SELECT 1 + g % 200, g / 7.0, 'EUR', jsonb_build_object('n', g) FROM generate_series(1, 2000) g;
INSERT INTO ledger_entries SELECT id, l, amount / 2 FROM payments, generate_series(1, 2) l;
INSERT INTO audit_log (message) SELECT 'seed ' || g FROM generate_series(1, 300) g;
SELECT nextval('invoice_numbers') FROM generate_series(1, 7);
"""
TABLES = ("accounts", "payments", "ledger_entries", "audit_log")
# Enough rows that its copy takes a second or more: long enough to crash something during it.
BIG_AUDIT_LOG = ("INSERT INTO audit_log (message) SELECT repeat('x', 200) || g "
                 "FROM generate_series(1, 400000) g;")
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def rows(dsn: str, table: str) -> list[str]:
    return [r[0] for r in run(dsn, f"SELECT t::text FROM {table} t ORDER BY 1")]


def assert_same(source_dsn: str, target_dsn: str) -> None:
    for table in TABLES:
        src, tgt = rows(source_dsn, table), rows(target_dsn, table)
        assert len(src) == len(tgt), f"{table}: {len(src)} rows on the source, {len(tgt)} on the target"
        assert src == tgt, f"{table}: rows differ"


class Writer(threading.Thread):
    """Payments-like traffic on the source: inserts, updates and deletes, one per transaction."""

    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn, self.stop_event, self.error = dsn, threading.Event(), None
        self.committed = 0
        self.live: set[str] = set()  # payment ids that must exist at the end

    def run(self) -> None:
        try:
            conn = psycopg2.connect(self.dsn)
            with conn, conn.cursor() as cur:
                while not self.stop_event.is_set():
                    pid = str(uuid.uuid4())
                    cur.execute("INSERT INTO payments (id, account_id, amount, currency, meta) "
                                "VALUES (%s, 1 + floor(random() * 200)::int, 12.3456, 'USD', "
                                "'{\"w\": 1}')", (pid,))
                    cur.execute("INSERT INTO ledger_entries VALUES (%s, 1, 6.1728), (%s, 2, 6.1728)",
                                (pid, pid))
                    cur.execute("UPDATE accounts SET balance = balance + 1 WHERE id = "
                                "1 + floor(random() * 200)::int")
                    cur.execute("INSERT INTO audit_log (message) VALUES ('paid ' || %s)", (pid,))
                    cur.execute("SELECT nextval('invoice_numbers')")
                    conn.commit()
                    self.live.add(pid)
                    if self.committed % 5 == 0:
                        victim = self.live.pop()
                        cur.execute("DELETE FROM ledger_entries WHERE payment_id = %s", (victim,))
                        cur.execute("DELETE FROM payments WHERE id = %s", (victim,))
                        conn.commit()
                    self.committed += 1
                    time.sleep(0.005)
            conn.close()
        except Exception as exc:  # surfaced by the test
            self.error = exc

    def finish(self) -> None:
        self.stop_event.set()
        self.join(30)
        assert self.error is None, self.error
        assert self.committed > 10, "the writer barely ran"


@pytest.fixture
def pair(stack, databases):
    """``(engine factory, source_dsn, target_dsn, dbname)``; every subscription made is dropped
    before the databases are."""
    source_dsn, target_dsn = databases
    dbname = source_dsn.split("dbname=")[1].split()[0]
    made: list[LogicalEngine] = []

    def make(**kwargs) -> LogicalEngine:
        engine = engine_for("postgres-logical", source=stack.endpoint("source", dbname=dbname),
                            target=stack.endpoint("target", dbname=dbname), name=dbname,
                            poll=0.2, **kwargs)
        made.append(engine)
        return engine

    yield make, source_dsn, target_dsn, dbname
    for engine in made:
        engine.drop(direction="reverse")
        engine.drop(direction="forward")


@pytest.mark.parametrize("initial_copy", ["snapshot", "subscription"])
def test_copy_and_cdc_under_live_writes_end_equal(pair, initial_copy):
    make, source_dsn, target_dsn, dbname = pair
    run(source_dsn, SCHEMA)
    engine = make(initial_copy=initial_copy)
    assert engine.preflight() == []
    writer = Writer(source_dsn)
    writer.start()
    try:
        assert engine.start().action == "created"
        assert engine.start().action == "already-running"
        status = engine.wait_full_load(timeout=120, poll=0.5)
        assert status.full_load_done and status.state == "streaming"
        assert status.tables_synced == status.tables_total == len(TABLES)
        time.sleep(1)  # CDC only, still under writes
    finally:
        writer.finish()
    assert engine.catch_up(engine.position(), timeout=60)
    assert_same(source_dsn, target_dsn)
    live = {r[0] for r in run(target_dsn, "SELECT id::text FROM payments")}
    assert writer.live <= live, "a committed payment is missing on the target"
    assert run(target_dsn, "SELECT count(*) FROM pg_subscription WHERE subname = %s", (dbname,)) == [(1,)]
    assert run(source_dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
               (dbname,)) == [(1,)]
    # Keys on every table that has one; secondary index and foreign key deferred, then built.
    assert run(target_dsn, "SELECT count(*) FROM pg_constraint WHERE contype = 'p' "
                           "AND connamespace = 'public'::regnamespace") == [(3,)]
    assert run(target_dsn, "SELECT count(*) FROM pg_indexes WHERE indexname = 'payments_account_idx'") == [(1,)]
    assert run(target_dsn, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(1,)]
    from paymigrate.validation import MATCH, validate

    report = validate(source=source_dsn, target=target_dsn, catch_up=engine.catch_up)
    assert report.status == MATCH, report


def test_sequences_synced_including_unowned(pair):
    make, source_dsn, target_dsn, _ = pair
    engine = _streaming(make, source_dsn)
    values = engine.sync_sequences(gap=1000)
    assert values == {"public.accounts_id_seq": 200 + 1000, "public.invoice_numbers": 5006 + 1000}
    assert run(target_dsn, "SELECT nextval('invoice_numbers'), nextval('accounts_id_seq')") == [(6007, 1201)]
    assert engine.sync_sequences(gap=1000)["public.invoice_numbers"] == 6007  # never backwards


def _streaming(make, source_dsn: str) -> LogicalEngine:
    """The demo-like SCHEMA on the source, replicated, its initial copy done."""
    run(source_dsn, SCHEMA)
    engine = make()
    engine.start()
    assert engine.wait_full_load(timeout=60, poll=0.5).full_load_done
    return engine


def test_start_resumes_a_stopped_subscription_without_a_second_one(pair):
    make, source_dsn, target_dsn, dbname = pair
    engine = _streaming(make, source_dsn)
    engine.stop()
    engine.stop()
    assert engine.status().state == "stopped"
    run(source_dsn, "UPDATE accounts SET owner = 'changed while stopped' WHERE id = 1")
    assert make().start().action == "resumed"
    assert engine.catch_up(engine.position(), timeout=60)
    assert_same(source_dsn, target_dsn)
    assert run(target_dsn, "SELECT count(*) FROM pg_subscription WHERE subname = %s", (dbname,)) == [(1,)]
    # The deferred indexes were built once; a resumed run must not try again (they exist).
    assert make().complete_schema() == 0


def test_drain_when_idle_finishes_although_background_wal_moves_on(pair):
    make, source_dsn, _, _ = pair
    engine = _streaming(make, source_dsn)
    run(source_dsn, "CHECKPOINT")  # WAL that no transaction wrote: nothing to apply for it
    before = engine.position()
    started = time.monotonic()
    assert engine.catch_up(before, timeout=30)
    assert time.monotonic() - started < 30
    assert engine.lag().bytes is not None


class Starter(threading.Thread):
    """``engine.start()`` in a thread: its result, or the exception it raised."""

    def __init__(self, engine):
        super().__init__(daemon=True)
        self.engine, self.result, self.error = engine, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.engine.start()
        except Exception as exc:  # surfaced by the test
            self.error = exc


def wait_for_copy_into(target_dsn: str, table: str) -> None:
    """Until a COPY into ``table`` runs on the target and has taken rows."""
    deadline = time.monotonic() + 60
    while not run(target_dsn, "SELECT 1 FROM pg_stat_progress_copy p JOIN pg_class c "
                              "ON c.oid = p.relid WHERE c.relname = %s AND p.tuples_processed > 0",
                  (table,)):
        assert time.monotonic() < deadline, f"no COPY into {table} was ever seen on the target"
        time.sleep(0.01)


def test_target_killed_during_the_snapshot_copy_is_waited_out_and_the_copy_redone(stack, pair):
    make, source_dsn, target_dsn, dbname = pair
    run(source_dsn, SCHEMA + BIG_AUDIT_LOG)
    engine = make()
    writer = Writer(source_dsn)
    writer.start()
    try:
        starter = Starter(engine)
        wait_for_copy_into(target_dsn, "audit_log")
        os.kill(stack.cluster("target").pid(), signal.SIGKILL)
        time.sleep(1)
        stack.up(bootstrap=False)
        starter.join(180)
        assert starter.error is None, starter.error
        assert starter.result.action == "created"
        assert engine.wait_full_load(timeout=60, poll=0.5).full_load_done
    finally:
        writer.finish()
    assert engine.catch_up(engine.position(), timeout=60)
    assert_same(source_dsn, target_dsn)


def test_copier_killed_during_the_snapshot_copy_then_start_copies_anew(stack, pair):
    make, source_dsn, target_dsn, dbname = pair
    run(source_dsn, SCHEMA + BIG_AUDIT_LOG)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PLUGINS)!r})
        from pathlib import Path
        from paymigrate_dev.local.stack import LocalStack
        from paymigrate.replication.logical import LogicalEngine
        s = LocalStack(Path({str(stack.home)!r}), env={stack.env!r})
        LogicalEngine(source=s.endpoint("source", dbname={dbname!r}),
                      target=s.endpoint("target", dbname={dbname!r}), name={dbname!r}).start()
    """)
    copier = subprocess.Popen([sys.executable, "-c", script])
    try:
        wait_for_copy_into(target_dsn, "audit_log")
        with pytest.raises(ReplicationError, match="another start"):
            make().start()  # an Airflow retry beside the live attempt: refused, not doubled
    finally:
        copier.kill()
        copier.wait()
    # Left behind: the slot (its snapshot gone with the copier) and the tables copied so far.
    assert make().status().state == "copying"
    deadline = time.monotonic() + 30
    while run(source_dsn, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
              (dbname,)) != [(None,)]:
        assert time.monotonic() < deadline, "the dead copier's walsender never let go of the slot"
        time.sleep(0.1)
    engine = make()
    assert engine.start().action == "created"
    assert engine.wait_full_load(timeout=60, poll=0.5).full_load_done
    run(source_dsn, "UPDATE accounts SET owner = 'after the copy' WHERE id = 7")
    assert engine.catch_up(engine.position(), timeout=60)
    assert_same(source_dsn, target_dsn)


def test_target_killed_during_table_sync_ends_consistent(stack, pair):
    make, source_dsn, target_dsn, _ = pair
    run(source_dsn, SCHEMA + BIG_AUDIT_LOG)
    engine = make(initial_copy="subscription")
    engine.start()
    deadline = time.monotonic() + 60
    while "copying" not in engine.status().tables.values():
        assert time.monotonic() < deadline, "no table was ever seen copying"
        time.sleep(0.02)
    os.kill(stack.cluster("target").pid(), signal.SIGKILL)
    time.sleep(1)
    stack.up(bootstrap=False)
    status = engine.wait_full_load(timeout=180, poll=0.5)
    log = stack.cluster("target").logfile
    assert status.full_load_done, f"{status}\ntarget log:\n{log.read_text()[-6000:]}"
    assert engine.catch_up(engine.position(), timeout=60)
    assert_same(source_dsn, target_dsn)


def test_a_table_sync_stuck_without_its_slot_is_copied_again(pair):
    # What a target crash between PostgreSQL dropping a table's sync slot and committing the
    # table's SYNCDONE leaves (test_target_killed_during_table_sync_ends_consistent hits it about
    # one run in three): the table 'copied' for ever, its sync worker failing on the lost slot.
    make, source_dsn, target_dsn, _ = pair
    run(source_dsn, SCHEMA)
    engine = make(initial_copy="subscription")
    engine.start()
    deadline = time.monotonic() + 60
    while not engine.status().full_load_done:  # not wait_full_load: no foreign keys yet, as then
        assert time.monotonic() < deadline, "initial copy did not finish"
        time.sleep(0.2)
    run(target_dsn, "UPDATE pg_subscription_rel SET srsubstate = 'f' "
                    "WHERE srrelid = 'accounts'::regclass")
    run(target_dsn, "SET session_replication_role = replica; "
                    "INSERT INTO accounts (id, owner) VALUES (-1, 'left by the broken sync')")
    run(source_dsn, "UPDATE accounts SET owner = 'changed while stuck' WHERE id = 3")
    time.sleep(2)
    assert engine.status().tables["public.accounts"] == "copied"
    step = engine.finish_full_load(build=False)  # what the sensor's trigger calls
    assert step.repaired == ("public.accounts",) and step.schema_statements is None
    assert engine.wait_full_load(timeout=60, poll=0.5).full_load_done
    assert engine.resync_lost_tables() == []
    assert engine.catch_up(engine.position(), timeout=60)
    assert_same(source_dsn, target_dsn)


def test_snapshot_copy_refuses_a_target_with_foreign_keys_or_triggers_already_built(pair):
    make, source_dsn, target_dsn, _ = pair
    run(source_dsn, SCHEMA)
    schema_only = SCHEMA.split("INSERT")[0]
    run(target_dsn, schema_only + "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS "
                                  "'BEGIN RETURN NEW; END'; CREATE TRIGGER audit BEFORE INSERT ON "
                                  "audit_log FOR EACH ROW EXECUTE FUNCTION f()")
    engine = make()
    with pytest.raises(ReplicationError, match="foreign key payments_account_id_fkey on payments, "
                                               "trigger audit on audit_log"):
        engine.start()
    assert engine.status().state == "absent"  # refused before the slot was made
    assert run(target_dsn, "SELECT count(*) FROM payments") == [(0,)]


def test_a_source_failing_half_way_through_a_copy_is_never_taken_for_its_end(databases):
    source_dsn, target_dsn = databases
    run(target_dsn, "CREATE TABLE t (n int)")
    src, tgt = psycopg2.connect(source_dsn), psycopg2.connect(target_dsn)
    try:
        with pytest.raises(psycopg2.Error, match="division by zero"):
            snapshot.stream_copy(src, tgt, "COPY (SELECT 1 / (50000 - g) FROM generate_series(1, "
                                           "100000) g) TO STDOUT (FORMAT binary)",
                                 "COPY t FROM STDIN (FORMAT binary)")
        with tgt.cursor() as cur:  # the target's COPY ended "fine" on the rows it got...
            cur.execute("SELECT count(*) FROM t")
            assert 0 < cur.fetchone()[0] < 50000
        tgt.rollback()  # ...which is why only a complete copy is ever committed
    finally:
        src.close()
        tgt.close()
    assert run(target_dsn, "SELECT count(*) FROM t") == [(0,)]


def test_reverse_carries_target_writes_back_to_the_source(pair):
    make, source_dsn, target_dsn, dbname = pair
    engine = _streaming(make, source_dsn)
    frozen = engine.position()
    assert engine.catch_up(frozen, timeout=60)
    engine.prepare_reverse()
    start = engine.capture_reverse(timeout=5)
    # Written after the capture and before the subscription exists: the slot keeps it.
    run(target_dsn, "INSERT INTO audit_log (message) VALUES ('before attach')")
    assert engine.attach_reverse(from_position=start).action == "created"
    assert engine.attach_reverse().action == "already-running"
    assert engine.status().state == "absent"  # forward dropped first: no loop on PostgreSQL 15
    run(target_dsn, "INSERT INTO payments (account_id, amount, currency) VALUES (3, 99.5, 'GBP'); "
                    "UPDATE accounts SET balance = 0 WHERE id = 2; "
                    "INSERT INTO audit_log (message) VALUES ('written on the target')")
    assert engine.catch_up(engine.position(side="target"), timeout=60, direction="reverse")
    assert engine.catch_up(engine.position(side="target"), timeout=5, direction="reverse")
    assert_same(source_dsn, target_dsn)
    assert run(source_dsn, "SELECT count(*) FROM payments WHERE currency = 'GBP'") == [(1,)]
    assert run(source_dsn, "SELECT count(*) FROM audit_log WHERE message = 'before attach'") == [(1,)]
    assert run(source_dsn, "SELECT count(*) FROM pg_subscription WHERE subname = %s",
               (f"{dbname}_reverse",)) == [(1,)]
    # While reverse replication carries writes back, a second cutover cannot prepare over it.
    with pytest.raises(ReplicationError, match="already the writer"):
        engine.prepare_reverse()


def test_attach_reverse_refuses_without_the_slot_of_the_switch(pair):
    make, source_dsn, target_dsn, dbname = pair
    engine = _streaming(make, source_dsn)
    engine.prepare_reverse()
    with pytest.raises(ReplicationError, match="reverse slot .* is gone"):
        engine.attach_reverse()
    start = engine.capture_reverse(timeout=5)
    engine.release_reverse()  # an abort inside the pause: no slot, no publication left
    assert run(target_dsn, "SELECT count(*) FROM pg_replication_slots") == [(0,)]
    assert run(target_dsn, "SELECT count(*) FROM pg_publication") == [(0,)]
    with pytest.raises(ReplicationError, match="is gone"):
        engine.attach_reverse(from_position=start)
    assert engine.status().state in ("streaming", "starting")  # forward untouched


# ---- preflight refusals, each on its own --------------------------------------------------------
def problems_of(engine) -> dict[str | None, str]:
    return {p.table: p.reason for p in engine.preflight()}


def test_preflight_refuses_table_without_key_that_sees_updates(pair):
    make, source_dsn, _, _ = pair
    run(source_dsn, "CREATE TABLE fees (payment int, amount numeric(19,4)); "
                    "INSERT INTO fees VALUES (1, 1), (2, 2); UPDATE fees SET amount = 3 WHERE payment = 1;"
                    "CREATE TABLE events (at timestamptz, body text); INSERT INTO events VALUES (now(), 'x')")
    time.sleep(1.2)  # table statistics reach the shared view at most once a second
    engine = make()
    found = problems_of(engine)
    assert "no primary key or replica identity" in found["public.fees"]
    assert "public.events" not in found  # insert-only: replicates fine
    with pytest.raises(PreflightError, match="public.fees"):
        engine.start()


def test_replica_identity_full_option_replicates_updates_of_keyless_table(pair):
    make, source_dsn, target_dsn, _ = pair
    run(source_dsn, "CREATE TABLE fees (payment int, amount numeric(19,4)); "
                    "INSERT INTO fees VALUES (1, 1), (2, 2); UPDATE fees SET amount = 3 WHERE payment = 1")
    time.sleep(1.2)
    engine = make(replica_identity_full=True)
    assert engine.preflight() == []
    engine.start()
    assert engine.wait_full_load(timeout=60, poll=0.5).full_load_done
    assert run(source_dsn, "SELECT relreplident FROM pg_class WHERE relname = 'fees'") == [("f",)]
    run(source_dsn, "UPDATE fees SET amount = 4 WHERE payment = 2; DELETE FROM fees WHERE payment = 1")
    assert engine.catch_up(engine.position(), timeout=60)
    assert rows(source_dsn, "fees") == rows(target_dsn, "fees") == ["(2,4.0000)"]


def test_preflight_refuses_large_objects(pair):
    make, source_dsn, _, _ = pair
    run(source_dsn, "CREATE TABLE t (id int PRIMARY KEY); SELECT lo_create(0)")
    assert "large object" in problems_of(make())["pg_largeobject"]


def test_preflight_refuses_unlogged_table(pair):
    make, source_dsn, _, _ = pair
    run(source_dsn, "CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)")
    assert "unlogged" in problems_of(make())["public.scratch"]


def test_preflight_refuses_a_target_with_rows(pair):
    make, source_dsn, target_dsn, _ = pair
    run(source_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    run(target_dsn, "CREATE TABLE leftovers (id int); INSERT INTO leftovers VALUES (1)")
    assert "not empty" in problems_of(make())["public.leftovers"]


def test_preflight_refuses_unknown_table_and_role_missing_on_target(stack, pair):
    make, source_dsn, _, _ = pair
    role = f"r_{uuid.uuid4().hex[:8]}"
    run(source_dsn, f"CREATE TABLE t (id int PRIMARY KEY); CREATE ROLE {role}; GRANT SELECT ON t TO {role}")
    try:
        found = problems_of(make(tables=["t", "public.nope"]))
        assert found["public.nope"] == "not found on the source"
        assert role in found["public.t"]
    finally:
        run(source_dsn, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_deferred_schema_rerun_after_a_failure_builds_the_rest_once(pair):
    make, source_dsn, target_dsn, dbname = pair
    run(source_dsn, SCHEMA)
    engine = make()
    engine.start()
    deadline = time.monotonic() + 60
    while not engine.status().full_load_done:  # not wait_full_load: it would build the rest now
        assert time.monotonic() < deadline, "initial copy did not finish"
        time.sleep(0.2)
    # An index already there (a rerun after a crash) and a row the foreign key will refuse.
    run(target_dsn, "CREATE INDEX payments_account_idx ON payments (account_id)")
    run(target_dsn, "SET session_replication_role = replica; "
                    "INSERT INTO payments (account_id, amount, currency) VALUES (999999, 1, 'EUR')")
    with pytest.raises(ReplicationError, match="payments"):
        engine.complete_schema()
    marker = "SELECT obj_description(oid, 'pg_subscription') FROM pg_subscription WHERE subname = %s"
    assert run(target_dsn, marker, (dbname,)) == [(None,)]  # not marked done after a failure
    run(target_dsn, "DELETE FROM payments WHERE account_id = 999999")
    assert engine.complete_schema() >= 1
    assert run(target_dsn, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(1,)]
    assert run(target_dsn, "SELECT count(*) FROM pg_indexes WHERE indexname = 'payments_account_idx'") == [(1,)]
    assert engine.complete_schema() == 0  # marked done: a third call builds nothing
