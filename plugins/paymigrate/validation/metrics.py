"""The validation metrics schema: one namespace, the metric names, units and dimensions that the
validation Lambda and the scheduled validation DAG publish, and the series the CloudWatch
dashboard in ``infra/`` charts. Writers and the dashboard import this module, so a name changed
here changes everywhere.

Every datum carries the ``Environment`` dimension; per-table figures carry ``Table`` as well.
``MismatchedTables`` and ``ValidationErrors`` exist only for the whole run.

>>> [(d["MetricName"], d["Value"]) for d in run_data("dev", [TableFigures("public.a", 10, 1, 0.5)])][:3]
[('RowsChecked', 10.0), ('Mismatches', 1.0), ('MismatchedTables', 1.0)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

NAMESPACE = "Migration/DataValidation"
ENVIRONMENT = "Environment"
TABLE = "Table"
_PER_CALL = 20  # PutMetricData's limit of data per call


class Metric(StrEnum):
    ROWS_CHECKED = "RowsChecked"  # rows read on both sides
    MISMATCHES = "Mismatches"  # rows missing, extra or different, and surpluses without a key
    MISMATCHED_TABLES = "MismatchedTables"
    DURATION = "DurationSeconds"
    ERRORS = "ValidationErrors"  # a validation that could not run (a server down, a table missing)


UNITS = {Metric.ROWS_CHECKED: "Count", Metric.MISMATCHES: "Count", Metric.MISMATCHED_TABLES: "Count",
         Metric.DURATION: "Seconds", Metric.ERRORS: "Count"}
PER_TABLE = (Metric.ROWS_CHECKED, Metric.MISMATCHES, Metric.DURATION)


@dataclass(frozen=True)
class TableFigures:
    table: str
    rows_checked: int
    mismatches: int
    seconds: float

    def __post_init__(self) -> None:
        if min(self.rows_checked, self.mismatches, self.seconds) < 0:
            raise ValueError(f"{self.table}: figures cannot be negative: {self}")

    @classmethod
    def of(cls, result: Mapping[str, Any]) -> TableFigures:
        """From a table's result as :meth:`TableResult.to_dict` gives it (the DAG's XCom)."""
        mismatches = sum(result.get(k) or 0 for k in (
            "missing_count", "extra_count", "different_count", "source_surplus", "target_surplus"))
        return cls(result["table"], result["source_rows"] + result["target_rows"], mismatches,
                   result["seconds"])


def dimensions(env: str, table: str | None = None) -> list[dict[str, str]]:
    dims = [{"Name": ENVIRONMENT, "Value": env}]
    return dims + [{"Name": TABLE, "Value": table}] if table is not None else dims


def datum(metric: Metric, value: float, env: str, table: str | None = None) -> dict[str, Any]:
    return {"MetricName": metric.value, "Value": float(value), "Unit": UNITS[metric],
            "Dimensions": dimensions(env, table)}


def run_data(env: str, tables: Sequence[TableFigures], *, seconds: float | None = None
             ) -> list[dict[str, Any]]:
    """The data of one validation run: the totals, then each table's. ``seconds`` is the run's
    wall time; without it, the sum of the tables' (they may have run in parallel)."""
    total = seconds if seconds is not None else sum(t.seconds for t in tables)
    out = [datum(Metric.ROWS_CHECKED, sum(t.rows_checked for t in tables), env),
           datum(Metric.MISMATCHES, sum(t.mismatches for t in tables), env),
           datum(Metric.MISMATCHED_TABLES, sum(1 for t in tables if t.mismatches), env),
           datum(Metric.DURATION, total, env)]
    for t in tables:
        out += [datum(Metric.ROWS_CHECKED, t.rows_checked, env, t.table),
                datum(Metric.MISMATCHES, t.mismatches, env, t.table),
                datum(Metric.DURATION, t.seconds, env, t.table)]
    return out


def error_data(env: str) -> list[dict[str, Any]]:
    return [datum(Metric.ERRORS, 1, env)]


def put(cloudwatch: Any, data: Sequence[Mapping[str, Any]]) -> None:
    for i in range(0, len(data), _PER_CALL):
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=list(data[i:i + _PER_CALL]))


def dashboard_series(env: str, metrics: Sequence[Metric]) -> list[list[Any]]:
    """The run totals of ``metrics`` as a CloudWatch dashboard widget's ``metrics`` rows: the
    exact namespace, names and dimensions the writers use."""
    return [[NAMESPACE, m.value, ENVIRONMENT, env] for m in metrics]
