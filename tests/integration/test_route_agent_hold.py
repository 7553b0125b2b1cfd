"""A switch that dies inside its pause, on the real PgBouncers: the PAUSE its route agent holds
runs out, and the clients go on where they were, unless a route moved since the PAUSE."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg2
import pytest
from conftest import create_database, drop_database

from paymigrate.routing.pgbouncer import Route

pytestmark = pytest.mark.integration


@pytest.fixture
def routed(stack):
    name = f"hold_{uuid.uuid4().hex[:8]}"
    create_database(stack, "source", name)
    stack.add_route(name)
    try:
        yield name
    finally:
        for node in stack.router_nodes():
            node.console.resume(name, quiet=True)
        stack.remove_route(name)
        drop_database(stack, "source", name)


def _query_through(dsn: str, out: dict) -> None:
    conn = psycopg2.connect(dsn, connect_timeout=30)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('port')")
            out["port"], out["at"] = int(cur.fetchone()[0]), time.monotonic()
    finally:
        conn.close()


def test_a_pause_nobody_resumes_ends_with_its_hold_on_the_route_it_had(stack, routed):
    node = stack.router_nodes()[0]
    node.console.pause(routed, timeout=2, hold=2)
    paused_at = time.monotonic()
    assert node.console.paused(routed)
    out: dict = {}
    client = threading.Thread(target=_query_through, args=(stack.dsn("router", dbname=routed), out))
    client.start()
    client.join(30)
    assert out["port"] == stack.port("source")  # the route it had
    assert 1.8 <= out["at"] - paused_at < 10, out["at"] - paused_at  # held until the hold ran out
    assert not node.console.paused(routed)


def test_a_pause_whose_route_moved_is_left_held_for_an_operator(stack, routed):
    node = stack.router_nodes()[0]
    node.console.pause(routed, timeout=2, hold=1)
    generation = node.agent.state()["generation"] + 1
    node.agent.set_route(Route(routed, "127.0.0.1", stack.port("target"), routed), generation=generation)
    time.sleep(2)
    assert node.console.paused(routed)  # the dead switch may have handed writes over half-way
    node.agent.set_route(Route(routed, "127.0.0.1", stack.port("source"), routed), generation=generation)
    node.console.resume(routed)
    assert not node.console.paused(routed) and node.console.route(routed) == ("127.0.0.1", stack.port("source"))
