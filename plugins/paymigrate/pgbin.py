"""Where PostgreSQL 15's programs are: Debian keeps the server ones (and version 15's clients,
when several versions are installed) off PATH, in /usr/lib/postgresql/15/bin."""

from __future__ import annotations

import shutil
from pathlib import Path

from paymigrate.errors import PrerequisiteError

PG_BINDIRS = ("/usr/lib/postgresql/15/bin",)


def program(name: str) -> str:
    """Absolute path of a PostgreSQL 15 program (initdb, pg_ctl, pg_dump, psql, pgbench, ...)."""
    for d in PG_BINDIRS:
        p = Path(d) / name
        if p.exists():
            return str(p)
    found = shutil.which(name)
    if found:
        return found
    raise PrerequisiteError(f"PostgreSQL program {name!r} not found in {', '.join(PG_BINDIRS)} "
                            "or on PATH: apt-get install -y postgresql-15")
