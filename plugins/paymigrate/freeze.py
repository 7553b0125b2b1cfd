"""Freezing a database for the write switch: read-only for everyone but the migration role.

``freeze`` makes new transactions read-only by default in the database (``ALTER DATABASE ...
SET default_transaction_read_only``), exempts the migration role (whose subscriptions must keep
applying, e.g. reverse replication onto a frozen source), and ends every other client session
so a writer that bypasses the router reconnects read-only. ``unfreeze`` undoes it. Both are
idempotent and report what they did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from psycopg2 import sql

from paymigrate.db import Endpoint, connection
from paymigrate.errors import FreezeError

log = logging.getLogger(__name__)

TERMINATE_WAIT_MS = 5000


@dataclass(frozen=True)
class FreezeResult:
    database: str
    frozen: bool
    sessions_ended: int


def is_frozen(ep: Endpoint) -> bool:
    with connection(ep.with_db("postgres"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("""
            SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                            WHERE d.datname = %s AND s.setrole = 0
                              AND 'default_transaction_read_only=on' = ANY (s.setconfig))""",
                    (ep.dbname,))
        return bool(cur.fetchone()[0])


def freeze(ep: Endpoint, *, exempt_role: str | None = None) -> FreezeResult:
    """Make ``ep.dbname`` read-only for every role but ``exempt_role`` (default: ``ep.user``)."""
    exempt = exempt_role or ep.user
    db = sql.Identifier(ep.dbname)
    with connection(ep.with_db("postgres"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = off")
                    .format(sql.Identifier(exempt), db))
        cur.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(db))
        # Sessions that started before the ALTER keep their old default: end them. Replication
        # (walsenders, apply workers) is not a client backend and goes on. Wait for each to exit:
        # one caught inside COMMIT finishes it first, and its write must land before the caller
        # reads the position to drain to.
        cur.execute("""
            SELECT pid, pg_terminate_backend(pid, %s)
              FROM pg_stat_activity
             WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()""",
                    (TERMINATE_WAIT_MS, ep.dbname))
        outcomes = cur.fetchall()
        # False also means the session had already gone by itself: only one still listed counts.
        cur.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)",
                    ([pid for pid, gone in outcomes if not gone],))
        alive = sorted(r[0] for r in cur.fetchall())
        if alive:
            raise FreezeError(f"froze {ep.safe()} but session(s) {', '.join(map(str, alive))} did "
                              f"not end within {TERMINATE_WAIT_MS} ms: they may still write")
        ended = len(outcomes)
    log.info("froze %s: read-only for all but %s, %d session(s) ended", ep.safe(), exempt, ended)
    return FreezeResult(ep.dbname, True, ended)


def unfreeze(ep: Endpoint, *, exempt_role: str | None = None) -> FreezeResult:
    """Make ``ep.dbname`` writable again (sessions opened while frozen are ended too, since they
    hold the read-only default)."""
    exempt = exempt_role or ep.user
    db = sql.Identifier(ep.dbname)
    with connection(ep.with_db("postgres"), autocommit=True) as conn, conn.cursor() as cur:
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
