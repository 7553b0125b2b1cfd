"""The rollback state machine's Lambda steps (``lambdas/rollback_steps.py``) in-process, on the
real servers: what moto's Step Functions cannot run (moto runs no Lambda code without Docker)."""

from __future__ import annotations

import handlers
import psycopg2
import pytest
from psycopg2.extensions import parse_dsn

from paymigrate.cutover.freeze import freeze, is_frozen
from paymigrate.db import Endpoint
from paymigrate.errors import BadInput
from paymigrate.migration.platform import ClientPlatform
from paymigrate.migration.service import MigrationService

pytestmark = pytest.mark.integration


def test_the_handler_refuses_an_unknown_step_by_name_before_any_call(monkeypatch):
    monkeypatch.setenv("PAYMIGRATE_ENV", "nowhere")
    handler = handlers.load("rollback_steps").handler
    with pytest.raises(BadInput, match="step='drop_everything'"):
        handler({"step": "drop_everything", "run_id": "x", "input": {}}, None)
    with pytest.raises(BadInput, match="event"):
        handler({"run_id": "x"}, None)


def test_steps_before_a_cutover_and_unfreeze_on_a_frozen_source(stack, databases):
    source, _ = databases
    platform = ClientPlatform(env=stack.env, dbname=parse_dsn(source)["dbname"])
    service = MigrationService(platform)
    assert platform.config["database/active-writer"] == "source"
    # Before a cutover the switch back has nothing to drain and says so.
    assert service.rollback_step("switch_writes_to_source", run_id="sfn-1") == {"switched": False}
    with pytest.raises(BadInput, match="max_write_pause_ms"):
        service.rollback_step("switch_writes_to_source", run_id="sfn-1", max_write_pause_ms=10)
    # The machine's stop for an engine other than dms: here nothing replicates, nothing to stop.
    stopped = service.rollback_step("stop_replication", run_id="sfn-1")
    assert (stopped["state"], stopped["running"]) == ("absent", False), stopped
    ep: Endpoint = platform.endpoint("source")
    freeze(ep)
    assert is_frozen(ep)
    result = service.rollback_step("unfreeze_source", run_id="sfn-1")
    assert not is_frozen(ep) and result["fence_left_on"] == []
    with psycopg2.connect(source) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE written_after_unfreeze (id int)")
    conn.close()
