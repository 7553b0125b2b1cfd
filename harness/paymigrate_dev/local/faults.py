"""Faults injected for real into the local stand-ins: processes killed, connections cut.

The fault tests and ``make soak`` share them. Each returns one line saying what it did, or
raises :class:`~paymigrate.errors.StackError` when the thing to break was not there (a fault
that silently did nothing would make a test pass for the wrong reason).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from paymigrate.db import connection
from paymigrate.errors import StackError


def terminate_walsender(stack: Any, slot: str, *, timeout: float = 30) -> str:
    """End the walsender streaming ``slot`` on the source: what a network cut or a failover
    does to the replication connection. Waits up to ``timeout`` for one to be streaming."""
    deadline = time.monotonic() + timeout
    while True:
        with connection(stack.dsn("source", dbname="postgres"), autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT active_pid, pg_terminate_backend(active_pid) FROM pg_replication_slots "
                        "WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,))
            found = cur.fetchone()
        if found:
            return f"walsender of slot {slot} (pid {found[0]}) terminated"
        if time.monotonic() >= deadline:
            raise StackError(f"no walsender streamed slot {slot} within {timeout:.0f}s")
        time.sleep(0.1)


def crash(stack: Any, side: str) -> str:
    """SIGKILL the PostgreSQL server of ``side`` (it recovers from its WAL on restart), then
    start it again."""
    pid = stack.cluster(side).pid()
    if not pid:
        raise StackError(f"the {side} server is not running")
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    stack.up(bootstrap=False)
    return f"{side} server (pid {pid}) killed with SIGKILL and started again"


def kill_router(stack: Any) -> str:
    """SIGKILL PgBouncer (every client connection through it drops), then start it again."""
    pid = stack.router().pid()
    if not pid:
        raise StackError("PgBouncer is not running")
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    stack.up(bootstrap=False)
    return f"PgBouncer (pid {pid}) killed with SIGKILL and started again"


# name -> fault(stack, replication slot)
FAULTS: dict[str, Callable[[Any, str], str]] = {
    "walsender-terminated": terminate_walsender,
    "target-crashed": lambda stack, slot: crash(stack, "target"),
    "source-crashed": lambda stack, slot: crash(stack, "source"),
    "router-killed": lambda stack, slot: kill_router(stack),
}


def inject(name: str, stack: Any, slot: str) -> str:
    """Inject the fault ``name`` (one of :data:`FAULTS`)."""
    if name not in FAULTS:
        raise ValueError(f"fault {name!r} is not one of {', '.join(sorted(FAULTS))}")
    return FAULTS[name](stack, slot)


def pick(rng: random.Random, names: list[str] | None = None) -> str:
    """A fault name at random from ``names`` (all of them by default)."""
    return rng.choice(sorted(names or FAULTS))
