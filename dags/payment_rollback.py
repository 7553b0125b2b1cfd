"""
### payment_rollback: every write back on the source

The runbook (task ids are the state names of the Step Functions rollback state machine where
it has them; it stops another engine than dms in its `stop_replication`, through the
rollback-steps function):

1. **notify_rollback_start**, **save_rollback_state** (to the rollback bucket, before anything moves)
2. **switch_writes_to_source**: only after a cutover. PAUSE clients, freeze the target, wait until
   reverse replication has carried every write made on the target to the source, sync sequences,
   repoint PgBouncer to the source, unfreeze it, RESUME. Before a cutover: nothing to do.
3. **replication_engine**: the branch of the migration's engine; the other one is skipped.
   - `postgres-logical`: **stop_replication**, **wait_replication_stopped**
   - `dms`: **replication_stop_needed**: by the forward task's status, stop it, wait for a stop
     under way, or go on when it carries nothing (after a cutover it was stopped already).
     **stop_replication_task**: the amazon provider's `DmsStopTaskOperator`.
     **wait_replication_task_stopped**: its `DmsTaskCompletedSensor` (status `stopped`).
4. **route_traffic_to_source**: where the branches join. Route, canary share of reads (0) and the
   active-writer parameter
5. **unfreeze_source**: the source takes writes (idempotent)
6. **notify_rollback_complete**

Rerunnable: each step checks before it acts. Any failure: **notify_failure**.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.dms import DmsStopTaskOperator
from airflow.providers.amazon.aws.operators.sns import SnsPublishOperator
from airflow.providers.amazon.aws.sensors.dms import DmsTaskCompletedSensor
from airflow.sdk import DAG, Param, TriggerRule, chain

from paymigrate.provider.defaults import ON_DEMAND
from paymigrate.provider.operators import (
    EngineBranchOperator,
    NotifyFailureOperator,
    ReplicationTaskStopBranchOperator,
    RouteToSourceOperator,
    SaveRollbackStateOperator,
    StopReplicationOperator,
    SwitchBackOperator,
    UnfreezeSourceOperator,
)
from paymigrate.provider.sensors import ReplicationSensor

PLAN = "save_rollback_state"  # the task whose result (the migration's engine and tables) later steps read
STATUS_TOPIC = "{{ contract('notifications/migration-status-topic-arn') }}"
DMS_TASK = "{{ contract('replication/dms-task-arn') }}"  # the forward task, the engine's too

with DAG(
    dag_id="payment_rollback",
    description="Put every write back on the source database",
    doc_md=__doc__,
    **ON_DEMAND,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["paymigrate", "rollback"],
    params={
        "reason": Param(type="string", minLength=3, maxLength=500,
                        description="Why: recorded in the rollback state and the notifications"),
        "pause_timeout_seconds": Param(10, type="number", minimum=0.5, maximum=300,
                                       description="How long in-flight transactions may take at PAUSE"),
        "drain_timeout_seconds": Param(30, type="number", minimum=1, maximum=3600,
                                       description="How long reverse replication may take to drain"),
        "max_write_pause_ms": Param(10000, type="integer", minimum=50, maximum=600000,
                                    description="Write pause budget of the switch back: a step that "
                                                "would start past it aborts, writes stay on the target"),
    },
) as dag:
    notify_rollback_start = SnsPublishOperator(
        task_id="notify_rollback_start", target_arn=STATUS_TOPIC, subject="Rollback started",
        message="Rollback {{ run_id }} started: {{ params.reason }}")
    save_rollback_state = SaveRollbackStateOperator(task_id=PLAN)
    switch_writes_to_source = SwitchBackOperator(
        task_id="switch_writes_to_source", pause_timeout="{{ params.pause_timeout_seconds }}",
        drain_timeout="{{ params.drain_timeout_seconds }}",
        max_write_pause_ms="{{ params.max_write_pause_ms }}", retries=0, plan_task=PLAN)
    replication_engine = EngineBranchOperator(
        task_id="replication_engine", plan_task=PLAN,
        branches={"postgres-logical": "stop_replication", "dms": "replication_stop_needed"})
    stop_replication = StopReplicationOperator(task_id="stop_replication", plan_task=PLAN)
    wait_replication_stopped = ReplicationSensor(task_id="wait_replication_stopped", condition="stopped",
                                                 poke_interval=2, timeout=600, retries=0, plan_task=PLAN)
    replication_stop_needed = ReplicationTaskStopBranchOperator(
        task_id="replication_stop_needed", plan_task=PLAN, stop_task="stop_replication_task",
        wait_task="wait_replication_task_stopped", done_task="route_traffic_to_source")
    stop_replication_task = DmsStopTaskOperator(task_id="stop_replication_task",
                                                replication_task_arn=DMS_TASK)
    # The provider's DMS task sensors have no deferrable mode (only its serverless replication
    # triggers do): a stop takes a minute or two, in poke mode.
    wait_replication_task_stopped = DmsTaskCompletedSensor(
        task_id="wait_replication_task_stopped", replication_task_arn=DMS_TASK, poke_interval=2,
        timeout=600, retries=0, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    route_traffic_to_source = RouteToSourceOperator(
        task_id="route_traffic_to_source", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    unfreeze_source = UnfreezeSourceOperator(task_id="unfreeze_source")
    notify_rollback_complete = SnsPublishOperator(
        task_id="notify_rollback_complete", target_arn=STATUS_TOPIC, subject="Rollback complete",
        message="Rollback {{ run_id }} complete: the source takes every write. ({{ params.reason }})")
    notify_failure = NotifyFailureOperator(task_id="notify_failure", what="payment_rollback",
                                           trigger_rule=TriggerRule.ONE_FAILED, retries=1,
                                           on_failure_callback=None)

    chain(notify_rollback_start, save_rollback_state, switch_writes_to_source, replication_engine,
          [stop_replication, replication_stop_needed])
    chain(stop_replication, wait_replication_stopped, route_traffic_to_source)
    chain(replication_stop_needed, stop_replication_task, wait_replication_task_stopped,
          route_traffic_to_source)
    replication_stop_needed >> [wait_replication_task_stopped, route_traffic_to_source]
    chain(route_traffic_to_source, unfreeze_source, notify_rollback_complete)
    [t for t in dag.tasks if t is not notify_failure] >> notify_failure
