"""`paymigrate status` says where each router sends writes and where the migration stands.

The first router's route file is edited behind its agent's back here, on purpose: status must
show a file that differs from what PgBouncer does."""

from __future__ import annotations

import json

import pytest

from paymigrate.aws import contract
from paymigrate.aws.checkpoints import CheckpointStore
from paymigrate.routing.pgbouncer import Route, RouterAdmin, read_routes, write_route
from paymigrate_dev.cli import main
from paymigrate_dev.local.stack import DATABASE


@pytest.fixture
def routes(stack):
    """The route file and the router as they were, put back after the test."""
    path = stack.router().databases_file
    before = read_routes(path)[DATABASE]
    router = RouterAdmin(stack.endpoint("router-admin"))
    yield path, router
    write_route(path, before)
    router.reload()


def _store(stack):
    bucket = contract.read(stack.client("ssm"), stack.env)["storage/checkpoints-bucket"]
    return CheckpointStore(s3=stack.client("s3"), bucket=bucket, env=stack.env)


def _status(capsys, *args):
    code = main(["status", *args])
    out = capsys.readouterr().out
    return code, out


def test_status_names_the_server_writes_go_to_and_the_migration_lock(stack, routes, capsys):
    path, router = routes
    write_route(path, Route(DATABASE, "127.0.0.1", stack.port("source"), DATABASE))
    router.reload()
    store = _store(stack)
    assert store.lock() is None, "another test left a migration lock"
    code, out = _status(capsys, "--json")
    doc = json.loads(out)
    assert code == 0
    [payments] = [r for r in doc["migration"]["routes"] if r["database"] == DATABASE and r["router"] == "router"]
    assert (payments["server"], payments["port"], payments["file_says"]) == ("source", stack.port("source"), None)
    assert doc["migration"]["lock"] is None and doc["migration"]["phase"] == "preparation"

    store.acquire(run_id="manual__status_test", dag_id="payment_migration")
    store.set_state("cutover-ready")
    try:
        write_route(path, Route(DATABASE, "127.0.0.1", stack.port("target"), DATABASE))
        router.reload()
        code, out = _status(capsys)
        assert f"router database {DATABASE} -> target (127.0.0.1:{stack.port('target')})" in out
        assert "lock       cutover-ready (migration manual__status_test, payment_migration run" in out
        assert "migration  phase preparation, active writer source, 0% of reads" in out

        # The file edited but not yet applied: the live route is what clients get, and the
        # file's is shown beside it.
        write_route(path, Route(DATABASE, "127.0.0.1", stack.port("source"), DATABASE))
        code, out = _status(capsys, "--json")
        [payments] = [r for r in json.loads(out)["migration"]["routes"] if r["database"] == DATABASE and r["router"] == "router"]
        assert payments["server"] == "target"
        assert payments["file_says"] == f"127.0.0.1:{stack.port('source')}"
        assert json.loads(out)["migration"]["lock"]["state"] == "cutover-ready"
    finally:
        store.clear_lock()
