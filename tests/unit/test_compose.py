"""docker-compose.yml, checked as far as a machine without Docker allows: it parses, has every
service of the design (Airflow on CeleryExecutor with Redis and two workers), runs the databases
with logical WAL, publishes on loopback only, pins every image, keeps passwords out, and sets
the same environment names as `paymigrate env`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from paymigrate.local.stack import LocalStack

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
AIRFLOW = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
           "airflow-worker-1", "airflow-worker-2")
PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+[\w.-]*$")  # a release tag, never latest or a bare major


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_service_of_the_design(services):
    assert {"source", "target", "router", "moto", "moto-config", "redis", "airflow-db",
            "airflow-init", *AIRFLOW} <= set(services)


def test_airflow_runs_celery_with_redis_and_two_workers(services):
    images = {services[name]["image"] for name in AIRFLOW}
    assert images == {"apache/airflow:3.3.2-python3.11"}
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
        assert ".:/opt/paymigrate:ro" in services[name]["volumes"]  # the project, mounted
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/paymigrate/dags"
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == env["PYTHONPATH"] == "/opt/paymigrate/plugins"
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    workers = [n for n, s in services.items() if s.get("command", [])[:3] == ["airflow", "celery", "worker"]]
    assert len(workers) == 2


def test_databases_replicate_logically_and_moto_executes_state_machines(services):
    for name in ("source", "target"):
        assert "wal_level=logical" in services[name]["command"]
    config = services["moto-config"]
    assert "http://moto:5000/moto-api/config" in config["command"]
    assert '"execute_state_machine": true' in " ".join(config["command"])
    assert services["moto"]["environment"]["MOTO_PORT"] == "5000"


def test_ports_on_loopback_images_pinned_no_literal_password(services):
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        assert PINNED.match(svc["image"]), f"{name}: image {svc['image']} is not pinned to a release"
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), f"{name}.{key} has a literal password"
            assert "password=" not in str(value), f"{name}.{key} carries a password in a DSN"


def test_airflow_sees_the_names_paymigrate_env_prints(services, tmp_path):
    stack = LocalStack(tmp_path, env="local")
    stack.state["components"] = {n: {"port": 1} for n in ("source", "target", "router", "moto")}
    names = set(stack.env_vars())
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert names <= set(env), f"{name} lacks {sorted(names - set(env))}"
        assert env["PAYMIGRATE_ENV"] == "local" and env["AWS_ENDPOINT_URL"] == "http://moto:5000"
