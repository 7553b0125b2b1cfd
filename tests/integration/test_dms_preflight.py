"""The DMS engine's preflight on real PostgreSQL: what DMS would truncate or cannot carry is
refused by the migration service, naming the table and the reason (the task itself in moto)."""

from __future__ import annotations

import logging
import time

import psycopg2
import pytest
from psycopg2.extensions import parse_dsn

from paymigrate import aws
from paymigrate.aws import contract
from paymigrate.errors import Refused
from paymigrate.migration.platform import ClientPlatform
from paymigrate.migration.service import MigrationService
from paymigrate.replication import engine_for
from paymigrate.replication.dms import DmsEngine

pytestmark = pytest.mark.integration


def run(dsn: str, *statements: str) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


@pytest.fixture(autouse=True)
def _tables_only(monkeypatch):
    """These tests are about the table rules. The DMS path's own needs (slots, a reverse task,
    endpoints a replication instance reached) never hold against the local stand-ins, where moto
    moves no rows: test_dms_engine and test_dms_checks cover that refusal."""
    monkeypatch.setattr(DmsEngine, "requirements", lambda self, task: [])


def preflight(stack, dsn: str, *, tables=(), exclude=()):
    service = MigrationService(ClientPlatform(env=stack.env, dbname=parse_dsn(dsn)["dbname"]))
    return service.preflight(engine="dms", tables=list(tables), exclude=list(exclude),
                             dry_run=True, takeover=False, run_id="test-dms-preflight",
                             dag_id="payment_migration")


def test_a_value_above_lob_max_size_is_refused_naming_table_column_and_setting(stack, databases):
    source, _ = databases
    config = contract.read(aws.client("ssm"), stack.env)
    assert config["replication/dms-lob-max-size-kb"] == 32
    run(source,
        'CREATE TABLE public."Notes" (id int PRIMARY KEY, "Body" text, doc jsonb, blob bytea, '
        "short varchar(10), free varchar)",
        # 40 kB of one letter: compressed in TOAST to a few hundred bytes, 40960 as DMS reads it.
        """INSERT INTO public."Notes" VALUES (1, repeat('x', 40960), '{"a": 1}', 'ab', 'ok', 'f')""")
    with pytest.raises(Refused) as refused:
        preflight(stack, source)
    message = str(refused.value)
    assert ('public."Notes": column Body (text) holds a value of 40960 bytes (40.0 kB), above '
            "LobMaxSize 32 kB") in message
    assert "replication/dms-lob-max-size-kb" in message and "at least 40" in message
    assert "full LOB mode" in message
    assert "refused 1 problem(s)" in message  # doc, blob and free are small: not named

    # Under the limit: every LOB-like type measured, none refused.
    run(source, """UPDATE public."Notes" SET "Body" = repeat('x', 31 * 1024),
                   doc = jsonb_build_object('k', repeat('y', 30000)),
                   blob = decode(repeat('ab', 30000), 'hex'), free = repeat('z', 32768)""")
    assert preflight(stack, source) is None


def test_json_xml_and_varchar_without_length_are_measured_as_text(stack, databases):
    source, _ = databases
    run(source,
        "CREATE SCHEMA billing",
        "CREATE DOMAIN billing.memo AS varchar",
        "CREATE TABLE billing.docs (id int PRIMARY KEY, j json, x xml, m billing.memo, b bytea)",
        "INSERT INTO billing.docs VALUES (1, json_build_object('k', repeat('a', 33000)), "
        "xmlelement(name r, repeat('b', 34000)), repeat('c', 35000), "
        "decode(repeat('ff', 36000), 'hex'))")
    message = str(pytest.raises(Refused, preflight, stack, source).value)
    for column, size in (("j", 33010), ("x", 34007), ("m", 35000), ("b", 36000)):
        assert f"billing.docs: column {column} " in message
        assert f"holds a value of {size} bytes" in message
    # The migration's scope decides what is measured: excluded, it is not refused.
    assert preflight(stack, source, exclude=["billing.docs"]) is None


def test_what_dms_cannot_carry_is_refused_naming_table_and_reason(stack, databases):
    source, _ = databases
    run(source,
        "CREATE TABLE public.fees (id int PRIMARY KEY, rate numeric, fixed numeric(12, 2))",
        "CREATE TABLE public.audit (at timestamptz, what text)",  # no key
        "CREATE TABLE public.log (at timestamptz, what text)",  # no key, insert-only
        "CREATE TABLE public.scans (id int PRIMARY KEY, image oid)",
        "CREATE TABLE public.paid (id bigserial PRIMARY KEY)",
        "INSERT INTO public.audit VALUES (now(), 'a'), (now(), 'b')",
        "INSERT INTO public.log VALUES (now(), 'a')",
        "UPDATE public.audit SET what = 'c'",
        "DELETE FROM public.audit WHERE what = 'c'",
        "SELECT lo_create(0)")
    time.sleep(1.2)  # table statistics reach the shared view at most once a second
    message = str(pytest.raises(Refused, preflight, stack, source).value)
    assert "refused 4 problem(s)" in message
    assert "public.fees: column rate is NUMERIC without precision: DMS maps it to NUMERIC(28,6)" in message
    assert "fixed" not in message
    assert ("public.audit: no primary key or replica identity and 2 update(s), 2 delete(s) seen: "
            "CDC cannot apply them") in message
    assert "public.log" not in message  # insert-only: nothing for CDC to find by key
    assert "public.scans: column image (oid) references large objects" in message
    assert "pg_largeobject: 1 large object(s): DMS does not carry large objects" in message
    assert "paid" not in message  # a sequence is synced at cutover, not refused


def test_sequences_are_a_note_and_a_clean_source_passes(stack, databases, caplog):
    source, _ = databases
    run(source, "CREATE SCHEMA billing",
        "CREATE TABLE billing.invoices (id bigserial PRIMARY KEY, amount numeric(12, 2), body text)",
        "INSERT INTO billing.invoices (amount, body) VALUES (1.5, 'x')")
    with caplog.at_level(logging.INFO, logger="paymigrate.replication.dms"):
        assert preflight(stack, source) is None
    assert ("DMS does not carry sequence values: 1 sequence(s) (billing.invoices_id_seq) are "
            "synced at cutover") in caplog.text


def test_the_cutover_checks_the_tables_of_the_runs_scope(stack, databases):
    source, _ = databases
    run(source, "CREATE TABLE public.a (id int PRIMARY KEY)", "CREATE TABLE public.b (id int PRIMARY KEY)",
        'CREATE TABLE public."C c" (id int PRIMARY KEY)')
    ep = stack.endpoint("source", dbname=parse_dsn(source)["dbname"])
    arn = contract.read(aws.client("ssm"), stack.env)["replication/dms-task-arn"]

    def tables(**scope):
        return engine_for("dms", task_arn=arn, source=ep, **scope).scope_tables()

    assert tables() == ['public."C c"', "public.a", "public.b"]
    assert tables(tables=["public.a", 'public."C c"']) == ['public."C c"', "public.a"]
    assert tables(exclude=["public.a"]) == ['public."C c"', "public.b"]
