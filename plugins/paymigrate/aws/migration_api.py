"""The migration API's two routes as plain functions: an API Gateway proxy event in, a proxy
response out. The Lambda handlers in ``lambdas/`` only make the clients.

- ``GET /migration/status``: :func:`paymigrate.migration.status.read_status` on a few plain
  contract parameters and the checkpoints.
- ``POST /migration/validation``: starts the on-demand validation state machine named by the
  contract, with the body's options (``tables``, ``schemas``, ``max_keys``) checked first.

Both run behind the TOKEN authorizer. A bad body is a 400 naming the bad value; a contract the
function cannot read is a 500 naming the parameter, never a stack trace.

>>> response(400, {"error": "x"})["statusCode"]
400
>>> execution_name("a b/c", "2026-12-04T17:00:00+00:00")
'api-20261204T170000-a-b-c'
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from paymigrate.aws import contract
from paymigrate.aws.checkpoints import CheckpointStore
from paymigrate.errors import PaymigrateError, ValidationError
from paymigrate.inputs import validation_options
from paymigrate.migration.status import read_status

log = logging.getLogger(__name__)

STATUS_KEYS = ("workflow/mode", "database/active-writer", "workflow/traffic-split-percentage",
               "monitoring/replication-lag-threshold-seconds", "storage/checkpoints-bucket")
START_KEYS = ("workflows/validation-state-machine-arn",)
MAX_BODY_CHARS = 64 * 1024
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def response(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"statusCode": status,
            "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
            "body": json.dumps(body, default=str, sort_keys=True)}


def execution_name(request_id: str, at: str) -> str:
    """A Step Functions execution name (80 characters of ``[A-Za-z0-9_-]``), unique per API
    request: API Gateway's request id."""
    stamp = datetime.fromisoformat(at).astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"api-{stamp}-{_NOT_NAME.sub('-', request_id).strip('-')}"[:80]


def status(*, ssm: Any, s3: Any, env: str) -> dict[str, Any]:
    try:
        cfg = contract.read_keys(ssm, env, STATUS_KEYS)
        body = read_status(cfg, CheckpointStore(s3=s3, bucket=cfg["storage/checkpoints-bucket"],
                                                env=env))
    except PaymigrateError as exc:
        log.error("status unreadable: %s", exc)
        return response(500, {"error": str(exc)})
    return response(200, body)


def _body(event: Mapping[str, Any]) -> dict[str, Any]:
    raw = event.get("body")
    if raw is None or raw == "":
        return {}
    if event.get("isBase64Encoded"):
        raise ValidationError("body: send JSON text, not base64")
    if not isinstance(raw, str) or len(raw) > MAX_BODY_CHARS:
        raise ValidationError(f"body: at most {MAX_BODY_CHARS} characters of JSON")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"body is not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(body, dict):
        raise ValidationError(f"body must be a JSON object, not {type(body).__name__}")
    unknown = sorted(set(body) - {"tables", "schemas", "max_keys"})
    if unknown:
        raise ValidationError(f"body fields not understood: {', '.join(unknown)}")
    return body


def start_validation(event: Mapping[str, Any], *, ssm: Any, sfn: Any, env: str,
                     now: str | None = None) -> dict[str, Any]:
    try:
        options = validation_options(_body(event))
    except ValidationError as exc:
        return response(400, {"error": str(exc)})
    context = event.get("requestContext") or {}
    requested_by = (context.get("authorizer") or {}).get("principalId")
    at = now or datetime.now(UTC).isoformat(timespec="seconds")
    try:
        machine = contract.read_keys(ssm, env, START_KEYS)["workflows/validation-state-machine-arn"]
    except PaymigrateError as exc:
        log.error("validation not started: %s", exc)
        return response(500, {"error": str(exc)})
    name = execution_name(str(context.get("requestId") or at), at)
    started = sfn.start_execution(stateMachineArn=machine, name=name,
                                  input=json.dumps({**options, "requested_by": requested_by}))
    log.info("validation %s started for %s: %s", name, requested_by, options)
    return response(202, {"execution_arn": started["executionArn"], "name": name,
                          "started": str(started["startDate"]), "options": options})
