"""Operators for the steps the amazon provider has no operator for.

Each one is thin: it makes a :class:`MigrationHook` (provider hooks underneath) in ``execute``,
calls library code, logs what it did and returns a JSON summary for XCom. Summaries carry
positions, counts and keys, never credentials or row values.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from paymigrate.airflow.hooks import AWS_CONN_ID, MigrationHook
from paymigrate.checkpoints import MigrationActive

PREFLIGHT = "preflight"


def summary(value: Any) -> Any:
    """A JSON-safe copy of a result (dataclasses included) for XCom and checkpoints."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


def tables_in_scope(source: Any, plan: dict[str, Any]) -> list[str] | None:
    """The tables the migration replicates (its ``tables``, less ``exclude``); None for all."""
    if not plan.get("tables") and not plan.get("exclude"):
        return None
    from paymigrate.validation import list_tables

    excluded = set(plan.get("exclude") or ())
    return [t for t in list_tables(source=source, tables=plan.get("tables") or None) if t not in excluded]


def migration_scope(store: Any) -> dict[str, Any]:
    """The running migration's engine and tables, from its latest checkpoint: the steps after it
    (cutover, rollback) act on what was replicated, not on today's contract defaults."""
    lock = store.lock()
    if lock is None:
        return {}
    for phase in ("validation", "replication", "preparation"):
        doc = store.load(migration_id=lock.migration_id, phase=phase)
        if doc and doc.get("plan"):
            plan = doc["plan"]
            return {"migration_id": lock.migration_id, "engine": plan.get("engine"),
                    "tables": plan.get("tables") or [], "exclude": plan.get("exclude") or []}
    return {"migration_id": lock.migration_id}


class MigrationOperator(BaseOperator):
    """Base: the hook, and the plan the ``preflight`` task decided (engine, migration id)."""

    def __init__(self, *, aws_conn_id: str = AWS_CONN_ID, plan_task: str = PREFLIGHT, **kwargs: Any):
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.plan_task = plan_task

    def hook(self) -> MigrationHook:
        return MigrationHook(aws_conn_id=self.aws_conn_id)

    def plan(self, context: Context) -> dict[str, Any]:
        plan = context["ti"].xcom_pull(task_ids=self.plan_task)
        if not plan:
            raise AirflowFailException(f"no plan from the {self.plan_task} task in this run")
        return plan

    def engine(self, hook: MigrationHook, context: Context) -> Any:
        plan = self.plan(context)
        return hook.engine(name=plan["engine"], tables=plan.get("tables"), exclude=plan.get("exclude"))


class PreflightOperator(MigrationOperator):
    """Check everything before any side effect, then take the migration lock.

    Refuses (naming what is wrong) a disabled feature flag, an unknown table, a problem the
    engine's preflight finds (a table without key that sees UPDATE/DELETE, large objects, ...)
    and a migration another run is driving. ``dry_run`` stops after the checks with nothing
    written anywhere.
    """

    template_fields: Sequence[str] = ("engine_name", "tables", "exclude", "dry_run", "takeover")

    def __init__(self, *, engine_name: str, tables: Any = (), exclude: Any = (), dry_run: Any = False,
                 takeover: Any = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.engine_name = engine_name
        self.tables = tables
        self.exclude = exclude
        self.dry_run = dry_run
        self.takeover = takeover

    def execute(self, context: Context) -> dict[str, Any]:
        hook = self.hook()
        cfg = hook.config
        if not cfg["workflow/enable-replication"]:
            raise AirflowFailException(
                f"/migration/{hook.env}/workflow/enable-replication is false: replication may not start")
        name = cfg["workflow/replication-engine"] if self.engine_name in ("", "from-contract") else self.engine_name
        tables, exclude = list(self.tables or []), list(self.exclude or [])
        store = hook.checkpoints()
        lock = store.lock()
        run_id = context["run_id"]
        resuming = bool(lock and lock.state in ("running", "failed") and lock.run_id != run_id)
        engine = hook.engine(name=name, tables=tables, exclude=exclude)
        source, target = hook.endpoint("source").safe(), hook.endpoint("target").safe()
        self.log.info("preflight of %s replication from %s to %s", name, source, target)
        # The engine knows a resumed migration (its subscription exists) and then accepts a
        # target that is no longer empty.
        problems = list(engine.preflight())
        done = self._done_phases(store, lock.migration_id) if resuming else []
        if problems:
            listing = "; ".join(str(p) for p in problems)
            raise AirflowFailException(f"preflight refused {len(problems)} problem(s): {listing}")
        if self.dry_run:
            self.log.info("dry run: every check passed; nothing was started or written")
            raise AirflowSkipException("dry run: checks passed, nothing started")
        try:
            lock = store.acquire(run_id=run_id, dag_id=self.dag_id, takeover=bool(self.takeover))
        except MigrationActive as exc:
            raise AirflowFailException(str(exc)) from None
        plan = {"migration_id": lock.migration_id, "engine": name, "tables": tables, "exclude": exclude,
                "resumed": resuming, "done_phases": done, "env": hook.env, "source": source,
                "target": target}
        self.log.info("plan: %s", json.dumps(plan))
        return plan

    @staticmethod
    def _done_phases(store: Any, migration_id: str) -> list[str]:
        return [p for p in ("preparation", "replication", "validation")
                if store.load(migration_id=migration_id, phase=p)]


class CheckpointOperator(MigrationOperator):
    """Save one phase's checkpoint (the XCom summaries of ``include``) and move the lock state."""

    def __init__(self, *, phase: str, include: Sequence[str] = (), lock_state: str | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.phase = phase
        self.include = tuple(include)
        self.lock_state = lock_state

    def execute(self, context: Context) -> str:
        hook, plan = self.hook(), self.plan(context)
        doc = {"engine": plan["engine"], "plan": plan,
               **{tid: context["ti"].xcom_pull(task_ids=tid) for tid in self.include}}
        store = hook.checkpoints()
        key = store.save(migration_id=plan["migration_id"], phase=self.phase, run_id=context["run_id"],
                         doc=doc)
        if self.lock_state:
            store.set_state(self.lock_state, run_id=context["run_id"])
        return f"s3://{hook.config['storage/checkpoints-bucket']}/{key}"


class StartReplicationOperator(MigrationOperator):
    """Start (or resume) replication; the engine never makes a second slot, subscription or task."""

    def execute(self, context: Context) -> dict[str, Any]:
        hook, plan = self.hook(), self.plan(context)
        engine = self.engine(hook, context)
        if "replication" in plan.get("done_phases", []):
            self.log.info("migration %s started replication in an earlier run; resuming it",
                          plan["migration_id"])
        result = summary(engine.start())
        # Where the source's WAL was once replication ran: the checkpoint's position.
        result["source_position"] = engine.position(side="source")
        self.log.info("replication %s: %s", plan["engine"], result)
        return result


class ValidateOperator(MigrationOperator):
    """Compare source and target (count, checksum, exact keys), re-checking after catch-up."""

    template_fields: Sequence[str] = ("max_keys",)

    def __init__(self, *, max_keys: Any = 100, **kwargs: Any):
        super().__init__(**kwargs)
        self.max_keys = max_keys

    def execute(self, context: Context) -> dict[str, Any]:
        from paymigrate.validation import validate

        hook, plan = self.hook(), self.plan(context)
        engine = self.engine(hook, context)
        source = hook.endpoint("source")
        report = validate(source=source, target=hook.endpoint("target"),
                          tables=tables_in_scope(source, plan), max_keys=int(self.max_keys),
                          catch_up=engine.catch_up)
        result = summary(report)
        self.log.info("validation: %s, %s mismatching table(s)", result["status"],
                      sum(t["status"] != "match" for t in result["tables"]))
        return result


class DecideOperator(MigrationOperator):
    """Cutover ready only when every table matched and replication lag is under the threshold."""

    template_fields: Sequence[str] = ("lag_threshold",)

    def __init__(self, *, lag_threshold: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.lag_threshold = lag_threshold

    def execute(self, context: Context) -> dict[str, Any]:
        report = context["ti"].xcom_pull(task_ids="validate")
        bad = [t["table"] for t in report["tables"] if t["status"] != "match"]
        if report["status"] != "match" or bad:
            raise AirflowFailException(f"validation found differences in {len(bad)} table(s): "
                                       f"{', '.join(bad[:20])}{' ...' if len(bad) > 20 else ''}")
        hook = self.hook()
        threshold = float(self.lag_threshold if self.lag_threshold not in (None, "")
                          else hook.config["monitoring/replication-lag-threshold-seconds"])
        lag = summary(self.engine(hook, context).lag())
        if lag.get("seconds") is not None and lag["seconds"] > threshold:
            raise AirflowFailException(f"replication lag {lag['seconds']:.1f}s is above the threshold "
                                       f"{threshold}s: not ready for cutover")
        decision = {"validation": "match", "tables": len(report["tables"]), "lag": lag,
                    "threshold_seconds": threshold}
        self.log.info("cutover ready: %s", decision)
        return decision


class StopReplicationOperator(MigrationOperator):
    """Stop forward replication (idempotent: stopping a stopped engine is a no-op)."""

    def execute(self, context: Context) -> dict[str, Any]:
        hook = self.hook()
        engine = self.engine(hook, context)
        engine.stop()
        status = summary(engine.status())
        self.log.info("replication stopped: %s", status)
        return status


class SaveRollbackStateOperator(MigrationOperator):
    """Write what a rollback needs to know into the rollback bucket before touching anything."""

    def execute(self, context: Context) -> dict[str, Any]:
        hook = self.hook()
        store = hook.checkpoints()
        lock = store.lock()
        scope = migration_scope(store)
        plan = {"migration_id": scope.get("migration_id", "none"),
                "engine": scope.get("engine") or hook.config["workflow/replication-engine"],
                "tables": scope.get("tables", []), "exclude": scope.get("exclude", [])}
        engine = hook.engine(name=plan["engine"], tables=plan["tables"], exclude=plan["exclude"])
        doc = {"lock": dataclasses.asdict(lock) if lock else None,
               "active_writer": hook.config["database/active-writer"], "mode": hook.config["workflow/mode"],
               "plan": plan, "status": summary(engine.status())}
        key = hook.rollback_store().save(migration_id=plan["migration_id"], phase="rollback",
                                         run_id=context["run_id"], doc=doc)
        # The rollback's later steps read this plan (their plan_task), as the migration's read
        # the preflight's.
        return {**plan, "saved": f"s3://{hook.config['storage/rollback-bucket']}/{key}"}


class NotifyFailureOperator(MigrationOperator):
    """On any failure: alert the error topic with a link to the run, mark the lock failed so the
    next run resumes (only a lock this run holds: a run refused as a duplicate must not release
    the active run's lock), then fail, as the state machine's Fail state does, so the run ends
    failed rather than "success" because its alert went out."""

    def __init__(self, *, what: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.what = what

    def execute(self, context: Context) -> None:
        from paymigrate.airflow.callbacks import failed_tasks, run_link

        hook = self.hook()
        failed = failed_tasks(context)
        store = hook.checkpoints()
        lock = store.lock()
        if lock and lock.run_id == context["run_id"]:
            if lock.state == "running":
                store.set_state("failed")
            elif lock.state == "cutting-over":
                # The switch either happened or was aborted back to the source; say which.
                writer = hook.config["database/active-writer"]
                store.set_state("cut-over" if writer == "target" else "cutover-ready")
        where = f" at {', '.join(failed)}" if failed else ""
        hook.publish("error-alerts", subject=f"{self.what} failed ({hook.env})",
                     message=f"{self.what} run {context['run_id']} failed{where}. Fix the cause and "
                             f"trigger it again: it resumes from its last checkpoint. {run_link(context)}")
        raise AirflowFailException(f"{self.what} failed{where}; the error-alerts topic was notified")


def switch_for(hook: MigrationHook, *, engine: Any = None, **limits: Any) -> Any:
    """The :class:`paymigrate.cutover.Switch` the contract describes (router, routes file, DBs)."""
    from pathlib import Path

    from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

    from paymigrate.cutover import Switch
    from paymigrate.db import Endpoint
    from paymigrate.router import RouterAdmin

    cfg = hook.config
    admin = Endpoint.from_secret(SecretsManagerHook(aws_conn_id=hook.aws_conn_id).get_secret_as_dict(
        cfg["router/admin-secret-arn"]), dbname="pgbouncer")
    return Switch(source=hook.endpoint("source"), target=hook.endpoint("target"),
                  router=RouterAdmin(admin), routes_file=Path(cfg["router/databases-file"]),
                  database=cfg["router/database"], engine=engine or hook.engine(), **limits)


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
        from paymigrate.cutover import CutoverAborted, switch_back

        hook = self.hook()
        if hook.config["database/active-writer"] == "source":
            self.log.info("the source is the writer: no cutover to undo, nothing to drain")
            return {"switched": False}
        engine = self.engine(hook, context)
        sw = switch_for(hook, engine=engine, tables=tuple(engine.scope_tables()),
                        max_write_pause=float(self.max_write_pause_ms) / 1000,
                        pause_timeout=float(self.pause_timeout), drain_timeout=float(self.drain_timeout))
        try:
            result = switch_back(sw)
        except CutoverAborted as exc:
            self.log.error("abort: %s", exc.result.abort)
            raise AirflowFailException(str(exc)) from None
        hook.set("database/active-writer", "source")
        self.log.info("writes are back on the source; write pause %.0f ms", result.write_pause_seconds * 1000)
        return {"switched": True, **result.to_dict()}


class RouteToSourceOperator(MigrationOperator):
    """Make sure every client is routed to the source: the route, the canary share of reads, and
    the active-writer parameter; then record the migration as rolled back."""

    def execute(self, context: Context) -> dict[str, Any]:
        from paymigrate.router import read_routes, write_route

        hook = self.hook()
        sw = switch_for(hook, engine=object())
        wanted = sw.route_to(sw.source)
        moved = False
        if read_routes(sw.routes_file).get(sw.database) != wanted:
            # Only a cutover that failed half-way leaves this; PAUSE so no client sees a switch
            # mid-transaction.
            sw.router.pause(sw.database, timeout=30)
            try:
                write_route(sw.routes_file, wanted)
                sw.router.reload()
            finally:
                sw.router.resume(sw.database)
            moved = True
        host, port = sw.router.route(sw.database)
        if (host, port) != (sw.source.host, sw.source.port):
            raise AirflowFailException(f"router sends {sw.database} to {host}:{port}, not the source")
        hook.set("workflow/traffic-split-percentage", 0)
        hook.set("database/active-writer", "source")
        hook.set("workflow/mode", "rollback")
        store = hook.checkpoints()
        if store.lock():
            store.set_state("rolled-back", run_id=context["run_id"])
        return {"route": f"{host}:{port}", "moved": moved}


class UnfreezeSourceOperator(MigrationOperator):
    """Make the source writable again and take its write fence away (idempotent: unfreezing a
    writable source changes nothing). A fence trigger whose table is busy is left open."""

    def execute(self, context: Context) -> dict[str, Any]:
        from paymigrate.freeze import remove_fence, unfreeze

        source = self.hook().endpoint("source")
        result = unfreeze(source)
        left = remove_fence(source)
        return {**dataclasses.asdict(result), "fence_left_on": left}


class CutoverPreflightOperator(MigrationOperator):
    """Refuse a cutover that is not approved, not enabled, not ready, or already done."""

    template_fields: Sequence[str] = ("approved_by", "confirm_environment")

    def __init__(self, *, approved_by: Any, confirm_environment: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.approved_by, self.confirm_environment = approved_by, confirm_environment

    def execute(self, context: Context) -> dict[str, Any]:
        hook = self.hook()
        cfg = hook.config
        if self.confirm_environment != hook.env:
            raise AirflowFailException(f"confirm_environment {self.confirm_environment!r} does not name "
                                       f"this environment ({hook.env!r}): cutover not approved")
        if not cfg["workflow/enable-cutover"]:
            raise AirflowFailException(f"/migration/{hook.env}/workflow/enable-cutover is false")
        if cfg["database/active-writer"] != "source":
            raise AirflowFailException("the target is already the writer: nothing to cut over")
        store = hook.checkpoints()
        lock = store.lock()
        if lock is None or lock.state != "cutover-ready":
            raise AirflowFailException(
                f"migration is not cutover-ready (lock: {lock.state if lock else 'none'}): run "
                "payment_migration to its end first")
        # The migration's own scope: a cutover checks and switches exactly what was replicated.
        scope = migration_scope(store)
        engine = hook.engine(name=scope.get("engine"), tables=scope.get("tables"), exclude=scope.get("exclude"))
        status = summary(engine.status())
        if status["state"] != "streaming":
            raise AirflowFailException(f"replication is {status['state']}, not streaming: {status}")
        store.set_state("cutting-over", run_id=context["run_id"])
        self.log.info("cutover of migration %s approved by %s", lock.migration_id, self.approved_by)
        return {"migration_id": lock.migration_id, "engine": scope.get("engine") or cfg[
                    "workflow/replication-engine"], "approved_by": self.approved_by,
                "tables": scope.get("tables") or [], "exclude": scope.get("exclude") or []}


class ShiftReadTrafficOperator(MigrationOperator):
    """The read canary: raise the share of reads sent to the target step by step, and after
    each step's soak check the alarms and lag; any alarm puts the share back to 0 and fails."""

    template_fields: Sequence[str] = ("steps", "soak_seconds", "lag_threshold")

    def __init__(self, *, steps: Any, soak_seconds: Any, lag_threshold: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.steps, self.soak_seconds, self.lag_threshold = steps, soak_seconds, lag_threshold

    def execute(self, context: Context) -> list[dict[str, Any]]:
        import time

        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from paymigrate import names

        hook = self.hook()
        engine = self.engine(hook, context)
        threshold = float(self.lag_threshold if self.lag_threshold not in (None, "")
                          else hook.config["monitoring/replication-lag-threshold-seconds"])
        cloudwatch = AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="cloudwatch").conn
        prefix = f"{names.PROJECT}-"
        seen = []
        for pct in sorted(int(p) for p in self.steps):
            hook.set("workflow/traffic-split-percentage", pct)
            self.log.info("reads to the target: %d%%; soaking %ss", pct, self.soak_seconds)
            time.sleep(float(self.soak_seconds))
            alarms = [a["AlarmName"] for a in cloudwatch.describe_alarms(
                AlarmNamePrefix=prefix, StateValue="ALARM").get("MetricAlarms", [])
                if a["AlarmName"].endswith(f"-{hook.env}")]
            lag = summary(engine.lag())
            step = {"percent": pct, "alarms": alarms, "lag": lag}
            seen.append(step)
            if alarms or (lag.get("seconds") is not None and lag["seconds"] > threshold):
                hook.set("workflow/traffic-split-percentage", 0)
                raise AirflowFailException(f"canary at {pct}%: alarms {alarms or 'none'}, lag {lag}; "
                                           "reads are all back on the source")
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
        from paymigrate.cutover import CutoverAborted, switch_writes

        hook = self.hook()
        engine = self.engine(hook, context)
        sw = switch_for(hook, engine=engine, tables=tuple(engine.scope_tables()),
                        max_write_pause=float(self.max_write_pause_ms) / 1000,
                        pause_timeout=float(self.pause_timeout), drain_timeout=float(self.drain_timeout),
                        sequence_gap=int(self.sequence_gap))
        try:
            result = switch_writes(sw, fail_at=self.drill_fail_at or None)
        except CutoverAborted as exc:
            self.log.error("cutover aborted at %s%s; abort actions: %s", exc.result.failed_step,
                           " (write pause budget spent)" if exc.result.budget_exceeded else "",
                           exc.result.abort)
            # The abort keeps forward replication: the migration is still ready for a cutover.
            hook.checkpoints().set_state("cutover-ready", run_id=context["run_id"])
            context["ti"].xcom_push(key="aborted", value=exc.result.to_dict())
            if self.drill_fail_at:
                record_drill(hook.checkpoints(), run_id=context["run_id"], result=exc.result)
            raise AirflowFailException(str(exc)) from None
        for step, seconds in result.steps.items():
            self.log.info("  %-15s %7.1f ms", step, seconds * 1000)
        self.log.info("write pause (PAUSE to RESUME): %.1f ms of a %.0f ms budget",
                      result.write_pause_seconds * 1000, sw.max_write_pause * 1000)
        hook.set("database/active-writer", "target")
        hook.set("workflow/mode", "cutover")
        return result.to_dict()


def record_drill(store: Any, *, run_id: str, result: Any) -> None:
    """Keep a rehearsal's write pause: the next cutover's approval shows the drills' median."""
    from paymigrate import approval
    from paymigrate.checkpoints import now

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
        switched = context["ti"].xcom_pull(task_ids=self.switch_task) or {}
        engine = self.engine(self.hook(), context)
        result = engine.attach_reverse(from_position=switched.get("reverse_position"))
        self.log.info("reverse replication %s from %s", result.action, switched.get("reverse_position"))
        return summary(result)


class ValidateNewWriterOperator(ValidateOperator):
    """After the cutover: validate the new writer against the old one (which follows it through
    reverse replication); on a mismatch, alert the error topic with the keys and what to do."""

    def execute(self, context: Context) -> dict[str, Any]:
        from paymigrate.after_switch import mismatch_alert, validate_new_writer

        hook, plan = self.hook(), self.plan(context)
        source = hook.endpoint("source")
        report = summary(validate_new_writer(
            new_writer=hook.endpoint("target"), old_writer=source, engine=self.engine(hook, context),
            tables=tables_in_scope(source, plan), max_keys=int(self.max_keys)))
        if report["status"] != "match":
            subject, message = mismatch_alert(report, env=hook.env, run_id=context["run_id"])
            hook.publish("error-alerts", subject=subject, message=message)
            context["ti"].xcom_push(key="report", value=report)
            raise AirflowFailException(subject)
        self.log.info("new writer matches the old one: %d table(s)", len(report["tables"]))
        return report
