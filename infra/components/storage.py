"""Checkpoint, rollback and DMS-log buckets: private, KMS-encrypted, TLS-only.

Checkpoints and rollback state are versioned (a rerun must never destroy the record it resumes
from); lifecycle rules keep them affordable: checkpoints move to infrequent access after 30
days, old rollback versions live 90 days, DMS logs 30 days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import policies
import pulumi
import pulumi_aws as aws

from paymigrate.aws import names

VERSIONED = ("checkpoints", "rollback")


def lifecycle_rules(role: str) -> list[dict]:
    """Lifecycle rules of a bucket role, as plain dicts (snake_case provider arguments).

    >>> [r["id"] for r in lifecycle_rules("dms-logs")]
    ['abort-incomplete-uploads', 'expire-logs']
    """
    rules: list[dict] = [{
        "id": "abort-incomplete-uploads", "status": "Enabled", "filter": {},
        "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
    }]
    if role == "checkpoints":
        rules += [
            {"id": "infrequent-access-after-30-days", "status": "Enabled", "filter": {},
             "transitions": [{"days": 30, "storage_class": "STANDARD_IA"}]},
            {"id": "expire-old-versions", "status": "Enabled", "filter": {},
             "noncurrent_version_expiration": {"noncurrent_days": 90}},
        ]
    elif role == "rollback":
        rules.append({"id": "keep-old-versions-90-days", "status": "Enabled", "filter": {},
                      "noncurrent_version_expiration": {"noncurrent_days": 90}})
    elif role == "dms-logs":
        rules.append({"id": "expire-logs", "status": "Enabled", "filter": {},
                      "expiration": {"days": 30}})
    else:
        raise ValueError(f"unknown bucket role {role!r}")
    return rules


@dataclass
class StorageArgs:
    env: str
    kms_key_arn: pulumi.Input[str]
    ephemeral: bool = False


class Storage(pulumi.ComponentResource):
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: StorageArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:storage:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket_names, self.bucket_arns = {}, {}
        for role in names.BUCKETS:
            prefix = f"{name}-{role}"
            bucket = aws.s3.Bucket(
                prefix, bucket=names.bucket_name(role, args.env),
                # Only a throw-away stack may delete a bucket that still holds checkpoints.
                force_destroy=args.ephemeral,
                opts=pulumi.ResourceOptions(parent=self, protect=not args.ephemeral))
            block = aws.s3.BucketPublicAccessBlock(
                f"{prefix}-public-access-block", bucket=bucket.id, block_public_acls=True,
                block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
                opts=child)
            aws.s3.BucketOwnershipControls(
                f"{prefix}-ownership", bucket=bucket.id,
                rule=aws.s3.BucketOwnershipControlsRuleArgs(
                    object_ownership="BucketOwnerEnforced"), opts=child)
            aws.s3.BucketServerSideEncryptionConfiguration(
                f"{prefix}-encryption", bucket=bucket.id,
                rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.
                    BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(  # noqa: E501
                        sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn),
                    bucket_key_enabled=True)],
                opts=child)
            versioning = None
            if role in VERSIONED:
                versioning = aws.s3.BucketVersioning(
                    f"{prefix}-versioning", bucket=bucket.id,
                    versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                        status="Enabled"), opts=child)
            aws.s3.BucketLifecycleConfiguration(
                f"{prefix}-lifecycle", bucket=bucket.id, rules=lifecycle_rules(role),
                opts=pulumi.ResourceOptions(parent=self,
                                            depends_on=[versioning] if versioning else []))
            aws.s3.BucketPolicy(
                f"{prefix}-tls-only", bucket=bucket.id,
                policy=bucket.arn.apply(lambda arn: json.dumps(
                    policies.tls_only_bucket_policy(arn))),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[block]))
            self.bucket_names[role] = bucket.bucket
            self.bucket_arns[role] = bucket.arn
        self.register_outputs({f"{role}_bucket": n for role, n in self.bucket_names.items()})
