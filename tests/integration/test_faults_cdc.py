"""Faults during change data capture and during the drain, under the payment workload.

Each case kills something for real (a walsender terminated, a server SIGKILLed and started
again) while the workload writes to the source, then asks what an operator would: did
replication catch up by itself, and did the target end with every committed transaction once
(the workload's ledger) and the same rows as the source (validation)?
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest
from conftest import sql_rows as run

from paymigrate.cutover.freeze import is_fenced, is_frozen
from paymigrate.errors import ReplicationError
from paymigrate.replication import engine_for
from paymigrate.validation import validate
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.local.faults import FAULTS, inject, terminate_walsender
from paymigrate_dev.workload import Workload, report

pytestmark = pytest.mark.integration


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


# router-killed: the workload here writes to the source directly; the router has its own tests.
@pytest.mark.parametrize("fault", sorted(set(FAULTS) - {"router-killed"}))
def test_a_fault_during_cdc_is_recovered_with_nothing_lost(stack, streaming, tmp_path, fault):
    engine, source_dsn, target_dsn, dbname = streaming
    work = Workload(dsn=source_dsn, directory=tmp_path, clients=2, tps=100, seed=23).start()
    try:
        time.sleep(1.5)
        inject(fault, stack, dbname)
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
    cut = threading.Timer(0.05, terminate_walsender, (stack, dbname))
    cut.start()
    try:
        assert engine.catch_up(position, timeout=120), engine.lag()
    finally:
        cut.join()
    _ends_whole(engine, source_dsn, target_dsn, tmp_path)


@pytest.fixture
def small_target_disk(stack, databases):
    """The target database's files on a 24 MB filesystem of their own (a tmpfs tablespace):
    ``(source_dsn, target_dsn, dbname, mountpoint)``. Needs root to mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    source_dsn, target_dsn = databases
    dbname = source_dsn.split("dbname=")[1].split()[0]
    mount = stack.home / f"disk_{dbname}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        shutil.chown(mount, stack.user, stack.user)
        admin = stack.dsn("target", dbname="postgres")
        run(admin, f"CREATE TABLESPACE {dbname} LOCATION '{mount}'")
        run(admin, f"ALTER DATABASE {dbname} SET TABLESPACE {dbname}")
        yield source_dsn, target_dsn, dbname, mount
        run(admin, f"ALTER DATABASE {dbname} SET TABLESPACE pg_default")
        run(admin, f"DROP TABLESPACE {dbname}")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_the_target_out_of_disk_during_the_copy_fails_cleanly_and_a_rerun_finishes(stack, small_target_disk):
    source_dsn, target_dsn, dbname, mount = small_target_disk
    seed(dsn=source_dsn, rows=20000, seed=31)  # ~60 MB on disk: more than the target's 24 MB
    make = lambda: engine_for("postgres-logical", source=stack.endpoint("source", dbname=dbname),  # noqa: E731
                              target=stack.endpoint("target", dbname=dbname), name=dbname, poll=0.2)
    engine = make()
    try:
        with pytest.raises(ReplicationError, match=r"copying public\.\w+: .*No space left on device") as refused:
            engine.start()
        # The source is untouched: still writable by the application, nothing fenced or frozen.
        assert not is_frozen(stack.endpoint("source", dbname=dbname))
        assert not is_fenced(stack.endpoint("source", dbname=dbname))
        run(source_dsn, "UPDATE accounts SET name = name WHERE id = (SELECT min(id) FROM accounts)")
        # The operator frees space and runs it again: the copy starts over and ends whole.
        subprocess.run(["mount", "-o", "remount,size=400m", str(mount)], check=True)
        engine = make()
        assert engine.start().action == "created", refused.value
        assert engine.wait_full_load(timeout=120, poll=0.5).full_load_done
        assert engine.catch_up(engine.position(), timeout=60)
        assert validate(source=source_dsn, target=target_dsn).status == "match"
    finally:
        engine.drop(direction="forward")
