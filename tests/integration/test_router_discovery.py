"""In AWS the routers are the instances of the router hosts' Auto Scaling group, found when a
switch starts: against the moto server, a group as infra makes it (a launch template, hosts
across two subnets)."""

from __future__ import annotations

import uuid

import pytest

from paymigrate.errors import ContractError
from paymigrate.migration.platform import contract_routers
from paymigrate.routing.fleet import hosts_group_routers

SECRET = '{"host": "127.0.0.1", "port": 6432, "username": "router-admin", "password": "pw"}'


@pytest.fixture
def group(stack):
    ec2, autoscaling = stack.client("ec2"), stack.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
    name = f"paymigrate-test-rtr-{uuid.uuid4().hex[:6]}"
    template = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3.small"})["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=2, MaxSize=2, DesiredCapacity=2,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
        VPCZoneIdentifier=",".join(subnets))
    try:
        yield name
    finally:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)


def test_the_routers_are_the_groups_instances_by_private_address(stack, group):
    ec2, autoscaling = stack.client("ec2"), stack.client("autoscaling")
    specs = hosts_group_routers(autoscaling, ec2, group, agent_port=6433)
    instances = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]
    assert sorted(s.name for s in specs) == sorted(i["InstanceId"] for i in instances)
    assert all(s.agent_host.startswith("10.42.") and s.agent_port == 6433 for s in specs)
    assert len({s.agent_host for s in specs}) == 2

    config = {"router/hosts-group": group, "router/agent-port": 7433, "router/routers": "[]",
              "router/admin-endpoint": "127.0.0.1:6432"}
    nodes = contract_routers(config, SECRET, autoscaling=lambda: autoscaling, ec2=lambda: ec2)
    assert {(n.agent.host, n.agent.port) for n in nodes} == {(s.agent_host, 7433) for s in specs}


def test_a_group_that_does_not_exist_is_named(stack):
    with pytest.raises(ContractError, match="'no-such-group': no such Auto Scaling group"):
        hosts_group_routers(stack.client("autoscaling"), stack.client("ec2"), "no-such-group", agent_port=6433)


def test_local_routers_come_from_the_contract_list_and_make_no_aws_client():
    def no_client():
        raise AssertionError("no AWS client is needed for local routers")

    config = {"router/hosts-group": "local", "router/routers": '[{"name": "a", "agent": "127.0.0.1:7001"}]',
              "router/admin-endpoint": "127.0.0.1:6432"}
    nodes = contract_routers(config, SECRET, autoscaling=no_client, ec2=no_client)
    assert [(n.name, n.agent.port) for n in nodes] == [("a", 7001)]
