"""PostgreSQL native logical replication (publication on the source, subscription on the target).

Names: the publication, the subscription and its slot on the source all carry ``name``; the
reverse direction (target to source, for fallback after cutover) carries ``{name}_reverse``.
Tables are published ``FOR TABLE`` with the list discovered at start: a table created later would
not exist on the target (DDL is not replicated) and would stop the apply worker under
``FOR ALL TABLES``.

Consistency: ``drained(pos)`` is true when the subscription's slot has confirmed (flushed on the
target) every transaction up to ``pos`` *and* every table has finished its initial sync (state
``s`` or ``r``): during the copy the apply worker confirms past changes of tables still being
copied, so the slot alone would say "drained" too early.

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
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from paymigrate.contract import INITIAL_COPIES
from paymigrate.db import Endpoint, connection, redact
from paymigrate.errors import ReplicationError
from paymigrate.replication import preflight as pf
from paymigrate.replication import schema, snapshot, versions
from paymigrate.replication import sequences as seqs
from paymigrate.replication.base import (
    Direction,
    Lag,
    Problem,
    ReplicationStatus,
    StartResult,
    check_direction,
    check_side,
    lsn_to_int,
    raise_for_problems,
)

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,54}$")
TABLE_STATES = {"i": "init", "d": "copying", "f": "copied", "s": "synced", "r": "ready"}
# WAL written with no user change (running-xacts records, checkpoints) keeps the current
# position a little ahead of an idle subscriber; under this many bytes an idle stream is caught up.
IDLE_BYTES = 64 * 1024
POST_DATA_MARK = "paymigrate: post-data built"
# While waiting for the initial copy, seconds between the cheap "every table synced?" checks: the
# deferred index build starts this soon after the last copy, not a whole progress interval later.
SYNC_CHECK = 0.1
# Seconds between progress lines of a copy under a snapshot.
COPY_PROGRESS = 10.0


@dataclass(frozen=True)
class Link:
    """One direction: ``publisher`` has the publication and the slot, ``subscriber`` the subscription."""

    direction: str
    publisher: Endpoint
    subscriber: Endpoint
    name: str

    def __str__(self) -> str:
        return f"{self.direction} {self.name} ({self.publisher.safe()} -> {self.subscriber.safe()})"


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

    def __repr__(self) -> str:
        return f"LogicalEngine({self.source.safe()} -> {self.target.safe()}, name={self.name!r})"

    def _link(self, direction: str) -> Link:
        return self.forward if check_direction(direction) == "forward" else self.backward

    # ---- preflight ---------------------------------------------------------------------------
    def _scope(self, cur) -> tuple[list[int], list[str]]:
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
    def start(self) -> StartResult:
        """Create schema, publication and subscription, copying the tables as ``initial_copy``
        says (see the module docstring); on a rerun resume what exists."""
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
                if self.initial_copy == "snapshot":
                    detail = self._copy_under_snapshot(oids, names)
                    self._create_subscription(self.forward, copy_data=False, slot_is_ours=True)
                else:
                    self._create_subscription(self.forward, copy_data=True)
                    detail = "copying in parallel (PostgreSQL table sync)"
            except psycopg2.Error as exc:
                raise _err(f"starting {self.forward}", exc) from None
        log.info("replication %s created: %d table(s), %s", self.forward, len(names), detail)
        return StartResult(self.engine, "created", f"{len(names)} table(s), {detail}")

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

    def _copy_under_snapshot(self, oids: list[int], names: list[str]) -> str:
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
        self._rate_sample = None
        with snapshot.ExportedSnapshot(self.source, self.name) as snap:
            report = snapshot.copy_tables(tables, source=self.source, target=self.target,
                                          snapshot=snap, binary=self.binary, jobs=self.copy_jobs,
                                          progress=COPY_PROGRESS, on_progress=self._copy_progress)
        log.info("initial copy %s: %d table(s), %s row(s) in %.1fs (%s rows/s), consistent at %s",
                 self.name, report.tables, f"{report.rows:,}", report.seconds,
                 f"{report.rows_per_second:,.0f}", report.consistent_lsn)
        started = time.monotonic()
        keys = schema.build_keys(source=self.source, target=self.target, oids=oids,
                                 exclude=self.exclude)
        log.info("%d primary key(s) and replica identity index(es) built in %.1fs", keys,
                 time.monotonic() - started)
        return (f"{report.rows:,} row(s) copied under the slot's snapshot in "
                f"{report.seconds:.1f}s, keys built after")

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

    def _copy_progress(self, done: int, total: int) -> None:
        rate = self._rows_per_second()
        log.info("initial copy %s: tables copied %d/%d, %s rows/s", self.name, done, total,
                 "?" if rate is None else f"{rate:,.0f}")

    def _resume(self, link: Link) -> StartResult | None:
        sub = self._subscription(link)
        if sub is None:
            return None
        if sub["enabled"]:
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
        with connection(self.target) as conn, conn.cursor() as cur:
            cur.execute("SELECT n FROM unnest(%s::text[]) n WHERE to_regclass(n) IS NOT NULL", (names,))
            present = {r[0] for r in cur.fetchall()}
        if present and present == set(names):
            log.info("schema already on %s (%d table(s)): not copied again", self.target.safe(),
                     len(names))
            return
        if present:
            missing = sorted(set(names) - present)
            raise ReplicationError(
                f"target {self.target.safe()} has part of the schema: {', '.join(sorted(present))} "
                f"exist but {', '.join(missing)} do not; drop them or create the rest")
        schema.copy_schema(source=self.source, target=self.target, oids=oids, exclude=self.exclude,
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
    def _check_slot(link: Link, slot: dict) -> None:
        if slot["plugin"] != "pgoutput" or slot["database"] != link.publisher.dbname:
            raise ReplicationError(
                f"slot {link.name} on {link.publisher.safe()} exists for plugin {slot['plugin']} "
                f"in database {slot['database']}: not ours, choose another replication name")
        if slot["active_pid"]:
            raise ReplicationError(f"slot {link.name} on {link.publisher.safe()} is in use by "
                                   f"pid {slot['active_pid']}")

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

    # ---- catalog lookups ---------------------------------------------------------------------
    @staticmethod
    def _subscription(link: Link) -> dict | None:
        with connection(link.subscriber) as conn, conn.cursor() as cur:
            cur.execute("""
                SELECT s.oid, s.subenabled, s.subslotname,
                       (SELECT st.pid FROM pg_stat_subscription st
                        WHERE st.subid = s.oid AND st.relid IS NULL LIMIT 1),
                       obj_description(s.oid, 'pg_subscription')
                FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
                WHERE s.subname = %s AND d.datname = current_database()""", (link.name,))
            row = cur.fetchone()
        if row is None:
            return None
        return {"oid": row[0], "enabled": row[1], "slot": row[2], "pid": row[3], "comment": row[4]}

    @staticmethod
    def _slot(link: Link) -> dict | None:
        with connection(link.publisher) as conn, conn.cursor() as cur:
            cur.execute("SELECT plugin, database, active_pid, confirmed_flush_lsn::text "
                        "FROM pg_replication_slots WHERE slot_name = %s", (link.name,))
            row = cur.fetchone()
        if row is None:
            return None
        return {"plugin": row[0], "database": row[1], "active_pid": row[2], "confirmed": row[3]}

    @staticmethod
    def _tables(link: Link, sub_oid: int) -> dict[str, tuple[str, str | None]]:
        with connection(link.subscriber) as conn, conn.cursor() as cur:
            cur.execute("""
                SELECT format('%%I.%%I', n.nspname, c.relname), r.srsubstate, r.srsublsn::text
                FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE r.srsubid = %s ORDER BY 1""", (sub_oid,))
            return {r[0]: (r[1], r[2]) for r in cur.fetchall()}

    # ---- status, lag, position, drain --------------------------------------------------------
    def status(self, *, direction: Direction = "forward") -> ReplicationStatus:
        link = self._link(direction)
        sub = self._subscription(link)
        if sub is None:
            slot = self._slot(link) if link is self.forward else None
            if slot is not None:
                return ReplicationStatus("copying", False, False, detail=(
                    f"initial copy under the exported snapshot of slot {link.name}, held by pid "
                    f"{slot['active_pid']}" if slot["active_pid"] else
                    f"slot {link.name} without a subscription: an initial copy building its keys, "
                    "or one interrupted (start() again copies every table anew)"))
            return ReplicationStatus("absent", False, False, detail=f"no subscription {link.name} "
                                                                    f"on {link.subscriber.safe()}")
        tables = self._tables(link, sub["oid"])
        synced = sum(1 for s, _ in tables.values() if s in "sr")
        done = bool(tables) and synced == len(tables)
        running = bool(sub["enabled"] and sub["pid"])
        if not sub["enabled"]:
            state, detail = "stopped", "subscription disabled"
        elif not sub["pid"]:
            state, detail = "starting", ("no apply worker running: it is starting, or failing "
                                         f"and retrying (see the log of {link.subscriber.safe()})")
        else:
            state, detail = ("streaming" if done else "copying"), ""
        return ReplicationStatus(state, running, done,
                                 {k: TABLE_STATES.get(s, s) for k, (s, _) in tables.items()},
                                 synced, len(tables), detail)

    def lag(self, *, direction: Direction = "forward") -> Lag:
        """Bytes: the source's current WAL position minus the slot's ``confirmed_flush_lsn``.
        Seconds: the walsender's own measurement, ``pg_stat_replication.flush_lag`` (time from a
        change being written on the publisher to the subscriber confirming it flushed)."""
        link = self._link(direction)
        with connection(link.publisher) as conn, conn.cursor() as cur:
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

    def position(self, *, side: str = "source") -> str:
        """The current WAL position of ``side``: what to drain to after freezing writes there
        (``source`` for the forward direction, ``target`` for the reverse one)."""
        ep = self.source if check_side(side) == "source" else self.target
        with connection(ep) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()::text")
            return cur.fetchone()[0]

    def drained(self, position: str, *, direction: Direction = "forward") -> bool:
        """Whether the subscriber has applied and flushed everything up to ``position``."""
        wanted = lsn_to_int(position)
        link = self._link(direction)
        sub = self._subscription(link)
        if sub is None:
            raise ReplicationError(f"no subscription {link.name} on {link.subscriber.safe()}: "
                                   f"the {link.direction} direction is not replicating")
        slot = self._slot(link)
        if slot is None:
            raise ReplicationError(f"slot {link.name} on {link.publisher.safe()} is gone: "
                                   f"the {link.direction} direction cannot catch up")
        if any(s not in "sr" for s, _ in self._tables(link, sub["oid"]).values()):
            return False
        return slot["confirmed"] is not None and lsn_to_int(slot["confirmed"]) >= wanted

    def wait_drained(self, position: str, *, timeout: float, direction: Direction = "forward") -> bool:
        """Poll :meth:`drained` every ``poll`` seconds; False when ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        next_log = time.monotonic() + 5
        while True:
            if self.drained(position, direction=direction):
                log.info("%s drained to %s", self._link(direction), position)
                return True
            now = time.monotonic()
            if now >= deadline:
                log.warning("%s not drained to %s after %.0fs (%s)", self._link(direction),
                            position, timeout, self.lag(direction=direction))
                return False
            if now >= next_log:
                log.info("waiting for %s to reach %s: lag %s", self._link(direction), position,
                         self.lag(direction=direction))
                next_log = now + 5
            time.sleep(min(self.poll, max(deadline - now, 0.01)))

    def catch_up(self, lsn: str, timeout: float = 60, *, direction: Direction = "forward") -> bool:
        """For the validation engine: wait until the subscriber of ``direction`` applied its
        publisher's ``lsn`` (the target the source's; the source the target's for ``reverse``)."""
        return self.wait_drained(lsn, timeout=timeout, direction=direction)

    def wait_full_load(self, *, timeout: float, poll: float = 5.0) -> ReplicationStatus:
        """Wait for every table to finish its copy, logging progress every ``poll`` seconds, then
        build the deferred indexes and constraints; returns the last status (check
        ``full_load_done``). The end of the copy is noticed within ``SYNC_CHECK`` seconds."""
        if poll <= 0:
            raise ValueError(f"poll interval {poll!r} must be positive")
        deadline = time.monotonic() + timeout
        while True:
            self.resync_lost_tables()
            st = self.status()
            rate = self._rows_per_second()
            log.info("initial copy %s: tables synced %s, %s rows/s, lag %s, state %s",
                     self.name, st.progress, "?" if rate is None else f"{rate:,.0f}",
                     self.lag(), st.state)
            if st.state == "absent":
                raise ReplicationError(f"no subscription {self.name}: call start() first")
            if st.full_load_done:
                self.complete_schema()
                return st
            if time.monotonic() >= deadline:
                return st
            self._wait_synced(until=min(deadline, time.monotonic() + poll))

    def resync_lost_tables(self) -> list[str]:
        """Copy again, from scratch, every table PostgreSQL's table sync left stuck; returns them.

        PostgreSQL 15 drops a table's sync slot on the publisher just before it commits the
        table's SYNCDONE state: a subscriber crash in between leaves the table ``copied`` for
        ever, its sync worker failing on the missing slot (``test_replication_logical`` hits it
        about one run in three). Such a table leaves the publication and the subscription, is
        emptied, and comes back with a copy of its own. Every step can be repeated: a table of
        the scope missing from the subscription (a repair cut short) is emptied and added back.
        Nothing to do with ``initial_copy="snapshot"``, whose subscription copies nothing."""
        link = self.forward
        sub = self._subscription(link) if self.initial_copy == "subscription" else None
        if sub is None:
            return []
        lost = self._lost_sync_slots(link, sub["oid"])
        pub = sql.Identifier(link.name)
        for name in lost:
            log.warning("%s: stuck as 'copied' since a crash of %s (its table-sync slot is gone): "
                        "emptied and copied again", name, link.subscriber.safe())
            with connection(link.publisher, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(pub, sql.SQL(name)))
            self._refresh(link, copy_data=False)
        with connection(self.source) as conn, conn.cursor() as cur:
            names = pf.table_names(cur, self._scope(cur)[0])
        subscribed = set(self._tables(link, sub["oid"]))
        with connection(link.subscriber, autocommit=True) as conn, conn.cursor() as cur:
            # A table created on the source after start() is not on the target: left alone.
            cur.execute("SELECT n FROM unnest(%s::text[]) n WHERE to_regclass(n) IS NOT NULL",
                        ([n for n in names if n not in subscribed],))
            missing = [r[0] for r in cur.fetchall()]
            for name in missing:
                cur.execute(f"TRUNCATE ONLY {name}")  # name from format('%I.%I')
        if missing:
            self._ensure_publication(link, sorted(subscribed | set(missing)))
            self._refresh(link, copy_data=True)
            log.warning("table sync of %s started again from an empty table", ", ".join(missing))
        return lost

    @staticmethod
    def _refresh(link: Link, *, copy_data: bool) -> None:
        with connection(link.subscriber, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = {})")
                        .format(sql.Identifier(link.name), sql.Literal(copy_data)))

    @staticmethod
    def _lost_sync_slots(link: Link, sub_oid: int) -> list[str]:
        """Tables ``copied`` with no sync worker and no sync slot, seen so twice a second apart
        (a normal sync passes between dropping its slot and committing in milliseconds)."""
        def once() -> set[str]:
            with connection(link.subscriber) as conn, conn.cursor() as cur:
                cur.execute("""
                    SELECT r.srrelid, format('%%I.%%I', n.nspname, c.relname)
                    FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE r.srsubid = %s AND r.srsubstate = 'f' AND NOT EXISTS (
                          SELECT 1 FROM pg_stat_subscription w
                          WHERE w.subid = r.srsubid AND w.relid = r.srrelid)""", (sub_oid,))
                copied = dict(cur.fetchall())
            if not copied:
                return set()
            with connection(link.publisher) as conn, conn.cursor() as cur:
                cur.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s",
                            (f"pg\\_{sub_oid}\\_sync\\_%",))
                slots = [r[0] for r in cur.fetchall()]
            return {name for relid, name in copied.items()
                    if not any(s.startswith(f"pg_{sub_oid}_sync_{relid}_") for s in slots)}

        first = once()
        if not first:
            return []
        time.sleep(1)
        return sorted(first & once())

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
        if not self.indexes_after_copy or sub["comment"] == POST_DATA_MARK:
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
        if sub["enabled"]:
            with connection(link.subscriber, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(link.name)))
        deadline = time.monotonic() + timeout
        while (self._subscription(link) or {}).get("pid") and time.monotonic() < deadline:
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
            pattern = f"pg\\_{sub['oid']}\\_sync\\_%" if sub else None
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

    def prepare_reverse(self) -> None:
        """Before the pause: the reverse publication on the target, and no stale reverse slot or
        subscription from an earlier cutover (it would replay old target changes onto the
        source). Refuses while reverse replication already carries writes back."""
        old = self._subscription(self.backward)
        if old is not None and old["enabled"] and self._subscription(self.forward) is None:
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
        if sub is not None and sub["enabled"] and self._subscription(self.forward) is None:
            return StartResult(self.engine, "already-running", str(link))
        slot = self._slot(link)
        if slot is None:
            raise ReplicationError(f"reverse slot {link.name} on {link.publisher.safe()} is gone: "
                                   "writes made on the target since the switch cannot be carried "
                                   "back; validate and copy them before any rollback")
        if from_position is not None and slot["confirmed"] is not None and \
                lsn_to_int(slot["confirmed"]) < lsn_to_int(from_position):
            raise ReplicationError(f"reverse slot {link.name} starts at {slot['confirmed']}, before "
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

    def check_tables(self, tables: list[str]) -> None:
        """Inside the pause: every table of ``tables`` is in the forward subscription and ready
        (catalog rows only, whatever the data's size); raises naming each one that is not."""
        sub = self._subscription(self.forward)
        if sub is None:
            raise ReplicationError(f"no subscription {self.name}: the target does not follow the source")
        states = self._tables(self.forward, sub["oid"])
        missing = sorted(set(tables) - set(states))
        behind = sorted(f"{t} ({TABLE_STATES.get(s, s)})" for t, (s, _) in states.items()
                        if t in tables and s not in "sr")
        if missing or behind:
            raise ReplicationError("tables not fully replicated: "
                                   + "; ".join(filter(None, [
                                       missing and f"not subscribed: {', '.join(missing)}",
                                       behind and f"not ready: {', '.join(behind)}"])))

    def sync_sequences(self, *, gap: int = 1000, direction: Direction = "forward") -> dict[str, int]:
        """Copy every sequence from the publisher of ``direction`` to its subscriber plus ``gap``."""
        link = self._link(direction)
        return seqs.sync_sequences(source=link.publisher, target=link.subscriber, gap=gap)
