"""Create the demo payment schema and fill it with deterministic, balanced data.

How it loads: the tables are created without keys in a private schema; two connections (one
per core) fill them with ``INSERT ... SELECT`` over ``generate_series`` inside PostgreSQL
(``load.sql``: every value is a function of the row number and the seed) and build each table's
keys and indexes (``constraints.sql``); then one transaction checks the foreign keys, drops the
old demo objects when replacing, moves the new ones into ``public`` and grants the application
role; ANALYZE last. Until that transaction commits nothing in ``public`` changes, and a failure
drops the private schema: a database is either seeded completely or left as it was.

Server-side INSERT ... SELECT versus COPY from Python, measured here (``bench/seed.py
--compare-copy``, 1M payments, 2 shared cores under load): for the payments table alone, rows
made in Python and streamed through ``copy_expert`` took 5.3 s against 7.9 s for INSERT ...
SELECT (COPY inserts in batches, INSERT row by row). The seed still generates in the server
because ledger lines and events (three times the rows) derive from each payment there without
crossing the wire, where Python formatting would be the bottleneck on one core; moving the
payments table alone to COPY is a measured, not yet taken, saving of about 2.5 s.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources

import psycopg2
from psycopg2 import sql

from paymigrate.db import connect
from paymigrate.errors import SeedError

log = logging.getLogger(__name__)

APP_ROLE = "payments_app"
TABLES = ("accounts", "payments", "payment_holds", "ledger_lines", "refunds", "payment_events",
          "settlement_staging")
SEQUENCES = ("invoice_number_seq", "accounts_id_seq", "payment_events_id_seq")
ENUM_TYPES = ("payment_status",)
MAX_ROWS = 100_000_000  # the row hash in load.sql stays within bigint up to here
_STEP = re.compile(r"^-- step: (\w+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class SeedResult:
    rows: int
    seed: int
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    replaced: bool = False

    def __post_init__(self) -> None:
        if self.rows < 0 or self.seconds < 0:
            raise ValueError(f"seed result with rows={self.rows} seconds={self.seconds}")

    @property
    def rows_per_second(self) -> float:
        total = sum(self.counts.values())
        return total / self.seconds if self.seconds else 0.0


def _read(name: str) -> str:
    return resources.files("paymigrate_dev.demo").joinpath(name).read_text()


def load_steps(*, rows: int, seed: int) -> list[tuple[str, str]]:
    """``(step, sql)`` pairs of load.sql with ``:rows`` and ``:seed`` inlined as integers."""
    _check(rows=rows, seed=seed)
    return _steps(_read("load.sql").replace(":rows", str(int(rows))).replace(":seed", str(int(seed))))


def _steps(text: str) -> list[tuple[str, str]]:
    parts = _STEP.split(text)
    return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]


def _check(*, rows: int, seed: int) -> None:
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= MAX_ROWS:
        raise SeedError(f"rows={rows!r}: expected an integer from 0 to {MAX_ROWS}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise SeedError(f"seed={seed!r}: expected an integer from 0 to {2**31 - 1}")


def existing_objects(cur) -> list[str]:
    """The demo's tables, types and sequences already present in schema public."""
    cur.execute("""
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = ANY(%s)
        UNION ALL
        SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public' AND t.typname = ANY(%s)
        ORDER BY 1""", (list(TABLES + SEQUENCES), list(ENUM_TYPES)))
    return [r[0] for r in cur.fetchall()]


def drop_schema(cur) -> None:
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
        sql.SQL(", ").join(sql.Identifier("public", t) for t in TABLES)))
    cur.execute("DROP SEQUENCE IF EXISTS public.invoice_number_seq")
    cur.execute("DROP TYPE IF EXISTS public.payment_status")


def grant(cur, *, role: str = APP_ROLE) -> bool:
    """What the application needs: USAGE on the schema and sequences, DML on the tables.
    False (and a warning) when the role does not exist on this server."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if not cur.fetchone():
        log.warning("role %s does not exist on this server: no grants made", role)
        return False
    r = sql.Identifier(role)
    cur.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r))
    cur.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
        sql.SQL(", ").join(sql.Identifier("public", t) for t in TABLES), r))
    cur.execute(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(
        sql.SQL(", ").join(sql.Identifier("public", s) for s in SEQUENCES), r))
    return True


def create_schema(cur, *, app_role: str = APP_ROLE) -> None:
    """The empty demo schema with its keys and grants (what a fresh database or a test needs)."""
    cur.execute(_read("schema.sql"))
    cur.execute(_read("constraints.sql"))
    grant(cur, role=app_role)


def seed(*, dsn: str, rows: int, seed: int = 0, replace: bool = False,
         app_role: str = APP_ROLE) -> SeedResult:
    """Seed the database at ``dsn`` with ``rows`` payments (and their holds, ledger lines,
    refunds, settlement lines and events). Refuses a database that already has any demo object
    unless ``replace``; atomic either way: the new tables are built in a private schema and
    moved into ``public`` by one transaction."""
    loads = dict(load_steps(rows=rows, seed=seed))
    keys = dict(_steps(_read("constraints.sql")))
    started = time.monotonic()
    staging = f"paymigrate_seed_{os.getpid()}_{secrets.token_hex(3)}"
    control = connect(dsn, application_name="paymigrate-seed")
    counts: dict[str, int] = {}
    swapped = False
    try:
        with control.cursor() as cur:
            found = existing_objects(cur)
            if found and not replace:
                raise SeedError(f"{_where(control)} already has the demo schema "
                                f"({', '.join(found)}); pass --replace (replace=True) to drop and "
                                "reseed it")
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(staging)))
            cur.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(staging)))
            cur.execute(_read("schema.sql"))
        control.commit()
        # Two loaders, one per core: their table groups take about the same time.
        groups = [("accounts", "payments", "payment_holds", "refunds", "settlement_staging",
                   "payment_events"), ("ledger_lines",)]
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            futures = [pool.submit(_load_group, dsn, staging, group, loads, keys) for group in groups]
            for f in futures:
                counts.update(f.result())
        t0 = time.monotonic()
        with control.cursor() as cur:
            _bulk_settings(cur)
            cur.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(staging)))
            cur.execute(keys["foreign_keys"])
            log.info("seed: foreign keys checked in %.1fs", time.monotonic() - t0)
            cur.execute("SET LOCAL search_path = public")
            if found:
                log.info("replacing the demo schema in %s (%s)", _where(control), ", ".join(found))
                drop_schema(cur)
            for table in TABLES:
                cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA public").format(
                    sql.Identifier(staging, table)))
            cur.execute(sql.SQL("ALTER SEQUENCE {} SET SCHEMA public").format(
                sql.Identifier(staging, "invoice_number_seq")))
            cur.execute(sql.SQL("ALTER TYPE {} SET SCHEMA public").format(
                sql.Identifier(staging, "payment_status")))
            cur.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(staging)))
            grant(cur, role=app_role)
        control.commit()
        swapped = True
        t0 = time.monotonic()
        control.autocommit = True
        with control.cursor() as cur:
            cur.execute(sql.SQL("ANALYZE {}").format(
                sql.SQL(", ").join(sql.Identifier("public", t) for t in TABLES)))
        log.info("seed: ANALYZE in %.1fs", time.monotonic() - t0)
    except psycopg2.Error as exc:
        raise SeedError(f"seeding {_where(control)} failed, nothing changed: "
                        f"{str(exc).strip()}") from exc
    finally:
        if not swapped:
            _drop_staging(control, staging)
        control.close()
    result = SeedResult(rows=rows, seed=seed, counts=counts, seconds=time.monotonic() - started,
                        replaced=bool(found))
    log.info("seeded %s: %d payments, %d rows in all, %.1fs", _safe_dsn(dsn), rows,
             sum(counts.values()), result.seconds)
    return result


def _bulk_settings(cur) -> None:
    # Generous memory for sorts and index builds, and no timeout a server default might impose.
    cur.execute("SET LOCAL statement_timeout = 0")
    cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
    cur.execute("SET LOCAL work_mem = '256MB'")


def _load_group(dsn: str, staging: str, tables: tuple[str, ...], loads: dict[str, str],
                keys: dict[str, str]) -> dict[str, int]:
    counts = {}
    conn = connect(dsn, application_name="paymigrate-seed")
    try:
        with conn.cursor() as cur:
            _bulk_settings(cur)
            cur.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(staging)))
            cur.execute(loads["source"])
            for table in tables:
                t0 = time.monotonic()
                cur.execute(loads[table])
                counts[table] = cur.rowcount
                t1 = time.monotonic()
                cur.execute(keys[table])
                log.info("seed: %s %d rows in %.1fs, keys in %.1fs", table, counts[table], t1 - t0,
                         time.monotonic() - t1)
            if "payment_events" in tables:
                cur.execute(loads["sequences"])
        conn.commit()
    finally:
        conn.close()
    return counts


def _drop_staging(conn, staging: str) -> None:
    try:
        if not conn.closed:
            conn.rollback()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(staging)))
    except psycopg2.Error as exc:
        log.warning("could not drop the seed's private schema %s: %s", staging, str(exc).strip())


def _where(conn) -> str:
    p = conn.get_dsn_parameters()
    return f"database {p.get('dbname')} on {p.get('host')}:{p.get('port')}"


def _safe_dsn(dsn: str) -> str:
    params = psycopg2.extensions.parse_dsn(dsn)
    return f"{params.get('user', '')}@{params.get('host', '')}:{params.get('port', '')}/{params.get('dbname', '')}"
