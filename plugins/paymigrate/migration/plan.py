"""What a run acts on (:class:`Plan`), the run's lag threshold, and results made JSON-ready:
the small typed values every step of the migration service shares."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paymigrate.aws import contract
from paymigrate.errors import Refused

LAG_THRESHOLD = "monitoring/replication-lag-threshold-seconds"


def summary(value: Any) -> Any:
    """A JSON-safe copy of a result (dataclasses included) for XCom and checkpoints."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


def lag_threshold(value: Any, config: Mapping[str, Any]) -> float:
    """The run's replication lag threshold in seconds: ``value`` (a Param, maybe rendered to
    text) when given, else the contract's; out of the contract's bounds is refused by value.

    >>> lag_threshold("2.5", {LAG_THRESHOLD: 5.0}), lag_threshold(None, {LAG_THRESHOLD: 5.0})
    (2.5, 5.0)
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return float(config[LAG_THRESHOLD])
    return float(contract.parameter(LAG_THRESHOLD).parse(value))


@dataclass(frozen=True)
class Plan:
    """What a run acts on: the migration, its engine and its tables (``tables`` empty: all)."""

    migration_id: str
    engine: str
    tables: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Plan:
        """The plan inside a task's result (the preflight's, the rollback state's)."""
        if not doc or not doc.get("engine"):
            raise Refused(f"no plan (migration, engine, tables) in {dict(doc or {})!r}")
        return cls(migration_id=doc.get("migration_id") or "none", engine=doc["engine"],
                   tables=tuple(doc.get("tables") or ()), exclude=tuple(doc.get("exclude") or ()))

    def to_dict(self) -> dict[str, Any]:
        return {"migration_id": self.migration_id, "engine": self.engine,
                "tables": list(self.tables), "exclude": list(self.exclude)}
