"""State machine definitions: structure (pure) and real executions in moto's Step Functions."""

from __future__ import annotations

import copy
import json
import os
import time
import uuid

import boto3
import dms_objects
import pytest
import requests

from paymigrate.aws import statemachines as sm

ARNS = dict(status_topic_arn="arn:aws:sns:eu-west-1:123456789012:s",
            error_topic_arn="arn:aws:sns:eu-west-1:123456789012:e",
            dms_task_arn="arn:aws:dms:eu-west-1:123456789012:task:t",
            engine_parameter="/migration/t/workflow/replication-engine")


def migration(**kw):
    return sm.migration_definition(checkpoints_bucket="cp", validation_function_arn="arn:fn",
                                   **ARNS, **kw)


def rollback(**kw):
    return sm.rollback_definition(rollback_bucket="rb", steps_function_arn="arn:steps",
                                  active_writer_parameter="/migration/t/database/active-writer",
                                  **ARNS, **kw)


def test_definitions_are_structurally_sound_with_the_dag_task_ids():
    for definition, states, helpers in (
        (migration(), sm.MIGRATION_STATES, sm.MIGRATION_HELPER_STATES),
        (rollback(), sm.ROLLBACK_STATES, sm.ROLLBACK_HELPER_STATES),
    ):
        assert sm.structural_problems(definition) == []
        assert set(definition["States"]) == set(states) | set(helpers)
    assert set(sm.MIRRORS_DAG_TASK["payment_migration"]) == (
        set(sm.MIGRATION_STATES) | set(sm.MIGRATION_HELPER_STATES))
    assert sm.MIRRORS_DAG_TASK["payment_migration"]["validate"] is True
    assert sm.MIRRORS_DAG_TASK["payment_rollback"]["count_stopped_polls"] is False


def test_sdk_service_name_is_a_parameter():
    for definition in (migration(sdk_service="dms"), rollback(sdk_service="dms")):
        resources = {s.get("Resource", "") for s in definition["States"].values()}
        assert not any("databasemigration" in r for r in resources)
        assert any(r.startswith("arn:aws:states:::aws-sdk:dms:") for r in resources)
    assert any("aws-sdk:databasemigration:startReplicationTask" in s.get("Resource", "")
               for s in migration()["States"].values())


def test_every_task_retries_and_catches_to_the_failure_path():
    for definition in (migration(), rollback()):
        for name, state in definition["States"].items():
            if state["Type"] == "Task":
                assert "Retry" in state, name
                assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"]
                assert state["Catch"][0]["Next"] in ("notify_failure", "migration_failed",
                                                     "rollback_failed"), name


@pytest.mark.parametrize("breakage, expected", [
    (lambda d: d["States"]["validate"].update(Next="nowhere"), "target 'nowhere'"),
    (lambda d: d["States"]["validate"].pop("Retry"), "Task without Retry"),
    (lambda d: d["States"]["validate"].pop("Catch"), "Task without Catch"),
    (lambda d: d["States"]["count_running_polls"].update(Next="count_running_polls"),
     "no terminal state is reachable"),
    (lambda d: d["States"]["validate"]["Catch"][0].update(Next="cutover_ready"),
     "cannot fail"),
    (lambda d: d.update(StartAt="missing"), "StartAt"),
    (lambda d: d["States"].update(orphan={"Type": "Succeed"}), "orphan: unreachable"),
])
def test_structural_check_catches_each_kind_of_mistake(breakage, expected):
    definition = copy.deepcopy(migration())
    breakage(definition)
    problems = sm.structural_problems(definition)
    assert any(expected in p for p in problems), problems


def test_polling_bounds_are_checked():
    with pytest.raises(ValueError, match="poll_seconds"):
        migration(poll_seconds=0)
    with pytest.raises(ValueError, match="max_polls"):
        rollback(max_polls=0)


# ---- real executions in moto ----

REGION = "us-east-1"
ACTIVE_WRITER = "/migration/test/database/active-writer"
ENGINE = "/migration/test/workflow/replication-engine"


@pytest.fixture(scope="module")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    saved = {k: os.environ.get(k) for k in ("MOTO_PORT", "AWS_ACCESS_KEY_ID",
                                             "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    # Step Functions Task states call back to localhost:$MOTO_PORT.
    os.environ.update(MOTO_PORT=str(port), AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def aws(moto_server):
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    requests.post(f"{moto_server}/moto-api/config", timeout=10, json={
        "stepfunctions": {"execute_state_machine": True},
        "lambda": {"use_docker": False}}).raise_for_status()

    def client(service):
        return boto3.client(service, endpoint_url=moto_server, region_name=REGION)

    s3, sns, dms, lam, iam = (client(s) for s in ("s3", "sns", "dms", "lambda", "iam"))
    s3.create_bucket(Bucket="paymigrate-checkpoints-test")
    s3.create_bucket(Bucket="paymigrate-rollback-test")
    topics = {n: sns.create_topic(Name=n)["TopicArn"] for n in ("status", "errors")}
    role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "states.amazonaws.com"}}]
    }))["Role"]["Arn"]
    fn = lam.create_function(FunctionName="validator", Runtime="python3.12", Role=role,
                             Handler="data_validation.handler",
                             Code={"ZipFile": b"not run by moto without docker"})["FunctionArn"]
    steps = lam.create_function(FunctionName="rollback-steps", Runtime="python3.12", Role=role,
                                Handler="rollback_steps.handler",
                                Code={"ZipFile": b"not run by moto without docker"})["FunctionArn"]
    client("ssm").put_parameter(Name=ACTIVE_WRITER, Value="source", Type="String")
    client("ssm").put_parameter(Name=ENGINE, Value="dms", Type="String")
    task = dms_objects.replication_task(dms, "task", mappings={"rules": []})
    return {"url": moto_server, "sfn": client("stepfunctions"), "s3": s3, "dms": dms,
            "role": role, "fn": fn, "steps": steps, "task": task, "topics": topics,
            "ssm": client("ssm")}


def _run(aws, name, definition, timeout=30, *, lambda_inputs=None):
    machine = aws["sfn"].create_state_machine(
        name=f"{name}-{uuid.uuid4().hex[:8]}", roleArn=aws["role"],
        definition=json.dumps(definition))["stateMachineArn"]
    execution = aws["sfn"].start_execution(stateMachineArn=machine,
                                           name=f"run-{uuid.uuid4().hex}", input="{}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = aws["sfn"].describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            history = aws["sfn"].get_execution_history(
                executionArn=execution["executionArn"], maxResults=1000)["events"]
            entered = [e["stateEnteredEventDetails"]["name"] for e in history
                       if "stateEnteredEventDetails" in e]
            if lambda_inputs is not None:  # what each Lambda Task state asked for, in order
                lambda_inputs += [json.loads(e["taskScheduledEventDetails"]["parameters"])
                                  for e in history if "taskScheduledEventDetails" in e
                                  and e["taskScheduledEventDetails"]["resourceType"] == "lambda"]
            if os.environ.get("PAYMIGRATE_DEBUG_SFN"):
                print(json.dumps(history, default=str, indent=1))
            return described, entered
        time.sleep(0.2)
    raise AssertionError(f"{name} still running after {timeout}s")


def _queue_lambda_results(aws, *results):
    """TEST DOUBLE of the Lambda functions' answers, in call order: moto without Docker runs no
    function code; the handlers are tested in-process against the real stack."""
    requests.post(f"{aws['url']}/moto-api/static/lambda-simple/response", timeout=10,
                  json={"results": [json.dumps(r) for r in results], "region": REGION}
                  ).raise_for_status()


def _queue_validation_report(aws, report):
    requests.post(f"{aws['url']}/moto-api/static/lambda-simple/response", timeout=10,
                  json={"results": [json.dumps(report)], "region": REGION}).raise_for_status()


def _stopped_task(aws):
    # moto leaves a new task "creating" for ever; started then stopped it is resumable, which
    # is also the state a real task is in when a migration is rerun.
    aws["dms"].start_replication_task(ReplicationTaskArn=aws["task"],
                                      StartReplicationTaskType="start-replication")
    aws["dms"].stop_replication_task(ReplicationTaskArn=aws["task"])


def _migration(aws):
    return sm.migration_definition(
        checkpoints_bucket="paymigrate-checkpoints-test", status_topic_arn=aws["topics"]["status"],
        error_topic_arn=aws["topics"]["errors"], dms_task_arn=aws["task"],
        validation_function_arn=aws["fn"], engine_parameter=ENGINE, sdk_service="dms",
        poll_seconds=1, max_polls=5)


def _rollback(aws):
    return sm.rollback_definition(
        rollback_bucket="paymigrate-rollback-test", status_topic_arn=aws["topics"]["status"],
        error_topic_arn=aws["topics"]["errors"], dms_task_arn=aws["task"], sdk_service="dms",
        steps_function_arn=aws["steps"], active_writer_parameter=ACTIVE_WRITER,
        engine_parameter=ENGINE, poll_seconds=1, max_polls=5)


@pytest.mark.integration
def test_migration_then_rollback_succeed_in_moto(aws):
    _stopped_task(aws)
    _queue_validation_report(aws, {sm.VALIDATION_OK_FIELD: True, "tables": 3})
    described, entered = _run(aws, "migration", _migration(aws))
    assert described["status"] == "SUCCEEDED", (described, entered)
    order = ["preflight", "checkpoint_preparation", "notify_start", "replication_engine",
             "prepare_replication_task", "replication_start_needed", "plan_resume",
             "start_replication_task", "wait_full_load_done", "checkpoint_replication",
             "validate", "decide", "checkpoint_validation", "notify_cutover_ready",
             "cutover_ready"]
    assert [s for s in entered if s in order and s != "wait_full_load_done"] == [
        s for s in order if s != "wait_full_load_done"], entered
    assert "wait_full_load_done" in entered
    assert "notify_failure" not in entered
    keys = {o["Key"] for o in aws["s3"].list_objects_v2(Bucket="paymigrate-checkpoints-test")["Contents"]}
    assert {k.rsplit("/", 1)[1] for k in keys} == {
        "preparation.json", "replication.json", "validation.json"}
    status = aws["dms"].describe_replication_tasks()["ReplicationTasks"][0]["Status"]
    assert status == "running"

    # Before a cutover the source is the writer: no switch back, then route and unfreeze (the
    # rollback-steps Lambda's answers are queued: moto runs no Lambda code without Docker).
    _queue_lambda_results(aws, {"route": "source", "moved": False}, {"unfrozen": True})
    described, entered = _run(aws, "rollback", _rollback(aws))
    assert described["status"] == "SUCCEEDED", (described, entered)
    assert {"save_rollback_state", "replication_engine", "replication_stop_needed",
            "stop_replication_task", "wait_replication_task_stopped", "route_traffic_to_source",
            "unfreeze_source", "notify_rollback_complete", "rollback_done"} <= set(entered)
    assert "switch_writes_to_source" not in entered and "stop_replication" not in entered
    assert aws["dms"].describe_replication_tasks()["ReplicationTasks"][0]["Status"] == "stopped"

    # A second rollback finds replication stopped and does not stop it again.
    _queue_lambda_results(aws, {"route": "source", "moved": False}, {"unfrozen": True})
    described, entered = _run(aws, "rollback-again", _rollback(aws))
    assert described["status"] == "SUCCEEDED"
    assert "replication_stop_needed" in entered and "stop_replication_task" not in entered


@pytest.mark.integration
def test_failed_validation_takes_the_failure_path_in_moto(aws):
    _stopped_task(aws)
    _queue_validation_report(aws, {sm.VALIDATION_OK_FIELD: False, "missing_keys": 2})
    described, entered = _run(aws, "migration-bad", _migration(aws))
    assert described["status"] == "FAILED"
    assert entered[-2:] == ["notify_failure", "migration_failed"]
    assert "checkpoint_validation" not in entered


@pytest.mark.integration
def test_task_that_cannot_start_is_refused_by_preflight_in_moto(aws):
    # Still "creating": not startable, so nothing is checkpointed or started.
    described, entered = _run(aws, "migration-early", _migration(aws))
    assert described["status"] == "FAILED"
    assert "start_replication_task" not in entered and "notify_failure" in entered


@pytest.mark.integration
def test_another_engine_is_refused_by_the_migration_and_stopped_by_the_rollback_steps(aws):
    # The machines drive the DMS task; with postgres-logical in the contract the migration
    # refuses before it starts anything, and the rollback has the rollback-steps function stop
    # replication, as the DAG's postgres-logical branch does.
    _stopped_task(aws)
    aws["ssm"].put_parameter(Name=ENGINE, Value="postgres-logical", Type="String", Overwrite=True)
    described, entered = _run(aws, "migration-logical", _migration(aws))
    assert described["status"] == "FAILED"
    assert entered[-4:] == ["replication_engine", "replication_engine_not_dms", "notify_failure",
                            "migration_failed"], entered
    assert "prepare_replication_task" not in entered
    assert aws["dms"].describe_replication_tasks()["ReplicationTasks"][0]["Status"] == "stopped"

    _queue_lambda_results(aws, {"engine": "postgres-logical", "running": False},
                          {"route": "source", "moved": False}, {"unfrozen": True})
    asked: list[dict] = []
    described, entered = _run(aws, "rollback-logical", _rollback(aws), lambda_inputs=asked)
    assert described["status"] == "SUCCEEDED", (described, entered)
    assert "stop_replication" in entered and "replication_stop_needed" not in entered
    assert [a["Payload"]["step"] for a in asked] == [
        "stop_replication", "route_traffic_to_source", "unfreeze_source"]


@pytest.mark.integration
def test_rollback_after_a_cutover_switches_writes_back_then_stops_routes_unfreezes(aws):
    # After a cutover: replication runs and the contract's active writer is the target (what
    # the cutover writes; the rollback machine reads it to decide on the switch back).
    _stopped_task(aws)
    aws["dms"].start_replication_task(ReplicationTaskArn=aws["task"],
                                      StartReplicationTaskType="resume-processing")
    aws["ssm"].put_parameter(Name=ACTIVE_WRITER, Value="target", Type="String", Overwrite=True)
    _queue_lambda_results(aws, {"switched": True, "write_pause_seconds": 0.05},
                          {"route": "source", "moved": True}, {"unfrozen": True})
    asked: list[dict] = []
    described, entered = _run(
        aws, "rollback-after-cutover", _rollback(aws), lambda_inputs=asked)
    assert described["status"] == "SUCCEEDED", (described, entered)
    order = ["notify_rollback_start", "save_rollback_state", "read_active_writer",
             "cutover_happened", "switch_writes_to_source", "replication_engine",
             "replication_stop_needed", "stop_replication_task", "wait_replication_task_stopped",
             "route_traffic_to_source", "unfreeze_source", "notify_rollback_complete",
             "rollback_done"]
    assert [s for s in entered if s in order] == [s for s in order if s in entered]
    assert set(order) <= set(entered)
    assert "notify_failure" not in entered
    # The rollback-steps function was asked for the DAG's tasks, in the DAG's order.
    assert [a["Payload"]["step"] for a in asked] == [
        "switch_writes_to_source", "route_traffic_to_source", "unfreeze_source"]
    assert all(a["FunctionName"] == aws["steps"] for a in asked)
    output = json.loads(described["output"])
    assert output["switch_writes_to_source"]["result"] == {"switched": True,
                                                           "write_pause_seconds": 0.05}
    assert aws["dms"].describe_replication_tasks()["ReplicationTasks"][0]["Status"] == "stopped"
