"""Lambda handler of the payments API TOKEN authorizer; the decision is paymigrate.aws.authorizer.

Environment: ``PAYMIGRATE_ENV`` (the environment suffix) and optionally
``PAYMIGRATE_TOKEN_TTL_SECONDS`` (how long a container keeps the token it read, default 60).
"""

from __future__ import annotations

import functools
import logging
import os

import boto3

from paymigrate.aws import authorizer, contract

logging.getLogger().setLevel(logging.INFO)
# botocore logs response bodies at DEBUG, and GetParameter's body is the token: whatever level
# the root logger is given, the AWS SDK's loggers never go below WARNING here.
for _sdk_logger in ("botocore", "boto3", "urllib3"):
    logging.getLogger(_sdk_logger).setLevel(logging.WARNING)


@functools.cache
def _token() -> authorizer.ParameterToken:
    # Built once per container: the client and the cached token survive between invocations.
    env = os.environ["PAYMIGRATE_ENV"]
    return authorizer.ParameterToken(
        ssm_client=boto3.client("ssm"),
        name=contract.path("api/auth-token", env),
        ttl_seconds=float(os.environ.get("PAYMIGRATE_TOKEN_TTL_SECONDS", "60")),
    )


def handler(event, context):
    return authorizer.authorize(event, _token().get)
