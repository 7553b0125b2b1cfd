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

import psycopg2

from paymigrate.db import Endpoint, connection
from paymigrate.errors import PaymigrateError
from paymigrate.freeze import freeze, unfreeze
from paymigrate.router import Route, RouterAdmin, read_routes, write_route

log = logging.getLogger(__name__)

DRAIN_POLL = 0.02  # seconds between drain checks: every one of them is write pause
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
    paused_at: float | None = None
    frozen = repointed = reversed_ = False

    def pause() -> float:
        # Clients wait from the moment PAUSE is sent, also when it then times out.
        nonlocal paused_at
        paused_at = time.monotonic()
        return sw.router.pause(sw.database, timeout=sw.pause_timeout)

    def freeze_source() -> Any:
        nonlocal frozen
        frozen = True
        return freeze(sw.source)

    try:
        clock.step("pause", pause)
        result.sessions_ended = clock.step("freeze_source", freeze_source).sessions_ended
        position = clock.step("drain", lambda: _drain(sw, "forward", side="source"))
        result.drain_position = position
        result.sequences = len(clock.step("sync_sequences", lambda: sw.engine.sync_sequences(gap=sw.sequence_gap)))
        result.verified = clock.step("verify", lambda: sw.verify() if sw.verify else {"skipped": True})
        reversed_ = True
        # The drain step has just proved forward replication reached the freeze position.
        clock.step("reverse", lambda: sw.engine.reverse())
        repointed = True
        clock.step("repoint", lambda: _repoint(sw, sw.target))
        clock.step("resume", lambda: sw.router.resume(sw.database))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        if reversed_:
            # The reverse subscription must not apply anything; whether forward replication
            # survived depends on how far ``reverse`` got, so ask the engine.
            if _forward_gone(sw, result):
                result.abort.append("forward replication was dropped: run payment_migration again "
                                    "before another cutover")
            else:
                result.abort.append("forward replication kept: the target still follows the source")
            _try(result, "stop reverse", lambda: sw.engine.stop(direction="reverse"))
        _abort(sw, result, paused=paused_at is not None, repointed=repointed, writer=sw.source,
               frozen=sw.source if frozen else None)
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
    paused_at: float | None = None
    frozen = repointed = source_unfrozen = False

    def pause() -> float:
        nonlocal paused_at
        paused_at = time.monotonic()
        return sw.router.pause(sw.database, timeout=sw.pause_timeout)

    def freeze_target() -> Any:
        nonlocal frozen
        frozen = True
        return freeze(sw.target)

    def unfreeze_source() -> Any:
        nonlocal source_unfrozen
        source_unfrozen = True
        return unfreeze(sw.source)

    try:
        clock.step("pause", pause)
        result.sessions_ended = clock.step("freeze_target", freeze_target).sessions_ended
        result.drain_position = clock.step("drain_reverse", lambda: _drain(sw, "reverse", side="target"))
        result.sequences = len(clock.step(
            "sync_sequences", lambda: sw.engine.sync_sequences(gap=sw.sequence_gap, direction="reverse")))
        repointed = True
        clock.step("repoint", lambda: _repoint(sw, sw.source))
        clock.step("unfreeze_source", unfreeze_source)
        clock.step("resume", lambda: sw.router.resume(sw.database))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        # Not back yet: the target stays the writer, as it was before the rollback began, and
        # the source must stay read-only for writers that bypass the router.
        if source_unfrozen:
            _try(result, "freeze source again", lambda: freeze(sw.source))
        _abort(sw, result, paused=paused_at is not None, repointed=repointed, writer=sw.target,
               frozen=sw.target if frozen else None)
        result.write_pause_seconds = round(time.monotonic() - paused_at, 4) if paused_at else None
        raise CutoverAborted(f"rollback aborted at {result.failed_step}: {result.error}; "
                             f"writes resumed on the target", result) from exc
    result.write_pause_seconds = round(time.monotonic() - paused_at, 4)
    # Clients write to the source again; reverse replication has nothing left to carry.
    clock.step("stop_reverse", lambda: sw.engine.stop(direction="reverse"))
    return result


def _drain(sw: Switch, direction: str, *, side: str) -> str:
    """Wait until ``direction`` has applied everything ``side`` wrote up to now; return that
    position.

    Each check is preceded by a nudge. The subscriber applies with asynchronous commit and
    confirms only what its WAL writer has flushed (every 200 ms by default), and only when the
    publisher next sends it something: left alone, a drain costs 200 ms to a second of write
    pause. A transactional logical message (an empty commit with an xid would not be flushed at
    once: it writes no WAL) committed synchronously on the subscriber flushes what it applied;
    then one on the publisher makes the sender ask for a reply, which carries that flush. Output
    plugins that did not ask for messages (pgoutput by default) skip them. If the role may not
    emit messages, the drain still works, at the slower pace.
    """
    position = sw.engine.position(side=side)
    publisher, subscriber = (sw.source, sw.target) if side == "source" else (sw.target, sw.source)
    deadline = time.monotonic() + sw.drain_timeout
    with connection(subscriber, autocommit=True, application_name="paymigrate-drain") as sub, \
            connection(publisher, autocommit=True, application_name="paymigrate-drain") as pub:
        nudge = True
        while True:
            if nudge:
                try:
                    for conn in (sub, pub):
                        with conn.cursor() as cur:
                            cur.execute("SET synchronous_commit = on; "
                                        "SELECT pg_logical_emit_message(true, 'paymigrate-drain', '')")
                except psycopg2.Error as exc:
                    nudge = False
                    log.warning("drain: cannot nudge replication (%s); waiting for its own "
                                "feedback instead", str(exc).strip())
            if sw.engine.drained(position, direction=direction):
                return position
            if time.monotonic() >= deadline:
                raise PaymigrateError(f"{direction} replication did not apply {position} within "
                                      f"{sw.drain_timeout:.1f}s (lag {_lag(sw, direction)})")
            time.sleep(DRAIN_POLL)


def _lag(sw: Switch, direction: str) -> str:
    try:
        return str(sw.engine.lag(direction=direction))
    except Exception as exc:  # only for the message of the error being raised
        return f"unknown: {exc}"


def _forward_gone(sw: Switch, result: SwitchResult) -> bool:
    """Whether forward replication no longer runs after a failure in or after ``reverse``
    (assumed gone when the engine cannot say)."""
    try:
        return sw.engine.status(direction="forward").state in ("absent", "stopped")
    except Exception as exc:
        result.abort.append(f"forward replication state unknown: {type(exc).__name__}: {exc}")
        return True


def _repoint(sw: Switch, writer: Endpoint) -> None:
    write_route(sw.routes_file, sw.route_to(writer))
    sw.router.reload()
    host, port = sw.router.route(sw.database)
    if (host, port) != (writer.host, writer.port):
        raise PaymigrateError(f"router still sends {sw.database} to {host}:{port} after RELOAD, "
                              f"not {writer.host}:{writer.port}")


def _abort(sw: Switch, result: SwitchResult, *, paused: bool, repointed: bool, writer: Endpoint,
           frozen: Endpoint | None) -> None:
    """Put writes back where they were. Each action is tried even if an earlier one fails, and
    each outcome is recorded: an operator reads exactly what state things are in.

    ``frozen`` is None when the failure came before the freeze: unfreezing ends every client
    session of the writer, which would cut the in-flight transactions of a live database for
    nothing (a PAUSE timed out by a long transaction would also kill that transaction).
    """
    log.error("switch %s failed at %s (%s): aborting", result.direction, result.failed_step, result.error)
    actions: list[tuple[str, Callable[[], Any]]] = []
    if repointed or read_routes(sw.routes_file).get(sw.database) != sw.route_to(writer):
        actions.append(("route back", lambda: _repoint(sw, writer)))
    if frozen is not None:
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
