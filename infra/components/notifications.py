"""The four SNS topics, KMS-encrypted, that alarms, EventBridge, DMS and the workflows publish to."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import policies
import pulumi
import pulumi_aws as aws

from paymigrate.aws import names


@dataclass
class NotificationsArgs:
    env: str
    account_id: pulumi.Input[str]
    kms_key_id: pulumi.Input[str]
    alert_emails: Sequence[str] = field(default_factory=tuple)


class Notifications(pulumi.ComponentResource):
    topic_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: NotificationsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:notifications:Notifications", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.topic_arns = {}
        for role in names.TOPICS:
            topic = aws.sns.Topic(f"{name}-{role}", name=names.topic_name(role, args.env),
                                  kms_master_key_id=args.kms_key_id, opts=child)
            aws.sns.TopicPolicy(
                f"{name}-{role}-policy", arn=topic.arn,
                policy=pulumi.Output.all(topic.arn, args.account_id).apply(
                    lambda a: json.dumps(policies.topic_policy(topic_arn=a[0],
                                                               account_id=a[1]))),
                opts=child)
            for i, email in enumerate(args.alert_emails):
                # Email subscriptions stay pending until the recipient confirms them.
                aws.sns.TopicSubscription(f"{name}-{role}-email-{i}", topic=topic.arn,
                                          protocol="email", endpoint=email, opts=child)
            self.topic_arns[role] = topic.arn
        self.register_outputs({f"{role}_topic_arn": a for role, a in self.topic_arns.items()})
