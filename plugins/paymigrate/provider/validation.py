"""The scheduled validation's steps: each one a call into the migration service on the
provider's hooks (the Lambda runs the same service on boto3 clients)."""

from __future__ import annotations

import logging
from typing import Any

from paymigrate.migration.service import MigrationService
from paymigrate.provider.hooks import MigrationHook

log = logging.getLogger(__name__)


def _service() -> MigrationService:
    return MigrationService(MigrationHook())


def due(*, force: bool, run_id: str) -> bool:
    return _service().validation_due(force=force)


def tables_to_validate(tables: list[str]) -> list[str]:
    found = _service().tables_to_validate(tables)
    log.info("%d table(s) to validate", len(found))
    return found


def validate_one(table: str, *, max_keys: int) -> dict[str, Any]:
    result = _service().validate_table(table, max_keys=max_keys)
    log.info("%s: %s", table, result["status"])
    return result


def publish(results: list[dict[str, Any]], *, run_id: str) -> dict[str, Any]:
    hook = MigrationHook()
    summary = MigrationService(hook).publish_validation(results, run_id=run_id)
    summary["retained_wal_bytes"] = hook.publish_retained_wal()  # a scheduled look at the slots
    log.info("validated %d table(s), %d rows, %d mismatch(es)", summary["tables"],
             summary["rows_checked"], summary["mismatches"])
    return summary


def alert(summary: dict[str, Any]) -> str:
    return _service().alert_validation(summary)
