"""Schema drift during a live migration, found by comparing the two catalogs, and carried across.

Logical replication carries no DDL (PostgreSQL's documentation, "Restrictions"). What a schema change on the source does to it:

* a column the target lacks stops the apply worker ("missing replicated column"): it retries for
  ever and the lag only grows;
* a column of another type makes the apply fail on the first value that does not convert;
* a table created on the source is in no publication (``FOR TABLE`` lists): its rows never reach
  the target and a cutover would leave them behind;
* a column dropped on the source stays on the target, where a NOT NULL without default refuses
  every replicated INSERT.

:func:`find_drift` compares, at one moment, the columns of every published table on both sides
and the migration's scope with the publication: a catalog read of a few milliseconds, cheap
enough for every sensor poke. Each :class:`Drift` names the table, the column and the statement
that fixes it; :func:`carry` runs those statements (the target first, then the publication and
the subscription) and the apply worker goes on by itself at its next retry.

Safe orders for a statement run by hand on both sides (``paymigrate ddl "SQL"``): what only adds
(a nullable column, a column with a default, a table) goes to the **target first**, so the
subscriber can take every row the source then writes; what removes (a dropped column, a dropped
table) goes to the **source first**, so nothing the source still sends needs what is gone; a type
change is an add then a drop (a new column, filled, then the old one dropped).
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from psycopg2 import sql

from paymigrate.cutover.freeze import FENCE_SCHEMA
from paymigrate.db import Endpoint, connection, redact
from paymigrate.errors import ReplicationError
from paymigrate.replication import preflight as pf

if TYPE_CHECKING:
    from paymigrate.replication.base import Engine

log = logging.getLogger(__name__)

Kind = Literal["column-missing", "column-type", "column-extra", "table-unpublished", "table-missing"]
KINDS: tuple[str, ...] = ("column-missing", "column-type", "column-extra", "table-unpublished",
                          "table-missing")
Order = Literal["target-first", "source-first"]
ORDERS: tuple[str, ...] = ("target-first", "source-first")

# Columns of the tables named (format('%I.%I') text, unknown names skipped): name, type as
# written in DDL, NOT NULL, default expression.
_COLUMNS = """
SELECT format('%%I.%%I', n.nspname, c.relname), a.attname, format_type(a.atttypid, a.atttypmod),
       a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attgenerated <> ''
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.oid IN (SELECT to_regclass(t) FROM unnest(%s::text[]) t) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, a.attnum
"""


class SchemaDrift(ReplicationError):
    """The two sides' schemas differ where replication needs them equal; ``drift`` lists how."""

    def __init__(self, drift: list[Drift]):
        self.drift = list(drift)
        super().__init__(describe(self.drift))


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    default: str | None = None
    generated: bool = False


@dataclass(frozen=True)
class Drift:
    """One difference: ``table`` is ``schema.table``; ``column`` is None for a whole table;
    ``fix`` is the SQL (or command) that carries it, and ``side`` where that SQL runs."""

    kind: str
    table: str
    column: str | None
    detail: str
    fix: str
    side: str = "target"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"drift kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def __str__(self) -> str:
        what = f"{self.table}.{self.column}" if self.column else self.table
        return f"{what}: {self.detail}; fix: {self.fix}"


def describe(drift: list[Drift]) -> str:
    lines = "\n".join(f"  - {d}" for d in drift)
    return (f"schema drift between source and target, {len(drift)} difference(s) (DDL is not "
            f"replicated; `paymigrate ddl --carry` applies the fixes):\n{lines}")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def add_column_sql(table: str, col: Column) -> str:
    """The target's ADD COLUMN for a source column: same type, default and NOT NULL (a default
    that is not volatile fills the target's existing rows as it did the source's).

    >>> add_column_sql("public.t", Column("note", "text", True, "''::text"))
    'ALTER TABLE public.t ADD COLUMN IF NOT EXISTS "note" text DEFAULT \\'\\'::text NOT NULL'
    """
    out = f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {_q(col.name)} {col.type}"
    if col.default is not None and not col.generated:
        out += f" DEFAULT {col.default}"
    if col.not_null:
        out += " NOT NULL"
    return out


def compare_columns(source: dict[str, list[Column]], target: dict[str, list[Column]]) -> list[Drift]:
    """Drift of the tables in ``source`` (published ones) against ``target``, by column name.

    >>> [d.kind for d in compare_columns({"public.t": [Column("id", "bigint"), Column("x", "text")]},
    ...                                  {"public.t": [Column("id", "integer")]})]
    ['column-type', 'column-missing']
    """
    drift: list[Drift] = []
    for table, cols in sorted(source.items()):
        if table not in target:
            drift.append(Drift("table-missing", table, None, "published on the source but not on "
                               "the target: its rows cannot be applied",
                               f"paymigrate ddl --carry (creates {table} on the target and copies it)"))
            continue
        theirs = {c.name: c for c in target[table]}
        mine = {c.name for c in cols}
        for col in cols:
            other = theirs.get(col.name)
            if other is None:
                drift.append(Drift("column-missing", table, col.name,
                                   f"column {col.type} on the source only: the apply worker stops "
                                   "at the first change of this table", add_column_sql(table, col)))
            elif other.type != col.type:
                drift.append(Drift("column-type", table, col.name,
                                   f"{col.type} on the source, {other.type} on the target",
                                   f"ALTER TABLE {table} ALTER COLUMN {_q(col.name)} TYPE "
                                   f"{col.type} USING {_q(col.name)}::{col.type}"))
        for name, other in theirs.items():
            if name not in mine and other.not_null and other.default is None:
                drift.append(Drift("column-extra", table, name,
                                   f"NOT NULL column {other.type} on the target only (dropped on "
                                   "the source?): every replicated INSERT fails there",
                                   f"ALTER TABLE {table} DROP COLUMN {_q(name)}"))
    return drift


def _columns(cur, tables: list[str]) -> dict[str, list[Column]]:
    cur.execute(_COLUMNS, (tables,))
    out: dict[str, list[Column]] = {}
    for table, name, typ, not_null, default, generated in cur.fetchall():
        out.setdefault(table, []).append(Column(name, typ, not_null, default, generated))
    return out


def _published(cur, publication: str) -> list[str]:
    cur.execute("SELECT format('%%I.%%I', schemaname, tablename) FROM pg_publication_tables "
                "WHERE pubname = %s ORDER BY 1", (publication,))
    return [r[0] for r in cur.fetchall()]


def find_drift(*, source: Endpoint, target: Endpoint, publication: str,
               tables: list[str] | None = None, exclude: list[str] | None = None) -> list[Drift]:
    """Every difference that stops or escapes replication of ``publication`` now; [] when the
    publication does not exist yet (nothing is replicated, so nothing can drift)."""
    with connection(source) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
        if cur.fetchone() is None:
            return []
        published = _published(cur, publication)
        source_cols = _columns(cur, published)
        oids, _ = pf.scope_oids(cur, tables=tables, exclude=exclude)
        scope = pf.table_names(cur, oids)
    with connection(target) as conn, conn.cursor() as cur:
        target_cols = _columns(cur, published)
    drift = compare_columns(source_cols, target_cols)
    for table in sorted(set(scope) - set(published)):
        drift.append(Drift("table-unpublished", table, None,
                           "in the migration's scope but in no publication (created after the "
                           "start?): its rows never reach the target",
                           f"paymigrate ddl --carry (creates {table} on the target, adds it to "
                           f"publication {publication} and copies it)"))
    return drift


def raise_for_drift(engine: Engine) -> None:
    """Raise :class:`SchemaDrift` naming each difference, or return when the schemas agree."""
    drift = engine.schema_drift()
    if drift:
        raise SchemaDrift(drift)


@dataclass
class CarryResult:
    """What :func:`carry` ran: ``statements`` on the target (and ``published`` on the source)."""

    statements: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def carry(engine: Any, *, statement: str | None = None, order: str = "target-first") -> CarryResult:
    """Apply ``statement`` (if given) to both sides in ``order``, then carry every drift left:
    columns by their fix on the target; a new table created on the target from the source's
    definition, added to the publication and copied by the subscription (``REFRESH PUBLICATION``).
    A new table without a primary key or replica identity is refused by name (once published,
    its UPDATE/DELETE would fail on the source). Raises :class:`SchemaDrift` with what is left."""
    from paymigrate.replication.logical import LogicalEngine

    if not isinstance(engine, LogicalEngine):
        raise ReplicationError(f"{engine.engine}: carrying DDL needs the postgres-logical engine")
    if order not in ORDERS:
        raise ValueError(f"order {order!r} is not one of {', '.join(ORDERS)}")
    result = CarryResult()
    if statement:
        sides = (engine.target, engine.source) if order == "target-first" else (engine.source, engine.target)
        for ep in sides:
            _run(ep, statement)
            log.info("ddl applied on %s: %s", ep.safe(), statement)
        result.statements.append(statement)
    new_tables = []
    for d in engine.schema_drift():
        if d.kind in ("table-unpublished", "table-missing"):
            new_tables.append(d.table)
        else:
            _run(engine.target, d.fix)
            result.statements.append(d.fix)
            log.info("drift carried: %s", d)
    if new_tables:
        _carry_tables(engine, new_tables, result)
    left = engine.schema_drift()
    if left:
        raise SchemaDrift(left)
    return result


def _carry_tables(engine: Any, tables: list[str], result: CarryResult) -> None:
    from paymigrate.replication.schema import libpq_env, tool, tools_major

    with connection(engine.source) as conn, conn.cursor() as cur:
        cur.execute(pf._TABLE_FACTS, (pf.scope_oids(cur, tables=tables, exclude=None)[0],))
        facts = [pf.TableFacts(*r) for r in cur.fetchall()]
    keyless = [t.name for t in facts if not t.identity_ok]
    if keyless:
        result.refused += keyless
        raise ReplicationError(
            f"new table(s) {', '.join(keyless)} have no primary key or replica identity: once "
            "published, their UPDATE/DELETE would fail on the source; add a primary key (or "
            "ALTER TABLE ... REPLICA IDENTITY FULL) and run `paymigrate ddl --carry` again")
    with connection(engine.target) as conn, conn.cursor() as cur:
        cur.execute("SELECT t FROM unnest(%s::text[]) t WHERE to_regclass(t) IS NULL", (tables,))
        create = [r[0] for r in cur.fetchall()]
    if create:
        major = tools_major(engine.source, engine.target)
        argv = [tool("pg_dump", major), "--schema-only", "--no-owner", "--no-publications",
                "--no-subscriptions", f"--exclude-schema={FENCE_SCHEMA}"]
        argv += [f"--table={t}" for t in create]
        dump = subprocess.run(argv, capture_output=True, text=True, env=libpq_env(engine.source),
                              timeout=600)
        if dump.returncode != 0:
            raise ReplicationError(f"pg_dump of {', '.join(create)}: {redact(dump.stderr)[-800:]}")
        psql = [tool("psql", major), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                "-f", "-"]
        res = subprocess.run(psql, input=dump.stdout, capture_output=True, text=True,
                             env=libpq_env(engine.target), timeout=600)
        if res.returncode != 0:
            raise ReplicationError(f"creating {', '.join(create)} on {engine.target.safe()}: "
                                   f"{redact(res.stderr)[-800:]}")
        result.statements += [f"-- {t} created from the source's definition" for t in create]
    with connection(engine.source, autocommit=True) as conn, conn.cursor() as cur:
        published = set(_published(cur, engine.name))
        for t in tables:
            if t not in published:
                cur.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                    sql.Identifier(engine.name), sql.SQL(t)))  # t from format('%I.%I')
                result.published.append(t)
    with connection(engine.target, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = true)")
                    .format(sql.Identifier(engine.name)))
    log.info("new table(s) %s published and being copied by %s", ", ".join(tables), engine.name)


def _run(ep: Endpoint, statement: str) -> None:
    with connection(ep, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)
