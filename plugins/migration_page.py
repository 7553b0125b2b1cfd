"""Registers the Migration page (paymigrate.provider.ui) with Airflow's plugin manager, which
scans this folder's top level only (the package is kept out of its scan: .airflowignore)."""

from paymigrate.provider.ui import MigrationPagePlugin

__all__ = ["MigrationPagePlugin"]
