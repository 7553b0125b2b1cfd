"""The DMS drain: a marker row, written on the publisher and waited for on the subscriber.

DMS shows nothing of where its apply stands in the publisher's WAL that could be read within a
write pause (its slot's ``confirmed_flush_lsn`` moves on DMS's own schedule, and which slot is
DMS's is its business). What it does promise is to apply changes transactionally in commit order
(``BatchApplyEnabled`` off). So the drain writes one row into ``paymigrate.drain_marker``, a
migration-owned table that the task's table mappings carry
(:func:`paymigrate.replication.dms_task.table_mappings` selects it), and holds the position it was written at; once the
row is on the subscriber, every transaction the publisher committed before it is there too.

The row records where it was written: ``origin`` (the server's system identifier and database:
markers of both directions meet in the same table) and ``pos``, ``pg_current_wal_insert_lsn()``
inside its own transaction, at or past the end of every transaction committed before it. A
marker whose ``pos`` is at or past a position therefore proves that position applied.

The table is outside the migration's scope (:data:`paymigrate.scope.MIGRATION_SCHEMA`): never
fenced, so the migration role writes it even into a frozen writer, and never validated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from paymigrate.errors import ReplicationError
from paymigrate.replication.base import int_to_lsn, lsn_to_int
from paymigrate.scope import DRAIN_MARKER_TABLE, MIGRATION_SCHEMA

log = logging.getLogger(__name__)

TABLE = f"{MIGRATION_SCHEMA}.{DRAIN_MARKER_TABLE}"
_T = sql.Identifier(MIGRATION_SCHEMA, DRAIN_MARKER_TABLE)
_ORIGIN = "SELECT format('%s/%s', system_identifier, current_database()) FROM pg_control_system()"


@dataclass(frozen=True)
class Marker:
    """One marker row: written on ``origin`` at WAL byte position ``pos``."""

    origin: str
    pos: int

    def __post_init__(self) -> None:
        if not self.origin or self.pos < 0:
            raise ValueError(f"marker {self.origin!r} at {self.pos!r} is not a marker")

    @property
    def lsn(self) -> str:
        return int_to_lsn(self.pos)


def ensure_table(cur: Cursor) -> bool:
    """Create ``paymigrate.drain_marker`` where ``cur`` is connected (idempotent); whether it was
    made now. Numeric, text and a timestamp only: types DMS carries as they are. Its key is the
    natural one, so no sequence has to follow it."""
    cur.execute("SELECT to_regclass(%s) IS NULL", (TABLE,))
    if not cur.fetchone()[0]:
        return False
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(MIGRATION_SCHEMA)))
    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(MIGRATION_SCHEMA)))
    cur.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        origin text NOT NULL, pos numeric(20, 0) NOT NULL, lsn text NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (origin, pos))""").format(_T))
    return True


def origin(cur: Cursor) -> str:
    """The origin the markers written where ``cur`` is connected carry."""
    cur.execute(_ORIGIN)
    return str(cur.fetchone()[0])


def write(cur: Cursor, position: str) -> Marker:
    """On the publisher: a marker at or past ``position``; the newest one when it already is
    (a drain polled again writes nothing more). ``cur`` must be in autocommit: the row has to be
    committed to be carried."""
    wanted = lsn_to_int(position)
    here = origin(cur)
    cur.execute(sql.SQL("SELECT max(pos) FROM {} WHERE origin = %s").format(_T), (here,))
    newest = cur.fetchone()[0]
    if newest is not None and int(newest) >= wanted:
        return Marker(here, int(newest))
    # BEGIN READ WRITE: a frozen writer's default is read-only for every role but the migration's.
    cur.execute("BEGIN READ WRITE")
    try:
        # Two drains at once (validation compares tables in parallel) can read the same insert
        # position: the second waits for the first's row and takes it as its own marker.
        cur.execute(sql.SQL("INSERT INTO {} (origin, pos, lsn) SELECT %s, l - '0/0'::pg_lsn, l::text "
                            "FROM pg_current_wal_insert_lsn() l ON CONFLICT DO NOTHING").format(_T),
                    (here,))
        cur.execute("COMMIT")
    except Exception:
        cur.execute("ROLLBACK")
        raise
    cur.execute(sql.SQL("SELECT max(pos) FROM {} WHERE origin = %s").format(_T), (here,))
    pos = int(cur.fetchone()[0])
    log.debug("drain marker written on %s at %s (for %s)", here, int_to_lsn(pos), position)
    return Marker(here, pos)


def arrived(cur: Cursor, marker: Marker) -> bool:
    """On the subscriber: whether ``marker`` (or a later one of its origin) is there."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
    if not cur.fetchone()[0]:
        raise ReplicationError(f"{TABLE} is missing on the subscriber: the DMS engine's start "
                               "creates it on both servers")
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE origin = %s AND pos >= %s)").format(_T),
                (marker.origin, marker.pos))
    return bool(cur.fetchone()[0])
