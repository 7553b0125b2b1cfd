"""The stack's settings: typed and checked where they are made, from the raw config values.

``__main__.py`` reads ``pulumi.Config`` once and hands the values here; nothing else reads
config. A bad value is refused with a message naming the config key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from layout import check_disjoint, subnet_layout

from paymigrate.aws import contract, names

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)
_ENGINE_VERSION = re.compile(r"^(\d{2})\.\d+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")

# Contract keys whose values the stack derives from the resources it creates; config may
# set the others (feature flags, thresholds, mode...).
INFRA_OWNED_KEYS = frozenset({
    "database/production/endpoint", "database/migration/endpoint", "database/name",
    "database/source-secret-arn", "database/target-secret-arn",
    "api/endpoint", "api/auth-token", "api/auth-token-secret-arn",
    "router/endpoint", "router/admin-endpoint", "router/admin-secret-arn", "router/hosts-group",
    "router/agent-port",
    "storage/checkpoints-bucket", "storage/rollback-bucket", "storage/dms-logs-bucket",
    "notifications/migration-status-topic-arn", "notifications/error-alerts-topic-arn",
    "notifications/validation-alerts-topic-arn", "notifications/dms-alerts-topic-arn",
    "workflows/migration-state-machine-arn", "workflows/rollback-state-machine-arn",
    "workflows/validation-state-machine-arn",
    "functions/validation-function-arn", "replication/dms-task-arn", "replication/reverse-task-arn",
    "replication/dms-instance-arn", "replication/dms-source-endpoint-arn",
    "replication/dms-target-endpoint-arn",
})


@dataclass(frozen=True)
class StackSettings:
    env: str
    region: str
    router_package: str
    router_count: int = 2
    router_instance_type: str = "t3.medium"
    availability_zones: tuple[str, ...] = ()
    production_cidr: str = "10.0.0.0/16"
    migration_cidr: str = "10.1.0.0/16"
    nat_per_az: bool = False
    ephemeral: bool = False
    engine_version: str = "16.8"
    db_instance_class: str = "db.r6g.large"
    database_name: str = "payments"
    dms_instance_class: str = "dms.c5.xlarge"
    dms_multi_az: bool = True
    dms_allocated_storage_gb: int = 100
    manage_account_singletons: bool = True
    log_retention_days: int = 90
    alert_emails: tuple[str, ...] = ()
    api_throttle_burst: int = 100
    api_throttle_rate: float = 50.0
    authorizer_cache_seconds: int = 300
    contract_overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            names.check_env(self.env)
        except ValueError as exc:
            raise ValueError(f"env: {exc}") from None
        if not _REGION.match(self.region):
            raise ValueError(f"aws:region: {self.region!r} is not an AWS region")
        if not self.availability_zones:
            object.__setattr__(self, "availability_zones",
                               tuple(f"{self.region}{s}" for s in "abc"))
        for az in self.availability_zones:
            if not az.startswith(self.region):
                raise ValueError(f"availabilityZones: {az} is not in {self.region}")
        check_disjoint(self.production_cidr, self.migration_cidr)
        for cidr in (self.production_cidr, self.migration_cidr):
            subnet_layout(cidr, self.availability_zones)
        if len(self.availability_zones) < 2:
            raise ValueError("availabilityZones: Aurora and DMS subnet groups need at least 2")
        if not _ENGINE_VERSION.match(self.engine_version):
            raise ValueError(f"engineVersion: {self.engine_version!r} is not like 16.8")
        if int(self.engine_version.split(".")[0]) < 13:
            raise ValueError(f"engineVersion: {self.engine_version} is out of AWS support")
        if not self.router_package.strip() or any(c.isspace() for c in self.router_package):
            raise ValueError(f"routerPackage: {self.router_package!r} is not one pip requirement")
        if self.router_count < 2:
            raise ValueError(f"routerCount: {self.router_count}; at least 2 routers, one is a "
                             "single point of failure")
        contract.parameter("database/name").parse(self.database_name)
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(f"logRetentionDays: {self.log_retention_days} is not a CloudWatch "
                             "retention period")
        if not 1 <= self.authorizer_cache_seconds <= 3600:
            raise ValueError("authorizerCacheSeconds: outside 1..3600")
        if self.api_throttle_burst < 1 or self.api_throttle_rate <= 0:
            raise ValueError("apiThrottleBurst/apiThrottleRate: must be positive")
        owned = sorted(set(self.contract_overrides) & INFRA_OWNED_KEYS)
        if owned:
            raise ValueError(f"parameters: {', '.join(owned)} are derived from the stack's "
                             "resources and cannot be set in config")
        for key, value in self.contract_overrides.items():
            contract.parameter(key).parse(value)

    def contract_value(self, key: str) -> Any:
        """A contract parameter's value for this stack: config's ``parameters`` override, else
        the contract's default (one definition for infra and the DAGs that read it back)."""
        p = contract.parameter(key)
        return p.parse(self.contract_overrides.get(key, p.default))

    @property
    def engine_family(self) -> str:
        """Parameter group family of the engine version: 16.8 -> aurora-postgresql16."""
        return f"aurora-postgresql{self.engine_version.split('.')[0]}"

    @property
    def protect_data(self) -> bool:
        """Deletion protection and final snapshots, off only for throw-away stacks."""
        return not self.ephemeral
