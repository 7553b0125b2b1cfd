"""Lambda handler of the data validation function; the work is the migration service's.

Environment: ``PAYMIGRATE_ENV`` (the environment suffix). The event may carry ``tables``,
``schemas`` and ``max_keys``; the result's ``ok`` field is what the migration state machine's
``decide`` state reads.
"""

from __future__ import annotations

import logging
import os

from paymigrate.migration.platform import ClientPlatform
from paymigrate.migration.service import MigrationService
from paymigrate.validation.publish import parse_event

logging.getLogger().setLevel(logging.INFO)


def handler(event, context):
    options = parse_event(event)  # a bad event is refused before anything is read
    return MigrationService(ClientPlatform(env=os.environ["PAYMIGRATE_ENV"])).run_validation(**options)
