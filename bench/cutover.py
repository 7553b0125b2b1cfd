"""Write switch: the write pause of repeated cutovers under the payment workload, at two database
sizes side by side, against PgBouncer's bare PAUSE+RESUME.

    .venv/bin/python -m bench.cutover [--sizes 20000,1000000] [--tps 200] [--cycles 3]

Starts its own local stack in a temporary home. For each size (payments seeded; the demo schema
has about 8.7 rows in its 7 tables per payment): a fresh database pair, forward logical
replication streaming, routed by PgBouncer, and the workload writing through it at ``--tps`` (one
client per 25 TPS, at least 2). First the baseline, in a workload run of its own: PgBouncer's
PAUSE then RESUME with nothing in between, timed the way the switch times its pause (PAUSE sent
to RESUME answered). Then, in a second workload run, cycles of ``switch_writes`` (cutover, with
a budget of ``--budget-ms``) and ``attach_reverse``, a few seconds of writes on the target,
``switch_back``, and a fresh forward replication for the next cycle (the target copied again, as
a rerun of the migration would). At the end both runs' ledgers are checked against the source,
the last writer: every committed transaction of every cycle must be there once.

Prints per size the write pause p50 and max of cutovers and switch-backs, the longest client
stall, lost and duplicated; each cutover step's median; and the ratios the pause must hold: the
largest size's pause over the smallest's (it must not grow with the data) and each pause over the
bare PAUSE+RESUME. Timings on a shared 2-core machine are noisy: read the ratios, and rerun
before trusting a single max.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from psycopg2 import sql

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("plugins", "harness")]

from bench.common import execute, fresh_db  # noqa: E402
from paymigrate.cutover.freeze import remove_fence, unfreeze  # noqa: E402
from paymigrate.cutover.switch import SWITCH_STEPS, Switch, switch_back, switch_writes  # noqa: E402
from paymigrate.replication.logical import LogicalEngine  # noqa: E402
from paymigrate.routing.fleet import RouterNode, on_every  # noqa: E402
from paymigrate_dev.demo.seed import seed  # noqa: E402
from paymigrate_dev.local.stack import LocalStack  # noqa: E402
from paymigrate_dev.workload import Workload, report  # noqa: E402

log = logging.getLogger("bench.cutover")

TPS_PER_CLIENT = 25
BASELINE_ROUNDS = 5
IN_PAUSE = [s for s in SWITCH_STEPS if s != "prepare"]


@dataclass
class SizeResult:
    rows: int
    tps: int
    clients: int
    table_rows: int = 0
    baseline: list[float] = field(default_factory=list)
    cutover: list[float] = field(default_factory=list)
    back: list[float] = field(default_factory=list)
    attach: list[float] = field(default_factory=list)
    fenced_in_pause: int = 0  # tables too busy to fence before the pause, summed over cycles
    steps: dict[str, list[float]] = field(default_factory=dict)
    committed_tps: float = 0.0
    stall: float = 0.0
    baseline_stall: float = 0.0
    lost: int = 0
    duplicated: int = 0
    committed: int = 0
    invariants_ok: bool = True


def forward(engine: LogicalEngine, stack: LocalStack, name: str) -> None:
    """(Re)start forward replication into a fresh target and wait until it has caught up."""
    fresh_db(stack, "target", name)
    engine.start()
    status = engine.wait_full_load(timeout=3600, poll=1.0)
    if not status.full_load_done:
        raise SystemExit(f"{name}: initial copy not done: {status}")
    if not engine.catch_up(engine.position(side="source"), timeout=120):
        raise SystemExit(f"{name}: forward replication does not catch up: {engine.lag()}")


def bare_pause(routers: tuple[RouterNode, ...], name: str) -> float:
    """PAUSE then RESUME on every router, each in parallel, as the switch sends them."""
    started = time.monotonic()
    for action, fn in (("PAUSE", lambda n: n.console.pause(name, timeout=10)),
                       ("RESUME", lambda n: n.console.resume(name))):
        done = on_every(routers, action, fn, timeout=15)
        if not done.ok:
            raise SystemExit(done.message())
    return time.monotonic() - started


def run_size(stack: LocalStack, rows: int, *, tps: int, cycles: int, settle: float, budget: float,
             work: Path, routers: int) -> SizeResult:
    name = f"bench_cutover_{rows}"
    clients = max(2, round(tps / TPS_PER_CLIENT))
    out = SizeResult(rows, tps, clients)
    source, target = stack.endpoint("source", dbname=name), stack.endpoint("target", dbname=name)
    engine = LogicalEngine(source=source, target=target, name=name, poll=0.05)
    nodes = stack.router_nodes()[:routers]
    fresh_db(stack, "source", name)
    started = time.monotonic()
    seed(dsn=stack.dsn("source", dbname=name), rows=rows, seed=rows % 1000)
    tables = engine.scope_tables()
    out.table_rows = sum(execute(source, sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(t)))[0][0]
                         for t in tables)
    print(f"  seeded {out.table_rows:,} rows in {len(tables)} tables in {time.monotonic() - started:.0f}s; "
          "copying", file=sys.stderr, flush=True)
    forward(engine, stack, name)
    stack.add_route(name)
    sw = Switch(source=source, target=target, routers=nodes, database=name,
                engine=engine, tables=tuple(tables), max_write_pause=budget, pause_timeout=10.0,
                drain_timeout=30.0)
    back_sw = replace(sw, max_write_pause=10.0)  # payment_rollback's default budget
    app_dsn, source_dsn = stack.app_dsns(dbname=name)[:routers], stack.dsn("source", dbname=name)
    # The baseline has its own workload run, so each run's longest stall is its own.
    wl = Workload(dsn=app_dsn, directory=work / name / "baseline", clients=clients, tps=tps,
                  seed=rows % 1000).start()
    try:
        for _ in range(BASELINE_ROUNDS):
            # As long between rounds as between switches: PAUSE closes every server connection
            # and PgBouncer opens them again one after another (about 10 ms each here).
            time.sleep(settle)
            out.baseline.append(bare_pause(nodes, name))
        time.sleep(settle)
    finally:
        wl.stop()
    base = report(directory=work / name / "baseline", against_dsn=source_dsn)
    ledger = work / name / "cutover"
    wl = Workload(dsn=app_dsn, directory=ledger, clients=clients, tps=tps, seed=rows % 1000 + 1).start()
    try:
        time.sleep(settle)
        for cycle in range(1, cycles + 1):
            res = switch_writes(sw)
            attach_started = time.monotonic()
            engine.attach_reverse(from_position=res.reverse_position)
            out.attach.append(time.monotonic() - attach_started)
            out.cutover.append(res.write_pause_seconds)
            out.fenced_in_pause += len(res.fenced_in_pause)
            for step, secs in res.steps.items():
                out.steps.setdefault(step, []).append(secs)
            time.sleep(settle)
            back = switch_back(back_sw)
            out.back.append(back.write_pause_seconds)
            print(f"  {rows:,} payments cycle {cycle}/{cycles}: cutover pause "
                  f"{res.write_pause_seconds * 1000:.0f} ms, switch back "
                  f"{back.write_pause_seconds * 1000:.0f} ms", file=sys.stderr, flush=True)
            engine.drop(direction="reverse")
            if cycle < cycles:
                forward(engine, stack, name)
            time.sleep(settle)
    finally:
        wl.stop()
        try:
            engine.drop(direction="reverse")
            engine.drop(direction="forward")
        finally:
            stack.remove_route(name)
    rep = report(directory=ledger, against_dsn=source_dsn)
    out.committed, out.committed_tps = base.committed + rep.committed, rep.committed_tps
    out.lost, out.duplicated = base.lost + rep.lost, base.duplicated + rep.duplicated
    out.stall, out.baseline_stall = rep.longest_stall_seconds, base.longest_stall_seconds
    out.invariants_ok = rep.invariants_ok and base.invariants_ok
    for ep in (source, target):
        unfreeze(ep)
        remove_fence(ep)
    for side in ("target", "source"):
        execute(stack.dsn(side, dbname="postgres"),
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return out


def ms(values: list[float], how: str) -> str:
    if not values:
        return "-"
    v = statistics.median(values) if how == "p50" else max(values)
    return f"{v * 1000:.0f}"


def print_table(results: list[SizeResult], budget: float) -> None:
    head = (f"{'payments':>9} {'rows':>10} {'tps':>4} {'cycles':>6} | {'base p50':>8} | "
            f"{'cut p50':>7} {'cut max':>7} {'x base':>6} | {'back p50':>8} {'back max':>8} | "
            f"{'attach':>6} | {'stall base':>10} {'stall run':>9} {'lost':>5} {'dup':>4}")
    print(f"write pause in ms (PAUSE sent to RESUME answered), cutover budget {budget * 1000:.0f} ms;")
    print("x base = cutover p50 / bare PAUSE+RESUME p50; attach = reverse subscription made after "
          "RESUME (ms, not paused);")
    print("stall = longest time no client committed, in s (workload report): baseline run, cutover run")
    print(head)
    print("-" * len(head))
    for r in results:
        base = statistics.median(r.baseline)
        print(f"{r.rows:>9,} {r.table_rows:>10,} {r.committed_tps:>4.0f} {len(r.cutover):>6} | "
              f"{ms(r.baseline, 'p50'):>8} | "
              f"{ms(r.cutover, 'p50'):>7} {ms(r.cutover, 'max'):>7} "
              f"{statistics.median(r.cutover) / base:>5.1f}x | "
              f"{ms(r.back, 'p50'):>8} {ms(r.back, 'max'):>8} | {ms(r.attach, 'p50'):>6} | "
              f"{r.baseline_stall:>10.2f} {r.stall:>9.2f} {r.lost:>5} {r.duplicated:>4}")
    print()
    print("cutover steps inside the pause, median / max ms; fenced = tables fenced inside the pause "
          "(too busy before it), all cycles:")
    print(f"{'payments':>9} " + " ".join(f"{s:>15}" for s in IN_PAUSE) + f" {'fenced':>6}")
    for r in results:
        print(f"{r.rows:>9,} " + " ".join(
            f"{statistics.median(r.steps[s]) * 1000:>8.1f} / {max(r.steps[s]) * 1000:>4.0f}" for s in IN_PAUSE)
            + f" {r.fenced_in_pause:>6}")
    if len(results) > 1:
        small, large = min(results, key=lambda r: r.rows), max(results, key=lambda r: r.rows)
        print()
        print(f"large over small ({large.rows:,} / {small.rows:,} payments): write pause p50 "
              f"{statistics.median(large.cutover) / statistics.median(small.cutover):.2f}x, "
              f"max {max(large.cutover) / max(small.cutover):.2f}x; longest stall "
              f"{large.stall / small.stall if small.stall else float('nan'):.2f}x")


def _ints(parser: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"{flag} {text!r}: expected integers like 20000,1000000")
    if not values or any(v < 1 for v in values):
        parser.error(f"{flag} {text!r}: every value must be a positive integer")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cutover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,1000000", help="payments seeded, comma-separated")
    parser.add_argument("--tps", type=int, default=200, help="workload rate in transactions/s")
    parser.add_argument("--cycles", type=int, default=3, help="cutover + switch back cycles per size")
    parser.add_argument("--budget-ms", type=int, default=500, help="the cutover's write pause budget")
    parser.add_argument("--routers", type=int, default=2, choices=(1, 2),
                        help="PgBouncers switched at once (the workload spreads over them)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds of writes between one switch and the next")
    args = parser.parse_args(argv)
    sizes = _ints(parser, "--sizes", args.sizes)
    if args.tps < 1:
        parser.error(f"--tps {args.tps} must be at least 1")
    if args.cycles < 1:
        parser.error(f"--cycles {args.cycles} must be at least 1")
    if args.budget_ms < 1:
        parser.error(f"--budget-ms {args.budget_ms} must be at least 1")
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
            for rows in sizes:
                print(f"{rows:,} payments at {args.tps} TPS: seeding and replicating",
                      file=sys.stderr, flush=True)
                results.append(run_size(stack, rows, tps=args.tps, cycles=args.cycles,
                                        settle=args.settle, budget=args.budget_ms / 1000,
                                        work=Path(tmp), routers=args.routers))
        print(f"routers switched at once: {args.routers}")
        print_table(results, args.budget_ms / 1000)
    finally:
        stack.down(purge=True)
    bad = [r for r in results if r.lost or r.duplicated or not r.invariants_ok]
    for r in bad:
        print(f"FAILED at {r.rows:,} payments: {r.lost} lost, {r.duplicated} duplicated, invariants "
              f"{'ok' if r.invariants_ok else 'broken'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
