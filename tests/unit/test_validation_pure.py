"""Pure parts of the validation engine: segments, structure checks, SQL shape, reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg2 import sql

from paymigrate.errors import ValidationError
from paymigrate.validation import catalog, segments
from paymigrate.validation import sql as dialect
from paymigrate.validation.catalog import Column, Table
from paymigrate.validation.differ import Tuning
from paymigrate.validation.publish import parse_event, trimmed
from paymigrate.validation.report import Report, TableResult


def table(name="t", key=("id",), **types):
    cols = types or {"id": "int8", "v": "text"}
    return Table("public", name, tuple(Column(n, t, t, t == "text") for n, t in cols.items()), key)


def render(composable) -> str:
    # Enough of an adapter to show SQL without a server: identifiers and literals quoted simply.
    if isinstance(composable, sql.Composed):
        return "".join(render(c) for c in composable.seq)
    if isinstance(composable, sql.SQL):
        return composable.string
    if isinstance(composable, sql.Identifier):
        return ".".join(f'"{s}"' for s in composable.strings)
    if isinstance(composable, sql.Literal):
        return repr(composable.wrapped)
    raise TypeError(composable)


@given(st.lists(st.integers(0, 10**6), unique=True, max_size=50).map(sorted))
def test_segments_cover_the_range_without_gaps(bounds):
    keys = [(str(b),) for b in bounds]
    segs = segments.segments_between(None, None, keys)
    assert len(segs) == len(keys) + 1 and segs[0].lo is None and segs[-1].hi is None
    assert all(a.hi == b.lo for a, b in zip(segs, segs[1:], strict=False))


def test_segment_checks_its_bounds():
    with pytest.raises(ValueError, match="differ in length"):
        segments.Segment(("1", "2"), ("1",))
    # A shorter bound is a prefix bound: [("1",), ("1", "2")) holds the keys (1, x) with x < 2.
    assert segments.Segment(("1",), ("1", "2")).lo == ("1",)
    with pytest.raises(ValueError, match="non-empty tuple"):
        segments.Segment((), None)


@given(rows=st.integers(0, 10**10), per=st.integers(1, 10**5), cap=st.integers(1, 10**4))
def test_segment_count_is_bounded(rows, per, cap):
    n = segments.segment_count(estimated_rows=rows, rows_per_segment=per, max_segments=cap)
    assert 1 <= n <= cap and (n == cap or n * per >= rows)


def test_plan_names_every_structural_difference():
    src = {"public.a": table("a", v="numeric(10,2)", id="int8"), "public.s": table("s")}
    tgt = {"public.a": table("a", v="numeric", id="int8", extra="text"), "public.t": table("t")}
    with pytest.raises(ValidationError) as err:
        catalog.plan(src, tgt)
    msg = str(err.value)
    for part in ("column public.a.v is numeric(10,2) on the source and numeric on the target",
                 "column public.a.extra is missing on the source",
                 "table public.s is missing on the target", "table public.t is missing on the source"):
        assert part in msg


def test_plan_refuses_a_primary_key_that_differs_and_selects_bare_names():
    with pytest.raises(ValidationError, match=r"primary key \(id\) on the source and \(none\)"):
        catalog.plan({"public.a": table("a")}, {"public.a": table("a", key=())})
    tables = {"public.a": table("a"), "audit.a": table("a"), "public.b": table("b")}
    assert catalog.select(tables, ["a"], side="source") == ["audit.a", "public.a"]
    with pytest.raises(ValidationError, match="table zz, x.b not found on the target"):
        catalog.select(tables, ["zz", "x.b"], side="target")


def test_row_hash_normalizes_what_the_settings_do_not_and_orders_columns_by_name():
    t = table(z="timestamptz", a="float8", m="money", b="bytea", id="int8")
    text = render(dialect.row_text(t))
    assert text.index('"a"') < text.index('"b"') < text.index('"id"') < text.index('"m"') < text.index('"z"')
    assert '"float8send"' in text and '"m"::numeric::text' in text
    # Pinned TimeZone and bytea_output make their own output exact: no cast, no conversion.
    assert 'ROW(pg_catalog.encode(pg_catalog."float8send"("a"::float8), \'hex\'), "b", "id", ' in text
    assert "TimeZone = 'UTC'" in render(dialect.SESSION_SETTINGS) and text.startswith("ROW(")
    assert text.endswith(')::text COLLATE "C"')
    # One 64-bit hash of the row text, written once (so computed once per row), summed whole.
    agg = render(dialect.aggregates(t, [], dialect.range_where(t, None, None)))
    assert agg.count("hashtextextended(") == 1 and agg.count("ROW(") == 1
    assert "sum(pg_catalog.hashtextextended(ROW(" in agg and "enable_sort = off" in render(
        dialect.SESSION_SETTINGS)


def test_composite_segment_search_is_a_binary_search_over_every_bound():
    t = table(key=("a", "n"), a="text", n="int4")
    bounds = [(f"k{i}", str(i)) for i in range(7)]
    text = render(dialect.segment_of(t, bounds))
    assert text.count("CASE WHEN") == 7  # one comparison per bound, depth log2(8)
    assert all(f"'k{i}'::text" in text for i in range(7)) and 'COLLATE "C"' in text
    one = render(dialect.segment_of(table(), [("5",), ("9",)]))
    assert one.startswith("pg_catalog.width_bucket(") and "::int8[]" in one
    # Bounds on the first column of a composite key: width_bucket on that column alone.
    lead = render(dialect.segment_of(t, [("k1",), ("k5",)]))
    assert lead.startswith('pg_catalog.width_bucket("a" COLLATE "C", ARRAY[') and "::text[]" in lead
    where = render(dialect.range_where(t, ("k1",), ("k1", "7")))
    assert where == '"a" COLLATE "C" >= \'k1\'::text AND ("a" COLLATE "C", "n") < (\'k1\'::text, \'7\'::int4)'


def test_key_literal_refuses_a_wrong_width():
    with pytest.raises(ValueError, match="does not match key"):
        dialect.key_literal(table(), ("1", "2"))


def test_tuning_refuses_nonsense():
    with pytest.raises(ValueError, match="fanout"):
        Tuning(fanout=1)
    with pytest.raises(ValueError, match="leaf_rows"):
        Tuning(leaf_rows=0)


def _report(**kw) -> Report:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Report(tables=(TableResult(table="public.t", source_rows=10, target_rows=9, seconds=1.5, **kw),),
                  started=now, finished=now + timedelta(seconds=2), max_keys=2)


def test_report_caps_keys_and_counts_the_rest():
    r = _report(missing=(1, 2), missing_count=7, different=(["a", 1],), different_count=1)
    d = r.to_dict()
    assert (r.status, r.mismatches, d["mismatched_tables"]) == ("mismatch", 8, ["public.t"])
    t = d["tables"][0]
    assert (t["missing"], t["missing_count"], t["missing_omitted"]) == ([1, 2], 7, 5)
    assert t["different"] == [["a", 1]] and d["rows_per_second"] == 10
    json.dumps(d)
    small = trimmed(r, keys=1)["tables"][0]
    assert (small["missing"], small["missing_omitted"]) == ([1], 6)
    assert trimmed(_report(), keys=1)["ok"] is True


def test_report_values_are_checked():
    with pytest.raises(ValueError, match="below the 2 keys listed"):
        _report(missing=(1, 2), missing_count=1)
    with pytest.raises(ValueError, match="surpluses, not keys"):
        TableResult(table="t", source_rows=1, target_rows=1, seconds=0, keyed=False, missing_count=1)


def test_event_options_are_checked():
    assert parse_event(None) == {"max_keys": 100}
    assert parse_event({"tables": ["a"], "max_keys": 3}) == {"tables": ["a"], "max_keys": 3}
    with pytest.raises(ValidationError, match="tables must be a list"):
        parse_event({"tables": "a"})
    with pytest.raises(ValidationError, match="max_keys"):
        parse_event({"max_keys": -1})


def test_keys_rank_primary_then_replica_identity_then_fewest_columns():
    ranked = catalog.rank_keys([("unique key", ("b", "c")), ("unique key", ("z",)),
                                ("replica identity", ("b", "c")), ("unique key", ("a",))])
    assert ranked == [("replica identity", ("b", "c")), ("unique key", ("a",)), ("unique key", ("z",))]
    assert catalog.rank_keys([("unique key", ("x",)), ("primary key", ("id",))])[0] == ("primary key", ("id",))
    with pytest.raises(ValueError, match="unknown key kind 'foreign'"):
        catalog.rank_keys([("foreign", ("id",))])


def test_plan_compares_by_a_key_both_sides_have():
    src = Table("public", "t", table().columns, ("v",), "unique key", (("v",),))
    tgt = Table("public", "t", table().columns, ("id",), "primary key", (("id",), ("v",)))
    s, t = catalog.plan({"public.t": src}, {"public.t": tgt})[0]
    assert s.key == t.key == ("v",)


def test_progress_sample_rate_and_time_left_go_by_bytes():
    from paymigrate.validation.report import ProgressSample

    s = ProgressSample(seconds=10, tables_done=2, tables=7, rows_done=1000, rows_estimated=9000,
                       bytes_done=200, bytes_estimated=1000, running=("public.big",))
    assert (s.bytes_per_second, s.eta_seconds) == (20, 40)
    d = s.to_dict()
    assert (d["rows_per_second"], d["eta_seconds"], d["running"]) == (100, 40, ["public.big"])
    assert ProgressSample(seconds=1, tables_done=0, tables=1, rows_done=0, rows_estimated=5,
                          bytes_done=0, bytes_estimated=9).eta_seconds is None
    with pytest.raises(ValueError, match="3 tables done of 2"):
        ProgressSample(seconds=1, tables_done=3, tables=2, rows_done=0, rows_estimated=0,
                       bytes_done=0, bytes_estimated=0)


def test_progress_tracker_counts_what_workers_finish():
    from paymigrate.validation.progress import Progress

    with Progress({"a": (10, 100), "b": (30, 300)}, every=60) as p:
        p.started("a")
        p.started("b")
        p.done("b", 29)
        mid = p.sample()
    assert (mid.tables_done, mid.rows_done, mid.bytes_done, mid.running) == (1, 29, 300, ("a",))
    assert (mid.rows_estimated, mid.bytes_estimated) == (40, 400)
    assert p.samples[-1].tables_done == 1
    with pytest.raises(ValueError, match="interval 0 must be positive"):
        Progress({}, every=0)
