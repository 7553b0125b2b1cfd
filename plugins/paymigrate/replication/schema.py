"""Copy the schema from the source catalog to the target, in two steps around the initial copy.

``pg_dump --schema-only`` of the source is split on its table of contents:

* **early** (before the subscription): the whole pre-data section (types, functions, tables with
  their check constraints and defaults, sequences, grants) plus every primary key and replica
  identity index. Those keys must exist before the copy: a table-sync worker applies the changes
  made during its COPY right after it, and UPDATE/DELETE apply needs the target's replica identity.
* **late** (once every table is synced): the rest of the post-data section: secondary indexes,
  unique and exclusion constraints, foreign keys, triggers, rules. Building an index once over the
  copied rows is faster than maintaining it during COPY (``bench/copy.py`` measures both).

Each step is one transaction on the target, so a failure leaves nothing half-created and a rerun
starts it over. The dump itself never sees a password on a command line: pg_dump gets it from its
environment. Publications and subscriptions of the source are never copied.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from paymigrate.db import Endpoint, connection, redact
from paymigrate.errors import ReplicationError
from paymigrate.pgbin import program

log = logging.getLogger(__name__)

MAINTENANCE_WORK_MEM = "512MB"
_TOC = re.compile(r"^\s*(\d+);\s+(\d+)\s+(\d+)\s")

# (catalog, oid) of the objects the early step takes from post-data: primary keys, replica
# identity indexes, and the unique constraints that back a replica identity index.
_EARLY_OBJECTS = """
SELECT 'pg_constraint'::regclass::oid, c.oid FROM pg_constraint c
WHERE c.conrelid = ANY(%(oids)s::oid[]) AND (c.contype = 'p' OR EXISTS (
      SELECT 1 FROM pg_index i WHERE i.indexrelid = c.conindid AND i.indisreplident))
UNION ALL
SELECT 'pg_class'::regclass::oid, i.indexrelid FROM pg_index i
WHERE i.indrelid = ANY(%(oids)s::oid[]) AND i.indisreplident
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""


def tool(name: str) -> str:
    """Path of a PostgreSQL 15 client program (see :func:`paymigrate.pgbin.program`)."""
    return program(name)

def libpq_env(ep: Endpoint) -> dict[str, str]:
    """The environment that makes a libpq program connect to ``ep`` (the password stays off argv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=ep.host, PGPORT=str(ep.port), PGDATABASE=ep.dbname, PGUSER=ep.user,
               PGAPPNAME=ep.application_name, PGCONNECT_TIMEOUT="10")
    if ep.password is not None:
        env["PGPASSWORD"] = ep.password
    if ep.passfile:
        env["PGPASSFILE"] = ep.passfile
    if ep.sslmode:
        env["PGSSLMODE"] = ep.sslmode
    return env


@dataclass(frozen=True)
class Toc:
    """pg_restore's table of contents, split into the early and late steps."""

    early: tuple[str, ...]
    late: tuple[str, ...]


def split_toc(pre_data: Iterable[str], post_data: Iterable[str],
              early_objects: set[tuple[int, int]]) -> Toc:
    """Pre-data plus the post-data entries named in ``early_objects`` go early; the rest late.

    >>> t = split_toc(["1; 1259 10 TABLE public a u"],
    ...               ["2; 2606 11 CONSTRAINT public a a_pkey u", "3; 1259 12 INDEX public a_x u"],
    ...               {(2606, 11)})
    >>> [len(t.early), len(t.late)]
    [2, 1]
    """
    early, late = [], []
    for line in pre_data:
        if _TOC.match(line):
            early.append(line)
    for line in post_data:
        m = _TOC.match(line)
        if not m:
            continue
        (early if (int(m.group(2)), int(m.group(3))) in early_objects else late).append(line)
    return Toc(tuple(early), tuple(late))


class SchemaDump:
    """A schema-only dump of the source in a temporary folder (``with SchemaDump(...) as d``)."""

    def __init__(self, source: Endpoint, *, exclude: Iterable[str] = ()):
        self.source = source
        self.exclude = list(exclude)
        self._dir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> SchemaDump:
        self._dir = tempfile.TemporaryDirectory(prefix="paymigrate-schema-")
        self.path = Path(self._dir.name) / "schema.dump"
        argv = [tool("pg_dump"), "--schema-only", "--format=custom", "--no-publications",
                "--no-subscriptions", f"--file={self.path}"]
        argv += [f"--exclude-table={t}" for t in self.exclude]
        self._run(argv, env=libpq_env(self.source), what=f"pg_dump of {self.source.safe()}")
        return self

    def __exit__(self, *exc) -> None:
        if self._dir:
            self._dir.cleanup()

    @staticmethod
    def _run(argv: list[str], *, env: dict[str, str] | None = None, what: str) -> str:
        try:
            res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
        except subprocess.TimeoutExpired:
            raise ReplicationError(f"{what} did not finish within an hour") from None
        if res.returncode != 0:
            raise ReplicationError(f"{what} failed (exit {res.returncode}): "
                                   f"{redact(res.stderr.strip())[-800:]}")
        return res.stdout

    def toc(self, section: str) -> list[str]:
        out = self._run([tool("pg_restore"), "--list", f"--section={section}", str(self.path)],
                        what="pg_restore --list")
        return out.splitlines()

    def script(self, entries: Iterable[str]) -> str:
        """The SQL of ``entries`` (owners left out: the roles may not exist on the target)."""
        listing = Path(self._dir.name) / "entries.list"
        listing.write_text("\n".join(entries) + "\n")
        return self._run([tool("pg_restore"), "--no-owner", f"--use-list={listing}", "--file=-",
                          str(self.path)], what="pg_restore of the schema")


def early_objects(source_cur, oids: list[int]) -> set[tuple[int, int]]:
    source_cur.execute(_EARLY_OBJECTS, {"oids": oids})
    return {(int(a), int(b)) for a, b in source_cur.fetchall()}


def copy_schema(*, source: Endpoint, target: Endpoint, oids: list[int], exclude: Iterable[str] = (),
                late_too: bool = False) -> int:
    """The early step (and the late one too with ``late_too``): returns the entries restored."""
    with connection(source) as sconn, sconn.cursor() as cur:
        keep = early_objects(cur, oids)
    with SchemaDump(source, exclude=exclude) as dump:
        toc = split_toc(dump.toc("pre-data"), dump.toc("post-data"), keep)
        entries = toc.early + (toc.late if late_too else ())
        _execute(target, dump.script(entries), what="schema (pre-data, primary keys)")
    log.info("schema copied from %s to %s: %d object(s)%s", source.safe(), target.safe(),
             len(entries), "" if late_too else f", {len(toc.late)} index(es)/constraint(s) deferred")
    return len(entries)


def complete_schema(*, source: Endpoint, target: Endpoint, oids: list[int],
                    exclude: Iterable[str] = (), marker_sql: str | None = None) -> int:
    """The late step: secondary indexes, constraints, triggers; ``marker_sql`` runs in the same
    transaction so a later call can tell it is done."""
    with connection(source) as sconn, sconn.cursor() as cur:
        keep = early_objects(cur, oids)
    with SchemaDump(source, exclude=exclude) as dump:
        toc = split_toc(dump.toc("pre-data"), dump.toc("post-data"), keep)
        _execute(target, dump.script(toc.late), what="schema (post-data)", marker_sql=marker_sql)
    log.info("post-data built on %s: %d index(es)/constraint(s)", target.safe(), len(toc.late))
    return len(toc.late)


def _execute(target: Endpoint, script: str, *, what: str, marker_sql: str | None = None) -> None:
    # psql, not a driver: pg_dump's scripts carry psql meta-commands (\restrict since 15.14).
    # One transaction with ON_ERROR_STOP: all of it or none of it.
    text = script + ("\n" + marker_sql + ";\n" if marker_sql else "")
    argv = [tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-"]
    env = libpq_env(target)
    # Index builds sort every row: give them memory (the default 64MB spills to disk at 1M rows).
    env["PGOPTIONS"] = f"-c maintenance_work_mem={MAINTENANCE_WORK_MEM}"
    try:
        res = subprocess.run(argv, input=text, capture_output=True, text=True, env=env,
                             timeout=6 * 3600)
    except subprocess.TimeoutExpired:
        raise ReplicationError(f"restoring the {what} on {target.safe()} took over 6 hours") from None
    if res.returncode != 0:
        raise ReplicationError(f"restoring the {what} on {target.safe()} failed, nothing was kept: "
                               f"{redact(res.stderr.strip())[-800:]}")
