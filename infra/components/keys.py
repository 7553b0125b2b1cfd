"""The stack's customer-managed KMS key: databases, secrets, parameters, topics, logs, buckets."""

from __future__ import annotations

import json
from dataclasses import dataclass

import policies
import pulumi
import pulumi_aws as aws

from paymigrate.aws import names


@dataclass
class KeysArgs:
    env: str
    partition: pulumi.Input[str]
    account_id: pulumi.Input[str]
    region: str


class Keys(pulumi.ComponentResource):
    key_arn: pulumi.Output[str]
    key_id: pulumi.Output[str]

    def __init__(self, name: str, args: KeysArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:security:Keys", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key_policy = pulumi.Output.all(args.partition, args.account_id).apply(
            lambda a: json.dumps(policies.kms_key_policy(
                partition=a[0], account_id=a[1], region=args.region)))
        key = aws.kms.Key(
            f"{name}-key",
            description=f"paymigrate {args.env}: payment data at rest and in flight to AWS",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=key_policy,
            tags={"Name": names.resource_name("key", args.env)},
            opts=child,
        )
        aws.kms.Alias(f"{name}-alias", name=f"alias/{names.resource_name('key', args.env)}",
                      target_key_id=key.key_id, opts=child)
        self.key_arn = key.arn
        self.key_id = key.key_id
        self.register_outputs({"key_arn": self.key_arn})
