"""The Lambdas behind the migration API's routes (``api_routes.ROUTES``), each with its own
role: the status function reads a few plain contract parameters and the checkpoints, the
start function reads one parameter and starts one state machine. Neither is in a VPC nor reads
a secret; both are bundled like the others (``lambdas/`` and the package, without Airflow).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import api_routes
import policies
import pulumi
import pulumi_aws as aws

from components.functions import RUNTIME, code_archive
from paymigrate.aws import contract, migration_api, names


@dataclass
class ApiFunctionsArgs:
    env: str
    region: str
    partition: pulumi.Input[str]
    account_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    checkpoints_bucket_arn: pulumi.Input[str]
    validation_state_machine_arn: pulumi.Input[str]
    log_retention_days: int = 90


class ApiFunctions(pulumi.ComponentResource):
    # By function role (api_routes.Function.role).
    names: dict[str, pulumi.Output[str]]
    invoke_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ApiFunctionsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:api:ApiFunctions", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env, a = args.env, args
        archive = code_archive()

        def parameter_arns(keys: tuple[str, ...]) -> pulumi.Output[list[str]]:
            return pulumi.Output.all(a.partition, a.account_id).apply(lambda v: [
                f"arn:{v[0]}:ssm:{a.region}:{v[1]}:parameter{contract.path(k, env)}" for k in keys])

        def policy(spec: api_routes.Function, log_arn: pulumi.Output[str]) -> pulumi.Output[str]:
            if spec is api_routes.STATUS:
                return pulumi.Output.all(parameter_arns(migration_api.STATUS_KEYS),
                                         a.checkpoints_bucket_arn, log_arn, a.kms_key_arn
                                         ).apply(lambda v: json.dumps(policies.status_api_policy(
                                             parameter_arns=v[0], checkpoints_bucket_arn=v[1],
                                             env=env, log_group_arn=v[2], key_arn=v[3],
                                             region=a.region)))
            return pulumi.Output.all(parameter_arns(migration_api.START_KEYS),
                                     a.validation_state_machine_arn, log_arn
                                     ).apply(lambda v: json.dumps(
                                         policies.start_validation_api_policy(
                                             parameter_arns=v[0], state_machine_arn=v[1],
                                             log_group_arn=v[2])))

        self.names, self.invoke_arns = {}, {}
        for spec in {r.function.role: r.function for r in api_routes.ROUTES}.values():
            fn_name = names.resource_name(spec.role, env)
            logs = aws.cloudwatch.LogGroup(
                f"{name}-{spec.role}-logs", name=f"/aws/lambda/{fn_name}",
                retention_in_days=a.log_retention_days, kms_key_id=a.kms_key_arn, opts=child)
            role = aws.iam.Role(
                f"{name}-{spec.role}-role", name=fn_name,
                assume_role_policy=json.dumps(policies.assume_role("lambda.amazonaws.com")),
                opts=child)
            role_policy = aws.iam.RolePolicy(f"{name}-{spec.role}-policy", role=role.id,
                                             policy=policy(spec, logs.arn), opts=child)
            function = aws.lambda_.Function(
                f"{name}-{spec.role}", name=fn_name, description=spec.description,
                runtime=RUNTIME, handler=spec.handler, code=archive, role=role.arn,
                timeout=spec.timeout, memory_size=spec.memory,
                environment=aws.lambda_.FunctionEnvironmentArgs(variables={"PAYMIGRATE_ENV": env}),
                kms_key_arn=a.kms_key_arn,
                tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
                logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                    log_format="JSON", log_group=logs.name),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, logs]))
            self.names[spec.role] = function.name
            self.invoke_arns[spec.role] = function.invoke_arn
        self.register_outputs({f"{role}_name": n for role, n in self.names.items()})
