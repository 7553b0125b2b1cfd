"""The read canary, application side: a share of read-only queries goes to the target.

The application reads ``workflow/traffic-split-percentage`` every few seconds and sends that share
of its read-only queries through the read-only route (``payments_ro`` on every PgBouncer, which
points at the target); the rest go through the writer's route. Per route it counts reads, errors,
stale reads (a payment read back in another state than the client last committed: the route lags
the writer) and the p99 latency, and puts each interval's figures to CloudWatch
(``Migration/Reads``), where the canary gate reads them (:func:`read_figures`, :func:`verdict`).
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

NAMESPACE = "Migration/Reads"
# Per route, by Environment and Route: reads that answered, reads that failed, answered reads that
# were stale, the interval's p99 latency (ms). Infra alarms on the target route's.
READS, READ_ERRORS, STALE_READS, READ_LATENCY_P99 = "Reads", "ReadErrors", "StaleReads", "ReadLatencyP99"
ROUTES = ("writer", "target")
READ_ONLY_DATABASE = "payments_ro"  # the routers' read-only route, to the target


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


class ReadSplit:
    """Which route each read-only query takes, and what each route did.

    ``share()`` returns the percentage of reads for the target; it is asked every ``refresh``
    seconds by a thread, which also hands each interval's figures to ``publish`` (a failed
    refresh keeps the last share, a failed publish is logged: reads go on either way).
    """

    def __init__(self, *, target_dsns: Sequence[str], share: Callable[[], int], refresh: float = 5.0,
                 publish: Callable[[list[RouteFigures]], None] | None = None):
        if not target_dsns:
            raise ValueError("target_dsns: the read-only route's entry points are needed")
        self.target_dsns, self.share, self.refresh, self.publish = list(target_dsns), share, refresh, publish
        self.percent = 0
        self._lock = threading.Lock()
        self._interval: dict[str, list[Any]] = {}
        self._totals: dict[str, list[Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ReadSplit:
        self._refresh()
        self._thread = threading.Thread(target=self._run, name="read-split", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.refresh + 10)
        self._publish()

    def route(self, rng: random.Random) -> str:
        return "target" if rng.random() * 100 < self.percent else "writer"

    def record(self, route: str, *, ok: bool, seconds: float, stale: bool = False, error: str = "") -> None:
        with self._lock:
            for book in (self._interval, self._totals):
                reads, errors, stales, latencies, last = book.setdefault(route, [0, 0, 0, [], ""])
                book[route] = [reads + ok, errors + (not ok), stales + stale,
                               latencies + [seconds * 1000] if ok else latencies, error or last]

    def totals(self) -> dict[str, RouteFigures]:
        with self._lock:
            return _figures(self._totals)

    def _run(self) -> None:
        while not self._stop.wait(self.refresh):
            self._refresh()
            self._publish()

    def _refresh(self) -> None:
        try:
            percent = int(self.share())
        except Exception as exc:  # keep the last share: reads must not stop on a config blip
            log.warning("read share not refreshed (kept %d%%): %s", self.percent, exc)
            return
        if percent != self.percent:
            log.info("reads to the target: %d%% (was %d%%)", percent, self.percent)
        self.percent = max(0, min(100, percent))

    def _publish(self) -> None:
        with self._lock:
            figures, self._interval = _figures(self._interval), {}
        if self.publish is None or not figures:
            return
        try:
            self.publish(list(figures.values()))
        except Exception as exc:  # noqa: BLE001 - the figures of one interval, not the reads
            log.warning("read figures not published: %s", exc)


def _figures(book: Mapping[str, list[Any]]) -> dict[str, RouteFigures]:
    return {route: RouteFigures(route, reads, errors, stale, p99(latencies), last)
            for route, (reads, errors, stale, latencies, last) in book.items()}


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


def contract_share(ssm: Any, env: str) -> Callable[[], int]:
    """The share as the contract holds it now (``workflow/traffic-split-percentage``)."""
    from paymigrate import contract

    return lambda: int(contract.read(ssm, env)["workflow/traffic-split-percentage"])
