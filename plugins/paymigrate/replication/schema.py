"""Copy the schema from the source catalog to the target, in steps around the initial copy.

``pg_dump --schema-only`` of the source is split on its table of contents:

* **early** (before the copy): the whole pre-data section (types, functions, tables with their
  check constraints and defaults, sequences, grants);
* **keys**: every primary key and replica identity index. UPDATE/DELETE apply needs the target's
  replica identity, so they exist before the subscription applies a change: with PostgreSQL's own
  table sync they go with the early step (a table-sync worker applies the changes made during
  its COPY right after it); after a copy under an exported snapshot :func:`build_keys` builds
  them over the copied rows, before the subscription is created;
* **late** (once every table is synced): the rest of the post-data section: secondary indexes,
  unique and exclusion constraints, foreign keys, triggers, rules. Building an index once over the
  copied rows is faster than maintaining it during COPY (``bench/copy.py`` measures both).

The early step is one transaction on the target, so a failure leaves nothing half-created and a
rerun starts it over. Keys and plain secondary indexes are built ``INDEX_JOBS`` at a time
(``pg_restore -j``), each in its own transaction, skipping any already on the target by name:
a rerun after a failure half-way neither fails on nor rebuilds what was done. Everything else of
the late step then runs in one transaction with the caller's marker, so the marker says "all
built" and nothing else does. The dump itself never sees a password on a command line: pg_dump
gets it from its environment. Publications and subscriptions of the source are never copied.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from paymigrate.cutover.freeze import FENCE_SCHEMA, FENCE_TRIGGER
from paymigrate.db import Endpoint, connection, redact
from paymigrate.errors import ReplicationError
from paymigrate.pgbin import program, schema_tools_major
from paymigrate.progress import Figures, Ticker
from paymigrate.replication.versions import major, server_version_num

log = logging.getLogger(__name__)

MAINTENANCE_WORK_MEM = "512MB"
# Index builds at once in the late step (each a session with MAINTENANCE_WORK_MEM).
INDEX_JOBS = 2
_TOC = re.compile(r"^\s*(\d+);\s+(\d+)\s+(\d+)\s")
_PG_CLASS = 1259
_FENCE = re.compile(rf"^\s*\d+;\s+\d+\s+\d+\s+TRIGGER\s+\S+\s+\S+\s+{FENCE_TRIGGER}\s")
# A plain index entry of pg_restore --list: "<id>; 1259 <oid> INDEX <schema> <name> <owner>".
_INDEX = re.compile(r"^\s*\d+;\s+1259\s+(\d+)\s+INDEX\s")

# (catalog, oid) of the objects the early step takes from post-data (primary keys, replica
# identity indexes, and the unique constraints that back a replica identity index), each with the
# name of its index, by which a rerun finds what it already built.
_EARLY_OBJECTS = """
SELECT 'pg_constraint'::regclass::oid, c.oid, format('%%I.%%I', n.nspname, i.relname)
FROM pg_constraint c JOIN pg_class i ON i.oid = c.conindid JOIN pg_namespace n ON n.oid = i.relnamespace
WHERE c.conrelid = ANY(%(oids)s::oid[]) AND (c.contype = 'p' OR EXISTS (
      SELECT 1 FROM pg_index x WHERE x.indexrelid = c.conindid AND x.indisreplident))
UNION ALL
SELECT 'pg_class'::regclass::oid, x.indexrelid, format('%%I.%%I', n.nspname, i.relname)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
WHERE x.indrelid = ANY(%(oids)s::oid[]) AND x.indisreplident
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
"""


def tool(name: str, major: int | None = None) -> str:
    """Path of a PostgreSQL client program of ``major`` (see :func:`paymigrate.pgbin.program`)."""
    return program(name, major)


def tools_major(source: Endpoint, target: Endpoint | None) -> int:
    """The major of the schema tools for this pair (see :func:`paymigrate.pgbin.schema_tools_major`)."""
    src = major(server_version_num(source))
    return schema_tools_major(src, major(server_version_num(target)) if target is not None else src)

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
              early_objects: Collection[tuple[int, int]]) -> Toc:
    """Pre-data plus the post-data entries named in ``early_objects`` go early; the rest late.

    >>> t = split_toc(["1; 1259 10 TABLE public a u"],
    ...               ["2; 2606 11 CONSTRAINT public a a_pkey u", "3; 1259 12 INDEX public a_x u"],
    ...               {(2606, 11)})
    >>> [len(t.early), len(t.late)]
    [2, 1]
    """
    early: list[str] = []
    late: list[str] = []
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

    def __init__(self, source: Endpoint, *, exclude: Iterable[str] = (),
                 target: Endpoint | None = None):
        """``target``: where the dump goes, whose major may be newer (tools of that version)."""
        self.source, self.target = source, target
        self.exclude = list(exclude)
        self._dir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> SchemaDump:
        self.major = tools_major(self.source, self.target)
        self._dir = tempfile.TemporaryDirectory(prefix="paymigrate-schema-")
        self.path = Path(self._dir.name) / "schema.dump"
        argv = [tool("pg_dump", self.major), "--schema-only", "--format=custom", "--no-publications",
                "--no-subscriptions", f"--exclude-schema={FENCE_SCHEMA}", f"--file={self.path}"]
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
        out = self._run([tool("pg_restore", self.major), "--list", f"--section={section}", str(self.path)],
                        what="pg_restore --list")
        # The write fence of an earlier cutover belongs to the source alone (its function is in
        # the excluded schema, its triggers are dumped with their tables).
        return [line for line in out.splitlines() if not _FENCE.match(line)]

    def listing(self, entries: Iterable[str], name: str) -> Path:
        path = self.path.parent / name
        path.write_text("\n".join(entries) + "\n")
        return path

    def script(self, entries: Iterable[str]) -> str:
        """The SQL of ``entries`` (owners left out: the roles may not exist on the target)."""
        listing = self.listing(entries, "entries.list")
        return self._run([tool("pg_restore", self.major), "--no-owner", f"--use-list={listing}", "--file=-",
                          str(self.path)], what="pg_restore of the schema")


def ensure_schema(*, source: Endpoint, target: Endpoint, oids: list[int], names: list[str],
                  exclude: Iterable[str] = (), keys: bool = True, late_too: bool = True) -> int:
    """:func:`copy_schema` unless every table of ``names`` (quoted ``schema.name``) is on the
    target already; refuses a target that has only part of them. Returns the entries restored."""
    with connection(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT n FROM unnest(%s::text[]) n WHERE to_regclass(n) IS NOT NULL", (names,))
        present = {r[0] for r in cur.fetchall()}
    if present and present == set(names):
        log.info("schema already on %s (%d table(s)): not copied again", target.safe(), len(names))
        return 0
    if present:
        missing = sorted(set(names) - present)
        raise ReplicationError(
            f"target {target.safe()} has part of the schema: {', '.join(sorted(present))} "
            f"exist but {', '.join(missing)} do not; drop them or create the rest")
    return copy_schema(source=source, target=target, oids=oids, exclude=exclude, keys=keys,
                       late_too=late_too)


def early_objects(source_cur, oids: list[int]) -> dict[tuple[int, int], str]:
    """``{(catalog oid, object oid): index name}`` of the keys the early step restores."""
    source_cur.execute(_EARLY_OBJECTS, {"oids": oids})
    return {(int(a), int(b)): name for a, b, name in source_cur.fetchall()}


def copy_schema(*, source: Endpoint, target: Endpoint, oids: list[int], exclude: Iterable[str] = (),
                keys: bool = True, late_too: bool = False) -> int:
    """The early step (and the late one too with ``late_too``): returns the entries restored.
    Without ``keys`` the primary keys wait for :func:`build_keys` (a copy into key-less tables)."""
    with connection(source) as sconn, sconn.cursor() as cur:
        keep = early_objects(cur, oids) if keys or late_too else {}
    with SchemaDump(source, exclude=exclude, target=target) as dump:
        toc = split_toc(dump.toc("pre-data"), dump.toc("post-data"), keep)
        entries = toc.early + (toc.late if late_too else ())
        _execute(target, dump.script(entries), major=dump.major, what="schema (pre-data, primary keys)" if keys
                 else "schema (pre-data)")
    log.info("schema copied from %s to %s with PostgreSQL %d's pg_dump: %d object(s)%s",
             source.safe(), target.safe(), dump.major, len(entries),
             "" if late_too else f", {len(toc.late)} index(es)/constraint(s) deferred")
    return len(entries)


def build_keys(*, source: Endpoint, target: Endpoint, oids: list[int],
               exclude: Iterable[str] = ()) -> int:
    """The primary keys and replica identity indexes :func:`copy_schema` left out, built over the
    copied rows ``INDEX_JOBS`` at a time, each committed on its own; those already on the target
    (a rerun) are skipped by name. Returns how many this call built."""
    with connection(source) as sconn, sconn.cursor() as cur:
        keep = early_objects(cur, oids)
    built = _existing(target, list(keep.values()))
    with SchemaDump(source, exclude=exclude, target=target) as dump:
        todo = []
        for line in dump.toc("post-data"):
            m = _TOC.match(line)
            name = keep.get((int(m.group(2)), int(m.group(3)))) if m else None
            if name is not None and name not in built:
                todo.append(line)
        if todo:
            _restore_parallel(target, dump, todo, what=f"{len(todo)} primary key(s) and replica "
                                                       "identity index(es)",
                              names=[keep[(int(m.group(2)), int(m.group(3)))]
                                     for m in map(_TOC.match, todo) if m])
    log.info("keys built on %s: %d (%d already there)", target.safe(), len(todo), len(built))
    return len(todo)


def index_oids(late: Iterable[str]) -> list[int]:
    """Source oids of the entries of ``late`` that look like plain indexes (confirmed later
    against the catalog: the listing is text)."""
    return [int(m.group(1)) for m in map(_INDEX.match, late) if m]


def split_indexes(late: Iterable[str], indexes: set[int]) -> tuple[dict[int, str], tuple[str, ...]]:
    """The entries of ``late`` for the index oids in ``indexes``, and the other entries in order.

    >>> split_indexes(["3; 1259 12 INDEX public a_x u", "4; 2606 13 FK CONSTRAINT public a a_fk u"],
    ...               {12})
    ({12: '3; 1259 12 INDEX public a_x u'}, ('4; 2606 13 FK CONSTRAINT public a a_fk u',))
    """
    found, rest = {}, []
    for line in late:
        m = _INDEX.match(line)
        if m and int(m.group(1)) in indexes:
            found[int(m.group(1))] = line
        else:
            rest.append(line)
    return found, tuple(rest)


def complete_schema(*, source: Endpoint, target: Endpoint, oids: list[int],
                    exclude: Iterable[str] = (), marker_sql: str | None = None) -> int:
    """The late step: secondary indexes, constraints, triggers; ``marker_sql`` runs in the
    transaction of the last part, so a later call can tell all of it is done. Returns the
    entries restored by this call (indexes a previous call built are not counted)."""
    with connection(source) as sconn, sconn.cursor() as cur:
        keep = early_objects(cur, oids)
    with SchemaDump(source, exclude=exclude, target=target) as dump:
        toc = split_toc(dump.toc("pre-data"), dump.toc("post-data"), keep)
        names = index_names(source, index_oids(toc.late))
        indexes, rest = split_indexes(toc.late, set(names))
        built = _existing(target, list(names.values()))
        todo = [line for oid, line in indexes.items() if names[oid] not in built]
        if built:
            log.info("%d index(es) already on %s from an earlier run, not built again: %s",
                     len(built), target.safe(), ", ".join(sorted(built)))
        if todo:
            _restore_parallel(target, dump, todo, what=f"{len(todo)} secondary index(es)",
                              names=[names[oid] for oid, line in indexes.items() if line in todo])
        _execute(target, dump.script(rest), major=dump.major, what="post-data constraints and triggers (the "
                 "secondary indexes before them stay built)", marker_sql=marker_sql)
    log.info("post-data built on %s: %d index(es) (%d at a time), %d other object(s)",
             target.safe(), len(todo), INDEX_JOBS, len(rest))
    return len(todo) + len(rest)


def index_names(source: Endpoint, index_oids: list[int]) -> dict[int, str]:
    """Schema-qualified, quoted names of the indexes among ``index_oids`` on the source."""
    if not index_oids:
        return {}
    with connection(source) as conn, conn.cursor() as cur:
        cur.execute("SELECT c.oid, format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.oid = ANY(%s::oid[]) AND c.relkind IN ('i', 'I')", (index_oids,))
        return {int(oid): name for oid, name in cur.fetchall()}


def _existing(target: Endpoint, names: list[str]) -> set[str]:
    if not names:
        return set()
    with connection(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT n FROM unnest(%s::text[]) n WHERE to_regclass(n) IS NOT NULL", (names,))
        return {r[0] for r in cur.fetchall()}


def _conninfo_dbname(dbname: str) -> str:
    # pg_restore takes a connection string for -d; the rest comes from libpq_env.
    return "dbname='" + dbname.replace("\\", "\\\\").replace("'", "\\'") + "'"


_BUILDING = """
SELECT coalesce(sum(tuples_done), 0)::bigint,
       (coalesce(sum(blocks_done), 0) * current_setting('block_size')::bigint)::bigint, count(*)
FROM pg_stat_progress_create_index WHERE datname = current_database()
"""


def build_progress(source: Endpoint, target: Endpoint,
                   names: list[str]) -> Callable[[float], tuple[Figures, str]]:
    """A progress sampler for building the indexes ``names``: their tables' rows and sizes on
    the source are the totals; an index counts whole once it is on the target, and the builds
    running there count with the tuples and blocks they report."""
    with connection(source) as conn, conn.cursor() as cur:
        cur.execute("""SELECT i.n, greatest(c.reltuples, 0)::bigint, pg_table_size(c.oid)
                       FROM unnest(%s::text[]) i(n) JOIN pg_index x ON x.indexrelid = to_regclass(i.n)
                       JOIN pg_class c ON c.oid = x.indrelid""", (names,))
        totals = {n: (int(rows), int(size)) for n, rows, size in cur.fetchall()}

    def sample(seconds: float) -> tuple[Figures, str]:
        built = _existing(target, names)
        with connection(target, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(_BUILDING)
            rows, nbytes, running = cur.fetchone()
        done = [totals.get(n, (0, 0)) for n in built]
        figures = Figures(seconds, sum(r for r, _ in done) + rows,
                          sum(r for r, _ in totals.values()), sum(b for _, b in done) + nbytes,
                          sum(b for _, b in totals.values()))
        return figures, f"{len(built)}/{len(names)} index(es) built, {running} building"

    return sample


def _restore_parallel(target: Endpoint, dump: SchemaDump, entries: list[str], *, what: str,
                      names: list[str]) -> None:
    # Each entry commits on its own: a failure keeps the indexes built so far, and the next run
    # skips them by name (see complete_schema). ``names``: the indexes, for the progress lines.
    listing = dump.listing(entries, "indexes.list")
    argv = [tool("pg_restore", dump.major), "--no-owner", "--exit-on-error", f"--jobs={INDEX_JOBS}",
            f"--use-list={listing}", f"--dbname={_conninfo_dbname(target.dbname)}", str(dump.path)]
    env = libpq_env(target)
    env["PGOPTIONS"] = f"-c maintenance_work_mem={MAINTENANCE_WORK_MEM}"
    try:
        with Ticker(build_progress(dump.source, target, names), what=f"building {what}", logger=log):
            res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=6 * 3600)
    except subprocess.TimeoutExpired:
        raise ReplicationError(f"building {what} on {target.safe()} took over 6 hours") from None
    if res.returncode != 0:
        raise ReplicationError(f"building {what} on {target.safe()} failed (the indexes finished "
                               f"before stay and a rerun skips them): "
                               f"{redact(res.stderr.strip())[-800:]}")


def _execute(target: Endpoint, script: str, *, what: str, major: int,
             marker_sql: str | None = None) -> None:
    # psql, not a driver: pg_dump's scripts carry psql meta-commands (\restrict since 15.14).
    # One transaction with ON_ERROR_STOP: all of it or none of it.
    text = script + ("\n" + marker_sql + ";\n" if marker_sql else "")
    argv = [tool("psql", major), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-"]
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
