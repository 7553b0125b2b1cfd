"""The write switch on the real stand-ins: PgBouncer, two clusters, logical replication, and the
payment workload writing through the router the whole time.

Each test gets its own database pair (2000 seeded payments, forward replication streaming) and
its own route on both routers (set through their route agents), so the stack's ``payments``
database and route are never touched. The workload spreads its clients over both routers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from dataclasses import dataclass, replace

import psycopg2
import psycopg2.errors
import pytest
from conftest import create_database, drop_replicated_pair
from conftest import sql_rows as _sql

from paymigrate.cutover.freeze import (
    FENCE_TRIGGER,
    is_fenced,
    is_frozen,
    prepare_fence,
    remove_fence,
    unfreeze,
)
from paymigrate.cutover.switch import (
    SWITCH_STEPS,
    CutoverAborted,
    Switch,
    SwitchResult,
    route_writes_to,
    routed_to,
    switch_back,
    switch_writes,
)
from paymigrate.replication.logical import LogicalEngine
from paymigrate_dev.demo.seed import TABLES, seed
from paymigrate_dev.local.stack import APP_USER
from paymigrate_dev.workload import Workload, report

pytestmark = pytest.mark.integration

KEPT = "forward replication kept"
# Generous: these tests prove what a switch does, not how fast (bench/cutover.py measures that);
# a 2-core CI machine running the workload must not abort them on the budget.
BUDGET = 5.0


@dataclass
class Pair:
    name: str
    switch: Switch
    engine: LogicalEngine
    source_dsn: str  # superuser, direct
    target_dsn: str
    app_source_dsn: str  # the application role, bypassing the router
    app_target_dsn: str
    router_dsn: str  # the application role, through the first router
    router_dsns: list[str]  # through each router
    target_port: int
    source_port: int


@pytest.fixture
def pair(stack):
    name = f"cut_{uuid.uuid4().hex[:10]}"
    routers = stack.router_nodes()
    source, target = stack.endpoint("source", dbname=name), stack.endpoint("target", dbname=name)
    engine = LogicalEngine(source=source, target=target, name=name, poll=0.05)
    for side in ("source", "target"):
        create_database(stack, side, name)
    try:
        seed(dsn=stack.dsn("source", dbname=name), rows=2000, seed=7)
        engine.start()
        status = engine.wait_full_load(timeout=60, poll=0.2)
        assert status.full_load_done, status
        stack.add_route(name)
        sw = Switch(source=source, target=target, routers=routers, database=name,
                    engine=engine, tables=tuple(engine.scope_tables()), max_write_pause=BUDGET,
                    pause_timeout=5.0, drain_timeout=10.0)
        yield Pair(name=name, switch=sw, engine=engine,
                   source_dsn=stack.dsn("source", dbname=name),
                   target_dsn=stack.dsn("target", dbname=name),
                   app_source_dsn=stack.dsn("source", user=APP_USER, dbname=name),
                   app_target_dsn=stack.dsn("target", user=APP_USER, dbname=name),
                   router_dsn=stack.dsn("router", dbname=name),
                   router_dsns=stack.app_dsns(dbname=name),
                   source_port=stack.port("source"), target_port=stack.port("target"))
    finally:
        drop_replicated_pair(stack, name, engine)


def _direct_write(dsn: str) -> None:
    """A write as the application role that bypasses the router."""
    _sql(dsn, "UPDATE accounts SET name = name WHERE id = (SELECT min(id) FROM accounts)")


def _aborts(sw: Switch) -> SwitchResult:
    with pytest.raises(CutoverAborted) as caught:
        switch_writes(sw)
    return caught.value.result


def _live(sw: Switch, name: str) -> set[tuple[str, int]]:
    """Where the routers send ``name`` now, as their PgBouncers report it."""
    return {tuple(n.console.route(name)) for n in sw.routers}


def _files(sw: Switch, name: str) -> set[str]:
    """What the routers' route files say for ``name``, as their agents report it."""
    return {n.agent.state()["routes"][name] for n in sw.routers}


def _paused(sw: Switch, name: str) -> bool:
    return any(n.console.paused(name) for n in sw.routers)


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
    wl = Workload(dsn=pair.router_dsns, directory=ledger, clients=4, tps=100, seed=1).start()
    try:
        _committing(wl)
        result = switch_writes(sw)
        at_switch = wl.stats().committed
        assert _live(sw, pair.name) == {("127.0.0.1", pair.target_port)}
        assert _files(sw, pair.name) == {f"127.0.0.1:{pair.target_port}/{pair.name}"}
        # Held to its budget (the switch's own promise); its length is the bench's to measure.
        assert not result.budget_exceeded and result.write_pause_seconds <= result.budget_seconds, result.steps
        assert set(result.steps) == {*SWITCH_STEPS, "confirm"}
        assert result.routers == ["router", "router-b"] and set(result.pause_per_router) == {"router", "router-b"}
        assert (result.unresumed, result.unconfirmed) == ([], [])
        assert all(not n.agent.state()["pending"] for n in sw.routers)
        assert (result.tables, result.fenced, result.aborted) == (len(TABLES), True, False)
        # Writes go on, on the target, held by the reverse slot until the subscription reads it.
        _committing(wl)
        assert pair.engine.attach_reverse(from_position=result.reverse_position).action == "created"
        assert pair.engine.attach_reverse().action == "already-running"
        # The source is fenced to the application...
        assert is_frozen(sw.source) and is_fenced(sw.source) and not is_frozen(sw.target)
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

    wl = Workload(dsn=pair.router_dsns, directory=ledger, clients=4, tps=100, seed=2).start()
    try:
        _committing(wl)
        back = switch_back(sw)
        assert _live(sw, pair.name) == {("127.0.0.1", pair.source_port)}
        assert not back.budget_exceeded and back.write_pause_seconds <= back.budget_seconds, back.steps
        _committing(wl)
    finally:
        wl.stop()
    # Both runs are in the ledger: what was written on the target is on the source too.
    rep = report(directory=ledger, against_dsn=pair.source_dsn)
    assert rep.runs == 2
    _assert_clean(rep, "source")
    assert not is_frozen(sw.source) and is_frozen(sw.target)
    assert not is_fenced(sw.source) and is_fenced(sw.target)
    _direct_write(pair.app_source_dsn)
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        _direct_write(pair.app_target_dsn)
    assert pair.engine.status(direction="reverse").state == "stopped"


# One step of each kind in make test (nothing held yet, held but not frozen, a reverse slot to
# drop, routes to move back); the others in make soak.
_FAILED_KINDS = ("prepare", "freeze_source", "capture_reverse", "repoint")


@pytest.mark.parametrize("step", [s if s in _FAILED_KINDS else pytest.param(s, marks=pytest.mark.soak)
                                  for s in SWITCH_STEPS])
def test_a_failure_at_any_step_aborts_with_writes_back_on_the_source(pair, tmp_path, step):
    sw = pair.switch
    ledger = tmp_path / "workload"
    wl = Workload(dsn=pair.router_dsns, directory=ledger, clients=4, tps=100, seed=3).start()
    try:
        _committing(wl)
        with pytest.raises(CutoverAborted) as caught:
            switch_writes(sw, fail_at=step)
        result = caught.value.result
        assert result.failed_step == step
        assert "InjectedFailure" in result.error
        assert not [a for a in result.abort if "FAILED" in a], result.abort
        assert _live(sw, pair.name) == {("127.0.0.1", pair.source_port)}
        assert _files(sw, pair.name) == {f"127.0.0.1:{pair.source_port}/{pair.name}"}
        assert not _paused(sw, pair.name)
        assert not is_frozen(sw.source)
        _direct_write(pair.app_source_dsn)
        _committing(wl)
    finally:
        wl.stop()
    _assert_clean(report(directory=ledger, against_dsn=pair.source_dsn), "source")

    # Forward replication goes on whatever step failed, and no reverse slot is left.
    assert KEPT in result.abort[-1], result.abort
    assert pair.engine.status(direction="forward").state in ("streaming", "starting")
    assert pair.engine.status(direction="reverse").state == "absent"
    assert not _sql(pair.target_dsn, "SELECT slot_name FROM pg_replication_slots")
    assert not is_fenced(sw.source)
    # The pause was recorded when clients were actually held.
    assert (result.write_pause_seconds is None) == (step in ("prepare", "pause"))


def test_a_pause_blocked_by_an_open_transaction_times_out_and_aborts(pair, tmp_path):
    sw = replace(pair.switch, pause_timeout=1.0, max_write_pause=BUDGET)
    ledger = tmp_path / "workload"
    blocker = psycopg2.connect(pair.router_dsn)
    wl = Workload(dsn=pair.router_dsns, directory=ledger, clients=4, tps=100, seed=4).start()
    try:
        _committing(wl)
        with blocker.cursor() as cur:  # a transaction left open holds its server connection
            cur.execute("SELECT count(*) FROM accounts")
        started = time.monotonic()
        with pytest.raises(CutoverAborted) as caught:
            switch_writes(sw)
        elapsed = time.monotonic() - started
        result = caught.value.result
        assert result.failed_step == "pause"
        assert "within 1.0s" in result.error
        assert elapsed < sw.pause_timeout + 2.0, elapsed
        assert 1.0 <= result.write_pause_seconds < sw.pause_timeout + 2.0
        assert not _paused(sw, pair.name)
        assert _live(sw, pair.name) == {("127.0.0.1", pair.source_port)}
        assert not is_frozen(sw.source) and not is_fenced(sw.source)
        _committing(wl)
        # Nothing was frozen, so no session was ended: the long transaction is still there.
        blocker.commit()
    finally:
        wl.stop()
        blocker.close()
    _assert_clean(report(directory=ledger, against_dsn=pair.source_dsn), "source")
    assert pair.engine.status(direction="forward").state in ("streaming", "starting")


def test_a_router_killed_inside_the_pause_aborts_with_both_routers_back_on_the_source(
        stack, pair, tmp_path):
    """router-b's PgBouncer dies once the fence is shut: its agent cannot make it take the new
    route, so the switch aborts. The other router is routed back and resumed; router-b's agent
    puts its route file back, and router-b, started again, reads the source from it."""
    victim = stack.router("router-b")
    pid = victim.pid()
    sw = replace(pair.switch, engine=_InsidePause(pair.engine, lambda: os.kill(pid, signal.SIGKILL)))
    source = ("127.0.0.1", pair.source_port)
    ledger = tmp_path / "workload"
    wl = Workload(dsn=pair.router_dsns, directory=ledger, clients=4, tps=100, seed=8).start()
    try:
        _committing(wl)
        result = _aborts(sw)
        assert result.failed_step == "repoint" and "router-b" in result.error, result
        assert "1 of 2 routers: router-b" in result.error, result.error
        # The live router is back on the source and resumed; the dead one could not be told.
        first = sw.routers[0]
        assert first.console.route(pair.name) == source and not first.console.paused(pair.name)
        failed = [a for a in result.abort if "FAILED" in a]
        assert all("router-b" in a and " router (" not in a for a in failed), result.abort
        assert _files(sw, pair.name) == {f"127.0.0.1:{pair.source_port}/{pair.name}"}
        assert not is_frozen(sw.source) and not is_fenced(sw.source)
        stack.up(bootstrap=False)  # router-b again, as its host's supervisor would restart it
        assert _live(sw, pair.name) == {source} and not _paused(sw, pair.name)
        _committing(wl)
    finally:
        wl.stop()
        if victim.pid() is None:
            stack.up(bootstrap=False)
    _assert_clean(report(directory=ledger, against_dsn=pair.source_dsn), "source")
    assert pair.engine.status(direction="forward").state in ("streaming", "starting")


def test_a_table_too_busy_to_fence_before_the_pause_is_fenced_inside_it(pair, tmp_path):
    """An open write transaction that bypasses the router holds its table: prepare leaves it, the
    freeze ends that session (its write is rolled back, never half-committed) and fences the
    table inside the pause."""
    ledger = tmp_path / "workload"
    blocker = psycopg2.connect(pair.app_source_dsn)
    wl = Workload(dsn=pair.router_dsns, directory=ledger, clients=4, tps=100, seed=6).start()
    try:
        _committing(wl)
        with blocker.cursor() as cur:
            cur.execute("UPDATE accounts SET name = 'never committed' "
                        "WHERE id = (SELECT max(id) FROM accounts)")
        result = switch_writes(pair.switch)
        assert result.fenced_in_pause == ["public.accounts"] and not result.aborted
        with pytest.raises(psycopg2.OperationalError):
            blocker.commit()
        assert _live(pair.switch, pair.name) == {("127.0.0.1", pair.target_port)}
        pair.engine.attach_reverse(from_position=result.reverse_position)
        _committing(wl)
    finally:
        wl.stop()
        blocker.close()
    _assert_clean(report(directory=ledger, against_dsn=pair.target_dsn), "target")
    assert not _sql(pair.source_dsn, "SELECT 1 FROM accounts WHERE name = 'never committed'")
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction, match="is fenced"):
        _sql(pair.app_source_dsn, "BEGIN READ WRITE; UPDATE accounts SET name = name; COMMIT")


class _InsidePause:
    """The real engine, with ``during()`` run inside the pause right after the fence shut (where
    ``check_tables`` runs): what a client can do to the old writer at that moment."""

    def __init__(self, engine: LogicalEngine, during):
        self._engine, self._during = engine, during

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def check_tables(self, tables):
        self._during()
        return self._engine.check_tables(tables)


_WRITES = {
    "SET default_transaction_read_only = off": [
        "SET default_transaction_read_only = off",
        "UPDATE accounts SET name = name WHERE id = (SELECT min(id) FROM accounts)"],
    "SET transaction_read_only = off": [
        "BEGIN", "SET transaction_read_only = off",
        "UPDATE accounts SET name = name WHERE id = (SELECT min(id) FROM accounts)"],
    "BEGIN READ WRITE": [
        "BEGIN READ WRITE", "DELETE FROM accounts WHERE id = -1"],  # no row: the statement is refused
    "SET ROLE": [
        "SET ROLE {other}", "SET default_transaction_read_only = off",
        "UPDATE accounts SET name = name WHERE id = (SELECT min(id) FROM accounts)"],
}


def _try_writes(dsn: str, other: str) -> dict[str, str]:
    """Each way to write, on a new connection each (a reconnect): the error class, or 'wrote'."""
    outcomes = {}
    for way, statements in _WRITES.items():
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for stmt in statements:
                    cur.execute(stmt.format(other=other))
                cur.execute("COMMIT")
            outcomes[way] = "wrote"
        except psycopg2.Error as exc:
            outcomes[way] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        finally:
            conn.close()
    return outcomes


@pytest.fixture
def other_role(pair):
    """A second application role the application role may SET ROLE to, with write grants."""
    role = f"{pair.name}_other"
    _sql(pair.source_dsn, f'CREATE ROLE "{role}"')
    _sql(pair.source_dsn, f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
    _sql(pair.source_dsn, f'GRANT "{role}" TO {APP_USER}')
    yield role
    _sql(pair.source_dsn, f'DROP OWNED BY "{role}"')
    _sql(pair.source_dsn, f'DROP ROLE "{role}"')


def test_the_fence_refuses_every_way_to_write_until_the_abort(pair, other_role):
    seen: dict[str, dict[str, str]] = {}

    def during() -> None:
        seen["app"] = _try_writes(pair.app_source_dsn, other_role)
        seen["superuser"] = _try_writes(pair.source_dsn, other_role)

    sw = replace(pair.switch, engine=_InsidePause(pair.engine, during))
    with pytest.raises(CutoverAborted) as caught:
        switch_writes(sw, fail_at="capture_reverse")
    assert caught.value.result.fenced
    for who in ("app", "superuser"):
        assert set(seen[who]) == set(_WRITES), seen
        for way, outcome in seen[who].items():
            # The fence itself refuses (not the read-only default a client may override).
            assert outcome.startswith("ReadOnlySqlTransaction") and "is fenced" in outcome, (who, way, outcome)
    # The abort opened the fence: the same ways write again.
    assert _try_writes(pair.app_source_dsn, other_role) == dict.fromkeys(_WRITES, "wrote")
    assert not is_fenced(sw.source) and not is_frozen(sw.source)


def test_reverse_replication_still_applies_onto_the_fenced_source(pair, tmp_path):
    """The one exception to the fence: the apply worker (session_replication_role = replica)."""
    result = switch_writes(pair.switch)
    assert is_fenced(pair.switch.source)
    before = _events(pair.source_dsn)
    _sql(pair.target_dsn, "INSERT INTO payment_events (payment_id, idempotency_key, kind) "
                          "SELECT id, 'test-' || id, 'test' FROM payments ORDER BY id LIMIT 3")
    pair.engine.attach_reverse(from_position=result.reverse_position)
    _wait_until(lambda: _events(pair.source_dsn) == before + 3, timeout=10,
                what="a write made on the target before attach_reverse reaches the fenced source")


def test_a_pause_budget_too_small_aborts_naming_the_step(pair, tmp_path):
    # 1 ms: no switch fits in it on any machine (PAUSE alone takes longer), so a step aborts.
    sw = replace(pair.switch, max_write_pause=0.001)
    ledger = tmp_path / "workload"
    wl = Workload(dsn=pair.router_dsns, directory=ledger, clients=4, tps=100, seed=5).start()
    try:
        _committing(wl)
        result = _aborts(sw)
        assert result.budget_exceeded and result.failed_step in SWITCH_STEPS, result
        assert "budget of 1 ms" in result.error and result.failed_step in result.error
        assert not [a for a in result.abort if "FAILED" in a], result.abort
        assert _live(sw, pair.name) == {("127.0.0.1", pair.source_port)}
        assert not _paused(sw, pair.name) and not is_fenced(sw.source)
        _direct_write(pair.app_source_dsn)
        _committing(wl)
    finally:
        wl.stop()
    _assert_clean(report(directory=ledger, against_dsn=pair.source_dsn), "source")
    assert pair.engine.status(direction="forward").state in ("streaming", "starting")


def test_schema_copies_leave_the_fence_behind(pair):
    from paymigrate.replication.schema import SchemaDump

    prepare_fence(pair.switch.source, pair.switch.tables)
    fenced = _sql(pair.source_dsn, "SELECT count(*) FROM pg_trigger WHERE tgname = %s", (FENCE_TRIGGER,))
    assert fenced[0][0] == len(TABLES)
    with SchemaDump(pair.switch.source) as dump:
        entries = dump.toc("pre-data") + dump.toc("post-data")
    assert entries and not [e for e in entries if FENCE_TRIGGER in e or "write_fence" in e], entries


def _switch_killed_at(sw: Switch, step: str) -> None:
    """``switch_writes`` in a child process that SIGKILLs itself as ``step`` begins: nothing of
    the switch's own (no abort, no finally) runs after that."""

    def child() -> None:
        import paymigrate.cutover.switch as cutover

        step_of = cutover._Clock.step

        def step_or_die(self, name, fn):
            if name == step:
                os.kill(os.getpid(), signal.SIGKILL)
            return step_of(self, name, fn)

        cutover._Clock.step = step_or_die
        switch_writes(sw)
        os._exit(3)  # the switch ran to its end: the kill never came

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL, proc.exitcode


# The three states a dead switch can leave, in make test; the other steps in make soak.
_KILLED_STATES = ("freeze_source", "resume", "confirm")


@pytest.mark.parametrize("step", [s if s in _KILLED_STATES else pytest.param(s, marks=pytest.mark.soak)
                                  for s in (*SWITCH_STEPS, "confirm")])
def test_a_switch_killed_at_a_step_is_put_right_by_the_rollback_steps(pair, tmp_path, step):
    """The states a dead switch can leave: nothing held yet (prepare, pause), routers paused on
    the source (freeze_source to repoint), routers moved to the target but still paused with the
    source frozen (resume), and the switch committed with clients writing on the target
    (confirm). The rollback's steps, in its order, bring every write back to the source: switch
    back when any router sends writes to the target (reverse replication drained first), then
    route and resume every router, then unfreeze."""
    steps = (*SWITCH_STEPS, "confirm")
    held = steps.index("pause") < steps.index(step) <= steps.index("resume")
    moved = steps.index(step) > steps.index("repoint")
    sw = pair.switch
    source = ("127.0.0.1", pair.source_port)
    ledger = tmp_path / "workload"
    wl = Workload(dsn=pair.router_dsns, directory=ledger, clients=4, tps=100, seed=11).start()
    try:
        _committing(wl)
        _switch_killed_at(sw, step)
        assert _paused(sw, pair.name) == held
        on_target = routed_to(sw.routers, pair.name, sw.target)
        assert bool(on_target) == moved
        if step == "confirm":
            _committing(wl)  # the switch was committed: writes land on the target
        # payment_rollback: switch_writes_to_source, route_traffic_to_source, unfreeze_source
        if on_target:
            back = switch_back(sw)
            assert back.direction == "target->source" and not back.aborted
        route_writes_to(sw.routers, pair.name, sw.source)
        unfreeze(sw.source)
        remove_fence(sw.source)
        assert _live(sw, pair.name) == {source} and not _paused(sw, pair.name)
        assert all(not n.agent.state()["pending"] for n in sw.routers)
        assert not is_frozen(sw.source) and not is_fenced(sw.source)
        _direct_write(pair.app_source_dsn)
        _committing(wl)
    finally:
        wl.stop()
    _assert_clean(report(directory=ledger, against_dsn=pair.source_dsn), "source")
