"""Lambda handler of the data validation function; the work is paymigrate.validation.publish.

Environment: ``PAYMIGRATE_ENV`` (the environment suffix). The event may carry ``tables``,
``schemas`` and ``max_keys``; the result's ``ok`` field is what the migration state machine's
``decide`` state reads.
"""

from __future__ import annotations

import logging
import os

from paymigrate import aws
from paymigrate.validation import publish

logging.getLogger().setLevel(logging.INFO)


def handler(event, context):
    return publish.run(env=os.environ["PAYMIGRATE_ENV"], ssm=aws.client("ssm"),
                       secrets=aws.client("secretsmanager"), cloudwatch=aws.client("cloudwatch"),
                       sns=aws.client("sns"), event=event)
