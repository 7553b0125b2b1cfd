"""What the DMS task and its endpoints are given, defined once for ``infra/``, the local
bootstrap and the DMS engine: the source endpoint's settings, the task's settings and the table
mappings of the migration's scope (:mod:`paymigrate.scope`).

The task settings favour correctness over speed, as a payment ledger needs: changes are applied
transactionally in commit order, any data or table error stops the task instead of skipping a
row, and DMS validates every row it moved (switchable by the contract).

DMS object locators take names as stored in the catalog (unquoted, case as written) and read
``%`` as a wildcard, so a name is given as it is and one holding ``%`` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paymigrate import scope
from paymigrate.aws import contract
from paymigrate.errors import BadInput

# PostgreSQLSettings of the source endpoint. FailTasksOnLobTruncation is an endpoint setting,
# not a task setting: with it, limited LOB mode fails the task on a value above LobMaxSize
# instead of truncating it with only a log line. The preflight refuses such values before.
SOURCE_POSTGRES_SETTINGS: dict[str, Any] = {"FailTasksOnLobTruncation": True}

Table = tuple[str, str]  # (schema, name) as stored in the catalog
CONTROL_SCHEMA = scope.DMS_CONTROL_SCHEMA


def task_settings(*, lob_max_size_kb: int | None = None, validation: bool | None = None,
                  validation_threads: int = 5) -> dict[str, Any]:
    """ReplicationTaskSettings of the full-load-and-cdc task.

    ``lob_max_size_kb`` bounds LOB columns in limited LOB mode: the contract's
    ``replication/dms-lob-max-size-kb``, which the DMS preflight also reads and refuses a value
    above (DMS would truncate it; the source endpoint's ``FailTasksOnLobTruncation`` makes the
    task fail instead, should one appear later). ``validation`` is the contract's
    ``replication/dms-validation``: DMS's own row validation, whose table states the migration's
    validation report shows beside paymigrate's. Both default to the contract's defaults.
    """
    if lob_max_size_kb is None:
        lob_max_size_kb = contract.PARAMETERS["replication/dms-lob-max-size-kb"].default
    if validation is None:
        validation = contract.PARAMETERS["replication/dms-validation"].default
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


def _locator(schema: str, table: str) -> dict[str, str]:
    for part in (schema, table):
        if not part or "%" in part:
            raise BadInput("table", f"{schema}.{table}", "DMS reads % in a name as a wildcard "
                                                         "and an empty name matches nothing")
    return {"schema-name": schema, "table-name": table}


def table_mappings(*, include: Sequence[Table] | None = None,
                   exclude: Sequence[Table] = ()) -> dict[str, Any]:
    """The task's selection rules for a scope: every table of every schema (``include`` None)
    or exactly ``include``, less ``exclude``; never what :func:`paymigrate.scope.read` leaves
    out (the system and replication engines' schemas, DMS's own ``awsdms_`` tables).

    >>> [(r["rule-action"], r["object-locator"]["schema-name"], r["object-locator"]["table-name"])
    ...  for r in table_mappings(include=[("sales", "Orders")], exclude=[("sales", "tmp")])["rules"]]
    [('include', 'sales', 'Orders'), ('exclude', 'sales', 'tmp'), ('include', 'paymigrate', 'drain_marker'), ('exclude', '%', 'awsdms_%')]
    """
    rules: list[tuple[str, dict[str, str]]] = []
    if include is None:
        rules.append(("include", {"schema-name": "%", "table-name": "%"}))
        # The migration's own schema holds one table, the drain marker, which DMS must carry.
        rules += [("exclude", {"schema-name": s, "table-name": "%"}) for s in scope.INTERNAL_SCHEMAS
                  if s != scope.MIGRATION_SCHEMA]
    else:
        if not include:
            raise BadInput("tables", "[]", "a DMS task needs at least one table")
        rules += [("include", _locator(s, t)) for s, t in include]
    rules += [("exclude", _locator(s, t)) for s, t in exclude]
    if include is not None:  # the wildcard above has it already
        rules.append(("include", _locator(scope.MIGRATION_SCHEMA, scope.DRAIN_MARKER_TABLE)))
    rules.append(("exclude", {"schema-name": "%", "table-name": f"{scope.INTERNAL_TABLE_PREFIX}%"}))
    return {"rules": [
        {"rule-type": "selection", "rule-id": str(i), "rule-name": f"{action}-{i}",
         "object-locator": locator, "rule-action": action}
        for i, (action, locator) in enumerate(rules, start=1)]}


def scope_mappings(cur: Any, *, tables: Sequence[str] | None = None,
                   exclude: Sequence[str] | None = None) -> dict[str, Any]:
    """The mappings of the migration's scope as :func:`paymigrate.scope.read` resolves it on the
    source ``cur`` is connected to: what validation compares and the cutover checks.

    Without ``tables`` the wildcard rules stay (a table made later is carried, as infra deployed
    it), less each excluded table; with ``tables``, exactly the tables that hold their rows."""
    if not tables and not exclude:
        return table_mappings()
    found = scope.read(cur, tables=tables, exclude=exclude)
    if found.unknown:
        raise BadInput("tables", ", ".join(found.unknown), "not found on the source")
    if tables:
        return table_mappings(include=[(t.schema, t.name) for t in found.leaves])
    kept = set(found.leaf_oids)
    return table_mappings(exclude=[(t.schema, t.name) for t in scope.read(cur).leaves
                                   if t.oid not in kept])
