"""The client-side ledger: an append-only JSON-lines file per run of the workload.

A record is appended only once its transaction is known to be committed (or, for error and
retry records, once the thing happened). Records are written and fsync'd in small batches
(every ``batch`` records or ``interval`` seconds, whichever comes first), so a crash loses at
most the last fraction of a second of records: the report then sees rows it was never told
about, which it ignores, never a loss it cannot explain. A torn last line (crash mid-write) is
skipped when reading.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LEDGER_DIR = "ledger"


class LedgerWriter:
    """Thread-safe appender; a background thread flushes at least every ``interval`` seconds."""

    def __init__(self, path: Path | str, *, batch: int = 50, interval: float = 0.1):
        if batch < 1 or interval <= 0:
            raise ValueError(f"ledger batch={batch} interval={interval}: both must be positive")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._batch, self._interval = batch, interval
        self._pending: list[bytes] = []
        self._cond = threading.Condition()
        self._closed = False
        self.written = 0
        self._flusher = threading.Thread(target=self._run, name=f"ledger-{self.path.stem}", daemon=True)
        self._flusher.start()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str).encode() + b"\n"
        with self._cond:
            if self._closed:
                raise RuntimeError(f"ledger {self.path} is closed")
            self._pending.append(line)
            if len(self._pending) >= self._batch:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed and len(self._pending) < self._batch:
                    self._cond.wait(self._interval)
                lines, self._pending = self._pending, []
                closed = self._closed
            if lines:
                self._write(lines)
            if closed:
                return

    def _write(self, lines: list[bytes]) -> None:
        self._fh.write(b"".join(lines))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.written += len(lines)

    def close(self) -> None:
        """Flush everything appended so far, fsync and close."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._flusher.join()
        self._fh.close()


def read_ledger(path: Path | str) -> Iterator[dict[str, Any]]:
    """The records of one ledger file; a torn last line is skipped with a warning."""
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError:
            if number >= len(lines) - 1:
                log.warning("%s: skipping a torn last line (the writer stopped mid-record)", path)
            else:
                raise ValueError(f"{path}:{number} is not a JSON record: {line[:80]!r}") from None


def ledger_files(directory: Path | str) -> list[Path]:
    return sorted((Path(directory) / LEDGER_DIR).glob("*.jsonl"))


def new_ledger_path(directory: Path | str, run_id: str) -> Path:
    return Path(directory) / LEDGER_DIR / f"{time.strftime('%Y%m%dT%H%M%S')}-{run_id}.jsonl"
