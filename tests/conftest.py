"""Fixtures shared by every test tier.

``stack`` starts one real local stack (two PostgreSQL clusters, PgBouncer, moto) for the whole
session in a throw-away home, and exports its endpoints into ``os.environ`` as ``paymigrate env``
would. Tests that need their own data use ``databases`` to get a fresh database pair.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from paymigrate.db import query as sql_rows  # noqa: F401 (the tests import it from here)
from paymigrate_dev.local import airflow_services
from paymigrate_dev.local.approver import Answerer, ApiServer
from paymigrate_dev.local.stack import APP_USER, LocalStack

TEST_ENV = "test"

# Airflow reads its home and metadata DB when first imported, which may happen while tests are
# collected: point it at a throw-away home now, before any test module imports it.
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="paymigrate-airflow-"))
os.environ.update(airflow_services.static_environment(AIRFLOW_HOME))


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    home = Path(tempfile.mkdtemp(prefix="paymigrate-test-"))
    home.chmod(0o755)  # the servers run as the unprivileged service user
    s = LocalStack(home, env=TEST_ENV)
    s.up()
    saved = dict(os.environ)
    os.environ.update(s.env_vars())
    try:
        yield s
    finally:
        os.environ.clear()
        os.environ.update(saved)
        s.down(purge=True)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow(stack: LocalStack) -> Path:
    """A migrated Airflow metadata DB and the connection to the stack's moto, for dag.test()."""
    env = airflow_services.environment(stack, home=AIRFLOW_HOME)
    os.environ.update(env)
    airflow_services.migrate(env)
    return AIRFLOW_HOME


def _admin(stack: LocalStack, side: str):
    conn = psycopg2.connect(stack.dsn(side, dbname="postgres"))
    conn.autocommit = True
    return conn


def create_database(stack: LocalStack, side: str, name: str) -> str:
    """Create an empty database ``name`` on ``side`` (the app role may use it); return its DSN."""
    conn = _admin(stack, side)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            cur.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(sql.Identifier(name),
                                                                         sql.Identifier(APP_USER)))
    finally:
        conn.close()
    conn = psycopg2.connect(stack.dsn(side, dbname=name))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(APP_USER)))
    finally:
        conn.close()
    return stack.dsn(side, dbname=name)


def drop_database(stack: LocalStack, side: str, name: str) -> None:
    conn = _admin(stack, side)
    try:
        with conn.cursor() as cur:
            # Subscriptions in it would keep a slot on the other side; the tests that make them
            # drop them, and FORCE ends any session still attached.
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


def drop_replicated_pair(stack: LocalStack, name: str, engine) -> None:
    """Undo what a test's migration of database ``name`` left: routers resumed, both directions
    of replication dropped, its route, the freeze and fence on both sides, both databases."""
    from paymigrate.cutover.freeze import remove_fence, unfreeze

    for node in stack.router_nodes():
        node.console.resume(name, quiet=True)
    for direction in ("reverse", "forward"):
        engine.drop(direction=direction)
    stack.remove_route(name)
    for ep in (engine.source, engine.target):
        unfreeze(ep)
        remove_fence(ep)
    for side in ("target", "source"):
        drop_database(stack, side, name)


@pytest.fixture
def databases(stack: LocalStack) -> Iterator[tuple[str, str]]:
    """A fresh, empty database of the same name on source and target: ``(source_dsn, target_dsn)``."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    dsns = (create_database(stack, "source", name), create_database(stack, "target", name))
    yield dsns
    for side in ("target", "source"):
        drop_database(stack, side, name)


class BackgroundWriter(threading.Thread):
    """Calls ``step(cursor, rng)`` in a loop on its own autocommit connection until ``stop`` is
    set, ``pause`` seconds apart; ``commits`` counts what each step returns, and an error is kept
    for the test to raise rather than lost in the thread."""

    def __init__(self, dsn: str, step, *, seed: int, pause: float):
        super().__init__(daemon=True)
        self.dsn, self.step, self.seed, self.pause = dsn, step, seed, pause
        self.stop, self.commits, self.error = threading.Event(), 0, None

    def run(self) -> None:
        rng = random.Random(self.seed)
        try:
            conn = psycopg2.connect(self.dsn)
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    self.commits += self.step(cur, rng)
                    time.sleep(self.pause)
            conn.close()
        except Exception as exc:
            self.error = exc


@pytest.fixture(scope="session")
def answerer(stack, airflow):
    """An api-server on the tests' metadata DB, answering payment_cutover's approval through
    its REST API as the admin user ("Approve" unless a test says otherwise, and then back).
    One for the session: each start costs seconds."""
    server = ApiServer(stack, airflow)
    thread = Answerer(server.start(), "payment_cutover", "Approve")
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()
        server.stop()

