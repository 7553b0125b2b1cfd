"""What the migration service needs from AWS (:class:`Platform`), and the one made of plain boto3
clients (:class:`ClientPlatform`) for the Lambda and the command line. Inside Airflow the same
protocol is met by ``paymigrate.provider.hooks.MigrationHook``, made of the provider's hooks.

Everything comes from the contract in Parameter Store, read when first needed: endpoints and
credentials from the secrets it names, the buckets, the topics, the engine and the router.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, Protocol

from paymigrate.aws import contract, names
from paymigrate.aws.checkpoints import CheckpointStore
from paymigrate.db import Endpoint
from paymigrate.routing.fleet import RouterNode, hosts_group_routers, parse_routers

SIDES = ("source", "target")


class Platform(Protocol):
    env: str

    @property
    def config(self) -> Mapping[str, Any]: ...
    def set(self, key: str, value: Any) -> None: ...
    def endpoint(self, side: str) -> Endpoint: ...
    def engine(self, *, name: str | None = None, tables: list[str] | None = None,
               exclude: list[str] | None = None) -> Any: ...
    def checkpoints(self) -> CheckpointStore: ...
    def rollback_store(self) -> CheckpointStore: ...
    def publish(self, topic: str, *, subject: str, message: str) -> None: ...
    def routers(self) -> tuple[RouterNode, ...]: ...
    def cloudwatch(self) -> Any: ...


def check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side {side!r} is not source or target")
    return side


def contract_routers(config: Mapping[str, Any], secret: Mapping[str, Any] | str, *,
                     autoscaling: Callable[[], Any], ec2: Callable[[], Any]) -> tuple[RouterNode, ...]:
    """Every router, each reached through its route agent, whose calls are signed with the
    router-admin secret's password: the instances of ``router/hosts-group`` in AWS, the list
    ``router/routers`` when that group is ``local``. The clients are made only for AWS."""
    admin = Endpoint.from_secret(secret, dbname="pgbouncer")
    assert admin.password is not None  # from_secret requires one
    group = config["router/hosts-group"]
    if group == "local":
        specs = parse_routers(config["router/routers"], admin_endpoint=config["router/admin-endpoint"])
    else:
        specs = hosts_group_routers(autoscaling(), ec2(), group, agent_port=config["router/agent-port"])
    return tuple(s.node(password=admin.password) for s in specs)


def contract_engine(config: Mapping[str, Any], env: str, *, name: str | None, source: Endpoint,
                    target: Endpoint, tables: list[str] | None, exclude: list[str] | None,
                    dms_client: Callable[[], Any], cloudwatch_client: Callable[[], Any]) -> Any:
    """The replication engine ``name`` (default: the contract's) on the contract's resources.
    The clients are made only for the DMS engine."""
    from paymigrate.replication import engine_for

    name = name or config["workflow/replication-engine"]
    if name == "dms":
        return engine_for("dms", task_arn=config["replication/dms-task-arn"],
                          reverse_task_arn=config["replication/reverse-task-arn"],
                          slot_name=names.dms_slot_name(env),
                          reverse_slot_name=names.dms_slot_name(env, "reverse"),
                          dms_client=dms_client(), cloudwatch_client=cloudwatch_client(),
                          source=source, target=target,
                          tables=tables or None, exclude=exclude or None,
                          lob_max_size_kb=config["replication/dms-lob-max-size-kb"],
                          validation=config["replication/dms-validation"])
    return engine_for(name, source=source, target=target, name=names.replication_name(env),
                      tables=tables or None, exclude=exclude or None,
                      initial_copy=config["replication/initial-copy"])


class ClientPlatform:
    """The platform on boto3 clients (``paymigrate.aws.client`` unless given). ``dbname``
    overrides the contract's database name (tests use their own databases)."""

    def __init__(self, *, env: str, clients: Mapping[str, Any] | None = None, dbname: str | None = None):
        self.env, self.dbname = env, dbname
        self._clients = dict(clients or {})

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from paymigrate import aws

            self._clients[service] = aws.client(service)
        return self._clients[service]

    @cached_property
    def config(self) -> contract.Config:
        return contract.read(self.client("ssm"), self.env)

    def set(self, key: str, value: Any) -> None:
        contract.write(self.client("ssm"), key, value, self.env)
        self.__dict__.pop("config", None)

    def endpoint(self, side: str) -> Endpoint:
        arn = self.config[f"database/{check_side(side)}-secret-arn"]
        secret = self.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        return Endpoint.from_secret(secret, dbname=self.dbname or self.config["database/name"])

    def engine(self, *, name: str | None = None, tables: list[str] | None = None,
               exclude: list[str] | None = None) -> Any:
        return contract_engine(self.config, self.env, name=name, source=self.endpoint("source"),
                               target=self.endpoint("target"), tables=tables, exclude=exclude,
                               dms_client=lambda: self.client("dms"), cloudwatch_client=self.cloudwatch)

    def checkpoints(self) -> CheckpointStore:
        return CheckpointStore(s3=self.client("s3"), bucket=self.config["storage/checkpoints-bucket"],
                               env=self.env)

    def rollback_store(self) -> CheckpointStore:
        return CheckpointStore(s3=self.client("s3"), bucket=self.config["storage/rollback-bucket"],
                               env=self.env)

    def publish(self, topic: str, *, subject: str, message: str) -> None:
        self.client("sns").publish(TopicArn=self.config[f"notifications/{topic}-topic-arn"],
                                   Subject=subject[:100], Message=message)

    def routers(self) -> tuple[RouterNode, ...]:
        secret = self.client("secretsmanager").get_secret_value(
            SecretId=self.config["router/admin-secret-arn"])["SecretString"]
        return contract_routers(self.config, secret, autoscaling=lambda: self.client("autoscaling"),
                                ec2=lambda: self.client("ec2"))

    def cloudwatch(self) -> Any:
        return self.client("cloudwatch")
