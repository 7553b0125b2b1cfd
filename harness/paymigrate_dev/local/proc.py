"""Running programs as the unprivileged service user, and finding the ones we need."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from paymigrate.errors import PrerequisiteError, StackError
from paymigrate.pgbin import program

log = logging.getLogger(__name__)



def service_user() -> str:
    """The user the servers run as: ourselves, or ``postgres`` when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PrerequisiteError(
            "running as root needs the unprivileged 'postgres' user: apt-get install -y postgresql"
        ) from None
    return "postgres"


def as_user(argv: Sequence[str], user: str) -> list[str]:
    """``argv`` to run as ``user``: unchanged when that is us, behind runuser when we are root."""
    if pwd.getpwuid(os.geteuid()).pw_name == user:
        return list(argv)
    return ["runuser", "-u", user, "--", *argv]


def run(argv: Sequence[str], *, user: str | None = None, check: bool = True, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = as_user(argv, user) if user else list(argv)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise StackError(f"{' '.join(argv[:2])} failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc


def chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def can_reach(path: Path, user: str) -> bool:
    """Whether ``user`` can traverse into ``path`` (a data folder under /root would not be)."""
    if os.geteuid() != 0 or user == "root":
        return True
    return run(["test", "-x", str(path)], user=user, check=False).returncode == 0


def can_execute(path: Path, user: str) -> bool:
    if os.geteuid() != 0 or user == "root":
        return True
    return run(["test", "-x", str(path)], user=user, check=False).returncode == 0


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL 15 server binary (see :func:`paymigrate.pgbin.program`)."""
    return program(name)

def pgbouncer_bin() -> str:
    for p in ("/usr/sbin/pgbouncer", shutil.which("pgbouncer")):
        if p and Path(p).exists():
            return p
    raise PrerequisiteError("pgbouncer not found: apt-get install -y pgbouncer")


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if it is free on 127.0.0.1, else a free port the kernel picks."""
    if preferred and port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    # A zombie is dead for our purposes.
    return not (stat.exists() and stat.read_text().split(") ", 1)[-1].startswith("Z"))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, from /proc (no extra tools)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    out = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != "0A" or parts[9] not in inodes:  # 0A = LISTEN
                continue
            addr_hex, port_hex = parts[1].split(":")
            out.append((_addr(addr_hex, v6), int(port_hex, 16)))
    return out


def _addr(h: str, v6: bool) -> str:
    if not v6:
        return socket.inet_ntop(socket.AF_INET, bytes.fromhex(h)[::-1])
    raw = b"".join(bytes.fromhex(h[i:i + 8])[::-1] for i in range(0, 32, 8))
    return socket.inet_ntop(socket.AF_INET6, raw)


def terminate(pid: int, *, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    raise StackError(f"process {pid} did not stop")


def terminate_group(pid: int, *, timeout: float = 20) -> None:
    """Stop a service started in its own session and every child it forked (workers, task
    supervisors): SIGTERM to the group, then SIGKILL to what is left."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.2)
    raise StackError(f"process group {pgid} did not stop")


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def server_pid(pid: int) -> int:
    """A server's own pid: runuser forks it as a child, and that is the one to signal."""
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        kids = []
    return kids[0] if kids and "runuser" in cmdline(pid) else pid
