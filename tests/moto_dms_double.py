"""TEST DOUBLE for the two DMS calls moto 5.2.5 does not implement (its server answers
them with HTTP 500):
``ModifyReplicationTask`` and ``DescribeTableStatistics``, added to moto's in-process DMS
(``mock_aws``) so the engine's calls go through boto3 and moto's task store like the others.

* ``modify_replication_task`` changes the stored task as AWS does: its table mappings and
  settings, refused (``InvalidResourceStateFault``) while the task runs.
* ``describe_table_statistics`` answers what DMS's data plane would have measured, which cannot
  run here: the rows a test puts in :data:`TABLE_STATISTICS` for a task ARN.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.dms.exceptions import InvalidResourceStateFault, ResourceNotFoundFault
from moto.dms.responses import DatabaseMigrationServiceResponse

TABLE_STATISTICS: dict[str, list[dict[str, Any]]] = {}
CALLS: list[tuple[str, dict[str, Any]]] = []


def _task(response: DatabaseMigrationServiceResponse, arn: str) -> Any:
    task = response.dms_backend.replication_tasks.get(arn)
    if task is None:
        raise ResourceNotFoundFault("Replication task could not be found.")
    return task


def modify_replication_task(self: DatabaseMigrationServiceResponse) -> str:
    arn = self._get_param("ReplicationTaskArn")
    CALLS.append(("ModifyReplicationTask", {
        k: self._get_param(k) for k in ("ReplicationTaskArn", "TableMappings", "ReplicationTaskSettings")
        if self._get_param(k) is not None}))
    task = _task(self, arn)
    if task.status in ("running", "starting", "resuming", "stopping"):
        raise InvalidResourceStateFault(f"Replication task is in {task.status} state")
    if self._get_param("TableMappings") is not None:
        task.table_mappings = self._get_param("TableMappings")
    if self._get_param("ReplicationTaskSettings") is not None:
        task.replication_task_settings = self._get_param("ReplicationTaskSettings")
    return json.dumps({"ReplicationTask": task.to_dict()})


def describe_table_statistics(self: DatabaseMigrationServiceResponse) -> str:
    arn = self._get_param("ReplicationTaskArn")
    CALLS.append(("DescribeTableStatistics", {"ReplicationTaskArn": arn}))
    _task(self, arn)
    return json.dumps({"ReplicationTaskArn": arn, "TableStatistics": TABLE_STATISTICS.get(arn, [])})


@contextmanager
def installed(monkeypatch: Any) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The two calls on moto's DMS for the duration; yields the calls they received."""
    TABLE_STATISTICS.clear()
    CALLS.clear()
    monkeypatch.setattr(DatabaseMigrationServiceResponse, "modify_replication_task",
                        modify_replication_task, raising=False)
    monkeypatch.setattr(DatabaseMigrationServiceResponse, "describe_table_statistics",
                        describe_table_statistics, raising=False)
    yield CALLS
