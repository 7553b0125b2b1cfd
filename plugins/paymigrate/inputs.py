"""Checks of what a person gives: a DAG run's conf, command-line numbers, DSNs and table names.

Each check raises :class:`~paymigrate.errors.BadInput` naming the input and the value, before
anything is created; the CLI turns it into one line on stderr and exit 2, a DAG's preflight
into a failed task. No Airflow here: the CLI checks a run's conf against the DAG's Param schemas
with the same JSON Schema rules Airflow applies, without a metadata DB.

Table names are SQL's qualified names, as ``to_regclass`` and ``format('%I.%I')`` read and write
them: a plain part is folded to lower case, a part that needs quoting is written in double
quotes with ``""`` for a quote in it.

>>> parse_table('public."Weird Name"')
TableName(schema='public', name='Weird Name')
>>> parse_table("Sales.Payments").sql
'"sales"."payments"'
>>> parse_table('public."a.b"').schema, parse_table('public."a.b"').name
('public', 'a.b')
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from paymigrate.errors import BadInput, ValidationError

# One part of a qualified name: plain, or double-quoted with "" for a quote.
IDENTIFIER = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
# schema.table, for a Param's JSON Schema (``pattern``): the exact check is parse_table.
TABLE_PATTERN = rf"^{IDENTIFIER}\.{IDENTIFIER}$"
MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL would silently cut a longer name
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_LOWER_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")
TABLE_HINT = 'expected schema.table; quote a part that needs it, e.g. public."Weird Name"'


@dataclass(frozen=True)
class TableName:
    schema: str | None  # None: a bare name, found through the search_path
    name: str

    @property
    def sql(self) -> str:
        """Every part quoted: safe to hand to ``to_regclass`` or to put in a statement."""
        parts = [self.schema, self.name] if self.schema is not None else [self.name]
        return ".".join('"' + p.replace('"', '""') + '"' for p in parts)

    def __str__(self) -> str:
        parts = [self.schema, self.name] if self.schema is not None else [self.name]
        return ".".join(p if _LOWER_PLAIN.fullmatch(p) else '"' + p.replace('"', '""') + '"'
                        for p in parts)


def parse_table(text: Any, *, name: str = "table", schema_required: bool = False) -> TableName:
    """``schema.table`` or ``table`` in SQL syntax, checked part by part (never sent as SQL)."""
    if not isinstance(text, str):
        raise BadInput(name, text, f"not a string: {TABLE_HINT}")
    parts: list[str] = []
    i = 0
    while True:
        if text.startswith('"', i):
            j, part = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise BadInput(name, text, f"a quote is not closed: {TABLE_HINT}")
                part.append(text[j:k])
                if text.startswith('"', k + 1):  # "" is a quote inside the name
                    part.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            value = "".join(part)
        else:
            m = _PLAIN.match(text, i)
            if not m:
                raise BadInput(name, text, f"not a table name at character {i + 1}: {TABLE_HINT}")
            value, i = m.group().lower(), m.end()
        if not value or "\x00" in value:
            raise BadInput(name, text, "an empty name or a NUL character cannot name a table")
        if len(value.encode()) > MAX_IDENTIFIER_BYTES:
            raise BadInput(name, text, f"a part is over {MAX_IDENTIFIER_BYTES} bytes, which "
                                       "PostgreSQL would cut: no table has that name")
        parts.append(value)
        if i == len(text):
            break
        if text[i] != "." or len(parts) == 2:
            raise BadInput(name, text, f"unexpected {text[i]!r} at character {i + 1}: {TABLE_HINT}")
        i += 1
    if len(parts) == 1:
        if schema_required:
            raise BadInput(name, text, f"no schema: {TABLE_HINT}")
        return TableName(None, parts[0])
    return TableName(parts[0], parts[1])


# A relation that to_regclass finds and that holds rows of its own (a table or a partitioned one).
_TABLE_KIND = "SELECT relkind IN ('r', 'p') FROM pg_catalog.pg_class WHERE oid = to_regclass(%s)"


def unknown_tables(cur: Any, names: Iterable[str], *, name: str = "tables") -> list[str]:
    """The ``names`` (as given) that name no table on the server of ``cur``; a malformed one
    raises :class:`BadInput` before any query."""
    parsed = [(text, parse_table(text, name=name)) for text in names]
    missing = []
    for text, table in parsed:
        cur.execute(_TABLE_KIND, (table.sql,))
        row = cur.fetchone()
        if not row or not row[0]:
            missing.append(text)
    return missing


def check_tables_exist(cur: Any, names: Iterable[str], *, name: str = "tables",
                       where: str = "the source") -> None:
    missing = unknown_tables(cur, names, name=name)
    if missing:
        raise BadInput(name, missing if len(missing) > 1 else missing[0], f"no such table on {where}")


def check_source_tables(source: Any, *, tables: Iterable[str], exclude: Iterable[str] = ()) -> None:
    """Every name of a migration's ``tables`` and ``exclude`` is a table on ``source`` (an
    :class:`~paymigrate.db.Endpoint` or a DSN)."""
    tables, exclude = list(tables), list(exclude)
    if not tables and not exclude:
        return
    from paymigrate.db import connection

    with connection(source) as conn, conn.cursor() as cur:
        check_tables_exist(cur, tables, name="tables")
        check_tables_exist(cur, exclude, name="exclude")


def check_dsn(dsn: Any, *, name: str = "dsn") -> str:
    """A libpq key=value DSN or a postgresql:// URI that libpq can parse (not that it connects).
    The value shown in the error has its password masked."""
    import psycopg2
    import psycopg2.extensions

    from paymigrate.db import redact

    if not isinstance(dsn, str) or not dsn.strip():
        raise BadInput(name, dsn, "expected a libpq DSN (host=... dbname=...) or a postgresql:// URI")
    try:
        psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        reason = " ".join(redact(str(exc)).split())
        raise BadInput(name, redact(dsn), f"not a libpq DSN or postgresql:// URI ({reason})") from None
    return dsn


def bounded(kind: type[int] | type[float], *, low: float | None = None, high: float | None = None,
            name: str = "value") -> Callable[[Any], int | float]:
    """A converter from text to ``kind`` within ``low..high`` (inclusive), for CLI arguments.

    >>> bounded(int, low=1)("5")
    5
    """
    what = "an integer" if kind is int else "a number"

    def convert(text: Any) -> int | float:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise BadInput(name, text, f"not {what}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise BadInput(name, text, "not a finite number")
        if low is not None and value < low:
            raise BadInput(name, value, f"below the minimum {low}")
        if high is not None and value > high:
            raise BadInput(name, value, f"above the maximum {high}")
        return value

    return convert


@dataclass(frozen=True)
class ParamSpec:
    """One DAG Param as the checks see it: its JSON Schema and whether it has a default."""

    schema: Mapping[str, Any]
    default: Any = None
    required: bool = False  # no default: the run must give a value


def check_conf(dag_id: str, params: Mapping[str, ParamSpec], conf: Any) -> dict[str, Any]:
    """``conf`` checked against the DAG's Params; returns every Param's value. Refuses, naming
    the first bad one: an unknown key (a typo would otherwise be ignored), a missing required
    Param, a value of the wrong type or out of its bounds."""
    if not isinstance(conf, Mapping):
        raise BadInput(f"{dag_id} conf", conf, "expected a JSON object of Params")
    for key in conf:
        if key not in params:
            raise BadInput(f"{dag_id} param {key}", conf[key],
                           f"unknown; {dag_id} takes {', '.join(sorted(params)) or 'none'}")
    values = {}
    for key, spec in params.items():
        if key not in conf and spec.required:
            raise BadInput(f"{dag_id} param {key}", None, "required: give it in the conf")
        value = conf.get(key, spec.default)
        error = _schema_error(spec.schema, value)
        if error is not None:
            where = key + "".join(f"[{p}]" for p in error.absolute_path)
            raise BadInput(f"{dag_id} param {where}", error.instance, _reason(error))
        values[key] = value
    return values


def _schema_error(schema: Mapping[str, Any], value: Any) -> Any:
    from jsonschema import FormatChecker
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    checker = validator_for(schema)(schema, format_checker=FormatChecker())
    return best_match(checker.iter_errors(value))


_REASONS = {
    "type": "expected {}", "enum": "not one of {}", "minimum": "below the minimum {}",
    "maximum": "above the maximum {}", "exclusiveMinimum": "not above {}",
    "exclusiveMaximum": "not below {}", "minLength": "shorter than {} character(s)",
    "maxLength": "longer than {} character(s)", "minItems": "fewer than {} item(s)",
    "maxItems": "more than {} item(s)", "uniqueItems": "has repeated items",
}


def _reason(error: Any) -> str:
    """One line for people; the decision was the schema's, so this only words it."""
    if error.validator == "pattern" and error.validator_value == TABLE_PATTERN:
        return TABLE_HINT
    if error.validator in _REASONS:
        shown = error.validator_value
        if error.validator == "enum":
            shown = ", ".join(json.dumps(v) for v in shown)
        elif error.validator == "type" and isinstance(shown, list):
            shown = " or ".join(shown)
        return _REASONS[error.validator].format(shown)
    return " ".join(error.message.split())


def validation_options(event: Mapping[str, Any] | None) -> dict[str, Any]:
    """Options a validation request may carry (the Lambda's event, the API's body): ``tables``,
    ``schemas`` (lists of names), ``max_keys``. Light on imports: the API function has no driver."""
    event = dict(event or {})
    out: dict[str, Any] = {}
    for name in ("tables", "schemas"):
        value = event.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValidationError(f"event field {name} must be a list of names, not {value!r}")
        out[name] = value
    max_keys = event.get("max_keys", 100)
    if not isinstance(max_keys, int) or isinstance(max_keys, bool) or not 0 <= max_keys <= 10_000:
        raise ValidationError(f"event field max_keys must be an integer 0..10000, not {max_keys!r}")
    out["max_keys"] = max_keys
    return out
