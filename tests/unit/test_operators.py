"""Each operator against a fake of our migration service: it calls the right method with the
right arguments (checked against the real method's signature), returns what the service gave,
pushes what it must, and turns the service's refusals into a failure without retries."""

from __future__ import annotations

import inspect
import re
import time
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from paymigrate.cutover.switch import CutoverAborted, SwitchResult
from paymigrate.errors import Refused
from paymigrate.migration.lock import LockState
from paymigrate.migration.service import MigrationService, NewWriterMismatch
from paymigrate.provider import operators as ops

PLAN = {"migration_id": "m1", "engine": "postgres-logical", "tables": [], "exclude": []}


class FakeService:
    """Records each call; answers from ``returns``, or raises from ``raises``. Only methods
    :class:`MigrationService` has, with arguments its signature accepts."""

    def __init__(self, returns: dict[str, Any] | None = None, raises: dict[str, Exception] | None = None):
        self.returns, self.raises = returns or {}, raises or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(MigrationService, name)  # AttributeError for a method the service lacks

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = inspect.signature(real).bind(self, *args, **kwargs)
            self.calls.append((name, {k: v for k, v in bound.arguments.items() if k != "self"}))
            if name in self.raises:
                raise self.raises[name]
            return self.returns.get(name)
        return call


class Ti:
    """The task instance a context carries: XCom in a dict, pushes recorded."""

    def __init__(self, xcom: dict[str, Any] | None = None):
        self.xcom, self.pushed = xcom or {}, {}
        self.dag_id, self.run_id, self.log_url = "dag", "run-1", "http://airflow/log"

    def xcom_pull(self, task_ids: str) -> Any:
        return self.xcom.get(task_ids)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def get_task_states(self, dag_id: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
        return {self.run_id: {"validate": "failed", "preflight": "success"}}


@pytest.fixture
def service(monkeypatch):
    fake = FakeService()
    monkeypatch.setattr(ops.MigrationOperator, "service", lambda self: fake)
    return fake


def _run(op, xcom: dict[str, Any] | None = None) -> tuple[Any, Ti]:
    ti = Ti({"preflight": PLAN, **(xcom or {})})
    return op.execute({"ti": ti, "run_id": "run-1"}), ti


def test_preflight_passes_the_params_and_returns_the_plan(service):
    service.returns["preflight"] = PLAN
    op = ops.PreflightOperator(task_id="preflight", engine_name="dms", tables=["public.a"],
                               exclude=None, dry_run=False, takeover=True)
    assert _run(op)[0] == PLAN
    assert service.calls == [("preflight", {"engine": "dms", "tables": ["public.a"], "exclude": [],
                                            "dry_run": False, "takeover": True, "run_id": "run-1",
                                            "dag_id": op.dag_id})]


def test_preflight_skips_after_a_dry_run_and_fails_a_refusal_without_retry(service):
    op = ops.PreflightOperator(task_id="preflight", engine_name="dms", dry_run=True)
    with pytest.raises(AirflowSkipException, match="dry run"):
        _run(op)
    service.raises["preflight"] = Refused("preflight refused 1 problem(s): public.x: no key")
    with pytest.raises(AirflowFailException, match="public.x: no key"):
        _run(op)


def test_checkpoint_saves_the_included_results_and_moves_the_lock(service):
    service.returns["checkpoint"] = "s3://b/k"
    op = ops.CheckpointOperator(task_id="checkpoint_validation", phase="validation",
                                include=["validate", "decide"], lock_state=LockState.CUTOVER_READY)
    result, _ = _run(op, {"validate": {"status": "match"}, "decide": {"lag": 0}})
    assert result == "s3://b/k"
    assert service.calls == [("checkpoint", {
        "plan": PLAN, "phase": "validation", "results": {"validate": {"status": "match"}, "decide": {"lag": 0}},
        "run_id": "run-1", "lock_state": LockState.CUTOVER_READY})]


def test_an_operator_without_its_plan_fails_naming_the_plan_task(service):
    op = ops.StartReplicationOperator(task_id="start_replication", plan_task="save_rollback_state")
    with pytest.raises(AirflowFailException, match="no plan from the save_rollback_state task"):
        op.execute({"ti": Ti(), "run_id": "run-1"})
    assert service.calls == []


@pytest.mark.parametrize(("operator", "method", "extra"), [
    (ops.StartReplicationOperator, "start_replication", {}),
    (ops.StopReplicationOperator, "stop_replication", {}),
    (ops.ValidateOperator, "validate", {"max_keys": 7}),
])
def test_replication_and_validation_steps_act_on_the_plan(service, operator, method, extra):
    service.returns[method] = {"status": "match", "tables": []}
    op = operator(task_id=method, **({"max_keys": "7"} if extra else {}))
    assert _run(op)[0] == {"status": "match", "tables": []}
    run = {"run_id": "run-1", "dag_id": op.dag_id} if method == "validate" else {}  # its history line
    assert service.calls == [(method, {"plan": PLAN, **extra, **run})]


def test_the_engine_branch_follows_the_plans_engine_and_fails_one_it_has_no_branch_for(service):
    op = ops.EngineBranchOperator(task_id="replication_engine", plan_task="save_rollback_state",
                                  branches={"postgres-logical": "stop_replication",
                                            "dms": "replication_stop_needed"})
    ctx = {"ti": Ti({"save_rollback_state": {**PLAN, "engine": "dms"}}), "run_id": "run-1"}
    assert op.choose_branch(ctx) == "replication_stop_needed"
    ctx["ti"].xcom["save_rollback_state"]["engine"] = "postgres-logical"
    assert op.choose_branch(ctx) == "stop_replication"
    only_dms = ops.EngineBranchOperator(task_id="only_dms", branches={"dms": "x"})
    with pytest.raises(AirflowFailException, match="'postgres-logical' has no branch here"):
        only_dms.choose_branch({"ti": Ti({"preflight": PLAN}), "run_id": "run-1"})
    with pytest.raises(ValueError, match="mysql"):
        ops.EngineBranchOperator(task_id="bad", branches={"mysql": "x"})
    assert service.calls == []


def test_the_dms_task_is_prepared_by_the_service_and_started_only_when_it_does_not_run(service):
    prepared = {"task_arn": "arn:aws:dms:r:1:task:t", "task_name": "t", "status": "stopped",
                "start_type": "resume-processing"}
    service.returns["prepare_replication_task"] = prepared
    assert _run(ops.PrepareReplicationTaskOperator(task_id="prepare_replication_task"))[0] == prepared
    assert service.calls == [("prepare_replication_task", {"plan": PLAN})]
    service.raises["prepare_replication_task"] = Refused("replicates with postgres-logical")
    with pytest.raises(AirflowFailException, match="postgres-logical"):
        _run(ops.PrepareReplicationTaskOperator(task_id="prepare_replication_task"))

    branch = ops.ReplicationTaskStartBranchOperator(
        task_id="replication_start_needed", prepare_task="prepare_replication_task",
        start_task="start_replication_task", running_task="wait_full_load_done")
    ti = Ti({"prepare_replication_task": prepared})
    assert branch.choose_branch({"ti": ti}) == "start_replication_task"
    ti.xcom["prepare_replication_task"] = {**prepared, "status": "running", "start_type": None}
    assert branch.choose_branch({"ti": ti}) == "wait_full_load_done"  # a rerun: never twice
    with pytest.raises(AirflowFailException, match="no result from the prepare_replication_task"):
        branch.choose_branch({"ti": Ti()})


@pytest.mark.parametrize(("action", "branch"), [
    ("stop", "stop_replication_task"), ("wait", "wait_replication_task_stopped"),
    ("none", "route_traffic_to_source")])
def test_the_dms_stop_branch_follows_what_the_task_status_asks(service, action, branch):
    service.returns["replication_task_stop"] = {"task_arn": "arn:t", "status": "?", "action": action}
    op = ops.ReplicationTaskStopBranchOperator(
        task_id="replication_stop_needed", plan_task="save_rollback_state",
        stop_task="stop_replication_task", wait_task="wait_replication_task_stopped",
        done_task="route_traffic_to_source")
    assert op.choose_branch({"ti": Ti({"save_rollback_state": PLAN}), "run_id": "run-1"}) == branch
    assert service.calls == [("replication_task_stop", {"plan": PLAN})]


def test_decide_passes_the_validation_report_and_the_threshold_and_fails_a_refusal(service):
    service.returns["decide"] = {"validation": "match"}
    op = ops.DecideOperator(task_id="decide", lag_threshold="2.5")
    report = {"status": "match", "tables": []}
    assert _run(op, {"validate": report})[0] == {"validation": "match"}
    assert service.calls == [("decide", {"plan": PLAN, "report": report, "lag_threshold": "2.5"})]
    service.raises["decide"] = Refused("replication lag 9.0s is above the threshold 2.5s")
    with pytest.raises(AirflowFailException, match="above the threshold 2.5s"):
        _run(op, {"validate": report})


def test_save_rollback_state_returns_the_saved_plan(service):
    service.returns["save_rollback_state"] = {**PLAN, "saved": "s3://rb/k"}
    assert _run(ops.SaveRollbackStateOperator(task_id="save_rollback_state"))[0]["saved"] == "s3://rb/k"
    assert service.calls == [("save_rollback_state", {"run_id": "run-1"})]


def test_notify_failure_names_the_failed_tasks_and_fails_the_run(service):
    service.returns["fail_run"] = "payment_migration failed at validate; the error-alerts topic was notified"
    op = ops.NotifyFailureOperator(task_id="notify_failure", what="payment_migration")
    with pytest.raises(AirflowFailException, match="failed at validate"):
        _run(op)
    assert service.calls == [("fail_run", {"what": "payment_migration", "run_id": "run-1",
                                           "failed_tasks": ["validate"], "link": "Log: http://airflow/log"})]


def test_switch_back_converts_the_limits_and_fails_an_abort(service):
    service.returns["switch_back"] = {"switched": False}
    op = ops.SwitchBackOperator(task_id="switch_writes_to_source", pause_timeout="4", drain_timeout="30",
                                max_write_pause_ms="2500", plan_task="save_rollback_state")
    assert _run(op, {"save_rollback_state": PLAN})[0] == {"switched": False}
    assert service.calls == [("switch_back", {"plan": PLAN, "max_write_pause": 2.5, "pause_timeout": 4.0,
                                              "drain_timeout": 30.0})]
    aborted = SwitchResult("target->source", 2.5, failed_step="drain_reverse", abort=["resume: ok"])
    service.raises["switch_back"] = CutoverAborted("rollback aborted at drain_reverse", aborted)
    with pytest.raises(AirflowFailException, match="rollback aborted at drain_reverse"):
        _run(op, {"save_rollback_state": PLAN})


@pytest.mark.parametrize(("operator", "method", "args", "answer"), [
    (ops.RouteToSourceOperator, "route_to_source", {"run_id": "run-1"}, {"route": "h:1", "moved": False}),
    (ops.UnfreezeSourceOperator, "unfreeze_source", {}, {"sessions_ended": 0, "fence_left_on": []}),
])
def test_rollback_steps_without_a_plan(service, operator, method, args, answer):
    service.returns[method] = answer
    assert _run(operator(task_id=method))[0] == answer
    assert service.calls == [(method, args)]


def test_cutover_preflight_passes_the_approval_and_fails_a_refusal(service):
    service.returns["cutover_preflight"] = {**PLAN, "approved_by": "ana"}
    op = ops.CutoverPreflightOperator(task_id="preflight_cutover", approved_by="ana",
                                      confirm_environment="test")
    assert _run(op)[0]["approved_by"] == "ana"
    assert service.calls == [("cutover_preflight", {"approved_by": "ana", "confirm_environment": "test",
                                                    "run_id": "run-1"})]
    service.raises["cutover_preflight"] = Refused("migration is not cutover-ready (lock: running)")
    with pytest.raises(AirflowFailException, match="not cutover-ready"):
        _run(op)


def test_shift_read_traffic_passes_typed_steps_and_fails_on_an_alarm(service):
    service.returns["shift_read_traffic"] = [{"percent": 10}]
    op = ops.ShiftReadTrafficOperator(task_id="shift_read_traffic", steps=["50", 10], soak_seconds="0",
                                      lag_threshold=None, plan_task="preflight_cutover")
    assert _run(op, {"preflight_cutover": PLAN})[0] == [{"percent": 10}]
    assert service.calls == [("shift_read_traffic", {"plan": PLAN, "steps": [50, 10], "soak_seconds": 0.0,
                                                     "lag_threshold": None})]
    service.raises["shift_read_traffic"] = Refused("canary at 10%: alarms ['x-test']")
    with pytest.raises(AirflowFailException, match="canary at 10%"):
        _run(op, {"preflight_cutover": PLAN})


def test_write_switch_returns_the_result_and_pushes_an_abort(service):
    done = SwitchResult("source->target", 0.5, steps={"pause": 0.001}, write_pause_seconds=0.02,
                        reverse_position="0/1")
    service.returns["switch_writes"] = done
    op = ops.WriteSwitchOperator(task_id="write_switch", pause_timeout="5", drain_timeout="10",
                                 sequence_gap="1000", max_write_pause_ms="500", drill_fail_at="",
                                 plan_task="preflight_cutover")
    result, _ = _run(op, {"preflight_cutover": PLAN})
    assert result == done.to_dict()
    assert service.calls == [("switch_writes", {"plan": PLAN, "run_id": "run-1", "max_write_pause": 0.5,
                                                "pause_timeout": 5.0, "drain_timeout": 10.0,
                                                "sequence_gap": 1000, "fail_at": None})]
    aborted = SwitchResult("source->target", 0.5, failed_step="check_tables", abort=["resume: ok"])
    service.raises["switch_writes"] = CutoverAborted("cutover aborted at check_tables", aborted)
    with pytest.raises(AirflowFailException, match="aborted at check_tables"):
        _run(op, {"preflight_cutover": PLAN})


def test_write_switch_abort_is_pushed_for_the_notification(service):
    aborted = SwitchResult("source->target", 0.5, failed_step="drain", budget_exceeded=True)
    service.raises["switch_writes"] = CutoverAborted("cutover aborted at drain", aborted)
    op = ops.WriteSwitchOperator(task_id="write_switch", plan_task="preflight")
    ti = Ti({"preflight": PLAN})
    with pytest.raises(AirflowFailException):
        op.execute({"ti": ti, "run_id": "run-1"})
    assert ti.pushed["aborted"]["failed_step"] == "drain" and ti.pushed["aborted"]["budget_exceeded"]


def test_attach_reverse_starts_from_the_switch_position(service):
    service.returns["attach_reverse"] = {"action": "created"}
    op = ops.AttachReverseOperator(task_id="attach_reverse", plan_task="preflight_cutover")
    result, _ = _run(op, {"preflight_cutover": PLAN, "write_switch": {"reverse_position": "0/AB"}})
    assert result == {"action": "created"}
    assert service.calls == [("attach_reverse", {"plan": PLAN, "from_position": "0/AB"})]


def test_validate_new_writer_returns_a_match_and_pushes_a_mismatch(service):
    service.returns["validate_new_writer"] = {"status": "match", "tables": [{}]}
    op = ops.ValidateNewWriterOperator(task_id="validate_new_writer", max_keys="5")
    assert _run(op)[0]["status"] == "match"
    assert service.calls == [("validate_new_writer", {"plan": PLAN, "max_keys": 5, "run_id": "run-1"})]
    report = {"status": "mismatch", "tables": [{"table": "public.a"}]}
    service.raises["validate_new_writer"] = NewWriterMismatch("Post-cutover validation mismatch", report)
    ti = Ti({"preflight": PLAN})
    with pytest.raises(AirflowFailException, match="Post-cutover validation mismatch"):
        op.execute({"ti": ti, "run_id": "run-1"})
    assert ti.pushed["report"] == report


def test_the_fake_refuses_a_method_or_an_argument_the_service_lacks():
    fake = FakeService()
    with pytest.raises(AttributeError):
        fake.no_such_step()
    with pytest.raises(TypeError):
        fake.validate(PLAN, max_key=3)


def test_the_lag_wait_logs_the_wal_drained_with_an_eta(monkeypatch, capfd):
    import asyncio

    from paymigrate.provider import sensors

    polls = iter([(False, 40_000_000), (False, 30_000_000), (True, 100)])

    def check(**kw):
        ok, lag = next(polls)
        return ok, {"lag": {"bytes": lag, "seconds": 2.0}}

    monkeypatch.setattr(sensors, "check", check)
    trigger = sensors.ReplicationTrigger(condition="lag_below", engine="x", tables=None, exclude=None,
                                         aws_conn_id="aws", env="unit", poll_interval=0.05,
                                         lag_threshold=1.0, migration_id="m")

    async def first_event():
        async for event in trigger.run():
            return event

    assert asyncio.run(first_event()).payload["status"] == "done"
    out = capfd.readouterr()
    drained = [line for line in (out.out + out.err).splitlines() if "WAL drained" in line]
    assert len(drained) == 2, drained
    assert "WAL drained 0.0 of ~40.0 MB" in drained[0] and "ETA unknown" in drained[0]
    assert "WAL drained 10.0 of ~40.0 MB" in drained[1] and re.search(r"ETA \d+ s", drained[1]), drained


def test_the_trigger_waits_a_poll_before_its_first_check(monkeypatch):
    # The sensor checked just before deferring; a trigger that fires at once can resume the
    # task before the scheduler has seen the deferring try end (apache/airflow#72716).
    import asyncio

    from paymigrate.provider import sensors

    calls: list[float] = []

    def check(**kw):
        calls.append(time.monotonic())
        return True, {}

    monkeypatch.setattr(sensors, "check", check)
    trigger = sensors.ReplicationTrigger(condition="stopped", engine="x", tables=None, exclude=None,
                                         aws_conn_id="aws", env="unit", poll_interval=0.3)

    async def first_event():
        async for event in trigger.run():
            return event

    started = time.monotonic()
    assert asyncio.run(first_event()).payload == {"status": "done", "seen": {}, "polls": 1}
    assert calls[0] - started >= 0.3


@pytest.mark.parametrize("error_type", ["timeout", "unknown"])
def test_an_approval_without_a_usable_answer_fails_without_a_retry(error_type):
    # The approval has a retry for Airflow's "state mismatch"; a timeout asked again would only
    # wait as long again.
    from paymigrate.provider.approval import CutoverApprovalOperator

    op = CutoverApprovalOperator(task_id="approve_cutover", plan_task="p", canary_task="c", retries=1)
    with pytest.raises(AirflowFailException, match="no usable answer"):
        op.execute_complete(context={}, event={"error": "no response", "error_type": error_type})
