"""The two database sessions of a comparison: one connection per side, queried concurrently.

Each comparison runs inside a read-only REPEATABLE READ transaction per side (one snapshot per
side), with the normalizing settings of :data:`sql.SESSION_SETTINGS` set locally at its start.
Every database error leaves here as a :class:`ValidationError` naming the side and the endpoint,
with any password removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
from psycopg2.extensions import parse_dsn

from paymigrate.db import Endpoint, connect, redact
from paymigrate.errors import ValidationError
from paymigrate.validation import sql as dialect

log = logging.getLogger(__name__)

T = TypeVar("T")

_CURRENT_LSN = ("SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN "
                "pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END::text")


def safe_name(target: Endpoint | str) -> str:
    """``user@host:port/db`` of an endpoint or a DSN (key=value or URI), never a password."""
    if isinstance(target, Endpoint):
        return target.safe()
    try:
        p = parse_dsn(target)
    except psycopg2.ProgrammingError:
        return "<unparsable DSN>"
    return f"{p.get('user', '')}@{p.get('host', 'localhost')}:{p.get('port', '5432')}/{p.get('dbname', '')}"


class Session:
    """One side's connection; ``query`` runs in the current snapshot (opened by ``begin``)."""

    def __init__(self, role: str, target: Endpoint | str):
        self.role = role
        self.label = safe_name(target)
        try:
            self.conn = connect(target, application_name="paymigrate-validate")
        except psycopg2.Error as exc:
            raise ValidationError(f"cannot connect to the {role} database {self.label}: "
                                  f"{redact(str(exc)).strip()}") from None
        self.conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ,
                              readonly=True)
        self._open = False

    def begin(self) -> None:
        """End any snapshot and start a new one: the next query sees the database as of now."""
        self.end()
        self.execute(dialect.SESSION_SETTINGS)
        self._open = True

    def end(self) -> None:
        if self._open or self.conn.status != psycopg2.extensions.STATUS_READY:
            self._wrap(self.conn.rollback)
        self._open = False

    def lsn(self) -> str:
        """This side's WAL position, read in the current snapshot."""
        return self.query(_CURRENT_LSN)[0][0]

    def execute(self, statement: Any, params: Any = None) -> None:
        def run() -> None:
            with self.conn.cursor() as cur:
                cur.execute(statement, params)
        self._wrap(run)

    def query(self, statement: Any, params: Any = None) -> list[tuple]:
        def run() -> list[tuple]:
            with self.conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()
        return self._wrap(run)

    def _wrap(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except psycopg2.Error as exc:
            message = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValidationError(f"{self.role} database {self.label}: {message}") from None

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()


class Pair:
    """Source and target sides, with a thread each so both compute at once."""

    def __init__(self, source: Endpoint | str, target: Endpoint | str):
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="validate")
        try:
            futures = [self._pool.submit(Session, "source", source), self._pool.submit(Session, "target", target)]
            sides = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                if f.done() and not f.exception():
                    f.result().close()
            self._pool.shutdown()
            raise
        self.source, self.target = sides

    def both(self, fn: Callable[[Session], T]) -> tuple[T, T]:
        """``fn`` on each side concurrently: ``(source result, target result)``."""
        fs, ft = self._pool.submit(fn, self.source), self._pool.submit(fn, self.target)
        # Wait for both before raising, so no query is still running on a side we abandon.
        errors = [f.exception() for f in (fs, ft)]
        for err in errors:
            if err is not None:
                raise err
        return fs.result(), ft.result()

    def close(self) -> None:
        self.source.close()
        self.target.close()
        self._pool.shutdown()

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
