"""Schema parity before a cutover: the target has, object by object, what the clients will need
there once it is the writer.

Logical replication and DMS carry rows; the schema was copied once, at the start, and a schema
copy leaves materialized views unpopulated (their contents are data). :func:`check` names each
object the target lacks or holds in a worse state than the source:

* extensions, views, materialized views (and whether they are populated), functions;
* on the migration's tables: indexes (valid), constraints (validated), triggers (enabled the
  same way; the write fence excepted);
* privileges: every privilege a role other than a superuser holds on a table, view or sequence
  on the source, held on the target too (ownership included: the schema copy leaves owners out).

Objects the target has beyond the source are not differences. :func:`refresh_materialized_views`
fills the target's materialized views from its own (replicated) rows; it runs after the
initial copy and again before the cutover, never inside the write pause.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2.errors

from paymigrate.cutover.freeze import FENCE_TRIGGER
from paymigrate.db import Endpoint, connection
from paymigrate.errors import ReplicationError
from paymigrate.scope import INTERNAL_SCHEMAS, INTERNAL_TABLE_PREFIX

log = logging.getLogger(__name__)

_INTERNAL_LIKE = INTERNAL_TABLE_PREFIX.replace("_", "\\_") + "%"  # a LIKE pattern

# Objects of the application: not in a system or engine schema, not members of an extension,
# not what DMS puts beside them on the source (its DDL capture: awsdms_* tables and functions).
_USER_OBJECT = """
  n.nspname <> ALL (%(internal)s) AND n.nspname NOT LIKE 'pg\\_%%' AND {name} NOT LIKE %(internal_prefix)s
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                   WHERE d.classid = %(catalog)s::regclass AND d.objid = {oid} AND d.deptype = 'e')
"""

_FACTS = {
    "extension": "SELECT extname, NULL FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql'",
    "view": "SELECT format('%%I.%%I', n.nspname, c.relname), NULL FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'v' AND "
            + _USER_OBJECT.format(oid="c.oid", name="c.relname"),
    "materialized view": "SELECT format('%%I.%%I', n.nspname, c.relname), c.relispopulated "
                         "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                         "ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND "
                         + _USER_OBJECT.format(oid="c.oid", name="c.relname"),
    "function": "SELECT p.oid::pg_catalog.regprocedure::text, NULL FROM pg_catalog.pg_proc p "
                "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE "
                + _USER_OBJECT.format(oid="p.oid", name="p.proname"),
    "trigger": "SELECT format('%%s.%%I', t.tgrelid::pg_catalog.regclass, t.tgname), t.tgenabled "
               "FROM pg_catalog.pg_trigger t WHERE NOT t.tgisinternal AND t.tgname <> %(fence)s "
               "AND t.tgname NOT LIKE %(internal_prefix)s "
               "AND t.tgrelid::pg_catalog.regclass::text = ANY(%(tables)s)",
    "index": "SELECT format('%%I.%%I', n.nspname, i.relname), x.indisvalid FROM pg_catalog.pg_index x "
             "JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
             "JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace "
             "WHERE x.indrelid::pg_catalog.regclass::text = ANY(%(tables)s)",
    # Not-null constraints are catalogued as constraints from PostgreSQL 18 only: the columns'
    # NOT NULL is the same either way (the schema copy carries it), so they are left out.
    "constraint": "SELECT format('%%s.%%I', c.conrelid::pg_catalog.regclass, c.conname), c.convalidated "
                  "FROM pg_catalog.pg_constraint c WHERE c.contype <> 'n' "
                  "AND c.conrelid::pg_catalog.regclass::text = ANY(%(tables)s)",
}

# Every privilege held on the source by a role that is not a superuser (superusers need none),
# on the migration's tables and on every view, materialized view and sequence; an object whose
# privileges were never changed holds its owner's defaults.
_PRIVILEGES = """
SELECT format('%%I.%%I', n.nspname, c.relname), c.relkind = 'S', coalesce(r.rolname, 'public'),
       a.privilege_type
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault(
       CASE WHEN c.relkind = 'S' THEN 's'::"char" ELSE 'r'::"char" END, c.relowner))) a
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
 WHERE (a.grantee = 0 OR NOT r.rolsuper)
   AND ((c.relkind IN ('r', 'p') AND format('%%I.%%I', n.nspname, c.relname) = ANY(%(tables)s))
        OR (c.relkind IN ('v', 'm', 'S') AND {user}))
 ORDER BY 1, 3, 4
""".format(user=_USER_OBJECT.format(oid="c.oid", name="c.relname"))

# Of the privileges the source holds, those the target does not (the object there, the role too).
_MISSING_PRIVILEGES = """
SELECT o, g, p FROM unnest(%s::text[], %s::bool[], %s::text[], %s::text[]) AS x(o, s, g, p)
 WHERE pg_catalog.to_regclass(o) IS NOT NULL
   AND (g = 'public' OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = g))
   AND NOT CASE WHEN s THEN pg_catalog.has_sequence_privilege(g, o, p)
                ELSE pg_catalog.has_table_privilege(g, o, p) END
"""

_ENABLED = {"O": "enabled", "D": "disabled", "R": "enabled for replica sessions only",
            "A": "enabled always"}


@dataclass(frozen=True)
class Difference:
    kind: str  # extension, view, materialized view, function, trigger, index, constraint, role, privilege
    name: str
    problem: str

    def line(self) -> str:
        return f"{self.kind} {self.name}: {self.problem}"


SchemaFacts = Mapping[str, Mapping[str, Any]]  # kind -> {name: state}


def compare(source: SchemaFacts, target: SchemaFacts) -> list[Difference]:
    """What the target lacks, or holds in a worse state, kind by kind.

    >>> compare({"trigger": {"public.t.audit": "O"}, "index": {"public.t_pkey": True}},
    ...         {"trigger": {"public.t.audit": "D"}, "index": {}})
    [Difference(kind='trigger', name='public.t.audit', problem='enabled on the source, disabled on the target'), Difference(kind='index', name='public.t_pkey', problem='missing on the target')]
    """
    out = []
    for kind, objects in source.items():
        there = target.get(kind, {})
        for name, state in sorted(objects.items()):
            if name not in there:
                out.append(Difference(kind, name, "missing on the target"))
                continue
            problem = _worse(kind, state, there[name])
            if problem:
                out.append(Difference(kind, name, problem))
    return out


def _worse(kind: str, source: Any, target: Any) -> str | None:
    if kind == "trigger" and source != target:
        return f"{_ENABLED.get(source, source)} on the source, {_ENABLED.get(target, target)} on the target"
    if kind == "materialized view" and source and not target:
        return "not populated on the target (reading it fails there)"
    if kind == "index" and source and not target:
        return "not valid on the target (an index build failed half-way)"
    if kind == "constraint" and source and not target:
        return "not validated on the target"
    return None


def facts(cur: Any, tables: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every fact :func:`compare` uses, read through ``cur`` (names qualified whatever the
    session's search path)."""
    cur.execute("SET search_path = pg_catalog")
    params = {"internal": list(INTERNAL_SCHEMAS), "tables": list(tables), "fence": FENCE_TRIGGER,
              "internal_prefix": _INTERNAL_LIKE}
    out: dict[str, dict[str, Any]] = {}
    for kind, sql in _FACTS.items():
        catalog = "pg_catalog.pg_proc" if kind == "function" else "pg_catalog.pg_class"
        cur.execute(sql, {**params, "catalog": catalog})
        out[kind] = {name: state for name, state in cur.fetchall()}
    return out


def check(*, source: Endpoint, target: Endpoint, tables: Sequence[str]) -> list[Difference]:
    """Every difference between the sides that would hurt clients once the target writes;
    ``tables``: the migration's tables, quoted ``schema.name``."""
    with connection(source) as conn, conn.cursor() as cur:
        on_source = facts(cur, tables)
        cur.execute(_PRIVILEGES, {"internal": list(INTERNAL_SCHEMAS), "tables": list(tables),
                                  "catalog": "pg_catalog.pg_class",
                                  "internal_prefix": _INTERNAL_LIKE})
        privileges = cur.fetchall()
    with connection(target) as conn, conn.cursor() as cur:
        on_target = facts(cur, tables)
        roles = sorted({g for _, _, g, _ in privileges} - {"public"})
        cur.execute("SELECT r FROM unnest(%s::text[]) r WHERE NOT EXISTS "
                    "(SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r)", (roles,))
        missing_roles = [r for (r,) in cur.fetchall()]
        cur.execute(_MISSING_PRIVILEGES, [list(col) for col in zip(*privileges, strict=True)]
                    if privileges else [[], [], [], []])
        missing = cur.fetchall()
    found = compare(on_source, on_target)
    found += [Difference("role", r, "missing on the target (it holds privileges on the source)")
              for r in missing_roles]
    found += [Difference("privilege", f"{p} on {o} to {g}", "held on the source, not on the target")
              for o, g, p in missing]
    if found:
        log.warning("schema parity: %d difference(s): %s", len(found), "; ".join(d.line() for d in found))
    return found


def refresh_materialized_views(*, source: Endpoint, target: Endpoint) -> list[str]:
    """Fill every materialized view the source has populated from the target's own rows
    (``CONCURRENTLY`` where the target's is populated and has a unique index, so readers are
    not blocked). One over another is refreshed after it. Returns the names refreshed."""
    with connection(source) as conn, conn.cursor() as cur:
        populated = [name for name, yes in facts(cur, [])["materialized view"].items() if yes]
    done: list[str] = []
    pending = sorted(populated)
    with connection(target, autocommit=True) as conn, conn.cursor() as cur:
        while pending:
            waiting = []
            for name in pending:
                cur.execute("SELECT c.relispopulated AND EXISTS (SELECT 1 FROM pg_catalog.pg_index x "
                            "WHERE x.indrelid = c.oid AND x.indisunique AND x.indpred IS NULL) "
                            "FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(%s)", (name,))
                row = cur.fetchone()
                if row is None:
                    continue  # not on the target: check() names it
                how = "CONCURRENTLY " if row[0] else ""
                try:
                    cur.execute(f"REFRESH MATERIALIZED VIEW {how}{name}")
                except psycopg2.errors.ObjectNotInPrerequisiteState:
                    waiting.append(name)  # it reads another not yet populated: next round
                    continue
                done.append(name)
                log.info("materialized view %s refreshed on %s%s", name, target.safe(),
                         " concurrently" if how else "")
            if len(waiting) == len(pending):
                raise ReplicationError(f"materialized views {', '.join(waiting)} read others that "
                                       "cannot be populated on the target")
            pending = waiting
    return done
