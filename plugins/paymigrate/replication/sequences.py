"""Sequence values, which neither logical replication nor DMS carries, copied at cutover.

Every sequence is discovered from the catalog (owned by a column or not; members of extensions
excluded since the extension manages them). The target is set past the source by a safety gap,
never moved backwards, so a rerun is harmless and a value handed out on the source is never
handed out again on the target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from paymigrate.db import Endpoint, connection
from paymigrate.errors import ReplicationError

log = logging.getLogger(__name__)

_QUERY = """
SELECT format('%%I.%%I', n.nspname, c.relname), s.seqincrement, s.seqmin, s.seqmax, s.seqstart,
       pg_sequence_last_value(c.oid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.relkind = 'S'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1
"""


@dataclass(frozen=True)
class Sequence:
    """One sequence as the catalog shows it; ``last_value`` is None until ``nextval`` is called."""

    name: str
    increment: int
    minimum: int
    maximum: int
    start: int
    last_value: int | None

    def __post_init__(self) -> None:
        if self.increment == 0:
            raise ValueError(f"sequence {self.name} has increment 0")

    @property
    def position(self) -> int:
        """The last value handed out, or the one just before ``start`` when none was."""
        return self.last_value if self.last_value is not None else self.start - self.increment


def plan(source: dict[str, Sequence], target: dict[str, Sequence], *, gap: int) -> dict[str, int]:
    """The value to ``setval(..., true)`` on the target for each sequence.

    >>> s = {"public.a": Sequence("public.a", 1, 1, 2**63 - 1, 1, 41)}
    >>> t = {"public.a": Sequence("public.a", 1, 1, 2**63 - 1, 1, None)}
    >>> plan(s, t, gap=1000)
    {'public.a': 1041}
    """
    if not isinstance(gap, int) or isinstance(gap, bool) or gap < 0:
        raise ValueError(f"sequence gap {gap!r} is not a non-negative integer")
    missing = sorted(set(source) - set(target))
    if missing:
        raise ReplicationError(f"sequences on the source are missing on the target: {', '.join(missing)}")
    out: dict[str, int] = {}
    for name, src in source.items():
        tgt = target[name]
        up = tgt.increment > 0
        wanted = src.position + (gap if up else -gap)
        value = max(wanted, tgt.position) if up else min(wanted, tgt.position)
        if not tgt.minimum <= value <= tgt.maximum:
            raise ReplicationError(
                f"sequence {name}: source at {src.position} plus a gap of {gap} gives {value}, "
                f"outside the target's range {tgt.minimum}..{tgt.maximum}")
        out[name] = value
    return out


def read(conn) -> dict[str, Sequence]:
    with conn.cursor() as cur:
        cur.execute(_QUERY, ())
        return {r[0]: Sequence(*r) for r in cur.fetchall()}


def sync_sequences(*, source: Endpoint, target: Endpoint, gap: int = 1000) -> dict[str, int]:
    """Set every target sequence to the source's value plus ``gap``; return ``{name: value}``."""
    with connection(source) as sconn:
        src = read(sconn)
    with connection(target) as tconn:
        values = plan(src, read(tconn), gap=gap)
        extra = sorted(set(read(tconn)) - set(src))
        with tconn.cursor() as cur:
            for name, value in values.items():
                cur.execute("SELECT setval(%s::regclass, %s, true)", (name, value))
    if extra:
        log.warning("sequences only on the target %s were left as they are: %s", target.safe(),
                    ", ".join(extra))
    log.info("synced %d sequence(s) from %s to %s with a gap of %d", len(values), source.safe(),
             target.safe(), gap)
    return values
