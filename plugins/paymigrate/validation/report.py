"""What a validation found: per table and overall, as plain JSON-ready values.

Reports carry primary-key values and counts, never row contents or credentials, so they can go
to logs, XCom, an SNS message or a ticket. A key is a JSON scalar (number for integer columns,
string otherwise) or a list for a composite key.

Each of ``missing`` (on the source only), ``extra`` (on the target only) and ``different`` (same
key, other content) lists at most ``max_keys`` keys, smallest first; ``*_count`` is the total and
``*_omitted`` how many the list leaves out. A table without a primary key is compared as a
multiset of rows: it reports ``source_surplus`` / ``target_surplus`` (rows one side holds more
copies of than the other) and no keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from paymigrate.progress import Figures, eta

MATCH = "match"
MISMATCH = "mismatch"

Key = int | str | list


@dataclass(frozen=True)
class TableResult:
    table: str
    source_rows: int
    target_rows: int
    seconds: float
    keyed: bool = True
    missing: tuple[Key, ...] = ()
    extra: tuple[Key, ...] = ()
    different: tuple[Key, ...] = ()
    missing_count: int = 0
    extra_count: int = 0
    different_count: int = 0
    source_surplus: int = 0
    target_surplus: int = 0
    rechecks: int = 0
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("missing", "extra", "different"):
            listed, total = getattr(self, name), getattr(self, f"{name}_count")
            if total < len(listed):
                raise ValueError(f"{self.table}: {name}_count {total} is below the "
                                 f"{len(listed)} keys listed")
        if min(self.source_rows, self.target_rows, self.source_surplus, self.target_surplus) < 0:
            raise ValueError(f"{self.table}: row counts cannot be negative")
        if not self.keyed and (self.missing_count or self.extra_count or self.different_count):
            raise ValueError(f"{self.table}: a table without key reports surpluses, not keys")

    @property
    def differences(self) -> int:
        return (self.missing_count + self.extra_count + self.different_count
                + self.source_surplus + self.target_surplus)

    @property
    def status(self) -> str:
        return MISMATCH if self.differences else MATCH

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "table": self.table, "status": self.status, "keyed": self.keyed,
            "source_rows": self.source_rows, "target_rows": self.target_rows,
        }
        for name in ("missing", "extra", "different"):
            listed = list(getattr(self, name))
            total = getattr(self, f"{name}_count")
            out[name] = listed
            out[f"{name}_count"] = total
            out[f"{name}_omitted"] = total - len(listed)
        if not self.keyed:
            out["source_surplus"] = self.source_surplus
            out["target_surplus"] = self.target_surplus
        out["seconds"] = round(self.seconds, 3)
        out["rechecks"] = self.rechecks
        if self.notes:
            out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True)
class ProgressSample:
    """How far a validation was after ``seconds``: tables, source rows and source bytes done,
    of the planner's estimate made at its start; the rate and the time left, by bytes."""

    seconds: float
    tables_done: int
    tables: int
    rows_done: int
    rows_estimated: int
    bytes_done: int
    bytes_estimated: int
    running: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if min(self.seconds, self.tables_done, self.rows_done, self.bytes_done) < 0:
            raise ValueError(f"progress sample {self!r} has a negative value")
        if self.tables_done > self.tables:
            raise ValueError(f"progress: {self.tables_done} tables done of {self.tables}")

    def figures(self) -> Figures:
        return Figures(self.seconds, self.rows_done, self.rows_estimated, self.bytes_done,
                       self.bytes_estimated)

    @property
    def bytes_per_second(self) -> float:
        return self.figures().bytes_per_second or 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far (by bytes); None before anything is done."""
        return eta(self.bytes_done, self.bytes_estimated, self.seconds)

    def to_dict(self) -> dict[str, Any]:
        eta = self.eta_seconds
        return {"seconds": round(self.seconds, 1), "tables_done": self.tables_done,
                "tables": self.tables, "rows_done": self.rows_done,
                "rows_estimated": self.rows_estimated, "bytes_done": self.bytes_done,
                "bytes_estimated": self.bytes_estimated,
                "rows_per_second": round(self.rows_done / self.seconds) if self.seconds > 0 else None,
                "bytes_per_second": round(self.bytes_per_second),
                "eta_seconds": None if eta is None else round(eta, 1),
                "running": list(self.running)}


@dataclass(frozen=True)
class Report:
    tables: tuple[TableResult, ...]
    started: datetime
    finished: datetime
    max_keys: int = 100
    source: str = ""  # user@host:port/db, never a password
    target: str = ""
    notes: tuple[str, ...] = field(default=())
    progress: tuple[ProgressSample, ...] = ()  # every few seconds, the last one at the end

    def __post_init__(self) -> None:
        if self.finished < self.started:
            raise ValueError(f"report finished {self.finished} before it started {self.started}")
        if self.max_keys < 0:
            raise ValueError(f"max_keys {self.max_keys} is negative")

    @property
    def status(self) -> str:
        return MISMATCH if any(t.status == MISMATCH for t in self.tables) else MATCH

    @property
    def mismatches(self) -> int:
        """Rows that differ, over all tables (missing + extra + different + surpluses)."""
        return sum(t.differences for t in self.tables)

    @property
    def mismatched_tables(self) -> list[str]:
        return [t.table for t in self.tables if t.status == MISMATCH]

    @property
    def rows_checked(self) -> int:
        return sum(t.source_rows + t.target_rows for t in self.tables)

    @property
    def seconds(self) -> float:
        return (self.finished - self.started).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        secs = self.seconds
        return {
            "status": self.status,
            "mismatches": self.mismatches,
            "mismatched_tables": self.mismatched_tables,
            "tables_checked": len(self.tables),
            "rows_checked": self.rows_checked,
            "seconds": round(secs, 3),
            "rows_per_second": round(self.rows_checked / secs) if secs > 0 else None,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "max_keys": self.max_keys,
            "source": self.source,
            "target": self.target,
            **({"notes": list(self.notes)} if self.notes else {}),
            "progress": [p.to_dict() for p in self.progress],
            "tables": [t.to_dict() for t in self.tables],
        }
