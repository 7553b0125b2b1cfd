"""Schema parity on the real servers: a database with a view, a materialized view, a trigger and
an unowned sequence (the demo's invoice_number_seq) goes through the migration and the cutover,
and all of them work through PgBouncer on the target; what the target lacks is named object by
object before any cutover."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from conftest import create_database, drop_replicated_pair
from conftest import sql_rows as _sql

from paymigrate.cutover.switch import Switch, switch_writes
from paymigrate.replication import parity
from paymigrate.replication.logical import LogicalEngine
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.local.stack import APP_USER

pytestmark = pytest.mark.integration

OBJECTS = f"""
CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL, body_len int);
CREATE FUNCTION notes_len() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN NEW.body_len := length(NEW.body); RETURN NEW; END$$;
CREATE TRIGGER notes_len BEFORE INSERT OR UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION notes_len();
INSERT INTO notes (body) VALUES ('a'), ('bb');
CREATE VIEW captured AS SELECT id, amount FROM payments WHERE status = 'captured';
CREATE MATERIALIZED VIEW daily_volume AS
  SELECT created_at::date AS day, count(*) AS payments FROM payments GROUP BY 1;
CREATE UNIQUE INDEX daily_volume_day ON daily_volume (day);
GRANT SELECT, INSERT ON notes TO {APP_USER};
GRANT USAGE ON SEQUENCE notes_id_seq TO {APP_USER};
GRANT SELECT ON captured, daily_volume TO {APP_USER};
"""


@pytest.fixture
def migrated(stack):
    name = f"par_{uuid.uuid4().hex[:8]}"
    source, target = stack.endpoint("source", dbname=name), stack.endpoint("target", dbname=name)
    for side in ("source", "target"):
        create_database(stack, side, name)
    engine = LogicalEngine(source=source, target=target, name=name, poll=0.05)
    try:
        seed(dsn=stack.dsn("source", dbname=name), rows=300, seed=5)
        _sql(stack.dsn("source", dbname=name), OBJECTS)
        engine.start()
        assert engine.wait_full_load(timeout=60, poll=0.2).full_load_done
        yield name, engine
    finally:
        drop_replicated_pair(stack, name, engine)


def test_what_the_target_lacks_is_named_object_by_object(stack, migrated):
    name, engine = migrated
    source, target = engine.source, engine.target
    tables = engine.scope_tables()
    # A schema copy leaves the materialized view empty: reading it on the target would fail.
    assert [d.line() for d in parity.check(source=source, target=target, tables=tables)] == [
        "materialized view public.daily_volume: not populated on the target (reading it fails there)"]
    assert parity.refresh_materialized_views(source=source, target=target) == ["public.daily_volume"]
    assert parity.check(source=source, target=target, tables=tables) == []

    on_target = stack.dsn("target", dbname=name)
    _sql(on_target, f"""ALTER TABLE notes DISABLE TRIGGER notes_len;
                        REVOKE SELECT ON captured FROM {APP_USER};
                        DROP INDEX payments_status_created_idx;
                        REFRESH MATERIALIZED VIEW daily_volume WITH NO DATA""")
    _sql(stack.dsn("source", dbname=name),  # DDL on the source after the schema copy
         "CREATE FUNCTION fee(amount numeric) RETURNS numeric LANGUAGE sql AS 'SELECT amount * 0.01'; "
         # what DMS's DDL capture leaves beside the application's objects: not the application's
         "CREATE FUNCTION awsdms_intercept_ddl() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    assert sorted(d.line() for d in parity.check(source=source, target=target, tables=tables)) == [
        "function public.fee(numeric): missing on the target",
        "index public.payments_status_created_idx: missing on the target",
        "materialized view public.daily_volume: not populated on the target (reading it fails there)",
        f"privilege SELECT on public.captured to {APP_USER}: held on the source, not on the target",
        "trigger public.notes.notes_len: enabled on the source, disabled on the target",
    ]


def test_views_a_trigger_and_sequences_work_through_the_router_after_the_cutover(stack, migrated):
    name, engine = migrated
    source, target = engine.source, engine.target
    parity.refresh_materialized_views(source=source, target=target)
    assert parity.check(source=source, target=target, tables=engine.scope_tables()) == []
    stack.add_route(name)
    on_source = stack.dsn("source", dbname=name)
    invoice_before = _sql(on_source, "SELECT last_value FROM invoice_number_seq")[0][0]
    switch_writes(Switch(source=source, target=target, routers=stack.router_nodes(), database=name,
                         engine=engine, tables=tuple(engine.scope_tables()), max_write_pause=5.0,
                         pause_timeout=5.0, drain_timeout=10.0))
    app = psycopg2.connect(stack.dsn("router", user=APP_USER, dbname=name))
    app.autocommit = True
    try:
        with app.cursor() as cur:
            cur.execute("SELECT current_setting('port')::int")
            assert cur.fetchone()[0] == stack.port("target")
            cur.execute("SELECT count(*) FROM captured")
            assert cur.fetchone()[0] == _sql(on_source, "SELECT count(*) FROM captured")[0][0] > 0
            cur.execute("SELECT sum(payments) FROM daily_volume")
            assert cur.fetchone()[0] == 300
            cur.execute("INSERT INTO notes (body) VALUES ('hello') RETURNING body_len")
            assert cur.fetchone()[0] == 5  # the trigger fires for the application on the target
            cur.execute("SELECT nextval('invoice_number_seq')")
            assert cur.fetchone()[0] > invoice_before  # never a number the source handed out
    finally:
        app.close()
