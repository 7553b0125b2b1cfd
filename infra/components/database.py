"""An Aurora PostgreSQL cluster, writer and reader, as the source or the target of the migration.

The master password is managed by RDS in Secrets Manager (never in config or state). TLS is
forced; the source also turns on logical replication, which DMS CDC needs. Deletion protection
and a final snapshot are on unless the stack is ephemeral.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import policies
import pulumi
import pulumi_aws as aws

from paymigrate.aws import names

PORT = 5432
MONITORING_INTERVAL_SECONDS = 60
BACKUP_RETENTION_DAYS = 7


@dataclass
class AuroraClusterArgs:
    env: str
    role: str  # "source" or "target"
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    engine_version: str
    engine_family: str
    instance_class: str
    database_name: str
    protect_data: bool = True
    logical_replication: bool = False


def cluster_parameters(*, logical_replication: bool) -> list[dict[str, str]]:
    """Cluster parameter group settings; static ones apply at the next reboot.

    >>> [p["name"] for p in cluster_parameters(logical_replication=False)]
    ['rds.force_ssl', 'log_connections', 'log_disconnections']
    """
    params = [
        {"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"},
        {"name": "log_connections", "value": "1", "apply_method": "immediate"},
        {"name": "log_disconnections", "value": "1", "apply_method": "immediate"},
    ]
    if logical_replication:
        params += [
            {"name": "rds.logical_replication", "value": "1", "apply_method": "pending-reboot"},
            # Slots for DMS plus headroom for the reverse replication used for fallback.
            {"name": "max_replication_slots", "value": "20", "apply_method": "pending-reboot"},
            {"name": "max_wal_senders", "value": "20", "apply_method": "pending-reboot"},
            # A stalled slot must not hold WAL for ever: DMS reconnects well within this.
            {"name": "wal_sender_timeout", "value": "60000", "apply_method": "immediate"},
        ]
    return params


class AuroraCluster(pulumi.ComponentResource):
    cluster_identifier: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    reader_endpoint: pulumi.Output[str]
    port: pulumi.Output[int]
    arn: pulumi.Output[str]
    master_secret_arn: pulumi.Output[str]
    writer_identifier: pulumi.Output[str]

    def __init__(self, name: str, args: AuroraClusterArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:database:AuroraCluster", name, None, opts)
        if args.role not in ("source", "target"):
            raise ValueError(f"role must be source or target, not {args.role!r}")
        child = pulumi.ResourceOptions(parent=self)
        env = args.env
        identifier = names.resource_name(f"{args.role}-db", env)

        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets", name=identifier, subnet_ids=list(args.subnet_ids),
            description=f"Private subnets of the {args.role} database", opts=child)
        parameter_group = aws.rds.ClusterParameterGroup(
            f"{name}-params", name=identifier, family=args.engine_family,
            description=f"paymigrate {args.role}: TLS only"
            + (", logical replication" if args.logical_replication else ""),
            parameters=cluster_parameters(logical_replication=args.logical_replication),
            opts=child)
        monitoring_role = aws.iam.Role(
            f"{name}-monitoring-role", name=names.resource_name(f"{args.role}-db-monitoring", env),
            assume_role_policy=json.dumps(policies.assume_role("monitoring.rds.amazonaws.com")),
            opts=child)
        aws.iam.RolePolicyAttachment(
            f"{name}-monitoring-policy", role=monitoring_role.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
            opts=child)

        cluster = aws.rds.Cluster(
            f"{name}-cluster",
            cluster_identifier=identifier,
            engine="aurora-postgresql",
            engine_version=args.engine_version,
            database_name=args.database_name,
            master_username="paymigrate_admin",
            manage_master_user_password=True,
            master_user_secret_kms_key_id=args.kms_key_arn,
            port=PORT,
            db_subnet_group_name=subnet_group.name,
            db_cluster_parameter_group_name=parameter_group.name,
            vpc_security_group_ids=[args.security_group_id],
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            iam_database_authentication_enabled=True,
            backup_retention_period=BACKUP_RETENTION_DAYS,
            preferred_backup_window="02:00-03:00",
            preferred_maintenance_window="sun:04:00-sun:05:00",
            copy_tags_to_snapshot=True,
            enabled_cloudwatch_logs_exports=["postgresql"],
            deletion_protection=args.protect_data,
            skip_final_snapshot=not args.protect_data,
            final_snapshot_identifier=f"{identifier}-final" if args.protect_data else None,
            # Engine upgrades are planned changes of a payment database, never a side effect.
            allow_major_version_upgrade=False,
            apply_immediately=False,
            tags={"Name": identifier},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect_data),
        )

        instances = []
        for tier, promotion in (("writer", 0), ("reader", 1)):
            instances.append(aws.rds.ClusterInstance(
                f"{name}-{tier}",
                identifier=f"{identifier}-{tier}",
                cluster_identifier=cluster.id,
                engine="aurora-postgresql",
                engine_version=args.engine_version,
                instance_class=args.instance_class,
                db_subnet_group_name=subnet_group.name,
                publicly_accessible=False,
                promotion_tier=promotion,
                performance_insights_enabled=True,
                performance_insights_kms_key_id=args.kms_key_arn,
                performance_insights_retention_period=7,
                monitoring_interval=MONITORING_INTERVAL_SECONDS,
                monitoring_role_arn=monitoring_role.arn,
                auto_minor_version_upgrade=True,
                ca_cert_identifier="rds-ca-rsa2048-g1",
                apply_immediately=False,
                tags={"Name": f"{identifier}-{tier}"},
                opts=child,
            ))

        self.cluster_identifier = cluster.cluster_identifier
        self.endpoint = cluster.endpoint
        self.reader_endpoint = cluster.reader_endpoint
        self.port = cluster.port
        self.arn = cluster.arn
        self.master_secret_arn = cluster.master_user_secrets.apply(
            lambda secrets: secrets[0].secret_arn if secrets else None)
        self.writer_identifier = instances[0].identifier
        self.register_outputs({
            "cluster_identifier": self.cluster_identifier,
            "endpoint": self.endpoint,
            "reader_endpoint": self.reader_endpoint,
        })
