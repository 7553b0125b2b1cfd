"""``paymigrate demo``: the whole migration on the local stand-ins, end to end."""

from __future__ import annotations

from paymigrate_dev.cli import bounded, command, emit
from paymigrate_dev.demo.seed import MAX_ROWS

DEFAULT_ROWS = 20000


def register(sub) -> None:
    p = command(sub, "demo", summary="migrate a seeded payment database under live writes, end to end",
                description="""
Start the stand-ins, start over from a clean slate (replication dropped, target emptied, router on
the source), seed the source, start Airflow on 127.0.0.1, start the payment workload through
PgBouncer, run payment_migration and then payment_cutover through Airflow's API, stop the
workload, and print a summary: rows per table, initial copy time, lag at cutover, validation,
write pause (router side) and longest client stall, and the workload's own count of
transactions committed, found on the target, lost and duplicated. Exit 0 only when nothing
was lost or duplicated and the data matches. Airflow keeps running afterwards so the runs can
be looked at in its UI; `paymigrate down` stops everything.""", environment="""\
  PAYMIGRATE_HOME   folder of the local stack (default: ./.local)""", example="""\
  $ paymigrate demo --rows 20000 --tps 100
  [demo] source    created and started on 127.0.0.1:40731 (pid 1201)
  ...
  transactions committed      3412
  found on the target         3412
  lost                           0
  duplicated                     0
  Airflow UI                  http://127.0.0.1:8080  (admin / ...)""")
    p.add_argument("--rows", type=bounded(int, low=1, high=MAX_ROWS), default=DEFAULT_ROWS,
                   help=f"payments to seed (default {DEFAULT_ROWS})")
    p.add_argument("--tps", type=bounded(float, low=0.01, high=100000), default=100.0,
                   help="workload rate in transactions/s (default 100)")
    p.add_argument("--clients", type=bounded(int, low=1, high=256), default=4,
                   help="workload clients (default 4)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout (progress goes to stderr)")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from paymigrate_dev.local.demo import run

    result = run(rows=args.rows, tps=args.tps, clients=args.clients)
    s = result.summary
    if args.json:
        emit(args, s)
    else:
        print_summary(s)
    ok = (s["lost"] == 0 and s["duplicated"] == 0 and s["invariants_ok"]
          and s["validation_before_cutover"] == "match" and s["validation_after_cutover"] == "match")
    return 0 if ok else 1


def print_summary(s: dict) -> None:
    print("\n=== paymigrate demo summary ===")
    print("rows per table (target):")
    for table, n in s["rows"].items():
        print(f"  {table:<26} {n:>10}")
    lag = s["lag_at_cutover"] or {}
    rows = [
        ("initial copy", f"{s['initial_copy_seconds']} s"),
        ("lag at cutover", f"{lag.get('bytes', '?')} bytes, {lag.get('seconds', '?')} s"),
        ("validation before cutover", s["validation_before_cutover"]),
        ("validate_new_writer", s["validation_of_new_writer_after_resume"]),
        ("validation after cutover", s["validation_after_cutover"]),
        ("cutover approved by", "; ".join(s.get("approved_by") or []) or "-"),
        ("write pause (router)", f"{s['write_pause_ms']} ms (budget {s['write_pause_budget_ms']} ms)"),
        ("longest client stall", f"{s['longest_client_stall_ms']} ms"),
        ("transactions committed", s["committed"]),
        ("found on the target", s["found_on_target"]),
        ("lost", s["lost"]),
        ("duplicated", s["duplicated"]),
        ("ledger invariants", "ok" if s["invariants_ok"] else "BROKEN"),
        ("Airflow UI", f"{s['airflow_ui']}  ({s['airflow_login']})"),
        ("demo took", f"{s['seconds']} s"),
    ]
    for name, value in rows:
        print(f"{name:<27} {value}")
    print("switch steps (ms): " + ", ".join(f"{k} {v}" for k, v in s["switch_steps_ms"].items()))
