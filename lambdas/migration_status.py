"""Lambda handler of ``GET /migration/status``; the answer is paymigrate.aws.migration_api.status.

Environment: ``PAYMIGRATE_ENV`` (the environment suffix).
"""

from __future__ import annotations

import functools
import logging
import os

import boto3

from paymigrate.aws import migration_api

logging.getLogger().setLevel(logging.INFO)


@functools.cache
def _clients() -> tuple:
    return boto3.client("ssm"), boto3.client("s3")  # kept between invocations of a container


def handler(event, context):
    ssm, s3 = _clients()
    return migration_api.status(ssm=ssm, s3=s3, env=os.environ["PAYMIGRATE_ENV"])
