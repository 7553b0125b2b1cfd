"""API Gateway TOKEN authorizer: the decision, apart from the Lambda handler that calls it.

The expected token is the SecureString parameter ``/migration/{env}/api/auth-token``; it is read
through an injected SSM client and cached per container for a short time, so a rotated token is
picked up within ``ttl_seconds`` without a parameter read on every request.

Anything that is not exactly ``Bearer <the token>`` is a Deny, never an exception: a missing,
empty, oversize or malformed header, another scheme, a wrong token, and also an unreadable or
empty stored token (fail closed). The token never reaches a log line.

>>> bearer_token("Bearer abc")
'abc'
>>> bearer_token("Basic abc") is None, bearer_token("Bearer ") is None
(True, True)
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MAX_HEADER_CHARS = 4096
PRINCIPAL_ID = "payments-api-client"

# RFC 6750 b64token: the characters a bearer token may contain.
_BEARER = re.compile(r"^Bearer ([A-Za-z0-9\-._~+/]+=*)$")
_METHOD_ARN = re.compile(
    r"^arn:(aws[a-z\-]*):execute-api:([a-z0-9\-]+):(\d{12}):([A-Za-z0-9]+)/([A-Za-z0-9_\-]+)/"
    r"[A-Z]+/.*$"
)


def bearer_token(header: Any) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None when it is not one."""
    if not isinstance(header, str) or not header or len(header) > MAX_HEADER_CHARS:
        return None
    match = _BEARER.match(header)
    return match.group(1) if match else None


@dataclass
class ParameterToken:
    """The expected token, read from a SecureString parameter and cached for ``ttl_seconds``."""

    ssm_client: Any
    name: str
    ttl_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _value: str | None = field(default=None, init=False, repr=False)
    _read_at: float = field(default=float("-inf"), init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.ttl_seconds <= 3600:
            raise ValueError(f"ttl_seconds: {self.ttl_seconds} is outside (0, 3600]")

    def get(self) -> str:
        with self._lock:
            now = self.clock()
            if self._value is None or now - self._read_at >= self.ttl_seconds:
                response = self.ssm_client.get_parameter(Name=self.name, WithDecryption=True)
                self._value = response["Parameter"]["Value"]
                self._read_at = now
            return self._value


def policy(effect: str, resource: str, *, context: Mapping[str, str] | None = None) -> dict:
    """The authorizer response API Gateway expects."""
    if effect not in ("Allow", "Deny"):
        raise ValueError(f"effect must be Allow or Deny, not {effect!r}")
    out: dict[str, Any] = {
        "principalId": PRINCIPAL_ID,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
            ],
        },
    }
    if context:
        out["context"] = dict(context)
    return out


def allow_resource(method_arn: str) -> str:
    """What an Allow covers: the methods of the API stage the request was for.

    API Gateway caches an authorizer's answer per token for the TTL and applies the cached
    policy to the next request with that token, whatever its method: an Allow of exactly
    ``GET /payments`` would then refuse a ``POST /payments`` with the same valid token.

    >>> allow_resource("arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/GET/payments")
    'arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/*/*'
    """
    match = _METHOD_ARN.match(method_arn)
    if not match:
        raise ValueError("not an execute-api method ARN")
    partition, region, account, api_id, stage = match.groups()
    return f"arn:{partition}:execute-api:{region}:{account}:{api_id}/{stage}/*/*"


def authorize(event: Mapping[str, Any], expected: Callable[[], str]) -> dict:
    """Decide a TOKEN authorizer event: Allow the stage for the right token, else Deny."""
    method_arn = event.get("methodArn") if isinstance(event, Mapping) else None
    if not isinstance(method_arn, str) or not _METHOD_ARN.match(method_arn):
        # No trustworthy resource to scope to: deny everything.
        log.warning("deny: event without a valid methodArn")
        return policy("Deny", "*")
    given = bearer_token(event.get("authorizationToken"))
    if given is None:
        log.info("deny %s: missing, oversize or non-Bearer authorization header", method_arn)
        return policy("Deny", method_arn)
    try:
        stored = expected()
    except Exception as exc:  # fail closed whatever the SSM client raised
        log.error("deny %s: expected token unreadable (%s)", method_arn, type(exc).__name__)
        return policy("Deny", method_arn)
    if not isinstance(stored, str) or not stored:
        log.error("deny %s: the stored token is empty", method_arn)
        return policy("Deny", method_arn)
    if not hmac.compare_digest(given.encode(), stored.encode()):
        log.info("deny %s: wrong token", method_arn)
        return policy("Deny", method_arn)
    log.info("allow %s", method_arn)
    return policy("Allow", allow_resource(method_arn), context={"authorizedBy": "bearer-token"})
