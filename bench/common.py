"""Small helpers the benchmarks share: one statement on its own connection, a fresh database,
reladiff run with exact flags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from psycopg2 import sql
from psycopg2.extensions import parse_dsn

from paymigrate.db import connection
from paymigrate.db import query as execute  # noqa: F401 (the benchmarks import it from here)
from paymigrate_dev.local.stack import APP_USER, LocalStack


def fresh_db(stack: LocalStack, side: str, name: str) -> str:
    """An empty database ``name`` on ``side`` (dropped first if it exists) the app role may use."""
    admin = stack.dsn(side, dbname="postgres")
    ident = sql.Identifier(name)
    execute(admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
    execute(admin, sql.SQL("CREATE DATABASE {}").format(ident))
    execute(admin, sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(ident, sql.Identifier(APP_USER)))
    return stack.dsn(side, dbname=name)


def uri(dsn: str, password: str | None) -> str:
    """A libpq DSN as the URI reladiff wants, with the password a passfile would give."""
    p = parse_dsn(dsn)
    auth = p["user"] + (f":{password}" if password else "")
    return f"postgresql://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"


def reladiff(source_uri: str, target_uri: str, table: str, key: Sequence[str]
             ) -> tuple[float, set[tuple[str, ...]] | None, str]:
    """Seconds and the keys reladiff 0.6 reports (tuples of text), or None and its error.

    Exact flags: ``--skip-sort-results`` (sorting, it crashes on a key that differs NULL against a
    value, drops that segment's rows and still exits 0) and ``COLUMNS=100000`` (its output wraps
    at the terminal's width, even into a file). Its JSON lines are
    ``["+" or "-", [key columns..., other columns...]]``.
    """
    exe = shutil.which("reladiff") or str(Path(sys.executable).with_name("reladiff"))
    cmd = [exe, source_uri, table, target_uri, table, "-c", "%", "--json", "--skip-sort-results"]
    for k in key:
        cmd += ["-k", k]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "100000"})
    seconds = time.monotonic() - started
    if proc.returncode != 0 or "ERROR" in proc.stderr:
        return seconds, None, proc.stderr.strip()[-500:]
    keys = set()
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("["):
            keys.add(tuple(str(v) for v in json.loads(line)[1][:len(key)]))
    return seconds, keys, ""


class ServerCpu:
    """CPU seconds spent by a PostgreSQL server on this host in the connections that ended.

    The postmaster reaps every backend and parallel worker, so its children's CPU times
    (``cutime + cstime`` in ``/proc``) grow by what each closed session spent, whatever else
    runs on the machine: a contender's cost that wall time on a busy machine cannot give.
    ``seconds()`` is None when the server is not on this host.
    """

    def __init__(self, dsn: str):
        # Read while the session is open: a closed session's backend exits at once.
        with connection(dsn, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_catalog.pg_backend_pid()")
            fields = self._fields(cur.fetchone()[0])
        self.postmaster = fields[1] if fields else None

    @staticmethod
    def _fields(pid: int | str) -> list[str] | None:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except OSError:
            return None

    def seconds(self) -> float | None:
        time.sleep(0.3)  # closed sessions' backends exit and are reaped asynchronously
        f = self._fields(self.postmaster) if self.postmaster else None
        return None if f is None else (int(f[13]) + int(f[14])) / os.sysconf("SC_CLK_TCK")


def cpu_of(meters: Sequence[ServerCpu], fn):
    """``(fn's result, CPU seconds both servers spent on it or None)``."""
    before = [m.seconds() for m in meters]
    out = fn()
    after = [m.seconds() for m in meters]
    if None in before or None in after:
        return out, None
    return out, sum(a - b for a, b in zip(after, before, strict=True))


def timed_cpu(meters: Sequence[ServerCpu], fn):
    """``(fn's result, its wall seconds, CPU seconds both servers spent on it or None)``: the
    wall time is fn's alone, without the meters' waits for backends to be reaped."""
    def run():
        started = time.monotonic()
        return fn(), time.monotonic() - started

    (out, seconds), cpu = cpu_of(meters, run)
    return out, seconds, cpu
