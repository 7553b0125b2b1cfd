"""What every migration DAG shares: start date, retries, failure alerts, typed Params."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param

from paymigrate.inputs import TABLE_PATTERN
from paymigrate.provider.callbacks import alert_on_failure
from paymigrate.provider.hooks import contract_value

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")

DEFAULT_ARGS = {
    "owner": "payments-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": True,
    "on_failure_callback": alert_on_failure,
}

# Jinja sees the contract as `{{ contract('notifications/error-alerts-topic-arn') }}`, read when a
# task renders its templates, never when the DAG file is parsed.
MACROS = {"contract": contract_value}

# What every operator-triggered DAG shares: no schedule, alerts on failure, the contract macro.
ON_DEMAND = {"schedule": None, "start_date": START_DATE, "catchup": False,
             "default_args": DEFAULT_ARGS, "user_defined_macros": MACROS}



def table_list(description: str) -> Param:
    """schema.table names in SQL syntax (``public."Weird Name"``); the syntax is refused at
    trigger time, a name that is no table by the preflight, before anything is created."""
    return Param([], type="array", items={"type": "string", "pattern": TABLE_PATTERN, "maxLength": 300},
                 uniqueItems=True, maxItems=10000, description=description)


def engine_param() -> Param:
    return Param("from-contract", type="string", enum=["from-contract", "postgres-logical", "dms"],
                 description="Replication engine; from-contract reads "
                             "/migration/{env}/workflow/replication-engine")


def lag_threshold_param() -> Param:
    return Param(None, type=["null", "number"], minimum=0.001, maximum=3600,
                 description="Replication lag (seconds) above which the run refuses to go on; empty "
                             "reads /migration/{env}/monitoring/replication-lag-threshold-seconds")
