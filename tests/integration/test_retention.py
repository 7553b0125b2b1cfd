"""WAL retention on the real servers: a slot left behind is measured, named and droppable, and
preflight reports the limit and the free disk, or says why it cannot."""

from __future__ import annotations

import os
import uuid

import pytest
from conftest import sql_rows as run

from paymigrate.db import Endpoint, connection
from paymigrate.replication.preflight import wal_retention
from paymigrate.replication.retention import UNLIMITED, alert_lines, read_room, read_slots

pytestmark = pytest.mark.integration


@pytest.fixture
def left_slot(stack, databases):
    """A logical slot named as a migration's would be, left without a subscription."""
    source_dsn, _ = databases
    dbname = source_dsn.split("dbname=")[1].split()[0]
    run(source_dsn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (dbname,))
    yield dbname, source_dsn
    run(source_dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s", (dbname,))


def test_a_slot_left_behind_is_named_with_the_wal_it_keeps_and_its_drop_command_works(left_slot):
    name, source_dsn = left_slot
    with connection(source_dsn, autocommit=True) as conn, conn.cursor() as cur:
        [before] = read_slots(cur, name)
        cur.execute("CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) g")
        cur.execute("SELECT pg_switch_wal()")
        [after] = read_slots(cur, name)
        assert read_slots(cur, name + "x") == []  # a prefix of another name is not ours
    assert after.retained_bytes > before.retained_bytes + 10 * 2**20  # ~10 MB of heap written
    assert not after.active and after.wal_status in ("reserved", "extended")
    [line] = alert_lines([after])
    assert f"slot {name} on the source retains {after.retained_bytes} bytes" in line
    run(source_dsn, after.drop_sql)  # the alert's own command, as an operator would paste it
    assert run(source_dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
               (name,))[0][0] == 0


def test_preflight_reports_the_limit_and_the_free_disk_of_a_local_source(stack):
    room, warnings = wal_retention(stack.endpoint("source"))
    datadir = run(stack.dsn("source"), "SELECT current_setting('data_directory')")[0][0]
    st = os.statvfs(datadir)
    assert room.max_slot_wal_keep_size_mb == UNLIMITED  # PostgreSQL's default
    assert abs(room.headroom_bytes - st.f_bavail * st.f_frsize) < 512 * 2**20
    assert room.wal_bytes > 0
    assert bool(warnings) == (room.headroom_bytes < 10 * 2**30)


def test_a_role_without_privileges_is_told_unknown_not_guessed(stack, databases):
    source_dsn, _ = databases
    role, password = f"r_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    run(source_dsn, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        ep = stack.endpoint("source")
        plain = Endpoint(ep.host, ep.port, ep.dbname, role, password)
        with connection(plain, autocommit=True) as conn, conn.cursor() as cur:
            room = read_room(cur, host=plain.host)
        assert room.headroom_bytes is None and "pg_read_all_settings" in room.headroom_reason
        assert room.wal_bytes is None and "unknown" in str(room)
    finally:
        run(source_dsn, f"DROP ROLE {role}")
    with connection(stack.endpoint("source"), autocommit=True) as conn, conn.cursor() as cur:
        room = read_room(cur, host="db.example.internal")  # privileged, but on another machine
    assert room.headroom_bytes is None and "not on this machine" in room.headroom_reason
