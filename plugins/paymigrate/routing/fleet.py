"""The switch's steps over every router at once, and what they decide, as plain values.

Each router is a :class:`RouterNode`: its PgBouncer console (PAUSE, RESUME, where it routes) and
its route agent (the only writer of its route file), both reached through the agent, which runs
on the router host. :func:`on_every` runs one action on all of them in parallel, bounded by a
timeout, and returns a :class:`FleetResult`: one :class:`Answer` per router, a router that did
not answer in time being a failed answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from paymigrate.errors import ContractError
from paymigrate.routing.client import AgentClient, AgentConsole

AGENT_PORT = 6433  # the agent's port when the contract names only the console (one router)


@dataclass(frozen=True)
class RouterNode:
    name: str
    console: AgentConsole
    agent: AgentClient


@dataclass(frozen=True)
class RouterSpec:
    """Where one router's route agent listens (``router/routers`` in the contract, or found in
    the router hosts' Auto Scaling group)."""

    name: str
    agent_host: str
    agent_port: int

    def node(self, *, password: str) -> RouterNode:
        agent = AgentClient(self.agent_host, self.agent_port, password.encode())
        return RouterNode(self.name, AgentConsole(agent), agent)


def _host_port(value: Any, what: str) -> tuple[str, int]:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ContractError(f"{what} {value!r} is not host:port")
    return host, int(port)


def parse_routers(text: str, *, admin_endpoint: str) -> tuple[RouterSpec, ...]:
    """The contract's ``router/routers``: a JSON list of ``{"name", "agent": "host:port"}``.
    ``[]`` means one router, at the host of ``router/admin-endpoint``, its agent on
    :data:`AGENT_PORT`.

    >>> parse_routers("[]", admin_endpoint="10.0.1.5:6432")[0].agent_port
    6433
    >>> parse_routers('[{"name": "a"}]', admin_endpoint="x:1")
    Traceback (most recent call last):
    ...
    paymigrate.errors.ContractError: router/routers entry {'name': 'a'}: needs name and agent
    """
    try:
        entries = json.loads(text)
    except ValueError:
        raise ContractError(f"router/routers {text[:80]!r} is not JSON") from None
    if entries == []:
        host, _ = _host_port(admin_endpoint, "router/admin-endpoint")
        return (RouterSpec("router", host, AGENT_PORT),)
    if not isinstance(entries, list):
        raise ContractError(f"router/routers {text[:80]!r}: expected a list")
    specs = []
    for e in entries:
        if not isinstance(e, Mapping) or not all(e.get(k) for k in ("name", "agent")):
            raise ContractError(f"router/routers entry {e!r}: needs name and agent")
        specs.append(RouterSpec(str(e["name"]), *_host_port(e["agent"], f"router {e['name']} agent")))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ContractError(f"router/routers names {names} are not unique")
    return tuple(specs)


def render_routers(specs: Iterable[RouterSpec]) -> str:
    return json.dumps([{"name": s.name, "agent": f"{s.agent_host}:{s.agent_port}"} for s in specs])


@dataclass(frozen=True)
class Answer:
    router: str
    ok: bool
    seconds: float
    error: str | None = None
    value: Any = None


@dataclass(frozen=True)
class FleetResult:
    action: str
    answers: tuple[Answer, ...]

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.answers)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(a.router for a in self.answers if not a.ok)

    @property
    def slowest(self) -> float:
        return max((a.seconds for a in self.answers), default=0.0)

    def message(self) -> str:
        """One line for people: which routers failed the action and why.

        >>> FleetResult("PAUSE", (Answer("a", True, 0.01), Answer("b", False, 0.5, "no answer"))).message()
        'PAUSE failed on 1 of 2 routers: b (no answer)'
        """
        bad = [f"{a.router} ({a.error})" for a in self.answers if not a.ok]
        if not bad:
            return f"{self.action} done on all {len(self.answers)} routers"
        return f"{self.action} failed on {len(bad)} of {len(self.answers)} routers: {', '.join(bad)}"

    def per_router(self) -> dict[str, float]:
        return {a.router: round(a.seconds, 4) for a in self.answers}


def next_generation(generations: Iterable[int]) -> int:
    """The fence generation of a new switch: newer than any a router's agent obeyed.

    >>> next_generation([3, 7, 5])
    8
    """
    return max(generations, default=0) + 1


def on_every(routers: Sequence[RouterNode], action: str, fn: Callable[[RouterNode], Any], *,
             timeout: float) -> FleetResult:
    """``fn(router)`` on every router at once; a call still running after ``timeout`` seconds is
    a failed answer (its thread is left to finish on its own)."""
    answers: dict[str, Answer] = {}
    lock = threading.Lock()
    started = time.monotonic()

    def one(node: RouterNode) -> None:
        t0 = time.monotonic()
        try:
            value = fn(node)
            answer = Answer(node.name, True, time.monotonic() - t0, value=value)
        except Exception as exc:  # every failure is an answer: the caller decides
            answer = Answer(node.name, False, time.monotonic() - t0, f"{type(exc).__name__}: {exc}")
        with lock:
            answers[node.name] = answer

    threads = [threading.Thread(target=one, args=(n,), daemon=True, name=f"{action}-{n.name}")
               for n in routers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, timeout - (time.monotonic() - started)))
    with lock:
        out = tuple(answers.get(n.name) or Answer(n.name, False, time.monotonic() - started,
                                                  f"no answer within {timeout:.3f}s")
                    for n in routers)
    return FleetResult(action, out)


def hosts_group_routers(autoscaling: Any, ec2: Any, group: str, *, agent_port: int) -> tuple[RouterSpec, ...]:
    """The routers of the Auto Scaling group ``group``, each by its instance's private address,
    found when a switch starts (the group replaces hosts; a list written at deploy time would go
    stale). Every instance the group holds counts, whatever its lifecycle state: one still
    serving clients must be paused with the others, and one whose agent does not answer stops
    the switch before the pause."""
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    if not groups:
        raise ContractError(f"router/hosts-group {group!r}: no such Auto Scaling group")
    ids = sorted(i["InstanceId"] for i in groups[0].get("Instances", []))
    if not ids:
        raise ContractError(f"router/hosts-group {group!r} has no instances: no router to switch")
    found = {}
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=ids):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                found[inst["InstanceId"]] = inst.get("PrivateIpAddress")
    missing = [i for i in ids if not found.get(i)]
    if missing:
        raise ContractError(f"router/hosts-group {group!r}: no private address for {', '.join(missing)}")
    return tuple(RouterSpec(i, found[i], agent_port) for i in ids)
