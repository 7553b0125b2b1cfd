"""Physical names of every AWS resource, derived in one place.

``infra/`` (Pulumi) and the local bootstrap both call these functions, so a resource has the same
name wherever it is created and every name carries the environment suffix.

>>> bucket_name("checkpoints", "dev")
'paymigrate-checkpoints-dev'
>>> resource_name("migration-status", "prod")
'paymigrate-migration-status-prod'
"""

import re

PROJECT = "paymigrate"

_ENV = re.compile(r"^[a-z][a-z0-9-]{0,19}$")

BUCKETS = ("checkpoints", "rollback", "dms-logs")
TOPICS = ("migration-status", "error-alerts", "validation-alerts", "dms-alerts")
SECRETS = ("source-db", "target-db", "app-db", "reader-db", "router-admin", "api-token")
STATE_MACHINES = ("migration", "rollback", "validation")
# Elastic Load Balancing caps load balancer and target group names at 32 characters.
LOAD_BALANCERS = ("rtr", "rtr-6432")
LOAD_BALANCER_NAME_MAX = 32


def check_env(env: str) -> str:
    """Return ``env`` if it can suffix AWS names (lower case, starts with a letter, <= 20 chars)."""
    if not isinstance(env, str) or not _ENV.match(env):
        raise ValueError(
            f"environment {env!r} is not a valid suffix: use 1-20 lower-case letters, digits "
            "or '-', starting with a letter"
        )
    return env


def resource_name(role: str, env: str) -> str:
    """Name of a resource of the given role, for example a topic or a function."""
    return f"{PROJECT}-{role}-{check_env(env)}"


def bucket_name(role: str, env: str) -> str:
    if role not in BUCKETS:
        raise ValueError(f"unknown bucket role {role!r}; known: {', '.join(BUCKETS)}")
    return resource_name(role, env)


def topic_name(role: str, env: str) -> str:
    if role not in TOPICS:
        raise ValueError(f"unknown topic role {role!r}; known: {', '.join(TOPICS)}")
    return resource_name(role, env)


def secret_name(role: str, env: str) -> str:
    if role not in SECRETS:
        raise ValueError(f"unknown secret role {role!r}; known: {', '.join(SECRETS)}")
    return f"{PROJECT}/{check_env(env)}/{role}"


def state_machine_name(role: str, env: str) -> str:
    if role not in STATE_MACHINES:
        raise ValueError(f"unknown state machine {role!r}; known: {', '.join(STATE_MACHINES)}")
    return resource_name(f"{role}-workflow", env)


def load_balancer_name(role: str, env: str) -> str:
    """Load balancer and target group names: a short prefix, so that any valid env fits in 32.

    >>> load_balancer_name("rtr", "dev")
    'pm-rtr-dev'
    """
    if role not in LOAD_BALANCERS:
        raise ValueError(f"unknown load balancer role {role!r}; known: {', '.join(LOAD_BALANCERS)}")
    name = f"pm-{role}-{check_env(env)}"
    if len(name) > LOAD_BALANCER_NAME_MAX:
        raise ValueError(f"{name!r} is longer than {LOAD_BALANCER_NAME_MAX} characters")
    return name


def router_hosts_name(env: str) -> str:
    """The router tier's Auto Scaling group (and launch template, role, log group stem): the
    route agents are found through it."""
    return resource_name("router-hosts", env)


def dms_identifier(role: str, env: str) -> str:
    """DMS identifiers: letters, digits and hyphens, starting with a letter."""
    return resource_name(f"dms-{role}", env)


def replication_name(env: str) -> str:
    """Publication, subscription and slot name of the logical engine (a SQL identifier)."""
    return f"{PROJECT}_{check_env(env).replace('-', '_')}"


DMS_DIRECTIONS = ("forward", "reverse")


def dms_slot_name(env: str, direction: str = "forward") -> str:
    """The logical slot a DMS task reads, named in its source endpoint's ``slotName`` by infra
    and the local bootstrap, and created by the DMS engine before the task starts (DMS only
    reads a named slot, it does not make it). ``forward`` is on the source, ``reverse`` on the
    target. Under :func:`replication_name`'s prefix, so the retained-WAL metric and the failure
    alert count these slots too; never one of the logical engine's own names.

    >>> dms_slot_name("dev"), dms_slot_name("pre-prod", "reverse")
    ('paymigrate_dev_dms', 'paymigrate_pre_prod_dms_reverse')
    """
    if direction not in DMS_DIRECTIONS:
        raise ValueError(f"direction {direction!r} is not one of {', '.join(DMS_DIRECTIONS)}")
    return f"{replication_name(env)}_dms" + ("" if direction == "forward" else "_reverse")
