"""Production and migration VPCs over the same AZs, joined by a Transit Gateway.

Each VPC has public subnets (NAT gateways only: nothing gets a public IP on launch), private
subnets (databases, the validation Lambda) and DMS subnets, and routes the peer VPC's CIDR
through the Transit Gateway. The databases accept PostgreSQL (5432) only from the validation
Lambda's and DMS's security groups and from the peer VPC's CIDR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from layout import subnet_layout

from paymigrate.aws import contract, names

POSTGRES_PORT = 5432
HTTPS_PORT = 443
ANYWHERE = "0.0.0.0/0"


@dataclass
class NetworkArgs:
    env: str
    availability_zones: Sequence[str]
    production_cidr: str = "10.0.0.0/16"
    migration_cidr: str = "10.1.0.0/16"
    nat_per_az: bool = False
    # The route agents on the router hosts (production VPC), which the rollback-steps function
    # (in the Lambda group) calls to switch writes back.
    agent_port: int = contract.PARAMETERS["router/agent-port"].default


@dataclass
class VpcArgs:
    env: str
    role: str
    cidr: str
    availability_zones: Sequence[str]
    nat_per_az: bool = False


class Vpc(pulumi.ComponentResource):
    """One VPC with its three subnet tiers, IGW, NAT and route tables."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    dms_subnet_ids: list[pulumi.Output[str]]
    private_route_table_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: VpcArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:network:Vpc", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env, role = args.env, args.role
        layout = subnet_layout(args.cidr, args.availability_zones)

        def tags(what: str) -> dict[str, str]:
            return {"Name": names.resource_name(f"{role}-{what}", env)}

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.cidr, enable_dns_support=True,
                          enable_dns_hostnames=True, tags=tags("vpc"), opts=child)
        # The default security group allows all traffic between its members; nothing may use it.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id,
                                     tags=tags("default-sg-unused"), opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags("igw"),
                                      opts=child)

        def subnets(tier: str) -> list[aws.ec2.Subnet]:
            return [
                aws.ec2.Subnet(f"{name}-{tier}-{i}", vpc_id=vpc.id, cidr_block=cidr,
                               availability_zone=az, map_public_ip_on_launch=False,
                               tags=tags(f"{tier}-{az}"), opts=child)
                for i, (az, cidr) in enumerate(zip(args.availability_zones, layout[tier],
                                                   strict=True))
            ]

        public, private, dms = subnets("public"), subnets("private"), subnets("dms")

        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id,
                                       tags=tags("public-rt"), opts=child)
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id,
                      destination_cidr_block=ANYWHERE, gateway_id=igw.id, opts=child)
        for i, subnet in enumerate(public):
            aws.ec2.RouteTableAssociation(f"{name}-public-rta-{i}", subnet_id=subnet.id,
                                          route_table_id=public_rt.id, opts=child)

        # One NAT per AZ survives the loss of an AZ; one per VPC is the cheaper default.
        nat_count = len(public) if args.nat_per_az else 1
        nats = []
        for i in range(nat_count):
            eip = aws.ec2.Eip(f"{name}-nat-eip-{i}", domain="vpc", tags=tags(f"nat-eip-{i}"),
                              opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]))
            nats.append(aws.ec2.NatGateway(f"{name}-nat-{i}", allocation_id=eip.id,
                                           subnet_id=public[i].id, tags=tags(f"nat-{i}"),
                                           opts=child))

        private_rts = []
        for i, subnet in enumerate(private):
            rt = aws.ec2.RouteTable(f"{name}-private-rt-{i}", vpc_id=vpc.id,
                                    tags=tags(f"private-rt-{i}"), opts=child)
            aws.ec2.Route(f"{name}-private-default-{i}", route_table_id=rt.id,
                          destination_cidr_block=ANYWHERE,
                          nat_gateway_id=nats[i % nat_count].id, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-rta-{i}", subnet_id=subnet.id,
                                          route_table_id=rt.id, opts=child)
            # DMS subnets share their AZ's private route table: same egress, same peer route.
            aws.ec2.RouteTableAssociation(f"{name}-dms-rta-{i}", subnet_id=dms[i].id,
                                          route_table_id=rt.id, opts=child)
            private_rts.append(rt)

        self.vpc_id = vpc.id
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.dms_subnet_ids = [s.id for s in dms]
        self.private_route_table_ids = [rt.id for rt in private_rts]
        self.register_outputs({
            "vpc_id": self.vpc_id,
            "private_subnet_ids": self.private_subnet_ids,
            "dms_subnet_ids": self.dms_subnet_ids,
        })


class Network(pulumi.ComponentResource):
    """Both VPCs, the Transit Gateway between them and the security groups."""

    production: Vpc
    migration: Vpc
    transit_gateway_id: pulumi.Output[str]
    source_db_sg_id: pulumi.Output[str]
    target_db_sg_id: pulumi.Output[str]
    lambda_sg_id: pulumi.Output[str]
    dms_sg_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("paymigrate:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = args.env

        self.production = Vpc(f"{name}-production", VpcArgs(
            env=env, role="production", cidr=args.production_cidr,
            availability_zones=args.availability_zones, nat_per_az=args.nat_per_az), opts=child)
        self.migration = Vpc(f"{name}-migration", VpcArgs(
            env=env, role="migration", cidr=args.migration_cidr,
            availability_zones=args.availability_zones, nat_per_az=args.nat_per_az), opts=child)

        tgw = aws.ec2transitgateway.TransitGateway(
            f"{name}-tgw",
            description=f"paymigrate {env}: production <-> migration VPC",
            auto_accept_shared_attachments="disable",
            default_route_table_association="enable",
            default_route_table_propagation="enable",
            dns_support="enable",
            # The router hosts admit the Lambda group (in the other VPC) by reference.
            security_group_referencing_support="enable",
            tags={"Name": names.resource_name("tgw", env)},
            opts=child,
        )
        for vpc, peer_cidr in ((self.production, args.migration_cidr),
                               (self.migration, args.production_cidr)):
            role = "production" if vpc is self.production else "migration"
            attachment = aws.ec2transitgateway.VpcAttachment(
                f"{name}-{role}-tgw-attachment",
                transit_gateway_id=tgw.id,
                vpc_id=vpc.vpc_id,
                subnet_ids=vpc.private_subnet_ids,
                dns_support="enable",
                security_group_referencing_support="enable",
                tags={"Name": names.resource_name(f"{role}-tgw-attachment", env)},
                opts=child,
            )
            for i, rt_id in enumerate(vpc.private_route_table_ids):
                # A route to a TGW is refused until the VPC's attachment exists.
                aws.ec2.Route(f"{name}-{role}-to-peer-{i}", route_table_id=rt_id,
                              destination_cidr_block=peer_cidr, transit_gateway_id=tgw.id,
                              opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]))

        def group(role: str, vpc: Vpc, description: str) -> aws.ec2.SecurityGroup:
            sg_name = names.resource_name(f"{role}-sg", env)
            # No inline rules: every rule is its own resource below, and the provider removes
            # the default allow-all egress, so a group without egress rules sends nothing.
            return aws.ec2.SecurityGroup(f"{name}-{role}-sg", name=sg_name,
                                         description=description, vpc_id=vpc.vpc_id,
                                         tags={"Name": sg_name}, opts=child)

        source_db = group("source-db", self.production, "Source Aurora: PostgreSQL from the "
                          "migration VPC only")
        target_db = group("target-db", self.migration, "Target Aurora: PostgreSQL from the "
                          "validation Lambda, DMS and the production VPC")
        lambda_sg = group("validation-lambda", self.migration, "Data validation Lambda")
        dms_sg = group("dms", self.migration, "DMS replication instance")

        def ingress(role: str, sg: aws.ec2.SecurityGroup, description: str, *,
                    cidr: str | None = None, source_sg: aws.ec2.SecurityGroup | None = None,
                    port: int = POSTGRES_PORT) -> None:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{role}", security_group_id=sg.id, description=description,
                ip_protocol="tcp", from_port=port, to_port=port, cidr_ipv4=cidr,
                referenced_security_group_id=source_sg.id if source_sg else None, opts=child)

        def egress(role: str, sg: aws.ec2.SecurityGroup, description: str, cidr: str,
                   port: int) -> None:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{role}", security_group_id=sg.id, description=description,
                ip_protocol="tcp", from_port=port, to_port=port, cidr_ipv4=cidr, opts=child)

        ingress("source-db-from-migration-vpc", source_db,
                "PostgreSQL from the migration VPC (DMS, validation) over the TGW",
                cidr=args.migration_cidr)
        ingress("target-db-from-lambda", target_db, "PostgreSQL from the validation Lambda",
                source_sg=lambda_sg)
        ingress("target-db-from-dms", target_db, "PostgreSQL from DMS", source_sg=dms_sg)
        ingress("target-db-from-production-vpc", target_db,
                "PostgreSQL from the production VPC: applications after cutover, reverse "
                "replication for fallback", cidr=args.production_cidr)
        for role, sg in (("lambda", lambda_sg), ("dms", dms_sg)):
            for vpc_role, cidr in (("production", args.production_cidr),
                                   ("migration", args.migration_cidr)):
                egress(f"{role}-to-{vpc_role}-postgres", sg,
                       f"PostgreSQL to the {vpc_role} VPC", cidr, POSTGRES_PORT)
            # AWS APIs (Secrets Manager, SSM, SNS, CloudWatch) through the NAT gateway.
            egress(f"{role}-to-aws-apis", sg, "HTTPS to AWS APIs", ANYWHERE, HTTPS_PORT)
        egress("lambda-to-route-agents", lambda_sg, "Route agents on the router hosts (rollback "
               "steps)", args.production_cidr, args.agent_port)

        self.transit_gateway_id = tgw.id
        self.source_db_sg_id = source_db.id
        self.target_db_sg_id = target_db.id
        self.lambda_sg_id = lambda_sg.id
        self.dms_sg_id = dms_sg.id
        self.register_outputs({
            "production_vpc_id": self.production.vpc_id,
            "migration_vpc_id": self.migration.vpc_id,
            "transit_gateway_id": self.transit_gateway_id,
        })
