"""One DAG run to its end: through the running api-server, or in-process with ``dag.test()``."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any, cast

from paymigrate.errors import BadInput, PaymigrateError
from paymigrate.inputs import ParamSpec, check_conf
from paymigrate_dev.local import airflow_services

log = logging.getLogger(__name__)

FINISHED = ("success", "failed")
AWAITING_INPUT = "awaiting_input"  # a human-in-the-loop task waiting for its response
# How long a task waits for its response before an automatic answer gives it. Airflow 3.3.2
# fails a deferred task whose trigger fires and whose resumed try starts before the scheduler
# has drained the executor's success event of the deferring try (apache/airflow#72716,
# "state mismatch"): an answer given within milliseconds, as a script gives it, can meet that.
ANSWER_SETTLE_SECONDS = 5.0


class RunFailed(PaymigrateError):
    pass


@dataclass
class RunResult:
    dag_id: str
    run_id: str
    state: str
    seconds: float
    tasks: list[dict[str, Any]] = field(default_factory=list)  # task_id, state, seconds, map_index
    via: str = ""
    xcom: dict[str, Any] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)  # human-in-the-loop responses given

    @property
    def ok(self) -> bool:
        return self.state == "success"

    def to_dict(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "run_id": self.run_id, "state": self.state, "via": self.via,
                "seconds": round(self.seconds, 1), "tasks": self.tasks,
                **({"answers": self.answers} if self.answers else {})}

    def show(self, file: IO[str] | None = None) -> None:
        """The run as the CLI shows it: a line per task, each answer given, the outcome."""
        print(f"{'task':<28} {'state':<16} seconds", file=file)
        for t in self.tasks:
            name = t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else "")
            secs = f"{t['seconds']:.1f}" if t["seconds"] is not None else "-"
            print(f"{name:<28} {t['state']:<16} {secs:>7}", file=file)
        for a in self.answers:
            print(f"{a['task_id']}: {a['chosen'][0]} by {a['by']} at {a['at']}", file=file)
        print(f"{self.dag_id} run {self.run_id} {self.state} in {self.seconds:.1f}s (via {self.via})",
              file=file)


class Api:
    """The Airflow REST API v2 with a token from ``POST /auth/token``."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base = base_url.rstrip("/")
        body = self._call("POST", "/auth/token", {"username": username, "password": password}, token=None)
        self.token = body["access_token"]

    def _call(self, method: str, path: str, body: Any = None, *, token: str | None = "",
              accept: tuple[int, ...] = ()) -> Any:
        """One API call, retried on 5xx and time-outs: the four services share one SQLite
        metadata DB locally and a request may wait on its lock. Every call made here is safe to
        repeat (a run is triggered under a run id of our own: a repeat gets 409)."""
        data = json.dumps(body).encode() if body is not None else None
        attempts = 5
        for attempt in range(1, attempts + 1):
            req = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
            if token is not None:
                req.add_header("Authorization", f"Bearer {token or self.token}")
            try:
                with urllib.request.urlopen(req, timeout=90) as resp:
                    raw = resp.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                if exc.code in accept:
                    return None
                if exc.code < 500 or attempt == attempts:
                    raise PaymigrateError(f"airflow API {method} {path}: HTTP {exc.code} {detail}") from None
                problem = f"HTTP {exc.code}"
            except (TimeoutError, urllib.error.URLError) as exc:
                if attempt == attempts:
                    raise PaymigrateError(f"airflow API {method} {path}: {exc}") from None
                problem = str(exc)
            log.warning("airflow API %s %s: %s, retrying (%d/%d)", method, path, problem, attempt,
                        attempts - 1)
            time.sleep(2 * attempt)
        raise AssertionError("unreachable")

    def dag(self, dag_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v2/dags/{dag_id}")

    def answer(self, dag_id: str, run_id: str, task_id: str, option: str) -> dict[str, Any]:
        """Respond to a human-in-the-loop task (an approval: "Approve" or "Reject") as this
        API user; returns who responded, when and what."""
        body = self._call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/-1/"
                                   "hitlDetails", {"chosen_options": [option], "params_input": {}})
        by = body["responded_by"]
        return {"task_id": task_id, "chosen": body["chosen_options"], "by": by.get("name") or by.get("id"),
                "at": body["responded_at"]}

    def run(self, dag_id: str, conf: dict[str, Any], *, timeout: float, poll: float = 2,
            answer: str | None = None) -> RunResult:
        """Trigger and wait; ``answer`` responds to each human-in-the-loop task as it waits
        (None leaves them to someone in the UI)."""
        started = time.monotonic()
        self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run_id = f"manual__paymigrate_{uuid.uuid4().hex[:12]}"
        self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                   {"dag_run_id": run_id, "logical_date": None, "conf": conf}, accept=(409,))
        log.info("triggered %s run %s", dag_id, run_id)
        seen: dict[str, str] = {}
        answers: list[dict[str, Any]] = []
        waiting_since: dict[tuple[str, int], float] = {}  # (task, try) -> when first seen waiting
        while True:
            run = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}")
            tis = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances"
                                    "?limit=500")["task_instances"]
            for ti in tis:
                key = f"{ti['task_id']}[{ti['map_index']}]" if ti["map_index"] >= 0 else ti["task_id"]
                if ti["state"] and seen.get(key) != ti["state"]:
                    seen[key] = ti["state"]
                    log.info("%s: %s", key, ti["state"])
                if answer and ti["state"] == AWAITING_INPUT and ti["map_index"] < 0:
                    asked = (ti["task_id"], ti["try_number"])  # a retry asks again
                    since = waiting_since.setdefault(asked, time.monotonic())
                    if (time.monotonic() - since >= ANSWER_SETTLE_SECONDS
                            and asked not in {(a["task_id"], a["try_number"]) for a in answers}):
                        answers.append({**self.answer(dag_id, run_id, ti["task_id"], answer),
                                        "try_number": ti["try_number"]})
                        log.info("%s: %s by %s at %s", ti["task_id"], answer, answers[-1]["by"],
                                 answers[-1]["at"])
            if run["state"] in FINISHED:
                break
            if time.monotonic() - started > timeout:
                raise RunFailed(f"{dag_id} run {run_id} not finished after {timeout:.0f}s "
                                f"(state {run['state']})")
            time.sleep(poll)
        tasks = [{"task_id": ti["task_id"], "map_index": ti["map_index"], "state": ti["state"],
                  "seconds": ti.get("duration")} for ti in tis]
        xcom = {}
        for ti in tis:
            if ti["state"] == "success" and ti["map_index"] < 0:
                try:
                    entry = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/"
                                              f"{ti['task_id']}/xcomEntries/return_value?deserialize=true")
                    xcom[ti["task_id"]] = entry.get("value")
                except PaymigrateError:
                    pass  # a task without a return value
        return RunResult(dag_id, run_id, run["state"], time.monotonic() - started, tasks, "api-server", xcom,
                         answers)


def _q(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def dag_bag() -> Any:
    """Every DAG parsed from the DAG folder (no metadata DB needed); refuses import errors."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ.get("AIRFLOW__CORE__DAGS_FOLDER",
                                           str(airflow_services.REPO / "dags")))
    if bag.import_errors:
        raise PaymigrateError(f"DAG import errors: {bag.import_errors}")
    return bag


def load_dag(dag_id: str) -> Any:
    """The DAG ``dag_id`` parsed from the DAG folder (no metadata DB needed)."""
    bag = dag_bag()
    dag = bag.dags.get(dag_id)  # get_dag() would ask the metadata DB first
    if dag is None:
        raise BadInput("DAG_ID", dag_id, f"no such DAG; known: {', '.join(sorted(bag.dag_ids))}")
    return dag


def check_run_conf(dag_id: str, conf: Any) -> dict[str, Any]:
    """``conf`` checked against the DAG's own Params before a run is triggered
    (:func:`paymigrate.inputs.check_conf`): one :class:`BadInput` naming the first bad value."""
    from airflow.sdk.definitions._internal.types import is_arg_set

    params = load_dag(dag_id).params
    specs = {}
    for key in params:
        param = params.get_param(key)
        specs[key] = ParamSpec(param.schema, param.value if is_arg_set(param.value) else None,
                               required=not is_arg_set(param.value))
    return check_conf(dag_id, specs, conf)


def human_tasks(dag: Any) -> list[str]:
    """The tasks of ``dag`` that wait for a person's answer (Airflow's human-in-the-loop)."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    return sorted(t.task_id for t in dag.tasks if isinstance(t, HITLOperator))


def run_in_process(dag_id: str, conf: dict[str, Any], *, dag: Any = None) -> RunResult:
    """``dag.test()`` in this process; the caller has set the Airflow environment already
    (``dag``: the DAG already parsed, else it is parsed here)."""
    started = time.monotonic()
    dag = dag if dag is not None else load_dag(dag_id)
    dr = dag.test(run_conf=conf)
    tasks = [{"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state),
              "seconds": ti.duration}
             for ti in sorted(dr.get_task_instances(),
                              key=lambda t: (t.start_date is None, t.start_date or 0))]
    return RunResult(dag_id, dr.run_id, str(dr.state), time.monotonic() - started, tasks, "dag.test()",
                     xcoms(dag_id, dr.run_id))


def xcoms(dag_id: str, run_id: str) -> dict[str, Any]:
    """Every task's return value of one run, from the metadata DB (in-process runs)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        # get_many is annotated Select[tuple[XComModel]], which SQLAlchemy 2.1 reads as rows of
        # one tuple-typed column: its scalars are XComModel rows all the same.
        rows = cast("Sequence[XComModel]", session.scalars(
            XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")).all())
        return {r.task_id: XComModel.deserialize_value(r) for r in rows if r.map_index < 0}


def run_dag(stack: Any, dag_id: str, conf: dict[str, Any], *, timeout: float = 3600,
            answer: str | None = None) -> RunResult:
    """Through the api-server when the stack's Airflow is up, else ``dag.test()`` here. A DAG
    with a human-in-the-loop task then gets an api-server of its own on the same metadata DB,
    where ``answer`` is given for it (or, without one, a person answers in its UI)."""
    services = airflow_services.Services(stack)
    if services.running().get("api-server"):
        env = airflow_services.environment(stack, api_port=services.port)
        api = Api(services.url, airflow_services.ADMIN_USER, airflow_services.admin_password(env))
        return api.run(dag_id, conf, timeout=timeout, answer=answer)
    env = airflow_services.environment(stack)
    os.environ.update(env)
    airflow_services.migrate(env)
    dag = load_dag(dag_id)  # parsed once: the DAG folder takes seconds to parse
    waiting = human_tasks(dag)
    if not waiting:
        return run_in_process(dag_id, conf, dag=dag)
    from pathlib import Path

    from paymigrate_dev.local.approver import Answerer, ApiServer

    # dag.test() keeps a run alive while a task awaits input; only an api-server on the same
    # metadata DB can record the answer, so one runs beside it for as long as the run does.
    server = ApiServer(stack, Path(env["AIRFLOW_HOME"]))
    api = server.start()
    answerer = Answerer(api, dag_id, answer) if answer else None
    if answerer:
        answerer.start()
    else:
        print(f"{dag_id}: {', '.join(waiting)} waits for a human: answer it on {server.url}/required_actions "
              f"as {airflow_services.ADMIN_USER} (password in "
              f"{env['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE']}), or rerun with --answer",
              file=sys.stderr, flush=True)
    try:
        result = run_in_process(dag_id, conf, dag=dag)
    finally:
        if answerer:
            answerer.stop()
        server.stop()
    if answerer:
        result.answers = [a for a in answerer.answers if a["run_id"] == result.run_id]
    return result
