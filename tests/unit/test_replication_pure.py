"""Pure parts of the replication engines: types, LSNs, preflight rules, sequence plans, TOC split."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymigrate.db import Endpoint
from paymigrate.errors import PreflightError, PrerequisiteError, ReplicationError
from paymigrate.pgbin import schema_tools_major
from paymigrate.replication import (
    Lag,
    Problem,
    ReplicationStatus,
    StartResult,
    engine_for,
    int_to_lsn,
    lsn_to_int,
    raise_for_problems,
)
from paymigrate.replication.dms import full_load_done, start_type
from paymigrate.replication.preflight import PreflightFacts, TableFacts, evaluate, evaluate_source
from paymigrate.replication.schema import libpq_env, split_toc
from paymigrate.replication.sequences import Sequence, plan
from paymigrate.replication.versions import VersionProblem, subscription_options

BIG = 2**63 - 1


def test_lsn_round_trip_and_order():
    assert lsn_to_int("0/0") == 0
    assert lsn_to_int("1/A") == 4294967306
    assert int_to_lsn(4294967306) == "1/A"
    assert lsn_to_int("16/B374D848") > lsn_to_int("16/B374D847")
    with pytest.raises(ValueError, match="'nope' is not a PostgreSQL WAL position"):
        lsn_to_int("nope")


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_inverse(pos):
    assert lsn_to_int(int_to_lsn(pos)) == pos


def test_problems_are_listed_all_at_once():
    problems = [Problem("public.a", "no primary key"), Problem(None, "wal_level is replica")]
    with pytest.raises(PreflightError) as info:
        raise_for_problems(problems, engine="postgres-logical")
    assert "2 problem(s)" in str(info.value)
    assert "public.a: no primary key" in str(info.value) and "wal_level is replica" in str(info.value)
    raise_for_problems([])
    with pytest.raises(ValueError):
        Problem("t", " ")


def test_value_types_refuse_nonsense():
    with pytest.raises(ValueError, match="'bogus'"):
        ReplicationStatus("bogus", False, False)
    with pytest.raises(ValueError, match="outside 0..2"):
        ReplicationStatus("copying", True, False, tables_synced=3, tables_total=2)
    with pytest.raises(ValueError, match="needs a reason"):
        Lag(10, None)
    with pytest.raises(ValueError):
        StartResult("dms", "maybe")
    assert str(Lag(5, None, "idle")) == "5 bytes, seconds unknown (idle)"
    assert ReplicationStatus("copying", True, False, tables_synced=1, tables_total=4).progress == "1/4"


def test_engine_for_names_the_bad_engine():
    with pytest.raises(ValueError, match="engine='pglogical': not one of postgres-logical, dms"):
        engine_for("pglogical")
    ep = Endpoint("127.0.0.1", 5432, "payments", "u", "secret")
    with pytest.raises(ValueError, match="replication name 'Bad-Name'"):
        engine_for("postgres-logical", source=ep, target=ep, name="Bad-Name")
    with pytest.raises(ValueError, match="not a DMS task ARN"):
        engine_for("dms", task_arn="task-1")


def test_libpq_env_keeps_the_password_off_the_command_line():
    env = libpq_env(Endpoint("db.example", 5433, "payments", "migrator", "s3cr3t"))
    assert env["PGPASSWORD"] == "s3cr3t" and env["PGHOST"] == "db.example" and env["PGPORT"] == "5433"


# ---- preflight rules --------------------------------------------------------------------------
def table(name="public.t", pk=True, ident="d", upd=0, dele=0, persistence="p") -> TableFacts:
    return TableFacts(name, pk, ident, False, upd, dele, persistence)


def facts(**kw) -> PreflightFacts:
    base = dict(source_wal_level="logical", target_wal_level="logical", max_slots=20, used_slots=0,
                max_senders=20, used_senders=0, sync_workers=4, slot_exists=False, resuming=False,
                tables=(table(),))
    return PreflightFacts(**{**base, **kw})


def reasons(f: PreflightFacts, **kw) -> list[str]:
    return [str(p) for p in evaluate(f, **kw)[0]]


def test_clean_facts_pass():
    assert evaluate(facts()) == ([], [])


def test_wal_level_not_logical_is_refused():
    assert reasons(facts(source_wal_level="replica")) == [
        "source wal_level is replica, logical replication needs wal_level = logical (restart required)"]
    assert "reverse replication" in reasons(facts(target_wal_level="replica"))[0]


def test_a_target_older_than_its_source_is_refused_naming_both_versions():
    [problem] = evaluate(facts(source_version=180006, target_version=150018))[0]
    assert isinstance(problem, VersionProblem) and problem.table is None
    assert (problem.source_version, problem.target_version) == (180006, 150018)
    assert "target runs PostgreSQL 15, older than the source PostgreSQL 18" in str(problem)
    assert evaluate(facts(source_version=150018, target_version=180006)) == ([], [])
    assert evaluate(facts(source_version=150018, target_version=150002)) == ([], [])


def test_newer_subscribers_get_origin_none_and_schema_tools_are_at_least_the_source():
    assert [o.as_string(None) for o in subscription_options(180006)] == ["origin = none"]
    assert subscription_options(150018) == []
    assert schema_tools_major(15, 18, (15, 18)) == 18  # the target's own, when installed
    assert schema_tools_major(15, 18, (15,)) == 15
    assert schema_tools_major(15, 15, (15, 18)) == 15
    with pytest.raises(PrerequisiteError, match="no pg_dump at least as new as the source's "
                                                "PostgreSQL 18 .installed: 15."):
        schema_tools_major(18, 18, (15,))


def test_not_enough_slots_or_senders_is_refused():
    assert "3 free replication slot(s)" in reasons(facts(used_slots=17))[0]
    assert "needs 5" in reasons(facts(used_slots=17))[0]
    assert reasons(facts(used_slots=15)) == []
    assert reasons(facts(used_slots=16, slot_exists=True)) == []  # resuming needs one less
    assert "free WAL sender" in reasons(facts(used_senders=19))[0]


def test_keyless_table_with_updates_refused_unless_identity_full():
    f = facts(tables=(table(pk=False, upd=3, dele=1),))
    assert "public.t: no primary key or replica identity and 3 update(s), 1 delete(s)" in reasons(f)[0]
    problems, warnings = evaluate(f, replica_identity_full=True)
    assert problems == [] and "sequentially" in warnings[0]


def test_keyless_insert_only_table_passes_with_a_warning():
    problems, warnings = evaluate(facts(tables=(table(pk=False),)))
    assert problems == [] and "insert-only" in warnings[0]
    assert reasons(facts(tables=(table(pk=False, ident="f", upd=9),))) == []  # identity full


def test_unlogged_large_objects_extensions_target_rows_roles_unknown():
    assert "unlogged" in reasons(facts(tables=(table(persistence="u"),)))[0]
    assert reasons(facts(large_objects=2))[0].startswith("pg_largeobject: 2 large object(s)")
    assert "extension postgis is installed on the source" in reasons(facts(missing_extensions=("postgis",)))[0]
    assert "public.x: target table is not empty" in reasons(facts(target_tables_with_rows=("public.x",)))[0]
    assert reasons(facts(target_tables_with_rows=("public.x",), resuming=True)) == []
    assert "role auditor" in reasons(facts(missing_roles=(("public.t", "auditor"),)))[0]
    assert reasons(facts(unknown_tables=("nope",))) == ["nope: not found on the source"]
    assert reasons(facts(tables=())) == ["no table to replicate on the source"]


def test_dms_refuses_unconstrained_numeric():
    [p] = evaluate_source((table(),), 0, [("public.fx", "rate")])
    assert p.table == "public.fx" and "NUMERIC(28,6)" in p.reason


# ---- sequences ----------------------------------------------------------------------------------
def seq(last, inc=1, start=1, lo=1, hi=BIG, name="public.s") -> Sequence:
    return Sequence(name, inc, lo, hi, start, last)


def test_sequence_plan_gap_never_called_and_never_backwards():
    assert plan({"public.s": seq(41)}, {"public.s": seq(None)}, gap=1000) == {"public.s": 1041}
    assert plan({"public.s": seq(None, start=5000)}, {"public.s": seq(None, start=5000)},
                gap=1000) == {"public.s": 5999}
    assert plan({"public.s": seq(41)}, {"public.s": seq(9000)}, gap=1000) == {"public.s": 9000}


def test_sequence_plan_descending_bounds_and_missing():
    down = dict(inc=-1, start=-1, lo=-BIG, hi=-1)
    assert plan({"public.s": seq(-50, **down)}, {"public.s": seq(None, **down)}, gap=10) == {"public.s": -60}
    with pytest.raises(ReplicationError, match="public.s: source at 95 plus a gap of 10 gives 105"):
        plan({"public.s": seq(95, hi=100)}, {"public.s": seq(None, hi=100)}, gap=10)
    with pytest.raises(ReplicationError, match="missing on the target: public.s"):
        plan({"public.s": seq(1)}, {}, gap=10)
    with pytest.raises(ValueError, match="gap -1"):
        plan({}, {}, gap=-1)


# ---- schema split, DMS decisions ----------------------------------------------------------------
def test_split_toc_moves_only_named_keys_early():
    pre = ["; comment", "10; 1259 16386 TABLE public a u", "11; 0 0 ACL public TABLE a u"]
    post = ["20; 2606 16393 CONSTRAINT public a a_pkey u", "21; 2606 16395 CONSTRAINT public a a_u_key u",
            "22; 1259 16406 INDEX public b_aid_idx u", "23; 2606 16401 FK CONSTRAINT public b b_fkey u"]
    toc = split_toc(pre, post, {(2606, 16393)})
    assert toc.early == (pre[1], pre[2], post[0])
    assert toc.late == tuple(post[1:])


@pytest.mark.parametrize("task, expected", [
    ({"Status": "ready"}, "start-replication"),
    ({"Status": "creating"}, "start-replication"),
    ({"Status": "stopped", "ReplicationTaskStartDate": "x"}, "resume-processing"),
    ({"Status": "failed", "ReplicationTaskStats": {"StartDate": "x"}}, "resume-processing"),
    ({"Status": "failed"}, "start-replication"),
    ({"Status": "running"}, None),
    ({"Status": "starting"}, None),
])
def test_dms_start_type_follows_the_task_state(task, expected):
    assert start_type(task) == expected


def test_dms_reload_only_when_asked_and_busy_refused():
    assert start_type({"Status": "stopped", "ReplicationTaskStartDate": "x"}, reload=True) == "reload-target"
    with pytest.raises(ReplicationError, match="is stopping"):
        start_type({"Status": "stopping", "ReplicationTaskIdentifier": "t"})


def test_dms_full_load_done_needs_every_table():
    stats = {"FullLoadProgressPercent": 100, "TablesLoaded": 4, "TablesLoading": 0, "TablesQueued": 0,
             "TablesErrored": 0}
    assert full_load_done({"Status": "running", "ReplicationTaskStats": stats})
    assert not full_load_done({"Status": "running", "ReplicationTaskStats": {**stats, "TablesErrored": 1}})
    assert not full_load_done({"Status": "running", "ReplicationTaskStats": {**stats, "FullLoadProgressPercent": 99}})
    assert not full_load_done({"Status": "ready", "ReplicationTaskStats": stats})


def test_frozen_types():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Problem("t", "r").reason = "x"


def test_copy_under_snapshot_needs_one_slot_and_recopies_only_its_own_tables():
    # No table-sync slots: one for the subscription, none when the slot is already there.
    assert reasons(facts(used_slots=19), table_sync=False) == []
    assert "needs 1" in reasons(facts(used_slots=20), table_sync=False)[0]
    # A slot without a subscription: an interrupted copy whose rows are its own (copied again)...
    interrupted = facts(slot_exists=True, target_tables_with_rows=("public.t", "public.other"))
    problems, warnings = evaluate(interrupted, table_sync=False)
    assert [str(p) for p in problems] == [
        "public.other: target table is not empty: the initial copy needs an empty target database"]
    assert "public.t: rows on the target from an interrupted initial copy" in warnings[0]
    # ...but with table sync, or without a slot, rows on the target are refused as before.
    assert len(reasons(interrupted)) == 2
    assert len(reasons(facts(target_tables_with_rows=("public.t",)), table_sync=False)) == 1


# ---- schema drift -----------------------------------------------------------------------------
def test_drift_names_table_column_and_fix():
    from paymigrate.replication.ddl import Column, compare_columns, describe

    source = {"public.a": [Column("id", "bigint", True), Column("note", "text", False, "'n'::text"),
                           Column("amount", "numeric(19,4)")],
              "public.b": [Column("id", "bigint", True)]}
    target = {"public.a": [Column("id", "bigint", True), Column("amount", "numeric"),
                           Column("legacy", "integer", True), Column("spare", "integer")]}
    drift = compare_columns(source, target)
    assert [(d.kind, d.table, d.column) for d in drift] == [
        ("column-missing", "public.a", "note"), ("column-type", "public.a", "amount"),
        ("column-extra", "public.a", "legacy"), ("table-missing", "public.b", None)]
    assert drift[0].fix == """ALTER TABLE public.a ADD COLUMN IF NOT EXISTS "note" text DEFAULT 'n'::text"""
    assert drift[1].fix.endswith('ALTER COLUMN "amount" TYPE numeric(19,4) USING "amount"::numeric(19,4)')
    assert drift[2].fix == 'ALTER TABLE public.a DROP COLUMN "legacy"'
    assert "public.a.note: column text on the source only" in describe(drift)
    assert compare_columns(source, {**target, **source}) == []


def test_a_unique_not_null_key_is_proposed_as_replica_identity_with_its_statement():
    keyed = TableFacts("public.fees", False, "d", False, 3, 0, "p", "fees_ref_key")
    [problem] = evaluate(facts(tables=(keyed,)))[0]
    assert problem.table == "public.fees"
    assert 'cheapest fix: ALTER TABLE public.fees REPLICA IDENTITY USING INDEX "fees_ref_key"' in problem.reason
    problems, warnings = evaluate(facts(tables=(keyed,)), replica_identity_index=True)
    assert problems == [] and "REPLICA IDENTITY USING INDEX" in warnings[0]
    # Both options: the index wins (as exact, far cheaper); without a candidate FULL still applies.
    assert evaluate(facts(tables=(keyed,)), replica_identity_index=True, replica_identity_full=True)[0] == []
    assert "REPLICA IDENTITY FULL" in evaluate(facts(tables=(table(pk=False, upd=1),)),
                                               replica_identity_index=True, replica_identity_full=True)[1][0]
