"""Preflight of native logical replication: refuse, naming table and reason, what would lose data.

:func:`gather` reads the facts from both catalogs (the only SQL here); :func:`evaluate` turns them
into problems and warnings without a server, so each rule is tested on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paymigrate import scope
from paymigrate.replication.base import Problem
from paymigrate.replication.retention import Room, evaluate_room, read_room
from paymigrate.replication.versions import check_versions

log = logging.getLogger(__name__)

_TABLE_FACTS = """
SELECT format('%%I.%%I', n.nspname, c.relname),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       c.relreplident,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident),
       coalesce(s.n_tup_upd, 0), coalesce(s.n_tup_del, 0),
       c.relpersistence,
       -- A unique index PostgreSQL accepts as replica identity (immediate, not partial, no
       -- expressions, every column NOT NULL): as exact as a primary key, far cheaper than FULL.
       (SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = c.oid AND x.indisunique AND x.indimmediate AND x.indisvalid
          AND x.indpred IS NULL AND x.indexprs IS NULL
          AND NOT EXISTS (SELECT 1 FROM unnest(x.indkey::int2[]) k JOIN pg_attribute a
                          ON a.attrelid = c.oid AND a.attnum = k WHERE NOT a.attnotnull)
        ORDER BY x.indnatts, i.relname LIMIT 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.oid = ANY(%s::oid[])
ORDER BY 1
"""


@dataclass(frozen=True)
class TableFacts:
    name: str
    has_primary_key: bool
    replica_identity: str  # pg_class.relreplident: d(efault) n(othing) f(ull) i(ndex)
    has_identity_index: bool
    updates: int
    deletes: int
    persistence: str  # p(ermanent) u(nlogged) t(emporary)
    identity_index: str | None = None  # a unique NOT NULL index fit for REPLICA IDENTITY

    @property
    def identity_index_sql(self) -> str | None:
        """The statement that makes :attr:`identity_index` the replica identity, if there is one."""
        if not self.identity_index:
            return None
        quoted = '"' + self.identity_index.replace('"', '""') + '"'
        return f"ALTER TABLE {self.name} REPLICA IDENTITY USING INDEX {quoted}"

    @property
    def identity_ok(self) -> bool:
        return ((self.replica_identity == "d" and self.has_primary_key)
                or self.replica_identity == "f"
                or (self.replica_identity == "i" and self.has_identity_index))


@dataclass(frozen=True)
class PreflightFacts:
    """Everything preflight looks at, read from both sides at one moment."""

    source_wal_level: str
    target_wal_level: str
    max_slots: int
    used_slots: int
    max_senders: int
    used_senders: int
    sync_workers: int  # the target's max_sync_workers_per_subscription
    slot_exists: bool
    resuming: bool  # our subscription already exists on the target
    tables: tuple[TableFacts, ...]
    unknown_tables: tuple[str, ...] = ()
    large_objects: int = 0
    missing_extensions: tuple[str, ...] = ()
    target_tables_with_rows: tuple[str, ...] = ()
    missing_roles: tuple[tuple[str, str], ...] = ()  # (object, role) granted on the source
    source_version: int = 0  # server_version_num; 0 when not read
    target_version: int = 0


def evaluate(facts: PreflightFacts, *, replica_identity_full: bool = False,
             replica_identity_index: bool = False,
             table_sync: bool = True) -> tuple[list[Problem], list[str]]:
    """``(problems, warnings)``: problems refuse the start, warnings are logged.

    ``table_sync``: PostgreSQL's table sync copies (a slot per sync worker). Without it the engine
    copies under the slot's snapshot, and a slot left without a subscription marks a copy that
    was interrupted: its tables' rows are its own, emptied and copied again."""
    problems: list[Problem] = []
    warnings: list[str] = []
    if facts.source_version and facts.target_version:
        older = check_versions(facts.source_version, facts.target_version)
        if older is not None:
            problems.append(older)
    if facts.source_wal_level != "logical":
        problems.append(Problem(None, f"source wal_level is {facts.source_wal_level}, logical "
                                      "replication needs wal_level = logical (restart required)"))
    if facts.target_wal_level != "logical":
        problems.append(Problem(None, f"target wal_level is {facts.target_wal_level}: reverse "
                                      "replication (the fallback after cutover) needs logical"))
    need = (facts.sync_workers if table_sync else 0) + (0 if facts.slot_exists else 1)
    free_slots = facts.max_slots - facts.used_slots
    if free_slots < need:
        problems.append(Problem(None, (
            f"source has {free_slots} free replication slot(s) (max_replication_slots "
            f"{facts.max_slots}, {facts.used_slots} in use); the subscription needs {need}"
            + (f" (its own plus {facts.sync_workers} for parallel table sync)" if table_sync
               else ""))))
    free_senders = facts.max_senders - facts.used_senders
    if free_senders < need:
        problems.append(Problem(None, (
            f"source has {free_senders} free WAL sender(s) (max_wal_senders {facts.max_senders}, "
            f"{facts.used_senders} in use); the subscription needs {need}")))
    for name in facts.unknown_tables:
        problems.append(Problem(name, "not found on the source"))
    if not facts.tables and not facts.unknown_tables:
        problems.append(Problem(None, "no table to replicate on the source"))
    for t in facts.tables:
        if t.persistence == "u":
            problems.append(Problem(t.name, "unlogged table: its rows are not written to the WAL, "
                                            "so neither the copy's changes nor CDC can carry them"))
        if t.identity_ok:
            continue
        if t.updates or t.deletes:
            if replica_identity_index and t.identity_index:
                warnings.append(f"{t.name}: no primary key; {t.identity_index_sql} will be set "
                                "(a unique NOT NULL key identifies rows as a primary key does)")
            elif t.identity_index:
                problems.append(Problem(t.name, (
                    f"no primary key or replica identity and {t.updates} update(s), {t.deletes} "
                    f"delete(s) seen: once published, its UPDATE/DELETE fail on the source; "
                    f"cheapest fix: {t.identity_index_sql} (pass replica_identity_index=True to "
                    "have it set; FULL would log whole rows and scan the target per change)")))
            elif replica_identity_full:
                warnings.append(
                    f"{t.name}: no primary key; REPLICA IDENTITY FULL will be set. Cost: every "
                    "UPDATE/DELETE then writes the whole old row to the WAL and the apply on the "
                    "target scans the table sequentially for each row changed")
            else:
                problems.append(Problem(t.name, (
                    f"no primary key or replica identity and {t.updates} update(s), {t.deletes} "
                    "delete(s) seen: once published, its UPDATE/DELETE fail on the source; add a "
                    "primary key or pass replica_identity_full=True")))
        else:
            warnings.append(
                f"{t.name}: no primary key but insert-only so far (no UPDATE/DELETE in the "
                "statistics); once published, an UPDATE or DELETE on it fails on the source")
    if facts.large_objects:
        problems.append(Problem("pg_largeobject", (
            f"{facts.large_objects} large object(s): logical replication does not carry them")))
    for ext in facts.missing_extensions:
        problems.append(Problem(None, f"extension {ext} is installed on the source but not "
                                      "available on the target"))
    recopy = not table_sync and facts.slot_exists and not facts.resuming
    ours = {t.name for t in facts.tables} if recopy else set()
    if not facts.resuming:
        for name in facts.target_tables_with_rows:
            if name in ours:
                warnings.append(f"{name}: rows on the target from an interrupted initial copy; "
                                "emptied and copied again")
                continue
            problems.append(Problem(name, "target table is not empty: the initial copy needs an "
                                          "empty target database"))
    for obj, role in facts.missing_roles:
        problems.append(Problem(obj, f"granted to role {role}, which does not exist on the target"))
    return problems, warnings


def wal_retention(source: Any) -> tuple[Room, list[str]]:
    """The source's ``max_slot_wal_keep_size`` and the free disk of its data directory (where
    it can be known from here), and the warnings they call for: what a slot left behind by a
    stopped migration can do to the source."""
    from paymigrate.db import connection

    with connection(source, autocommit=True) as conn, conn.cursor() as cur:
        room = read_room(cur, host=source.host)
    return room, evaluate_room(room)


def scope_oids(cur, *, tables: list[str] | None, exclude: list[str] | None) -> tuple[list[int], list[str]]:
    """Oids of the tables to replicate on the source (the scope's leaves: what holds rows), and
    the names given that were not found."""
    found = scope.read(cur, tables=tables, exclude=exclude)
    return found.leaf_oids, list(found.unknown)


def table_names(cur, oids: list[int]) -> list[str]:
    cur.execute("SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%s::oid[]) ORDER BY 1",
                (oids,))
    return [r[0] for r in cur.fetchall()]


def gather(scur, tcur, *, oids: list[int], unknown: list[str], slot: str,
           subscription: str) -> PreflightFacts:
    """Read :class:`PreflightFacts` through a source cursor and a target cursor."""
    def setting(cur, name: str) -> str:
        cur.execute("SELECT current_setting(%s)", (name,))
        return cur.fetchone()[0]

    scur.execute("SELECT count(*), bool_or(slot_name = %s) FROM pg_replication_slots", (slot,))
    used_slots, slot_exists = scur.fetchone()
    scur.execute("SELECT count(*) FROM pg_stat_replication")
    used_senders = scur.fetchone()[0]
    scur.execute(_TABLE_FACTS, (oids,))
    tables = tuple(TableFacts(*r) for r in scur.fetchall())
    scur.execute("SELECT count(*) FROM pg_largeobject_metadata")
    large_objects = scur.fetchone()[0]
    scur.execute("SELECT extname FROM pg_extension ORDER BY 1")
    src_ext = [r[0] for r in scur.fetchall()]
    tcur.execute("SELECT name FROM pg_available_extensions")
    available = {r[0] for r in tcur.fetchall()}
    scur.execute("""
        SELECT DISTINCT format('%%I.%%I', n.nspname, c.relname), r.rolname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = ANY(%s::oid[]) AND c.relowner <> a.grantee ORDER BY 1, 2""", (oids,))
    grants = scur.fetchall()
    tcur.execute("SELECT rolname FROM pg_roles")
    target_roles = {r[0] for r in tcur.fetchall()}
    tcur.execute("SELECT count(*) > 0 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                 "WHERE s.subname = %s AND d.datname = current_database()", (subscription,))
    resuming = tcur.fetchone()[0]
    return PreflightFacts(
        source_wal_level=setting(scur, "wal_level"), target_wal_level=setting(tcur, "wal_level"),
        max_slots=int(setting(scur, "max_replication_slots")), used_slots=used_slots,
        max_senders=int(setting(scur, "max_wal_senders")), used_senders=used_senders,
        sync_workers=int(setting(tcur, "max_sync_workers_per_subscription")),
        slot_exists=bool(slot_exists), resuming=resuming, tables=tables,
        unknown_tables=tuple(unknown), large_objects=large_objects,
        missing_extensions=tuple(e for e in src_ext if e not in available),
        target_tables_with_rows=tuple(tables_with_rows(tcur)),
        missing_roles=tuple((o, r) for o, r in grants if r not in target_roles),
        source_version=int(setting(scur, "server_version_num")),
        target_version=int(setting(tcur, "server_version_num")))


def tables_with_rows(cur) -> list[str]:
    """Tables in scope on the connected database holding at least one row (one probe each)."""
    found = []
    for name in scope.read(cur).leaf_names():
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")  # name is format('%I.%I')
        if cur.fetchone()[0]:
            found.append(name)
    return found


# Columns DMS would change on the way: NUMERIC without precision becomes NUMERIC(28,6).
_UNCONSTRAINED_NUMERIC = """
SELECT format('%%I.%%I', n.nspname, c.relname), a.attname
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
  AND a.atttypid = 'numeric'::regtype AND a.atttypmod = -1
ORDER BY 1, 2
"""


def set_identity_index(cur, oids: list[int]) -> list[str]:
    """Make the unique NOT NULL index of each table of ``oids`` without a usable identity its
    replica identity (on the source: the schema copy carries it to the target). Returns the
    statements run."""
    cur.execute(_TABLE_FACTS, (oids,))
    done = []
    for t in (TableFacts(*r) for r in cur.fetchall()):
        if not t.identity_ok and t.identity_index_sql:
            cur.execute(t.identity_index_sql)
            done.append(t.identity_index_sql)
    return done


# Columns that point at large objects (oid, or a domain over it such as the lo extension's):
# DMS would move the number, not the object it names.
_OID_COLUMNS = """
SELECT format('%%I.%%I', n.nspname, c.relname), a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.oid = ANY(%s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
  AND (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END) = 'oid'::regtype
ORDER BY 1, 2
"""


def gather_source(scur, oids: list[int]) -> tuple[tuple[TableFacts, ...], int,
                                                  list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Source-only facts for engines that own their target (DMS): tables, large objects,
    unconstrained numeric columns, columns that reference large objects."""
    scur.execute(_TABLE_FACTS, (oids,))
    tables = tuple(TableFacts(*r) for r in scur.fetchall())
    scur.execute("SELECT count(*) FROM pg_largeobject_metadata")
    large_objects = scur.fetchone()[0]
    scur.execute(_UNCONSTRAINED_NUMERIC, (oids,))
    numeric = [(t, c) for t, c in scur.fetchall()]
    scur.execute(_OID_COLUMNS, (oids,))
    return tables, large_objects, numeric, [(t, c, k) for t, c, k in scur.fetchall()]


def evaluate_source(tables: tuple[TableFacts, ...], large_objects: int,
                    numeric_columns: list[tuple[str, str]],
                    oid_columns: Sequence[tuple[str, str, str]] = ()) -> list[Problem]:
    """The refusals DMS shares with native replication, plus its NUMERIC truncation and the
    columns that reference large objects."""
    problems = []
    for t in tables:
        if t.persistence == "u":
            problems.append(Problem(t.name, "unlogged table: its changes are not in the WAL"))
        if not t.identity_ok and (t.updates or t.deletes):
            problems.append(Problem(t.name, (
                f"no primary key or replica identity and {t.updates} update(s), {t.deletes} "
                "delete(s) seen: CDC cannot apply them")))
    if large_objects:
        problems.append(Problem("pg_largeobject", (
            f"{large_objects} large object(s): DMS does not carry large objects; move their data "
            "into bytea columns (or drop them) before the migration")))
    for table, column in numeric_columns:
        problems.append(Problem(table, (
            f"column {column} is NUMERIC without precision: DMS maps it to NUMERIC(28,6) and "
            "drops digits; give it a precision and scale")))
    for table, column, kind in oid_columns:
        problems.append(Problem(table, (
            f"column {column} ({kind}) references large objects: DMS carries the number, not "
            "the object, which would not exist on the target; store the data in a bytea column")))
    return problems


# Columns DMS moves as LOBs from PostgreSQL: text, varchar without a length, json, jsonb, bytea,
# xml, and domains over them (the domain's base type and typmod decide).
_LOB_COLUMNS = """
SELECT format('%%I.%%I', n.nspname, c.relname), a.attname, format_type(a.atttypid, a.atttypmod),
       b.base IN ('json'::regtype, 'jsonb'::regtype, 'xml'::regtype)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
CROSS JOIN LATERAL (SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END AS base,
                           CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS mod) b
WHERE c.oid = ANY(%s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
  AND (b.base IN ('text'::regtype, 'json'::regtype, 'jsonb'::regtype, 'bytea'::regtype,
                  'xml'::regtype)
       OR (b.base = 'varchar'::regtype AND b.mod = -1))
ORDER BY 1, a.attnum
"""


@dataclass(frozen=True)
class LobColumn:
    """A LOB-like column and the size in bytes of its largest value (None: no value)."""

    table: str  # format('%I.%I')
    column: str
    type: str
    largest: int | None


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def measure_lobs(cur, oids: list[int]) -> list[LobColumn]:
    """The largest value of every LOB-like column of ``oids``, one sequential scan per table that
    has such columns, every column's maximum from that one scan.

    Cost: a full read of each such table (heap and TOAST). ``octet_length`` of text, varchar and
    bytea reads only the stored length header of a TOASTed value, not the value; json, jsonb and
    xml are measured as DMS sends them, as text, so each of their values is detoasted and
    rendered: budget about one ``count(*)`` plus the rendering per table with such columns."""
    cur.execute(_LOB_COLUMNS, (oids,))
    by_table: dict[str, list[tuple[str, str, bool]]] = {}
    for table, column, kind, as_text in cur.fetchall():
        by_table.setdefault(table, []).append((column, kind, as_text))
    found: list[LobColumn] = []
    for table, columns in by_table.items():
        sizes = ", ".join(f"max(octet_length({_quote(c)}{'::text' if as_text else ''}))"
                          for c, _, as_text in columns)
        started = time.monotonic()
        cur.execute(f"SELECT {sizes} FROM {table}")  # table is format('%I.%I')
        row = cur.fetchone()
        log.info("LOB sizes of %s (%d column(s)) measured in %.2fs", table, len(columns),
                 time.monotonic() - started)
        found += [LobColumn(table, c, kind, size) for (c, kind, _), size in zip(columns, row, strict=True)]
    return found


def evaluate_lobs(columns: list[LobColumn], *, lob_max_size_kb: int) -> list[Problem]:
    """Refuse every column whose largest value DMS's limited LOB mode would truncate.

    >>> p = evaluate_lobs([LobColumn("public.t", "note", "text", 40 * 1024)], lob_max_size_kb=32)[0]
    >>> p.table, p.reason.split(":")[0]
    ('public.t', 'column note (text) holds a value of 40960 bytes (40.0 kB), above LobMaxSize 32 kB')
    """
    limit = lob_max_size_kb * 1024
    problems = []
    for c in columns:
        if c.largest is None or c.largest <= limit:
            continue
        needed = -(-c.largest // 1024)
        problems.append(Problem(c.table, (
            f"column {c.column} ({c.type}) holds a value of {c.largest} bytes "
            f"({c.largest / 1024:.1f} kB), above LobMaxSize {lob_max_size_kb} kB: DMS in limited "
            f"LOB mode would truncate it (FailTasksOnLobTruncation fails the task instead); raise "
            f"replication/dms-lob-max-size-kb (the task's LobMaxSize, in kB) to at least {needed}, "
            f"or move {c.table} in full LOB mode (a table-settings rule, lob-settings mode "
            "unlimited)")))
    return problems
