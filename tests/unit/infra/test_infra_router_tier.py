"""The router tier under Pulumi mocks: hosts, NLB, security group rules, contract parameters."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
import router_host
from pulumi_harness import base_config, run_program

from paymigrate.aws import contract, names

ENV = "dev"
AGENT_PORT = contract.PARAMETERS["router/agent-port"].default
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


def _one(mocks, typ):
    found = mocks.of(typ)
    assert len(found) == 1, f"{typ}: {len(found)}"
    return found[0]


def _sg_id(mocks, name):
    return mocks.by_id(f"routers-{name}-sg-id").id


def _rules(mocks, typ, port):
    return [r for r in mocks.of(typ) if r.inputs["fromPort"] <= port <= r.inputs["toPort"]]


def test_hosts_span_the_production_private_subnets_behind_the_target_group(program_stack):
    mocks, _ = program_stack
    group = _one(mocks, "aws:autoscaling/group:Group")
    assert group.inputs["name"] == names.router_hosts_name(ENV)
    assert group.inputs["minSize"] == group.inputs["maxSize"] == group.inputs["desiredCapacity"] == 2
    assert group.inputs["vpcZoneIdentifiers"] == [
        f"network-production-private-{i}-id" for i in range(3)]
    assert group.inputs["healthCheckType"] == "ELB"
    assert group.inputs["targetGroupArns"] == [_one(mocks, "aws:lb/targetGroup:TargetGroup").state["arn"]]
    assert "AZRebalance" in group.inputs["suspendedProcesses"]

    template = _one(mocks, "aws:ec2/launchTemplate:LaunchTemplate")
    assert group.inputs["launchTemplate"]["id"] == template.id
    assert template.inputs["metadataOptions"]["httpTokens"] == "required"  # IMDSv2 only
    ebs = template.inputs["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["kmsKeyId"].startswith("arn:aws:kms:")
    assert template.inputs["vpcSecurityGroupIds"] == [_sg_id(mocks, "hosts")]
    assert template.inputs["imageId"].startswith("resolve:ssm:/aws/service/canonical/ubuntu/")


def test_user_data_installs_pgbouncer_and_the_agent_with_credentials_from_secrets_manager(
        program_stack):
    mocks, _ = program_stack
    template = _one(mocks, "aws:ec2/launchTemplate:LaunchTemplate")
    script = base64.b64decode(template.inputs["userData"]).decode()
    assert len(script.encode()) < 16 * 1024  # EC2's user data limit
    parsed = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert parsed.returncode == 0, parsed.stderr
    assert "apt-get install -y pgbouncer" in script
    assert "pip install --no-deps https://artifacts.example.com/paymigrate-0.1.0" in script
    assert f"-m {router_host.AGENT_MODULE} serve --config {router_host.AGENT_CONFIG}" in script
    assert f"-m {router_host.AGENT_MODULE} recover --config {router_host.AGENT_CONFIG}" in script
    assert "host pgbouncer all 0.0.0.0/0 reject" in script  # the console: loopback only
    assert "pool_mode = transaction" in script and "server_tls_sslmode = verify-full" in script
    secrets = {s.inputs["name"]: s.state["arn"]
               for s in mocks.of("aws:secretsmanager/secret:Secret")}
    for role in ("router-admin", "app-db"):
        assert secrets[names.secret_name(role, ENV)] in script, role
    # No credential in the template: "password" only as the key read from the secrets at boot.
    assert "password" not in script.replace('["password"]', "")
    logs = {g.inputs["name"] for g in mocks.of("aws:cloudwatch/logGroup:LogGroup")}
    assert f"/paymigrate/{ENV}/router-hosts" in logs and f"/paymigrate/{ENV}/router-hosts" in script


def test_nlb_is_internal_and_forwards_6432_to_the_hosts(program_stack):
    mocks, _ = program_stack
    nlb = _one(mocks, "aws:lb/loadBalancer:LoadBalancer")
    assert nlb.inputs["internal"] is True and nlb.inputs["loadBalancerType"] == "network"
    assert nlb.inputs["subnets"] == [f"network-production-private-{i}-id" for i in range(3)]
    assert nlb.inputs["securityGroups"] == [_sg_id(mocks, "nlb")]
    listener = _one(mocks, "aws:lb/listener:Listener")
    targets = _one(mocks, "aws:lb/targetGroup:TargetGroup")
    assert (listener.inputs["port"], listener.inputs["protocol"]) == (6432, "TCP")
    assert listener.inputs["defaultActions"] == [{"type": "forward",
                                                  "targetGroupArn": targets.state["arn"]}]
    assert (targets.inputs["port"], targets.inputs["protocol"]) == (6432, "TCP")
    assert len(nlb.inputs["name"]) <= 32 and len(targets.inputs["name"]) <= 32


def test_6432_and_the_admin_path_are_open_only_between_named_security_groups(program_stack):
    mocks, _ = program_stack
    clients, operators = _sg_id(mocks, "clients"), _sg_id(mocks, "operators")
    nlb, hosts = _sg_id(mocks, "nlb"), _sg_id(mocks, "hosts")
    rollback_lambda = "network-validation-lambda-sg-id"
    for port in (6432, AGENT_PORT):
        for rule in _rules(mocks, INGRESS, port):
            # Not only 0.0.0.0/0: no address range at all reaches these ports.
            assert not rule.inputs.get("cidrIpv4") and not rule.inputs.get("cidrIpv6"), rule.name
            assert rule.inputs["referencedSecurityGroupId"], rule.name
        for rule in _rules(mocks, EGRESS, port):
            # A group may leave its VPC toward the hosts by address only (the TGW carries
            # references inbound, not outbound): the rollback steps' way to the agents.
            if rule.inputs.get("cidrIpv4"):
                assert (rule.inputs["securityGroupId"], port, rule.inputs["cidrIpv4"]) == (
                    rollback_lambda, AGENT_PORT, "10.0.0.0/16"), rule.name
            else:
                assert rule.inputs["referencedSecurityGroupId"], rule.name
    ingress_6432 = {(r.inputs["securityGroupId"], r.inputs["referencedSecurityGroupId"])
                    for r in _rules(mocks, INGRESS, 6432)}
    assert ingress_6432 == {(nlb, clients), (hosts, nlb)}
    ingress_agent = {(r.inputs["securityGroupId"], r.inputs["referencedSecurityGroupId"])
                     for r in _rules(mocks, INGRESS, AGENT_PORT)}
    assert ingress_agent == {(hosts, operators), (hosts, rollback_lambda)}
    tgw = mocks.of("aws:ec2transitgateway/transitGateway:TransitGateway")
    assert [t.inputs["securityGroupReferencingSupport"] for t in tgw] == ["enable"]
    # The hosts reach out to the databases' VPCs on 5432 and to AWS on 443 and 80, nothing else.
    out = {(r.inputs["fromPort"], r.inputs.get("cidrIpv4")) for r in mocks.of(EGRESS)
           if r.inputs["securityGroupId"] == hosts}
    assert out == {(5432, "10.0.0.0/16"), (5432, "10.1.0.0/16"), (443, "0.0.0.0/0"),
                   (80, "0.0.0.0/0")}


def test_host_role_reads_only_the_contract_and_its_three_secrets(program_stack):
    mocks, _ = program_stack
    policy = json.loads(next(p for p in mocks.of("aws:iam/rolePolicy:RolePolicy")
                             if p.name == "routers-policy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadRouterCredentials"]["Resource"] == [
        next(s.state["arn"] for s in mocks.of("aws:secretsmanager/secret:Secret")
             if s.inputs["name"] == names.secret_name(role, ENV))
        for role in router_host.SECRETS]
    assert by_sid["ReadMigrationParameters"]["Resource"][1].endswith(f"parameter/migration/{ENV}/*")
    # The key decrypts through Secrets Manager only: the SecureString API token stays unreadable.
    assert by_sid["UseKeyThroughSecretsmanager"]["Condition"]["StringEquals"][
        "kms:ViaService"] == ["secretsmanager.eu-west-1.amazonaws.com"]
    attachments = {a.inputs["policyArn"] for a in mocks.of("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore" in attachments


def test_contract_names_the_tier(program_stack):
    mocks, _ = program_stack
    written = {p.inputs["name"]: p.inputs.get("insecureValue")
               for p in mocks.of("aws:ssm/parameter:Parameter")}
    nlb = _one(mocks, "aws:lb/loadBalancer:LoadBalancer")
    assert written[contract.path("router/endpoint", ENV)] == f"{nlb.state['dnsName']}:6432"
    assert written[contract.path("router/hosts-group", ENV)] == names.router_hosts_name(ENV)
    assert written[contract.path("router/agent-port", ENV)] == str(AGENT_PORT)
    assert written[contract.path("router/admin-endpoint", ENV)] == "127.0.0.1:6432"


def test_one_router_is_refused_before_anything_is_built():
    with pytest.raises(Exception, match="routerCount: 1"):
        run_program(base_config("one", routerCount=1), stack="one")


def test_user_data_refuses_a_missing_secret_and_names_fit_any_env():
    with pytest.raises(ValueError, match="app-db"):
        router_host.user_data(env="dev", region="eu-west-1", package="p", log_group="/g",
                              secret_arns={"router-admin": "arn:a"}, agent_port=6433)
    longest = "e" * 20
    assert max(len(names.load_balancer_name(r, longest)) for r in names.LOAD_BALANCERS) <= 32


def _boot(tmp_path, monkeypatch, writer):
    """Run the hosts' first-boot script in this process against moto: the secrets and the
    contract as infra writes them."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    env, region = "boot", "eu-west-1"
    with mock_aws():
        sm, ssm = boto3.client("secretsmanager", region), boto3.client("ssm", region)
        arns = {role: sm.create_secret(Name=names.secret_name(role, env), SecretString=json.dumps(
            {"username": f"{role}-user", "password": f"{role}-pw"}))["ARN"]
            for role in router_host.SECRETS}
        routes = tmp_path / "databases.ini"
        for key, value in {"database/active-writer": writer,
                           "database/production/endpoint": "src.example:5432",
                           "database/migration/endpoint": "tgt.example:5433",
                           "database/name": "payments", "router/database": "payments"}.items():
            contract.write(ssm, key, value, env)
        monkeypatch.setattr("sys.argv", ["-", env, region, json.dumps(arns), str(tmp_path), "6433"])
        exec(compile(router_host.BOOT_SCRIPT, "boot", "exec"), {"__name__": "__main__"})
    return routes


@pytest.mark.parametrize(("writer", "host"), [("source", "host=src.example port=5432"),
                                              ("target", "host=tgt.example port=5433")])
def test_boot_writes_credentials_from_secrets_and_routes_to_the_current_writer(
        tmp_path, monkeypatch, writer, host):
    routes = _boot(tmp_path, monkeypatch, writer)
    # The read-only route goes to the target whoever writes.
    assert routes.read_text() == (f"[databases]\npayments = {host} dbname=payments\n"
                                  "payments_ro = host=tgt.example port=5433 dbname=payments\n")
    userlist = tmp_path / "userlist.txt"
    assert userlist.read_text() == ('"router-admin-user" "router-admin-pw"\n'
                                    '"app-db-user" "app-db-pw"\n"reader-db-user" "reader-db-pw"\n')
    assert userlist.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "admin_users").read_text() == "router-admin-user"
    assert (tmp_path / "read_only_user").read_text() == "reader-db-user"
    # The route agent's config and key, as the agent itself loads them.
    from paymigrate.routing.agent import AgentConfig

    agent = AgentConfig.load(tmp_path / "agent.json")
    assert (agent.listen, agent.port, agent.routes_file) == ("0.0.0.0", 6433, routes)
    assert (agent.admin.host, agent.admin.port, agent.admin.user) == ("127.0.0.1", 6432, "router-admin-user")
    assert agent.key == b"router-admin-pw" and (tmp_path / "router-admin.key").stat().st_mode & 0o777 == 0o600


def test_the_hosts_hba_lets_only_the_read_only_role_through_the_read_only_route(tmp_path):
    """The hba file as bash writes it at boot: the role named by the reader-db secret, and the
    console from loopback only."""
    text = router_host.user_data(env="dev", region="eu-west-1", package="p", log_group="/g",
                                 secret_arns={r: f"arn:{r}" for r in router_host.SECRETS}, agent_port=6433)
    script = text[text.index("cat > /etc/pgbouncer/pg_hba.conf"):].split("\nHBA\n", 1)[0] + "\nHBA\n"
    (tmp_path / "read_only_user").write_text("ro_user")
    subprocess.run(["bash", "-euc", script.replace("/etc/pgbouncer/", f"{tmp_path}/")], check=True)
    hba = (tmp_path / "pg_hba.conf").read_text().splitlines()
    assert hba == ["host pgbouncer all 127.0.0.1/32 scram-sha-256", "host pgbouncer all 0.0.0.0/0 reject",
                   "host payments_ro ro_user 0.0.0.0/0 scram-sha-256", "host payments_ro all 0.0.0.0/0 reject",
                   "host all ro_user 0.0.0.0/0 reject", "host all all 0.0.0.0/0 scram-sha-256"]


def test_boot_after_a_reboot_keeps_the_route_the_agent_wrote(tmp_path, monkeypatch):
    (tmp_path / "databases.ini").write_text("[databases]\npayments = host=tgt.example\n")
    routes = _boot(tmp_path, monkeypatch, "source")
    assert routes.read_text() == "[databases]\npayments = host=tgt.example\n"


def test_example_stack_config_builds_the_tier():
    """Pulumi.dev.yaml (what an operator copies) still runs the program: no removed key
    (routerEndpoint, routerAdminEndpoint), the tier's own keys set."""
    import yaml
    from pulumi_harness import API_TOKEN, REPO

    raw = yaml.safe_load((REPO / "infra" / "Pulumi.dev.yaml").read_text())["config"]
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
    config["paymigrate:apiAuthToken"] = API_TOKEN
    mocks, _ = run_program(config, stack="example")
    (group,) = mocks.of("aws:autoscaling/group:Group")
    assert group.inputs["desiredCapacity"] == raw["paymigrate:routerCount"]
    assert not {"paymigrate:routerEndpoint", "paymigrate:routerAdminEndpoint"} & set(raw)


def test_the_rollback_steps_may_find_the_router_hosts_and_sign_the_agents_calls(program_stack):
    mocks, _ = program_stack
    policy = json.loads(next(p for p in mocks.of("aws:iam/rolePolicy:RolePolicy")
                             if p.name == "functions-rollback-steps-policy").inputs["policy"])
    statements = policy["Statement"]
    router_admin = next(s.state["arn"] for s in mocks.of("aws:secretsmanager/secret:Secret")
                        if s.inputs["name"] == names.secret_name("router-admin", ENV))
    assert any(router_admin in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])
               and "secretsmanager:GetSecretValue" in st["Action"] for st in statements)
    find = next(st for st in statements if st["Sid"] == "FindRouterHosts")
    assert sorted(find["Action"]) == ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"]
