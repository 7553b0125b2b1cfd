"""Airflow's four services as `make demo` starts them: loopback only, a run through the API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paymigrate.local import airflow as local_airflow
from paymigrate.local import proc
from paymigrate.local.dagrun import run_dag

pytestmark = pytest.mark.e2e


def _group_pids(pgids: set[int]) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) in pgids:
                    out.append(int(entry.name))
            except ProcessLookupError:
                continue
    return out


def test_services_listen_on_loopback_only_and_run_a_dag_through_the_api(stack):
    services = local_airflow.Services(stack)
    try:
        lines = services.start()
        assert [line.split()[1] for line in lines] == list(local_airflow.SERVICES)
        pids = services.running()
        assert set(pids) == set(local_airflow.SERVICES)
        every = _group_pids({os.getpgid(p) for p in pids.values()})
        sockets = {pid: proc.listening_sockets(pid) for pid in every}
        listening = [(pid, a, p) for pid, found in sockets.items() for a, p in found]
        assert ("127.0.0.1", services.port) in {(a, p) for _, a, p in listening}
        beyond = [(proc.cmdline(pid)[:60], a, p) for pid, a, p in listening if a != "127.0.0.1"]
        assert beyond == [], f"Airflow listens beyond loopback: {beyond}"

        result = run_dag(stack, "payment_validation", {"force": True}, timeout=300)
        assert result.via == "api-server"
        assert result.ok, result.tasks
        assert {t["task_id"]: t["state"] for t in result.tasks}["check_due"] == "success"
        passwords = Path(stack.airflow_home) / "simple_auth_manager_passwords.json"
        assert passwords.read_text().strip() and passwords.stat().st_mode & 0o777 == 0o600
    finally:
        stopped = services.stop()
    assert len(stopped) == 4
    assert not any(proc.pid_alive(p) for p in pids.values())
