"""Faults during change data capture and during the drain, under the payment workload.

Each case kills something for real (a walsender terminated, a server SIGKILLed and started
again) while the workload writes to the source, then asks what an operator would: did
replication catch up by itself, and did the target end with every committed transaction once
(the workload's ledger) and the same rows as the source (validation)?
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from conftest import sql_rows as run

from paymigrate.demo.seed import seed
from paymigrate.replication import engine_for
from paymigrate.validation import validate
from paymigrate.workload import Workload, report

pytestmark = pytest.mark.integration


def _terminate_walsender(stack, slot: str) -> None:
    """End the walsender streaming ``slot`` (what a network cut or a failover does to it)."""
    deadline = time.monotonic() + 30
    while True:
        found = run(stack.dsn("source", dbname="postgres"),
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,))
        if found:
            return
        assert time.monotonic() < deadline, f"no walsender ever streamed slot {slot}"
        time.sleep(0.1)


def _crash(stack, side: str) -> None:
    """SIGKILL the server of ``side`` (crash recovery on restart), then start it again."""
    os.kill(stack.cluster(side).pid(), signal.SIGKILL)
    time.sleep(1)
    stack.up(bootstrap=False)


FAULTS = {
    "walsender-terminated": lambda stack, slot: _terminate_walsender(stack, slot),
    "target-crashed": lambda stack, slot: _crash(stack, "target"),
    "source-crashed": lambda stack, slot: _crash(stack, "source"),
}


@pytest.fixture
def streaming(stack, databases, tmp_path):
    """A seeded source replicating to its target, past the initial copy."""
    source_dsn, target_dsn = databases
    dbname = source_dsn.split("dbname=")[1].split()[0]
    seed(dsn=source_dsn, rows=500, seed=19)
    engine = engine_for("postgres-logical", source=stack.endpoint("source", dbname=dbname),
                        target=stack.endpoint("target", dbname=dbname), name=dbname, poll=0.2)
    assert engine.preflight() == []
    engine.start()
    assert engine.wait_full_load(timeout=120, poll=0.5).full_load_done
    yield engine, source_dsn, target_dsn, dbname
    engine.drop(direction="forward")


def _ends_whole(engine, source_dsn, target_dsn, folder) -> None:
    assert engine.catch_up(engine.position(), timeout=120), engine.lag()
    on_target = report(directory=folder, against_dsn=target_dsn)
    assert (on_target.lost, on_target.duplicated) == (0, 0), on_target.to_dict()
    assert on_target.committed > 0
    checked = validate(source=source_dsn, target=target_dsn)
    assert checked.status == "match", checked.to_dict()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_during_cdc_is_recovered_with_nothing_lost(stack, streaming, tmp_path, fault):
    engine, source_dsn, target_dsn, dbname = streaming
    work = Workload(dsn=source_dsn, directory=tmp_path, clients=2, tps=100, seed=23).start()
    try:
        time.sleep(1.5)
        FAULTS[fault](stack, dbname)
        time.sleep(2)  # writes go on (and retry across a source crash) while replication recovers
    finally:
        stats = work.stop()
    assert stats.committed > 0
    if fault == "source-crashed":  # the clients felt it, retried, and each outcome was settled
        assert stats.retries_by_kind.get("connection_lost") and stats.unresolved == 0, stats.to_dict()
    _ends_whole(engine, source_dsn, target_dsn, tmp_path)


def test_the_walsender_terminated_during_the_drain_still_drains(stack, streaming, tmp_path):
    engine, source_dsn, target_dsn, dbname = streaming
    work = Workload(dsn=source_dsn, directory=tmp_path, clients=2, tps=200, seed=29).start()
    try:
        time.sleep(1.5)
    finally:
        work.stop()
    position = engine.position()
    cut = threading.Timer(0.05, _terminate_walsender, (stack, dbname))
    cut.start()
    try:
        assert engine.catch_up(position, timeout=120), engine.lag()
    finally:
        cut.join()
    _ends_whole(engine, source_dsn, target_dsn, tmp_path)
