"""Tables, columns and row keys, read from the catalog; and the check that both sides agree.

Nothing is listed in code: the tables compared are the migration's scope
(:mod:`paymigrate.scope`) as the application sees them, partitions through their parent.

A table's key is what identifies a row for good: its primary key, else its replica identity
index, else a unique index on NOT NULL columns (fewest columns first). Each of these admits one
row per key value, so rows can be compared by key and re-read by key under live replication.
Only a table with none of them is a multiset of rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from paymigrate import scope
from paymigrate.errors import BadInput, ValidationError
from paymigrate.inputs import parse_table

INTEGER_TYPES = frozenset({"int2", "int4", "int8"})

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       COALESCE(bt.typname, t.typname), a.attcollation <> 0
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
 WHERE a.attrelid = ANY (%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""

# Unique indexes that admit one row per value: valid, no predicate, no expression, every key
# column NOT NULL (a unique index lets NULLs repeat). INCLUDE columns are not part of the key.
_KEYS_SQL = """
SELECT i.indrelid, i.indisprimary, i.indisreplident,
       ARRAY(SELECT a.attname FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1])
                               WITH ORDINALITY AS k(attnum, pos)
                             JOIN pg_catalog.pg_attribute a
                               ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                            ORDER BY k.pos)
  FROM pg_catalog.pg_index i
 WHERE i.indrelid = ANY (%(oids)s) AND i.indisunique AND i.indisvalid AND i.indislive
   AND i.indpred IS NULL AND i.indexprs IS NULL
   AND NOT EXISTS (SELECT 1 FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) AS k(attnum)
                     JOIN pg_catalog.pg_attribute a
                       ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                    WHERE k.attnum = 0 OR NOT a.attnotnull)
"""

PRIMARY_KEY = "primary key"
REPLICA_IDENTITY = "replica identity"
UNIQUE_KEY = "unique key"


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
    key: tuple[str, ...] = ()  # the row key's columns in index order; () when there is none
    key_kind: str = ""  # PRIMARY_KEY, REPLICA_IDENTITY or UNIQUE_KEY; "" when there is no key
    candidate_keys: tuple[tuple[str, ...], ...] = ()  # every key the table has, preferred first

    def __post_init__(self) -> None:
        if not self.schema or not self.name:
            raise ValueError(f"table {self.schema!r}.{self.name!r} needs a schema and a name")
        if not self.columns:
            raise ValueError(f"table {self.qualified} has no columns")
        names = {c.name for c in self.columns}
        unknown = [k for k in self.key if k not in names]
        if unknown:
            raise ValueError(f"table {self.qualified}: key columns {unknown} are not columns")
        if self.key_kind and not self.key:
            raise ValueError(f"table {self.qualified}: key kind {self.key_kind!r} without key columns")
        if self.key and not self.key_kind:  # a key given alone is the primary key
            object.__setattr__(self, "key_kind", PRIMARY_KEY)
        if self.key and self.key not in self.candidate_keys:
            object.__setattr__(self, "candidate_keys", (self.key, *self.candidate_keys))

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def key_columns(self) -> tuple[Column, ...]:
        by_name = {c.name: c for c in self.columns}
        return tuple(by_name[k] for k in self.key)


def discover(cur, *, schemas: Sequence[str] | None = None) -> dict[str, Table]:
    """Every comparable table visible to ``cur``, by ``schema.name``."""
    found = [(t.schema, t.name, t.oid) for t in scope.read(cur).parents
             if not schemas or t.schema in schemas]
    if not found:
        return {}
    oids = [oid for _, _, oid in found]
    cur.execute(_COLUMNS_SQL, {"oids": oids})
    columns: dict[int, list[Column]] = {}
    for oid, name, type_, base, collatable in cur.fetchall():
        columns.setdefault(oid, []).append(Column(name, type_, base, collatable))
    cur.execute(_KEYS_SQL, {"oids": oids})
    keys: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
    for oid, primary, replident, names in cur.fetchall():
        kind = PRIMARY_KEY if primary else REPLICA_IDENTITY if replident else UNIQUE_KEY
        keys.setdefault(oid, []).append((kind, tuple(names)))
    tables = {}
    for schema, name, oid in found:
        cols = columns.get(oid, [])
        if not cols:
            continue  # a table with no columns holds nothing to compare
        ranked = rank_keys(keys.get(oid, []))
        kind, key = ranked[0] if ranked else ("", ())
        tables[f"{schema}.{name}"] = Table(schema, name, tuple(cols), key, kind,
                                           tuple(k for _, k in ranked))
    return tables


def rank_keys(keys: Iterable[tuple[str, tuple[str, ...]]]) -> list[tuple[str, tuple[str, ...]]]:
    """``(kind, columns)`` keys, preferred first, without repeats: the primary key, the replica
    identity index, then unique keys by fewest columns and then by column names (not index
    names, which may differ between the sides).

    >>> rank_keys([("unique key", ("b", "c")), ("unique key", ("z",)), ("replica identity", ("b", "c"))])
    [('replica identity', ('b', 'c')), ('unique key', ('z',))]
    """
    order = {PRIMARY_KEY: 0, REPLICA_IDENTITY: 1, UNIQUE_KEY: 2}
    unknown = [kind for kind, _ in keys if kind not in order]
    if unknown:
        raise ValueError(f"unknown key kind {unknown[0]!r}; known: {', '.join(order)}")
    out: list[tuple[str, tuple[str, ...]]] = []
    for kind, cols in sorted(keys, key=lambda k: (order[k[0]], len(k[1]), k[1])):
        if cols and all(cols != c for _, c in out):
            out.append((kind, cols))
    return out


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
            hits = _by_sql_name(tables, want)
        if not hits:
            absent.append(want)
        picked.extend(h for h in sorted(hits) if h not in picked)
    if absent:
        raise ValidationError(f"table {', '.join(absent)} not found on the {side}")
    return picked


def _by_sql_name(tables: Mapping[str, Table], want: str) -> list[str]:
    """``want`` read as SQL names it (``public."Weird Name"``, ``Public.Payments`` folded to
    lower case), matched part by part; nothing when it does not parse."""
    try:
        name = parse_table(want)
    except BadInput:
        return []
    return [q for q, t in tables.items()
            if t.name == name.name and (name.schema is None or t.schema == name.schema)]


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
            pairs.append(_common_key(s, t))
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
    if s.key != t.key and s.key not in t.candidate_keys and t.key not in s.candidate_keys:
        out.append(f"table {s.qualified} has {_key_name(s)} on the source and {_key_name(t)} "
                   "on the target")
    return sorted(out)


def _key_name(t: Table) -> str:
    return f"{t.key_kind} ({', '.join(t.key)})" if t.key else "(none)"


def _common_key(s: Table, t: Table) -> tuple[Table, Table]:
    """Both tables keyed alike: a key one side prefers that the other side has too (a target
    with a primary key where the source has only a unique index is still compared by key)."""
    if s.key == t.key:
        return s, t
    if s.key in t.candidate_keys:
        return s, replace(t, key=s.key, key_kind=s.key_kind)
    return replace(s, key=t.key, key_kind=t.key_kind), t
