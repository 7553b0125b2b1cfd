"""Live UPDATEs through PgBouncer while replication runs: tables without primary key.

One table has a unique NOT NULL key used as its replica identity, the other no key at all
(REPLICA IDENTITY FULL). Both must match while the writes and the replication go on, and a row
changed on the target behind replication's back must still be found.
"""

from __future__ import annotations

import time
from functools import partial

import pytest
from conftest import BackgroundWriter
from psycopg2.extensions import parse_dsn

from paymigrate.db import query as run_sql
from paymigrate.replication.logical import LogicalEngine
from paymigrate.validation import Tuning, validate
from paymigrate_dev.local.stack import APP_USER

pytestmark = pytest.mark.integration

ROWS = 300
VICTIM = 150  # never touched by the writer, so replication never re-creates it on the target
SMALL = Tuning(rows_per_segment=50, leaf_rows=20, fanout=4)

TABLES = f"""
CREATE TABLE holds (ref text NOT NULL, n int NOT NULL, amount numeric(12, 2), at timestamptz);
CREATE UNIQUE INDEX holds_ref ON holds (ref);
ALTER TABLE holds REPLICA IDENTITY USING INDEX holds_ref;
CREATE TABLE audit (who text, amount numeric(12, 2), at timestamptz);
ALTER TABLE audit REPLICA IDENTITY FULL;
GRANT ALL ON holds, audit TO {APP_USER};
"""

FILL = f"""
INSERT INTO holds SELECT 'r' || g, g, g, now() FROM generate_series(1, {ROWS}) g;
INSERT INTO audit SELECT 'u' || g, g, now() FROM generate_series(1, {ROWS}) g;
CREATE PUBLICATION live_pub FOR TABLE holds, audit;
"""


def Writer(dsn: str) -> BackgroundWriter:  # noqa: N802 (it stands for the class it makes)
    """About 20 updates a second on each table through PgBouncer (never the victim rows)."""
    others = [i for i in range(1, ROWS + 1) if i != VICTIM]

    def step(cur, rng) -> int:
        n = rng.choice(others)
        cur.execute("UPDATE holds SET amount = amount + 1, at = now() WHERE ref = %s", (f"r{n}",))
        cur.execute("UPDATE audit SET amount = amount + 1, at = now() WHERE who = %s", (f"u{n}",))
        return 2

    return BackgroundWriter(dsn, step, seed=14, pause=0.05)


@pytest.fixture
def live(databases, stack):
    """Replicated tables and a PgBouncer entry for the source: ``(src, tgt, router, engine)``,
    the engine reading the subscription the fixture made."""
    src, tgt = databases
    name = parse_dsn(src)["dbname"]
    for dsn in databases:
        run_sql(dsn, TABLES)
    run_sql(src, FILL)
    sub = f"sub_{name}"
    run_sql(tgt, f"CREATE SUBSCRIPTION {sub} CONNECTION %s PUBLICATION live_pub",
            (stack.endpoint("source", dbname=name).dsn(),))
    try:
        stack.add_route(name)
        deadline = time.monotonic() + 60
        while run_sql(tgt, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")[0][0]:
            assert time.monotonic() < deadline, "initial table sync did not finish in 60 s"
            time.sleep(0.2)
        yield src, tgt, stack.dsn("router", dbname=name), LogicalEngine(
            source=stack.endpoint("source", dbname=name),
            target=stack.endpoint("target", dbname=name), name=sub, poll=0.2)
    finally:
        stack.remove_route(name)
        run_sql(tgt, f"DROP SUBSCRIPTION IF EXISTS {sub}")


def test_unique_key_and_keyless_tables_match_under_live_updates_and_a_loss_is_found(live):
    src, tgt, router, engine = live
    catch_up = partial(engine.catch_up, timeout=30)
    writer = Writer(router)
    writer.start()
    try:
        time.sleep(0.5)
        before = writer.commits
        for _ in range(3):
            report = validate(source=src, target=tgt, catch_up=catch_up, tuning=SMALL)
            assert report.status == "match", report.to_dict()
        by_table = {t.table: t for t in report.tables}
        assert by_table["public.holds"].keyed and not by_table["public.audit"].keyed
        # Changed on the target only: the apply worker does not see it, the source keeps its row.
        run_sql(tgt, "SET session_replication_role = replica;"
                     "UPDATE holds SET amount = -1 WHERE ref = %s;"
                     "UPDATE audit SET amount = -1 WHERE who = %s", (f"r{VICTIM}", f"u{VICTIM}"))
        for _ in range(2):
            by_table = {t.table: t for t in validate(source=src, target=tgt, catch_up=catch_up,
                                                     tuning=SMALL).tables}
            holds, audit = by_table["public.holds"], by_table["public.audit"]
            assert (list(holds.missing), list(holds.extra), list(holds.different)) == (
                [], [], [f"r{VICTIM}"]), holds.to_dict()
            assert (audit.source_surplus, audit.target_surplus) == (1, 1), audit.to_dict()
        # The validations ran while the updates went on (how many is the machine's pace).
        assert writer.commits > before and writer.error is None
    finally:
        writer.stop.set()
        writer.join(10)
