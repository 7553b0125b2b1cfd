"""``paymigrate validate``: compare source and target, table by table, down to the exact keys."""

from __future__ import annotations

import json
import os

from paymigrate.errors import ValidationError
from paymigrate.inputs import check_dsn
from paymigrate.validation import MISMATCH, validate
from paymigrate_dev.cli import bounded, command, emit, table_name

EXIT_MISMATCH = 1


def register(sub) -> None:
    p = command(sub, "validate", summary="compare source and target down to the exact keys",
                description="""
Compare every table of the source database with the target (or the --schema / --tables given),
discovered from the catalog. Per primary-key segment, both servers compute a row count and a
checksum of normalized rows (UTC timestamps, exact floats, numeric as stored, NULL distinct from
'') at the same time, each in one REPEATABLE READ snapshot; differing segments are cut down until
the exact keys are known: missing (on the source only), extra (on the target only) and different
(same key, other content). Tables without a primary key are compared as multisets of rows.
The report carries keys and counts, never row values or passwords.

Exit status: 0 when the data is equal, 1 when it differs, 2 when it cannot be compared (a server
unreachable, a table missing on one side, a column missing or of another type: each named).""",
                environment="""\
  PAYMIGRATE_SOURCE_DSN   default for --source (libpq DSN or postgresql:// URI)
  PAYMIGRATE_TARGET_DSN   default for --target""",
                example="""\
  $ paymigrate validate --tables public.payments
  public.payments  mismatch  source 1000000 rows, target 999999 rows, 0.9s
    missing   [41, 700123]
    extra     [1000001]
    different [5150]
  mismatch: 1 of 1 tables differ, 4 rows, 2000000 rows checked in 1.2s (1666667 rows/s)
  $ echo $?
  1""")
    p.add_argument("--source", default=os.environ.get("PAYMIGRATE_SOURCE_DSN"),
                   help="source DSN (default: $PAYMIGRATE_SOURCE_DSN)")
    p.add_argument("--target", default=os.environ.get("PAYMIGRATE_TARGET_DSN"),
                   help="target DSN (default: $PAYMIGRATE_TARGET_DSN)")
    p.add_argument("--schema", dest="schemas", action="extend", nargs="+", metavar="S",
                   help="only tables of these schemas")
    p.add_argument("--tables", action="extend", nargs="+", metavar="T", type=table_name,
                   help='only these tables (schema.name, or name in any schema; quote a part that '
                        'needs it: public."Weird Name")')
    p.add_argument("--max-keys", type=bounded(int, low=0, high=1000000), default=100, metavar="N",
                   help="list at most N keys per kind and table; counts are always total (default 100)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_validate)


def _validate(args) -> int:
    if not args.source or not args.target:
        raise ValidationError("give --source and --target (or set PAYMIGRATE_SOURCE_DSN and "
                              "PAYMIGRATE_TARGET_DSN)")
    check_dsn(args.source, name="--source")
    check_dsn(args.target, name="--target")
    report = validate(source=args.source, target=args.target, schemas=args.schemas,
                      tables=args.tables, max_keys=args.max_keys)
    if args.json:
        emit(args, report.to_dict())
    else:
        _print_text(report)
    return EXIT_MISMATCH if report.status == MISMATCH else 0


def _print_text(report) -> None:
    width = max((len(t.table) for t in report.tables), default=5)
    for t in report.tables:
        print(f"{t.table:<{width}}  {t.status:<8}  source {t.source_rows} rows, target "
              f"{t.target_rows} rows, {t.seconds:.1f}s")
        if t.keyed:
            for kind in ("missing", "extra", "different"):
                keys, total = getattr(t, kind), getattr(t, f"{kind}_count")
                if total:
                    more = f" and {total - len(keys)} more" if total > len(keys) else ""
                    print(f"  {kind:<9} {json.dumps(list(keys))}{more}")
        elif t.status == MISMATCH:
            print(f"  surplus   source {t.source_surplus} rows, target {t.target_surplus} rows")
        for note in t.notes:
            print(f"  note: {note}")
    d = report.to_dict()
    print(f"{report.status}: {len(report.mismatched_tables)} of {len(report.tables)} tables differ, "
          f"{report.mismatches} rows, {report.rows_checked} rows checked in {report.seconds:.1f}s"
          f" ({d['rows_per_second'] or 0} rows/s)")
