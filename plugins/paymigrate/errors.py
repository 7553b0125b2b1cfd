"""Domain errors, in one place so callers can catch them by meaning."""


class PaymigrateError(Exception):
    """Base of every error this package raises on purpose."""


class BadInput(PaymigrateError, ValueError):
    """A value a person gave (a DAG run's conf, a command-line argument, a table name, a DSN) is
    refused before anything is created. ``name`` says which input, ``value`` what was given."""

    def __init__(self, name: str, value: object, reason: str):
        self.name, self.value, self.reason = name, value, reason
        super().__init__(f"{name}={_shown(value)}: {reason}")


def _shown(value: object) -> str:
    """The value on one line, at most 120 characters: an error message is one line."""
    text = repr(value)  # repr escapes newlines and shows quotes
    return text if len(text) <= 120 else text[:117] + "..."


class ContractError(PaymigrateError, ValueError):
    """A parameter of the infra/orchestration contract is missing or has a bad value."""


class StackError(PaymigrateError):
    """The local stand-ins could not be started, found or stopped."""


class PrerequisiteError(StackError):
    """A program the local stand-ins need is not installed."""


class ReplicationError(PaymigrateError):
    """A replication engine could not do what was asked (start, stop, reverse, sync sequences)."""


class PreflightError(ReplicationError):
    """Preflight found problems that would lose data; the message lists every one."""


class SeedError(PaymigrateError):
    """The demo database could not be seeded (bad input, or already seeded without --replace)."""


class WorkloadError(PaymigrateError):
    """The write workload could not start, stop or report (bad input, missing schema, no ledger)."""


class ValidationError(PaymigrateError):
    """Source and target cannot be compared: a server is unreachable, or a table or a column is
    missing on one side or differs in type. The message names each problem."""


class FreezeError(PaymigrateError):
    """A database could not be made read-only for everyone but the migration role (a session
    that was told to end is still there and may still write)."""


class Refused(PaymigrateError):
    """A step of the migration refuses to go on (a check failed, a gate is closed, the lock is
    elsewhere): trying again unchanged cannot help, so callers fail at once rather than retry."""
