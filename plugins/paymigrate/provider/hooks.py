"""The migration's view of AWS from inside Airflow, made of the amazon provider's hooks.

Everything a task needs comes from the contract in Parameter Store, read at run time (never at
import): endpoints and credentials (Secrets Manager), the checkpoints bucket, the topics, the
DMS task. Nothing here is cached across tasks, so a value an operator changes in Parameter
Store is seen by the next task.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.dms import DmsHook
from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook
from airflow.providers.amazon.aws.hooks.sns import SnsHook
from airflow.providers.amazon.aws.hooks.ssm import SsmHook

from paymigrate.aws import contract, names
from paymigrate.aws.checkpoints import CheckpointStore
from paymigrate.db import Endpoint
from paymigrate.migration.platform import check_side, contract_engine, contract_routers
from paymigrate.replication.base import Engine
from paymigrate.replication.retention import SlotWal
from paymigrate.routing.fleet import RouterNode

log = logging.getLogger(__name__)

AWS_CONN_ID = "aws_default"


def current_env() -> str:
    """The environment suffix of this Airflow deployment (``PAYMIGRATE_ENV``)."""
    return os.environ.get("PAYMIGRATE_ENV", "local")


class MigrationHook:
    """The migration service's :class:`~paymigrate.migration.platform.Platform` in Airflow."""

    def __init__(self, *, aws_conn_id: str = AWS_CONN_ID, env: str | None = None):
        self.aws_conn_id = aws_conn_id
        self.env = env or current_env()

    @cached_property
    def config(self) -> contract.Config:
        return contract.read(SsmHook(aws_conn_id=self.aws_conn_id).conn, self.env)

    def set(self, key: str, value: Any) -> None:
        contract.write(SsmHook(aws_conn_id=self.aws_conn_id).conn, key, value, self.env)
        self.__dict__.pop("config", None)

    def endpoint(self, side: str) -> Endpoint:
        """``source`` or ``target`` credentials from Secrets Manager (never logged: see Endpoint)."""
        hook = SecretsManagerHook(aws_conn_id=self.aws_conn_id)
        credentials = hook.get_secret_as_dict(self.config[f"database/{check_side(side)}-secret-arn"])
        return Endpoint.from_secret(credentials, dbname=self.config["database/name"])

    def engine(self, *, name: str | None = None, tables: list[str] | None = None,
               exclude: list[str] | None = None) -> Engine:
        """The replication engine the contract (or the run's Param) names."""
        return contract_engine(self.config, self.env, name=name, source=self.endpoint("source"),
                               target=self.endpoint("target"), tables=tables, exclude=exclude,
                               dms_client=lambda: DmsHook(aws_conn_id=self.aws_conn_id).conn,
                               cloudwatch_client=self.cloudwatch)

    def routers(self) -> tuple[RouterNode, ...]:
        """Every PgBouncer (console and route agent), with the secret the contract names."""
        credentials = SecretsManagerHook(aws_conn_id=self.aws_conn_id).get_secret_as_dict(
            self.config["router/admin-secret-arn"])
        return contract_routers(
            self.config, credentials,
            # The provider has no Auto Scaling hook: the base hook's client.
            autoscaling=lambda: AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="autoscaling").conn,
            ec2=lambda: EC2Hook(aws_conn_id=self.aws_conn_id, api_type="client_type").conn)

    def cloudwatch(self) -> Any:
        # The provider has no CloudWatch metrics hook: the base hook's client.
        return AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="cloudwatch").conn

    def slots(self) -> tuple[list[SlotWal], list[str]]:
        """This migration's replication slots on both servers with the WAL each retains, and
        the sides that could not be read."""
        from paymigrate.replication.retention import migration_slots

        return migration_slots(self.endpoint, names.replication_name(self.env))

    def publish_retained_wal(self) -> int | None:
        """Put the slots' retained WAL to CloudWatch (``Migration/Replication``
        ``ReplicationSlotRetainedWalBytes``, alarmed in infra); returns the largest, or None
        when no server could be read (nothing is published then: no data is not zero)."""
        from paymigrate.replication.retention import NAMESPACE, metric_data

        slots, unreadable = self.slots()
        if len(unreadable) == 2:
            log.warning("retained WAL not published: %s", "; ".join(unreadable))
            return None
        cloudwatch = AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="cloudwatch").conn
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=metric_data(slots, env=self.env))
        largest = max((s.retained_bytes or 0 for s in slots), default=0)
        log.info("retained WAL: %s", "; ".join(map(str, slots)) or "no slot")
        return largest

    def checkpoints(self) -> CheckpointStore:
        return CheckpointStore(s3=S3Hook(aws_conn_id=self.aws_conn_id).conn,
                               bucket=self.config["storage/checkpoints-bucket"], env=self.env)

    def rollback_store(self) -> CheckpointStore:
        return CheckpointStore(s3=S3Hook(aws_conn_id=self.aws_conn_id).conn,
                               bucket=self.config["storage/rollback-bucket"], env=self.env)

    def publish(self, topic: str, *, subject: str, message: str) -> None:
        """Publish to one of the four topics (``migration-status``, ``error-alerts``, ...)."""
        arn = self.config[f"notifications/{topic}-topic-arn"]
        SnsHook(aws_conn_id=self.aws_conn_id).publish_to_target(target_arn=arn, message=message,
                                                                subject=subject[:100])
        log.info("published to %s: %s", topic, subject)


def contract_value(key: str) -> Any:
    """Jinja macro ``{{ contract('notifications/error-alerts-topic-arn') }}``: read at render
    time, in the worker, so DAG files never read Parameter Store when parsed."""
    if contract.parameter(key).secure:
        raise ValueError(f"{key} is a secret and cannot be rendered into a template")
    return MigrationHook().config[key]
