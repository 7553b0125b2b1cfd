"""The parameter contract refuses every bad value, naming the parameter and the value."""

from __future__ import annotations

import pytest

from paymigrate.aws import contract
from paymigrate.errors import ContractError


@pytest.mark.parametrize(("key", "value", "says"), [
    ("workflow/traffic-split-percentage", "120", "120 is above the maximum 100"),
    ("workflow/traffic-split-percentage", "-1", "-1 is below the minimum 0"),
    ("workflow/traffic-split-percentage", "12.5", "12.5 is not an integer"),
    ("workflow/mode", "cutovr", "cutovr is not one of preparation, replication"),
    ("monitoring/replication-lag-threshold-seconds", "-3", "-3 is below the minimum"),
    ("monitoring/replication-lag-threshold-seconds", "nan", "nan is not a number"),
    ("monitoring/validation-interval-minutes", "0", "0 is below the minimum 1"),
    ("rollback/error-threshold-percentage", "101", "101 is above the maximum 100"),
    ("workflow/canary-max-p99-ms", "0", "0 is below the minimum 1"),
    ("workflow/canary-max-p99-ms", "fast", "fast is not a number"),
    ("workflow/canary-max-stale-read-percentage", "100.5", "100.5 is above the maximum 100"),
    ("workflow/enable-cutover", "maybe", "maybe is not a boolean"),
    ("workflow/replication-engine", "mysql", "mysql is not one of postgres-logical, dms"),
    ("database/production/endpoint", "db.example.com", "is not a host:port endpoint"),
    ("database/production/endpoint", "db:70000", "port outside 1..65535"),
    ("database/source-secret-arn", "not-an-arn", "is not an ARN"),
    ("database/name", "  ", "a value is required"),
])
def test_bad_values_are_refused_by_name(key, value, says):
    with pytest.raises(ContractError) as err:
        contract.PARAMETERS[key].parse(value)
    assert str(err.value).startswith(f"{key}: ")
    assert says in str(err.value)


def test_secure_values_are_never_echoed():
    p = contract.PARAMETERS["api/auth-token"]
    assert p.secure
    assert p.parse("tok-123") == "tok-123"
    cfg = contract.Config("dev", {"api/auth-token": "tok-123", "workflow/mode": "cutover"})
    assert cfg.public() == {"workflow/mode": "cutover"}


def test_typed_values():
    P = contract.PARAMETERS
    assert P["workflow/enable-cutover"].parse("TRUE") is True
    assert P["workflow/enable-cutover"].parse("off") is False
    assert P["workflow/traffic-split-percentage"].parse("40") == 40
    assert P["monitoring/replication-lag-threshold-seconds"].parse("0.5") == 0.5
    assert P["database/production/endpoint"].parse("db.internal:5432") == "db.internal:5432"


def _complete() -> dict[str, str]:
    arn = "arn:aws:sns:ap-southeast-1:123456789012:t"
    values = {}
    for key, p in contract.PARAMETERS.items():
        if p.default is None:
            values[key] = {"endpoint": "h:5432", "arn": arn}.get(p.kind, "x")
    return values


def test_render_all_fills_defaults_and_requires_the_rest():
    out = contract.render_all(_complete(), "dev")
    assert set(out) == {p.path("dev") for p in contract.PARAMETERS.values()}
    assert out["/migration/dev/workflow/mode"] == ("preparation", False)
    assert out["/migration/dev/api/auth-token"] == ("x", True)
    incomplete = _complete()
    del incomplete["router/admin-endpoint"]
    with pytest.raises(ContractError, match="router/admin-endpoint: a value is required"):
        contract.render_all(incomplete, "dev")
    with pytest.raises(ContractError, match="not parameters of the contract: workflow/speed"):
        contract.render_all({**_complete(), "workflow/speed": "1"}, "dev")


def test_parse_stored_names_the_full_path_of_a_bad_value():
    with pytest.raises(ContractError, match=r"/migration/dev/workflow/traffic-split-percentage: 120"):
        contract.parse_stored([("/migration/dev/workflow/traffic-split-percentage", "120")], "dev")
    cfg = contract.parse_stored([("/migration/dev/workflow/mode", "rollback"),
                                 ("/migration/dev/unknown/thing", "1"),
                                 ("/migration/other/workflow/mode", "cutover")], "dev")
    assert dict(cfg) == {"workflow/mode": "rollback"}
    with pytest.raises(ContractError, match="/migration/dev/workflow/enable-cutover is not set"):
        cfg["workflow/enable-cutover"]


def test_environment_suffix_is_checked():
    with pytest.raises(ValueError, match="environment 'Prod!' is not a valid suffix"):
        contract.path("workflow/mode", "Prod!")
