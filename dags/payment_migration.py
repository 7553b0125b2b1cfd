"""
### payment_migration: from an empty target to "cutover ready"

The runbook, step by step (task ids are the state names of the Step Functions migration state
machine, so either can be used):

1. **preflight**: every check before any side effect (feature flag, tables, engine preflight:
   keys, large objects, unlogged tables, extensions, an empty target), then take the migration
   lock. A second run while one is active is refused, naming it. `dry_run` stops here.
2. **checkpoint_preparation**, **notify_start**
3. **start_replication**: schema, publication, the initial copy and subscription (or the DMS
   task); never twice. With `replication/initial-copy` = `snapshot` (the default) this task copies
   the tables under the slot's snapshot and builds their keys: its log shows tables copied and
   rows/s. With `subscription` the servers copy and the next task waits for them.
4. **wait_replication_running**: until running with the full load done (deferred: no worker
   held), then the deferred secondary indexes and constraints.
5. **checkpoint_replication**
6. **validate**: counts, checksums and exact keys; differences re-checked after catch-up.
7. **decide**: cutover ready only on a full match and a lag under the threshold; the target's
   materialized views are then filled from its own rows (a schema copy leaves them empty).
8. **checkpoint_validation**, **notify_cutover_ready**

Any failure: **notify_failure** alerts the error topic with a link and marks the migration failed;
trigger the DAG again once the cause is fixed and it resumes from its last checkpoint.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.sns import SnsPublishOperator
from airflow.sdk import DAG, Param, TriggerRule, chain

from paymigrate.airflow.defaults import ON_DEMAND, engine_param, lag_threshold_param, table_list
from paymigrate.airflow.operators import (
    CheckpointOperator,
    DecideOperator,
    NotifyFailureOperator,
    PreflightOperator,
    StartReplicationOperator,
    ValidateOperator,
)
from paymigrate.airflow.sensors import ReplicationSensor
from paymigrate.migration.lock import LockState

with DAG(
    dag_id="payment_migration",
    description="Replicate the payment database to the target and prove it is ready for cutover",
    doc_md=__doc__,
    **ON_DEMAND,
    render_template_as_native_obj=True,
    tags=["paymigrate", "migration"],
    params={
        "engine": engine_param(),
        "tables": table_list("Only these tables (schema.table); empty means every table"),
        "exclude": table_list("Tables (schema.table) left out"),
        "lag_threshold_seconds": lag_threshold_param(),
        "max_keys": Param(100, type="integer", minimum=1, maximum=100000,
                          description="Differing keys listed per table in the validation report"),
        "full_load_timeout_minutes": Param(1440, type="integer", minimum=1, maximum=10080,
                                           description="How long the full load may take"),
        "dry_run": Param(False, type="boolean", description="Run the checks only; start nothing"),
        "takeover": Param(False, type="boolean",
                          description="Take over a migration whose run died without failing cleanly"),
    },
) as dag:
    preflight = PreflightOperator(
        task_id="preflight", engine_name="{{ params.engine }}", tables="{{ params.tables }}",
        exclude="{{ params.exclude }}", dry_run="{{ params.dry_run }}", takeover="{{ params.takeover }}",
        retries=0)
    checkpoint_preparation = CheckpointOperator(task_id="checkpoint_preparation", phase="preparation",
                                                include=["preflight"])
    notify_start = SnsPublishOperator(
        task_id="notify_start", target_arn="{{ contract('notifications/migration-status-topic-arn') }}",
        subject="Migration started",
        message="Migration {{ ti.xcom_pull(task_ids='preflight')['migration_id'] }} "
                "({{ ti.xcom_pull(task_ids='preflight')['engine'] }}) started by run {{ run_id }}.")
    start_replication = StartReplicationOperator(task_id="start_replication")
    wait_replication_running = ReplicationSensor(
        task_id="wait_replication_running", condition="full_load_done", poke_interval=5,
        timeout_minutes="{{ params.full_load_timeout_minutes }}", retries=0)
    checkpoint_replication = CheckpointOperator(task_id="checkpoint_replication", phase="replication",
                                                include=["start_replication", "wait_replication_running"])
    validate = ValidateOperator(task_id="validate", max_keys="{{ params.max_keys }}")

    decide = DecideOperator(task_id="decide", lag_threshold="{{ params.lag_threshold_seconds }}",
                            retries=0)
    checkpoint_validation = CheckpointOperator(task_id="checkpoint_validation", phase="validation",
                                               include=["validate", "decide"], lock_state=LockState.CUTOVER_READY)
    notify_cutover_ready = SnsPublishOperator(
        task_id="notify_cutover_ready",
        target_arn="{{ contract('notifications/migration-status-topic-arn') }}",
        subject="Cutover ready",
        message="Migration {{ ti.xcom_pull(task_ids='preflight')['migration_id'] }}: every table "
                "matches and replication is streaming. Ready for payment_cutover.")
    notify_failure = NotifyFailureOperator(task_id="notify_failure", what="payment_migration",
                                           trigger_rule=TriggerRule.ONE_FAILED, retries=1,
                                           on_failure_callback=None)

    steps = [preflight, checkpoint_preparation, notify_start, start_replication, wait_replication_running,
             checkpoint_replication, validate, decide, checkpoint_validation, notify_cutover_ready]
    chain(*steps)
    steps >> notify_failure
