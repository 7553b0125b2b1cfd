"""The payments REST API behind the TOKEN authorizer: the migration's routes and /payments.

``GET /migration/status`` and ``POST /migration/validation`` are Lambda proxy integrations
(``api_routes`` has the shape, ``ApiFunctions`` the functions). ``/payments`` GET and POST keep
their MOCK integrations: the authorizer's smoke path, serving nothing; the payment backend is
wired by the application team. Access logs, X-Ray tracing and throttling are on for every method.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import api_routes
import policies
import pulumi
import pulumi_aws as aws

from paymigrate.aws import names

STAGE = api_routes.STAGE
TOKEN_PATTERN = api_routes.TOKEN_PATTERN
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latency": "$context.responseLatency",
    "authorizerError": "$context.authorizer.error",
    "authorizerStatus": "$context.authorizer.status",
    "xrayTraceId": "$context.xrayTraceId",
}, separators=(",", ":"))


@dataclass
class ApiArgs:
    env: str
    authorizer_function_name: pulumi.Input[str]
    authorizer_invoke_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int = 90
    authorizer_cache_seconds: int = 300
    throttle_burst: int = 100
    throttle_rate: float = 50.0
    manage_account_settings: bool = True
    # By api_routes.Function.role: the functions behind the migration routes.
    route_function_names: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    route_invoke_arns: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class Api(pulumi.ComponentResource):
    rest_api_id: pulumi.Output[str]
    api_name: pulumi.Output[str]
    stage_name: pulumi.Output[str]
    invoke_url: pulumi.Output[str]

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:api:Api", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = args.env
        api_name = names.resource_name("payments-api", env)

        account_settings: list[pulumi.Resource] = []
        if args.manage_account_settings:
            # Stage logging needs the account-wide CloudWatch role of API Gateway (one per
            # account and region: config manageAccountSingletons).
            push_role = aws.iam.Role(
                f"{name}-cloudwatch-role", name=names.resource_name("apigw-cloudwatch", env),
                assume_role_policy=json.dumps(policies.assume_role("apigateway.amazonaws.com")),
                opts=child)
            attachment = aws.iam.RolePolicyAttachment(
                f"{name}-cloudwatch-policy", role=push_role.name,
                policy_arn="arn:aws:iam::aws:policy/service-role/"
                           "AmazonAPIGatewayPushToCloudWatchLogs",
                opts=child)
            account_settings.append(aws.apigateway.Account(
                f"{name}-account", cloudwatch_role_arn=push_role.arn,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment])))

        api = aws.apigateway.RestApi(
            f"{name}-rest-api", name=api_name, description="Payments API (migration)",
            endpoint_configuration=aws.apigateway.RestApiEndpointConfigurationArgs(
                types="REGIONAL"),
            opts=child)
        authorizer = aws.apigateway.Authorizer(
            f"{name}-authorizer", name=names.resource_name("token-authorizer", env),
            rest_api=api.id, type=api_routes.AUTHORIZER_TYPE,
            authorizer_uri=args.authorizer_invoke_arn,
            identity_source=api_routes.IDENTITY_SOURCE,
            identity_validation_expression=TOKEN_PATTERN,
            authorizer_result_ttl_in_seconds=args.authorizer_cache_seconds,
            opts=child)
        aws.lambda_.Permission(
            f"{name}-invoke-authorizer", action="lambda:InvokeFunction",
            function=args.authorizer_function_name, principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(api.execution_arn, "/authorizers/", authorizer.id),
            opts=child)

        resources: dict[tuple[str, ...], aws.apigateway.Resource] = {}

        def resource(path: tuple[str, ...]) -> aws.apigateway.Resource:
            if path not in resources:
                parent = resource(path[:-1]).id if len(path) > 1 else api.root_resource_id
                resources[path] = aws.apigateway.Resource(
                    f"{name}-{'-'.join(path)}", rest_api=api.id, parent_id=parent,
                    path_part=path[-1], opts=child)
            return resources[path]

        routes: list[pulumi.Resource] = []
        for route in api_routes.ROUTES:
            role = f"{'-'.join(route.path)}-{route.method.lower()}"
            target = resource(route.path)
            method = aws.apigateway.Method(
                f"{name}-{role}", rest_api=api.id, resource_id=target.id,
                http_method=route.method, authorization="CUSTOM", authorizer_id=authorizer.id,
                opts=child)
            integration = aws.apigateway.Integration(
                f"{name}-{role}-integration", rest_api=api.id, resource_id=target.id,
                http_method=method.http_method, type="AWS_PROXY", integration_http_method="POST",
                uri=args.route_invoke_arns[route.function.role], opts=child)
            aws.lambda_.Permission(
                f"{name}-invoke-{role}", action="lambda:InvokeFunction",
                function=args.route_function_names[route.function.role],
                principal="apigateway.amazonaws.com",
                source_arn=pulumi.Output.concat(api.execution_arn, f"/*/{route.method}",
                                                route.resource_path),
                opts=child)
            routes += [method, integration]

        payments = resource(api_routes.MOCK_PATH)
        for method_name in api_routes.MOCK_METHODS:
            role = method_name.lower()
            method = aws.apigateway.Method(
                f"{name}-payments-{role}", rest_api=api.id, resource_id=payments.id,
                http_method=method_name, authorization="CUSTOM", authorizer_id=authorizer.id,
                opts=child)
            integration = aws.apigateway.Integration(
                f"{name}-payments-{role}-integration", rest_api=api.id,
                resource_id=payments.id, http_method=method.http_method, type="MOCK",
                request_templates={"application/json": '{"statusCode": 200}'},
                passthrough_behavior="NEVER", opts=child)
            response = aws.apigateway.MethodResponse(
                f"{name}-payments-{role}-200", rest_api=api.id, resource_id=payments.id,
                http_method=method.http_method, status_code="200", opts=child)
            integration_response = aws.apigateway.IntegrationResponse(
                f"{name}-payments-{role}-200-integration", rest_api=api.id,
                resource_id=payments.id, http_method=method.http_method,
                status_code=response.status_code,
                response_templates={"application/json": '{"status": "accepted"}'},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[integration]))
            routes += [method, integration, response, integration_response]

        # A new deployment whenever the API's shape changes; otherwise the stage keeps serving
        # the old one.
        shape = hashlib.sha256(json.dumps({
            **api_routes.shape(), "ttl": args.authorizer_cache_seconds,
        }, sort_keys=True).encode()).hexdigest()
        deployment = aws.apigateway.Deployment(
            f"{name}-deployment", rest_api=api.id, triggers={"shape": shape},
            description="payments API", opts=pulumi.ResourceOptions(
                parent=self, depends_on=routes, delete_before_replace=False))

        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs", name=f"/aws/apigateway/{api_name}/access",
            retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn, opts=child)
        stage = aws.apigateway.Stage(
            f"{name}-stage", rest_api=api.id, deployment=deployment.id, stage_name=STAGE,
            xray_tracing_enabled=True,
            access_log_settings=aws.apigateway.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT),
            opts=pulumi.ResourceOptions(parent=self, depends_on=account_settings))
        aws.apigateway.MethodSettings(
            f"{name}-method-settings", rest_api=api.id, stage_name=stage.stage_name,
            method_path="*/*",
            settings=aws.apigateway.MethodSettingsSettingsArgs(
                metrics_enabled=True,
                # INFO without data trace: request bodies are payments and stay out of logs.
                logging_level="INFO",
                data_trace_enabled=False,
                throttling_burst_limit=args.throttle_burst,
                throttling_rate_limit=args.throttle_rate),
            opts=child)

        self.rest_api_id = api.id
        self.api_name = api.name
        self.stage_name = stage.stage_name
        self.invoke_url = stage.invoke_url
        self.register_outputs({"invoke_url": self.invoke_url, "rest_api_id": self.rest_api_id})
