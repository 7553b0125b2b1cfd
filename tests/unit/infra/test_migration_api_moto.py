"""The migration API in moto (mock_aws): the status and start-validation handlers against the
contract in SSM, the checkpoints in S3 and the state machine in Step Functions; then both routes
called through the TOKEN authorizer of the API deployed into moto from ``api_routes``.

What moto 5.2.5 does here, checked on this machine: it stores the REST API, authorizer, methods,
AWS_PROXY integrations, deployment and stage, and the Lambda functions with their handler and
environment; it does not serve a stage with Lambda integrations (its stage URL raises
NotImplementedError for AWS_PROXY, its server mode has no ``_user_request_`` path), never calls
an authorizer, and its Lambda runs code only in Docker (absent here: invoke answers "error running
docker"). So the ``through_authorizer`` tests go through ``moto_api.Gateway``, which reads the
deployment back from moto and runs each function's handler in this process
(``..._handlers_in_process`` in their names).
"""

from __future__ import annotations

import json

import api_authorizer
import boto3
import migration_status
import moto_api
import pytest
import start_validation
from moto import mock_aws

from paymigrate.aws import contract, migration_api, names, statemachines
from paymigrate.aws.checkpoints import LAST_VALIDATION, CheckpointStore

ENV = "apitest"
REGION = "eu-west-1"
TOKEN = "t0ken-for_the.api~test+/="
CLIENTS = ("ssm", "s3", "stepfunctions", "lambda", "apigateway", "iam")


def _clear_handler_caches():
    api_authorizer._token.cache_clear()
    migration_status._clients.cache_clear()
    start_validation._clients.cache_clear()


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("PAYMIGRATE_ENV", ENV)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # The session's local stack exports its moto server; mock_aws intercepts AWS's own hosts only.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        _clear_handler_caches()
        clients = {s: boto3.client(s, region_name=REGION) for s in CLIENTS}
        bucket = names.bucket_name("checkpoints", ENV)
        clients["s3"].create_bucket(Bucket=bucket,
                                    CreateBucketConfiguration={"LocationConstraint": REGION})
        role = clients["iam"].create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        machine = clients["stepfunctions"].create_state_machine(
            name=names.state_machine_name("validation", ENV), roleArn=role,
            definition=json.dumps(statemachines.validation_definition(
                validation_function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:"
                                        f"{names.resource_name('data-validation', ENV)}"))
        )["stateMachineArn"]
        for key, value in {"api/auth-token": TOKEN, "workflow/mode": "validation",
                           "database/active-writer": "source",
                           "workflow/traffic-split-percentage": 10,
                           "monitoring/replication-lag-threshold-seconds": 5,
                           "storage/checkpoints-bucket": bucket,
                           "workflows/validation-state-machine-arn": machine}.items():
            contract.write(clients["ssm"], key, value, ENV)
        yield clients, CheckpointStore(s3=clients["s3"], bucket=bucket, env=ENV), machine
        _clear_handler_caches()


def _migrate(store: CheckpointStore) -> str:
    """A migration that validated and cut over, and a scheduled validation after it, written by
    the library as the DAGs write them."""
    lock = store.acquire(run_id="run-1", dag_id="payment_migration")
    mid = lock.migration_id
    store.save(migration_id=mid, phase="validation", run_id="run-1", doc={
        "validate": {"status": "mismatch", "tables": [{"table": "public.payments", "status": "match"},
                                                     {"table": "public.refunds", "status": "mismatch"}]},
        "decide": {"validation": "match", "lag": {"seconds": 0.4, "bytes": 1024}}})
    store.set_state("cutover-ready")
    store.set_state("cutting-over", run_id="run-2")
    store.save(migration_id=mid, phase="cutover", run_id="run-2", doc={
        "approve_cutover": {"approved": True, "by": "ops@example.com", "at": "2099-01-01T10:00:00+00:00",
                            "figures": {"lag_seconds": 0.02, "lag_bytes": 0}},
        "write_switch": {"direction": "source->target", "write_pause_seconds": 0.1234,
                         "failed_step": None}})
    store.set_state("cut-over", run_id="run-2")
    store.put_doc(LAST_VALIDATION, {"run_id": "sched-9", "finished": "2099-01-02T00:00:00+00:00",
                                    "tables": 7, "rows_checked": 100, "mismatches": 0,
                                    "mismatched": []})
    return mid


def _status():
    answer = migration_status.handler({"httpMethod": "GET", "path": "/migration/status"}, None)
    return answer["statusCode"], json.loads(answer["body"])


# ---- the handlers against moto ---------------------------------------------------------------

def test_status_handler_reads_phase_lock_lag_validation_and_cutover_from_moto(aws):
    _, store, _ = aws
    mid = _migrate(store)
    code, body = _status()
    assert code == 200
    assert (body["env"], body["phase"], body["active_writer"], body["read_share_to_target"]) == (
        ENV, "validation", "source", 10)
    assert body["lock"]["state"] == "cut-over" and body["lock"]["migration_id"] == mid
    assert body["lock"]["run_id"] == "run-2"
    # The newest measurement: the cutover's approval, not the earlier validation decision.
    assert body["lag"] == {"seconds": 0.02, "bytes": 0, "at": "2099-01-01T10:00:00+00:00",
                           "measured_by": "cutover approval"}
    assert body["last_validation"]["kind"] == "scheduled"
    assert body["last_validation"]["run_id"] == "sched-9" and body["last_validation"]["tables"] == 7
    assert body["last_cutover"] == {"at": body["last_cutover"]["at"], "run_id": "run-2",
                                    "approved_by": "ops@example.com",
                                    "approved_at": "2099-01-01T10:00:00+00:00",
                                    "direction": "source->target", "write_pause_ms": 123.4,
                                    "failed_step": None}


def test_status_handler_shows_the_migration_s_validation_when_it_is_the_latest(aws):
    _, store, _ = aws
    store.acquire(run_id="run-1", dag_id="payment_migration")
    store.put_doc(LAST_VALIDATION, {"run_id": "sched-1", "finished": "2000-01-01T00:00:00+00:00",
                                    "tables": 7, "mismatches": 0, "mismatched": []})
    store.save(migration_id="run-1", phase="validation", run_id="run-1", doc={
        "validate": {"status": "mismatch", "tables": [{"table": "public.refunds",
                                                        "status": "mismatch"}]},
        "decide": {"lag": {"seconds": 1.5}}})
    code, body = _status()
    assert code == 200 and body["lock"]["state"] == "running" and body["last_cutover"] is None
    assert body["last_validation"]["kind"] == "migration"
    assert body["last_validation"]["mismatched_tables"] == ["public.refunds"]
    assert (body["lag"]["seconds"], body["lag"]["measured_by"]) == (1.5, "validation decision")


def test_status_handler_before_any_migration_says_so(aws):
    code, body = _status()
    assert code == 200
    assert body["lock"] is None and body["lag"] is None
    assert body["last_validation"] is None and body["last_cutover"] is None


def test_status_handler_names_an_unset_parameter(aws):
    clients, _, _ = aws
    clients["ssm"].delete_parameter(Name=contract.path("storage/checkpoints-bucket", ENV))
    code, body = _status()
    assert code == 500 and contract.path("storage/checkpoints-bucket", ENV) in body["error"]


def test_status_reads_only_plain_parameters():
    with pytest.raises(contract.ContractError, match="plain parameters only"):
        contract.read_keys(None, ENV, ["api/auth-token"])
    assert "api/auth-token" not in migration_api.STATUS_KEYS + migration_api.START_KEYS


def test_start_handler_starts_the_contract_s_machine_with_the_checked_options(aws):
    clients, _, machine = aws
    answer = start_validation.handler({
        "body": json.dumps({"tables": ["public.payments"], "max_keys": 5}),
        "requestContext": {"requestId": "req-1", "authorizer": {"principalId": "client"}}}, None)
    assert answer["statusCode"] == 202
    started = json.loads(answer["body"])
    execution = clients["stepfunctions"].describe_execution(executionArn=started["execution_arn"])
    assert execution["stateMachineArn"] == machine
    assert json.loads(execution["input"]) == {"tables": ["public.payments"], "max_keys": 5,
                                              "requested_by": "client"}
    assert started["name"].startswith("api-") and started["name"].endswith("-req-1")


@pytest.mark.parametrize(("body", "named"), [
    ("{", "body is not JSON"), ("[1]", "JSON object"), ('{"max_keys": -1}', "max_keys"),
    ('{"tables": "payments"}', "tables"), ('{"drop": 1}', "drop"),
])
def test_start_handler_refuses_a_bad_body_naming_it_and_starts_nothing(aws, body, named):
    clients, _, machine = aws
    answer = start_validation.handler({"body": body, "requestContext": {"requestId": "r"}}, None)
    assert answer["statusCode"] == 400 and named in json.loads(answer["body"])["error"]
    assert clients["stepfunctions"].list_executions(stateMachineArn=machine)["executions"] == []


# ---- through the authorizer of the API deployed in moto ---------------------------------------

@pytest.fixture
def gateway(aws):
    clients, store, machine = aws
    deployed = moto_api.deploy(clients, env=ENV, region=REGION)
    return moto_api.Gateway(clients, deployed), store, clients, machine


def test_status_through_authorizer_in_moto_handlers_in_process_200_with_the_token(gateway):
    gw, store, _, _ = gateway
    _migrate(store)
    answer = gw.request("GET", "/migration/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 200
    assert answer.body["phase"] == "validation" and answer.body["lock"]["state"] == "cut-over"
    assert answer.invoked == [names.resource_name("api-authorizer", ENV),
                              names.resource_name("migration-status-api", ENV)]


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),  # no token: API Gateway answers before any Lambda
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),  # fails the identity validation expression
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403),  # well-formed, wrong: the authorizer denies
    ({"Authorization": "Bearer wrong"}, 403),
])
def test_status_through_authorizer_in_moto_handlers_in_process_refused_without_the_token(
        gateway, headers, status):
    gw, _, _, _ = gateway
    answer = gw.request("GET", "/migration/status", headers=headers)
    assert answer.status == status
    assert names.resource_name("migration-status-api", ENV) not in answer.invoked
    assert answer.invoked == ([] if status == 401 else [names.resource_name("api-authorizer", ENV)])


def test_validation_through_authorizer_in_moto_handlers_in_process_starts_only_with_the_token(
        gateway):
    gw, _, clients, machine = gateway
    refused = gw.request("POST", "/migration/validation", body='{"max_keys": 3}',
                         headers={"Authorization": "Bearer wrong"})
    assert refused.status == 403
    assert clients["stepfunctions"].list_executions(stateMachineArn=machine)["executions"] == []
    answer = gw.request("POST", "/migration/validation", body='{"max_keys": 3}',
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 202
    (execution,) = clients["stepfunctions"].list_executions(stateMachineArn=machine)["executions"]
    assert execution["executionArn"] == answer.body["execution_arn"]
    assert json.loads(clients["stepfunctions"].describe_execution(
        executionArn=execution["executionArn"])["input"]) == {
        "max_keys": 3, "requested_by": "payments-api-client"}


def test_moto_deployment_is_the_shape_infra_deploys(gateway):
    _, _, clients, _ = gateway
    apigw = clients["apigateway"]
    (api,) = apigw.get_rest_apis()["items"]
    (authorizer,) = apigw.get_authorizers(restApiId=api["id"])["items"]
    assert authorizer["identityValidationExpression"] == moto_api.api_routes.TOKEN_PATTERN
    paths = {r["path"]: set(r.get("resourceMethods", {}))
             for r in apigw.get_resources(restApiId=api["id"])["items"]}
    for route in moto_api.api_routes.ROUTES:
        assert route.method in paths[route.resource_path]
    assert apigw.get_stage(restApiId=api["id"], stageName=moto_api.api_routes.STAGE)
