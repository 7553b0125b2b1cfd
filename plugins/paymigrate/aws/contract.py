"""The contract between infra and orchestration: every parameter under ``/migration/{env}/``.

Pulumi (``infra/``) writes these parameters, the local bootstrap writes the same ones into moto,
and the DAGs, the Lambdas and the CLI read them at run time. Each parameter has a type, a default
where one makes sense, and bounds; a bad value is refused with a message naming the parameter and
the value.

>>> PARAMETERS["workflow/traffic-split-percentage"].parse("120")
Traceback (most recent call last):
...
paymigrate.errors.ContractError: workflow/traffic-split-percentage: 120 is above the maximum 100
>>> path("workflow/mode", "dev")
'/migration/dev/workflow/mode'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from paymigrate.aws.names import check_env
from paymigrate.errors import ContractError

ROOT = "/migration"

_ENDPOINT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")
_ARN = re.compile(r"^arn:aws[a-z\-]*:[a-z0-9\-]+:[a-z0-9\-]*:\d{12}:.+$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Parameter:
    """One parameter of the contract, relative to ``/migration/{env}/``."""

    key: str
    kind: str  # text | endpoint | arn | bool | int | float | choice
    description: str
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    secure: bool = False

    def __post_init__(self) -> None:
        if self.kind not in {"text", "endpoint", "arn", "bool", "int", "float", "choice"}:
            raise ValueError(f"{self.key}: unknown kind {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"{self.key}: a choice needs choices")
        if self.default is not None:
            self.parse(self.render(self.default))

    def path(self, env: str) -> str:
        return f"{ROOT}/{check_env(env)}/{self.key}"

    def parse(self, raw: Any) -> Any:
        """Turn a stored string (or a Python value) into the typed value, or refuse it by name."""
        shown = "<secret>" if self.secure else str(raw)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            raise ContractError(f"{self.key}: a value is required")
        text = raw.strip() if isinstance(raw, str) else raw
        if self.kind == "bool":
            if isinstance(text, bool):
                return text
            low = str(text).lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ContractError(f"{self.key}: {shown} is not a boolean (true or false)")
        if self.kind in {"int", "float"}:
            try:
                if isinstance(text, bool):
                    raise ValueError
                value = int(text) if self.kind == "int" else float(text)
                if self.kind == "int" and isinstance(text, float) and text != int(text):
                    raise ValueError
            except (TypeError, ValueError):
                what = "an integer" if self.kind == "int" else "a number"
                raise ContractError(f"{self.key}: {shown} is not {what}") from None
            if value != value:  # NaN
                raise ContractError(f"{self.key}: {shown} is not a number")
            if self.minimum is not None and value < self.minimum:
                raise ContractError(f"{self.key}: {shown} is below the minimum {_num(self.minimum)}")
            if self.maximum is not None and value > self.maximum:
                raise ContractError(f"{self.key}: {shown} is above the maximum {_num(self.maximum)}")
            return value
        text = str(text)
        if self.kind == "choice" and text not in self.choices:
            raise ContractError(f"{self.key}: {shown} is not one of {', '.join(self.choices)}")
        if self.kind == "endpoint" and not _ENDPOINT.match(text):
            raise ContractError(f"{self.key}: {shown} is not a host:port endpoint")
        if self.kind == "endpoint" and not 0 < int(text.rsplit(":", 1)[1]) < 65536:
            raise ContractError(f"{self.key}: {shown} has a port outside 1..65535")
        if self.kind == "arn" and not _ARN.match(text):
            raise ContractError(f"{self.key}: {shown} is not an ARN")
        return text

    def render(self, value: Any) -> str:
        """The string stored in Parameter Store for a typed value."""
        if self.kind == "bool":
            return "true" if value else "false"
        return str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _p(key: str, kind: str, description: str, **kw: Any) -> Parameter:
    return Parameter(key=key, kind=kind, description=description, **kw)


WORKFLOW_MODES = ("preparation", "replication", "validation", "cutover", "rollback")
ENGINES = ("postgres-logical", "dms")
WRITERS = ("source", "target")
INITIAL_COPIES = ("snapshot", "subscription")

_ALL = (
    # Database (seed), plus the secrets and the active writer the design adds.
    _p("database/production/endpoint", "endpoint", "Source (production) database writer endpoint"),
    _p("database/migration/endpoint", "endpoint", "Target (migration) database writer endpoint"),
    _p("database/name", "text", "Name of the database that is migrated", default="payments"),
    _p("database/source-secret-arn", "arn", "Secrets Manager secret of the source credentials"),
    _p("database/target-secret-arn", "arn", "Secrets Manager secret of the target credentials"),
    _p("database/active-writer", "choice", "Which database takes writes now", default="source",
       choices=WRITERS),
    # API (seed).
    _p("api/endpoint", "text", "Base URL of the payments API"),
    _p("api/auth-token", "text", "Bearer token the API authorizer accepts", secure=True),
    _p("api/auth-token-secret-arn", "arn", "Secrets Manager secret holding the API token"),
    # Workflow (seed), plus the engine.
    _p("workflow/mode", "choice", "Current phase of the migration", default="preparation",
       choices=WORKFLOW_MODES),
    _p("workflow/enable-replication", "bool", "Feature flag: replication may start", default=True),
    _p("workflow/enable-validation", "bool", "Feature flag: scheduled validation runs",
       default=True),
    _p("workflow/enable-cutover", "bool", "Feature flag: the cutover may run", default=False),
    _p("workflow/traffic-split-percentage", "int",
       "Share of read-only traffic sent to the target before the write switch", default=0,
       minimum=0, maximum=100),
    _p("workflow/replication-engine", "choice", "Replication engine", default="postgres-logical",
       choices=ENGINES),
    # The read canary's gates besides the error rate; infra alarms on the same values.
    _p("workflow/canary-max-p99-ms", "float", "p99 latency of the reads through the read-only "
       "route above which a canary step fails and the route's latency alarm fires, in ms",
       default=250.0, minimum=1, maximum=60000),
    _p("workflow/canary-max-stale-read-percentage", "float", "Share of the reads through the "
       "read-only route that saw an older state than the client had committed (the route lags "
       "the writer) above which a canary step fails and the route's stale-read alarm fires",
       default=5.0, minimum=0, maximum=100),
    # Monitoring (seed).
    _p("monitoring/validation-interval-minutes", "int", "Minutes between scheduled validations",
       default=15, minimum=1, maximum=1440),
    _p("monitoring/replication-lag-threshold-seconds", "float",
       "Replication lag above which cutover is refused and alarms fire", default=5.0,
       minimum=0.001, maximum=3600),
    # Rollback (seed).
    _p("rollback/enable-auto-rollback", "bool", "Roll back by itself when errors pass the threshold",
       default=False),
    _p("rollback/error-threshold-percentage", "float", "Error rate that triggers auto-rollback",
       default=5.0, minimum=0, maximum=100),
    # Router (design): PgBouncer in front of the writer.
    _p("router/endpoint", "endpoint", "Application entry point (PgBouncer)"),
    _p("router/admin-endpoint", "endpoint", "PgBouncer admin console endpoint (in AWS: loopback on "
       "each router host, where only its route agent reaches it)"),
    _p("router/admin-secret-arn", "arn", "Secrets Manager secret of the PgBouncer admin user"),
    _p("router/database", "text", "Database name the applications use on the router",
       default="payments"),
    _p("router/hosts-group", "text", "Auto Scaling group of the router hosts, whose route agents "
       "change their routes; local when the routers are the local stand-ins", default="local"),
    _p("router/agent-port", "int", "TCP port of the route agent on each router host", default=6433,
       minimum=1024, maximum=65535),
    _p("router/routers", "text",
       "Every PgBouncer of the tier when router/hosts-group is local, JSON: [{name, agent: "
       "host:port}]; [] is the one at router/admin-endpoint, its route agent on port 6433 of that "
       "host", default="[]"),
    # Storage, notifications, workflows, functions, replication (design): names and ARNs.
    _p("storage/checkpoints-bucket", "text", "S3 bucket of the migration checkpoints"),
    _p("storage/rollback-bucket", "text", "S3 bucket of the saved rollback state"),
    _p("storage/dms-logs-bucket", "text", "S3 bucket of the DMS logs"),
    _p("notifications/migration-status-topic-arn", "arn", "SNS topic: migration status"),
    _p("notifications/error-alerts-topic-arn", "arn", "SNS topic: error alerts"),
    _p("notifications/validation-alerts-topic-arn", "arn", "SNS topic: validation alerts"),
    _p("notifications/dms-alerts-topic-arn", "arn", "SNS topic: DMS alerts"),
    _p("workflows/migration-state-machine-arn", "arn", "Step Functions migration state machine"),
    _p("workflows/rollback-state-machine-arn", "arn", "Step Functions rollback state machine"),
    _p("workflows/validation-state-machine-arn", "arn",
       "Step Functions on-demand validation state machine (POST /migration/validation)"),
    _p("functions/validation-function-arn", "arn", "Data validation Lambda function"),
    _p("replication/initial-copy", "choice", "How postgres-logical copies the tables first: "
       "snapshot (the engine, under the slot's snapshot, keys built after: faster) or subscription "
       "(PostgreSQL's table sync, inside the servers)", default="snapshot",
       choices=INITIAL_COPIES),
    _p("replication/dms-task-arn", "arn", "DMS full-load-and-cdc replication task"),
    # One definition of the limit: infra sets the task's LobMaxSize from it and the DMS preflight
    # refuses a value above it (limited LOB mode would truncate it).
    _p("replication/dms-lob-max-size-kb", "int", "LobMaxSize of the DMS task (limited LOB mode), "
       "in kB: the largest text/jsonb/bytea/xml value it moves whole", default=32, minimum=1,
       maximum=102400),
    _p("replication/dms-validation", "bool", "DMS's own row validation (the task's "
       "ValidationSettings.EnableValidation); its table states go into the validation report "
       "beside paymigrate's", default=True),
    _p("replication/reverse-task-arn", "arn", "DMS CDC-only task from the target back to the "
       "source (endpoints swapped), started at the position the cutover captured inside its pause"),
    _p("replication/dms-instance-arn", "arn", "DMS replication instance"),
    _p("replication/dms-source-endpoint-arn", "arn", "DMS source endpoint"),
    _p("replication/dms-target-endpoint-arn", "arn", "DMS target endpoint"),
)

PARAMETERS: dict[str, Parameter] = {p.key: p for p in _ALL}


def path(key: str, env: str) -> str:
    """Full Parameter Store path of a contract key."""
    return parameter(key).path(env)


def parameter(key: str) -> Parameter:
    try:
        return PARAMETERS[key]
    except KeyError:
        raise ContractError(f"{key!r} is not a parameter of the contract") from None


def key_of(full_path: str, env: str) -> str:
    """The contract key of a full path: ``/migration/dev/workflow/mode`` -> ``workflow/mode``."""
    prefix = f"{ROOT}/{check_env(env)}/"
    if not full_path.startswith(prefix):
        raise ContractError(f"{full_path!r} is not under {prefix}")
    return full_path[len(prefix):]


def render_all(values: Mapping[str, Any], env: str) -> dict[str, tuple[str, bool]]:
    """Check a complete set of values and return ``{path: (stored string, secure)}``.

    Defaults fill what ``values`` leaves out; a parameter without a default must be given. This
    is what infra and the local bootstrap both write, so they cannot drift.
    """
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise ContractError(f"not parameters of the contract: {', '.join(unknown)}")
    out: dict[str, tuple[str, bool]] = {}
    for key, p in PARAMETERS.items():
        raw = values.get(key, p.default)
        if raw is None:
            raise ContractError(f"{key}: a value is required")
        out[p.path(env)] = (p.render(p.parse(raw)), p.secure)
    return out


class Config(Mapping[str, Any]):
    """Typed, validated contract values read from Parameter Store: ``cfg["workflow/mode"]``."""

    def __init__(self, env: str, values: Mapping[str, Any]):
        self.env = check_env(env)
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        parameter(key)
        try:
            return self._values[key]
        except KeyError:
            raise ContractError(f"{path(key, self.env)} is not set") from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def public(self) -> dict[str, Any]:
        """Every value except the secure ones, for logs and reports."""
        return {k: v for k, v in self._values.items() if not PARAMETERS[k].secure}


def parse_stored(items: Iterable[tuple[str, str]], env: str) -> Config:
    """Build a :class:`Config` from ``(full path, stored string)`` pairs; unknown paths are ignored."""
    values: dict[str, Any] = {}
    for full, raw in items:
        try:
            key = key_of(full, env)
        except ContractError:
            continue
        if key in PARAMETERS:
            try:
                values[key] = PARAMETERS[key].parse(raw)
            except ContractError as exc:
                raise ContractError(f"{full}: {str(exc).split(': ', 1)[1]}") from None
    return Config(env, values)


def read(ssm_client: Any, env: str) -> Config:
    """Read and check every contract parameter of ``env`` (SecureStrings decrypted)."""
    items: list[tuple[str, str]] = []
    for page in ssm_client.get_paginator("get_parameters_by_path").paginate(
        Path=f"{ROOT}/{check_env(env)}/", Recursive=True, WithDecryption=True
    ):
        items.extend((p["Name"], p["Value"]) for p in page["Parameters"])
    return parse_stored(items, env)


def read_keys(ssm_client: Any, env: str, keys: Iterable[str]) -> Config:
    """Read and check only ``keys``: for a caller whose role may read those parameters and no
    other (the API's functions never see the token). SecureStrings are never decrypted here."""
    wanted = [parameter(k) for k in keys]
    if any(p.secure for p in wanted):
        raise ContractError("read_keys reads plain parameters only; use read for secure ones")
    items: list[tuple[str, str]] = []
    names = [p.path(env) for p in wanted]
    for i in range(0, len(names), 10):  # GetParameters takes at most 10 names
        items.extend((p["Name"], p["Value"])
                     for p in ssm_client.get_parameters(Names=names[i:i + 10])["Parameters"])
    return parse_stored(items, env)


def write(ssm_client: Any, key: str, value: Any, env: str) -> None:
    """Write one checked value (for example the active writer after a cutover)."""
    p = parameter(key)
    ssm_client.put_parameter(
        Name=p.path(env), Value=p.render(p.parse(value)),
        Type="SecureString" if p.secure else "String", Overwrite=True,
    )
