"""The read canary's figures: what the application reports of its reads per route, and the gate
on them.

During a canary step the application sends the contract's share of its read-only queries
(``workflow/traffic-split-percentage``) through the read-only route (``payments_ro`` on every
PgBouncer, which points at the target; :mod:`paymigrate.routing.access`), the rest through the
writer's route. Per route it counts reads, errors, stale reads (a payment read back in another
state than the client last committed: the route lags the writer) and the p99 latency, and puts
each interval's figures to CloudWatch (``Migration/Reads``, :func:`metric_data`). The canary step
reads them back (:func:`read_figures`) and decides (:func:`verdict`); ``infra/`` alarms and charts
the same metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

NAMESPACE = "Migration/Reads"
# Per route, by Environment and Route: reads that answered, reads that failed, answered reads that
# were stale, the interval's p99 latency (ms). Infra alarms on the target route's.
READS, READ_ERRORS, STALE_READS, READ_LATENCY_P99 = "Reads", "ReadErrors", "StaleReads", "ReadLatencyP99"
ROUTES = ("writer", "target")


@dataclass(frozen=True)
class RouteFigures:
    route: str
    reads: int = 0
    errors: int = 0
    stale: int = 0
    p99_ms: float | None = None
    last_error: str = ""

    @property
    def error_rate(self) -> float:
        """Errors over queries tried, in percent (0 with none tried).

        >>> RouteFigures("target", reads=90, errors=10).error_rate
        10.0
        """
        tried = self.reads + self.errors
        return 100.0 * self.errors / tried if tried else 0.0

    @property
    def stale_rate(self) -> float:
        """Stale reads over the reads that answered, in percent (0 with none).

        >>> RouteFigures("target", reads=40, stale=2).stale_rate
        5.0
        """
        return 100.0 * self.stale / self.reads if self.reads else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": round(self.error_rate, 2),
                "stale_rate": round(self.stale_rate, 2)}


def p99(values: Sequence[float]) -> float | None:
    """Nearest-rank 99th percentile.

    >>> p99(list(range(1, 101)))
    99
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


def verdict(target: RouteFigures, *, percent: int, max_error_rate: float,
            max_p99_ms: float | None = None, max_stale_rate: float | None = None) -> Verdict:
    """The canary gate on the target route's reads during one step: every figure over its
    limit is named. No reads measured is no evidence either way (a step with no soak, or no
    application reading): it passes.

    >>> verdict(RouteFigures("target", reads=5, errors=20, last_error="permission denied"),
    ...         percent=10, max_error_rate=5.0).reason
    'reads through the target route at 10%: error rate 80.0% (20 of 25) is over 5.0%; last error: permission denied'
    >>> verdict(RouteFigures("target", reads=50, stale=6, p99_ms=900), percent=50, max_error_rate=5.0,
    ...         max_p99_ms=250, max_stale_rate=5.0).reason
    'reads through the target route at 50%: p99 latency 900 ms is over 250 ms, stale reads 12.0% (6 of 50) are over 5.0%'
    """
    tried = target.reads + target.errors
    over = []
    if tried and target.error_rate > max_error_rate:
        over.append(f"error rate {target.error_rate:.1f}% ({target.errors} of {tried}) is over "
                    f"{max_error_rate:.1f}%")
    if max_p99_ms is not None and target.p99_ms is not None and target.p99_ms > max_p99_ms:
        over.append(f"p99 latency {target.p99_ms:.0f} ms is over {max_p99_ms:.0f} ms")
    if max_stale_rate is not None and target.reads and target.stale_rate > max_stale_rate:
        over.append(f"stale reads {target.stale_rate:.1f}% ({target.stale} of {target.reads}) are "
                    f"over {max_stale_rate:.1f}%")
    if not over:
        return Verdict(True)
    return Verdict(False, f"reads through the target route at {percent}%: {', '.join(over)}"
                          + (f"; last error: {target.last_error}" if target.last_error else ""))


def dimensions(env: str, route: str) -> list[dict[str, str]]:
    return [{"Name": "Environment", "Value": env}, {"Name": "Route", "Value": route}]


def metric_data(figures: Sequence[RouteFigures], *, env: str) -> list[dict[str, Any]]:
    """CloudWatch datums of one interval, per route."""
    data = []
    for f in figures:
        dims = dimensions(env, f.route)
        data += [{"MetricName": READS, "Value": float(f.reads), "Unit": "Count", "Dimensions": dims},
                 {"MetricName": READ_ERRORS, "Value": float(f.errors), "Unit": "Count", "Dimensions": dims},
                 {"MetricName": STALE_READS, "Value": float(f.stale), "Unit": "Count", "Dimensions": dims}]
        if f.p99_ms is not None:
            data.append({"MetricName": READ_LATENCY_P99, "Value": f.p99_ms, "Unit": "Milliseconds",
                         "Dimensions": dims})
    return data


def cloudwatch_publisher(cloudwatch: Any, env: str) -> Callable[[list[RouteFigures]], None]:
    return lambda figures: cloudwatch.put_metric_data(Namespace=NAMESPACE,
                                                      MetricData=metric_data(figures, env=env))


def read_figures(cloudwatch: Any, env: str, route: str, *, since: datetime,
                 until: datetime | None = None) -> RouteFigures:
    """What the application reported for ``route`` between ``since`` and ``until``: counts
    summed, the worst interval's p99."""
    until = until or datetime.now(UTC)
    dims = dimensions(env, route)

    def stat(metric: str, how: str) -> list[float]:
        points = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE, MetricName=metric, Dimensions=dims, StartTime=since - timedelta(seconds=1),
            EndTime=until + timedelta(seconds=1), Period=60, Statistics=[how])["Datapoints"]
        return [p[how] for p in points]

    latency = stat(READ_LATENCY_P99, "Maximum")
    return RouteFigures(route, int(sum(stat(READS, "Sum"))), int(sum(stat(READ_ERRORS, "Sum"))),
                        int(sum(stat(STALE_READS, "Sum"))), max(latency) if latency else None)
