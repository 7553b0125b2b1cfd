"""Small helpers the benchmarks share: one statement on its own connection, a fresh database."""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from paymigrate.local.stack import APP_USER, LocalStack


def execute(dsn: str, statement, args=None):
    """Run one statement in autocommit on a connection of its own; the rows if it returns any."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def fresh_db(stack: LocalStack, side: str, name: str) -> str:
    """An empty database ``name`` on ``side`` (dropped first if it exists) the app role may use."""
    admin = stack.dsn(side, dbname="postgres")
    ident = sql.Identifier(name)
    execute(admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
    execute(admin, sql.SQL("CREATE DATABASE {}").format(ident))
    execute(admin, sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(ident, sql.Identifier(APP_USER)))
    return stack.dsn(side, dbname=name)
