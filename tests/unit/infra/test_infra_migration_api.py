"""The migration API under Pulumi mocks: its routes, their Lambdas, roles and state machine."""

from __future__ import annotations

import json

import api_routes
from components.functions import archive_entries

from paymigrate.aws import contract, migration_api, names, statemachines

ENV = "dev"


def _by_name(mocks, typ):
    return {r.inputs["name"]: r for r in mocks.of(typ)}


def test_migration_routes_are_lambda_proxies_behind_the_token_authorizer(program_stack):
    mocks, _ = program_stack
    (authorizer,) = mocks.of("aws:apigateway/authorizer:Authorizer")
    resources = {r.inputs["pathPart"]: r for r in mocks.of("aws:apigateway/resource:Resource")}
    assert set(resources) == {"migration", "status", "validation", "payments"}
    assert resources["status"].inputs["parentId"] == resources["migration"].id
    assert resources["validation"].inputs["parentId"] == resources["migration"].id
    functions = _by_name(mocks, "aws:lambda/function:Function")
    integrations = {(i.inputs["resourceId"], i.inputs["httpMethod"]): i
                    for i in mocks.of("aws:apigateway/integration:Integration")}
    methods = {(m.inputs["resourceId"], m.inputs["httpMethod"]): m
               for m in mocks.of("aws:apigateway/method:Method")}
    permissions = {p.inputs["function"]: p for p in mocks.of("aws:lambda/permission:Permission")}
    for route in api_routes.ROUTES:
        key = (resources[route.path[-1]].id, route.method)
        assert methods[key].inputs["authorization"] == "CUSTOM"
        assert methods[key].inputs["authorizerId"] == authorizer.id
        integration = integrations[key].inputs
        function = functions[names.resource_name(route.function.role, ENV)]
        assert (integration["type"], integration["integrationHttpMethod"]) == ("AWS_PROXY", "POST")
        assert integration["uri"] == function.state["invokeArn"]
        permission = permissions[function.inputs["name"]].inputs
        assert permission["principal"] == "apigateway.amazonaws.com"
        assert permission["sourceArn"].endswith(f"/*/{route.method}{route.resource_path}")
    # The seed's smoke path stays MOCK.
    assert {i.inputs["type"] for i in integrations.values()} == {"AWS_PROXY", "MOCK"}


def test_route_functions_are_bundled_outside_the_vpc_with_their_handlers(program_stack):
    mocks, _ = program_stack
    functions = _by_name(mocks, "aws:lambda/function:Function")
    bundled = set(archive_entries())
    for route in api_routes.ROUTES:
        fn = functions[names.resource_name(route.function.role, ENV)].inputs
        assert fn["handler"] == route.function.handler
        assert f"{route.function.handler.split('.')[0]}.py" in bundled
        assert "vpcConfig" not in fn and fn["environment"]["variables"] == {"PAYMIGRATE_ENV": ENV}
        assert fn["tracingConfig"]["mode"] == "Active"
    assert "paymigrate/aws/migration_api.py" in bundled


def _policy(mocks, role):
    (p,) = [p for p in mocks.of("aws:iam/rolePolicy:RolePolicy")
            if p.name == f"api-functions-{role}-policy"]
    return {s["Sid"]: s for s in json.loads(p.inputs["policy"])["Statement"]}


def test_status_function_reads_plain_parameters_and_checkpoints_only(program_stack):
    mocks, _ = program_stack
    policy = _policy(mocks, "migration-status-api")
    readable = policy["ReadStatusParameters"]["Resource"]
    assert readable == [f"arn:aws:ssm:eu-west-1:123456789012:parameter{contract.path(k, ENV)}"
                        for k in migration_api.STATUS_KEYS]
    assert not any("auth-token" in arn for arn in readable)
    assert policy["ReadCheckpoints"]["Resource"] == (
        f"arn:aws:s3:::{names.bucket_name('checkpoints', ENV)}/{ENV}/*")
    actions = {a for s in policy.values() for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                    else s["Action"])}
    assert not {"secretsmanager:GetSecretValue", "s3:PutObject", "ssm:GetParametersByPath"} & actions


def test_start_function_starts_only_the_validation_machine_named_in_the_contract(program_stack):
    mocks, _ = program_stack
    machines = _by_name(mocks, "aws:sfn/stateMachine:StateMachine")
    machine = machines[names.state_machine_name("validation", ENV)]
    definition = json.loads(machine.inputs["definition"])
    assert statemachines.structural_problems(definition) == []
    assert set(definition["States"]) == set(statemachines.VALIDATION_STATES)
    validator = _by_name(mocks, "aws:lambda/function:Function")[
        names.resource_name("data-validation", ENV)]
    assert definition["States"]["validate"]["Parameters"]["FunctionName"] == validator.state["arn"]
    policy = _policy(mocks, "start-validation-api")
    assert policy["StartValidation"]["Resource"] == machine.state["arn"]
    assert policy["ReadMachineArn"]["Resource"] == [
        f"arn:aws:ssm:eu-west-1:123456789012:parameter"
        f"{contract.path('workflows/validation-state-machine-arn', ENV)}"]
    written = {p.inputs["name"]: p.inputs.get("insecureValue")
               for p in mocks.of("aws:ssm/parameter:Parameter")}
    assert written[contract.path("workflows/validation-state-machine-arn", ENV)] == machine.state["arn"]
