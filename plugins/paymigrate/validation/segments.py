"""Key-range segments and the pure arithmetic of splitting key space (no database here).

A segment is the half-open primary-key range ``lo <= key < hi``; ``None`` means unbounded. Key
values are tuples of the text form PostgreSQL gives them (one item per key column), so any key
type round-trips exactly through ``value::type``. Boundaries come from one side's real keys, so
segments hold about the same number of rows whatever the key's distribution.

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
        if self.lo is not None and self.hi is not None and len(self.lo) != len(self.hi):
            raise ValueError(f"segment bounds {self.lo!r} and {self.hi!r} differ in length")
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


def segment_count(*, estimated_rows: float, rows_per_segment: int, max_segments: int) -> int:
    """How many top-level segments a table of ``estimated_rows`` gets (at least 1).

    >>> segment_count(estimated_rows=0, rows_per_segment=2000, max_segments=4096)
    1
    >>> segment_count(estimated_rows=10**9, rows_per_segment=2000, max_segments=4096)
    4096
    """
    if rows_per_segment < 1 or max_segments < 1:
        raise ValueError(f"rows_per_segment {rows_per_segment} and max_segments {max_segments} "
                         "must be at least 1")
    return max(1, min(max_segments, math.ceil(max(estimated_rows, 0) / rows_per_segment)))


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
