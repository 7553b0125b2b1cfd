"""The two Lambda functions, bundled from ``lambdas/`` with the ``paymigrate`` package.

The validation function runs in the migration VPC's private subnets (it reaches both databases,
the source through the Transit Gateway); the authorizer needs no network access beyond AWS APIs
and stays out of the VPC. Each has its own role, reading only what it needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import policies
import pulumi
import pulumi_aws as aws

from paymigrate.aws import contract, names

REPO = Path(__file__).resolve().parents[2]
RUNTIME = "python3.12"
# The Airflow provider needs Airflow, which the Lambdas never import: leaving it out keeps the
# bundle small and import-safe. The dev harness is a package of its own (harness/), never bundled.
EXCLUDED_PACKAGES = ("provider",)


def archive_entries(repo: Path = REPO) -> dict[str, Path]:
    """``{path in the zip: file on disk}``: every file of ``lambdas/`` at the root of the zip,
    the ``paymigrate`` package beside them.
    """
    def wanted(path: Path) -> bool:
        return path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"

    entries: dict[str, Path] = {}
    lambdas = repo / "lambdas"
    for path in sorted(lambdas.rglob("*")):
        if wanted(path):
            entries[path.relative_to(lambdas).as_posix()] = path
    package = repo / "plugins" / "paymigrate"
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package)
        if wanted(path) and relative.parts[0] not in EXCLUDED_PACKAGES:
            entries[f"paymigrate/{relative.as_posix()}"] = path
    if "paymigrate/__init__.py" not in entries:
        raise FileNotFoundError(f"paymigrate package not found under {package}")
    return entries


def code_archive(repo: Path = REPO) -> pulumi.AssetArchive:
    return pulumi.AssetArchive(
        {name: pulumi.FileAsset(str(path)) for name, path in archive_entries(repo).items()})


@dataclass
class FunctionsArgs:
    env: str
    region: str
    partition: pulumi.Input[str]
    account_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    lambda_security_group_id: pulumi.Input[str]
    source_secret_arn: pulumi.Input[str]
    target_secret_arn: pulumi.Input[str]
    alert_topic_arns: Sequence[pulumi.Input[str]]
    log_retention_days: int = 90
    # Layers with the native dependencies of the validation engine (psycopg2 for Lambda).
    validation_layer_arns: Sequence[str] = field(default_factory=tuple)
    # What the rollback-steps function switches back: the lock's and rollback state's buckets
    # and the DMS task.
    state_bucket_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    dms_task_arn: pulumi.Input[str] = ""
    # The key that signs the route agents' calls (the rollback steps move routes).
    router_admin_secret_arn: pulumi.Input[str] = ""


class Functions(pulumi.ComponentResource):
    validation_function_arn: pulumi.Output[str]
    validation_function_name: pulumi.Output[str]
    authorizer_function_arn: pulumi.Output[str]
    authorizer_function_name: pulumi.Output[str]
    authorizer_invoke_arn: pulumi.Output[str]
    validation_log_group_name: pulumi.Output[str]
    rollback_steps_function_arn: pulumi.Output[str]

    def __init__(self, name: str, args: FunctionsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:functions:Functions", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = args.env
        archive = code_archive()
        lambda_trust = json.dumps(policies.assume_role("lambda.amazonaws.com"))

        def log_group(fn_name: str, role: str) -> aws.cloudwatch.LogGroup:
            return aws.cloudwatch.LogGroup(
                f"{name}-{role}-logs", name=f"/aws/lambda/{fn_name}",
                retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn,
                opts=child)

        def vpc_function(role: str, fn_name: str, *, description: str, handler: str,
                         memory_size: int, concurrency: int,
                         policy: Callable[[pulumi.Output[str]], pulumi.Output[str]],
                         ) -> tuple[aws.lambda_.Function, aws.cloudwatch.LogGroup]:
            """A function in the migration VPC's private subnets (it reaches both databases),
            with its own log group, and a role holding ``policy(log group ARN)``."""
            logs = log_group(fn_name, role)
            iam_role = aws.iam.Role(f"{name}-{role}-role", name=fn_name,
                                    assume_role_policy=lambda_trust, opts=child)
            role_policy = aws.iam.RolePolicy(f"{name}-{role}-policy", role=iam_role.id,
                                             policy=policy(logs.arn), opts=child)
            function = aws.lambda_.Function(
                f"{name}-{role}",
                name=fn_name,
                description=description,
                runtime=RUNTIME,
                handler=handler,
                code=archive,
                role=iam_role.arn,
                timeout=900,
                memory_size=memory_size,
                reserved_concurrent_executions=concurrency,
                layers=list(args.validation_layer_arns),
                vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                    subnet_ids=list(args.private_subnet_ids),
                    security_group_ids=[args.lambda_security_group_id]),
                environment=aws.lambda_.FunctionEnvironmentArgs(variables={"PAYMIGRATE_ENV": env}),
                kms_key_arn=args.kms_key_arn,
                tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
                logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                    log_format="JSON", log_group=logs.name),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, logs]))
            return function, logs

        root = f"{contract.ROOT}/{env}"
        validation, validation_logs = vpc_function(
            "validation", names.resource_name("data-validation", env),
            description="Compares source and target tables (counts, checksums, exact keys)",
            handler="data_validation.handler", memory_size=1024,
            # Two at most: each run scans both databases; more would only add load.
            concurrency=2,
            policy=lambda log_arn: pulumi.Output.all(
                args.partition, args.account_id, args.kms_key_arn, log_arn,
                args.source_secret_arn, args.target_secret_arn, *args.alert_topic_arns,
            ).apply(lambda a: json.dumps(policies.validator_policy(
                partition=a[0], region=args.region, account_id=a[1], parameter_root=root,
                secret_arns=a[4:6], topic_arns=a[6:], log_group_arn=a[3], key_arn=a[2]))))

        # The rollback state machine's switch back, route and unfreeze (they reach both
        # databases and the routers).
        buckets = len(args.state_bucket_arns)
        steps, _ = vpc_function(
            "rollback-steps", names.resource_name("rollback-steps", env),
            description="Rollback state machine steps: switch writes back, route, unfreeze",
            handler="rollback_steps.handler", memory_size=512,
            # One at a time: two switch backs at once would fight over the routers.
            concurrency=1,
            policy=lambda log_arn: pulumi.Output.all(
                args.partition, args.account_id, args.kms_key_arn, log_arn,
                args.source_secret_arn, args.target_secret_arn, args.router_admin_secret_arn,
                args.dms_task_arn, *args.state_bucket_arns, *args.alert_topic_arns,
            ).apply(lambda a: json.dumps(policies.rollback_steps_policy(
                partition=a[0], region=args.region, account_id=a[1], parameter_root=root,
                secret_arns=a[4:7], dms_task_arn=a[7], bucket_arns=a[8:8 + buckets],
                topic_arns=a[8 + buckets:], log_group_arn=a[3], key_arn=a[2]))))

        # API authorizer.
        authorizer_name = names.resource_name("api-authorizer", env)
        authorizer_logs = log_group(authorizer_name, "authorizer")
        authorizer_role = aws.iam.Role(f"{name}-authorizer-role", name=authorizer_name,
                                       assume_role_policy=lambda_trust, opts=child)
        token_path = contract.path("api/auth-token", env)
        authorizer_policy = aws.iam.RolePolicy(
            f"{name}-authorizer-policy", role=authorizer_role.id,
            policy=pulumi.Output.all(
                args.partition, args.account_id, args.kms_key_arn, authorizer_logs.arn,
            ).apply(lambda a: json.dumps(policies.authorizer_policy(
                token_parameter_arn=f"arn:{a[0]}:ssm:{args.region}:{a[1]}:parameter{token_path}",
                region=args.region, log_group_arn=a[3], key_arn=a[2]))),
            opts=child)
        authorizer = aws.lambda_.Function(
            f"{name}-authorizer",
            name=authorizer_name,
            description="TOKEN authorizer of the payments API",
            runtime=RUNTIME,
            handler="api_authorizer.handler",
            code=archive,
            role=authorizer_role.arn,
            timeout=10,
            memory_size=256,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={
                "PAYMIGRATE_ENV": env, "PAYMIGRATE_TOKEN_TTL_SECONDS": "60"}),
            kms_key_arn=args.kms_key_arn,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="JSON", log_group=authorizer_logs.name),
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[authorizer_policy, authorizer_logs]))

        self.validation_function_arn = validation.arn
        self.validation_function_name = validation.name
        self.validation_log_group_name = validation_logs.name
        self.rollback_steps_function_arn = steps.arn
        self.authorizer_function_arn = authorizer.arn
        self.authorizer_function_name = authorizer.name
        self.authorizer_invoke_arn = authorizer.invoke_arn
        self.register_outputs({
            "validation_function_arn": self.validation_function_arn,
            "authorizer_function_arn": self.authorizer_function_arn,
            "rollback_steps_function_arn": self.rollback_steps_function_arn,
        })
