"""Checks of what a person gives, without a server: table names, numbers, DSNs, a run's conf."""

from __future__ import annotations

import pytest

from paymigrate.errors import BadInput
from paymigrate.inputs import (
    TABLE_PATTERN,
    ParamSpec,
    TableName,
    bounded,
    check_conf,
    check_dsn,
    parse_table,
)


@pytest.mark.parametrize(("text", "parsed"), [
    ("public.payments", TableName("public", "payments")),
    ("Public.Payments", TableName("public", "payments")),  # unquoted parts fold, as in SQL
    ('public."Weird Name"', TableName("public", "Weird Name")),
    ('public."MixedCase"', TableName("public", "MixedCase")),
    ('public."a.b"', TableName("public", "a.b")),
    ('"my schema"."say ""hi"""', TableName("my schema", 'say "hi"')),
    ('"; DROP TABLE x; --"."t"', TableName("; DROP TABLE x; --", "t")),
    ("payments", TableName(None, "payments")),
    ('public."zahlungsverkehr_ü"', TableName("public", "zahlungsverkehr_ü")),
])
def test_table_names_parse_as_sql_reads_them(text, parsed):
    assert parse_table(text) == parsed
    assert parse_table(str(parsed)) == parsed  # the display form reads back the same
    assert parse_table(parsed.sql) == parsed


@pytest.mark.parametrize(("text", "why"), [
    ("payments; DROP TABLE x", "unexpected ';'"),
    ('public."unclosed', "not closed"),
    ('public.""', "empty"),
    ("a.b.c", "unexpected '.'"),
    ("", "not a table name"),
    (".payments", "not a table name"),
    ("public.", "not a table name"),
    ("public. payments", "not a table name"),
    ("public." + "x" * 64, "over 63 bytes"),
    ('public."' + "é" * 32 + '"', "over 63 bytes"),  # 64 bytes in UTF-8
    ('public."a\x00b"', "NUL"),
    (42, "not a string"),
])
def test_a_malformed_table_name_is_refused_naming_it(text, why):
    with pytest.raises(BadInput, match=why) as refused:
        parse_table(text, name="tables")
    assert refused.value.name == "tables" and refused.value.value == text
    assert "\n" not in str(refused.value)


def test_the_param_pattern_accepts_what_parses_with_a_schema():
    import re

    for ok in ("public.payments", 'public."Weird Name"', 'public."a.b"', 's."x""y"'):
        assert re.match(TABLE_PATTERN, ok) and parse_table(ok, schema_required=True)
    for bad in ("payments", "payments; DROP TABLE x", 'public."open', "a.b.c", "public.a b"):
        assert not re.match(TABLE_PATTERN, bad)


def test_bounded_numbers():
    rows = bounded(int, low=1, high=10, name="--rows")
    assert rows("3") == 3
    for text, why in (("abc", "not an integer"), ("0", "below the minimum 1"), ("11", "above the maximum 10"),
                      ("2.5", "not an integer")):
        with pytest.raises(BadInput, match=why):
            rows(text)
    with pytest.raises(BadInput, match="not a finite number"):
        bounded(float, low=0)("nan")
    with pytest.raises(BadInput, match="not a finite number"):
        bounded(float)("inf")


def test_a_malformed_dsn_is_refused_without_showing_its_password():
    assert check_dsn("host=h dbname=d") == "host=h dbname=d"
    for dsn in ("nonsense", "host=h password=hunter2 port", "postgresql://u:hunter2@h:5432/d?bogus=1",
                "host=h nosuchoption=1 password=hunter2", ""):
        with pytest.raises(BadInput, match="--dsn") as refused:
            check_dsn(dsn, name="--dsn")
        assert "hunter2" not in str(refused.value)


PARAMS = {
    "approved_by": ParamSpec({"type": "string", "minLength": 2}, required=True),
    "steps": ParamSpec({"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 100}},
                       default=[10, 100]),
    "engine": ParamSpec({"type": "string", "enum": ["postgres-logical", "dms"]}, default="dms"),
    "lag": ParamSpec({"type": ["null", "number"], "minimum": 0.001}, default=None),
    "tables": ParamSpec({"type": "array", "items": {"type": "string", "pattern": TABLE_PATTERN}},
                        default=[]),
}


@pytest.mark.parametrize(("conf", "named", "why"), [
    ({}, "d param approved_by=None", "required"),
    ({"approved_by": "x"}, "d param approved_by='x'", "shorter than 2"),
    ({"approved_by": 7}, "d param approved_by=7", "expected string"),
    ({"approved_by": "ops", "steps": [10, 0]}, "d param steps[1]=0", "below the minimum 1"),
    ({"approved_by": "ops", "steps": "10"}, "d param steps='10'", "expected array"),
    ({"approved_by": "ops", "engine": "mysql"}, "d param engine='mysql'", 'not one of "postgres-logical"'),
    ({"approved_by": "ops", "lag": -1}, "d param lag=-1", "below the minimum 0.001"),
    ({"approved_by": "ops", "lag": True}, "d param lag=True", "expected null or number"),
    ({"approved_by": "ops", "tables": ["x; DROP TABLE y"]}, "d param tables[0]='x; DROP TABLE y'",
     "quote a part"),
    ({"approved_by": "ops", "aproved_by": "ops"}, "d param aproved_by='ops'", "unknown; d takes"),
    (["approved_by"], "d conf=['approved_by']", "JSON object"),
])
def test_a_bad_conf_is_refused_by_name_in_one_line(conf, named, why):
    with pytest.raises(BadInput) as refused:
        check_conf("d", PARAMS, conf)
    message = str(refused.value)
    assert message.startswith(named) and why in message and "\n" not in message, message


def test_a_good_conf_returns_every_value_with_defaults():
    values = check_conf("d", PARAMS, {"approved_by": "ops", "tables": ['public."Weird Name"']})
    assert values == {"approved_by": "ops", "steps": [10, 100], "engine": "dms", "lag": None,
                      "tables": ['public."Weird Name"']}
