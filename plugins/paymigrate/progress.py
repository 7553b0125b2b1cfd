"""Progress of long work, one way everywhere: done out of total in rows and bytes, the rate and
the time left, as a log line every few seconds and as figures for XCom and the checkpoints.

The initial copy, the deferred index build, the validation and the drain waits each measure
their own ``done`` and ``total``; :class:`Figures` turns them into rates, an ETA and one line,
and :class:`Ticker` calls a sampling function on a timer thread while the work runs.
Totals are often estimates (the planner's row counts, relation sizes): lines mark them ``~``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

EVERY = 5.0  # seconds between progress lines


def eta(done: float, total: float | None, seconds: float) -> float | None:
    """Seconds left at the rate so far; None before anything is done or without a total.

    >>> eta(25, 100, 10.0), eta(0, 100, 10.0), eta(120, 100, 10.0), eta(5, None, 1.0)
    (30.0, None, 0.0, None)
    """
    if not done or total is None or seconds <= 0:
        return None
    return max(total - done, 0) / (done / seconds)


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


@dataclass(frozen=True)
class Figures:
    """How far one piece of long work is after ``seconds``. ``rows_*`` or ``bytes_*`` may be
    None where the work does not count them (a drain counts bytes of WAL only)."""

    seconds: float
    rows_done: int | None = None
    rows_total: int | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None

    def __post_init__(self) -> None:
        if self.seconds < 0 or min(self.rows_done or 0, self.bytes_done or 0) < 0:
            raise ValueError(f"progress {self!r} has a negative value")

    @property
    def rows_per_second(self) -> float | None:
        return self.rows_done / self.seconds if self.rows_done is not None and self.seconds > 0 else None

    @property
    def bytes_per_second(self) -> float | None:
        return self.bytes_done / self.seconds if self.bytes_done is not None and self.seconds > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        """By bytes where they are counted (a table's cost follows its size), else by rows."""
        by_bytes = eta(self.bytes_done or 0, self.bytes_total, self.seconds)
        return by_bytes if by_bytes is not None else eta(self.rows_done or 0, self.rows_total, self.seconds)

    def line(self) -> str:
        """The figures for a log line.

        >>> Figures(10.0, 4000, 10000, 2_000_000, 5_000_000).line()
        '4,000 of ~10,000 rows, 2.0 of ~5.0 MB, 400 rows/s, 0.2 MB/s, ETA 15 s'
        """
        parts = []
        if self.rows_done is not None:
            total = f" of ~{self.rows_total:,}" if self.rows_total is not None else ""
            parts.append(f"{self.rows_done:,}{total} rows")
        if self.bytes_done is not None:
            total = f" of ~{mb(self.bytes_total)}" if self.bytes_total is not None else " MB"
            parts.append(f"{self.bytes_done / 1e6:,.1f}{total}")
        if self.rows_per_second is not None:
            parts.append(f"{self.rows_per_second:,.0f} rows/s")
        if self.bytes_per_second is not None:
            parts.append(f"{self.bytes_per_second / 1e6:,.1f} MB/s")
        left = self.eta_seconds
        parts.append("ETA unknown" if left is None else f"ETA {left:,.0f} s")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        left, rows_rate, bytes_rate = self.eta_seconds, self.rows_per_second, self.bytes_per_second
        return {"seconds": round(self.seconds, 1), "rows_done": self.rows_done, "rows_total": self.rows_total,
                "bytes_done": self.bytes_done, "bytes_total": self.bytes_total,
                "rows_per_second": None if rows_rate is None else round(rows_rate),
                "bytes_per_second": None if bytes_rate is None else round(bytes_rate),
                "eta_seconds": None if left is None else round(left, 1)}


class Ticker:
    """``with Ticker(sample, what="initial copy"):`` calls ``sample(seconds)`` every ``every``
    seconds on a timer thread while the block runs and logs ``what: <figures> <detail>``.

    ``sample`` returns ``(figures, detail)``; a sample that fails is logged and the work goes on
    (progress is for people; it must not end the work it watches)."""

    def __init__(self, sample: Callable[[float], tuple[Figures, str]], *, what: str,
                 every: float = EVERY, logger: logging.Logger | None = None):
        if every <= 0:
            raise ValueError(f"progress interval {every} must be positive")
        self.sample, self.what, self.every = sample, what, every
        self.log = logger or log
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{what}", daemon=True)

    def __enter__(self) -> Ticker:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def tick(self) -> None:
        try:
            figures, detail = self.sample(self.elapsed())
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self.log.warning("%s: progress not measured: %s: %s", self.what, type(exc).__name__, exc)
            return
        self.log.info("%s: %s%s", self.what, figures.line(), f"; {detail}" if detail else "")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()
