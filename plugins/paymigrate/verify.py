"""The check inside the write pause: after the drain, do both sides hold the same rows?

A full validation ran before the cutover (payment_migration) and replication has been drained
to the freeze position, so what is left to catch is a table replication silently skipped or a
truncation it did not carry. Exact row counts of every table, taken on both sides at once,
catch those in milliseconds to a few hundred for millions of rows; the content checksums stay
with the full validation, which is too slow for a pause.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from psycopg2 import sql

from paymigrate.db import Endpoint, connection
from paymigrate.errors import PaymigrateError

log = logging.getLogger(__name__)


class VerificationFailed(PaymigrateError):
    """Source and target differ after the drain: the cutover must not proceed."""


def _counts(ep: Endpoint, tables: list[str]) -> dict[str, int]:
    out = {}
    with connection(ep, application_name="paymigrate-verify") as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL transaction_read_only = on")
        for name in tables:
            schema, table = name.split(".", 1)
            cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema),
                                                                     sql.Identifier(table)))
            out[name] = cur.fetchone()[0]
    return out


def row_counts_match(*, source: Endpoint, target: Endpoint, tables: list[str]) -> dict[str, Any]:
    """Compare exact row counts of ``tables`` (``schema.name``) on both sides; raise on any
    difference, naming each table and both counts."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        src_f, tgt_f = pool.submit(_counts, source, tables), pool.submit(_counts, target, tables)
        src, tgt = src_f.result(), tgt_f.result()
    bad = {t: (src[t], tgt[t]) for t in tables if src[t] != tgt[t]}
    if bad:
        raise VerificationFailed("row counts differ after the drain: " + ", ".join(
            f"{t} source {s} target {g}" for t, (s, g) in sorted(bad.items())))
    return {"tables": len(tables), "rows": sum(src.values())}
