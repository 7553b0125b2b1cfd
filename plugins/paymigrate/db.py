"""Database endpoints and connections: the one place credentials become a DSN.

An :class:`Endpoint` carries its password but never shows it: ``repr``, ``str`` and
:meth:`Endpoint.safe` leave it out, so an endpoint can be logged, put in an error message or an
XCom summary. :meth:`Endpoint.dsn` is for handing to libpq only.
"""

from __future__ import annotations

import contextlib
import json
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


@contextlib.contextmanager
def connection(target: Endpoint | str, *, autocommit: bool = False,
               application_name: str | None = None) -> Iterator[psycopg2.extensions.connection]:
    """``with connection(ep) as conn``: commits on success, rolls back on error, always closes."""
    conn = connect(target, autocommit=autocommit, application_name=application_name)
    try:
        yield conn
        if not autocommit:
            conn.commit()
    except BaseException:
        if not autocommit and not conn.closed:
            conn.rollback()
        raise
    finally:
        conn.close()


def query(target: Endpoint | str, statement: Any, args: Any = None) -> list[tuple]:
    """One statement in autocommit on a connection of its own: its rows, ``[]`` if it returns none."""
    with connection(target, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchall() if cur.description else []
