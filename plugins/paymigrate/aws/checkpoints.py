"""Checkpoints and the migration lock, as JSON objects in the versioned checkpoints bucket.

Layout under ``{env}/``:

- ``active.json``: the lock. Which DAG run drives the migration now, the migration's id (the
  first run's id, kept across resumed runs) and its state (a
  :class:`~paymigrate.migration.lock.LockState`; every move is checked against the allowed
  ones there). A second run is refused while another run holds it ``running``; a run that
  failed leaves it ``failed``, and the next run takes over and resumes from the checkpoints.
- ``{migration_id}/{phase}.json``: one document per phase (phase, engine, positions, validation
  summary, timestamps, run id). Versioning keeps every write.

The S3 client is injected (the provider's ``S3Hook().conn`` in Airflow, boto3 elsewhere), so the
logic is plain and testable. Documents must never carry secrets: :func:`save` refuses keys that
look like credentials.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from paymigrate.errors import PaymigrateError, Refused
from paymigrate.migration.lock import LockState, check_move
from paymigrate.migration.lock import state as lock_state

log = logging.getLogger(__name__)

LAST_VALIDATION = "scheduled-validation/last.json"  # the scheduled validation's last summary

_SECRETISH = re.compile(r"pass(word)?|secret|token|credential", re.IGNORECASE)


class MigrationActive(Refused):
    """Another run drives the migration; names it."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Lock:
    migration_id: str
    run_id: str
    dag_id: str
    state: LockState
    updated: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", lock_state(self.state))


def _check_no_secrets(doc: Any, where: str = "") -> None:
    if isinstance(doc, Mapping):
        for k, v in doc.items():
            if _SECRETISH.search(str(k)):
                raise ValueError(f"checkpoint field {where}{k} looks like a credential; refused")
            _check_no_secrets(v, f"{where}{k}.")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            _check_no_secrets(v, f"{where}{i}.")


class CheckpointStore:
    def __init__(self, *, s3: Any, bucket: str, env: str):
        self.s3, self.bucket, self.env = s3, bucket, env

    def _key(self, name: str) -> str:
        return f"{self.env}/{name}"

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def _put(self, key: str, doc: Mapping[str, Any]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(doc, indent=2, sort_keys=True,
                                                                          default=str).encode(),
                           ContentType="application/json", ServerSideEncryption="AES256")

    def get_doc(self, name: str) -> dict[str, Any] | None:
        """Any other JSON document of this environment, e.g. the last scheduled validation."""
        return self._get(self._key(name))

    def put_doc(self, name: str, doc: Mapping[str, Any]) -> None:
        _check_no_secrets(doc)
        self._put(self._key(name), doc)

    # ---- lock -----------------------------------------------------------------------------------
    def lock(self) -> Lock | None:
        doc = self._get(self._key("active.json"))
        return Lock(**doc) if doc else None

    def acquire(self, *, run_id: str, dag_id: str, takeover: bool = False) -> Lock:
        """Take the migration for this run, resuming a failed one; refuse if another run is active.

        ``takeover`` lets an operator claim a lock left ``running`` by a run that died without
        failing cleanly (a killed worker), after checking in the UI that it is gone.
        """
        current = self.lock()
        if current and current.run_id != run_id and current.state is LockState.RUNNING and not takeover:
            raise MigrationActive(
                f"migration {current.migration_id} is driven by {current.dag_id} run {current.run_id} "
                f"(since {current.updated}); wait for it, or fail it, or trigger with takeover=true "
                "once you are sure it is gone")
        check_move(current.state if current else None, LockState.RUNNING)
        resumed = current if current and current.state in (LockState.RUNNING, LockState.FAILED) else None
        migration_id = resumed.migration_id if resumed else run_id
        new = Lock(migration_id=migration_id, run_id=run_id, dag_id=dag_id, state=LockState.RUNNING,
                   updated=now())
        self._put(self._key("active.json"), asdict(new))
        if resumed and resumed.run_id != run_id:
            log.info("run %s takes over migration %s from run %s (%s)", run_id, migration_id,
                     resumed.run_id, resumed.state)
        return new

    def clear_lock(self) -> None:
        """Forget the migration (a demo starting over); versioning keeps the old lock."""
        self.s3.delete_object(Bucket=self.bucket, Key=self._key("active.json"))

    def set_state(self, state: LockState | str, *, run_id: str | None = None) -> Lock:
        """Move the lock to ``state``; :class:`~paymigrate.migration.lock.IllegalTransition`
        if that move is not allowed from where it is."""
        current = self.lock()
        if current is None:
            raise PaymigrateError("no migration lock to update: was the migration ever started?")
        wanted = check_move(current.state, lock_state(state))
        new = replace(current, state=wanted, updated=now(), run_id=run_id or current.run_id)
        self._put(self._key("active.json"), asdict(new))
        return new

    # ---- checkpoints ----------------------------------------------------------------------------
    def save(self, *, migration_id: str, phase: str, run_id: str, doc: Mapping[str, Any]) -> str:
        _check_no_secrets(doc)
        body = {"phase": phase, "migration_id": migration_id, "run_id": run_id, "saved": now(), **doc}
        key = self._key(f"{migration_id}/{phase}.json")
        self._put(key, body)
        log.info("checkpoint %s saved to s3://%s/%s", phase, self.bucket, key)
        return key

    def load(self, *, migration_id: str, phase: str) -> dict[str, Any] | None:
        return self._get(self._key(f"{migration_id}/{phase}.json"))
