"""Lambda handler of the rollback state machine's steps that reach the databases and the routers
(``switch_writes_to_source``, ``stop_replication`` for an engine other than dms,
``route_traffic_to_source``, ``unfreeze_source``); the work is the migration service's, the same
calls as the ``payment_rollback`` DAG's tasks of those ids.

Environment: ``PAYMIGRATE_ENV``. Event: ``{"step", "run_id", "input"}``, where ``input`` (the
execution's) may carry ``max_write_pause_ms``, ``pause_timeout_seconds`` and
``drain_timeout_seconds``. The route is rewritten in ``router/databases-file``: the function
must see the routers' file (a shared mount), as an Airflow worker running the DAG must.
"""

from __future__ import annotations

import logging
import os

from paymigrate.errors import BadInput
from paymigrate.migration.platform import ClientPlatform
from paymigrate.migration.service import MigrationService

logging.getLogger().setLevel(logging.INFO)

LIMITS = ("max_write_pause_ms", "pause_timeout_seconds", "drain_timeout_seconds")


def handler(event, context):
    if not isinstance(event, dict) or not isinstance(event.get("step"), str):
        raise BadInput("event", event, "needs a step")
    given = event.get("input") or {}
    limits = {k: given[k] for k in LIMITS if isinstance(given, dict) and k in given}
    service = MigrationService(ClientPlatform(env=os.environ["PAYMIGRATE_ENV"]))
    return service.rollback_step(event["step"], run_id=str(event.get("run_id") or "stepfunctions"),
                                 **limits)
