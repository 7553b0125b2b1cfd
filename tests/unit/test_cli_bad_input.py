"""Bad input through the command line's own code path: exit 2 and one line on stderr naming the
value; and the same run confs refused by the DAGs' own Param validation (Airflow's)."""

from __future__ import annotations

import copy
import json

import pytest

from paymigrate_dev.cli import main

APPROVED = {"approved_by": "ops", "confirm_environment": "test"}

# (dag_id, conf, what the refusal names)
BAD_CONFS = [
    ("payment_cutover", {"approved_by": "x", "confirm_environment": "test"}, "approved_by='x'"),
    ("payment_cutover", {"approved_by": "ops"}, "confirm_environment"),
    ("payment_cutover", {"approved_by": "ops", "confirm_environment": "Prod; rm"}, "confirm_environment="),
    ("payment_cutover", {**APPROVED, "canary_steps": [10, 0]}, "canary_steps[1]=0"),
    ("payment_cutover", {**APPROVED, "canary_steps": 50}, "canary_steps=50"),
    ("payment_cutover", {**APPROVED, "max_write_pause_ms": "fast"}, "max_write_pause_ms='fast'"),
    ("payment_cutover", {**APPROVED, "max_write_pause_ms": 10}, "max_write_pause_ms=10"),
    ("payment_cutover", {**APPROVED, "drill_fail_at": "nowhere"}, "drill_fail_at='nowhere'"),
    ("payment_migration", {"engine": "mysql"}, "engine='mysql'"),
    ("payment_migration", {"tables": ["payments; DROP TABLE x"]}, "tables[0]='payments; DROP TABLE x'"),
    ("payment_migration", {"tables": ['public."unclosed']}, "tables[0]="),
    ("payment_migration", {"tables": "public.payments"}, "tables='public.payments'"),
    ("payment_migration", {"exclude": ["payments"]}, "exclude[0]='payments'"),
    ("payment_migration", {"max_keys": 0}, "max_keys=0"),
    ("payment_migration", {"lag_threshold_seconds": -1}, "lag_threshold_seconds=-1"),
    ("payment_migration", {"full_load_timeout_minutes": 10**9}, "full_load_timeout_minutes=1000000000"),
    ("payment_migration", {"dry_run": "yes"}, "dry_run='yes'"),
    ("payment_rollback", {"reason": "x"}, "reason='x'"),
    ("payment_rollback", {"reason": "drill", "drain_timeout_seconds": 0}, "drain_timeout_seconds=0"),
    ("payment_validation", {"max_keys": -5}, "max_keys=-5"),
    ("payment_step_functions", {"workflow": "deploy"}, "workflow='deploy'"),
]

# Refused by the CLI only: Airflow passes an unknown conf key through as a Param of its own.
CLI_ONLY_CONFS = [
    ("payment_migration", {"tabels": ["public.payments"]}, "tabels=['public.payments']"),
    ("payment_cutover", ["approved_by"], "conf=['approved_by']"),
]

BAD_ARGUMENTS = [
    (["seed", "--rows", "abc"], "--rows", "'abc'"),
    (["seed", "--rows", "-3", "--dsn", "host=h"], "--rows", "-3"),
    (["seed", "--rows", "5", "--dsn", "nonsense"], "--dsn", "'nonsense'"),
    (["seed", "--rows", "5", "--seed", "-1", "--dsn", "host=h"], "--seed", "-1"),
    (["validate", "--source", "host=h", "--target", "postgresql://u:hunter2@h/d?bogus=1"], "--target",
     "postgresql://u:***@h/d?bogus=1"),
    (["validate", "--source", "host=h nosuchoption=1", "--target", "host=h"], "--source", "nosuchoption"),
    (["validate", "--source", "host=h", "--target", "host=h", "--tables", 'public."open'], "--tables",
     'public."open'),
    (["validate", "--source", "host=h", "--target", "host=h", "--tables", "t; DROP TABLE t"], "--tables",
     "t; DROP TABLE t"),
    (["validate", "--source", "host=h", "--target", "host=h", "--max-keys", "-1"], "--max-keys", "-1"),
    (["workload", "start", "--tps", "0"], "--tps", "0.0"),
    (["workload", "start", "--clients", "1.5"], "--clients", "'1.5'"),
    (["workload", "start", "--duration", "nan"], "--duration", "'nan'"),
    (["workload", "start", "--count", "0"], "--count", "0"),
    (["workload", "start", "--dsn", "host=h port"], "--dsn", "host=h port"),
    (["workload", "report", "--against", "oops"], "--against", "'oops'"),
    (["up", "--rows", "0"], "--rows", "0"),
    (["demo", "--tps", "inf"], "--tps", "'inf'"),
    (["demo", "--clients", "0"], "--clients", "0"),
    (["run", "payment_migration", "--timeout", "0"], "--timeout", "0.0"),
    (["run", "payment_migration", "--conf", "{not json"], "--conf", "'{not json'"),
    (["run", "payment_migraton"], "DAG_ID", "'payment_migraton'"),
    (["workload", "explode"], "ACTION", "'explode'"),
] + [(["run", dag_id, "--conf", json.dumps(conf)], dag_id, named)
     for dag_id, conf, named in BAD_CONFS + CLI_ONLY_CONFS]


def _cli(argv, capsys) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as done:  # argparse's own refusals
        code = done.code
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(("argv", "named", "value"), BAD_ARGUMENTS,
                         ids=[" ".join(a[:2]) + f" {n}" for a, n, _ in BAD_ARGUMENTS])
def test_bad_input_exits_2_with_one_line_naming_it(argv, named, value, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PAYMIGRATE_HOME", str(tmp_path / "no-stack"))  # refused before any stack is needed
    for var in ("PAYMIGRATE_SOURCE_DSN", "PAYMIGRATE_TARGET_DSN", "PAYMIGRATE_APP_DSN"):
        monkeypatch.delenv(var, raising=False)
    code, err = _cli(argv, capsys)
    assert code == 2, err
    assert len(err) == 1, err
    assert named in err[0] and value in err[0], err[0]
    assert "hunter2" not in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "no-stack").exists()  # nothing created


@pytest.fixture(scope="module")
def dags():
    from paymigrate_dev.local.dagrun import load_dag

    return {d: load_dag(d) for d in {d for d, _, _ in BAD_CONFS}}


@pytest.mark.parametrize(("dag_id", "conf", "named"), BAD_CONFS,
                         ids=[f"{d} {n}" for d, _, n in BAD_CONFS])
def test_the_dags_own_param_validation_refuses_the_same_by_name(dags, dag_id, conf, named):
    from airflow.sdk.exceptions import ParamValidationError

    param = named.split("=")[0].split("[")[0]
    with pytest.raises(ParamValidationError, match=param):
        _validated(dags[dag_id], conf)


def test_a_table_that_needs_quoting_passes_the_params(dags):
    conf = {"tables": ['public."Weird Name"', 'public."MixedCase"', 'public."a.b"', "public.payments"],
            "exclude": ['"Sales"."Q1 ""draft"""']}
    assert _validated(dags["payment_migration"], conf)["tables"] == conf["tables"]


def _validated(dag, conf: dict) -> dict:
    """What Airflow does with a run's conf when it creates the run."""
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()
