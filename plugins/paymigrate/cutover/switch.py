"""The write switch, as one function run while clients are held by ``PAUSE`` on every router.

Each PAUSE, repoint (through the router's route agent, :mod:`paymigrate.routing`) and RESUME goes
to all routers at once. Once every router took the new route the switch is committed: a router
that then fails to RESUME is reported, not routed back.

Between ``PAUSE`` and ``RESUME`` every application write waits, so only steps whose cost does not
depend on the size of the data run there, back to back, in one process, timed:

    prepare | pause -> freeze_source -> drain -> check_tables -> sync_sequences -> capture_reverse
            -> repoint -> resume

* ``prepare`` (before the pause): the fence triggers installed open on the source
  (:mod:`paymigrate.cutover.freeze`) and reverse replication prepared (its publication, no stale slot).
* ``freeze_source`` shuts the fence: from here no session but replication's may write there.
  A table too busy to fence before the pause is fenced here, once the router holds its clients.
* ``drain`` waits until the target applied the source's WAL position read after the freeze, and
  ``check_tables`` that every table of the migration is in the subscription and ready: together
  they prove the target complete by positions and catalog states, never by reading the data.
* ``capture_reverse`` fixes where reverse replication starts (a slot on the target) before the
  first write reaches the target, so none can escape it; the subscription that reads the slot is
  made after ``RESUME`` by the engine's ``attach_reverse`` (the cutover DAG's next task).

Row counts and content are proven outside the pause: by the validation before the cutover, and
by a full validation of the new writer against the old one after it (:mod:`paymigrate.cutover.after_switch`).

A budget bounds the pause: before each step the switch checks how long writes have waited, and
every wait inside is cut to what is left. A step that finds the budget spent aborts, naming
itself. Any failure before ``resume`` aborts: every router's route is put back on the source, the
source unfrozen, the reverse slot dropped, and every router resumed there; forward replication is never
touched, nothing is lost, and :class:`CutoverAborted` carries the typed result.
:func:`switch_back` is the same in the other direction, for a rollback after a cutover.

Checkpoints are written by the caller after ``RESUME``: an S3 round trip inside the pause would
lengthen it for nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from paymigrate.cutover.freeze import freeze, prepare_fence, unfreeze
from paymigrate.db import Endpoint, reuse
from paymigrate.errors import PaymigrateError
from paymigrate.replication.base import Direction, Engine, Side
from paymigrate.replication.ddl import raise_for_drift
from paymigrate.routing.fleet import FleetResult, RouterNode, next_generation, on_every
from paymigrate.routing.pgbouncer import Route, RouterError

log = logging.getLogger(__name__)

DRAIN_POLL = 0.01  # seconds between drain checks: every one of them is write pause
SWITCH_STEPS = ("prepare", "pause", "freeze_source", "drain", "check_tables", "sync_sequences",
                "capture_reverse", "repoint", "resume")
BACK_STEPS = ("prepare", "pause", "freeze_target", "drain_reverse", "sync_sequences", "repoint",
              "unfreeze_source", "resume", "stop_reverse")
# Steps that run once the writer moved: budget-free, and a failure there is not an abort.
_AFTER_RESUME = ("stop_reverse", "confirm")
# Seconds a router may take to answer a call that does not wait for clients (RESUME, a route).
ROUTER_TIMEOUT = 5.0
PAUSE_GRACE = 0.5  # past a PAUSE's own timeout, for the RESUME that undoes it
PAUSE_HOLD_MARGIN = 60.0  # seconds past the pause budget before a router resumes on its own


class CutoverAborted(PaymigrateError):
    """The switch failed before clients were resumed on the new writer; they were resumed on the
    old one. ``result`` says which step failed and what the abort did."""

    def __init__(self, message: str, result: SwitchResult):
        super().__init__(message)
        self.result = result


class InjectedFailure(PaymigrateError):
    """A failure asked for by a drill (``fail_at``), to rehearse the abort path."""


class PauseBudgetExceeded(PaymigrateError):
    """The write pause reached its budget before a step could run (or finish)."""


@dataclass
class SwitchResult:
    direction: str
    budget_seconds: float
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    write_pause_seconds: float | None = None
    drain_position: str | None = None
    reverse_position: str | None = None  # where reverse replication starts (source->target only)
    sequences: int = 0
    tables: int = 0
    sessions_ended: int = 0
    fenced: bool = False
    fenced_in_pause: list[str] = field(default_factory=list)  # tables too busy to fence before it
    routers: list[str] = field(default_factory=list)
    generation: int = 0  # the fence generation the routers' agents were told
    pause_per_router: dict[str, float] = field(default_factory=dict)  # seconds PAUSE took on each
    unresumed: list[str] = field(default_factory=list)  # RESUME failed after the switch committed
    unconfirmed: list[str] = field(default_factory=list)  # new route not confirmed to the agent
    failed_step: str | None = None
    budget_exceeded: bool = False
    error: str | None = None
    abort: list[str] = field(default_factory=list)

    @property
    def aborted(self) -> bool:
        return self.failed_step is not None

    @property
    def write_pause_ms(self) -> float:
        """The write pause in milliseconds (0 when writes were never paused)."""
        return (self.write_pause_seconds or 0.0) * 1000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Switch:
    """What a switch needs: the two databases, every router (console and route agent), the
    engine, the migration's tables (``schema.name``: what is fenced and must be replicated) and
    the limits."""

    source: Endpoint
    target: Endpoint
    routers: tuple[RouterNode, ...]
    database: str  # the routers' database name the applications connect to
    engine: Engine
    tables: tuple[str, ...] = ()
    max_write_pause: float = 0.5  # seconds from PAUSE sent to RESUME answered
    pause_timeout: float = 10.0  # how long in-flight transactions may take (within the budget)
    drain_timeout: float = 10.0
    sequence_gap: int = 1000

    def __post_init__(self) -> None:
        if not self.routers:
            raise ValueError("the switch needs at least one router: none given")
        if not 0 < self.max_write_pause <= 600:
            raise ValueError(f"max_write_pause {self.max_write_pause!r} must be over 0 and at "
                             "most 600 seconds")

    def route_to(self, ep: Endpoint) -> Route:
        return Route(self.database, ep.host, ep.port, ep.dbname)

    def check_tables_given(self) -> None:
        if not self.tables:
            raise ValueError("the switch needs the migration's tables (to fence and to check): "
                             "none given")


class _Clock:
    """Runs the steps: records each one's time, injects a drill's failure, and holds the pause to
    its budget (``left()`` is what a waiting step may still use)."""

    def __init__(self, result: SwitchResult, fail_at: str | None, known: tuple[str, ...]):
        if fail_at is not None and fail_at not in known:
            raise ValueError(f"fail_at {fail_at!r} is not one of {', '.join(known)}")
        self.result, self.fail_at = result, fail_at
        self.paused_at: float | None = None

    def left(self) -> float:
        if self.paused_at is None:
            return self.result.budget_seconds
        return self.result.budget_seconds - (time.monotonic() - self.paused_at)

    def paused(self) -> float | None:
        return None if self.paused_at is None else self.since_pause()

    def since_pause(self) -> float:
        """Seconds writes have waited: only once the pause step ran."""
        if self.paused_at is None:
            raise RuntimeError("the switch has not paused writes")
        return round(time.monotonic() - self.paused_at, 4)

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        self.result.failed_step = name
        if self.paused_at is not None and name not in _AFTER_RESUME and self.left() <= 0:
            self.result.budget_exceeded = True
            raise PauseBudgetExceeded(
                f"write pause budget of {self.result.budget_seconds * 1000:.0f} ms spent before "
                f"{name} ({self.since_pause() * 1000:.0f} ms paused)")
        if self.fail_at == name:
            raise InjectedFailure(f"drill: failure injected at {name}")
        if name == "pause":
            self.paused_at = started  # clients wait from the moment PAUSE is sent
        try:
            value = fn()
        except _Overrun as exc:
            self.result.budget_exceeded = True
            raise PauseBudgetExceeded(f"write pause budget of {self.result.budget_seconds * 1000:.0f} "
                                      f"ms ran out during {name}: {exc}") from None
        except Exception as exc:
            # A call bounded by what was left of the budget (the routers' repoint) fails by
            # timing out: that is the budget running out, and the abort says so. PAUSE itself
            # waits on the routers' own pause_timeout: a router not answering it is named as such.
            if (self.paused_at is not None and name not in _AFTER_RESUME and name != "pause"
                    and self.left() <= 0):
                self.result.budget_exceeded = True
                raise PauseBudgetExceeded(f"write pause budget of {self.result.budget_seconds * 1000:.0f}"
                                          f" ms ran out during {name}: {exc}") from None
            raise
        self.result.steps[name] = round(time.monotonic() - started, 4)
        log.info("switch %s: %s done in %.0f ms", self.result.direction, name,
                 self.result.steps[name] * 1000)
        self.result.failed_step = None
        return value


class _Overrun(PaymigrateError):
    """A wait inside the pause was cut short by the budget (turned into PauseBudgetExceeded)."""


def switch_writes(sw: Switch, *, fail_at: str | None = None) -> SwitchResult:
    """Move the writer from source to target. Returns the typed result; raises
    :class:`CutoverAborted` (with the source writable and clients resumed on it) if any step
    before ``resume`` fails. Reverse replication is then attached by ``engine.attach_reverse``."""
    sw.check_tables_given()
    # Connections opened before the pause serve every statement inside it (db.reuse).
    with reuse(sw.source, sw.target):
        return _switch_writes(sw, fail_at)


def _switch_writes(sw: Switch, fail_at: str | None) -> SwitchResult:
    result = SwitchResult(direction="source->target", budget_seconds=sw.max_write_pause,
                          tables=len(sw.tables), routers=[n.name for n in sw.routers])
    clock = _Clock(result, fail_at, SWITCH_STEPS)
    frozen = captured = repointed = False

    def prepare() -> None:
        raise_for_drift(sw.engine)  # a schema change not carried: no cutover, the source stays writer
        result.generation = _generation(sw)
        result.fenced_in_pause = prepare_fence(sw.source, sw.tables)
        sw.engine.prepare_reverse()

    def freeze_source() -> Any:
        nonlocal frozen
        frozen = True
        return freeze(sw.source, fence_tables=result.fenced_in_pause,
                      lock_timeout=_budgeted(clock, sw.pause_timeout))

    def capture() -> str:
        nonlocal captured
        captured = True
        return sw.engine.capture_reverse(timeout=_budgeted(clock, sw.drain_timeout))

    try:
        clock.step("prepare", prepare)
        clock.step("pause", lambda: _pause(sw, clock, result))
        frozen_result = clock.step("freeze_source", freeze_source)
        result.sessions_ended, result.fenced = frozen_result.sessions_ended, frozen_result.fenced
        result.drain_position = clock.step("drain", lambda: _drain(sw, clock, "forward", side="source"))
        clock.step("check_tables", lambda: sw.engine.check_tables(list(sw.tables)))
        result.sequences = len(clock.step("sync_sequences", lambda: sw.engine.sync_sequences(gap=sw.sequence_gap)))
        result.reverse_position = clock.step("capture_reverse", capture)
        repointed = True
        clock.step("repoint", lambda: _repoint(sw, sw.target, result.generation, clock))
        # Every router took the new route: the switch is committed from here (_resume_all).
        clock.step("resume", lambda: _resume_all(sw, result))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        if captured:
            # Nothing may ever read a slot whose writes the source already has.
            _try(result, "drop reverse slot", sw.engine.release_reverse)
        _abort(sw, result, paused=clock.paused_at is not None, repointed=repointed,
               writer=sw.source, frozen=sw.source if frozen else None)
        result.write_pause_seconds = clock.paused()
        result.abort.append("forward replication kept: the target still follows the source")
        raise CutoverAborted(f"cutover aborted at {result.failed_step}: {result.error}; "
                             f"writes resumed on the source", result) from exc
    result.write_pause_seconds = pause = clock.since_pause()
    clock.step("confirm", lambda: _confirm_all(sw, result))
    log.info("writer is now the target; write pause %.0f ms (budget %.0f ms)",
             pause * 1000, sw.max_write_pause * 1000)
    return result


def switch_back(sw: Switch, *, fail_at: str | None = None) -> SwitchResult:
    """After a cutover: move the writer back to the source once reverse replication has carried
    every write made on the target. Clients wait in ``PAUSE`` meanwhile."""
    sw.check_tables_given()
    with reuse(sw.source, sw.target):
        return _switch_back(sw, fail_at)


def _switch_back(sw: Switch, fail_at: str | None) -> SwitchResult:
    result = SwitchResult(direction="target->source", budget_seconds=sw.max_write_pause,
                          tables=len(sw.tables), routers=[n.name for n in sw.routers])
    clock = _Clock(result, fail_at, BACK_STEPS)
    frozen = repointed = source_unfrozen = False

    def prepare() -> None:
        # A cutover whose attach_reverse never ran: its slot holds every target write, attach now.
        sw.engine.attach_reverse()
        result.generation = _generation(sw)
        result.fenced_in_pause = prepare_fence(sw.target, sw.tables)

    def freeze_target() -> Any:
        nonlocal frozen
        frozen = True
        return freeze(sw.target, fence_tables=result.fenced_in_pause,
                      lock_timeout=_budgeted(clock, sw.pause_timeout))

    def unfreeze_source() -> Any:
        nonlocal source_unfrozen
        source_unfrozen = True
        return unfreeze(sw.source)

    try:
        clock.step("prepare", prepare)
        clock.step("pause", lambda: _pause(sw, clock, result))
        frozen_result = clock.step("freeze_target", freeze_target)
        result.sessions_ended, result.fenced = frozen_result.sessions_ended, frozen_result.fenced
        result.drain_position = clock.step("drain_reverse",
                                           lambda: _drain(sw, clock, "reverse", side="target"))
        result.sequences = len(clock.step(
            "sync_sequences", lambda: sw.engine.sync_sequences(gap=sw.sequence_gap, direction="reverse")))
        repointed = True
        clock.step("repoint", lambda: _repoint(sw, sw.source, result.generation, clock))
        clock.step("unfreeze_source", unfreeze_source)
        clock.step("resume", lambda: _resume_all(sw, result))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        # Not back yet: the target stays the writer, as it was before the rollback began, and
        # the source must stay fenced for writers that bypass the router.
        if source_unfrozen:
            _try(result, "freeze source again", lambda: freeze(sw.source))
        _abort(sw, result, paused=clock.paused_at is not None, repointed=repointed,
               writer=sw.target, frozen=sw.target if frozen else None)
        result.write_pause_seconds = clock.paused()
        raise CutoverAborted(f"rollback aborted at {result.failed_step}: {result.error}; "
                             f"writes resumed on the target", result) from exc
    result.write_pause_seconds = clock.paused()
    clock.step("confirm", lambda: _confirm_all(sw, result))
    # Clients write to the source again; reverse replication has nothing left to carry.
    clock.step("stop_reverse", lambda: sw.engine.stop(direction="reverse"))
    return result


def _budgeted(clock: _Clock, limit: float) -> float:
    """``limit`` cut to what is left of the pause budget (at least 1 ms, so a call can fail)."""
    return max(min(limit, clock.left()), 0.001)


def _pause(sw: Switch, clock: _Clock, result: SwitchResult) -> float:
    """PAUSE on every router at once. One that refuses, or does not answer within the budget
    left, aborts the switch (the abort resumes them all)."""
    timeout = _budgeted(clock, sw.pause_timeout)
    # Each PAUSE gives up (and RESUMEs) at ``timeout``; the fleet's wait is the backstop for a
    # router whose console does not even answer that RESUME.
    # The hold outlasts any pause this switch can take; it only ends a dead switch's pause.
    hold = sw.max_write_pause + PAUSE_HOLD_MARGIN
    done = on_every(sw.routers, "PAUSE", lambda n: n.console.pause(sw.database, timeout=timeout, hold=hold),
                    timeout=timeout + PAUSE_GRACE)
    result.pause_per_router = done.per_router()
    if not done.ok:
        message = done.message()
        if timeout < sw.pause_timeout and clock.left() <= 0:
            raise _Overrun(message)
        raise RouterError(message)
    return done.slowest


def _drain(sw: Switch, clock: _Clock, direction: Direction, *, side: Side) -> str:
    """Wait until ``direction`` has applied everything ``side`` wrote up to now; return that
    position. The engine's catch-up waits (and nudges replication to answer sooner), checking
    every ``DRAIN_POLL`` seconds, cut to the budget left: a wait the budget cut short is an
    overrun, one that ran its full ``drain_timeout`` a plain failure."""
    position = sw.engine.position(side=side)
    limit = _budgeted(clock, sw.drain_timeout)
    if sw.engine.catch_up(position, limit, direction=direction, poll=DRAIN_POLL):
        return position
    message = (f"{direction} replication did not apply {position} within {limit:.3f}s "
               f"(lag {_lag(sw, direction)})")
    if limit < sw.drain_timeout:
        raise _Overrun(message)
    raise PaymigrateError(message)


def _lag(sw: Switch, direction: Direction) -> str:
    try:
        return str(sw.engine.lag(direction=direction))
    except Exception as exc:  # only for the message of the error being raised
        return f"unknown: {exc}"


def _generation(sw: Switch) -> int:
    """Ask every agent (before the pause: an unreachable one stops the switch here, for free)."""
    states = on_every(sw.routers, "route agent state", lambda n: n.agent.state(timeout=ROUTER_TIMEOUT),
                      timeout=ROUTER_TIMEOUT)
    if not states.ok:
        raise RouterError(states.message())
    return next_generation(int(a.value["generation"]) for a in states.answers)


def _repoint(sw: Switch, writer: Endpoint, generation: int, clock: _Clock | None = None) -> None:
    """Every router's agent writes ``writer`` into its route file and RELOADs; each checks its
    PgBouncer took it. Clients must be held (PAUSE) meanwhile: the agents refuse otherwise."""
    limit = ROUTER_TIMEOUT if clock is None else _budgeted(clock, ROUTER_TIMEOUT)
    done = repoint(sw.routers, Route(sw.database, writer.host, writer.port, writer.dbname),
                   generation=generation, timeout=limit)
    if not done.ok:
        raise RouterError(done.message())


def repoint(routers: tuple[RouterNode, ...], route: Route, *, generation: int,
            timeout: float = ROUTER_TIMEOUT) -> FleetResult:
    return on_every(routers, "route", lambda n: n.agent.set_route(
        route, generation=generation, timeout=timeout), timeout=timeout)


def _resume_all(sw: Switch, result: SwitchResult) -> None:
    """RESUME every router. Past the commit point (every router took the new route) a router
    that fails to resume is reported, not aborted: another one may already have let writes reach
    the new writer, and routing back would lose them."""
    done = on_every(sw.routers, "RESUME", lambda n: n.console.resume(sw.database), timeout=ROUTER_TIMEOUT)
    result.unresumed = list(done.failed)
    if not done.ok:
        log.error("%s; their clients wait until they are resumed by hand", done.message())


def _confirm_all(sw: Switch, result: SwitchResult) -> None:
    """Make the new route permanent on every agent (a host restarting before this comes back on
    the old writer, which is fenced)."""
    done = on_every(sw.routers, "confirm", lambda n: n.agent.confirm(
        sw.database, generation=result.generation, timeout=ROUTER_TIMEOUT), timeout=ROUTER_TIMEOUT)
    result.unconfirmed = list(done.failed)
    if not done.ok:
        log.error("%s", done.message())


def routes_of(routers: tuple[RouterNode, ...], database: str) -> FleetResult:
    """Where each router sends ``database`` now, as its PgBouncer reports it: ``(host, port)``."""
    return on_every(routers, "SHOW DATABASES", lambda n: n.console.route(database), timeout=ROUTER_TIMEOUT)


def routed_to(routers: tuple[RouterNode, ...], database: str, endpoint: Endpoint) -> tuple[str, ...]:
    """The routers whose PgBouncer sends ``database`` to ``endpoint`` now. After a switch whose
    process died, any router on the target means the target may hold writes the source lacks:
    only a switch back (reverse replication drained) may undo it, never a plain repoint."""
    where = routes_of(routers, database)
    if not where.ok:
        raise RouterError(where.message())
    return tuple(a.router for a in where.answers if tuple(a.value) == (endpoint.host, endpoint.port))


def route_writes_to(routers: tuple[RouterNode, ...], database: str, writer: Endpoint, *,
                    pause_timeout: float = 30.0) -> bool:
    """Outside a switch (a rollback's last word on routing): make every client of ``database``
    reach ``writer``, and resume every router. Only a switch that failed half-way leaves a
    route elsewhere; then that router holds its clients (PAUSE) while its agent repoints it. A
    switch whose process died leaves its routers paused: they are resumed here, not when their
    hold runs out. Returns whether a route moved; raises if a router does not send ``database``
    to ``writer`` in the end, or cannot be resumed."""
    where = routes_of(routers, database)
    if not where.ok:
        raise RouterError(where.message())
    astray = tuple(n for n, a in zip(routers, where.answers, strict=True)
                   if tuple(a.value) != (writer.host, writer.port))
    if not astray:
        resumed = on_every(routers, "RESUME", lambda n: n.console.resume(database), timeout=ROUTER_TIMEOUT)
        if not resumed.ok:
            raise RouterError(resumed.message())
        return False
    states = on_every(routers, "route agent state", lambda n: n.agent.state(), timeout=ROUTER_TIMEOUT)
    if not states.ok:
        raise RouterError(states.message())
    generation = next_generation(int(a.value["generation"]) for a in states.answers)
    route = Route(database, writer.host, writer.port, writer.dbname)

    def move(node: RouterNode) -> None:
        node.console.pause(database, timeout=pause_timeout,
                           hold=pause_timeout + 2 * ROUTER_TIMEOUT + PAUSE_HOLD_MARGIN)
        try:
            node.agent.set_route(route, generation=generation)
            node.agent.confirm(database, generation=generation)
        finally:
            node.console.resume(database)

    done = on_every(astray, "route", move, timeout=pause_timeout + 2 * ROUTER_TIMEOUT)
    if not done.ok:
        raise RouterError(done.message())
    rest = tuple(n for n in routers if n not in astray)
    resumed = on_every(rest, "RESUME", lambda n: n.console.resume(database), timeout=ROUTER_TIMEOUT)
    if not resumed.ok:
        raise RouterError(resumed.message())
    return True


def _abort(sw: Switch, result: SwitchResult, *, paused: bool, repointed: bool, writer: Endpoint,
           frozen: Endpoint | None) -> None:
    """Put writes back where they were, on every router. Each action is tried even if an
    earlier one fails, and each outcome is recorded: an operator reads exactly what state things
    are in. A router that is down gets its route file put back by its agent, and reads it when it
    starts again.

    ``frozen`` is None when the failure came before the freeze: unfreezing ends every client
    session of the writer, which would cut the in-flight transactions of a live database for
    nothing (a PAUSE timed out by a long transaction would also kill that transaction).
    """
    log.error("switch %s failed at %s (%s): aborting", result.direction, result.failed_step, result.error)
    actions: list[tuple[str, Callable[[], Any]]] = []
    if repointed:
        actions.append(("route back", lambda: _repoint(sw, writer, result.generation)))
    if frozen is not None:
        actions.append(("unfreeze", lambda: unfreeze(frozen)))
    if paused:
        actions.append(("resume", lambda: _resume_or_raise(sw)))
    for name, action in actions:
        _try(result, name, action)


def _resume_or_raise(sw: Switch) -> None:
    done = on_every(sw.routers, "RESUME", lambda n: n.console.resume(sw.database), timeout=ROUTER_TIMEOUT)
    if not done.ok:
        raise RouterError(done.message())


def _try(result: SwitchResult, name: str, action: Callable[[], Any]) -> None:
    try:
        action()
        result.abort.append(f"{name}: ok")
    except Exception as exc:  # keep going: a resumed router matters more than a clean log
        result.abort.append(f"{name}: FAILED {type(exc).__name__}: {exc}")
        log.exception("abort step %s failed", name)
