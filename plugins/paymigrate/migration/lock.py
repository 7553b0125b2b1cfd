"""The migration lock's states and the moves allowed between them, in one place.

The lock (``active.json`` in the checkpoints bucket) says which run drives the migration and
how far it got. Every move goes through :func:`check_move`; a move not listed here is a bug or
an operator's mistake, and is refused naming both states.

    (none) -> running                     payment_migration's preflight takes the lock
    running -> failed                     a migration run failed; the next run resumes it
    running -> cutover-ready              validated, lag under the threshold
    failed | cutover-ready | rolled-back -> running
                                          a migration run starts (resumes a failed one)
    cutover-ready -> cutting-over         payment_cutover's preflight
    cutting-over -> cut-over              the target is the writer
    cutting-over -> cutover-ready         the switch aborted back to the source
    any -> rolled-back                    payment_rollback routed every client to the source

A state may always be set again (a retried task), and nothing leaves ``cut-over`` but a
rollback: a new migration never starts while the target is the writer.
"""

from __future__ import annotations

from enum import StrEnum

from paymigrate.errors import Refused


class LockState(StrEnum):
    RUNNING = "running"
    FAILED = "failed"
    CUTOVER_READY = "cutover-ready"
    CUTTING_OVER = "cutting-over"
    CUT_OVER = "cut-over"
    ROLLED_BACK = "rolled-back"


S = LockState
MOVES: dict[LockState, frozenset[LockState]] = {
    S.RUNNING: frozenset({S.FAILED, S.CUTOVER_READY, S.ROLLED_BACK}),
    S.FAILED: frozenset({S.RUNNING, S.ROLLED_BACK}),
    S.CUTOVER_READY: frozenset({S.RUNNING, S.CUTTING_OVER, S.ROLLED_BACK}),
    S.CUTTING_OVER: frozenset({S.CUT_OVER, S.CUTOVER_READY, S.ROLLED_BACK}),
    S.CUT_OVER: frozenset({S.ROLLED_BACK}),
    S.ROLLED_BACK: frozenset({S.RUNNING}),
}
INITIAL = S.RUNNING  # the only state a lock is created in


class IllegalTransition(Refused):
    """A lock move that :data:`MOVES` does not allow; ``current`` and ``wanted`` name it."""

    def __init__(self, current: LockState | None, wanted: LockState):
        self.current, self.wanted = current, wanted
        allowed = sorted(MOVES[current]) if current else [INITIAL]
        super().__init__(f"migration lock cannot move from {current or 'no lock'} to {wanted}: "
                         f"from {current or 'no lock'} it may move to {', '.join(allowed)}")


def state(value: str | LockState) -> LockState:
    """``value`` as a :class:`LockState`, or a ValueError naming it and the states there are.

    >>> state("cut-over")
    <LockState.CUT_OVER: 'cut-over'>
    """
    try:
        return LockState(value)
    except ValueError:
        raise ValueError(f"lock state {value!r} is not one of "
                         f"{', '.join(s.value for s in LockState)}") from None


def check_move(current: LockState | None, wanted: LockState) -> LockState:
    """``wanted`` if the lock may move there from ``current`` (None: no lock yet), else
    :class:`IllegalTransition`.

    >>> check_move(LockState.CUTOVER_READY, LockState.CUTTING_OVER)
    <LockState.CUTTING_OVER: 'cutting-over'>
    >>> check_move(LockState.CUT_OVER, LockState.RUNNING)
    Traceback (most recent call last):
    ...
    paymigrate.migration.lock.IllegalTransition: migration lock cannot move from cut-over to running: from cut-over it may move to rolled-back
    """
    if current is None:
        if wanted is not INITIAL:
            raise IllegalTransition(None, wanted)
        return wanted
    if wanted is not current and wanted not in MOVES[current]:
        raise IllegalTransition(current, wanted)
    return wanted
