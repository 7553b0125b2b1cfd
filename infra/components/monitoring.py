"""Dashboard, alarms (to the error-alerts topic), log metric filters, DMS event subscriptions
and an EventBridge rule that reports failed workflow executions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from paymigrate.aws import names
from paymigrate.cutover import read_canary
from paymigrate.replication import retention
from paymigrate.validation import metrics

REPLICATION_NAMESPACE = retention.NAMESPACE
VALIDATION_NAMESPACE = metrics.NAMESPACE
VALIDATION_FUNCTION_ERRORS = "ValidationFunctionErrors"  # a log metric filter's, not a writer's
CANARY_ROUTE = "target"  # the read-only route, where the read canary sends its share of reads


def read_rate_queries(env: str, part: str, whole: tuple[str, ...], *, route: str = CANARY_ROUTE,
                      period: int = 60) -> list[dict[str, Any]]:
    """Metric math for ``100 * part / sum(whole)`` of the application's read figures on
    ``route`` (a minute with nothing to divide by is 0, not an error), as the alarm's queries.

    >>> [q.get("expression") for q in read_rate_queries("dev", "StaleReads", ("Reads",))]
    [None, None, 'reads', 'IF(whole > 0, 100 * staleReads / whole, 0)']
    """
    dims = {d["Name"]: d["Value"] for d in read_canary.dimensions(env, route)}
    ids = {m: m[0].lower() + m[1:] for m in (part, *whole)}  # an id starts lower case
    queries: list[dict[str, Any]] = [
        {"id": ids[metric], "return_data": False,
         "metric": {"namespace": read_canary.NAMESPACE, "metric_name": metric, "dimensions": dims,
                    "period": period, "stat": "Sum"}} for metric in ids]
    return queries + [
        {"id": "whole", "expression": " + ".join(ids[m] for m in whole), "return_data": False},
        {"id": "rate", "expression": f"IF(whole > 0, 100 * {ids[part]} / whole, 0)",
         "label": f"{part} per 100 of {' + '.join(whole)}", "return_data": True}]


def dashboard_body(*, env: str, region: str, source_cluster: str, target_cluster: str,
                   dms_instance: str, dms_task: str, validation_function: str,
                   api_name: str, api_stage: str, migration_machine_arn: str,
                   rollback_machine_arn: str) -> dict[str, Any]:
    """The CloudWatch dashboard: databases, DMS, validation, API and the workflows."""
    def widget(title: str, metrics: list[list[Any]], x: int, y: int, stat: str = "Average"
               ) -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "stat": stat, "period": 60,
                               "view": "timeSeries", "metrics": metrics}}

    rds, dms = "AWS/RDS", "AWS/DMS"
    cluster = "DBClusterIdentifier"
    task_dims = ["ReplicationInstanceIdentifier", dms_instance, "ReplicationTaskIdentifier",
                 dms_task]
    return {"widgets": [
        widget("Database CPU (%)", [
            [rds, "CPUUtilization", cluster, source_cluster, {"label": "source"}],
            [rds, "CPUUtilization", cluster, target_cluster, {"label": "target"}]], 0, 0),
        widget("Database connections", [
            [rds, "DatabaseConnections", cluster, source_cluster, {"label": "source"}],
            [rds, "DatabaseConnections", cluster, target_cluster, {"label": "target"}]], 12, 0),
        widget("DMS CDC latency (s)", [
            [dms, "CDCLatencySource", *task_dims], [dms, "CDCLatencyTarget", *task_dims]],
            0, 6, stat="Maximum"),
        widget("DMS throughput (rows/s)", [
            [dms, "CDCThroughputRowsSource", *task_dims],
            [dms, "CDCThroughputRowsTarget", *task_dims],
            [dms, "FullLoadThroughputRowsTarget", *task_dims]], 12, 6),
        widget("Validation function", [
            ["AWS/Lambda", "Invocations", "FunctionName", validation_function],
            ["AWS/Lambda", "Errors", "FunctionName", validation_function],
            ["AWS/Lambda", "Duration", "FunctionName", validation_function,
             {"stat": "Maximum"}]], 0, 12, stat="Sum"),
        widget("WAL retained by the migration's replication slots (bytes)", [
            [REPLICATION_NAMESPACE, retention.METRIC, "Environment", env]], 0, 30,
            stat="Maximum"),
        widget("Validation discrepancies and errors", [
            *metrics.dashboard_series(env, (metrics.Metric.MISMATCHES, metrics.Metric.MISMATCHED_TABLES,
                                            metrics.Metric.ERRORS)),
            [VALIDATION_NAMESPACE, VALIDATION_FUNCTION_ERRORS],
            [REPLICATION_NAMESPACE, "DmsTaskErrors"]], 12, 12, stat="Sum"),
        widget("Validation rows checked and time (s)", [
            *metrics.dashboard_series(env, (metrics.Metric.ROWS_CHECKED,)),
            *[[*row, {"yAxis": "right"}] for row in metrics.dashboard_series(
                env, (metrics.Metric.DURATION,))]], 0, 30, stat="Maximum"),
        widget("API requests and errors", [
            ["AWS/ApiGateway", "Count", "ApiName", api_name, "Stage", api_stage],
            ["AWS/ApiGateway", "4XXError", "ApiName", api_name, "Stage", api_stage],
            ["AWS/ApiGateway", "5XXError", "ApiName", api_name, "Stage", api_stage]],
            0, 18, stat="Sum"),
        widget("API latency (ms)", [
            ["AWS/ApiGateway", "Latency", "ApiName", api_name, "Stage", api_stage,
             {"stat": "p99"}]], 12, 18),
        widget("Reads per route (the read canary's application)", [
            [read_canary.NAMESPACE, metric, "Environment", env, "Route", route]
            for metric in (read_canary.READS, read_canary.READ_ERRORS, read_canary.STALE_READS)
            for route in read_canary.ROUTES], 12, 30, stat="Sum"),
        widget("Read p99 latency per route (ms)", [
            [read_canary.NAMESPACE, read_canary.READ_LATENCY_P99, "Environment", env, "Route", route]
            for route in read_canary.ROUTES], 0, 36, stat="Maximum"),
        widget("Workflow executions", [
            ["AWS/States", "ExecutionsSucceeded", "StateMachineArn", migration_machine_arn],
            ["AWS/States", "ExecutionsFailed", "StateMachineArn", migration_machine_arn],
            ["AWS/States", "ExecutionsFailed", "StateMachineArn", rollback_machine_arn]],
            0, 24, stat="Sum"),
    ]}


@dataclass
class MonitoringArgs:
    env: str
    region: str
    error_topic_arn: pulumi.Input[str]
    dms_topic_arn: pulumi.Input[str]
    source_cluster_id: pulumi.Input[str]
    target_cluster_id: pulumi.Input[str]
    dms_instance_id: pulumi.Input[str]
    dms_task_id: pulumi.Input[str]
    dms_task_log_group: pulumi.Input[str]
    validation_function_name: pulumi.Input[str]
    validation_log_group: pulumi.Input[str]
    api_name: pulumi.Input[str]
    api_stage: pulumi.Input[str]
    migration_machine_arn: pulumi.Input[str]
    rollback_machine_arn: pulumi.Input[str]
    replication_lag_threshold_seconds: float = 300.0
    # A slot left by a stopped or failed migration keeps WAL on its server until the disk fills.
    retained_wal_alarm_bytes: int = 20 * 2**30
    # The read canary's limits (the contract's), on the reads through the read-only route.
    read_error_rate_percent: float = 5.0
    read_p99_ms: float = 250.0
    stale_read_percent: float = 5.0


class Monitoring(pulumi.ComponentResource):
    dashboard_name: pulumi.Output[str]
    alarm_names: list[pulumi.Output[str]]

    def __init__(self, name: str, args: MonitoringArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env, a = args.env, args
        self.alarm_names = []

        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=names.resource_name("migration", env),
            dashboard_body=pulumi.Output.all(
                a.source_cluster_id, a.target_cluster_id, a.dms_instance_id, a.dms_task_id,
                a.validation_function_name, a.api_name, a.api_stage, a.migration_machine_arn,
                a.rollback_machine_arn,
            ).apply(lambda v: json.dumps(dashboard_body(
                env=env, region=a.region, source_cluster=v[0], target_cluster=v[1], dms_instance=v[2],
                dms_task=v[3], validation_function=v[4], api_name=v[5], api_stage=v[6],
                migration_machine_arn=v[7], rollback_machine_arn=v[8]))),
            opts=child)

        def alarm(role: str, description: str, *, namespace: str, metric: str,
                  dimensions: dict[str, pulumi.Input[str]] | None, statistic: str,
                  threshold: float, periods: int = 2, period: int = 60,
                  comparison: str = "GreaterThanThreshold",
                  missing: str = "notBreaching") -> None:
            created = aws.cloudwatch.MetricAlarm(
                f"{name}-{role}", name=names.resource_name(role, env),
                alarm_description=description, namespace=namespace, metric_name=metric,
                dimensions=dimensions, statistic=statistic, threshold=threshold,
                period=period, evaluation_periods=periods, comparison_operator=comparison,
                treat_missing_data=missing, alarm_actions=[a.error_topic_arn],
                ok_actions=[a.error_topic_arn], opts=child)
            self.alarm_names.append(created.name)

        for role, cluster_id in (("source", a.source_cluster_id), ("target", a.target_cluster_id)):
            alarm(f"{role}-db-cpu", f"{role} database CPU above 80% for 10 minutes",
                  namespace="AWS/RDS", metric="CPUUtilization",
                  dimensions={"DBClusterIdentifier": cluster_id}, statistic="Average",
                  threshold=80, periods=2, period=300, missing="missing")
        task_dims = {"ReplicationInstanceIdentifier": a.dms_instance_id,
                     "ReplicationTaskIdentifier": a.dms_task_id}
        alarm("dms-replication-lag", "DMS target latency above the lag threshold",
              namespace="AWS/DMS", metric="CDCLatencyTarget", dimensions=task_dims,
              statistic="Maximum", threshold=a.replication_lag_threshold_seconds, periods=3)
        alarm("replication-slot-retained-wal",
              "WAL kept by the migration's replication slots is above the limit: a stopped or "
              "stalled replication fills the database's disk. The failure alert names the slot "
              "and the command that drops it",
              namespace=REPLICATION_NAMESPACE, metric=retention.METRIC,
              dimensions={"Environment": env}, statistic="Maximum",
              threshold=a.retained_wal_alarm_bytes, periods=3, period=300,
              missing="missing")  # unpublished is unknown, not fine
        alarm("validation-errors", "Data validation function errors",
              namespace="AWS/Lambda", metric="Errors",
              dimensions={"FunctionName": a.validation_function_name}, statistic="Sum",
              threshold=5, periods=1, period=300)
        for role, arn in (("migration", a.migration_machine_arn),
                          ("rollback", a.rollback_machine_arn)):
            for metric in ("ExecutionsFailed", "ExecutionsTimedOut"):
                alarm(f"{role}-workflow-{metric.removeprefix('Executions').lower()}",
                      f"{role} workflow: {metric}", namespace="AWS/States", metric=metric,
                      dimensions={"StateMachineArn": arn}, statistic="Sum", threshold=0,
                      periods=1)
        for role, part, whole, limit, periods, what in (
            ("target-read-errors", read_canary.READ_ERRORS, (read_canary.READS, read_canary.READ_ERRORS),
             a.read_error_rate_percent, 1, "failed"),
            ("target-stale-reads", read_canary.STALE_READS, (read_canary.READS,), a.stale_read_percent, 2,
             "stale (the read-only route lags the writer)"),
        ):
            created = aws.cloudwatch.MetricAlarm(
                f"{name}-{role}", name=names.resource_name(role, env),
                alarm_description=f"More than {limit}% of the reads through the read-only route "
                                  f"were {what}: the read canary fails and its share of reads "
                                  "goes back to the source",
                metric_queries=[aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id=q["id"], expression=q.get("expression"), label=q.get("label"),
                    return_data=q["return_data"],
                    metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(**q["metric"])
                    if "metric" in q else None)
                    for q in read_rate_queries(env, part, whole)],
                threshold=limit, evaluation_periods=periods, comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",  # no reads on the route: no canary running
                alarm_actions=[a.error_topic_arn], ok_actions=[a.error_topic_arn], opts=child)
            self.alarm_names.append(created.name)
        alarm("target-read-latency-p99",
              f"p99 latency of the reads through the read-only route above {a.read_p99_ms} ms: "
              "the read canary fails and its share of reads goes back to the source",
              namespace=read_canary.NAMESPACE, metric=read_canary.READ_LATENCY_P99,
              dimensions={d["Name"]: d["Value"] for d in read_canary.dimensions(env, CANARY_ROUTE)},
              statistic="Maximum", threshold=a.read_p99_ms, periods=2)
        alarm("api-5xx", "Payments API server errors", namespace="AWS/ApiGateway",
              metric="5XXError", dimensions={"ApiName": a.api_name, "Stage": a.api_stage},
              statistic="Sum", threshold=10, periods=2, period=300)

        for role, log_group, namespace, metric, pattern in (
            ("dms-errors", a.dms_task_log_group, REPLICATION_NAMESPACE, "DmsTaskErrors",
             # DMS task log lines carry their severity as "]E:" (error) or "]F:" (fatal).
             '?"]E:" ?"]F:"'),
            ("validation-function-errors", a.validation_log_group, VALIDATION_NAMESPACE,
             VALIDATION_FUNCTION_ERRORS, '{ $.level = "ERROR" }'),
        ):
            aws.cloudwatch.LogMetricFilter(
                f"{name}-{role}-filter", name=names.resource_name(role, env),
                log_group_name=log_group, pattern=pattern,
                metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                    name=metric, namespace=namespace, value="1", default_value="0"),
                opts=child)
            alarm(role, f"{metric} in the logs", namespace=namespace, metric=metric,
                  dimensions=None, statistic="Sum", threshold=0, periods=1, period=300)

        for role, source_type, categories, source_id in (
            ("dms-task-events", "replication-task",
             ["failure", "state change", "configuration change", "deletion"], a.dms_task_id),
            ("dms-instance-events", "replication-instance",
             ["failure", "failover", "low storage", "configuration change", "deletion"],
             a.dms_instance_id),
        ):
            aws.dms.EventSubscription(
                f"{name}-{role}", name=names.resource_name(role, env),
                sns_topic_arn=a.dms_topic_arn, source_type=source_type,
                event_categories=categories, source_ids=[source_id], enabled=True, opts=child)

        rule = aws.cloudwatch.EventRule(
            f"{name}-workflow-failures", name=names.resource_name("workflow-failures", env),
            description="Failed, timed-out or aborted migration and rollback executions",
            event_pattern=pulumi.Output.all(a.migration_machine_arn, a.rollback_machine_arn)
            .apply(lambda arns: json.dumps({
                "source": ["aws.states"],
                "detail-type": ["Step Functions Execution Status Change"],
                "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"],
                           "stateMachineArn": list(arns)}})),
            opts=child)
        aws.cloudwatch.EventTarget(f"{name}-workflow-failures-target", rule=rule.name,
                                   arn=a.error_topic_arn, opts=child)

        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs({"dashboard_name": self.dashboard_name})
