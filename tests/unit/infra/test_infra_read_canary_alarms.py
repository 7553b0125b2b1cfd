"""The read canary's alarms under Pulumi mocks: on the metrics the application publishes for the
target route, at the contract's limits, to the error-alerts topic, and among the alarms the
canary's gate lists."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from pulumi_harness import ACCOUNT, REGION

from paymigrate.aws import contract
from paymigrate.cutover.read_canary import NAMESPACE, RouteFigures, metric_data
from paymigrate.migration.service import environment_alarms

ENV = "dev"
ERROR_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:paymigrate-error-alerts-{ENV}"
ROLES = ("target-read-errors", "target-stale-reads", "target-read-latency-p99")


@pytest.fixture(scope="module")
def alarms(program_stack):
    mocks, _ = program_stack
    return {a.inputs["name"].removeprefix("paymigrate-").removesuffix(f"-{ENV}"): a.inputs
            for a in mocks.of("aws:cloudwatch/metricAlarm:MetricAlarm")}


def _published(route: str = "target") -> dict[str, dict]:
    """What the application puts to CloudWatch for ``route``, by metric name."""
    return {d["MetricName"]: d for d in metric_data([RouteFigures(route, 9, 1, 1, 3.0)], env=ENV)}


def _dims(datum: dict) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in datum["Dimensions"]}


@pytest.mark.parametrize(("role", "part", "whole", "limit", "periods"), [
    ("target-read-errors", "ReadErrors", ("Reads", "ReadErrors"),
     contract.PARAMETERS["rollback/error-threshold-percentage"].default, 1),
    ("target-stale-reads", "StaleReads", ("Reads",),
     contract.PARAMETERS["workflow/canary-max-stale-read-percentage"].default, 2),
])
def test_rate_alarms_divide_the_published_counts_of_the_target_route(alarms, role, part, whole, limit,
                                                                     periods):
    i = alarms[role]
    queries = {q["id"]: q for q in i["metricQueries"]}
    counts = {q["metric"]["metricName"]: q for q in queries.values() if "metric" in q}
    assert set(counts) == {part, *whole}
    published = _published()
    for name, q in counts.items():
        m = q["metric"]
        assert (m["namespace"], m["stat"], m["period"]) == (NAMESPACE, "Sum", 60)
        assert m["dimensions"] == _dims(published[name]) == {"Environment": ENV, "Route": "target"}
        assert q["returnData"] is False
    [rate] = [q for q in queries.values() if q.get("returnData")]
    part_id = counts[part]["id"]
    assert rate["expression"] == f"IF(whole > 0, 100 * {part_id} / whole, 0)"
    assert queries["whole"]["expression"] == " + ".join(counts[m]["id"] for m in whole)
    assert "namespace" not in i and "metricName" not in i  # metric math, not one metric
    assert i["threshold"] == limit and i["comparisonOperator"] == "GreaterThanThreshold"
    assert i["evaluationPeriods"] == periods and i["treatMissingData"] == "notBreaching"
    assert i["alarmActions"] == [ERROR_TOPIC] and i["okActions"] == [ERROR_TOPIC]


def test_the_p99_alarm_watches_the_published_latency_at_the_contracts_limit(alarms, program_stack):
    i = alarms["target-read-latency-p99"]
    published = _published()["ReadLatencyP99"]
    assert (i["namespace"], i["metricName"]) == (NAMESPACE, published["MetricName"])
    assert i["dimensions"] == _dims(published) == {"Environment": ENV, "Route": "target"}
    assert i["statistic"] == "Maximum" and i["period"] == 60 and i["evaluationPeriods"] == 2
    # base_config sets workflow/canary-max-p99-ms to 400: the alarm and the gate read one value.
    assert i["threshold"] == 400.0 and i["comparisonOperator"] == "GreaterThanThreshold"
    assert i["alarmActions"] == [ERROR_TOPIC] and i["okActions"] == [ERROR_TOPIC]
    mocks, _ = program_stack
    [written] = [p for p in mocks.of("aws:ssm/parameter:Parameter")
                 if p.inputs["name"] == f"/migration/{ENV}/workflow/canary-max-p99-ms"]
    assert contract.PARAMETERS["workflow/canary-max-p99-ms"].parse(written.inputs["insecureValue"]) == 400.0


def test_the_dashboard_plots_every_route_figure(program_stack):
    mocks, _ = program_stack
    (dashboard,) = mocks.of("aws:cloudwatch/dashboard:Dashboard")
    charted = {tuple(m) for w in json.loads(dashboard.inputs["dashboardBody"])["widgets"]
               for m in w["properties"]["metrics"] if m[0] == NAMESPACE}
    for route in ("writer", "target"):
        for datum in _published(route).values():
            row = (NAMESPACE, datum["MetricName"], *(v for d in datum["Dimensions"]
                                                     for v in (d["Name"], d["Value"])))
            assert row in charted, row


@mock_aws
def test_the_canary_gate_lists_these_alarms_when_they_fire(alarms, monkeypatch):
    """Created in (in-process) moto under the names infra gives them and set to ALARM, each is
    among the alarms the canary's gate fails on; another environment's is not."""
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    cw = boto3.client("cloudwatch", region_name=REGION)
    names = [f"paymigrate-{role}-{ENV}" for role in ROLES] + [f"paymigrate-{ROLES[0]}-prod"]
    for name in names:
        cw.put_metric_alarm(AlarmName=name, Namespace=NAMESPACE, MetricName="Reads", Statistic="Sum",
                            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    assert environment_alarms(cw, ENV) == []
    for name in names:
        cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    assert sorted(environment_alarms(cw, ENV)) == sorted(names[:3])
    assert all(role in alarms for role in ROLES)
