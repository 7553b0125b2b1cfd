"""The public entry points: ``validate``, ``validate_table`` and ``list_tables``.

The CLI, the Lambda, the DAG tasks and the benchmark all call these. Tables come from the
catalog; before anything is compared, both sides must have every table with the same columns,
types and a common key, or a :class:`ValidationError` names each difference. Several tables are
compared at once (``Tuning.connections`` sessions per side), biggest first, each scan with
parallel workers in proportion to its table's share of the bytes (:func:`workers_for`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from paymigrate.db import Endpoint
from paymigrate.errors import ValidationError
from paymigrate.validation import catalog
from paymigrate.validation import sql as dialect
from paymigrate.validation.differ import DEFAULT_TUNING, CatchUp, Tuning, compare_table
from paymigrate.validation.progress import Progress
from paymigrate.validation.report import Report, TableResult
from paymigrate.validation.sides import Pair, Session

log = logging.getLogger(__name__)


def _check_max_keys(max_keys: int) -> None:
    if not isinstance(max_keys, int) or isinstance(max_keys, bool) or max_keys < 0:
        raise ValueError(f"max_keys {max_keys!r} must be a non-negative integer")


def _discover(side: Session, schemas: Sequence[str] | None) -> dict[str, catalog.Table]:
    side.begin()
    try:
        return catalog.discover(_Cursor(side), schemas=schemas)
    finally:
        side.end()


class _Cursor:
    """The two cursor methods the catalog reader needs, over a :class:`Session` (errors wrapped)."""

    def __init__(self, side: Session):
        self._side = side
        self._rows: list[tuple] = []

    def execute(self, statement, params=None) -> None:
        self._rows = self._side.query(statement, params)

    def fetchall(self) -> list[tuple]:
        return self._rows


def validate(*, source: str | Endpoint, target: str | Endpoint,
             schemas: Sequence[str] | None = None, tables: Sequence[str] | None = None,
             max_keys: int = 100, catch_up: CatchUp | None = None,
             tuning: Tuning = DEFAULT_TUNING) -> Report:
    """Compare every table (or the ``tables``, ``schema.name`` or bare names, of ``schemas``).

    ``catch_up(lsn)`` (optional) waits until the target has applied the source's WAL position
    ``lsn`` and says whether it did in time; with it, differences are re-checked after the
    target caught up and only those that persist are reported.

    Up to ``tuning.connections`` tables are compared at once, each on a connection of its own
    per side, biggest first; the report lists them in name order whatever finished first.
    """
    _check_max_keys(max_keys)
    started = datetime.now(UTC)
    with Pair(source, target) as pair:
        src, tgt = pair.both(lambda s: _discover(s, schemas))
        tables_ = [t for t, _ in catalog.plan(src, tgt, tables)]
        estimates = _estimates(pair.source, tables_)
        log.info("validating %d tables (~%d rows, ~%.0f MB per side), %d at a time: %s against %s",
                 len(tables_), sum(r for r, _ in estimates.values()),
                 sum(b for _, b in estimates.values()) / 1e6, min(tuning.connections, len(tables_)),
                 pair.source.label, pair.target.label)
        biggest_first = sorted(tables_, key=lambda t: -estimates[t.qualified][1])
        with Progress(estimates, every=tuning.progress_seconds) as progress:
            results = _compare_all(pair, biggest_first, source=source, target=target,
                                   estimates=estimates, progress=progress, max_keys=max_keys,
                                   catch_up=catch_up, tuning=tuning)
        report = Report(tables=tuple(results[t.qualified] for t in tables_), started=started,
                        finished=datetime.now(UTC), max_keys=max_keys, source=pair.source.label,
                        target=pair.target.label, progress=tuple(progress.samples))
    log.info("validation %s: %d tables, %d rows differ, %.1fs", report.status, len(report.tables),
             report.mismatches, report.seconds)
    return report


def _estimates(side: Session, tables: Sequence[catalog.Table]) -> dict[str, tuple[int, int]]:
    """``{table: (planner rows, bytes)}`` on ``side``; rows 0 for a table never analyzed."""
    side.begin()
    try:
        rows = side.query(dialect.sizes(), ([t.schema for t in tables], [t.name for t in tables]))
    finally:
        side.end()
    found = {f"{s}.{n}": (int(r or 0), int(b or 0)) for s, n, r, b in rows}
    return {t.qualified: found.get(t.qualified, (0, 0)) for t in tables}


def _compare_all(pair: Pair, tables: list[catalog.Table], *, source: str | Endpoint,
                 target: str | Endpoint, estimates: dict[str, tuple[int, int]],
                 progress: Progress, max_keys: int, catch_up: CatchUp | None,
                 tuning: Tuning) -> dict[str, TableResult]:
    """Each table on one of ``tuning.connections`` pairs of sessions (``pair`` and new ones);
    ``estimates`` are ``{table: (rows, bytes)}``."""
    todo = iter(tables)
    lock = threading.Lock()
    failed = threading.Event()
    results: dict[str, TableResult] = {}

    def work(p: Pair) -> None:
        while not failed.is_set():
            with lock:
                table = next(todo, None)
            if table is None:
                return
            progress.started(table.qualified)
            own = tuning
            if tuning.workers is None:
                own = dataclasses.replace(tuning, workers=workers_for(
                    estimates[table.qualified][1], total_bytes, tuning.connections))
            try:
                result = compare_table(p, table, max_keys=max_keys, catch_up=catch_up, tuning=own)
            except BaseException:
                failed.set()  # the other workers finish their table and take no other
                raise
            progress.done(table.qualified, result.source_rows)
            with lock:
                results[table.qualified] = result
                log.info("%d/%d tables: %s %s (%d/%d rows, %.1fs)", len(results), len(tables),
                         result.table, result.status, result.source_rows, result.target_rows,
                         result.seconds)

    total_bytes = sum(estimates[t.qualified][1] for t in tables)
    width = max(1, min(tuning.connections, len(tables)))
    extra: list[Pair] = []
    try:
        extra = [Pair(source, target) for _ in range(width - 1)]
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="validate-table") as pool:
            futures = [pool.submit(work, p) for p in (pair, *extra)]
            errors = [f.exception() for f in futures]
    finally:
        for p in extra:
            p.close()
    for err in errors:
        if err is not None:
            raise err
    return results


def workers_for(table_bytes: int, total_bytes: int, connections: int) -> int:
    """Parallel workers a table's scans may use: its share of ``connections`` processes per
    side, less its own session.

    The tables' sessions already keep that many processes busy; workers on top of them only
    compete for the same cores (measured: 1.21x the CPU of a hash aggregate of every table
    with two workers per scan and two tables at once, 1.12x without workers). A table holding
    more than its session's share of the bytes would finish alone on one process, so it gets
    workers for the rest of its share.

    >>> workers_for(45, 100, 2), workers_for(80, 100, 2), workers_for(100, 100, 4)
    (0, 1, 3)
    >>> workers_for(10, 100, 8), workers_for(0, 0, 2)
    (0, 1)
    """
    share = table_bytes / total_bytes if total_bytes > 0 else 1.0
    return max(0, min(connections - 1, math.ceil(share * connections - 0.5) - 1))


def validate_table(*, source: str | Endpoint, target: str | Endpoint, table: str,
                   max_keys: int = 100, catch_up: CatchUp | None = None,
                   tuning: Tuning = DEFAULT_TUNING) -> TableResult:
    """Compare one table, ``schema.name`` (or a bare name found in exactly one schema)."""
    report = validate(source=source, target=target, tables=[table], max_keys=max_keys,
                      catch_up=catch_up, tuning=tuning)
    if len(report.tables) != 1:
        raise ValidationError(
            f"table {table} names {len(report.tables)} tables: "
            f"{', '.join(t.table for t in report.tables)}; qualify it as schema.name")
    return report.tables[0]


def list_tables(*, source: str | Endpoint, schemas: Sequence[str] | None = None,
                tables: Sequence[str] | None = None) -> list[str]:
    """The ``schema.name`` of every table the source has that a validation would compare."""
    side = Session("source", source)
    try:
        return catalog.select(_discover(side, schemas), tables, side="source")
    finally:
        side.close()
