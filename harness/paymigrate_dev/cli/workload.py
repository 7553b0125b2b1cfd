"""``paymigrate workload start | stop | report``: the payment write workload and its proof."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from paymigrate.errors import WorkloadError
from paymigrate.inputs import check_dsn
from paymigrate_dev.cli import bounded, command, emit, libpq_dsn
from paymigrate_dev.local.stack import default_home
from paymigrate_dev.workload import Workload, report, start_background, stop_background
from paymigrate_dev.workload.background import DSN_ENV, write_pid

ENVIRONMENT = f"""\
  {DSN_ENV}     database the clients write to (default of --dsn; PgBouncer locally)
  PAYMIGRATE_HOME        the ledger and pid file live in $PAYMIGRATE_HOME/workload by default"""


def register(sub) -> None:
    p = command(sub, "workload", summary="run the payment write workload, stop it, check its ledger",
                description="""
A payment write workload whose own ledger proves nothing was lost. Clients write a mix of
operations through PgBouncer, each under its own idempotency key: authorize (payment, hold,
ledger lines, event), capture, settle, refund, expire (deletes the hold), plus read-your-writes
checks. Each committed operation is appended to a JSON-lines ledger (fsync'd every 50 records or
100 ms). A failed write is retried under the same key; a COMMIT whose outcome is unknown is
resolved by looking the key up. `report` then checks any database against the ledger.""",
                environment=ENVIRONMENT, example="""\
  $ paymigrate workload start --clients 4 --tps 200 --duration 600
  workload running (pid 48121), ledger under /work/main/.local/workload
  $ paymigrate workload stop
  $ paymigrate workload report --against "$PAYMIGRATE_TARGET_DSN"
  (see `paymigrate workload ACTION --help` for each action's options and output)""")
    wsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    s = command(wsub, "start", summary="start the workload (detached unless --foreground)",
                description="""
Start CLIENTS client threads writing at a total target rate of TPS write transactions per
second (read-your-writes checks come on top),
until --duration seconds have passed or --count write operations were attempted (or `stop`).
Without --foreground it runs as a detached process writing workload.pid and workload.log in
the directory, and returns once the clients run.""", environment=ENVIRONMENT, example="""\
  $ paymigrate workload start --clients 4 --tps 200 --duration 600
  workload running (pid 48121), ledger under /work/main/.local/workload
  $ paymigrate workload start --foreground --count 2000 --tps 400 --dir /tmp/wl
  run 41f40199: 2000 committed in 5.7s (349.5 tps), 0 failed, 0 unresolved, retries: none""")
    s.add_argument("--clients", type=bounded(int, low=1, high=256), default=4,
                   help="concurrent clients (default 4)")
    s.add_argument("--tps", type=bounded(float, low=0.01, high=100000), default=100.0,
                   help="total target rate of write transactions (default 100)")
    s.add_argument("--duration", type=bounded(float, low=0.01), help="stop after this many seconds")
    s.add_argument("--count", type=bounded(int, low=1), help="stop after this many write operations")
    s.add_argument("--seed", type=int, help="seed of the operation mix and amounts")
    s.add_argument("--foreground", action="store_true", help="run in this process until done")
    s.add_argument("--json", action="store_true", help="print the pid (or, with --foreground, the run) as JSON")
    _common(s)
    s.set_defaults(func=_start)

    s = command(wsub, "stop", summary="stop the detached workload", description="""
Stop the detached workload of the directory: clients finish the operation in hand (retries of an
unknown outcome included), the ledger is flushed, the process exits. Exit 0 also when none ran.""",
                environment=ENVIRONMENT, example="""\
  $ paymigrate workload stop
  workload stopped (pid 48121)""")
    s.add_argument("--json", action="store_true", help="print the stopped pid as JSON")
    _common(s, dsn=False)
    s.set_defaults(func=_stop)

    s = command(wsub, "report", summary="check a database against the workload's ledger",
                description="""
Count the ledger's committed operations found, lost (an effect absent) and duplicated (an effect
present twice) in the database at --against, check the ledger invariants over the whole database
(every ledger transaction and currency sums to zero, every payment has lines, refunds add up),
and show latency percentiles, the longest stall, committed TPS, retries and errors by kind.
Exit 0 when nothing is lost or duplicated and every invariant holds, 1 otherwise.""",
                environment=ENVIRONMENT, example="""\
  $ paymigrate workload report --dir /tmp/wl --against "$PAYMIGRATE_SOURCE_DSN"
  committed 2000  found 2000  lost 0  duplicated 0  unresolved 0
  invariants ok (unbalanced_ledger_transactions 0, payments_without_ledger_lines 0, unbalanced_currencies 0, refund_mismatches 0)
  latency ms p50 4.3  p95 13.6  p99 19.7  max 44.4   longest stall 0.04s
  committed 349.5 tps over 5.723s in 1 run(s); retries: none; errors: none; read mismatches 0""")
    s.add_argument("--against", type=libpq_dsn, help="database to check (default: $PAYMIGRATE_APP_DSN)")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    _common(s, dsn=False)
    s.set_defaults(func=_report)


def _common(p, *, dsn: bool = True) -> None:
    if dsn:
        p.add_argument("--dsn", type=libpq_dsn, help=f"libpq DSN the clients use (default: ${DSN_ENV})")
    p.add_argument("--dir", type=Path, help="ledger and pid folder (default: $PAYMIGRATE_HOME/workload)")


def _directory(args) -> Path:
    return args.dir or default_home() / "workload"


def _dsn(value: str | None, what: str) -> str:
    given = value or os.environ.get(DSN_ENV)
    if not given:
        raise WorkloadError(f"no database for {what}: pass it or set {DSN_ENV}")
    return check_dsn(given, name=f"{what} (${DSN_ENV})")


def _start(args) -> int:
    dsn = _dsn(args.dsn, "--dsn")
    directory = _directory(args)
    if not args.foreground:
        pid = start_background(dsn=dsn, directory=directory, clients=args.clients, tps=args.tps,
                               duration=args.duration, count=args.count, seed=args.seed)
        if args.json:
            emit(args, {"pid": pid, "directory": str(directory)})
        else:
            print(f"workload running (pid {pid}), ledger under {directory}")
        return 0
    w = Workload(dsn=dsn, directory=directory, clients=args.clients, tps=args.tps,
                 duration=args.duration, count=args.count, seed=args.seed)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    w.start()
    write_pid(directory)
    try:
        while w.running and not stopping:
            w.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stats = w.stop()
        (directory / "workload.pid").unlink(missing_ok=True)
    if args.json:
        emit(args, stats.to_dict())
        return 0
    retries = ", ".join(f"{k} {v}" for k, v in sorted(stats.retries_by_kind.items())) or "none"
    print(f"run {stats.run_id}: {stats.committed} committed in {stats.elapsed_seconds:.1f}s "
          f"({stats.tps:.1f} tps), {sum(stats.failed_by_kind.values())} failed, "
          f"{stats.unresolved} unresolved, retries: {retries}", flush=True)
    return 0


def _stop(args) -> int:
    pid = stop_background(_directory(args))
    if args.json:
        emit(args, {"stopped_pid": pid})
        return 0
    print(f"workload stopped (pid {pid})" if pid else "no workload was running")
    return 0


def _report(args) -> int:
    r = report(directory=_directory(args), against_dsn=_dsn(args.against, "--against"))
    if args.json:
        emit(args, r.to_dict())
        return 0 if r.ok else 1
    print(f"committed {r.committed}  found {r.found}  lost {r.lost}  duplicated {r.duplicated}  "
          f"unresolved {r.unresolved}")
    inv = ", ".join(f"{k} {v}" for k, v in r.invariants.items())
    print(f"invariants {'ok' if r.invariants_ok else 'VIOLATED'} ({inv})")
    lat = "  ".join(f"{k} {v}" for k, v in r.latency_ms.items())
    print(f"latency ms {lat}   longest stall {r.longest_stall_seconds:.2f}s")
    retries = ", ".join(f"{k} {v}" for k, v in sorted(r.retries_by_kind.items())) or "none"
    errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors_by_kind.items())) or "none"
    print(f"committed {r.committed_tps} tps over {r.seconds}s in {r.runs} run(s); "
          f"retries: {retries}; errors: {errors}; read mismatches {r.read_mismatches}")
    for ex in r.lost_examples:
        print(f"  lost {ex['kind']} {ex['key']} (payment {ex['payment']}): {', '.join(ex['missing'])}")
    for ex in r.duplicated_examples:
        print(f"  duplicated {ex['kind']} {ex['key']} (payment {ex['payment']}): "
              f"{', '.join(ex['extra'])}")
    return 0 if r.ok else 1
