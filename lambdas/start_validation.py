"""Lambda handler of ``POST /migration/validation``; the work is
paymigrate.aws.migration_api.start_validation.

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
    return boto3.client("ssm"), boto3.client("stepfunctions")


def handler(event, context):
    ssm, sfn = _clients()
    return migration_api.start_validation(event, ssm=ssm, sfn=sfn,
                                          env=os.environ["PAYMIGRATE_ENV"])
