"""DMS table mappings and task settings as plain data, tested without Pulumi.

Both are defined once in :mod:`paymigrate.replication.dms_task`, which the local bootstrap and
the DMS engine use too; this module is infra's view of them and their stable serialisation.
"""

from __future__ import annotations

import json
from typing import Any

from paymigrate import scope
from paymigrate.replication import dms_task
from paymigrate.replication.dms_task import SOURCE_POSTGRES_SETTINGS, task_settings

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


def to_json(document: dict[str, Any]) -> str:
    """Stable serialisation, so an unchanged document never shows as a diff."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))
