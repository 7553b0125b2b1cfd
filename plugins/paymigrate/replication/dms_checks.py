"""What the DMS path needs, checked before anything is created: the DMS engine's preflight.

A DMS migration needs more than its tables: logical decoding on both servers (the forward task
reads the source, the reverse CDC task the target after a cutover), a free slot and the right to
create one where each task reads (the engine makes the slot its endpoint names, see
:func:`paymigrate.aws.names.dms_slot_name`), a reverse task on the swapped endpoints, table mappings
that carry the drain marker (:mod:`paymigrate.replication.dms_drain`), and a replication instance
that has reached every endpoint (DMS's own connection test). Each missing piece is one
:class:`~paymigrate.replication.base.Problem` saying what to change.

Facts are gathered by the ``gather_*`` functions (one database cursor, one DMS client) and
judged by :func:`evaluate`, a plain function.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from psycopg2.extensions import cursor as Cursor

from paymigrate.replication.base import Problem
from paymigrate.scope import DRAIN_MARKER_TABLE, MIGRATION_SCHEMA

DECODING_PLUGIN = "test_decoding"  # DMS's PluginName test-decoding
LOCAL_NOTE = ("the local stand-ins run DMS as moto's control plane only, which moves no rows: "
              "use engine=postgres-logical here, or run against AWS")


@dataclass(frozen=True)
class ServerFacts:
    """One server as the DMS task reading it needs it."""

    side: str  # source | target
    wal_level: str
    free_slots: int
    can_replicate: bool  # superuser, REPLICATION, or Aurora's rds_replication
    user: str
    slot_name: str
    slot_plugin: str | None  # the plugin of an existing slot of that name; None: no slot yet


@dataclass(frozen=True)
class EndpointFacts:
    identifier: str
    kind: str  # source | target (DMS's EndpointType)
    address: str  # host:port/database
    slot_name: str | None  # PostgreSQLSettings.SlotName
    connection: str | None  # DMS's last connection test from the task's instance; None: never

    @property
    def loopback(self) -> bool:
        host = self.address.split(":", 1)[0]
        return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True)
class TaskFacts:
    direction: str  # forward | reverse
    identifier: str
    migration_type: str
    source: EndpointFacts
    target: EndpointFacts
    carries_marker: bool  # its table mappings select the drain marker


def mapping_selects(mappings: dict[str, Any], schema: str, table: str) -> bool:
    """Whether DMS table mappings select ``schema.table``: an include rule matches it and no
    exclude rule does (``%`` is DMS's wildcard).

    >>> rule = lambda a, s, t: {"rule-type": "selection", "rule-action": a,
    ...                         "object-locator": {"schema-name": s, "table-name": t}}
    >>> mapping_selects({"rules": [rule("include", "public", "%")]}, "paymigrate", "drain_marker")
    False
    >>> mapping_selects({"rules": [rule("include", "%", "%"), rule("exclude", "%", "awsdms_%")]},
    ...                 "paymigrate", "drain_marker")
    True
    """
    def matches(pattern: str, name: str) -> bool:
        return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("%")), name) is not None

    hits = [r.get("rule-action") for r in mappings.get("rules", [])
            if r.get("rule-type") == "selection"
            and matches(r.get("object-locator", {}).get("schema-name", ""), schema)
            and matches(r.get("object-locator", {}).get("table-name", ""), table)]
    return "include" in hits and "exclude" not in hits


def evaluate(servers: list[ServerFacts], tasks: list[TaskFacts], *, slot_names: dict[str, str],
             missing_reverse: str | None = None) -> list[Problem]:
    """Every reason the DMS path cannot work, each saying what to change.

    ``slot_names``: the slot each direction's source endpoint must name (``forward``,
    ``reverse``); ``missing_reverse``: why there is no reverse task, when there is none.
    """
    problems: list[Problem] = []
    why = {"source": "the forward DMS task reads it", "target": "the reverse DMS task reads it "
           "after a cutover (a rollback needs it)"}
    for s in servers:
        if s.wal_level != "logical":
            problems.append(Problem(None, f"wal_level is {s.wal_level} on the {s.side}, and "
                                          f"{why[s.side]}: set it to logical (Aurora: "
                                          "rds.logical_replication = 1, then reboot)"))
        if s.slot_plugin is None:
            if s.free_slots < 1:
                problems.append(Problem(None, f"no free replication slot on the {s.side} for "
                                              f"{s.slot_name}: raise max_replication_slots"))
            if not s.can_replicate:
                problems.append(Problem(None, f"role {s.user} cannot create slot {s.slot_name} on "
                                              f"the {s.side}: grant it rds_replication (Aurora) "
                                              "or REPLICATION"))
        elif s.slot_plugin != DECODING_PLUGIN:
            problems.append(Problem(None, f"slot {s.slot_name} on the {s.side} decodes with "
                                          f"{s.slot_plugin}, but DMS reads it with "
                                          f"{DECODING_PLUGIN}: drop it (the engine makes it again)"))
    if missing_reverse:
        problems.append(Problem(None, f"no reverse DMS task: {missing_reverse}; a cutover could "
                                      "not fall back (infra creates it as "
                                      "replication/reverse-task-arn)"))
    by = {t.direction: t for t in tasks}
    wanted_type = {"forward": "full-load-and-cdc", "reverse": "cdc"}
    for t in tasks:
        name = f"{t.direction} DMS task {t.identifier}"
        if t.migration_type != wanted_type[t.direction]:
            problems.append(Problem(None, f"{name} is {t.migration_type}, not "
                                          f"{wanted_type[t.direction]}"))
        if t.source.slot_name != slot_names[t.direction]:
            problems.append(Problem(None, f"{name} reads slot {t.source.slot_name or '(none named)'} "
                                          f"(slotName of endpoint {t.source.identifier}), but the "
                                          f"engine creates {slot_names[t.direction]}: set slotName "
                                          "to it, as infra does"))
        if not t.carries_marker:
            problems.append(Problem(None, f"{name}'s table mappings do not select "
                                          f"{MIGRATION_SCHEMA}.{DRAIN_MARKER_TABLE}: its drain could "
                                          "never be seen (include it, as paymigrate.scope does)"))
        for ep in (t.source, t.target):
            if ep.connection != "successful":
                tested = ("was never tested" if ep.connection is None
                          else f"test is {ep.connection}")
                local = f" ({LOCAL_NOTE})" if ep.loopback else ""
                problems.append(Problem(None, f"{name}: DMS's connection to endpoint "
                                              f"{ep.identifier} ({ep.address}) {tested}: run "
                                              "`aws dms test-connection` from the task's "
                                              f"replication instance{local}"))
    if "forward" in by and "reverse" in by:
        fwd, rev = by["forward"], by["reverse"]
        if (rev.source.address, rev.target.address) != (fwd.target.address, fwd.source.address):
            problems.append(Problem(None, f"reverse DMS task {rev.identifier} goes "
                                          f"{rev.source.address} -> {rev.target.address}, not "
                                          f"{fwd.target.address} -> {fwd.source.address} (the "
                                          "forward task's endpoints swapped)"))
    return problems


def gather_server(cur: Cursor, *, side: str, slot_name: str) -> ServerFacts:
    cur.execute("""
        SELECT current_setting('wal_level'),
               current_setting('max_replication_slots')::int
                 - (SELECT count(*) FROM pg_replication_slots),
               r.rolsuper OR r.rolreplication
                 OR COALESCE(pg_has_role(r.oid, (SELECT oid FROM pg_roles
                                                 WHERE rolname = 'rds_replication'), 'MEMBER'), false),
               current_user,
               (SELECT plugin FROM pg_replication_slots WHERE slot_name = %s)
          FROM pg_roles r WHERE r.rolname = current_user""", (slot_name,))
    wal_level, free, can, user, plugin = cur.fetchone()
    return ServerFacts(side, wal_level, int(free), bool(can), user, slot_name, plugin)


def _endpoint(dms: Any, arn: str, instance_arn: str) -> EndpointFacts:
    ep = dms.describe_endpoints(Filters=[{"Name": "endpoint-arn", "Values": [arn]}])["Endpoints"][0]
    tests = dms.describe_connections(Filters=[
        {"Name": "endpoint-arn", "Values": [arn]}])["Connections"]
    status = next((c["Status"] for c in tests if c["ReplicationInstanceArn"] == instance_arn), None)
    return EndpointFacts(ep["EndpointIdentifier"], ep["EndpointType"].lower(),
                         f"{ep.get('ServerName')}:{ep.get('Port')}/{ep.get('DatabaseName')}",
                         (ep.get("PostgreSQLSettings") or {}).get("SlotName"), status)


def gather_task(dms: Any, task: dict[str, Any], *, direction: str) -> TaskFacts:
    """The facts of one described task (``DescribeReplicationTasks``) and its two endpoints."""
    instance = task["ReplicationInstanceArn"]
    mappings = json.loads(task.get("TableMappings") or "{}")
    return TaskFacts(direction, task["ReplicationTaskIdentifier"], task.get("MigrationType", ""),
                     _endpoint(dms, task["SourceEndpointArn"], instance),
                     _endpoint(dms, task["TargetEndpointArn"], instance),
                     mapping_selects(mappings, MIGRATION_SCHEMA, DRAIN_MARKER_TABLE))
