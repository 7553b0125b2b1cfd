"""The workload as a detached process: ``start_background`` / ``stop_background``.

The child is ``paymigrate workload start --foreground`` (this interpreter) in its own session, logging
to ``workload.log`` in the directory; it writes ``workload.pid`` once its clients run and removes
it when it ends. The DSN travels in the child's environment, never on its command line (``ps``
shows command lines to every user).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from paymigrate.errors import WorkloadError

PID_FILE = "workload.pid"
LOG_FILE = "workload.log"
DSN_ENV = "PAYMIGRATE_APP_DSN"


def pid_file(directory: Path | str) -> Path:
    return Path(directory) / PID_FILE


def running_pid(directory: Path | str) -> int | None:
    """The pid of the directory's workload process, if it is alive and is one."""
    try:
        pid = int(pid_file(directory).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return pid if "workload" in cmdline and "--foreground" in cmdline else None


def start_background(*, dsn: str, directory: Path | str, clients: int = 4, tps: float = 100.0,
                     duration: float | None = None, count: int | None = None,
                     seed: int | None = None, timeout: float = 30.0) -> int:
    """Start the workload in a detached process; return its pid once its clients run."""
    directory = Path(directory).resolve()
    if (pid := running_pid(directory)) is not None:
        raise WorkloadError(f"a workload already runs for {directory} (pid {pid}); "
                            "stop it first (paymigrate workload stop)")
    directory.mkdir(parents=True, exist_ok=True)
    pid_file(directory).unlink(missing_ok=True)
    # Not `-m paymigrate_dev.cli`: the entry point is the package's main(), whatever else exists.
    argv = [sys.executable, "-c", "import sys; from paymigrate_dev.cli import main; "
            "sys.exit(main(sys.argv[1:]))", "workload", "start", "--foreground",
            "--dir", str(directory), "--clients", str(clients), "--tps", str(tps)]
    for flag, value in (("--duration", duration), ("--count", count), ("--seed", seed)):
        if value is not None:
            argv += [flag, str(value)]
    env = {**os.environ, DSN_ENV: dsn}
    with open(directory / LOG_FILE, "ab") as logfh:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfh, stderr=logfh,
                                 env=env, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise WorkloadError(f"the workload exited at start (code {child.returncode}): "
                                f"{_tail(directory / LOG_FILE)}")
        if running_pid(directory) == child.pid:
            return child.pid
        time.sleep(0.05)
    child.terminate()
    raise WorkloadError(f"the workload did not start within {timeout:.0f}s: {_tail(directory / LOG_FILE)}")


def stop_background(directory: Path | str, *, timeout: float = 120.0) -> int | None:
    """Stop the directory's workload (SIGTERM: clients finish their operation, the ledger is
    flushed) and wait for it to exit. Returns the pid stopped, None if none was running."""
    pid = running_pid(directory)
    if pid is None:
        pid_file(directory).unlink(missing_ok=True)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            pid_file(directory).unlink(missing_ok=True)
            return pid
        time.sleep(0.05)
    raise WorkloadError(f"the workload (pid {pid}) did not stop within {timeout:.0f}s; "
                        f"see {Path(directory) / LOG_FILE}")


def write_pid(directory: Path | str) -> None:
    path = pid_file(directory)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_text()[-size:].strip() or "(no output)"
    except OSError:
        return "(no log)"
