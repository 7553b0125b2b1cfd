"""The initial copy under an exported snapshot: ``postgres-logical``'s default, the way pgcopydb
and ``pg_dump --snapshot`` work.

PostgreSQL's own table sync (``copy_data = true``) copies into tables that already carry their
primary key: it must, since it applies the changes made during its COPY right after it, and an
UPDATE needs the key to find its row. Maintaining that key row by row is a third of the copy at
1M rows. Here the copy and the slot share one instant instead:

1. a replication connection creates the slot with ``SNAPSHOT 'export'``: the slot will stream
   every change committed after the snapshot, and the snapshot sees every one before it;
2. ``jobs`` workers take one table at a time, largest first: each imports the snapshot in a
   REPEATABLE READ READ ONLY transaction on the source and streams ``COPY ... TO STDOUT`` into
   ``TRUNCATE`` + ``COPY ... FROM STDIN (FREEZE)``, one transaction on the target;
3. the caller then builds the keys and subscribes on the slot without a copy of its own.

The snapshot lives as long as the exporting connection, which stays open until the last table has
committed. A table commits only when both sides finished and agree on the row count: a source
that stopped half-way ends the target's COPY on a row boundary, which the server would take for
the end of the data. A lost connection (the target restarting after a crash) is waited out and
the table copied again from the same snapshot, TRUNCATE first; any other failure cancels every
worker. The copy never commits asynchronously: a table reported copied is on the target's disk.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

import psycopg2

from paymigrate.db import Endpoint, connect, connection, redact
from paymigrate.errors import ReplicationError
from paymigrate.progress import Figures

log = logging.getLogger(__name__)

BUFFER = 1 << 20
# Attempts per table, and how long to wait for an unreachable server between two of them.
ATTEMPTS = 3
RECONNECT_SECONDS = 120.0
APP_NAME = "paymigrate initial copy"

_TABLES = """
SELECT format('%%I.%%I', n.nspname, c.relname),
       coalesce(array_agg(quote_ident(a.attname) ORDER BY a.attnum)
                FILTER (WHERE a.attname IS NOT NULL), '{}'),
       pg_table_size(c.oid), c.reltuples::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     AND a.attgenerated = ''
WHERE c.oid = ANY(%s::oid[])
GROUP BY c.oid, n.nspname, c.relname
ORDER BY 3 DESC, 1
"""


@dataclass(frozen=True)
class CopiedTable:
    name: str  # format('%I.%I')
    columns: tuple[str, ...]  # quoted; generated columns left out (the target computes them)
    size: int  # bytes on the source, for the largest-first order
    rows_estimate: int | None = None  # the source planner's; None before its first ANALYZE

    def copy_sql(self, direction: str, fmt: str) -> str:
        cols = f" ({', '.join(self.columns)})" if self.columns else ""
        if direction == "out":
            return f"COPY {self.name}{cols} TO STDOUT (FORMAT {fmt})"
        return f"COPY {self.name}{cols} FROM STDIN (FORMAT {fmt}, FREEZE)"


def tables_to_copy(cur, oids: list[int]) -> list[CopiedTable]:
    """The tables of ``oids`` with their copied columns, largest first."""
    cur.execute(_TABLES, (oids,))
    return [CopiedTable(name, tuple(cols), int(size), int(rows) if rows >= 0 else None)
            for name, cols, size, rows in cur.fetchall()]


@dataclass(frozen=True)
class TableProgress:
    """One table's copy so far: rows and bytes done of the source's estimates. A running
    table's rows are the target's ``pg_stat_progress_copy``; its bytes are its size times the
    share of rows done (the COPY stream's bytes are not the table's)."""

    table: str
    rows: int
    bytes: int
    rows_total: int | None
    bytes_total: int
    seconds: float
    done: bool


@dataclass(frozen=True)
class CopyProgress:
    tables: tuple[TableProgress, ...]
    seconds: float

    def figures(self) -> Figures:
        totals = [t.rows_total if not t.done else t.rows for t in self.tables]
        return Figures(self.seconds, sum(t.rows for t in self.tables),
                       None if None in totals else sum(r or 0 for r in totals),
                       sum(t.bytes for t in self.tables), sum(t.bytes_total for t in self.tables))

    def line(self) -> str:
        done = sum(t.done for t in self.tables)
        running = [t.table for t in self.tables if not t.done and t.seconds > 0]
        return (f"{done}/{len(self.tables)} tables, {self.figures().line()}"
                + (f"; copying {', '.join(running)}" if running else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"tables": [asdict(t) for t in self.tables], "overall": self.figures().to_dict()}


_COPYING = """
SELECT format('%I.%I', n.nspname, c.relname), p.tuples_processed
FROM pg_stat_progress_copy p JOIN pg_class c ON c.oid = p.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE p.datname = current_database() AND p.command = 'COPY FROM'
"""


class _Watch:
    """What the copy's workers did so far, for :func:`copy_tables`'s progress samples."""

    def __init__(self, tables: list[CopiedTable], target: Endpoint):
        self.tables, self.target = tables, target
        self.started: dict[str, float] = {}
        self.finished: dict[str, tuple[int, float]] = {}  # rows, seconds
        self.clock = time.monotonic()

    def running_rows(self) -> dict[str, int]:
        try:
            with connection(self.target, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(_COPYING)
                return {name: int(rows) for name, rows in cur.fetchall()}
        except psycopg2.OperationalError:
            return {}  # the target restarting: the next sample sees it again

    def sample(self) -> CopyProgress:
        now, running = time.monotonic(), self.running_rows() if len(self.finished) < len(self.tables) else {}
        out = []
        for t in self.tables:
            if t.name in self.finished:
                rows, secs = self.finished[t.name]
                out.append(TableProgress(t.name, rows, t.size, rows, t.size, round(secs, 3), True))
                continue
            rows = running.get(t.name, 0)
            share = min(rows / t.rows_estimate, 1.0) if t.rows_estimate else 0.0
            began = self.started.get(t.name)
            out.append(TableProgress(t.name, rows, int(t.size * share), t.rows_estimate, t.size,
                                     round(now - began, 3) if began else 0.0, False))
        return CopyProgress(tuple(out), now - self.clock)


@dataclass(frozen=True)
class CopyReport:
    tables: int
    rows: int
    seconds: float
    consistent_lsn: str  # the slot streams what committed after this position
    progress: CopyProgress | None = None  # every table's figures at the end

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class SnapshotLost(ReplicationError):
    """The exported snapshot is gone: nothing more can be copied consistently with the slot."""


class ExportedSnapshot:
    """``with ExportedSnapshot(source, slot) as snap``: creates logical slot ``slot`` (pgoutput)
    and keeps its exported snapshot ``snap.name`` importable until the block ends.

    Creating a logical slot waits for every transaction running on the source to end."""

    def __init__(self, source: Endpoint, slot: str):
        self.source, self.slot = source, slot
        self.name: str | None = None  # set once the slot exists
        self.lsn: str | None = None
        self._conn: psycopg2.extensions.connection | None = None

    def __enter__(self) -> ExportedSnapshot:
        log.info("creating slot %s on %s: waits for the transactions running there to end",
                 self.slot, self.source.safe())
        try:
            self._conn = conn = psycopg2.connect(self.source.dsn() + " replication=database",
                                                 application_name=APP_NAME)
            conn.autocommit = True
            with conn.cursor() as cur:
                # The slot name is checked by the engine: lowercase letters, digits and _.
                cur.execute(f"CREATE_REPLICATION_SLOT {self.slot} LOGICAL pgoutput "
                            "(SNAPSHOT 'export')")
                _, self.lsn, self.name, _ = cur.fetchone()
        except psycopg2.Error as exc:
            self.close()
            raise ReplicationError(f"creating slot {self.slot} with an exported snapshot on "
                                   f"{self.source.safe()}: {redact(str(exc)).strip()}") from None
        log.info("slot %s created on %s at %s, snapshot %s exported", self.slot, self.source.safe(),
                 self.lsn, self.name)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()


class _Connections:
    """The connections in use by the workers, so a failure can cancel every running COPY."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: set = set()
        self.stopping = threading.Event()

    def add(self, *conns) -> None:
        with self._lock:
            self._open.update(conns)

    def remove(self, *conns) -> None:
        with self._lock:
            self._open.difference_update(conns)

    def cancel_all(self) -> None:
        self.stopping.set()
        with self._lock:
            for conn in self._open:
                try:
                    conn.cancel()
                except psycopg2.Error:
                    pass  # already closed or its server is gone: nothing left to cancel


def copy_table(table: CopiedTable, *, source: Endpoint, target: Endpoint, snapshot: str, binary: bool,
               conns: _Connections | None = None) -> int:
    """Copy one table as of ``snapshot``; returns its rows. Commits only a complete copy."""
    fmt = "binary" if binary else "text"
    conns = conns or _Connections()
    src = connect(source, application_name=APP_NAME)
    tgt = None
    try:
        src.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with src.cursor() as cur:
            try:
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
            except psycopg2.OperationalError:
                raise
            except psycopg2.Error as exc:
                raise SnapshotLost(f"snapshot {snapshot} cannot be imported any more "
                                   f"({str(exc).strip()}): its exporting connection is gone, so "
                                   "the copy must start over under a new one") from None
        tgt = connect(target, application_name=APP_NAME)
        conns.add(src, tgt)
        if conns.stopping.is_set():
            raise ReplicationError("stopped: another table's copy failed")
        with tgt.cursor() as cur:
            cur.execute(f"TRUNCATE ONLY {table.name}")  # a retry starts clean; FREEZE needs it
        sent = stream_copy(src, tgt, table.copy_sql("out", fmt), table.copy_sql("in", fmt))
        tgt.commit()
        src.commit()
        return sent
    finally:
        for conn in (src, tgt):
            if conn is not None:
                conns.remove(conn)
                conn.close()


def stream_copy(src, tgt, out_sql: str, in_sql: str) -> int:
    """``out_sql`` on ``src`` piped into ``in_sql`` on ``tgt`` (not committed); the row count."""
    read_fd, write_fd = os.pipe()
    sent: dict = {}

    def produce() -> None:
        try:
            with io.BufferedWriter(io.FileIO(write_fd, "wb"), BUFFER) as sink, src.cursor() as cur:
                cur.copy_expert(out_sql, sink, size=BUFFER)
                sent["rows"] = cur.rowcount
        except BaseException as exc:  # handed to the consumer below
            sent["error"] = exc

    producer = threading.Thread(target=produce, name="copy-out", daemon=True)
    try:
        producer.start()
    except BaseException:
        os.close(write_fd)
        os.close(read_fd)
        raise
    try:
        # Closing the read end (also on a target failure) makes a blocked writer fail and return.
        with io.FileIO(read_fd, "rb") as pipe, tgt.cursor() as cur:
            cur.copy_expert(in_sql, pipe, size=BUFFER)
            received = cur.rowcount
    finally:
        producer.join()
    if "error" in sent:
        raise sent["error"]
    if received != sent["rows"]:
        raise ReplicationError(f"{out_sql}: the source sent {sent['rows']} row(s), the target "
                               f"took {received}: not committed")
    return received


def wait_reachable(ep: Endpoint, *, timeout: float) -> bool:
    """Whether ``ep`` accepts a query within ``timeout`` seconds (a restart, crash recovery)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with connection(ep, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
            return True
        except psycopg2.OperationalError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(1)


def _first_line(exc: BaseException) -> str:
    text = redact(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _copy_with_retries(table: CopiedTable, *, conns: _Connections, attempts: int, reconnect: float,
                       watch: _Watch, **kw) -> int:
    for attempt in range(1, attempts + 1):
        started = watch.started[table.name] = time.monotonic()
        try:
            rows = copy_table(table, conns=conns, **kw)
        except (psycopg2.OperationalError, psycopg2.InterfaceError, BrokenPipeError) as exc:
            if conns.stopping.is_set() or attempt == attempts:
                raise
            log.warning("copy of %s failed (%s); waiting for both servers, then copying it again "
                        "from the same snapshot (attempt %d of %d)", table.name,
                        _first_line(exc), attempt + 1, attempts)
            for ep in (kw["source"], kw["target"]):
                if not wait_reachable(ep, timeout=reconnect):
                    raise ReplicationError(f"{ep.safe()} unreachable for {reconnect:.0f}s while "
                                           f"copying {table.name}") from None
            continue
        seconds = time.monotonic() - started
        watch.finished[table.name] = (rows, seconds)
        log.info("copied %s: %s row(s) in %.1fs", table.name, f"{rows:,}", seconds)
        return rows
    raise AssertionError("unreachable")


def copy_tables(tables: list[CopiedTable], *, source: Endpoint, target: Endpoint, snapshot: ExportedSnapshot,
                binary: bool = True, jobs: int = 2, progress: float = 10.0,
                on_progress: Callable[[CopyProgress], None] | None = None,
                attempts: int = ATTEMPTS, reconnect: float = RECONNECT_SECONDS) -> CopyReport:
    """Copy ``tables`` as of ``snapshot``, ``jobs`` at a time; calls ``on_progress`` with every
    table's figures every ``progress`` seconds while it runs, and once at the end. On a failure
    every other copy is cancelled and the first error raised (the log says how many tables had
    committed)."""
    if jobs < 1:
        raise ValueError(f"copy jobs {jobs!r} must be at least 1")
    name, lsn = snapshot.name, snapshot.lsn
    if name is None or lsn is None:
        raise ValueError(f"the snapshot of slot {snapshot.slot} is not taken: copy inside "
                         "`with ExportedSnapshot(...)`")
    conns = _Connections()
    watch = _Watch(tables, target)
    done: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="copy") as pool:
        futures = {pool.submit(_copy_with_retries, t, conns=conns, attempts=attempts, watch=watch,
                               reconnect=reconnect, source=source, target=target,
                               snapshot=name, binary=binary): t for t in tables}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=progress, return_when=FIRST_EXCEPTION)
            for f in finished:
                if f.exception() is None:
                    done[futures[f].name] = f.result()
            failed = [(f, exc) for f in finished if (exc := f.exception()) is not None]
            if failed:
                conns.cancel_all()
                for f in pending:
                    f.cancel()
                wait(pending)
                table, exc = futures[failed[0][0]], failed[0][1]
                log.error("initial copy stopped: %s failed; %d of %d table(s) had committed (they "
                          "are copied again, TRUNCATE first, by the next start)", table.name,
                          len(done), len(tables))
                if isinstance(exc, psycopg2.Error):
                    raise ReplicationError(f"copying {table.name}: "
                                           f"{redact(str(exc)).strip()}") from None
                raise exc
            if pending and on_progress:
                on_progress(watch.sample())
    final = watch.sample()
    if on_progress:
        on_progress(final)
    return CopyReport(len(tables), sum(done.values()), final.seconds, lsn, final)
