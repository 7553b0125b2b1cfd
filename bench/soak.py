"""``python -m bench.soak`` (``make soak``): replication under the payment workload for a long
time, with real faults injected at random moments; not part of ``make test``.

A stack of its own (a throw-away home, its own ports) is seeded and migrated with the
postgres-logical engine. The workload then writes through PgBouncer at ``--tps`` for
``--minutes``, while every ``--every`` seconds (give or take half) one fault from
:mod:`paymigrate_dev.local.faults` is injected: the walsender terminated, the source or the target
SIGKILLed and restarted, PgBouncer SIGKILLed and restarted. After each fault, replication must
catch up within ``--catch-up`` seconds. Every ``--validate-every`` seconds, and at the end, the
tables are validated with the engine's catch-up. At the end the workload's ledger is checked
against the target: committed, lost, duplicated.

Exit 0 when nothing was lost or duplicated, every catch-up made it and every validation matched.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from paymigrate.aws import names
from paymigrate.replication.logical import LogicalEngine
from paymigrate.validation import validate
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.local import faults
from paymigrate_dev.local.demo import reset
from paymigrate_dev.local.stack import LocalStack
from paymigrate_dev.workload import Workload, report

log = logging.getLogger("soak")


@dataclass
class SoakResult:
    minutes: float
    tps: float
    faults: list[dict] = field(default_factory=list)
    validations: list[str] = field(default_factory=list)
    catch_up_failures: int = 0
    committed: int = 0
    lost: int = 0
    duplicated: int = 0
    retries: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.catch_up_failures == 0
                and all(v == "match" for v in self.validations))


def soak(stack: LocalStack, *, minutes: float, tps: float, rows: int, every: float,
         validate_every: float, catch_up: float, kinds: list[str], seed_value: int,
         folder: Path) -> SoakResult:
    rng = random.Random(seed_value)
    reset(stack)
    seed(dsn=stack.dsn("source"), rows=rows, seed=seed_value, replace=True)
    engine = LogicalEngine(source=stack.endpoint("source"), target=stack.endpoint("target"),
                           name=names.replication_name(stack.env), poll=0.2)
    engine.start()
    if not engine.wait_full_load(timeout=600, poll=5).full_load_done:
        raise SystemExit("soak: the initial copy did not finish within 600 s")
    result = SoakResult(minutes=minutes, tps=tps)
    work = Workload(dsn=stack.dsn("router"), directory=folder, clients=4, tps=tps, seed=seed_value).start()
    started = time.monotonic()
    end = started + minutes * 60
    next_fault = started + rng.uniform(every / 2, every * 1.5)
    next_check = started + validate_every

    def check() -> None:
        checked = validate(source=stack.endpoint("source"), target=stack.endpoint("target"),
                           catch_up=lambda lsn: engine.catch_up(lsn, timeout=catch_up))
        result.validations.append(checked.status)
        log.info("validation %d: %s (%s rows)", len(result.validations), checked.status,
                 sum(t.source_rows for t in checked.tables))

    try:
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_fault:
                kind = faults.pick(rng, kinds)
                at = round(now - started, 1)
                what = faults.inject(kind, stack, engine.name)
                caught = engine.catch_up(engine.position(), timeout=catch_up)
                result.catch_up_failures += not caught
                result.faults.append({"at_seconds": at, "fault": kind, "what": what, "caught_up": caught,
                                      "committed_so_far": work.stats().committed})
                log.info("%6.1fs %s: %s; caught up: %s", at, kind, what, caught)
                next_fault = time.monotonic() + rng.uniform(every / 2, every * 1.5)
            elif now >= next_check:
                check()
                next_check = time.monotonic() + validate_every
            else:
                time.sleep(min(1.0, next_fault - now, next_check - now))
    finally:
        stats = work.stop()
    check()
    on_target = report(directory=folder, against_dsn=stack.dsn("target"))
    result.committed, result.lost, result.duplicated = on_target.committed, on_target.lost, on_target.duplicated
    result.retries = dict(stats.retries_by_kind)
    engine.drop(direction="forward")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30, help="how long the workload runs (default 30)")
    p.add_argument("--tps", type=float, default=200, help="workload transactions per second (default 200)")
    p.add_argument("--rows", type=int, default=20000, help="payments seeded (default 20000)")
    p.add_argument("--every", type=float, default=60, help="mean seconds between faults (default 60)")
    p.add_argument("--validate-every", type=float, default=300, help="seconds between validations (default 300)")
    p.add_argument("--catch-up", type=float, default=120, help="seconds allowed to catch up after a fault")
    p.add_argument("--faults", default=",".join(sorted(faults.FAULTS)),
                   help=f"comma-separated kinds (default all: {', '.join(sorted(faults.FAULTS))})")
    p.add_argument("--seed", type=int, default=1, help="random seed for the fault schedule")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(faults.FAULTS))
    if unknown or not kinds:
        p.error(f"--faults {args.faults!r}: unknown {', '.join(unknown) or 'none given'}; "
                f"known: {', '.join(sorted(faults.FAULTS))}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    home = Path(tempfile.mkdtemp(prefix="paymigrate-soak-"))
    home.chmod(0o755)  # the servers run as the unprivileged service user
    stack = LocalStack(home, env="soak")
    stack.up()
    try:
        result = soak(stack, minutes=args.minutes, tps=args.tps, rows=args.rows, every=args.every,
                      validate_every=args.validate_every, catch_up=args.catch_up, kinds=kinds,
                      seed_value=args.seed, folder=home / "workload")
    finally:
        stack.down(purge=True)
    if args.json:
        print(json.dumps({**asdict(result), "ok": result.ok}, indent=2))
    else:
        kinds_seen = Counter(f["fault"] for f in result.faults)
        print(f"soak: {result.minutes:g} min at {result.tps:g} tps, {len(result.faults)} faults injected "
              f"({', '.join(f'{k} {n}' for k, n in sorted(kinds_seen.items())) or 'none'})")
        for f in result.faults:
            print(f"  {f['at_seconds']:>7.1f}s  {f['fault']:<22} caught up: {f['caught_up']}")
        print(f"validations: {', '.join(result.validations)}")
        print(f"transactions committed {result.committed}, lost {result.lost}, duplicated {result.duplicated}; "
              f"client retries {result.retries or 'none'}")
        print("soak: OK" if result.ok else "soak: FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
