"""Repair of PostgreSQL's table sync: a table a subscriber crash left stuck is copied again.

PostgreSQL 15 drops a table's sync slot on the publisher just before it commits the table's
SYNCDONE state: a subscriber crash in between leaves the table ``copied`` (``f``) for ever, its
sync worker failing on the missing slot (``test_replication_logical`` hits it about one run in
three). Such a table leaves the publication and the subscription, is emptied, and comes back with
a copy of its own. Every step can be repeated: a table of the scope missing from the subscription
(a repair cut short) is emptied and added back.

Only for subscriptions that copy with PostgreSQL's table sync (``initial_copy="subscription"``);
one made with ``copy_data = false`` has no table to repair.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from paymigrate.replication.catalog import Link, read_tables

log = logging.getLogger(__name__)

RECHECK = 1.0  # seconds between the two looks that must both find a copy lost


def lost_copies(copied: Mapping[int, str], sync_slots: Iterable[str], sub_oid: int) -> set[str]:
    """Of the tables ``copied`` (relid -> name, no sync worker running), those whose sync slot
    on the publisher is gone: PostgreSQL names it ``pg_{subscription oid}_sync_{relid}_{system}``.

    >>> lost_copies({16400: "public.a", 16410: "public.b"}, ["pg_5_sync_16400_7312"], 5)
    {'public.b'}
    """
    slots = list(sync_slots)
    return {name for relid, name in copied.items()
            if not any(s.startswith(f"pg_{sub_oid}_sync_{relid}_") for s in slots)}


def _copied_without_worker(cur: Cursor, sub_oid: int) -> dict[int, str]:
    cur.execute("""
        SELECT r.srrelid, format('%%I.%%I', n.nspname, c.relname)
        FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.srsubid = %s AND r.srsubstate = 'f' AND NOT EXISTS (
              SELECT 1 FROM pg_stat_subscription w
              WHERE w.subid = r.srsubid AND w.relid = r.srrelid)""", (sub_oid,))
    return dict(cur.fetchall())


def _sync_slots(cur: Cursor, sub_oid: int) -> list[str]:
    cur.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s",
                (f"pg\\_{sub_oid}\\_sync\\_%",))
    return [r[0] for r in cur.fetchall()]


def find_lost(sub_oid: int, *, subscriber: Cursor, publisher: Cursor,
              recheck: float = RECHECK) -> list[str]:
    """Tables whose copy is lost, seen so twice ``recheck`` seconds apart (a normal sync passes
    between dropping its slot and committing in milliseconds)."""
    def once() -> set[str]:
        copied = _copied_without_worker(subscriber, sub_oid)
        return lost_copies(copied, _sync_slots(publisher, sub_oid), sub_oid) if copied else set()

    first = once()
    if not first:
        return []
    time.sleep(recheck)
    return sorted(first & once())


def _refresh(cur: Cursor, link: Link, *, copy_data: bool) -> None:
    cur.execute(sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = {})")
                .format(sql.Identifier(link.name), sql.Literal(copy_data)))


def repair(link: Link, sub_oid: int, *, scope: list[str], subscriber: Cursor, publisher: Cursor,
           recheck: float = RECHECK) -> list[str]:
    """Copy again, from scratch, every table of ``link``'s subscription whose table sync was
    lost; returns them. ``scope`` is every table the migration replicates (``schema.name``);
    the cursors are autocommit ones on each side (``REFRESH PUBLICATION`` refuses a transaction)."""
    lost = find_lost(sub_oid, subscriber=subscriber, publisher=publisher, recheck=recheck)
    pub = sql.Identifier(link.name)
    for name in lost:
        log.warning("%s: stuck as 'copied' since a crash of %s (its table-sync slot is gone): "
                    "emptied and copied again", name, link.subscriber.safe())
        publisher.execute(sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(pub, sql.SQL(name)))
        _refresh(subscriber, link, copy_data=False)
    subscribed = {t.table for t in read_tables(subscriber, sub_oid)}
    # A table created on the source after start() is not on the target: left alone.
    subscriber.execute("SELECT n FROM unnest(%s::text[]) n WHERE to_regclass(n) IS NOT NULL",
                       ([n for n in scope if n not in subscribed],))
    missing = [r[0] for r in subscriber.fetchall()]
    for name in missing:
        subscriber.execute(f"TRUNCATE ONLY {name}")  # name from format('%I.%I')
    if missing:
        tables = sql.SQL(", ").join(sql.SQL(n) for n in sorted(subscribed | set(missing)))
        publisher.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(pub, tables))
        _refresh(subscriber, link, copy_data=True)
        log.warning("table sync of %s started again from an empty table", ", ".join(missing))
    return lost
