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

from paymigrate.local import airflow as local_airflow

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


def test_demo_prints_json_alone_and_who_approved(stack):
    try:
        done, summary = _cli("demo", "--rows", "1000", "--tps", "20", "--clients", "1", "--json", timeout=1800)
        logs = _failed_task_logs(stack) if done.returncode else ""
    finally:
        local_airflow.Services(stack).stop()
    assert done.returncode == 0, done.stderr[-3000:] + logs
    assert summary["lost"] == 0 and summary["validation_after_cutover"] == "match"
    # One approval per try of approve_cutover (a retry asks again)
    assert summary["approved_by"] and all(a.startswith("admin at ") for a in summary["approved_by"])
    assert "approve_cutover: Approve by admin at" in done.stderr
    assert "[demo] seeded 1000 payments" in done.stderr
