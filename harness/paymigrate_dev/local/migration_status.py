"""Where writes go and where the migration stands, for ``paymigrate status``.

Each router's answer comes from its admin console (``SHOW DATABASES``: what PgBouncer does now,
not what its route file says); a route file that says otherwise is shown too, as it is what the
next RELOAD applies. The phase and the lock come from the contract and the checkpoints bucket.
Each part that cannot be read says why instead of failing the whole status.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from paymigrate.aws import contract
from paymigrate.aws.checkpoints import CheckpointStore
from paymigrate.routing.pgbouncer import RouterAdmin, read_routes
from paymigrate_dev.local.stack import ROUTERS


@dataclass(frozen=True)
class RouterRoute:
    router: str
    database: str
    host: str
    port: int
    server: str  # "source", "target" or "other"
    file_says: str | None = None  # the route file's host:port when it differs from the live route


@dataclass
class MigrationStatus:
    routes: list[RouterRoute] = field(default_factory=list)
    routes_error: str = ""
    phase: str | None = None  # the contract's workflow/mode
    active_writer: str | None = None
    read_share_to_target: int | None = None
    lock: dict[str, Any] | None = None  # migration id, run, DAG, state, updated; None: no migration
    migration_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = []
        if self.routes_error:
            out.append(f"writes     unknown: {self.routes_error}")
        for r in self.routes:
            moved = f" (route file says {r.file_says}: applied at the next RELOAD)" if r.file_says else ""
            out.append(f"writes     {r.router} database {r.database} -> {r.server} ({r.host}:{r.port}){moved}")
        if self.migration_error:
            out.append(f"migration  unknown: {self.migration_error}")
            return out
        out.append(f"migration  phase {self.phase}, active writer {self.active_writer}, "
                   f"{self.read_share_to_target}% of reads to the target")
        if self.lock is None:
            out.append("lock       none (no migration started)")
        else:
            lk = self.lock
            out.append(f"lock       {lk['state']} (migration {lk['migration_id']}, {lk['dag_id']} run "
                       f"{lk['run_id']}, since {lk['updated']})")
        return out


LOOPBACK = ("127.0.0.1", "localhost")


def _server(host: str, port: int, ports: dict[str, int]) -> str:
    """Which local server a route points at (every local server listens on loopback)."""
    return next((name for name, p in ports.items() if p == port and host in LOOPBACK), "other")


def migration_status(stack: Any) -> MigrationStatus:
    """Read the router and the migration's state; call it on a stack whose router and moto run."""
    out = MigrationStatus()
    try:
        servers = {side: stack.port(side) for side in ("source", "target")}
        for router in ROUTERS:
            live = RouterAdmin(stack.endpoint(f"{router}-admin")).databases()
            in_file = read_routes(stack.router(router).databases_file)
            for name, row in sorted(live.items()):
                if name == "pgbouncer":  # the admin console itself
                    continue
                host, port = row["host"], int(row["port"])
                file_route = in_file.get(name)
                differs = file_route is not None and (file_route.host, file_route.port) != (host, port)
                out.routes.append(RouterRoute(router, name, host, port, _server(host, port, servers),
                                              f"{file_route.host}:{file_route.port}"
                                              if file_route is not None and differs else None))
    except Exception as exc:  # noqa: BLE001 - a router that is down is a status, not a crash
        out.routes_error = f"router not readable ({type(exc).__name__}: {str(exc).strip()[:200]})"
    try:
        cfg = contract.read(stack.client("ssm"), stack.env)
        out.phase, out.active_writer = cfg["workflow/mode"], cfg["database/active-writer"]
        out.read_share_to_target = cfg["workflow/traffic-split-percentage"]
        store = CheckpointStore(s3=stack.client("s3"), bucket=cfg["storage/checkpoints-bucket"], env=stack.env)
        lock = store.lock()
        out.lock = asdict(lock) if lock else None
    except Exception as exc:  # noqa: BLE001 - moto down or not bootstrapped: say so
        out.migration_error = f"contract or checkpoints not readable ({type(exc).__name__}: " \
                              f"{str(exc).strip()[:200]})"
    return out
