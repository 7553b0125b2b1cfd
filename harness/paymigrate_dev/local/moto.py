"""A moto server on 127.0.0.1 standing in for AWS, with Step Functions execution switched on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from paymigrate.errors import StackError
from paymigrate_dev.local import proc

# Without this moto only records executions; with it Task states really call S3, SNS, SSM, DMS.
# It is lost on every restart of the server, so `start` sets it each time.
CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


def _version() -> str:
    from importlib.metadata import version

    return version("moto")


@dataclass
class MotoServer:
    port: int
    logfile: Path
    user: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30) -> int:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        # Drop to the service user when it can run our interpreter; one installed under /root
        # (pyenv, uv) it cannot, and then moto runs as we do, still on loopback only.
        user = self.user if proc.can_execute(Path(python).resolve(), self.user) else None
        argv = [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        env = {**os.environ, "MOTO_PORT": str(self.port)}
        with open(self.logfile, "ab") as log:
            if user:
                proc.chown(self.logfile, user)
            child = subprocess.Popen(proc.as_user(argv, user) if user else argv, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True, cwd=self.logfile.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise StackError(f"moto server exited with {child.returncode}; see {self.logfile}")
            if self.healthy()[0]:
                self.configure()
                return proc.server_pid(child.pid)
            time.sleep(0.2)
        child.kill()
        raise StackError(f"moto server did not answer on {self.url} within {timeout:.0f}s")

    def configure(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/config", data=json.dumps(CONFIG).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def healthy(self) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/config", timeout=3) as resp:
                json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return False, str(exc)
        # moto's GET /moto-api/config does not echo the stepfunctions setting; `start` sets it.
        return True, f"moto {_version()}"

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        self.configure()
