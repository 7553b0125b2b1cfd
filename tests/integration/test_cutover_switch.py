"""The write switch on the real stand-ins: PgBouncer, two clusters, logical replication, and the
payment workload writing through the router the whole time.

Each test gets its own database pair (2000 seeded payments, forward replication streaming) and
its own entry in the router's ``[databases]`` file, so the stack's ``payments`` database and
route are never touched.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from conftest import create_database, drop_database
from conftest import sql_rows as _sql

from paymigrate.cutover import SWITCH_STEPS, CutoverAborted, Switch, switch_back, switch_writes
from paymigrate.demo.seed import TABLES, seed
from paymigrate.freeze import is_frozen, unfreeze
from paymigrate.local.stack import APP_USER
from paymigrate.replication.logical import LogicalEngine
from paymigrate.router import RouterAdmin, read_routes
from paymigrate.verify import row_counts_match
from paymigrate.workload import Workload, report

pytestmark = pytest.mark.integration

DROPPED = "forward replication was dropped"
KEPT = "forward replication kept"


@dataclass
class Pair:
    name: str
    switch: Switch
    engine: LogicalEngine
    source_dsn: str  # superuser, direct
    target_dsn: str
    app_source_dsn: str  # the application role, bypassing the router
    app_target_dsn: str
    router_dsn: str  # the application role, through the router
    target_port: int
    source_port: int


def _set_route_line(path: Path, name: str, line: str | None) -> None:
    """Add (or with None remove) this test's entry, keeping the file's owner and mode and every
    other line as it is."""
    st = path.stat()
    kept = [raw for raw in path.read_text().splitlines()
            if raw.split("=", 1)[0].strip() != name]
    if line is not None:
        kept.append(line)
    tmp = path.with_name(path.name + ".test")
    tmp.write_text("\n".join(kept) + "\n")
    os.chmod(tmp, st.st_mode & 0o777)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)


@pytest.fixture
def pair(stack):
    name = f"cut_{uuid.uuid4().hex[:10]}"
    routes = stack.router().databases_file
    admin = RouterAdmin(stack.endpoint("router-admin"))
    source, target = stack.endpoint("source", dbname=name), stack.endpoint("target", dbname=name)
    engine = LogicalEngine(source=source, target=target, name=name, poll=0.05)
    for side in ("source", "target"):
        create_database(stack, side, name)
    try:
        seed(dsn=stack.dsn("source", dbname=name), rows=2000, seed=7)
        engine.start()
        status = engine.wait_full_load(timeout=60, poll=0.2)
        assert status.full_load_done, status
        _set_route_line(routes, name, f"{name} = host=127.0.0.1 port={stack.port('source')} "
                                      f"dbname={name}")
        admin.reload()
        tables = [f"public.{t}" for t in TABLES]
        sw = Switch(source=source, target=target, router=admin, routes_file=routes, database=name,
                    engine=engine, pause_timeout=5.0, drain_timeout=10.0,
                    verify=partial(row_counts_match, source=source, target=target, tables=tables))
        yield Pair(name=name, switch=sw, engine=engine,
                   source_dsn=stack.dsn("source", dbname=name),
                   target_dsn=stack.dsn("target", dbname=name),
                   app_source_dsn=stack.dsn("source", user=APP_USER, dbname=name),
                   app_target_dsn=stack.dsn("target", user=APP_USER, dbname=name),
                   router_dsn=stack.dsn("router", dbname=name),
                   source_port=stack.port("source"), target_port=stack.port("target"))
    finally:
        admin.resume(name, quiet=True)
        for direction in ("reverse", "forward"):
            engine.drop(direction=direction)
        _set_route_line(routes, name, None)
        admin.reload()
        for ep in (source, target):
            unfreeze(ep)
        for side in ("target", "source"):
            drop_database(stack, side, name)


def _direct_write(dsn: str) -> None:
    """A write as the application role that bypasses the router."""
    _sql(dsn, "UPDATE accounts SET name = name WHERE id = (SELECT min(id) FROM accounts)")


def _events(dsn: str) -> int:
    return _sql(dsn, "SELECT count(*) FROM payment_events")[0][0]


def _wait_until(check, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.05)


def _assert_clean(rep, where: str) -> None:
    assert rep.committed > 0, f"the workload committed nothing ({where})"
    assert rep.lost == 0, f"{rep.lost} lost on the {where}: {rep.lost_examples}"
    assert rep.duplicated == 0, f"{rep.duplicated} duplicated on the {where}: {rep.duplicated_examples}"
    assert rep.invariants_ok, rep.invariants
    assert rep.read_mismatches == 0 and rep.unresolved == 0, rep


def _committing(wl: Workload, *, timeout: float = 10.0) -> None:
    before = wl.stats().committed
    _wait_until(lambda: wl.stats().committed >= before + 20, timeout=timeout,
                what="the workload commits again through the router")


def test_cutover_under_load_then_switch_back(pair, tmp_path):
    sw = pair.switch
    ledger = tmp_path / "workload"
    wl = Workload(dsn=pair.router_dsn, directory=ledger, clients=4, tps=100, seed=1).start()
    try:
        _committing(wl)
        result = switch_writes(sw)
        at_switch = wl.stats().committed
        assert sw.router.route(pair.name) == ("127.0.0.1", pair.target_port)
        assert read_routes(sw.routes_file)[pair.name].port == pair.target_port
        assert result.write_pause_seconds < 1.0, result.steps
        assert set(result.steps) == set(SWITCH_STEPS)
        assert result.verified["tables"] == len(TABLES)
        # Writes go on, on the target; the source is read-only to the application...
        _committing(wl)
        assert is_frozen(sw.source) and not is_frozen(sw.target)
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            _direct_write(pair.app_source_dsn)
        # ...yet reverse replication applies the target's new writes onto it.
        on_target = _events(pair.target_dsn)
        _wait_until(lambda: _events(pair.source_dsn) >= on_target, timeout=10,
                    what="reverse replication carries the target's writes to the frozen source")
    finally:
        wl.stop()
    assert wl.stats().committed > at_switch + 20
    _assert_clean(report(directory=ledger, against_dsn=pair.target_dsn), "target")

    wl = Workload(dsn=pair.router_dsn, directory=ledger, clients=4, tps=100, seed=2).start()
    try:
        _committing(wl)
        back = switch_back(sw)
        assert sw.router.route(pair.name) == ("127.0.0.1", pair.source_port)
        assert back.write_pause_seconds < 1.0, back.steps
        _committing(wl)
    finally:
        wl.stop()
    # Both runs are in the ledger: what was written on the target is on the source too.
    rep = report(directory=ledger, against_dsn=pair.source_dsn)
    assert rep.runs == 2
    _assert_clean(rep, "source")
    assert not is_frozen(sw.source) and is_frozen(sw.target)
    _direct_write(pair.app_source_dsn)
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        _direct_write(pair.app_target_dsn)
    assert pair.engine.status(direction="reverse").state == "stopped"


@pytest.mark.parametrize("step", SWITCH_STEPS)
def test_a_failure_at_any_step_aborts_with_writes_back_on_the_source(pair, tmp_path, step):
    sw = pair.switch
    ledger = tmp_path / "workload"
    wl = Workload(dsn=pair.router_dsn, directory=ledger, clients=4, tps=100, seed=3).start()
    try:
        _committing(wl)
        with pytest.raises(CutoverAborted) as caught:
            switch_writes(sw, fail_at=step)
        result = caught.value.result
        assert result.failed_step == step
        assert "InjectedFailure" in result.error
        assert not [a for a in result.abort if "FAILED" in a], result.abort
        assert sw.router.route(pair.name) == ("127.0.0.1", pair.source_port)
        assert read_routes(sw.routes_file)[pair.name].port == pair.source_port
        assert not sw.router.paused(pair.name)
        assert not is_frozen(sw.source)
        _direct_write(pair.app_source_dsn)
        _committing(wl)
    finally:
        wl.stop()
    _assert_clean(report(directory=ledger, against_dsn=pair.source_dsn), "source")

    # What the abort says about forward replication is what happened to it.
    forward = pair.engine.status(direction="forward").state
    if step in ("repoint", "resume"):  # reverse() ran: forward was replaced
        assert any(DROPPED in a for a in result.abort), result.abort
        assert forward == "absent"
        assert pair.engine.status(direction="reverse").state == "stopped"
    else:
        assert not any(DROPPED in a for a in result.abort), result.abort
        assert (step == "reverse") == any(KEPT in a for a in result.abort), result.abort
        assert forward in ("streaming", "starting"), forward
        assert pair.engine.status(direction="reverse").state == "absent"
    # The pause was recorded when clients were actually held.
    assert (result.write_pause_seconds is None) == (step == "pause")


def test_a_pause_blocked_by_an_open_transaction_times_out_and_aborts(pair, tmp_path):
    sw = replace(pair.switch, pause_timeout=1.0)
    ledger = tmp_path / "workload"
    blocker = psycopg2.connect(pair.router_dsn)
    wl = Workload(dsn=pair.router_dsn, directory=ledger, clients=4, tps=100, seed=4).start()
    try:
        _committing(wl)
        with blocker.cursor() as cur:  # a transaction left open holds its server connection
            cur.execute("UPDATE accounts SET name = name WHERE id = (SELECT max(id) FROM accounts)")
        started = time.monotonic()
        with pytest.raises(CutoverAborted) as caught:
            switch_writes(sw)
        elapsed = time.monotonic() - started
        result = caught.value.result
        assert result.failed_step == "pause"
        assert "within 1.0s" in result.error
        assert elapsed < sw.pause_timeout + 2.0, elapsed
        assert 1.0 <= result.write_pause_seconds < sw.pause_timeout + 2.0
        assert not sw.router.paused(pair.name)
        assert sw.router.route(pair.name) == ("127.0.0.1", pair.source_port)
        assert not is_frozen(sw.source)
        _committing(wl)
        # Nothing was frozen, so no session was ended: the long transaction is still there.
        blocker.commit()
    finally:
        wl.stop()
        blocker.close()
    _assert_clean(report(directory=ledger, against_dsn=pair.source_dsn), "source")
    assert pair.engine.status(direction="forward").state in ("streaming", "starting")
