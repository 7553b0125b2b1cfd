"""
### payment_validation: keep proving that source and target hold the same data

Every minute the DAG wakes; **check_due** lets a run through only when the validation flag is on
and `validation-interval-minutes` (both read from Parameter Store at run time) have passed since
the last validation. Then:

1. **list_tables**: the tables to compare, from the catalog
2. **validate_table**: one mapped task per table, so a large database validates in parallel;
   each difference is re-checked after the target caught up, so lag is never reported as loss
3. **publish_metrics**: rows checked, mismatches and seconds to CloudWatch `Migration/DataValidation`
4. **alert_on_discrepancy**: the validation-alerts topic, with the differing keys (never values)
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, chain, task

from paymigrate.provider.defaults import DEFAULT_ARGS, MACROS, START_DATE, table_list

with DAG(
    dag_id="payment_validation",
    description="Scheduled validation of source against target",
    doc_md=__doc__,
    schedule="* * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    user_defined_macros=MACROS,
    tags=["paymigrate", "validation"],
    params={
        "tables": table_list("Only these tables (schema.table); empty means every table"),
        "max_keys": Param(100, type="integer", minimum=1, maximum=100000,
                          description="Differing keys listed per table"),
        "force": Param(False, type="boolean", description="Validate now, even if not due"),
    },
) as dag:

    @task.short_circuit(task_id="check_due")
    def check_due(params: dict, run_id: str) -> bool:
        from paymigrate.provider.validation import due

        return due(force=params["force"], run_id=run_id)

    @task(task_id="list_tables")
    def list_tables(params: dict) -> list[str]:
        from paymigrate.provider.validation import tables_to_validate

        return tables_to_validate(params["tables"])

    @task(task_id="validate_table", max_active_tis_per_dagrun=4, retries=1)
    def validate_table(table: str, params: dict) -> dict:
        from paymigrate.provider.validation import validate_one

        return validate_one(table, max_keys=params["max_keys"])

    @task(task_id="publish_metrics")
    def publish_metrics(results: list[dict], run_id: str) -> dict:
        from paymigrate.provider.validation import publish

        return publish(list(results), run_id=run_id)

    @task(task_id="alert_on_discrepancy")
    def alert_on_discrepancy(summary: dict) -> str:
        from paymigrate.provider.validation import alert

        return alert(summary)

    tables = list_tables()
    results = validate_table.expand(table=tables)
    summary = publish_metrics(results)
    chain(check_due(), tables)
    alert_on_discrepancy(summary)
