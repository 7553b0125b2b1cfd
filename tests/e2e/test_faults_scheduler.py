"""The Airflow scheduler SIGKILLed in the middle of a payment_migration run, then started again.

The four services run for real (as ``paymigrate demo`` starts them, LocalExecutor on SQLite);
the run is triggered through the REST API under the payment workload, the scheduler is killed
while a task of the run is running, and started again. The run must end as if nothing had
happened: cutover ready, every table matching, lost 0 and duplicated 0, one slot and one
subscription. Slow (a minute or more): in ``make soak``, not ``make test``.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from paymigrate.aws import names
from paymigrate.db import connection
from paymigrate.replication.logical import LogicalEngine
from paymigrate.validation import validate
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.local import airflow_services
from paymigrate_dev.local.dagrun import Api
from paymigrate_dev.local.demo import reset
from paymigrate_dev.workload import Workload, report

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

DAG = "payment_migration"


def _count(dsn: str, query: str) -> int:
    with connection(dsn) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def _group_pids(pgid: int) -> list[int]:
    """The processes still in process group ``pgid`` (a dead scheduler's executor workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    out.append(int(entry.name))
            except ProcessLookupError:
                continue
    return out


def _wait_for_the_copy(stack, timeout: float = 120) -> None:
    """Until the initial copy runs: its slot made on the source, no subscription yet."""
    slot = names.replication_name(stack.env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (_count(stack.dsn("source"), f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'")
                and not _count(stack.dsn("target"), "SELECT count(*) FROM pg_subscription")):
            return
        time.sleep(0.05)
    raise AssertionError(f"the initial copy did not start within {timeout:.0f}s")


def _task_log(stack, run_id: str, task_id: str, *, attempt: int) -> str:
    found = list((Path(stack.airflow_home) / "logs").rglob(
        f"dag_id={DAG}/run_id={run_id}/task_id={task_id}/attempt={attempt}.log"))
    return found[0].read_text() if found else f"no log of {task_id} attempt {attempt}"


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid``, children first."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *_descendants(kid)]
    return out


class Run:
    """One run of ``dag_id`` through the API: its task instances as the API shows them."""

    def __init__(self, api: Api, dag_id: str, conf: dict):
        self.api, self.dag_id = api, dag_id
        self.run_id = f"manual__scheduler_killed_{uuid.uuid4().hex[:8]}"
        api._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        api._call("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                  {"dag_run_id": self.run_id, "logical_date": None, "conf": conf}, accept=(409,))

    def state(self) -> str:
        return self.api._call("GET", f"/api/v2/dags/{self.dag_id}/dagRuns/{self.run_id}")["state"]

    def tasks(self) -> dict[str, dict]:
        tis = self.api._call("GET", f"/api/v2/dags/{self.dag_id}/dagRuns/{self.run_id}/taskInstances"
                                    "?limit=500")["task_instances"]
        return {ti["task_id"]: ti for ti in tis}

    def wait_for(self, task_id: str, states: tuple[str, ...], *, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ti = self.tasks().get(task_id) or {}
            if ti.get("state") in states:
                return ti
            if self.state() in ("success", "failed"):
                raise AssertionError(f"run ended {self.state()} before {task_id} was {states}: "
                                     f"{ {t: i['state'] for t, i in self.tasks().items()} }")
            time.sleep(0.5)
        raise AssertionError(f"{task_id} not {states} within {timeout:.0f}s")

    def wait_finished(self, *, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (state := self.state()) in ("success", "failed"):
                return state
            time.sleep(2)
        raise AssertionError(f"run not finished within {timeout:.0f}s: "
                             f"{ {t: i['state'] for t, i in self.tasks().items()} }")

    def xcom(self, task_id: str) -> dict:
        return self.api._call("GET", f"/api/v2/dags/{self.dag_id}/dagRuns/{self.run_id}/taskInstances/"
                                     f"{task_id}/xcomEntries/return_value?deserialize=true")["value"]


@pytest.fixture
def services(stack):
    """A seeded source and an empty target, the four Airflow services started; after the
    test every service and every process a killed scheduler left is stopped, and the stack
    put back empty."""
    reset(stack)
    seed(dsn=stack.dsn("source"), rows=30000, seed=47, replace=True)
    svc = airflow_services.Services(stack)
    svc.start()
    leftovers: list[int] = []
    try:
        yield svc, leftovers
    finally:
        svc.stop()
        for pgid in leftovers:  # the killed scheduler's idle executor workers (they ignore SIGTERM)
            if _group_pids(pgid):
                os.killpg(pgid, signal.SIGKILL)
        reset(stack)
        with connection(stack.endpoint("source", dbname="postgres"), autocommit=True) as conn, \
                conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS payments WITH (FORCE)")
            cur.execute("CREATE DATABASE payments")


# scheduler: the scheduler process alone, started again at once; its LocalExecutor workers live
# on and finish the task they run. with-its-children: the scheduler and every process under it
# (executor workers, task supervisors and the task itself, which Airflow puts in a process group
# of its own), as when the host or container that runs it dies; started again after the
# health-check threshold, the new scheduler finds the dead one's running task orphaned and
# resets it for another try.
@pytest.mark.parametrize("kill", ["scheduler", "with-its-children"])
def test_the_scheduler_killed_mid_run_and_started_again_the_run_ends_whole(stack, services, tmp_path, kill):
    from airflow.configuration import conf

    svc, leftovers = services
    env = airflow_services.environment(stack, api_port=svc.port)
    api = Api(svc.url, airflow_services.ADMIN_USER, airflow_services.admin_password(env))
    work = Workload(dsn=stack.app_dsns(), directory=tmp_path, clients=2, tps=50, seed=53).start()
    try:
        run = Run(api, DAG, {"engine": "postgres-logical"})
        copying = run.wait_for("start_replication", ("running",), timeout=240)
        _wait_for_the_copy(stack)
        scheduler = svc.running()["scheduler"]
        group = os.getpgid(scheduler)
        leftovers.append(group)
        if kill == "scheduler":
            os.kill(scheduler, signal.SIGKILL)
            down_for = 2.0
        else:
            for pid in [scheduler, *_descendants(scheduler)]:
                os.kill(pid, signal.SIGKILL)
            down_for = conf.getint("scheduler", "scheduler_health_check_threshold") + 5
        time.sleep(down_for)
        svc.start()
        state = run.wait_finished(timeout=600)
        tasks = run.tasks()
    finally:
        stats = work.stop()
    tries = {t: (i["state"], i["try_number"]) for t, i in tasks.items()}
    print(f"{kill} SIGKILLed while start_replication copied (try {copying['try_number']}), down "
          f"{down_for:.0f}s; then: {tries}; {stats.committed} committed", flush=True)
    assert state == "success", tries
    # Killed alone, its worker finished the copy in the same try; killed with its children, the
    # copy was done again in a second try (the orphan slot dropped, every table copied anew).
    assert tries["start_replication"] == ("success", 1 if kill == "scheduler" else 2), tries
    assert {n for t, (st, n) in tries.items() if st == "success" and t != "start_replication"} == {1}, tries
    if kill != "scheduler":  # what the second try did, from its own log
        second = _task_log(stack, run.run_id, "start_replication", attempt=2)
        assert "was left by an interrupted initial copy" in second, second[-3000:]
    assert run.xcom("validate")["status"] == "match"
    assert _count(stack.dsn("source"), "SELECT count(*) FROM pg_replication_slots") == 1
    assert _count(stack.dsn("target"), "SELECT count(*) FROM pg_subscription") == 1
    engine = LogicalEngine(source=stack.endpoint("source"), target=stack.endpoint("target"),
                           name=names.replication_name(stack.env))
    assert engine.catch_up(engine.position(), timeout=120), engine.lag()
    assert stats.committed > 0
    on_target = report(directory=tmp_path, against_dsn=stack.dsn("target"))
    assert (on_target.lost, on_target.duplicated) == (0, 0), on_target.to_dict()
    assert validate(source=stack.dsn("source"), target=stack.dsn("target")).status == "match"
