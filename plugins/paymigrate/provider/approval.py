"""The cutover's approval on live figures: Airflow's human-in-the-loop ``ApprovalOperator``.

It runs after the lag gate and the read canary, so the approver sees what the switch will meet:
the lag measured now, the last validation and its age, the canary's figures and the write pause
the rehearsal drills took (:mod:`paymigrate.cutover.approval`). The answer comes from the UI's Required
Actions page or the REST API (``PATCH .../taskInstances/{task}/-1/hitlDetails``).
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.exceptions import HITLTriggerEventError
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from paymigrate.aws.checkpoints import LAST_VALIDATION as SCHEDULED_VALIDATION
from paymigrate.cutover import approval
from paymigrate.provider.hooks import AWS_CONN_ID, MigrationHook
from paymigrate.provider.operators import summary


class CutoverApprovalOperator(ApprovalOperator):
    """Ask for the approval with the figures in its body; on "Reject" put reads back on the
    source and the lock back to ``cutover-ready`` (the state before this run), and skip every
    later task: the source stays the writer and nothing else was changed.

    Give it a retry: Airflow 3.3.2 may fail a try whose answer came within moments of the
    question (apache/airflow#72716); the retry asks again with fresh figures. A timeout or a
    broken answer fails at once.
    """

    template_fields = (*ApprovalOperator.template_fields, "max_write_pause_ms")

    def __init__(self, *, plan_task: str, canary_task: str, max_write_pause_ms: Any = None,
                 aws_conn_id: str = AWS_CONN_ID, **kwargs: Any):
        kwargs.setdefault("subject", "Approve the cutover: move the writer to the target")
        super().__init__(ignore_downstream_trigger_rules=True, **kwargs)
        self.plan_task, self.canary_task = plan_task, canary_task
        self.max_write_pause_ms = max_write_pause_ms
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> Any:
        hook = MigrationHook(aws_conn_id=self.aws_conn_id)
        plan = context["ti"].xcom_pull(task_ids=self.plan_task)
        store = hook.checkpoints()
        engine = hook.engine(name=plan["engine"], tables=plan.get("tables"), exclude=plan.get("exclude"))
        found = approval.figures(
            lag=summary(engine.lag()),
            migration_validation=store.load(migration_id=plan["migration_id"], phase="validation"),
            scheduled_validation=store.get_doc(SCHEDULED_VALIDATION),
            canary=context["ti"].xcom_pull(task_ids=self.canary_task),
            drills=store.get_doc(approval.DRILLS),
            budget_ms=float(self.max_write_pause_ms) if self.max_write_pause_ms not in (None, "") else None)
        self.body = approval.body(found)
        self.log.info("approval asked with:\n%s", self.body)
        context["ti"].xcom_push(key="figures", value=found.to_dict())
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" in event:  # a timeout or a broken response: asking again would not answer it
            try:
                return super().execute_complete(context=context, event=event)
            except HITLTriggerEventError as exc:  # HITLTimeoutError among them
                raise AirflowFailException(f"no usable answer to the approval: {exc}") from exc
        answer = approval.decision(event)
        answer["figures"] = context["ti"].xcom_pull(task_ids=self.task_id, key="figures")
        if answer["approved"]:
            super().execute_complete(context=context, event=event)
            self.log.info("cutover approved by %s at %s", answer["by"], answer["at"])
            return answer
        # The base class skips the later tasks by raising, so a return value would be lost:
        # undo the canary and the lock, and record the answer, first.
        hook = MigrationHook(aws_conn_id=self.aws_conn_id)
        hook.set("workflow/traffic-split-percentage", 0)
        store = hook.checkpoints()
        lock = store.lock()
        if lock and lock.run_id == context["run_id"] and lock.state == "cutting-over":
            store.set_state("cutover-ready")
        context["ti"].xcom_push(key="return_value", value=answer)
        self.log.warning("cutover rejected by %s at %s: reads are back on the source, the source stays "
                         "the writer, the migration is cutover-ready again", answer["by"], answer["at"])
        return super().execute_complete(context=context, event=event)
