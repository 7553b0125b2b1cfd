"""AWS DMS: replication instance, TLS endpoints reading credentials from Secrets Manager, the
full-load-and-cdc task over every table in the migration's scope, and the reverse CDC-only task
(target back to source, on a second pair of endpoints with the roles swapped: a DMS endpoint is
either a source or a target) that a rollback after the cutover drains. The workflow starts the
tasks; the
stack never does.

Each source endpoint names the logical slot its task reads (``slotName``,
:func:`paymigrate.aws.names.dms_slot_name`); the DMS engine creates that slot before it starts the
task, and reads the same name in its preflight.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import dms_settings
import policies
import pulumi
import pulumi_aws as aws

from paymigrate.aws import names

# AWS DMS looks these two roles up by these exact names: they cannot carry the env suffix, and
# only one stack per account may create them (config manageAccountSingletons).
DMS_VPC_ROLE = "dms-vpc-role"
DMS_CLOUDWATCH_LOGS_ROLE = "dms-cloudwatch-logs-role"


@dataclass
class ReplicationArgs:
    env: str
    region: str
    account_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    source_secret_arn: pulumi.Input[str]
    target_secret_arn: pulumi.Input[str]
    database_name: str
    instance_class: str = "dms.c5.xlarge"
    multi_az: bool = True
    allocated_storage_gb: int = 100
    create_service_roles: bool = True
    log_retention_days: int = 90
    # The contract's replication/dms-lob-max-size-kb and replication/dms-validation (None: its
    # defaults).
    lob_max_size_kb: int | None = None
    validation: bool | None = None


class Replication(pulumi.ComponentResource):
    instance_arn: pulumi.Output[str]
    instance_id: pulumi.Output[str]
    source_endpoint_arn: pulumi.Output[str]
    target_endpoint_arn: pulumi.Output[str]
    task_arn: pulumi.Output[str]
    task_id: pulumi.Output[str]
    reverse_task_arn: pulumi.Output[str]
    task_log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: ReplicationArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:replication:Replication", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = args.env

        service_roles: list[pulumi.Resource] = []
        if args.create_service_roles:
            for role_name, managed in (
                (DMS_VPC_ROLE, "AmazonDMSVPCManagementRole"),
                (DMS_CLOUDWATCH_LOGS_ROLE, "AmazonDMSCloudWatchLogsRole"),
            ):
                role = aws.iam.Role(
                    f"{name}-{role_name}", name=role_name,
                    assume_role_policy=json.dumps(policies.assume_role("dms.amazonaws.com")),
                    opts=child)
                service_roles.append(aws.iam.RolePolicyAttachment(
                    f"{name}-{role_name}-policy", role=role.name,
                    policy_arn=f"arn:aws:iam::aws:policy/service-role/{managed}", opts=child))
        after_roles = pulumi.ResourceOptions(parent=self, depends_on=service_roles)

        instance_id = names.dms_identifier("instance", env)
        # DMS writes task logs to this group by name; creating it first sets retention and KMS.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-task-logs", name=f"dms-tasks-{instance_id}",
            retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn, opts=child)

        subnet_group = aws.dms.ReplicationSubnetGroup(
            f"{name}-subnets", replication_subnet_group_id=names.dms_identifier("subnets", env),
            replication_subnet_group_description="DMS subnets of the migration VPC",
            subnet_ids=list(args.subnet_ids), opts=after_roles)
        instance = aws.dms.ReplicationInstance(
            f"{name}-instance",
            replication_instance_id=instance_id,
            replication_instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            multi_az=args.multi_az,
            publicly_accessible=False,
            kms_key_arn=args.kms_key_arn,
            replication_subnet_group_id=subnet_group.replication_subnet_group_id,
            vpc_security_group_ids=[args.security_group_id],
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            apply_immediately=False,
            preferred_maintenance_window="sun:05:00-sun:06:00",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*service_roles, log_group]))

        secrets = [args.source_secret_arn, args.target_secret_arn]
        access_role = aws.iam.Role(
            f"{name}-secrets-access-role",
            name=names.resource_name("dms-secrets-access", env),
            # DMS assumes secrets access roles through its regional service principal.
            assume_role_policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: json.dumps(policies.assume_role(
                    f"dms.{args.region}.amazonaws.com", source_account=account))),
            opts=child)
        access_policy = aws.iam.RolePolicy(
            f"{name}-secrets-access-policy", role=access_role.id,
            policy=pulumi.Output.all(args.kms_key_arn, *secrets).apply(
                lambda a: json.dumps(policies.dms_secrets_access_policy(
                    secret_arns=a[1:], key_arn=a[0], region=args.region))),
            opts=child)

        def endpoint(role: str, kind: str, secret_arn: pulumi.Input[str],
                     slot: str | None = None) -> aws.dms.Endpoint:
            # A source endpoint reads the slot the engine made (test_decoding: DMS's own plugin),
            # and fails its task rather than cut a value over LobMaxSize.
            settings = (aws.dms.EndpointPostgresSettingsArgs(
                slot_name=slot, plugin_name="test-decoding",
                fail_tasks_on_lob_truncation=dms_settings.SOURCE_POSTGRES_SETTINGS[
                    "FailTasksOnLobTruncation"]) if kind == "source" else None)
            return aws.dms.Endpoint(
                f"{name}-{role}-endpoint",
                endpoint_id=names.dms_identifier(role, env),
                endpoint_type=kind,
                postgres_settings=settings,
                engine_name="aurora-postgresql",
                database_name=args.database_name,
                # Aurora forces TLS (rds.force_ssl); "require" encrypts without pinning a CA
                # bundle in DMS, which would have to be imported per region.
                ssl_mode="require",
                secrets_manager_arn=secret_arn,
                secrets_manager_access_role_arn=access_role.arn,
                kms_key_arn=args.kms_key_arn,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[access_policy]))

        source = endpoint("source", "source", args.source_secret_arn, names.dms_slot_name(env))
        target = endpoint("target", "target", args.target_secret_arn)
        # Reverse: the target database read as a source, the source database written as a target.
        reverse_source = endpoint("reverse-source", "source", args.target_secret_arn,
                                  names.dms_slot_name(env, "reverse"))
        reverse_target = endpoint("reverse-target", "target", args.source_secret_arn)

        def replication_task(role: str, migration_type: str, source_arn: pulumi.Input[str],
                             target_arn: pulumi.Input[str]) -> aws.dms.ReplicationTask:
            task_id = names.dms_identifier(role, env)
            return aws.dms.ReplicationTask(
                f"{name}-{role}",
                replication_task_id=task_id,
                # The resource identifier is what CloudWatch uses as the task's metric dimension.
                resource_identifier=task_id,
                migration_type=migration_type,
                replication_instance_arn=instance.replication_instance_arn,
                source_endpoint_arn=source_arn,
                target_endpoint_arn=target_arn,
                table_mappings=dms_settings.to_json(dms_settings.table_mappings()),
                replication_task_settings=dms_settings.to_json(dms_settings.task_settings(
                    lob_max_size_kb=args.lob_max_size_kb, validation=args.validation)),
                start_replication_task=False,
                opts=child)

        task = replication_task("task", "full-load-and-cdc", source.endpoint_arn, target.endpoint_arn)
        # CDC only: started by the cutover at the target position captured inside its pause.
        reverse = replication_task("reverse-task", "cdc", reverse_source.endpoint_arn,
                                   reverse_target.endpoint_arn)

        self.instance_arn = instance.replication_instance_arn
        self.instance_id = instance.replication_instance_id
        self.source_endpoint_arn = source.endpoint_arn
        self.target_endpoint_arn = target.endpoint_arn
        self.task_arn = task.replication_task_arn
        self.task_id = task.replication_task_id
        self.reverse_task_arn = reverse.replication_task_arn
        self.task_log_group_name = log_group.name
        self.register_outputs({
            "instance_arn": self.instance_arn,
            "task_arn": self.task_arn,
            "reverse_task_arn": self.reverse_task_arn,
            "source_endpoint_arn": self.source_endpoint_arn,
            "target_endpoint_arn": self.target_endpoint_arn,
        })
