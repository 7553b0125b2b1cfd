"""The DAGs for real: dag.test() against the local PostgreSQL servers, PgBouncer and moto.

The tests run in file order and share one migration story on the stack's `payments` database:
refusals first, then a migration under live writes, a failure in the middle and its resume,
a rollback before cutover, a migration again, a cutover drill that aborts, the cutover, and the
rollback after it; the workload's own ledger is checked against the writer after each switch.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from airflow.sdk.exceptions import ParamValidationError

from paymigrate.aws import contract, names, statemachines
from paymigrate.aws.checkpoints import CheckpointStore
from paymigrate.cutover.read_canary import cloudwatch_publisher
from paymigrate.db import connection
from paymigrate.errors import Refused
from paymigrate.migration.platform import ClientPlatform
from paymigrate.migration.service import MigrationService
from paymigrate.provider import defaults
from paymigrate.provider.operators import ValidateOperator
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.local.dagrun import run_in_process
from paymigrate_dev.local.demo import reset
from paymigrate_dev.local.stack import READ_ONLY_USER, ROUTERS
from paymigrate_dev.workload import Workload, report
from paymigrate_dev.workload.reads import ReadSplit, contract_share

pytestmark = pytest.mark.e2e

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def story(stack, airflow, tmp_path_factory):
    """A seeded source, an empty target, the contract at its defaults; put back empty after."""
    defaults.DEFAULT_ARGS["retries"] = 0  # a failure should fail now, not after back-off
    reset(stack)
    seed(dsn=stack.dsn("source"), rows=2000, seed=3, replace=True)
    state = {"workload_dir": tmp_path_factory.mktemp("workload"), "outputs": []}
    ps = ProcessList()
    ps.start()
    state["ps"] = ps.lines
    yield state
    ps.stop.set()
    defaults.DEFAULT_ARGS["retries"] = 2
    reset(stack)
    with connection(stack.endpoint("source", dbname="postgres"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS payments WITH (FORCE)")
        cur.execute("CREATE DATABASE payments")


class ProcessList(threading.Thread):
    """Every command line seen on the machine while the story runs (``ps`` twice a second)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.lines = threading.Event(), set()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            out = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout
            self.lines.update(out.splitlines())


def _run(story, capfd, dag_id, conf):
    result = run_in_process(dag_id, conf)
    out = capfd.readouterr()
    story["outputs"].append(out.out + out.err)
    return result


def _errors(story) -> str:
    """The error lines of the last run's output, for a failure message."""
    lines = story["outputs"][-1].splitlines()
    return "\n".join(line[:600] for line in lines if "rror" in line or "xception" in line)[-4000:]


def _states(result):
    return {t["task_id"]: t["state"] for t in result.tasks}


def _store(stack):
    cfg = contract.read(stack.client("ssm"), stack.env)
    return CheckpointStore(s3=stack.client("s3"), bucket=cfg["storage/checkpoints-bucket"], env=stack.env)


def _count(dsn, query):
    with connection(dsn) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def _subscriptions(stack):
    return _count(stack.dsn("target"), "SELECT count(*) FROM pg_subscription")


def _slots(stack):
    return _count(stack.dsn("source"), "SELECT count(*) FROM pg_replication_slots")


def _writer_ports(stack):
    """The server each router sends the application to: one port when they all agree."""
    return {_count(dsn, "SELECT inet_server_port()") for dsn in stack.app_dsns()}


def _workload(stack, story, tps=40, clients=2, reads=None):
    """The workload with its clients spread over both routers."""
    return Workload(dsn=stack.app_dsns(), directory=story["workload_dir"], clients=clients, tps=tps,
                    seed=5, reads=reads).start()


def _read_split(stack, refresh=1.0):
    """The application's read canary: the contract's share of its reads through each router's
    read-only route (to the target), figures to CloudWatch every ``refresh`` seconds."""
    return ReadSplit(target_dsns=stack.read_only_dsns(),
                     share=contract_share(stack.client("ssm"), stack.env), refresh=refresh,
                     publish=cloudwatch_publisher(stack.client("cloudwatch"), stack.env))


def test_dagbag_has_no_import_errors_and_does_no_io_at_import(airflow, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    def refuse(*args, **kwargs):
        raise AssertionError("a DAG file opened a network connection while being parsed")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert {"payment_migration", "payment_cutover", "payment_rollback", "payment_validation"} <= set(bag.dag_ids)
    for stat in bag.dagbag_stats:
        assert stat.duration.total_seconds() < 1.0, f"{stat.file} took {stat.duration} to parse"


def test_state_machines_and_dags_share_state_names(airflow):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    for dag_id, states in statemachines.MIRRORS_DAG_TASK.items():
        tasks = set(bag.get_dag(dag_id).task_ids)
        mirrored = {s for s, mirrors in states.items() if mirrors}
        assert mirrored <= tasks, f"{dag_id} lacks tasks for states {sorted(mirrored - tasks)}"


@pytest.mark.parametrize(("conf", "named"), [
    ({"tables": ["payments; DROP TABLE x"]}, "tables"),
    ({"engine": "mysql"}, "engine"),
    ({"lag_threshold_seconds": -1}, "lag_threshold_seconds"),
    ({"max_keys": 0}, "max_keys"),
])
def test_a_bad_param_is_refused_by_name_with_nothing_created(stack, story, conf, named):
    bucket = names.bucket_name("checkpoints", stack.env)
    saved = stack.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    with pytest.raises(ParamValidationError, match=named):
        run_in_process("payment_migration", conf)
    assert _subscriptions(stack) == 0 and _slots(stack) == 0
    assert _store(stack).lock() is None
    listed = stack.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [(o["Key"], o["ETag"]) for o in listed] == [(o["Key"], o["ETag"]) for o in saved]


def test_an_unknown_table_is_refused_by_preflight_with_nothing_created(stack, story, capfd):
    result = _run(story, capfd, "payment_migration", {"tables": ["public.no_such_table"]})
    assert result.state == "failed"
    assert _states(result)["preflight"] == "failed"
    assert "no_such_table" in story["outputs"][-1]
    assert _subscriptions(stack) == 0 and _slots(stack) == 0 and _store(stack).lock() is None


def test_migration_fails_in_the_middle_notifies_and_resumes(stack, story, capfd, monkeypatch):
    alerts = stack.client("sqs").create_queue(QueueName="test-error-alerts")["QueueUrl"]
    arn = stack.client("sqs").get_queue_attributes(QueueUrl=alerts, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    topic = contract.read(stack.client("ssm"), stack.env)["notifications/error-alerts-topic-arn"]
    stack.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    original = ValidateOperator.execute

    def target_dies(self, context):
        stack.cluster("target").stop(mode="immediate")
        return original(self, context)

    monkeypatch.setattr(ValidateOperator, "execute", target_dies)
    failed = _run(story, capfd, "payment_migration", {"engine": "postgres-logical"})
    monkeypatch.setattr(ValidateOperator, "execute", original)
    states = _states(failed)
    assert failed.state == "failed"
    assert states["start_replication"] == "success" and states["validate"] == "failed"
    assert states["notify_failure"] == "failed"  # it alerts, then fails the run like the Fail state
    assert _store(stack).lock().state == "failed"
    messages = stack.client("sqs").receive_message(QueueUrl=alerts, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"])["Message"] for m in messages]
    assert any("payment_migration run" in b and "failed" in b and "validate" in b for b in bodies), bodies
    # The slot the failed run left keeps WAL on the source: the alert names it, how much, and
    # how to drop it (the target is down, so its side is said to be unknown).
    slot = names.replication_name(stack.env)
    named = [b for b in bodies if f"slot {slot} on the source retains " in b]
    assert named and all(f"SELECT pg_drop_replication_slot('{slot}');" in b and "Not reachable" in b
                         for b in named), bodies
    retained = int(named[0].split(f"slot {slot} on the source retains ")[1].split(" bytes")[0])
    assert retained > 0

    stack.cluster("target").start()
    work = _workload(stack, story)
    try:
        resumed = _run(story, capfd, "payment_migration", {"engine": "postgres-logical"})
    finally:
        work.stop()
    assert resumed.ok, _errors(story)
    states = _states(resumed)
    assert [states[t] for t in ("replication_engine", "start_replication", "wait_replication_running",
                                "prepare_replication_task", "start_replication_task", "wait_full_load_done")] == [
        "success", "success", "success", "skipped", "skipped", "skipped"], states
    plan = resumed.xcom["preflight"]
    assert plan["resumed"] is True and plan["migration_id"] == failed.run_id
    assert "replication" in plan["done_phases"]
    assert resumed.xcom["validate"]["status"] == "match"
    assert _subscriptions(stack) == 1
    assert _store(stack).lock().state == "cutover-ready"


def test_a_second_migration_while_one_is_active_is_refused_naming_it(stack, story, capfd):
    store = _store(stack)
    store.set_state("running", run_id="manual__someone_else")
    try:
        result = _run(story, capfd, "payment_migration", {"engine": "postgres-logical"})
    finally:
        store.set_state("cutover-ready")
    assert result.state == "failed"
    assert "manual__someone_else" in story["outputs"][-1]
    assert store.lock().run_id == "manual__someone_else"  # the refused run did not take the lock
    assert _subscriptions(stack) == 1


def test_scheduled_validation_publishes_metrics_alerts_and_skips_when_off(stack, story, capfd):
    alerts = stack.client("sqs").create_queue(QueueName="test-validation-alerts")["QueueUrl"]
    arn = stack.client("sqs").get_queue_attributes(QueueUrl=alerts, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    ssm = stack.client("ssm")
    topic = contract.read(ssm, stack.env)["notifications/validation-alerts-topic-arn"]
    stack.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    clean = _run(story, capfd, "payment_validation", {"force": True})
    assert clean.ok, _errors(story)
    assert clean.xcom["alert_on_discrepancy"] == "match"
    assert clean.xcom["publish_metrics"]["tables"] == len(clean.xcom["list_tables"]) == 7
    mapped = [t for t in clean.tasks if t["task_id"] == "validate_table"]
    assert len(mapped) == 7 and all(t["map_index"] >= 0 for t in mapped)
    metrics = stack.client("cloudwatch").list_metrics(Namespace="Migration/DataValidation")["Metrics"]
    assert {"RowsChecked", "Mismatches"} <= {m["MetricName"] for m in metrics}
    slot = names.replication_name(stack.env)
    assert clean.xcom["publish_metrics"]["retained_wal_bytes"] is not None  # the forward slot, read
    retained = stack.client("cloudwatch").list_metrics(Namespace="Migration/Replication",
                                                       MetricName="ReplicationSlotRetainedWalBytes")
    assert {"Environment": stack.env, "Slot": slot} in [
        {d["Name"]: d["Value"] for d in m["Dimensions"]} for m in retained["Metrics"]]

    changed = "UPDATE refunds SET amount = amount + %s WHERE id = (SELECT id FROM refunds ORDER BY id LIMIT 1) RETURNING id"
    with connection(stack.dsn("target")) as conn, conn.cursor() as cur:
        cur.execute(changed, (1,))  # a row the target got wrong: replication will not mend it
        gone = str(cur.fetchone()[0])
    try:
        dirty = _run(story, capfd, "payment_validation", {"force": True})
    finally:
        with connection(stack.dsn("target")) as conn, conn.cursor() as cur:
            cur.execute(changed, (-1,))
    assert dirty.ok, _errors(story)
    assert dirty.xcom["alert_on_discrepancy"] == "mismatch"
    bodies = [json.loads(m["Body"])["Message"] for m in
              stack.client("sqs").receive_message(QueueUrl=alerts, MaxNumberOfMessages=10)["Messages"]]
    assert any("public.refunds" in b and gone in b for b in bodies), bodies

    contract.write(ssm, "workflow/enable-validation", False, stack.env)
    try:
        off = _run(story, capfd, "payment_validation", {"force": True})
    finally:
        contract.write(ssm, "workflow/enable-validation", True, stack.env)
    assert off.ok and _states(off)["check_due"] == "success"
    assert all(t["state"] == "skipped" for t in off.tasks if t["task_id"] != "check_due")


def test_rollback_after_migration_leaves_source_writable_and_replication_stopped(stack, story, capfd):
    result = _run(story, capfd, "payment_rollback", {"reason": "test: before cutover"})
    assert result.ok, _errors(story)
    states = _states(result)
    assert [states[t] for t in ("stop_replication", "wait_replication_stopped", "replication_stop_needed",
                                "stop_replication_task", "wait_replication_task_stopped")] == [
        "success", "success", "skipped", "skipped", "skipped"], states
    plan = result.xcom["save_rollback_state"]  # the migration's own engine and scope, saved first
    assert plan["engine"] == "postgres-logical" and plan["migration_id"] == _store(stack).lock().migration_id
    assert plan["saved"].startswith(f"s3://{names.bucket_name('rollback', stack.env)}/")
    assert result.xcom["switch_writes_to_source"] == {"switched": False}
    assert _count(stack.dsn("target"), "SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL") == 0
    assert _count(stack.dsn("target"), "SELECT count(*) FILTER (WHERE subenabled) FROM pg_subscription") == 0
    assert _writer_ports(stack) == {stack.port("source")}
    with connection(stack.dsn("router")) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('transaction_read_only')")
        assert cur.fetchone()[0] == "off"
    assert _store(stack).lock().state == "rolled-back"


def test_cutover_drill_aborts_back_to_the_source_with_nothing_lost(stack, story, capfd, answerer):
    migrated = _run(story, capfd, "payment_migration", {"engine": "postgres-logical"})
    assert migrated.ok, _errors(story)
    work = _workload(stack, story)
    try:
        drill = _run(story, capfd, "payment_cutover", {
            "approved_by": "pytest", "confirm_environment": stack.env, "canary_soak_seconds": 0,
            "drill_fail_at": "check_tables"})
        time.sleep(1)
    finally:
        work.stop()
    assert drill.state == "failed" and _states(drill)["write_switch"] == "failed"
    assert _writer_ports(stack) == {stack.port("source")}
    assert contract.read(stack.client("ssm"), stack.env)["database/active-writer"] == "source"
    assert _store(stack).lock().state == "cutover-ready"
    r = report(directory=story["workload_dir"], against_dsn=stack.dsn("source"))
    assert (r.lost, r.duplicated, r.invariants_ok) == (0, 0, True), r.to_dict()
    drills = _store(stack).get_doc("cutover-drills.json")["drills"]
    assert drills[-1]["run_id"] == drill.run_id and drills[-1]["failed_step"] == "check_tables"


def test_cutover_rejected_through_the_api_ends_with_the_source_the_writer(stack, story, capfd, answerer):
    answerer.option = "Reject"
    try:
        rejected = _run(story, capfd, "payment_cutover", {
            "approved_by": "pytest", "confirm_environment": stack.env, "canary_soak_seconds": 0})
    finally:
        answerer.option = "Approve"
    states = _states(rejected)
    assert states["approve_cutover"] == "success", _errors(story)
    assert all(states[t] == "skipped" for t in ("write_switch", "attach_reverse", "checkpoint_cutover",
                                                  "notify_failure")), states
    answer = rejected.xcom["approve_cutover"]
    assert answer["approved"] is False and answer["by"] == "admin" and answer["at"], answer
    assert [a["run_id"] for a in answerer.answers if a["chosen"] == ["Reject"]] == [rejected.run_id]
    cfg = contract.read(stack.client("ssm"), stack.env)
    assert cfg["database/active-writer"] == "source" and cfg["workflow/traffic-split-percentage"] == 0
    assert _writer_ports(stack) == {stack.port("source")}
    assert _store(stack).lock().state == "cutover-ready"
    assert _subscriptions(stack) == 1
    assert _count(stack.dsn("target"), "SELECT count(*) FROM pg_replication_slots") == 0
    with connection(stack.dsn("router")) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('transaction_read_only')")
        assert cur.fetchone()[0] == "off"


def test_a_canary_whose_reads_fail_on_the_target_moves_them_back_and_never_moves_writes(
        stack, story, capfd):
    """The read-only role loses its read rights on the target: the application's reads through
    the read-only route fail, the canary gate sees their error rate in CloudWatch, puts the share
    back to 0 and fails. (A table grant the application holds on the source, revoked on the
    target, never gets this far: preflight_cutover's schema parity refuses it by name.)"""
    revoke = f"REVOKE pg_read_all_data FROM {READ_ONLY_USER}"
    with connection(stack.dsn("target"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(revoke)
    reads = _read_split(stack)
    work = _workload(stack, story, tps=100, clients=4, reads=reads)
    try:
        run = _run(story, capfd, "payment_cutover", {
            "approved_by": "pytest", "confirm_environment": stack.env, "canary_soak_seconds": 3})
    finally:
        stats = work.stop()
        with connection(stack.dsn("target"), autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(revoke.replace("REVOKE", "GRANT").replace(" FROM ", " TO "))
    states = _states(run)
    assert states["shift_read_traffic"] == "failed" and states["write_switch"] != "success", (states, _errors(story))
    assert "error rate 100.0%" in _errors(story) and "is over 5.0%" in _errors(story), _errors(story)
    cfg = contract.read(stack.client("ssm"), stack.env)
    assert cfg["workflow/traffic-split-percentage"] == 0 and cfg["database/active-writer"] == "source"
    assert reads.percent == 0  # the application followed the share back
    assert _writer_ports(stack) == {stack.port("source")}
    assert _store(stack).lock().state == "cutover-ready"
    target, writer = stats.read_routes["target"], stats.read_routes["writer"]
    assert target["errors"] > 0 and target["reads"] == 0 and "permission denied" in target["last_error"]
    assert writer["reads"] > 0 and writer["errors"] == 0
    r = report(directory=story["workload_dir"], against_dsn=stack.dsn("source"))
    assert (r.lost, r.duplicated, r.invariants_ok) == (0, 0, True), r.to_dict()


def test_a_canary_step_whose_reads_are_slow_on_the_target_fails_naming_the_p99(stack, story):
    """The same gate on the latency: once reads go to the target, a lock on its payments holds
    them for a second; the step (the service's, as the task calls it: the DAG run above showed
    the task) fails naming the p99 and its limit, and the share is back to 0."""
    platform = ClientPlatform(env=stack.env)
    service = MigrationService(platform)
    plan = service.migration_plan(platform.checkpoints())
    reads = _read_split(stack, refresh=0.5)  # the held reads are published well within the soak
    work = _workload(stack, story, tps=100, clients=4, reads=reads)
    stop = threading.Event()

    def hold_reads():
        while not stop.wait(0.05):
            if reads.percent > 0:
                with connection(stack.dsn("target")) as conn, conn.cursor() as cur:
                    cur.execute("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
                    time.sleep(1.0)
                return

    holder = threading.Thread(target=hold_reads, daemon=True)
    holder.start()
    try:
        with pytest.raises(Refused) as refused:
            seen = service.shift_read_traffic(plan.to_dict(), steps=[10], soak_seconds=3)
            pytest.fail(f"the step passed: {seen}")
    finally:
        stop.set()
        holder.join()
        stats = work.stop()
    limit = contract.read(stack.client("ssm"), stack.env)["workflow/canary-max-p99-ms"]
    assert re.search(rf"canary at 10%: .*p99 latency \d+ ms is over {limit:.0f} ms", str(refused.value)), refused.value
    assert "error rate" not in str(refused.value) and str(refused.value).endswith("reads are all back on the source")
    assert platform.config["workflow/traffic-split-percentage"] == 0
    assert stats.read_routes["target"]["errors"] == 0 and stats.read_routes["target"]["p99_ms"] > limit
    assert _writer_ports(stack) == {stack.port("source")}


def test_cutover_then_rollback_under_live_writes_lose_nothing(stack, story, capfd, answerer):
    work = _workload(stack, story, tps=200, clients=4)
    try:
        cut = _run(story, capfd, "payment_cutover", {
            "approved_by": "pytest", "confirm_environment": stack.env, "canary_soak_seconds": 0})
        time.sleep(2)
    finally:
        work.stop()
    assert cut.ok, _errors(story)
    assert _writer_ports(stack) == {stack.port("target")}
    switched = cut.xcom["write_switch"]
    assert switched["write_pause_seconds"] < 5 and switched["fenced"] and switched["tables"] == 7
    assert switched["routers"] == list(ROUTERS) and set(switched["pause_per_router"]) == set(ROUTERS)
    assert (switched["unresumed"], switched["unconfirmed"]) == ([], [])
    assert cut.xcom["attach_reverse"]["action"] == "created"
    approved = cut.xcom["approve_cutover"]
    assert approved["approved"] is True and approved["by"] == "admin" and approved["at"], approved
    figures = approved["figures"]
    assert figures["lag_seconds"] is not None and figures["validation"]["status"] == "match"
    assert [s["percent"] for s in figures["canary"]] == [10, 50, 100]
    assert figures["expected_pause_ms"] is not None  # the drill above was recorded
    saved = _store(stack).load(migration_id=cut.xcom["preflight_cutover"]["migration_id"], phase="cutover")
    assert (saved["approve_cutover"]["by"], saved["approve_cutover"]["at"]) == ("admin", approved["at"])
    # The content proof after RESUME: the new writer against the old one, under the workload.
    after = cut.xcom["validate_new_writer"]
    assert after["status"] == "match" and len(after["tables"]) == 7, after
    on_target = report(directory=story["workload_dir"], against_dsn=stack.dsn("target"))
    assert (on_target.lost, on_target.duplicated, on_target.invariants_ok) == (0, 0, True), on_target.to_dict()

    _a_row_changed_behind_replication_is_reported_by_key(stack)

    work = _workload(stack, story, tps=200, clients=4)  # writes made on the target must come back
    try:
        time.sleep(2)
        back = _run(story, capfd, "payment_rollback", {"reason": "test: after cutover"})
        time.sleep(1)
    finally:
        work.stop()
    assert back.ok, _errors(story)
    assert back.xcom["switch_writes_to_source"]["switched"] is True
    assert back.xcom["switch_writes_to_source"]["routers"] == list(ROUTERS)
    assert _writer_ports(stack) == {stack.port("source")}
    on_source = report(directory=story["workload_dir"], against_dsn=stack.dsn("source"))
    assert on_source.committed > on_target.committed
    assert (on_source.lost, on_source.duplicated, on_source.invariants_ok) == (0, 0, True), on_source.to_dict()


def _a_row_changed_behind_replication_is_reported_by_key(stack):
    """A superuser writes on the fenced old writer as replication does (the one way past the
    fence): the post-switch validation names the key, and the alert says how to roll back."""
    from paymigrate.cutover.after_switch import mismatch_alert, validate_new_writer
    from paymigrate.replication import engine_for

    source, target = stack.endpoint("source"), stack.endpoint("target")
    engine = engine_for("postgres-logical", source=source, target=target,
                        name=names.replication_name(stack.env))
    tamper = ("BEGIN READ WRITE; SET LOCAL session_replication_role = replica; "
              "UPDATE accounts SET name = {} WHERE id = (SELECT min(id) FROM accounts); COMMIT")
    key = _count(stack.dsn("source"), "SELECT min(id) FROM accounts")
    original = _count(stack.dsn("source"), "SELECT name FROM accounts ORDER BY id LIMIT 1")
    with connection(source, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(tamper.format("name || ' (changed behind replication)'"))
    try:
        report = validate_new_writer(new_writer=target, old_writer=source, engine=engine,
                                     catch_up_timeout=10).to_dict()
    finally:
        with connection(source, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(tamper.format("%s"), (original,))
    assert report["status"] == "mismatch"
    [accounts] = [t for t in report["tables"] if t["status"] != "match"]
    assert accounts["table"] == "public.accounts" and accounts["different"] == [key], accounts
    subject, message = mismatch_alert(report, env=stack.env, run_id="test")
    assert "public.accounts" in subject and f"different 1 [{key}]" in message
    assert "payment_rollback" in message


# A SQLite database's write-ahead log and shared memory: read through the database itself.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _file_text(path: Path) -> str:
    """A file's text; a SQLite database's as the SQL that rebuilds it, read through SQLite.
    Opening and closing the file itself would drop this process's POSIX locks on it, and an
    api-server closing its last connection would then delete the WAL that dag.test() still
    writes (seen: the next DAG run's approval was never seen by the api-server)."""
    if path.suffix == ".db":
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return "\n".join(db.iterdump())
    return path.read_bytes().decode(errors="replace")


def test_no_secret_in_logs_xcom_or_checkpoints(stack, story, airflow):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    secrets = [v for v in stack.secrets().values() if v]
    texts = {"task output": "\n".join(story["outputs"]), "ps during the runs": "\n".join(story["ps"])}
    assert len(story["ps"]) > 20 and any("postgres" in line for line in story["ps"])
    # Every file the stack, its servers' logs, PgBouncer, moto, the workload and Airflow wrote
    # (its metadata DB included: XComs, rendered templates, run confs), except the two 0600
    # files that exist to hold the secrets. The servers' data directories hold the subscription's
    # connection string by design (pg_subscription) and are not searched.
    data_root = Path(stack.data_root())
    # The route agents' key files hold the router-admin password, as the agent on a host reads it.
    holders = {stack.secrets_file, stack.passfile, *(stack.agent(n).key_file for n in ROUTERS)}
    clusters = (data_root / "source", data_root / "target")
    files = {p for root in (stack.home, data_root / "logs", *(data_root / n for n in ROUTERS), airflow,
                            story["workload_dir"])
             for p in Path(root).rglob("*")
             if p.is_file() and p not in holders and not any(p.is_relative_to(c) for c in clusters)
             and not p.name.endswith(SQLITE_SIDE_FILES)}
    assert any(p.name == "pgbouncer.log" for p in files) and any(p.suffix == ".db" for p in files)
    for path in files:
        texts[str(path)] = _file_text(path)
    ssm = stack.client("ssm")
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path="/", Recursive=True):
        for p in page["Parameters"]:
            if p["Type"] != "SecureString":  # the store secrets belong in
                texts[f"ssm:{p['Name']}"] = p["Value"]
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(XComModel).where(XComModel.dag_id.like("payment_%"))).all()
        texts["xcom"] = "\n".join(json.dumps(XComModel.deserialize_value(x), default=str) for x in rows)
    s3 = stack.client("s3")
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for obj in s3.list_object_versions(Bucket=bucket).get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"], VersionId=obj["VersionId"])["Body"].read()
            texts[f"s3://{bucket}/{obj['Key']}"] = body.decode()
    assert len(texts["xcom"]) > 1000 and len(texts) > 40  # the runs really left something to search
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret is in {where}"


def test_the_aws_state_machines_run_from_airflow(stack, story, capfd):
    import requests

    dms = stack.client("dms")
    task = contract.read(stack.client("ssm"), stack.env)["replication/dms-task-arn"]
    # moto leaves a new task "creating" for ever; started then stopped it is resumable, the
    # state a real task is in when a migration is rerun.
    dms.start_replication_task(ReplicationTaskArn=task, StartReplicationTaskType="start-replication")
    dms.stop_replication_task(ReplicationTaskArn=task)
    # moto's Lambda runs no code without Docker: queue the validation function's answer.
    requests.post(f"{stack.moto_url}/moto-api/static/lambda-simple/response", timeout=10, json={
        "results": [json.dumps({statemachines.VALIDATION_OK_FIELD: True, "status": "match"})],
        "region": stack.env_vars()["AWS_DEFAULT_REGION"]}).raise_for_status()
    # The machines drive the DMS task: the contract's engine is dms, as infra deploys it.
    ssm = stack.client("ssm")
    engine = contract.read(ssm, stack.env)["workflow/replication-engine"]
    contract.write(ssm, "workflow/replication-engine", "dms", stack.env)
    try:
        for workflow, last_state in (("migration", "cutover_ready"), ("rollback", "rollback_done")):
            result = _run(story, capfd, "payment_step_functions", {"workflow": workflow, "timeout_minutes": 5})
            assert result.ok, _errors(story)
            execution = result.xcom["start_state_machine"]
            history = stack.client("stepfunctions").get_execution_history(executionArn=execution)["events"]
            entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
            assert entered[-1] == last_state, entered
            assert "replication_engine" in entered, entered
    finally:
        contract.write(ssm, "workflow/replication-engine", engine, stack.env)
    assert dms.describe_replication_tasks(Filters=[{"Name": "replication-task-arn", "Values": [task]}])[
        "ReplicationTasks"][0]["Status"] == "stopped"
