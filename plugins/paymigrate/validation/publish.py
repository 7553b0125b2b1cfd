"""The validation Lambda's event and result: contract in, metrics and alert out.

:func:`run` hands the work to the migration service's ``run_validation`` on plain boto3
clients: it reads the endpoints' secrets named by the contract, validates, publishes metrics
(:mod:`paymigrate.validation.metrics`, overall and per table) and, on a discrepancy or an error,
a message with keys only (capped) to the validation-alerts topic. The result is small and
JSON-ready; its ``ok`` field is what the migration state machine's ``decide`` reads. Clients
are passed in, so this is tested against moto and runs unchanged in AWS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from paymigrate.aws.statemachines import VALIDATION_OK_FIELD
from paymigrate.inputs import validation_options as parse_event
from paymigrate.validation import metrics
from paymigrate.validation.engine import validate
from paymigrate.validation.report import MATCH, Report

log = logging.getLogger(__name__)

NAMESPACE = metrics.NAMESPACE
ALERT_KEYS = 20  # keys per kind and table in an alert or a Lambda result: enough to start from


def run(*, env: str, ssm: Any, secrets: Any, cloudwatch: Any, sns: Any,
        event: Mapping[str, Any] | None = None, dbname: str | None = None,
        validate_fn: Callable[..., Report] = validate) -> dict[str, Any]:
    """Validate, publish metrics, alert on discrepancy or error; return the Lambda's result.
    The work is the migration service's :meth:`~MigrationService.run_validation`."""
    from paymigrate.migration.platform import ClientPlatform
    from paymigrate.migration.service import MigrationService

    options = parse_event(event)
    platform = ClientPlatform(env=env, dbname=dbname, clients={
        "ssm": ssm, "secretsmanager": secrets, "cloudwatch": cloudwatch, "sns": sns})
    return MigrationService(platform).run_validation(**options, validate_fn=validate_fn)


def trimmed(report: Report, *, keys: int) -> dict[str, Any]:
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
