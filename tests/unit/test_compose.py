"""docker-compose.yml parses, has every service of the design, and publishes on loopback only."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_compose_services_and_loopback_ports():
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"source", "target", "router", "moto", "airflow-db", "airflow-api-server",
            "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"} <= set(services)
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), f"{name}.{key} has a literal password"
