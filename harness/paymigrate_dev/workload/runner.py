"""The workload: N client threads writing payments at a target rate, each commit in the ledger.

Each client owns the payments it creates (no two clients touch the same row, so conflicts
come only from faults, never from the mix) and picks its next operation from a fixed mix:
authorize (create a payment, its hold, ledger lines and event under a new idempotency key),
capture, settle, refund, expire (deletes the hold), and a read-your-writes check that reads a
payment back and compares it with what the client committed last.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg2

from paymigrate.db import connect
from paymigrate.errors import WorkloadError
from paymigrate_dev.workload import ops
from paymigrate_dev.workload.client import ABANDONED, COMMITTED, UNRESOLVED, Client
from paymigrate_dev.workload.ledger import LedgerWriter, new_ledger_path
from paymigrate_dev.workload.reads import ReadSplit

log = logging.getLogger(__name__)

MIX = (("authorize", 40), ("capture", 23), ("settle", 17), ("refund", 11), ("expire", 9))
# Share of beats that also read a payment back first; reads do not count toward the target rate,
# which is a rate of write transactions.
READ_CHECK_SHARE = 0.12
# Share of beats that also run a read-only query, routed by the read canary's split (with reads).
READ_ONLY_SHARE = 0.3
POOL_LIMIT = 2000  # payments a client remembers per state


@dataclass(frozen=True)
class WorkloadStats:
    run_id: str
    running: bool
    elapsed_seconds: float
    committed: int
    committed_by_kind: dict[str, int] = field(default_factory=dict)
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    retries_by_kind: dict[str, int] = field(default_factory=dict)
    reads: int = 0
    read_mismatches: int = 0
    unresolved: int = 0
    read_routes: dict[str, dict] = field(default_factory=dict)  # the canary's reads, per route

    @property
    def tps(self) -> float:
        return self.committed / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "tps": round(self.tps, 1)}


@dataclass(frozen=True)
class Accounts:
    """Per currency: customer ids, merchant ids, the clearing account."""

    customers: dict[str, list[int]]
    merchants: dict[str, list[int]]
    clearing: dict[str, int]

    def __post_init__(self) -> None:
        usable = [c for c in self.clearing if self.customers.get(c) and self.merchants.get(c)]
        if not usable:
            raise WorkloadError("no currency has customer, merchant and clearing accounts: "
                                "seed the database first (paymigrate seed)")

    @property
    def currencies(self) -> list[str]:
        return sorted(c for c in self.clearing if self.customers.get(c) and self.merchants.get(c))


def load_accounts(dsn: str) -> Accounts:
    try:
        conn = connect(dsn, application_name="paymigrate-workload")
    except psycopg2.Error as exc:
        raise WorkloadError(f"cannot connect to the workload's database: {exc}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, kind, currency FROM accounts ORDER BY id")
            rows = cur.fetchall()
        conn.commit()
    except psycopg2.errors.UndefinedTable:
        raise WorkloadError("the database has no accounts table: seed it first "
                            "(paymigrate seed)") from None
    finally:
        conn.close()
    customers: dict[str, list[int]] = {}
    merchants: dict[str, list[int]] = {}
    clearing: dict[str, int] = {}
    for acct, kind, cur_code in rows:
        if kind == "customer":
            customers.setdefault(cur_code, []).append(acct)
        elif kind == "merchant":
            merchants.setdefault(cur_code, []).append(acct)
        elif kind == "clearing":
            clearing.setdefault(cur_code, acct)
    return Accounts(customers, merchants, clearing)


class Workload:
    """``start()`` returns at once; ``stop()`` joins the clients and flushes the ledger.

    Bounded by ``duration`` seconds and/or ``count`` write operations attempted; with neither,
    it runs until ``stop()``. ``dsn`` may be several entry points (one per router, as behind a
    load balancer): client ``n`` uses the ``n % len``-th, so the clients spread over all of them."""

    def __init__(self, *, dsn: str | Sequence[str], directory: Path | str, clients: int = 4, tps: float = 100.0,
                 duration: float | None = None, count: int | None = None, seed: int | None = None,
                 retry_timeout: float = 60.0, reads: ReadSplit | None = None):
        if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
            raise WorkloadError(f"clients={clients!r}: expected a positive integer")
        if not tps or tps <= 0:
            raise WorkloadError(f"tps={tps!r}: expected a positive rate")
        if duration is not None and duration <= 0:
            raise WorkloadError(f"duration={duration!r}: expected positive seconds")
        if count is not None and (isinstance(count, bool) or count < 1):
            raise WorkloadError(f"count={count!r}: expected a positive integer")
        self.dsns = [dsn] if isinstance(dsn, str) else list(dsn)
        if not self.dsns:
            raise WorkloadError("dsn: expected at least one entry point")
        self.dsn, self.directory = self.dsns[0], Path(directory)
        self.clients, self.tps, self.duration, self.count = clients, float(tps), duration, count
        self.seed = seed
        self.retry_timeout = retry_timeout
        self.reads = reads
        self.run_id = secrets.token_hex(4)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._claimed = 0
        self._threads: list[threading.Thread] = []
        self._ledger: LedgerWriter | None = None
        self._started = 0.0
        self._ended: float | None = None
        self._committed: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._reads = self._mismatches = self._unresolved = 0
        self._alive = 0

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> Workload:
        if self._threads:
            raise WorkloadError(f"workload run {self.run_id} was already started")
        accounts = load_accounts(self.dsn)
        self.ledger_path = new_ledger_path(self.directory, self.run_id)
        self._ledger = LedgerWriter(self.ledger_path)
        self._started = time.monotonic()
        self._ledger.append({"type": "run", "run": self.run_id, "wall": time.time(),
                             "clients": self.clients, "tps": self.tps, "duration": self.duration,
                             "count": self.count, "seed": self.seed, "pid": os.getpid()})
        log.info("workload %s: %d clients at %.0f tps (duration %s, count %s), ledger %s",
                 self.run_id, self.clients, self.tps, self.duration, self.count, self.ledger_path)
        self._alive = self.clients
        if self.reads is not None:
            self.reads.start()
        for n in range(self.clients):
            rng = random.Random(None if self.seed is None else self.seed * 1000 + n)
            t = threading.Thread(target=self._client, args=(n, rng, accounts),
                                 name=f"workload-{n}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every client has finished (duration or count reached); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def stop(self, *, timeout: float = 90.0) -> WorkloadStats:
        """Ask the clients to stop after their current operation, join them, close the ledger."""
        self._stop.set()
        if not self.wait(timeout):
            log.warning("workload %s: clients still busy after %.0fs; their operations in flight "
                        "are not in the ledger", self.run_id, timeout)
        if self.reads is not None:
            self.reads.stop()
        if self._ledger is not None:
            stats = self.stats()
            self._ledger.append({"type": "end", "run": self.run_id, "t": self._now(),
                                 "stats": stats.to_dict()})
            self._ledger.close()
            self._ledger = None
            log.info("workload %s stopped: %d committed in %.1fs (%.1f tps), retries %s",
                     self.run_id, stats.committed, stats.elapsed_seconds, stats.tps,
                     dict(stats.retries_by_kind) or "none")
        return self.stats()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def stats(self) -> WorkloadStats:
        with self._lock:
            end = self._ended if self._ended is not None and not self.running else time.monotonic()
            return WorkloadStats(
                run_id=self.run_id, running=self.running,
                elapsed_seconds=(end - self._started) if self._started else 0.0,
                committed=sum(self._committed.values()),
                committed_by_kind=dict(self._committed), failed_by_kind=dict(self._failed),
                retries_by_kind=dict(self._retries), reads=self._reads,
                read_mismatches=self._mismatches, unresolved=self._unresolved,
                read_routes={r: f.to_dict() for r, f in self.reads.totals().items()} if self.reads else {})

    # ---- internals -------------------------------------------------------------------------
    def _now(self) -> float:
        return round(time.monotonic() - self._started, 6)

    def _claim(self) -> bool:
        with self._lock:
            if self.count is not None and self._claimed >= self.count:
                return False
            self._claimed += 1
            return True

    def _record(self, record: dict) -> None:
        assert self._ledger is not None
        self._ledger.append(record)

    def _client(self, n: int, rng: random.Random, accounts: Accounts) -> None:
        client = Client(dsn=self.dsns[n % len(self.dsns)], name=f"paymigrate-workload-{n}",
                        retry_timeout=self.retry_timeout, should_stop=self._stop.is_set,
                        on_retry=lambda kind, op, detail: self._on_retry(n, kind, op, detail))
        pools: dict[str, deque[ops.Payment]] = {s: deque(maxlen=POOL_LIMIT) for s in
                                                 ("authorized", "captured", "refundable")}
        known: OrderedDict[str, ops.Payment] = OrderedDict()  # payment id -> last committed
        readers = {"writer": client}
        if self.reads is not None:
            targets = self.reads.target_dsns
            readers["target"] = Client(dsn=targets[n % len(targets)], name=f"paymigrate-reads-{n}")
        interval = self.clients / self.tps
        next_at = time.monotonic() + rng.random() * interval  # spread the clients' first beats
        seq = 0
        try:
            while not self._stop.is_set():
                if self.duration is not None and time.monotonic() - self._started >= self.duration:
                    break
                wait = next_at - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                now = time.monotonic()
                # Fall behind by at most a second, so a stall is not followed by a burst.
                next_at = max(next_at + interval, now - 1.0)
                if known and rng.random() < READ_CHECK_SHARE:
                    self._read_check(n, client, known[rng.choice(list(known))])
                if self.reads is not None and known and rng.random() < READ_ONLY_SHARE:
                    route = self.reads.route(rng)
                    self._read_only(readers[route], route, known[rng.choice(list(known))])
                kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
                if not self._claim():
                    break
                seq += 1
                op = self._plan(kind, f"wl-{self.run_id}-{n:03d}-{seq:09d}", rng, accounts, pools)
                self._execute(n, client, op, pools, known)
        except Exception:
            log.exception("workload client %d stopped on an unexpected error", n)
            with self._lock:
                self._failed["client_crashed"] += 1
        finally:
            for reader in readers.values():
                reader.close()
            with self._lock:
                self._alive -= 1
                if self._alive == 0:
                    self._ended = time.monotonic()

    def _plan(self, kind: str, key: str, rng: random.Random, accounts: Accounts,
              pools: dict[str, deque[ops.Payment]]) -> ops.Operation:
        if kind in ("capture", "expire") and pools["authorized"]:
            p = pools["authorized"].popleft()
            return (ops.capture if kind == "capture" else ops.expire)(key=key, payment=p)
        if kind == "settle" and pools["captured"]:
            return ops.settle(key=key, payment=pools["captured"].popleft())
        if kind == "refund" and pools["refundable"]:
            p = pools["refundable"].popleft()
            left = p.amount - p.refunded
            amount = left if rng.random() < 0.5 else max(ops.CENT, (left / 2).quantize(ops.CENT))
            return ops.refund(key=key, payment=p, amount=amount)
        currency = rng.choice(accounts.currencies)
        amount = Decimal(rng.randint(10_000, 50_000_000)).scaleb(-4)
        return ops.authorize(key=key, currency=currency, amount=amount,
                             payer=rng.choice(accounts.customers[currency]),
                             payee=rng.choice(accounts.merchants[currency]),
                             clearing=accounts.clearing[currency],
                             meta={"channel": rng.choice(("card", "bank_transfer", "wallet")),
                                   "workload_run": self.run_id})

    def _execute(self, n: int, client: Client, op: ops.Operation,
                 pools: dict[str, deque[ops.Payment]], known: OrderedDict[str, ops.Payment]) -> None:
        t0 = self._now()
        outcome = client.run(op)
        t1 = self._now()
        if outcome.status == COMMITTED:
            self._record({"type": "op", "run": self.run_id, "client": n, "t0": t0, "t1": t1,
                          "attempts": outcome.attempts, "lookup": outcome.resolved_by_lookup,
                          **op.record()})
            with self._lock:
                self._committed[op.kind] += 1
            p = op.after
            if p.status == "authorized":
                pools["authorized"].append(p)
            elif p.status == "captured":
                pools["captured"].append(p)
            elif p.status in ("settled", "partially_refunded"):
                pools["refundable"].append(p)
            known[p.id] = p
            known.move_to_end(p.id)
            if len(known) > POOL_LIMIT:
                known.popitem(last=False)
            return
        # Not committed: the payment's state is uncertain only if unresolved; either way this
        # client stops touching it.
        kind = {UNRESOLVED: "unresolved", ABANDONED: "abandoned"}.get(outcome.status, "failed")
        self._record({"type": kind, "run": self.run_id, "client": n, "t0": t0, "t1": t1,
                      "attempts": outcome.attempts, "detail": outcome.detail, **op.record()})
        known.pop(op.after.id, None)
        with self._lock:
            if outcome.status == UNRESOLVED:
                self._unresolved += 1
            else:
                self._failed[f"{op.kind}:{kind}"] += 1
        log.warning("workload client %d: %s %s %s after %d attempts: %s", n, op.kind, op.key,
                    kind, outcome.attempts, outcome.detail)

    def _read_check(self, n: int, client: Client, p: ops.Payment) -> None:
        try:
            row = client.read_payment(p.id)
        except psycopg2.Error as exc:
            self._on_retry(n, "read_failed", None, str(exc).strip().splitlines()[0])
            return
        expected = (p.status, str(p.amount), str(p.refunded.quantize(ops.CENT)))
        with self._lock:
            self._reads += 1
            ok = row is not None and row[0] == p.status and Decimal(row[1]) == p.amount \
                and Decimal(row[2]) == p.refunded
            if not ok:
                self._mismatches += 1
        if not ok:
            self._record({"type": "read_mismatch", "run": self.run_id, "client": n,
                          "t": self._now(), "payment": p.id, "expected": list(expected),
                          "found": list(row) if row else None})
            log.warning("workload client %d: read-your-writes mismatch on payment %s: expected %s, "
                        "found %s", n, p.id, expected, row)

    def _read_only(self, reader: Client, route: str, p: ops.Payment) -> None:
        """One read-only query through ``route``, timed; stale when the payment is not in the
        state this client last committed (the route lags the writer)."""
        assert self.reads is not None
        started = time.monotonic()
        try:
            row = reader.read_payment(p.id)
        except psycopg2.Error as exc:
            self.reads.record(route, ok=False, seconds=time.monotonic() - started,
                              error=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            return
        self.reads.record(route, ok=True, seconds=time.monotonic() - started,
                          stale=row is None or row[0] != p.status)

    def _on_retry(self, n: int, kind: str, op: ops.Operation | None, detail: str) -> None:
        with self._lock:
            self._retries[kind] += 1
        self._record({"type": "retry", "run": self.run_id, "client": n, "t": self._now(),
                      "kind": kind, "key": op.key if op else None, "detail": detail})
        log.info("workload client %d: retry (%s) %s: %s", n, kind, op.key if op else "", detail)
