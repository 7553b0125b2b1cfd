"""The route agent beside each local PgBouncer, as it runs beside each PgBouncer host in AWS
(:mod:`paymigrate.routing.agent`): its own process, owning that router's ``[databases]`` file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import paymigrate
from paymigrate.errors import StackError
from paymigrate.routing.client import AgentClient, AgentError
from paymigrate_dev.local import proc

MODULE = "paymigrate.routing.agent"


@dataclass
class LocalAgent:
    folder: Path  # the router's folder: its routes file is here
    port: int
    router_port: int
    admin_user: str
    user: str  # the service user, when it can run our interpreter

    @property
    def config_file(self) -> Path:
        return self.folder / "route-agent.json"

    @property
    def key_file(self) -> Path:
        return self.folder / "route-agent.key"

    @property
    def pidfile(self) -> Path:
        return self.folder / "route-agent.pid"

    @property
    def logfile(self) -> Path:
        return self.folder / "route-agent.log"

    def run_as(self) -> str | None:
        """Run as the service user when it can run our interpreter (as moto does), else as us."""
        return self.user if proc.can_execute(Path(sys.executable).resolve(), self.user) else None

    def configure(self, *, routes_file: Path, key: str) -> None:
        owner = self.run_as()
        for path, text in ((self.key_file, key + "\n"), (self.config_file, json.dumps({
                "listen": "127.0.0.1", "port": self.port, "routes_file": str(routes_file),
                "key_file": str(self.key_file),
                "admin": {"host": "127.0.0.1", "port": self.router_port, "user": self.admin_user}},
                indent=2) + "\n")):
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            if owner:
                proc.chown(tmp, owner)
            os.replace(tmp, path)

    def _argv(self, command: str) -> list[str]:
        argv = [sys.executable, "-m", MODULE, command, "--config", str(self.config_file)]
        user = self.run_as()
        return proc.as_user(argv, user) if user else argv

    def recover(self) -> None:
        """Undo any route left pending by a switch (before PgBouncer starts)."""
        res = subprocess.run(self._argv("recover"), capture_output=True, text=True, timeout=60,
                             env=self._env())
        if res.returncode != 0:
            raise StackError(f"route agent recover failed: {res.stderr.strip()[-800:]}")

    def _env(self) -> dict[str, str]:
        plugins = str(Path(paymigrate.__file__).resolve().parents[1])  # the agent is runtime code
        return {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (plugins, os.environ.get("PYTHONPATH", "")) if p)}

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if proc.pid_alive(pid) and MODULE in proc.cmdline(pid) else None

    def start(self, *, timeout: float = 20) -> int:
        with open(self.logfile, "ab") as log:
            child = subprocess.Popen(self._argv("serve"), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self._env(),
                                     start_new_session=True, cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise StackError(f"route agent exited with {child.returncode}; see {self.logfile}")
            pid = proc.server_pid(child.pid)
            if self.healthy()[0]:
                self.pidfile.write_text(f"{pid}\n")
                return pid
            time.sleep(0.1)
        child.kill()
        raise StackError(f"route agent did not answer on 127.0.0.1:{self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        pid = self.pid()
        if pid:
            proc.terminate(pid)
        self.pidfile.unlink(missing_ok=True)

    def client(self) -> AgentClient:
        return AgentClient("127.0.0.1", self.port, self.key_file.read_text().strip().encode())

    def healthy(self) -> tuple[bool, str]:
        try:
            state = self.client().state(timeout=3)
        except (AgentError, OSError) as exc:
            return False, str(exc)
        return True, f"route agent, generation {state['generation']}"
