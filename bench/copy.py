"""Initial copy: the postgres-logical engine against pg_dump/pg_restore and pgcopydb.

    .venv/bin/python -m bench.copy [--rows 1000000]

Starts its own local stack in a temporary home, fills a payments-like table on the source
(uuid key, bigint, numeric(19,4), timestamptz, jsonb, text, two secondary indexes), then copies it
into a fresh empty target database with each tool, timed from start to a target with every row and
index. Prints seconds, rows/s and ratios against pg_dump/pg_restore measured in the same run. The
engine runs three times: its default (the copy under the slot's exported snapshot, keys and indexes
built after it), the same with every index built before the copy, and PostgreSQL's own table
sync (``initial_copy="subscription"``, keys before the copy, secondary indexes after).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("plugins", "harness")]

from psycopg2 import sql  # noqa: E402

from bench.common import execute, fresh_db  # noqa: E402
from paymigrate.replication.logical import LogicalEngine  # noqa: E402
from paymigrate.replication.schema import tool  # noqa: E402
from paymigrate_dev.local.stack import LocalStack  # noqa: E402

SOURCE_DB = "bench_copy"
FILL = """
CREATE TABLE payments (id uuid PRIMARY KEY, account_id bigint NOT NULL, amount numeric(19,4) NOT NULL,
                       created_at timestamptz NOT NULL, meta jsonb NOT NULL, note text);
INSERT INTO payments
SELECT md5(g::text)::uuid, g %% 50000, (g %% 100000) / 100.0, now() - g * interval '1 second',
       jsonb_build_object('merchant', g %% 977, 'channel', 'card', 'country', 'SG'),
       'payment ' || g
FROM generate_series(1, %(rows)s) g;
CREATE INDEX payments_account_idx ON payments (account_id);
CREATE INDEX payments_created_idx ON payments (created_at);
"""


def check(stack: LocalStack, name: str, rows: int) -> None:
    dsn = stack.dsn("target", dbname=name)
    count = execute(dsn, "SELECT count(*) FROM payments")[0][0]
    indexes = execute(dsn, "SELECT count(*) FROM pg_indexes WHERE tablename = 'payments'")[0][0]
    if count != rows or indexes != 3:
        raise SystemExit(f"{name}: {count} rows and {indexes} indexes, expected {rows} and 3")


def settle(stack: LocalStack, name: str) -> None:
    """Drop the copy and checkpoint both servers, so the next method starts on quiet servers: the
    autovacuum of a million fresh rows, or a checkpoint due to the last copy's WAL, would
    otherwise run during whichever method comes next."""
    execute(stack.dsn("target", dbname="postgres"),
            sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    for side in ("source", "target"):
        execute(stack.dsn(side, dbname="postgres"), "CHECKPOINT")


def run_engine(stack: LocalStack, rows: int, *, name: str, **options) -> float:
    fresh_db(stack, "target", name)
    engine = LogicalEngine(source=stack.endpoint("source", dbname=SOURCE_DB),
                           target=stack.endpoint("target", dbname=name), name=name, poll=0.2,
                           **options)
    try:
        started = time.monotonic()
        engine.start()
        status = engine.wait_full_load(timeout=3600, poll=0.5)
        elapsed = time.monotonic() - started
        if not status.full_load_done:
            raise SystemExit(f"{name}: full load not done: {status}")
        check(stack, name, rows)
        return elapsed
    finally:
        engine.drop()
        settle(stack, name)


def run_pg_dump(stack: LocalStack, rows: int, work: Path) -> float:
    fresh_db(stack, "target", "bench_pg_dump")
    env = {**os.environ, "PGPASSFILE": str(stack.passfile)}
    folder = work / "dump"
    started = time.monotonic()
    subprocess.run([tool("pg_dump"), "-Fd", "-j", "2", "-Z", "0", "-f", str(folder),
                    stack.dsn("source", dbname=SOURCE_DB)], check=True, env=env)
    subprocess.run([tool("pg_restore"), "-j", "2", "--no-owner", "-d",
                    stack.dsn("target", dbname="bench_pg_dump"), str(folder)], check=True, env=env)
    elapsed = time.monotonic() - started
    check(stack, "bench_pg_dump", rows)
    settle(stack, "bench_pg_dump")
    return elapsed


def run_pgcopydb(stack: LocalStack, rows: int, work: Path) -> float | None:
    binary = shutil.which("pgcopydb") or "/usr/lib/postgresql/15/bin/pgcopydb"
    if not Path(binary).exists():
        print("pgcopydb not installed: skipped")
        return None
    fresh_db(stack, "target", "bench_pgcopydb")
    env = {**os.environ, "PGPASSFILE": str(stack.passfile)}

    def uri(side: str, db: str) -> str:
        return f"postgresql://paymigrate@127.0.0.1:{stack.port(side)}/{db}"

    started = time.monotonic()
    subprocess.run([binary, "clone", "--source", uri("source", SOURCE_DB),
                    "--target", uri("target", "bench_pgcopydb"), "--table-jobs", "2",
                    "--index-jobs", "2", "--dir", str(work / "pgcopydb")],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    check(stack, "bench_pgcopydb", rows)
    settle(stack, "bench_pgcopydb")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.copy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the payments table")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error(f"--rows {args.rows} must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    home = Path(tempfile.mkdtemp(prefix="paymigrate-bench-copy-"))
    home.chmod(0o755)
    stack = LocalStack(home, env="bench")
    try:
        stack.up(bootstrap=False)
        fresh_db(stack, "source", SOURCE_DB)
        started = time.monotonic()
        execute(stack.dsn("source", dbname=SOURCE_DB), FILL, {"rows": args.rows})
        execute(stack.dsn("source", dbname=SOURCE_DB), "VACUUM ANALYZE payments")
        execute(stack.dsn("source", dbname=SOURCE_DB), "CHECKPOINT")
        size = execute(stack.dsn("source", dbname=SOURCE_DB),
                       "SELECT pg_size_pretty(pg_total_relation_size('payments'))")[0][0]
        print(f"source: {args.rows:,} rows, {size} with indexes, filled in {time.monotonic() - started:.1f}s")
        with tempfile.TemporaryDirectory(prefix="paymigrate-bench-") as tmp:
            work = Path(tmp)
            results = {
                "pg_dump -Fd -j2 | pg_restore -j2 (baseline)": run_pg_dump(stack, args.rows, work),
                "pgcopydb clone --table-jobs 2 --index-jobs 2": run_pgcopydb(stack, args.rows, work),
                "postgres-logical (snapshot copy, keys after)": run_engine(
                    stack, args.rows, name="bench_snapshot"),
                "postgres-logical, snapshot, indexes before": run_engine(
                    stack, args.rows, name="bench_snapshot_before", indexes_after_copy=False),
                "postgres-logical, table sync (subscription)": run_engine(
                    stack, args.rows, name="bench_table_sync", initial_copy="subscription"),
            }
        base = results["pg_dump -Fd -j2 | pg_restore -j2 (baseline)"]
        copydb = results["pgcopydb clone --table-jobs 2 --index-jobs 2"]
        print(f"{'method':<48} {'seconds':>8} {'rows/s':>10} {'vs pg_dump':>11} {'vs pgcopydb':>12}")
        for label, secs in results.items():
            if secs is None:
                continue
            vs_copydb = f"{secs / copydb:.2f}x" if copydb else "-"
            print(f"{label:<48} {secs:>8.1f} {args.rows / secs:>10,.0f} {secs / base:>10.2f}x {vs_copydb:>12}")
    finally:
        stack.down(purge=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
