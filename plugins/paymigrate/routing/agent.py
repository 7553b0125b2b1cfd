"""The route agent: runs beside one PgBouncer, owns its ``[databases]`` file, moves a route only
when the switch tells it to.

    python -m paymigrate.routing.agent serve   --config agent.json
    python -m paymigrate.routing.agent recover --config agent.json   # before PgBouncer starts

``agent.json``: ``{"listen": "127.0.0.1", "port": 6433, "routes_file": ".../databases.ini",
"admin": {"host": "127.0.0.1", "port": 6432, "user": "pgbouncer_admin"}, "key_file": "..."}``;
the key file (0600) holds the router-admin password, which both signs the switch's calls and
logs the agent into its own PgBouncer's console.

The rules (:func:`decide`), which are what makes a RELOAD by anyone else harmless:

* a route moves only on a signed call carrying a fence generation no older than the newest the
  agent obeyed (a stale switch, say a retried task of an earlier run, is refused);
* an existing route moves only while this PgBouncer holds that database's clients (``PAUSE``),
  or while PgBouncer is down (nothing is served; it reads the file when it starts);
* a moved route is *pending* until the switch confirms it after ``RESUME``. Undoing a pending
  route is always allowed, and :func:`recover` undoes it before PgBouncer starts: a host that
  reboots mid-switch comes back on the old writer, which the switch's fence keeps safe either way.

The agent is also the switch's only way to its PgBouncer's console, which listens on loopback:
``PAUSE``, ``RESUME`` and where PgBouncer routes a database now. A ``PAUSE`` carries a *hold*,
longer than the switch's whole write-pause budget: a switch that dies inside its pause (its
worker killed) would otherwise leave every client waiting. When the hold runs out and no route
moved since the ``PAUSE``, the agent resumes its clients on the route they had, which is what an
aborted switch does. If a route did move, it stays paused for an operator: resuming there could
send writes to a writer the dead switch never finished handing over.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from paymigrate.db import Endpoint
from paymigrate.routing.client import verify
from paymigrate.routing.pgbouncer import (
    Route,
    RouterAdmin,
    RouterError,
    read_routes,
    remove_route,
    write_route,
)

log = logging.getLogger(__name__)

_PATH = re.compile(r"^/routes(?:/(?P<db>[A-Za-z0-9_.\-]+)(?:/(?P<verb>confirm|pause|resume))?)?$")
MAX_HOLD = 3600.0  # seconds: no switch pauses its clients for longer


@dataclass(frozen=True)
class Decision:
    action: str  # write | unchanged | refuse
    reason: str = ""

    @property
    def refused(self) -> bool:
        return self.action == "refuse"


def decide(*, current: Route | None, wanted: Route, held: bool, pending_previous: Route | None,
           is_pending: bool, last_generation: int, generation: int) -> Decision:
    """Whether to write ``wanted``. ``held``: PgBouncer holds the database's clients (or is down).

    >>> r = lambda port: Route("payments", "10.0.0.1", port, "payments")
    >>> decide(current=r(1), wanted=r(2), held=False, pending_previous=None, is_pending=False,
    ...        last_generation=3, generation=4).reason
    'payments is not paused on this router: a route moves only while its clients are held'
    >>> decide(current=r(1), wanted=r(2), held=True, pending_previous=None, is_pending=False,
    ...        last_generation=5, generation=4).action
    'refuse'
    """
    if generation < last_generation:
        return Decision("refuse", f"generation {generation} is older than {last_generation}, the "
                                  "newest this agent obeyed: a stale switch")
    if current == wanted:
        return Decision("unchanged")
    undo = is_pending and wanted == pending_previous
    if current is not None and not held and not undo:
        return Decision("refuse", f"{wanted.database} is not paused on this router: a route moves "
                                  "only while its clients are held")
    return Decision("write")


@dataclass
class AgentState:
    """Kept in ``<routes file>.agent.json``: the newest generation obeyed and each pending move's
    previous route (None for a database that had none)."""

    generation: int = 0
    pending: dict[str, str | None] = field(default_factory=dict)  # db -> "host port dbname"

    @classmethod
    def load(cls, path: Path) -> AgentState:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        return cls(int(data.get("generation", 0)), dict(data.get("pending", {})))

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(asdict(self), sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def previous(self, database: str) -> Route | None:
        text = self.pending.get(database)
        if text is None:
            return None
        host, port, dbname = text.split()
        return Route(database, host, int(port), dbname)


def _text(route: Route | None) -> str | None:
    return None if route is None else f"{route.host} {route.port} {route.dbname}"


@dataclass(frozen=True)
class AgentConfig:
    listen: str
    port: int
    routes_file: Path
    admin: Endpoint
    key: bytes

    @classmethod
    def load(cls, path: Path | str) -> AgentConfig:
        data = json.loads(Path(path).read_text())
        key = Path(data["key_file"]).read_text().strip()
        admin = data["admin"]
        return cls(listen=data.get("listen", "127.0.0.1"), port=int(data["port"]),
                   routes_file=Path(data["routes_file"]), key=key.encode(),
                   admin=Endpoint(admin["host"], int(admin["port"]), "pgbouncer", admin["user"], key,
                                  application_name="paymigrate-route-agent"))

    @property
    def state_file(self) -> Path:
        return self.routes_file.with_name(self.routes_file.name + ".agent.json")


class Agent:
    """The agent's work, apart from HTTP: one change at a time."""

    def __init__(self, config: AgentConfig):
        self.config = config
        self.console = RouterAdmin(config.admin)
        # One console connection for the agent's life (reopened after an error): a route change
        # runs inside the switch's write pause, and each new connection is a SCRAM login more.
        self._holding = self.console.held()
        self._holding.__enter__()
        self._lock = threading.Lock()
        # PAUSE waits for in-flight transactions: on a connection of its own, so that the
        # route checks above never queue behind it.
        self.switch_console = RouterAdmin(config.admin)
        self._switch_holding = self.switch_console.held()
        self._switch_holding.__enter__()
        self._switch_lock = threading.Lock()
        self._holds: dict[str, threading.Timer] = {}  # database -> its PAUSE's hold
        self._moved: set[str] = set()  # databases whose route moved since their PAUSE

    def state(self) -> dict[str, Any]:
        st = AgentState.load(self.config.state_file)
        routes = read_routes(self.config.routes_file)
        return {"generation": st.generation, "pending": sorted(st.pending),
                "routes": {db: f"{r.host}:{r.port}/{r.dbname}" for db, r in routes.items()}}

    def _held(self, database: str) -> bool:
        for _ in range(2):  # the kept connection is stale once after PgBouncer restarted
            try:
                return self.console.paused(database)
            except RouterError as exc:
                error = exc
        log.warning("PgBouncer's console does not answer (%s): taken as down", error)
        return True  # PgBouncer down: it serves nothing and reads the file when it starts

    def set_route(self, wanted: Route, generation: int) -> tuple[int, dict[str, Any]]:
        with self._lock:
            path, st = self.config.routes_file, AgentState.load(self.config.state_file)
            current = read_routes(path).get(wanted.database)
            is_pending = wanted.database in st.pending
            decision = decide(current=current, wanted=wanted, held=self._held(wanted.database),
                              pending_previous=st.previous(wanted.database), is_pending=is_pending,
                              last_generation=st.generation, generation=generation)
            if decision.refused:
                log.warning("refused %s -> %s:%s (generation %d): %s", wanted.database, wanted.host,
                            wanted.port, generation, decision.reason)
                return 409, {"error": decision.reason}
            st.generation = max(st.generation, generation)
            if decision.action == "write" and wanted.database in self._holds:
                self._moved.add(wanted.database)
            if decision.action == "write":
                if is_pending and wanted == st.previous(wanted.database):
                    del st.pending[wanted.database]  # undone
                elif current is not None and not is_pending:
                    st.pending[wanted.database] = _text(current)
                st.save(self.config.state_file)  # before the file: a crash between leaves it undoable
                write_route(path, wanted)
            else:
                st.save(self.config.state_file)
            log.info("route %s -> %s:%s (generation %d): %s", wanted.database, wanted.host,
                     wanted.port, generation, decision.action)
            return self._reload_and_check(wanted, decision.action)

    def _reload_and_check(self, wanted: Route, action: str) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"action": action, "written": True}
        try:
            self.console.reload()
            host, port = self.console.route(wanted.database)
        except RouterError as exc:
            return 503, {**body, "error": f"route written; PgBouncer did not take it: {exc}"}
        if (host, port) != (wanted.host, wanted.port):
            return 503, {**body, "error": f"route written; PgBouncer still sends {wanted.database} "
                                          f"to {host}:{port} after RELOAD"}
        return 200, {**body, "live": f"{host}:{port}"}

    def pause(self, database: str, *, timeout: float, hold: float) -> tuple[int, dict[str, Any]]:
        """``PAUSE database`` (undone with ``RESUME`` if in-flight transactions outlast
        ``timeout``), then a hold of ``hold`` seconds after which a switch gone silent is taken
        as dead (see the module's notes)."""
        if not 0 < timeout <= MAX_HOLD or not timeout <= hold <= MAX_HOLD:
            return 400, {"error": f"timeout {timeout} and hold {hold} must satisfy "
                                  f"0 < timeout <= hold <= {MAX_HOLD:.0f}"}
        try:
            with self._switch_lock:
                seconds = self.switch_console.pause(database, timeout=timeout)
        except RouterError as exc:
            return 503, {"error": str(exc)}
        with self._lock:
            self._end_hold(database)
            timer = threading.Timer(hold, self._hold_ran_out, args=(database,))
            timer.daemon = True
            self._holds[database] = timer
            timer.start()
        log.info("PAUSE %s in %.0f ms; held for at most %.0f s", database, seconds * 1000, hold)
        return 200, {"seconds": seconds}

    def resume(self, database: str) -> tuple[int, dict[str, Any]]:
        try:
            with self._switch_lock:
                self.switch_console.resume(database)
        except RouterError as exc:
            return 503, {"error": str(exc)}
        with self._lock:
            self._end_hold(database)
        return 200, {"resumed": database}

    def _end_hold(self, database: str) -> None:
        timer = self._holds.pop(database, None)
        if timer is not None:
            timer.cancel()
        self._moved.discard(database)

    def _hold_ran_out(self, database: str) -> None:
        with self._lock:
            if database not in self._holds:
                return  # resumed meanwhile
            if database in self._moved:
                log.error("%s: the switch that paused it went silent after moving its route; its "
                          "clients stay held until an operator resumes them (see the runbook)", database)
                self._holds.pop(database, None)
                return
            self._end_hold(database)
        log.error("%s: the switch that paused it went silent; clients resumed on the route they had",
                  database)
        try:
            with self._switch_lock:
                self.switch_console.resume(database)
        except RouterError as exc:
            log.error("%s: RESUME after the hold failed: %s", database, exc)

    def live_route(self, database: str) -> tuple[int, dict[str, Any]]:
        """Where PgBouncer sends ``database`` now, as it reports it, and whether it is paused."""
        with self._lock:
            try:
                row = self.console.databases().get(database)
            except RouterError as exc:
                return 503, {"error": str(exc)}
        if row is None:
            return 404, {"error": f"router has no database {database!r}"}
        return 200, {"host": row["host"], "port": int(row["port"]), "paused": bool(int(row.get("paused") or 0))}

    def confirm(self, database: str, generation: int) -> tuple[int, dict[str, Any]]:
        with self._lock:
            st = AgentState.load(self.config.state_file)
            if generation < st.generation:
                return 409, {"error": f"generation {generation} is older than {st.generation}"}
            route = read_routes(self.config.routes_file).get(database)
            confirmed = st.pending.pop(database, None) is not None
            st.save(self.config.state_file)
            return 200, {"confirmed": confirmed, "route": _text(route)}

    def remove(self, database: str, generation: int) -> tuple[int, dict[str, Any]]:
        with self._lock:
            st = AgentState.load(self.config.state_file)
            if generation < st.generation:
                return 409, {"error": f"generation {generation} is older than {st.generation}"}
            st.pending.pop(database, None)
            st.save(self.config.state_file)
            removed = remove_route(self.config.routes_file, database)
            try:
                self.console.reload()
            except RouterError as exc:
                return 503, {"error": f"route removed; RELOAD failed: {exc}"}
            return 200, {"removed": _text(removed)}


def recover(config: AgentConfig) -> list[str]:
    """Before PgBouncer starts: undo every route still pending (a switch that never confirmed it
    may have aborted). Returns the databases put back."""
    st = AgentState.load(config.state_file)
    undone = []
    for database in sorted(st.pending):
        previous = st.previous(database)
        if previous is None:
            remove_route(config.routes_file, database)
        else:
            write_route(config.routes_file, previous)
        undone.append(database)
        log.warning("recover: %s put back on %s (its move was never confirmed)", database,
                    _text(previous) or "no route")
    st.pending = {}
    st.save(config.state_file)
    return undone


def _handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            log.info("%s " + fmt, self.client_address[0], *args)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            why = verify(agent.config.key, self.command, self.path,
                         self.headers.get("X-Paymigrate-Time", ""), body,
                         self.headers.get("X-Paymigrate-Signature", ""))
            if why is not None:
                log.warning("refused %s %s from %s: %s", self.command, self.path,
                            self.client_address[0], why)
                return self._answer(401, {"error": why})
            m = _PATH.match(self.path)
            if not m:
                return self._answer(404, {"error": f"no such path {self.path}"})
            try:
                data = json.loads(body or b"{}")
                generation = int(data.get("generation", 0))
                db = m["db"]
                verb = m["verb"]
                if self.command == "GET" and db is None:
                    return self._answer(200, agent.state())
                if self.command == "GET" and db and not verb:
                    return self._answer(*agent.live_route(db))
                if self.command == "POST" and verb == "confirm":
                    return self._answer(*agent.confirm(db, generation))
                if self.command == "POST" and verb == "pause":
                    return self._answer(*agent.pause(db, timeout=float(data["timeout"]),
                                                     hold=float(data["hold"])))
                if self.command == "POST" and verb == "resume":
                    return self._answer(*agent.resume(db))
                if self.command == "POST" and db and not verb:
                    wanted = Route(db, str(data["host"]), int(data["port"]), str(data["dbname"]))
                    return self._answer(*agent.set_route(wanted, generation))
                if self.command == "DELETE" and db and not verb:
                    return self._answer(*agent.remove(db, generation))
            except (KeyError, ValueError, TypeError, RouterError) as exc:
                return self._answer(400, {"error": f"{type(exc).__name__}: {exc}"})
            return self._answer(405, {"error": f"{self.command} {self.path} is not a call"})

        do_GET = do_POST = do_DELETE = _serve

    return Handler


def serve(config: AgentConfig, *, agent: Agent | None = None) -> ThreadingHTTPServer:
    """The HTTP server of ``agent`` (made from ``config`` unless given); not yet serving: call
    ``serve_forever``."""
    server = ThreadingHTTPServer((config.listen, config.port), _handler(agent or Agent(config)))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paymigrate-route-agent", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("serve", "recover"))
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = AgentConfig.load(args.config)
    if args.command == "recover":
        print(json.dumps({"undone": recover(config)}))
        return 0
    # No recover() here: an agent restarted under a live PgBouncer must leave a pending route to
    # the switch (which confirms or undoes it); only a PgBouncer about to start is recovered.
    server = serve(config)
    log.info("route agent on %s:%d owns %s", config.listen, config.port, config.routes_file)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
