"""Progress of a long validation: logged every few seconds and kept for the report.

Tables are compared in one scan each, so progress moves a table at a time; the estimate of
rows and bytes is the planner's (``reltuples``, relation size) read from the source at the
start, and the rate and the time left are by bytes (a table's cost follows its size, not its
row count). While a big table is being compared the samples name it, so a log that stops
moving still says what it waits on. The line and the timer are :mod:`paymigrate.progress`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from paymigrate.progress import Figures, Ticker
from paymigrate.validation.report import ProgressSample

log = logging.getLogger(__name__)

# Samples a report keeps: past this, every other one is dropped, so an hours-long validation
# still carries its whole course in a report small enough for XCom and SNS.
MAX_SAMPLES = 120


class Progress:
    """Thread-safe: workers call :meth:`started` and :meth:`done`; a timer thread samples."""

    def __init__(self, estimates: Mapping[str, tuple[int, int]], *, every: float):
        """``estimates``: ``{table: (rows, bytes)}`` of every table to compare."""
        self._estimates = dict(estimates)
        self._lock = threading.Lock()
        self._running: list[str] = []
        self._done: dict[str, int] = {}
        self._clock = time.monotonic()
        self._ticker = Ticker(self._tick, what="validation", every=every, logger=log)
        self.samples: list[ProgressSample] = []

    def __enter__(self) -> Progress:
        self._clock = time.monotonic()
        self._ticker.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ticker.__exit__(*exc)
        self.samples.append(self.sample())

    def started(self, table: str) -> None:
        with self._lock:
            self._running.append(table)

    def done(self, table: str, source_rows: int) -> None:
        with self._lock:
            self._running.remove(table)
            self._done[table] = source_rows

    def sample(self) -> ProgressSample:
        with self._lock:
            done, running = dict(self._done), tuple(self._running)
        return ProgressSample(
            seconds=time.monotonic() - self._clock, tables_done=len(done),
            tables=len(self._estimates), rows_done=sum(done.values()),
            rows_estimated=sum(r for r, _ in self._estimates.values()),
            bytes_done=sum(self._estimates.get(t, (0, 0))[1] for t in done),
            bytes_estimated=sum(b for _, b in self._estimates.values()), running=running)

    def _tick(self, _seconds: float) -> tuple[Figures, str]:
        s = self.sample()
        self.samples.append(s)
        if len(self.samples) > MAX_SAMPLES:
            self.samples = self.samples[1::2]
        return s.figures(), (f"{s.tables_done}/{s.tables} tables; comparing "
                             f"{', '.join(s.running) or 'nothing'}")
