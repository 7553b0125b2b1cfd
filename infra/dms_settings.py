"""DMS table mappings and task settings as plain data, tested without Pulumi.

The settings favour correctness over speed, as a payment ledger needs: changes are applied
transactionally in commit order, any data or table error stops the task instead of skipping a
row, and DMS validates every row it moved.
"""

from __future__ import annotations

import json
from typing import Any

from paymigrate import scope
from paymigrate.replication import dms_task
from paymigrate.replication.dms_task import SOURCE_POSTGRES_SETTINGS

CONTROL_SCHEMA = scope.DMS_CONTROL_SCHEMA
__all__ = ["SOURCE_POSTGRES_SETTINGS", "table_mappings", "task_settings", "to_json"]


def table_mappings() -> dict[str, Any]:
    """Every table of every schema in the migration's scope, as :func:`paymigrate.scope.read`
    has it: tables are discovered, never listed in code. The local stand-ins' task has the same
    mappings, and ``DmsEngine.start`` narrows them to a run's ``tables``/``exclude``.

    >>> table_mappings()["rules"][0]["object-locator"]
    {'schema-name': '%', 'table-name': '%'}
    """
    return dms_task.table_mappings()


def task_settings(*, lob_max_size_kb: int = 32, validation: bool = True,
                  validation_threads: int = 5) -> dict[str, Any]:
    """ReplicationTaskSettings of the full-load-and-cdc task.

    ``lob_max_size_kb`` bounds LOB columns in limited LOB mode: the contract's
    ``replication/dms-lob-max-size-kb``, which the DMS preflight also reads and refuses a value
    above (DMS would truncate it; the source endpoint's ``FailTasksOnLobTruncation`` makes the
    task fail instead, should one appear later). ``validation`` is the contract's
    ``replication/dms-validation``: DMS's own row validation, whose table states the migration's
    validation report shows beside paymigrate's.
    """
    if not 1 <= lob_max_size_kb <= 102400:
        raise ValueError(f"lob_max_size_kb: {lob_max_size_kb} is outside 1..102400")
    if not 1 <= validation_threads <= 32:
        raise ValueError(f"validation_threads: {validation_threads} is outside 1..32")
    severity = "LOGGER_SEVERITY_DEFAULT"
    return {
        "TargetMetadata": {
            "TargetSchema": "",
            "SupportLobs": True,
            "FullLobMode": False,
            "LimitedSizeLobMode": True,
            "LobMaxSize": lob_max_size_kb,
            "LobChunkSize": 64,
            "BatchApplyEnabled": False,  # transactional apply keeps the source's commit order
        },
        "FullLoadSettings": {
            # The schema (keys, constraints, indexes) is created on the target beforehand; DMS
            # only moves rows. Truncating makes a fresh restart safe against duplicate rows.
            "TargetTablePrepMode": "TRUNCATE_BEFORE_LOAD",
            "CreatePkAfterFullLoad": False,
            "StopTaskCachedChangesApplied": False,
            "StopTaskCachedChangesNotApplied": False,
            "MaxFullLoadSubTasks": 8,
            "TransactionConsistencyTimeout": 600,
            "CommitRate": 10000,
        },
        "Logging": {
            "EnableLogging": True,
            # DEFAULT, not DEBUG: debug levels can write row values, i.e. payment data, to logs.
            "LogComponents": [
                {"Id": component, "Severity": severity}
                for component in ("SOURCE_UNLOAD", "SOURCE_CAPTURE", "TARGET_LOAD",
                                  "TARGET_APPLY", "TASK_MANAGER", "VALIDATOR_EXT")
            ],
        },
        "ControlTablesSettings": {
            "ControlSchema": CONTROL_SCHEMA,
            "HistoryTimeslotInMinutes": 5,
            "HistoryTableEnabled": True,
            "SuspendedTablesTableEnabled": True,
            "StatusTableEnabled": True,
        },
        "StreamBufferSettings": {
            "StreamBufferCount": 3,
            "StreamBufferSizeInMB": 8,
            "CtrlStreamBufferSizeInMB": 5,
        },
        "ChangeProcessingTuning": {
            "CommitTimeout": 1,
            "MinTransactionSize": 1000,
            "MemoryLimitTotal": 1024,
            "MemoryKeepTime": 60,
            "StatementCacheSize": 50,
        },
        "ChangeProcessingDdlHandlingPolicy": {
            "HandleSourceTableDropped": False,
            "HandleSourceTableTruncated": False,
            "HandleSourceTableAltered": True,
        },
        "ErrorBehavior": {
            # A payment row is never skipped silently: every data or table error stops the task.
            "DataErrorPolicy": "STOP_TASK",
            "DataTruncationErrorPolicy": "STOP_TASK",
            "DataErrorEscalationPolicy": "STOP_TASK",
            "TableErrorPolicy": "STOP_TASK",
            "TableErrorEscalationPolicy": "STOP_TASK",
            "ApplyErrorDeletePolicy": "STOP_TASK",
            "ApplyErrorInsertPolicy": "STOP_TASK",
            "ApplyErrorUpdatePolicy": "STOP_TASK",
            "ApplyErrorEscalationPolicy": "STOP_TASK",
            "FullLoadIgnoreConflicts": False,
            "RecoverableErrorCount": -1,
            "RecoverableErrorInterval": 5,
            "RecoverableErrorThrottling": True,
            "RecoverableErrorThrottlingMax": 1800,
        },
        "ValidationSettings": {
            "EnableValidation": validation,
            "ValidationMode": "ROW_LEVEL",
            "ThreadCount": validation_threads,
            "FailureMaxCount": 10000,
            "TableFailureMaxCount": 1000,
            "HandleCollationDiff": False,
            "ValidationOnly": False,
            "RecordFailureDelayLimitInMinutes": 0,
            "SkipLobColumns": False,
            "ValidationPartialLobSize": 0,
            "ValidationQueryCdcDelaySeconds": 0,
        },
    }


def to_json(document: dict[str, Any]) -> str:
    """Stable serialisation, so an unchanged document never shows as a diff."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))
