"""The payments API deployed into moto from the shape infra deploys (``api_routes``), and a
stand-in for API Gateway's request path that reads that deployment back from moto.

Why a stand-in (checked with moto 5.2.5, see the test module's docstring): moto stores REST APIs,
authorizers, methods, integrations and deployments, but its stage URLs run only HTTP and
DynamoDB integrations (AWS_PROXY raises NotImplementedError), it never calls an authorizer, its
server mode serves no ``/restapis/{id}/{stage}/_user_request_/`` path, and its Lambda runs code
only in Docker, which these machines do not have. So :class:`Gateway` does what API Gateway does
with what moto stores: finds the resource and method, applies the method's authorizer (identity
source, validation expression, the Lambda's policy against the method ARN), builds the proxy
event and calls the integration's Lambda, whose handler (from the function's configuration in
moto) runs in this process with the function's environment.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import io
import json
import os
import re
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from unittest import mock

import api_routes
from components.functions import RUNTIME, archive_entries

from paymigrate.aws import names

AUTHORIZER = api_routes.Function("api-authorizer", "api_authorizer.handler", "TOKEN authorizer")
_INVOKE_URI = re.compile(r"^arn:aws:apigateway:[^:]+:lambda:path/2015-03-31/functions/(.+)/invocations$")


@functools.cache
def bundle() -> bytes:
    """The zip every function gets, from the same entries as infra's code archive."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, path in archive_entries().items():
            z.write(path, name)
    return buf.getvalue()


def invoke_uri(region: str, function_arn: str) -> str:
    return f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"


@dataclass
class Deployed:
    api_id: str
    account: str
    region: str
    stage: str


def deploy(clients: Mapping[str, Any], *, env: str, region: str) -> Deployed:
    """Functions (authorizer and every route's), the REST API, its authorizer, routes and stage."""
    lam, apigw, iam = clients["lambda"], clients["apigateway"], clients["iam"]
    role = iam.create_role(RoleName=names.resource_name("api-test", env),
                           AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
                                                                "Statement": []}))["Role"]["Arn"]
    code = bundle()
    arns = {}
    for spec in (AUTHORIZER, *(r.function for r in api_routes.ROUTES)):
        arns[spec.role] = lam.create_function(
            FunctionName=names.resource_name(spec.role, env), Runtime=RUNTIME, Role=role,
            Handler=spec.handler, Code={"ZipFile": code}, Timeout=spec.timeout,
            MemorySize=spec.memory, Environment={"Variables": {"PAYMIGRATE_ENV": env}},
        )["FunctionArn"]
    api_id = apigw.create_rest_api(name=names.resource_name("payments-api", env))["id"]
    root = next(r["id"] for r in apigw.get_resources(restApiId=api_id)["items"] if r["path"] == "/")
    authorizer = apigw.create_authorizer(
        restApiId=api_id, name=names.resource_name("token-authorizer", env),
        type=api_routes.AUTHORIZER_TYPE, authorizerUri=invoke_uri(region, arns[AUTHORIZER.role]),
        identitySource=api_routes.IDENTITY_SOURCE,
        identityValidationExpression=api_routes.TOKEN_PATTERN, authorizerResultTtlInSeconds=0)["id"]
    # moto 5.2.5 drops identityValidationExpression on create (its backend passes the keyword as
    # "identiy_validation_expression", which the model does not read); an update keeps it.
    apigw.update_authorizer(restApiId=api_id, authorizerId=authorizer, patchOperations=[{
        "op": "replace", "path": "/identityValidationExpression",
        "value": api_routes.TOKEN_PATTERN}])
    resources: dict[tuple[str, ...], str] = {(): root}
    for route in api_routes.ROUTES:
        for depth in range(1, len(route.path) + 1):
            path = route.path[:depth]
            if path not in resources:
                resources[path] = apigw.create_resource(
                    restApiId=api_id, parentId=resources[path[:-1]], pathPart=path[-1])["id"]
        apigw.put_method(restApiId=api_id, resourceId=resources[route.path],
                         httpMethod=route.method, authorizationType="CUSTOM",
                         authorizerId=authorizer)
        apigw.put_integration(restApiId=api_id, resourceId=resources[route.path],
                              httpMethod=route.method, type="AWS_PROXY",
                              integrationHttpMethod="POST",
                              uri=invoke_uri(region, arns[route.function.role]))
    apigw.create_deployment(restApiId=api_id, stageName=api_routes.STAGE)
    account = role.split(":")[4]
    return Deployed(api_id=api_id, account=account, region=region, stage=api_routes.STAGE)


@dataclass
class Answer:
    status: int
    body: Any
    invoked: list[str]  # the functions run, in order


def _allows(policy: Mapping[str, Any], method_arn: str) -> bool:
    """IAM evaluation of an authorizer's policy for one ARN: an explicit Deny wins."""
    effects = set()
    for st in policy.get("policyDocument", {}).get("Statement", []):
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if any(fnmatch.fnmatchcase(method_arn, r) for r in resources):
            effects.add(st["Effect"])
    return "Allow" in effects and "Deny" not in effects


class Gateway:
    def __init__(self, clients: Mapping[str, Any], deployed: Deployed):
        self.apigw, self.lam, self.d = clients["apigateway"], clients["lambda"], deployed

    def _invoke(self, uri: str, event: Mapping[str, Any], invoked: list[str]) -> Any:
        match = _INVOKE_URI.match(uri)
        assert match, f"not a Lambda invocation URI: {uri}"
        config = self.lam.get_function_configuration(FunctionName=match.group(1))
        module_name, function = config["Handler"].rsplit(".", 1)
        invoked.append(config["FunctionName"])
        with mock.patch.dict(os.environ, config.get("Environment", {}).get("Variables", {})):
            return getattr(importlib.import_module(module_name), function)(json.loads(
                json.dumps(event)), None)

    def request(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                body: str | None = None) -> Answer:
        headers = dict(headers or {})
        invoked: list[str] = []
        found = {r["path"]: r for r in self.apigw.get_resources(restApiId=self.d.api_id)["items"]}
        resource = found.get(path)
        if resource is None or method not in resource.get("resourceMethods", {}):
            return Answer(403, {"message": "Missing Authentication Token"}, invoked)
        m = self.apigw.get_method(restApiId=self.d.api_id, resourceId=resource["id"],
                                  httpMethod=method)
        method_arn = (f"arn:aws:execute-api:{self.d.region}:{self.d.account}:{self.d.api_id}/"
                      f"{self.d.stage}/{method}{path}")
        request_context: dict[str, Any] = {
            "requestId": str(uuid.uuid4()), "stage": self.d.stage, "httpMethod": method,
            "resourcePath": path, "accountId": self.d.account, "apiId": self.d.api_id}
        if m["authorizationType"] == "CUSTOM":
            auth = self.apigw.get_authorizer(restApiId=self.d.api_id, authorizerId=m["authorizerId"])
            header = auth["identitySource"].removeprefix("method.request.header.")
            token = next((v for k, v in headers.items() if k.lower() == header.lower()), None)
            pattern = auth.get("identityValidationExpression")
            if not token or (pattern and not re.fullmatch(pattern, token)):
                return Answer(401, {"message": "Unauthorized"}, invoked)
            policy = self._invoke(auth["authorizerUri"], {
                "type": auth["type"], "authorizationToken": token, "methodArn": method_arn},
                invoked)
            if not _allows(policy, method_arn):
                return Answer(403, {"message": "User is not authorized to access this resource "
                                               "with an explicit deny"}, invoked)
            request_context["authorizer"] = {"principalId": policy["principalId"],
                                             **policy.get("context", {})}
        integration = self.apigw.get_integration(restApiId=self.d.api_id,
                                                 resourceId=resource["id"], httpMethod=method)
        assert integration["type"] == "AWS_PROXY", integration["type"]
        result = self._invoke(integration["uri"], {
            "resource": path, "path": path, "httpMethod": method, "headers": headers,
            "queryStringParameters": None, "body": body, "isBase64Encoded": False,
            "requestContext": request_context}, invoked)
        return Answer(result["statusCode"], json.loads(result["body"]), invoked)
