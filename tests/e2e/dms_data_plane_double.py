"""A TEST DOUBLE of AWS DMS's data plane, for tests/e2e/test_dms_path.py only.

moto runs DMS's control plane (tasks start, stop and are described) but no replication instance:
nothing ever reads a slot or writes a row. :class:`DmsDataPlaneDouble` does that part, as DMS
would, and nothing more:

* it "tests the connection" of every endpoint of the two tasks (``TestConnection``: what a
  replication instance that can reach the servers reports);
* while moto says a task is ``running``, it reads the slot that task's source endpoint names
  (``slotName``, ``test_decoding``: what DMS reads) and applies each transaction, in commit
  order, on the task's target, in ``session_replication_role = replica`` (as DMS's apply does,
  so the write fence's triggers do not fire); the forward task first loads every table (a
  truncate and a copy, then the slot's changes from its start, applied idempotently);
* values go back as untyped literals, so each takes its column's type (``test_decoding`` names
  ``character(3)`` as ``character``, whose cast would cut it to one letter);
* it answers ``DescribeTableStatistics`` (which moto lacks) for the tables it carries, and puts
  ``CDCLatencyTarget`` datapoints to CloudWatch, as DMS does.

Limits (why it is only a double): the load is not consistent with the slot for a table without
a key that is written during it (the test writes only after the load); types are rebuilt from
``test_decoding``'s text; nothing of DMS's own settings (LOB modes, validation) is modelled.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import psycopg2
from botocore.awsrequest import AWSResponse
from psycopg2 import sql

from paymigrate import scope
from paymigrate.aws import names
from paymigrate.db import Endpoint
from paymigrate.replication.base import lsn_to_int

log = logging.getLogger("dms-data-plane-double")

_CHANGE = re.compile(r"^table (?P<table>.+?): (?P<op>INSERT|UPDATE|DELETE|TRUNCATE): ?(?P<rest>.*)$", re.S)
_COLUMN = re.compile(r"""(?P<name>"(?:[^"]|"")*"|[^\s\[]+)\[(?P<type>.+?)\]:"""
                     r"""(?P<value>'(?:[^']|'')*'|null|unchanged-toast-datum|\S+)""", re.S)


def _columns(text: str) -> list[tuple[str, str, str | None | object]]:
    out: list[tuple[str, str, str | None | object]] = []
    for m in _COLUMN.finditer(text):
        name, typ, raw = m.group("name"), m.group("type"), m.group("value")
        if name.startswith('"'):
            name = name[1:-1].replace('""', '"')
        value: str | None | object
        if raw == "null":
            value = None
        elif raw == "unchanged-toast-datum":
            value = UNCHANGED
        elif raw.startswith("'"):
            value = raw[1:-1].replace("''", "'")
        else:
            value = raw
        out.append((name, typ, value))
    return out


UNCHANGED = object()
STATUS_EVERY = 0.3  # seconds between reads of the tasks' status
METRIC_EVERY = 5.0  # seconds between CDCLatencyTarget datapoints


@dataclass
class Direction:
    name: str  # forward | reverse
    task_arn: str
    publisher: Endpoint
    subscriber: Endpoint
    slot: str
    loaded: bool = False
    applied_upto: int = 0  # commit position of the last transaction applied
    keys: dict[str, list[str]] = field(default_factory=dict)


class DmsDataPlaneDouble(threading.Thread):
    """See the module docstring. ``calls`` records every DMS call other clients make (the
    engine's), as ``(operation, params)``, from botocore's ``before-parameter-build`` event."""

    def __init__(self, stack: Any, *, task_arn: str, reverse_task_arn: str, poll: float = 0.02):
        super().__init__(daemon=True, name="dms-data-plane-double")
        self.stack, self.poll = stack, poll
        self.dms, self.cloudwatch = stack.client("dms"), stack.client("cloudwatch")
        source, target = stack.endpoint("source"), stack.endpoint("target")
        self.directions = [
            Direction("forward", task_arn, source, target, names.dms_slot_name(stack.env)),
            Direction("reverse", reverse_task_arn, target, source,
                      names.dms_slot_name(stack.env, "reverse"))]
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.applied = {"forward": 0, "reverse": 0}  # transactions applied
        self._conns: dict[str, Any] = {}
        self._tables: dict[str, list[tuple[str, str, str]]] = {}
        self._original_create_client: Callable[..., Any] | None = None

    # ---- the control plane's view: connections, table statistics, the call spy ---------------
    def test_connections(self) -> None:
        for d in self.directions:
            task = self._task(d)
            for arn in (task["SourceEndpointArn"], task["TargetEndpointArn"]):
                self.dms.test_connection(ReplicationInstanceArn=task["ReplicationInstanceArn"],
                                         EndpointArn=arn)

    def install(self, monkeypatch: Any) -> None:
        """Hook every botocore client made from now on (the Airflow hooks' DMS clients)."""
        original = botocore.session.Session.create_client
        double = self

        def create_client(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            client = original(session, service_name, *args, **kwargs)
            if service_name == "dms":
                client.meta.events.register("before-parameter-build.database-migration-service",
                                            double._record)
                client.meta.events.register(
                    "before-call.database-migration-service.DescribeTableStatistics",
                    double._table_statistics)
            return client

        monkeypatch.setattr(botocore.session.Session, "create_client", create_client)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def _table_statistics(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        body = json.loads(params["body"] or b"{}")
        d = next(d for d in self.directions if d.task_arn == body["ReplicationTaskArn"])
        tables = self._carried(d)
        state = "Table completed" if d.loaded or d.name == "reverse" else "Before load"
        parsed = {"ReplicationTaskArn": d.task_arn, "TableStatistics": [
            {"SchemaName": s, "TableName": t, "TableState": state} for s, t, _ in tables]}
        return AWSResponse("http://dms-data-plane-double", 200, {}, None), parsed

    def _task(self, d: Direction) -> dict[str, Any]:
        return self.dms.describe_replication_tasks(Filters=[
            {"Name": "replication-task-arn", "Values": [d.task_arn]}])["ReplicationTasks"][0]

    # ---- the data plane -------------------------------------------------------------------------
    def run(self) -> None:
        last_metric = last_status = 0.0
        running: dict[str, bool] = {}
        while not self.halt.wait(self.poll):
            try:
                # The tasks' status from moto a few times a second, the slots every poll: a
                # replication instance reads its slot continuously, its task's status is news.
                if time.monotonic() - last_status > STATUS_EVERY:
                    running = {d.name: self._task(d)["Status"] == "running" for d in self.directions}
                    last_status = time.monotonic()
                for d in self.directions:
                    if not running.get(d.name):
                        continue
                    if d.name == "forward" and not d.loaded:
                        self._full_load(d)
                    self._apply(d)
                    if time.monotonic() - last_metric > METRIC_EVERY:
                        self._metric(d)
                        last_metric = time.monotonic()
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                # A freeze ends client sessions, this one's too; DMS reconnects, so does this.
                log.info("reconnecting after %s", str(exc).strip())
                self._close()
            except BaseException as exc:  # kept for the test to raise
                log.exception("DMS data-plane double failed")
                self.error = exc
                return
        self._close()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        if self.error:
            raise self.error

    def _conn(self, ep: Endpoint) -> Any:
        key = ep.dsn()
        if key not in self._conns or self._conns[key].closed:
            conn = psycopg2.connect(key, application_name="dms-data-plane-double")
            conn.autocommit = True
            self._conns[key] = conn
        return self._conns[key]

    def _close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.close()
            except psycopg2.Error:
                pass
        self._conns.clear()

    def _carried(self, d: Direction) -> list[tuple[str, str, str]]:
        """The tables the task's mappings select, the scope's and the drain marker, as
        ``(schema, name, format('%I.%I'))``: the last is how test_decoding names them. Read
        once per direction (the test changes no schema)."""
        if d.name not in self._tables:
            with self._conn(d.publisher).cursor() as cur:
                found = scope.read(cur)
            marker = (scope.MIGRATION_SCHEMA, scope.DRAIN_MARKER_TABLE)
            self._tables[d.name] = [(t.schema, t.name, t.quoted) for t in found.leaves] + [
                (*marker, ".".join(marker))]
        return self._tables[d.name]

    def _full_load(self, d: Direction) -> None:
        tables = [sql.SQL(quoted) for _, _, quoted in self._carried(d)]
        pub, sub = self._conn(d.publisher), self._conn(d.subscriber)
        with pub.cursor() as pcur, sub.cursor() as scur:
            scur.execute("BEGIN READ WRITE")
            scur.execute("SET LOCAL session_replication_role = replica")
            scur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(tables)))
            for t in tables:
                buf = io.StringIO()
                pcur.copy_expert(sql.SQL("COPY {} TO STDOUT").format(t).as_string(pub), buf)
                buf.seek(0)
                scur.copy_expert(sql.SQL("COPY {} FROM STDIN").format(t).as_string(sub), buf)
            scur.execute("COMMIT")
        d.loaded = True

    def _apply(self, d: Direction) -> None:
        pub, sub = self._conn(d.publisher), self._conn(d.subscriber)
        carried = {quoted for _, _, quoted in self._carried(d)}
        with pub.cursor() as pcur:
            pcur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (d.slot,))
            if pcur.fetchone() is None:
                return
            pcur.execute("SELECT lsn::text, data FROM pg_logical_slot_peek_changes(%s, NULL, NULL)",
                         (d.slot,))
            rows = pcur.fetchall()
        last = None
        changes: list[tuple[str, str, str]] = []
        with sub.cursor() as scur:
            for lsn, data in rows:
                if data.startswith("BEGIN"):
                    changes = []
                elif data.startswith("COMMIT"):
                    # Applied already, before a freeze cut the session that would have
                    # advanced the slot: DMS keeps its applied position on the target too.
                    if changes and lsn_to_int(lsn) > d.applied_upto:
                        scur.execute("BEGIN READ WRITE")
                        scur.execute("SET LOCAL session_replication_role = replica")
                        for table, op, rest in changes:
                            self._change(scur, d, table, op, rest)
                        scur.execute("COMMIT")
                        d.applied_upto = lsn_to_int(lsn)
                        self.applied[d.name] += 1
                        log.debug("%s: applied %d change(s) up to %s", d.name, len(changes), lsn)
                    last = lsn
                else:
                    m = _CHANGE.match(data)
                    if m and m.group("table") in carried:
                        changes.append((m.group("table"), m.group("op"), m.group("rest")))
        if last is not None:
            with pub.cursor() as pcur:
                pcur.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (d.slot, last))

    def _key(self, scur: Any, d: Direction, table: str) -> list[str]:
        if table not in d.keys:
            scur.execute("""SELECT a.attname FROM pg_index i JOIN pg_attribute a
                              ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                             WHERE i.indrelid = %s::regclass AND i.indisprimary""", (table,))
            d.keys[table] = [r[0] for r in scur.fetchall()]
        return d.keys[table]

    def _change(self, scur: Any, d: Direction, table: str, op: str, rest: str) -> None:
        t = sql.SQL(table)
        if op == "TRUNCATE":
            scur.execute(sql.SQL("TRUNCATE {}").format(t))
            return
        key = self._key(scur, d, table)
        if op == "DELETE":
            self._where_delete(scur, t, _columns(rest))
            return
        old: list[tuple[str, str, Any]] = []
        if rest.startswith("old-key:"):
            old_text, rest = rest[len("old-key:"):].split("new-tuple:", 1)
            old = _columns(old_text)
        cols = [c for c in _columns(rest) if c[2] is not UNCHANGED]
        where = old or [c for c in cols if c[0] in key]
        if op == "UPDATE" and where:
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = %s").format(sql.Identifier(n)) for n, _, _ in cols)
            scur.execute(sql.SQL("UPDATE {} SET {} WHERE {}").format(t, assignments, _eq(where)),
                         [v for _, _, v in cols] + [v for _, _, v in where])
            if scur.rowcount:
                return
        names_ = sql.SQL(", ").join(sql.Identifier(n) for n, _, _ in cols)
        values = sql.SQL(", ").join(sql.SQL("%s") for _ in cols)
        upsert = sql.SQL("")
        if key:
            upsert = sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.Identifier(k) for k in key),
                sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
                                   for n, _, _ in cols))
        scur.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({}){}").format(t, names_, values, upsert),
                     [v for _, _, v in cols])

    @staticmethod
    def _where_delete(scur: Any, t: sql.Composable, where: list[tuple[str, str, Any]]) -> None:
        if where:
            scur.execute(sql.SQL("DELETE FROM {} WHERE {}").format(t, _eq(where)),
                         [v for _, _, v in where])

    def _metric(self, d: Direction) -> None:
        task = self._task(d)
        instance = self.dms.describe_replication_instances(Filters=[
            {"Name": "replication-instance-arn", "Values": [task["ReplicationInstanceArn"]]}])
        self.cloudwatch.put_metric_data(Namespace="AWS/DMS", MetricData=[{
            "MetricName": "CDCLatencyTarget", "Value": self.poll, "Unit": "Seconds",
            "Timestamp": dt.datetime.now(dt.UTC),
            "Dimensions": [{"Name": "ReplicationInstanceIdentifier",
                            "Value": instance["ReplicationInstances"][0]["ReplicationInstanceIdentifier"]},
                           {"Name": "ReplicationTaskIdentifier",
                            "Value": task["ReplicationTaskArn"].rsplit(":", 1)[1]}]}])


def _eq(cols: list[tuple[str, str, Any]]) -> sql.Composable:
    return sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n, _, _ in cols)

