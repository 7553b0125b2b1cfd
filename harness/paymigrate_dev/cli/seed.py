"""``paymigrate seed``: the demo payment database."""

from __future__ import annotations

import os

from paymigrate.errors import SeedError
from paymigrate.inputs import check_dsn
from paymigrate_dev.cli import bounded, command, emit, libpq_dsn
from paymigrate_dev.demo.seed import MAX_ROWS, seed

DSN_ENV = "PAYMIGRATE_SOURCE_DSN"


def register(sub) -> None:
    p = command(sub, "seed", summary="create the demo payment schema and fill it", description="""
Create the demo payment schema (accounts, payments, payment_holds, ledger_lines, refunds,
payment_events, settlement_staging; the payment_status type; the invoice_number_seq sequence)
and fill it with --rows payments and what belongs to them: holds, balanced double-entry ledger
lines, refunds, settlement lines and events. The data is a function of --seed only: the same
seed always gives the same tables.

The tables are built in a private schema by two loaders (INSERT ... SELECT over generate_series
inside PostgreSQL), keyed and indexed after the load, then moved into public in one transaction
and ANALYZEd. A database that already has any demo object is refused, unless --replace: then the
old objects are dropped in that same transaction, so a failed reseed leaves the old data as it
was. The application role payments_app, when it exists, is granted USAGE on the schema and the
sequences and SELECT, INSERT, UPDATE, DELETE on the tables.""", environment=f"""\
  {DSN_ENV}   database to seed when --dsn is not given (a superuser or the owner)""",
                example="""\
  $ paymigrate seed --rows 100000 --seed 7
  seeded 100000 payments (seed 7) in 10.9s: 873986 rows, 80.5k rows/s
    accounts                   4404
    payments                 100000
    payment_holds             10036
    refunds                   14969
    settlement_staging        64889
    payment_events           269822
    ledger_lines             409866""")
    p.add_argument("--rows", type=bounded(int, low=0, high=MAX_ROWS), required=True,
                   help="number of payments")
    p.add_argument("--seed", type=bounded(int, low=0, high=2**31 - 1), default=0,
                   help="seed of the generated data (default 0)")
    p.add_argument("--dsn", type=libpq_dsn, help=f"libpq DSN (default: ${DSN_ENV})")
    p.add_argument("--replace", action="store_true",
                   help="drop and reseed a database that already has the demo schema "
                        "(without it such a database is refused)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_seed)


def _seed(args) -> int:
    target = args.dsn or os.environ.get(DSN_ENV)
    if not target:
        raise SeedError(f"no database: pass --dsn or set {DSN_ENV}")
    r = seed(dsn=check_dsn(target, name=f"--dsn (${DSN_ENV})"), rows=args.rows, seed=args.seed, replace=args.replace)
    total = sum(r.counts.values())
    if args.json:
        emit(args, {"replaced": r.replaced, "payments": r.rows, "seed": r.seed, "seconds": round(r.seconds, 2),
                    "rows": total, "rows_per_second": round(r.rows_per_second), "counts": r.counts})
        return 0
    print(f"{'replaced' if r.replaced else 'seeded'} {r.rows} payments (seed {r.seed}) in "
          f"{r.seconds:.1f}s: {total} rows, {r.rows_per_second / 1000:.1f}k rows/s")
    for table, n in r.counts.items():
        print(f"  {table:<20} {n:>10}")
    return 0
