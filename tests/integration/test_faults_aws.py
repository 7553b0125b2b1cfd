"""AWS unreachable during change data capture, then back with its state, under the workload.

The real fault is an outage: the endpoint does not answer for a while, then answers again with
everything it held. moto keeps its state in memory, so the test runs a moto that remembers
(``tests/moto_remembering.py``: moto's recorder on, its recording replayed before the port
opens again), kills it, and starts it again on the same port. Re-running our bootstrap instead
would not be the same fault: the checkpoints and the migration lock in S3 would be gone.

The steps are the library calls the DAG's tasks make (a fresh ``MigrationService`` per task, as
each task reads the contract anew); the replication runs between the servers, where AWS is not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError
from psycopg2.extensions import parse_dsn

from paymigrate.aws import contract, names
from paymigrate.errors import StackError
from paymigrate.migration.lock import LockState
from paymigrate.migration.plan import Plan
from paymigrate.migration.platform import ClientPlatform
from paymigrate.migration.service import MigrationService
from paymigrate.validation import validate
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.local import proc
from paymigrate_dev.local.bootstrap import bootstrap
from paymigrate_dev.workload import Workload, report

pytestmark = pytest.mark.integration

LAUNCHER = Path(__file__).resolve().parents[1] / "moto_remembering.py"


@dataclass
class RememberingMoto:
    """A moto on ``port`` that records every request to ``recording`` and replays it when
    started again."""

    port: int
    recording: Path
    logfile: Path
    child: subprocess.Popen | None = None

    def start(self, *, timeout: float = 60) -> float:
        """Start it and wait until it answers; return the seconds that took (replay included)."""
        began = time.monotonic()
        env = {**os.environ, "MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(self.recording)}
        with open(self.logfile, "ab") as log:
            self.child = subprocess.Popen([sys.executable, str(LAUNCHER), str(self.port)], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                          start_new_session=True)
        while time.monotonic() - began < timeout:
            if self.child.poll() is not None:
                raise StackError(f"moto exited with {self.child.returncode}; see {self.logfile}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/moto-api/config", timeout=2):
                    return time.monotonic() - began
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise StackError(f"moto did not answer on port {self.port} within {timeout:.0f}s")

    def kill(self) -> None:
        """SIGKILL: every request in flight is cut, the port refuses connections."""
        if self.child and self.child.poll() is None:
            os.kill(self.child.pid, signal.SIGKILL)
            self.child.wait()


@pytest.fixture
def aws(stack, tmp_path):
    """The stack's moto replaced by one that remembers, on the same port, bootstrapped; after
    the test the stack gets a plain moto again (bootstrapped, as at the session's start). The
    recording holds the secrets' values: it lives in the test's own folder and is deleted."""
    session_moto = stack.state["components"]["moto"].get("pid")
    if session_moto and proc.pid_alive(session_moto):
        proc.terminate(session_moto)
    moto = RememberingMoto(port=stack.port("moto"), recording=tmp_path / "moto-recording.jsonl",
                           logfile=tmp_path / "moto.log")
    try:
        moto.start()
        stack.moto().configure()
        bootstrap(stack)
        yield moto
    finally:
        moto.kill()
        moto.recording.unlink(missing_ok=True)
        stack.up(bootstrap=True)


def _aws_state(stack) -> dict:
    """What the migration keeps in AWS: every version of every checkpoint document (newest
    first), the contract with each parameter's version, and the secrets' ARNs and values."""
    s3, env = stack.client("s3"), stack.env
    bucket = names.bucket_name("checkpoints", env)
    versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    docs = [(v["Key"], v["IsLatest"], s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])[
        "Body"].read().decode()) for v in versions]
    sm = stack.client("secretsmanager")
    secrets = {s["Name"]: (s["ARN"], sm.get_secret_value(SecretId=s["ARN"])["SecretString"])
               for s in sm.list_secrets()["SecretList"]}
    ssm = stack.client("ssm")
    versions_of = {p["Name"]: p["Version"] for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=f"/migration/{env}/", Recursive=True) for p in page["Parameters"]}
    return {"checkpoints": docs, "contract": dict(contract.read(ssm, env)), "parameter_versions": versions_of,
            "secrets": secrets}


def test_aws_unreachable_during_cdc_fails_the_step_naming_it_and_the_rerun_ends_whole(
        stack, databases, aws, tmp_path):
    source_dsn, target_dsn = databases
    dbname = parse_dsn(source_dsn)["dbname"]
    seed(dsn=source_dsn, rows=500, seed=41)
    # Each step as a DAG task makes it: a service of its own, reading the contract anew.
    service = lambda: MigrationService(ClientPlatform(env=stack.env, dbname=dbname))  # noqa: E731
    run_id = "manual__aws_outage"
    plan = service().preflight(engine="postgres-logical", tables=[], exclude=[], dry_run=False,
                               takeover=False, run_id=run_id, dag_id="payment_migration")
    assert plan is not None
    engine = service().engine(Plan.of(plan))
    try:
        service().checkpoint(plan, phase="preparation", results={"preflight": plan}, run_id=run_id)
        started = service().start_replication(plan)
        assert engine.wait_full_load(timeout=120, poll=0.5).full_load_done
        service().checkpoint(plan, phase="replication", results={"start_replication": started}, run_id=run_id)
        work = Workload(dsn=source_dsn, directory=tmp_path, clients=2, tps=100, seed=43).start()
        try:
            time.sleep(1)
            before = _aws_state(stack)
            aws.kill()
            # The validation task starts while AWS is down: its first call, the contract read,
            # is retried by botocore and then fails naming the endpoint; nothing was changed.
            began = time.monotonic()
            with pytest.raises(EndpointConnectionError, match=f"http://127.0.0.1:{aws.port}/") as down:
                service().validate(plan, max_keys=10, run_id=run_id)
            retried_for = time.monotonic() - began
            # AWS is not in the data path: the source stays the writer and CDC goes on.
            assert engine.catch_up(engine.position(), timeout=60), engine.lag()
            committed_while_down = work.stats().committed
            back_in = aws.start()
        finally:
            stats = work.stop()
        after = _aws_state(stack)
        assert after == before, "moto came back without the state it had"
        # The task's retry (DEFAULT_ARGS: 2, 10 s apart and growing) once AWS answers again: the
        # run goes on from its checkpoints to cutover ready.
        report_ = service().validate(plan, max_keys=10, run_id=run_id)
        assert report_["status"] == "match", report_
        decided = service().decide(plan, report=report_)
        service().checkpoint(plan, phase="validation", results={"validate": report_, "decide": decided},
                             run_id=run_id, lock_state=LockState.CUTOVER_READY)
        assert service().platform.checkpoints().lock().state is LockState.CUTOVER_READY
        assert stats.committed > 0
        assert engine.catch_up(engine.position(), timeout=60), engine.lag()
        on_target = report(directory=tmp_path, against_dsn=target_dsn)
        assert (on_target.lost, on_target.duplicated) == (0, 0), on_target.to_dict()
        assert validate(source=source_dsn, target=target_dsn).status == "match"
        print(json.dumps({"error_while_down": str(down.value), "retried_for_s": round(retried_for, 1),
                          "back_in_s": round(back_in, 1), "committed": stats.committed,
                          "committed_while_down": committed_while_down}))
    finally:
        engine.drop(direction="forward")
