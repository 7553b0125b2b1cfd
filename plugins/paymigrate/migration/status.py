"""Where the migration stands, from the contract and the checkpoints alone (no database, no
Airflow): what ``GET /migration/status`` answers.

Lag is the last one measured and recorded (the cutover's approval figures, else the validation
decision), with when it was measured: reading it live would need the databases' network and
credentials, which the status function does not have. Documents carry keys and counts, never
values or credentials (the checkpoints refuse those on write).

>>> newest([{"at": "2026-12-01T10:00:00+00:00"}, None, {"at": "2026-12-02T09:00:00+00:00"}])
{'at': '2026-12-02T09:00:00+00:00'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from paymigrate.aws.checkpoints import LAST_VALIDATION, CheckpointStore


def newest(records: Sequence[Mapping[str, Any] | None]) -> Mapping[str, Any] | None:
    """The record with the latest ``at`` (ISO-8601 UTC times sort as text); None if none."""
    present = [r for r in records if r and r.get("at")]
    return max(present, key=lambda r: str(r["at"])) if present else None


def _lag(validation: Mapping[str, Any] | None, cutover: Mapping[str, Any] | None
         ) -> Mapping[str, Any] | None:
    found = []
    if validation and isinstance(validation.get("decide"), Mapping):
        lag = validation["decide"].get("lag") or {}
        found.append({"seconds": lag.get("seconds"), "bytes": lag.get("bytes"),
                      "at": validation.get("saved"), "measured_by": "validation decision"})
    if cutover and isinstance(cutover.get("approve_cutover"), Mapping):
        figures = cutover["approve_cutover"].get("figures") or {}
        found.append({"seconds": figures.get("lag_seconds"), "bytes": figures.get("lag_bytes"),
                      "at": cutover["approve_cutover"].get("at") or cutover.get("saved"),
                      "measured_by": "cutover approval"})
    return newest(found)


def _validations(scheduled: Mapping[str, Any] | None, migration: Mapping[str, Any] | None
                 ) -> Mapping[str, Any] | None:
    found = []
    if scheduled:
        found.append({"kind": "scheduled", "at": scheduled.get("finished"),
                      "run_id": scheduled.get("run_id"), "tables": scheduled.get("tables"),
                      "mismatches": scheduled.get("mismatches"),
                      "mismatched_tables": [m.get("table") for m in scheduled.get("mismatched") or []]})
    if migration and isinstance(migration.get("validate"), Mapping):
        report = migration["validate"]
        tables = report.get("tables") or []
        found.append({"kind": "migration", "at": migration.get("saved"),
                      "run_id": migration.get("run_id"), "status": report.get("status"),
                      "tables": len(tables),
                      "mismatched_tables": [t.get("table") for t in tables
                                            if t.get("status") != "match"]})
    return newest(found)


def _cutover(doc: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not doc:
        return None
    approval = doc.get("approve_cutover") or {}
    switch = doc.get("write_switch") or {}
    pause = switch.get("write_pause_seconds")
    return {"at": doc.get("saved"), "run_id": doc.get("run_id"),
            "approved_by": approval.get("by"), "approved_at": approval.get("at"),
            "direction": switch.get("direction"),
            "write_pause_ms": None if pause is None else round(pause * 1000, 1),
            "failed_step": switch.get("failed_step")}


def read_status(config: Mapping[str, Any], store: CheckpointStore) -> dict[str, Any]:
    """Phase, lock, lag, last validation and last cutover, as JSON-ready data."""
    lock = store.lock()
    validation = cutover = None
    if lock is not None:
        validation = store.load(migration_id=lock.migration_id, phase="validation")
        cutover = store.load(migration_id=lock.migration_id, phase="cutover")
    return {
        "env": store.env,
        "phase": config["workflow/mode"],
        "active_writer": config["database/active-writer"],
        "read_share_to_target": config["workflow/traffic-split-percentage"],
        "lock": {**asdict(lock), "state": str(lock.state)} if lock else None,
        "lag": _lag(validation, cutover),
        "lag_threshold_seconds": config["monitoring/replication-lag-threshold-seconds"],
        "last_validation": _validations(store.get_doc(LAST_VALIDATION), validation),
        "last_cutover": _cutover(cutover),
    }
