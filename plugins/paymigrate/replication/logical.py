"""PostgreSQL native logical replication (publication on the source, subscription on the target).

Names: the publication, the subscription and its slot on the source all carry ``name``; the
reverse direction (target to source, for fallback after cutover) carries ``{name}_reverse``.
Tables are published ``FOR TABLE`` with the list discovered at start: a table created later would
not exist on the target (DDL is not replicated) and would stop the apply worker under
``FOR ALL TABLES``.

Consistency: ``drained(pos)`` is true when the subscription's slot has confirmed (flushed on the
target) every transaction up to ``pos`` *and* every table has finished its initial sync (state
``s`` or ``r``): during the copy the apply worker confirms past changes of tables still being
copied, so the slot alone would say "drained" too early (:func:`catalog.drained`).
``catch_up(pos)`` waits for it, nudging the servers so the answer comes in milliseconds.

Modules: the catalog reads and what is decided from them are in
:mod:`paymigrate.replication.catalog`, the repair of a table sync a crash left stuck in
:mod:`paymigrate.replication.table_sync`; this one is the engine.

Initial copy (``initial_copy``):

* ``snapshot`` (the default): the engine copies every table itself under the slot's exported
  snapshot into tables without keys, builds the primary keys, then subscribes on the slot with
  ``copy_data = false`` (:mod:`paymigrate.replication.snapshot`). ``start()`` returns once the
  copy is done. Faster (``bench/copy.py``), but the rows pass through this process.
* ``subscription``: PostgreSQL's table sync copies, inside the servers, into tables that already
  have their keys; ``start()`` returns at once and the copy survives this process.

Resuming: everything is looked up by name first. An existing subscription is enabled again. A
slot without a subscription was left by an interrupted start: with ``subscription`` it is reused;
with ``snapshot`` its snapshot died with the process that held it, so the slot is dropped and
every table copied again, TRUNCATE first. With ``subscription``, a table whose copy was
interrupted (state ``d``) is copied again from scratch by PostgreSQL itself: the COPY and the
state change commit together on the target. One ``start()`` runs at a time per name (a session
advisory lock on the source): an Airflow retry beside a live attempt is refused, not doubled.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from paymigrate import progress
from paymigrate.aws.contract import INITIAL_COPIES
from paymigrate.db import Endpoint, connection, redact
from paymigrate.errors import ReplicationError
from paymigrate.replication import catalog, ddl, schema, snapshot, table_sync, versions
from paymigrate.replication import preflight as pf
from paymigrate.replication import sequences as seqs
from paymigrate.replication.base import (
    Direction,
    FullLoad,
    Lag,
    Problem,
    ProgressSink,
    ReplicationStatus,
    Side,
    StartResult,
    check_direction,
    check_side,
    lsn_to_int,
    raise_for_problems,
)
from paymigrate.replication.catalog import Link, Slot, Subscribed, Subscription

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,54}$")
# WAL written with no user change (running-xacts records, checkpoints) keeps the current
# position a little ahead of an idle subscriber; under this many bytes an idle stream is caught up.
IDLE_BYTES = 64 * 1024
POST_DATA_MARK = "paymigrate: post-data built"
# While waiting for the initial copy, seconds between the cheap "every table synced?" checks: the
# deferred index build starts this soon after the last copy, not a whole progress interval later.
SYNC_CHECK = 0.1
# Seconds between progress lines of a copy under a snapshot.
COPY_PROGRESS = progress.EVERY
# While catching up, seconds between progress lines.
CATCH_UP_PROGRESS = 5.0


def _err(what: str, exc: psycopg2.Error) -> ReplicationError:
    return ReplicationError(f"{what}: {redact(str(exc)).strip()}")


class LogicalEngine:
    """``postgres-logical``: see the module docstring for names, consistency and resuming."""

    engine = "postgres-logical"

    def __init__(self, *, source: Endpoint, target: Endpoint, name: str = "paymigrate",
                 tables: list[str] | None = None, exclude: list[str] | None = None,
                 replica_identity_full: bool = False, replica_identity_index: bool = False,
                 binary: bool = True,
                 indexes_after_copy: bool = True, initial_copy: str = "snapshot",
                 copy_jobs: int = 2, poll: float = 0.5):
        if not isinstance(source, Endpoint) or not isinstance(target, Endpoint):
            raise ValueError("source and target must be paymigrate.db.Endpoint (they carry the "
                             "password the subscription connects with)")
        if not _NAME.match(name or ""):
            raise ValueError(f"replication name {name!r} must be lowercase letters, digits and _ "
                             "(at most 55: it names a slot, and the reverse one adds _reverse)")
        if tables is not None and not tables:
            raise ValueError("tables is an empty list: give None for every table, or some names")
        if poll <= 0:
            raise ValueError(f"poll interval {poll!r} must be positive")
        if initial_copy not in INITIAL_COPIES:
            raise ValueError(f"initial_copy {initial_copy!r} is not one of {', '.join(INITIAL_COPIES)}")
        if not isinstance(copy_jobs, int) or not 1 <= copy_jobs <= 64:
            raise ValueError(f"copy_jobs {copy_jobs!r} must be an integer from 1 to 64")
        self.initial_copy, self.copy_jobs = initial_copy, copy_jobs
        self.source, self.target, self.name = source, target, name
        self.tables, self.exclude = list(tables) if tables else None, list(exclude or [])
        self.replica_identity_full, self.binary = replica_identity_full, binary
        self.replica_identity_index = replica_identity_index
        self.indexes_after_copy, self.poll = indexes_after_copy, poll
        self.forward = Link("forward", source, target, name)
        self.backward = Link("reverse", target, source, f"{name}_reverse")
        self._rate_sample: tuple[float, int] | None = None
        self._nudge = True  # until a server refuses the nudge (see catch_up)

    def __repr__(self) -> str:
        return f"LogicalEngine({self.source.safe()} -> {self.target.safe()}, name={self.name!r})"

    def _link(self, direction: str) -> Link:
        return self.forward if check_direction(direction) == "forward" else self.backward

    # ---- preflight ---------------------------------------------------------------------------
    def _scope(self, cur: Cursor) -> tuple[list[int], list[str]]:
        return pf.scope_oids(cur, tables=self.tables, exclude=self.exclude)

    def preflight(self) -> list[Problem]:
        """Every refusal, each naming table and reason; warnings (insert-only tables without a
        key, the cost of REPLICA IDENTITY FULL) go to the log."""
        try:
            with connection(self.source) as s, connection(self.target) as t, \
                    s.cursor() as scur, t.cursor() as tcur:
                oids, unknown = self._scope(scur)
                facts = pf.gather(scur, tcur, oids=oids, unknown=unknown, slot=self.name,
                                  subscription=self.name)
        except psycopg2.Error as exc:
            raise _err("preflight could not read the catalogs", exc) from None
        problems, warnings = pf.evaluate(facts, replica_identity_full=self.replica_identity_full,
                                         replica_identity_index=self.replica_identity_index,
                                         table_sync=self.initial_copy == "subscription")
        for w in warnings:
            log.warning("preflight: %s", w)
        log.info("preflight %s -> %s: %d table(s), %d problem(s)", self.source.safe(),
                 self.target.safe(), len(facts.tables), len(problems))
        return problems

    # ---- start -------------------------------------------------------------------------------
    def start(self, *, on_progress: ProgressSink | None = None) -> StartResult:
        """Create schema, publication and subscription, copying the tables as ``initial_copy``
        says (see the module docstring); on a rerun resume what exists. ``on_progress`` gets the
        snapshot copy's figures per table every few seconds (for the checkpoints)."""
        found = self._resume(self.forward)
        if found:
            return found
        with self._exclusive():
            found = self._resume(self.forward)  # a start that held the lock may have finished
            if found:
                return found
            raise_for_problems(self.preflight(), engine=self.engine)
            try:
                with connection(self.source) as conn, conn.cursor() as cur:
                    oids, _ = self._scope(cur)
                    names = pf.table_names(cur, oids)
                    if self.replica_identity_index:
                        for stmt in pf.set_identity_index(cur, oids):
                            log.warning("%s: set (no primary key)", stmt)
                    if self.replica_identity_full:
                        self._set_identity_full(cur, oids)
                self._ensure_schema(oids, names)
                self._ensure_publication(self.forward, names)
                copied = None
                if self.initial_copy == "snapshot":
                    detail, copied = self._copy_under_snapshot(oids, names, on_progress)
                    self._create_subscription(self.forward, copy_data=False, slot_is_ours=True)
                else:
                    self._create_subscription(self.forward, copy_data=True)
                    detail = "copying in parallel (PostgreSQL table sync)"
            except psycopg2.Error as exc:
                raise _err(f"starting {self.forward}", exc) from None
        log.info("replication %s created: %d table(s), %s", self.forward, len(names), detail)
        return StartResult(self.engine, "created", f"{len(names)} table(s), {detail}", copy=copied)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        # On the source: a target restarting during the copy must not release it.
        key = f"paymigrate start {self.name}"
        with connection(self.source, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtext(%s)::bigint)", (key,))
            if not cur.fetchone()[0]:
                raise ReplicationError(f"another start() of replication {self.name} is running on "
                                       f"{self.source.safe()}: let it finish (its log shows the "
                                       "copy's progress) before starting again")
            yield

    def _copy_under_snapshot(self, oids: list[int], names: list[str],
                             on_progress: ProgressSink | None) -> tuple[str, dict[str, Any] | None]:
        """Slot with exported snapshot, every table copied under it, keys built; the caller
        then subscribes on the slot."""
        self._refuse_target_checks(names)
        slot = self._slot(self.forward)
        if slot is not None:
            self._check_slot(self.forward, slot)
            log.warning("slot %s on %s was left by an interrupted initial copy: its snapshot ended "
                        "with it, so it is dropped and every table copied again (TRUNCATE first)",
                        self.name, self.source.safe())
            with connection(self.source, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot(%s)", (self.name,))
        with connection(self.source) as conn, conn.cursor() as cur:
            tables = snapshot.tables_to_copy(cur, oids)

        def report_progress(p: snapshot.CopyProgress) -> None:
            log.info("initial copy %s: %s", self.name, p.line())
            if on_progress:
                on_progress(p.to_dict())

        with snapshot.ExportedSnapshot(self.source, self.name) as snap:
            report = snapshot.copy_tables(tables, source=self.source, target=self.target,
                                          snapshot=snap, binary=self.binary, jobs=self.copy_jobs,
                                          progress=COPY_PROGRESS, on_progress=report_progress)
        log.info("initial copy %s: %d table(s), %s row(s) in %.1fs (%s rows/s), consistent at %s",
                 self.name, report.tables, f"{report.rows:,}", report.seconds,
                 f"{report.rows_per_second:,.0f}", report.consistent_lsn)
        started = time.monotonic()
        keys = schema.build_keys(source=self.source, target=self.target, oids=oids,
                                 exclude=self.exclude)
        log.info("%d primary key(s) and replica identity index(es) built in %.1fs", keys,
                 time.monotonic() - started)
        return (f"{report.rows:,} row(s) copied under the slot's snapshot in "
                f"{report.seconds:.1f}s, keys built after",
                report.progress.to_dict() if report.progress else None)

    def _refuse_target_checks(self, names: list[str]) -> None:
        """Foreign keys and triggers are built after the copy; ones already on the target (a
        schema made by hand) would refuse the tables' TRUNCATE, check rows copied in any order,
        or fire for each copied row."""
        with connection(self.target) as conn, conn.cursor() as cur:
            cur.execute("""
                SELECT format('foreign key %%I on %%s', conname, conrelid::regclass)
                FROM pg_constraint WHERE contype = 'f' AND (conrelid = ANY(%(t)s::regclass[])
                                                         OR confrelid = ANY(%(t)s::regclass[]))
                UNION ALL
                SELECT format('trigger %%I on %%s', tgname, tgrelid::regclass) FROM pg_trigger
                WHERE NOT tgisinternal AND tgrelid = ANY(%(t)s::regclass[])
                ORDER BY 1""", {"t": names})
            found = [r[0] for r in cur.fetchall()]
        if found:
            raise ReplicationError(
                f"target {self.target.safe()} already has {', '.join(found)}: the snapshot copy "
                "builds foreign keys and triggers after it (it loads tables in any order, and a "
                "trigger would fire for every copied row); drop them, or set "
                "replication/initial-copy to subscription")

    def _resume(self, link: Link) -> StartResult | None:
        sub = self._subscription(link)
        if sub is None:
            return None
        if sub.enabled:
            log.info("replication %s already exists and is enabled", link)
            return StartResult(self.engine, "already-running", str(link))
        with connection(link.subscriber, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(link.name)))
        log.info("replication %s resumed (subscription enabled again)", link)
        return StartResult(self.engine, "resumed", str(link))

    @staticmethod
    def _set_identity_full(cur, oids: list[int]) -> None:
        cur.execute("""
            SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = ANY(%s::oid[]) AND (c.relreplident = 'n' OR (c.relreplident = 'd'
              AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
            ORDER BY 1""", (oids,))
        for (name,) in cur.fetchall():
            cur.execute(f"ALTER TABLE {name} REPLICA IDENTITY FULL")  # name from format('%I.%I')
            log.warning("%s: REPLICA IDENTITY FULL set (no primary key): each UPDATE/DELETE now "
                        "logs the whole old row and costs a sequential scan on the target", name)

    def _ensure_schema(self, oids: list[int], names: list[str]) -> None:
        schema.ensure_schema(source=self.source, target=self.target, oids=oids, names=names,
                             exclude=self.exclude,
                             keys=self.initial_copy == "subscription" or not self.indexes_after_copy,
                             late_too=not self.indexes_after_copy)

    @staticmethod
    def _ensure_publication(link: Link, names: list[str]) -> None:
        tables = sql.SQL(", ").join(sql.SQL(n) for n in names)  # names from format('%I.%I')
        pub = sql.Identifier(link.name)
        with connection(link.publisher) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (link.name,))
            verb = "ALTER PUBLICATION {} SET TABLE {}" if cur.fetchone() else \
                "CREATE PUBLICATION {} FOR TABLE {}"
            cur.execute(sql.SQL(verb).format(pub, tables))

    @staticmethod
    def _check_slot(link: Link, slot: Slot) -> None:
        if slot.plugin != "pgoutput" or slot.database != link.publisher.dbname:
            raise ReplicationError(
                f"slot {link.name} on {link.publisher.safe()} exists for plugin {slot.plugin} "
                f"in database {slot.database}: not ours, choose another replication name")
        if slot.active_pid:
            raise ReplicationError(f"slot {link.name} on {link.publisher.safe()} is in use by "
                                   f"pid {slot.active_pid}")

    def _create_subscription(self, link: Link, *, copy_data: bool, slot_is_ours: bool = False) -> None:
        """``slot_is_ours``: the slot was made by this start (with the snapshot of the copy)."""
        slot = self._slot(link)
        if slot is not None:
            self._check_slot(link, slot)
            if not slot_is_ours:
                log.warning("reusing slot %s left on %s by an interrupted start", link.name,
                            link.publisher.safe())
        elif slot_is_ours:
            raise ReplicationError(f"slot {link.name} on {link.publisher.safe()} disappeared after "
                                   "the initial copy: its changes since the snapshot are lost to "
                                   "it; drop the target's tables and start again")
        options = sql.SQL(", ").join([
            sql.SQL("slot_name = {}").format(sql.Literal(link.name)),
            sql.SQL("create_slot = {}").format(sql.Literal(slot is None)),
            sql.SQL("copy_data = {}").format(sql.Literal(copy_data)),
            sql.SQL("binary = {}").format(sql.Literal(self.binary)),
            sql.SQL("streaming = on"),
            *versions.subscription_options(versions.server_version_num(link.subscriber)),
        ])
        stmt = sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH ({})").format(
            sql.Identifier(link.name), sql.Literal(link.publisher.dsn()), sql.Identifier(link.name),
            options)
        with connection(link.subscriber, autocommit=True) as conn, conn.cursor() as cur:
            # The statement carries the password: keep it out of the server log if it fails.
            cur.execute("SET log_min_error_statement = panic")
            try:
                cur.execute(stmt)
            except psycopg2.Error as exc:
                raise _err(f"CREATE SUBSCRIPTION {link.name} on {link.subscriber.safe()}", exc) from None

    # ---- catalog reads: one connection per side --------------------------------------------
    @contextlib.contextmanager
    def _sides(self, link: Link, *,
               application_name: str | None = None) -> Iterator[tuple[Cursor, Cursor]]:
        """Autocommit cursors on ``link``'s subscriber and publisher: every statement sees the
        servers as they are now (``pg_stat_subscription`` included)."""
        with connection(link.subscriber, autocommit=True, application_name=application_name) as sub, \
                connection(link.publisher, autocommit=True, application_name=application_name) as pub, \
                sub.cursor() as scur, pub.cursor() as pcur:
            yield scur, pcur

    @staticmethod
    def _subscription(link: Link) -> Subscription | None:
        with connection(link.subscriber) as conn, conn.cursor() as cur:
            return catalog.read_subscription(cur, link.name)

    @staticmethod
    def _subscribed(link: Link) -> Subscribed | None:
        with connection(link.subscriber) as conn, conn.cursor() as cur:
            return catalog.read_subscribed(cur, link.name)

    @staticmethod
    def _slot(link: Link) -> Slot | None:
        with connection(link.publisher) as conn, conn.cursor() as cur:
            return catalog.read_slot(cur, link.name)

    # ---- status, lag, position, drain --------------------------------------------------------
    def status(self, *, direction: Direction = "forward") -> ReplicationStatus:
        link = self._link(direction)
        subscribed = self._subscribed(link)
        # A forward slot without a subscription is a copy under its snapshot: read it only then.
        slot = self._slot(link) if subscribed is None and link is self.forward else None
        return catalog.status(link, subscribed, slot)

    def lag(self, *, direction: Direction = "forward") -> Lag:
        """Bytes: the source's current WAL position minus the slot's ``confirmed_flush_lsn``.
        Seconds: the walsender's own measurement, ``pg_stat_replication.flush_lag`` (time from a
        change being written on the publisher to the subscriber confirming it flushed)."""
        link = self._link(direction)
        with connection(link.publisher) as conn, conn.cursor() as cur:
            return self._lag(cur, link)

    @staticmethod
    def _lag(cur: Cursor, link: Link) -> Lag:
        cur.execute("""
            SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,
                   s.active_pid, extract(epoch FROM coalesce(r.flush_lag, r.replay_lag))
            FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
            WHERE s.slot_name = %s""", (link.name,))
        row = cur.fetchone()
        if row is None:
            return Lag(None, None, f"no slot {link.name} on {link.publisher.safe()}")
        nbytes, active, seconds = max(int(row[0] or 0), 0), row[1], row[2]
        if seconds is not None:
            return Lag(nbytes, float(seconds), source="pg_stat_replication.flush_lag")
        if not active:
            return Lag(nbytes, None, "no walsender is streaming to the subscription (worker down)")
        if nbytes <= IDLE_BYTES:
            return Lag(nbytes, 0.0, source="caught up: walsender idle, lag cleared")
        return Lag(nbytes, None, "the walsender has not measured the lag yet (once a second while "
                                 "changes flow)")

    def position(self, *, side: Side = "source") -> str:
        """The current WAL position of ``side``: what to drain to after freezing writes there
        (``source`` for the forward direction, ``target`` for the reverse one)."""
        ep = self.source if check_side(side) == "source" else self.target
        with connection(ep) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()::text")
            return str(cur.fetchone()[0])

    def drained(self, position: str, *, direction: Direction = "forward") -> bool:
        """Whether the subscriber has applied and flushed everything up to ``position``."""
        link = self._link(direction)
        with self._sides(link) as (scur, pcur):
            return self._drained(link, scur, pcur, position)

    @staticmethod
    def _drained(link: Link, scur: Cursor, pcur: Cursor, position: str) -> bool:
        return catalog.drained(link, catalog.read_subscribed(scur, link.name),
                               catalog.read_slot(pcur, link.name), position)

    def catch_up(self, position: str, timeout: float = 60, *, direction: Direction = "forward",
                 poll: float | None = None) -> bool:
        """Wait until the subscriber of ``direction`` applied its publisher's ``position`` (the
        target the source's; the source the target's for ``reverse``), checking every ``poll``
        seconds (the engine's ``poll`` when None); False when ``timeout`` passes first. One
        connection per side serves the whole wait.

        Each check is preceded by a nudge. The subscriber applies with asynchronous commit and
        confirms only what its WAL writer has flushed (every 200 ms by default), and only when
        the publisher next sends it something: left alone, a catch-up takes 200 ms to a second
        (inside the cutover's write pause). A transactional logical message (an empty commit with
        an xid would not be flushed at once: it writes no WAL) committed synchronously on the
        subscriber flushes what it applied; then one on the publisher makes the sender ask for a
        reply, which carries that flush. Output plugins that did not ask for messages (pgoutput
        by default) skip them. If the role may not emit messages, the wait still works, at the
        slower pace."""
        lsn_to_int(position)
        interval = self.poll if poll is None else poll
        if interval <= 0:
            raise ValueError(f"poll interval {interval!r} must be positive")
        link = self._link(direction)
        deadline = time.monotonic() + timeout
        next_log = time.monotonic() + CATCH_UP_PROGRESS
        # The WAL left at the first progress line is the drain's total (none is measured before:
        # inside a write pause every query counts).
        first: tuple[float, int] | None = None
        try:
            with self._sides(link, application_name="paymigrate-catch-up") as (scur, pcur):
                while True:
                    if self._nudge:
                        self._nudge_both(scur, pcur)
                    if self._drained(link, scur, pcur, position):
                        log.info("%s caught up to %s", link, position)
                        return True
                    now = time.monotonic()
                    if now >= deadline:
                        log.warning("%s not caught up to %s after %.3fs (lag %s)", link,
                                    position, timeout, self._lag(pcur, link))
                        return False
                    if now >= next_log:
                        lag = self._lag(pcur, link)
                        first = first or (now, lag.bytes or 0)
                        drained = progress.Figures(now - first[0], bytes_done=max(first[1] - (lag.bytes or 0), 0),
                                                   bytes_total=first[1])
                        log.info("waiting for %s to reach %s: WAL drained %s; lag %s", link, position,
                                 drained.line(), lag)
                        next_log = now + CATCH_UP_PROGRESS
                    time.sleep(min(interval, max(deadline - now, 0.001)))
        except psycopg2.Error as exc:
            raise _err(f"catching up {link} to {position}", exc) from None

    def _nudge_both(self, scur: Cursor, pcur: Cursor) -> None:
        try:
            for cur in (scur, pcur):
                cur.execute("SET synchronous_commit = on; "
                            "SELECT pg_logical_emit_message(true, 'paymigrate-drain', '')")
        except psycopg2.Error as exc:
            self._nudge = False
            log.warning("catch-up: cannot nudge replication (%s); waiting for its own feedback "
                        "instead", redact(str(exc)).strip())

    # ---- the full load -------------------------------------------------------------------------
    def finish_full_load(self, *, build: bool = True) -> FullLoad:
        """Copy again any table a subscriber crash left stuck (:meth:`resync_lost_tables`), read
        the status, and once every table is synced build the deferred indexes and constraints
        (:meth:`complete_schema`, once) unless ``build`` is false."""
        repaired = self.resync_lost_tables()
        st, built = self.status(), None
        if build and st.full_load_done:
            built = self.complete_schema()
            # The build can take hours, and a subscription made a moment ago has its apply worker
            # starting meanwhile: the status after it is the one that holds.
            st = self.status()
        return FullLoad(st, tuple(repaired), built)

    def wait_full_load(self, *, timeout: float, poll: float = 5.0) -> ReplicationStatus:
        """:meth:`finish_full_load` until every table finished its copy (deferred indexes and
        constraints then built), logging progress every ``poll`` seconds; returns the last
        status (check ``full_load_done``; ``state`` is ``streaming`` too unless the time ran out
        first). The end of the copy is noticed within ``SYNC_CHECK`` seconds."""
        if poll <= 0:
            raise ValueError(f"poll interval {poll!r} must be positive")
        deadline = time.monotonic() + timeout
        while True:
            st = self.finish_full_load().status
            rate = self._rows_per_second()
            log.info("initial copy %s: tables synced %s, %s rows/s, lag %s, state %s",
                     self.name, st.progress, "?" if rate is None else f"{rate:,.0f}",
                     self.lag(), st.state)
            if st.state == "absent":
                raise ReplicationError(f"no subscription {self.name}: call start() first")
            if time.monotonic() >= deadline:
                return st
            if st.full_load_done:
                if st.state == "streaming":
                    return st
                # The subscription made after a snapshot copy starts its apply worker a moment
                # later (seconds on a busy server): done means streaming, not only copied.
                time.sleep(min(0.5, poll, max(0.0, deadline - time.monotonic())))
                continue
            self._wait_synced(until=min(deadline, time.monotonic() + poll))

    def resync_lost_tables(self) -> list[str]:
        """Copy again, from scratch, every table PostgreSQL's table sync left stuck; returns them
        (:mod:`paymigrate.replication.table_sync`). Nothing to do with
        ``initial_copy="snapshot"``, whose subscription copies nothing."""
        if self.initial_copy != "subscription":
            return []
        link = self.forward
        with self._sides(link) as (scur, pcur):
            sub = catalog.read_subscription(scur, link.name)
            if sub is None:
                return []
            scope = pf.table_names(pcur, self._scope(pcur)[0])
            return table_sync.repair(link, sub.oid, scope=scope, subscriber=scur, publisher=pcur)

    def _wait_synced(self, *, until: float) -> bool:
        """Check on one connection every ``SYNC_CHECK`` seconds until every table is synced (True)
        or ``until`` (False). An unreachable target waits out the interval: the caller's next
        :meth:`status` reports it as before."""
        query = """
            SELECT count(*) FILTER (WHERE r.srsubstate NOT IN ('s', 'r')), count(*)
            FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
            JOIN pg_subscription_rel r ON r.srsubid = s.oid
            WHERE s.subname = %s AND d.datname = current_database()"""
        try:
            with connection(self.target, autocommit=True) as conn, conn.cursor() as cur:
                while True:
                    cur.execute(query, (self.name,))
                    pending, total = cur.fetchone()
                    if total and not pending:
                        return True
                    now = time.monotonic()
                    if now >= until:
                        return False
                    time.sleep(min(SYNC_CHECK, until - now))
        except psycopg2.OperationalError as exc:
            log.warning("checking the initial copy of %s: %s", self.name, redact(str(exc)).strip())
            time.sleep(max(until - time.monotonic(), 0))
            return False

    def _rows_per_second(self) -> float | None:
        # Committed inserts plus rows of COPYs still running (a table's COPY commits at its end).
        with connection(self.target) as conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce((SELECT sum(n_tup_ins) FROM pg_stat_user_tables), 0) + "
                        "coalesce((SELECT sum(tuples_processed) FROM pg_stat_progress_copy), 0)")
            rows = int(cur.fetchone()[0])
        now, prev = time.monotonic(), self._rate_sample
        self._rate_sample = (now, rows)
        if prev is None or now <= prev[0]:
            return None
        return max(rows - prev[1], 0) / (now - prev[0])

    def complete_schema(self) -> int:
        """Build the secondary indexes and constraints deferred past the copy (once)."""
        sub = self._subscription(self.forward)
        if sub is None:
            raise ReplicationError(f"no subscription {self.name}: call start() first")
        if not self.indexes_after_copy or sub.comment == POST_DATA_MARK:
            return 0
        with connection(self.source) as conn, conn.cursor() as cur:
            oids, _ = self._scope(cur)
        mark = sql.SQL("COMMENT ON SUBSCRIPTION {} IS {}").format(
            sql.Identifier(self.name), sql.Literal(POST_DATA_MARK))
        with connection(self.target) as conn:
            mark_text = mark.as_string(conn)
        started = time.monotonic()
        n = schema.complete_schema(source=self.source, target=self.target, oids=oids,
                                   exclude=self.exclude, marker_sql=mark_text)
        log.info("deferred indexes and constraints built in %.1fs", time.monotonic() - started)
        return n

    # ---- stop, drop, reverse, sequences ------------------------------------------------------
    def stop(self, *, direction: Direction = "forward", timeout: float = 30) -> None:
        """Disable the subscription (idempotent). The slot stays, so ``start`` resumes without a
        new copy; the source keeps WAL for it meanwhile: :meth:`drop` releases it."""
        link = self._link(direction)
        sub = self._subscription(link)
        if sub is None:
            log.info("replication %s: nothing to stop", link)
            return
        deadline = time.monotonic() + timeout
        with connection(link.subscriber, autocommit=True) as conn, conn.cursor() as cur:
            if sub.enabled:
                cur.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(link.name)))
            # The apply worker exits a moment after the subscription is disabled.
            while (now := catalog.read_subscription(cur, link.name)) is not None and \
                    now.pid is not None and time.monotonic() < deadline:
                time.sleep(0.2)
        log.info("replication %s stopped", link)

    def drop(self, *, direction: Direction = "forward") -> None:
        """Remove subscription, slots (table-sync ones too) and publication (idempotent)."""
        link = self._link(direction)
        sub = self._subscription(link)
        with connection(link.subscriber, autocommit=True) as conn, conn.cursor() as cur:
            if sub is not None:
                ident = sql.Identifier(link.name)
                cur.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                cur.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                cur.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
        with connection(link.publisher, autocommit=True) as conn, conn.cursor() as cur:
            pattern = f"pg\\_{sub.oid}\\_sync\\_%" if sub else None
            deadline = time.monotonic() + 30
            while True:
                cur.execute("SELECT slot_name, active_pid FROM pg_replication_slots "
                            "WHERE slot_name = %s OR slot_name LIKE %s", (link.name, pattern))
                slots = cur.fetchall()
                if all(pid is None for _, pid in slots) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)  # the walsender exits a moment after the subscription is gone
            for slot, _ in slots:
                cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            cur.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(link.name)))
        log.info("replication %s dropped", link)

    # ---- reverse replication, in three steps around the write pause --------------------------
    def scope_tables(self) -> list[str]:
        """``schema.name`` of every table this migration replicates (leaf partitions)."""
        with connection(self.source) as conn, conn.cursor() as cur:
            oids, unknown = self._scope(cur)
            if unknown:
                raise ReplicationError(f"tables not found on {self.source.safe()}: {', '.join(unknown)}")
            return pf.table_names(cur, oids)

    def schema_drift(self) -> list[ddl.Drift]:
        """DDL run on one side only: logical replication carries rows, never DDL."""
        return ddl.find_drift(source=self.source, target=self.target, publication=self.name,
                              tables=self.tables, exclude=self.exclude)

    def prepare_reverse(self) -> None:
        """Before the pause: the reverse publication on the target, and no stale reverse slot or
        subscription from an earlier cutover (it would replay old target changes onto the
        source). Refuses while reverse replication already carries writes back."""
        old = self._subscription(self.backward)
        if old is not None and old.enabled and self._subscription(self.forward) is None:
            raise ReplicationError(f"{self.backward} is running: the target is already the writer")
        if old is not None or self._slot(self.backward) is not None:
            self.drop(direction="reverse")
        try:
            self._ensure_publication(self.backward, self.scope_tables())
        except psycopg2.Error as exc:
            raise _err(f"preparing {self.backward}", exc) from None

    def capture_reverse(self, *, timeout: float) -> str:
        """Inside the pause, before the first write reaches the target: create the reverse slot
        there and return its start position. Every transaction the target commits after it is
        kept for the reverse subscription that :meth:`attach_reverse` makes. Slot creation waits
        for the target's running write transactions: at most ``timeout`` seconds."""
        link = self.backward
        try:
            with connection(link.publisher, autocommit=True,
                            application_name="paymigrate-capture") as conn, conn.cursor() as cur:
                cur.execute("SET statement_timeout = %s", (f"{max(int(timeout * 1000), 1)}ms",))
                cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                            (link.name,))
                return cur.fetchone()[0]
        except psycopg2.errors.QueryCanceled:
            raise ReplicationError(f"reverse slot {link.name} on {link.publisher.safe()} not made "
                                   f"within {timeout:.3f}s: a transaction is running there") from None
        except psycopg2.Error as exc:
            raise _err(f"creating reverse slot {link.name} on {link.publisher.safe()}", exc) from None

    def release_reverse(self) -> None:
        """Undo :meth:`capture_reverse` after an abort (idempotent): drop the reverse slot unless
        a subscription reads it, and the reverse publication."""
        if self._subscription(self.backward) is not None:
            raise ReplicationError(f"{self.backward} has a subscription: stop it, not release it")
        self.drop(direction="reverse")

    def attach_reverse(self, *, from_position: str | None = None) -> StartResult:
        """After RESUME: subscribe the source to the reverse slot made inside the pause. The
        forward subscription is dropped first (PostgreSQL 15 has no ``origin = none``: the two
        would replicate in a loop). Idempotent; refuses when the slot is gone, since the target's
        writes since the switch would then be lost to the source. ``from_position`` is checked
        against the slot when given."""
        link = self.backward
        sub = self._subscription(link)
        if sub is not None and sub.enabled and self._subscription(self.forward) is None:
            return StartResult(self.engine, "already-running", str(link))
        slot = self._slot(link)
        if slot is None:
            raise ReplicationError(f"reverse slot {link.name} on {link.publisher.safe()} is gone: "
                                   "writes made on the target since the switch cannot be carried "
                                   "back; validate and copy them before any rollback")
        if from_position is not None and slot.confirmed is not None and \
                not slot.confirmed_past(from_position):
            raise ReplicationError(f"reverse slot {link.name} starts at {slot.confirmed}, before "
                                   f"the switch's {from_position}: not the slot of this switch")
        if self._subscription(self.forward) is not None:
            self.drop(direction="forward")
        if sub is not None:
            with connection(link.subscriber, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(link.name)))
            return StartResult(self.engine, "resumed", str(link))
        self._create_subscription(link, copy_data=False, slot_is_ours=True)
        log.info("reverse replication %s attached to its slot", link)
        return StartResult(self.engine, "created", str(link))

    def own_validation(self) -> None:
        """PostgreSQL's replication does not validate what it applies: paymigrate's is the one."""
        return None

    def check_tables(self, tables: list[str]) -> None:
        """Inside the pause: every table of ``tables`` is in the forward subscription and ready
        (catalog rows only, whatever the data's size); raises naming each one that is not."""
        subscribed = self._subscribed(self.forward)
        if subscribed is None:
            raise ReplicationError(f"no subscription {self.name}: the target does not follow the source")
        why = catalog.not_ready(subscribed, tables)
        if why:
            raise ReplicationError(f"tables not fully replicated: {why}")

    def sync_sequences(self, *, gap: int = 1000, direction: Direction = "forward") -> dict[str, int]:
        """Copy every sequence from the publisher of ``direction`` to its subscriber plus ``gap``."""
        link = self._link(direction)
        return seqs.sync_sequences(source=link.publisher, target=link.subscriber, gap=gap)
