"""Subnet layout of a VPC: pure arithmetic on CIDRs, no Pulumi.

Each VPC is cut into equal blocks, one per (tier, availability zone), tier after tier, so the
layout is stable when an AZ is added: a new AZ never renumbers existing subnets as long as the
block size stays the same.

>>> layout = subnet_layout("10.1.0.0/16", ["eu-west-1a", "eu-west-1b", "eu-west-1c"])
>>> layout["public"]
('10.1.0.0/20', '10.1.16.0/20', '10.1.32.0/20')
>>> layout["dms"][2]
'10.1.160.0/20'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

TIERS = ("public", "private", "dms")
MAX_AZS = 4


def subnet_layout(vpc_cidr: str, azs: Sequence[str], *, new_prefix: int = 20
                  ) -> dict[str, tuple[str, ...]]:
    """``{tier: (cidr per AZ, in AZ order)}`` for the tiers of :data:`TIERS`.

    Blocks are taken in order: every public subnet, then private, then DMS, leaving room for
    ``MAX_AZS`` AZs per tier. Raises ``ValueError`` when the VPC is too small for that.
    """
    network = ipaddress.ip_network(vpc_cidr, strict=True)
    if network.version != 4:
        raise ValueError(f"{vpc_cidr}: only IPv4 VPCs are laid out")
    if not 1 <= len(azs) <= MAX_AZS:
        raise ValueError(f"between 1 and {MAX_AZS} availability zones, not {len(azs)}")
    if len(set(azs)) != len(azs):
        raise ValueError(f"availability zones repeat: {', '.join(azs)}")
    if not network.prefixlen < new_prefix <= 28:
        raise ValueError(f"subnet prefix /{new_prefix} does not fit in {vpc_cidr} (max /28)")
    needed = len(TIERS) * MAX_AZS
    available = 2 ** (new_prefix - network.prefixlen)
    if available < needed:
        raise ValueError(
            f"{vpc_cidr} holds {available} /{new_prefix} subnets, the layout needs {needed}")
    blocks = network.subnets(new_prefix=new_prefix)
    per_tier = [[str(next(blocks)) for _ in range(MAX_AZS)] for _ in TIERS]
    return {tier: tuple(cidrs[: len(azs)]) for tier, cidrs in zip(TIERS, per_tier, strict=True)}


def check_disjoint(*cidrs: str) -> None:
    """Refuse overlapping VPC CIDRs: Transit Gateway routes between them would be ambiguous."""
    nets = [ipaddress.ip_network(c, strict=True) for c in cidrs]
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            if a.overlaps(b):
                raise ValueError(f"VPC CIDRs {a} and {b} overlap")
