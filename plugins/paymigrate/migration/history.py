"""What the Migration page plots and lists, kept beside the checkpoints as the migration goes.

Three documents in the checkpoints bucket, each written by the step that measures the figure:

- ``{migration_id}/lag.json``: replication lag samples (when, seconds, bytes, which step saw
  it), one per sensor poll, decision, canary step and switch;
- ``{migration_id}/copy.json``: the initial copy's progress per table, rewritten while it runs;
- ``validations.json``: every validation of the environment (the migration's, the new writer's
  after a cutover, the scheduled ones) with its report kept under ``validation-reports/``.

A long history is thinned, never cut: past :data:`MAX_SAMPLES` every other old sample goes, so
a week-long migration still plots from its start. Recording is for people watching: a failure
to record is logged and never fails the step that measured.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from paymigrate.aws.checkpoints import CheckpointStore, now

log = logging.getLogger(__name__)

LAG = "lag.json"
COPY = "copy.json"
VALIDATIONS = "validations.json"
REPORTS = "validation-reports/"
MAX_SAMPLES = 400
KEEP_VALIDATIONS = 50
_STAMP = re.compile(r"[^0-9A-Za-z]+")
REPORT_KEY = re.compile(rf"^{re.escape(REPORTS)}[A-Za-z0-9-]+\.json$")  # what the page serves


def thinned(samples: list[Any], limit: int | None = None) -> list[Any]:
    """``samples`` kept under ``limit`` by dropping every other one of the older half.

    >>> thinned(list(range(8)), limit=6)
    [0, 2, 4, 5, 6, 7]
    """
    if len(samples) <= (limit or MAX_SAMPLES):
        return samples
    half = len(samples) // 2
    return samples[:half:2] + samples[half:]


def _quietly(what: str, fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the page's history must not fail a migration step
        log.warning("%s not recorded for the Migration page: %s: %s", what, type(exc).__name__, exc)
        return None


def record_lag(store: CheckpointStore, migration_id: str, lag: Mapping[str, Any], *, where: str,
               at: str | None = None) -> None:
    """Append one lag sample (``lag`` as ``summary(engine.lag())`` gives it)."""
    if not migration_id or migration_id == "none":
        return
    sample = {"at": at or now(), "seconds": lag.get("seconds"), "bytes": lag.get("bytes"), "where": where}

    def put() -> None:
        name = f"{migration_id}/{LAG}"
        doc = store.get_doc(name) or {}
        store.put_doc(name, {"samples": thinned([*doc.get("samples", []), sample])})

    _quietly("lag sample", put)


def record_copy(store: CheckpointStore, migration_id: str, progress: Mapping[str, Any]) -> None:
    """The initial copy's progress as it stands (``CopyProgress.to_dict()``): replaces the last."""
    if migration_id and migration_id != "none":
        _quietly("copy progress", lambda: store.put_doc(f"{migration_id}/{COPY}",
                                                        {**progress, "updated": now()}))


def record_validation(store: CheckpointStore, report: Mapping[str, Any], *, where: str, run_id: str,
                      dag_id: str) -> str | None:
    """Keep ``report`` (a report's ``to_dict()``, or the scheduled validation's summary) and add
    a line to the environment's validation history; returns the report's key."""
    finished = str(report.get("finished") or now())
    key = f"{REPORTS}{_STAMP.sub('-', f'{finished}-{where}').strip('-')}.json"
    line = {"finished": finished, "where": where, "run_id": run_id, "dag_id": dag_id,
            "status": report.get("status") or ("mismatch" if report.get("mismatches") else "match"),
            "tables": report.get("tables_checked", report.get("tables")),
            "rows": report.get("rows_checked"), "mismatches": report.get("mismatches"),
            "seconds": report.get("seconds"), "report": key}

    def put() -> str:
        store.put_doc(key, dict(report))
        doc = store.get_doc(VALIDATIONS) or {}
        store.put_doc(VALIDATIONS, {"runs": [*doc.get("runs", []), line][-KEEP_VALIDATIONS:]})
        return key

    return _quietly("validation history", put)
