"""DMS engine against moto: the control plane (start, status, stop, resume) and what moto lacks.

Tests that change a task's state create their own task; the bootstrap's task (shared by the
session) is only read.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest

from paymigrate import aws
from paymigrate.aws import contract, names
from paymigrate.db import connection
from paymigrate.errors import ReplicationError
from paymigrate.replication import dms_task, engine_for

pytestmark = pytest.mark.integration


@pytest.fixture
def dms(stack):
    return aws.client("dms")


@pytest.fixture
def shared_task_arn(stack) -> str:
    ssm = aws.client("ssm")
    return ssm.get_parameter(Name=contract.path("replication/dms-task-arn", stack.env))["Parameter"]["Value"]


@pytest.fixture
def own_task(dms, shared_task_arn):
    """A task of our own, wired like the bootstrap's, deleted afterwards."""
    shared = dms.describe_replication_tasks(
        Filters=[{"Name": "replication-task-arn", "Values": [shared_task_arn]}])["ReplicationTasks"][0]
    task = dms.create_replication_task(
        ReplicationTaskIdentifier=f"test-{uuid.uuid4().hex[:10]}", MigrationType="full-load-and-cdc",
        SourceEndpointArn=shared["SourceEndpointArn"], TargetEndpointArn=shared["TargetEndpointArn"],
        ReplicationInstanceArn=shared["ReplicationInstanceArn"], TableMappings=shared["TableMappings"],
    )["ReplicationTask"]
    yield task
    dms.delete_replication_task(ReplicationTaskArn=task["ReplicationTaskArn"])


def engine(task_arn: str, **kw):
    return engine_for("dms", task_arn=task_arn, dms_client=aws.client("dms"),
                      cloudwatch_client=aws.client("cloudwatch"), poll=0.1, **kw)


def test_start_status_stop_resume(own_task):
    e = engine(own_task["ReplicationTaskArn"])
    first = e.start()
    assert (first.action, first.detail) == ("created", "start-replication")
    status = e.status()
    assert status.running and status.state == "streaming" and status.full_load_done
    # DMS loads into tables made with their indexes: nothing to repair, nothing deferred.
    done = e.finish_full_load()
    assert done.status.full_load_done and done.repaired == () and done.schema_statements == 0
    assert e.finish_full_load(build=False).schema_statements is None
    assert e.start().action == "already-running"
    e.stop()
    e.stop()  # idempotent
    assert e.status().state == "stopped" and not e.status().running
    again = e.start()
    assert (again.action, again.detail) == ("resumed", "resume-processing")
    assert e.status().running


def test_prepare_start_gives_the_start_type_the_dags_start_operator_uses(own_task):
    arn = own_task["ReplicationTaskArn"]
    e = engine(arn)
    first = e.prepare_start()
    assert (first.task_arn, first.task_name, first.start_type) == (
        arn, own_task["ReplicationTaskIdentifier"], "start-replication")
    assert first.to_dict()["start_type"] == "start-replication"
    aws.client("dms").start_replication_task(ReplicationTaskArn=arn,
                                             StartReplicationTaskType=first.start_type)
    assert (e.prepare_start().status, e.prepare_start().start_type) == ("running", None)
    e.stop()
    assert e.prepare_start().start_type == "resume-processing"
    assert engine(arn, reload=True).prepare_start().start_type == "reload-target"


def test_table_statistics_missing_in_moto_degrades_with_a_message(own_task):
    e = engine(own_task["ReplicationTaskArn"])
    started = time.monotonic()
    status = e.status()
    assert time.monotonic() - started < 60
    assert status.tables == {}
    assert "per-table statistics unavailable" in status.detail


def test_lag_none_without_datapoints_then_read_from_cloudwatch(own_task):
    e = engine(own_task["ReplicationTaskArn"])
    lag = e.lag()
    assert lag.seconds is None and "no CDCLatencyTarget datapoints" in lag.reason
    instance = aws.client("dms").describe_replication_instances()["ReplicationInstances"]
    ident = next(i["ReplicationInstanceIdentifier"] for i in instance
                 if i["ReplicationInstanceArn"] == own_task["ReplicationInstanceArn"])
    aws.client("cloudwatch").put_metric_data(Namespace="AWS/DMS", MetricData=[{
        "MetricName": "CDCLatencyTarget", "Value": 3.5, "Unit": "Seconds",
        "Timestamp": dt.datetime.now(dt.UTC),
        "Dimensions": [{"Name": "ReplicationInstanceIdentifier", "Value": ident},
                       {"Name": "ReplicationTaskIdentifier",
                        "Value": own_task["ReplicationTaskArn"].rsplit(":", 1)[1]}]}])
    assert e.lag().seconds == 3.5


def test_preflight_of_the_shared_task_and_a_missing_one(shared_task_arn):
    # Without the servers and slot names the DMS path cannot be checked, and preflight says so.
    [problem] = engine(shared_task_arn).preflight()
    assert "made without forward slot name, reverse slot name, the source endpoint" in problem.reason
    missing = shared_task_arn.rsplit(":", 1)[0] + ":task:does-not-exist"
    [problem] = engine(missing).preflight()
    assert "does not exist" in problem.reason
    with pytest.raises(ReplicationError, match="does not exist"):
        engine(missing).start()


def test_preflight_refuses_unconstrained_numeric_with_a_source(stack, databases, shared_task_arn):
    source_dsn, _ = databases
    dbname = source_dsn.split("dbname=")[1].split()[0]
    import psycopg2

    with psycopg2.connect(source_dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE fx (id int PRIMARY KEY, rate numeric, fee numeric(19,4))")
    conn.close()
    e = engine(shared_task_arn, source=stack.endpoint("source", dbname=dbname))
    [problem] = [p for p in e.preflight() if p.table]
    assert problem.table == "public.fx" and "column rate is NUMERIC without precision" in problem.reason


def test_positions_need_the_endpoints(shared_task_arn):
    e = engine(shared_task_arn)
    with pytest.raises(ReplicationError, match="needs the source endpoint"):
        e.position()
    with pytest.raises(ReplicationError, match="needs the source endpoint"):
        e.catch_up("0/16B3748", timeout=1)
    with pytest.raises(ReplicationError, match="no reverse DMS task"):
        e.prepare_reverse()


def test_dms_validation_without_table_statistics_says_why(own_task):
    # moto's server has no describe_table_statistics (HTTP 500 in moto 5.2.5): the report says so, labelled.
    own = engine(own_task["ReplicationTaskArn"]).own_validation()
    assert own["label"] == "AWS DMS row validation (describe_table_statistics)"
    assert own["tables"] == [] and "describe_table_statistics" in own["note"]


def test_the_local_task_is_given_what_infra_gives_its_task(dms, shared_task_arn):
    (task,) = dms.describe_replication_tasks(
        Filters=[{"Name": "replication-task-arn", "Values": [shared_task_arn]}])["ReplicationTasks"]
    assert json.loads(task["TableMappings"]) == dms_task.table_mappings()
    assert json.loads(task["ReplicationTaskSettings"]) == dms_task.task_settings()
    (source,) = dms.describe_endpoints(Filters=[{"Name": "endpoint-arn",
                                                 "Values": [task["SourceEndpointArn"]]}])["Endpoints"]
    assert source["PostgreSQLSettings"]["FailTasksOnLobTruncation"] is True


def test_preflight_says_what_the_local_dms_path_lacks_before_anything_is_created(stack):
    """The bootstrapped DMS path against the stand-ins: slots and tasks are right, but no
    replication instance ever reached an endpoint (moto moves no rows), and preflight says so,
    per endpoint, and what to use instead; nothing is created on the servers."""
    from paymigrate.migration.platform import ClientPlatform

    platform = ClientPlatform(env=stack.env)
    e = platform.engine(name="dms")
    assert e.slot_names == {"forward": names.dms_slot_name(stack.env),
                            "reverse": names.dms_slot_name(stack.env, "reverse")}
    queries = {side: ("SELECT count(*) FROM pg_replication_slots",
                      "SELECT count(*) FROM pg_tables WHERE schemaname = 'paymigrate'")
               for side in ("source", "target")}
    before = {side: [_count(stack, side, q) for q in qs] for side, qs in queries.items()}
    # The DMS data-plane double of the e2e test (when it ran first in this session) tested some
    # connections; moto has no way to forget them. Each endpoint not tested is named.
    tested = {c["EndpointIdentifier"] for c in e.dms.describe_connections()["Connections"]
              if c.get("Status") == "successful"}
    untested = [(task, ident) for task, ident in (
        ("forward", "source-endpoint"), ("forward", "target-endpoint"),
        ("reverse", "reverse-source-endpoint"), ("reverse", "reverse-target-endpoint"))
        if names.dms_identifier(ident, stack.env) not in tested]
    reasons = [p.reason for p in e.preflight()]
    assert len(reasons) == len(untested), reasons
    for task, ident in untested:
        endpoint = names.dms_identifier(ident, stack.env)
        assert any(r.startswith(f"{task} DMS task") and f"endpoint {endpoint} (127.0.0.1:" in r
                   and "was never tested" in r and "engine=postgres-logical" in r for r in reasons), reasons
    assert {side: [_count(stack, side, q) for q in qs] for side, qs in queries.items()} == before


def _count(stack, side, query):
    with connection(stack.endpoint(side)) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def test_drain_markers_under_concurrent_drains_and_only_their_origin_counts(stack, databases):
    """Drains at once (validation compares tables in parallel) each get a marker at or past
    their position; on the subscriber only a marker of the publisher's origin proves a drain."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg2

    from paymigrate.replication import dms_drain
    from paymigrate.replication.base import lsn_to_int

    source_dsn, target_dsn = databases
    conns = {}
    for side, dsn in (("source", source_dsn), ("target", target_dsn)):
        conns[side] = psycopg2.connect(dsn)
        conns[side].autocommit = True
        with conns[side].cursor() as cur:
            assert dms_drain.ensure_table(cur) is True
            assert dms_drain.ensure_table(cur) is False
    with conns["source"].cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn()::text")
        position = cur.fetchone()[0]

    def drain(_):
        conn = psycopg2.connect(source_dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                return dms_drain.write(cur, position)
        finally:
            conn.close()

    with ThreadPoolExecutor(8) as pool:
        markers = list(pool.map(drain, range(16)))
    assert all(m.pos >= lsn_to_int(position) for m in markers)
    newest = max(markers, key=lambda m: m.pos)
    with conns["target"].cursor() as tcur:
        assert not dms_drain.arrived(tcur, newest)
        # The target's own marker (another origin) proves nothing about the source.
        mine = dms_drain.write(tcur, "0/0")
        assert mine.origin != newest.origin and not dms_drain.arrived(tcur, newest)
        tcur.execute("INSERT INTO paymigrate.drain_marker (origin, pos, lsn) VALUES (%s, %s, %s)",
                     (newest.origin, newest.pos, newest.lsn))
        assert all(dms_drain.arrived(tcur, m) for m in markers)
    for conn in conns.values():
        conn.close()
