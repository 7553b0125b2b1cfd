"""What the DMS task and its endpoints are given, defined once for ``infra/`` and the local
bootstrap: the source endpoint's settings and the table mappings of the migration's scope."""

from __future__ import annotations

from typing import Any

# PostgreSQLSettings of the source endpoint. FailTasksOnLobTruncation is an endpoint setting,
# not a task setting: with it, limited LOB mode fails the task on a value above LobMaxSize
# instead of truncating it with only a log line. The preflight refuses such values before.
SOURCE_POSTGRES_SETTINGS: dict[str, Any] = {"FailTasksOnLobTruncation": True}
