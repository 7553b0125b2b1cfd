"""The DMS path's preflight rules (paymigrate.replication.dms_checks.evaluate), no server."""

from __future__ import annotations

import dataclasses

from paymigrate import scope
from paymigrate.aws import names
from paymigrate.replication import dms_task
from paymigrate.replication.dms_checks import (
    EndpointFacts,
    ServerFacts,
    TaskFacts,
    evaluate,
    mapping_selects,
)

SLOTS = {"forward": names.dms_slot_name("dev"), "reverse": names.dms_slot_name("dev", "reverse")}
SRC, TGT = "src.example:5432/payments", "tgt.example:5432/payments"


def _server(side: str, **kw) -> ServerFacts:
    slot = SLOTS["forward" if side == "source" else "reverse"]
    return dataclasses.replace(ServerFacts(side, "logical", 5, True, "migrator", slot, None), **kw)


def _ep(ident: str, kind: str, address: str, slot: str | None = None, status: str | None = "successful"):
    return EndpointFacts(ident, kind, address, slot, status)


def _tasks(**reverse_kw) -> list[TaskFacts]:
    forward = TaskFacts("forward", "task", "full-load-and-cdc", _ep("src", "source", SRC, SLOTS["forward"]),
                        _ep("tgt", "target", TGT), True)
    reverse = TaskFacts("reverse", "reverse-task", "cdc", _ep("rsrc", "source", TGT, SLOTS["reverse"]),
                        _ep("rtgt", "target", SRC), True)
    return [forward, dataclasses.replace(reverse, **reverse_kw)]


def _reasons(servers=None, tasks=None, **kw) -> list[str]:
    servers = servers if servers is not None else [_server("source"), _server("target")]
    return [p.reason for p in evaluate(servers, tasks if tasks is not None else _tasks(),
                                       slot_names=SLOTS, **kw)]


def test_a_complete_dms_path_passes():
    assert _reasons() == []


def test_logical_decoding_free_slots_and_the_right_to_make_one_on_each_side():
    reasons = _reasons([_server("source", wal_level="replica"),
                        _server("target", free_slots=0, can_replicate=False)])
    assert len(reasons) == 3
    assert "wal_level is replica on the source" in reasons[0] and "rds.logical_replication" in reasons[0]
    assert f"no free replication slot on the target for {SLOTS['reverse']}" in reasons[1]
    assert "role migrator cannot create slot" in reasons[2] and "rds_replication" in reasons[2]
    # An existing slot needs neither room nor the right, but DMS's plugin.
    assert _reasons([_server("source", free_slots=0, can_replicate=False, slot_plugin="test_decoding"),
                     _server("target")]) == []
    [wrong] = _reasons([_server("source", slot_plugin="pgoutput"), _server("target")])
    assert "decodes with pgoutput" in wrong and "test_decoding" in wrong


def test_the_reverse_task_must_exist_be_cdc_and_swap_the_endpoints():
    [missing] = _reasons(tasks=_tasks()[:1], missing_reverse="DMS task arn:x does not exist")
    assert "no reverse DMS task" in missing and "replication/reverse-task-arn" in missing
    [kind] = _reasons(tasks=_tasks(migration_type="full-load-and-cdc"))
    assert "reverse DMS task reverse-task is full-load-and-cdc, not cdc" in kind
    [direction] = _reasons(tasks=_tasks(target=_ep("rtgt", "target", TGT)))
    assert f"not {TGT} -> {SRC}" in direction


def test_each_source_endpoint_names_the_slot_the_engine_makes():
    [reason] = _reasons(tasks=_tasks(source=_ep("rsrc", "source", TGT, None)))
    assert "reads slot (none named)" in reason and SLOTS["reverse"] in reason and "rsrc" in reason


def test_mappings_must_carry_the_drain_marker():
    [reason] = _reasons(tasks=_tasks(carries_marker=False))
    assert "paymigrate.drain_marker" in reason
    everything, some = dms_task.table_mappings(), dms_task.table_mappings(include=[("public", "payments")])
    for mappings in (everything, some):  # the generator's mappings carry it, whatever the scope
        assert mapping_selects(mappings, scope.MIGRATION_SCHEMA, scope.DRAIN_MARKER_TABLE)
        assert not mapping_selects(mappings, "public", "awsdms_apply_exceptions")


def test_an_endpoint_dms_never_reached_is_named_and_loopback_says_what_cannot_run_here():
    local = _ep("rtgt", "target", "127.0.0.1:5433/payments", status=None)
    [reason] = [r for r in _reasons(tasks=_tasks(target=local)) if "connection" in r]
    assert "endpoint rtgt (127.0.0.1:5433/payments) was never tested" in reason
    assert "moto's control plane only" in reason and "engine=postgres-logical" in reason
    [failed] = _reasons(tasks=_tasks(target=_ep("rtgt", "target", SRC, status="failed")))
    assert "test is failed" in failed and "moto" not in failed
