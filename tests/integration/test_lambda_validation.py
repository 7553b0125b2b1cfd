"""The data validation Lambda, in-process, against moto and the two local servers."""

from __future__ import annotations

import json

import handlers
import psycopg2
import pytest
from psycopg2.extensions import parse_dsn

from paymigrate import aws
from paymigrate.aws import names
from paymigrate.aws.statemachines import VALIDATION_OK_FIELD
from paymigrate.errors import ValidationError
from paymigrate.validation import publish
from paymigrate_dev.local.bootstrap import bootstrap

pytestmark = pytest.mark.integration


def _run(dsn, statement):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def aws_objects(stack):
    bootstrap(stack)  # idempotent: puts back what a moto reset by another test removed
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"]
                 if t["TopicArn"].endswith(":" + names.topic_name("validation-alerts", stack.env)))
    queue = sqs.create_queue(QueueName="validation-alerts-test")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)["SubscriptionArn"]
    yield sqs, queue
    sns.unsubscribe(SubscriptionArn=sub)
    sqs.delete_queue(QueueUrl=queue)


def _messages(sqs, queue) -> list[dict]:
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return [json.loads(json.loads(m["Body"])["Message"]) for m in got]


def _handler_module():
    return handlers.load("data_validation")


def _clients():
    return {"ssm": aws.client("ssm"), "secrets": aws.client("secretsmanager"),
            "cloudwatch": aws.client("cloudwatch"), "sns": aws.client("sns")}


def test_publish_metrics_and_alert_with_keys_only(stack, databases, aws_objects):
    sqs, queue = aws_objects
    src, tgt = databases
    dbname = parse_dsn(src)["dbname"]
    for dsn in databases:
        _run(dsn, "CREATE TABLE cards (id int PRIMARY KEY, pan_token text);"
                  "INSERT INTO cards SELECT g, 'tok-secret-' || g FROM generate_series(1, 100) g")
    result = publish.run(env=stack.env, dbname=dbname, **_clients())
    assert result[VALIDATION_OK_FIELD] is True and result["status"] == "match"
    assert _messages(sqs, queue) == []

    _run(tgt, "DELETE FROM cards WHERE id = 77")
    result = publish.run(env=stack.env, dbname=dbname, event={"max_keys": 5}, **_clients())
    assert (result[VALIDATION_OK_FIELD], result["mismatches"]) == (False, 1)
    assert result["tables"][0]["missing"] == [77]
    [alert] = _messages(sqs, queue)
    assert alert["tables"][0]["missing"] == [77] and alert["env"] == stack.env
    text = json.dumps(alert) + json.dumps(result)
    password = stack.endpoint("source").password
    assert "tok-secret" not in text and password not in text
    metrics = aws.client("cloudwatch").list_metrics(Namespace=publish.NAMESPACE)["Metrics"]
    seen = {(m["MetricName"], tuple(d["Value"] for d in m.get("Dimensions", []))) for m in metrics}
    env = (stack.env,)
    assert {("Mismatches", env), ("RowsChecked", env), ("DurationSeconds", env),
            ("MismatchedTables", env), ("Mismatches", (stack.env, "public.cards"))} <= seen


def test_handler_reports_an_error_as_not_ok_and_alerts(stack, aws_objects, monkeypatch):
    data_validation = _handler_module()
    sqs, queue = aws_objects
    monkeypatch.setenv("PAYMIGRATE_ENV", stack.env)
    result = data_validation.handler({"tables": ["no_such_table_anywhere"]}, None)
    assert result[VALIDATION_OK_FIELD] is False and result["status"] == "error"
    assert "no_such_table_anywhere not found on the source" in result["error"]
    [alert] = _messages(sqs, queue)
    assert alert["status"] == "error"
    with pytest.raises(ValidationError, match="max_keys"):
        data_validation.handler({"max_keys": "lots"}, None)
