"""The migration's table scope: which tables a migration moves, read from the catalog once, in
the two views its parts need.

In scope is every ordinary or partitioned table outside the system schemas, except what belongs
to a replication engine (DMS control tables, pglogical) or to an extension (the extension makes
it on each side) and temporary tables; then the migration's ``tables`` (each a table or a
partitioned parent, whose partitions come along) less its ``exclude``.

* :attr:`Scope.leaves`: the tables that hold rows. Replication publishes these, the switch
  fences them and the cutover checks each is ready in the subscription. Use their ``quoted``
  names (``format('%I.%I')``) in SQL.
* :attr:`Scope.parents`: the tables as an application sees them, a partitioned table through its
  top parent. Validation compares these, by their unquoted ``qualified`` names.

The DMS task's table mappings (:mod:`paymigrate.replication.dms_task`) state the same rules for DMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paymigrate.errors import BadInput
from paymigrate.inputs import parse_table

# Where the DMS task keeps its control tables on the target (its ControlSchema setting).
DMS_CONTROL_SCHEMA = "dms_control"
# The migration's own objects on both servers (the write fence, the DMS drain marker): never
# the application's, so never fenced, validated or published; schema copies leave it out too.
MIGRATION_SCHEMA = "paymigrate"
# The one migration table DMS carries (both directions): the drain waits for its rows.
DRAIN_MARKER_TABLE = "drain_marker"
# Schemas and table names that belong to a replication engine, not to the application.
INTERNAL_SCHEMAS = ("pg_catalog", "information_schema", "pglogical", "awsdms_control",
                    DMS_CONTROL_SCHEMA, MIGRATION_SCHEMA)
INTERNAL_TABLE_PREFIX = "awsdms_"

_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, format('%%I.%%I', n.nspname, c.relname), c.relkind = 'p',
       ARRAY(SELECT a.relid::oid FROM pg_catalog.pg_partition_ancestors(c.oid) a
              WHERE a.relid <> c.oid)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
   AND n.nspname <> ALL (%(internal)s) AND n.nspname NOT LIKE 'pg\\_%%'
   AND c.relname NOT LIKE %(internal_table)s
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 2, 3
"""


@dataclass(frozen=True)
class ScopeTable:
    oid: int
    schema: str
    name: str
    quoted: str  # format('%I.%I', schema, name): safe to put in SQL
    partitioned: bool = False  # a partitioned parent: its rows are in its partitions
    ancestors: tuple[int, ...] = ()  # the partitioned parents above a partition, nearest first

    @property
    def qualified(self) -> str:
        """``schema.name`` unquoted: the name validation reports and users give."""
        return f"{self.schema}.{self.name}"

    @property
    def top(self) -> int:
        """The oid of the table as the application sees it (the top partitioned parent)."""
        return self.ancestors[-1] if self.ancestors else self.oid


@dataclass(frozen=True)
class Scope:
    """Every table of the migration (``leaves``) and the names asked for that were not found."""

    leaves: tuple[ScopeTable, ...]
    parents: tuple[ScopeTable, ...]
    unknown: tuple[str, ...] = ()

    @property
    def leaf_oids(self) -> list[int]:
        return [t.oid for t in self.leaves]

    def leaf_names(self) -> list[str]:
        """Quoted ``schema.name`` of the tables that hold rows (replication, fence, cutover)."""
        return [t.quoted for t in self.leaves]

    def parent_names(self) -> list[str]:
        """Unquoted ``schema.name`` of the tables as the application sees them (validation)."""
        return [t.qualified for t in self.parents]


def read(cur: Any, *, tables: Sequence[str] | None = None,
         exclude: Sequence[str] | None = None) -> Scope:
    """The scope on the server ``cur`` is connected to: every table, or ``tables``, less
    ``exclude`` (``schema.name``, resolved as PostgreSQL does). A name given that is not an
    in-scope table is returned in ``unknown``."""
    cur.execute(_TABLES_SQL, {"internal": list(INTERNAL_SCHEMAS),
                              "internal_table": INTERNAL_TABLE_PREFIX.replace("_", "\\_") + "%"})
    every = [ScopeTable(oid, schema, name, quoted, partitioned, tuple(ancestors))
             for oid, schema, name, quoted, partitioned, ancestors in cur.fetchall()]
    by_oid = {t.oid: t for t in every}
    unknown: list[str] = []

    def resolve(names: Sequence[str]) -> set[int]:
        oids = set()
        for name in names:
            try:  # SQL syntax (public."Weird Name"), handed over quoted part by part
                quoted = parse_table(name).sql
            except BadInput:
                unknown.append(name)  # no table can have a name that does not parse
                continue
            cur.execute("SELECT to_regclass(%s)::oid", (quoted,))
            oid = cur.fetchone()[0]
            if oid is None or oid not in by_oid:
                unknown.append(name)
            else:
                oids.add(oid)
        return oids

    def within(t: ScopeTable, oids: set[int]) -> bool:
        return t.oid in oids or any(a in oids for a in t.ancestors)

    chosen = resolve(tables) if tables else None
    dropped = resolve(exclude or ())
    leaves = tuple(t for t in every if not t.partitioned
                   and (chosen is None or within(t, chosen)) and not within(t, dropped))
    tops = {t.top for t in leaves}
    parents = tuple(sorted((by_oid[o] for o in tops if o in by_oid), key=lambda t: (t.schema, t.name)))
    return Scope(leaves=leaves, parents=parents, unknown=tuple(unknown))
