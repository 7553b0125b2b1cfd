"""Hypothesis against the validation engine's key handling: text keys with quotes, unicode,
empty strings and long text; integer and numeric keys at their extremes. Whatever the keys,
the missing, extra and different ones are reported exactly."""

from __future__ import annotations

from decimal import Decimal

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paymigrate.validation import Tuning, validate_table

pytestmark = pytest.mark.integration

SMALL = Tuning(rows_per_segment=8, leaf_rows=3, fanout=3, exact_bounds_rows=20, sample_per_segment=2)
TUNINGS = st.sampled_from([SMALL, Tuning()])

# Characters PostgreSQL text can hold (no NUL, no lone surrogates), favouring the awkward ones.
TEXT_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00") | st.sampled_from(
    list("'\"\\%_,;()[]{}$ \t\n") + ["\u202e", "\u00e9", "\u0301", "\U0001f600", "\ufeff", "\u0130"])
TEXT_KEYS = st.one_of(
    st.sampled_from(["", " ", "'", "''", '"', "\\", "NULL", "null", "a'); DROP TABLE k; --", "-", "0",
                     "e\u0301", "\u00e9", "\u00e9 ", "E\u0301"]),
    st.text(TEXT_CHARS, max_size=12),
    st.text(TEXT_CHARS, min_size=300, max_size=500),  # long keys: still under the btree row limit
)
BIGINT_KEYS = st.one_of(st.sampled_from([-2**63, 2**63 - 1, -2**63 + 1, 2**63 - 2, 0, -1, 1]),
                        st.integers(-2**63, 2**63 - 1))
NUMERIC_KEYS = st.one_of(
    st.sampled_from([Decimal("0"), Decimal("-0.000000000000000000001"), Decimal("1e100"),
                     Decimal("-1e100"), Decimal("123456789012345678901234567890.123456789")]),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e30"),
                max_value=Decimal("1e30"), places=10),
)


def _sql(dsn: str, statement: str, rows=None) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            if rows is None:
                cur.execute(statement)
            else:
                cur.executemany(statement, rows)
    finally:
        conn.close()


@st.composite
def scenario(draw, keys):
    source = draw(st.lists(keys, min_size=1, max_size=30, unique_by=_canonical))
    deleted = draw(st.sets(st.sampled_from(range(len(source))), max_size=5))
    kept = [i for i in range(len(source)) if i not in deleted]
    changed = draw(st.sets(st.sampled_from(kept), max_size=5)) if kept else set()
    taken = {_canonical(k) for k in source}
    extra = draw(st.lists(keys.filter(lambda k: _canonical(k) not in taken), max_size=5,
                          unique_by=_canonical))
    return source, deleted, changed, extra, draw(TUNINGS)


def _canonical(key):
    """Equality as PostgreSQL's key sees it: numerics equal whatever their scale."""
    return key.normalize() if isinstance(key, Decimal) else key


@pytest.fixture
def tables(databases):
    for dsn in databases:
        _sql(dsn, "CREATE TABLE k (key text PRIMARY KEY, v int NOT NULL);"
                  "CREATE TABLE b (key bigint PRIMARY KEY, v int NOT NULL);"
                  "CREATE TABLE n (key numeric PRIMARY KEY, v int NOT NULL);")
    return databases


def _check(tables, table, case):
    source, deleted, changed, extra, tuning = case
    src, tgt = tables
    for dsn in (src, tgt):
        _sql(dsn, f"TRUNCATE {table}")
        _sql(dsn, f"INSERT INTO {table} VALUES (%s, 1)", [(k,) for k in source])
    _sql(tgt, f"DELETE FROM {table} WHERE key = %s", [(source[i],) for i in deleted])
    _sql(tgt, f"UPDATE {table} SET v = 2 WHERE key = %s", [(source[i],) for i in changed])
    _sql(tgt, f"INSERT INTO {table} VALUES (%s, 1)", [(k,) for k in extra])
    r = validate_table(source=src, target=tgt, table=f"public.{table}", max_keys=1000, tuning=tuning)
    norm = (lambda k: Decimal(str(k)).normalize()) if table == "n" else (lambda k: k)
    assert {norm(k) for k in r.missing} == {_canonical(source[i]) for i in deleted}
    assert {norm(k) for k in r.different} == {_canonical(source[i]) for i in changed}
    assert {norm(k) for k in r.extra} == {_canonical(k) for k in extra}
    assert (r.status == "match") == (not (deleted or changed or extra))


FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(case=scenario(TEXT_KEYS))
def test_text_keys_with_quotes_unicode_empty_and_long_are_found_exactly(tables, case):
    _check(tables, "k", case)


@FUZZ
@given(case=scenario(BIGINT_KEYS))
def test_bigint_keys_at_their_extremes_are_found_exactly(tables, case):
    _check(tables, "b", case)


@FUZZ
@given(case=scenario(NUMERIC_KEYS))
def test_numeric_keys_huge_tiny_and_of_any_scale_are_found_exactly(tables, case):
    _check(tables, "n", case)
