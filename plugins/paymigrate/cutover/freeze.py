"""Freezing the old writer for the write switch: a hard fence that no client can talk its way past.

Two layers, both undone by :func:`unfreeze`:

* ``default_transaction_read_only`` on the database (the migration role exempt), and every other
  client session ended, so a session that bypasses the router reconnects read-only. A client can
  override a default (``SET transaction_read_only = off``, ``BEGIN READ WRITE``), so this alone
  is no fence.
* The **fence**: a statement-level ``BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE`` trigger on
  every table of the migration (and every partitioned ancestor: a write through the parent fires
  only the parent's statement triggers) calling ``paymigrate.write_fence()``. :func:`prepare_fence`
  installs the triggers before the pause with a body that lets everything through. Inside the
  pause :func:`freeze` replaces the body with one that raises ``read_only_sql_transaction``: one
  catalog row, whatever the number of tables or rows, and no lock on any table. A function body is
  read through the catalog cache, never a transaction snapshot, so even a REPEATABLE READ
  transaction that began before the freeze is refused at its next write, and so is every role,
  ``SET ROLE`` and reconnect. The one exception is logical replication's apply worker: it runs
  with ``session_replication_role = replica``, in which ordinary triggers do not fire (so reverse
  replication still applies onto the fenced old writer). Only a superuser may set that role: a
  superuser who does writes behind replication's back, and the post-switch validation is there
  to find it.

The fence objects live in the schema ``paymigrate``, which schema copies leave out
(:data:`FENCE_SCHEMA`, :data:`FENCE_TRIGGER`). Unfreezing only swaps the body back, so it never
waits behind a reader; the triggers are then dropped where their table lock is free at once, and
one left behind costs a no-op call per write statement until the next :func:`remove_fence`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from paymigrate.db import Endpoint, connection, reused_pids
from paymigrate.errors import FreezeError

log = logging.getLogger(__name__)

TERMINATE_WAIT_MS = 5000
# Seconds each CREATE TRIGGER may queue new writes of its table behind it, and pause between tries.
LOCK_TRY = 0.05
FENCE_SCHEMA = "paymigrate"
FENCE_FUNCTION = f"{FENCE_SCHEMA}.write_fence"
FENCE_TRIGGER = "paymigrate_write_fence"

_OPEN = "BEGIN RETURN NULL; END"
_SHUT = """BEGIN
  RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction',
    MESSAGE = format('%I.%I is fenced: this database is no longer the writer', TG_TABLE_SCHEMA, TG_TABLE_NAME),
    HINT = 'paymigrate moved the writer; write through the router';
END"""


def _body(text: str) -> sql.Composed:
    # SECURITY DEFINER with a fixed search_path: the body never depends on the caller's settings.
    return sql.SQL("CREATE OR REPLACE FUNCTION {}.write_fence() RETURNS trigger LANGUAGE plpgsql "
                   "SECURITY DEFINER SET search_path = pg_catalog AS {}").format(
        sql.Identifier(FENCE_SCHEMA), sql.Literal(text))


@dataclass(frozen=True)
class FreezeResult:
    database: str
    frozen: bool
    sessions_ended: int
    fenced: bool = False


def is_frozen(ep: Endpoint) -> bool:
    with connection(ep.with_db("postgres"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("""
            SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                            WHERE d.datname = %s AND s.setrole = 0
                              AND 'default_transaction_read_only=on' = ANY (s.setconfig))""",
                    (ep.dbname,))
        return bool(cur.fetchone()[0])


def is_fenced(ep: Endpoint) -> bool:
    """Whether the fence function of ``ep.dbname`` refuses writes now."""
    with connection(ep, autocommit=True) as conn, conn.cursor() as cur:
        return _shut(cur) is True


def _shut(cur) -> bool | None:
    """Whether the fence function refuses writes; None when it does not exist."""
    cur.execute("SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(%s)", (f"{FENCE_FUNCTION}()",))
    row = cur.fetchone()
    return None if row is None else row[0] == _SHUT


def prepare_fence(ep: Endpoint, tables: Sequence[str], *, lock_timeout: float = 1.0) -> list[str]:
    """Install the fence triggers, open, on ``tables`` (``schema.name``) and their partitioned
    ancestors. Idempotent; runs before the pause. Returns the tables it could not lock: the
    freeze fences those inside the pause (``freeze(..., fence_tables=...)``).

    ``CREATE TRIGGER`` waits for the table's running writes, and new writes queue behind it; under
    load two writers can even wait on each other through that queue. So each table gets short
    tries of :data:`LOCK_TRY` seconds, with as long between them, for at most ``lock_timeout``
    seconds.
    """
    if not tables:
        raise ValueError("prepare_fence needs the tables to fence: none given")
    with connection(ep, autocommit=True, application_name="paymigrate-fence") as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(FENCE_SCHEMA)))
        cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(FENCE_SCHEMA)))
        if not _shut(cur):
            cur.execute(_body(_OPEN))  # a fence already shut (a rerun after a freeze) stays shut
        missing = _unfenced(cur, ep, tables)
        left = [name for name in missing if not _create_trigger(cur, name, lock_timeout=lock_timeout)]
    if left:
        log.warning("fence not installed before the pause on %s (busy: %s): the freeze installs it "
                    "inside the pause", ep.safe(), ", ".join(left))
    log.info("fence ready on %s: %d table(s) new, %d left for the pause", ep.safe(),
             len(missing) - len(left), len(left))
    return left


def _unfenced(cur, ep: Endpoint, tables: Sequence[str]) -> list[str]:
    """The tables (and partitioned ancestors) of ``tables`` without a fence trigger."""
    cur.execute("SELECT t.name FROM unnest(%s::text[]) t(name) WHERE to_regclass(t.name) IS NULL",
                (list(tables),))
    unknown = [r[0] for r in cur.fetchall()]
    if unknown:
        raise FreezeError(f"cannot fence tables missing on {ep.safe()}: {', '.join(unknown)}")
    # pg_partition_ancestors lists a partition and its ancestors, and nothing for a table that
    # is no partition: the table itself is added.
    cur.execute("""
        WITH rels AS (
            SELECT to_regclass(t.name)::oid AS relid FROM unnest(%s::text[]) t(name)
            UNION
            SELECT a.relid::oid FROM unnest(%s::text[]) t(name),
                   LATERAL pg_partition_ancestors(to_regclass(t.name)) a(relid))
        SELECT format('%%I.%%I', n.nspname, c.relname) FROM rels
          JOIN pg_class c ON c.oid = rels.relid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = rels.relid AND g.tgname = %s)
         ORDER BY 1""", (list(tables), list(tables), FENCE_TRIGGER))
    return [r[0] for r in cur.fetchall()]


def _create_trigger(cur, name: str, *, lock_timeout: float, tries: bool = True) -> bool:
    """Whether the fence trigger of ``name`` could be created within ``lock_timeout`` seconds
    (in tries of :data:`LOCK_TRY`, or in one wait with ``tries=False``)."""
    stmt = sql.SQL("CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION {}.write_fence()").format(
        sql.Identifier(FENCE_TRIGGER), sql.SQL(name), sql.Identifier(FENCE_SCHEMA))
    deadline = time.monotonic() + lock_timeout
    try:
        while True:
            _cancel_autovacuum(cur, name)
            left = deadline - time.monotonic()
            wait = min(LOCK_TRY, left) if tries else left
            cur.execute("SET lock_timeout = %s", (f"{max(int(wait * 1000), 1)}ms",))
            try:
                cur.execute(stmt)
                return True
            except psycopg2.errors.LockNotAvailable:
                if time.monotonic() >= deadline - 0.001:
                    return False
                if tries:
                    time.sleep(min(LOCK_TRY, max(deadline - time.monotonic(), 0)))
    finally:
        cur.execute("RESET lock_timeout")


def _holders(cur, name: str) -> str:
    cur.execute("""
        SELECT string_agg(format('pid %%s (%%s: %%s)', a.pid, a.backend_type, left(a.query, 60)), '; ')
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.relation = %s::regclass AND l.granted AND a.pid <> pg_backend_pid()""", (name,))
    return cur.fetchone()[0] or "a session that has ended since"


def _cancel_autovacuum(cur, name: str) -> None:
    """Cancel the autovacuum workers that hold ``name``: PostgreSQL cancels one that blocks a
    lock request itself, but only after ``deadlock_timeout`` (1 s) of waiting, longer than a
    fence may wait. A vacuum against transaction-id wraparound is never cancelled."""
    cur.execute("""
        SELECT a.pid, pg_cancel_backend(a.pid)
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.relation = %s::regclass AND l.granted AND a.backend_type = 'autovacuum worker'
           AND a.query NOT LIKE '%%to prevent wraparound%%'""", (name,))
    for pid, cancelled in cur.fetchall():
        log.info("autovacuum pid %s holds %s: %s", pid, name,
                 "cancelled, as PostgreSQL would for a waiting lock" if cancelled else "cannot cancel it")


def freeze(ep: Endpoint, *, exempt_role: str | None = None, fence_tables: Sequence[str] = (),
           lock_timeout: float = 5.0) -> FreezeResult:
    """Make ``ep.dbname`` read-only for every role but ``exempt_role`` (default: ``ep.user``),
    shut the fence (installed by :func:`prepare_fence`), end every other client session, then
    fence ``fence_tables`` (what :func:`prepare_fence` could not lock), each waiting at most
    ``lock_timeout`` seconds for its table."""
    exempt = exempt_role or ep.user
    db = sql.Identifier(ep.dbname)
    with connection(ep, autocommit=True, application_name="paymigrate-freeze") as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = off")
                    .format(sql.Identifier(exempt), db))
        cur.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(db))
        fenced = _shut(cur) is not None
        if fenced:
            cur.execute(_body(_SHUT))
        # Sessions that started before the ALTER keep their old default, and one in the middle
        # of a transaction could still commit what it wrote before the fence shut: end them.
        # Replication (walsenders, apply workers) is not a client backend and goes on, and so do
        # the switch's own connections (db.reuse). Wait for each to exit: one caught inside
        # COMMIT finishes it first, and its write must land before the caller reads the position
        # to drain to.
        cur.execute("""
            SELECT pid, pg_terminate_backend(pid, %s)
              FROM pg_stat_activity
             WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND pid <> ALL(%s::int[])""", (TERMINATE_WAIT_MS, ep.dbname, reused_pids()))
        outcomes = cur.fetchall()
        # False also means the session had already gone by itself: only one still listed counts.
        cur.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)",
                    ([pid for pid, gone in outcomes if not gone],))
        alive = sorted(r[0] for r in cur.fetchall())
        if alive:
            raise FreezeError(f"froze {ep.safe()} but session(s) {', '.join(map(str, alive))} did "
                              f"not end within {TERMINATE_WAIT_MS} ms: they may still write")
        ended = len(outcomes)
        # A write that reached one of these tables since is either committed before the lock is
        # granted (so before the position the caller drains to) or holds it until the timeout.
        for name in _unfenced(cur, ep, fence_tables) if fence_tables else ():
            if not _create_trigger(cur, name, lock_timeout=lock_timeout, tries=False):
                raise FreezeError(f"cannot fence {name} on {ep.safe()} inside the pause: held for "
                                  f"over {lock_timeout:.3f}s by {_holders(cur, name)}")
    log.info("froze %s: read-only for all but %s, fence %s, %d session(s) ended", ep.safe(), exempt,
             "shut" if fenced else "not installed", ended)
    return FreezeResult(ep.dbname, True, ended, fenced)


def unfreeze(ep: Endpoint, *, exempt_role: str | None = None) -> FreezeResult:
    """Make ``ep.dbname`` writable again: the fence opened, the read-only default reset, and the
    sessions opened while frozen ended (they hold the read-only default)."""
    exempt = exempt_role or ep.user
    db = sql.Identifier(ep.dbname)
    with connection(ep, autocommit=True, application_name="paymigrate-freeze") as conn, conn.cursor() as cur:
        if _shut(cur) is not None:
            cur.execute(_body(_OPEN))
        cur.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(db))
        cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET default_transaction_read_only")
                    .format(sql.Identifier(exempt), db))
        cur.execute("""
            SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
              FROM pg_stat_activity
             WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND usename <> %s""", (ep.dbname, exempt))
        ended = cur.fetchone()[0]
    log.info("unfroze %s: writable again, %d read-only session(s) ended", ep.safe(), ended)
    return FreezeResult(ep.dbname, False, ended)


def remove_fence(ep: Endpoint, *, lock_timeout: float = 0.2) -> list[str]:
    """Drop the fence triggers of an unfrozen database where each table's lock is free within
    ``lock_timeout`` seconds (``DROP TRIGGER`` waits behind readers, and every query of the
    table behind it); return the tables still carrying one. Refuses while the fence is shut."""
    if is_fenced(ep):
        raise FreezeError(f"{ep.safe()} is fenced: unfreeze it before removing the fence")
    left: list[str] = []
    with connection(ep, autocommit=True, application_name="paymigrate-fence") as conn, conn.cursor() as cur:
        cur.execute("SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_trigger g "
                    "JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE g.tgname = %s ORDER BY 1", (FENCE_TRIGGER,))
        names = [r[0] for r in cur.fetchall()]
        cur.execute("SET lock_timeout = %s", (f"{int(lock_timeout * 1000)}ms",))
        for name in names:
            try:
                cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                    sql.Identifier(FENCE_TRIGGER), sql.SQL(name)))
            except psycopg2.errors.LockNotAvailable:
                left.append(name)
    if left:
        log.warning("fence triggers left (open, a no-op per write) on %s: %s; remove_fence again "
                    "when they are not read", ep.safe(), ", ".join(left))
    return left
