"""The local stand-ins: loopback only, idempotent `up`, recovery from a killed server, clean `down`."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest

from paymigrate import aws
from paymigrate.aws import contract, names
from paymigrate_dev.local import proc, scram
from paymigrate_dev.local.bootstrap import bootstrap
from paymigrate_dev.local.pgbouncer import ADMIN_USER
from paymigrate_dev.local.stack import APP_USER, COMPONENTS, READ_ONLY_USER, ROUTERS, LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_stack():
    """A stack of this module's own, since these tests kill and stop its servers."""
    home = Path(tempfile.mkdtemp(prefix="paymigrate-stacktest-"))
    home.chmod(0o755)
    s = LocalStack(home, env="stacktest")
    s.up()
    yield s
    s.down(purge=True)


def _pids(s: LocalStack) -> dict[str, int]:
    return {st.component: st.pid for st in s.status()}


def test_all_components_healthy(own_stack):
    rows = own_stack.status()
    assert [r.component for r in rows] == ["source", "target", "router", "router-b", "moto"]
    assert all(r.healthy for r in rows), rows
    assert all("route agent, generation" in r.detail for r in rows if r.component.startswith("router"))
    assert len({r.port for r in rows}) == 5


def test_every_socket_is_on_loopback(own_stack):
    sockets = {}
    for comp, pid in _pids(own_stack).items():
        found = proc.listening_sockets(pid)
        assert found, f"{comp} (pid {pid}) listens on nothing we can see"
        sockets[comp] = found
    for name in ROUTERS:  # each router's route agent, which owns its route file
        sockets[f"{name} agent"] = proc.listening_sockets(own_stack.agent(name).pid())
        assert sockets[f"{name} agent"] == [("127.0.0.1", own_stack.agent(name).port)]
    for comp, found in sockets.items():
        for addr, port in found:
            assert addr == "127.0.0.1", f"{comp} listens on {addr}:{port}"
    assert (("127.0.0.1", own_stack.port("router")) in sockets["router"])


def test_up_twice_gives_the_same_stack(own_stack):
    before = (_pids(own_stack), {c: own_stack.port(c) for c in COMPONENTS},
              [own_stack.agent(n).pid() for n in ROUTERS])
    lines = LocalStack(own_stack.home).up()
    after = (_pids(own_stack), {c: own_stack.port(c) for c in COMPONENTS},
             [own_stack.agent(n).pid() for n in ROUTERS])
    assert before == after
    assert sum("already running" in line for line in lines) == 5
    assert "0 created, all present" in lines[-1]


def test_killed_target_comes_back_with_up(own_stack):
    port = own_stack.port("target")
    pid = own_stack.cluster("target").pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while proc.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not {r.component: r.healthy for r in own_stack.status()}["target"]
    lines = LocalStack(own_stack.home).up()
    assert lines[1].startswith("target    started")
    target = {r.component: r for r in own_stack.status()}["target"]
    assert target.healthy and target.port == port and target.pid != pid


def test_bootstrap_twice_creates_the_same_resources(own_stack):
    sm = aws.client("secretsmanager", endpoint_url=own_stack.moto_url, region="ap-southeast-1")
    ssm = aws.client("ssm", endpoint_url=own_stack.moto_url, region="ap-southeast-1")

    def inventory():
        s3 = aws.client("s3", endpoint_url=own_stack.moto_url, region="ap-southeast-1")
        sns = aws.client("sns", endpoint_url=own_stack.moto_url, region="ap-southeast-1")
        dms = aws.client("dms", endpoint_url=own_stack.moto_url, region="ap-southeast-1")
        return (
            sorted(b["Name"] for b in s3.list_buckets()["Buckets"]),
            sorted(t["TopicArn"] for t in sns.list_topics()["Topics"]),
            sorted(s["Name"] for s in sm.list_secrets()["SecretList"]),
            sorted(p["Name"] for p in ssm.get_parameters_by_path(
                Path="/migration/stacktest/", Recursive=True, MaxResults=10)["Parameters"]),
            sorted(t["ReplicationTaskArn"] for t in dms.describe_replication_tasks()["ReplicationTasks"]),
        )

    first = inventory()
    assert bootstrap(own_stack).startswith("0 created")
    assert inventory() == first
    assert first[0] == sorted(names.bucket_name(b, "stacktest") for b in names.BUCKETS)
    assert len(first[1]) == len(names.TOPICS)
    cfg = contract.read(ssm, "stacktest")
    assert set(cfg) == set(contract.PARAMETERS)
    assert cfg["router/endpoint"] == f"127.0.0.1:{own_stack.port('router')}"
    routers = json.loads(cfg["router/routers"])
    assert [(r["name"], r["agent"]) for r in routers] == [
        (n, f"127.0.0.1:{own_stack.agent(n).port}") for n in ROUTERS]


def test_bootstrap_keeps_what_an_operator_set(own_stack):
    ssm = aws.client("ssm", endpoint_url=own_stack.moto_url, region="ap-southeast-1")
    contract.write(ssm, "workflow/traffic-split-percentage", 25, "stacktest")
    bootstrap(own_stack)
    assert contract.read(ssm, "stacktest")["workflow/traffic-split-percentage"] == 25
    contract.write(ssm, "workflow/traffic-split-percentage", 0, "stacktest")


def test_secrets_are_not_in_logs_or_state(own_stack):
    values = own_stack.secrets().values()
    for path in [own_stack.state_file, *own_stack.home.joinpath("logs").glob("*"),
                 *Path(own_stack.data_root(), "logs").glob("*"),
                 Path(own_stack.data_root(), "router", "pgbouncer.log")]:
        text = path.read_text(errors="replace") if path.exists() else ""
        for secret in values:
            assert secret not in text, f"a secret is in {path}"
    assert own_stack.secrets_file.stat().st_mode & 0o777 == 0o600
    assert own_stack.passfile.stat().st_mode & 0o777 == 0o600


def test_pgbouncer_auth_file_holds_the_servers_scram_verifiers_not_passwords(own_stack):
    s, router = own_stack.secrets(), own_stack.router()
    verifiers = router.verifiers()
    assert set(verifiers) == {APP_USER, READ_ONLY_USER, ADMIN_USER}
    assert not any(secret in router.auth_file.read_text() for secret in s.values())
    assert scram.verifies(verifiers[APP_USER], s["app-db"])
    assert scram.verifies(verifiers[READ_ONLY_USER], s["reader-db"])
    assert scram.verifies(verifiers[ADMIN_USER], s["router-admin"])
    # The very same verifier: PgBouncer logs in with the client's key.
    for side, role in (("source", APP_USER), ("target", APP_USER), ("target", READ_ONLY_USER)):
        with psycopg2.connect(own_stack.dsn(side, dbname="postgres")) as conn, conn.cursor() as cur:
            cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
            assert cur.fetchone()[0] == verifiers[role]
    with psycopg2.connect(own_stack.dsn("router")) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")  # through PgBouncer, with SCRAM pass-through
        assert cur.fetchone()[0] == APP_USER
    own_stack.up(bootstrap=False)
    assert router.verifiers() == verifiers  # a running PgBouncer keeps what it loaded


def test_the_server_and_python_agree_on_scram(own_stack):
    with psycopg2.connect(own_stack.dsn("source", dbname="postgres")) as conn, conn.cursor() as cur:
        cur.execute("CREATE ROLE scram_probe PASSWORD 'pa55-word_~'")
        try:
            cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_probe'")
            stored = cur.fetchone()[0]
        finally:
            cur.execute("DROP ROLE scram_probe")
    assert scram.verifies(stored, "pa55-word_~") and not scram.verifies(stored, "pa55-word")


def test_files_holding_local_credentials_are_0600(own_stack):
    for name in ROUTERS:
        router, agent = own_stack.router(name), own_stack.agent(name)
        for path in (own_stack.secrets_file, own_stack.passfile, router.auth_file, router.hba_file, router.ini,
                     router.databases_file, agent.key_file, agent.config_file):
            assert path.stat().st_mode & 0o777 == 0o600, path


def test_down_leaves_no_process_of_ours(own_stack):
    pids = {**_pids(own_stack), **{f"{n} agent": own_stack.agent(n).pid() for n in ROUTERS}}
    lines = own_stack.down()
    assert len(lines) == 7  # moto, two routers and their agents, two clusters
    for comp, pid in pids.items():
        assert not proc.pid_alive(pid), f"{comp} (pid {pid}) still running"
    assert all(not r.healthy for r in own_stack.status())
    assert own_stack.down() == ["nothing of ours was running"]
    own_stack.up()  # leave it up for the fixture's own purge
