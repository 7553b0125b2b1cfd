"""The migration's table scope on a real server: both views, the filters, and the names that
preflight, replication, validation and the switch take from it."""

from __future__ import annotations

import psycopg2
import pytest

from paymigrate import scope
from paymigrate.errors import BadInput
from paymigrate.replication import dms_task
from paymigrate.replication import preflight as pf
from paymigrate.validation import list_tables

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE plain (id int PRIMARY KEY);
CREATE TABLE "Mixed Case" (id int PRIMARY KEY);
CREATE TABLE events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    PARTITION BY RANGE (id);
CREATE TABLE events_2025_low PARTITION OF events_2025 FOR VALUES FROM (0) TO (1000);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE awsdms_apply_exceptions (x text);
CREATE SCHEMA dms_control;
CREATE TABLE dms_control.status (x text);
CREATE UNLOGGED TABLE scratch (x text);
"""


@pytest.fixture
def cur(databases):
    conn = psycopg2.connect(databases[0])
    conn.autocommit = True
    with conn.cursor() as c:
        c.execute(SCHEMA)
        yield c
    conn.close()


def test_the_leaves_hold_rows_and_the_parents_are_what_the_application_sees(cur):
    s = scope.read(cur)
    assert s.leaf_names() == ['public."Mixed Case"', "public.events_2025_low", "public.events_2026",
                              "public.plain", "public.scratch"]
    assert s.parent_names() == ["public.Mixed Case", "public.events", "public.plain", "public.scratch"]
    assert s.unknown == ()


def test_a_named_parent_brings_its_partitions_and_exclude_takes_them_away(cur):
    s = scope.read(cur, tables=["public.events_2025", "public.plain", "public.nope"],
                   exclude=["public.plain"])
    assert s.leaf_names() == ["public.events_2025_low"]
    assert s.parent_names() == ["public.events"]
    assert s.unknown == ("public.nope",)
    assert scope.read(cur, tables=["public.awsdms_apply_exceptions"]).unknown == (
        "public.awsdms_apply_exceptions",)  # a DMS control table is never the application's


def test_replication_and_validation_read_the_same_scope(cur, databases):
    oids, unknown = pf.scope_oids(cur, tables=None, exclude=["public.scratch"])
    assert pf.table_names(cur, oids) == ['public."Mixed Case"', "public.events_2025_low",
                                         "public.events_2026", "public.plain"]
    assert list_tables(source=databases[0]) == ["public.Mixed Case", "public.events", "public.plain",
                                                "public.scratch"]
    cur.execute("INSERT INTO events VALUES (1, '2026-05-01')")
    assert pf.tables_with_rows(cur) == ["public.events_2026"]


def _selected(mappings):
    return [(r["rule-action"], r["object-locator"]["schema-name"], r["object-locator"]["table-name"])
            for r in mappings["rules"]]


def test_dms_mappings_are_the_scope_replication_and_validation_read(cur):
    # Without tables/exclude: the wildcard infra deploys, every schema, the engines' own left out.
    assert _selected(dms_task.scope_mappings(cur)) == _selected(dms_task.table_mappings())
    # tables: exactly the leaves that hold their rows, names as stored (no SQL quoting).
    assert _selected(dms_task.scope_mappings(
        cur, tables=['public."Mixed Case"', "public.events"], exclude=["public.events_2026"])) == [
        ("include", "public", "Mixed Case"), ("include", "public", "events_2025_low"),
        ("include", "paymigrate", "drain_marker"), ("exclude", "%", "awsdms_%")]
    # exclude alone keeps the wildcard, less each leaf it takes away.
    assert _selected(dms_task.scope_mappings(cur, exclude=["public.events_2025"]))[-2:] == [
        ("exclude", "public", "events_2025_low"), ("exclude", "%", "awsdms_%")]
    with pytest.raises(BadInput, match="public.nope"):
        dms_task.scope_mappings(cur, tables=["public.nope"])
