"""The validation engine against the two real local servers: exact keys for every key shape."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import uuid

import psycopg2
import pytest

from paymigrate.db import query as run_sql
from paymigrate.errors import ValidationError
from paymigrate.validation import Tuning, list_tables, validate, validate_table
from paymigrate_dev.cli import main as cli_main

pytestmark = pytest.mark.integration

# Small segments and leaves so a few hundred rows exercise bisection, not only the leaf diff.
SMALL = Tuning(rows_per_segment=40, leaf_rows=16, fanout=4, exact_bounds_rows=150,
               sample_per_segment=4)


def both(databases, statements: str) -> None:
    for dsn in databases:
        run_sql(dsn, statements)


def keys(result) -> dict[str, list]:
    return {"missing": list(result.missing), "extra": list(result.extra),
            "different": list(result.different)}


PAYMENTS = """
CREATE TABLE payments (id bigint PRIMARY KEY, amount numeric(12, 2), note text, at timestamptz,
                       f float8, meta jsonb);
INSERT INTO payments SELECT g, g * 1.25, CASE WHEN g % 9 = 0 THEN NULL ELSE 'n' || g END,
       timestamptz '2024-03-01 12:00:00+00' + g * interval '1 minute', g / 7.0,
       jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 3))
  FROM generate_series(1, 600) g;
"""


@pytest.mark.parametrize("tuning", [SMALL, Tuning()], ids=["bisecting", "default"])
def test_equal_then_exact_keys_for_deletes_inserts_updates(databases, tuning):
    both(databases, PAYMENTS)
    src, tgt = databases
    assert validate_table(source=src, target=tgt, table="public.payments", tuning=tuning).status == "match"
    run_sql(tgt, """
        DELETE FROM payments WHERE id IN (1, 333, 600);
        INSERT INTO payments VALUES (0, 1, 'x', now(), 1, '{}'), (1000, 1, 'y', now(), 1, '{}');
        UPDATE payments SET amount = amount + 0.01 WHERE id = 17;
        UPDATE payments SET meta = meta || '{"z": 1}' WHERE id = 250;
        UPDATE payments SET at = at + interval '1 microsecond' WHERE id = 599;""")
    r = validate_table(source=src, target=tgt, table="payments", tuning=tuning)
    assert keys(r) == {"missing": [1, 333, 600], "extra": [0, 1000], "different": [17, 250, 599]}
    assert (r.source_rows, r.target_rows, r.status) == (600, 599, "mismatch")


def test_session_settings_and_target_timezone_do_not_matter(databases, stack):
    both(databases, PAYMENTS)
    src, tgt = databases
    dbname = psycopg2.extensions.parse_dsn(tgt)["dbname"]
    # Every session on the target gets other output settings; the hashes must not move.
    run_sql(stack.dsn("target", dbname="postgres"), f"""
        ALTER DATABASE {dbname} SET timezone = 'Pacific/Chatham';
        ALTER DATABASE {dbname} SET datestyle = 'SQL, DMY';
        ALTER DATABASE {dbname} SET extra_float_digits = -3;
        ALTER DATABASE {dbname} SET intervalstyle = 'sql_standard';
        ALTER DATABASE {dbname} SET bytea_output = 'escape';""")
    both(databases, """CREATE TABLE kinds (id int PRIMARY KEY, d date, ts timestamp, i interval,
                                           b bytea, r real, m money);
        INSERT INTO kinds VALUES (1, '2024-02-29', '2024-02-29 23:59:59.999999', '1 mon 2 days 3 h',
                                  '\\x00ff', 1.1, 12.34),
                                 (2, 'infinity', '-infinity', '-1 year', '', 'NaN', 0);""")
    r = validate(source=src, target=tgt)
    assert r.status == "match", r.to_dict()
    run_sql(tgt, "UPDATE payments SET at = at + interval '1 hour' WHERE id = 5")
    assert keys(validate_table(source=src, target=tgt, table="public.payments")) == {
        "missing": [], "extra": [], "different": [5]}


def test_float_changed_in_its_last_digit_and_null_versus_empty_string(databases):
    both(databases, PAYMENTS)
    src, tgt = databases
    conn = psycopg2.connect(tgt)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET extra_float_digits = 3; SELECT f FROM payments WHERE id = 10")
        (f,) = cur.fetchone()
        cur.execute("UPDATE payments SET f = %s WHERE id = 10", (math.nextafter(f, math.inf),))
        cur.execute("UPDATE payments SET note = '' WHERE id = 18")  # NULL on the source
        cur.execute("UPDATE payments SET note = NULL WHERE id = 20")  # 'n20' on the source
    conn.close()
    r = validate_table(source=src, target=tgt, table="public.payments", tuning=SMALL)
    assert keys(r) == {"missing": [], "extra": [], "different": [10, 18, 20]}


def test_composite_and_text_keys_even_with_another_collation_on_the_target(databases):
    src, tgt = databases
    table = """CREATE TABLE ledger (account text {collate}, seq int, entry text,
                                    PRIMARY KEY (account, seq));
        INSERT INTO ledger SELECT (ARRAY['alpha', 'Beta', 'gamma', 'Delta', 'é', 'Z'])[1 + g % 6],
                                  g, 'e' || g FROM generate_series(1, 500) g;
        CREATE TABLE codes (code text PRIMARY KEY, label text);
        INSERT INTO codes SELECT chr(65 + g % 58) || g, 'l' FROM generate_series(1, 400) g;"""
    run_sql(src, table.format(collate=""))
    run_sql(tgt, table.format(collate='COLLATE "en-x-icu"'))  # sorts 'Beta' after 'alpha'
    r = validate(source=src, target=tgt, tuning=SMALL)
    assert r.status == "match", r.to_dict()
    run_sql(tgt, """DELETE FROM ledger WHERE account = 'Beta' AND seq = 7;
                    UPDATE ledger SET entry = 'changed' WHERE account = 'é' AND seq = 4;
                    INSERT INTO ledger VALUES ('alpha', 9999, 'new');
                    DELETE FROM codes WHERE code = 'g38';
                    INSERT INTO codes VALUES ('', 'empty key');""")
    by_table = {t.table: keys(t) for t in validate(source=src, target=tgt, tuning=SMALL).tables}
    assert by_table["public.ledger"] == {"missing": [["Beta", 7]], "extra": [["alpha", 9999]],
                                         "different": [["é", 4]]}
    assert by_table["public.codes"] == {"missing": ["g38"], "extra": [""], "different": []}


def test_uuid_and_timestamp_keys(databases):
    both(databases, """
        CREATE TABLE refunds (id uuid PRIMARY KEY, amount numeric);
        INSERT INTO refunds SELECT md5(g::text)::uuid, g FROM generate_series(1, 300) g;
        CREATE TABLE ticks (at timestamptz PRIMARY KEY, v int);
        INSERT INTO ticks SELECT timestamptz '2024-01-01 00:00:00+00' + g * interval '1.5 s', g
          FROM generate_series(1, 300) g;""")
    src, tgt = databases
    gone, changed = (str(uuid.UUID(hashlib.md5(str(g).encode()).hexdigest())) for g in (1, 2))
    run_sql(tgt, f"""DELETE FROM refunds WHERE id = '{gone}';
                     UPDATE refunds SET amount = 2.0 WHERE id = '{changed}';  -- numeric keeps scale
                     UPDATE ticks SET v = -v WHERE at = '2024-01-01 02:00:06+02';
                     DELETE FROM ticks WHERE at = '2024-01-01 00:00:03+00';""")
    r = {t.table: keys(t) for t in validate(source=src, target=tgt, tuning=SMALL).tables}
    assert r["public.refunds"] == {"missing": [gone], "extra": [], "different": [changed]}
    assert r["public.ticks"] == {"missing": ["2024-01-01 00:00:03+00"], "extra": [],
                                 "different": ["2024-01-01 00:00:06+00"]}


def test_table_without_primary_key_is_a_multiset(databases):
    both(databases, """CREATE TABLE audit (who text, what text);
                       INSERT INTO audit SELECT 'u' || (g % 10), 'did ' || g FROM generate_series(1, 200) g;""")
    src, tgt = databases
    assert validate(source=src, target=tgt).status == "match"
    run_sql(tgt, "INSERT INTO audit SELECT * FROM audit WHERE what = 'did 5'")  # one duplicate
    r = validate(source=src, target=tgt).tables[0]
    assert (r.keyed, r.source_surplus, r.target_surplus, r.status) == (False, 0, 1, "mismatch")
    d = r.to_dict()
    assert d["missing"] == d["extra"] == d["different"] == [] and d["target_surplus"] == 1
    run_sql(src, "INSERT INTO audit VALUES ('u5', 'did 5')")  # same copies on both sides again
    assert validate(source=src, target=tgt).status == "match"


def test_one_sided_segments_are_counted_and_keys_capped(databases):
    both(databases, "CREATE TABLE big (id int PRIMARY KEY, v text)")
    src, tgt = databases
    run_sql(src, "INSERT INTO big SELECT g, 'v' FROM generate_series(1, 500) g")
    r = validate_table(source=src, target=tgt, table="big", max_keys=5, tuning=SMALL)
    assert (r.missing_count, list(r.missing)) == (500, [1, 2, 3, 4, 5])
    d = r.to_dict()
    assert (d["missing_count"], d["missing_omitted"], len(d["missing"])) == (500, 495, 5)


def test_structure_differences_are_errors_naming_each(databases):
    src, tgt = databases
    run_sql(src, "CREATE TABLE a (id int PRIMARY KEY, v numeric(10, 2)); CREATE TABLE only_src (id int)")
    run_sql(tgt, "CREATE TABLE a (id int PRIMARY KEY, v numeric); CREATE TABLE only_tgt (id int)")
    with pytest.raises(ValidationError) as err:
        validate(source=src, target=tgt)
    message = str(err.value)
    assert "column public.a.v is numeric(10,2) on the source and numeric on the target" in message
    assert "table public.only_src is missing on the target" in message
    assert "table public.only_tgt is missing on the source" in message
    with pytest.raises(ValidationError, match="table nope not found on the source"):
        validate(source=src, target=tgt, tables=["nope"])
    assert list_tables(source=src) == ["public.a", "public.only_src"]


def test_cli_exit_codes_and_json(databases, capsys, monkeypatch):
    both(databases, PAYMENTS)
    src, tgt = databases
    monkeypatch.setenv("PAYMIGRATE_SOURCE_DSN", src)
    monkeypatch.setenv("PAYMIGRATE_TARGET_DSN", tgt)
    assert cli_main(["validate", "--source", src, "--target", tgt, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "match"
    run_sql(tgt, "DELETE FROM payments WHERE id = 42")
    assert cli_main(["validate", "--source", src, "--target", tgt, "--json", "--max-keys", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    table = report["tables"][0]
    assert (report["status"], table["table"], table["missing"]) == ("mismatch", "public.payments", [42])
    assert {"started", "finished", "rows_per_second", "rows_checked"} <= report.keys()
    run_sql(src, "CREATE TABLE extra_one (id int PRIMARY KEY)")
    assert cli_main(["validate", "--source", src, "--target", tgt]) == 2
    assert "table public.extra_one is missing on the target" in capsys.readouterr().err
    assert cli_main(["validate", "--source", "host=127.0.0.1 port=1 dbname=x user=u password=hunter2",
                     "--target", tgt]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the source database u@127.0.0.1:1/x" in err and "hunter2" not in err


def test_unique_not_null_and_replica_identity_keys_compare_by_key(databases):
    both(databases, """
        CREATE TABLE holds (ref text NOT NULL, n int NOT NULL, amount numeric, note text UNIQUE);
        CREATE UNIQUE INDEX holds_n ON holds (n);
        CREATE UNIQUE INDEX holds_ref ON holds (ref, n);
        ALTER TABLE holds REPLICA IDENTITY USING INDEX holds_ref;
        INSERT INTO holds SELECT 'r' || g, g, g, 'note ' || g FROM generate_series(1, 300) g;
        CREATE TABLE loose (code text UNIQUE, amount numeric);  -- nullable: not a key
        INSERT INTO loose SELECT 'c' || g, g FROM generate_series(1, 50) g;
        CREATE TABLE partial (id int NOT NULL, amount numeric);
        CREATE UNIQUE INDEX partial_id ON partial (id) WHERE id > 0;  -- partial: not a key
        INSERT INTO partial SELECT g, g FROM generate_series(1, 50) g;""")
    src, tgt = databases
    assert validate(source=src, target=tgt, tuning=SMALL).status == "match"
    run_sql(tgt, """DELETE FROM holds WHERE n = 7; UPDATE holds SET amount = -1 WHERE n = 250;
                    INSERT INTO holds VALUES ('new', 1000, 1, NULL);
                    UPDATE loose SET amount = 0 WHERE code = 'c3';
                    UPDATE partial SET amount = 0 WHERE id = 4;""")
    by_table = {t.table: t for t in validate(source=src, target=tgt, tuning=SMALL).tables}
    # The replica identity index is the key, not the smaller unique index on n.
    assert keys(by_table["public.holds"]) == {"missing": [["r7", 7]], "extra": [["new", 1000]],
                                              "different": [["r250", 250]]}
    for name in ("public.loose", "public.partial"):
        t = by_table[name]
        assert (t.keyed, t.source_surplus, t.target_surplus) == (False, 1, 1), t.to_dict()


def test_a_unique_key_on_one_side_and_a_primary_key_on_the_other_is_a_common_key(databases):
    src, tgt = databases
    run_sql(src, "CREATE TABLE fees (code text NOT NULL UNIQUE, amount numeric)")
    run_sql(tgt, "CREATE TABLE fees (code text PRIMARY KEY, amount numeric)")
    both(databases, "INSERT INTO fees SELECT 'f' || g, g FROM generate_series(1, 100) g")
    run_sql(tgt, "UPDATE fees SET amount = 0 WHERE code = 'f9'")
    r = validate_table(source=src, target=tgt, table="fees", tuning=SMALL)
    assert r.keyed and keys(r) == {"missing": [], "extra": [], "different": ["f9"]}
    run_sql(tgt, "CREATE TABLE other (id int PRIMARY KEY)")
    run_sql(src, "CREATE TABLE other (id int)")
    with pytest.raises(ValidationError, match=r"primary key \(id\) on the target"):
        validate(source=src, target=tgt, tables=["other"])


def test_tables_compared_in_parallel_report_what_one_at_a_time_does(databases):
    both(databases, PAYMENTS + """
        CREATE TABLE ledger (account text, seq int, entry text, PRIMARY KEY (account, seq));
        INSERT INTO ledger SELECT 'a' || (g % 40), g, 'e' || g FROM generate_series(1, 500) g;
        CREATE TABLE audit (who text, what text);
        INSERT INTO audit SELECT 'u' || (g % 10), 'did ' || g FROM generate_series(1, 200) g;
        CREATE TABLE codes (code text NOT NULL UNIQUE, label text);
        INSERT INTO codes SELECT 'c' || g, 'l' FROM generate_series(1, 300) g;""")
    src, tgt = databases
    run_sql(tgt, """DELETE FROM payments WHERE id IN (3, 400); UPDATE payments SET note = '' WHERE id = 9;
                    DELETE FROM ledger WHERE seq = 77; INSERT INTO ledger VALUES ('zz', 1, 'new');
                    UPDATE ledger SET entry = NULL WHERE seq = 300;
                    INSERT INTO audit SELECT * FROM audit WHERE what = 'did 5';
                    UPDATE codes SET label = 'L' WHERE code = 'c250';""")

    def tables(report) -> list[dict]:
        return [{k: v for k, v in t.to_dict().items() if k != "seconds"} for t in report.tables]

    one = validate(source=src, target=tgt, tuning=dataclasses.replace(SMALL, connections=1))
    many = validate(source=src, target=tgt, tuning=dataclasses.replace(SMALL, connections=4))
    assert tables(many) == tables(one)
    assert [t["table"] for t in tables(many)] == ["public.audit", "public.codes", "public.ledger",
                                                  "public.payments"]
    assert one.mismatches == 8 and keys(many.tables[2]) == {
        "missing": [["a37", 77]], "extra": [["zz", 1]], "different": [["a20", 300]]}
    last = many.to_dict()["progress"][-1]
    assert (last["tables_done"], last["tables"], last["rows_done"]) == (4, 4, 1600)
    assert last["bytes_done"] == last["bytes_estimated"] > 0 and last["eta_seconds"] == 0
