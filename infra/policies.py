"""IAM and resource policy documents as plain dicts of plain strings; no Pulumi here.

Least privilege: each statement names the resources it needs. The few actions AWS only accepts
on ``Resource: "*"`` are kept in their own statements with the reason beside them, and the
infra tests keep the same list, so a new wildcard cannot slip in unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from paymigrate.validation.metrics import NAMESPACE as VALIDATION_METRICS_NAMESPACE

VERSION = "2012-10-17"

Doc = dict[str, Any]


def document(*statements: Doc) -> Doc:
    return {"Version": VERSION, "Statement": list(statements)}


def _sid(text: str) -> str:
    return "".join(part.capitalize() for part in text.replace("-", " ").split())


def assume_role(*services: str, source_account: str | None = None) -> Doc:
    """Trust policy for AWS services; ``source_account`` guards against the confused deputy."""
    statement: Doc = {
        "Sid": "AssumedByService",
        "Effect": "Allow",
        "Principal": {"Service": sorted(services) if len(services) > 1 else services[0]},
        "Action": "sts:AssumeRole",
    }
    if source_account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return document(statement)


def _logs(log_group_arns: Iterable[str]) -> Doc:
    return {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [f"{arn}:*" for arn in log_group_arns],
    }


def _xray() -> Doc:
    # X-Ray trace segments have no resource ARN: AWS only accepts "*" here.
    return {
        "Sid": "XRayTracing",
        "Effect": "Allow",
        "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords",
                   "xray:GetSamplingRules", "xray:GetSamplingTargets"],
        "Resource": "*",
    }


def _kms_via(key_arn: str, region: str, services: Sequence[str], actions: Sequence[str]) -> Doc:
    return {
        "Sid": "UseKeyThrough" + "".join(_sid(s) for s in services),
        "Effect": "Allow",
        "Action": list(actions),
        "Resource": key_arn,
        "Condition": {"StringEquals": {
            "kms:ViaService": [f"{s}.{region}.amazonaws.com" for s in services]}},
    }


def kms_key_policy(*, partition: str, account_id: str, region: str) -> Doc:
    """Key policy of the stack's customer-managed key.

    The account root statement delegates to IAM (the AWS default, without which the key is
    unmanageable). Services that encrypt on their own behalf need explicit grants: CloudWatch
    Logs for the encrypted log groups, and the services that publish to the encrypted topics.
    """
    root = f"arn:{partition}:iam::{account_id}:root"
    autoscaling = (f"arn:{partition}:iam::{account_id}:role/aws-service-role/"
                   "autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
    return document(
        {"Sid": "AccountAdministersKeyThroughIam", "Effect": "Allow",
         "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchLogsEncryptsOwnLogGroups", "Effect": "Allow",
         "Principal": {"Service": f"logs.{region}.amazonaws.com"},
         "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                    "kms:Describe*"],
         "Resource": "*",
         "Condition": {"ArnLike": {
             "kms:EncryptionContext:aws:logs:arn":
                 f"arn:{partition}:logs:{region}:{account_id}:log-group:*"}}},
        {"Sid": "ServicesPublishToEncryptedTopics", "Effect": "Allow",
         "Principal": {"Service": ["cloudwatch.amazonaws.com", "dms.amazonaws.com",
                                   "events.amazonaws.com"]},
         "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
        # The router hosts' EBS volumes are encrypted with this key: Auto Scaling launches them
        # through its service-linked role, which needs the key and a grant for EC2.
        {"Sid": "AutoScalingEncryptsRouterVolumes", "Effect": "Allow",
         "Principal": {"AWS": autoscaling},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                    "kms:DescribeKey"], "Resource": "*"},
        {"Sid": "AutoScalingGrantsEc2TheKey", "Effect": "Allow",
         "Principal": {"AWS": autoscaling}, "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}},
    )


def tls_only_bucket_policy(bucket_arn: str) -> Doc:
    return document({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    })


def topic_policy(*, topic_arn: str, account_id: str) -> Doc:
    """CloudWatch alarms, EventBridge rules and DMS event subscriptions of this account publish."""
    return document(
        {"Sid": "AwsServicesOfThisAccountPublish", "Effect": "Allow",
         "Principal": {"Service": ["cloudwatch.amazonaws.com", "dms.amazonaws.com",
                                   "events.amazonaws.com"]},
         "Action": "sns:Publish", "Resource": topic_arn,
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
         "Action": "sns:Publish", "Resource": topic_arn,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    )


def parameter_arns(*, partition: str, region: str, account_id: str, root: str) -> list[str]:
    """The ARNs of a parameter path and everything under it (``root`` like ``/migration/dev``)."""
    base = f"arn:{partition}:ssm:{region}:{account_id}:parameter{root.rstrip('/')}"
    return [base, f"{base}/*"]


def _read_contract(*, partition: str, region: str, account_id: str, root: str) -> Doc:
    return {"Sid": "ReadMigrationParameters", "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
            "Resource": parameter_arns(partition=partition, region=region,
                                       account_id=account_id, root=root)}


def validator_policy(*, partition: str, region: str, account_id: str, parameter_root: str,
                     secret_arns: Sequence[str], topic_arns: Sequence[str], log_group_arn: str,
                     key_arn: str) -> Doc:
    """The data validation Lambda: read the contract and two secrets, alert, publish metrics."""
    return document(
        _read_contract(partition=partition, region=region, account_id=account_id,
                       root=parameter_root),
        {"Sid": "ReadDatabaseCredentials", "Effect": "Allow",
         "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
         "Resource": list(secret_arns)},
        _kms_via(key_arn, region, ("ssm", "secretsmanager", "sns"),
                 ("kms:Decrypt", "kms:GenerateDataKey")),
        {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish",
         "Resource": list(topic_arns)},
        # PutMetricData has no resource ARN; the namespace condition is what scopes it.
        {"Sid": "PublishValidationMetrics", "Effect": "Allow",
         "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": VALIDATION_METRICS_NAMESPACE}}},
        # A Lambda in a VPC manages its own network interfaces; AWS requires "*" for these.
        {"Sid": "ManageVpcNetworkInterfaces", "Effect": "Allow",
         "Action": ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses"],
         "Resource": "*"},
        _logs([log_group_arn]),
        _xray(),
    )


def rollback_steps_policy(*, partition: str, region: str, account_id: str, parameter_root: str,
                          secret_arns: Sequence[str], topic_arns: Sequence[str],
                          log_group_arn: str, key_arn: str, bucket_arns: Sequence[str],
                          dms_task_arn: str) -> Doc:
    """The rollback-steps Lambda: what the validator may, plus switching back: write the
    contract's parameters (active writer, split, mode), read and write the checkpoints and
    rollback buckets (the lock), drive the DMS task, and find the router hosts (their Auto
    Scaling group's instances; these two calls take no resource ARN). ``secret_arns`` includes
    the router-admin secret, which signs the route agents' calls."""
    doc = validator_policy(partition=partition, region=region, account_id=account_id,
                           parameter_root=parameter_root, secret_arns=secret_arns,
                           topic_arns=topic_arns, log_group_arn=log_group_arn, key_arn=key_arn)
    doc["Statement"] += [
        {"Sid": "WriteMigrationParameters", "Effect": "Allow", "Action": "ssm:PutParameter",
         "Resource": parameter_arns(partition=partition, region=region, account_id=account_id,
                                    root=parameter_root)},
        {"Sid": "MigrationState", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
         "Resource": [a for b in bucket_arns for a in (b, f"{b}/*")]},
        {"Sid": "DriveReplication", "Effect": "Allow",
         "Action": ["dms:StartReplicationTask", "dms:StopReplicationTask",
                    "dms:DescribeTableStatistics"], "Resource": dms_task_arn},
        _describe_dms_tasks(),
        {"Sid": "FindRouterHosts", "Effect": "Allow",
         "Action": ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"], "Resource": "*"},
        _kms_via(key_arn, region, ("s3",), ("kms:Decrypt", "kms:GenerateDataKey")),
    ]
    return doc


def authorizer_policy(*, token_parameter_arn: str, region: str, log_group_arn: str,
                      key_arn: str) -> Doc:
    """The API authorizer: read the one token parameter, nothing else."""
    return document(
        {"Sid": "ReadApiToken", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": token_parameter_arn},
        _kms_via(key_arn, region, ("ssm",), ("kms:Decrypt",)),
        _logs([log_group_arn]),
        _xray(),
    )


def router_host_policy(*, partition: str, region: str, account_id: str, parameter_root: str,
                       secret_arns: Sequence[str], key_arn: str, log_group_arn: str) -> Doc:
    """A router host: read the contract's plain parameters (its key decrypts secrets only, so
    never the API token) and its two secrets at boot, ship its logs."""
    return document(
        _read_contract(partition=partition, region=region, account_id=account_id,
                       root=parameter_root),
        {"Sid": "ReadRouterCredentials", "Effect": "Allow",
         "Action": "secretsmanager:GetSecretValue", "Resource": list(secret_arns)},
        _kms_via(key_arn, region, ("secretsmanager",), ("kms:Decrypt",)),
        {"Sid": "ShipLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
         "Resource": [log_group_arn, f"{log_group_arn}:*"]},
    )


def dms_secrets_access_policy(*, secret_arns: Sequence[str], key_arn: str, region: str) -> Doc:
    """What DMS may read through the endpoints' secrets access role."""
    return document(
        {"Sid": "ReadEndpointSecrets", "Effect": "Allow",
         "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
         "Resource": list(secret_arns)},
        _kms_via(key_arn, region, ("secretsmanager",), ("kms:Decrypt",)),
    )


def _vended_logs() -> Doc:
    # Step Functions delivers logs through CloudWatch "vended logs"; these log-delivery actions
    # have no resource ARN, AWS documents them with "*".
    return {
        "Sid": "DeliverExecutionLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
                   "logs:DeleteLogDelivery", "logs:ListLogDeliveries",
                   "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
                   "logs:DescribeLogGroups"],
        "Resource": "*",
    }


def _describe_dms_tasks() -> Doc:
    # DescribeReplicationTasks does not support resource-level permissions.
    return {"Sid": "DescribeReplicationTasks", "Effect": "Allow",
            "Action": "dms:DescribeReplicationTasks", "Resource": "*"}


def migration_workflow_policy(*, checkpoints_bucket_arn: str, topic_arns: Sequence[str],
                              dms_task_arn: str, function_arn: str, key_arn: str,
                              region: str, engine_parameter_arn: str) -> Doc:
    return document(
        {"Sid": "ReadReplicationEngine", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": engine_parameter_arn},
        {"Sid": "WriteCheckpoints", "Effect": "Allow", "Action": "s3:PutObject",
         "Resource": f"{checkpoints_bucket_arn}/migration/*"},
        {"Sid": "Notify", "Effect": "Allow", "Action": "sns:Publish",
         "Resource": list(topic_arns)},
        _kms_via(key_arn, region, ("s3", "sns"), ("kms:Decrypt", "kms:GenerateDataKey")),
        {"Sid": "StartReplication", "Effect": "Allow", "Action": "dms:StartReplicationTask",
         "Resource": dms_task_arn},
        _describe_dms_tasks(),
        _invoke_validation(function_arn),
        _vended_logs(),
        _xray(),
    )


def _invoke_validation(function_arn: str) -> Doc:
    return {"Sid": "RunValidation", "Effect": "Allow", "Action": "lambda:InvokeFunction",
            "Resource": [function_arn, f"{function_arn}:*"]}


def validation_workflow_policy(*, function_arn: str) -> Doc:
    """The on-demand validation: invoke the validation function, log, trace; nothing else."""
    return document(_invoke_validation(function_arn), _vended_logs(), _xray())


def status_api_policy(*, parameter_arns: Sequence[str], checkpoints_bucket_arn: str, env: str,
                      log_group_arn: str, key_arn: str, region: str) -> Doc:
    """GET /migration/status: read a few plain contract parameters (never the token) and this
    environment's checkpoints."""
    return document(
        {"Sid": "ReadStatusParameters", "Effect": "Allow", "Action": "ssm:GetParameters",
         "Resource": list(parameter_arns)},
        {"Sid": "ReadCheckpoints", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"{checkpoints_bucket_arn}/{env}/*"},
        # A missing object answers 403 instead of NoSuchKey without ListBucket.
        {"Sid": "TellMissingCheckpoints", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": checkpoints_bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": f"{env}/*"}}},
        # Checkpoints are SSE-S3 (AES256); the key is for the bucket's default encryption.
        _kms_via(key_arn, region, ("s3",), ("kms:Decrypt",)),
        _logs([log_group_arn]),
        _xray(),
    )


def start_validation_api_policy(*, state_machine_arn: str, parameter_arns: Sequence[str],
                                log_group_arn: str) -> Doc:
    """POST /migration/validation: read the machine's ARN from the contract, start it."""
    return document(
        {"Sid": "ReadMachineArn", "Effect": "Allow", "Action": "ssm:GetParameters",
         "Resource": list(parameter_arns)},
        {"Sid": "StartValidation", "Effect": "Allow", "Action": "states:StartExecution",
         "Resource": state_machine_arn},
        _logs([log_group_arn]),
        _xray(),
    )


def rollback_workflow_policy(*, rollback_bucket_arn: str, topic_arns: Sequence[str],
                             dms_task_arn: str, key_arn: str, region: str, function_arn: str,
                             active_writer_parameter_arn: str, engine_parameter_arn: str) -> Doc:
    return document(
        {"Sid": "ReadActiveWriterAndEngine", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": [active_writer_parameter_arn, engine_parameter_arn]},
        {"Sid": "RunRollbackSteps", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": [function_arn, f"{function_arn}:*"]},
        {"Sid": "SaveRollbackState", "Effect": "Allow", "Action": "s3:PutObject",
         "Resource": f"{rollback_bucket_arn}/rollback/*"},
        {"Sid": "Notify", "Effect": "Allow", "Action": "sns:Publish",
         "Resource": list(topic_arns)},
        _kms_via(key_arn, region, ("s3", "sns"), ("kms:Decrypt", "kms:GenerateDataKey")),
        {"Sid": "StopReplication", "Effect": "Allow", "Action": "dms:StopReplicationTask",
         "Resource": dms_task_arn},
        _describe_dms_tasks(),
        _vended_logs(),
        _xray(),
    )
