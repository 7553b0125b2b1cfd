"""Write switch: the write pause of repeated cutovers under the payment workload, against PgBouncer's
bare PAUSE+RESUME.

    .venv/bin/python -m bench.cutover [--rates 50,200,500] [--cycles 3] [--rows 20000]

Starts its own local stack in a temporary home. For each rate: a fresh database pair (the demo
payment schema seeded on the source, forward logical replication streaming), routed by PgBouncer,
and the workload writing through it at that rate (one client per 25 TPS, at least 2). First
the baseline, in a workload run of its own: PgBouncer's PAUSE then RESUME with nothing in
between, timed the way the switch times its pause (PAUSE sent to RESUME answered). Then, in a
second workload run, cycles of
``switch_writes`` (cutover), a few seconds of writes on the target, ``switch_back``, and a fresh
forward replication for the next cycle (the target is copied again, as a rerun of the migration
would). At the end both runs' ledgers are checked against the source, the last writer: every
committed transaction of every cycle must be there once.

Prints per rate the write pause p50 and max of cutovers and of switch-backs, the baseline, the
ratios to it, the longest client stall, lost and duplicated; then each step's median. Timings
on a shared 2-core machine are noisy: read the ratios, and rerun before trusting a single max.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from psycopg2 import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from bench.common import execute, fresh_db  # noqa: E402
from paymigrate.cutover import Switch, switch_back, switch_writes  # noqa: E402
from paymigrate.demo.seed import TABLES, seed  # noqa: E402
from paymigrate.local.stack import LocalStack  # noqa: E402
from paymigrate.replication.logical import LogicalEngine  # noqa: E402
from paymigrate.router import Route, RouterAdmin, write_route  # noqa: E402
from paymigrate.verify import row_counts_match  # noqa: E402
from paymigrate.workload import Workload, report  # noqa: E402

log = logging.getLogger("bench.cutover")

TPS_PER_CLIENT = 25
BASELINE_ROUNDS = 5


@dataclass
class RateResult:
    rate: int
    clients: int
    baseline: list[float] = field(default_factory=list)
    cutover: list[float] = field(default_factory=list)
    back: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=dict)
    committed_tps: float = 0.0
    stall: float = 0.0
    baseline_stall: float = 0.0
    lost: int = 0
    duplicated: int = 0
    committed: int = 0
    invariants_ok: bool = True


def forward(stack: LocalStack, engine: LogicalEngine, name: str) -> None:
    """(Re)start forward replication into a fresh target and wait until it has caught up."""
    fresh_db(stack, "target", name)
    engine.start()
    status = engine.wait_full_load(timeout=600, poll=0.2)
    if not status.full_load_done:
        raise SystemExit(f"{name}: initial copy not done: {status}")
    if not engine.wait_drained(engine.position(side="source"), timeout=60):
        raise SystemExit(f"{name}: forward replication does not catch up: {engine.lag()}")


def bare_pause(admin: RouterAdmin, name: str) -> float:
    started = time.monotonic()
    admin.pause(name, timeout=10)
    admin.resume(name)
    return time.monotonic() - started


def run_rate(stack: LocalStack, rate: int, *, cycles: int, rows: int, settle: float,
             work: Path) -> RateResult:
    name = f"bench_cutover_{rate}"
    clients = max(2, round(rate / TPS_PER_CLIENT))
    out = RateResult(rate, clients)
    source, target = stack.endpoint("source", dbname=name), stack.endpoint("target", dbname=name)
    engine = LogicalEngine(source=source, target=target, name=name, poll=0.05)
    routes = stack.router().databases_file
    admin = RouterAdmin(stack.endpoint("router-admin"))
    fresh_db(stack, "source", name)
    seed(dsn=stack.dsn("source", dbname=name), rows=rows, seed=rate)
    forward(stack, engine, name)
    write_route(routes, Route(name, "127.0.0.1", stack.port("source"), name))
    admin.reload()
    sw = Switch(source=source, target=target, router=admin, routes_file=routes, database=name,
                engine=engine, pause_timeout=10.0, drain_timeout=30.0,
                verify=partial(row_counts_match, source=source, target=target,
                               tables=[f"public.{t}" for t in TABLES]))
    app_dsn, source_dsn = stack.dsn("router", dbname=name), stack.dsn("source", dbname=name)
    # The baseline has its own workload run, so each run's longest stall is its own.
    wl = Workload(dsn=app_dsn, directory=work / name / "baseline", clients=clients, tps=rate,
                  seed=rate).start()
    try:
        for _ in range(BASELINE_ROUNDS):
            # As long between rounds as between switches: PAUSE closes every server connection
            # and PgBouncer opens them again one after another (about 10 ms each here).
            time.sleep(settle)
            out.baseline.append(bare_pause(admin, name))
        time.sleep(settle)
    finally:
        wl.stop()
    base = report(directory=work / name / "baseline", against_dsn=source_dsn)
    ledger = work / name / "cutover"
    wl = Workload(dsn=app_dsn, directory=ledger, clients=clients, tps=rate, seed=rate + 1).start()
    try:
        time.sleep(settle)
        for cycle in range(1, cycles + 1):
            res = switch_writes(sw)
            out.cutover.append(res.write_pause_seconds)
            for step, secs in res.steps.items():
                out.steps.setdefault(step, []).append(secs)
            time.sleep(settle)
            back = switch_back(sw)
            out.back.append(back.write_pause_seconds)
            print(f"  {rate} TPS cycle {cycle}/{cycles}: cutover pause "
                  f"{res.write_pause_seconds * 1000:.0f} ms, switch back "
                  f"{back.write_pause_seconds * 1000:.0f} ms", file=sys.stderr, flush=True)
            engine.drop(direction="reverse")
            if cycle < cycles:
                forward(stack, engine, name)
            time.sleep(settle)
    finally:
        wl.stop()
        try:
            engine.drop(direction="reverse")
            engine.drop(direction="forward")
        finally:
            remove_route(routes, name)
            admin.reload()
    rep = report(directory=ledger, against_dsn=source_dsn)
    out.committed, out.committed_tps = base.committed + rep.committed, rep.committed_tps
    out.lost, out.duplicated = base.lost + rep.lost, base.duplicated + rep.duplicated
    out.stall, out.baseline_stall = rep.longest_stall_seconds, base.longest_stall_seconds
    out.invariants_ok = rep.invariants_ok and base.invariants_ok
    for side in ("target", "source"):
        execute(stack.dsn(side, dbname="postgres"),
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return out


def remove_route(path: Path, name: str) -> None:
    """Drop ``name``'s line from the router's databases file, keeping its owner and mode."""
    st = path.stat()
    lines = [ln for ln in path.read_text().splitlines() if ln.split("=", 1)[0].strip() != name]
    tmp = path.with_name(path.name + ".bench")
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, st.st_mode & 0o777)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)


def ms(values: list[float], how: str) -> str:
    if not values:
        return "-"
    v = statistics.median(values) if how == "p50" else max(values)
    return f"{v * 1000:.0f}"


def print_table(results: list[RateResult]) -> None:
    head = (f"{'TPS':>5} {'clients':>7} {'done tps':>8} {'cycles':>6} | {'base p50':>8} {'base max':>8} | "
            f"{'cut p50':>7} {'cut max':>7} {'x base':>6} | {'back p50':>8} {'back max':>8} {'x base':>6} | "
            f"{'stall base':>10} {'stall cut':>9} {'lost':>5} {'dup':>4}")
    print("write pause in ms (PAUSE sent to RESUME answered); x base = p50 / bare PAUSE+RESUME p50;")
    print("stall = longest time no client committed, in s (workload report), baseline run and cutover run")
    print(head)
    print("-" * len(head))
    for r in results:
        base = statistics.median(r.baseline)
        print(f"{r.rate:>5} {r.clients:>7} {r.committed_tps:>8.0f} {len(r.cutover):>6} | "
              f"{ms(r.baseline, 'p50'):>8} {ms(r.baseline, 'max'):>8} | "
              f"{ms(r.cutover, 'p50'):>7} {ms(r.cutover, 'max'):>7} "
              f"{statistics.median(r.cutover) / base:>5.1f}x | "
              f"{ms(r.back, 'p50'):>8} {ms(r.back, 'max'):>8} {statistics.median(r.back) / base:>5.1f}x | "
              f"{r.baseline_stall:>10.2f} {r.stall:>9.2f} {r.lost:>5} {r.duplicated:>4}")
    print()
    print("cutover steps, median ms:")
    steps = list(results[0].steps)
    print(f"{'TPS':>5} " + " ".join(f"{s:>14}" for s in steps))
    for r in results:
        print(f"{r.rate:>5} " + " ".join(f"{statistics.median(r.steps[s]) * 1000:>14.0f}" for s in steps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cutover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,200,500", help="workload rates in TPS, comma-separated")
    parser.add_argument("--cycles", type=int, default=3, help="cutover + switch back cycles per rate")
    parser.add_argument("--rows", type=int, default=20_000, help="payments seeded per database pair")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds of writes between one switch and the next")
    args = parser.parse_args(argv)
    try:
        rates = [int(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rates {args.rates!r}: expected integers like 50,200,500")
    if not rates or any(r < 1 for r in rates):
        parser.error(f"--rates {args.rates!r}: every rate must be a positive integer")
    if args.cycles < 1:
        parser.error(f"--cycles {args.cycles} must be at least 1")
    if args.rows < 1:
        parser.error(f"--rows {args.rows} must be at least 1")
    if args.settle <= 0:
        parser.error(f"--settle {args.settle} must be positive")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    home = Path(tempfile.mkdtemp(prefix="paymigrate-bench-cutover-"))
    home.chmod(0o755)
    stack = LocalStack(home, env="bench")
    results = []
    try:
        stack.up(bootstrap=False)
        with tempfile.TemporaryDirectory(prefix="paymigrate-bench-") as tmp:
            for rate in rates:
                print(f"rate {rate} TPS: seeding {args.rows:,} payments and replicating",
                      file=sys.stderr, flush=True)
                results.append(run_rate(stack, rate, cycles=args.cycles, rows=args.rows,
                                        settle=args.settle, work=Path(tmp)))
        print_table(results)
    finally:
        stack.down(purge=True)
    bad = [r for r in results if r.lost or r.duplicated or not r.invariants_ok]
    for r in bad:
        print(f"FAILED at {r.rate} TPS: {r.lost} lost, {r.duplicated} duplicated, invariants "
              f"{'ok' if r.invariants_ok else 'broken'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
