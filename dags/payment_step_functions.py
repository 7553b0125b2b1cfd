"""
### payment_step_functions: run the AWS state machine instead of the Airflow DAG

The migration and rollback workflows also exist as Step Functions state machines (deployed by
`infra/`, with the same state names as the task ids of `payment_migration` and
`payment_rollback`). This DAG starts one of them and waits for its end, so a team that prefers
Step Functions still sees the run, its result and its failure alert in Airflow.

1. **start_state_machine**: the state machine the contract names, a unique execution name
2. **wait_state_machine**: until SUCCEEDED; FAILED, TIMED_OUT or ABORTED fail the task
"""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.step_function import StepFunctionStartExecutionOperator
from airflow.providers.amazon.aws.sensors.step_function import StepFunctionExecutionSensor
from airflow.sdk import DAG, Param, chain

from paymigrate.provider.defaults import ON_DEMAND

with DAG(
    dag_id="payment_step_functions",
    description="Run the migration or rollback state machine on AWS Step Functions",
    doc_md=__doc__,
    **ON_DEMAND,
    max_active_runs=1,
    tags=["paymigrate", "step-functions"],
    params={
        "workflow": Param("migration", type="string", enum=["migration", "rollback"],
                          description="Which state machine to run"),
        "timeout_minutes": Param(1440, type="integer", minimum=1, maximum=10080,
                                 description="How long the execution may take"),
    },
) as dag:
    start_state_machine = StepFunctionStartExecutionOperator(
        task_id="start_state_machine",
        state_machine_arn="{{ contract('workflows/' ~ params.workflow ~ '-state-machine-arn') }}",
        # Execution names are unique per state machine and allow [A-Za-z0-9_-] only.
        name="{{ params.workflow }}-{{ run_id | replace(':', '') | replace('+', '') | replace('.', '') "
             "| replace('T', '-') | truncate(60, True, '') }}",
        state_machine_input={"requested_by": "airflow", "run_id": "{{ run_id }}"})
    wait_state_machine = StepFunctionExecutionSensor(
        task_id="wait_state_machine", execution_arn="{{ ti.xcom_pull(task_ids='start_state_machine') }}",
        poke_interval=5, timeout=1440 * 60)

    chain(start_state_machine, wait_state_machine)
