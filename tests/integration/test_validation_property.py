"""Property: random deletes, inserts and updates applied to a copy are found exactly."""

from __future__ import annotations

from collections import Counter

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


# A composite key whose first column mostly cuts finely (segments on it alone, by width_bucket)
# with one heavy first value (77) that only the full key can split.
LEDGER = """CREATE TABLE ledger (txn int, line int, amount numeric(10, 2), PRIMARY KEY (txn, line));"""
LEDGER_FILL = """TRUNCATE ledger; INSERT INTO ledger
    SELECT t, l, t + l * 0.01 FROM generate_series(1, 150) t,
           generate_series(1, CASE WHEN t = 77 THEN 120 ELSE 1 + t % 3 END) l"""


@st.composite
def ledger_changes(draw):
    heavy = st.tuples(st.just(77), st.integers(1, 120))
    spread = st.tuples(st.integers(1, 150), st.just(1))
    existing = heavy | spread
    deleted = draw(st.sets(existing, max_size=10))
    updated = draw(st.sets(existing.filter(lambda k: k not in deleted), max_size=10))
    inserted = draw(st.sets(st.tuples(st.integers(1, 160), st.integers(200, 210)), max_size=10))
    tuning = draw(st.sampled_from([Tuning(rows_per_segment=20, leaf_rows=6, fanout=3,
                                          exact_bounds_rows=100, sample_per_segment=3),
                                   Tuning(rows_per_segment=40, leaf_rows=10, fanout=4)]))
    return deleted, updated, inserted, tuning


@pytest.fixture
def ledger_pair(databases):
    for dsn in databases:
        _run(dsn, LEDGER)
        _run(dsn, LEDGER_FILL)
    return databases


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(change=ledger_changes())
def test_random_changes_under_a_composite_key_are_found_exactly(ledger_pair, change):
    deleted, updated, inserted, tuning = change
    src, tgt = ledger_pair
    _run(tgt, LEDGER_FILL)
    conn = psycopg2.connect(tgt)
    conn.autocommit = True
    with conn.cursor() as cur:
        for k in deleted:
            cur.execute("DELETE FROM ledger WHERE (txn, line) = (%s, %s)", k)
        for k in updated:
            cur.execute("UPDATE ledger SET amount = -amount WHERE (txn, line) = (%s, %s)", k)
        for k in inserted:
            cur.execute("INSERT INTO ledger VALUES (%s, %s, 1)", k)
    conn.close()
    r = validate_table(source=src, target=tgt, table="public.ledger", max_keys=1000, tuning=tuning)
    assert {tuple(k) for k in r.missing} == deleted
    assert {tuple(k) for k in r.extra} == inserted
    assert {tuple(k) for k in r.different} == updated


# A table without key: rows repeat (kind has 3 values, half the notes are NULL), so it is a
# multiset, bucketed by one column's hash (the most distinct by the planner's statistics).
BAG = "CREATE TABLE bag (kind text, note text, amount numeric(10, 2))"
BAG_FILL = """TRUNCATE bag; INSERT INTO bag SELECT 'k' || (g % 3), CASE WHEN g % 2 = 0 THEN 'n' || (g % 40) END,
    (g % 25) * 1.5 FROM generate_series(1, 240) g"""
BAG_ROW = st.tuples(st.sampled_from(["k0", "k1", "k2", "k9", ""]),
                    st.none() | st.sampled_from(["n0", "n3", "n7", "", "x"]),
                    st.sampled_from(["0.00", "1.50", "3.00", "99.99"]))


@pytest.fixture
def bag_pair(databases):
    for dsn in databases:
        _run(dsn, BAG)
    return databases


def _bag(dsn):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT kind, note, amount::text FROM bag")
            return Counter(cur.fetchall())
    finally:
        conn.close()


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(deleted=st.lists(BAG_ROW, max_size=6), inserted=st.lists(BAG_ROW, max_size=6),
       analyzed=st.booleans(),
       tuning=st.sampled_from([Tuning(rows_per_segment=16), Tuning(rows_per_segment=60), Tuning()]))
def test_random_changes_to_a_table_without_key_are_counted_exactly(bag_pair, deleted, inserted,
                                                                   analyzed, tuning):
    src, tgt = bag_pair
    for dsn in bag_pair:
        _run(dsn, BAG_FILL)
        _run(dsn, "ANALYZE bag" if analyzed else "SELECT 1")
    for kind, note, amount in deleted:  # one copy of the row, where there is one
        _run(tgt, "DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE kind = %s AND "
                  "note IS NOT DISTINCT FROM %s AND amount = %s::numeric LIMIT 1)", (kind, note, amount))
    for row in inserted:
        _run(tgt, "INSERT INTO bag VALUES (%s, %s, %s::numeric)", row)
    s, t = _bag(src), _bag(tgt)
    r = validate_table(source=src, target=tgt, table="public.bag", tuning=tuning)
    assert not r.keyed
    assert (r.source_surplus, r.target_surplus) == (sum((s - t).values()), sum((t - s).values()))
