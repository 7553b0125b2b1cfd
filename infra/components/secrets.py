"""Secrets Manager secrets the migration reads, encrypted with the stack's key.

``source-db`` and ``target-db`` hold the credentials of the replication user, which DMS and the
validation Lambda use. RDS-managed master secrets cannot serve: DMS needs host and port in the
secret, and the master user should not be the one that replicates. The operator who creates
that user puts ``{"username", "password", "host", "port", "dbname"}`` into them, as for
``router-admin``; nothing here writes a database password, so none reaches config or state.
``api-token`` holds the API bearer token, which the stack receives as a config secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from paymigrate.aws import names

# Secrets whose value an operator supplies (see the module docstring).
OPERATOR_FILLED = {
    "source-db": "Replication user of the source database: username, password, host, port, "
                 "dbname",
    "target-db": "Replication user of the target database: username, password, host, port, "
                 "dbname",
    "router-admin": "PgBouncer admin console user: username, password, host, port (in AWS "
                    "127.0.0.1 and 6432: each router host's own console)",
    "app-db": "Application user the router hosts accept and pass on: username, password",
    "reader-db": "Read-only role on the target, the only one the routers' read-only route "
                 "(payments_ro) takes: username, password (the role is granted pg_read_all_data "
                 "and nothing that writes)",
}


@dataclass
class SecretsArgs:
    env: str
    kms_key_arn: pulumi.Input[str]
    api_token: pulumi.Input[str]
    ephemeral: bool = False


class Secrets(pulumi.ComponentResource):
    arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: SecretsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:secrets:Secrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # A deleted secret keeps its name for the recovery window; throw-away stacks reuse names.
        recovery_days = 0 if args.ephemeral else 30

        def secret(role: str, description: str) -> aws.secretsmanager.Secret:
            return aws.secretsmanager.Secret(
                f"{name}-{role}", name=names.secret_name(role, args.env),
                description=description, kms_key_id=args.kms_key_arn,
                recovery_window_in_days=recovery_days, opts=child)

        self.arns = {role: secret(role, text).arn for role, text in OPERATOR_FILLED.items()}
        token = secret("api-token", "Bearer token of the payments API authorizer")
        aws.secretsmanager.SecretVersion(
            f"{name}-api-token-value", secret_id=token.id,
            secret_string=pulumi.Output.secret(args.api_token), opts=child)
        self.arns["api-token"] = token.arn
        self.register_outputs({f"{role}_arn": arn for role, arn in self.arns.items()})
