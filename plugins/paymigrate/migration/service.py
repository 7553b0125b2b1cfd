"""The migration's phases as plain Python: what each DAG task (and each caller) asks for.

:class:`MigrationService` holds every decision the workflows make: which engine and tables a
run acts on, when the migration lock moves (through :mod:`paymigrate.migration.lock`), when a
step refuses (:class:`~paymigrate.errors.Refused`), what is checkpointed. It reaches AWS only
through a :class:`Platform` (in Airflow the provider-hook-based ``MigrationHook``), so nothing
here imports Airflow. Results are JSON-ready dicts: they go to XCom and checkpoints, and carry
positions, counts and keys, never credentials or row values.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from paymigrate import scope
from paymigrate.aws import names
from paymigrate.aws.checkpoints import LAST_VALIDATION, CheckpointStore
from paymigrate.cutover.read_canary import read_figures, verdict
from paymigrate.db import connection
from paymigrate.errors import BadInput, Refused
from paymigrate.inputs import check_source_tables
from paymigrate.migration import history
from paymigrate.migration.lock import LockState
from paymigrate.migration.plan import Plan, lag_threshold, summary
from paymigrate.migration.platform import Platform
from paymigrate.replication import dms_status, parity
from paymigrate.replication.ddl import SchemaDrift, raise_for_drift
from paymigrate.replication.dms import DmsEngine
from paymigrate.replication.preflight import wal_retention

log = logging.getLogger(__name__)

PHASES = ("preparation", "replication", "validation")  # the migration's checkpoints, in order


class NewWriterMismatch(Refused):
    """After the cutover the new writer and the old one differ; ``report`` names the keys."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def environment_alarms(cloudwatch: Any, env: str) -> list[str]:
    """The names of this environment's alarms in ALARM: every alarm infra makes is named
    ``paymigrate-<role>-<env>`` (:func:`paymigrate.aws.names.resource_name`). The state is checked
    here too: moto ignores ``StateValue`` beside a name prefix."""
    pages = cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=f"{names.PROJECT}-", StateValue="ALARM")
    return [a["AlarmName"] for page in pages for a in page.get("MetricAlarms", [])
            if a["AlarmName"].endswith(f"-{env}") and a.get("StateValue") == "ALARM"]


class MigrationService:
    def __init__(self, platform: Platform, *, sleep: Callable[[float], None] = time.sleep):
        self.platform = platform
        self.sleep = sleep

    # ---- helpers -------------------------------------------------------------------------------
    @property
    def config(self) -> Mapping[str, Any]:
        return self.platform.config

    def engine(self, plan: Plan) -> Any:
        return self.platform.engine(name=plan.engine, tables=list(plan.tables),
                                    exclude=list(plan.exclude))

    def lag_threshold(self, value: Any) -> float:
        return lag_threshold(value, self.config)

    def migration_plan(self, store: CheckpointStore) -> Plan | None:
        """The running migration's plan, from its latest checkpoint: the steps after it (cutover,
        rollback) act on what was replicated, not on today's contract defaults."""
        lock = store.lock()
        if lock is None:
            return None
        default = self.config["workflow/replication-engine"]
        for phase in reversed(PHASES):
            doc = store.load(migration_id=lock.migration_id, phase=phase)
            if doc and doc.get("plan"):
                return Plan.of({**doc["plan"], "migration_id": lock.migration_id,
                                "engine": doc["plan"].get("engine") or default})
        return Plan(migration_id=lock.migration_id, engine=default)

    def rollback_plan(self, store: CheckpointStore) -> Plan:
        """What a rollback acts on: the migration's plan, or the contract's engine when no
        migration ran."""
        return self.migration_plan(store) or Plan(
            migration_id="none", engine=self.config["workflow/replication-engine"])

    def tables_in_scope(self, plan: Plan) -> list[str] | None:
        """The tables validation compares for ``plan``: the scope's parents (``schema.name``, a
        partitioned table through its parent); None for all."""
        if not plan.tables and not plan.exclude:
            return None
        with connection(self.platform.endpoint("source")) as conn, conn.cursor() as cur:
            found = scope.read(cur, tables=plan.tables, exclude=plan.exclude)
        if found.unknown:
            raise Refused(f"tables not found on the source: {', '.join(found.unknown)}")
        return found.parent_names()

    # ---- payment_migration ---------------------------------------------------------------------
    def preflight(self, *, engine: str, tables: Sequence[str], exclude: Sequence[str], dry_run: bool,
                  takeover: bool, run_id: str, dag_id: str) -> dict[str, Any] | None:
        """Every check before any side effect, then the lock. Refuses a disabled flag, what the
        engine's preflight finds and a migration another run drives. None after a dry run."""
        cfg, env = self.config, self.platform.env
        if not cfg["workflow/enable-replication"]:
            raise Refused(f"/migration/{env}/workflow/enable-replication is false: replication "
                          "may not start")
        name = cfg["workflow/replication-engine"] if engine in ("", "from-contract") else engine
        tables, exclude = list(tables or []), list(exclude or [])
        store = self.platform.checkpoints()
        lock = store.lock()
        resuming = bool(lock and lock.state in (LockState.RUNNING, LockState.FAILED)
                        and lock.run_id != run_id)
        try:  # every engine: both read the same scope (DMS's task mappings are made from it)
            check_source_tables(self.platform.endpoint("source"), tables=tables, exclude=exclude)
        except BadInput as exc:
            raise Refused(f"preflight refused: {exc}") from None
        eng = self.platform.engine(name=name, tables=tables, exclude=exclude)
        source = self.platform.endpoint("source").safe()
        target = self.platform.endpoint("target").safe()
        log.info("preflight of %s replication from %s to %s", name, source, target)
        # The engine knows a resumed migration (its subscription exists) and then accepts a
        # target that is no longer empty.
        problems = list(eng.preflight())
        room, wal_warnings = wal_retention(self.platform.endpoint("source"))
        log.info("source WAL retention: %s", room)
        for warning in wal_warnings:
            log.warning("preflight: %s", warning)
        if problems:
            raise Refused(f"preflight refused {len(problems)} problem(s): "
                          + "; ".join(str(p) for p in problems))
        done = [p for p in PHASES if store.load(migration_id=lock.migration_id, phase=p)] \
            if resuming and lock else []
        if dry_run:
            log.info("dry run: every check passed; nothing was started or written")
            return None
        lock = store.acquire(run_id=run_id, dag_id=dag_id, takeover=takeover)
        return {"migration_id": lock.migration_id, "engine": name, "tables": tables,
                "exclude": exclude, "resumed": resuming, "done_phases": done, "env": env,
                "source": source, "target": target, "wal_retention": room.to_dict()}

    def checkpoint(self, plan: Mapping[str, Any], *, phase: str, results: Mapping[str, Any],
                   run_id: str, lock_state: LockState | str | None = None) -> str:
        """Save one phase's checkpoint (the plan and ``results`` by task) and move the lock."""
        p = Plan.of(plan)
        store = self.platform.checkpoints()
        key = store.save(migration_id=p.migration_id, phase=phase, run_id=run_id,
                         doc={"engine": p.engine, "plan": dict(plan), **results})
        if lock_state:
            store.set_state(lock_state, run_id=run_id)
        return f"s3://{self.config['storage/checkpoints-bucket']}/{key}"

    def start_replication(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """Start (or resume) replication; the engine never makes a second slot, subscription or
        task. The result carries the source's WAL position once replication ran; an initial
        copy's progress per table goes to the checkpoints as it runs (the Migration page)."""
        p = Plan.of(plan)
        engine = self.engine(p)
        if "replication" in plan.get("done_phases", []):
            log.info("migration %s started replication in an earlier run; resuming it", p.migration_id)
        store = self.platform.checkpoints()
        result = summary(engine.start(
            on_progress=lambda figures: history.record_copy(store, p.migration_id, figures)))
        result["source_position"] = engine.position(side="source")
        return result

    def validate(self, plan: Mapping[str, Any], *, max_keys: int, run_id: str = "",
                 dag_id: str = "payment_migration") -> dict[str, Any]:
        """Compare source and target (count, checksum, exact keys), re-checking after catch-up;
        the report goes into the validation history."""
        from paymigrate.validation import validate

        p = Plan.of(plan)
        engine = self.engine(p)
        report = summary(validate(source=self.platform.endpoint("source"),
                                  target=self.platform.endpoint("target"),
                                  tables=self.tables_in_scope(p), max_keys=max_keys,
                                  catch_up=engine.catch_up))
        report["label"] = "paymigrate: row count, checksum and exact keys, source against target"
        own = engine.own_validation()
        if own is not None:  # the engine's verdict beside ours, labelled; ours decides
            report["engine_validation"] = summary(own)
        history.record_validation(self.platform.checkpoints(), report, where="migration",
                                  run_id=run_id, dag_id=dag_id)
        return report

    def decide(self, plan: Mapping[str, Any], *, report: Mapping[str, Any],
               lag_threshold: Any = None) -> dict[str, Any]:
        """Cutover ready only when every table matched and the lag is under the threshold."""
        bad = [t["table"] for t in report["tables"] if t["status"] != "match"]
        if report["status"] != "match" or bad:
            raise Refused(f"validation found differences in {len(bad)} table(s): "
                          f"{', '.join(bad[:20])}{' ...' if len(bad) > 20 else ''}")
        threshold = self.lag_threshold(lag_threshold)
        lag = summary(self.engine(Plan.of(plan)).lag())
        history.record_lag(self.platform.checkpoints(), Plan.of(plan).migration_id, lag, where="decide")
        if lag.get("seconds") is not None and lag["seconds"] > threshold:
            raise Refused(f"replication lag {lag['seconds']:.1f}s is above the threshold "
                          f"{threshold}s: not ready for cutover")
        # The schema copy left them empty; the read canary may read them on the target.
        refreshed = parity.refresh_materialized_views(source=self.platform.endpoint("source"),
                                                      target=self.platform.endpoint("target"))
        return {"validation": "match", "tables": len(report["tables"]), "lag": lag,
                "threshold_seconds": threshold, "materialized_views_refreshed": refreshed}

    def fail_run(self, *, what: str, run_id: str, failed_tasks: Sequence[str], link: str) -> str:
        """A run failed: move the lock this run holds (a run refused as a duplicate must not
        touch the active run's lock), alert the error topic with the replication slots left
        behind (their WAL and how to drop them), and return the failure message."""
        from paymigrate.replication.retention import slot_report

        details = slot_report(self.platform.endpoint, names.replication_name(self.platform.env))
        store = self.platform.checkpoints()
        lock = store.lock()
        if lock and lock.run_id == run_id:
            if lock.state is LockState.RUNNING:
                store.set_state(LockState.FAILED)
            elif lock.state is LockState.CUTTING_OVER:
                # The switch either happened or was aborted back to the source; say which.
                cut = self.config["database/active-writer"] == "target"
                store.set_state(LockState.CUT_OVER if cut else LockState.CUTOVER_READY)
        where = f" at {', '.join(failed_tasks)}" if failed_tasks else ""
        self.platform.publish(
            "error-alerts", subject=f"{what} failed ({self.platform.env})",
            message=f"{what} run {run_id} failed{where}. Fix the cause and trigger it again: it "
                    f"resumes from its last checkpoint. {link}" + (f"\n\n{details}" if details else ""))
        return f"{what} failed{where}; the error-alerts topic was notified"

    # ---- payment_rollback ----------------------------------------------------------------------
    def save_rollback_state(self, *, run_id: str) -> dict[str, Any]:
        """Write what a rollback needs to know into the rollback bucket before touching anything;
        return the migration's plan (the rollback's later steps act on it) and where it went."""
        store = self.platform.checkpoints()
        lock = store.lock()
        plan = self.rollback_plan(store)
        doc = {"lock": dataclasses.asdict(lock) if lock else None,
               "active_writer": self.config["database/active-writer"],
               "mode": self.config["workflow/mode"], "plan": plan.to_dict(),
               "status": summary(self.engine(plan).status())}
        key = self.platform.rollback_store().save(migration_id=plan.migration_id, phase="rollback",
                                                  run_id=run_id, doc=doc)
        return {**plan.to_dict(), "saved": f"s3://{self.config['storage/rollback-bucket']}/{key}"}

    def switch_back(self, plan: Mapping[str, Any], *, max_write_pause: float, pause_timeout: float,
                    drain_timeout: float) -> dict[str, Any]:
        """After a cutover: drain reverse replication and move writes back to the source (raises
        :class:`~paymigrate.cutover.switch.CutoverAborted` with writes left on the target). Before a
        cutover there is nothing to drain: ``{"switched": False}``."""
        from paymigrate.cutover.switch import routed_to, switch_back

        routers, target = self.platform.routers(), self.platform.endpoint("target")
        on_target = routed_to(routers, self.config["router/database"], target)
        if self.config["database/active-writer"] == "source":
            if not on_target:
                log.info("the source is the writer and every router sends writes there: no "
                         "cutover to undo, nothing to drain")
                return {"switched": False}
            # A switch that died past its repoint: the parameter was never set, but clients may
            # have written on the target. Only reverse replication carries those back.
            log.warning("the contract says the source writes, yet routers %s send writes to the "
                        "target: switching back with reverse replication drained first",
                        ", ".join(on_target))
        engine = self.engine(Plan.of(plan))
        result = switch_back(self.switch(engine, max_write_pause=max_write_pause,
                                         pause_timeout=pause_timeout, drain_timeout=drain_timeout))
        self.platform.set("database/active-writer", "source")
        return {"switched": True, **result.to_dict()}

    def stop_replication(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """Stop forward replication (stopping a stopped engine is a no-op); its status after."""
        engine = self.engine(Plan.of(plan))
        engine.stop()
        return summary(engine.status())

    # ---- the dms branch of payment_migration and payment_rollback ------------------------------
    def _dms(self, plan: Mapping[str, Any]) -> DmsEngine:
        engine = self.engine(Plan.of(plan))
        if not isinstance(engine, DmsEngine):
            raise Refused(f"this step drives a DMS task, but migration {plan.get('migration_id')} "
                          f"replicates with {engine.engine}")
        return engine

    def prepare_replication_task(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """Everything before the DMS task starts (:meth:`DmsEngine.prepare_start`: target schema,
        drain marker, slot, mappings from the scope), and the task's ARN and start type (None:
        it runs already) for the provider's ``DmsStartTaskOperator``."""
        return self._dms(plan).prepare_start().to_dict()

    def replication_task_stop(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """What stopping the forward DMS task takes, from its status
        (:func:`~paymigrate.replication.dms_status.stop_action`: ``stop``, ``wait`` or ``none``),
        for the provider's ``DmsStopTaskOperator`` and sensor."""
        task = self._dms(plan).task()
        action = dms_status.stop_action(task["Status"])
        log.info("DMS task %s is %s: %s", task["ReplicationTaskIdentifier"], task["Status"],
                 {"stop": "stop it", "wait": "wait until it is stopped",
                  "none": "nothing to stop"}[action.value])
        return {"task_arn": task["ReplicationTaskArn"], "status": task["Status"],
                "action": action.value}

    def route_to_source(self, *, run_id: str) -> dict[str, Any]:
        """Every client to the source: the route, the canary share of reads and the active-writer
        parameter; then the migration is rolled back."""
        from paymigrate.cutover.switch import route_writes_to

        cfg = self.config
        source = self.platform.endpoint("source")
        moved = route_writes_to(self.platform.routers(), cfg["router/database"], source)
        self.platform.set("workflow/traffic-split-percentage", 0)
        self.platform.set("database/active-writer", "source")
        self.platform.set("workflow/mode", "rollback")
        store = self.platform.checkpoints()
        if store.lock():
            store.set_state(LockState.ROLLED_BACK, run_id=run_id)
        return {"route": f"{source.host}:{source.port}", "moved": moved}

    def rollback_step(self, step: str, *, run_id: str, max_write_pause_ms: Any = 10000,
                      pause_timeout_seconds: Any = 10, drain_timeout_seconds: Any = 30) -> dict[str, Any]:
        """One step of the rollback state machine that needs the databases and the routers (its
        rollback-steps Lambda), the same call as the ``payment_rollback`` task of that id; the
        limits are the DAG's Params, with its defaults."""
        if step == "stop_replication":  # the machine's way for an engine other than dms
            return self.stop_replication(self.rollback_plan(self.platform.checkpoints()).to_dict())
        if step == "switch_writes_to_source":
            plan = self.rollback_plan(self.platform.checkpoints())
            limits = {}
            for name, value, low, high in (("max_write_pause_ms", max_write_pause_ms, 50, 600000),
                                           ("pause_timeout_seconds", pause_timeout_seconds, 0.5, 300),
                                           ("drain_timeout_seconds", drain_timeout_seconds, 1, 3600)):
                try:
                    limits[name] = float(value)
                except (TypeError, ValueError):
                    raise BadInput(name, value, "not a number") from None
                if not low <= limits[name] <= high:
                    raise BadInput(name, value, f"outside {low}..{high}")
            return self.switch_back(plan.to_dict(), max_write_pause=limits["max_write_pause_ms"] / 1000,
                                    pause_timeout=limits["pause_timeout_seconds"],
                                    drain_timeout=limits["drain_timeout_seconds"])
        if step == "route_traffic_to_source":
            return self.route_to_source(run_id=run_id)
        if step == "unfreeze_source":
            return self.unfreeze_source()
        raise BadInput("step", step, "not switch_writes_to_source, stop_replication, "
                                     "route_traffic_to_source or unfreeze_source")

    def unfreeze_source(self) -> dict[str, Any]:
        """The source writable and its fence gone (idempotent). A fence trigger whose table is
        busy is left open, and named."""
        from paymigrate.cutover.freeze import remove_fence, unfreeze

        source = self.platform.endpoint("source")
        result = unfreeze(source)
        return {**dataclasses.asdict(result), "fence_left_on": remove_fence(source)}

    # ---- payment_cutover -----------------------------------------------------------------------
    def cutover_preflight(self, *, approved_by: str, confirm_environment: str,
                          run_id: str) -> dict[str, Any]:
        """Refuse a cutover that is not approved, not enabled, not ready, or already done; else
        the lock moves to cutting-over and the migration's plan is returned."""
        cfg, env = self.config, self.platform.env
        if confirm_environment != env:
            raise Refused(f"confirm_environment {confirm_environment!r} does not name this "
                          f"environment ({env!r}): cutover not approved")
        if not cfg["workflow/enable-cutover"]:
            raise Refused(f"/migration/{env}/workflow/enable-cutover is false")
        if cfg["database/active-writer"] != "source":
            raise Refused("the target is already the writer: nothing to cut over")
        store = self.platform.checkpoints()
        lock = store.lock()
        if lock is None or lock.state is not LockState.CUTOVER_READY:
            raise Refused(f"migration is not cutover-ready (lock: {lock.state if lock else 'none'}): "
                          "run payment_migration to its end first")
        # The migration's own scope: a cutover checks and switches exactly what was replicated.
        plan = self.migration_plan(store)
        assert plan is not None  # a lock exists
        engine = self.engine(plan)
        try:
            raise_for_drift(engine)  # named, before the vaguer "not streaming" it causes
        except SchemaDrift as exc:
            raise Refused(str(exc)) from None
        status = summary(engine.status())
        if status["state"] != "streaming":
            raise Refused(f"replication is {status['state']}, not streaming: {status}")
        self._require_parity(engine)
        store.set_state(LockState.CUTTING_OVER, run_id=run_id)
        log.info("cutover of migration %s approved by %s", plan.migration_id, approved_by)
        return {**plan.to_dict(), "approved_by": approved_by}

    def _require_parity(self, engine: Any) -> None:
        """Materialized views filled from the target's rows now (outside the write pause), then
        the target must have every object the clients will need there, or no cutover."""
        source, target = self.platform.endpoint("source"), self.platform.endpoint("target")
        parity.refresh_materialized_views(source=source, target=target)
        found = parity.check(source=source, target=target, tables=engine.scope_tables())
        if found:
            raise Refused(f"the target's schema lacks {len(found)} thing(s) the source has: "
                          + "; ".join(d.line() for d in found[:20])
                          + (" ..." if len(found) > 20 else ""))

    def shift_read_traffic(self, plan: Mapping[str, Any], *, steps: Sequence[int], soak_seconds: float,
                           lag_threshold: Any = None) -> list[dict[str, Any]]:
        """The read canary: raise the share of reads sent to the target step by step; after each
        step's soak, any alarm of this environment (:func:`environment_alarms`), a lag over the
        threshold, or the application's reads through the target route (as it reported them to
        CloudWatch) over a limit of the contract (error rate ``rollback/error-threshold-percentage``,
        p99 ``workflow/canary-max-p99-ms``, stale reads
        ``workflow/canary-max-stale-read-percentage``) puts the share back to 0 and refuses."""
        engine = self.engine(Plan.of(plan))
        threshold = self.lag_threshold(lag_threshold)
        limits = {"max_error_rate": float(self.config["rollback/error-threshold-percentage"]),
                  "max_p99_ms": float(self.config["workflow/canary-max-p99-ms"]),
                  "max_stale_rate": float(self.config["workflow/canary-max-stale-read-percentage"])}
        cloudwatch = self.platform.cloudwatch()
        seen = []
        for pct in sorted(int(p) for p in steps):
            self.platform.set("workflow/traffic-split-percentage", pct)
            log.info("reads to the target: %d%%; soaking %ss", pct, soak_seconds)
            since = datetime.now(UTC)
            self.sleep(float(soak_seconds))
            reads = read_figures(cloudwatch, self.platform.env, "target", since=since)
            reads_ok = verdict(reads, percent=pct, **limits)
            log.info("reads through the target route at %d%%: %s", pct, reads.to_dict())
            alarms = environment_alarms(cloudwatch, self.platform.env)
            lag = summary(engine.lag())
            history.record_lag(self.platform.checkpoints(), Plan.of(plan).migration_id, lag,
                               where=f"canary {pct}%")
            seen.append({"percent": pct, "alarms": alarms, "lag": lag, "reads": reads.to_dict()})
            if alarms or (lag.get("seconds") is not None and lag["seconds"] > threshold) or not reads_ok.ok:
                self.platform.set("workflow/traffic-split-percentage", 0)
                raise Refused(f"canary at {pct}%: alarms {alarms or 'none'}, lag {lag}"
                              f"{'; ' + reads_ok.reason if not reads_ok.ok else ''}; reads are "
                              "all back on the source")
        return seen

    def switch(self, engine: Any, **limits: Any) -> Any:
        """The :class:`paymigrate.cutover.switch.Switch` the contract describes, on the migration's
        tables (what is fenced and checked)."""
        from paymigrate.cutover.switch import Switch

        cfg = self.config
        return Switch(source=self.platform.endpoint("source"), target=self.platform.endpoint("target"),
                      routers=self.platform.routers(), database=cfg["router/database"], engine=engine,
                      tables=tuple(engine.scope_tables()), **limits)

    def switch_writes(self, plan: Mapping[str, Any], *, run_id: str, max_write_pause: float,
                      pause_timeout: float, drain_timeout: float, sequence_gap: int,
                      fail_at: str | None = None) -> Any:
        """The write switch (:func:`paymigrate.cutover.switch.switch_writes`), then the contract says
        the target writes. On :class:`~paymigrate.cutover.switch.CutoverAborted` the lock goes back to
        cutover-ready (forward replication was kept) and the error is raised on."""
        from paymigrate.cutover.switch import CutoverAborted, switch_writes

        sw = self.switch(self.engine(Plan.of(plan)), max_write_pause=max_write_pause,
                         pause_timeout=pause_timeout, drain_timeout=drain_timeout,
                         sequence_gap=sequence_gap)
        try:
            result = switch_writes(sw, fail_at=fail_at or None)
        except CutoverAborted:
            self.platform.checkpoints().set_state(LockState.CUTOVER_READY, run_id=run_id)
            raise
        self.platform.set("database/active-writer", "target")
        self.platform.set("workflow/mode", "cutover")
        return result

    def attach_reverse(self, plan: Mapping[str, Any], *, from_position: str | None) -> dict[str, Any]:
        """Subscribe the source to the reverse slot the switch made (idempotent)."""
        return summary(self.engine(Plan.of(plan)).attach_reverse(from_position=from_position))

    def validate_new_writer(self, plan: Mapping[str, Any], *, max_keys: int,
                            run_id: str) -> dict[str, Any]:
        """The new writer against the old one; a mismatch alerts the error topic with the keys
        and what to do, then raises :class:`NewWriterMismatch`."""
        from paymigrate.cutover.after_switch import mismatch_alert, validate_new_writer

        p = Plan.of(plan)
        report = summary(validate_new_writer(
            new_writer=self.platform.endpoint("target"), old_writer=self.platform.endpoint("source"),
            engine=self.engine(p), tables=self.tables_in_scope(p), max_keys=max_keys))
        history.record_validation(self.platform.checkpoints(), report, where="new writer",
                                  run_id=run_id, dag_id="payment_cutover")
        if report["status"] != "match":
            subject, message = mismatch_alert(report, env=self.platform.env, run_id=run_id)
            self.platform.publish("error-alerts", subject=subject, message=message)
            raise NewWriterMismatch(subject, report)
        return report

    # ---- validation: the Lambda and the scheduled DAG ------------------------------------------
    def run_validation(self, *, tables: Sequence[str] | None = None,
                       schemas: Sequence[str] | None = None, max_keys: int = 100,
                       validate_fn: Callable[..., Any] | None = None) -> dict[str, Any]:
        """Validate, publish the metrics, alert on a discrepancy or on an error; return the
        result whose ``ok`` field the migration state machine's ``decide`` reads."""
        from paymigrate.aws.statemachines import VALIDATION_OK_FIELD
        from paymigrate.errors import ValidationError
        from paymigrate.validation import metrics, publish, validate

        env = self.platform.env
        source, target = self.platform.endpoint("source"), self.platform.endpoint("target")
        try:
            report = (validate_fn or validate)(source=source, target=target, max_keys=max_keys,
                                               tables=tables, schemas=schemas)
        except ValidationError as exc:
            log.error("validation could not run: %s", exc)
            metrics.put(self.platform.cloudwatch(), metrics.error_data(env))
            self._alert_validation(f"paymigrate {env}: validation could not run",
                                   {"env": env, "status": "error", "error": str(exc)})
            return {VALIDATION_OK_FIELD: False, "status": "error", "error": str(exc), "mismatches": None}
        metrics.put(self.platform.cloudwatch(),
                    metrics.run_data(env, publish.figures(report), seconds=report.seconds))
        result = publish.trimmed(report, keys=min(publish.ALERT_KEYS, report.max_keys))
        if not result[VALIDATION_OK_FIELD]:
            log.warning("validation found %d differing rows in %s", report.mismatches,
                        ", ".join(report.mismatched_tables))
            self._alert_validation(f"paymigrate {env}: {report.mismatches} rows differ between "
                                   "source and target", {"env": env, **result})
        return result

    def _alert_validation(self, subject: str, body: Mapping[str, Any]) -> None:
        self.platform.publish("validation-alerts", subject=subject,
                              message=json.dumps(body, indent=2, default=str))

    def validation_due(self, *, force: bool, now: datetime | None = None) -> bool:
        """Whether the scheduled validation runs now: its flag on, and ``force`` or its interval
        passed since the last one."""
        cfg = self.config
        if not cfg["workflow/enable-validation"]:
            log.info("/migration/%s/workflow/enable-validation is false: skipped", self.platform.env)
            return False
        if force:
            return True
        last = self.platform.checkpoints().get_doc(LAST_VALIDATION)
        interval = cfg["monitoring/validation-interval-minutes"]
        if last:
            age = ((now or datetime.now(UTC)) - datetime.fromisoformat(last["finished"])).total_seconds() / 60
            if age < interval:
                log.info("last validation %.1f min ago, interval %d min: not due", age, interval)
                return False
        return True

    def tables_to_validate(self, tables: Sequence[str] | None) -> list[str]:
        from paymigrate.validation import list_tables

        return list_tables(source=self.platform.endpoint("source"), tables=list(tables or []) or None)

    def validate_table(self, table: str, *, max_keys: int) -> dict[str, Any]:
        """One table; under live replication each difference is re-checked once the target has
        caught up (with replication stopped there is nothing to wait for)."""
        from paymigrate.validation import validate_table

        engine = self.platform.engine()
        live = self.config["database/active-writer"] == "source" and engine.status().running
        return summary(validate_table(source=self.platform.endpoint("source"),
                                      target=self.platform.endpoint("target"), table=table,
                                      max_keys=max_keys, catch_up=engine.catch_up if live else None))

    def publish_validation(self, results: Sequence[Mapping[str, Any]], *, run_id: str) -> dict[str, Any]:
        """The tables' results as metrics (the same schema as the Lambda's) and as the last
        validation's summary (keys, never values)."""
        from paymigrate.validation import metrics

        tables = [metrics.TableFigures.of(r) for r in results]
        metrics.put(self.platform.cloudwatch(), metrics.run_data(self.platform.env, tables))
        result = {"run_id": run_id, "finished": datetime.now(UTC).isoformat(), "tables": len(results),
                  "rows_checked": sum(t.rows_checked for t in tables),
                  "mismatches": sum(t.mismatches for t in tables),
                  "mismatched": [{k: r.get(k) for k in ("table", "missing", "extra", "different",
                                                        "source_surplus", "target_surplus")}
                                 for r in results if r["status"] != "match"]}
        store = self.platform.checkpoints()
        store.put_doc(LAST_VALIDATION, result)
        # The tables ran as mapped tasks, maybe in parallel: "seconds" is their work, summed.
        history.record_validation(store, {**result, "seconds": round(sum(t.seconds for t in tables), 3),
                                          "tables_checked": len(results), "results": list(results)},
                                  where="scheduled", run_id=run_id, dag_id="payment_validation")
        return result

    def alert_validation(self, result: Mapping[str, Any]) -> str:
        """``match``, or ``mismatch`` after alerting the validation-alerts topic with the keys."""
        if not result["mismatched"]:
            return "match"
        tables = ", ".join(m["table"] for m in result["mismatched"])
        self._alert_validation(f"Validation mismatch ({self.platform.env}): {tables}", result)
        return "mismatch"
