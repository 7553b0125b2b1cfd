"""Validation engine: exact, fast comparison of source and target, trustworthy under replication.

>>> from paymigrate.validation import validate
>>> report = validate(source=SOURCE_DSN, target=TARGET_DSN)          # doctest: +SKIP
>>> report.status, report.mismatches                                  # doctest: +SKIP
('mismatch', 3)

See :mod:`paymigrate.validation.differ` for the algorithm and :mod:`paymigrate.validation.sql`
for how values are normalized before hashing.
"""

from paymigrate.validation.catchup import logical_catch_up
from paymigrate.validation.differ import CatchUp, Tuning
from paymigrate.validation.engine import list_tables, validate, validate_table
from paymigrate.validation.report import MATCH, MISMATCH, Report, TableResult

__all__ = ["MATCH", "MISMATCH", "CatchUp", "Report", "TableResult", "Tuning", "list_tables",
           "logical_catch_up", "validate", "validate_table"]
