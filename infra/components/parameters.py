"""The ``/migration/{env}/`` hierarchy, written exactly as ``contract.render_all`` renders it.

The set of parameters and which are SecureString come from the contract itself, so the stack
cannot write a path the DAGs do not read, or miss one they do; every value goes through
``render_all``, which refuses a bad one (an ARN that is not an ARN, a split above 100) before
anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from paymigrate.aws import contract


@dataclass
class ParametersArgs:
    env: str
    # Every contract key without a default, plus any overrides: plain values or Outputs.
    values: Mapping[str, pulumi.Input[Any]]
    kms_key_id: pulumi.Input[str]


def _rendered(values: dict[str, Any], env: str, expected: dict[str, bool]
              ) -> dict[str, tuple[str, bool]]:
    rendered = contract.render_all(values, env)
    if {p: s for p, (_, s) in rendered.items()} != expected:
        raise contract.ContractError("render_all returned other paths than the contract lists")
    return rendered


class Parameters(pulumi.ComponentResource):
    names: list[str]

    def __init__(self, name: str, args: ParametersArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:parameters:Parameters", name, None, opts)
        env = args.env
        expected = {p.path(env): p.secure for p in contract.PARAMETERS.values()}
        keys = list(args.values)
        rendered = pulumi.Output.all(*(args.values[k] for k in keys)).apply(
            lambda vals: _rendered(dict(zip(keys, vals, strict=True)), env, expected))
        self.names = []
        for key, parameter in contract.PARAMETERS.items():
            path = parameter.path(env)
            value = rendered.apply(lambda r, path=path: r[path][0])
            # One secret input (the API token) makes the whole rendered map secret. Only secure
            # parameters stay secret in state; the others are plain configuration, written as
            # insecure_value so that diffs show them.
            value_args = ({"value": pulumi.Output.secret(value)} if parameter.secure
                          else {"insecure_value": pulumi.Output.unsecret(value)})
            aws.ssm.Parameter(
                f"{name}-{key.replace('/', '-')}",
                name=path,
                description=parameter.description,
                type="SecureString" if parameter.secure else "String",
                key_id=args.kms_key_id if parameter.secure else None,
                tier="Standard",
                **value_args,
                opts=pulumi.ResourceOptions(parent=self))
            self.names.append(path)
        self.register_outputs({"parameter_names": self.names})
