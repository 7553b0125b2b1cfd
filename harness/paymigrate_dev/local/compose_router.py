"""One router of docker-compose.yml, set up before its PgBouncer starts: what a router host's
first boot does in AWS (``infra/router_host.py``), from environment variables instead of Secrets
Manager.

    python -m paymigrate_dev.local.compose_router --folder /etc/pgbouncer --owner 70 \
        --listen 172.30.40.10 --clients 172.30.40.0/24

writes PgBouncer's settings, its hba file (:mod:`paymigrate.routing.access`), its auth file, the
route agent's config and key, and the route file when there is none (the writer's route to the
source, the read-only route to the target), then undoes any route a switch left pending, as the
agent's ``recover`` does before PgBouncer starts. PgBouncer and the agent listen on the
router container's own address on the compose network, and admit clients from that network
only (docker-compose.yml fixes both), never every address. Passwords come from ``APP_DB_PASSWORD``,
``READER_DB_PASSWORD`` and ``ROUTER_ADMIN_PASSWORD``; the servers made their own verifiers, so
the auth file holds the passwords (0600, owned by PgBouncer's user), as on the hosts in AWS.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from pathlib import Path

from paymigrate.routing.access import READ_ONLY_DATABASE, hba_rules
from paymigrate_dev.local.pgbouncer import ADMIN_USER
from paymigrate_dev.local.stack import APP_USER, DATABASE, READ_ONLY_USER

PORT, AGENT_PORT = 5432, 6433
PASSWORDS = {APP_USER: "APP_DB_PASSWORD", READ_ONLY_USER: "READER_DB_PASSWORD",
             ADMIN_USER: "ROUTER_ADMIN_PASSWORD"}


def files(folder: Path, *, passwords: dict[str, str], source: str, target: str, listen: str,
          clients: str) -> dict[str, str]:
    """Every file of the router by name: PgBouncer and its agent on ``listen``, clients from the
    ``clients`` network."""
    return {
        "pgbouncer.ini": "\n".join([
            "[pgbouncer]",
            f"listen_addr = {listen}",
            f"listen_port = {PORT}",
            "unix_socket_dir =",
            "auth_type = hba",
            f"auth_hba_file = {folder / 'pg_hba.conf'}",
            f"auth_file = {folder / 'userlist.txt'}",
            f"admin_users = {ADMIN_USER}",
            "pool_mode = transaction",
            "max_client_conn = 400",
            "default_pool_size = 60",
            "query_wait_timeout = 120",
            "ignore_startup_parameters = extra_float_digits,options",
            "",
            f"%include {folder / 'databases.ini'}",
            ""]),
        "pg_hba.conf": hba_rules(reader=READ_ONLY_USER, clients=clients),
        "userlist.txt": "".join(f'"{user}" "{pw}"\n' for user, pw in passwords.items()),
        "router-admin.key": passwords[ADMIN_USER],
        "agent.json": json.dumps({
            "listen": listen, "port": AGENT_PORT, "routes_file": str(folder / "databases.ini"),
            "admin": {"host": "127.0.0.1", "port": PORT, "user": ADMIN_USER},
            "key_file": str(folder / "router-admin.key")}, indent=2) + "\n",
        # Only when missing: after a cutover it names the target, and a restart keeps that.
        "databases.ini": (f"[databases]\n{DATABASE} = host={source} port=5432 dbname={DATABASE}\n"
                          f"{READ_ONLY_DATABASE} = host={target} port=5432 dbname={DATABASE}\n"),
    }


def configure(folder: Path, *, passwords: dict[str, str], source: str, target: str,
              listen: str, clients: str, owner: int | None) -> list[str]:
    """Write the files (0600, ``owner``'s), then recover; return the databases put back."""
    from paymigrate.routing.agent import AgentConfig, recover

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files(folder, passwords=passwords, source=source, target=target,
                            listen=listen, clients=clients).items():
        path = folder / name
        if name == "databases.ini" and path.exists():
            continue
        tmp = path.with_name(name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if owner is not None:
            os.chown(tmp, owner, owner)
        os.replace(tmp, path)
    return recover(AgentConfig.load(folder / "agent.json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paymigrate-compose-router", description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--owner", type=int, help="uid (and gid) PgBouncer runs as")
    parser.add_argument("--source", default="source", help="host of the source database")
    parser.add_argument("--target", default="target", help="host of the target database")
    parser.add_argument("--listen", type=_address, required=True,
                        help="the router container's address on the compose network")
    parser.add_argument("--clients", type=_network, required=True,
                        help="the compose network, the only one admitted")
    args = parser.parse_args(argv)
    if ipaddress.ip_address(args.listen) not in ipaddress.ip_network(args.clients):
        print(f"compose router: --listen {args.listen} is not in --clients {args.clients}",
              file=sys.stderr)
        return 2
    missing = [var for var in PASSWORDS.values() if not os.environ.get(var)]
    if missing:
        print(f"compose router: set {', '.join(missing)}", file=sys.stderr)
        return 2
    passwords = {user: os.environ[var] for user, var in PASSWORDS.items()}
    undone = configure(args.folder, passwords=passwords, source=args.source, target=args.target,
                       listen=args.listen, clients=args.clients, owner=args.owner)
    print(json.dumps({"configured": str(args.folder), "undone": undone}))
    return 0


def _address(text: str) -> str:
    """One host address: never the unspecified one, which would listen on every interface."""
    address = ipaddress.ip_address(text)
    if address.is_unspecified:
        raise argparse.ArgumentTypeError(f"{text} listens on every address; give the router's own")
    return str(address)


def _network(text: str) -> str:
    network = ipaddress.ip_network(text)
    if network.prefixlen == 0:
        raise argparse.ArgumentTypeError(f"{text} admits every address; give the compose network")
    return str(network)


if __name__ == "__main__":
    sys.exit(main())
