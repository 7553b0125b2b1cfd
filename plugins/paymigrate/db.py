"""Database endpoints and connections: the one place credentials become a DSN.

An :class:`Endpoint` carries its password but never shows it: ``repr``, ``str`` and
:meth:`Endpoint.safe` leave it out, so an endpoint can be logged, put in an error message or an
XCom summary. :meth:`Endpoint.dsn` is for handing to libpq only.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg2
import psycopg2.extensions

_DSN_SECRET = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URI_SECRET = re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)([^@\s]+)(@)")


def redact(text: str) -> str:
    """``text`` with any libpq password (key=value or URI form) replaced by ``***``."""
    return _URI_SECRET.sub(r"\1***\3", _DSN_SECRET.sub(r"\1***", text))


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    passfile: str | None = None
    sslmode: str | None = None
    application_name: str = "paymigrate"

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("endpoint host is empty")
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"endpoint port {self.port!r} is outside 1..65535")
        if not self.dbname or not self.user:
            raise ValueError(f"endpoint {self.host}:{self.port} needs a database name and a user")

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any] | str, *, dbname: str | None = None) -> Endpoint:
        """From an RDS-style secret: ``{"host", "port", "dbname", "username", "password"}``."""
        data = json.loads(secret) if isinstance(secret, str) else dict(secret)
        missing = [k for k in ("host", "port", "username", "password") if not data.get(k)]
        if missing:
            raise ValueError(f"database secret lacks {', '.join(missing)}")
        return cls(host=str(data["host"]), port=int(data["port"]), dbname=dbname or data.get("dbname") or "postgres",
                   user=str(data["username"]), password=str(data["password"]),
                   sslmode=data.get("sslmode"))

    @classmethod
    def from_dsn(cls, dsn: str) -> Endpoint:
        """A libpq DSN or URI (host, port and database defaulted as libpq does); ValueError
        names what is wrong with it."""
        from psycopg2.extensions import parse_dsn

        try:
            parts = parse_dsn(dsn)
        except Exception as exc:  # psycopg2 raises ProgrammingError for a malformed one
            raise ValueError(f"not a libpq DSN or URI: {' '.join(str(exc).split())}") from None
        return cls(host=parts.get("host", "localhost"), port=int(parts.get("port", 5432)),
                   dbname=parts.get("dbname", parts.get("user", "postgres")),
                   user=parts.get("user") or os.environ.get("USER", "postgres"),
                   password=parts.get("password"), passfile=parts.get("passfile"),
                   sslmode=parts.get("sslmode"))

    def with_db(self, dbname: str) -> Endpoint:
        return replace(self, dbname=dbname)

    def _parts(self, *, secret: bool) -> list[str]:
        parts = [f"host={self.host}", f"port={self.port}", f"dbname={_quote(self.dbname)}",
                 f"user={_quote(self.user)}"]
        if secret and self.password is not None:
            parts.append(f"password={_quote(self.password)}")
        if self.passfile:
            parts.append(f"passfile={_quote(self.passfile)}")
        if self.sslmode:
            parts.append(f"sslmode={self.sslmode}")
        parts.append(f"application_name={_quote(self.application_name)}")
        return parts

    def dsn(self) -> str:
        """The libpq connection string, password included: hand it to libpq, never to a log."""
        return " ".join(self._parts(secret=True) + ["connect_timeout=10"])

    def safe(self) -> str:
        """``user@host:port/dbname``: what logs and reports show."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def __str__(self) -> str:
        return self.safe()


def connect(target: Endpoint | str, *, autocommit: bool = False,
            application_name: str | None = None) -> psycopg2.extensions.connection:
    """A connection to an :class:`Endpoint` or a DSN; connection errors never echo a password."""
    dsn = target.dsn() if isinstance(target, Endpoint) else target
    kwargs = {"application_name": application_name} if application_name else {}
    try:
        conn = psycopg2.connect(dsn, **kwargs)
    except psycopg2.OperationalError as exc:
        raise psycopg2.OperationalError(redact(str(exc)).strip()) from None
    conn.autocommit = autocommit
    return conn


class _Reuse:
    """Idle connections kept by DSN while :func:`reuse` is active (one thread: a context variable)."""

    def __init__(self) -> None:
        self.idle: dict[str, list[psycopg2.extensions.connection]] = {}
        self.open: list[psycopg2.extensions.connection] = []

    def take(self, dsn: str) -> psycopg2.extensions.connection | None:
        idle = self.idle.get(dsn) or []
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def give(self, dsn: str, conn: psycopg2.extensions.connection) -> None:
        if conn.closed:
            return
        try:
            # Session settings made in autocommit (timeouts, synchronous_commit) end with the use.
            conn.rollback()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("RESET ALL")
        except psycopg2.Error:
            conn.close()
            return
        self.idle.setdefault(dsn, []).append(conn)


_REUSE: contextvars.ContextVar[_Reuse | None] = contextvars.ContextVar("paymigrate_db_reuse", default=None)


@contextlib.contextmanager
def reuse(*warm: Endpoint, per_endpoint: int = 2) -> Iterator[None]:
    """While active (in this thread), :func:`connection` hands back connections it closed before
    instead of opening new ones: the write switch runs dozens of short statements inside the
    pause, and each new connection costs a process and an authentication on the server. The
    ``warm`` endpoints get ``per_endpoint`` connections now. All are closed at the end."""
    if _REUSE.get() is not None:
        yield  # already reusing: the outer scope owns the connections
        return
    pool = _Reuse()
    token = _REUSE.set(pool)
    try:
        for ep in warm:
            conns = [_open(ep.dsn(), pool) for _ in range(per_endpoint)]
            for conn in conns:
                pool.give(ep.dsn(), conn)
        yield
    finally:
        _REUSE.reset(token)
        for conn in pool.open:
            conn.close()


def reused_pids() -> list[int]:
    """Server pids of the connections :func:`reuse` holds in this thread (none when inactive):
    a freeze that ends every other session of a database must spare them."""
    pool = _REUSE.get()
    return [c.get_backend_pid() for c in pool.open if not c.closed] if pool else []


def _open(dsn: str, pool: _Reuse) -> psycopg2.extensions.connection:
    conn = connect(dsn)
    pool.open.append(conn)
    return conn


@contextlib.contextmanager
def connection(target: Endpoint | str, *, autocommit: bool = False,
               application_name: str | None = None) -> Iterator[psycopg2.extensions.connection]:
    """``with connection(ep) as conn``: commits on success, rolls back on error, always closes
    (or, inside :func:`reuse`, hands the connection back for the next caller)."""
    pool = _REUSE.get()
    if pool is None:
        conn = connect(target, autocommit=autocommit, application_name=application_name)
    else:
        dsn = target.dsn() if isinstance(target, Endpoint) else target
        conn = pool.take(dsn) or _open(dsn, pool)
        conn.autocommit = autocommit
    try:
        yield conn
        if not autocommit:
            conn.commit()
    except BaseException:
        if not autocommit and not conn.closed:
            conn.rollback()
        raise
    finally:
        if pool is None:
            conn.close()
        else:
            pool.give(dsn, conn)


def query(target: Endpoint | str, statement: Any, args: Any = None) -> list[tuple]:
    """One statement in autocommit on a connection of its own: its rows, ``[]`` if it returns none."""
    with connection(target, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchall() if cur.description else []
