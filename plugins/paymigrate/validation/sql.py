"""The SQL dialect of the comparison: normalized row hashes, segment aggregates, key fetches.

Equal data must hash equal whatever the session or the server version. The output settings are
pinned with ``SET LOCAL`` at the start of every transaction (:data:`SESSION_SETTINGS`: safe
behind a pooler too), and under them most types' own output is already exact and the same on
both sides, so a column goes into the row text as it is, through its type's output function
(text, uuid, integers, numeric, which keeps the scale, timestamp, date, interval, arrays, enums,
jsonb, which is canonical, json as stored):

- ``timestamptz``: the instant in UTC (TimeZone is pinned), in ISO (DateStyle), to the microsecond.
- ``bytea``: hex (``bytea_output`` is pinned).
- ``float4``/``float8``: the hex of the binary value (``float8send``). Under the pinned
  ``extra_float_digits`` PostgreSQL 12+ prints the shortest text that reads back to the same
  bits, but older servers print 17 digits, which can differ in the last one.
- ``money``: as numeric, since its text follows ``lc_monetary``.

Casting every column to text first, as this did before, cost 1.17x in CPU over 4.1M ledger lines
(11.7 s against 10.0 s on one backend) for the same guarantees.

A row's text is ``ROW(col1, col2, ...)::text`` over the normalized columns in name order (column
order may differ between the sides). The record text form quotes values, so ``NULL`` (nothing)
and the empty string (``""``) differ and no value can forge a column boundary. Its hash is one
64-bit ``hashtextextended`` of that text. The aggregate per segment is ``count(*)`` and the
``sum`` of the hashes: exact (``sum(bigint)`` accumulates in a 128-bit integer and returns
numeric), order-independent and, unlike XOR, not cancelled by a duplicated row. Measured on one
core over 4.1M ledger lines, row text included: md5 split into two bigints 16.2 s, two seeded
64-bit hashes with numeric sums 7.9 s, one 32-bit ``hashtext`` 8.5 s; and, segment search and
grouping included, the 64-bit hash's halves summed as two ``int4`` behind a subquery fence
5.99 s CPU against 5.56 s for this single sum with the hash written once (the lower bound, a
32-bit hash aggregate of the table, 4.97 s).

Collisions we accept: a difference hides only if the changed rows of one segment give the same
count and the same sum of 64-bit hashes on both sides. An accidental match has probability about
2^-64 (5.4e-20) per differing segment: a million segments per validation, ten thousand
validations, still below 1e-9 in all. That is enough for payments: the inputs are not chosen by
an adversary who sees the hash (md5, used before, is no better there: its collisions are
public), and a persistent difference would need to hide in every later validation too. The hash
family is the one PostgreSQL's hash partitioning routes rows with, which pg_upgrade carries
across major versions unchanged, so it cannot change between them; it differs between big- and
little-endian servers, which shows as every segment differing, never as a hidden difference.

Keys are compared with ``COLLATE "C"`` for collatable types: byte order is the same on every
server, so a segment holds the same rows on both sides even if their collations differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg2 import sql

from paymigrate.validation.catalog import Column, Table

# enable_sort off: see :func:`aggregates`; a sort a query cannot do without (the bounds' window)
# still runs, at a penalty in the plan's cost only.
# jit off: a segment search is a tree of thousands of comparisons of which a row evaluates a
# dozen; compiling it took 92 s of CPU in each scan of a 4M-row composite-key table (each
# parallel worker compiles its own copy) for a scan that takes 7 s interpreted.
SESSION_SETTINGS = sql.SQL(
    "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; "
    "SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; "
    "SET LOCAL bytea_output = 'hex'; SET LOCAL search_path = ''; SET LOCAL jit = off; "
    "SET LOCAL enable_sort = off"
)

# The planner cannot know that GROUP BY segment yields a few thousand groups, not one per row, so
# it judges parallel partial aggregation not worth it; made free, it splits the scan over the
# server's parallel workers (max_parallel_workers_per_gather still bounds them).
PARALLEL_SETTINGS = sql.SQL("SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0")


def parallel_settings(workers: int | None) -> sql.Composable:
    """:data:`PARALLEL_SETTINGS`, with at most ``workers`` parallel workers per scan (None: as
    many as the server allows; 0: none)."""
    if workers is None:
        return PARALLEL_SETTINGS
    return sql.SQL("{}; SET LOCAL max_parallel_workers_per_gather = {}").format(
        PARALLEL_SETTINGS, sql.Literal(int(workers)))


def normalized(col: Column) -> sql.Composable:
    """The column as it goes into the row text: itself, or a session-independent text of it
    where its own output is not (NULL stays NULL)."""
    c = sql.Identifier(col.name)
    base = col.base
    if base in ("float4", "float8"):
        return sql.SQL("pg_catalog.encode(pg_catalog.{f}({c}::{t}), 'hex')").format(
            f=sql.Identifier(base + "send"), c=c, t=sql.SQL(base))
    if base == "money":
        return sql.SQL("{c}::numeric::text").format(c=c)
    return c


HASH_WIDTH = 1  # columns a row's hash takes in a result row


def row_text(table: Table) -> sql.Composable:
    """The normalized row as one text, in C collation (so hashing never involves a collation)."""
    cols = sorted(table.columns, key=lambda c: c.name)
    return sql.SQL('ROW({})::text COLLATE "C"').format(sql.SQL(", ").join(map(normalized, cols)))


def _cmp(col: Column) -> sql.Composable:
    ident = sql.Identifier(col.name)
    return sql.SQL('{} COLLATE "C"').format(ident) if col.collatable else ident


def key_expr(table: Table, width: int | None = None) -> sql.Composable:
    """The key (or its first ``width`` columns) as compared: ``k`` or ``(k1, k2)``, text
    columns in C collation."""
    parts = [_cmp(c) for c in table.key_columns[:width]]
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("({})").format(sql.SQL(", ").join(parts))


def key_order(table: Table) -> sql.Composable:
    return sql.SQL(", ").join(_cmp(c) for c in table.key_columns)


def key_text(table: Table) -> sql.Composable:
    """Key columns as text: round-trips exactly through ``::type`` under the session settings."""
    return sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c.name))
                              for c in table.key_columns)


def key_output(table: Table) -> sql.Composable:
    """Key columns as reported: integers as numbers, everything else as text."""
    return sql.SQL(", ").join(
        sql.Identifier(c.name) if c.integer else sql.SQL("{}::text").format(sql.Identifier(c.name))
        for c in table.key_columns)


def key_literal(table: Table, value: Sequence[str]) -> sql.Composable:
    """A key value, or a prefix of one (a bound on the first key columns), as typed literals."""
    if not 1 <= len(value) <= len(table.key):
        raise ValueError(f"key value {tuple(value)!r} does not match key ({', '.join(table.key)})")
    parts = [sql.SQL("{}::{}").format(sql.Literal(str(v)), sql.SQL(c.type))
             for v, c in zip(value, table.key_columns[:len(value)], strict=True)]
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("({})").format(sql.SQL(", ").join(parts))


def range_where(table: Table, lo: Sequence[str] | None, hi: Sequence[str] | None) -> sql.Composable:
    """Rows in ``[lo, hi)``; a bound shorter than the key bounds the key's first columns."""
    conds = []
    if lo is not None:
        conds.append(sql.SQL("{} >= {}").format(key_expr(table, len(lo)), key_literal(table, lo)))
    if hi is not None:
        conds.append(sql.SQL("{} < {}").format(key_expr(table, len(hi)), key_literal(table, hi)))
    return sql.SQL(" AND ").join(conds) if conds else sql.SQL("true")


def segment_of(table: Table, bounds: Sequence[Sequence[str]]) -> sql.Composable:
    """Segment number of a row: how many ``bounds`` are <= its key (``width_bucket`` semantics).

    ``width_bucket`` does the binary search in C over bounds on one column: a one-column key, or
    bounds on the first column of a composite key (:func:`segments.leading_bounds`). It cannot
    compare anonymous records, so full composite bounds get the same search as nested CASEs,
    about three times the cost per row.
    """
    if not bounds:
        return sql.SQL("0")
    if all(len(b) == 1 for b in bounds):
        col = table.key_columns[0]
        arr = sql.SQL("ARRAY[{}]::{}[]").format(
            sql.SQL(", ").join(sql.Literal(b[0]) for b in bounds), sql.SQL(col.type))
        return sql.SQL("pg_catalog.width_bucket({}, {})").format(_cmp(col), arr)

    def search(lo: int, hi: int) -> sql.Composable:
        if lo == hi:
            return sql.Literal(lo)
        mid = (lo + hi + 1) // 2
        bound = bounds[mid - 1]
        return sql.SQL("CASE WHEN {k} >= {b} THEN {ge} ELSE {lt} END").format(
            k=key_expr(table, len(bound)), b=key_literal(table, bound), ge=search(mid, hi),
            lt=search(lo, mid - 1))

    return search(0, len(bounds))


def aggregates(table: Table, bounds: Sequence[Sequence[str]], where: sql.Composable) -> sql.Composed:
    """Per segment: ``(segment, count, sum of the row hashes)``.

    The row text is written once, so it is made once per row without a subquery fence (a
    volatile column to keep the planner from inlining it cost 70 ns a row). Grouped by an
    expression of the key, the planner expects one group per key and would sort every row;
    :data:`SESSION_SETTINGS` turn sorts off, so it hashes the few thousand segments instead, in
    each parallel worker.
    """
    return sql.SQL("SELECT {seg} AS _pm_seg, count(*), sum(pg_catalog.hashtextextended({text}, 0)) "
                   "FROM {t} WHERE {where} GROUP BY 1").format(
        seg=segment_of(table, bounds), text=row_text(table), t=_ident(table), where=where)


def rows(table: Table, where: sql.Composable, limit: int | None = None) -> sql.Composed:
    """``(key output columns..., row hash)`` of the rows in ``where``."""
    q = sql.SQL("SELECT {k}, pg_catalog.hashtextextended({text}, 0) FROM {t} WHERE {where}").format(
        k=key_output(table), text=row_text(table), t=_ident(table), where=where)
    if limit is not None:
        q = sql.SQL("{} ORDER BY {} LIMIT {}").format(q, key_order(table), sql.Literal(limit))
    return q


def keys_where(table: Table, keys: Sequence[Sequence[str]]) -> sql.Composable:
    """Rows whose key is one of ``keys`` (exact equality, no collation involved)."""
    if not keys:
        return sql.SQL("false")
    cols = sql.SQL(", ").join(sql.Identifier(k) for k in table.key)
    values = sql.SQL(", ").join(
        sql.SQL("({})").format(sql.SQL(", ").join(
            sql.SQL("{}::{}").format(sql.Literal(str(v)), sql.SQL(c.type))
            for v, c in zip(key, table.key_columns, strict=True)))
        for key in keys)
    return sql.SQL("({}) IN (VALUES {})").format(cols, values)


def bounds(table: Table, *, where: sql.Composable, step: int,
           sample_percent: float | None = None) -> sql.Composed:
    """Every ``step``-th key (as text) in key order, from the whole table or a page sample."""
    sample = (sql.SQL(" TABLESAMPLE SYSTEM ({})").format(sql.Literal(float(sample_percent)))
              if sample_percent is not None and sample_percent < 100 else sql.SQL(""))
    return sql.SQL(
        "SELECT {kt} FROM (SELECT {cols}, row_number() OVER (ORDER BY {order}) AS rn "
        "FROM {t}{sample} WHERE {where}) s WHERE rn % {step} = 0 ORDER BY rn"
    ).format(kt=key_text(table), cols=sql.SQL(", ").join(sql.Identifier(k) for k in table.key),
             order=key_order(table), t=_ident(table), sample=sample, where=where,
             step=sql.Literal(step))


def multiset_aggregates(table: Table, buckets: int, column: str) -> sql.Composed:
    """For a table without key: per bucket of ``column`` (:func:`bucket_of`), count and sum of
    the row hashes."""
    bucket = bucket_of(table, column, buckets)
    return sql.SQL("SELECT {b} AS _pm_seg, count(*), sum(pg_catalog.hashtextextended({text}, 0)) "
                   "FROM {t} GROUP BY 1").format(b=bucket, text=row_text(table), t=_ident(table))


def multiset_rows(table: Table, buckets: int, column: str, wanted: Sequence[int]) -> sql.Composed:
    """``(bucket, row hash, copies)`` of the rows in the ``wanted`` buckets: only those rows'
    text is made and hashed."""
    bucket = bucket_of(table, column, buckets)
    return sql.SQL(
        "SELECT {b}, pg_catalog.hashtextextended({text}, 0), count(*) FROM {t} "
        "WHERE {b} = ANY ({wanted}) GROUP BY 1, 2"
    ).format(b=bucket, text=row_text(table), t=_ident(table), wanted=sql.Literal(list(wanted)))


def bucket_of(table: Table, column: str, buckets: int) -> sql.Composable:
    """A row's bucket: the low bits of the hash of one column's normalized text (0 for NULL).

    Rows equal in their text are equal in every column, so they share a bucket on both sides;
    bucketing by one column instead of the whole row lets a second read skip making the text of
    every row outside the buckets that differ.
    """
    _check_buckets(buckets)
    col = next((c for c in table.columns if c.name == column), None)
    if col is None:
        raise ValueError(f"table {table.qualified} has no column {column!r} to bucket by")
    return sql.SQL("(COALESCE(pg_catalog.hashtextextended(({v})::text COLLATE \"C\", 0), 0) & {m})"
                   ).format(v=normalized(col), m=sql.Literal(buckets - 1))


def distinct_columns() -> str:
    """The columns of one table (``schema``, ``name``, estimated rows), evenest first by the
    planner's statistics: the smallest share of rows that its fullest value (or NULL) holds."""
    return ("SELECT attname FROM pg_catalog.pg_stats WHERE schemaname = %s AND tablename = %s "
            "ORDER BY GREATEST(null_frac, COALESCE(most_common_freqs[1], 0), 1.0 / GREATEST("
            "CASE WHEN n_distinct < 0 THEN -n_distinct * %s ELSE n_distinct END, 1)), attname")


def _check_buckets(buckets: int) -> None:
    if buckets < 1 or buckets & (buckets - 1):
        raise ValueError(f"bucket count {buckets} is not a power of two")


def estimate() -> str:
    """Planner estimate of a table's rows (-1 when never analyzed) and its size in bytes."""
    return ("SELECT c.reltuples, pg_catalog.pg_relation_size(c.oid) FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s")


def count(table: Table) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {}").format(_ident(table))


def _ident(table: Table) -> sql.Composable:
    return sql.Identifier(table.schema, table.name)


def sizes() -> str:
    """Planner rows (0 when never analyzed) and bytes of each ``(schema, name)`` given as two
    arrays, a partitioned table's summed over its partitions."""
    return ("SELECT w.s, w.n, sum(GREATEST(p.reltuples, 0)), sum(pg_catalog.pg_relation_size(p.oid)) "
            "FROM unnest(%s::text[], %s::text[]) AS w(s, n) "
            "JOIN pg_catalog.pg_namespace ns ON ns.nspname = w.s "
            "JOIN pg_catalog.pg_class c ON c.relnamespace = ns.oid AND c.relname = w.n "
            "CROSS JOIN LATERAL (SELECT c.oid AS relid UNION "
            "                    SELECT relid FROM pg_catalog.pg_partition_tree(c.oid)) t "
            "JOIN pg_catalog.pg_class p ON p.oid = t.relid AND p.relkind = 'r' "
            "GROUP BY w.s, w.n")
