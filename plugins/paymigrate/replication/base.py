"""What every replication engine answers, as plain types: no server, no Airflow.

The cutover and the rollback drive an engine through these calls only, so an operator can switch
``workflow/replication-engine`` between ``postgres-logical`` and ``dms`` without touching a DAG:

* migration: ``preflight`` -> ``start`` -> ``finish_full_load()`` until its status says
  ``full_load_done`` (or ``wait_full_load``) -> ``lag``;
* cutover: ``scope_tables()``; ``prepare_reverse()`` -> PAUSE writes -> source fenced ->
  ``pos = position(side="source")`` -> ``catch_up(pos, budget left)`` -> ``check_tables(scope)``
  -> ``sync_sequences()`` -> ``capture_reverse()`` while still paused (reverse replication starts
  there, before the first write reaches the target) -> repoint -> RESUME ->
  ``attach_reverse(from_position=...)``; after an abort inside the pause, ``release_reverse()``;
* rollback after a cutover: ``attach_reverse()`` (idempotent) -> PAUSE -> target fenced ->
  ``pos = position(side="target")`` -> ``catch_up(pos, ..., direction="reverse")`` ->
  ``sync_sequences(direction="reverse")`` -> repoint to the source -> RESUME -> ``stop("reverse")``;
* validation under live replication: ``catch_up(pos)`` before a difference is re-checked.

Every call inside the pause costs the same whatever the size of the data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from paymigrate.errors import PreflightError

if TYPE_CHECKING:
    from paymigrate.replication.ddl import Drift

Direction = Literal["forward", "reverse"]
Side = Literal["source", "target"]
DIRECTIONS: tuple[str, ...] = ("forward", "reverse")
SIDES: tuple[str, ...] = ("source", "target")

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def lsn_to_int(lsn: str) -> int:
    """A PostgreSQL LSN as a byte position: ``lsn_to_int("1/0000000A") == 4294967306``."""
    m = _LSN.match(lsn.strip()) if isinstance(lsn, str) else None
    if not m:
        raise ValueError(f"{lsn!r} is not a PostgreSQL WAL position (like 16/B374D848)")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def int_to_lsn(pos: int) -> str:
    """``int_to_lsn(4294967306) == "1/A"``: the inverse of :func:`lsn_to_int`."""
    if not isinstance(pos, int) or pos < 0 or pos >= 1 << 64:
        raise ValueError(f"{pos!r} is not a WAL byte position")
    return f"{pos >> 32:X}/{pos & 0xFFFFFFFF:X}"


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    return direction


def check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side {side!r} is not one of {', '.join(SIDES)}")
    return side


@dataclass(frozen=True)
class Problem:
    """One reason preflight refuses: ``table`` is ``schema.table``, or None for the server."""

    table: str | None
    reason: str

    def __post_init__(self) -> None:
        if not self.reason or not self.reason.strip():
            raise ValueError("a preflight problem needs a reason")

    def __str__(self) -> str:
        return f"{self.table}: {self.reason}" if self.table else self.reason


def raise_for_problems(problems: Iterable[Problem], *, engine: str = "replication") -> None:
    """Raise :class:`PreflightError` listing every problem, or return when there is none."""
    found = list(problems)
    if found:
        lines = "\n".join(f"  - {p}" for p in found)
        raise PreflightError(f"{engine} preflight refused, {len(found)} problem(s):\n{lines}")


# Receives an initial copy's figures (per table and overall) while it runs.
ProgressSink = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class StartResult:
    """What ``start`` did: ``created`` | ``resumed`` | ``already-running`` (idempotent reruns).
    ``copy``: the initial copy's figures when ``start`` copied the tables itself."""

    engine: str
    action: str
    detail: str = ""
    copy: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.action not in {"created", "resumed", "already-running"}:
            raise ValueError(f"start action {self.action!r} is not created, resumed or already-running")


@dataclass(frozen=True)
class ReplicationStatus:
    """A snapshot of one replication direction.

    ``state`` is engine-neutral: ``absent`` (nothing created), ``copying`` (initial load),
    ``streaming`` (full load done, changes applied), ``stopped``, ``failed``, or ``starting``.
    ``tables`` maps ``schema.table`` to the engine's own per-table state word.
    """

    state: str
    running: bool
    full_load_done: bool
    tables: Mapping[str, str] = field(default_factory=dict)
    tables_synced: int = 0
    tables_total: int = 0
    detail: str = ""

    STATES = ("absent", "starting", "copying", "streaming", "stopped", "failed")

    def __post_init__(self) -> None:
        if self.state not in self.STATES:
            raise ValueError(f"replication state {self.state!r} is not one of {', '.join(self.STATES)}")
        if not 0 <= self.tables_synced <= self.tables_total:
            raise ValueError(f"tables synced {self.tables_synced} is outside 0..{self.tables_total}")

    @property
    def progress(self) -> str:
        return f"{self.tables_synced}/{self.tables_total}"


@dataclass(frozen=True)
class Lag:
    """Replication lag. ``bytes`` is WAL not yet confirmed applied (None where the engine cannot
    see WAL, as with DMS); ``seconds`` is None when it cannot be known, and ``reason`` says why."""

    bytes: int | None
    seconds: float | None
    reason: str = ""
    source: str = ""  # where the seconds come from, for the logs

    def __post_init__(self) -> None:
        if self.bytes is not None and self.bytes < 0:
            raise ValueError(f"lag bytes {self.bytes} is negative")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError(f"lag seconds {self.seconds} is negative")
        if self.seconds is None and not self.reason:
            raise ValueError("lag without seconds needs a reason")

    def __str__(self) -> str:
        b = "?" if self.bytes is None else f"{self.bytes} bytes"
        s = f"{self.seconds:.1f}s" if self.seconds is not None else f"seconds unknown ({self.reason})"
        return f"{b}, {s}"


@dataclass(frozen=True)
class FullLoad:
    """What one :meth:`Engine.finish_full_load` call saw and did.

    ``status``: as read last (after the build, when there was one). ``repaired``: tables whose
    lost copy was started again. ``schema_statements``: statements of the deferred schema built
    by this call (0: nothing left to build); None when the call did not build, because the load
    was not done yet or it was not asked to.
    """

    status: ReplicationStatus
    repaired: tuple[str, ...] = ()
    schema_statements: int | None = None

    def __post_init__(self) -> None:
        if self.schema_statements is not None and self.schema_statements < 0:
            raise ValueError(f"schema statements {self.schema_statements} is negative")


class Engine(Protocol):
    """The interface both engines implement (see the module docstring for the call order).

    ``direction`` is ``forward`` (source to target) or ``reverse`` (target to source, after a
    cutover); ``side`` names a database. Positions are PostgreSQL WAL positions (``16/B374D848``)
    on the publisher of the direction. Each engine raises :class:`ReplicationError` naming what
    is wrong; a wait returns False when its time is up.
    """

    engine: str  # its name in workflow/replication-engine

    def preflight(self) -> list[Problem]:
        """Every reason to refuse the migration, each naming its table: nothing is changed."""
        ...

    def start(self, *, on_progress: ProgressSink | None = None) -> StartResult:
        """Start (or on a rerun resume) forward replication, full load included: idempotent.
        An engine that copies the tables itself reports its progress to ``on_progress``."""
        ...

    def status(self, *, direction: Direction = "forward") -> ReplicationStatus: ...

    def finish_full_load(self, *, build: bool = True) -> FullLoad:
        """One step toward a finished full load; call it until the status says
        ``full_load_done``. Repairs what the engine's copy left stuck, reads the status and,
        once every table is loaded and ``build`` is true, builds what was deferred past the
        copy (secondary indexes, constraints), once. With ``build=False`` it only repairs and
        reads: for a poller that must stay light (the triggerer)."""
        ...

    def wait_full_load(self, *, timeout: float, poll: float = 5.0) -> ReplicationStatus:
        """:meth:`finish_full_load` until done or ``timeout``; the last status."""
        ...

    def lag(self, *, direction: Direction = "forward") -> Lag: ...

    def position(self, *, side: Side = "source") -> str:
        """The current WAL position of ``side``."""
        ...

    def drained(self, position: str, *, direction: Direction = "forward") -> bool:
        """One check: the subscriber of ``direction`` has applied everything up to ``position``."""
        ...

    def catch_up(self, position: str, timeout: float = 60, *, direction: Direction = "forward",
                 poll: float | None = None) -> bool:
        """Wait until :meth:`drained` (checking every ``poll`` seconds, the engine's own pace
        when None, and doing whatever makes the answer come sooner); False once ``timeout``
        seconds pass first. The only wait for replication: validation and the cutover use it."""
        ...

    def stop(self, *, direction: Direction = "forward", timeout: float = 30) -> None:
        """Stop ``direction`` (idempotent); ``start`` resumes it without a new full load."""
        ...

    def scope_tables(self) -> list[str]:
        """``schema.name`` of every table the migration replicates."""
        ...

    def check_tables(self, tables: list[str]) -> None:
        """Raise naming each of ``tables`` not fully replicated; cheap (inside the pause)."""
        ...

    def schema_drift(self) -> list[Drift]:
        """Every schema difference in scope this engine would not carry (the cutover refuses
        while there is one); [] when the schemas agree."""
        ...

    def own_validation(self) -> dict[str, Any] | None:
        """The engine's own verdict on the rows it moved, labelled, for the validation report
        beside paymigrate's; None when the engine has none."""
        ...

    def prepare_reverse(self) -> None: ...

    def capture_reverse(self, *, timeout: float) -> str:
        """Inside the pause: fix where reverse replication starts; return that position."""
        ...

    def release_reverse(self) -> None:
        """Undo :meth:`capture_reverse` after an abort (idempotent)."""
        ...

    def attach_reverse(self, *, from_position: str | None = None) -> StartResult: ...

    def sync_sequences(self, *, gap: int = 1000,
                       direction: Direction = "forward") -> dict[str, int]:
        """Set every sequence of the subscriber to its publisher's value plus ``gap``."""
        ...
