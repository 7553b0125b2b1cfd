"""Tables, columns and primary keys, read from the catalog; and the check that both sides agree.

Nothing is listed in code: every ordinary or partitioned table outside the system schemas is
compared, except replication internals (DMS control tables, pglogical) and tables owned by an
extension (the extension creates them on each side). Partitions are compared through their parent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from paymigrate.errors import ValidationError

INTEGER_TYPES = frozenset({"int2", "int4", "int8"})

# Schemas and table names that belong to a replication engine, not to the application.
INTERNAL_SCHEMAS = ("pg_catalog", "information_schema", "pglogical", "awsdms_control")
_INTERNAL_TABLE = re.compile(r"^awsdms_")

_TABLES_SQL = """
SELECT n.nspname, c.relname, c.oid
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
   AND n.nspname <> ALL (%(internal)s) AND n.nspname NOT LIKE 'pg\\_%%'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       COALESCE(bt.typname, t.typname), a.attcollation <> 0,
       COALESCE(pk.pos, 0)
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
  LEFT JOIN LATERAL (
        SELECT k.pos FROM pg_catalog.pg_constraint con,
               unnest(con.conkey) WITH ORDINALITY AS k(attnum, pos)
         WHERE con.conrelid = a.attrelid AND con.contype = 'p' AND k.attnum = a.attnum) pk ON true
 WHERE a.attrelid = ANY (%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): what both sides must agree on
    base: str  # typname of the type, or of a domain's base type: what normalization keys on
    collatable: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.type or not self.base:
            raise ValueError(f"column {self.name!r} needs a name, a type and a base type")

    @property
    def integer(self) -> bool:
        return self.base in INTEGER_TYPES


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # primary key columns in key order; () when there is none

    def __post_init__(self) -> None:
        if not self.schema or not self.name:
            raise ValueError(f"table {self.schema!r}.{self.name!r} needs a schema and a name")
        if not self.columns:
            raise ValueError(f"table {self.qualified} has no columns")
        names = {c.name for c in self.columns}
        unknown = [k for k in self.key if k not in names]
        if unknown:
            raise ValueError(f"table {self.qualified}: key columns {unknown} are not columns")

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def key_columns(self) -> tuple[Column, ...]:
        by_name = {c.name: c for c in self.columns}
        return tuple(by_name[k] for k in self.key)


def discover(cur, *, schemas: Sequence[str] | None = None) -> dict[str, Table]:
    """Every comparable table visible to ``cur``, by ``schema.name``."""
    cur.execute(_TABLES_SQL, {"internal": list(INTERNAL_SCHEMAS)})
    found = [(s, n, oid) for s, n, oid in cur.fetchall()
             if not _INTERNAL_TABLE.match(n) and (not schemas or s in schemas)]
    if not found:
        return {}
    cur.execute(_COLUMNS_SQL, {"oids": [oid for _, _, oid in found]})
    columns: dict[int, list[tuple[int, Column]]] = {}
    for oid, name, type_, base, collatable, key_pos in cur.fetchall():
        columns.setdefault(oid, []).append((key_pos, Column(name, type_, base, collatable)))
    tables = {}
    for schema, name, oid in found:
        cols = columns.get(oid, [])
        if not cols:
            continue  # a table with no columns holds nothing to compare
        key = tuple(c.name for pos, c in sorted((p, c) for p, c in cols if p) )
        tables[f"{schema}.{name}"] = Table(schema, name, tuple(c for _, c in cols), key)
    return tables


def select(tables: Mapping[str, Table], wanted: Iterable[str] | None, *, side: str) -> list[str]:
    """The names in ``tables`` that ``wanted`` asks for (``schema.name`` or a bare ``name``).

    Refuses, naming them, the requested tables that do not exist on ``side``.
    """
    if not wanted:
        return sorted(tables)
    picked: list[str] = []
    absent = []
    for want in wanted:
        hits = [q for q in tables if q == want or ("." not in want and tables[q].name == want)]
        if not hits:
            absent.append(want)
        picked.extend(h for h in sorted(hits) if h not in picked)
    if absent:
        raise ValidationError(f"table {', '.join(absent)} not found on the {side}")
    return picked


def plan(source: Mapping[str, Table], target: Mapping[str, Table],
         wanted: Iterable[str] | None = None) -> list[tuple[Table, Table]]:
    """Pair each wanted table with its counterpart, or refuse with every structural difference.

    Columns are matched by name (their order may differ); types compare as ``format_type`` shows
    them, so ``numeric(12,2)`` against ``numeric`` is a difference.
    """
    wanted = list(wanted or ())
    names = select(source, wanted, side="source")
    if not wanted:
        names = sorted(set(names) | set(target))
    problems: list[str] = []
    pairs = []
    for q in names:
        s, t = source.get(q), target.get(q)
        if s is None or t is None:
            problems.append(f"table {q} is missing on the {'source' if s is None else 'target'}")
            continue
        found = _differences(s, t)
        problems.extend(found)
        if not found:
            pairs.append((s, t))
    if problems:
        raise ValidationError("source and target differ in structure: " + "; ".join(problems))
    return pairs


def _differences(s: Table, t: Table) -> list[str]:
    out = []
    scols, tcols = {c.name: c for c in s.columns}, {c.name: c for c in t.columns}
    for name in scols.keys() - tcols.keys():
        out.append(f"column {s.qualified}.{name} is missing on the target")
    for name in tcols.keys() - scols.keys():
        out.append(f"column {s.qualified}.{name} is missing on the source")
    for name in scols.keys() & tcols.keys():
        if scols[name].type != tcols[name].type:
            out.append(f"column {s.qualified}.{name} is {scols[name].type} on the source and "
                       f"{tcols[name].type} on the target")
    if s.key != t.key:
        out.append(f"table {s.qualified} has primary key ({', '.join(s.key) or 'none'}) on the "
                   f"source and ({', '.join(t.key) or 'none'}) on the target")
    return sorted(out)
