"""A router's PgBouncer: its admin console and its ``[databases]`` file (the route file).

PgBouncer 1.18 cannot change where a database points from the console; the ``[databases]``
include file is rewritten and ``RELOAD`` sent while clients are held by ``PAUSE``. Only the route
agent on the router's host writes the file (:mod:`paymigrate.routing.agent`). In
transaction pooling ``PAUSE`` waits for in-flight transactions to finish and holds new ones,
so no client sees an error: it sees a stall.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions

from paymigrate.db import Endpoint, connect
from paymigrate.errors import PaymigrateError

log = logging.getLogger(__name__)

_LINE = re.compile(r"^\s*(?P<db>[A-Za-z0-9_.\-]+)\s*=\s*(?P<opts>.*)$")
_IDENT = re.compile(r"^[A-Za-z0-9_.\-]+$")


class RouterError(PaymigrateError):
    """The router refused a command or did not answer in time."""


@dataclass(frozen=True)
class Route:
    database: str
    host: str
    port: int
    dbname: str


def read_routes(path: Path) -> dict[str, Route]:
    """The routes of a ``[databases]`` file: ``{"payments": Route(host, port, dbname)}``."""
    routes = {}
    for raw in Path(path).read_text().splitlines():
        m = _LINE.match(raw)
        if not m or raw.lstrip().startswith((";", "#", "[")):
            continue
        opts = dict(kv.split("=", 1) for kv in m["opts"].split() if "=" in kv)
        routes[m["db"]] = Route(m["db"], opts.get("host", ""), int(opts.get("port", 5432)),
                                opts.get("dbname", m["db"]))
    return routes


def write_route(path: Path, route: Route) -> Route | None:
    """Point ``route.database`` at ``route.host:route.port`` in the file (atomically, keeping the
    file's owner and mode, since PgBouncer runs as another user); return the previous route.
    Only the route agent on the router's host calls this (:mod:`paymigrate.routing.agent`)."""
    for v in (route.database, route.host, route.dbname):
        if not _IDENT.match(v):
            raise RouterError(f"refusing to write {v!r} into the router's [databases] file")
    entry = f"{route.database} = host={route.host} port={route.port} dbname={route.dbname}"
    return _rewrite(Path(path), route.database, entry)


def remove_route(path: Path, database: str) -> Route | None:
    """Drop ``database``'s entry from the file; return the route it had."""
    return _rewrite(Path(path), _ident(database), None)


def _rewrite(path: Path, database: str, entry: str | None) -> Route | None:
    st = path.stat()
    lines = path.read_text().splitlines()
    previous = read_routes(path).get(database)
    out, replaced = [], False
    for line in lines:
        m = _LINE.match(line)
        if m and m["db"] == database and not line.lstrip().startswith((";", "#")):
            if entry is not None:
                out.append(entry)
            replaced = True
        else:
            out.append(line)
    if not replaced and entry is not None:
        out.append(entry)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, st.st_mode & 0o777)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(out) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if os.geteuid() == 0:
        os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)
    return previous


class RouterAdmin:
    """Commands on PgBouncer's admin console (autocommit: the console has no transactions)."""

    def __init__(self, admin: Endpoint | str):
        self.admin = admin
        self._held: psycopg2.extensions.connection | None = None
        self._holding = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Run the commands inside on one console connection (the switch's PAUSE ... RESUME:
        each new connection is an authentication more inside the write pause)."""
        if self._holding:
            yield
            return
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._held is not None:
                self._held.close()
                self._held = None

    def _conn(self) -> psycopg2.extensions.connection:
        if not self._holding:
            return connect(self.admin, autocommit=True)
        if self._held is None or self._held.closed:
            self._held = connect(self.admin, autocommit=True)
        return self._held

    def _run(self, command: str, *, timeout: float | None = None) -> list[dict[str, Any]]:
        result: dict[str, Any] = {}

        def go() -> None:
            try:
                conn = self._conn()
                try:
                    with conn.cursor() as cur:
                        cur.execute(command)
                        if cur.description:
                            cols = [d.name for d in cur.description]
                            result["rows"] = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
                        else:
                            result["rows"] = []
                finally:
                    if conn is not self._held:
                        conn.close()
            except psycopg2.Error as exc:
                result["error"] = exc
                self._drop_held()

        if timeout is None:
            go()
        else:
            worker = threading.Thread(target=go, daemon=True, name=f"router-{command.split()[0]}")
            worker.start()
            worker.join(timeout)
            if worker.is_alive():
                self._held = None  # still busy in that thread: the next command opens another
                raise RouterError(f"router did not finish {command!r} within {timeout:.1f}s")
        if "error" in result:
            raise RouterError(f"router refused {command!r}: {str(result['error']).strip()}")
        return result["rows"]

    def _drop_held(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def pause(self, database: str, *, timeout: float) -> float:
        """``PAUSE db``: returns once in-flight transactions are done; seconds it took.

        If they do not finish within ``timeout`` the pause is undone with ``RESUME`` and
        :class:`RouterError` raised, so a long transaction never holds every client hostage.
        """
        started = time.monotonic()
        try:
            self._run(f"PAUSE {_ident(database)}", timeout=timeout)
        except RouterError:
            self.resume(database, quiet=True)
            raise
        return time.monotonic() - started

    def resume(self, database: str, *, quiet: bool = False) -> None:
        try:
            self._run(f"RESUME {_ident(database)}", timeout=30)
        except RouterError as exc:
            # "database is not paused" is the answer to a second RESUME: not an error.
            if quiet or "not paused" in str(exc):
                log.info("RESUME %s: %s", database, exc)
                return
            raise

    def reload(self) -> None:
        self._run("RELOAD", timeout=30)

    def databases(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self._run("SHOW DATABASES", timeout=30)}

    def route(self, database: str) -> tuple[str, int]:
        """Where PgBouncer sends ``database`` now, as it reports it (not as the file says)."""
        row = self.databases().get(database)
        if row is None:
            raise RouterError(f"router has no database {database!r}")
        return row["host"], int(row["port"])

    def paused(self, database: str) -> bool:
        row = self.databases().get(database)
        return bool(row and int(row.get("paused") or 0))


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise RouterError(f"{name!r} is not a valid router database name")
    return name
