"""WAL a replication slot keeps on its server, and what preflight knows about room for it.

A logical slot holds back WAL from its ``restart_lsn`` on: a migration stopped or failed with its
slot left in place keeps WAL on the source until ``max_slot_wal_keep_size`` (unlimited by
default) invalidates the slot or the disk fills. Preflight reports the limit and the headroom,
the sensors and the scheduled validation publish the retained bytes to CloudWatch (alarmed in
``infra/components/monitoring.py``), and a failure alert names each slot with the command that
drops it.

:func:`read_slots` and :func:`read_room` are the only SQL; :func:`evaluate_room`,
:func:`metric_data` and :func:`alert_lines` are plain and tested without a server.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAMESPACE = "Migration/Replication"
METRIC = "ReplicationSlotRetainedWalBytes"  # the largest of the migration's slots on the source
UNLIMITED = -1  # max_slot_wal_keep_size = -1: a slot keeps every byte of WAL it needs
LOW_HEADROOM_BYTES = 10 * 2**30  # below this free space unlimited retention is a risk


@dataclass(frozen=True)
class SlotWal:
    slot: str
    retained_bytes: int | None  # pg_current_wal_lsn() - restart_lsn; None when never reserved
    active: bool
    wal_status: str  # reserved | extended | unreserved | lost ("" when unknown)
    side: str = "source"

    @property
    def drop_sql(self) -> str:
        return "SELECT pg_drop_replication_slot('" + self.slot.replace("'", "''") + "');"

    def __str__(self) -> str:
        held = "an unknown amount" if self.retained_bytes is None else human_bytes(self.retained_bytes)
        state = "in use by a subscription" if self.active else "inactive"
        return f"slot {self.slot} on the {self.side} retains {held} of WAL ({state}, {self.wal_status or '?'})"


def human_bytes(n: int) -> str:
    """``human_bytes(3 * 2**30 + 1) == '3221225473 bytes (3.0 GiB)'``: exact, then readable."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n} bytes ({n / size:.1f} {unit})"
    return f"{n} bytes"


_SLOTS = """
SELECT slot_name, (pg_current_wal_lsn() - restart_lsn)::bigint, active, coalesce(wal_status, '')
FROM pg_replication_slots
WHERE slot_name = %(name)s OR starts_with(slot_name, %(name)s || '_')
ORDER BY 1
"""


def read_slots(cur: Any, name: str, *, side: str = "source") -> list[SlotWal]:
    """The migration's slots (``name`` and ``name_*``: the forward slot, and on the target the
    reverse one) on the server of ``cur``, each with the WAL it holds back now."""
    cur.execute(_SLOTS, {"name": name})
    return [SlotWal(slot, retained, bool(active), status, side)
            for slot, retained, active, status in cur.fetchall()]


def metric_data(slots: Sequence[SlotWal], *, env: str) -> list[dict[str, Any]]:
    """CloudWatch datums: the largest retained WAL (the alarmed one, 0 with no slot left) and
    one per slot for the dashboard."""
    env_dims = [{"Name": "Environment", "Value": env}]
    known = [(s.slot, s.retained_bytes) for s in slots if s.retained_bytes is not None]
    data = [{"MetricName": METRIC, "Value": float(max((b for _, b in known), default=0)),
             "Unit": "Bytes", "Dimensions": env_dims}]
    data += [{"MetricName": METRIC, "Value": float(b), "Unit": "Bytes",
              "Dimensions": [*env_dims, {"Name": "Slot", "Value": slot}]} for slot, b in known]
    return data


def alert_lines(slots: Sequence[SlotWal]) -> list[str]:
    """What a failure alert says about the slots the migration left: each one, its WAL, and
    the exact commands that release it. The logical engine's subscription has its slot's name;
    dropping it on the subscriber drops the slot too, the clean way while both servers are up."""
    if not slots:
        return ["No replication slot of this migration is left on the servers."]
    lines = []
    for s in slots:
        other = "target" if s.side == "source" else "source"
        lines.append(
            f"Replication {s}; it keeps WAL until dropped. To end this replication for good: on "
            f"the {other}, `DROP SUBSCRIPTION IF EXISTS {s.slot};` (drops the slot too); a slot "
            f"without subscription: on the {s.side}, `{s.drop_sql}`. To resume instead, keep it "
            "and trigger the DAG again.")
    return lines


@dataclass(frozen=True)
class Room:
    """WAL retention limits of a server, as far as they can be known from here."""

    max_slot_wal_keep_size_mb: int  # -1 = unlimited
    headroom_bytes: int | None  # free bytes on the data directory's filesystem
    headroom_reason: str = ""  # why headroom_bytes is None
    wal_bytes: int | None = None  # what pg_wal holds now (pg_ls_waldir, needs pg_monitor)

    def to_dict(self) -> dict[str, Any]:
        return {"max_slot_wal_keep_size_mb": self.max_slot_wal_keep_size_mb,
                "headroom_bytes": self.headroom_bytes, "headroom_reason": self.headroom_reason,
                "wal_bytes": self.wal_bytes}

    def __str__(self) -> str:
        limit = ("unlimited" if self.max_slot_wal_keep_size_mb == UNLIMITED
                 else human_bytes(self.max_slot_wal_keep_size_mb * 2**20))
        room = (human_bytes(self.headroom_bytes) if self.headroom_bytes is not None
                else f"unknown ({self.headroom_reason})")
        wal = "" if self.wal_bytes is None else f", pg_wal holds {human_bytes(self.wal_bytes)}"
        return f"max_slot_wal_keep_size {limit}, free disk on the data directory {room}{wal}"


def evaluate_room(room: Room, *, low_headroom: int = LOW_HEADROOM_BYTES) -> list[str]:
    """Warnings about the source keeping WAL for a slot; none when a limit caps it."""
    if room.max_slot_wal_keep_size_mb != UNLIMITED:
        return [] if room.headroom_bytes is None or \
            room.headroom_bytes > room.max_slot_wal_keep_size_mb * 2**20 else [
            f"source max_slot_wal_keep_size ({room.max_slot_wal_keep_size_mb} MB) is more than "
            f"the free disk ({human_bytes(room.headroom_bytes)}): a stalled slot can fill it"]
    if room.headroom_bytes is None:
        return [f"source max_slot_wal_keep_size is unlimited and its free disk is unknown "
                f"({room.headroom_reason}): a slot left by a stopped migration keeps WAL until "
                f"the disk fills; watch the {METRIC} alarm or set a limit"]
    if room.headroom_bytes < low_headroom:
        return [f"source max_slot_wal_keep_size is unlimited and only "
                f"{human_bytes(room.headroom_bytes)} is free on its data directory: a stalled "
                "slot fills it; set max_slot_wal_keep_size or free space before starting"]
    return []


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def read_room(cur: Any, *, host: str) -> Room:
    """:class:`Room` of the server of ``cur`` (autocommit: a refused read must not abort a
    transaction). PostgreSQL has no SQL for free disk space: it is measured only when the
    server runs on this machine and its data directory's setting is readable."""
    cur.execute("SELECT setting::int FROM pg_settings WHERE name = 'max_slot_wal_keep_size'")
    limit = cur.fetchone()[0]
    cur.execute("SELECT pg_has_role(current_user, 'pg_monitor', 'USAGE'), "
                "pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')")
    monitor, settings = cur.fetchone()
    wal = None
    if monitor:
        cur.execute("SELECT coalesce(sum(size), 0)::bigint FROM pg_ls_waldir()")
        wal = cur.fetchone()[0]
    if not settings:
        return Room(limit, None, "data_directory is not readable by this role (needs "
                                 "pg_read_all_settings)", wal)
    cur.execute("SELECT current_setting('data_directory')")
    directory = cur.fetchone()[0]
    if not (host.startswith("/") or host in _LOOPBACK):
        return Room(limit, None, f"the server {host} is not on this machine; read its free storage "
                                 "where it runs (RDS/Aurora: CloudWatch FreeStorageSpace)", wal)
    try:
        st = os.statvfs(directory)
    except OSError as exc:
        return Room(limit, None, f"{directory} cannot be examined here: {exc.strerror}", wal)
    return Room(limit, st.f_bavail * st.f_frsize, "", wal)


def migration_slots(endpoint: Any, name: str) -> tuple[list[SlotWal], list[str]]:
    """The slots named ``name`` on both servers (``endpoint(side)`` gives each), with the WAL
    each retains, and the sides that could not be read: a server down is no reason to say
    nothing about the other."""
    import psycopg2

    from paymigrate.db import connection

    found: list[SlotWal] = []
    unreadable: list[str] = []
    for side in ("source", "target"):
        try:
            with connection(endpoint(side), autocommit=True) as conn, conn.cursor() as cur:
                found += read_slots(cur, name, side=side)
        except psycopg2.Error as exc:
            unreadable.append(f"{side} ({' '.join(str(exc).split())[:200]})")
    return found, unreadable


def slot_report(endpoint: Any, name: str) -> str:
    """A failure alert's paragraph on replication slots: each slot the migration left on a
    server, the WAL it keeps there and the commands that drop it. Never raises: an alert goes
    out even when this part cannot be read."""
    try:
        slots, unreadable = migration_slots(endpoint, name)
    except Exception as exc:
        return f"Replication slots could not be read: {type(exc).__name__}: {exc}"
    lines = alert_lines(slots)
    if unreadable:
        lines.append(f"Not reachable, slots unknown: {'; '.join(unreadable)}.")
    return "\n".join(lines)
