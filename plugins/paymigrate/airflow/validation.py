"""The scheduled validation's steps, on the provider's hooks and the validation engine."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from paymigrate.airflow.hooks import MigrationHook

log = logging.getLogger(__name__)

STATE = "scheduled-validation/last.json"


def _last(hook: MigrationHook) -> dict[str, Any] | None:
    return hook.checkpoints().get_doc(STATE)


def due(*, force: bool, run_id: str, now: datetime | None = None) -> bool:
    hook = MigrationHook()
    cfg = hook.config
    if not cfg["workflow/enable-validation"]:
        log.info("/migration/%s/workflow/enable-validation is false: skipped", hook.env)
        return False
    if force:
        return True
    last = _last(hook)
    now = now or datetime.now(UTC)
    interval = cfg["monitoring/validation-interval-minutes"]
    if last:
        age = (now - datetime.fromisoformat(last["finished"])).total_seconds() / 60
        if age < interval:
            log.info("last validation %.1f min ago, interval %d min: not due", age, interval)
            return False
    return True


def tables_to_validate(tables: list[str]) -> list[str]:
    from paymigrate.validation import list_tables

    found = list_tables(source=MigrationHook().endpoint("source"), tables=tables or None)
    log.info("%d table(s) to validate", len(found))
    return found


def validate_one(table: str, *, max_keys: int) -> dict[str, Any]:
    from paymigrate.validation import validate_table

    hook = MigrationHook()
    catch_up = None
    engine = hook.engine()
    if hook.config["database/active-writer"] == "source" and engine.status().running:
        # Under live replication each difference is re-checked once the target has caught up;
        # with replication stopped there is nothing to wait for.
        catch_up = engine.catch_up
    result = validate_table(source=hook.endpoint("source"), target=hook.endpoint("target"), table=table,
                            max_keys=max_keys, catch_up=catch_up)
    return json.loads(json.dumps(result.to_dict(), default=str))


def publish(results: list[dict[str, Any]], *, run_id: str) -> dict[str, Any]:
    hook = MigrationHook()
    rows = sum(r["source_rows"] + r["target_rows"] for r in results)
    bad = [r for r in results if r["status"] != "match"]
    mismatches = sum(r.get(k) or 0 for r in results for k in (
        "missing_count", "extra_count", "different_count", "source_surplus", "target_surplus"))
    seconds = sum(r["seconds"] for r in results)
    cloudwatch = AwsBaseHook(aws_conn_id=hook.aws_conn_id, client_type="cloudwatch").conn
    dims = [{"Name": "Environment", "Value": hook.env}]
    cloudwatch.put_metric_data(Namespace="Migration/DataValidation", MetricData=[
        {"MetricName": "RowsChecked", "Value": rows, "Unit": "Count", "Dimensions": dims},
        {"MetricName": "Mismatches", "Value": mismatches, "Unit": "Count", "Dimensions": dims},
        {"MetricName": "MismatchedTables", "Value": len(bad), "Unit": "Count", "Dimensions": dims},
        {"MetricName": "ValidationSeconds", "Value": seconds, "Unit": "Seconds", "Dimensions": dims},
    ])
    summary = {"run_id": run_id, "finished": datetime.now(UTC).isoformat(), "tables": len(results),
               "rows_checked": rows, "mismatches": mismatches,
               "mismatched": [{k: r.get(k) for k in ("table", "missing", "extra", "different",
                                                       "source_surplus", "target_surplus")}
                              for r in bad]}
    summary["retained_wal_bytes"] = hook.publish_retained_wal()
    hook.checkpoints().put_doc(STATE, summary)
    log.info("validated %d table(s), %d rows, %d mismatch(es)", len(results), rows, mismatches)
    return summary


def alert(summary: dict[str, Any]) -> str:
    if not summary["mismatched"]:
        return "match"
    hook = MigrationHook()
    tables = ", ".join(m["table"] for m in summary["mismatched"])
    hook.publish("validation-alerts", subject=f"Validation mismatch ({hook.env}): {tables}"[:100],
                 message=json.dumps(summary, indent=2, default=str))
    return "mismatch"
