"""Property: random deletes, inserts and updates applied to a copy are found exactly."""

from __future__ import annotations

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paymigrate.validation import Tuning, validate_table

pytestmark = pytest.mark.integration

ROWS = 300
TABLE = """CREATE TABLE t (id int PRIMARY KEY, amount numeric(10, 2), note text, at timestamptz);"""
FILL = f"""TRUNCATE t; INSERT INTO t SELECT g, g * 0.5, 'n' || g,
    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour' FROM generate_series(1, {ROWS}) g"""
UPDATES = {
    "amount": "UPDATE t SET amount = amount + 0.01 WHERE id = %s",
    "note_null": "UPDATE t SET note = NULL WHERE id = %s",
    "note_empty": "UPDATE t SET note = '' WHERE id = %s",
    "at": "UPDATE t SET at = at + interval '1 microsecond' WHERE id = %s",
}


@st.composite
def changes(draw):
    ids = st.integers(1, ROWS)
    deleted = draw(st.sets(ids, max_size=12))
    updated = draw(st.dictionaries(ids.filter(lambda i: i not in deleted),
                                   st.sampled_from(sorted(UPDATES)), max_size=12))
    inserted = draw(st.sets(st.integers(-50, 0) | st.integers(ROWS + 1, ROWS + 500), max_size=12))
    tuning = draw(st.sampled_from([Tuning(rows_per_segment=30, leaf_rows=8, fanout=3,
                                          exact_bounds_rows=100, sample_per_segment=3),
                                   Tuning(rows_per_segment=64, leaf_rows=32, fanout=8),
                                   Tuning()]))
    return deleted, updated, inserted, tuning


@pytest.fixture
def pair(databases):
    for dsn in databases:
        _run(dsn, TABLE)
        _run(dsn, FILL)
    return databases


def _run(dsn, statement, params=None):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
    finally:
        conn.close()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(change=changes())
def test_random_changes_are_found_exactly(pair, change):
    deleted, updated, inserted, tuning = change
    src, tgt = pair
    _run(tgt, FILL)  # the target starts each example as an exact copy
    conn = psycopg2.connect(tgt)
    conn.autocommit = True
    with conn.cursor() as cur:
        for i in deleted:
            cur.execute("DELETE FROM t WHERE id = %s", (i,))
        for i, kind in updated.items():
            cur.execute(UPDATES[kind], (i,))
        for i in inserted:
            cur.execute("INSERT INTO t VALUES (%s, 1, 'new', now())", (i,))
    conn.close()
    # Every note starts non-NULL and non-empty, so every drawn update is a real difference.
    r = validate_table(source=src, target=tgt, table="public.t", max_keys=1000, tuning=tuning)
    assert set(r.missing) == deleted
    assert set(r.extra) == inserted
    assert set(r.different) == set(updated)
    assert (r.missing_count, r.extra_count, r.different_count) == (
        len(deleted), len(inserted), len(updated))
    assert (r.status == "match") == (not (deleted or inserted or updated))
