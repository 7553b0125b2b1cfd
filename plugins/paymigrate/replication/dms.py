"""AWS DMS (full-load-and-cdc) behind the engine interface, on injected boto3 clients.

No Airflow here: the Airflow side passes ``DmsHook(aws_conn_id=...).conn`` and
``AwsBaseHook(client_type="cloudwatch").conn``; plain Python gets them from
:func:`paymigrate.aws.client`. Never the provider's create/delete operators or boto waiters: they
wait forever against moto, whose tasks never reach the states they wait for; every wait here
polls with a deadline.

What DMS cannot say comes from the databases when ``source``/``target`` endpoints are given:
positions (``pg_current_wal_lsn``), the drain (a marker row written on the publisher and waited for
on the subscriber: :mod:`paymigrate.replication.dms_drain`) and sequences, which DMS does not carry
either. DMS reads a logical slot it does not create: each task's source endpoint names one
(:func:`paymigrate.aws.names.dms_slot_name`), which :meth:`DmsEngine.start` makes for the forward task
and :meth:`DmsEngine.capture_reverse` for the reverse one, inside the cutover's pause, so the
reverse task starts where the target was while writes were held, and no write made on the target
after RESUME escapes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError
from psycopg2.extensions import cursor as Cursor

from paymigrate.aws import contract
from paymigrate.db import Endpoint, connection
from paymigrate.errors import ReplicationError
from paymigrate.replication import dms_checks, dms_drain, dms_status, dms_task, schema
from paymigrate.replication import preflight as pf
from paymigrate.replication import sequences as seqs

if TYPE_CHECKING:
    from paymigrate.replication.ddl import Drift

from paymigrate.replication.base import (
    Direction,
    FullLoad,
    Lag,
    Problem,
    ProgressSink,
    ReplicationStatus,
    Side,
    StartResult,
    check_direction,
    check_side,
    lsn_to_int,
)

log = logging.getLogger(__name__)

# The status words and what they mean are defined once, beside the state machines' use of them.
RUNNING, BUSY, STATE = dms_status.WORKING, dms_status.BUSY, dms_status.ENGINE_STATE
LATENCY_WINDOW = dt.timedelta(minutes=10)
START_TYPES = ("start-replication", "resume-processing", "reload-target")
# What describe_table_statistics says about DMS's own row validation of a table.
VALIDATION_FIELDS = ("ValidationState", "ValidationStateDetails", "ValidationPendingRecords",
                     "ValidationFailedRecords", "ValidationSuspendedRecords")


def start_type(task: dict[str, Any], *, reload: bool = False) -> str | None:
    """The ``StartReplicationTaskType`` for a task as described, or None when it already runs.

    >>> start_type({"Status": "ready"})
    'start-replication'
    >>> start_type({"Status": "stopped", "ReplicationTaskStartDate": "2026-01-01"})
    'resume-processing'
    >>> start_type({"Status": "running"}) is None
    True
    """
    status = task.get("Status", "")
    if status in RUNNING:
        return None
    if status in BUSY:
        raise ReplicationError(f"DMS task {task.get('ReplicationTaskIdentifier')} is {status}: "
                               "try again once it settles")
    if reload:
        return "reload-target"
    started = task.get("ReplicationTaskStartDate") or (task.get("ReplicationTaskStats") or {}).get("StartDate")
    return "resume-processing" if started and status in {"stopped", "failed"} else "start-replication"


def _document(text: str | None) -> Any:
    """A task's JSON document (mappings, settings) as data; None when absent or unreadable."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def full_load_done(task: dict[str, Any]) -> bool:
    """Every table loaded: 100 percent, none loading, queued or errored."""
    st = task.get("ReplicationTaskStats") or {}
    return (task.get("Status") in {"running", "stopped"} and st.get("FullLoadProgressPercent") == 100
            and not st.get("TablesLoading") and not st.get("TablesQueued")
            and not st.get("TablesErrored") and st.get("TablesLoaded", 0) > 0)


@dataclass(frozen=True)
class DmsStart:
    """What :meth:`DmsEngine.prepare_start` found: the forward task, its status and its
    ``StartReplicationTaskType`` (None: it runs already, nothing to start)."""

    task_arn: str
    task_name: str
    status: str
    start_type: str | None

    def __post_init__(self) -> None:
        if self.start_type not in (None, *START_TYPES):
            raise ValueError(f"start type {self.start_type!r} is not one of {', '.join(START_TYPES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class DmsEngine:
    """``dms``: one replication task (and an optional reverse CDC task for fallback)."""

    engine = "dms"

    def __init__(self, *, task_arn: str, dms_client: Any = None, cloudwatch_client: Any = None,
                 source: Endpoint | None = None, target: Endpoint | None = None,
                 reverse_task_arn: str | None = None, slot_name: str | None = None,
                 reverse_slot_name: str | None = None, poll: float = 5.0, reload: bool = False,
                 tables: list[str] | None = None, exclude: list[str] | None = None,
                 lob_max_size_kb: int | None = None, validation: bool | None = None):
        for label, arn in (("task_arn", task_arn), ("reverse_task_arn", reverse_task_arn)):
            if arn is not None and not (isinstance(arn, str) and arn.startswith("arn:")
                                        and ":task:" in arn):
                raise ValueError(f"{label} {arn!r} is not a DMS task ARN (arn:aws:dms:...:task:...)")
        if poll <= 0:
            raise ValueError(f"poll interval {poll!r} must be positive")
        self.task_arn, self.reverse_task_arn = task_arn, reverse_task_arn
        self.source, self.target = source, target
        self.slot_names: dict[str, str | None] = {"forward": slot_name, "reverse": reverse_slot_name}
        self.poll, self.reload = poll, reload
        # The migration's scope (as validation and the cutover read it) and the task's LobMaxSize
        # (the contract's value, which infra deployed): what preflight and start act on.
        self.tables, self.exclude = list(tables or []), list(exclude or [])
        self.lob_max_size_kb = int(lob_max_size_kb if lob_max_size_kb is not None else
                                   contract.PARAMETERS["replication/dms-lob-max-size-kb"].default)
        # The contract's replication/dms-validation; None leaves the task's setting as it is.
        self.validation = validation
        self._dms, self._cw = dms_client, cloudwatch_client

    def __repr__(self) -> str:
        return f"DmsEngine({self.task_arn})"

    @property
    def dms(self) -> Any:
        if self._dms is None:
            from paymigrate import aws

            self._dms = aws.client("dms")
        return self._dms

    @property
    def cloudwatch(self) -> Any:
        if self._cw is None:
            from paymigrate import aws

            self._cw = aws.client("cloudwatch")
        return self._cw

    def _arn(self, direction: str) -> str:
        if check_direction(direction) == "forward":
            return self.task_arn
        if not self.reverse_task_arn:
            raise ReplicationError("no reverse DMS task: give reverse_task_arn (a CDC-only task "
                                   "from the target endpoint to the source endpoint)")
        return self.reverse_task_arn

    def task(self, *, direction: Direction = "forward") -> dict[str, Any]:
        arn = self._arn(direction)
        try:
            found = self.dms.describe_replication_tasks(
                Filters=[{"Name": "replication-task-arn", "Values": [arn]}])["ReplicationTasks"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundFault":
                found = []
            else:
                raise ReplicationError(f"describing DMS task {arn}: {exc}") from None
        if not found:
            raise ReplicationError(f"DMS task {arn} does not exist")
        return found[0]

    # ---- preflight and start -----------------------------------------------------------------
    def preflight(self) -> list[Problem]:
        problems: list[Problem] = []
        try:
            task = self.task()
        except ReplicationError as exc:
            return [Problem(None, str(exc))]
        if task.get("MigrationType") != "full-load-and-cdc":
            problems.append(Problem(None, f"DMS task {task['ReplicationTaskIdentifier']} is "
                                          f"{task.get('MigrationType')}: changes made after the "
                                          "load would not be carried (needs full-load-and-cdc)"))
        if task.get("Status") in dms_status.FAILED:
            problems.append(Problem(None, f"DMS task {task['ReplicationTaskIdentifier']} is "
                                          f"{task['Status']}: {task.get('LastFailureMessage', '')}"))
        if self.source is not None:
            with connection(self.source) as conn, conn.cursor() as cur:
                oids, unknown = pf.scope_oids(cur, tables=self.tables or None,
                                              exclude=self.exclude or None)
                problems += [Problem(name, "not found on the source") for name in unknown]
                problems += pf.evaluate_source(*pf.gather_source(cur, oids))
                problems += pf.evaluate_lobs(pf.measure_lobs(cur, oids),
                                             lob_max_size_kb=self.lob_max_size_kb)
                sequences = sorted(seqs.read(conn))
            if sequences:  # a note, not a refusal: the cutover copies them inside the pause
                log.info("DMS does not carry sequence values: %d sequence(s) (%s) are synced at "
                         "cutover", len(sequences), ", ".join(sequences[:20])
                         + (" ..." if len(sequences) > 20 else ""))
        else:
            log.warning("DMS preflight without the source endpoint: table checks skipped")
        problems += self.requirements(task)
        log.info("DMS preflight of %s: %d problem(s)", self.task_arn, len(problems))
        return problems

    def prepare_start(self) -> DmsStart:
        """Everything before the forward task starts, and how to start it: what DMS expects to
        find (the schema on the target, as DMS only moves rows; the drain marker table on both
        servers; the slot the source endpoint names), the task's mappings and validation as the
        migration asks, then the start type its status and the target call for. Idempotent.
        The DAG starts the task with the provider's ``DmsStartTaskOperator`` from this."""
        self.setup()
        self.apply_scope()
        task = self.task()
        kind = start_type(task, reload=self.reload or self._new_load())
        log.info("DMS task %s is %s: %s", task["ReplicationTaskIdentifier"], task["Status"],
                 kind or "nothing to start")
        return DmsStart(task["ReplicationTaskArn"], task["ReplicationTaskIdentifier"],
                        task["Status"], kind)

    def start(self, *, on_progress: ProgressSink | None = None) -> StartResult:
        """:meth:`prepare_start`, then start (or resume) the task as it says (the command line's
        and the Lambda's way; the DAG makes the call with the provider's operator). DMS copies
        on its own: its table statistics are its progress (:meth:`status`)."""
        prepared = self.prepare_start()
        return self._start_task(prepared.task_arn, prepared.task_name, prepared.status,
                                prepared.start_type)

    def _new_load(self) -> bool:
        """Whether a task that ran before (an earlier migration, a rehearsal) meets an empty
        target: that is a new migration, whose rows need a new full load (``reload-target``).
        Resuming the old run's CDC would never copy the rows already on the source."""
        task = self.task()
        ran = task.get("ReplicationTaskStartDate") or (task.get("ReplicationTaskStats") or {}).get("StartDate")
        if not ran or self.source is None or self.target is None:
            return False
        with connection(self.source) as conn, conn.cursor() as cur:
            oids, _ = pf.scope_oids(cur, tables=self.tables or None, exclude=self.exclude or None)
            names = pf.table_names(cur, oids)
        with connection(self.target) as conn, conn.cursor() as cur:
            for name in names:  # quoted by format('%I.%I')
                cur.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")
                if cur.fetchone()[0]:
                    return False
        log.info("DMS task %s ran before and the target's %d table(s) are empty: a new full load",
                 task["ReplicationTaskIdentifier"], len(names))
        return bool(names)

    def table_mappings(self) -> dict[str, Any]:
        """The mappings of the migration's scope (``tables``/``exclude`` resolved on the source),
        the same scope validation compares and the cutover checks."""
        if not self.tables and not self.exclude:
            return dms_task.table_mappings()
        with connection(self._endpoint("source")) as conn, conn.cursor() as cur:
            return dms_task.scope_mappings(cur, tables=self.tables, exclude=self.exclude)

    def apply_scope(self, *, timeout: float = 300) -> bool:
        """Give the forward task what the migration asks of it when it differs from what the task
        has (what infra deployed, or an earlier run's): the scope's table mappings and, when the
        engine has a ``validation`` setting, DMS's own row validation on or off. True when the
        task was modified. A running task is never changed under its load: that is refused."""
        task = self.task()
        name = task["ReplicationTaskIdentifier"]
        changes: dict[str, str] = {}
        wanted = self.table_mappings()
        if _document(task.get("TableMappings")) != wanted:
            changes["TableMappings"] = json.dumps(wanted)
        settings = _document(task.get("ReplicationTaskSettings")) or {}
        validation = settings.get("ValidationSettings") or {}
        if self.validation is not None and bool(validation.get("EnableValidation")) != self.validation:
            # The task's own document with one field changed: the rest stays as infra set it.
            settings["ValidationSettings"] = {**validation, "EnableValidation": self.validation}
            changes["ReplicationTaskSettings"] = json.dumps(settings)
        if not changes:
            return False
        what = " and ".join({"TableMappings": "table mappings", "ReplicationTaskSettings":
                             "validation setting"}[k] for k in changes)
        if task["Status"] in RUNNING | BUSY:
            raise ReplicationError(f"DMS task {name} is {task['Status']} with other {what} than "
                                   "the migration asks: stop it before a run with these")
        try:
            self.dms.modify_replication_task(ReplicationTaskArn=task["ReplicationTaskArn"], **changes)
        except ClientError as exc:
            raise ReplicationError(f"modify_replication_task of DMS task {name} ({what} of the "
                                   f"migration) refused: {exc}") from None
        log.info("DMS task %s: %s set from the migration's scope and contract", name, what)
        deadline = time.monotonic() + timeout
        while (status := self.task()["Status"]) in BUSY:
            if time.monotonic() >= deadline:
                raise ReplicationError(f"DMS task {name} still {status} after {timeout:.0f}s")
            time.sleep(self.poll)
        return True

    def requirements(self, task: dict[str, Any]) -> list[Problem]:
        """What the DMS path needs beyond the tables (:mod:`paymigrate.replication.dms_checks`):
        logical decoding, slots, the reverse task, the marker in the mappings, reachable
        endpoints. Reads only."""
        missing = [f"{d} slot name" for d, n in self.slot_names.items() if not n]
        if missing or self.source is None or self.target is None:
            return [Problem(None, "the DMS engine was made without " + ", ".join(
                missing + [f"the {s} endpoint" for s in ("source", "target")
                           if getattr(self, s) is None]) + ": the DMS path cannot be checked")]
        servers = []
        pairs: tuple[tuple[Side, Direction], ...] = (("source", "forward"), ("target", "reverse"))
        for side, direction in pairs:
            with connection(self._endpoint(side)) as conn, conn.cursor() as cur:
                servers.append(dms_checks.gather_server(cur, side=side,
                                                        slot_name=str(self.slot_names[direction])))
        tasks = [dms_checks.gather_task(self.dms, task, direction="forward")]
        missing_reverse = None
        try:
            tasks.append(dms_checks.gather_task(self.dms, self.task(direction="reverse"),
                                                direction="reverse"))
        except ReplicationError as exc:
            missing_reverse = str(exc)
        names = {d: str(n) for d, n in self.slot_names.items()}
        return dms_checks.evaluate(servers, tasks, slot_names=names, missing_reverse=missing_reverse)

    def setup(self) -> None:
        if self.source is None or self.target is None:
            log.warning("DMS engine without both endpoints: the target schema, the drain marker "
                        "table and the task's slot must exist already")
            return
        source, target = self.source, self.target
        with connection(source) as conn, conn.cursor() as cur:
            oids, _ = pf.scope_oids(cur, tables=self.tables or None, exclude=self.exclude or None)
            names = pf.table_names(cur, oids)
        schema.ensure_schema(source=source, target=target, oids=oids, names=names)
        for ep in (source, target):
            with connection(ep) as conn, conn.cursor() as cur:
                if dms_drain.ensure_table(cur):
                    log.info("drain marker table %s created on %s", dms_drain.TABLE, ep.safe())
        self._ensure_slot("forward")

    def _slot(self, direction: Direction) -> tuple[Endpoint, str]:
        name = self.slot_names[check_direction(direction)]
        if not name:
            raise ReplicationError(f"the DMS engine needs the {direction} task's slot name "
                                   "(slotName of its source endpoint; see paymigrate.aws.names)")
        return self._publisher(direction), name

    def _ensure_slot(self, direction: Direction, *, timeout: float | None = None) -> str:
        """The slot ``direction``'s task reads, made where missing; its start position.
        Creating one waits for the server's running transactions: at most ``timeout`` s."""
        ep, name = self._slot(direction)
        try:
            with connection(ep, autocommit=True, application_name="paymigrate-dms-slot") as conn, \
                    conn.cursor() as cur:
                cur.execute("SELECT plugin, confirmed_flush_lsn::text FROM pg_replication_slots "
                            "WHERE slot_name = %s", (name,))
                found = cur.fetchone()
                if found is not None:
                    if found[0] != dms_checks.DECODING_PLUGIN:
                        raise ReplicationError(f"slot {name} on {ep.safe()} decodes with {found[0]}, "
                                               f"not {dms_checks.DECODING_PLUGIN}: drop it")
                    return str(found[1])
                if timeout is not None:
                    cur.execute("SET statement_timeout = %s", (f"{max(int(timeout * 1000), 1)}ms",))
                try:
                    cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)",
                                (name, dms_checks.DECODING_PLUGIN))
                    lsn = str(cur.fetchone()[0])
                finally:  # the connection may be reused by the next step of the pause
                    cur.execute("RESET statement_timeout")
        except psycopg2.errors.QueryCanceled:
            raise ReplicationError(f"slot {name} on {ep.safe()} not made within {timeout:.3f}s: "
                                   "a transaction is running there") from None
        log.info("slot %s created on %s at %s for the %s DMS task", name, ep.safe(), lsn, direction)
        return lsn

    def drop_slot(self, direction: Direction) -> bool:
        """Drop ``direction``'s slot unless DMS reads it now; whether one was dropped."""
        ep, name = self._slot(direction)
        with connection(ep, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE slot_name = %s AND NOT active", (name,))
            return cur.rowcount > 0

    def _start_task(self, arn: str, name: str, status: str, kind: str | None, *,
                    cdc_start_position: str | None = None) -> StartResult:
        """Start the task ``kind`` says, or nothing when it is None (the task runs already)."""
        if kind is None:
            log.info("DMS task %s is %s: nothing to start", name, status)
            return StartResult(self.engine, "already-running", status)
        extra = {"CdcStartPosition": cdc_start_position} if cdc_start_position else {}
        try:
            self.dms.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType=kind,
                                            **extra)
        except ClientError as exc:
            raise ReplicationError(f"{kind} of DMS task {name} (status {status}) refused: "
                                   f"{exc}") from None
        log.info("DMS task %s: %s%s", name, kind, f" from {cdc_start_position}" if extra else "")
        return StartResult(self.engine, "resumed" if kind == "resume-processing" else "created", kind)

    # ---- status and lag ----------------------------------------------------------------------
    def table_statistics(self, *, direction: Direction = "forward") -> tuple[dict[str, str], str]:
        """``({schema.table: TableState}, note)``; the note says why the map is empty."""
        tables: dict[str, str] = {}
        try:
            for page in self.dms.get_paginator("describe_table_statistics").paginate(
                    ReplicationTaskArn=self._arn(direction)):
                for t in page.get("TableStatistics", []):
                    tables[f"{t['SchemaName']}.{t['TableName']}"] = t.get("TableState", "?")
        except (ClientError, BotoCoreError) as exc:
            return {}, f"per-table statistics unavailable (describe_table_statistics: {exc})"
        return tables, ""

    def own_validation(self) -> dict[str, Any]:
        """DMS's row validation of the forward task, per table (``describe_table_statistics``:
        ValidationState and its record counts), labelled for the report beside paymigrate's.
        Reported, not judged: the decision stays with paymigrate's exact comparison."""
        settings = _document(self.task().get("ReplicationTaskSettings")) or {}
        enabled = bool((settings.get("ValidationSettings") or {}).get("EnableValidation"))
        out: dict[str, Any] = {"label": "AWS DMS row validation (describe_table_statistics)",
                               "task": self.task_arn, "enabled": enabled, "tables": [], "note": ""}
        try:
            for page in self.dms.get_paginator("describe_table_statistics").paginate(
                    ReplicationTaskArn=self.task_arn):
                out["tables"] += [{"table": f"{t['SchemaName']}.{t['TableName']}",
                                   **{k: t[k] for k in VALIDATION_FIELDS if k in t}}
                                  for t in page.get("TableStatistics", [])]
        except (ClientError, BotoCoreError) as exc:
            out["note"] = f"DMS table statistics unavailable (describe_table_statistics: {exc})"
        if not enabled and not out["note"]:
            out["note"] = ("DMS validation is off on the task (contract replication/dms-validation "
                           "false): its states read Not enabled")
        out["tables"].sort(key=lambda t: t["table"])
        return out

    def status(self, *, direction: Direction = "forward") -> ReplicationStatus:
        task = self.task(direction=direction)
        stats = task.get("ReplicationTaskStats") or {}
        tables, note = self.table_statistics(direction=direction)
        done = full_load_done(task)
        state = STATE.get(task["Status"], "failed")
        if state == "streaming" and not done:
            state = "copying"
        loaded = int(stats.get("TablesLoaded", 0))
        total = loaded + sum(int(stats.get(k, 0)) for k in ("TablesLoading", "TablesQueued", "TablesErrored"))
        detail = "; ".join(x for x in (
            f"DMS status {task['Status']}, full load {stats.get('FullLoadProgressPercent', 0)}%",
            task.get("StopReason", ""), task.get("LastFailureMessage", ""), note) if x)
        return ReplicationStatus(state, task["Status"] == "running", done, tables, loaded, total, detail)

    def finish_full_load(self, *, build: bool = True) -> FullLoad:
        """Only the status: DMS loads into tables made before it, with their indexes and
        constraints (``TargetTablePrepMode`` ``TRUNCATE_BEFORE_LOAD``), so nothing is deferred
        to build after; and a table it failed to load shows in the status (``TablesErrored``)
        for an operator to reload (``reload=True``), not repaired behind their back."""
        st = self.status()
        return FullLoad(st, (), 0 if build and st.full_load_done else None)

    def wait_full_load(self, *, timeout: float, poll: float | None = None) -> ReplicationStatus:
        deadline = time.monotonic() + timeout
        while True:
            st = self.finish_full_load().status
            log.info("DMS full load: tables loaded %s, %s, lag %s", st.progress, st.detail, self.lag())
            if st.full_load_done or st.state == "failed" or time.monotonic() >= deadline:
                return st
            time.sleep(poll or self.poll)

    def _dimensions(self, task: dict[str, Any]) -> list[dict[str, str]]:
        found = self.dms.describe_replication_instances(Filters=[
            {"Name": "replication-instance-arn", "Values": [task["ReplicationInstanceArn"]]}])
        instances = found.get("ReplicationInstances", [])
        if not instances:
            raise ReplicationError(f"DMS replication instance {task['ReplicationInstanceArn']} "
                                   "of the task does not exist")
        # CloudWatch names a task by its resource id, the last part of its ARN.
        return [{"Name": "ReplicationInstanceIdentifier",
                 "Value": instances[0]["ReplicationInstanceIdentifier"]},
                {"Name": "ReplicationTaskIdentifier", "Value": task["ReplicationTaskArn"].rsplit(":", 1)[1]}]

    def lag(self, *, direction: Direction = "forward") -> Lag:
        """Seconds: the newest ``CDCLatencyTarget`` (source commit to target apply), AWS/DMS
        namespace, in the last ten minutes. DMS shows no WAL bytes: ``bytes`` is None."""
        task = self.task(direction=direction)
        dims = self._dimensions(task)
        # One period past now: the newest, still-open minute counts too.
        end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
        latest: dict[str, float] = {}
        for metric in ("CDCLatencySource", "CDCLatencyTarget"):
            points = self.cloudwatch.get_metric_statistics(
                Namespace="AWS/DMS", MetricName=metric, Dimensions=dims, StartTime=end - LATENCY_WINDOW - dt.timedelta(seconds=60),
                EndTime=end, Period=60, Statistics=["Maximum"]).get("Datapoints", [])
            if points:
                latest[metric] = float(max(points, key=lambda p: p["Timestamp"])["Maximum"])
        if "CDCLatencyTarget" in latest:
            return Lag(None, latest["CDCLatencyTarget"], source="CloudWatch AWS/DMS CDCLatencyTarget")
        if "CDCLatencySource" in latest:
            return Lag(None, None, f"CDCLatencySource is {latest['CDCLatencySource']:.1f}s but "
                                   "CDCLatencyTarget has no datapoints in the last 10 minutes")
        return Lag(None, None, f"no CDCLatencyTarget datapoints in the last 10 minutes for task "
                               f"{task['ReplicationTaskIdentifier']} (status {task['Status']}: not "
                               "in CDC yet, or CloudWatch has no data)")

    # ---- positions and drain -----------------------------------------------------------------
    def _endpoint(self, side: Side) -> Endpoint:
        ep = self.source if check_side(side) == "source" else self.target
        if ep is None:
            raise ReplicationError(f"the DMS engine needs the {side} endpoint for this (give {side}=)")
        return ep

    def position(self, *, side: Side = "source") -> str:
        with connection(self._endpoint(side)) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()::text")
            return str(cur.fetchone()[0])

    def _publisher(self, direction: Direction) -> Endpoint:
        return self._endpoint("source" if check_direction(direction) == "forward" else "target")

    def _subscriber(self, direction: Direction) -> Endpoint:
        return self._endpoint("target" if check_direction(direction) == "forward" else "source")

    def _applying(self, direction: Direction) -> bool:
        """The task applies changes: the forward one past its full load (a marker table loaded
        early must not stand for tables still loading), the reverse one (CDC only) running."""
        task = self.task(direction=direction)
        return full_load_done(task) if direction == "forward" else task["Status"] == "running"

    def _drained(self, scur: Cursor, marker: dms_drain.Marker, direction: Direction) -> bool:
        # The marker first: a query on the subscriber, where the task's status is an API call
        # (throttled by AWS), made once the marker is there.
        return dms_drain.arrived(scur, marker) and self._applying(direction)

    def drained(self, position: str, *, direction: Direction = "forward") -> bool:
        """One check, writing nothing: the task applies changes and a drain marker written on
        the publisher at or past ``position`` is on the subscriber (:meth:`catch_up` writes one)."""
        with connection(self._publisher(direction), autocommit=True) as pconn, pconn.cursor() as pcur, \
                connection(self._subscriber(direction), autocommit=True) as sconn, sconn.cursor() as scur:
            marker = dms_drain.Marker(dms_drain.origin(pcur), lsn_to_int(position))
            return self._drained(scur, marker, direction)

    def catch_up(self, position: str, timeout: float = 60, *, direction: Direction = "forward",
                 poll: float | None = None) -> bool:
        """Write a drain marker on the publisher at or past ``position`` (none when one is
        there already), then check every ``poll`` seconds (the engine's, at most one, when None)
        that it reached the subscriber; False when ``timeout`` passes first. The marker goes
        through DMS as any change does, so no DMS internals are read."""
        interval = min(self.poll, 1.0) if poll is None else poll
        if interval <= 0:
            raise ValueError(f"poll interval {interval!r} must be positive")
        deadline = time.monotonic() + timeout
        with connection(self._publisher(direction), autocommit=True,
                        application_name="paymigrate-catch-up") as pconn, pconn.cursor() as pcur, \
                connection(self._subscriber(direction), autocommit=True,
                           application_name="paymigrate-catch-up") as sconn, sconn.cursor() as scur:
            marker = dms_drain.write(pcur, position)
            while not self._drained(scur, marker, direction):
                now = time.monotonic()
                if now >= deadline:
                    log.warning("DMS %s not caught up to %s (marker at %s) after %.3fs", direction,
                                position, marker.lsn, timeout)
                    return False
                time.sleep(min(interval, max(deadline - now, 0.001)))
        return True

    # ---- stop, reverse, sequences ------------------------------------------------------------
    def stop(self, *, direction: Direction = "forward", timeout: float = 300) -> None:
        """Stop the task if it runs (idempotent) and wait until DMS reports it stopped."""
        task = self.task(direction=direction)
        if task["Status"] in RUNNING:
            try:
                self.dms.stop_replication_task(ReplicationTaskArn=task["ReplicationTaskArn"])
            except ClientError as exc:
                raise ReplicationError(f"stopping DMS task {task['ReplicationTaskIdentifier']}: "
                                       f"{exc}") from None
        deadline = time.monotonic() + timeout
        while (status := self.task(direction=direction)["Status"]) in RUNNING | {"stopping"}:
            if time.monotonic() >= deadline:
                raise ReplicationError(f"DMS task {task['ReplicationTaskIdentifier']} still "
                                       f"{status} after {timeout:.0f}s")
            time.sleep(self.poll)
        log.info("DMS task %s is %s", task["ReplicationTaskIdentifier"], status)

    def scope_tables(self) -> list[str]:
        """Every table on the source in scope of the migration (its ``tables``/``exclude``, the
        scope the task's mappings are made from); the switch fences and checks these."""
        with connection(self._endpoint("source")) as conn, conn.cursor() as cur:
            oids, _ = pf.scope_oids(cur, tables=self.tables or None, exclude=self.exclude or None)
            return pf.table_names(cur, oids)

    def schema_drift(self) -> list[Drift]:
        """[]: DMS's CDC applies the DDL it supports itself (``ChangeProcessingDdlHandlingPolicy``),
        and what it does not is its task's error, seen in :meth:`status`."""
        return []

    def prepare_reverse(self) -> None:
        """Before the pause: a reverse CDC task must exist and not run yet, and a reverse slot
        left by an earlier, aborted cutover is dropped (it holds target writes the source has)."""
        task = self.task(direction="reverse")
        if task["Status"] in RUNNING:
            raise ReplicationError(f"reverse DMS task {task['ReplicationTaskIdentifier']} is "
                                   f"{task['Status']}: the target is already the writer")
        if self.drop_slot("reverse"):
            log.warning("stale reverse slot %s dropped before the cutover", self.slot_names["reverse"])

    def capture_reverse(self, *, timeout: float) -> str:
        """Inside the pause, before the first write reaches the target: create the slot the
        reverse task's source endpoint names, on the target; return its start position, the
        reverse task's ``CdcStartPosition``. Every target write after it is kept for the task."""
        return self._ensure_slot("reverse", timeout=timeout)

    def release_reverse(self) -> None:
        """After an abort inside the pause: drop the reverse slot (idempotent)."""
        self.drop_slot("reverse")

    def attach_reverse(self, *, from_position: str | None = None) -> StartResult:
        """After RESUME: stop the forward task, then start the reverse CDC task
        (``start-replication``) at ``CdcStartPosition`` ``from_position``, the position captured
        inside the pause (when None, the reverse slot's own start). Idempotent; refuses when the
        slot is gone, since the target's writes since the switch would then be lost."""
        task = self.task(direction="reverse")
        if task["Status"] in RUNNING:
            return StartResult(self.engine, "already-running", task["Status"])
        ep, name = self._slot("reverse")
        with connection(ep) as conn, conn.cursor() as cur:
            cur.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                        "WHERE slot_name = %s", (name,))
            slot = cur.fetchone()
        if slot is None:
            raise ReplicationError(f"reverse slot {name} on {ep.safe()} is gone: writes made on "
                                   "the target since the switch cannot be carried back; validate "
                                   "and copy them before any rollback")
        self.stop()
        start_type(task)  # refuses a task still busy (stopping, modifying...)
        # start-replication from the position given, whatever ran before.
        return self._start_task(task["ReplicationTaskArn"], task["ReplicationTaskIdentifier"],
                                task["Status"], "start-replication",
                                cdc_start_position=from_position or slot[0])

    def check_tables(self, tables: list[str]) -> None:
        """Every table of ``tables`` loaded by the forward task (DMS's table statistics)."""
        states, note = self.table_statistics()
        if not states:
            raise ReplicationError(f"DMS reports no table statistics: {note}")
        bad = sorted(f"{t} ({states.get(t, 'not in the task')})" for t in tables
                     if states.get(t) not in ("Table completed", "Table loaded"))
        if bad:
            raise ReplicationError(f"tables not fully replicated by DMS: {', '.join(bad)}")

    def sync_sequences(self, *, gap: int = 1000, direction: Direction = "forward") -> dict[str, int]:
        src, tgt = self._endpoint("source"), self._endpoint("target")
        if check_direction(direction) == "reverse":
            src, tgt = tgt, src
        return seqs.sync_sequences(source=src, target=tgt, gap=gap)
