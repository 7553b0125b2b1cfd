"""Failure alerts: every task failure of a migration DAG pages the error-alerts topic."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def run_link(context: Any) -> str:
    """The Airflow UI address of the failed task's log (``[api] base_url`` decides the host)."""
    ti = context.get("ti")
    url = getattr(ti, "log_url", "") if ti is not None else ""
    return f"Log: {url}" if url else f"Run: {context.get('run_id', '?')}"


def failed_tasks(context: Any) -> list[str]:
    ti = context["ti"]
    try:
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
    except Exception as exc:  # the UI link still goes out without the list
        log.warning("could not list failed tasks: %s", exc)
        return []
    per_run = states.get(ti.run_id, {}) if isinstance(states, dict) else {}
    return sorted(t for t, s in per_run.items() if str(s) in ("failed", "TaskInstanceState.FAILED"))


def slot_report(hook: Any) -> str:
    """The failure alert's paragraph on the migration's replication slots (never raises)."""
    from paymigrate.aws import names
    from paymigrate.replication.retention import slot_report as report

    try:
        return report(hook.endpoint, names.replication_name(hook.env))
    except Exception as exc:  # the hook itself (its config) could not be read
        return f"Replication slots could not be read: {type(exc).__name__}: {exc}"


def alert_on_failure(context: Any) -> None:
    """``on_failure_callback`` of every migration task: publish to error-alerts with a link.

    A callback must never raise (the failure it reports would be hidden behind its own), so a
    failure to publish is logged loudly instead.
    """
    from paymigrate.provider.hooks import MigrationHook

    ti = context.get("ti")
    task = getattr(ti, "task_id", "?")
    dag = getattr(ti, "dag_id", "?")
    error = context.get("exception")
    try:
        hook = MigrationHook()
        hook.publish("error-alerts", subject=f"{dag}.{task} failed ({hook.env})",
                     message=f"Task {task} of {dag} run {context.get('run_id')} failed: "
                             f"{type(error).__name__ if error else 'error'}: {error}. {run_link(context)}"
                             f"\n\n{slot_report(hook)}")
    except Exception:
        log.exception("could not publish the failure alert of %s.%s", dag, task)
