"""Domain errors, in one place so callers can catch them by meaning."""


class PaymigrateError(Exception):
    """Base of every error this package raises on purpose."""


class ContractError(PaymigrateError, ValueError):
    """A parameter of the infra/orchestration contract is missing or has a bad value."""


class StackError(PaymigrateError):
    """The local stand-ins could not be started, found or stopped."""


class PrerequisiteError(StackError):
    """A program the local stand-ins need is not installed."""
