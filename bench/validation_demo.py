"""Validation of the whole demo schema (7 tables, every key shape) against a lower bound and reladiff.

Both sides are seeded alike (``paymigrate_dev.demo.seed``, same seed: equal data), then a few
differences are made on the target in five tables: the bigint key of accounts, the uuid keys of
payments and payment_events' bigint, the (uuid, smallint) key of ledger_lines, and the keyless
settlement_staging. Measured, in this order:

- under the workload: logical replication from source to target (``copy_data = false``: the
  data is already equal), the payment workload at ``--tps`` on the source, and
  ``paymigrate.validation.validate`` with the replication's catch-up, which must match;
- then, idle, with the differences made:
  - lower bound: one 32-bit hash aggregate per table (``count(*), sum(hashtext(t::text))``) on
    both servers at once, table after table, jit off, with the server's parallel workers (two:
    its fastest here; without them it takes 1.6x the time for the same CPU);
  - this engine: ``validate`` of every table, best of two runs like the lower bound;
  - reladiff 0.6 with exact flags, one run per keyed table (it needs a key: not the keyless one).

The composite-key table alone is reported beside, against its own share of the lower bound.
Beside each wall time, the CPU seconds both servers spent on it (:class:`bench.common.ServerCpu`):
on a machine that other work shares, their ratio is the steadier figure.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from psycopg2 import sql
from psycopg2.extensions import make_dsn, parse_dsn

from bench.common import ServerCpu, cpu_of, execute, reladiff, timed_cpu, uri
from paymigrate.db import Endpoint
from paymigrate.replication.logical import LogicalEngine
from paymigrate.validation import validate, validate_table
from paymigrate.validation.report import Report
from paymigrate_dev.demo.seed import TABLES, seed
from paymigrate_dev.workload import Workload, WorkloadStats

COMPOSITE = "ledger_lines"
KEYS = {"accounts": ("id",), "payments": ("id",), "payment_holds": ("payment_id",),
        "ledger_lines": ("txn_id", "line_no"), "refunds": ("id",), "payment_events": ("id",)}


@dataclass(frozen=True)
class Change:
    table: str
    kind: str  # missing, extra or different
    key: tuple[str, ...]


def _key_at(dsn: str, table: str, fraction: float) -> tuple[str, ...]:
    cols = sql.SQL(", ").join(sql.Identifier(k) for k in KEYS[table])
    text = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in KEYS[table])
    rows = execute(dsn, sql.SQL("SELECT {} FROM {} ORDER BY {} OFFSET (SELECT (count(*) * {})::bigint "
                                "FROM {}) LIMIT 1").format(text, sql.Identifier(table), cols,
                                                           sql.Literal(fraction), sql.Identifier(table)))
    return tuple(rows[0])


def make_differences(target: str) -> list[Change]:
    """Scattered deletes, inserts and updates on the target; the keyed ones it made."""
    changes: list[Change] = []
    for frac in (0.1, 0.6):
        k = _key_at(target, "ledger_lines", frac)
        execute(target, "SET session_replication_role = replica; "
                        "DELETE FROM ledger_lines WHERE (txn_id, line_no) = (%s::uuid, %s::smallint)", k)
        changes.append(Change("ledger_lines", "missing", k))
    for frac in (0.3, 0.9):
        k = _key_at(target, "ledger_lines", frac)
        execute(target, "UPDATE ledger_lines SET amount = amount * 2 "
                        "WHERE (txn_id, line_no) = (%s::uuid, %s::smallint)", k)
        changes.append(Change("ledger_lines", "different", k))
    k = _key_at(target, "ledger_lines", 0.5)
    execute(target, "INSERT INTO ledger_lines SELECT txn_id, 99, payment_id, account_id, amount, "
                    "currency, entry_type, posted_at FROM ledger_lines "
                    "WHERE (txn_id, line_no) = (%s::uuid, %s::smallint)", k)
    changes.append(Change("ledger_lines", "extra", (k[0], "99")))
    k = _key_at(target, "payments", 0.4)
    execute(target, "SET session_replication_role = replica; DELETE FROM payments WHERE id = %s::uuid", k)
    changes.append(Change("payments", "missing", k))
    k = _key_at(target, "payments", 0.7)
    execute(target, "UPDATE payments SET metadata = metadata || '{\"x\": 1}' WHERE id = %s::uuid", k)
    changes.append(Change("payments", "different", k))
    k = _key_at(target, "payment_events", 0.2)
    execute(target, "UPDATE payment_events SET kind = kind || '!' WHERE id = %s::bigint", k)
    changes.append(Change("payment_events", "different", k))
    k = _key_at(target, "accounts", 0.5)
    execute(target, "UPDATE accounts SET name = name || ' ' WHERE id = %s::bigint", k)
    changes.append(Change("accounts", "different", k))
    # Keyless: one row changed is one row fewer and one more, as a multiset.
    execute(target, "UPDATE settlement_staging SET amount = amount + 1 "
                    "WHERE ctid = (SELECT ctid FROM settlement_staging LIMIT 1)")
    return changes


def _lower_bound_table(source: str, target: str, table: str) -> float:
    statement = sql.SQL("SET jit = off; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; "
                        "SELECT count(*), sum(hashtext(t::text)) FROM {} t").format(sql.Identifier(table))
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda dsn: execute(dsn, statement), (source, target)))
    return time.monotonic() - started


def lower_bound(source: str, target: str, meters: list[ServerCpu]) -> tuple[dict[str, float], float | None]:
    """Seconds per table of the lower bound (best of two, after a warming run), and the CPU
    seconds of one pass over every table."""
    best: dict[str, float] = {}
    cpu = None
    for attempt in range(3):
        secs, cpu_pass = cpu_of(meters, lambda: {t: _lower_bound_table(source, target, t)
                                                 for t in TABLES})
        if attempt:
            best = {t: min(best.get(t, s), s) for t, s in secs.items()}
            cpu = cpu_pass if cpu is None or cpu_pass is None else min(cpu, cpu_pass)
    return best, cpu


def under_workload(source: str, target: str, *, tps: float, password: str | None
                   ) -> tuple[float, float | None, Report, WorkloadStats]:
    """Validation with replication live and the workload writing: (seconds, CPU seconds,
    report, workload stats)."""
    sub = "validation_bench"
    conninfo = make_dsn(source, password=password) if password else source
    meters = [ServerCpu(source), ServerCpu(target)]
    replication = LogicalEngine(source=Endpoint.from_dsn(source), target=Endpoint.from_dsn(target), name=sub)
    try:
        execute(source, f"CREATE PUBLICATION {sub} FOR ALL TABLES")
        execute(target, f"CREATE SUBSCRIPTION {sub} CONNECTION %s PUBLICATION {sub} "
                        "WITH (copy_data = false)", (conninfo,))
        with tempfile.TemporaryDirectory(prefix="validation-bench-") as journal:
            workload = Workload(dsn=source, directory=journal, clients=4, tps=tps, seed=14).start()
            try:
                time.sleep(5)  # writes and replication under way before the first snapshot
                report, seconds, cpu = timed_cpu(meters, lambda: validate(
                    source=source, target=target, max_keys=100,
                    catch_up=lambda lsn: replication.catch_up(lsn, timeout=60)))
            finally:
                stats = workload.stop()
    finally:
        execute(target, f"DROP SUBSCRIPTION IF EXISTS {sub}")
        execute(source, f"DROP PUBLICATION IF EXISTS {sub}")
    return seconds, cpu, report, stats


def _found(report) -> set[Change]:
    out = set()
    for t in report.tables:
        name = t.table.split(".", 1)[1]
        for kind in ("missing", "extra", "different"):
            for key in getattr(t, kind):
                out.add(Change(name, kind, tuple(str(v) for v in (key if isinstance(key, list) else [key]))))
    return out


@dataclass(frozen=True)
class Figures:
    """One size's results, for the side-by-side summary."""

    payments: int
    rows: int  # on the two sides
    lower: float
    idle: float
    live: float
    reladiff: float
    composite_lower: float
    composite: float
    cpu_idle: float | None  # CPU ratios against the lower bound's
    cpu_live: float | None
    exact: bool

    def line(self) -> str:
        cpu = ("" if self.cpu_idle is None or self.cpu_live is None
               else f" {self.cpu_idle:>8.2f}x {self.cpu_live:>8.2f}x")
        return (f"{self.payments:>10,} {self.rows:>12,} {self.lower:>8.1f} {self.idle / self.lower:>7.2f}x "
                f"{self.composite / self.composite_lower:>9.2f}x {self.live / self.idle:>9.2f}x "
                f"{self.reladiff / self.lower:>9.2f}x{cpu} {'yes' if self.exact else 'NO':>6}")


SUMMARY_HEADER = (f"{'payments':>10} {'rows':>12} {'lower s':>8} {'idle':>8} {'composite':>10} "
                  f"{'live/idle':>10} {'reladiff':>10} {'CPU idle':>9} {'CPU live':>9} {'exact':>6}")


def run(source: str, target: str, *, rows: int, passwords: tuple[str | None, str | None],
        tps: float = 200) -> Figures:
    print(f"seeding the demo schema with {rows} payments on both sides ...", flush=True)
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda dsn: seed(dsn=dsn, rows=rows, seed=0, replace=True,
                                                 app_role=parse_dsn(dsn)["user"]).counts,
                               (source, target)))[0]
    total = sum(counts.values())
    print(f"seeded in {time.monotonic() - started:.0f}s: {total:,} rows per side "
          f"({', '.join(f'{t} {n:,}' for t, n in counts.items())})")
    for dsn in (source, target):
        execute(dsn, "VACUUM ANALYZE")
    print(f"validating under the workload ({tps:.0f} TPS, replication live) ...", flush=True)
    live_secs, live_cpu, live, stats = under_workload(source, target, tps=tps, password=passwords[0])
    changes = make_differences(target)
    for dsn in (source, target):
        execute(dsn, "VACUUM ANALYZE")
    meters = [ServerCpu(source), ServerCpu(target)]
    bound, bound_cpu = lower_bound(source, target, meters)
    # Best of two, as the lower bound is (its first pass warmed the caches for both).
    runs = [timed_cpu(meters, lambda: validate(source=source, target=target, max_keys=100))
            for _ in range(2)]
    report = runs[0][0]
    ours = min(w for _, w, _ in runs)
    cpus = [c for _, _, c in runs if c is not None]
    ours_cpu = min(cpus) if len(cpus) == len(runs) else None
    staging = next(t for t in report.tables if t.table == "public.settlement_staging")
    started = time.monotonic()
    alone = validate_table(source=source, target=target, table=COMPOSITE)
    ours_composite = time.monotonic() - started
    uris = (uri(source, passwords[0]), uri(target, passwords[1]))
    rel = {t: reladiff(*uris, t, KEYS[t]) for t in KEYS}
    rel_seconds = sum(s for s, _, _ in rel.values())
    rel_keys = set().union(*(k for _, k, _ in rel.values() if k is not None))
    expected = {(c.table, c.key) for c in changes}

    def cpu(secs: float | None, base: float | None) -> str:
        return "" if secs is None or not base else f" {secs:>9.1f} {secs / base:>8.2f}x"

    lower = sum(bound.values())
    both = 2 * total
    print(f"\nall 7 tables ({both:,} rows on the two sides):")
    print(f"{'contender':<34} {'seconds':>8} {'rows/s':>12} {'vs lower bound':>15} "
          f"{'CPU s':>9} {'CPU vs':>9}")
    for name, secs, used in (("lower bound (hash agg, both sides)", lower, bound_cpu),
                             ("paymigrate validate, idle", ours, ours_cpu),
                             (f"paymigrate validate, {tps:.0f} TPS live", live_secs, live_cpu),
                             ("reladiff 0.6 (6 keyed tables)", rel_seconds, None)):
        print(f"{name:<34} {secs:>8.2f} {both / secs:>12,.0f} {secs / lower:>14.2f}x"
              f"{cpu(used, bound_cpu)}")
    print(f"under the workload: {live_secs / ours:.2f}x the idle time, "
          + (f"{live_cpu / ours_cpu:.2f}x its CPU; " if live_cpu and ours_cpu else "")
          + f"{live.status} ({live.mismatches} rows differ, "
          f"{sum(t.rechecks for t in live.tables)} re-check rounds); workload committed "
          f"{stats.committed} at {stats.tps:.0f} TPS, {sum(stats.failed_by_kind.values())} failed")
    comp_rows = 2 * counts[COMPOSITE]
    print(f"\n{COMPOSITE} alone (composite key, {comp_rows:,} rows on the two sides):")
    for name, secs in (("lower bound", bound[COMPOSITE]), ("paymigrate validate_table", ours_composite),
                       ("reladiff 0.6", rel[COMPOSITE][0])):
        print(f"{name:<34} {secs:>8.2f} {comp_rows / secs:>12,.0f} {secs / bound[COMPOSITE]:>14.2f}x")
    found = _found(report)
    print(f"\npaymigrate found exactly the {len(changes)} keyed changes: "
          f"{found == set(changes)}; keyless settlement_staging surplus "
          f"{staging.source_surplus}/{staging.target_surplus} (expected 1/1); "
          f"{COMPOSITE} alone: {alone.differences} differences (expected 5)")
    if found != set(changes):
        print(f"  missed {sorted(map(str, set(changes) - found))}; "
              f"unexpected {sorted(map(str, found - set(changes)))}")
    failed = {t: e for t, (_, k, e) in rel.items() if k is None}
    wanted = {k for _, k in expected}
    print(f"reladiff found exactly the keyed changes: {rel_keys == wanted}"
          + (f"; failed on {failed}" if failed else ""))
    if rel_keys != wanted:
        print(f"  missed {sorted(wanted - rel_keys)}; unexpected {sorted(rel_keys - wanted)}")
    return Figures(
        payments=rows, rows=both, lower=lower, idle=ours, live=live_secs, reladiff=rel_seconds,
        composite_lower=bound[COMPOSITE], composite=ours_composite,
        cpu_idle=ours_cpu / bound_cpu if ours_cpu and bound_cpu else None,
        cpu_live=live_cpu / bound_cpu if live_cpu and bound_cpu else None,
        exact=found == set(changes) and staging.source_surplus == staging.target_surplus == 1
        and alone.differences == 5 and live.status == "match")
