"""Seeding a real database: deterministic, balanced, granted, refused twice unless replaced."""

from __future__ import annotations

import psycopg2
import pytest

from paymigrate.errors import SeedError
from paymigrate_dev.cli import main as cli_main
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.workload.report import invariants

pytestmark = pytest.mark.integration

CHECKSUM = "SELECT md5(string_agg(t::text, ',' ORDER BY {key})) FROM {table} t"


def _checksums(dsn: str) -> dict[str, str]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        out = {}
        for table, key in (("payments", "id"), ("ledger_lines", "txn_id, line_no"),
                           ("payment_events", "id")):
            cur.execute(CHECKSUM.format(table=table, key=key))
            out[table] = cur.fetchone()[0]
    conn.close()
    return out


def test_same_seed_same_tables_and_the_ledger_balances(databases):
    dsn = databases[0]
    first = seed(dsn=dsn, rows=3000, seed=5)
    assert first.counts["payments"] == 3000 and first.counts["ledger_lines"] > 2 * 3000
    sums = _checksums(dsn)
    again = seed(dsn=dsn, rows=3000, seed=5, replace=True)
    assert again.replaced and again.counts == first.counts
    assert _checksums(dsn) == sums
    seed(dsn=dsn, rows=3000, seed=6, replace=True)
    assert _checksums(dsn)["payments"] != sums["payments"]
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        assert set(invariants(cur).values()) == {0}
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'paymigrate_seed_%'")
        assert cur.fetchone()[0] == 0  # the private build schema is gone
        cur.execute("SELECT last_value FROM invoice_number_seq")
        assert cur.fetchone()[0] == 3000
        cur.execute("SELECT has_table_privilege('payments_app', 'ledger_lines', 'INSERT'), "
                    "has_sequence_privilege('payments_app', 'invoice_number_seq', 'USAGE')")
        assert cur.fetchone() == (True, True)
    conn.close()


def test_a_seeded_database_is_refused_without_replace_and_left_as_it_was(databases, capsys):
    dsn = databases[0]
    assert cli_main(["seed", "--rows", "200", "--seed", "1", "--dsn", dsn]) == 0
    assert "200 payments (seed 1)" in capsys.readouterr().out
    before = _checksums(dsn)
    with pytest.raises(SeedError, match="already has the demo schema.*--replace"):
        seed(dsn=dsn, rows=100, seed=2)
    assert cli_main(["seed", "--rows", "100", "--dsn", dsn]) == 2
    assert _checksums(dsn) == before
