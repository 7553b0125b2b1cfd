"""Source and target on different PostgreSQL majors: what is refused and what is used where present.

A migration may also be the major upgrade (Aurora runs newer majors than most on-premises
servers): logical replication works from an older publisher to a newer subscriber. A target older
than its source is refused: its schema tools cannot read the source, and a rollback would
replicate from the newer back into the older.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

from paymigrate.db import Endpoint, connection
from paymigrate.replication.base import Problem

# origin = none (PostgreSQL 16+): the subscriber applies only changes made on the publisher
# itself, not ones it received through replication, so forward and reverse replication can run
# side by side without looping.
ORIGIN_NONE = 160000


def server_version_num(ep: Endpoint) -> int:
    """``server_version_num`` of ``ep`` (150008 for 15.8, 180006 for 18.6)."""
    with connection(ep) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int")
        return int(cur.fetchone()[0])


def major(version_num: int) -> int:
    """``major(150008) == 15``."""
    return version_num // 10000


@dataclass(frozen=True)
class VersionProblem(Problem):
    """Preflight's refusal of a target on an older major than its source."""

    source_version: int = 0
    target_version: int = 0


def check_versions(source_version: int, target_version: int) -> VersionProblem | None:
    """A :class:`VersionProblem` when the target's major is older than the source's.

    >>> str(check_versions(180001, 150008))[:60]
    'target runs PostgreSQL 15, older than the source PostgreSQL '
    >>> check_versions(150008, 180006) is None
    True
    """
    src, tgt = major(source_version), major(target_version)
    if tgt >= src:
        return None
    return VersionProblem(None, (
        f"target runs PostgreSQL {tgt}, older than the source PostgreSQL {src}: a migration "
        "goes to the same or a newer major (pg_dump cannot dump a newer server, and replication "
        f"back for rollback would go from {src} into {tgt}); upgrade the target to {src} or "
        "newer"), source_version=source_version, target_version=target_version)


def subscription_options(subscriber_version: int) -> list[sql.Composable]:
    """The CREATE SUBSCRIPTION options the subscriber's major offers beyond PostgreSQL 15's."""
    if subscriber_version >= ORIGIN_NONE:
        return [sql.SQL("origin = none")]
    return []
