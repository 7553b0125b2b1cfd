"""Create in moto the AWS objects ``infra/`` creates in AWS, so the DAGs find the same contract.

Idempotent: every object is looked up by its name first and only created when missing; values
that can change between runs (ports, endpoints) are overwritten. Names come from
:mod:`paymigrate.aws.names` and parameters from :func:`paymigrate.aws.contract.render_all`, the same
functions infra uses, so local and AWS cannot drift.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

import paymigrate
from paymigrate.aws import contract, names, statemachines
from paymigrate.replication import dms_task
from paymigrate.replication.dms_task import SOURCE_POSTGRES_SETTINGS
from paymigrate.routing.fleet import render_routers

if TYPE_CHECKING:
    from paymigrate_dev.local.stack import LocalStack

log = logging.getLogger(__name__)

LOCAL_POLL_SECONDS = 2  # how often the local state machines poll the DMS task

ACCOUNT_ROLE_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": [
        "states.amazonaws.com", "lambda.amazonaws.com", "dms.amazonaws.com"]},
        "Action": "sts:AssumeRole"}],
})


def bootstrap(stack: LocalStack) -> str:
    """Create or update every object; return a one-line count of what was created."""
    env = stack.env
    created: list[str] = []

    c = stack.client

    buckets = {role: _bucket(c("s3"), names.bucket_name(role, env), versioned=role != "dms-logs",
                             created=created) for role in names.BUCKETS}
    topics = {role: _topic(c("sns"), names.topic_name(role, env), created) for role in names.TOPICS}
    secret_arns = _secrets(c("secretsmanager"), stack, created)
    role_arn = _role(c("iam"), names.resource_name("local-service-role", env), created)
    function_arn = _function(c("lambda"), names.resource_name("data-validation", env), role_arn, created)
    steps_arn = _function(c("lambda"), names.resource_name("rollback-steps", env), role_arn, created,
                          handler="rollback_steps.handler")
    dms = _dms(c("dms"), stack, secret_arns, created)
    machines = _state_machines(c("stepfunctions"), env, role_arn, buckets, topics, dms, function_arn,
                               created, steps_arn=steps_arn)
    src, tgt, rtr = stack.port("source"), stack.port("target"), stack.port("router")
    values = {
        "database/production/endpoint": f"127.0.0.1:{src}",
        "database/migration/endpoint": f"127.0.0.1:{tgt}",
        "database/source-secret-arn": secret_arns["source-db"],
        "database/target-secret-arn": secret_arns["target-db"],
        # Stack-owned: the real location is what the AWS REST API would give; moto does not serve it.
        "api/endpoint": f"https://local.execute-api.{stack.env_vars()['AWS_DEFAULT_REGION']}.amazonaws.com/{env}",
        "api/auth-token": stack.secrets()["api-token"],
        "api/auth-token-secret-arn": secret_arns["api-token"],
        "router/endpoint": f"127.0.0.1:{rtr}",
        "router/admin-endpoint": f"127.0.0.1:{rtr}",
        "router/admin-secret-arn": secret_arns["router-admin"],
        "router/routers": render_routers(stack.router_specs()),
        "storage/checkpoints-bucket": buckets["checkpoints"],
        "storage/rollback-bucket": buckets["rollback"],
        "storage/dms-logs-bucket": buckets["dms-logs"],
        **{f"notifications/{role}-topic-arn": arn for role, arn in topics.items()},
        "workflows/migration-state-machine-arn": machines["migration"],
        "workflows/rollback-state-machine-arn": machines["rollback"],
        "workflows/validation-state-machine-arn": machines["validation"],
        "functions/validation-function-arn": function_arn,
        "replication/dms-task-arn": dms["task"],
        "replication/reverse-task-arn": dms["reverse_task"],
        "replication/dms-instance-arn": dms["instance"],
        "replication/dms-source-endpoint-arn": dms["source"],
        "replication/dms-target-endpoint-arn": dms["target"],
    }
    _parameters(c("ssm"), values, env, created)
    return f"{len(created)} created" + (f" ({', '.join(created[:6])}{', ...' if len(created) > 6 else ''})"
                                        if created else ", all present")


# Operator-set values (mode, flags, split, thresholds) keep what is stored; infra-derived ones
# (endpoints, ARNs, names) are always rewritten.
OPERATOR_SET = {k for k, p in contract.PARAMETERS.items() if p.default is not None}


def _parameters(ssm: Any, values: dict[str, Any], env: str, created: list[str]) -> None:
    existing = {p["Name"]: p["Value"] for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=f"{contract.ROOT}/{env}/", Recursive=True, WithDecryption=True) for p in page["Parameters"]}
    keep = {}
    for key in OPERATOR_SET:
        stored = existing.get(contract.path(key, env))
        if stored is not None:
            keep[key] = stored
    for path, (value, secure) in contract.render_all({**keep, **values}, env).items():
        if existing.get(path) == value:
            continue
        ssm.put_parameter(Name=path, Value=value, Type="SecureString" if secure else "String",
                          Overwrite=True, Description=contract.PARAMETERS[contract.key_of(path, env)].description[:1024])
        if path not in existing:
            created.append(f"parameter {path}")


def _bucket(s3: Any, name: str, *, versioned: bool, created: list[str]) -> str:
    try:
        s3.head_bucket(Bucket=name)
    except ClientError:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
        created.append(f"bucket {name}")
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})
    # infra/ adds a policy denying requests without TLS; moto enforces bucket policies and
    # serves plain HTTP on loopback, so here that policy would refuse every request.
    return name


def _topic(sns: Any, name: str, created: list[str]) -> str:
    for page in sns.get_paginator("list_topics").paginate():
        for t in page["Topics"]:
            if t["TopicArn"].rsplit(":", 1)[1] == name:
                return t["TopicArn"]
    created.append(f"topic {name}")
    return sns.create_topic(Name=name)["TopicArn"]


def _secrets(sm: Any, stack: LocalStack, created: list[str]) -> dict[str, str]:
    from paymigrate.routing.access import READ_ONLY_DATABASE
    from paymigrate_dev.local.pgbouncer import ADMIN_USER
    from paymigrate_dev.local.stack import APP_USER, DATABASE, READ_ONLY_USER, SUPERUSER

    s = stack.secrets()
    db = {"engine": "postgres", "host": "127.0.0.1", "dbname": DATABASE}
    values = {
        "source-db": {**db, "port": stack.port("source"), "username": SUPERUSER, "password": s["source-db"]},
        "target-db": {**db, "port": stack.port("target"), "username": SUPERUSER, "password": s["target-db"]},
        "app-db": {**db, "port": stack.port("router"), "username": APP_USER, "password": s["app-db"]},
        "reader-db": {**db, "port": stack.port("router"), "dbname": READ_ONLY_DATABASE,
                      "username": READ_ONLY_USER, "password": s["reader-db"]},
        "router-admin": {"host": "127.0.0.1", "port": stack.port("router"), "dbname": "pgbouncer",
                         "username": ADMIN_USER, "password": s["router-admin"]},
        "api-token": {"token": s["api-token"]},
    }
    arns = {}
    for role, value in values.items():
        name = names.secret_name(role, stack.env)
        text = json.dumps(value, sort_keys=True)
        try:
            current = sm.get_secret_value(SecretId=name)
            arns[role] = current["ARN"]
            if current.get("SecretString") != text:
                sm.put_secret_value(SecretId=name, SecretString=text)
        except sm.exceptions.ResourceNotFoundException:
            arns[role] = sm.create_secret(Name=name, SecretString=text)["ARN"]
            created.append(f"secret {name}")
    return arns


def _role(iam: Any, name: str, created: list[str]) -> str:
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        created.append(f"role {name}")
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=ACCOUNT_ROLE_POLICY)["Role"]["Arn"]


def lambda_bundle() -> bytes:
    """The Lambda deployment zip: ``lambdas/`` and the ``paymigrate`` package, as infra bundles it."""
    pkg = Path(paymigrate.__file__).resolve().parent
    lambdas = pkg.parents[1] / "lambdas"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for base, prefix in ((lambdas, ""), (pkg, "paymigrate/")):
            if not base.exists():
                continue
            for f in sorted(base.rglob("*.py")):
                if "__pycache__" not in f.parts and "provider" not in f.relative_to(base).parts[:1]:
                    zf.write(f, prefix + str(f.relative_to(base)))
    return buf.getvalue()


def _function(lam: Any, name: str, role_arn: str, created: list[str], *,
              handler: str = "data_validation.handler") -> str:
    try:
        return lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    except lam.exceptions.ResourceNotFoundException:
        created.append(f"function {name}")
        return lam.create_function(FunctionName=name, Runtime="python3.12", Role=role_arn,
                                   Handler=handler, Code={"ZipFile": lambda_bundle()},
                                   Timeout=900, MemorySize=1024)["FunctionArn"]


def _dms(dms: Any, stack: LocalStack, secret_arns: dict[str, str], created: list[str]) -> dict[str, str]:
    from paymigrate_dev.local.stack import DATABASE

    env = stack.env
    inst_id = names.dms_identifier("instance", env)
    found = dms.describe_replication_instances(
        Filters=[{"Name": "replication-instance-id", "Values": [inst_id]}])["ReplicationInstances"]
    if found:
        instance = found[0]["ReplicationInstanceArn"]
    else:
        instance = dms.create_replication_instance(
            ReplicationInstanceIdentifier=inst_id, ReplicationInstanceClass="dms.t3.medium",
            AllocatedStorage=50, PubliclyAccessible=False)["ReplicationInstance"]["ReplicationInstanceArn"]
        created.append(f"dms instance {inst_id}")
    # As infra: the forward pair, and the reverse pair with the databases' roles swapped; each
    # source endpoint names the slot the DMS engine creates (moto cannot modify an endpoint, so
    # one made before it named its slot is made again).
    wanted = {
        "source": ("source", "source", "source-db", names.dms_slot_name(env)),
        "target": ("target", "target", "target-db", None),
        "reverse-source": ("source", "target", "target-db", names.dms_slot_name(env, "reverse")),
        "reverse-target": ("target", "source", "source-db", None),
    }
    endpoints = {}
    for role, (kind, side, secret, slot) in wanted.items():
        ep_id = names.dms_identifier(f"{role}-endpoint", env)
        settings: dict[str, Any] = {"SecretsManagerSecretId": secret_arns[secret],
                                    **(SOURCE_POSTGRES_SETTINGS if kind == "source" else {})}
        if slot:
            settings.update(SlotName=slot, PluginName="test-decoding")
        found = dms.describe_endpoints(Filters=[{"Name": "endpoint-id", "Values": [ep_id]}])["Endpoints"]
        if found and (found[0].get("PostgreSQLSettings") or {}).get("SlotName") == slot:
            endpoints[role] = found[0]["EndpointArn"]
            continue
        if found:
            dms.delete_endpoint(EndpointArn=found[0]["EndpointArn"])
        endpoints[role] = dms.create_endpoint(
            EndpointIdentifier=ep_id, EndpointType=kind, EngineName="postgres",
            ServerName="127.0.0.1", Port=stack.port(side), DatabaseName=DATABASE, SslMode="none",
            PostgreSQLSettings=settings,
        )["Endpoint"]["EndpointArn"]
        created.append(f"dms endpoint {ep_id}")
    tasks = {role: _dms_task(dms, names.dms_identifier(role, env), migration_type,
                             endpoints[f"{prefix}source"], endpoints[f"{prefix}target"], instance,
                             created)
             for role, migration_type, prefix in (("task", "full-load-and-cdc", ""),
                                                  ("reverse-task", "cdc", "reverse-"))}
    return {"instance": instance, "task": tasks["task"], "reverse_task": tasks["reverse-task"],
            "source": endpoints["source"], "target": endpoints["target"]}


def _dms_task(dms: Any, task_id: str, migration_type: str, source: str, target: str,
              instance: str, created: list[str]) -> str:
    found = dms.describe_replication_tasks(
        Filters=[{"Name": "replication-task-id", "Values": [task_id]}])["ReplicationTasks"]
    if found and (found[0]["SourceEndpointArn"], found[0]["TargetEndpointArn"]) == (source, target):
        return str(found[0]["ReplicationTaskArn"])
    if found:  # its endpoints were made again
        dms.delete_replication_task(ReplicationTaskArn=found[0]["ReplicationTaskArn"])
    created.append(f"dms task {task_id}")
    return str(dms.create_replication_task(
        ReplicationTaskIdentifier=task_id, SourceEndpointArn=source, TargetEndpointArn=target,
        ReplicationInstanceArn=instance, MigrationType=migration_type,
        TableMappings=json.dumps(dms_task.table_mappings()),
        # infra's settings: LobMaxSize and DMS validation as the contract's defaults say.
        ReplicationTaskSettings=json.dumps(dms_task.task_settings()),
    )["ReplicationTask"]["ReplicationTaskArn"])


def _state_machines(sfn: Any, env: str, role_arn: str, buckets: dict[str, str], topics: dict[str, str],
                    dms: dict[str, str], function_arn: str, created: list[str], *,
                    steps_arn: str) -> dict[str, str]:
    existing = {m["name"]: m["stateMachineArn"] for page in sfn.get_paginator("list_state_machines").paginate()
                for m in page["stateMachines"]}
    common: dict[str, Any] = {"status_topic_arn": topics["migration-status"], "error_topic_arn": topics["error-alerts"],
              "dms_task_arn": dms["task"],
              "engine_parameter": contract.path("workflow/replication-engine", env),
              "sdk_service": "dms",  # moto's name for what AWS calls `databasemigration`
              # moto's DMS task changes state at once: polling it every 30 s would only wait.
              "poll_seconds": LOCAL_POLL_SECONDS}
    definitions = {
        "migration": statemachines.migration_definition(
            checkpoints_bucket=buckets["checkpoints"], validation_function_arn=function_arn, **common),
        "rollback": statemachines.rollback_definition(
            rollback_bucket=buckets["rollback"], steps_function_arn=steps_arn,
            active_writer_parameter=contract.path("database/active-writer", env), **common),
        "validation": statemachines.validation_definition(validation_function_arn=function_arn),
    }
    arns = {}
    for role, definition in definitions.items():
        name = names.state_machine_name(role, env)
        text = json.dumps(definition)
        if name in existing:
            arns[role] = existing[name]
            sfn.update_state_machine(stateMachineArn=arns[role], definition=text, roleArn=role_arn)
        else:
            arns[role] = sfn.create_state_machine(name=name, definition=text, roleArn=role_arn)["stateMachineArn"]
            created.append(f"state machine {name}")
    return arns
