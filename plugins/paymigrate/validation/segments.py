"""Key-range segments and the pure arithmetic of splitting key space (no database here).

A segment is the half-open key range ``lo <= key < hi``; ``None`` means unbounded. Key values
are tuples of the text form PostgreSQL gives them (one item per key column), so any key type
round-trips exactly through ``value::type``. A bound may be a prefix, shorter than the key: it
bounds the key's first columns (``("a",) <= key`` is ``("a",) <= key[:1]``), and the order of
prefixes and keys is still the lexicographic one. Boundaries come from one side's real keys,
so segments hold about the same number of rows whatever the key's distribution.

>>> segs = segments_between(None, None, [("10",), ("20",)])
>>> [(s.lo, s.hi) for s in segs]
[(None, ('10',)), (('10',), ('20',)), (('20',), None)]
>>> segment_count(estimated_rows=1_000_000, rows_per_segment=2000, max_segments=4096)
500
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

KeyValue = tuple[str, ...]


@dataclass(frozen=True)
class Segment:
    """Rows whose key is in ``[lo, hi)``; ``depth`` counts the splits that led here."""

    lo: KeyValue | None
    hi: KeyValue | None
    depth: int = 0

    def __post_init__(self) -> None:
        for bound in (self.lo, self.hi):
            if bound is not None and (not isinstance(bound, tuple) or not bound):
                raise ValueError(f"segment bound {bound!r} is not a non-empty tuple of key values")
        if (self.lo is not None and self.hi is not None and len(self.hi) < len(self.lo)
                and self.lo[:len(self.hi)] == self.hi):
            # lo extends hi: every key >= lo starts with hi's prefix, so none is < hi.
            raise ValueError(f"segment bounds {self.lo!r} and {self.hi!r} differ in length: "
                             f"the range is empty")
        if self.depth < 0:
            raise ValueError(f"segment depth {self.depth} is negative")

    @property
    def whole(self) -> bool:
        return self.lo is None and self.hi is None


def segments_between(lo: KeyValue | None, hi: KeyValue | None, bounds: Sequence[KeyValue],
                     *, depth: int = 0) -> list[Segment]:
    """The ``len(bounds) + 1`` segments that ``bounds`` (ascending) cut ``[lo, hi)`` into.

    Segment ``i`` is what ``width_bucket(key, bounds)`` numbers ``i``.

    >>> [(s.lo, s.hi, s.depth) for s in segments_between(("0",), ("9",), [("5",)], depth=1)]
    [(('0',), ('5',), 1), (('5',), ('9',), 1)]
    """
    edges: list[KeyValue | None] = [lo, *bounds, hi]
    return [Segment(edges[i], edges[i + 1], depth) for i in range(len(edges) - 1)]


def leading_bounds(bounds: Sequence[KeyValue], lo: KeyValue | None = None, *,
                   at_least: float = 0.5) -> list[KeyValue]:
    """Bounds on the first key column only, when they cut about as finely as ``bounds``.

    A composite key's segments are then ranges of its first column, found by ``width_bucket``
    in C instead of row comparisons. ``bounds`` (ascending keys, inside a segment starting at
    ``lo``) are kept as they are when their first values repeat too much (fewer than
    ``at_least`` of them distinct), or when ``lo`` is a full composite key (a prefix bound could
    fall below it).

    >>> leading_bounds([("a", "1"), ("b", "4"), ("c", "2")])
    [('a',), ('b',), ('c',)]
    >>> leading_bounds([("a", "1"), ("a", "4"), ("a", "9"), ("a", "12"), ("b", "2")])
    [('a', '1'), ('a', '4'), ('a', '9'), ('a', '12'), ('b', '2')]
    >>> leading_bounds([("a", "3"), ("b", "1")], lo=("a",))
    [('b',)]
    """
    if not bounds or len(bounds[0]) == 1 or (lo is not None and len(lo) > 1):
        return list(bounds)
    firsts: list[KeyValue] = []
    for b in bounds:
        first = b[:1]
        if first != lo and (not firsts or firsts[-1] != first):
            firsts.append(first)
    return firsts if len(firsts) >= at_least * len(bounds) else list(bounds)


def segment_count(*, estimated_rows: float, rows_per_segment: int, max_segments: int,
                  estimated_bytes: float = 0, bytes_per_segment: int = 1) -> int:
    """How many top-level segments a table of ``estimated_rows`` gets (at least 1): enough
    that none holds more than ``rows_per_segment`` rows or ``bytes_per_segment`` bytes, so a
    segment of wide rows costs no more to re-read or cut than one of narrow rows.

    >>> segment_count(estimated_rows=0, rows_per_segment=2000, max_segments=4096)
    1
    >>> segment_count(estimated_rows=10**9, rows_per_segment=2000, max_segments=4096)
    4096
    >>> segment_count(estimated_rows=10_000, rows_per_segment=2000, max_segments=4096,
    ...               estimated_bytes=20 << 20, bytes_per_segment=1 << 20)
    20
    """
    if rows_per_segment < 1 or max_segments < 1 or bytes_per_segment < 1:
        raise ValueError(f"rows_per_segment {rows_per_segment}, bytes_per_segment "
                         f"{bytes_per_segment} and max_segments {max_segments} must be at least 1")
    wanted = max(math.ceil(max(estimated_rows, 0) / rows_per_segment),
                 math.ceil(max(estimated_bytes, 0) / bytes_per_segment))
    return max(1, min(max_segments, wanted))


def split_step(rows: int, parts: int) -> int:
    """Take every ``step``-th key of ``rows`` sorted keys to cut them into about ``parts`` parts.

    >>> split_step(10_000, 32), split_step(5, 32)
    (313, 1)
    """
    if parts < 1:
        raise ValueError(f"parts {parts} must be at least 1")
    return max(1, math.ceil(rows / parts))


def sample_percent(*, estimated_rows: float, wanted_rows: int) -> float:
    """Percentage of a table's pages to sample to see about ``wanted_rows`` keys (<= 100).

    >>> sample_percent(estimated_rows=1_000_000, wanted_rows=50_000)
    5.0
    >>> sample_percent(estimated_rows=10, wanted_rows=50_000)
    100.0
    """
    if estimated_rows <= 0:
        return 100.0
    return min(100.0, 100.0 * wanted_rows / estimated_rows)
