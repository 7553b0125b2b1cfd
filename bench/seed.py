"""Seeding speed: ``paymigrate seed`` against bare bulk-load baselines from the same run.

    .venv/bin/python -m bench.seed [--rows 1000000] [--dsn DSN] [--compare-copy]

Starts its own local stack in a temporary home unless --dsn is given (a database it may create
scratch databases next to). Baselines, on the same server in the same run:

- ``pgbench -i`` at a comparable size (scale rows/100000: the same number of rows in
  pgbench_accounts, loaded by COPY, primary key, VACUUM);
- the bare cost of writing the payments alone: ``INSERT ... SELECT generate_series`` into an
  UNLOGGED table with no index.

``--compare-copy`` also times the alternative the seed does not use: the same payment rows made
in Python and streamed through ``copy_expert``, against the seed's server-side INSERT ... SELECT.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from psycopg2 import sql

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("plugins", "harness")]

from bench.common import execute  # noqa: E402
from paymigrate_dev.demo.seed import _read, load_steps, seed  # noqa: E402
from paymigrate_dev.local import proc  # noqa: E402
from paymigrate_dev.local.stack import LocalStack  # noqa: E402

DB = "bench_seed"


def _fresh(admin_dsn: str, name: str) -> None:
    execute(admin_dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    execute(admin_dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _with_db(dsn: str, name: str) -> str:
    params = psycopg2.extensions.parse_dsn(dsn)
    params["dbname"] = name
    return psycopg2.extensions.make_dsn(**params)


class _PythonRows(io.RawIOBase):
    """Payment rows formatted in Python, read by copy_expert in chunks (a streaming generator)."""

    def __init__(self, rows: int):
        self._rows = iter(self._generate(rows))
        self._buf = b""

    @staticmethod
    def _generate(rows: int):
        rng = random.Random(1)
        for i in range(1, rows + 1):
            c = rng.randrange(4)
            yield (f"{rng.getrandbits(128):032x}\tseed-1-{i}\tINV-{i:010d}\t{1 + c}\t{4001 + c}\t"
                   f"{rng.randint(10000, 999000000) / 10000:.4f}\t0\tEUR\tsettled\t"
                   f'{{"channel": "card", "order_ref": "ORD-{i}"}}\t2026-01-01 00:00:00+00\t'
                   f"2026-01-03 00:00:00+00\n").encode()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while len(self._buf) < len(b):
            chunk = b"".join(row for _, row in zip(range(2000), self._rows, strict=False))
            if not chunk:
                break
            self._buf += chunk
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


def compare_copy(dsn: str, rows: int) -> tuple[float, float]:
    """Seconds to fill payments (no keys) via server-side INSERT ... SELECT vs Python + COPY."""
    steps = dict(load_steps(rows=rows, seed=1))
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(_read("schema.sql"))
            cur.execute(steps["source"])
            t0 = time.monotonic()
            cur.execute(steps["payments"])
            server = time.monotonic() - t0
            cur.execute("TRUNCATE payments")
            t0 = time.monotonic()
            cur.copy_expert("COPY payments (id, idempotency_key, invoice_number, payer_account_id, "
                            "payee_account_id, amount, refunded_amount, currency, status, metadata, "
                            "created_at, updated_at) FROM STDIN", _PythonRows(rows), size=1 << 20)
            python = time.monotonic() - t0
        conn.rollback()
    finally:
        conn.close()
    return server, python


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.seed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dsn", help="a superuser DSN of a server to use instead of a new stack")
    ap.add_argument("--compare-copy", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stack = None
    if args.dsn:
        base = args.dsn
    else:
        home = Path(tempfile.mkdtemp(prefix="paymigrate-bench-seed-"))
        home.chmod(0o755)
        stack = LocalStack(home, env="bench")
        stack.up(bootstrap=False)
        base = stack.dsn("source")
    admin = _with_db(base, "postgres")
    try:
        _fresh(admin, DB)
        dsn = _with_db(base, DB)
        params = psycopg2.extensions.parse_dsn(dsn)
        env = {**os.environ, **({"PGPASSFILE": params["passfile"]} if "passfile" in params else {})}
        scale = max(1, args.rows // 100_000)
        t0 = time.monotonic()
        subprocess.run([proc.pg_bin("pgbench"), "-i", "-q", "-s", str(scale), "-h", params["host"],
                        "-p", params["port"], "-U", params["user"], DB], env=env, check=True,
                       capture_output=True)
        pgbench = time.monotonic() - t0
        t0 = time.monotonic()
        execute(dsn, "CREATE UNLOGGED TABLE bare AS SELECT md5(i::text)::uuid AS id, "
                   "(i %% 100000)::numeric(19,4) / 100 AS amount, 'EUR'::char(3) AS currency, "
                   "timestamptz '2026-01-01' + i * interval '3 seconds' AS created_at "
                   "FROM generate_series(1, %s) i", (args.rows,))
        bare = time.monotonic() - t0
        _fresh(admin, DB)
        result = seed(dsn=dsn, rows=args.rows, seed=1)
        total = sum(result.counts.values())
        print(f"seed        {args.rows} payments, {total} rows in all: {result.seconds:.1f}s, "
              f"{total / result.seconds:,.0f} rows/s, {args.rows / result.seconds:,.0f} payments/s")
        print(f"pgbench -i  scale {scale} ({scale * 100_000} rows): {pgbench:.1f}s, "
              f"{scale * 100_000 / pgbench:,.0f} rows/s")
        print(f"bare        {args.rows} payment-like rows into an unlogged table: {bare:.1f}s, "
              f"{args.rows / bare:,.0f} rows/s")
        print(f"ratio       seed rows/s / pgbench -i rows/s = "
              f"{(total / result.seconds) / (scale * 100_000 / pgbench):.2f}; "
              f"seed seconds / bare seconds = {result.seconds / bare:.1f}")
        if args.compare_copy:
            _fresh(admin, DB)
            server, python = compare_copy(dsn, args.rows)
            print(f"payments    INSERT ... SELECT {server:.1f}s vs Python rows + COPY {python:.1f}s "
                  f"(COPY/INSERT = {python / server:.2f})")
        execute(admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    finally:
        if stack is not None:
            stack.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
