"""Schema changes on the source during a live migration, under the payment workload: found and
named at once, refused at cutover with the source still the writer, and carried across.

Each test gets the database pair of ``test_cutover_switch`` (2000 seeded payments, forward
replication streaming, a route of its own in the router).
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from conftest import BackgroundWriter
from conftest import sql_rows as _sql
from test_cutover_switch import _assert_clean, _committing, _live, pair  # noqa: F401 (pair is a fixture)

from paymigrate.cutover.after_switch import validate_new_writer
from paymigrate.cutover.freeze import is_frozen
from paymigrate.cutover.switch import CutoverAborted, switch_writes
from paymigrate.errors import ReplicationError
from paymigrate.replication.ddl import SchemaDrift, carry, raise_for_drift
from paymigrate_dev.workload import Workload, report

pytestmark = pytest.mark.integration

DETECT_WITHIN = 30.0


def _first_drift(engine, *, timeout: float):
    started = time.monotonic()
    while True:
        found = engine.schema_drift()
        if found or time.monotonic() - started > timeout:
            return found, time.monotonic() - started
        time.sleep(0.5)


def _refused_at_prepare(p) -> str:
    """A cutover now: refused before the pause, the source still the writer; its error."""
    started = time.monotonic()
    with pytest.raises(CutoverAborted) as caught:
        switch_writes(p.switch)
    assert time.monotonic() - started < 60
    result = caught.value.result
    assert result.failed_step == "prepare" and result.write_pause_seconds is None, result
    assert _live(p.switch, p.name) == {("127.0.0.1", p.source_port)}
    assert not is_frozen(p.switch.source)
    return result.error


def _drained(engine, timeout: float = 30) -> None:
    assert engine.catch_up(engine.position(side="source"), timeout=timeout), engine.lag()


def test_a_column_added_mid_migration_is_named_refused_at_cutover_carried_and_cut_over(pair, tmp_path):  # noqa: F811
    ledger = tmp_path / "workload"
    wl = Workload(dsn=pair.router_dsn, directory=ledger, clients=2, tps=60, seed=21).start()
    try:
        _committing(wl)
        _sql(pair.source_dsn, "ALTER TABLE payment_events ADD COLUMN note text")
        _sql(pair.source_dsn, "UPDATE payment_events SET note = 'audited' "
                              "WHERE id = (SELECT max(id) FROM payment_events)")
        [drift], seconds = _first_drift(pair.engine, timeout=DETECT_WITHIN)
        assert seconds < DETECT_WITHIN
        assert (drift.kind, drift.table, drift.column) == ("column-missing", "public.payment_events", "note")
        assert drift.fix == 'ALTER TABLE public.payment_events ADD COLUMN IF NOT EXISTS "note" text'
        with pytest.raises(SchemaDrift, match=r"public\.payment_events\.note: column text on the source only"):
            raise_for_drift(pair.engine)  # what the lag gate and the replication sensors raise
        assert "public.payment_events.note" in _refused_at_prepare(pair)
        _committing(wl)  # writes go on on the source

        carried = carry(pair.engine)
        assert carried.statements == [drift.fix]
        assert pair.engine.schema_drift() == []
        _drained(pair.engine)  # the apply worker went on by itself
        assert _sql(pair.target_dsn, "SELECT count(*) FROM payment_events WHERE note = 'audited'") == [(1,)]

        result = switch_writes(pair.switch)
        assert not result.aborted
        pair.engine.attach_reverse(from_position=result.reverse_position)
        _committing(wl)
        after = validate_new_writer(new_writer=pair.switch.target, old_writer=pair.switch.source,
                                    engine=pair.engine, catch_up_timeout=20)
    finally:
        wl.stop()
    assert after.status == "match", after.to_dict()
    _assert_clean(report(directory=ledger, against_dsn=pair.target_dsn), "target")


def _insert_rate(cur, rng) -> int:
    cur.execute("INSERT INTO fx_rates (pair, rate) VALUES (%s, %s)",
                (rng.choice(["EURUSD", "USDSGD", "GBPUSD"]), round(rng.uniform(0.5, 2.0), 6)))
    return 1


def test_a_table_created_mid_migration_is_named_refused_at_cutover_then_published_and_copied(pair, tmp_path):  # noqa: F811
    ledger = tmp_path / "workload"
    wl = Workload(dsn=pair.router_dsn, directory=ledger, clients=2, tps=60, seed=22).start()
    writer = None
    try:
        _committing(wl)
        _sql(pair.source_dsn, "CREATE TABLE fx_rates (id bigserial PRIMARY KEY, pair text NOT NULL, "
                              "rate numeric(12,6) NOT NULL, at timestamptz NOT NULL DEFAULT now())")
        _sql(pair.source_dsn, "CREATE TABLE scratch (note text)")  # no key: refused by name
        writer = BackgroundWriter(pair.source_dsn, _insert_rate, seed=4, pause=0.02)
        writer.start()
        drift, seconds = _first_drift(pair.engine, timeout=DETECT_WITHIN)
        assert seconds < DETECT_WITHIN
        assert [(d.kind, d.table) for d in drift] == [("table-unpublished", "public.fx_rates"),
                                                      ("table-unpublished", "public.scratch")]
        error = _refused_at_prepare(pair)
        assert "public.fx_rates" in error and "in no publication" in error

        with pytest.raises(ReplicationError, match=r"public\.scratch have no primary key"):
            carry(pair.engine)
        _sql(pair.source_dsn, "DROP TABLE scratch")
        carried = carry(pair.engine)
        assert carried.published == ["public.fx_rates"]
        deadline = time.monotonic() + 60
        while pair.engine.status().tables.get("public.fx_rates") not in ("ready", "synced"):
            assert time.monotonic() < deadline, pair.engine.status()
            time.sleep(0.2)
        tables = tuple(pair.engine.scope_tables())
        assert "public.fx_rates" in tables
        writer.stop.set()
        writer.join()
        assert writer.error is None and writer.commits > 0
        _drained(pair.engine)
        counts = [_sql(dsn, "SELECT count(*), sum(rate) FROM fx_rates")[0]
                  for dsn in (pair.source_dsn, pair.target_dsn)]
        assert counts[0] == counts[1] and counts[0][0] >= writer.commits, counts

        result = switch_writes(replace(pair.switch, tables=tables))
        assert not result.aborted and result.tables == len(tables)
    finally:
        if writer is not None:
            writer.stop.set()
        wl.stop()
    _assert_clean(report(directory=ledger, against_dsn=pair.target_dsn), "target")
