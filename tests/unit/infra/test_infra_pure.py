"""Pure helpers of the infra program, tested without Pulumi."""

from __future__ import annotations

import io
import ipaddress
import json
import zipfile
from pathlib import Path

import dms_settings
import policies
import pytest
from components.functions import archive_entries
from components.storage import lifecycle_rules
from hypothesis import given
from hypothesis import strategies as st
from layout import MAX_AZS, TIERS, check_disjoint, subnet_layout

from paymigrate_dev.local.bootstrap import lambda_bundle

REPO = Path(__file__).resolve().parents[3]


@given(
    second=st.integers(0, 255),
    prefix=st.integers(8, 18),
    az_count=st.integers(1, MAX_AZS),
)
def test_subnets_lie_in_the_vpc_and_never_overlap(second, prefix, az_count):
    vpc = ipaddress.ip_network(f"10.{second}.0.0/{prefix}", strict=False)
    azs = [f"eu-west-1{c}" for c in "abcd"[:az_count]]
    layout = subnet_layout(str(vpc), azs, new_prefix=prefix + 4)
    nets = [ipaddress.ip_network(c) for tier in TIERS for c in layout[tier]]
    assert len(nets) == len(TIERS) * az_count
    assert all(n.subnet_of(vpc) for n in nets)
    assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])


@given(az_count=st.integers(1, MAX_AZS - 1))
def test_adding_an_az_never_renumbers_existing_subnets(az_count):
    azs = [f"eu-west-1{c}" for c in "abcd"]
    before = subnet_layout("10.0.0.0/16", azs[:az_count])
    after = subnet_layout("10.0.0.0/16", azs[:az_count + 1])
    for tier in TIERS:
        assert after[tier][:az_count] == before[tier]


def test_layout_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="holds"):
        subnet_layout("10.0.0.0/26", ["a"], new_prefix=28)
    with pytest.raises(ValueError, match="repeat"):
        subnet_layout("10.0.0.0/16", ["a", "a"])
    with pytest.raises(ValueError, match="overlap"):
        check_disjoint("10.0.0.0/16", "10.0.128.0/17")


def test_dms_settings_never_skip_a_row_and_validate_everything():
    settings = dms_settings.task_settings()
    errors = settings["ErrorBehavior"]
    assert {v for k, v in errors.items() if k.endswith("Policy")} == {"STOP_TASK"}
    assert settings["ValidationSettings"]["EnableValidation"] is True
    assert settings["TargetMetadata"]["BatchApplyEnabled"] is False
    assert all(c["Severity"] == "LOGGER_SEVERITY_DEFAULT"
               for c in settings["Logging"]["LogComponents"])
    assert json.loads(dms_settings.to_json(settings)) == settings


def test_key_policy_grants_services_only_for_this_account():
    doc = policies.kms_key_policy(partition="aws", account_id="123456789012", region="eu-west-1")
    services = [s for s in doc["Statement"] if "Service" in s["Principal"]]
    assert services and all("Condition" in s for s in services)
    assert all(s["Action"] != "kms:*" for s in services)


def test_workflow_policies_touch_only_their_own_task_and_prefix():
    migration = policies.migration_workflow_policy(
        checkpoints_bucket_arn="arn:aws:s3:::cp", topic_arns=["arn:t1"], dms_task_arn="arn:task",
        function_arn="arn:fn", key_arn="arn:key", region="eu-west-1",
        engine_parameter_arn="arn:engine")
    rollback = policies.rollback_workflow_policy(
        rollback_bucket_arn="arn:aws:s3:::rb", topic_arns=["arn:t1"], dms_task_arn="arn:task",
        key_arn="arn:key", region="eu-west-1", function_arn="arn:steps",
        active_writer_parameter_arn="arn:param", engine_parameter_arn="arn:engine")

    def actions(doc):
        return {a for s in doc["Statement"] for a in
                (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}

    assert "dms:StopReplicationTask" not in actions(migration)
    assert "dms:StartReplicationTask" not in actions(rollback)
    invokes = [s for s in rollback["Statement"] if s["Action"] == "lambda:InvokeFunction"]
    assert invokes[0]["Resource"] == ["arn:steps", "arn:steps:*"]  # only the rollback steps
    reads = [s["Resource"] for d in (migration, rollback) for s in d["Statement"]
             if s["Action"] == "ssm:GetParameter"]
    assert reads == ["arn:engine", ["arn:param", "arn:engine"]]  # those parameters only
    puts = [s for s in migration["Statement"] if s["Action"] == "s3:PutObject"]
    assert puts[0]["Resource"] == "arn:aws:s3:::cp/migration/*"


def test_lambda_bundle_holds_handlers_and_the_runtime_without_airflow_or_the_harness():
    entries = archive_entries()
    assert "api_authorizer.py" in entries
    assert {"paymigrate/__init__.py", "paymigrate/aws/contract.py", "paymigrate/aws/authorizer.py",
            "paymigrate/cutover/read_canary.py", "paymigrate/routing/access.py"} <= set(entries)
    assert not any(k.startswith(("paymigrate/provider/", "paymigrate_dev")) for k in entries)
    harness = REPO / "harness"
    assert not any(path.resolve().is_relative_to(harness) for path in entries.values())
    assert not any("__pycache__" in k or k.endswith(".pyc") for k in entries)
    # moto's copy of the functions (the local bootstrap's zip) holds the same files.
    with zipfile.ZipFile(io.BytesIO(lambda_bundle())) as zf:
        assert set(zf.namelist()) == set(entries)


def test_lifecycle_rules_match_the_seed():
    by_id = {r["id"]: r for r in lifecycle_rules("checkpoints")}
    assert by_id["infrequent-access-after-30-days"]["transitions"][0]["days"] == 30
    assert {r["id"] for r in lifecycle_rules("rollback")} >= {"keep-old-versions-90-days"}
    assert lifecycle_rules("dms-logs")[-1]["expiration"] == {"days": 30}
    with pytest.raises(ValueError):
        lifecycle_rules("other")
