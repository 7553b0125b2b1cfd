"""Validation engine: exact, fast comparison of source and target, trustworthy under replication.

>>> from paymigrate.validation import validate
>>> report = validate(source=SOURCE_DSN, target=TARGET_DSN)          # doctest: +SKIP
>>> report.status, report.mismatches                                  # doctest: +SKIP
('mismatch', 3)

See :mod:`paymigrate.validation.differ` for the algorithm and :mod:`paymigrate.validation.sql`
for how values are normalized before hashing. Under live replication pass the engine's
``catch_up`` (:class:`paymigrate.replication.Engine`): differences are re-checked once the target
applied the source's position.
"""

from paymigrate.validation.differ import CatchUp, Tuning
from paymigrate.validation.engine import list_tables, validate, validate_table
from paymigrate.validation.report import MATCH, MISMATCH, Report, TableResult

__all__ = ["MATCH", "MISMATCH", "CatchUp", "Report", "TableResult", "Tuning", "list_tables",
           "validate", "validate_table"]
