"""The comparison of one table: segment checksums, bisection, exact keys, re-checks after lag.

Keyed tables: boundaries picked from the source's keys cut the key space into segments; one
pass per side computes count and checksum per segment (GROUP BY the segment number) inside
PostgreSQL, both sides at once. A differing segment is cut again (boundaries from the side with
more rows in it, key-range scans on the primary key) until it is small, then the (key, row hash)
pairs of both sides are diffed here. A segment empty on one side is counted, and only
``max_keys`` of its keys are fetched as examples.

Tables without a key (see :mod:`~paymigrate.validation.catalog`) are multisets: rows are
bucketed by the hash of their evenest column, and the rows of differing buckets are
counted per row hash on each side (a second read that makes only those rows' text).

Under live replication (``catch_up`` given), the target's snapshot is taken only after it has
applied the source snapshot's WAL position, and what still differs is fetched and compared again
in fresh snapshots after a new catch-up, a bounded number of times: only what persists is
reported, so lag is not reported as loss, and a real loss persists and is reported. Keyed
tables re-read the differing keys; multisets re-count the differing buckets between two source
reads (:func:`_recheck_multiset`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from paymigrate.validation import segments as seg
from paymigrate.validation import sql as dialect
from paymigrate.validation.catalog import Table
from paymigrate.validation.report import TableResult
from paymigrate.validation.sides import Pair, Session

log = logging.getLogger(__name__)

CatchUp = Callable[[str], bool]
Key = tuple


@dataclass(frozen=True)
class Tuning:
    """Sizes of the search; the defaults suit tables from a few rows to billions."""

    rows_per_segment: int = 2000
    max_segments: int = 8192
    leaf_rows: int = 5000
    fanout: int = 32
    exact_bounds_rows: int = 500_000  # below this, boundaries come from every key, not a sample
    sample_per_segment: int = 20
    recheck_rounds: int = 5
    recheck_max_keys: int = 100_000
    recheck_batch: int = 1000
    max_depth: int = 12
    parallel: bool = True  # let each server use its parallel workers for the full scans
    # Parallel workers one table's scans may use; None: its share of the connections (see
    # engine.workers_for), the server's own setting when compare_table is called directly.
    workers: int | None = None
    bytes_per_segment: int = 1 << 20  # a segment holds at most this much (and rows_per_segment)
    connections: int = 2  # tables compared at once: sessions per side
    progress_seconds: float = 5.0  # how often a long validation logs how far it is

    def __post_init__(self) -> None:
        if self.progress_seconds <= 0:
            raise ValueError(f"tuning progress_seconds {self.progress_seconds} must be positive")
        for name in ("rows_per_segment", "max_segments", "leaf_rows", "exact_bounds_rows",
                     "sample_per_segment", "recheck_batch", "max_depth", "bytes_per_segment",
                     "connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"tuning {name} {getattr(self, name)} must be at least 1")
        if self.fanout < 2:
            raise ValueError(f"tuning fanout {self.fanout} must be at least 2")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"tuning workers {self.workers} cannot be negative")
        if self.recheck_rounds < 0 or self.recheck_max_keys < 0:
            raise ValueError("tuning recheck_rounds and recheck_max_keys cannot be negative")


DEFAULT_TUNING = Tuning()


@dataclass
class Found:
    """Differences found in one pass; keys are tuples of reported values."""

    source_rows: int = 0
    target_rows: int = 0
    missing: set[Key] = field(default_factory=set)
    extra: set[Key] = field(default_factory=set)
    different: set[Key] = field(default_factory=set)
    missing_unlisted: int = 0  # counted in segments empty on the target, keys not fetched
    extra_unlisted: int = 0
    source_surplus: int = 0
    target_surplus: int = 0
    buckets: int = 0  # of a multiset comparison: how many buckets rows were put in
    bucket_column: str = ""  # and by which column's hash (sql.bucket_of)
    hash_buckets: dict[tuple, int] = field(default_factory=dict)  # row hash: its bucket, as read
    surplus: dict[tuple, int] = field(default_factory=dict)  # row hash: source minus target copies
    # Row hashes a multiset re-check found unexplained by lag; reported only once seen in two
    # passes in a row (then they are in ``surplus``), re-checked in the next round either way.
    pending: dict[tuple, int] = field(default_factory=dict)
    # A multiset pass's copies per row hash in the differing buckets, (source, target), kept
    # so that the first re-check only needs a new source read (:func:`_settle_multiset`).
    copies: tuple[dict[tuple, int], dict[tuple, int]] | None = None

    def set_surplus(self, surplus: dict[tuple, int]) -> None:
        self.surplus = {h: d for h, d in surplus.items() if d}
        self.source_surplus = sum(d for d in self.surplus.values() if d > 0)
        self.target_surplus = -sum(d for d in self.surplus.values() if d < 0)

    @property
    def complete(self) -> bool:
        return not (self.missing_unlisted or self.extra_unlisted)

    @property
    def total(self) -> int:
        return (len(self.missing) + len(self.extra) + len(self.different) + self.missing_unlisted
                + self.extra_unlisted + self.source_surplus + self.target_surplus)


def compare_table(pair: Pair, table: Table, *, max_keys: int = 100,
                  catch_up: CatchUp | None = None, tuning: Tuning = DEFAULT_TUNING) -> TableResult:
    """Compare one table (same structure on both sides, checked by the caller)."""
    started = time.monotonic()
    found, caught_up = _snapshot_pass(pair, table, max_keys, catch_up, tuning)
    counts = (found.source_rows, found.target_rows)
    rounds = 0
    notes: list[str] = []
    while catch_up is not None and (found.total or found.pending) and rounds < tuning.recheck_rounds:
        rounds += 1
        log.info("%s: %d rows differ, re-checking after the target catches up (round %d of %d)",
                 table.qualified, found.total, rounds, tuning.recheck_rounds)
        if table.key and found.complete and found.total <= tuning.recheck_max_keys:
            found, caught_up = _recheck_keys(pair, table, found, catch_up, tuning)
        elif not table.key and found.copies is not None:
            found = _settle_multiset(pair, table, found, tuning)
        elif not table.key:
            found, caught_up = _recheck_multiset(pair, table, found, catch_up, tuning)
        else:
            found, caught_up = _snapshot_pass(pair, table, max_keys, catch_up, tuning)
            counts = (found.source_rows, found.target_rows)
    if found.total and catch_up is not None and not caught_up:
        notes.append("the target did not apply the source's WAL position within the catch-up "
                     "timeout: these differences may include replication lag")
    return _result(table, found, counts, time.monotonic() - started, max_keys, rounds, notes)


def _result(table: Table, found: Found, counts: tuple[int, int], seconds: float, max_keys: int,
            rounds: int, notes: list[str]) -> TableResult:
    def listed(keys: Iterable[Key]) -> tuple:
        shown = sorted(keys)[:max_keys]
        return tuple(k[0] if len(k) == 1 else list(k) for k in shown)

    return TableResult(
        table=table.qualified, source_rows=counts[0], target_rows=counts[1], seconds=seconds,
        keyed=bool(table.key), missing=listed(found.missing), extra=listed(found.extra),
        different=listed(found.different),
        missing_count=len(found.missing) + found.missing_unlisted,
        extra_count=len(found.extra) + found.extra_unlisted,
        different_count=len(found.different), source_surplus=found.source_surplus,
        target_surplus=found.target_surplus, rechecks=rounds, notes=tuple(notes))


def _snapshot_pass(pair: Pair, table: Table, max_keys: int, catch_up: CatchUp | None,
                   tuning: Tuning) -> tuple[Found, bool]:
    """One full comparison in fresh snapshots; with ``catch_up``, the target's is taken after
    the target applied the source snapshot's position. Returns (found, caught up)."""
    caught_up = True
    try:
        if catch_up is None:
            pair.both(lambda side: _begin(side, tuning))
        else:
            _begin(pair.source, tuning, snapshot=False)
            lsn = pair.source.lsn()
            caught_up = bool(catch_up(lsn))
            if not caught_up:
                log.warning("%s: the target did not reach the source's WAL position %s in time; "
                            "comparing anyway", table.qualified, lsn)
            _begin(pair.target, tuning)  # the target's snapshot is taken now, after the catch-up
        found = _keyed(pair, table, max_keys, tuning) if table.key else _multiset(pair, table, tuning)
    finally:
        pair.source.end()
        pair.target.end()
    return found, caught_up


def _begin(side: Session, tuning: Tuning, *, snapshot: bool = True) -> None:
    side.begin()
    side.execute(dialect.parallel_settings(tuning.workers if tuning.parallel else 0))
    if snapshot:
        side.query("SELECT 1")  # a REPEATABLE READ snapshot is taken by the first query


def _estimate(side: Session, table: Table) -> tuple[float, float]:
    """``(rows, bytes)`` of ``table`` on ``side``: the planner's rows, or a count."""
    rows = side.query(dialect.estimate(), (table.schema, table.name))
    reltuples, size = rows[0] if rows else (-1, 0)
    if reltuples is None or reltuples < 0 or (reltuples == 0 and size and size > 0):
        # Never analyzed (or analyzed empty and filled since): count it, cheaper than guessing.
        return float(side.query(dialect.count(table))[0][0]), float(size or 0)
    return float(reltuples), float(size or 0)


def _segment_count(side: Session, table: Table, tuning: Tuning, max_segments: int) -> tuple[int, float]:
    """How many top-level segments (by rows and by bytes, the finer) and the estimated rows."""
    rows, size = _estimate(side, table)
    n = seg.segment_count(estimated_rows=rows, rows_per_segment=tuning.rows_per_segment,
                          max_segments=max_segments, estimated_bytes=size,
                          bytes_per_segment=tuning.bytes_per_segment)
    return n, rows


def _keyed(pair: Pair, table: Table, max_keys: int, tuning: Tuning) -> Found:
    src = pair.source
    n, estimated = _segment_count(src, table, tuning, tuning.max_segments)
    bounds: list[tuple[str, ...]] = []
    if n > 1:
        if estimated <= tuning.exact_bounds_rows:
            q = dialect.bounds(table, where=dialect.range_where(table, None, None),
                               step=seg.split_step(int(estimated), n))
        else:
            pct = seg.sample_percent(estimated_rows=estimated,
                                     wanted_rows=n * tuning.sample_per_segment)
            q = dialect.bounds(table, where=dialect.range_where(table, None, None),
                               step=tuning.sample_per_segment, sample_percent=pct)
        bounds = seg.leading_bounds([tuple(r) for r in src.query(q)])
    top = seg.segments_between(None, None, bounds)
    everything = dialect.range_where(table, None, None)
    aggs = pair.both(lambda s: _aggregates(s, table, bounds, everything))
    found = Found(source_rows=sum(a[0] for a in aggs[0].values()),
                  target_rows=sum(a[0] for a in aggs[1].values()))
    work = _differing(top, *aggs)
    log.debug("%s: %d segments, %d differ", table.qualified, len(top), len(work))
    while work:
        segment, cs, ct = work.pop()
        if max(cs, ct) <= tuning.leaf_rows or segment.depth >= tuning.max_depth:
            _leaf(pair, table, segment, found)
        elif cs == 0 or ct == 0:
            _one_sided(pair, table, segment, found, missing=ct == 0, total=max(cs, ct),
                       max_keys=max_keys)
        else:
            work.extend(_split(pair, table, segment, cs, ct, tuning))
    return found


def _aggregates(side: Session, table: Table, bounds: list[tuple[str, ...]], where) -> dict[int, tuple]:
    """``{segment number: (count, sum of the row hashes)}`` of rows in ``where``."""
    return {int(s): (int(c), int(h)) for s, c, h in side.query(dialect.aggregates(table, bounds, where))}


def _differing(segments: list[seg.Segment], src: dict[int, tuple], tgt: dict[int, tuple]
               ) -> list[tuple[seg.Segment, int, int]]:
    out = []
    for i in sorted(src.keys() | tgt.keys()):
        a, b = src.get(i, (0, 0)), tgt.get(i, (0, 0))
        if a != b:
            out.append((segments[i], a[0], b[0]))
    return out


def _split(pair: Pair, table: Table, segment: seg.Segment, cs: int, ct: int,
           tuning: Tuning) -> list[tuple[seg.Segment, int, int]]:
    # Boundaries from the side with more rows here, so the pieces are small on both sides.
    richer = pair.source if cs >= ct else pair.target
    where = dialect.range_where(table, segment.lo, segment.hi)
    step = seg.split_step(max(cs, ct), tuning.fanout)
    bounds = seg.leading_bounds(
        [b for b in (tuple(r) for r in richer.query(dialect.bounds(table, where=where, step=step)))
         if b != segment.lo], segment.lo)
    subs = seg.segments_between(segment.lo, segment.hi, bounds, depth=segment.depth + 1)
    aggs = pair.both(lambda s: _aggregates(s, table, bounds, where))
    return _differing(subs, *aggs)


def _leaf(pair: Pair, table: Table, segment: seg.Segment, found: Found) -> None:
    where = dialect.range_where(table, segment.lo, segment.hi)
    src, tgt = pair.both(lambda s: _hashes_by_key(s.query(dialect.rows(table, where))))
    found.missing.update(k for k in src if k not in tgt)
    found.extra.update(k for k in tgt if k not in src)
    found.different.update(k for k in src if k in tgt and src[k] != tgt[k])


def _hashes_by_key(rows: list[tuple]) -> dict[Key, tuple]:
    """``{key: row hash}`` of ``(key columns..., hash columns...)`` result rows."""
    w = dialect.HASH_WIDTH
    return {tuple(r[:-w]): tuple(r[-w:]) for r in rows}


def _one_sided(pair: Pair, table: Table, segment: seg.Segment, found: Found, *, missing: bool,
               total: int, max_keys: int) -> None:
    """A big segment with rows on one side only: count them, fetch ``max_keys`` as examples."""
    side = pair.source if missing else pair.target
    where = dialect.range_where(table, segment.lo, segment.hi)
    keys = list(_hashes_by_key(side.query(dialect.rows(table, where, limit=max_keys))))
    (found.missing if missing else found.extra).update(keys)
    if missing:
        found.missing_unlisted += total - len(keys)
    else:
        found.extra_unlisted += total - len(keys)


def _multiset(pair: Pair, table: Table, tuning: Tuning) -> Found:
    n, estimated = _segment_count(pair.source, table, tuning, min(tuning.max_segments, 65536))
    buckets = 1 << (n - 1).bit_length()
    column = _bucket_column(pair.source, table, estimated)
    src, tgt = pair.both(lambda s: {int(b): (int(c), int(h)) for b, c, h in
                                    s.query(dialect.multiset_aggregates(table, buckets, column))})
    found = Found(source_rows=sum(a[0] for a in src.values()),
                  target_rows=sum(a[0] for a in tgt.values()), buckets=buckets,
                  bucket_column=column)
    wanted = sorted(b for b in src.keys() | tgt.keys() if src.get(b) != tgt.get(b))
    if wanted:
        hs, ht = pair.both(lambda s: _copies(s, table, found, wanted))
        found.set_surplus({h: hs.get(h, 0) - ht.get(h, 0) for h in hs.keys() | ht.keys()})
        found.pending = dict(found.surplus)
        found.copies = (hs, ht)
    return found


def _bucket_column(side: Session, table: Table, estimated_rows: float) -> str:
    """The column a multiset's rows are bucketed by: the one whose values spread its rows
    evenest by the planner's statistics (few NULLs, no value much commoner than the others), else
    the first by name."""
    names = {c.name for c in table.columns}
    ranked = [r[0] for r in side.query(dialect.distinct_columns(),
                                       (table.schema, table.name, estimated_rows))]
    return next((c for c in ranked if c in names), min(names))


def _copies(side: Session, table: Table, found: Found, wanted: list[int]) -> dict[tuple, int]:
    """``{row hash: copies}`` of the rows in the ``wanted`` buckets; each hash's bucket is
    noted in ``found``, for the re-checks."""
    out: dict[tuple, int] = {}
    for b, h, n in side.query(dialect.multiset_rows(table, found.buckets, found.bucket_column,
                                                    wanted)):
        out[(int(h),)] = out.get((int(h),), 0) + int(n)
        found.hash_buckets[(int(h),)] = int(b)
    return out


def _recheck_multiset(pair: Pair, table: Table, before: Found, catch_up: CatchUp,
                      tuning: Tuning) -> tuple[Found, bool]:
    """Count the rows of the buckets that differed again: in a source snapshot, in the target
    once caught up to it, and in a source snapshot taken after the target's.

    Without a key there is nothing to re-read by key, and the caught-up target is ahead of the
    first source snapshot by what committed since. Every change it applied committed on the
    source before the later snapshot, so the target holds the table as of some moment between
    the two source reads. A row hash the target holds fewer copies of than both source reads,
    or more than both, is not explained by lag as long as a row did not change twice between
    them (a passing state the target caught). To be reported, such a hash must also have been
    unexplained in the pass before: a hot row's passing states differ from round to round, a
    lost or extra row stays.
    """
    wanted = sorted({before.hash_buckets[h] for h in before.pending})
    try:
        _begin(pair.source, tuning)
        lsn = pair.source.lsn()
        first = _copies(pair.source, table, before, wanted)
        pair.source.end()
        caught_up = bool(catch_up(lsn))
        _begin(pair.target, tuning)  # the target's snapshot, after it caught up
        _begin(pair.source, tuning)  # then the source's: it holds all the target applied
        later, tgt = pair.both(lambda s: _copies(s, table, before, wanted))
    finally:
        pair.source.end()
        pair.target.end()
    found = Found(source_rows=before.source_rows, target_rows=before.target_rows,
                  buckets=before.buckets, bucket_column=before.bucket_column,
                  hash_buckets=before.hash_buckets, pending=_unexplained(first, tgt, later))
    found.set_surplus({h: d for h, d in found.pending.items() if h in before.pending})
    log.info("%s: %d row hash(es) unexplained by lag in this round, %d also in the one before",
             table.qualified, len(found.pending), len(found.surplus))
    return found, caught_up


def _settle_multiset(pair: Pair, table: Table, before: Found, tuning: Tuning) -> Found:
    """The first re-check of a multiset: the pass's own two reads and one new source read.

    The pass took the target's snapshot after it caught up to the source's, so the target held
    the table as of a moment between that source read and one taken now: what a new source read
    explains was lag, at the cost of one scan of one side instead of :func:`_recheck_multiset`'s
    three. What it does not explain stays pending, never reported from this round: it reuses
    the pass's target read, so it is not a second sighting (a hot row's passing state is seen
    once); the next round, with fresh reads of both sides, confirms or clears it.
    """
    assert before.copies is not None
    first, tgt = before.copies
    try:
        _begin(pair.source, tuning)
        later = _copies(pair.source, table, before,
                        sorted({before.hash_buckets[h] for h in before.pending}))
    finally:
        pair.source.end()
    found = Found(source_rows=before.source_rows, target_rows=before.target_rows,
                  buckets=before.buckets, bucket_column=before.bucket_column,
                  hash_buckets=before.hash_buckets, pending=_unexplained(first, tgt, later))
    log.info("%s: %d row hash(es) unexplained by lag after a new source read",
             table.qualified, len(found.pending))
    return found


def _unexplained(first: dict[tuple, int], tgt: dict[tuple, int], later: dict[tuple, int]
                 ) -> dict[tuple, int]:
    """Per row hash, copies the target holds beyond what either source read explains: fewer
    than both (positive: the source's surplus) or more than both (negative).

    >>> _unexplained({("a",): 1, ("b",): 1}, {("b",): 1, ("c",): 2}, {("a",): 1, ("c",): 1})
    {('a',): 1, ('c',): -1}
    """
    out: dict[tuple, int] = {}
    for h in sorted(first.keys() | tgt.keys() | later.keys()):
        low, high = sorted((first.get(h, 0), later.get(h, 0)))
        copies = tgt.get(h, 0)
        d = low - copies if copies < low else high - copies if copies > high else 0
        if d:
            out[h] = d
    return out


def _recheck_keys(pair: Pair, table: Table, before: Found, catch_up: CatchUp,
                  tuning: Tuning) -> tuple[Found, bool]:
    """Fetch only the differing keys again: source first, then the target once caught up."""
    keys = sorted(before.missing | before.extra | before.different)
    texts = [tuple(str(v) for v in k) for k in keys]
    batches = [texts[i:i + tuning.recheck_batch] for i in range(0, len(texts), tuning.recheck_batch)]

    def fetch(side: Session) -> dict[Key, tuple]:
        out: dict[Key, tuple] = {}
        for batch in batches:
            out.update(_hashes_by_key(side.query(dialect.rows(table, dialect.keys_where(table, batch)))))
        return out

    try:
        pair.source.begin()
        lsn = pair.source.lsn()
        src = fetch(pair.source)
        pair.source.end()
        caught_up = bool(catch_up(lsn))
        pair.target.begin()
        tgt = fetch(pair.target)
        pair.target.end()
        # The caught-up target may be *ahead* of the first read for a row written since. Every
        # change it applied committed on the source first, so a source read taken now has it:
        # a key differs only if the target matches neither source read.
        pair.source.begin()
        later = fetch(pair.source)
    finally:
        pair.source.end()
        pair.target.end()
    found = Found(source_rows=before.source_rows, target_rows=before.target_rows)
    found.missing.update(k for k in src if k in later and k not in tgt)
    found.extra.update(k for k in tgt if k not in src and k not in later)
    found.different.update(k for k in tgt if (k in src or k in later)
                           and tgt[k] != src.get(k) and tgt[k] != later.get(k))
    return found, caught_up
