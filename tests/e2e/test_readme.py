"""The README's DAG reference is what the DAGs say: regenerated and compared, so it cannot drift."""

from __future__ import annotations

import pytest

from paymigrate_dev.local import dag_reference

pytestmark = pytest.mark.e2e


def test_the_readme_dag_reference_is_up_to_date(airflow):
    text = dag_reference.README.read_text()
    assert dag_reference.rewrite(text, dag_reference.reference()) == text, (
        "README.md's DAG reference is out of date: run .venv/bin/python -m paymigrate_dev.local.dag_reference")
