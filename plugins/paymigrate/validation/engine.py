"""The public entry points: ``validate``, ``validate_table`` and ``list_tables``.

The CLI, the Lambda, the DAG tasks and the benchmark all call these. Tables come from the
catalog; before anything is compared, both sides must have every table with the same columns,
types and primary key, or a :class:`ValidationError` names each difference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from paymigrate.db import Endpoint
from paymigrate.errors import ValidationError
from paymigrate.validation import catalog
from paymigrate.validation.differ import DEFAULT_TUNING, CatchUp, Tuning, compare_table
from paymigrate.validation.report import Report, TableResult
from paymigrate.validation.sides import Pair, Side

log = logging.getLogger(__name__)


def _check_max_keys(max_keys: int) -> None:
    if not isinstance(max_keys, int) or isinstance(max_keys, bool) or max_keys < 0:
        raise ValueError(f"max_keys {max_keys!r} must be a non-negative integer")


def _discover(side: Side, schemas: Sequence[str] | None) -> dict[str, catalog.Table]:
    side.begin()
    try:
        return catalog.discover(_Cursor(side), schemas=schemas)
    finally:
        side.end()


class _Cursor:
    """The two cursor methods the catalog reader needs, over a :class:`Side` (errors wrapped)."""

    def __init__(self, side: Side):
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
    """
    _check_max_keys(max_keys)
    started = datetime.now(UTC)
    results: list[TableResult] = []
    with Pair(source, target) as pair:
        src, tgt = pair.both(lambda s: _discover(s, schemas))
        pairs = catalog.plan(src, tgt, tables)
        log.info("validating %d tables: %s against %s", len(pairs), pair.source.label,
                 pair.target.label)
        clock = time.monotonic()
        rows_done = 0
        for i, (table, _) in enumerate(pairs, 1):
            result = compare_table(pair, table, max_keys=max_keys, catch_up=catch_up, tuning=tuning)
            results.append(result)
            rows_done += result.source_rows + result.target_rows
            elapsed = max(time.monotonic() - clock, 1e-9)
            log.info("%d/%d tables: %s %s (%d/%d rows, %.1fs); %.0f rows/s overall", i, len(pairs),
                     result.table, result.status, result.source_rows, result.target_rows,
                     result.seconds, rows_done / elapsed)
        report = Report(tables=tuple(results), started=started, finished=datetime.now(UTC),
                        max_keys=max_keys, source=pair.source.label, target=pair.target.label)
    log.info("validation %s: %d tables, %d rows differ, %.1fs", report.status, len(results),
             report.mismatches, report.seconds)
    return report


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
    side = Side("source", source)
    try:
        return catalog.select(_discover(side, schemas), tables, side="source")
    finally:
        side.close()
