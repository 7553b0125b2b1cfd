"""What the DMS task and its endpoints are given, defined once for ``infra/``, the local
bootstrap and the DMS engine: the source endpoint's settings and the table mappings of the
migration's scope (:mod:`paymigrate.scope`).

DMS object locators take names as stored in the catalog (unquoted, case as written) and read
``%`` as a wildcard, so a name is given as it is and one holding ``%`` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paymigrate import scope
from paymigrate.errors import BadInput

# PostgreSQLSettings of the source endpoint. FailTasksOnLobTruncation is an endpoint setting,
# not a task setting: with it, limited LOB mode fails the task on a value above LobMaxSize
# instead of truncating it with only a log line. The preflight refuses such values before.
SOURCE_POSTGRES_SETTINGS: dict[str, Any] = {"FailTasksOnLobTruncation": True}

Table = tuple[str, str]  # (schema, name) as stored in the catalog


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
    [('include', 'sales', 'Orders'), ('exclude', 'sales', 'tmp'), ('exclude', '%', 'awsdms_%')]
    """
    rules: list[tuple[str, dict[str, str]]] = []
    if include is None:
        rules.append(("include", {"schema-name": "%", "table-name": "%"}))
        rules += [("exclude", {"schema-name": s, "table-name": "%"}) for s in scope.INTERNAL_SCHEMAS]
    else:
        if not include:
            raise BadInput("tables", "[]", "a DMS task needs at least one table")
        rules += [("include", _locator(s, t)) for s, t in include]
    rules += [("exclude", _locator(s, t)) for s, t in exclude]
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
