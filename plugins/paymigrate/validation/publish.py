"""Validation as the Lambda (and the scheduled DAG) runs it: contract in, metrics and alert out.

Reads the endpoints' secrets named by the contract, runs :func:`validate`, publishes metrics to
CloudWatch (the schema of :mod:`paymigrate.validation.metrics`: overall and per table) and, on a
discrepancy or an
error, a message with keys only (capped) to the validation-alerts topic. Returns a small
JSON-ready result whose ``ok`` field the migration state machine's ``decide`` reads.
Clients are passed in, so this is tested against moto and runs unchanged in AWS.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from paymigrate import contract
from paymigrate.db import Endpoint
from paymigrate.errors import ValidationError
from paymigrate.statemachines import VALIDATION_OK_FIELD
from paymigrate.validation import metrics
from paymigrate.validation.engine import validate
from paymigrate.validation.report import MATCH, Report

log = logging.getLogger(__name__)

NAMESPACE = metrics.NAMESPACE
ALERT_KEYS = 20  # keys per kind and table in an alert or a Lambda result: enough to start from


def parse_event(event: Mapping[str, Any] | None) -> dict[str, Any]:
    """Options an invocation may carry: ``tables``, ``schemas`` (lists of names), ``max_keys``."""
    event = dict(event or {})
    out: dict[str, Any] = {}
    for name in ("tables", "schemas"):
        value = event.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValidationError(f"event field {name} must be a list of names, not {value!r}")
        out[name] = value
    max_keys = event.get("max_keys", 100)
    if not isinstance(max_keys, int) or isinstance(max_keys, bool) or not 0 <= max_keys <= 10_000:
        raise ValidationError(f"event field max_keys must be an integer 0..10000, not {max_keys!r}")
    out["max_keys"] = max_keys
    return out


def endpoints(*, ssm: Any, secrets: Any, env: str, dbname: str | None = None
              ) -> tuple[Endpoint, Endpoint, contract.Config]:
    """Source and target endpoints from the secrets the contract names."""
    cfg = contract.read(ssm, env)
    db = dbname or cfg["database/name"]
    eps = []
    for key in ("database/source-secret-arn", "database/target-secret-arn"):
        secret = secrets.get_secret_value(SecretId=cfg[key])["SecretString"]
        eps.append(Endpoint.from_secret(secret, dbname=db))
    return eps[0], eps[1], cfg


def run(*, env: str, ssm: Any, secrets: Any, cloudwatch: Any, sns: Any,
        event: Mapping[str, Any] | None = None, dbname: str | None = None,
        validate_fn: Callable[..., Report] = validate) -> dict[str, Any]:
    """Validate, publish metrics, alert on discrepancy or error; return the Lambda's result."""
    options = parse_event(event)
    source, target, cfg = endpoints(ssm=ssm, secrets=secrets, env=env, dbname=dbname)
    topic = cfg["notifications/validation-alerts-topic-arn"]
    try:
        report = validate_fn(source=source, target=target, **options)
    except ValidationError as exc:
        log.error("validation could not run: %s", exc)
        metrics.put(cloudwatch, metrics.error_data(env))
        _alert(sns, topic, f"paymigrate {env}: validation could not run",
               {"env": env, "status": "error", "error": str(exc)})
        return {VALIDATION_OK_FIELD: False, "status": "error", "error": str(exc), "mismatches": None}
    metrics.put(cloudwatch, metrics.run_data(env, figures(report), seconds=report.seconds))
    result = summary(report, keys=min(ALERT_KEYS, report.max_keys))
    if report.status != MATCH:
        log.warning("validation found %d differing rows in %s", report.mismatches,
                    ", ".join(report.mismatched_tables))
        _alert(sns, topic, f"paymigrate {env}: {report.mismatches} rows differ between source "
                           "and target", {"env": env, **result})
    return result


def summary(report: Report, *, keys: int) -> dict[str, Any]:
    """The report with at most ``keys`` keys per kind and table: small enough for SNS and
    Step Functions (256 KB), still naming where to look."""
    full = report.to_dict()
    tables = []
    for t in full["tables"]:
        t = dict(t)
        for kind in ("missing", "extra", "different"):
            t[kind] = t[kind][:keys]
            t[f"{kind}_omitted"] = t[f"{kind}_count"] - len(t[kind])
        tables.append(t)
    return {VALIDATION_OK_FIELD: report.status == MATCH, **full, "progress": full["progress"][-1:],
            "tables": tables}


def figures(report: Report) -> list[metrics.TableFigures]:
    return [metrics.TableFigures(t.table, t.source_rows + t.target_rows, t.differences, t.seconds)
            for t in report.tables]


def _alert(sns: Any, topic: str, subject: str, body: dict[str, Any]) -> None:
    sns.publish(TopicArn=topic, Subject=subject[:100], Message=json.dumps(body, indent=2))
