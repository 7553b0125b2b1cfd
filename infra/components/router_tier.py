"""The router tier in the production VPC: PgBouncer hosts across AZs behind an internal NLB.

EC2 Auto Scaling rather than ECS: the route agent rewrites PgBouncer's route file and talks to
its admin console on the same host, so both belong in one machine with one filesystem; on ECS
that is a sidecar with a shared volume, and a task's address changes with every placement. One
PgBouncer per instance, one instance per AZ at least, and the ASG replaces a failed host (which
takes the current writer from the contract at boot, see ``router_host``).

Who reaches what:
- applications (members of the ``router-clients`` group) reach the NLB on 6432, the NLB reaches
  the hosts on 6432; nothing else reaches 6432;
- the orchestration side (members of ``router-operators``: Airflow workers) reaches each host's
  route agent; the admin console answers on loopback only, so the agent is the admin path;
- the hosts reach the databases on 5432 and AWS APIs on 443 (packages on 80 at first boot).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import policies
import pulumi
import pulumi_aws as aws
import router_host

from paymigrate.aws import contract, names

PGBOUNCER_PORT = router_host.PGBOUNCER_PORT
POSTGRES_PORT = 5432
ANYWHERE = "0.0.0.0/0"


@dataclass
class RouterTierArgs:
    env: str
    region: str
    partition: pulumi.Input[str]
    account_id: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]  # one private subnet per AZ of the production VPC
    source_db_sg_id: pulumi.Input[str]
    database_cidrs: Sequence[str]  # where the writers live: both VPCs
    kms_key_arn: pulumi.Input[str]
    secret_arns: Mapping[str, pulumi.Input[str]]  # router-admin and app-db
    package: str  # pip requirement of the paymigrate wheel the hosts install
    host_count: int = 2
    instance_type: str = "t3.medium"
    agent_port: int = contract.PARAMETERS["router/agent-port"].default
    log_retention_days: int = 90
    # Groups in the migration VPC that call the agents over the transit gateway (the
    # rollback-steps function); the Airflow workers join the operators group instead.
    agent_caller_sg_ids: Sequence[pulumi.Input[str]] = ()


class RouterTier(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]  # host:port of the NLB, what the applications use
    hosts_group_name: pulumi.Output[str]
    clients_sg_id: pulumi.Output[str]
    operators_sg_id: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: RouterTierArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:router:RouterTier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = args.env
        if args.host_count < 2:
            raise ValueError(f"routerCount: {args.host_count}; one router is a single point of "
                             "failure, at least 2")
        hosts_name = names.router_hosts_name(env)

        def group(role: str, description: str) -> aws.ec2.SecurityGroup:
            sg_name = names.resource_name(f"router-{role}-sg", env)
            return aws.ec2.SecurityGroup(f"{name}-{role}-sg", name=sg_name,
                                         description=description, vpc_id=args.vpc_id,
                                         tags={"Name": sg_name}, opts=child)

        clients = group("clients", "Applications that use the payments database via PgBouncer")
        operators = group("operators", "Orchestration (Airflow workers) that changes routes")
        nlb_sg = group("nlb", "Router NLB: PgBouncer port from the applications only")
        hosts_sg = group("hosts", "PgBouncer hosts: 6432 from the NLB, the agent from operators")

        def rule(role: str, kind: str, sg: aws.ec2.SecurityGroup | pulumi.Input[str], port: int,
                 description: str, *, peer: pulumi.Input[str] | None = None,
                 cidr: str | None = None) -> None:
            cls = aws.vpc.SecurityGroupIngressRule if kind == "in" else \
                aws.vpc.SecurityGroupEgressRule
            sg_id = sg.id if isinstance(sg, aws.ec2.SecurityGroup) else sg
            cls(f"{name}-{role}", security_group_id=sg_id, description=description,
                ip_protocol="tcp", from_port=port, to_port=port, cidr_ipv4=cidr,
                referenced_security_group_id=peer, opts=child)

        rule("clients-to-nlb", "out", clients, PGBOUNCER_PORT, "PgBouncer through the NLB",
             peer=nlb_sg.id)
        rule("nlb-from-clients", "in", nlb_sg, PGBOUNCER_PORT, "PgBouncer from applications",
             peer=clients.id)
        rule("nlb-to-hosts", "out", nlb_sg, PGBOUNCER_PORT, "PgBouncer on the hosts",
             peer=hosts_sg.id)
        rule("hosts-from-nlb", "in", hosts_sg, PGBOUNCER_PORT, "PgBouncer (and health checks) "
             "from the NLB", peer=nlb_sg.id)
        rule("operators-to-agent", "out", operators, args.agent_port, "Route agent",
             peer=hosts_sg.id)
        rule("hosts-agent-from-operators", "in", hosts_sg, args.agent_port,
             "Route agent from the orchestration side only", peer=operators.id)
        for i, caller in enumerate(args.agent_caller_sg_ids):
            rule(f"hosts-agent-from-caller-{i}", "in", hosts_sg, args.agent_port,
                 "Route agent from the rollback steps (migration VPC, over the TGW)", peer=caller)
        for i, cidr in enumerate(args.database_cidrs):
            rule(f"hosts-to-postgres-{i}", "out", hosts_sg, POSTGRES_PORT,
                 f"PostgreSQL writers in {cidr}", cidr=cidr)
        rule("hosts-to-aws-apis", "out", hosts_sg, 443, "HTTPS: AWS APIs, CloudWatch Logs, "
             "the CA bundle", cidr=ANYWHERE)
        # Debian/Ubuntu mirrors serve packages over plain HTTP (signed), at first boot.
        rule("hosts-to-packages", "out", hosts_sg, 80, "Package mirrors", cidr=ANYWHERE)
        # The source's group belongs to the network; this rule belongs to the routers.
        rule("source-db-from-routers", "in", args.source_db_sg_id, POSTGRES_PORT,
             "PostgreSQL from the router hosts", peer=hosts_sg.id)

        logs = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/paymigrate/{env}/router-hosts",
            retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn, opts=child)

        role = aws.iam.Role(f"{name}-role", name=hosts_name,
                            assume_role_policy=json.dumps(policies.assume_role("ec2.amazonaws.com")),
                            opts=child)
        # Session Manager instead of SSH: no port 22 anywhere, every session logged.
        aws.iam.RolePolicyAttachment(
            f"{name}-ssm-core", role=role.name,
            policy_arn=pulumi.Output.concat("arn:", args.partition,
                                            ":iam::aws:policy/AmazonSSMManagedInstanceCore"),
            opts=child)
        secret_roles = router_host.SECRETS
        aws.iam.RolePolicy(
            f"{name}-policy", role=role.id,
            policy=pulumi.Output.all(
                args.partition, args.account_id, args.kms_key_arn, logs.arn,
                *(args.secret_arns[r] for r in secret_roles),
            ).apply(lambda a: json.dumps(policies.router_host_policy(
                partition=a[0], region=args.region, account_id=a[1],
                parameter_root=f"{contract.ROOT}/{env}", secret_arns=a[4:], key_arn=a[2],
                log_group_arn=a[3]))),
            opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", name=hosts_name, role=role.name,
                                          opts=child)

        user_data = pulumi.Output.all(
            logs.name, *(args.secret_arns[r] for r in secret_roles),
        ).apply(lambda a: base64.b64encode(router_host.user_data(
            env=env, region=args.region, package=args.package,
            secret_arns=dict(zip(secret_roles, a[1:], strict=True)), log_group=a[0],
            agent_port=args.agent_port).encode()).decode())
        template = aws.ec2.LaunchTemplate(
            f"{name}-template", name=hosts_name, image_id=router_host.IMAGE,
            instance_type=args.instance_type, user_data=user_data,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            vpc_security_group_ids=[hosts_sg.id],
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/sda1", ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=20, volume_type="gp3", encrypted="true",
                    kms_key_id=args.kms_key_arn, delete_on_termination="true"))],
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(
                resource_type="instance", tags={"Name": hosts_name})],
            opts=child)

        nlb = aws.lb.LoadBalancer(
            f"{name}-nlb", name=names.load_balancer_name("rtr", env), internal=True,
            load_balancer_type="network", subnets=list(args.subnet_ids),
            security_groups=[nlb_sg.id], enable_cross_zone_load_balancing=True,
            tags={"Name": names.load_balancer_name("rtr", env)}, opts=child)
        targets = aws.lb.TargetGroup(
            f"{name}-targets", name=names.load_balancer_name("rtr-6432", env), port=PGBOUNCER_PORT,
            protocol="TCP", target_type="instance", vpc_id=args.vpc_id,
            # Pooled connections drain for up to two minutes when a host leaves.
            deregistration_delay=120,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                protocol="TCP", port=str(PGBOUNCER_PORT), interval=10, healthy_threshold=2,
                unhealthy_threshold=2),
            tags={"Name": names.load_balancer_name("rtr-6432", env)}, opts=child)
        aws.lb.Listener(
            f"{name}-listener", load_balancer_arn=nlb.arn, port=PGBOUNCER_PORT, protocol="TCP",
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward",
                                                              target_group_arn=targets.arn)],
            opts=child)
        hosts = aws.autoscaling.Group(
            f"{name}-hosts", name=hosts_name, min_size=args.host_count,
            max_size=args.host_count, desired_capacity=args.host_count,
            vpc_zone_identifiers=list(args.subnet_ids), target_group_arns=[targets.arn],
            health_check_type="ELB", health_check_grace_period=300,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)),
            # No AZRebalance: a rebalance would terminate a router in the middle of a switch.
            suspended_processes=["AZRebalance"],
            tags=[aws.autoscaling.GroupTagArgs(key="Name", value=hosts_name,
                                               propagate_at_launch=True)],
            opts=child)

        self.endpoint = pulumi.Output.concat(nlb.dns_name, f":{PGBOUNCER_PORT}")
        self.hosts_group_name = hosts.name
        self.clients_sg_id = clients.id
        self.operators_sg_id = operators.id
        self.log_group_name = logs.name
        self.register_outputs({"endpoint": self.endpoint, "hosts_group_name": hosts.name,
                               "clients_sg_id": clients.id, "operators_sg_id": operators.id})
