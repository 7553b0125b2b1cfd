"""A local PostgreSQL cluster (Debian's 15, or another major's programs) in a project folder,
on 127.0.0.1 only, run as the service user."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from paymigrate.errors import StackError
from paymigrate_dev.local import proc

log = logging.getLogger(__name__)

# Logical replication both ways (forward for the migration, reverse for fallback) plus the
# parallel table sync of the initial copy need more slots, senders and workers than the defaults.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "wal_level": "logical",
    "max_wal_senders": "20",
    "max_replication_slots": "20",
    "max_logical_replication_workers": "12",
    "max_sync_workers_per_subscription": "4",
    "max_worker_processes": "24",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "wal_sender_timeout": "60s",
    "password_encryption": "'scram-sha-256'",
    "logging_collector": "off",
    "log_line_prefix": "'%m [%p] %u@%d '",
    "log_min_messages": "warning",
    "timezone": "'UTC'",
}


@dataclass
class Cluster:
    """One cluster: ``datadir`` holds the data, ``port`` is where it listens on 127.0.0.1."""

    name: str
    datadir: Path
    logfile: Path
    port: int
    superuser: str
    user: str  # OS user that owns and runs it
    bindir: Path | None = None  # its server programs; None: Debian's PostgreSQL 15

    def program(self, name: str) -> str:
        return str(self.bindir / name) if self.bindir else proc.pg_bin(name)

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self, password: str) -> None:
        """initdb with scram auth for TCP from 127.0.0.1 only; the password goes through a 0600 file."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        proc.chown(self.datadir, self.user)
        os.chmod(self.datadir, 0o700)
        fd, pwfile = tempfile.mkstemp(prefix="pw-", dir=self.datadir.parent)
        try:
            os.write(fd, password.encode())
            os.close(fd)
            proc.chown(Path(pwfile), self.user)
            proc.run([self.program("initdb"), "-D", str(self.datadir), "-U", self.superuser,
                      f"--pwfile={pwfile}", "--auth-local=scram-sha-256",
                      "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                     user=self.user, timeout=180)
        finally:
            Path(pwfile).unlink(missing_ok=True)
        hba = self.datadir / "pg_hba.conf"
        hba.write_text(
            "# paymigrate: TCP from loopback only, scram passwords, replication included\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host replication all 127.0.0.1/32 scram-sha-256\n"
        )
        proc.chown(hba, self.user)
        self.write_settings()

    def write_settings(self) -> None:
        conf = self.datadir / "paymigrate.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in {**SETTINGS, "port": str(self.port)}.items()))
        proc.chown(conf, self.user)
        main = self.datadir / "postgresql.conf"
        text = main.read_text()
        if "include_if_exists = 'paymigrate.conf'" not in text:
            main.write_text(text + "\ninclude_if_exists = 'paymigrate.conf'\n")

    def pid(self) -> int | None:
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if proc.pid_alive(pid) else None

    def start(self, *, timeout: float = 60) -> int:
        """Start the postmaster and wait until it accepts connections; returns its pid."""
        self.write_settings()
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        proc.chown(self.logfile.parent, self.user)
        deadline = time.monotonic() + timeout
        while True:
            # After a SIGKILL the old backends take a moment to notice and release shared memory;
            # until they do, a new postmaster refuses to start. Retry until the deadline.
            res = proc.run([self.program("pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                            "-w", "-t", str(int(timeout)), "start"],
                           user=self.user, check=False, timeout=timeout + 30)
            if res.returncode == 0:
                break
            if time.monotonic() > deadline:
                tail = self.logfile.read_text()[-1500:] if self.logfile.exists() else ""
                raise StackError(f"{self.name} PostgreSQL did not start: {res.stderr.strip()}\n{tail}")
            time.sleep(1)
        pid = self.pid()
        if pid is None:
            raise StackError(f"{self.name} PostgreSQL started but wrote no postmaster.pid")
        return pid

    def stop(self, *, mode: str = "fast") -> None:
        if self.pid() is None:
            return
        proc.run([self.program("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop"],
                 user=self.user, check=False, timeout=90)

    def healthy(self, dsn: str) -> tuple[bool, str]:
        try:
            with psycopg2.connect(dsn, connect_timeout=3) as conn, conn.cursor() as cur:
                cur.execute("SELECT current_setting('server_version'), pg_is_in_recovery()")
                version, recovery = cur.fetchone()
            conn.close()
        except psycopg2.Error as exc:
            return False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return True, f"PostgreSQL {version}" + (" (recovering)" if recovery else "")
