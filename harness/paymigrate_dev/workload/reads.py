"""The read canary, application side: a share of read-only queries goes to the target.

The application reads ``workflow/traffic-split-percentage`` every few seconds and sends that share
of its read-only queries through the read-only route (``payments_ro`` on every PgBouncer, which
points at the target); the rest go through the writer's route. Per route it counts reads, errors,
stale reads and the p99 latency, and hands each interval's figures to a publisher
(:func:`paymigrate.cutover.read_canary.cloudwatch_publisher`), where the canary gate reads them.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from paymigrate.cutover.read_canary import RouteFigures, p99

log = logging.getLogger(__name__)


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


def contract_share(ssm: Any, env: str) -> Callable[[], int]:
    """The share as the contract holds it now (``workflow/traffic-split-percentage``)."""
    from paymigrate.aws import contract

    return lambda: int(contract.read(ssm, env)["workflow/traffic-split-percentage"])
