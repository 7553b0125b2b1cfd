"""The route agent's wire protocol: HMAC-signed JSON over HTTP, and the client the switch uses.

A request carries ``X-Paymigrate-Time`` (Unix seconds) and ``X-Paymigrate-Signature``, the
HMAC-SHA256 of ``METHOD\\nPATH\\nTIME\\nBODY`` under the key both sides hold (the router-admin
password: whoever may PAUSE a router may move its route, and nobody else). A request older or
newer than :data:`MAX_SKEW` seconds is refused, so a captured call cannot be replayed later.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from paymigrate.errors import PaymigrateError
from paymigrate.routing.pgbouncer import Route

log = logging.getLogger(__name__)

MAX_SKEW = 30.0
HTTP_GRACE = 5.0  # past a PAUSE's own timeout, for the agent's answer to arrive


class AgentError(PaymigrateError):
    """The route agent refused a call, failed it, or did not answer in time."""

    def __init__(self, message: str, *, status: int | None = None, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.body = status, body or {}


def sign(key: bytes, method: str, path: str, stamp: str, body: bytes) -> str:
    msg = b"\n".join([method.encode(), path.encode(), stamp.encode(), body])
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def verify(key: bytes, method: str, path: str, stamp: str, body: bytes, signature: str, *,
           now: float | None = None) -> str | None:
    """None when the request is authentic and fresh, else why it is not."""
    try:
        sent = float(stamp)
    except ValueError:
        return "no valid time stamp"
    if abs((time.time() if now is None else now) - sent) > MAX_SKEW:
        return f"time stamp {stamp} is more than {MAX_SKEW:.0f}s away"
    if not hmac.compare_digest(sign(key, method, path, stamp, body), signature or ""):
        return "bad signature"
    return None


@dataclass(frozen=True)
class AgentClient:
    """Calls one route agent at ``host:port``."""

    host: str
    port: int
    key: bytes

    def __repr__(self) -> str:  # the key never shows
        return f"AgentClient({self.host}:{self.port})"

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None, *,
             timeout: float = 10.0) -> dict[str, Any]:
        body = json.dumps(payload or {}, sort_keys=True).encode() if method != "GET" else b""
        stamp = f"{time.time():.3f}"
        headers = {"Content-Type": "application/json", "X-Paymigrate-Time": stamp,
                   "X-Paymigrate-Signature": sign(self.key, method, path, stamp, body)}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise AgentError(f"route agent {self.host}:{self.port} did not answer {method} {path}: "
                             f"{type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {"error": raw[:200].decode(errors="replace")}
        if resp.status != 200:
            raise AgentError(f"route agent {self.host}:{self.port} answered {resp.status} to "
                             f"{method} {path}: {data.get('error', data)}", status=resp.status, body=data)
        return data

    def state(self, *, timeout: float = 10.0) -> dict[str, Any]:
        """``{"generation", "routes": {db: "host:port/dbname"}, "pending": ...}``"""
        return self.call("GET", "/routes", timeout=timeout)

    def set_route(self, route: Route, *, generation: int, timeout: float = 10.0) -> dict[str, Any]:
        """Point ``route.database`` at ``route.host:port``: the agent writes its file, RELOADs
        its PgBouncer and checks it took the route. The route stays pending (undone if the host
        restarts) until :meth:`confirm`; a new database's first route is confirmed at once."""
        return self.call("POST", f"/routes/{route.database}", {
            "host": route.host, "port": route.port, "dbname": route.dbname,
            "generation": generation}, timeout=timeout)

    def confirm(self, database: str, *, generation: int, timeout: float = 10.0) -> dict[str, Any]:
        return self.call("POST", f"/routes/{database}/confirm", {"generation": generation},
                         timeout=timeout)

    def remove(self, database: str, *, generation: int, timeout: float = 10.0) -> dict[str, Any]:
        return self.call("DELETE", f"/routes/{database}", {"generation": generation}, timeout=timeout)

    def pause(self, database: str, *, timeout: float, hold: float) -> float:
        """``PAUSE database`` on the agent's PgBouncer; seconds it took. The agent resumes it by
        itself after ``hold`` seconds unless a route moved meanwhile."""
        body = self.call("POST", f"/routes/{database}/pause", {"timeout": timeout, "hold": hold},
                         timeout=timeout + HTTP_GRACE)
        return float(body["seconds"])

    def resume(self, database: str, *, timeout: float = 10.0) -> dict[str, Any]:
        return self.call("POST", f"/routes/{database}/resume", {}, timeout=timeout)

    def live_route(self, database: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """``{"host", "port", "paused"}`` as PgBouncer reports them (not as its file says)."""
        return self.call("GET", f"/routes/{database}", timeout=timeout)


@dataclass(frozen=True)
class AgentConsole:
    """A router's console as the switch reaches it: through its route agent, since PgBouncer's
    own console listens on the router host's loopback only. ``hold`` (seconds) is how long a
    ``PAUSE`` may last before the agent takes the switch as dead."""

    agent: AgentClient
    hold: float = 60.0

    def pause(self, database: str, *, timeout: float, hold: float | None = None) -> float:
        return self.agent.pause(database, timeout=timeout, hold=max(hold or self.hold, timeout))

    def resume(self, database: str, *, quiet: bool = False) -> None:
        try:
            self.agent.resume(database)
        except AgentError as exc:
            if not quiet:
                raise
            log.info("RESUME %s: %s", database, exc)

    def route(self, database: str) -> tuple[str, int]:
        found = self.agent.live_route(database)
        return str(found["host"]), int(found["port"])

    def paused(self, database: str) -> bool:
        return bool(self.agent.live_route(database)["paused"])

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The agent keeps its console connection open for its life: nothing to hold here."""
        yield
