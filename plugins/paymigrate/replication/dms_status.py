"""The statuses a DMS replication task reports (``DescribeReplicationTasks``), and what each one
means to the migration: the engine (:mod:`paymigrate.replication.dms`) and the Step Functions
state machines (:mod:`paymigrate.aws.statemachines`) both decide from these sets, so they cannot
disagree on what "running" or "broken" is. Plain data: infra imports it too.
"""

from __future__ import annotations

from enum import StrEnum


class DmsStatus(StrEnum):
    CREATING = "creating"
    READY = "ready"
    STARTING = "starting"
    RUNNING = "running"
    RESUMING = "resuming"
    STOPPING = "stopping"
    STOPPED = "stopped"
    MODIFYING = "modifying"
    MOVING = "moving"
    TESTING = "testing"
    DELETING = "deleting"
    FAILED = "failed"
    FAILED_MOVE = "failed-move"


D = DmsStatus
WORKING = frozenset({D.RUNNING, D.STARTING, D.RESUMING})  # DMS is on it: a start does nothing
BUSY = frozenset({D.STOPPING, D.MODIFYING, D.DELETING, D.MOVING, D.TESTING})  # wait, then act
FAILED = frozenset({D.FAILED, D.FAILED_MOVE})
STARTABLE_FRESH = frozenset({D.READY})  # never started: start-replication
RESUMABLE = frozenset({D.STOPPED})  # started before: resume-processing from its CDC position
STOPPED = frozenset({D.STOPPED, D.READY})  # not carrying changes, nothing to wait for
# While waiting for a started task to run, these mean it never will.
BROKEN_WHILE_STARTING = FAILED | {D.DELETING, D.STOPPED, D.STOPPING}
# While waiting for a stop, these mean it never will.
BROKEN_WHILE_STOPPING = frozenset({D.FAILED, D.DELETING})
# What the engine's ReplicationStatus.state says for each status.
ENGINE_STATE: dict[DmsStatus, str] = {
    **{s: "stopped" for s in DmsStatus},
    D.RUNNING: "streaming", D.STARTING: "starting", D.RESUMING: "starting",
    **{s: "failed" for s in FAILED},
}


class StopAction(StrEnum):
    """What stopping a task takes, by its status (:func:`stop_action`)."""

    STOP = "stop"  # it carries changes: stop it, then wait until it is stopped
    WAIT = "wait"  # stopping already: wait
    NONE = "none"  # it carries nothing (stopped, never started, failed, busy): nothing to stop


def stop_action(status: str) -> StopAction:
    """The rollback's decision for the forward task, in the DAG and the state machine alike.

    >>> [stop_action(s).value for s in ("running", "stopping", "stopped", "creating")]
    ['stop', 'wait', 'none', 'none']
    """
    if status in WORKING:
        return StopAction.STOP
    if status == D.STOPPING:
        return StopAction.WAIT
    return StopAction.NONE


def ordered(statuses: frozenset[DmsStatus]) -> tuple[str, ...]:
    """The statuses as sorted plain strings (a state machine's Choice lists them in this order)."""
    return tuple(sorted(s.value for s in statuses))
