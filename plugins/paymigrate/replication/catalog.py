"""What PostgreSQL's catalogs say about one direction of logical replication, as frozen values.

A direction (:class:`Link`) has a publisher, which holds the publication and the slot, and a
subscriber, which holds the subscription. Each read takes a cursor, so a caller reads all it needs
of one side over one connection: the subscriber's ``pg_subscription`` and ``pg_subscription_rel``
(:func:`read_subscribed`), the publisher's ``pg_replication_slots`` (:func:`read_slot`). What is
decided from them (is the direction drained, how far is the copy) is plain code on these values:
:func:`drained`, :func:`status`, :func:`not_ready`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from psycopg2.extensions import cursor as Cursor

from paymigrate.db import Endpoint
from paymigrate.errors import ReplicationError
from paymigrate.replication.base import ReplicationStatus, lsn_to_int

# pg_subscription_rel.srsubstate: a table's initial sync, in order.
TABLE_STATES = {"i": "init", "d": "copying", "f": "copied", "s": "synced", "r": "ready"}
_READY = frozenset("sr")  # the sync is over: the apply worker carries the table's changes


@dataclass(frozen=True)
class Link:
    """One direction: ``publisher`` has the publication and the slot, ``subscriber`` the
    subscription, all three called ``name``."""

    direction: str
    publisher: Endpoint
    subscriber: Endpoint
    name: str

    def __str__(self) -> str:
        return f"{self.direction} {self.name} ({self.publisher.safe()} -> {self.subscriber.safe()})"


@dataclass(frozen=True)
class Subscription:
    """A row of ``pg_subscription``; ``pid`` is its apply worker's, None when none runs;
    ``comment`` is the subscription's ``COMMENT`` (the engine marks the deferred schema built)."""

    oid: int
    enabled: bool
    slot: str | None
    pid: int | None
    comment: str | None = None

    @property
    def running(self) -> bool:
        return self.enabled and self.pid is not None


@dataclass(frozen=True)
class TableSync:
    """A table's row in ``pg_subscription_rel``: ``table`` is ``schema.name`` (quoted as needed),
    ``state`` the one-letter ``srsubstate``."""

    table: str
    state: str
    lsn: str | None = None

    @property
    def ready(self) -> bool:
        return self.state in _READY

    @property
    def word(self) -> str:
        return TABLE_STATES.get(self.state, self.state)


@dataclass(frozen=True)
class Subscribed:
    """A subscription with the sync state of each of its tables, read together.

    >>> sub = Subscribed(Subscription(1, True, "m", 42), (TableSync("public.a", "r"),
    ...                                                    TableSync("public.b", "d")))
    >>> sub.synced, sub.loaded, sub.words()
    (1, False, {'public.a': 'ready', 'public.b': 'copying'})
    """

    subscription: Subscription
    tables: tuple[TableSync, ...] = ()

    @property
    def synced(self) -> int:
        return sum(t.ready for t in self.tables)

    @property
    def loaded(self) -> bool:
        """Every table finished its initial sync (and there is at least one)."""
        return bool(self.tables) and self.synced == len(self.tables)

    def words(self) -> dict[str, str]:
        return {t.table: t.word for t in self.tables}


@dataclass(frozen=True)
class Slot:
    """A row of ``pg_replication_slots``; ``confirmed`` is its ``confirmed_flush_lsn``: every
    transaction before it is applied and flushed by the subscriber."""

    name: str
    plugin: str | None
    database: str | None
    active_pid: int | None
    confirmed: str | None

    def confirmed_past(self, position: str) -> bool:
        """``position`` is confirmed (False while the slot has confirmed nothing yet).

        >>> Slot("m", "pgoutput", "db", None, "0/20").confirmed_past("0/1F")
        True
        """
        return self.confirmed is not None and lsn_to_int(self.confirmed) >= lsn_to_int(position)


# ---- reads: each on the cursor of one side ----------------------------------------------------
def read_subscription(cur: Cursor, name: str) -> Subscription | None:
    """The subscriber's subscription ``name`` in the current database, or None."""
    cur.execute("""
        SELECT s.oid, s.subenabled, s.subslotname,
               (SELECT st.pid FROM pg_stat_subscription st
                WHERE st.subid = s.oid AND st.relid IS NULL LIMIT 1),
               obj_description(s.oid, 'pg_subscription')
        FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
        WHERE s.subname = %s AND d.datname = current_database()""", (name,))
    row = cur.fetchone()
    return None if row is None else Subscription(*row)


def read_tables(cur: Cursor, sub_oid: int) -> tuple[TableSync, ...]:
    """The sync state of every table of the subscription, by name."""
    cur.execute("""
        SELECT format('%%I.%%I', n.nspname, c.relname), r.srsubstate, r.srsublsn::text
        FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.srsubid = %s ORDER BY 1""", (sub_oid,))
    return tuple(TableSync(*row) for row in cur.fetchall())


def read_subscribed(cur: Cursor, name: str) -> Subscribed | None:
    """Subscription ``name`` and its tables, on the subscriber's cursor; None without one."""
    sub = read_subscription(cur, name)
    return None if sub is None else Subscribed(sub, read_tables(cur, sub.oid))


def read_slot(cur: Cursor, name: str) -> Slot | None:
    """The publisher's replication slot ``name``, or None."""
    cur.execute("SELECT slot_name, plugin, database, active_pid, confirmed_flush_lsn::text "
                "FROM pg_replication_slots WHERE slot_name = %s", (name,))
    row = cur.fetchone()
    return None if row is None else Slot(*row)


# ---- decisions on what was read ---------------------------------------------------------------
def drained(link: Link, subscribed: Subscribed | None, slot: Slot | None, position: str) -> bool:
    """Whether ``link``'s subscriber has applied and flushed everything up to ``position``:
    the slot confirmed it *and* every table finished its initial sync (during the copy the apply
    worker confirms changes of tables still being copied). Raises when the direction does not
    replicate at all, since then waiting cannot help."""
    lsn_to_int(position)  # a bad position is refused whatever the state
    if subscribed is None:
        raise ReplicationError(f"no subscription {link.name} on {link.subscriber.safe()}: "
                               f"the {link.direction} direction is not replicating")
    if slot is None:
        raise ReplicationError(f"slot {link.name} on {link.publisher.safe()} is gone: "
                               f"the {link.direction} direction cannot catch up")
    return all(t.ready for t in subscribed.tables) and slot.confirmed_past(position)


def status(link: Link, subscribed: Subscribed | None, slot: Slot | None) -> ReplicationStatus:
    """The engine-neutral status of ``link``. ``slot`` matters only without a subscription: a
    forward slot alone is an initial copy under its snapshot (running, or interrupted)."""
    if subscribed is None:
        if slot is not None:
            return ReplicationStatus("copying", False, False, detail=(
                f"initial copy under the exported snapshot of slot {link.name}, held by pid "
                f"{slot.active_pid}" if slot.active_pid else
                f"slot {link.name} without a subscription: an initial copy building its keys, "
                "or one interrupted (start() again copies every table anew)"))
        return ReplicationStatus("absent", False, False, detail=f"no subscription {link.name} "
                                                                f"on {link.subscriber.safe()}")
    sub = subscribed.subscription
    if not sub.enabled:
        state, detail = "stopped", "subscription disabled"
    elif sub.pid is None:
        state, detail = "starting", ("no apply worker running: it is starting, or failing "
                                     f"and retrying (see the log of {link.subscriber.safe()})")
    else:
        state, detail = ("streaming" if subscribed.loaded else "copying"), ""
    return ReplicationStatus(state, sub.running, subscribed.loaded, subscribed.words(),
                             subscribed.synced, len(subscribed.tables), detail)


def not_ready(subscribed: Subscribed, tables: Iterable[str]) -> str | None:
    """Why ``tables`` are not all replicated by ``subscribed``, naming each; None when they are.

    >>> sub = Subscribed(Subscription(1, True, "m", 42), (TableSync("public.a", "r"),
    ...                                                    TableSync("public.b", "f")))
    >>> not_ready(sub, ["public.a", "public.b", "public.c"])
    'not subscribed: public.c; not ready: public.b (copied)'
    >>> not_ready(sub, ["public.a"]) is None
    True
    """
    wanted = set(tables)
    states = {t.table: t for t in subscribed.tables}
    missing = sorted(wanted - set(states))
    behind = sorted(f"{t.table} ({t.word})" for t in states.values()
                    if t.table in wanted and not t.ready)
    parts = [f"not subscribed: {', '.join(missing)}"] if missing else []
    parts += [f"not ready: {', '.join(behind)}"] if behind else []
    return "; ".join(parts) or None
