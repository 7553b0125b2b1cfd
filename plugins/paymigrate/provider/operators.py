"""Operators for the steps the amazon provider has no operator for.

Each one has the provider's shape: a :class:`MigrationService` on a :class:`MigrationHook` (the
provider's hooks underneath) made in ``execute``, one call, a log line, the result returned for
XCom. The decisions live in :mod:`paymigrate.migration.service`; a refusal there
(:class:`~paymigrate.errors.Refused`) fails the task without retries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from paymigrate.aws.contract import ENGINES
from paymigrate.cutover.switch import CutoverAborted
from paymigrate.errors import Refused
from paymigrate.migration.lock import LockState
from paymigrate.migration.plan import summary as summary  # the sensors import it from here
from paymigrate.migration.service import MigrationService, NewWriterMismatch
from paymigrate.provider.hooks import AWS_CONN_ID, MigrationHook

PREFLIGHT = "preflight"


@contextmanager
def refusals_fail() -> Iterator[None]:
    """A refusal fails the task at once: a retry would be refused the same way."""
    try:
        yield
    except Refused as exc:
        raise AirflowFailException(str(exc)) from None


class MigrationOperator(BaseOperator):
    """Base: the service, and the plan the run's plan task (``preflight``) decided."""

    def __init__(self, *, aws_conn_id: str = AWS_CONN_ID, plan_task: str = PREFLIGHT, **kwargs: Any):
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.plan_task = plan_task

    def service(self) -> MigrationService:
        return MigrationService(MigrationHook(aws_conn_id=self.aws_conn_id))

    def plan(self, context: Context) -> dict[str, Any]:
        plan = context["ti"].xcom_pull(task_ids=self.plan_task)
        if not plan:
            raise AirflowFailException(f"no plan from the {self.plan_task} task in this run")
        return plan


class PreflightOperator(MigrationOperator):
    """Check everything before any side effect, then take the migration lock.

    Refuses (naming what is wrong) a disabled feature flag, an unknown table, a problem the
    engine's preflight finds (a table without key that sees UPDATE/DELETE, large objects, ...)
    and a migration another run is driving. ``dry_run`` stops after the checks with nothing
    written anywhere.
    """

    # ``checks_only`` holds the ``dry_run`` argument: BaseOperator.dry_run is a method.
    template_fields: Sequence[str] = ("engine_name", "tables", "exclude", "checks_only", "takeover")

    def __init__(self, *, engine_name: str, tables: Any = (), exclude: Any = (), dry_run: Any = False,
                 takeover: Any = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.engine_name, self.tables, self.exclude = engine_name, tables, exclude
        self.checks_only, self.takeover = dry_run, takeover

    def execute(self, context: Context) -> dict[str, Any]:
        with refusals_fail():
            plan = self.service().preflight(
                engine=self.engine_name, tables=list(self.tables or []), exclude=list(self.exclude or []),
                dry_run=bool(self.checks_only), takeover=bool(self.takeover), run_id=context["run_id"],
                dag_id=self.dag_id)
        if plan is None:
            raise AirflowSkipException("dry run: checks passed, nothing started")
        self.log.info("plan: %s", plan)
        return plan


class CheckpointOperator(MigrationOperator):
    """Save one phase's checkpoint (the XCom results of ``include``) and move the lock state."""

    def __init__(self, *, phase: str, include: Sequence[str] = (), lock_state: LockState | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.phase, self.include, self.lock_state = phase, tuple(include), lock_state

    def execute(self, context: Context) -> str:
        results = {tid: context["ti"].xcom_pull(task_ids=tid) for tid in self.include}
        with refusals_fail():
            saved = self.service().checkpoint(self.plan(context), phase=self.phase, results=results,
                                              run_id=context["run_id"], lock_state=self.lock_state)
        self.log.info("checkpoint %s saved to %s; lock %s", self.phase, saved, self.lock_state or "unchanged")
        return saved


class StartReplicationOperator(MigrationOperator):
    """Start (or resume) replication; the engine never makes a second slot, subscription or task."""

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.service().start_replication(self.plan(context))
        self.log.info("replication: %s", result)
        return result


class EngineBranchOperator(BaseBranchOperator, MigrationOperator):
    """Follow the branch of the plan's replication engine: each engine's steps are tasks of
    their own (the DMS ones the amazon provider's operators), so the run shows them."""

    def __init__(self, *, branches: Mapping[str, str], **kwargs: Any):
        super().__init__(**kwargs)
        unknown = set(branches) - set(ENGINES)
        if unknown:
            raise ValueError(f"branches for {sorted(unknown)}, which are not engines ({', '.join(ENGINES)})")
        self.branches = dict(branches)

    def choose_branch(self, context: Context) -> str:
        engine = self.plan(context)["engine"]
        if engine not in self.branches:
            raise AirflowFailException(f"the plan's engine {engine!r} has no branch here "
                                       f"({', '.join(self.branches)})")
        self.log.info("engine %s: %s", engine, self.branches[engine])
        return self.branches[engine]


class PrepareReplicationTaskOperator(MigrationOperator):
    """engine=dms: what the DMS task needs before it starts (target schema, drain marker, slot,
    mappings from the scope); returns its ARN and start type for ``DmsStartTaskOperator``."""

    def execute(self, context: Context) -> dict[str, Any]:
        with refusals_fail():
            prepared = self.service().prepare_replication_task(self.plan(context))
        self.log.info("DMS task %s (%s): %s", prepared["task_name"], prepared["status"],
                      prepared["start_type"] or "runs already, nothing to start")
        return prepared


class ReplicationTaskStartBranchOperator(BaseBranchOperator):
    """engine=dms: start the task (``start_task``) unless the preparation found it running
    already, a rerun's case (then ``running_task``): replication never starts twice."""

    def __init__(self, *, prepare_task: str, start_task: str, running_task: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.prepare_task, self.start_task, self.running_task = prepare_task, start_task, running_task

    def choose_branch(self, context: Context) -> str:
        prepared = context["ti"].xcom_pull(task_ids=self.prepare_task)
        if not prepared:
            raise AirflowFailException(f"no result from the {self.prepare_task} task in this run")
        return self.start_task if prepared["start_type"] else self.running_task


class ReplicationTaskStopBranchOperator(BaseBranchOperator, MigrationOperator):
    """engine=dms: by the forward task's status, stop it (``stop_task``), wait for a stop under
    way (``wait_task``) or, when it carries nothing, go on (``done_task``)."""

    def __init__(self, *, stop_task: str, wait_task: str, done_task: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.next_task = {"stop": stop_task, "wait": wait_task, "none": done_task}

    def choose_branch(self, context: Context) -> str:
        with refusals_fail():
            found = self.service().replication_task_stop(self.plan(context))
        self.log.info("DMS task %s is %s", found["task_arn"], found["status"])
        return self.next_task[found["action"]]


class ValidateOperator(MigrationOperator):
    """Compare source and target (count, checksum, exact keys), re-checking after catch-up."""

    template_fields: Sequence[str] = ("max_keys",)

    def __init__(self, *, max_keys: Any = 100, **kwargs: Any):
        super().__init__(**kwargs)
        self.max_keys = max_keys

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.service().validate(self.plan(context), max_keys=int(self.max_keys),
                                         run_id=context["run_id"], dag_id=self.dag_id)
        self.log.info("validation: %s, %s mismatching table(s)", result["status"],
                      sum(t["status"] != "match" for t in result["tables"]))
        return result


class DecideOperator(MigrationOperator):
    """Cutover ready only when every table matched and replication lag is under the threshold."""

    template_fields: Sequence[str] = ("lag_threshold",)

    def __init__(self, *, lag_threshold: Any = None, validate_task: str = "validate", **kwargs: Any):
        super().__init__(**kwargs)
        self.lag_threshold, self.validate_task = lag_threshold, validate_task

    def execute(self, context: Context) -> dict[str, Any]:
        report = context["ti"].xcom_pull(task_ids=self.validate_task)
        with refusals_fail():
            decision = self.service().decide(self.plan(context), report=report,
                                             lag_threshold=self.lag_threshold)
        self.log.info("cutover ready: %s", decision)
        return decision


class StopReplicationOperator(MigrationOperator):
    """Stop forward replication (idempotent: stopping a stopped engine is a no-op)."""

    def execute(self, context: Context) -> dict[str, Any]:
        status = self.service().stop_replication(self.plan(context))
        self.log.info("replication stopped: %s", status)
        return status


class SaveRollbackStateOperator(MigrationOperator):
    """Write what a rollback needs to know into the rollback bucket before touching anything.
    Its result is the migration's plan: the rollback's later steps read it (their plan_task)."""

    def execute(self, context: Context) -> dict[str, Any]:
        saved = self.service().save_rollback_state(run_id=context["run_id"])
        self.log.info("rollback state of migration %s saved to %s", saved["migration_id"], saved["saved"])
        return saved


class NotifyFailureOperator(MigrationOperator):
    """On any failure: alert the error topic with a link to the run, mark the lock this run holds
    failed so the next run resumes, then fail, as the state machine's Fail state does, so the run
    ends failed rather than "success" because its alert went out."""

    def __init__(self, *, what: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.what = what

    def execute(self, context: Context) -> None:
        from paymigrate.provider.callbacks import failed_tasks, run_link

        message = self.service().fail_run(what=self.what, run_id=context["run_id"],
                                          failed_tasks=failed_tasks(context), link=run_link(context))
        raise AirflowFailException(message)


class SwitchBackOperator(MigrationOperator):
    """Rollback after a cutover: drain reverse replication and move writes back to the source.

    Before a cutover (the source is still the writer) there is nothing to drain: it says so.
    """

    template_fields: Sequence[str] = ("pause_timeout", "drain_timeout", "max_write_pause_ms")

    def __init__(self, *, pause_timeout: Any = 10, drain_timeout: Any = 30, max_write_pause_ms: Any = 1000,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.pause_timeout, self.drain_timeout = pause_timeout, drain_timeout
        self.max_write_pause_ms = max_write_pause_ms

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            result = self.service().switch_back(
                self.plan(context), max_write_pause=float(self.max_write_pause_ms) / 1000,
                pause_timeout=float(self.pause_timeout), drain_timeout=float(self.drain_timeout))
        except CutoverAborted as exc:
            self.log.error("abort: %s", exc.result.abort)
            raise AirflowFailException(str(exc)) from None
        self.log.info("switched back: %s; write pause %s s", result["switched"],
                      result.get("write_pause_seconds"))
        return result


class RouteToSourceOperator(MigrationOperator):
    """Make sure every client is routed to the source: the route, the canary share of reads, and
    the active-writer parameter; then record the migration as rolled back."""

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.service().route_to_source(run_id=context["run_id"])
        self.log.info("writes go to the source %s (route moved: %s)", result["route"], result["moved"])
        return result


class UnfreezeSourceOperator(MigrationOperator):
    """Make the source writable again and take its write fence away (idempotent: unfreezing a
    writable source changes nothing). A fence trigger whose table is busy is left open."""

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.service().unfreeze_source()
        self.log.info("source unfrozen: %s", result)
        return result


class CutoverPreflightOperator(MigrationOperator):
    """Refuse a cutover that is not approved, not enabled, not ready, or already done."""

    template_fields: Sequence[str] = ("approved_by", "confirm_environment")

    def __init__(self, *, approved_by: Any, confirm_environment: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.approved_by, self.confirm_environment = approved_by, confirm_environment

    def execute(self, context: Context) -> dict[str, Any]:
        with refusals_fail():
            plan = self.service().cutover_preflight(approved_by=self.approved_by,
                                                    confirm_environment=self.confirm_environment,
                                                    run_id=context["run_id"])
        self.log.info("cutover of migration %s approved by %s", plan["migration_id"], self.approved_by)
        return plan


class ShiftReadTrafficOperator(MigrationOperator):
    """The read canary: raise the share of reads sent to the target step by step, and after
    each step's soak check the alarms and lag; any alarm puts the share back to 0 and fails."""

    template_fields: Sequence[str] = ("steps", "soak_seconds", "lag_threshold")

    def __init__(self, *, steps: Any, soak_seconds: Any, lag_threshold: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.steps, self.soak_seconds, self.lag_threshold = steps, soak_seconds, lag_threshold

    def execute(self, context: Context) -> list[dict[str, Any]]:
        with refusals_fail():
            seen = self.service().shift_read_traffic(
                self.plan(context), steps=[int(p) for p in self.steps],
                soak_seconds=float(self.soak_seconds), lag_threshold=self.lag_threshold)
        self.log.info("read canary passed: %s", seen)
        return seen


class WriteSwitchOperator(MigrationOperator):
    """PAUSE, fence, drain, table states, sequences, reverse slot, repoint, RESUME: one task, so
    the write pause is not stretched by the scheduler between steps, and held to its budget. Its
    log lists every step's time."""

    template_fields: Sequence[str] = ("pause_timeout", "drain_timeout", "sequence_gap", "drill_fail_at",
                                      "max_write_pause_ms")

    def __init__(self, *, pause_timeout: Any = 10, drain_timeout: Any = 10, sequence_gap: Any = 1000,
                 max_write_pause_ms: Any = 500, drill_fail_at: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.pause_timeout, self.drain_timeout = pause_timeout, drain_timeout
        self.sequence_gap, self.drill_fail_at = sequence_gap, drill_fail_at
        self.max_write_pause_ms = max_write_pause_ms

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            result = self.service().switch_writes(
                self.plan(context), run_id=context["run_id"],
                max_write_pause=float(self.max_write_pause_ms) / 1000,
                pause_timeout=float(self.pause_timeout), drain_timeout=float(self.drain_timeout),
                sequence_gap=int(self.sequence_gap), fail_at=self.drill_fail_at or None)
        except CutoverAborted as exc:
            self.log.error("cutover aborted at %s%s; abort actions: %s", exc.result.failed_step,
                           " (write pause budget spent)" if exc.result.budget_exceeded else "",
                           exc.result.abort)
            context["ti"].xcom_push(key="aborted", value=exc.result.to_dict())
            if self.drill_fail_at:
                record_drill(MigrationHook(aws_conn_id=self.aws_conn_id).checkpoints(),
                             run_id=context["run_id"], result=exc.result)
            raise AirflowFailException(str(exc)) from None
        for step, seconds in result.steps.items():
            self.log.info("  %-15s %7.1f ms", step, seconds * 1000)
        self.log.info("write pause (PAUSE to RESUME): %.1f ms of a %.0f ms budget",
                      result.write_pause_seconds * 1000, result.budget_seconds * 1000)
        return result.to_dict()


def record_drill(store: Any, *, run_id: str, result: Any) -> None:
    """Keep a rehearsal's write pause: the next cutover's approval shows the drills' median."""
    from paymigrate.aws.checkpoints import now
    from paymigrate.cutover import approval

    store.put_doc(approval.DRILLS, approval.with_drill(
        store.get_doc(approval.DRILLS), run_id=run_id, failed_step=result.failed_step,
        write_pause_seconds=result.write_pause_seconds, at=now()))


class AttachReverseOperator(MigrationOperator):
    """After RESUME: subscribe the source to the reverse slot the switch made inside the pause
    (idempotent, so safe to retry: the slot keeps every target write until then)."""

    def __init__(self, *, switch_task: str = "write_switch", **kwargs: Any):
        super().__init__(**kwargs)
        self.switch_task = switch_task

    def execute(self, context: Context) -> dict[str, Any]:
        position = (context["ti"].xcom_pull(task_ids=self.switch_task) or {}).get("reverse_position")
        result = self.service().attach_reverse(self.plan(context), from_position=position)
        self.log.info("reverse replication %s from %s", result["action"], position)
        return result


class ValidateNewWriterOperator(ValidateOperator):
    """After the cutover: validate the new writer against the old one (which follows it through
    reverse replication); on a mismatch, alert the error topic with the keys and what to do."""

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            report = self.service().validate_new_writer(self.plan(context), max_keys=int(self.max_keys),
                                                        run_id=context["run_id"])
        except NewWriterMismatch as exc:
            context["ti"].xcom_push(key="report", value=exc.report)
            raise AirflowFailException(str(exc)) from None
        self.log.info("new writer matches the old one: %d table(s)", len(report["tables"]))
        return report
