"""
### payment_migration: from an empty target to "cutover ready"

The runbook, step by step (task ids are the state names of the Step Functions migration state
machine, which drives the DMS task: it has the `dms` branch's states, not the `postgres-logical`
branch's):

1. **preflight**: every check before any side effect (feature flag, tables, engine preflight:
   keys, large objects, unlogged tables, extensions, an empty target), then take the migration
   lock. A second run while one is active is refused, naming it. `dry_run` stops here.
2. **checkpoint_preparation**, **notify_start**
3. **replication_engine**: the branch of the plan's engine; the other one is skipped.
   - `postgres-logical`: **start_replication**: schema, publication, the initial copy and
     subscription; never twice. With `replication/initial-copy` = `snapshot` (the default) this
     task copies the tables under the slot's snapshot and builds their keys: its log shows
     tables copied and rows/s. With `subscription` the servers copy and the next task waits for
     them. **wait_replication_running**: until running with the full load done (deferred: no
     worker held), then the deferred secondary indexes and constraints.
   - `dms`: **prepare_replication_task**: the target schema, the drain marker table, the slot the
     task reads, the task's table mappings from the scope (when they differ), and the start type
     (`start-replication`, `resume-processing`, or `reload-target` for a task that ran before
     and meets an empty target). **replication_start_needed**: on to the start, or past it when
     the task runs already (a rerun). **start_replication_task**: the amazon provider's
     `DmsStartTaskOperator`. **wait_full_load_done**: until the task runs with every table
     loaded (deferred).
4. **checkpoint_replication**: where the branches join.
5. **validate**: counts, checksums and exact keys; differences re-checked after catch-up.
6. **decide**: cutover ready only on a full match and a lag under the threshold; the target's
   materialized views are then filled from its own rows (a schema copy leaves them empty).
7. **checkpoint_validation**, **notify_cutover_ready**

Any failure: **notify_failure** alerts the error topic with a link and marks the migration failed;
trigger the DAG again once the cause is fixed and it resumes from its last checkpoint.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.dms import DmsStartTaskOperator
from airflow.providers.amazon.aws.operators.sns import SnsPublishOperator
from airflow.sdk import DAG, Param, TriggerRule, chain

from paymigrate.migration.lock import LockState
from paymigrate.provider.defaults import ON_DEMAND, engine_param, lag_threshold_param, table_list
from paymigrate.provider.operators import (
    CheckpointOperator,
    DecideOperator,
    EngineBranchOperator,
    NotifyFailureOperator,
    PreflightOperator,
    PrepareReplicationTaskOperator,
    ReplicationTaskStartBranchOperator,
    StartReplicationOperator,
    ValidateOperator,
)
from paymigrate.provider.sensors import ReplicationSensor

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
    replication_engine = EngineBranchOperator(
        task_id="replication_engine",
        branches={"postgres-logical": "start_replication", "dms": "prepare_replication_task"})
    start_replication = StartReplicationOperator(task_id="start_replication")
    wait_replication_running = ReplicationSensor(
        task_id="wait_replication_running", condition="full_load_done", poke_interval=5,
        timeout_minutes="{{ params.full_load_timeout_minutes }}", retries=0)
    prepare_replication_task = PrepareReplicationTaskOperator(task_id="prepare_replication_task")
    replication_start_needed = ReplicationTaskStartBranchOperator(
        task_id="replication_start_needed", prepare_task="prepare_replication_task",
        start_task="start_replication_task", running_task="wait_full_load_done")
    start_replication_task = DmsStartTaskOperator(
        task_id="start_replication_task",
        replication_task_arn="{{ ti.xcom_pull(task_ids='prepare_replication_task')['task_arn'] }}",
        start_replication_task_type="{{ ti.xcom_pull(task_ids='prepare_replication_task')['start_type'] }}",
        # Not retried: a start that reached DMS but whose answer was lost would be sent twice; a
        # rerun of the DAG prepares again and finds the task running.
        retries=0)
    # Our sensor, not the provider's: DmsTaskCompletedSensor waits for a task that stops, and a
    # full-load-and-cdc task never does; this one waits (deferred) for every table loaded.
    wait_full_load_done = ReplicationSensor(
        task_id="wait_full_load_done", condition="full_load_done", poke_interval=5,
        timeout_minutes="{{ params.full_load_timeout_minutes }}", retries=0,
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    checkpoint_replication = CheckpointOperator(
        task_id="checkpoint_replication", phase="replication",
        include=["start_replication", "wait_replication_running", "prepare_replication_task",
                 "wait_full_load_done"],
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
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

    chain(preflight, checkpoint_preparation, notify_start, replication_engine,
          [start_replication, prepare_replication_task])
    chain(start_replication, wait_replication_running, checkpoint_replication)
    chain(prepare_replication_task, replication_start_needed, start_replication_task,
          wait_full_load_done, checkpoint_replication)
    replication_start_needed >> wait_full_load_done  # the task runs already: nothing to start
    chain(checkpoint_replication, validate, decide, checkpoint_validation, notify_cutover_ready)
    [t for t in dag.tasks if t is not notify_failure] >> notify_failure
