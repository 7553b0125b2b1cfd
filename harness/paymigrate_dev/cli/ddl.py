"""``paymigrate ddl``: schema changes during a live migration (see :mod:`paymigrate.replication.ddl`)."""

from __future__ import annotations

import json
import os

from paymigrate.aws import names
from paymigrate.db import Endpoint
from paymigrate.errors import PaymigrateError
from paymigrate.replication.ddl import ORDERS, SchemaDrift, carry, find_drift
from paymigrate_dev.cli import command

EXIT_DRIFT = 1


def register(sub) -> None:
    p = command(sub, "ddl", summary="find schema drift, or carry a schema change, during a migration",
                description="""
Logical replication carries no DDL. Without arguments: compare the source and the target
catalogs for the running migration and list each difference that stops or escapes replication
(a column on one side only, a column of another type, a table in no publication), each with the
statement that fixes it. Exit 1 when there is drift.

With --carry: run those fixes (on the target), add new tables to the publication on the source
and let the subscription copy them (ALTER SUBSCRIPTION ... REFRESH PUBLICATION). A new table
without a primary key or replica identity is refused by name.

With a STATEMENT: run it on both sides in the safe order, then carry what is left. What only
adds (a nullable column, a column with a default, a table) goes --order target-first (the
default), so the subscriber takes every row the source writes; what removes (a dropped column
or table) goes --order source-first.""",
                environment="""\
  PAYMIGRATE_SOURCE_DSN   default for --source
  PAYMIGRATE_TARGET_DSN   default for --target
  PAYMIGRATE_ENV          names the replication (paymigrate_<env>) unless --name is given""",
                example="""\
  $ paymigrate ddl
  public.payments.note: column text on the source only: the apply worker stops at the first
    change of this table; fix: ALTER TABLE public.payments ADD COLUMN IF NOT EXISTS "note" text
  $ paymigrate ddl --carry
  target: ALTER TABLE public.payments ADD COLUMN IF NOT EXISTS "note" text
  schemas agree
  $ paymigrate ddl "ALTER TABLE public.refunds ADD COLUMN reason text"
  target: ALTER TABLE public.refunds ADD COLUMN reason text
  schemas agree""")
    p.add_argument("statement", nargs="?", help="DDL to run on both sides, in --order")
    p.add_argument("--carry", action="store_true", help="apply the fixes of the drift found")
    p.add_argument("--order", choices=ORDERS, default="target-first",
                   help="where STATEMENT runs first (default target-first)")
    p.add_argument("--source", default=os.environ.get("PAYMIGRATE_SOURCE_DSN"),
                   help="source DSN (default: $PAYMIGRATE_SOURCE_DSN)")
    p.add_argument("--target", default=os.environ.get("PAYMIGRATE_TARGET_DSN"),
                   help="target DSN (default: $PAYMIGRATE_TARGET_DSN)")
    p.add_argument("--name", default=None,
                   help="replication name: publication and subscription (default paymigrate_<env>)")
    p.add_argument("--tables", action="extend", nargs="+", metavar="T",
                   help="the migration's tables, when it was started with a list")
    p.add_argument("--exclude", action="extend", nargs="+", metavar="T",
                   help="tables the migration leaves out")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_ddl)


def endpoint(dsn: str, what: str) -> Endpoint:
    """A libpq DSN or URI as an :class:`Endpoint` (the engine needs host, port, user, database)."""
    try:
        return Endpoint.from_dsn(dsn)
    except ValueError as exc:
        raise PaymigrateError(f"--{what}: {exc}") from None


def _ddl(args) -> int:
    from paymigrate.replication.logical import LogicalEngine

    if not args.source or not args.target:
        raise PaymigrateError("give --source and --target (or set PAYMIGRATE_SOURCE_DSN and "
                              "PAYMIGRATE_TARGET_DSN)")
    name = args.name or names.replication_name(os.environ.get("PAYMIGRATE_ENV", "local"))
    engine = LogicalEngine(source=endpoint(args.source, "source"), target=endpoint(args.target, "target"),
                           name=name, tables=args.tables or None, exclude=args.exclude or None)
    if not args.statement and not args.carry:
        drift = find_drift(source=engine.source, target=engine.target, publication=name,
                           tables=engine.tables, exclude=engine.exclude)
        if args.json:
            print(json.dumps([d.__dict__ for d in drift], indent=2))
        else:
            for d in drift:
                print(d)
            print("schemas agree" if not drift else f"{len(drift)} difference(s)")
        return EXIT_DRIFT if drift else 0
    try:
        result = carry(engine, statement=args.statement, order=args.order)
    except SchemaDrift as exc:
        print(exc)
        return EXIT_DRIFT
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for stmt in result.statements:
            print(f"target: {stmt}")
        for t in result.published:
            print(f"source: {t} added to publication {name}; the subscription copies it")
        print("schemas agree")
    return 0
