"""Small helpers the benchmarks share: one statement on its own connection, a fresh database."""

from __future__ import annotations

from psycopg2 import sql

from paymigrate.db import query as execute  # noqa: F401 (the benchmarks import it from here)
from paymigrate.local.stack import APP_USER, LocalStack


def fresh_db(stack: LocalStack, side: str, name: str) -> str:
    """An empty database ``name`` on ``side`` (dropped first if it exists) the app role may use."""
    admin = stack.dsn(side, dbname="postgres")
    ident = sql.Identifier(name)
    execute(admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
    execute(admin, sql.SQL("CREATE DATABASE {}").format(ident))
    execute(admin, sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(ident, sql.Identifier(APP_USER)))
    return stack.dsn(side, dbname=name)
