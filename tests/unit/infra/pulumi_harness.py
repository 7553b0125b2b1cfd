"""Runs ``infra/__main__.py`` under ``pulumi.runtime.set_mocks`` and records every resource.

The mocks answer like AWS would, closely enough for the program's wiring: ARNs with the
account and region, cluster endpoints, invoke URLs, the identifiers AWS generates.
"""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

REPO = Path(__file__).resolve().parents[3]
MAIN = REPO / "infra" / "__main__.py"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
API_TOKEN = "s3cr3t-T0ken_value.with~chars+/="


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    id: str


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    resources: list[Recorded] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        typ = args.typ
        service = typ.split(":")[1].split("/")[0] if ":" in typ else "x"
        physical = (inputs.get("name") or inputs.get("bucket") or inputs.get(
            "clusterIdentifier") or inputs.get("identifier") or args.name)
        arn = f"arn:aws:{service}:{REGION}:{ACCOUNT}:{physical}"
        rid = f"{args.name}-id"
        state: dict[str, Any] = {**inputs, "arn": arn}
        if typ == "aws:s3/bucket:Bucket":
            rid = inputs["bucket"]
            state["arn"] = f"arn:aws:s3:::{rid}"
        elif typ == "aws:rds/cluster:Cluster":
            state.update(endpoint=f"{physical}.cluster-c0ffee.{REGION}.rds.amazonaws.com",
                         readerEndpoint=f"{physical}.cluster-ro-c0ffee.{REGION}.rds.amazonaws"
                                        ".com", port=5432)
            rid = physical
        elif typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{physical}"
            rid = physical
        elif typ == "aws:lambda/function:Function":
            state["arn"] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}"
            state["invokeArn"] = (f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/"
                                  f"functions/{state['arn']}/invocations")
        elif typ == "aws:apigateway/restApi:RestApi":
            state.update(rootResourceId="root0", executionArn=(
                f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{rid}"))
        elif typ == "aws:apigateway/stage:Stage":
            state["invokeUrl"] = (f"https://abc123.execute-api.{REGION}.amazonaws.com/"
                                  f"{inputs['stageName']}")
        elif typ == "aws:dms/replicationInstance:ReplicationInstance":
            state["replicationInstanceArn"] = (
                f"arn:aws:dms:{REGION}:{ACCOUNT}:rep:{inputs['replicationInstanceId']}")
        elif typ == "aws:dms/endpoint:Endpoint":
            state["endpointArn"] = f"arn:aws:dms:{REGION}:{ACCOUNT}:endpoint:{inputs['endpointId']}"
        elif typ == "aws:dms/replicationTask:ReplicationTask":
            state["replicationTaskArn"] = (
                f"arn:aws:dms:{REGION}:{ACCOUNT}:task:{inputs['replicationTaskId']}")
        elif typ == "aws:kms/key:Key":
            state["keyId"] = "1234abcd-12ab-34cd-56ef-1234567890ab"
            state["arn"] = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{state['keyId']}"
        elif typ == "aws:secretsmanager/secret:Secret":
            state["arn"] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{physical}-AbCdEf"
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            state["arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{physical}"
        elif typ == "aws:sns/topic:Topic":
            state["arn"] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{physical}"
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            state["dnsName"] = f"internal-{physical}-0123456789.{REGION}.elb.amazonaws.com"
            state["arn"] = (f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/net/"
                            f"{physical}/0123456789abcdef")
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
        elif typ == "aws:sfn/stateMachine:StateMachine":
            state["arn"] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{physical}"
        self.resources.append(Recorded(typ, args.name, inputs, state, rid))
        return [rid, state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args.token)
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                    "userId": "AIDEXAMPLE", "id": ACCOUNT}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com",
                    "reverseDnsPrefix": "com.amazonaws", "id": "aws"}
        raise NotImplementedError(f"the program made an unexpected call: {args.token}")

    # Helpers for assertions.
    def of(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.typ == typ]

    def by_id(self, rid: str) -> Recorded:
        matches = [r for r in self.resources if r.id == rid]
        assert len(matches) == 1, f"{rid}: {len(matches)} resources"
        return matches[0]


def base_config(env: str = "dev", **overrides: Any) -> dict[str, str]:
    config = {
        "aws:region": REGION,
        "paymigrate:env": env,
        "paymigrate:routerPackage": "https://artifacts.example.com/paymigrate-0.1.0-py3-none-any.whl",
        "paymigrate:apiAuthToken": API_TOKEN,
        "paymigrate:alertEmails": json.dumps(["oncall@example.com"]),
        "paymigrate:parameters": json.dumps({"workflow/mode": "replication",
                                             "monitoring/replication-lag-threshold-seconds": 7,
                                             "workflow/canary-max-p99-ms": 400}),
    }
    config.update({f"paymigrate:{k}": v if isinstance(v, str) else json.dumps(v)
                   for k, v in overrides.items()})
    return config


def run_program(config: dict[str, str], *, stack: str = "dev") -> tuple[RecordingMocks, dict]:
    """Run the program once with ``config``; return the mocks and the program's globals."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="paymigrate", stack=stack, preview=False)
    pulumi.runtime.set_all_config(config, ["paymigrate:apiAuthToken"])
    program: dict[str, Any] = {}
    exported: dict[str, Any] = {}

    @pulumi.runtime.test
    def run():
        program.update(runpy.run_path(str(MAIN)))
        outputs = {
            "api_url": program["api"].invoke_url,
            "task_arn": program["replication"].task_arn,
            "migration_arn": program["workflows"].migration_arn,
            "rollback_arn": program["workflows"].rollback_arn,
            "validation_arn": program["functions"].validation_function_arn,
        }
        keys = list(outputs)
        return pulumi.Output.all(*outputs.values()).apply(
            lambda values: exported.update(zip(keys, values, strict=True)))

    run()
    return mocks, exported
