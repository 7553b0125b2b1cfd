"""``paymigrate demo``: a real migration of a seeded payment database under a live write load.

Stand-ins up, a clean slate (a rerun starts over: replication dropped, target emptied, router on
the source), seed, Airflow started on 127.0.0.1, the workload on, payment_migration then
payment_cutover run through Airflow's API, the workload off, and a summary whose numbers come
from the runs, the router and the workload's own ledger.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg2 import sql

from paymigrate.aws import contract, names
from paymigrate.aws.checkpoints import CheckpointStore
from paymigrate.cutover.freeze import remove_fence, unfreeze
from paymigrate.cutover.read_canary import cloudwatch_publisher
from paymigrate.cutover.switch import route_writes_to
from paymigrate.db import connection
from paymigrate.errors import PaymigrateError
from paymigrate_dev.local import airflow_services
from paymigrate_dev.local.dagrun import Api, RunResult
from paymigrate_dev.local.stack import DATABASE, LocalStack
from paymigrate_dev.workload.reads import ReadSplit, contract_share

log = logging.getLogger(__name__)
# payment_migration's tasks that copy the tables, in either engine's branch.
INITIAL_COPY_TASKS = ("start_replication", "wait_replication_running", "prepare_replication_task",
                      "start_replication_task", "wait_full_load_done")


@dataclass
class DemoResult:
    rows: dict[str, int] = field(default_factory=dict)
    runs: list[RunResult] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def say(msg: str) -> None:
    """Progress goes to stderr: stdout carries only the summary (JSON with --json)."""
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def reset(stack: LocalStack) -> None:
    """Start over: no replication either way, an empty target, every write routed to the
    source, the contract at its defaults with cutover enabled, no migration lock."""
    from paymigrate.replication.logical import LogicalEngine

    source, target = stack.endpoint("source"), stack.endpoint("target")
    engine = LogicalEngine(source=source, target=target, name=names.replication_name(stack.env))
    for direction in ("reverse", "forward"):
        engine.drop(direction=direction)
    _reset_dms(stack)
    for ep in (source, target):
        unfreeze(ep)
        remove_fence(ep)
    route_writes_to(stack.router_nodes(), DATABASE, source)
    with connection(target.with_db("postgres"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    ssm = stack.client("ssm")
    for key, value in (("database/active-writer", "source"), ("workflow/traffic-split-percentage", 0),
                       ("workflow/mode", "preparation"), ("workflow/enable-cutover", True),
                       ("workflow/enable-replication", True)):
        contract.write(ssm, key, value, stack.env)
    bucket = contract.read(ssm, stack.env)["storage/checkpoints-bucket"]
    CheckpointStore(s3=stack.client("s3"), bucket=bucket, env=stack.env).clear_lock()


def _reset_dms(stack: LocalStack) -> None:
    """The DMS path's leftovers: its tasks stopped in moto, and the slots they read dropped (a
    slot keeps WAL, and one in the target's database would refuse dropping it)."""
    from paymigrate.replication.dms import DmsEngine

    cfg = contract.read(stack.client("ssm"), stack.env)
    engine = DmsEngine(task_arn=cfg["replication/dms-task-arn"],
                       reverse_task_arn=cfg["replication/reverse-task-arn"],
                       slot_name=names.dms_slot_name(stack.env),
                       reverse_slot_name=names.dms_slot_name(stack.env, "reverse"),
                       dms_client=stack.client("dms"), source=stack.endpoint("source"),
                       target=stack.endpoint("target"), poll=0.1)
    for direction in ("reverse", "forward"):
        engine.stop(direction=direction)
        engine.drop_slot(direction)


def table_counts(dsn: str) -> dict[str, int]:
    with connection(dsn) as conn, conn.cursor() as cur:
        cur.execute("""SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1""")
        out = {}
        for (table,) in cur.fetchall():
            cur.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table)))
            out[table] = cur.fetchone()[0]
    return out


def run(*, rows: int, tps: float, clients: int, seed: int = 7) -> DemoResult:
    from paymigrate.validation import validate
    from paymigrate_dev.demo.seed import seed as seed_db
    from paymigrate_dev.workload import Workload, report

    started = time.monotonic()
    stack = LocalStack()
    for line in stack.up():
        say(line)
    say("resetting to a clean slate (any earlier demo's replication, cutover and lock)")
    reset(stack)
    result = seed_db(dsn=stack.dsn("source"), rows=rows, seed=seed, replace=True)
    say(f"seeded {rows} payments in {result.seconds:.1f}s: {result.counts}")

    services = airflow_services.Services(stack)
    say("starting Airflow on 127.0.0.1 (api-server, scheduler, dag-processor, triggerer)")
    for line in services.start():
        say(line)
    env = airflow_services.environment(stack, api_port=services.port)
    password = airflow_services.admin_password(env)
    api = Api(services.url, airflow_services.ADMIN_USER, password)
    _wait_for_dags(api, ("payment_migration", "payment_cutover"))

    directory = Path(stack.home) / "workload" / f"demo-{int(time.time())}"
    # Reads follow the canary's share to the target through each router's read-only route.
    reads = ReadSplit(target_dsns=stack.read_only_dsns(),
                      share=contract_share(stack.client("ssm"), stack.env),
                      publish=cloudwatch_publisher(stack.client("cloudwatch"), stack.env))
    workload = Workload(dsn=stack.app_dsns(), directory=directory, clients=clients, tps=tps, seed=seed,
                        reads=reads)
    workload.start()
    say(f"workload on: {clients} clients at {tps:.0f} TPS over both PgBouncers; ledger {directory}")
    out = DemoResult()
    try:
        migration = api.run("payment_migration", {"engine": "postgres-logical"}, timeout=1800)
        out.runs.append(migration)
        migration.show(file=sys.stderr)
        if not migration.ok:
            raise PaymigrateError("payment_migration failed: see the Airflow UI")
        cutover = api.run("payment_cutover", {"approved_by": "make demo", "confirm_environment": stack.env,
                                              "canary_steps": [10, 50, 100], "canary_soak_seconds": 2},
                          timeout=900, answer="Approve")
        out.runs.append(cutover)
        cutover.show(file=sys.stderr)
        for a in cutover.answers:
            say(f"{a['task_id']}: {a['chosen'][0]} by {a['by']} at {a['at']}, through the REST API")
        if not cutover.ok:
            raise PaymigrateError("payment_cutover failed: see the Airflow UI")
        say("writes now land on the target; keeping the workload on for 5 more seconds")
        time.sleep(5)
    finally:
        stats = workload.stop()
        say(f"workload off: {stats.to_dict()}")

    target = stack.dsn("target")
    wl = report(directory=directory, against_dsn=target)
    # The workload is off and reverse replication carries the target's writes to the source:
    # once drained, both must hold the same data.
    final = validate(source=stack.endpoint("target"), target=stack.endpoint("source"), max_keys=20)
    out.rows = table_counts(target)
    switch = cutover.xcom.get("write_switch") or {}
    lag = (cutover.xcom.get("lag_gate") or {}).get("lag", {})
    durations = {t["task_id"]: t["seconds"] or 0 for t in migration.tasks}
    out.summary = {
        "rows": out.rows,
        "initial_copy_seconds": round(sum(durations.get(t, 0) for t in INITIAL_COPY_TASKS), 1),
        "lag_at_cutover": lag,
        "validation_before_cutover": (migration.xcom.get("validate") or {}).get("status"),
        "validation_of_new_writer_after_resume": (cutover.xcom.get("validate_new_writer") or {}).get("status"),
        "validation_after_cutover": final.status,
        "approved_by": [f"{a['by']} at {a['at']}" for a in cutover.answers],
        "write_pause_ms": round(switch.get("write_pause_seconds", 0) * 1000, 1),
        "write_pause_budget_ms": round(switch.get("budget_seconds", 0) * 1000),
        "switch_steps_ms": {k: round(v * 1000, 1) for k, v in switch.get("steps", {}).items()},
        "longest_client_stall_ms": round(wl.longest_stall_seconds * 1000, 1),
        "committed": wl.committed, "found_on_target": wl.found, "lost": wl.lost,
        "duplicated": wl.duplicated, "invariants_ok": wl.invariants_ok,
        "airflow_ui": services.url, "airflow_login": f"{airflow_services.ADMIN_USER} / {password}",
        "seconds": round(time.monotonic() - started, 1),
    }
    return out


def _wait_for_dags(api: Api, dag_ids: tuple[str, ...], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            for dag_id in dag_ids:
                api.dag(dag_id)
            return
        except PaymigrateError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
