"""A catch-up waiter for native logical replication (publication / subscription).

The subscriber confirms to the publisher, per slot, the WAL position it has applied and flushed
(``pg_replication_slots.confirmed_flush_lsn``). Once every logical slot of the source database
(or the named one) has confirmed a position, the target holds every transaction committed
before it. Table-sync slots of a subscription still copying count too: a table still being
copied is not caught up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg2

from paymigrate.db import Endpoint, connection, redact
from paymigrate.errors import ValidationError

log = logging.getLogger(__name__)

_SLOTS_SQL = """
SELECT slot_name, confirmed_flush_lsn, confirmed_flush_lsn >= %(lsn)s::pg_lsn
  FROM pg_catalog.pg_replication_slots
 WHERE slot_type = 'logical' AND database = pg_catalog.current_database()
   AND (%(slot)s::text IS NULL OR slot_name = %(slot)s)
"""


def logical_catch_up(source_dsn: str | Endpoint, *, slot_name: str | None = None,
                     timeout: float = 60, poll_seconds: float = 0.2) -> Callable[[str], bool]:
    """A ``catch_up(lsn) -> bool`` that polls the source's slots until all confirmed ``lsn``.

    Returns False when ``timeout`` seconds pass first; raises :class:`ValidationError` when the
    source database has no logical slot (or not the named one): nothing replicates to wait for.
    """
    if timeout <= 0 or poll_seconds <= 0:
        raise ValueError(f"timeout {timeout} and poll_seconds {poll_seconds} must be positive")

    def catch_up(lsn: str) -> bool:
        deadline = time.monotonic() + timeout
        try:
            with connection(source_dsn, autocommit=True,
                            application_name="paymigrate-catch-up") as conn, conn.cursor() as cur:
                while True:
                    cur.execute(_SLOTS_SQL, {"lsn": lsn, "slot": slot_name})
                    slots = cur.fetchall()
                    if not slots:
                        which = f"named {slot_name}" if slot_name else "at all"
                        raise ValidationError(f"the source database has no logical replication "
                                              f"slot {which}: nothing replicates to wait for")
                    if all(done for _, _, done in slots):
                        return True
                    if time.monotonic() >= deadline:
                        behind = [f"{name} at {pos}" for name, pos, done in slots if not done]
                        log.warning("target not caught up to %s after %.0fs: %s", lsn, timeout,
                                    ", ".join(behind))
                        return False
                    time.sleep(poll_seconds)
        except psycopg2.Error as exc:
            raise ValidationError(f"catch-up check on the source failed: {redact(str(exc)).strip()}") from None

    return catch_up
