"""``paymigrate run DAG_ID [--conf JSON]``: one DAG run to its end."""

from __future__ import annotations

import json
import logging
import os

from paymigrate.errors import BadInput
from paymigrate_dev.cli import bounded, command, emit


def register(sub) -> None:
    p = command(sub, "run", summary="run one DAG to its end and print its task states", description="""
Trigger one run of DAG_ID and wait for its end. When the local stack's Airflow is up (see
`paymigrate demo`) the run goes through its api-server, so it shows in the UI; otherwise it
runs in this process with Airflow's dag.test(). Prints each task's state and the run's
summary. Exit 0 when the run succeeded, 1 when it failed, 2 on error.""", environment="""\
  PAYMIGRATE_HOME   folder of the local stack (default: ./.local)""", example="""\
  $ paymigrate run payment_migration --conf '{"engine": "postgres-logical"}'
  task                        state      seconds
  preflight                   success        1.2
  checkpoint_preparation      success        0.3
  ...
  notify_cutover_ready        success        0.2
  notify_failure              skipped          -
  payment_migration run manual__2026-11-24T23:40:01 success in 41.3s (via api-server)""")
    p.add_argument("dag_id", metavar="DAG_ID",
                   help="payment_migration, payment_cutover, payment_rollback or payment_validation")
    p.add_argument("--conf", default="{}", help="the run's Params as a JSON object")
    p.add_argument("--timeout", type=bounded(float, low=1, high=7 * 86400), default=3600,
                   help="seconds to wait for the end")
    p.add_argument("--answer", choices=("Approve", "Reject"),
                   help="answer each human-in-the-loop task (payment_cutover's approve_cutover) with this, "
                        "through the REST API as the admin user; without it the run waits for someone to "
                        "answer in the UI")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from paymigrate_dev.local import airflow_services
    from paymigrate_dev.local.dagrun import check_run_conf, run_dag
    from paymigrate_dev.local.stack import LocalStack

    try:
        conf = json.loads(args.conf)
    except ValueError as exc:
        raise BadInput("--conf", args.conf, f"not JSON ({exc})") from None
    stack = LocalStack()
    # Airflow reads these when first imported; the stack's own home wins over an inherited one,
    # or the metadata DB migrated below would not be the one the run uses.
    os.environ.update(airflow_services.static_environment(stack.airflow_home))
    quiet = logging.getLogger("airflow")  # its import logs would come before the one error line
    level = quiet.level
    quiet.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        check_run_conf(args.dag_id, conf)
    finally:
        quiet.setLevel(level)
    _check_tables(stack, conf)
    result = run_dag(stack, args.dag_id, conf, timeout=args.timeout, answer=args.answer)
    if args.json:
        emit(args, result.to_dict())
    else:
        result.show()
    return 0 if result.ok else 1


def _check_tables(stack, conf: dict) -> None:
    """Tables named in the conf must exist on the source: refused here in one line rather than
    by the run's preflight task (which refuses them too, for runs triggered elsewhere)."""
    from paymigrate.errors import StackError
    from paymigrate.inputs import check_source_tables

    if not conf.get("tables") and not conf.get("exclude"):
        return
    try:
        source = stack.endpoint("source")
    except StackError:
        return  # no local stack: the run itself says so
    check_source_tables(source, tables=conf.get("tables") or [], exclude=conf.get("exclude") or [])
