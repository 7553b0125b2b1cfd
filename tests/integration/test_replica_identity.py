"""A table without a primary key but with a unique NOT NULL key: preflight proposes REPLICA
IDENTITY USING INDEX on it, with the statement, and sets it on request."""

from __future__ import annotations

import time

import pytest
from test_replication_logical import pair, problems_of, rows, run  # noqa: F401 (pair is a fixture)

pytestmark = pytest.mark.integration

FEES = ("CREATE TABLE fees (ref text NOT NULL UNIQUE, note text UNIQUE, amount numeric(19,4)); "
        "INSERT INTO fees VALUES ('a', NULL, 1), ('b', NULL, 2); UPDATE fees SET amount = 3 WHERE ref = 'a'")


def test_preflight_proposes_the_unique_key_as_replica_identity_and_sets_it_on_request(pair):  # noqa: F811
    make, source_dsn, target_dsn, _ = pair
    run(source_dsn, FEES)
    time.sleep(1.2)  # table statistics reach the shared view at most once a second
    found = problems_of(make())
    assert ('cheapest fix: ALTER TABLE public.fees REPLICA IDENTITY USING INDEX "fees_ref_key"'
            in found["public.fees"]), found  # the NOT NULL key, not the nullable one
    engine = make(replica_identity_index=True)
    assert engine.preflight() == []
    engine.start()
    assert engine.wait_full_load(timeout=60, poll=0.5).full_load_done
    for dsn in (source_dsn, target_dsn):
        assert run(dsn, "SELECT c.relreplident, i.relname FROM pg_class c JOIN pg_index x "
                        "ON x.indrelid = c.oid AND x.indisreplident JOIN pg_class i ON i.oid = x.indexrelid "
                        "WHERE c.relname = 'fees'") == [("i", "fees_ref_key")]
    run(source_dsn, "UPDATE fees SET amount = 4 WHERE ref = 'b'; DELETE FROM fees WHERE ref = 'a'")
    assert engine.catch_up(engine.position(), timeout=60)
    assert rows(source_dsn, "fees") == rows(target_dsn, "fees") == ["(b,,4.0000)"]
