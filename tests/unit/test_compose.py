"""docker-compose.yml, checked as far as a machine without Docker allows: it parses, has every
service of the design (Airflow on CeleryExecutor with Redis and two workers, two routers each
with its route agent), runs the databases with logical WAL, publishes on loopback only, pins
every image, keeps passwords out, and sets the same environment names as `paymigrate env`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from paymigrate.routing.access import hba_rules
from paymigrate.routing.agent import AgentConfig
from paymigrate.routing.pgbouncer import read_routes
from paymigrate_dev.local import compose_router
from paymigrate_dev.local.stack import ROUTERS, LocalStack

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
AIRFLOW = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
           "airflow-worker-1", "airflow-worker-2")
PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+[\w.-]*$")  # a release tag, never latest or a bare major


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_service_of_the_design(services):
    assert {"source", "target", "moto", "moto-config", "redis", "airflow-db", "airflow-init", *AIRFLOW,
            *ROUTERS, *(f"{r}-agent" for r in ROUTERS), *(f"{r}-config" for r in ROUTERS)} <= set(services)


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


def _module_argv(command: list[str], module: str) -> list[str]:
    """The arguments a service's ``sh -c`` command gives ``python -m module``."""
    [script] = [c for c in command if f"python -m {module}" in c]
    return shlex.split(script.split(f"python -m {module}", 1)[1])


def test_every_python_module_a_service_runs_is_on_its_pythonpath(services):
    """The project is mounted at /opt/paymigrate: a ``python -m`` module is found in one of the
    service's PYTHONPATH folders, read here in the repository (the runtime in plugins/, the dev
    harness in harness/, which only the routers' config services need)."""
    run = {}
    for name, service in services.items():
        for module in re.findall(r"python -m ([\w.]+)", " ".join(service.get("command") or [])):
            folders = (service.get("environment") or {}).get("PYTHONPATH", "").split(":")
            run[name] = [f.removeprefix("/opt/paymigrate/") for f in folders]
            path = module.replace(".", "/") + ".py"
            assert any((COMPOSE.parent / f / path).is_file() for f in run[name]), (
                f"{name}: python -m {module} is not under {folders}")
    assert run["router-config"] == ["plugins", "harness"] and run["router-agent"] == ["plugins"]


@pytest.mark.parametrize("router", ROUTERS)
def test_each_router_has_its_route_agent_in_its_network_and_folder(services, router):
    pgbouncer, agent, config = services[router], services[f"{router}-agent"], services[f"{router}-config"]
    [folder] = [v for v in pgbouncer["volumes"] if v.endswith(":/etc/pgbouncer")]
    assert folder in agent["volumes"] and folder in config["volumes"]
    assert folder.split(":")[0] in yaml.safe_load(COMPOSE.read_text())["volumes"]  # a named volume
    assert agent["network_mode"] == f"service:{router}"  # the console on loopback, as in AWS
    assert "ports" not in agent  # reached from the compose network only, at <router>:6433
    assert _module_argv(agent["command"], "paymigrate.routing.agent") == [
        "serve", "--config", "/etc/pgbouncer/agent.json"]
    assert pgbouncer["image"].startswith("edoburu/pgbouncer:v1.18.")
    assert pgbouncer["depends_on"][f"{router}-config"]["condition"] == "service_completed_successfully"
    assert {"source", "target"} <= set(pgbouncer["depends_on"])
    assert "environment" not in pgbouncer  # the image generates no config over the one written


def test_the_routers_publish_different_loopback_ports(services):
    ports = [p for r in ROUTERS for p in services[r]["ports"]]
    assert len({p.rsplit(":", 2)[1] for p in ports}) == len(ROUTERS) == len(ports)


def test_a_routers_config_service_writes_what_its_pgbouncer_and_agent_read(services, tmp_path, monkeypatch):
    """The config service's own command, run here on a folder of the test's: the routes, the
    read-only route's access rules, the agent's config as the agent loads it."""
    config = services["router-b-config"]
    for var, value in config["environment"].items():
        if var.endswith("_PASSWORD"):
            assert value == f"${{{var}:?set {var}}}"
            monkeypatch.setenv(var, f"{var.lower()}-value")
    argv = _module_argv(config["command"], "paymigrate_dev.local.compose_router")
    folder = Path(argv[argv.index("--folder") + 1])
    assert folder == Path("/etc/pgbouncer") and argv[argv.index("--owner") + 1] == "70"
    argv[argv.index("--folder") + 1], argv[argv.index("--owner"):argv.index("--owner") + 2] = str(tmp_path), []
    assert compose_router.main(argv) == 0
    routes = read_routes(tmp_path / "databases.ini")
    assert {db: (r.host, r.port, r.dbname) for db, r in routes.items()} == {
        "payments": ("source", 5432, "payments"), "payments_ro": ("target", 5432, "payments")}
    assert (tmp_path / "pg_hba.conf").read_text() == hba_rules(reader="payments_reader",
                                                                clients="172.30.40.0/24")
    ini = (tmp_path / "pgbouncer.ini").read_text()
    assert "listen_addr = 172.30.40.11\n" in ini and "0.0.0.0" not in ini
    assert f"%include {tmp_path / 'databases.ini'}" in ini and "auth_type = hba" in ini
    assert "pool_mode = transaction" in ini
    agent = AgentConfig.load(tmp_path / "agent.json")
    assert agent.routes_file == tmp_path / "databases.ini" and agent.key == b"router_admin_password-value"
    assert (agent.admin.host, agent.admin.port) == ("127.0.0.1", 5432)
    assert agent.listen == "172.30.40.11"
    for name in ("pgbouncer.ini", "pg_hba.conf", "userlist.txt", "databases.ini", "agent.json",
                 "router-admin.key"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    # Run again (a restart): the route file the agent owns is kept as it is.
    (tmp_path / "databases.ini").write_text("[databases]\npayments = host=target port=5432 dbname=payments\n")
    assert compose_router.main(argv) == 0
    assert read_routes(tmp_path / "databases.ini")["payments"].host == "target"


@pytest.mark.parametrize("router", ROUTERS)
def test_each_router_listens_on_its_own_address_and_admits_the_compose_network_only(services, router):
    [subnet] = [c["subnet"] for c in yaml.safe_load(COMPOSE.read_text())["networks"]["default"]["ipam"]["config"]]
    argv = _module_argv(services[f"{router}-config"]["command"], "paymigrate_dev.local.compose_router")
    assert argv[argv.index("--clients") + 1] == subnet
    assert argv[argv.index("--listen") + 1] == services[router]["networks"]["default"]["ipv4_address"]


@pytest.mark.parametrize("listen, clients, why", [
    ("0.0.0.0", "172.30.40.0/24", "listens on every address"),
    ("172.30.40.10", "0.0.0.0/0", "admits every address"),
    ("10.0.0.1", "172.30.40.0/24", "is not in --clients")])
def test_a_router_never_listens_everywhere(monkeypatch, tmp_path, capsys, listen, clients, why):
    for var in compose_router.PASSWORDS.values():
        monkeypatch.setenv(var, "x")
    try:  # argparse refuses a bad address itself, exiting 2
        code = compose_router.main(["--folder", str(tmp_path), "--listen", listen, "--clients", clients])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2 and why in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_a_routers_config_service_refuses_to_run_without_its_passwords(monkeypatch, tmp_path, capsys):
    for var in compose_router.PASSWORDS.values():
        monkeypatch.delenv(var, raising=False)
    assert compose_router.main(["--folder", str(tmp_path), "--listen", "172.30.40.10",
                                "--clients", "172.30.40.0/24"]) == 2
    assert "READER_DB_PASSWORD" in capsys.readouterr().err and not list(tmp_path.iterdir())
