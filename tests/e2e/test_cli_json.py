"""`--json`: the JSON alone on stdout, progress on stderr, for the commands that do real work.

The demo is the case the issue names: it printed its progress and task tables on stdout before
the JSON. Run as a subprocess, so what reaches file descriptor 1 is checked, child processes'
output included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import create_database, drop_database

from paymigrate_dev.local import airflow_services, proc
from paymigrate_dev.local.dagrun import run_dag

pytestmark = pytest.mark.e2e

PAYMIGRATE = [str(Path(sys.executable).parent / "paymigrate")]


def _cli(*argv, timeout=1200, env=None):
    done = subprocess.run([*PAYMIGRATE, *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"paymigrate {' '.join(argv)}: stdout is not JSON alone:\n{done.stdout[:3000]}\n"
                    f"stderr:\n{done.stderr[-3000:]}")
    return done, doc


def test_seed_workload_and_validate_print_json_alone(stack, tmp_path):
    dsn = create_database(stack, "source", "json_cli")
    try:
        done, seeded = _cli("seed", "--rows", "200", "--dsn", dsn, "--json")
        assert done.returncode == 0 and seeded["payments"] == 200 and seeded["counts"]["payments"] == 200
        done, run = _cli("workload", "start", "--foreground", "--count", "40", "--tps", "200", "--dsn", dsn,
                         "--dir", str(tmp_path), "--json")
        assert done.returncode == 0 and run["committed"] > 0, done.stderr[-2000:]
        done, rep = _cli("workload", "report", "--against", dsn, "--dir", str(tmp_path), "--json")
        assert done.returncode == 0 and rep["lost"] == 0 and rep["committed"] == run["committed"]
        done, same = _cli("validate", "--source", dsn, "--target", dsn, "--json")
        assert done.returncode == 0 and same["status"] == "match"
        done, status = _cli("status", "--json")
        assert {c["component"] for c in status["components"]} >= {"source", "target", "router", "moto"}
    finally:
        drop_database(stack, "source", "json_cli")


def test_run_prints_json_alone_while_dag_test_logs(stack):
    # A cutover the preflight refuses (wrong environment): a real dag.test() run, which logs a lot.
    done, result = _cli("run", "payment_cutover", "--conf",
                        json.dumps({"approved_by": "pytest", "confirm_environment": "not-this-one"}), "--json")
    assert done.returncode == 1
    assert result["state"] == "failed" and result["via"] == "dag.test()"
    assert {t["task_id"]: t["state"] for t in result["tasks"]}["preflight_cutover"] == "failed"
    assert "preflight_cutover" in done.stderr  # the progress went to stderr


def _failed_task_logs(stack) -> str:
    logs = Path(stack.airflow_home) / "logs"
    found = [p for p in logs.rglob("*.log") if "task_id=write_switch" in str(p) or "task_id=approve" in str(p)]
    return "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in found)


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


def _services_listen_on_loopback_only_and_run_a_dag(stack, services) -> None:
    """Airflow's four services as the demo started them: loopback only, a run through the API."""
    pids = services.running()
    assert set(pids) == set(airflow_services.SERVICES)
    every = _group_pids({os.getpgid(p) for p in pids.values()})
    listening = [(pid, a, p) for pid in every for a, p in proc.listening_sockets(pid)]
    assert ("127.0.0.1", services.port) in {(a, p) for _, a, p in listening}
    beyond = [(proc.cmdline(pid)[:60], a, p) for pid, a, p in listening if a != "127.0.0.1"]
    assert beyond == [], f"Airflow listens beyond loopback: {beyond}"
    result = run_dag(stack, "payment_validation", {"force": True}, timeout=300)
    assert result.via == "api-server" and result.ok, result.tasks
    assert {t["task_id"]: t["state"] for t in result.tasks}["check_due"] == "success"
    passwords = Path(stack.airflow_home) / "simple_auth_manager_passwords.json"
    assert passwords.read_text().strip() and passwords.stat().st_mode & 0o777 == 0o600


def test_demo_prints_json_alone_and_who_approved_and_its_services_stay_on_loopback(stack):
    services = airflow_services.Services(stack)
    try:
        done, summary = _cli("demo", "--rows", "1000", "--tps", "20", "--clients", "1", "--json", timeout=1800)
        logs = _failed_task_logs(stack) if done.returncode else ""
        assert done.returncode == 0, done.stderr[-3000:] + logs
        # The services the demo started are still up (a demo leaves them for the UI).
        _services_listen_on_loopback_only_and_run_a_dag(stack, services)
        pids = services.running()
    finally:
        stopped = services.stop()
    assert len(stopped) == 4 and not any(proc.pid_alive(p) for p in pids.values())
    assert summary["lost"] == 0 and summary["validation_after_cutover"] == "match"
    # One approval per try of approve_cutover (a retry asks again)
    assert summary["approved_by"] and all(a.startswith("admin at ") for a in summary["approved_by"])
    assert "approve_cutover: Approve by admin at" in done.stderr
    assert "[demo] seeded 1000 payments" in done.stderr
