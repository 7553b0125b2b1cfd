"""Pure parts of native logical replication: the catalog's frozen values, the decisions made on
them (drained, status, tables not ready), the table-sync repair's choice of lost copies, and the
engine interface both engines implement."""

from __future__ import annotations

import inspect

import pytest

from paymigrate.db import Endpoint
from paymigrate.errors import ReplicationError
from paymigrate.replication import catalog
from paymigrate.replication.base import Engine, FullLoad, ReplicationStatus
from paymigrate.replication.catalog import Link, Slot, Subscribed, Subscription, TableSync
from paymigrate.replication.dms import DmsEngine
from paymigrate.replication.logical import LogicalEngine
from paymigrate.replication.table_sync import lost_copies

SRC = Endpoint("127.0.0.1", 5432, "payments", "paymigrate")
TGT = Endpoint("127.0.0.1", 5433, "payments", "paymigrate")
LINK = Link("forward", SRC, TGT, "m")
RUNNING = Subscription(oid=16500, enabled=True, slot="m", pid=4242)


def _sub(*states: str, subscription: Subscription = RUNNING) -> Subscribed:
    return Subscribed(subscription, tuple(TableSync(f"public.t{i}", s) for i, s in enumerate(states)))


def _slot(confirmed: str | None, *, active_pid: int | None = 77) -> Slot:
    return Slot("m", "pgoutput", "payments", active_pid, confirmed)


def test_a_subscription_runs_only_enabled_with_an_apply_worker():
    assert RUNNING.running
    assert not Subscription(1, True, "m", None).running
    assert not Subscription(1, False, "m", 42).running


def test_sync_states_count_synced_and_ready_only_and_name_unknown_letters_as_they_are():
    sub = _sub("r", "s", "d", "f", "i", "x")
    assert sub.synced == 2 and not sub.loaded
    assert list(sub.words().values()) == ["ready", "synced", "copying", "copied", "init", "x"]
    assert _sub("r", "s").loaded
    assert not _sub().loaded  # a subscription of no table has loaded nothing


@pytest.mark.parametrize(("confirmed", "position", "past"), [
    ("0/20", "0/1F", True), ("0/20", "0/20", True), ("0/20", "0/21", False),
    ("1/0", "0/FFFFFFFF", True), (None, "0/0", False),
])
def test_a_slot_confirms_a_position_by_wal_order_not_text(confirmed, position, past):
    assert _slot(confirmed).confirmed_past(position) is past


def test_drained_needs_the_slot_past_the_position_and_every_table_synced():
    assert catalog.drained(LINK, _sub("r", "s"), _slot("0/30"), "0/30")
    assert not catalog.drained(LINK, _sub("r", "s"), _slot("0/2F"), "0/30")
    # During the copy the apply worker confirms past changes of tables still being copied.
    assert not catalog.drained(LINK, _sub("r", "d"), _slot("0/40"), "0/30")


def test_drained_refuses_what_no_wait_can_fix_naming_it():
    with pytest.raises(ReplicationError, match="no subscription m on .*5433.*forward direction"):
        catalog.drained(LINK, None, _slot("0/30"), "0/30")
    with pytest.raises(ReplicationError, match="slot m on .*5432.* is gone"):
        catalog.drained(LINK, _sub("r"), None, "0/30")
    with pytest.raises(ValueError, match="'later' is not a PostgreSQL WAL position"):
        catalog.drained(LINK, None, None, "later")


def test_status_follows_the_subscription_and_its_worker():
    assert catalog.status(LINK, _sub("r", "r"), None) == ReplicationStatus(
        "streaming", True, True, {"public.t0": "ready", "public.t1": "ready"}, 2, 2, "")
    copying = catalog.status(LINK, _sub("r", "d"), None)
    assert (copying.state, copying.running, copying.full_load_done, copying.progress) == (
        "copying", True, False, "1/2")
    stopped = catalog.status(LINK, _sub("r", subscription=Subscription(1, False, "m", None)), None)
    assert (stopped.state, stopped.running, stopped.full_load_done) == ("stopped", False, True)
    starting = catalog.status(LINK, _sub("r", subscription=Subscription(1, True, "m", None)), None)
    assert starting.state == "starting" and "no apply worker" in starting.detail


def test_status_without_a_subscription_tells_a_copy_under_the_slot_from_nothing():
    held = catalog.status(LINK, None, _slot(None, active_pid=901))
    assert held.state == "copying" and "held by pid 901" in held.detail
    left = catalog.status(LINK, None, _slot(None, active_pid=None))
    assert left.state == "copying" and "copies every table anew" in left.detail
    absent = catalog.status(LINK, None, None)
    assert absent.state == "absent" and "no subscription m" in absent.detail


def test_tables_not_ready_are_each_named_with_their_state():
    sub = _sub("r", "f", "d")
    assert catalog.not_ready(sub, ["public.t0"]) is None
    assert catalog.not_ready(sub, ["public.t0", "public.t1", "public.t2", "public.gone"]) == (
        "not subscribed: public.gone; not ready: public.t1 (copied), public.t2 (copying)")


def test_a_lost_copy_is_one_whose_own_sync_slot_is_gone():
    copied = {16400: "public.a", 1640: "public.b", 16410: "public.c"}
    # 1640's slot is not the prefix of 16400's: each relid is matched whole.
    slots = ["pg_5_sync_16400_7312", "pg_6_sync_16410_7312"]
    assert lost_copies(copied, slots, 5) == {"public.b", "public.c"}
    assert lost_copies(copied, [], 5) == set(copied.values())
    assert lost_copies({}, slots, 5) == set()


def test_a_full_load_step_says_what_it_built_or_none():
    copying = ReplicationStatus("copying", True, False)
    assert FullLoad(copying, ("public.a",)).schema_statements is None
    assert FullLoad(ReplicationStatus("streaming", True, True), (), 3).schema_statements == 3
    with pytest.raises(ValueError, match="schema statements -1 is negative"):
        FullLoad(copying, (), -1)


def _members(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(cls).items()
            if callable(fn) and not name.startswith("_")}


@pytest.mark.parametrize("engine", [LogicalEngine, DmsEngine])
def test_both_engines_answer_every_call_of_the_interface_with_its_parameters(engine):
    # mypy checks the types (engine_for returns Engine); this keeps a caller from ever needing
    # to probe an engine for a method or a keyword.
    for name, wanted in _members(Engine).items():
        have = inspect.signature(getattr(engine, name))
        assert list(have.parameters) == list(wanted.parameters), (engine.__name__, name)
        for p in wanted.parameters.values():
            assert have.parameters[p.name].kind == p.kind, (engine.__name__, name, p.name)
    assert "engine" in Engine.__annotations__ and isinstance(engine.engine, str)
