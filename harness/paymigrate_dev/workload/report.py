"""Check a database against the workload's ledger: what was committed, found, lost, duplicated.

Definitions (per committed operation in the ledger; ``committed = found + lost``):

- found: every effect of the operation is present. authorize: the payment row with its id,
  key and amount, in ``authorized`` or a later status; its ledger lines; its event. capture /
  settle / expire: the payment in that status or a later one on the same branch (captured <
  settled < partially_refunded < refunded; expired apart); capture and expire: the hold row absent
  (a delete counts as found when the row is gone); settle: its settlement line. refund: the refund
  row with its amount, and the payment's refunded amount at least what this refund brought it to.
  Every operation: its event row, and its ledger lines (count and total) under its transaction id.
- lost: a committed operation with any of those effects absent (the report lists what is missing).
- duplicated: an effect present more than once. The unique keys make most duplicates impossible
  on a database built from the demo schema, but a copy can lack them (a DMS-created target has
  only primary keys) and an event log has no unique key by design, so the report counts by the
  operation's idempotency key, not by trusting constraints: more than one event, payment, refund
  or settlement line with the key, or more ledger lines under its transaction id than it wrote.
  A duplicated operation is also found.
- unresolved: operations whose COMMIT outcome the client could never learn; reported apart, not
  in ``committed``, with how many of them show up in the database.

Invariants, over the whole database (seeded rows included): every ledger transaction sums to
zero per currency; every payment has ledger lines; each currency's lines sum to zero; every
payment's refunded amount equals the sum of its refunds and stays within its amount.

Timing: latency is per operation, from first attempt to commit, retries included. The longest
stall is the longest time any client waited on an operation while no other operation committed:
for each operation, its end minus the later of its start and the last commit before its end.
A PgBouncer PAUSE of 2 s shows as a stall of about 2 s.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg2

from paymigrate.db import connect
from paymigrate.errors import WorkloadError
from paymigrate_dev.workload.ledger import ledger_files, read_ledger
from paymigrate_dev.workload.ops import reached

log = logging.getLogger(__name__)

CHUNK = 5000
EXAMPLES = 10


@dataclass(frozen=True)
class HeldFacts:
    """What the database holds for one operation's keys."""

    events: int = 0
    lines: int = 0
    lines_abs: Decimal = Decimal(0)
    payments_by_key: int = 0
    payment: tuple[str, Decimal, Decimal, str] | None = None  # status, amount, refunded, key
    hold: bool = False
    refunds_by_key: int = 0
    refund_amount: Decimal | None = None
    staged_by_key: int = 0


@dataclass(frozen=True)
class Verdict:
    found: bool
    duplicated: bool
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()


def judge(op: dict, f: HeldFacts) -> Verdict:
    """Found / duplicated for one ledger ``op`` record given the database's ``f``acts."""
    missing, extra = [], []
    if f.events == 0:
        missing.append("event")
    elif f.events > 1:
        extra.append(f"{f.events} events")
    lines = op.get("lines") or []
    want_abs = sum((abs(Decimal(a)) for _, _, a in lines), Decimal(0))
    if lines and f.lines < len(lines):
        missing.append(f"ledger lines ({f.lines} of {len(lines)})")
    elif lines and f.lines == len(lines) and f.lines_abs != want_abs:
        missing.append(f"ledger line amounts (total {f.lines_abs}, wrote {want_abs})")
    elif f.lines > len(lines):
        extra.append(f"{f.lines} ledger lines, wrote {len(lines)}")
    kind = op["kind"]
    if f.payment is None:
        missing.append("payment")
    else:
        status, amount, refunded, key = f.payment
        if not reached(status, op["status"]):
            missing.append(f"payment status {op['status']} (found {status})")
        if kind == "authorize" and (key != op["key"] or amount != Decimal(op["amount"])):
            missing.append(f"payment key/amount (found {key}, {amount})")
        if kind == "refund" and status != "expired" and refunded < Decimal(op["refunded"]):
            missing.append(f"refunded amount {op['refunded']} (found {refunded})")
    if kind == "authorize" and f.payments_by_key > 1:
        extra.append(f"{f.payments_by_key} payments with its key")
    if kind in ("capture", "expire") and f.hold:
        missing.append("hold deletion")
    if kind == "settle":
        if f.staged_by_key == 0:
            missing.append("settlement line")
        elif f.staged_by_key > 1:
            extra.append(f"{f.staged_by_key} settlement lines")
    if kind == "refund":
        if f.refunds_by_key == 0:
            missing.append("refund row")
        else:
            if f.refunds_by_key > 1:
                extra.append(f"{f.refunds_by_key} refunds with its key")
            if f.refund_amount != Decimal(op["refund"]) * f.refunds_by_key:
                missing.append(f"refund amount {op['refund']} (found {f.refund_amount})")
    return Verdict(found=not missing, duplicated=bool(extra), missing=tuple(missing),
                   extra=tuple(extra))


# ---- timing (pure) ---------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 when empty)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


def longest_stall(intervals: Iterable[tuple[float, float]], commits: Iterable[float]) -> float:
    """For each (start, end) an operation waited, the time from the later of its start and the
    last commit before its end, to its end; the maximum of those."""
    times = sorted(commits)
    worst = 0.0
    for start, end in intervals:
        i = bisect.bisect_left(times, end)  # commits strictly before this operation's end
        last = times[i - 1] if i else start
        worst = max(worst, end - max(start, last))
    return worst


# ---- the report ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkloadReport:
    committed: int
    found: int
    lost: int
    duplicated: int
    unresolved: int = 0
    unresolved_present: int = 0
    committed_by_kind: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    retries_by_kind: dict[str, int] = field(default_factory=dict)
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    read_mismatches: int = 0
    invariants: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    longest_stall_seconds: float = 0.0
    committed_tps: float = 0.0
    runs: int = 0
    seconds: float = 0.0
    lost_examples: list[dict] = field(default_factory=list)
    duplicated_examples: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.committed != self.found + self.lost:
            raise ValueError(f"committed {self.committed} != found {self.found} + lost {self.lost}")

    @property
    def invariants_ok(self) -> bool:
        return all(v == 0 for v in self.invariants.values())

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing applied twice, invariants hold, every read saw its write."""
        return (self.lost == 0 and self.duplicated == 0 and self.invariants_ok
                and self.read_mismatches == 0 and self.unresolved == 0)

    def to_dict(self) -> dict:
        return {**asdict(self), "invariants_ok": self.invariants_ok, "ok": self.ok}


def load(directory: Path | str) -> list[list[dict]]:
    """Every run's records, oldest run first."""
    files = ledger_files(directory)
    if not files:
        raise WorkloadError(f"no workload ledger under {Path(directory) / 'ledger'}: "
                            "run `paymigrate workload start` first")
    return [list(read_ledger(f)) for f in files]


def report(*, directory: Path | str, against_dsn: str) -> WorkloadReport:
    """Check the database at ``against_dsn`` against the ledger in ``directory``."""
    runs = load(directory)
    records = [r for run in runs for r in run]
    committed = [r for r in records if r.get("type") == "op"]
    unresolved = [r for r in records if r.get("type") == "unresolved"]
    try:
        conn = connect(against_dsn, application_name="paymigrate-workload-report")
    except psycopg2.Error as exc:
        raise WorkloadError(f"cannot connect to the database to check: {exc}") from None
    try:
        # One snapshot for every query: a write landing mid-report cannot make it inconsistent.
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            verdicts = [judge(op, f) for op, f in zip(committed, fetch_facts(cur, committed),
                                                       strict=True)]
            present = sum(judge(op, f).found for op, f in zip(
                unresolved, fetch_facts(cur, unresolved), strict=True))
            inv = invariants(cur)
        conn.commit()
    except psycopg2.Error as exc:
        raise WorkloadError(f"checking the ledger against the database failed: "
                            f"{str(exc).strip()}") from None
    finally:
        conn.close()
    lost = [(op, v) for op, v in zip(committed, verdicts, strict=True) if not v.found]
    dup = [(op, v) for op, v in zip(committed, verdicts, strict=True) if v.duplicated]
    latencies = sorted(r["t1"] - r["t0"] for r in committed)
    stall, seconds = 0.0, 0.0
    for run in runs:
        ops_ = [r for r in run if r.get("type") in ("op", "failed", "unresolved", "abandoned")]
        commits = [r["t1"] for r in run if r.get("type") == "op"]
        stall = max(stall, longest_stall([(r["t0"], r["t1"]) for r in ops_], commits))
        ends = [r.get("t1", r.get("t", 0.0)) for r in run if r.get("type") != "run"]
        seconds += max(ends, default=0.0)
    errors = Counter(f"{r['kind']}:{r['type']}" for r in records
                     if r.get("type") in ("failed", "abandoned"))
    result = WorkloadReport(
        committed=len(committed), found=len(committed) - len(lost), lost=len(lost),
        duplicated=len(dup), unresolved=len(unresolved), unresolved_present=present,
        committed_by_kind=dict(Counter(r["kind"] for r in committed)),
        failed=sum(errors.values()),
        retries_by_kind=dict(Counter(r["kind"] for r in records if r.get("type") == "retry")),
        errors_by_kind=dict(errors),
        read_mismatches=sum(1 for r in records if r.get("type") == "read_mismatch"),
        invariants=inv,
        latency_ms={name: round(percentile(latencies, q) * 1000, 1)
                    for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))},
        longest_stall_seconds=round(stall, 3),
        committed_tps=round(len(committed) / seconds, 1) if seconds else 0.0,
        runs=len(runs), seconds=round(seconds, 3),
        lost_examples=[{"key": op["key"], "kind": op["kind"], "payment": op["payment"],
                        "missing": list(v.missing)} for op, v in lost[:EXAMPLES]],
        duplicated_examples=[{"key": op["key"], "kind": op["kind"], "payment": op["payment"],
                              "extra": list(v.extra)} for op, v in dup[:EXAMPLES]])
    log.info("workload report: %d committed, %d found, %d lost, %d duplicated, invariants %s",
             result.committed, result.found, result.lost, result.duplicated,
             "ok" if result.invariants_ok else inv)
    return result


def fetch_facts(cur, records: list[dict]) -> list[HeldFacts]:
    """The database's :class:`HeldFacts` for each record, fetched in chunks by key."""
    out: list[HeldFacts] = []
    for i in range(0, len(records), CHUNK):
        out.extend(_chunk_facts(cur, records[i:i + CHUNK]))
    return out


def _chunk_facts(cur, chunk: list[dict]) -> list[HeldFacts]:
    keys = [r["key"] for r in chunk]
    txns = [r["txn"] for r in chunk]
    pids = sorted({r["payment"] for r in chunk})
    cur.execute("SELECT idempotency_key, count(*) FROM payment_events "
                "WHERE idempotency_key = ANY(%s) GROUP BY 1", (keys,))
    events = dict(cur.fetchall())
    cur.execute("SELECT txn_id::text, count(*), sum(abs(amount)) FROM ledger_lines "
                "WHERE txn_id = ANY(%s::uuid[]) GROUP BY 1", (txns,))
    lines = {t: (n, s) for t, n, s in cur.fetchall()}
    cur.execute("SELECT id::text, status::text, amount, refunded_amount, idempotency_key "
                "FROM payments WHERE id = ANY(%s::uuid[])", (pids,))
    payments = {pid: (s, a, r, k) for pid, s, a, r, k in cur.fetchall()}
    cur.execute("SELECT idempotency_key, count(*) FROM payments WHERE idempotency_key = ANY(%s) "
                "GROUP BY 1", (keys,))
    by_key = dict(cur.fetchall())
    cur.execute("SELECT DISTINCT payment_id::text FROM payment_holds "
                "WHERE payment_id = ANY(%s::uuid[])", (pids,))
    holds = {r[0] for r in cur.fetchall()}
    cur.execute("SELECT idempotency_key, count(*), sum(amount) FROM refunds "
                "WHERE idempotency_key = ANY(%s) GROUP BY 1", (keys,))
    refunds = {k: (n, s) for k, n, s in cur.fetchall()}
    cur.execute("SELECT idempotency_key, count(*) FROM settlement_staging "
                "WHERE idempotency_key = ANY(%s) GROUP BY 1", (keys,))
    staged = dict(cur.fetchall())
    facts = []
    for r in chunk:
        n_lines, abs_sum = lines.get(r["txn"], (0, Decimal(0)))
        n_refunds, refund_sum = refunds.get(r["key"], (0, None))
        facts.append(HeldFacts(events=events.get(r["key"], 0), lines=n_lines, lines_abs=abs_sum,
                           payments_by_key=by_key.get(r["key"], 0),
                           payment=payments.get(r["payment"]), hold=r["payment"] in holds,
                           refunds_by_key=n_refunds, refund_amount=refund_sum,
                           staged_by_key=staged.get(r["key"], 0)))
    return facts


INVARIANTS = {
    "unbalanced_ledger_transactions": """
        SELECT count(*) FROM (SELECT 1 FROM ledger_lines GROUP BY txn_id, currency
                              HAVING sum(amount) <> 0) t""",
    "payments_without_ledger_lines": """
        SELECT count(*) FROM payments p
        WHERE NOT EXISTS (SELECT 1 FROM ledger_lines l WHERE l.payment_id = p.id)""",
    "unbalanced_currencies": """
        SELECT count(*) FROM (SELECT 1 FROM ledger_lines GROUP BY currency
                              HAVING sum(amount) <> 0) t""",
    "refund_mismatches": """
        SELECT count(*) FROM payments p
        LEFT JOIN (SELECT payment_id, sum(amount) AS total FROM refunds GROUP BY 1) r
               ON r.payment_id = p.id
        WHERE p.refunded_amount <> coalesce(r.total, 0) OR p.refunded_amount > p.amount""",
}


def invariants(cur) -> dict[str, int]:
    """Count of violations per invariant (0 everywhere when the ledger is consistent)."""
    out = {}
    for name, query in INVARIANTS.items():
        cur.execute(query)
        out[name] = int(cur.fetchone()[0])
    return out
