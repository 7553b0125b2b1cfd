"""PgBouncer in front of the writer: an application entry point and one of the switch's routers.
Its ``[databases]`` file belongs to the route agent beside it (:mod:`paymigrate_dev.local.route_agent`)."""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from paymigrate.errors import StackError
from paymigrate_dev.local import proc

log = logging.getLogger(__name__)

ADMIN_USER = "pgbouncer_admin"
_AUTH_LINE = re.compile(r'^"([^"]+)" "([^"]*)"$')


def databases_section(database: str, host: str, port: int) -> str:
    """The ``[databases]`` file PgBouncer includes; its route agent rewrites it and RELOADs."""
    return f"[databases]\n{database} = host={host} port={port} dbname={database}\n"


@dataclass
class Router:
    folder: Path
    port: int
    user: str  # OS user that runs it

    @property
    def ini(self) -> Path:
        return self.folder / "pgbouncer.ini"

    @property
    def databases_file(self) -> Path:
        return self.folder / "databases.ini"

    @property
    def pidfile(self) -> Path:
        return self.folder / "pgbouncer.pid"

    @property
    def logfile(self) -> Path:
        return self.folder / "pgbouncer.log"

    @property
    def auth_file(self) -> Path:
        return self.folder / "userlist.txt"

    @property
    def hba_file(self) -> Path:
        return self.folder / "pg_hba.conf"

    def verifiers(self) -> dict[str, str]:
        """The auth file's ``user -> SCRAM verifier`` (empty when there is none yet)."""
        try:
            lines = self.auth_file.read_text().splitlines()
        except FileNotFoundError:
            return {}
        return {m.group(1): m.group(2) for m in map(_AUTH_LINE.match, lines) if m}

    def configure(self, *, database: str, writer_port: int, verifiers: dict[str, str], hba: str) -> None:
        """Write the config; the databases file only when missing, since after a cutover it names
        the target and a restart must not silently point the application back at the source.
        ``verifiers`` are SCRAM verifiers (:mod:`paymigrate_dev.local.scram`), never passwords: a
        user the servers know must have the same verifier there. ``hba``: who may reach which
        database (:func:`paymigrate.routing.access.hba_rules`)."""
        plain = [u for u, v in verifiers.items() if not v.startswith("SCRAM-SHA-256$")]
        if plain:
            raise ValueError(f"auth file entries must be SCRAM verifiers: {', '.join(plain)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        proc.chown(self.folder, self.user)
        self._write(self.ini, "\n".join([
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = hba",
            f"auth_hba_file = {self.hba_file}",
            f"auth_file = {self.auth_file}",
            f"admin_users = {ADMIN_USER}",
            "pool_mode = transaction",
            "max_client_conn = 400",
            "default_pool_size = 60",
            "reserve_pool_size = 10",
            # PAUSE must not be cut short while a cutover waits for in-flight transactions.
            "query_wait_timeout = 120",
            "server_login_retry = 1",
            "ignore_startup_parameters = extra_float_digits,options",
            f"logfile = {self.logfile}",
            f"pidfile = {self.pidfile}",
            "",
            f"%include {self.databases_file}",
            "",
        ]), 0o600)
        if not self.databases_file.exists():
            self._write(self.databases_file, databases_section(database, "127.0.0.1", writer_port), 0o600)
        userlist = "".join(f'"{u}" "{v}"\n' for u, v in verifiers.items())
        self._write(self.auth_file, userlist, 0o600)
        self._write(self.hba_file, hba, 0o600)

    def _write(self, path: Path, text: str, mode: int) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        proc.chown(tmp, self.user)
        os.replace(tmp, path)

    def configured_port(self) -> int | None:
        for line in self.ini.read_text().splitlines() if self.ini.exists() else []:
            if line.startswith("listen_port"):
                return int(line.split("=", 1)[1])
        return None

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if proc.pid_alive(pid) and "pgbouncer" in proc.cmdline(pid):
            return pid
        return None

    def start(self, *, timeout: float = 20) -> int:
        if self.pidfile.exists() and self.pid() is None:
            self.pidfile.unlink()  # stale after a kill; pgbouncer refuses to start over it
        res = proc.run([proc.pgbouncer_bin(), "-d", "-q", str(self.ini)], user=self.user, check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid and any(port == self.port for _, port in proc.listening_sockets(pid)):
                return pid
            time.sleep(0.1)
        tail = self.logfile.read_text()[-1500:] if self.logfile.exists() else ""
        raise StackError(f"PgBouncer did not start (exit {res.returncode}): {res.stderr.strip()}\n{tail}")

    def stop(self) -> None:
        pid = self.pid()
        if pid:
            proc.terminate(pid)

    def healthy(self, admin_dsn: str) -> tuple[bool, str]:
        try:
            conn = psycopg2.connect(admin_dsn, connect_timeout=3)
            conn.autocommit = True  # the admin console has no transactions
            with conn.cursor() as cur:
                cur.execute("SHOW VERSION")
                version = cur.fetchone()[0]
            conn.close()
        except psycopg2.Error as exc:
            return False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return True, version
