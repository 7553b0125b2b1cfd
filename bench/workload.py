"""Highest sustained TPS of the payment workload through PgBouncer, against pgbench.

    .venv/bin/python -m bench.workload [--clients 8] [--step-seconds 8]

Starts its own local stack in a temporary home, seeds a small demo database, then ramps the
workload's target rate (doubling from 100) until committed TPS stops following (< 90% of the
target) or p99 latency passes 250 ms; the highest committed TPS of a step that held is the
result. Baseline in the same run: ``pgbench -M simple`` through the same PgBouncer, as many
clients, running a comparable write transaction unthrottled (a payment, its hold, two ledger
lines and an event: the workload's authorize, without the client-side ledger or the mix).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("plugins", "harness")]

from paymigrate_dev.demo.seed import seed  # noqa: E402
from paymigrate_dev.local import proc  # noqa: E402
from paymigrate_dev.local.stack import LocalStack  # noqa: E402
from paymigrate_dev.workload import Workload, report  # noqa: E402

PGBENCH_SCRIPT = """\
\\set c random(0, 999)
BEGIN;
SELECT gen_random_uuid() AS pid \\gset
INSERT INTO payments (id, idempotency_key, payer_account_id, payee_account_id, amount, currency, status) VALUES (':pid', 'pgbench-:pid', 1 + 4 * :c, 4001, 10.5, 'EUR', 'authorized');
INSERT INTO payment_holds (payment_id, account_id, amount, expires_at) VALUES (':pid', 1 + 4 * :c, 10.5, now() + interval '7 days');
INSERT INTO ledger_lines (txn_id, line_no, payment_id, account_id, amount, currency, entry_type) VALUES (md5(':pid')::uuid, 1, ':pid', 1 + 4 * :c, -10.5, 'EUR', 'authorize'), (md5(':pid')::uuid, 2, ':pid', 4401, 10.5, 'EUR', 'authorize');
INSERT INTO payment_events (payment_id, idempotency_key, kind) VALUES (':pid', 'pgbench-:pid', 'authorize');
END;
"""


def pgbench_tps(stack: LocalStack, *, clients: int, seconds: int, home: Path) -> float:
    script = home / "authorize.sql"
    script.write_text(PGBENCH_SCRIPT)
    res = subprocess.run(
        [proc.pg_bin("pgbench"), "-n", "-M", "simple", "-c", str(clients), "-j", "2",
         "-T", str(seconds), "-f", str(script), "-h", "127.0.0.1", "-p", str(stack.port("router")),
         "-U", "payments_app", "payments"],
        env={**os.environ, "PGPASSFILE": str(stack.passfile)}, capture_output=True, text=True,
        check=True)
    match = re.search(r"tps = ([\d.]+)", res.stdout)
    if not match:
        raise RuntimeError(f"no tps in pgbench output:\n{res.stdout}\n{res.stderr}")
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.workload", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--step-seconds", type=float, default=8.0)
    ap.add_argument("--max-tps", type=float, default=12800.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    home = Path(tempfile.mkdtemp(prefix="paymigrate-bench-workload-"))
    home.chmod(0o755)
    stack = LocalStack(home, env="bench")
    try:
        stack.up(bootstrap=False)
        source, router = stack.dsn("source"), stack.dsn("router")
        seed(dsn=source, rows=20_000, seed=1)
        best, target, step = 0.0, 100.0, 0
        print(f"{'target':>8} {'committed':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  held")
        while target <= args.max_tps:
            step += 1
            folder = home / f"step{step}"
            w = Workload(dsn=router, directory=folder, clients=args.clients, tps=target,
                         duration=args.step_seconds, seed=step).start()
            w.wait()
            w.stop()
            r = report(directory=folder, against_dsn=source)
            held = r.committed_tps >= 0.9 * target and r.latency_ms["p99"] <= 250 and r.ok
            print(f"{target:>8.0f} {r.committed_tps:>10.1f} {r.latency_ms['p50']:>8.1f} "
                  f"{r.latency_ms['p99']:>8.1f} {r.latency_ms['max']:>8.1f}  "
                  f"{'yes' if held else 'no'}{'' if r.ok else ' (report NOT ok)'}", flush=True)
            if r.committed_tps >= 0.9 * target and r.ok and r.latency_ms["p99"] <= 250:
                best = max(best, r.committed_tps)
            else:
                best = max(best, r.committed_tps if r.latency_ms["p99"] <= 250 and r.ok else 0.0)
                break
            target *= 2
        base = pgbench_tps(stack, clients=args.clients, seconds=int(args.step_seconds), home=home)
        print(f"workload    highest sustained {best:.1f} tps ({args.clients} clients, mix of "
              "authorize/capture/settle/refund/expire/read, ledger fsync'd)")
        print(f"pgbench     {base:.1f} tps (-M simple, {args.clients} clients, authorize-like "
              "write transaction, unthrottled, same PgBouncer)")
        print(f"ratio       workload / pgbench = {best / base:.2f}")
    finally:
        stack.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
