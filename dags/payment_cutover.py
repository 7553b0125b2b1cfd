"""
### payment_cutover: move the writer from the source to the target

Trigger it with your name in `approved_by` and this environment's name in
`confirm_environment`: that form says who may start the run. The cutover itself is approved on
live figures by `approve_cutover`, after the lag gate and the canary.

1. **preflight_cutover**: approved, cutover enabled, migration cutover-ready, replication streaming,
   materialized views refreshed on the target, and schema parity: every extension, view,
   materialized view (populated), function, index (valid), constraint (validated), trigger
   (enabled alike) and privilege the clients have on the source is on the target, or the
   cutover is refused naming each one
2. **lag_gate**: replication lag under the threshold (deferred while it is not)
3. **shift_read_traffic**: the read canary, step by step, with alarm and lag gates and the
   application's reads through the read-only route (error rate, p99, stale reads) held to the
   contract's limits
4. **approve_cutover**: a human-in-the-loop approval (Required Actions page, or the REST API)
   showing the lag now, the last validation and its age, the canary's figures and the write
   pause the rehearsal drills took. Reject: reads go back to the source, the migration is
   cutover-ready again, every later step is skipped; the source stays the writer.
5. **write_switch**: fence triggers installed and reverse replication prepared; then PgBouncer
   PAUSE, source fenced (no session but replication's can write there, whatever it sets), drain
   to the fence position, every table ready in the subscription, sequences synced, reverse slot
   made on the target, route to the target, RELOAD, RESUME. Only steps whose cost does not grow
   with the data run inside the pause, in one task, held to `max_write_pause_ms`: a step that
   finds the budget spent aborts, naming itself. Any failure before RESUME aborts back to the
   source: nothing is lost, forward replication goes on.
6. **attach_reverse**: the source subscribes to the reverse slot (it kept every target write)
7. **checkpoint_cutover**, **notify_cutover_complete**
8. **validate_new_writer**: full validation of the target against the source, lag-aware; a
   mismatch alerts the error topic with the keys and how to roll back

To go back: payment_rollback (it drains reverse replication first).
"""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.sns import SnsPublishOperator
from airflow.sdk import DAG, Param, TriggerRule, chain

from paymigrate.cutover.switch import SWITCH_STEPS
from paymigrate.migration.lock import LockState
from paymigrate.provider.approval import CutoverApprovalOperator
from paymigrate.provider.defaults import ON_DEMAND, lag_threshold_param
from paymigrate.provider.operators import (
    AttachReverseOperator,
    CheckpointOperator,
    CutoverPreflightOperator,
    NotifyFailureOperator,
    ShiftReadTrafficOperator,
    ValidateNewWriterOperator,
    WriteSwitchOperator,
)
from paymigrate.provider.sensors import ReplicationSensor

PLAN = "preflight_cutover"  # the task whose result the later steps read

with DAG(
    dag_id="payment_cutover",
    description="Switch the writer to the target with a sub-second write pause",
    doc_md=__doc__,
    **ON_DEMAND,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["paymigrate", "cutover"],
    params={
        "approved_by": Param(type="string", minLength=2, maxLength=100, pattern=r"^[^\x00-\x1f]+$",
                             description="Who approves this cutover (recorded with the run)"),
        "confirm_environment": Param(type="string", minLength=1, maxLength=20,
                                     pattern=r"^[a-z][a-z0-9-]{0,19}$",
                                     description="Type this environment's name to confirm"),
        "lag_threshold_seconds": lag_threshold_param(),
        "canary_steps": Param([10, 50, 100], type="array",
                              items={"type": "integer", "minimum": 1, "maximum": 100}, maxItems=10,
                              description="Shares of reads sent to the target, in order"),
        "canary_soak_seconds": Param(30, type="number", minimum=0, maximum=3600,
                                     description="How long each canary step runs before its gate"),
        "pause_timeout_seconds": Param(5, type="number", minimum=0.5, maximum=60,
                                       description="How long in-flight transactions may take at PAUSE"),
        "drain_timeout_seconds": Param(10, type="number", minimum=0.5, maximum=300,
                                       description="How long the drain may take inside the pause"),
        "max_write_pause_ms": Param(500, type="integer", minimum=50, maximum=60000,
                                    description="Write pause budget: a switch step that would start "
                                                "past it aborts back to the source"),
        "sequence_gap": Param(1000, type="integer", minimum=0, maximum=1000000000,
                              description="Added to every sequence on the target at the switch"),
        "drill_fail_at": Param(None, type=["null", "string"], enum=[None, *SWITCH_STEPS],
                               description="Game-day drill: fail the switch at this step to rehearse "
                                           "the abort (writes go back to the source)"),
    },
) as dag:
    preflight_cutover = CutoverPreflightOperator(
        task_id=PLAN, approved_by="{{ params.approved_by }}",
        confirm_environment="{{ params.confirm_environment }}", retries=0)
    lag_gate = ReplicationSensor(task_id="lag_gate", condition="lag_below",
                                 lag_threshold="{{ params.lag_threshold_seconds }}",
                                 poke_interval=2, timeout=1800, retries=0, plan_task=PLAN)
    shift_read_traffic = ShiftReadTrafficOperator(
        task_id="shift_read_traffic", steps="{{ params.canary_steps }}",
        soak_seconds="{{ params.canary_soak_seconds }}", lag_threshold="{{ params.lag_threshold_seconds }}",
        retries=0, plan_task=PLAN)
    approve_cutover = CutoverApprovalOperator(
        task_id="approve_cutover", plan_task=PLAN, canary_task="shift_read_traffic",
        max_write_pause_ms="{{ params.max_write_pause_ms }}", retries=1)
    write_switch = WriteSwitchOperator(
        task_id="write_switch", pause_timeout="{{ params.pause_timeout_seconds }}",
        drain_timeout="{{ params.drain_timeout_seconds }}", sequence_gap="{{ params.sequence_gap }}",
        max_write_pause_ms="{{ params.max_write_pause_ms }}",
        drill_fail_at="{{ params.drill_fail_at }}", retries=0, plan_task=PLAN)
    attach_reverse = AttachReverseOperator(task_id="attach_reverse", retries=3, plan_task=PLAN)
    checkpoint_cutover = CheckpointOperator(task_id="checkpoint_cutover", phase="cutover",
                                            include=["preflight_cutover", "shift_read_traffic", "approve_cutover",
                                                     "write_switch",
                                                     "attach_reverse"],
                                            lock_state=LockState.CUT_OVER, plan_task=PLAN)
    notify_cutover_complete = SnsPublishOperator(
        task_id="notify_cutover_complete",
        target_arn="{{ contract('notifications/migration-status-topic-arn') }}",
        subject="Cutover complete",
        message="The target is the writer. Write pause "
                "{{ '%.0f' % (ti.xcom_pull(task_ids='write_switch')['write_pause_seconds'] * 1000) }} ms. "
                "Started by {{ params.approved_by }}, approved by "
                "{{ ti.xcom_pull(task_ids='approve_cutover')['by'] }}. Reverse replication runs for fallback; the "
                "validation of the new writer against the old one starts now.")
    validate_new_writer = ValidateNewWriterOperator(task_id="validate_new_writer", retries=0, plan_task=PLAN)
    notify_failure = NotifyFailureOperator(task_id="notify_failure", what="payment_cutover",
                                           trigger_rule=TriggerRule.ONE_FAILED, retries=1,
                                           on_failure_callback=None)

    steps = [preflight_cutover, lag_gate, shift_read_traffic, approve_cutover, write_switch, attach_reverse,
             checkpoint_cutover, notify_cutover_complete, validate_new_writer]
    chain(*steps)
    steps >> notify_failure
