"""paymigrate AWS stack: reads config once, builds settings, wires the components together."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import router_host
from components.api import Api, ApiArgs
from components.api_functions import ApiFunctions, ApiFunctionsArgs
from components.database import AuroraCluster, AuroraClusterArgs
from components.functions import Functions, FunctionsArgs
from components.keys import Keys, KeysArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.notifications import Notifications, NotificationsArgs
from components.parameters import Parameters, ParametersArgs
from components.replication import Replication, ReplicationArgs
from components.router_tier import RouterTier, RouterTierArgs
from components.secrets import Secrets, SecretsArgs
from components.storage import Storage, StorageArgs
from components.workflows import Workflows, WorkflowsArgs
from settings import StackSettings

from paymigrate.aws import contract

# ---- config, read once ----
config = pulumi.Config()
settings = StackSettings(
    env=config.require("env"),
    region=pulumi.Config("aws").require("region"),
    router_package=config.require("routerPackage"),
    router_count=config.get_int("routerCount") or 2,
    router_instance_type=config.get("routerInstanceType") or "t3.medium",
    availability_zones=tuple(config.get_object("availabilityZones") or ()),
    production_cidr=config.get("productionCidr") or "10.0.0.0/16",
    migration_cidr=config.get("migrationCidr") or "10.1.0.0/16",
    nat_per_az=config.get_bool("natPerAz") or False,
    ephemeral=config.get_bool("ephemeral") or False,
    engine_version=config.get("engineVersion") or "16.8",
    db_instance_class=config.get("dbInstanceClass") or "db.r6g.large",
    database_name=config.get("databaseName") or "payments",
    dms_instance_class=config.get("dmsInstanceClass") or "dms.c5.xlarge",
    dms_multi_az=config.get_bool("dmsMultiAz") if config.get("dmsMultiAz") else True,
    dms_allocated_storage_gb=config.get_int("dmsAllocatedStorageGb") or 100,
    manage_account_singletons=(config.get_bool("manageAccountSingletons")
                               if config.get("manageAccountSingletons") else True),
    log_retention_days=config.get_int("logRetentionDays") or 90,
    alert_emails=tuple(config.get_object("alertEmails") or ()),
    api_throttle_burst=config.get_int("apiThrottleBurst") or 100,
    api_throttle_rate=config.get_float("apiThrottleRate") or 50.0,
    authorizer_cache_seconds=config.get_int("authorizerCacheSeconds") or 300,
    contract_overrides=dict(config.get_object("parameters") or {}),
)
api_token = config.require_secret("apiAuthToken")
validation_layer_arns = tuple(config.get_object("validationLayerArns") or ())

env = settings.env
provider = aws.Provider("aws", region=settings.region, default_tags=aws.ProviderDefaultTagsArgs(
    tags={"project": "paymigrate", "environment": env, "managed-by": "pulumi"}))
with_provider = pulumi.ResourceOptions(providers=[provider])
invoke = pulumi.InvokeOptions(provider=provider)
account_id = aws.get_caller_identity_output(opts=invoke).account_id
partition = aws.get_partition_output(opts=invoke).partition

# ---- foundation ----
keys = Keys("keys", KeysArgs(env=env, partition=partition, account_id=account_id,
                             region=settings.region), opts=with_provider)
network = Network("network", NetworkArgs(
    env=env, availability_zones=settings.availability_zones,
    production_cidr=settings.production_cidr, migration_cidr=settings.migration_cidr,
    nat_per_az=settings.nat_per_az), opts=with_provider)
secrets = Secrets("secrets", SecretsArgs(env=env, kms_key_arn=keys.key_arn, api_token=api_token,
                                         ephemeral=settings.ephemeral), opts=with_provider)
storage = Storage("storage", StorageArgs(env=env, kms_key_arn=keys.key_arn,
                                         ephemeral=settings.ephemeral), opts=with_provider)
notifications = Notifications("notifications", NotificationsArgs(
    env=env, account_id=account_id, kms_key_id=keys.key_id,
    alert_emails=settings.alert_emails), opts=with_provider)
topics = notifications.topic_arns

# ---- databases and replication ----
databases = {}
for role, vpc, sg in (("source", network.production, network.source_db_sg_id),
                      ("target", network.migration, network.target_db_sg_id)):
    databases[role] = AuroraCluster(f"{role}-db", AuroraClusterArgs(
        env=env, role=role, subnet_ids=vpc.private_subnet_ids, security_group_id=sg,
        kms_key_arn=keys.key_arn, engine_version=settings.engine_version,
        engine_family=settings.engine_family, instance_class=settings.db_instance_class,
        database_name=settings.database_name, protect_data=settings.protect_data,
        # The target too: DMS's reverse CDC task reads the target's WAL after a cutover.
        logical_replication=True), opts=with_provider)

replication = Replication("replication", ReplicationArgs(
    env=env, region=settings.region, account_id=account_id,
    subnet_ids=network.migration.dms_subnet_ids, security_group_id=network.dms_sg_id,
    kms_key_arn=keys.key_arn, source_secret_arn=secrets.arns["source-db"],
    target_secret_arn=secrets.arns["target-db"], database_name=settings.database_name,
    instance_class=settings.dms_instance_class, multi_az=settings.dms_multi_az,
    allocated_storage_gb=settings.dms_allocated_storage_gb,
    create_service_roles=settings.manage_account_singletons,
    log_retention_days=settings.log_retention_days,
    lob_max_size_kb=settings.contract_value("replication/dms-lob-max-size-kb"),
    validation=settings.contract_value("replication/dms-validation")), opts=with_provider)

# ---- the router tier the applications reach the writer through ----
router_admin_endpoint = router_host.ADMIN_ENDPOINT
router_agent_port = contract.PARAMETERS["router/agent-port"].default
routers = RouterTier("routers", RouterTierArgs(
    env=env, region=settings.region, partition=partition, account_id=account_id,
    vpc_id=network.production.vpc_id, subnet_ids=network.production.private_subnet_ids,
    source_db_sg_id=network.source_db_sg_id,
    database_cidrs=[settings.production_cidr, settings.migration_cidr],
    kms_key_arn=keys.key_arn,
    secret_arns={role: secrets.arns[role] for role in router_host.SECRETS},
    package=settings.router_package, host_count=settings.router_count,
    instance_type=settings.router_instance_type, agent_port=router_agent_port,
    agent_caller_sg_ids=[network.lambda_sg_id],
    log_retention_days=settings.log_retention_days), opts=with_provider)

# ---- functions, API, workflows ----
functions = Functions("functions", FunctionsArgs(
    env=env, region=settings.region, partition=partition, account_id=account_id,
    kms_key_arn=keys.key_arn, private_subnet_ids=network.migration.private_subnet_ids,
    lambda_security_group_id=network.lambda_sg_id, source_secret_arn=secrets.arns["source-db"],
    target_secret_arn=secrets.arns["target-db"], router_admin_secret_arn=secrets.arns["router-admin"],
    alert_topic_arns=[topics["validation-alerts"], topics["error-alerts"]],
    log_retention_days=settings.log_retention_days,
    validation_layer_arns=validation_layer_arns,
    state_bucket_arns=[storage.bucket_arns["checkpoints"], storage.bucket_arns["rollback"]],
    dms_task_arn=replication.task_arn), opts=with_provider)

workflows = Workflows("workflows", WorkflowsArgs(
    env=env, region=settings.region, kms_key_arn=keys.key_arn,
    checkpoints_bucket=storage.bucket_names["checkpoints"],
    checkpoints_bucket_arn=storage.bucket_arns["checkpoints"],
    rollback_bucket=storage.bucket_names["rollback"],
    rollback_bucket_arn=storage.bucket_arns["rollback"],
    status_topic_arn=topics["migration-status"], error_topic_arn=topics["error-alerts"],
    dms_task_arn=replication.task_arn,
    validation_function_arn=functions.validation_function_arn,
    rollback_steps_function_arn=functions.rollback_steps_function_arn,
    account_id=account_id, partition=partition,
    log_retention_days=settings.log_retention_days), opts=with_provider)

api_functions = ApiFunctions("api-functions", ApiFunctionsArgs(
    env=env, region=settings.region, partition=partition, account_id=account_id,
    kms_key_arn=keys.key_arn, checkpoints_bucket_arn=storage.bucket_arns["checkpoints"],
    validation_state_machine_arn=workflows.validation_arn,
    log_retention_days=settings.log_retention_days), opts=with_provider)
api = Api("api", ApiArgs(
    env=env, authorizer_function_name=functions.authorizer_function_name,
    authorizer_invoke_arn=functions.authorizer_invoke_arn, kms_key_arn=keys.key_arn,
    log_retention_days=settings.log_retention_days,
    authorizer_cache_seconds=settings.authorizer_cache_seconds,
    throttle_burst=settings.api_throttle_burst, throttle_rate=settings.api_throttle_rate,
    manage_account_settings=settings.manage_account_singletons,
    route_function_names=api_functions.names, route_invoke_arns=api_functions.invoke_arns),
    opts=with_provider)


# ---- the contract the DAGs read ----
def endpoint(cluster: AuroraCluster) -> pulumi.Output[str]:
    return pulumi.Output.concat(cluster.endpoint, ":", cluster.port.apply(str))


contract_values = {
    "workflow/replication-engine": "dms",
    **settings.contract_overrides,
    "database/production/endpoint": endpoint(databases["source"]),
    "database/migration/endpoint": endpoint(databases["target"]),
    "database/name": settings.database_name,
    "database/source-secret-arn": secrets.arns["source-db"],
    "database/target-secret-arn": secrets.arns["target-db"],
    "api/endpoint": api.invoke_url,
    "api/auth-token": api_token,
    "api/auth-token-secret-arn": secrets.arns["api-token"],
    "router/endpoint": routers.endpoint,
    "router/admin-endpoint": router_admin_endpoint,
    "router/hosts-group": routers.hosts_group_name,
    "router/agent-port": router_agent_port,
    "router/admin-secret-arn": secrets.arns["router-admin"],
    "storage/checkpoints-bucket": storage.bucket_names["checkpoints"],
    "storage/rollback-bucket": storage.bucket_names["rollback"],
    "storage/dms-logs-bucket": storage.bucket_names["dms-logs"],
    "notifications/migration-status-topic-arn": topics["migration-status"],
    "notifications/error-alerts-topic-arn": topics["error-alerts"],
    "notifications/validation-alerts-topic-arn": topics["validation-alerts"],
    "notifications/dms-alerts-topic-arn": topics["dms-alerts"],
    "workflows/migration-state-machine-arn": workflows.migration_arn,
    "workflows/rollback-state-machine-arn": workflows.rollback_arn,
    "workflows/validation-state-machine-arn": workflows.validation_arn,
    "functions/validation-function-arn": functions.validation_function_arn,
    "replication/dms-task-arn": replication.task_arn,
    "replication/reverse-task-arn": replication.reverse_task_arn,
    "replication/dms-instance-arn": replication.instance_arn,
    "replication/dms-source-endpoint-arn": replication.source_endpoint_arn,
    "replication/dms-target-endpoint-arn": replication.target_endpoint_arn,
}
parameters = Parameters("parameters", ParametersArgs(
    env=env, values=contract_values, kms_key_id=keys.key_id), opts=with_provider)

lag_threshold = contract.parameter("monitoring/replication-lag-threshold-seconds").parse(
    contract_values.get("monitoring/replication-lag-threshold-seconds",
                        contract.PARAMETERS["monitoring/replication-lag-threshold-seconds"].default))
monitoring = Monitoring("monitoring", MonitoringArgs(
    env=env, region=settings.region, error_topic_arn=topics["error-alerts"],
    dms_topic_arn=topics["dms-alerts"],
    source_cluster_id=databases["source"].cluster_identifier,
    target_cluster_id=databases["target"].cluster_identifier,
    dms_instance_id=replication.instance_id, dms_task_id=replication.task_id,
    dms_task_log_group=replication.task_log_group_name,
    validation_function_name=functions.validation_function_name,
    validation_log_group=functions.validation_log_group_name,
    api_name=api.api_name, api_stage=api.stage_name,
    migration_machine_arn=workflows.migration_arn, rollback_machine_arn=workflows.rollback_arn,
    replication_lag_threshold_seconds=lag_threshold,
    read_error_rate_percent=settings.contract_value("rollback/error-threshold-percentage"),
    read_p99_ms=settings.contract_value("workflow/canary-max-p99-ms"),
    stale_read_percent=settings.contract_value("workflow/canary-max-stale-read-percentage"),
), opts=with_provider)

pulumi.export("env", env)
pulumi.export("api_url", api.invoke_url)
pulumi.export("source_db_endpoint", databases["source"].endpoint)
pulumi.export("target_db_endpoint", databases["target"].endpoint)
pulumi.export("dms_task_arn", replication.task_arn)
pulumi.export("migration_state_machine_arn", workflows.migration_arn)
pulumi.export("rollback_state_machine_arn", workflows.rollback_arn)
pulumi.export("dashboard_name", monitoring.dashboard_name)
pulumi.export("parameter_names", parameters.names)
pulumi.export("router_endpoint", routers.endpoint)
pulumi.export("router_hosts_group", routers.hosts_group_name)
pulumi.export("router_clients_sg_id", routers.clients_sg_id)
pulumi.export("router_operators_sg_id", routers.operators_sg_id)
