"""A DMS replication task with its instance and endpoints, in whichever moto a client talks to."""

from __future__ import annotations

import json
from typing import Any


def replication_task(dms: Any, identifier: str, *, mappings: dict[str, Any],
                     settings: dict[str, Any] | None = None) -> str:
    """Create task ``identifier`` (full-load-and-cdc) on the instance ``ri`` and the endpoints
    ``source``/``target``, made on first use; return its ARN."""
    found = dms.describe_replication_instances()["ReplicationInstances"]
    instance = found[0]["ReplicationInstanceArn"] if found else dms.create_replication_instance(
        ReplicationInstanceIdentifier="ri", ReplicationInstanceClass="dms.t3.micro",
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    have = {e["EndpointIdentifier"]: e["EndpointArn"] for e in dms.describe_endpoints()["Endpoints"]}
    endpoints = [have.get(k) or dms.create_endpoint(
        EndpointIdentifier=k, EndpointType=k, EngineName="aurora-postgresql")["Endpoint"]["EndpointArn"]
        for k in ("source", "target")]
    extra = {"ReplicationTaskSettings": json.dumps(settings)} if settings is not None else {}
    return dms.create_replication_task(
        ReplicationTaskIdentifier=identifier, SourceEndpointArn=endpoints[0],
        TargetEndpointArn=endpoints[1], ReplicationInstanceArn=instance,
        MigrationType="full-load-and-cdc", TableMappings=json.dumps(mappings), **extra,
    )["ReplicationTask"]["ReplicationTaskArn"]
