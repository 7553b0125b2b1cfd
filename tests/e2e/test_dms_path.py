"""A DMS migration end to end: payment_migration, payment_rollback before a cutover, payment_migration
again, payment_cutover and payment_rollback after it, with ``engine=dms`` through dag.test(), every
AWS call to moto. The DAGs start and stop the task with the amazon provider's DMS operators, in
their dms branch.

moto has no DMS data plane; ``DmsDataPlaneDouble`` (tests/e2e/dms_data_plane_double.py, a test
double used only here) reads the slots the tasks' endpoints name and applies their changes while
moto says a task runs. Everything else is the real thing: the engine, the DAGs, the Amazon
provider's hooks, PostgreSQL, PgBouncer. Every DMS call the engine makes is recorded from
botocore's events and asserted.
"""

from __future__ import annotations

import time

import pytest
from dms_data_plane_double import DmsDataPlaneDouble

from paymigrate.aws import contract, names
from paymigrate.db import connection
from paymigrate.provider import defaults
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.local.dagrun import run_in_process
from paymigrate_dev.local.demo import reset, table_counts
from paymigrate_dev.workload import Workload, report

pytestmark = pytest.mark.e2e

MUTATING = ("StartReplicationTask", "StopReplicationTask")
# Each DAG's dms branch, the postgres-logical branch it skips, and the task where they join.
MIGRATION_DMS = ("prepare_replication_task", "replication_start_needed", "start_replication_task",
                 "wait_full_load_done")
MIGRATION_LOGICAL = ("start_replication", "wait_replication_running")
ROLLBACK_STOP = ("stop_replication_task", "wait_replication_task_stopped")
ROLLBACK_LOGICAL = ("stop_replication", "wait_replication_stopped")


@pytest.fixture(scope="module")
def dms_story(stack, airflow):
    defaults.DEFAULT_ARGS["retries"] = 0
    reset(stack)
    seed(dsn=stack.dsn("source"), rows=300, seed=11, replace=True)
    yield
    defaults.DEFAULT_ARGS["retries"] = 2
    reset(stack)
    with connection(stack.endpoint("source", dbname="postgres"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS payments WITH (FORCE)")
        cur.execute("CREATE DATABASE payments")


def _count(dsn, query):
    with connection(dsn) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def _states(result):
    return {t["task_id"]: t["state"] for t in result.tasks}


def _branches(result, *, ran=(), skipped=()):
    """The run succeeded through ``ran`` and past the tasks ``skipped``."""
    states = _states(result)
    assert result.ok, states
    assert {t: states[t] for t in (*ran, *skipped)} == {
        **{t: "success" for t in ran}, **{t: "skipped" for t in skipped}}, states


def _mutations(calls):
    return [(op, p["ReplicationTaskArn"], p.get("StartReplicationTaskType"), p.get("CdcStartPosition"))
            for op, p in calls if op in MUTATING]


def test_dms_migration_cutover_and_rollback(stack, dms_story, answerer, monkeypatch, tmp_path):
    cfg = contract.read(stack.client("ssm"), stack.env)
    forward, reverse = cfg["replication/dms-task-arn"], cfg["replication/reverse-task-arn"]
    started = time.monotonic()

    plane = DmsDataPlaneDouble(stack, task_arn=forward, reverse_task_arn=reverse)
    plane.test_connections()
    plane.install(monkeypatch)
    plane.start()
    work = None
    try:
        migrated = run_in_process("payment_migration", {"engine": "dms"})
        _branches(migrated, ran=("replication_engine", *MIGRATION_DMS, "checkpoint_replication"),
                  skipped=MIGRATION_LOGICAL)
        first_start = migrated.xcom["prepare_replication_task"]
        assert first_start["task_arn"] == forward
        assert migrated.xcom["validate"]["status"] == "match"
        assert table_counts(stack.dsn("target")) == table_counts(stack.dsn("source"))
        assert _count(stack.dsn("source"), "SELECT plugin FROM pg_replication_slots WHERE slot_name = "
                      f"'{names.dms_slot_name(stack.env)}'") == "test_decoding"

        # A rollback before any cutover: the provider's operator stops the running task and its
        # sensor waits until DMS says stopped. The migration again resumes the task's CDC.
        early = run_in_process("payment_rollback", {"reason": "test: dms before cutover"})
        _branches(early, ran=("replication_engine", "replication_stop_needed", *ROLLBACK_STOP,
                              "route_traffic_to_source"), skipped=ROLLBACK_LOGICAL)
        assert early.xcom["switch_writes_to_source"] == {"switched": False}
        again = run_in_process("payment_migration", {"engine": "dms"})
        _branches(again, ran=MIGRATION_DMS, skipped=MIGRATION_LOGICAL)
        assert again.xcom["prepare_replication_task"]["start_type"] == "resume-processing"

        work = Workload(dsn=stack.dsn("router"), directory=tmp_path, clients=2, tps=30, seed=7).start()
        time.sleep(1)
        # DMS applies on its own schedule (its CommitTimeout is 1 s), and the freeze ends its
        # sessions: a DMS cutover needs a pause budget of seconds, not the logical engine's 500 ms.
        cut = run_in_process("payment_cutover", {"approved_by": "pytest", "confirm_environment": stack.env,
                                                 "canary_soak_seconds": 0, "max_write_pause_ms": 5000})
        assert cut.ok, (_states(cut), plane.applied, plane.error)
        switched = cut.xcom["write_switch"]
        assert switched["fenced"] and switched["drain_position"] and switched["reverse_position"]
        assert _count(stack.dsn("router"), "SELECT inet_server_port()") == stack.port("target")
        # The reverse slot was made inside the pause, on the target, where the task starts.
        assert _count(stack.dsn("target"), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                      f"'{names.dms_slot_name(stack.env, 'reverse')}'") == 1
        time.sleep(1)  # writes on the new writer, for the reverse task to carry back
        back = run_in_process("payment_rollback", {"reason": "test: dms after cutover"})
        # The forward task stopped when the reverse one started, the switch back stopped that
        # one: nothing left to stop.
        _branches(back, ran=("replication_stop_needed", "route_traffic_to_source"),
                  skipped=(*ROLLBACK_STOP, *ROLLBACK_LOGICAL))
        assert back.xcom["switch_writes_to_source"]["switched"] is True
        assert _count(stack.dsn("router"), "SELECT inet_server_port()") == stack.port("source")
        time.sleep(0.5)
    finally:
        if work is not None:
            work.stop()
        plane.stop()

    # Nothing committed through the router was lost on the way to the target and back.
    ledger = report(directory=tmp_path, against_dsn=stack.dsn("source"))
    assert ledger.committed > 0 and (ledger.lost, ledger.duplicated, ledger.invariants_ok) == (0, 0, True), \
        ledger.to_dict()
    assert plane.applied["reverse"] > 0

    # Every start and stop, in order: the forward task from scratch, stopped by the early
    # rollback, resumed by the migration again, stopped after RESUME, then the reverse task from
    # the target position captured inside the pause, stopped once writes were back on the source.
    calls = _mutations(plane.calls)
    # A full load from scratch: start-replication on a task never run, reload-target on one an
    # earlier run in this session started (the state machine tests do).
    assert first_start["start_type"] in {"start-replication", "reload-target"}
    assert calls == [
        ("StartReplicationTask", forward, first_start["start_type"], None),
        ("StopReplicationTask", forward, None, None),
        ("StartReplicationTask", forward, "resume-processing", None),
        ("StopReplicationTask", forward, None, None),
        ("StartReplicationTask", reverse, "start-replication", switched["reverse_position"]),
        ("StopReplicationTask", reverse, None, None),
    ]
    assert {op for op, _ in plane.calls} <= {
        *MUTATING, "DescribeReplicationTasks", "DescribeTableStatistics", "DescribeEndpoints",
        "DescribeConnections", "DescribeReplicationInstances"}
    assert time.monotonic() - started < 180  # five DAG runs: 70-85 s here on 2 idle cores
