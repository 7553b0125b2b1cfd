"""Replication engines behind one interface: ``engine_for(name, **kwargs)``.

``name`` is one of :data:`paymigrate.aws.contract.ENGINES`: ``postgres-logical`` builds a
:class:`~paymigrate.replication.logical.LogicalEngine` (keyword arguments ``source``, ``target``,
``name``, ``tables``, ``exclude``, ``replica_identity_full``, ``binary``), ``dms`` a
:class:`~paymigrate.replication.dms.DmsEngine` (``task_arn``, ``reverse_task_arn``, ``slot_name``,
``reverse_slot_name``, ``dms_client``, ``cloudwatch_client``, ``source``/``target`` endpoints). The call order the cutover and the
rollback follow is in :mod:`paymigrate.replication.base`; callers hold an :class:`Engine` and
never ask which one it is.
"""

from __future__ import annotations

from typing import Any

from paymigrate.aws.contract import ENGINES
from paymigrate.errors import BadInput, PreflightError, ReplicationError
from paymigrate.replication.base import (
    Engine,
    FullLoad,
    Lag,
    Problem,
    ReplicationStatus,
    StartResult,
    int_to_lsn,
    lsn_to_int,
    raise_for_problems,
)

__all__ = ["ENGINES", "Engine", "FullLoad", "Lag", "PreflightError", "Problem", "ReplicationError",
           "ReplicationStatus", "StartResult", "engine_for", "int_to_lsn", "lsn_to_int",
           "raise_for_problems"]


def engine_for(name: str, /, **kwargs: Any) -> Engine:
    """The engine called ``name`` (``workflow/replication-engine``), built with ``kwargs``
    (positional-only, so the logical engine's own ``name`` keyword passes through)."""
    if name == "postgres-logical":
        from paymigrate.replication.logical import LogicalEngine

        return LogicalEngine(**kwargs)
    if name == "dms":
        from paymigrate.replication.dms import DmsEngine

        return DmsEngine(**kwargs)
    raise BadInput("engine", name, f"not one of {', '.join(ENGINES)}")
