"""The Pulumi program under mocks: assertions over every resource it creates."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pulumi_harness import ACCOUNT, API_TOKEN, base_config, run_program

from paymigrate.aws import contract, names, statemachines
from paymigrate.validation import metrics

ENV = "dev"

# Names AWS itself dictates, so they cannot carry the environment suffix.
FIXED_NAMES = {
    "dms-vpc-role": "AWS DMS looks up its VPC management role by this exact name",
    "dms-cloudwatch-logs-role": "AWS DMS looks up its CloudWatch Logs role by this exact name",
}

# Write actions allowed on Resource "*": AWS offers no resource-level permission for them.
WILDCARD_WRITES = {
    "ec2:CreateNetworkInterface": "a VPC Lambda creates its ENIs before they have ARNs",
    "ec2:DeleteNetworkInterface": "a VPC Lambda removes its ENIs",
    "ec2:AssignPrivateIpAddresses": "VPC Lambda ENI management",
    "ec2:UnassignPrivateIpAddresses": "VPC Lambda ENI management",
    "xray:PutTraceSegments": "X-Ray segments have no resource ARN",
    "xray:PutTelemetryRecords": "X-Ray telemetry has no resource ARN",
    "cloudwatch:PutMetricData": "no resource ARN; scoped by the cloudwatch:namespace condition",
    "logs:CreateLogDelivery": "Step Functions vended log delivery takes no resource",
    "logs:UpdateLogDelivery": "Step Functions vended log delivery takes no resource",
    "logs:DeleteLogDelivery": "Step Functions vended log delivery takes no resource",
    "logs:PutResourcePolicy": "Step Functions vended log delivery sets the log resource policy",
}
READ_PREFIXES = ("Describe", "Get", "List")

NAME_KEYS = ("name", "bucket", "clusterIdentifier", "identifier", "replicationInstanceId",
             "replicationTaskId", "endpointId", "replicationSubnetGroupId", "dashboardName",
             "finalSnapshotIdentifier")


@pytest.fixture(scope="module")
def stack(program_stack):
    return program_stack


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _suffixed(name: str) -> bool:
    return re.search(rf"(^|[-/_.:]){ENV}($|[-/_.:])", name) is not None


def test_program_builds_every_concern(stack):
    mocks, exported = stack
    components = {r.typ for r in mocks.resources if r.typ.startswith("paymigrate:")}
    for concern in ("network", "database", "replication", "functions", "api", "storage",
                    "notifications", "parameters", "workflows", "monitoring"):
        assert any(t.split(":")[1] == concern for t in components), concern
    assert exported["api_url"].endswith("/live")
    assert exported["task_arn"].endswith(":task:paymigrate-dms-task-dev")


def test_every_physical_name_carries_the_env_suffix(stack):
    mocks, _ = stack
    checked = 0
    for r in mocks.resources:
        if r.typ.startswith(("paymigrate:", "pulumi:")):
            continue
        candidates = [r.inputs[k] for k in NAME_KEYS if isinstance(r.inputs.get(k), str)]
        tags = r.inputs.get("tags") or {}
        if "Name" in tags:
            candidates.append(tags["Name"])
        for name in candidates:
            checked += 1
            assert _suffixed(name) or name in FIXED_NAMES, f"{r.typ} {r.name}: {name!r}"
    assert checked > 150


def test_no_security_group_opens_postgres_or_ssh_to_the_internet(stack):
    mocks, _ = stack
    for sg in mocks.of("aws:ec2/securityGroup:SecurityGroup"):
        assert not sg.inputs.get("ingress"), f"{sg.name}: inline ingress rules"
    rules = mocks.of("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    rules += [r for r in mocks.of("aws:ec2/securityGroupRule:SecurityGroupRule")
              if r.inputs.get("type") == "ingress"]
    assert rules
    for rule in rules:
        cidrs = _as_list(rule.inputs.get("cidrIpv4") or rule.inputs.get("cidrBlocks") or [])
        cidrs += _as_list(rule.inputs.get("cidrIpv6") or rule.inputs.get("ipv6CidrBlocks") or [])
        if not {"0.0.0.0/0", "::/0"} & set(cidrs):
            continue
        protocol = str(rule.inputs.get("ipProtocol") or rule.inputs.get("protocol"))
        low, high = rule.inputs.get("fromPort", 0), rule.inputs.get("toPort", 65535)
        assert protocol not in ("-1", "all"), f"{rule.name}: all traffic from anywhere"
        for port in (22, 5432):
            assert not low <= port <= high, f"{rule.name}: port {port} from anywhere"


def test_databases_accept_postgres_only_from_lambda_dms_and_peer_vpc(stack):
    mocks, _ = stack
    rules = [r for r in mocks.of("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             if r.inputs["securityGroupId"].startswith("network-")]
    sources: dict[str, set[str]] = {}
    for rule in rules:
        assert (rule.inputs["fromPort"], rule.inputs["toPort"]) == (5432, 5432), rule.name
        origin = rule.inputs.get("cidrIpv4") or rule.inputs["referencedSecurityGroupId"]
        sources.setdefault(rule.inputs["securityGroupId"], set()).add(origin)
    assert sources == {
        "network-source-db-sg-id": {"10.1.0.0/16", "routers-hosts-sg-id"},
        "network-target-db-sg-id": {"network-validation-lambda-sg-id", "network-dms-sg-id",
                                    "10.0.0.0/16"},
    }


def test_network_spans_three_azs_with_tgw_routes_between_the_vpcs(stack):
    mocks, _ = stack
    vpcs = {v.inputs["cidrBlock"] for v in mocks.of("aws:ec2/vpc:Vpc")}
    assert vpcs == {"10.0.0.0/16", "10.1.0.0/16"}
    subnets = mocks.of("aws:ec2/subnet:Subnet")
    assert len(subnets) == 18
    assert {s.inputs["availabilityZone"] for s in subnets} == {
        "eu-west-1a", "eu-west-1b", "eu-west-1c"}
    assert not any(s.inputs.get("mapPublicIpOnLaunch") for s in subnets)
    assert len(mocks.of("aws:ec2transitgateway/vpcAttachment:VpcAttachment")) == 2
    tgw_routes = [r for r in mocks.of("aws:ec2/route:Route") if r.inputs.get("transitGatewayId")]
    assert sorted(r.inputs["destinationCidrBlock"] for r in tgw_routes) == (
        ["10.0.0.0/16"] * 3 + ["10.1.0.0/16"] * 3)
    assert len(mocks.of("aws:ec2/natGateway:NatGateway")) == 2  # one per VPC by default


def test_databases_are_private_encrypted_tls_only_and_protected(stack):
    mocks, _ = stack
    clusters = mocks.of("aws:rds/cluster:Cluster")
    assert len(clusters) == 2
    for c in clusters:
        i = c.inputs
        assert i["storageEncrypted"] is True and i["kmsKeyId"].startswith("arn:aws:kms:")
        assert i["manageMasterUserPassword"] is True and "masterPassword" not in i
        assert i["backupRetentionPeriod"] == 7
        assert int(i["engineVersion"].split(".")[0]) >= 16
        assert i["deletionProtection"] is True and i["skipFinalSnapshot"] is False
        assert i["finalSnapshotIdentifier"].endswith("-final")
    instances = mocks.of("aws:rds/clusterInstance:ClusterInstance")
    assert len(instances) == 4
    for inst in instances:
        assert inst.inputs["publiclyAccessible"] is False
        assert inst.inputs["performanceInsightsEnabled"] is True
        assert inst.inputs["monitoringInterval"] > 0 and inst.inputs["monitoringRoleArn"]
    groups = {g.inputs["name"]: {p["name"]: p["value"] for p in g.inputs["parameters"]}
              for g in mocks.of("aws:rds/clusterParameterGroup:ClusterParameterGroup")}
    # Both: the target is read by DMS's reverse CDC task after a cutover.
    assert groups["paymigrate-source-db-dev"]["rds.logical_replication"] == "1"
    assert groups["paymigrate-target-db-dev"]["rds.logical_replication"] == "1"
    assert all(g["rds.force_ssl"] == "1" for g in groups.values())


def test_every_bucket_is_private_encrypted_and_tls_only(stack):
    mocks, _ = stack
    buckets = {b.id for b in mocks.of("aws:s3/bucket:Bucket")}
    assert buckets == {f"paymigrate-{r}-dev" for r in ("checkpoints", "rollback", "dms-logs")}

    def per_bucket(typ: str) -> dict[str, Any]:
        return {r.inputs["bucket"]: r.inputs for r in mocks.of(typ)}

    blocks = per_bucket("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    sse = per_bucket("aws:s3/bucketServerSideEncryptionConfiguration:"
                     "BucketServerSideEncryptionConfiguration")
    bucket_policies = per_bucket("aws:s3/bucketPolicy:BucketPolicy")
    versioning = per_bucket("aws:s3/bucketVersioning:BucketVersioning")
    for bucket in buckets:
        assert all(blocks[bucket][k] is True for k in (
            "blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
            "restrictPublicBuckets")), bucket
        default = sse[bucket]["rules"][0]["applyServerSideEncryptionByDefault"]
        assert default["sseAlgorithm"] == "aws:kms" and default["kmsMasterKeyId"]
        statements = json.loads(bucket_policies[bucket]["policy"])["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {
            "Bool": {"aws:SecureTransport": "false"}} and f"arn:aws:s3:::{bucket}/*" in s[
            "Resource"] for s in statements), bucket
    assert set(versioning) == {"paymigrate-checkpoints-dev", "paymigrate-rollback-dev"}
    assert all(v["versioningConfiguration"]["status"] == "Enabled" for v in versioning.values())


def _unwrap(value: Any) -> Any:
    """A secret input reaches the mocks as ``{<secret signature>: ..., "value": v}``."""
    if isinstance(value, dict) and "value" in value and len(value) == 2:
        return value["value"]
    return value


def _policy_documents(mocks) -> list[tuple[str, dict]]:
    docs = []
    for typ in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"):
        docs += [(r.name, json.loads(r.inputs["policy"])) for r in mocks.of(typ)]
    return docs


def test_no_iam_statement_allows_everything_or_writes_everywhere(stack):
    mocks, _ = stack
    docs = _policy_documents(mocks)
    assert {name for name, _ in docs} == {
        "replication-secrets-access-policy", "functions-validation-policy",
        "functions-rollback-steps-policy", "functions-authorizer-policy",
        "workflows-migration-policy", "workflows-rollback-policy", "workflows-validation-policy",
        "routers-policy", "api-functions-migration-status-api-policy",
        "api-functions-start-validation-api-policy"}
    wildcard_writes_seen = set()
    for name, doc in docs:
        for st in doc["Statement"]:
            if st["Effect"] != "Allow":
                continue
            actions = _as_list(st["Action"])
            assert not {"*", "*:*"} & set(actions), f"{name}: Action *"
            assert not any(a.endswith(":*") for a in actions), f"{name}: service wildcard"
            if "*" not in _as_list(st["Resource"]):
                continue
            for action in actions:
                verb = action.split(":", 1)[1]
                if verb.startswith(READ_PREFIXES):
                    continue
                assert action in WILDCARD_WRITES, f"{name}: {action} on Resource *"
                wildcard_writes_seen.add(action)
                if action == "cloudwatch:PutMetricData":
                    assert st["Condition"] == {"StringEquals": {
                        "cloudwatch:namespace": "Migration/DataValidation"}}
    # The allow-list carries no stale entry.
    assert wildcard_writes_seen == set(WILDCARD_WRITES)


def test_roles_are_assumed_only_by_aws_services(stack):
    mocks, _ = stack
    for role in mocks.of("aws:iam/role:Role"):
        for st in json.loads(role.inputs["assumeRolePolicy"])["Statement"]:
            assert set(st["Principal"]) == {"Service"}, role.name


def test_functions_least_privilege_and_bundle(stack):
    mocks, _ = stack
    functions = {f.inputs["name"]: f.inputs for f in mocks.of("aws:lambda/function:Function")}
    validator = functions["paymigrate-data-validation-dev"]
    authorizer = functions["paymigrate-api-authorizer-dev"]
    for fn in (validator, authorizer):
        assert tuple(int(x) for x in fn["runtime"].removeprefix("python").split(".")) >= (3, 12)
        assert fn["tracingConfig"]["mode"] == "Active"
        assert fn["environment"]["variables"]["PAYMIGRATE_ENV"] == ENV
    assert validator["handler"] == "data_validation.handler"
    assert authorizer["handler"] == "api_authorizer.handler"
    assert validator["vpcConfig"]["securityGroupIds"] == ["network-validation-lambda-sg-id"]
    assert len(validator["vpcConfig"]["subnetIds"]) == 3
    assert "vpcConfig" not in authorizer or not authorizer["vpcConfig"]
    policies = dict(_policy_documents(mocks))
    token_read = [s for s in policies["functions-authorizer-policy"]["Statement"]
                  if s["Sid"] == "ReadApiToken"][0]
    assert token_read["Resource"] == (
        f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/migration/dev/api/auth-token")
    validator_doc = policies["functions-validation-policy"]["Statement"]
    secrets = [s for s in validator_doc if s["Sid"] == "ReadDatabaseCredentials"][0]
    assert all("paymigrate/dev/source-db" in a or "paymigrate/dev/target-db" in a
               for a in secrets["Resource"])
    topics = [s for s in validator_doc if s["Sid"] == "PublishAlerts"][0]["Resource"]
    assert sorted(t.rsplit(":", 1)[1] for t in topics) == [
        "paymigrate-error-alerts-dev", "paymigrate-validation-alerts-dev"]
    for group in mocks.of("aws:cloudwatch/logGroup:LogGroup"):
        assert group.inputs["retentionInDays"] > 0 and group.inputs["kmsKeyId"], group.name


def test_parameters_are_exactly_the_contract(stack):
    mocks, _ = stack
    written = {p.inputs["name"]: p.inputs for p in mocks.of("aws:ssm/parameter:Parameter")}
    # Drift test: the program and the local bootstrap both write contract.render_all's paths.
    assert set(written) == {p.path(ENV) for p in contract.PARAMETERS.values()}
    for path, inputs in written.items():
        secure = contract.PARAMETERS[contract.key_of(path, ENV)].secure
        assert inputs["type"] == ("SecureString" if secure else "String"), path
        assert bool(inputs.get("keyId")) == secure, path
    stored = {}
    for path, inputs in written.items():
        secure = contract.PARAMETERS[contract.key_of(path, ENV)].secure
        # Plain values are insecure_value (visible in diffs); secure ones arrive as secrets.
        assert ("value" in inputs) == secure and ("insecureValue" in inputs) != secure, path
        if secure:
            assert _unwrap(inputs["value"]) is not inputs["value"], f"{path} is not a secret"
        stored[path] = _unwrap(inputs["value"]) if secure else inputs["insecureValue"]
    parsed = contract.parse_stored(stored.items(), ENV)
    assert set(parsed) == set(contract.PARAMETERS)
    assert parsed["api/auth-token"] == API_TOKEN
    assert parsed["workflow/mode"] == "replication"  # config override
    assert parsed["workflow/replication-engine"] == "dms"
    assert parsed["monitoring/replication-lag-threshold-seconds"] == 7.0
    assert parsed["database/production/endpoint"].startswith("paymigrate-source-db-dev.cluster-")
    assert parsed["replication/dms-task-arn"].endswith(":task:paymigrate-dms-task-dev")
    assert parsed["replication/reverse-task-arn"].endswith(":task:paymigrate-dms-reverse-task-dev")


def test_state_machines_are_sound_logged_and_traced(stack):
    mocks, exported = stack
    machines = {m.inputs["name"]: m.inputs for m in mocks.of("aws:sfn/stateMachine:StateMachine")}
    migration = json.loads(machines["paymigrate-migration-workflow-dev"]["definition"])
    rollback = json.loads(machines["paymigrate-rollback-workflow-dev"]["definition"])
    for definition in (migration, rollback):
        assert statemachines.structural_problems(definition) == []
    assert set(migration["States"]) >= set(statemachines.MIGRATION_STATES)
    assert set(rollback["States"]) >= set(statemachines.ROLLBACK_STATES)
    assert migration["States"]["start_replication_task"]["Parameters"]["ReplicationTaskArn"] == (
        exported["task_arn"])
    assert rollback["States"]["stop_replication_task"]["Parameters"]["ReplicationTaskArn"] == (
        exported["task_arn"])
    for definition in (migration, rollback):
        assert definition["States"]["read_replication_engine"]["Parameters"]["Name"] == (
            "/migration/dev/workflow/replication-engine")
    assert migration["States"]["validate"]["Parameters"]["FunctionName"] == (
        exported["validation_arn"])
    # The rollback's switch back, route and unfreeze run in the rollback-steps function.
    (steps,) = [f for f in mocks.of("aws:lambda/function:Function")
                if f.inputs["name"] == "paymigrate-rollback-steps-dev"]
    assert steps.inputs["handler"] == "rollback_steps.handler"
    assert steps.inputs["vpcConfig"]["subnetIds"]
    for state in statemachines.ROLLBACK_LAMBDA_STEPS:
        params = rollback["States"][state]["Parameters"]
        assert params["FunctionName"].endswith(":function:paymigrate-rollback-steps-dev")
        assert params["Payload"]["step"] == state
    assert rollback["States"]["read_active_writer"]["Parameters"]["Name"] == (
        "/migration/dev/database/active-writer")
    for inputs in machines.values():
        assert inputs["loggingConfiguration"]["level"] == "ALL"
        assert inputs["loggingConfiguration"]["logDestination"].endswith(":*")
        assert inputs["tracingConfiguration"]["enabled"] is True


def test_replication_uses_tls_secrets_and_validates(stack):
    mocks, _ = stack
    endpoints = mocks.of("aws:dms/endpoint:Endpoint")
    assert {e.inputs["endpointType"] for e in endpoints} == {"source", "target"}
    for e in endpoints:
        assert e.inputs["sslMode"] in ("require", "verify-ca", "verify-full")
        assert "secret:paymigrate/dev/" in e.inputs["secretsManagerArn"]
        assert e.inputs["secretsManagerAccessRoleArn"].endswith(":role/paymigrate-dms-secrets-"
                                                                 "access-dev")
        assert "password" not in e.inputs
    tasks = {t.inputs["replicationTaskId"]: t.inputs
             for t in mocks.of("aws:dms/replicationTask:ReplicationTask")}
    assert set(tasks) == {"paymigrate-dms-task-dev", "paymigrate-dms-reverse-task-dev"}
    task, reverse = tasks["paymigrate-dms-task-dev"], tasks["paymigrate-dms-reverse-task-dev"]
    assert (task["migrationType"], reverse["migrationType"]) == ("full-load-and-cdc", "cdc")
    for t in (task, reverse):
        assert t["startReplicationTask"] is False
        settings = json.loads(t["replicationTaskSettings"])
        assert settings["ValidationSettings"]["EnableValidation"] is True
        assert settings["Logging"]["EnableLogging"] is True
        assert settings["TargetMetadata"]["LobMaxSize"] == 32  # the contract's default
        rule = json.loads(t["tableMappings"])["rules"][0]
        # Every schema of the scope, not only public (validation compares every schema).
        assert rule["object-locator"] == {"schema-name": "%", "table-name": "%"}
    # The reverse task reads the target database and writes the source one; each source
    # endpoint names the slot the engine creates (paymigrate.aws.names), read by DMS's own plugin.
    by_arn = {f"arn:aws:dms:eu-west-1:{ACCOUNT}:endpoint:{e.inputs['endpointId']}": e.inputs
              for e in endpoints}
    forward_src, forward_tgt = by_arn[task["sourceEndpointArn"]], by_arn[task["targetEndpointArn"]]
    reverse_src, reverse_tgt = by_arn[reverse["sourceEndpointArn"]], by_arn[reverse["targetEndpointArn"]]
    assert (reverse_src["secretsManagerArn"], reverse_tgt["secretsManagerArn"]) == (
        forward_tgt["secretsManagerArn"], forward_src["secretsManagerArn"])
    assert (reverse_src["endpointType"], reverse_tgt["endpointType"]) == ("source", "target")
    # Limited LOB mode fails the task on a value above LobMaxSize instead of truncating it.
    assert forward_src["postgresSettings"] == {"slotName": names.dms_slot_name("dev"),
                                               "pluginName": "test-decoding",
                                               "failTasksOnLobTruncation": True}
    assert reverse_src["postgresSettings"]["slotName"] == names.dms_slot_name("dev", "reverse")
    assert "postgresSettings" not in forward_tgt and "postgresSettings" not in reverse_tgt
    (instance,) = mocks.of("aws:dms/replicationInstance:ReplicationInstance")
    assert instance.inputs["publiclyAccessible"] is False
    assert instance.inputs["multiAz"] is True
    roles = {r.inputs["name"] for r in mocks.of("aws:iam/role:Role")}
    assert {"dms-vpc-role", "dms-cloudwatch-logs-role"} <= roles


def test_api_is_authorized_logged_traced_and_throttled(stack):
    mocks, _ = stack
    (authorizer,) = mocks.of("aws:apigateway/authorizer:Authorizer")
    assert authorizer.inputs["type"] == "TOKEN"
    assert authorizer.inputs["authorizerResultTtlInSeconds"] > 0
    methods = mocks.of("aws:apigateway/method:Method")
    assert sorted(m.inputs["httpMethod"] for m in methods) == ["GET", "GET", "POST", "POST"]
    assert all(m.inputs["authorization"] == "CUSTOM" and m.inputs["authorizerId"] == authorizer.id
               for m in methods)
    (stage,) = mocks.of("aws:apigateway/stage:Stage")
    assert stage.inputs["xrayTracingEnabled"] is True
    assert stage.inputs["accessLogSettings"]["destinationArn"].startswith("arn:aws:logs:")
    (settings,) = mocks.of("aws:apigateway/methodSettings:MethodSettings")
    s = settings.inputs["settings"]
    assert s["throttlingBurstLimit"] > 0 and s["throttlingRateLimit"] > 0
    assert s["dataTraceEnabled"] is False


def test_topics_and_monitoring_route_to_the_right_topics(stack):
    mocks, _ = stack
    topics = mocks.of("aws:sns/topic:Topic")
    assert len(topics) == 4 and all(t.inputs["kmsMasterKeyId"] for t in topics)
    for tp in mocks.of("aws:sns/topicPolicy:TopicPolicy"):
        allow = json.loads(tp.inputs["policy"])["Statement"][0]
        assert set(allow["Principal"]["Service"]) == {
            "cloudwatch.amazonaws.com", "events.amazonaws.com", "dms.amazonaws.com"}
    error_topic = f"arn:aws:sns:eu-west-1:{ACCOUNT}:paymigrate-error-alerts-dev"
    alarms = mocks.of("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert len(alarms) >= 7
    assert all(a.inputs["alarmActions"] == [error_topic] for a in alarms)
    subscriptions = mocks.of("aws:dms/eventSubscription:EventSubscription")
    assert subscriptions and all(s.inputs["snsTopicArn"].endswith(":paymigrate-dms-alerts-dev")
                                 for s in subscriptions)
    (dashboard,) = mocks.of("aws:cloudwatch/dashboard:Dashboard")
    assert len(json.loads(dashboard.inputs["dashboardBody"])["widgets"]) >= 8
    assert len(mocks.of("aws:cloudwatch/logMetricFilter:LogMetricFilter")) == 2


def test_dashboard_charts_the_validation_metrics_the_writers_publish(stack):
    """The Lambda and the scheduled DAG write :mod:`paymigrate.validation.metrics`'s schema;
    the dashboard must chart those exact names and dimensions, or its graphs stay empty."""
    mocks, _ = stack
    (dashboard,) = mocks.of("aws:cloudwatch/dashboard:Dashboard")
    charted = {tuple(x for x in row if not isinstance(x, dict))
               for w in json.loads(dashboard.inputs["dashboardBody"])["widgets"]
               for row in w["properties"]["metrics"] if row[0] == metrics.NAMESPACE}
    written = {(metrics.NAMESPACE, d["MetricName"], *(v for dim in d["Dimensions"]
                                                      for v in (dim["Name"], dim["Value"])))
               for d in metrics.run_data(ENV, []) + metrics.error_data(ENV)}
    assert written <= charted, written - charted


def test_ephemeral_stack_drops_protection_and_per_az_nat_is_configurable():
    mocks, _ = run_program(base_config("ci", ephemeral=True, natPerAz=True,
                                       manageAccountSingletons=False), stack="ci")
    for c in mocks.of("aws:rds/cluster:Cluster"):
        assert c.inputs["deletionProtection"] is False and c.inputs["skipFinalSnapshot"] is True
    assert len(mocks.of("aws:ec2/natGateway:NatGateway")) == 6
    names = {r.inputs["name"] for r in mocks.of("aws:iam/role:Role")}
    assert "dms-vpc-role" not in names and not mocks.of("aws:apigateway/account:Account")


def test_settings_refuse_infra_owned_contract_keys():
    from settings import StackSettings

    with pytest.raises(ValueError, match="database/production/endpoint"):
        StackSettings(env="dev", region="eu-west-1", router_package="paymigrate==0.1.0",
                      contract_overrides={"database/production/endpoint": "x:1"})
    with pytest.raises(ValueError, match="engineVersion"):
        StackSettings(env="dev", region="eu-west-1", router_package="paymigrate==0.1.0",
                      engine_version="12.4")
    with pytest.raises(ValueError, match="routerCount"):
        StackSettings(env="dev", region="eu-west-1", router_package="paymigrate==0.1.0",
                      router_count=1)


def test_lob_max_size_and_dms_validation_are_the_contract_values_the_engine_reads():
    overrides = {"workflow/mode": "replication", "replication/dms-lob-max-size-kb": 64,
                 "replication/dms-validation": False}
    mocks, _ = run_program(base_config("ci", ephemeral=True, parameters=overrides), stack="ci")
    (task,) = [t for t in mocks.of("aws:dms/replicationTask:ReplicationTask")
               if t.inputs["migrationType"] == "full-load-and-cdc"]
    settings = json.loads(task.inputs["replicationTaskSettings"])
    assert settings["TargetMetadata"]["LobMaxSize"] == 64
    assert settings["ValidationSettings"]["EnableValidation"] is False  # the contract's flag
    (written,) = [p for p in mocks.of("aws:ssm/parameter:Parameter")
                  if p.inputs["name"] == "/migration/ci/replication/dms-lob-max-size-kb"]
    assert written.inputs["insecureValue"] == "64"
