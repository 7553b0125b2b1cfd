"""The write switch, as one function run while clients are held by PgBouncer's ``PAUSE``.

Between ``PAUSE`` and ``RESUME`` every application write waits, so the steps that need writes
stopped run here back to back, in one process, with their durations recorded:

    pause -> freeze_source -> drain -> sync_sequences -> verify -> reverse -> repoint -> resume

(``reverse`` starts target-to-source replication before the first write reaches the target, so
a fallback loses nothing.) Any failure before ``resume`` aborts: the route is put back on the
source, the source unfrozen, and clients resumed there; nothing is lost and the error is
re-raised for the caller to report. :func:`switch_back` is the same in the other direction, for a
rollback after a cutover.

Checkpoints are written by the caller after ``RESUME``: an S3 round trip inside the pause would
lengthen it for nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paymigrate.db import Endpoint
from paymigrate.errors import PaymigrateError
from paymigrate.freeze import freeze, unfreeze
from paymigrate.router import Route, RouterAdmin, read_routes, write_route

log = logging.getLogger(__name__)

SWITCH_STEPS = ("pause", "freeze_source", "drain", "sync_sequences", "verify", "reverse", "repoint",
                "resume")
BACK_STEPS = ("pause", "freeze_target", "drain_reverse", "sync_sequences", "repoint", "unfreeze_source",
              "resume", "stop_reverse")


class CutoverAborted(PaymigrateError):
    """The switch failed before clients were resumed on the new writer; they were resumed on the
    old one. ``result`` says which step failed and what the abort did."""

    def __init__(self, message: str, result: SwitchResult):
        super().__init__(message)
        self.result = result


class InjectedFailure(PaymigrateError):
    """A failure asked for by a drill (``fail_at``), to rehearse the abort path."""


@dataclass
class SwitchResult:
    direction: str
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    write_pause_seconds: float | None = None
    drain_position: str | None = None
    sequences: int = 0
    verified: dict[str, Any] = field(default_factory=dict)
    sessions_ended: int = 0
    failed_step: str | None = None
    error: str | None = None
    abort: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Switch:
    """What a switch needs: the two databases, the router, the engine and its limits."""

    source: Endpoint
    target: Endpoint
    router: RouterAdmin
    routes_file: Path
    database: str  # the router's database name the applications connect to
    engine: Any
    pause_timeout: float = 10.0  # how long in-flight transactions may take to finish
    drain_timeout: float = 10.0
    sequence_gap: int = 1000
    verify: Callable[[], dict[str, Any]] | None = None

    def route_to(self, ep: Endpoint) -> Route:
        return Route(self.database, ep.host, ep.port, ep.dbname)


class _Clock:
    def __init__(self, result: SwitchResult, fail_at: str | None, known: tuple[str, ...]):
        if fail_at is not None and fail_at not in known:
            raise ValueError(f"fail_at {fail_at!r} is not one of {', '.join(known)}")
        self.result, self.fail_at = result, fail_at

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        self.result.failed_step = name
        if self.fail_at == name:
            raise InjectedFailure(f"drill: failure injected at {name}")
        value = fn()
        self.result.steps[name] = round(time.monotonic() - started, 4)
        log.info("switch %s: %s done in %.0f ms", self.result.direction, name,
                 self.result.steps[name] * 1000)
        self.result.failed_step = None
        return value


def switch_writes(sw: Switch, *, fail_at: str | None = None) -> SwitchResult:
    """Move the writer from source to target. Returns timings; raises :class:`CutoverAborted`
    (with the source writable and clients resumed on it) if any step before ``resume`` fails."""
    result = SwitchResult(direction="source->target")
    clock = _Clock(result, fail_at, SWITCH_STEPS)
    paused_at = None
    repointed = reversed_ = False
    try:
        clock.step("pause", lambda: sw.router.pause(sw.database, timeout=sw.pause_timeout))
        paused_at = time.monotonic() - result.steps["pause"]
        result.sessions_ended = clock.step("freeze_source", lambda: freeze(sw.source)).sessions_ended
        position = clock.step("drain", lambda: _drain(sw, "forward", side="source"))
        result.drain_position = position
        result.sequences = len(clock.step("sync_sequences", lambda: sw.engine.sync_sequences(gap=sw.sequence_gap)))
        result.verified = clock.step("verify", lambda: sw.verify() if sw.verify else {"skipped": True})
        reversed_ = True
        clock.step("reverse", lambda: sw.engine.reverse(drained_to=position))
        repointed = True
        clock.step("repoint", lambda: _repoint(sw, sw.target))
        clock.step("resume", lambda: sw.router.resume(sw.database))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        if reversed_:
            # Forward replication was replaced by reverse: the target will not follow the
            # source any more, and the reverse subscription must not apply anything.
            result.abort.append("forward replication was dropped: run payment_migration again "
                                "before another cutover")
            _try(result, "stop reverse", lambda: sw.engine.stop(direction="reverse"))
        _abort(sw, result, paused=paused_at is not None, repointed=repointed, writer=sw.source,
               frozen=sw.source)
        result.write_pause_seconds = round(time.monotonic() - paused_at, 4) if paused_at else None
        raise CutoverAborted(f"cutover aborted at {result.failed_step}: {result.error}; "
                             f"writes resumed on the source", result) from exc
    result.write_pause_seconds = round(time.monotonic() - paused_at, 4)
    log.info("writer is now the target; write pause %.0f ms", result.write_pause_seconds * 1000)
    return result


def switch_back(sw: Switch, *, fail_at: str | None = None) -> SwitchResult:
    """After a cutover: move the writer back to the source once reverse replication has carried
    every write made on the target. Clients wait in ``PAUSE`` meanwhile."""
    result = SwitchResult(direction="target->source")
    clock = _Clock(result, fail_at, BACK_STEPS)
    paused_at = None
    repointed = False
    try:
        clock.step("pause", lambda: sw.router.pause(sw.database, timeout=sw.pause_timeout))
        paused_at = time.monotonic() - result.steps["pause"]
        result.sessions_ended = clock.step("freeze_target", lambda: freeze(sw.target)).sessions_ended
        result.drain_position = clock.step("drain_reverse", lambda: _drain(sw, "reverse", side="target"))
        result.sequences = len(clock.step(
            "sync_sequences", lambda: sw.engine.sync_sequences(gap=sw.sequence_gap, direction="reverse")))
        repointed = True
        clock.step("repoint", lambda: _repoint(sw, sw.source))
        clock.step("unfreeze_source", lambda: unfreeze(sw.source))
        clock.step("resume", lambda: sw.router.resume(sw.database))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        # Not back yet: the target stays the writer, as it was before the rollback began.
        _abort(sw, result, paused=paused_at is not None, repointed=repointed, writer=sw.target,
               frozen=sw.target)
        result.write_pause_seconds = round(time.monotonic() - paused_at, 4) if paused_at else None
        raise CutoverAborted(f"rollback aborted at {result.failed_step}: {result.error}; "
                             f"writes resumed on the target", result) from exc
    result.write_pause_seconds = round(time.monotonic() - paused_at, 4)
    # Clients write to the source again; reverse replication has nothing left to carry.
    clock.step("stop_reverse", lambda: sw.engine.stop(direction="reverse"))
    return result


def _drain(sw: Switch, direction: str, *, side: str) -> str:
    position = sw.engine.position(side=side)
    if not sw.engine.wait_drained(position, timeout=sw.drain_timeout, direction=direction):
        raise PaymigrateError(f"{direction} replication did not apply {position} within "
                              f"{sw.drain_timeout:.1f}s")
    return position


def _repoint(sw: Switch, writer: Endpoint) -> None:
    write_route(sw.routes_file, sw.route_to(writer))
    sw.router.reload()
    host, port = sw.router.route(sw.database)
    if (host, port) != (writer.host, writer.port):
        raise PaymigrateError(f"router still sends {sw.database} to {host}:{port} after RELOAD, "
                              f"not {writer.host}:{writer.port}")


def _abort(sw: Switch, result: SwitchResult, *, paused: bool, repointed: bool, writer: Endpoint,
           frozen: Endpoint) -> None:
    """Put writes back where they were. Each action is tried even if an earlier one fails, and
    each outcome is recorded: an operator reads exactly what state things are in."""
    log.error("switch %s failed at %s (%s): aborting", result.direction, result.failed_step, result.error)
    actions: list[tuple[str, Callable[[], Any]]] = []
    if repointed or read_routes(sw.routes_file).get(sw.database) != sw.route_to(writer):
        actions.append(("route back", lambda: _repoint(sw, writer)))
    actions.append(("unfreeze", lambda: unfreeze(frozen)))
    if paused:
        actions.append(("resume", lambda: sw.router.resume(sw.database)))
    for name, action in actions:
        _try(result, name, action)


def _try(result: SwitchResult, name: str, action: Callable[[], Any]) -> None:
    try:
        action()
        result.abort.append(f"{name}: ok")
    except Exception as exc:  # keep going: a resumed router matters more than a clean log
        result.abort.append(f"{name}: FAILED {type(exc).__name__}: {exc}")
        log.exception("abort step %s failed", name)
