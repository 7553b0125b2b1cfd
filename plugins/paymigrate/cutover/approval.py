"""The cutover approval's figures: what an approver sees before the write switch.

Plain code over the run's checkpoints and XCom summaries (no Airflow import), so the figures and
the text shown in the approval are tested without a scheduler. The rehearsal drills (cutover runs
with ``drill_fail_at``) are kept in one document per environment, :data:`DRILLS`, so a later
approval can say how long a write pause to expect.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

DRILLS = "cutover-drills.json"
KEEP_DRILLS = 20  # the newest drills are what the next switch resembles


@dataclass(frozen=True)
class Validation:
    status: str
    tables: int
    rows: int
    mismatches: int
    finished: str
    age_seconds: float
    where: str  # "migration" (its validation phase) or "scheduled" (payment_validation)


@dataclass(frozen=True)
class Figures:
    lag_seconds: float | None
    lag_bytes: int | None
    lag_reason: str
    validation: Validation | None
    canary: list[dict[str, Any]] = field(default_factory=list)  # percent, alarms, lag seconds
    drill_pauses_ms: list[float] = field(default_factory=list)
    budget_ms: float | None = None

    @property
    def expected_pause_ms(self) -> float | None:
        return statistics.median(self.drill_pauses_ms) if self.drill_pauses_ms else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "expected_pause_ms": self.expected_pause_ms}


def _parse(stamp: str) -> datetime:
    at = datetime.fromisoformat(stamp)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def last_validation(*, migration: dict[str, Any] | None, scheduled: dict[str, Any] | None,
                    now: datetime) -> Validation | None:
    """The newer of the migration's own validation (its checkpoint) and the scheduled one."""
    found = []
    report = (migration or {}).get("validate")
    if report and report.get("finished"):
        found.append(Validation(status=report["status"], tables=report.get("tables_checked", 0),
                                rows=report.get("rows_checked", 0), mismatches=report.get("mismatches", 0),
                                finished=report["finished"], age_seconds=0, where="migration"))
    if scheduled and scheduled.get("finished"):
        found.append(Validation(status="mismatch" if scheduled.get("mismatches") else "match",
                                tables=scheduled.get("tables", 0), rows=scheduled.get("rows_checked", 0),
                                mismatches=scheduled.get("mismatches", 0), finished=scheduled["finished"],
                                age_seconds=0, where="scheduled"))
    if not found:
        return None
    newest = max(found, key=lambda v: _parse(v.finished))
    age = max(0.0, (now - _parse(newest.finished)).total_seconds())
    return Validation(**{**asdict(newest), "age_seconds": round(age, 1)})


def figures(*, lag: dict[str, Any], migration_validation: dict[str, Any] | None,
            scheduled_validation: dict[str, Any] | None, canary: list[dict[str, Any]] | None,
            drills: dict[str, Any] | None, budget_ms: float | None, now: datetime | None = None) -> Figures:
    """The approval's figures from the summaries the run and the checkpoints hold."""
    now = now or datetime.now(UTC)
    steps = [{"percent": s["percent"], "alarms": list(s.get("alarms") or []),
              "lag_seconds": (s.get("lag") or {}).get("seconds")} for s in canary or []]
    pauses = [float(d["write_pause_ms"]) for d in (drills or {}).get("drills", [])
              if d.get("write_pause_ms") is not None]
    return Figures(lag_seconds=lag.get("seconds"), lag_bytes=lag.get("bytes"), lag_reason=lag.get("reason", ""),
                   validation=last_validation(migration=migration_validation, scheduled=scheduled_validation,
                                              now=now),
                   canary=steps, drill_pauses_ms=pauses, budget_ms=budget_ms)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def body(f: Figures) -> str:
    """The approval's text (Markdown, as the Required Actions page renders it)."""
    if f.lag_seconds is not None:
        lag = f"{f.lag_seconds:.2f} s" + (f", {f.lag_bytes} bytes of WAL" if f.lag_bytes is not None else "")
    else:
        lag = f"unknown ({f.lag_reason})"
    v = f.validation
    validation = ("none recorded" if v is None else
                  f"**{v.status}**, {v.tables} tables, {v.rows} rows, {v.mismatches} mismatches; "
                  f"finished {v.finished}, {_age(v.age_seconds)} ago ({v.where})")
    if f.canary:
        canary = "; ".join(f"{s['percent']}% of reads: alarms {', '.join(s['alarms']) or 'none'}, lag "
                           + (f"{s['lag_seconds']:.2f} s" if s["lag_seconds"] is not None else "unknown")
                           for s in f.canary)
    else:
        canary = "no canary step ran"
    if f.expected_pause_ms is not None:
        pause = (f"{f.expected_pause_ms:.0f} ms, the median of {len(f.drill_pauses_ms)} rehearsal "
                 f"drill(s) (min {min(f.drill_pauses_ms):.0f}, max {max(f.drill_pauses_ms):.0f})")
    else:
        pause = "no rehearsal drill recorded"
    budget = f"; budget {f.budget_ms:.0f} ms" if f.budget_ms is not None else ""
    return "\n".join([
        f"- **Replication lag now:** {lag}",
        f"- **Last validation:** {validation}",
        f"- **Read canary:** {canary}",
        f"- **Expected write pause:** {pause}{budget}",
        "",
        "Approve to pause writes and move the writer to the target. Reject to end this run with the "
        "source still the writer and every read back on the source.",
    ])


def with_drill(drills: dict[str, Any] | None, *, run_id: str, failed_step: str | None,
               write_pause_seconds: float | None, at: str) -> dict[str, Any]:
    """The drills document with one more rehearsal (the newest :data:`KEEP_DRILLS` kept)."""
    kept = list((drills or {}).get("drills", []))
    kept.append({"run_id": run_id, "failed_step": failed_step, "at": at,
                 "write_pause_ms": None if write_pause_seconds is None else round(write_pause_seconds * 1000, 1)})
    return {"drills": kept[-KEEP_DRILLS:]}


def decision(payload: dict[str, Any]) -> dict[str, Any]:
    """Who answered the approval, when, and what (from the HITL response payload)."""
    user = payload.get("responded_by_user") or {}
    at = payload.get("responded_at")
    chosen = list(payload.get("chosen_options") or [])
    return {"approved": chosen == ["Approve"], "chosen": chosen,
            "by": user.get("name") or user.get("id"), "by_id": user.get("id"),
            "at": at.isoformat() if isinstance(at, datetime) else at}
