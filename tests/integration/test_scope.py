"""The migration's table scope on a real server: both views, the filters, and the names that
preflight, replication, validation and the switch take from it."""

from __future__ import annotations

import psycopg2
import pytest

from paymigrate import scope
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


def test_dms_mappings_state_the_scope_rules_and_refuse_a_bad_schema():
    rules = scope.dms_table_mappings("sales")["rules"]
    assert [(r["rule-action"], r["object-locator"]["schema-name"], r["object-locator"]["table-name"])
            for r in rules] == [("include", "sales", "%"), ("exclude", "sales", "awsdms_%"),
                                ("include", "paymigrate", "drain_marker")]
    with pytest.raises(ValueError, match="'public; drop table x' is not a plain"):
        scope.dms_table_mappings("public; drop table x")
