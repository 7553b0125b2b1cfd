"""Airflow against the local stand-ins: its environment, its metadata DB, and its services.

``airflow standalone`` would serve task logs on every interface, not loopback alone, so the four services are started
one by one, each on 127.0.0.1, with the venv's bin on PATH for their subprocesses.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from paymigrate.errors import StackError
from paymigrate_dev.local import proc

REPO = Path(__file__).resolve().parents[3]
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
# The scheduler and the triggerer would each start a log server on every interface (8793/8794):
# task logs are read from the shared log folder instead.
SERVICE_ARGS = {"api-server": ["--host", "127.0.0.1"], "scheduler": ["--skip-serve-logs"],
                "dag-processor": [], "triggerer": ["--skip-serve-logs"]}
ADMIN_USER = "admin"


# Four services share one SQLite metadata DB locally: wait for a lock rather than fail at once.
SQLITE_CONNECT_ARGS = {"timeout": 60}


def static_environment(home: Path) -> dict[str, str]:
    """What Airflow reads when first imported: its home, metadata DB, DAG and plugin folders."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "paymigrate_dev.local.airflow_services.SQLITE_CONNECT_ARGS",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
    }


def environment(stack: Any, *, home: Path | None = None, api_port: int | None = None) -> dict[str, str]:
    """Environment variables that point Airflow at this repository, the stack and moto."""
    home = Path(home or stack.airflow_home)
    env_vars = stack.env_vars()
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"region_name": env_vars["AWS_DEFAULT_REGION"], "endpoint_url": stack.moto_url}}
    out = {
        **env_vars,
        **static_environment(home),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    if api_port:
        out.update({"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(api_port),
                    "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
                    "AIRFLOW__API_AUTH__JWT_SECRET": _jwt_secret(home)})
        private_file(Path(out["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]))
    return out


def private_file(path: Path) -> None:
    """``path`` exists with mode 0600: the api-server appends its generated admin password to
    the file it finds (opening it "a+", which would make a new one 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    path.chmod(0o600)


def _jwt_secret(home: Path) -> str:
    """One JWT secret shared by the services (each would otherwise make its own)."""
    path = home / "jwt_secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def migrate(env: dict[str, str]) -> None:
    """``airflow db migrate`` (idempotent; a few seconds when there is nothing to do)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    res = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env,
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise StackError(f"airflow db migrate failed: {res.stderr.strip()[-1500:]}")


def admin_password(env: dict[str, str]) -> str:
    """The simple auth manager's generated password for the admin user (it writes the file)."""
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    deadline = time.monotonic() + 60
    while not (path.exists() and path.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.5)  # the file exists (0600, made by us) before the api-server writes it
    return json.loads(path.read_text())[ADMIN_USER]


class Services:
    """The four Airflow services as background processes, their pids and port in
    ``services.json`` under the Airflow home.

    A file of their own, not the stack's ``stack.json``: a process that loaded the stack before
    another one (``paymigrate demo`` run by a test or an operator) started the services would
    otherwise save its stale copy over theirs, and the services would run on with nobody
    knowing their pids.
    """

    def __init__(self, stack: Any):
        self.stack = stack
        self.home = Path(stack.airflow_home)
        self.logs = self.home / "service-logs"
        self.state_file = self.home / "services.json"

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise StackError(f"{self.state_file} is not valid JSON ({exc}); stop the airflow "
                             "processes by hand and delete it") from None

    def _save(self, state: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    def known(self) -> list[str]:
        """The services ever started here, running or not."""
        return list(self._state().get("pids", {}))

    @property
    def port(self) -> int | None:
        return self._state().get("port")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> dict[str, int]:
        procs = self._state().get("pids", {})
        return {name: pid for name, pid in procs.items()
                if proc.pid_alive(pid) and "airflow" in proc.cmdline(pid)}

    def start(self) -> list[str]:
        state = self._state()
        alive = self.running()
        if "api-server" not in alive:  # a running api-server keeps the port it listens on
            state["port"] = proc.free_port(state.get("port") or 8080)
        env = environment(self.stack, api_port=state["port"])
        migrate(env)
        self.logs.mkdir(parents=True, exist_ok=True)
        lines, pids = [], dict(alive)
        airflow = str(Path(sys.executable).parent / "airflow")
        for name in SERVICES:
            if name in alive:
                lines.append(f"airflow {name:<13} already running (pid {alive[name]})")
                continue
            argv = [airflow, name, *SERVICE_ARGS[name]]
            if name == "api-server":
                argv += ["--port", str(state["port"])]
            with open(self.logs / f"{name}.log", "ab") as log:
                child = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            pids[name] = child.pid
            lines.append(f"airflow {name:<13} started (pid {child.pid})")
        state["pids"] = pids
        self._save(state)
        self.wait_healthy()
        return lines

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
                    health = json.loads(resp.read())
                if all(health.get(k, {}).get("status") == "healthy"
                       for k in ("metadatabase", "scheduler", "dag_processor", "triggerer")):
                    return
                last = json.dumps(health)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = str(exc)
            dead = [n for n, pid in self._state().get("pids", {}).items() if not proc.pid_alive(pid)]
            if dead:
                raise StackError(f"airflow {', '.join(dead)} exited; see {self.logs}")
            time.sleep(2)
        raise StackError(f"airflow did not become healthy on {self.url} within {timeout:.0f}s: {last}")

    def stop(self) -> list[str]:
        lines = []
        for name, pid in self.running().items():
            proc.terminate_group(pid)
            lines.append(f"airflow {name:<13} stopped (pid {pid})")
        if self.state_file.exists():
            self._save({**self._state(), "pids": {}})
        return lines
