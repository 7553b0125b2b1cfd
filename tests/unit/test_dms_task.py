"""The DMS task's table mappings from the migration's scope (pure), and ``DmsEngine.start``
giving them to the task in moto (its ModifyReplicationTask is a named test double: moto lacks it)."""

from __future__ import annotations

import json

import boto3
import dms_objects
import moto_dms_double
import pytest
from moto import mock_aws

from paymigrate import scope
from paymigrate.errors import BadInput, ReplicationError
from paymigrate.replication import engine_for
from paymigrate.replication.dms_task import table_mappings

REGION = "eu-west-1"


def selected(mappings):
    return [(r["rule-action"], r["object-locator"]["schema-name"], r["object-locator"]["table-name"])
            for r in mappings["rules"]]


def test_every_schema_less_the_engines_own_when_the_scope_is_everything():
    rules = selected(table_mappings())
    assert rules[0] == ("include", "%", "%")  # not only public: validation compares every schema
    # Every engine's schema but the migration's own, whose one table (the drain marker) DMS carries.
    assert {(s, "%") for s in scope.INTERNAL_SCHEMAS if s != scope.MIGRATION_SCHEMA} == {
        (s, t) for a, s, t in rules if a == "exclude" and t == "%"}
    assert rules[-1] == ("exclude", "%", "awsdms_%")


def test_include_and_exclude_name_tables_as_stored_in_any_schema():
    mappings = table_mappings(include=[("billing", "Invoices 2026"), ("sales", 'say "hi"')],
                              exclude=[("public", "tmp")])
    assert selected(mappings) == [("include", "billing", "Invoices 2026"),
                                  ("include", "sales", 'say "hi"'), ("exclude", "public", "tmp"),
                                  ("include", "paymigrate", "drain_marker"), ("exclude", "%", "awsdms_%")]
    rules = mappings["rules"]
    assert [r["rule-id"] for r in rules] == ["1", "2", "3", "4", "5"]
    assert len({r["rule-name"] for r in rules}) == len(rules)
    assert all(r["rule-type"] == "selection" for r in rules)
    assert json.loads(json.dumps(mappings)) == mappings


@pytest.mark.parametrize("include, exclude, bad", [
    ([("public", "100%")], (), "public.100%"),
    (None, [("pay%", "x")], "pay%.x"),
    ([], (), "[]"),
])
def test_a_name_dms_would_read_as_a_pattern_is_refused_by_name(include, exclude, bad):
    with pytest.raises(BadInput, match=bad.replace("[", r"\[")):
        table_mappings(include=include, exclude=exclude)


@pytest.fixture
def dms(monkeypatch):
    for k, v in (("AWS_DEFAULT_REGION", REGION), ("AWS_ACCESS_KEY_ID", "testing"),
                 ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # mock_aws intercepts AWS's own hosts
    with mock_aws(), moto_dms_double.installed(monkeypatch) as calls:
        client = boto3.client("dms", region_name=REGION)

        def task(mappings) -> str:
            number = len(client.describe_replication_tasks()["ReplicationTasks"])
            return dms_objects.replication_task(client, f"task-{number}", mappings=mappings)

        yield client, task, calls


def engine(client, arn):
    return engine_for("dms", task_arn=arn, dms_client=client, poll=0.01)


def mappings_of(client, arn):
    (task,) = client.describe_replication_tasks(
        Filters=[{"Name": "replication-task-arn", "Values": [arn]}])["ReplicationTasks"]
    return json.loads(task["TableMappings"])


def test_start_gives_the_task_the_scope_when_infra_deployed_another(dms):
    client, task, calls = dms
    public_only = {"rules": [{"rule-type": "selection", "rule-id": "1", "rule-name": "p",
                              "object-locator": {"schema-name": "public", "table-name": "%"},
                              "rule-action": "include"}]}
    arn = task(public_only)
    result = engine(client, arn).start()
    assert result.detail == "start-replication"
    assert [name for name, _ in calls] == ["ModifyReplicationTask"]
    assert calls[0][1]["ReplicationTaskArn"] == arn
    assert json.loads(calls[0][1]["TableMappings"]) == table_mappings()
    assert mappings_of(client, arn) == table_mappings()


def test_start_leaves_a_task_that_has_the_scope_alone(dms):
    client, task, calls = dms
    arn = task(table_mappings())
    engine(client, arn).start()
    assert calls == []


def test_a_running_task_with_another_scope_is_refused_not_changed(dms):
    client, task, calls = dms
    arn = task({"rules": [{"rule-type": "selection", "rule-id": "1", "rule-name": "p",
                           "object-locator": {"schema-name": "public", "table-name": "x"},
                           "rule-action": "include"}]})
    client.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType="start-replication")
    with pytest.raises(ReplicationError, match="running with other table mappings"):
        engine(client, arn).start()
    assert calls == []
    assert mappings_of(client, arn)["rules"][0]["object-locator"]["table-name"] == "x"


def test_start_switches_dms_validation_to_the_contracts_flag_keeping_the_other_settings(dms):
    client, task, calls = dms
    arn = task(table_mappings())
    settings = {"TargetMetadata": {"LobMaxSize": 32},
                "ValidationSettings": {"EnableValidation": True, "ThreadCount": 5}}
    client.modify_replication_task(ReplicationTaskArn=arn, ReplicationTaskSettings=json.dumps(settings))
    calls.clear()
    e = engine_for("dms", task_arn=arn, dms_client=client, poll=0.01, validation=False)
    e.start()
    assert [json.loads(c["ReplicationTaskSettings"]) for _, c in calls] == [
        {"TargetMetadata": {"LobMaxSize": 32},
         "ValidationSettings": {"EnableValidation": False, "ThreadCount": 5}}]
    assert "TableMappings" not in calls[0][1]  # the scope was already the task's
    assert e.own_validation()["enabled"] is False


def test_dms_validation_states_are_reported_per_table_and_labelled(dms):
    client, task, _ = dms
    arn = task(table_mappings())
    client.modify_replication_task(ReplicationTaskArn=arn, ReplicationTaskSettings=json.dumps(
        {"ValidationSettings": {"EnableValidation": True}}))
    # What DMS's data plane would have measured (cannot run here): the double's answer.
    moto_dms_double.TABLE_STATISTICS[arn] = [
        {"SchemaName": "public", "TableName": "payments", "TableState": "Table completed",
         "ValidationState": "Mismatched records", "ValidationFailedRecords": 2,
         "ValidationPendingRecords": 0, "ValidationSuspendedRecords": 0},
        {"SchemaName": "billing", "TableName": "invoices", "TableState": "Table completed",
         "ValidationState": "Validated", "ValidationFailedRecords": 0,
         "ValidationPendingRecords": 0, "ValidationSuspendedRecords": 0}]
    own = engine(client, arn).own_validation()
    assert own["label"] == "AWS DMS row validation (describe_table_statistics)"
    assert own["enabled"] is True and own["note"] == ""
    assert [(t["table"], t["ValidationState"], t["ValidationFailedRecords"]) for t in own["tables"]] == [
        ("billing.invoices", "Validated", 0), ("public.payments", "Mismatched records", 2)]

