"""``paymigrate run DAG_ID [--conf JSON]``: one DAG run to its end."""

from __future__ import annotations

import json

from paymigrate.cli import command, emit
from paymigrate.errors import PaymigrateError


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
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the end")
    p.add_argument("--answer", choices=("Approve", "Reject"),
                   help="answer each human-in-the-loop task (payment_cutover's approve_cutover) with this, "
                        "through the REST API as the admin user; without it the run waits for someone to "
                        "answer in the UI")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from paymigrate.local.dagrun import run_dag
    from paymigrate.local.stack import LocalStack

    try:
        conf = json.loads(args.conf)
    except ValueError as exc:
        raise PaymigrateError(f"--conf is not JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise PaymigrateError(f"--conf must be a JSON object, not {type(conf).__name__}")
    result = run_dag(LocalStack(), args.dag_id, conf, timeout=args.timeout, answer=args.answer)
    if args.json:
        emit(args, result.to_dict())
    else:
        print_result(result)
    return 0 if result.ok else 1


def print_result(result, file=None) -> None:
    print(f"{'task':<28} {'state':<16} seconds", file=file)
    for t in result.tasks:
        name = t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else "")
        secs = f"{t['seconds']:.1f}" if t["seconds"] is not None else "-"
        print(f"{name:<28} {t['state']:<16} {secs:>7}", file=file)
    for a in result.answers:
        print(f"{a['task_id']}: {a['chosen'][0]} by {a['by']} at {a['at']}", file=file)
    print(f"{result.dag_id} run {result.run_id} {result.state} in {result.seconds:.1f}s (via {result.via})",
          file=file)
