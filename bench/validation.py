"""Validation engine against reladiff and a lower bound, on the same two databases in one run.

First figure (``--case demo``): the whole demo schema, 7 tables and every key shape, once per
size of ``--sizes`` (payments), the sizes side by side at the end (see
:mod:`bench.validation_demo`).

Second figure (``--case single``): a payments-like table (bigint key, uuid, numeric,
timestamptz, jsonb) of as many rows as the largest size is made on the source and copied to
the target; then 10
scattered differences are made on the target (3 deletes, 3 inserts, 4 updates). Measured, in
this order:

- lower bound: one full 32-bit hash-aggregate scan of each side, both at once;
- this engine: ``paymigrate.validation.validate_table``;
- reladiff 0.6 with exact flags (``--skip-sort-results``, ``COLUMNS=100000``: see ``bench.common.reladiff``).

Prints seconds, rows/s, the ratios, and whether each tool found exactly the 10 keys.
Run: ``.venv/bin/python -m bench.validation [--sizes N,M] [--case demo|single|both] [--tps N]
[--source DSN --target DSN]`` (without DSNs it starts its own local stack in a temporary home;
with them, the databases must let it create and drop the databases ``validation_bench`` and
``validation_demo``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
from psycopg2.extensions import make_dsn

from bench import validation_demo
from bench.common import reladiff, uri
from paymigrate.validation import validate_table

DB = "validation_bench"
DEMO_DB = "validation_demo"
TABLE = "payments"

DDL = f"""
CREATE TABLE {TABLE} (
    id          bigint PRIMARY KEY,
    ref         uuid NOT NULL UNIQUE,
    account_id  bigint NOT NULL,
    amount      numeric(14, 2) NOT NULL,
    currency    text NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz,
    metadata    jsonb
)"""

FILL = f"""
INSERT INTO {TABLE}
SELECT g, md5(g::text)::uuid, g % 50000, round((g % 100000) * 1.37, 2),
       (ARRAY['EUR', 'USD', 'SGD', 'GBP'])[1 + g % 4],
       (ARRAY['authorized', 'captured', 'settled', 'refunded'])[1 + g % 4],
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       CASE WHEN g % 3 = 0 THEN NULL ELSE timestamptz '2024-06-01 00:00:00+00' + g * interval '7 ms' END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE jsonb_build_object('channel', 'web', 'order', g) END
  FROM generate_series(1, %(rows)s) g"""


def _differences(rows: int) -> tuple[str, set[int]]:
    """SQL making 10 scattered differences on the target, and their keys."""
    d = [rows // 11 * i for i in (1, 4, 9)]
    ins = [rows + 7, rows + 1000, rows + 99999]
    upd = [rows // 13 * i for i in (2, 5, 8, 12)]
    statements = f"""
DELETE FROM {TABLE} WHERE id IN ({", ".join(map(str, d))});
INSERT INTO {TABLE} SELECT g, md5('x' || g)::uuid, 1, 1.00, 'EUR', 'captured', now(), NULL, NULL
  FROM unnest(ARRAY[{", ".join(map(str, ins))}]::bigint[]) g;
UPDATE {TABLE} SET amount = amount + 0.01 WHERE id = {upd[0]};
UPDATE {TABLE} SET metadata = '{{"channel": "app"}}' WHERE id = {upd[1]};
UPDATE {TABLE} SET status = 'disputed' WHERE id = {upd[2]};
UPDATE {TABLE} SET created_at = created_at + interval '1 microsecond' WHERE id = {upd[3]};
"""
    return statements, set(d) | set(ins) | set(upd)


# The same parallel and jit settings as the engine's scans.
LOWER_BOUND = f"""
SET jit = off; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
SELECT count(*), sum(hashtext(p::text)) FROM {TABLE} p"""


@contextlib.contextmanager
def _cursor(dsn: str):
    """An autocommit cursor (``with conn`` would open a transaction, even in autocommit)."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def _recreate(admin_dsn: str, db: str = DB) -> None:
    with _cursor(admin_dsn) as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {db}")


def _drop(admin_dsn: str, db: str = DB) -> None:
    with _cursor(admin_dsn) as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _copy(source: str, target: str) -> None:
    """Stream the table from source to target with COPY (binary), through a pipe."""
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with _cursor(source) as cur, os.fdopen(write_fd, "wb") as out:
                cur.copy_expert(f"COPY {TABLE} TO STDOUT (FORMAT binary)", out)
        except BaseException as exc:  # surfaced below, after the consumer stops
            errors.append(exc)

    t = threading.Thread(target=produce)
    t.start()
    with _cursor(target) as cur, os.fdopen(read_fd, "rb") as inp:
        cur.copy_expert(f"COPY {TABLE} FROM STDIN (FORMAT binary)", inp)
    t.join()
    if errors:
        raise errors[0]


def _prepare(source: str, target: str, rows: int) -> set[int]:
    for dsn in (source, target):
        with _cursor(dsn) as cur:
            cur.execute(DDL)
    with _cursor(source) as cur:
        cur.execute(FILL.replace("%(rows)s", str(int(rows))))
    _copy(source, target)
    statements, keys = _differences(rows)
    with _cursor(target) as cur:
        cur.execute(statements)
    for dsn in (source, target):
        with _cursor(dsn) as cur:
            cur.execute(f"VACUUM ANALYZE {TABLE}")
    return keys


def _lower_bound(source: str, target: str) -> float:
    def scan(dsn: str) -> tuple:
        with _cursor(dsn) as cur:
            cur.execute(LOWER_BOUND)
            return cur.fetchone()
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(scan, (source, target)))
    return time.monotonic() - started


def _keys_of(result) -> set:
    return set(result.missing) | set(result.extra) | set(result.different)


def run(source: str, target: str, *, rows: int, passwords: tuple[str | None, str | None]) -> None:
    print(f"preparing {rows} rows in {DB}.{TABLE} on both sides ...", flush=True)
    started = time.monotonic()
    expected = _prepare(source, target, rows)
    print(f"prepared in {time.monotonic() - started:.1f}s; 10 differences made on the target")
    _lower_bound(source, target)  # warm the caches so every contender reads from memory
    lower = min(_lower_bound(source, target) for _ in range(2))
    started = time.monotonic()
    result = validate_table(source=source, target=target, table=f"public.{TABLE}", max_keys=100)
    ours = time.monotonic() - started
    ours_keys = _keys_of(result)
    rel_seconds, found, rel_error = reladiff(uri(source, passwords[0]), uri(target, passwords[1]),
                                             TABLE, ["id"])
    rel_keys = None if found is None else {int(k[0]) for k in found}
    total = 2 * rows
    print(f"\n{'contender':<28} {'seconds':>8} {'rows/s':>12} {'vs lower bound':>15}")
    for name, secs in (("lower bound (1 scan/side)", lower), ("paymigrate validate", ours),
                       ("reladiff 0.6", rel_seconds)):
        print(f"{name:<28} {secs:>8.2f} {total / secs:>12,.0f} {secs / lower:>14.2f}x")
    print(f"\npaymigrate is {rel_seconds / ours:.2f}x faster than reladiff; "
          f"{ours / lower:.2f}x the lower bound (goal: faster than reladiff, within 2x)")
    print(f"paymigrate found exactly the 10 keys: {ours_keys == expected} "
          f"(missing {sorted(result.missing)}, extra {sorted(result.extra)}, "
          f"different {sorted(result.different)})")
    if rel_keys is None:
        print(f"reladiff failed: {rel_error}")
    else:
        print(f"reladiff found exactly the 10 keys: {rel_keys == expected} ({sorted(rel_keys)})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.validation", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="20000,1000000",
                   help="payments of the demo schema, comma-separated; the single table takes the "
                        "largest as its rows")
    p.add_argument("--case", choices=("demo", "single", "both"), default="both")
    p.add_argument("--tps", type=float, default=200,
                   help="the workload's rate while the demo case validates under replication")
    p.add_argument("--source", help="libpq DSN of the source server (any database)")
    p.add_argument("--target", help="libpq DSN of the target server (any database)")
    p.add_argument("--source-password", default=os.environ.get("PGPASSWORD"),
                   help="for reladiff's URI when the DSN relies on a passfile")
    p.add_argument("--target-password", default=os.environ.get("PGPASSWORD"))
    args = p.parse_args(argv)
    if not 1 <= args.tps <= 5000:
        p.error(f"--tps {args.tps:g} is outside 1..5000")
    try:
        sizes = [int(v) for v in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes {args.sizes!r}: expected comma-separated integers")
    if not sizes or min(sizes) < 1000:
        p.error(f"--sizes {args.sizes!r}: every size must be at least 1000 to measure")
    if bool(args.source) != bool(args.target):
        p.error("give both --source and --target, or neither")
    stack = None
    if args.source:
        admins = (args.source, args.target)
        passwords = (args.source_password, args.target_password)
    else:
        from paymigrate_dev.local.stack import LocalStack

        home = Path(tempfile.mkdtemp(prefix="paymigrate-bench-"))
        home.chmod(0o755)
        stack = LocalStack(home, env="bench")
        stack.up(bootstrap=False)
        admins = (stack.dsn("source", dbname="postgres"), stack.dsn("target", dbname="postgres"))
        passwords = (stack.endpoint("source").password, stack.endpoint("target").password)
    try:
        figures = []
        for db, case, rows in [*((DEMO_DB, "demo", n) for n in sizes), (DB, "single", max(sizes))]:
            if args.case not in (case, "both"):
                continue
            print(f"\n=== validation: {case}, {rows:,} ===", flush=True)
            dsns = tuple(make_dsn(a, dbname=db) for a in admins)
            for a in admins:
                _recreate(a, db)
            try:
                if case == "demo":
                    figures.append(validation_demo.run(dsns[0], dsns[1], rows=rows,
                                                       passwords=passwords, tps=args.tps))
                else:
                    run(dsns[0], dsns[1], rows=rows, passwords=passwords)
            finally:
                for a in admins:
                    _drop(a, db)
        if figures:
            print("\n=== demo schema, sizes side by side (time ratios; CPU against the lower "
                  "bound's CPU) ===")
            print(validation_demo.SUMMARY_HEADER)
            for f in figures:
                print(f.line())
    finally:
        if stack is not None:
            stack.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
