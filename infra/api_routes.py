"""The payments API's shape as plain data: the authorizer, the routes and the Lambda behind each.

``components/api.py`` (Pulumi) builds the API from it, and the tests deploy the same shape into
moto, so what is tested is what is deployed.

>>> [f"{r.method} /{'/'.join(r.path)}" for r in ROUTES]
['GET /migration/status', 'POST /migration/validation']
"""

from __future__ import annotations

from dataclasses import dataclass

STAGE = "live"
AUTHORIZER_TYPE = "TOKEN"
IDENTITY_SOURCE = "method.request.header.Authorization"
# API Gateway refuses a header that does not look like a bearer token before calling the
# authorizer: malformed requests never cost a Lambda invocation.
TOKEN_PATTERN = r"^Bearer [-0-9A-Za-z._~+/]+=*$"
# The seed's smoke path: MOCK integrations that prove the authorizer and serve nothing.
MOCK_PATH = ("payments",)
MOCK_METHODS = ("GET", "POST")


@dataclass(frozen=True)
class Function:
    role: str  # names.resource_name(role, env) is its name
    handler: str  # module.function in lambdas/
    description: str
    timeout: int = 10
    memory: int = 256


@dataclass(frozen=True)
class Route:
    path: tuple[str, ...]
    method: str
    function: Function

    @property
    def resource_path(self) -> str:
        return "/" + "/".join(self.path)


STATUS = Function("migration-status-api", "migration_status.handler",
                  "GET /migration/status: phase, lock, lag, last validation and cutover")
START_VALIDATION = Function("start-validation-api", "start_validation.handler",
                            "POST /migration/validation: starts the validation state machine")
ROUTES = (
    Route(("migration", "status"), "GET", STATUS),
    Route(("migration", "validation"), "POST", START_VALIDATION),
)


def shape() -> dict:
    """What a deployment depends on: a change here makes a new deployment."""
    return {"routes": [[r.resource_path, r.method, r.function.handler] for r in ROUTES],
            "mock": ["/" + "/".join(MOCK_PATH), *MOCK_METHODS], "pattern": TOKEN_PATTERN,
            "type": AUTHORIZER_TYPE, "identity": IDENTITY_SOURCE}
