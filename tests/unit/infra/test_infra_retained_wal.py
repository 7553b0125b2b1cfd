"""The retained-WAL alarm under Pulumi mocks watches exactly the metric the DAGs publish."""

from __future__ import annotations

import json

import pytest
from pulumi_harness import ACCOUNT, base_config, run_program

from paymigrate.replication.retention import NAMESPACE, SlotWal, metric_data

ENV = "dev"


@pytest.fixture(scope="module")
def mocks():
    return run_program(base_config(ENV, ephemeral=False))[0]


def test_retained_wal_alarm_watches_the_published_metric_and_pages_the_error_topic(mocks):
    [alarm] = [a for a in mocks.of("aws:cloudwatch/metricAlarm:MetricAlarm")
               if a.inputs["name"] == f"paymigrate-replication-slot-retained-wal-{ENV}"]
    published = metric_data([SlotWal("paymigrate_dev", 5 * 2**30, False, "extended")], env=ENV)[0]
    i = alarm.inputs
    assert (i["namespace"], i["metricName"]) == (NAMESPACE, published["MetricName"])
    assert i["dimensions"] == {d["Name"]: d["Value"] for d in published["Dimensions"]}
    assert i["statistic"] == "Maximum" and i["comparisonOperator"] == "GreaterThanThreshold"
    assert i["threshold"] == 20 * 2**30 and i["treatMissingData"] == "missing"
    error_topic = f"arn:aws:sns:eu-west-1:{ACCOUNT}:paymigrate-error-alerts-{ENV}"
    assert i["alarmActions"] == [error_topic] and i["okActions"] == [error_topic]
    assert "drops it" in i["alarmDescription"]


def test_the_dashboard_plots_retained_wal(mocks):
    (dashboard,) = mocks.of("aws:cloudwatch/dashboard:Dashboard")
    metrics = [m for w in json.loads(dashboard.inputs["dashboardBody"])["widgets"]
               for m in w["properties"]["metrics"]]
    assert [NAMESPACE, "ReplicationSlotRetainedWalBytes", "Environment", ENV] in metrics
