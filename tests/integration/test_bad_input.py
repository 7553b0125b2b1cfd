"""Bad input against the real servers: refused by name with nothing created; a table name that
needs quoting works when the table exists and is never run as SQL."""

from __future__ import annotations

import json

import pytest
from conftest import sql_rows as run

from paymigrate.aws import contract, names
from paymigrate.aws.checkpoints import CheckpointStore
from paymigrate.errors import BadInput
from paymigrate.inputs import check_source_tables
from paymigrate.replication import engine_for
from paymigrate.validation import validate
from paymigrate_dev.cli import main

pytestmark = pytest.mark.integration

WEIRD = ('public."Weird Name"', 'public."MixedCase"', 'public."a.b"', '"Sales Q1"."say ""hi"""')
WEIRD_SCHEMA = '''
CREATE TABLE "Weird Name" (id int PRIMARY KEY, v text);
CREATE TABLE "MixedCase" ("Id" int PRIMARY KEY, "Value" text);
CREATE TABLE "a.b" (id int PRIMARY KEY, v text);
CREATE SCHEMA "Sales Q1";
CREATE TABLE "Sales Q1"."say ""hi""" (id int PRIMARY KEY, v text);
CREATE TABLE canary (id int PRIMARY KEY);
INSERT INTO "Weird Name" SELECT g, 'w' || g FROM generate_series(1, 50) g;
INSERT INTO "MixedCase" SELECT g, 'm' || g FROM generate_series(1, 50) g;
INSERT INTO "a.b" SELECT g, 'a' || g FROM generate_series(1, 50) g;
INSERT INTO "Sales Q1"."say ""hi""" SELECT g, 'q' || g FROM generate_series(1, 50) g;
'''


def _replication_objects(stack) -> dict[str, int]:
    counts = {}
    for side in ("source", "target"):
        counts[f"{side} slots"] = run(stack.dsn(side), "SELECT count(*) FROM pg_replication_slots")[0][0]
        counts[f"{side} subscriptions"] = run(stack.dsn(side), "SELECT count(*) FROM pg_subscription")[0][0]
        counts[f"{side} publications"] = run(stack.dsn(side), "SELECT count(*) FROM pg_publication")[0][0]
    return counts


def _checkpoints(stack) -> tuple[object, set[tuple[str, str]]]:
    """The lock, and every checkpoint object with its ETag (an earlier test's stay as they were)."""
    store = CheckpointStore(s3=stack.client("s3"), bucket=contract.read(stack.client("ssm"), stack.env)[
        "storage/checkpoints-bucket"], env=stack.env)
    listed = stack.client("s3").list_objects_v2(Bucket=names.bucket_name("checkpoints", stack.env))
    return store.lock(), {(o["Key"], o["ETag"]) for o in listed.get("Contents", [])}


@pytest.mark.parametrize(("conf", "named", "why"), [
    ({"tables": ['public."NoSuchTable"']}, 'tables=\'public."NoSuchTable"\'', "no such table"),
    ({"tables": ["public.payments", 'public."x""; DROP TABLE public.payments; --"']}, "DROP TABLE",
     "no such table"),
    ({"exclude": ["public.nope"]}, "exclude='public.nope'", "no such table"),
    ({"engine": "dms", "tables": ["public.nope", "public.gone"]}, "['public.nope', 'public.gone']",
     "no such table"),
    ({"max_keys": 0}, "max_keys=0", "below the minimum 1"),
])
def test_a_refused_run_says_it_in_one_line_and_creates_nothing(stack, airflow, capsys, monkeypatch,
                                                               conf, named, why):
    monkeypatch.setenv("PAYMIGRATE_HOME", str(stack.home))
    before, saved = _replication_objects(stack), _checkpoints(stack)
    assert saved[0] is None
    payments = run(stack.dsn("source"), "SELECT to_regclass('public.payments') IS NOT NULL")[0][0]
    code = main(["run", "payment_migration", "--conf", json.dumps(conf)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert named in err[0] and why in err[0], err[0]
    assert _replication_objects(stack) == before
    assert _checkpoints(stack) == saved  # no lock, no checkpoint written
    assert run(stack.dsn("source"), "SELECT to_regclass('public.payments') IS NOT NULL")[0][0] == payments


@pytest.fixture
def weird(stack, databases):
    source_dsn, target_dsn = databases
    dbname = source_dsn.split("dbname=")[1].split()[0]
    run(source_dsn, WEIRD_SCHEMA)
    engine = engine_for("postgres-logical", source=stack.endpoint("source", dbname=dbname),
                        target=stack.endpoint("target", dbname=dbname), name=dbname, poll=0.2,
                        tables=list(WEIRD))
    yield engine, source_dsn, target_dsn
    engine.drop(direction="forward")


def test_tables_that_need_quoting_replicate_and_validate(weird):
    engine, source_dsn, target_dsn = weird
    check_source_tables(engine.source, tables=WEIRD, exclude=["public.canary"])
    assert engine.preflight() == []
    engine.start()
    engine.wait_full_load(timeout=120)
    run(source_dsn, 'UPDATE "Weird Name" SET v = \'changed\' WHERE id = 7; '
                    'INSERT INTO "Sales Q1"."say ""hi""" VALUES (51, \'new\')')
    assert engine.catch_up(engine.position(side="source"), timeout=30)
    report = validate(source=source_dsn, target=target_dsn, tables=list(WEIRD))
    assert report.status == "match" and len(report.tables) == 4, report.to_dict()
    assert run(target_dsn, 'SELECT v FROM "Weird Name" WHERE id = 7')[0][0] == "changed"
    published = run(source_dsn, "SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables")
    assert sorted(r[0] for r in published) == sorted(WEIRD)  # exactly those, canary left out


def test_a_name_that_does_not_exist_is_refused_by_name_and_never_run(weird):
    engine, source_dsn, _ = weird
    sneaky = 'public."canary""; DROP TABLE canary; --"'
    with pytest.raises(BadInput, match="no such table") as refused:
        check_source_tables(engine.source, tables=[*WEIRD, sneaky, 'public."weird name"'])
    assert refused.value.value == [sneaky, 'public."weird name"']  # case matters once quoted
    problems = {p.table: p.reason for p in engine_for(
        "postgres-logical", source=engine.source, target=engine.target, name=engine.name,
        tables=[sneaky, "public.canary", 'public."open']).preflight()}
    assert problems[sneaky] == problems['public."open'] == "not found on the source"
    assert run(source_dsn, "SELECT count(*) FROM canary")[0][0] == 0  # still there
