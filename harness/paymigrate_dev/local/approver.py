"""Answer human-in-the-loop tasks through the REST API while a run goes on in ``dag.test()``.

``dag.test()`` keeps a run alive while a task awaits input, until a response is recorded from
outside (an api-server on the same metadata DB). :class:`ApiServer` starts that api-server alone
on 127.0.0.1, and :class:`Answerer` responds to every waiting task of one DAG as its API user.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from paymigrate.errors import StackError
from paymigrate_dev.local import airflow_services, proc
from paymigrate_dev.local.dagrun import AWAITING_INPUT, Api


class ApiServer:
    """``airflow api-server`` on a free loopback port, over the metadata DB in ``home``."""

    def __init__(self, stack: Any, home: Path):
        self.port = proc.free_port()
        self.env = airflow_services.environment(stack, home=home, api_port=self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(home) / "api-server.log"
        self.child: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> Api:
        argv = [str(Path(sys.executable).parent / "airflow"), "api-server",
                *airflow_services.SERVICE_ARGS["api-server"], "--port", str(self.port)]
        with open(self.log, "ab") as log:
            self.child = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.child.poll() is not None:
                raise StackError(f"airflow api-server exited ({self.child.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
                    if json.loads(resp.read()).get("metadatabase", {}).get("status") == "healthy":
                        return Api(self.url, airflow_services.ADMIN_USER, airflow_services.admin_password(self.env))
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(1)
        raise StackError(f"airflow api-server not healthy on {self.url} within {timeout:.0f}s; see {self.log}")

    def stop(self) -> None:
        if self.child and self.child.poll() is None:
            proc.terminate_group(self.child.pid)


class Answerer(threading.Thread):
    """Responds ``option`` to each task of ``dag_id`` that awaits input; ``answers`` lists who
    responded, when and what. Change ``option`` between runs; ``stop()`` ends it."""

    def __init__(self, api: Api, dag_id: str, option: str, poll: float = 1.0):
        super().__init__(daemon=True, name=f"answer-{dag_id}")
        self.api, self.dag_id, self.option, self.poll = api, dag_id, option, poll
        self.answers: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                found = self.api._call("GET", f"/api/v2/dags/{self.dag_id}/dagRuns/~/hitlDetails?limit=100")
                for detail in found["hitl_details"]:
                    ti = detail["task_instance"]
                    if not detail["response_received"] and ti["state"] == AWAITING_INPUT:
                        answer = self.api.answer(self.dag_id, ti["dag_run_id"], ti["task_id"], self.option)
                        self.answers.append({**answer, "run_id": ti["dag_run_id"]})
            except Exception as exc:  # noqa: BLE001 - kept for the test to show; the thread goes on
                self.errors.append(str(exc))
            self._done.wait(self.poll)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)
