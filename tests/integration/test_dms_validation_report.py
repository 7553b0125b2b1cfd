"""The migration's validation report with ``engine=dms``: paymigrate's comparison of real
PostgreSQL databases and, beside it, DMS's own per-table validation states, each labelled.

The contract, secrets and endpoints come from the session's moto server; the DMS client is
moto in-process (``mock_aws``) with the test double of ``DescribeTableStatistics`` (moto has
none, and the states are what DMS's data plane would have measured), and the drain marker carried
by a stand-in of DMS's data plane."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import dms_objects
import moto_dms_double
import psycopg2
import pytest
from moto import mock_aws
from psycopg2.extensions import parse_dsn

from paymigrate import aws
from paymigrate.aws import contract
from paymigrate.migration.platform import ClientPlatform
from paymigrate.migration.service import MigrationService
from paymigrate.replication import dms_drain

pytestmark = pytest.mark.integration


@contextmanager
def dms_marker_stand_in(source_dsn: str, target_dsn: str) -> Iterator[None]:
    """TEST DOUBLE of DMS's data plane: carries the drain marker rows from the source to the
    target every 20 ms, as DMS carries any change (both sides already hold the same rows
    otherwise, so there is nothing else to apply)."""
    conns = [psycopg2.connect(dsn) for dsn in (source_dsn, target_dsn)]
    for conn in conns:
        conn.autocommit = True
        with conn.cursor() as cur:
            dms_drain.ensure_table(cur)
    stop = threading.Event()

    def carry() -> None:
        with conns[0].cursor() as src, conns[1].cursor() as tgt:
            while not stop.wait(0.02):
                src.execute("SELECT origin, pos, lsn FROM paymigrate.drain_marker")
                for row in src.fetchall():
                    tgt.execute("INSERT INTO paymigrate.drain_marker (origin, pos, lsn) "
                                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", row)

    worker = threading.Thread(target=carry, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()
        for conn in conns:
            conn.close()


def test_dms_states_sit_beside_paymigrates_report_each_labelled(stack, databases, monkeypatch):
    for dsn in databases:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE public.payments (id int PRIMARY KEY, amount numeric(12, 2))")
            cur.execute("INSERT INTO public.payments SELECT g, g / 100.0 FROM generate_series(1, 500) g")
        conn.close()
    config = contract.read(aws.client("ssm"), stack.env)
    region = aws.client("ssm").meta.region_name
    with mock_aws(), moto_dms_double.installed(monkeypatch):
        # The endpoint of AWS itself, which mock_aws intercepts; everything else goes to the
        # session's moto server.
        dms = boto3.client("dms", region_name=region,
                           endpoint_url=f"https://dms.{region}.amazonaws.com")
        arn = dms_objects.replication_task(
            dms, config["replication/dms-task-arn"].rsplit(":", 1)[1], mappings={},
            settings={"ValidationSettings": {"EnableValidation": True}})
        assert arn == config["replication/dms-task-arn"]
        dms.start_replication_task(ReplicationTaskArn=arn,
                                   StartReplicationTaskType="start-replication")
        moto_dms_double.TABLE_STATISTICS[arn] = [
            {"SchemaName": "public", "TableName": "payments", "TableState": "Table completed",
             "ValidationState": "Pending records", "ValidationPendingRecords": 12,
             "ValidationFailedRecords": 0, "ValidationSuspendedRecords": 0}]
        platform = ClientPlatform(env=stack.env, clients={"dms": dms},
                                  dbname=parse_dsn(databases[0])["dbname"])
        with dms_marker_stand_in(*databases):
            report = MigrationService(platform).validate(
                {"migration_id": "m-dms", "engine": "dms", "tables": [], "exclude": []},
                max_keys=10)
    assert report["label"].startswith("paymigrate:")
    assert report["status"] == "match"
    assert [(t["table"], t["status"]) for t in report["tables"]] == [("public.payments", "match")]
    own = report["engine_validation"]
    assert own["label"] == "AWS DMS row validation (describe_table_statistics)"
    assert own["enabled"] is True
    assert own["tables"] == [{"table": "public.payments", "ValidationState": "Pending records",
                              "ValidationPendingRecords": 12, "ValidationFailedRecords": 0,
                              "ValidationSuspendedRecords": 0}]
