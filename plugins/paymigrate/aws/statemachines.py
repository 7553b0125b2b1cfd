"""Amazon States Language definitions of the migration and rollback state machines.

Plain functions of plain strings: ``infra/`` (Pulumi) deploys them with real ARNs, the local
bootstrap creates and runs them in moto with its own. No Pulumi, Airflow or boto3 import here.

The states an operator sees carry the task ids of the Airflow DAGs that mirror them
(``payment_migration`` and ``payment_rollback``), so a run reads the same in the Step Functions
console and in the Airflow UI. Polling loops need a few states with no DAG counterpart (the DAG
uses a sensor instead): they are listed in ``*_HELPER_STATES``.

>>> d = migration_definition(checkpoints_bucket="b", status_topic_arn="arn:s",
...     error_topic_arn="arn:e", dms_task_arn="arn:t", validation_function_arn="arn:f",
...     engine_parameter="/migration/dev/workflow/replication-engine")
>>> d["StartAt"], structural_problems(d)
('preflight', [])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paymigrate.replication import dms_status
from paymigrate.replication.dms_status import DmsStatus

MIGRATION_STATES = (
    "preflight",
    "checkpoint_preparation",
    "notify_start",
    "replication_engine",
    "prepare_replication_task",
    "replication_start_needed",
    "start_replication_task",
    "wait_full_load_done",
    "checkpoint_replication",
    "validate",
    "decide",
    "checkpoint_validation",
    "notify_cutover_ready",
    "notify_failure",
    "migration_failed",
    "cutover_ready",
)
MIGRATION_HELPER_STATES = (
    "preflight_check",
    "task_not_startable",
    "record_preflight",
    "read_replication_engine",
    "replication_engine_not_dms",
    "plan_fresh_start",
    "plan_resume",
    "init_running_polls",
    "describe_replication_running",
    "replication_running_check",
    "count_running_polls",
    "replication_not_running",
    "record_running_state",
    "validation_mismatch",
)
ROLLBACK_STATES = (
    "notify_rollback_start",
    "save_rollback_state",
    "switch_writes_to_source",
    "replication_engine",
    "stop_replication",
    "replication_stop_needed",
    "stop_replication_task",
    "wait_replication_task_stopped",
    "route_traffic_to_source",
    "unfreeze_source",
    "notify_rollback_complete",
    "notify_failure",
    "rollback_failed",
    "rollback_done",
)
ROLLBACK_HELPER_STATES = (
    "read_active_writer",
    "cutover_happened",
    "read_replication_engine",
    "describe_replication_before_stop",
    "init_stopped_polls",
    "describe_replication_stopped",
    "replication_stopped_check",
    "count_stopped_polls",
    "replication_not_stopped",
    "record_stopped_state",
)

# The on-demand validation has no DAG of its own: the scheduled payment_validation DAG splits the
# same work per table.
VALIDATION_STATES = ("validate", "decide", "validation_mismatch", "validation_failed",
                     "validation_done")

# Which states have a DAG task of the same id. The Succeed/Fail terminals are not tasks: the DAG
# run's own final state says the same thing. Helper states are the sensor's polling internals.
# ``replication_engine`` is the DAGs' branch by engine: the machines drive the DMS task, the
# engine infra deploys; the DAGs' postgres-logical steps have no state here, but for the rollback's
# ``stop_replication`` (the rollback-steps function stops any engine).
MIRRORS_DAG_TASK: dict[str, dict[str, bool]] = {
    "payment_migration": {
        **{s: s not in ("migration_failed", "cutover_ready") for s in MIGRATION_STATES},
        **{s: False for s in MIGRATION_HELPER_STATES},
    },
    "payment_rollback": {
        **{s: s not in ("rollback_failed", "rollback_done") for s in ROLLBACK_STATES},
        **{s: False for s in ROLLBACK_HELPER_STATES},
    },
}

# The validation Lambda returns a JSON object; ``decide`` proceeds only when this field is true.
VALIDATION_OK_FIELD = "ok"

# DMS task statuses, as the engine reads them too. A task in any other status (creating,
# modifying, deleting, failed, moving...) cannot be started safely and preflight refuses it.
_STARTABLE_FRESH = dms_status.ordered(dms_status.STARTABLE_FRESH)
_RESUMABLE = dms_status.ordered(dms_status.RESUMABLE)
_ALREADY_RUNNING = dms_status.ordered(dms_status.WORKING)
_BROKEN = dms_status.ordered(dms_status.BROKEN_WHILE_STARTING)

_FULL_LOAD = "$.replication.task.ReplicationTaskStats.FullLoadProgressPercent"
_SNS_PUBLISH = "arn:aws:states:::sns:publish"
_S3_PUT = "arn:aws:states:::aws-sdk:s3:putObject"
_LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"

_TASK_RETRY = [
    {
        "ErrorEquals": ["States.Timeout", "States.TaskFailed"],
        "IntervalSeconds": 2,
        "MaxAttempts": 3,
        "BackoffRate": 2.0,
    }
]
_LAMBDA_RETRY = [
    {
        "ErrorEquals": [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        ],
        "IntervalSeconds": 2,
        "MaxAttempts": 4,
        "BackoffRate": 2.0,
    }
]


def _sdk(service: str, action: str) -> str:
    return f"arn:aws:states:::aws-sdk:{service}:{action}"


def _task(resource: str, parameters: dict[str, Any], next_state: str, *, failure: str,
          result_path: str | None = None, result_selector: dict[str, Any] | None = None,
          retry: list[dict[str, Any]] | None = None, timeout: int = 60) -> dict[str, Any]:
    """A Task with retries and a catch-all to ``failure``; the error lands in ``$.error``."""
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": resource,
        "Parameters": parameters,
        "TimeoutSeconds": timeout,
        "ResultPath": result_path,
        "Retry": retry if retry is not None else _TASK_RETRY,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failure}],
        "Next": next_state,
    }
    if result_selector is not None:
        state["ResultSelector"] = result_selector
    return state


def _checkpoint(bucket: str, workflow: str, phase: str, next_state: str, failure: str, *,
                detail: str) -> dict:
    """Record a phase in S3, keyed by execution so a rerun never overwrites an earlier record.

    The body is the JSON of ``detail`` (a path to plain data), not the whole state: the state
    holds the DMS task description, which is large and which moto cannot serialise. Execution
    and entry time go into the object's metadata.
    """
    return _task(
        _S3_PUT,
        {
            "Bucket": bucket,
            "Key.$": f"States.Format('{workflow}/{{}}/{phase}.json', $$.Execution.Name)",
            "Body.$": f"States.JsonToString({detail})",
            "ContentType": "application/json",
            "Metadata": {"execution.$": "$$.Execution.Name",
                         "entered-at.$": "$$.State.EnteredTime"},
        },
        next_state,
        failure=failure,
    )


def _notify(topic_arn: str, subject: str, message: str, next_state: str, failure: str) -> dict:
    return _task(
        _SNS_PUBLISH,
        {"TopicArn": topic_arn, "Subject": subject, "Message.$": message},
        next_state,
        failure=failure,
    )


def _describe(service: str, task_arn: str, next_state: str, failure: str) -> dict:
    return _task(
        _sdk(service, "describeReplicationTasks"),
        {"Filters": [{"Name": "replication-task-arn", "Values": [task_arn]}]},
        next_state,
        failure=failure,
        # The whole task, not single fields: ReplicationTaskStats is absent until a task has
        # started, and a ResultSelector path that does not exist fails the execution; the
        # choices test it with IsPresent instead. ArrayGetItem rather than a [0] path, which
        # moto's JSONPath answers with a list.
        result_selector={"task.$": "States.ArrayGetItem($.ReplicationTasks, 0)"},
        result_path="$.replication",
    )


def _get_parameter(name: str, next_state: str, failure: str, *, result_path: str) -> dict[str, Any]:
    """A contract parameter's value, in ``<result_path>.value``."""
    return _task(_sdk("ssm", "getParameter"), {"Name": name}, next_state, failure=failure,
                 result_selector={"value.$": "$.Parameter.Value"}, result_path=result_path)


def _engine_choice(dms: str, *, other: str) -> dict[str, Any]:
    """The DAGs' ``replication_engine`` branch: on to ``dms`` when the contract's engine (read
    into ``$.engine``) is dms, else to ``other``."""
    return {"Type": "Choice",
            "Choices": [{"Variable": "$.engine.value", "StringEquals": "dms", "Next": dms}],
            "Default": other}


def _invoke_validation(function_arn: str, payload: Any, *, failure: str) -> dict[str, Any]:
    """The validation Lambda; its result lands in ``$.validation.report``. ``payload`` is the
    event, or ``"$"`` for the state's input."""
    parameters = ({"FunctionName": function_arn, "Payload.$": payload} if isinstance(payload, str)
                  else {"FunctionName": function_arn, "Payload": payload})
    return _task(_LAMBDA_INVOKE, parameters, "decide", failure=failure,
                 result_selector={"report.$": "$.Payload"}, result_path="$.validation",
                 retry=_LAMBDA_RETRY, timeout=900)


def _verdict(ok: str, mismatch: str) -> dict[str, Any]:
    """Go on to ``ok`` only when the validation's report says it is."""
    field = f"$.validation.report.{VALIDATION_OK_FIELD}"
    return {
        "Type": "Choice",
        "Choices": [{"And": [{"Variable": field, "IsPresent": True},
                             {"Variable": field, "BooleanEquals": True}], "Next": ok}],
        "Default": mismatch,
    }


def _status_in(statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"Variable": "$.replication.task.Status", "StringEquals": s} for s in statuses]


def _refuse(error: str, cause: str, failure: str) -> dict[str, Any]:
    """A Choice's way to the failure path, with the ``$.error`` a Catch would have set."""
    return {"Type": "Pass", "Result": {"Error": error, "Cause": cause}, "ResultPath": "$.error",
            "Next": failure}


def _poll_loop(*, wait: str, describe: str, check: str, count: str, init: str, gave_up: str,
               record: str,
               service: str, task_arn: str, done: dict[str, Any], done_next: str,
               failure: str, poll_seconds: int, max_polls: int,
               failed_statuses: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Wait, describe, check; give up through ``gave_up`` on a failed task or after
    ``max_polls`` rounds."""
    return {
        # Keep only the status once the wait is over: the task description carries timestamps
        # and mappings that would ride along in every later state (and moto cannot serialise
        # its timestamps in an execution's output).
        record: {"Type": "Pass", "Parameters": {"status.$": "$.replication.task.Status"},
                 "ResultPath": "$.replication", "Next": done_next},
        gave_up: _refuse("ReplicationStateNotReached",
                         f"the DMS task failed or did not reach the state in {max_polls} polls",
                         failure),
        init: {"Type": "Pass", "Result": {"count": 0}, "ResultPath": "$.polls", "Next": wait},
        wait: {"Type": "Wait", "Seconds": poll_seconds, "Next": describe},
        describe: _describe(service, task_arn, check, failure),
        check: {
            "Type": "Choice",
            "Choices": [
                {**done, "Next": record},
                {"Or": _status_in(failed_statuses), "Next": gave_up},
                {"Variable": "$.polls.count", "NumericGreaterThanEquals": max_polls,
                 "Next": gave_up},
            ],
            "Default": count,
        },
        count: {
            "Type": "Pass",
            "Parameters": {"count.$": "States.MathAdd($.polls.count, 1)"},
            "ResultPath": "$.polls",
            "Next": wait,
        },
    }


def _check_polling(poll_seconds: int, max_polls: int) -> None:
    if not 1 <= poll_seconds <= 3600:
        raise ValueError(f"poll_seconds: {poll_seconds} is outside 1..3600")
    if not 1 <= max_polls <= 10000:
        raise ValueError(f"max_polls: {max_polls} is outside 1..10000")


def migration_definition(*, checkpoints_bucket: str, status_topic_arn: str, error_topic_arn: str,
                         dms_task_arn: str, validation_function_arn: str, engine_parameter: str,
                         sdk_service: str = "databasemigration", poll_seconds: int = 30,
                         max_polls: int = 2880) -> dict[str, Any]:
    """The migration state machine: preflight to ``cutover_ready``, or ``migration_failed``.
    It drives the DMS task: ``replication_engine`` refuses when the contract's engine
    (``engine_parameter``) is another.

    ``sdk_service`` is the DMS service name in ``aws-sdk`` task ARNs: ``databasemigration`` on
    AWS, ``dms`` in moto. The default ``max_polls`` at 30 s gives a full load 24 hours.
    """
    _check_polling(poll_seconds, max_polls)
    fail = "notify_failure"
    states: dict[str, dict[str, Any]] = {
        "preflight": _describe(sdk_service, dms_task_arn, "preflight_check", fail),
        "preflight_check": {
            "Type": "Choice",
            "Choices": [{"Or": _status_in(_ALREADY_RUNNING + _STARTABLE_FRESH + _RESUMABLE),
                         "Next": "record_preflight"}],
            "Default": "task_not_startable",
        },
        "task_not_startable": _refuse(
            "ReplicationTaskNotStartable",
            "the DMS task is neither ready, stopped nor running", fail),
        "record_preflight": {"Type": "Pass",
                             "Parameters": {"task_status.$": "$.replication.task.Status"},
                             "ResultPath": "$.preflight", "Next": "checkpoint_preparation"},
        "checkpoint_preparation": _checkpoint(
            checkpoints_bucket, "migration", "preparation", "notify_start", fail,
            detail="$.preflight"),
        "notify_start": _notify(
            status_topic_arn, "Migration started",
            "States.Format('Migration {} started: DMS task {}.', $$.Execution.Name, "
            "$.preflight.task_status)",
            "read_replication_engine", fail),
        "read_replication_engine": _get_parameter(engine_parameter, "replication_engine",
                                                  fail, result_path="$.engine"),
        "replication_engine": _engine_choice("prepare_replication_task",
                                             other="replication_engine_not_dms"),
        "replication_engine_not_dms": _refuse(
            "ReplicationEngineNotDms",
            "workflow/replication-engine is not dms: this machine drives the DMS task only; "
            "run the payment_migration DAG for the other engine", fail),
        "prepare_replication_task": _describe(sdk_service, dms_task_arn,
                                              "replication_start_needed", fail),
        "replication_start_needed": {
            "Type": "Choice",
            "Choices": [
                # A rerun after replication already started resumes the wait, never starts twice.
                {"Or": _status_in(_ALREADY_RUNNING), "Next": "init_running_polls"},
                {"Or": _status_in(_STARTABLE_FRESH), "Next": "plan_fresh_start"},
                {"Or": _status_in(_RESUMABLE), "Next": "plan_resume"},
            ],
            "Default": "task_not_startable",
        },
        # A stopped full-load-and-cdc task must resume from its CDC position: start-replication
        # on it would truncate and reload the target.
        "plan_fresh_start": {"Type": "Pass", "Result": {"type": "start-replication"},
                             "ResultPath": "$.start", "Next": "start_replication_task"},
        "plan_resume": {"Type": "Pass", "Result": {"type": "resume-processing"},
                        "ResultPath": "$.start", "Next": "start_replication_task"},
        "start_replication_task": _task(
            _sdk(sdk_service, "startReplicationTask"),
            {"ReplicationTaskArn": dms_task_arn, "StartReplicationTaskType.$": "$.start.type"},
            "init_running_polls",
            failure=fail,
            # Not retried: a start that reached DMS but whose answer was lost would be sent
            # twice; the failure path reports it and a rerun resumes through preflight.
            retry=[],
        ),
        **_poll_loop(
            init="init_running_polls", wait="wait_full_load_done",
            gave_up="replication_not_running", record="record_running_state",
            describe="describe_replication_running", check="replication_running_check",
            count="count_running_polls", service=sdk_service, task_arn=dms_task_arn,
            done={"And": [
                {"Variable": "$.replication.task.Status", "StringEquals": DmsStatus.RUNNING.value},
                {"Variable": _FULL_LOAD, "IsPresent": True},
                {"Variable": _FULL_LOAD, "NumericGreaterThanEquals": 100},
            ]},
            done_next="checkpoint_replication", failure=fail, poll_seconds=poll_seconds,
            max_polls=max_polls, failed_statuses=_BROKEN,
        ),
        "checkpoint_replication": _checkpoint(
            checkpoints_bucket, "migration", "replication", "validate", fail,
            detail="$.polls"),
        "validate": _invoke_validation(
            validation_function_arn,
            {"execution.$": "$$.Execution.Name", "trigger": "stepfunctions"}, failure=fail),
        "decide": _verdict("checkpoint_validation", "validation_mismatch"),
        "validation_mismatch": _refuse(
            "ValidationMismatch", "source and target differ, or validation gave no verdict",
            fail),
        "checkpoint_validation": _checkpoint(
            checkpoints_bucket, "migration", "validation", "notify_cutover_ready", fail,
            detail="$.validation.report"),
        "notify_cutover_ready": _notify(
            status_topic_arn, "Migration ready for cutover",
            "States.Format('Migration {} is ready for cutover: full load done, CDC running, "
            "validation passed.', $$.Execution.Name)",
            "cutover_ready", fail),
        "notify_failure": _notify(
            error_topic_arn, "Migration failed",
            "States.Format('Migration {} failed: {}', $$.Execution.Name, "
            "States.JsonToString($.error))",
            "migration_failed", "migration_failed"),
        "migration_failed": {"Type": "Fail", "Error": "MigrationFailed",
                             "Cause": "The migration stopped before cutover; see notify_failure."},
        "cutover_ready": {"Type": "Succeed"},
    }
    return {
        "Comment": "Payment database migration: replicate, validate, stop at cutover readiness",
        "StartAt": "preflight",
        "States": states,
    }


# The rollback steps that need the databases and the routers run in the rollback-steps Lambda
# (``lambdas/rollback_steps.py``): the same migration service calls as the DAG's operators.
ROLLBACK_LAMBDA_STEPS = ("switch_writes_to_source", "stop_replication", "route_traffic_to_source",
                         "unfreeze_source")


def _rollback_step(function_arn: str, step: str, next_state: str, failure: str, *,
                   timeout: int) -> dict[str, Any]:
    return _task(
        _LAMBDA_INVOKE,
        {"FunctionName": function_arn,
         # The execution input rides along whole: it may carry the switch back's limits.
         "Payload": {"step": step, "run_id.$": "$$.Execution.Name",
                     "input.$": "$$.Execution.Input"}},
        next_state,
        failure=failure,
        result_selector={"result.$": "$.Payload"},
        result_path=f"$.{step}",
        # Not retried: a switch back that reached the routers but whose answer was lost is
        # rerun by a new execution, which checks before it acts.
        retry=[],
        timeout=timeout,
    )


def rollback_definition(*, rollback_bucket: str, status_topic_arn: str, error_topic_arn: str,
                        dms_task_arn: str, steps_function_arn: str, active_writer_parameter: str,
                        engine_parameter: str, sdk_service: str = "databasemigration",
                        poll_seconds: int = 15, max_polls: int = 240) -> dict[str, Any]:
    """The rollback state machine, state for task the ``payment_rollback`` DAG: save state;
    after a cutover (the contract's active writer is the target) drain reverse replication and
    switch writes back (``switch_writes_to_source``); stop replication (the DMS task when the
    contract's engine, ``engine_parameter``, is dms, else through the rollback-steps function)
    and wait until it is stopped; route every client to the source; unfreeze it; notify.

    The execution input may carry ``max_write_pause_ms``, ``pause_timeout_seconds`` and
    ``drain_timeout_seconds`` for the switch back, as the DAG's Params. Rerunnable: each step
    checks before it acts, and a task already stopped is not stopped again.
    """
    _check_polling(poll_seconds, max_polls)
    fail = "notify_failure"
    states: dict[str, dict[str, Any]] = {
        "notify_rollback_start": _notify(
            status_topic_arn, "Rollback started",
            "States.Format('Rollback {} started.', $$.Execution.Name)",
            "save_rollback_state", fail),
        "save_rollback_state": _checkpoint(
            rollback_bucket, "rollback", "state", "read_active_writer", fail,
            # The execution input: who asked for the rollback and why.
            detail="$"),
        "read_active_writer": _get_parameter(active_writer_parameter, "cutover_happened", fail,
                                             result_path="$.active_writer"),
        "cutover_happened": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.active_writer.value", "StringEquals": "target",
                         "Next": "switch_writes_to_source"}],
            # Before a cutover the source is the writer: nothing to drain or switch back.
            "Default": "read_replication_engine",
        },
        "switch_writes_to_source": _rollback_step(
            steps_function_arn, "switch_writes_to_source", "read_replication_engine",
            fail, timeout=900),
        "read_replication_engine": _get_parameter(engine_parameter, "replication_engine", fail,
                                                  result_path="$.engine"),
        "replication_engine": _engine_choice("describe_replication_before_stop",
                                             other="stop_replication"),
        # Another engine's replication is stopped where it runs, by the migration service.
        "stop_replication": _rollback_step(
            steps_function_arn, "stop_replication", "route_traffic_to_source", fail, timeout=120),
        "describe_replication_before_stop": _describe(
            sdk_service, dms_task_arn, "replication_stop_needed", fail),
        # As dms_status.stop_action decides for the DAG: a task that carries nothing (stopped,
        # never started, failed, busy) has nothing to stop.
        "replication_stop_needed": {
            "Type": "Choice",
            "Choices": [
                {"Or": _status_in(_ALREADY_RUNNING), "Next": "stop_replication_task"},
                {"Variable": "$.replication.task.Status", "StringEquals": DmsStatus.STOPPING.value,
                 "Next": "init_stopped_polls"},
            ],
            "Default": "record_stopped_state",
        },
        "stop_replication_task": _task(
            _sdk(sdk_service, "stopReplicationTask"),
            {"ReplicationTaskArn": dms_task_arn},
            "init_stopped_polls",
            failure=fail,
        ),
        **_poll_loop(
            init="init_stopped_polls", wait="wait_replication_task_stopped",
            gave_up="replication_not_stopped", record="record_stopped_state",
            describe="describe_replication_stopped", check="replication_stopped_check",
            count="count_stopped_polls", service=sdk_service, task_arn=dms_task_arn,
            done={"Or": _status_in(dms_status.ordered(dms_status.STOPPED))},
            done_next="route_traffic_to_source", failure=fail, poll_seconds=poll_seconds,
            max_polls=max_polls,
            failed_statuses=dms_status.ordered(dms_status.BROKEN_WHILE_STOPPING),
        ),
        "route_traffic_to_source": _rollback_step(
            steps_function_arn, "route_traffic_to_source", "unfreeze_source", fail, timeout=120),
        "unfreeze_source": _rollback_step(
            steps_function_arn, "unfreeze_source", "notify_rollback_complete", fail, timeout=120),
        "notify_rollback_complete": _notify(
            status_topic_arn, "Rollback complete",
            "States.Format('Rollback {} complete: the source takes every write.', "
            "$$.Execution.Name)",
            "rollback_done", fail),
        "notify_failure": _notify(
            error_topic_arn, "Rollback failed",
            "States.Format('Rollback {} failed: {}', $$.Execution.Name, "
            "States.JsonToString($.error))",
            "rollback_failed", "rollback_failed"),
        "rollback_failed": {"Type": "Fail", "Error": "RollbackFailed",
                            "Cause": "The rollback did not complete; see notify_failure."},
        "rollback_done": {"Type": "Succeed"},
    }
    return {
        "Comment": "Payment database migration rollback: every write back on the source",
        "StartAt": "notify_rollback_start",
        "States": states,
    }


def validation_definition(*, validation_function_arn: str) -> dict[str, Any]:
    """On-demand validation (what ``POST /migration/validation`` starts): the validation Lambda,
    which publishes the metrics and alerts on a discrepancy itself, then its verdict as the
    execution's outcome. The execution input is the Lambda's event (tables, schemas, max_keys).

    >>> d = validation_definition(validation_function_arn="arn:f")
    >>> d["StartAt"], structural_problems(d), sorted(d["States"]) == sorted(VALIDATION_STATES)
    ('validate', [], True)
    """
    states: dict[str, dict[str, Any]] = {
        "validate": _invoke_validation(validation_function_arn, "$", failure="validation_failed"),
        "decide": _verdict("validation_done", "validation_mismatch"),
        "validation_mismatch": {"Type": "Fail", "Error": "ValidationMismatch",
                                "Cause": "source and target differ; the validation-alerts topic "
                                         "has the keys"},
        "validation_failed": {"Type": "Fail", "Error": "ValidationFailed",
                              "Cause": "the validation function failed; see the execution's "
                                       "error"},
        "validation_done": {"Type": "Succeed"},
    }
    return {"Comment": "Payment database validation, on demand", "StartAt": "validate",
            "States": states}


_FAILURE_TYPES = ("Fail",)


def _targets(state: Mapping[str, Any]) -> list[str]:
    out = [state["Next"]] if "Next" in state else []
    out += [c["Next"] for c in state.get("Catch", [])]
    out += [c["Next"] for c in state.get("Choices", [])]
    if "Default" in state:
        out.append(state["Default"])
    return out


def structural_problems(definition: Mapping[str, Any]) -> list[str]:
    """What is structurally wrong with a definition; an empty list when nothing is.

    Checks: StartAt and every Next/Default/Catch target exist; every Task has a Retry and a Catch
    whose targets lead to a Fail state; every state can reach a terminal state; every state is
    reachable from StartAt.
    """
    states: Mapping[str, Mapping[str, Any]] = definition.get("States", {})
    problems: list[str] = []
    if definition.get("StartAt") not in states:
        problems.append(f"StartAt {definition.get('StartAt')!r} is not a state")
    for name, state in states.items():
        for target in _targets(state):
            if target not in states:
                problems.append(f"{name}: target {target!r} is not a state")
        kind = state.get("Type")
        if kind not in ("Succeed", "Fail", "Choice") and "Next" not in state and not state.get(
                "End"):
            problems.append(f"{name}: neither Next nor End")
        if kind == "Task":
            if "Retry" not in state:
                problems.append(f"{name}: Task without Retry")
            if not state.get("Catch"):
                problems.append(f"{name}: Task without Catch")
    if problems:
        return problems

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.add(s)
                todo.extend(_targets(states[s]))
        return seen

    terminals = {n for n, s in states.items() if s["Type"] in ("Succeed", "Fail") or s.get("End")}
    failures = {n for n, s in states.items() if s["Type"] in _FAILURE_TYPES}
    for name, state in states.items():
        if not reachable(name) & terminals:
            problems.append(f"{name}: no terminal state is reachable")
        for catch in state.get("Catch", []):
            if not reachable(catch["Next"]) & failures:
                problems.append(f"{name}: Catch goes to {catch['Next']!r}, which cannot fail")
    unreachable = set(states) - reachable(definition["StartAt"])
    problems += [f"{n}: unreachable from StartAt" for n in sorted(unreachable)]
    return problems
