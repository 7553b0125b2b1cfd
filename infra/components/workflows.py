"""The migration, rollback and on-demand validation state machines, from
``paymigrate.aws.statemachines``.

Each has its own role (the migration may read the replication engine, start the task and invoke
the validator; the rollback may read the active writer and the engine, stop the task and invoke
the rollback-steps function), logs every event to its log group and traces with X-Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import policies
import pulumi
import pulumi_aws as aws

from paymigrate.aws import contract, names, statemachines


@dataclass
class WorkflowsArgs:
    env: str
    region: str
    kms_key_arn: pulumi.Input[str]
    checkpoints_bucket: pulumi.Input[str]
    checkpoints_bucket_arn: pulumi.Input[str]
    rollback_bucket: pulumi.Input[str]
    rollback_bucket_arn: pulumi.Input[str]
    status_topic_arn: pulumi.Input[str]
    error_topic_arn: pulumi.Input[str]
    dms_task_arn: pulumi.Input[str]
    validation_function_arn: pulumi.Input[str]
    rollback_steps_function_arn: pulumi.Input[str]
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    log_retention_days: int = 90


class Workflows(pulumi.ComponentResource):
    migration_arn: pulumi.Output[str]
    rollback_arn: pulumi.Output[str]
    validation_arn: pulumi.Output[str]

    def __init__(self, name: str, args: WorkflowsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:workflows:Workflows", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = args.env
        trust = json.dumps(policies.assume_role("states.amazonaws.com"))
        a = args

        active_writer = contract.path("database/active-writer", env)
        engine = contract.path("workflow/replication-engine", env)

        def parameter_arn(partition: str, account: str, path: str) -> str:
            return f"arn:{partition}:ssm:{a.region}:{account}:parameter{path}"

        migration_definition = pulumi.Output.all(
            a.checkpoints_bucket, a.status_topic_arn, a.error_topic_arn, a.dms_task_arn,
            a.validation_function_arn,
        ).apply(lambda v: json.dumps(statemachines.migration_definition(
            checkpoints_bucket=v[0], status_topic_arn=v[1], error_topic_arn=v[2],
            dms_task_arn=v[3], validation_function_arn=v[4], engine_parameter=engine)))
        migration_policy = pulumi.Output.all(
            a.checkpoints_bucket_arn, a.status_topic_arn, a.error_topic_arn, a.dms_task_arn,
            a.validation_function_arn, a.kms_key_arn, a.partition, a.account_id,
        ).apply(lambda v: json.dumps(policies.migration_workflow_policy(
            checkpoints_bucket_arn=v[0], topic_arns=[v[1], v[2]], dms_task_arn=v[3],
            function_arn=v[4], key_arn=v[5], region=a.region,
            engine_parameter_arn=parameter_arn(v[6], v[7], engine))))
        rollback_definition = pulumi.Output.all(
            a.rollback_bucket, a.status_topic_arn, a.error_topic_arn, a.dms_task_arn,
            a.rollback_steps_function_arn,
        ).apply(lambda v: json.dumps(statemachines.rollback_definition(
            rollback_bucket=v[0], status_topic_arn=v[1], error_topic_arn=v[2],
            dms_task_arn=v[3], steps_function_arn=v[4], active_writer_parameter=active_writer,
            engine_parameter=engine)))
        rollback_policy = pulumi.Output.all(
            a.rollback_bucket_arn, a.status_topic_arn, a.error_topic_arn, a.dms_task_arn,
            a.kms_key_arn, a.rollback_steps_function_arn, a.partition, a.account_id,
        ).apply(lambda v: json.dumps(policies.rollback_workflow_policy(
            rollback_bucket_arn=v[0], topic_arns=[v[1], v[2]], dms_task_arn=v[3],
            key_arn=v[4], region=a.region, function_arn=v[5],
            active_writer_parameter_arn=parameter_arn(v[6], v[7], active_writer),
            engine_parameter_arn=parameter_arn(v[6], v[7], engine))))

        validation_definition = pulumi.Output.from_input(a.validation_function_arn).apply(
            lambda arn: json.dumps(statemachines.validation_definition(
                validation_function_arn=arn)))
        validation_policy = pulumi.Output.from_input(a.validation_function_arn).apply(
            lambda arn: json.dumps(policies.validation_workflow_policy(function_arn=arn)))

        arns = {}
        for role, definition, policy in (("migration", migration_definition, migration_policy),
                                         ("rollback", rollback_definition, rollback_policy),
                                         ("validation", validation_definition,
                                          validation_policy)):
            machine_name = names.state_machine_name(role, env)
            iam_role = aws.iam.Role(f"{name}-{role}-role", name=machine_name,
                                    assume_role_policy=trust, opts=child)
            role_policy = aws.iam.RolePolicy(f"{name}-{role}-policy", role=iam_role.id,
                                             policy=policy, opts=child)
            # The vendedlogs prefix keeps CloudWatch's resource policy small for many groups.
            log_group = aws.cloudwatch.LogGroup(
                f"{name}-{role}-logs", name=f"/aws/vendedlogs/states/{machine_name}",
                retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn,
                opts=child)
            machine = aws.sfn.StateMachine(
                f"{name}-{role}",
                name=machine_name,
                type="STANDARD",
                role_arn=iam_role.arn,
                definition=definition,
                logging_configuration=aws.sfn.StateMachineLoggingConfigurationArgs(
                    level="ALL", include_execution_data=True,
                    log_destination=pulumi.Output.concat(log_group.arn, ":*")),
                tracing_configuration=aws.sfn.StateMachineTracingConfigurationArgs(enabled=True),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]))
            arns[role] = machine.arn

        self.migration_arn = arns["migration"]
        self.rollback_arn = arns["rollback"]
        self.validation_arn = arns["validation"]
        self.register_outputs({"migration_arn": self.migration_arn,
                               "rollback_arn": self.rollback_arn,
                               "validation_arn": self.validation_arn})
