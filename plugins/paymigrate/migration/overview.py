"""The environment's current migration as the Migration page shows it: typed values read from the
lock, the phase checkpoints and the history documents (:mod:`paymigrate.migration.history`).

:func:`read` never raises for what is missing or unreadable: a page about a migration that
failed, or that never started, must still say so. Each part it could not read is named in
:attr:`Overview.problems`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from paymigrate.aws.checkpoints import CheckpointStore, Lock
from paymigrate.cutover.switch import SWITCH_STEPS
from paymigrate.migration import history
from paymigrate.migration.lock import LockState
from paymigrate.progress import Figures

PHASES = ("preparation", "replication", "validation", "cutover")  # the checkpoints, in order
DAG_OF_PHASE = {"preparation": "payment_migration", "replication": "payment_migration",
                "validation": "payment_migration", "cutover": "payment_cutover"}
# The steps between the first PAUSE and the last RESUME: the write pause.
PAUSED_STEPS = SWITCH_STEPS[SWITCH_STEPS.index("pause"):SWITCH_STEPS.index("resume") + 1]

SAYS = {
    None: "No migration has started in this environment: run payment_migration.",
    LockState.RUNNING: "The migration is running.",
    LockState.FAILED: "The migration failed. Fix the cause and trigger payment_migration again: it "
                      "resumes from its last checkpoint.",
    LockState.CUTOVER_READY: "Validated and streaming: ready for payment_cutover.",
    LockState.CUTTING_OVER: "The cutover is running.",
    LockState.CUT_OVER: "Cut over: the target is the writer; reverse replication runs for fallback.",
    LockState.ROLLED_BACK: "Rolled back: every client is on the source.",
}


def _when(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TableCopy:
    """One table's initial copy: rows and bytes done of the source's (estimated) totals."""

    table: str
    rows: int
    bytes: int
    rows_total: int | None
    bytes_total: int | None
    seconds: float
    done: bool

    @property
    def rows_per_second(self) -> float | None:
        return self.rows / self.seconds if self.seconds > 0 else None

    @property
    def bytes_per_second(self) -> float | None:
        return self.bytes / self.seconds if self.seconds > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        """Time left at this table's rate so far; 0 once copied, None when unknown."""
        if self.done:
            return 0.0
        rate = self.bytes_per_second
        if not rate or self.bytes_total is None:
            return None
        return max(self.bytes_total - self.bytes, 0) / rate


@dataclass(frozen=True)
class LagSample:
    at: datetime
    seconds: float | None
    bytes: int | None
    where: str


@dataclass(frozen=True)
class ValidationRun:
    finished: datetime | None
    where: str
    status: str
    tables: int | None
    rows: int | None
    mismatches: int | None
    seconds: float | None
    run_id: str
    dag_id: str
    report: str  # the report's key in the checkpoints bucket (under the environment)


@dataclass(frozen=True)
class CutoverStep:
    name: str
    start_ms: float  # from the start of the switch
    duration_ms: float
    in_pause: bool


@dataclass(frozen=True)
class Cutover:
    run_id: str
    saved: datetime | None
    steps: tuple[CutoverStep, ...]
    write_pause_ms: float | None
    budget_ms: float | None
    approved_by: str | None
    started_by: str | None
    failed_step: str | None = None


@dataclass(frozen=True)
class RunLink:
    dag_id: str
    run_id: str
    what: str  # which phases it saved, or "drives the migration now"


@dataclass(frozen=True)
class Overview:
    env: str
    read_at: datetime
    lock: Lock | None
    mode: str | None
    active_writer: str | None
    phases_done: tuple[str, ...]
    copy: tuple[TableCopy, ...] = ()
    copy_updated: datetime | None = None
    copy_overall: Figures | None = None  # every table together, as the copy measured it
    lag: tuple[LagSample, ...] = ()
    validations: tuple[ValidationRun, ...] = ()
    cutover: Cutover | None = None
    runs: tuple[RunLink, ...] = ()
    problems: tuple[str, ...] = field(default=())
    lock_dag_id: str | None = None  # the DAG whose run holds the lock now

    @property
    def state(self) -> LockState | None:
        return self.lock.state if self.lock else None

    @property
    def says(self) -> str:
        return SAYS[self.state]

    @property
    def failed(self) -> bool:
        return self.state is LockState.FAILED

    @property
    def phase(self) -> str:
        """The last phase checkpointed, or where the migration stands without one."""
        if self.lock is None:
            return "none"
        return self.phases_done[-1] if self.phases_done else "starting"


def copy_tables(doc: Mapping[str, Any] | None) -> tuple[TableCopy, ...]:
    return tuple(TableCopy(table=t["table"], rows=int(t.get("rows") or 0), bytes=int(t.get("bytes") or 0),
                           rows_total=t.get("rows_total"), bytes_total=t.get("bytes_total"),
                           seconds=float(t.get("seconds") or 0), done=bool(t.get("done")))
                 for t in (doc or {}).get("tables", []))


def copy_overall(doc: Mapping[str, Any] | None) -> Figures | None:
    o = (doc or {}).get("overall")
    if not o:
        return None
    return Figures(seconds=float(o.get("seconds") or 0), rows_done=o.get("rows_done"),
                   rows_total=o.get("rows_total"), bytes_done=o.get("bytes_done"),
                   bytes_total=o.get("bytes_total"))


def lag_samples(doc: Mapping[str, Any] | None) -> tuple[LagSample, ...]:
    out = []
    for s in (doc or {}).get("samples", []):
        at = _when(s.get("at"))
        if at is not None:
            out.append(LagSample(at=at, seconds=s.get("seconds"), bytes=s.get("bytes"),
                                 where=str(s.get("where", ""))))
    return tuple(sorted(out, key=lambda s: s.at))


def validation_runs(doc: Mapping[str, Any] | None) -> tuple[ValidationRun, ...]:
    """Newest first."""
    runs = [ValidationRun(finished=_when(r.get("finished")), where=str(r.get("where", "")),
                          status=str(r.get("status", "?")), tables=r.get("tables"), rows=r.get("rows"),
                          mismatches=r.get("mismatches"), seconds=r.get("seconds"),
                          run_id=str(r.get("run_id", "")), dag_id=str(r.get("dag_id", "")),
                          report=str(r.get("report", "")))
            for r in (doc or {}).get("runs", [])]
    return tuple(reversed(runs))


def cutover(doc: Mapping[str, Any] | None) -> Cutover | None:
    """The cutover checkpoint's switch as a timeline (steps in the order they ran)."""
    if not doc or not doc.get("write_switch"):
        return None
    switch = doc["write_switch"]
    steps, start = [], 0.0
    for name in SWITCH_STEPS:
        if name in (switch.get("steps") or {}):
            ms = float(switch["steps"][name]) * 1000
            steps.append(CutoverStep(name, round(start, 3), round(ms, 3), name in PAUSED_STEPS))
            start += ms
    pause = switch.get("write_pause_seconds")
    budget = switch.get("budget_seconds")
    return Cutover(run_id=str(doc.get("run_id", "")), saved=_when(doc.get("saved")), steps=tuple(steps),
                   write_pause_ms=None if pause is None else float(pause) * 1000,
                   budget_ms=None if budget is None else float(budget) * 1000,
                   approved_by=(doc.get("approve_cutover") or {}).get("by"),
                   started_by=(doc.get("preflight_cutover") or {}).get("approved_by"),
                   failed_step=switch.get("failed_step"))


def run_links(lock: Lock | None, phases: Mapping[str, Mapping[str, Any]]) -> tuple[RunLink, ...]:
    """Each DAG run that saved a checkpoint of this migration, and the one holding the lock."""
    found: dict[tuple[str, str], list[str]] = {}
    for phase, doc in phases.items():
        found.setdefault((DAG_OF_PHASE[phase], str(doc.get("run_id", ""))), []).append(phase)
    out = [RunLink(dag, run, "saved " + ", ".join(done)) for (dag, run), done in found.items() if run]
    if lock and lock.run_id not in {run for _, run in found}:
        out.append(RunLink(lock.dag_id, lock.run_id, f"holds the lock ({lock.state})"))
    return tuple(out)


def lock_dag(lock: Lock, phases: Mapping[str, Mapping[str, Any]]) -> str:
    """The DAG of the run holding the lock: the lock keeps the DAG that took it, while a cutover
    run moves it on under its own run id."""
    return next((DAG_OF_PHASE[p] for p, doc in phases.items() if doc.get("run_id") == lock.run_id),
                "payment_cutover" if lock.state in (LockState.CUTTING_OVER, LockState.CUT_OVER)
                else lock.dag_id)


def read(store: CheckpointStore, config: Mapping[str, Any] | None, *, now: datetime | None = None) -> Overview:
    """Everything the page shows; ``config`` is the contract (None when it could not be read)."""
    problems: list[str] = []

    def attempt(what: str, fn: Any, default: Any = None) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - named on the page instead
            problems.append(f"{what} not readable: {type(exc).__name__}: {str(exc).strip()[:200]}")
            return default

    lock = attempt("the migration lock", store.lock)
    phases: dict[str, dict[str, Any]] = {}
    if lock:
        for phase in PHASES:
            doc = attempt(f"the {phase} checkpoint",
                          lambda p=phase: store.load(migration_id=lock.migration_id, phase=p))
            if doc:
                phases[phase] = doc
    mid = lock.migration_id if lock else None
    copy_doc = attempt("the copy progress", lambda: store.get_doc(f"{mid}/{history.COPY}")) if mid else None
    lag_doc = attempt("the lag history", lambda: store.get_doc(f"{mid}/{history.LAG}")) if mid else None
    return Overview(
        env=store.env, read_at=now or datetime.now(UTC), lock=lock,
        mode=(config or {}).get("workflow/mode"), active_writer=(config or {}).get("database/active-writer"),
        phases_done=tuple(p for p in PHASES if p in phases),
        copy=copy_tables(copy_doc), copy_updated=_when((copy_doc or {}).get("updated")),
        copy_overall=copy_overall(copy_doc),
        lag=lag_samples(lag_doc),
        validations=validation_runs(attempt("the validation history", lambda: store.get_doc(history.VALIDATIONS))),
        cutover=cutover(phases.get("cutover")), runs=run_links(lock, phases),
        lock_dag_id=lock_dag(lock, phases) if lock else None,
        problems=tuple(problems) + (() if config is not None else ("the contract not readable",)))
