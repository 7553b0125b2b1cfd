"""The API authorizer handler in-process against moto's SSM (mock_aws)."""

from __future__ import annotations

import logging

import api_authorizer
import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from paymigrate.aws import authorizer, contract

ENV = "authz"
TOKEN = "pR0d-t0ken_with.all~chars+/="
ARN = "arn:aws:execute-api:eu-west-1:123456789012:abc123/live/GET/payments"


@pytest.fixture
def ssm(monkeypatch):
    monkeypatch.setenv("PAYMIGRATE_ENV", ENV)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # The session's local stack exports its moto server; mock_aws intercepts AWS's own hosts only.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("ssm", region_name="eu-west-1")
        client.put_parameter(Name=contract.path("api/auth-token", ENV), Value=TOKEN,
                             Type="SecureString")
        api_authorizer._token.cache_clear()
        yield client
        api_authorizer._token.cache_clear()


def decide(header, method_arn=ARN):
    event = {"type": "TOKEN", "methodArn": method_arn}
    if header is not None:
        event["authorizationToken"] = header
    return api_authorizer.handler(event, None)


def effect(response) -> str:
    return response["policyDocument"]["Statement"][0]["Effect"]


def test_right_token_is_allowed_for_the_stage_of_the_request(ssm, caplog):
    caplog.set_level(logging.DEBUG)
    response = decide(f"Bearer {TOKEN}")
    assert effect(response) == "Allow"
    assert response["policyDocument"]["Statement"][0]["Resource"] == (
        "arn:aws:execute-api:eu-west-1:123456789012:abc123/live/*/*")
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", f"bearer {TOKEN}", f"Basic {TOKEN}", f"Bearer  {TOKEN}",
    f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN} extra", "Bearer \u00e9t\u00e9",
    "Bearer " + "A" * 4090, 12345, ["Bearer", TOKEN],
])
def test_anything_else_is_denied_never_raised(ssm, caplog, header):
    caplog.set_level(logging.DEBUG)
    response = decide(header)
    assert effect(response) == "Deny"
    assert response["policyDocument"]["Statement"][0]["Resource"] == ARN
    assert TOKEN not in caplog.text


def test_oversize_header_with_the_right_token_inside_is_denied(ssm):
    assert effect(decide(f"Bearer {TOKEN}" + "=" * 4096)) == "Deny"


def test_event_without_a_method_arn_denies_everything(ssm):
    response = decide(f"Bearer {TOKEN}", method_arn="not-an-arn")
    assert effect(response) == "Deny"
    assert response["policyDocument"]["Statement"][0]["Resource"] == "*"


def test_unreadable_token_parameter_fails_closed(ssm):
    ssm.delete_parameter(Name=contract.path("api/auth-token", ENV))
    assert effect(decide(f"Bearer {TOKEN}")) == "Deny"


def test_token_is_cached_for_the_ttl_then_reread():
    reads = []
    now = [0.0]

    class Ssm:
        def get_parameter(self, Name, WithDecryption):
            assert WithDecryption is True
            reads.append(Name)
            return {"Parameter": {"Value": f"t{len(reads)}"}}

    source = authorizer.ParameterToken(Ssm(), "/migration/x/api/auth-token", ttl_seconds=60,
                                       clock=lambda: now[0])
    assert source.get() == "t1" and source.get() == "t1"
    now[0] = 59.9
    assert source.get() == "t1"
    now[0] = 60.0
    assert source.get() == "t2" and len(reads) == 2


def test_empty_stored_token_never_matches():
    event = {"methodArn": ARN, "authorizationToken": "Bearer x"}
    assert effect(authorizer.authorize(event, lambda: "")) == "Deny"


@settings(max_examples=200, deadline=None)
@given(header=st.one_of(st.none(), st.text(max_size=5000), st.binary(max_size=64),
                        st.integers(), st.lists(st.text(max_size=5))))
def test_no_header_ever_raises_or_allows_without_the_token(header):
    event = {"methodArn": ARN, "authorizationToken": header}
    response = authorizer.authorize(event, lambda: TOKEN)
    allowed = effect(response) == "Allow"
    assert allowed == (header == f"Bearer {TOKEN}")
