"""Waiting on replication without holding a worker slot: a sensor that defers to a trigger.

A full load of a large database takes hours; the sensor checks once, and if the condition is
not met it hands the wait to the triggerer, which polls the engine from a thread (the engines
are synchronous) and wakes the task when the condition holds or the timeout passes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from paymigrate.migration import history
from paymigrate.migration.plan import lag_threshold
from paymigrate.progress import Figures
from paymigrate.provider.hooks import AWS_CONN_ID, MigrationHook
from paymigrate.provider.operators import PREFLIGHT, summary
from paymigrate.replication.ddl import raise_for_drift

CONDITIONS = ("full_load_done", "stopped", "lag_below")
log = logging.getLogger(__name__)


def check(*, condition: str, engine: str | None, tables: list[str] | None, exclude: list[str] | None,
          aws_conn_id: str, env: str, lag_threshold: float | None = None,
          migration_id: str | None = None) -> tuple[bool, dict[str, Any]]:
    """Whether the replication condition holds now, and what was seen (for the log). Each poll
    while replication runs adds a lag sample to the migration's history (the page's plot)."""
    hook = MigrationHook(aws_conn_id=aws_conn_id, env=env)
    retained = retained_wal(hook)
    eng = hook.engine(name=engine, tables=tables, exclude=exclude)
    if condition != "stopped":
        # A schema change replication cannot carry fails the wait now, naming it, rather than
        # after the timeout (a stalled apply worker only shows as growing lag).
        raise_for_drift(eng)
        lag = summary(eng.lag())
        if migration_id:
            history.record_lag(hook.checkpoints(), migration_id, lag, where=condition)
    if condition == "lag_below":
        seconds = lag.get("seconds")
        return seconds is not None and seconds <= float(lag_threshold or 0), {
            "lag": lag, "retained_wal_bytes": retained}
    if condition == "full_load_done":
        # Repairs a copy a crash left stuck; the deferred schema is built by the worker (_finish),
        # not here: this also runs in the triggerer, which must stay light.
        st = eng.finish_full_load(build=False).status
        return st.running and st.full_load_done, {**summary(st), "retained_wal_bytes": retained}
    st = eng.status()
    return not st.running, {**summary(st), "retained_wal_bytes": retained}


def retained_wal(hook: MigrationHook) -> int | None:
    """Each poll publishes the slots' retained WAL: a wait that lasts hours is when a stalled
    slot fills the source. A metric that cannot be sent must not end the wait."""
    try:
        return hook.publish_retained_wal()
    except Exception as exc:
        log.warning("retained WAL metric not published: %s: %s", type(exc).__name__, exc)
        return None


class ReplicationTrigger(BaseTrigger):
    def __init__(self, *, condition: str, engine: str | None, tables: list[str] | None,
                 exclude: list[str] | None, aws_conn_id: str, env: str, poll_interval: float,
                 lag_threshold: float | None = None, migration_id: str | None = None):
        super().__init__()
        self.kwargs: dict[str, Any] = {
            "condition": condition, "engine": engine, "tables": tables, "exclude": exclude,
            "aws_conn_id": aws_conn_id, "env": env, "lag_threshold": lag_threshold,
            "migration_id": migration_id}
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {**self.kwargs, "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        polls, first = 0, None
        while True:
            # Sleep first: the sensor checked just before it deferred, and a trigger that fires at
            # once can resume the task before the scheduler has seen the deferring try end, which
            # Airflow 3.3.2 fails as a "state mismatch" (apache/airflow#72716).
            await asyncio.sleep(self.poll_interval)
            try:
                ok, seen = await asyncio.to_thread(check, **self.kwargs)
            except Exception as exc:
                yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
                return
            polls += 1
            if ok:
                yield TriggerEvent({"status": "done", "seen": seen, "polls": polls})
                return
            lag_bytes = (seen.get("lag") or {}).get("bytes")
            if lag_bytes is not None:  # waiting for lag to drain: how fast, and how long left
                first = first or (time.monotonic(), lag_bytes)
                drained = Figures(time.monotonic() - first[0], bytes_done=max(first[1] - lag_bytes, 0),
                                  bytes_total=first[1])
                self.log.info("waiting for %s: WAL drained %s; %s", self.kwargs["condition"],
                              drained.line(), seen)
            else:
                self.log.info("waiting for %s: %s", self.kwargs["condition"], seen)


class ReplicationSensor(BaseSensorOperator):
    """Wait until replication is running with its full load done, or stopped, or lag is low."""

    template_fields = ("lag_threshold", "timeout_minutes")

    def __init__(self, *, condition: str, lag_threshold: Any = None, timeout_minutes: Any = None,
                 aws_conn_id: str = AWS_CONN_ID, deferrable: bool = True, plan_task: str = PREFLIGHT,
                 **kwargs: Any):
        if condition not in CONDITIONS:
            raise ValueError(f"condition {condition!r} is not one of {', '.join(CONDITIONS)}")
        kwargs.setdefault("poke_interval", 5)
        super().__init__(**kwargs)
        self.condition = condition
        self.lag_threshold = lag_threshold
        self.timeout_minutes = timeout_minutes
        self.aws_conn_id = aws_conn_id
        self.deferrable = deferrable
        self.plan_task = plan_task
        self._seen: dict[str, Any] | None = None

    def _kwargs(self, context: Context) -> dict[str, Any]:
        plan = context["ti"].xcom_pull(task_ids=self.plan_task) or {}
        hook = MigrationHook(aws_conn_id=self.aws_conn_id)
        threshold = lag_threshold(self.lag_threshold, hook.config) if self.condition == "lag_below" else None
        return {"condition": self.condition, "engine": plan.get("engine"), "tables": plan.get("tables"),
                "exclude": plan.get("exclude"), "aws_conn_id": self.aws_conn_id, "env": hook.env,
                "lag_threshold": threshold, "migration_id": plan.get("migration_id")}

    def poke(self, context: Context) -> bool:
        ok, seen = check(**self._kwargs(context))
        self.log.info("%s: %s (%s)", self.condition, "yes" if ok else "not yet", seen)
        if ok:
            self._finish(context)
            self._seen = seen
        return ok

    def _finish(self, context: Context) -> None:
        """After the full load, build what the engine deferred past the copy (secondary indexes
        and constraints: faster once than maintained row by row). Idempotent in the engine."""
        if self.condition != "full_load_done":
            return
        kw = self._kwargs(context)
        engine = MigrationHook(aws_conn_id=self.aws_conn_id).engine(
            name=kw["engine"], tables=kw["tables"], exclude=kw["exclude"])
        done = engine.finish_full_load()
        self.log.info("full load finished: %s table(s) copied again, deferred schema: %s "
                      "statement(s) built", len(done.repaired), done.schema_statements)

    def execute(self, context: Context) -> Any:
        if self.timeout_minutes not in (None, ""):
            self.timeout = float(self.timeout_minutes) * 60
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return self._seen
        kwargs = self._kwargs(context)
        self.defer(trigger=ReplicationTrigger(poll_interval=self.poke_interval, **kwargs),
                   method_name="execute_complete", timeout=timedelta(seconds=self.timeout))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if not event or event.get("status") != "done":
            raise AirflowFailException(f"waiting for {self.condition} failed: "
                                       f"{(event or {}).get('message', 'no event')}")
        self.log.info("%s after %s poll(s): %s", self.condition, event.get("polls"), event.get("seen"))
        self._finish(context)
        return event.get("seen")
