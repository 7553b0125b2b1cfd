"""The runtime never needs the dev harness: no file of what ships (Airflow's plugins folder, the
DAGs, the Lambda handlers, the Pulumi program) imports ``paymigrate_dev``, read from each file's
syntax tree, lazy imports inside functions included. The Lambda bundle is checked in
``tests/unit/infra/test_infra_pure.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paymigrate_dev.local import airflow_services

REPO = Path(__file__).resolve().parents[2]
HARNESS = "paymigrate_dev"
SHIPPED = ("plugins", "dags", "lambdas", "infra")


def harness_imports(source: str) -> list[str]:
    """Each import of the harness in ``source``: ``import``/``from`` statements at any depth, and
    module names in strings (what ``importlib.import_module``, ``__import__`` or ``python -m``
    would load). Docstrings are prose, not code: they may name the harness."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append(node.module or "")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings):
            found += node.value.replace(";", " ").split()
    return [name for name in found if name.split(".")[0] == HARNESS]


def shipped_files() -> list[Path]:
    return sorted(p for folder in SHIPPED for p in (REPO / folder).rglob("*.py")
                  if "__pycache__" not in p.parts)


@pytest.mark.parametrize(("source", "found"), [
    ("def f():\n    from paymigrate_dev.local import proc\n", ["paymigrate_dev.local"]),
    ("import paymigrate.db\nimport paymigrate_dev.cli as c\n", ["paymigrate_dev.cli"]),
    ("importlib.import_module('paymigrate_dev.workload')", ["paymigrate_dev.workload"]),
    ("run(['python', '-m', 'paymigrate_dev.cli', 'up'])", ["paymigrate_dev.cli"]),
    ('"""The harness is paymigrate_dev."""\nfrom paymigrate import db\n', []),
])
def test_the_check_finds_every_kind_of_import(source, found):
    assert harness_imports(source) == found


def test_the_shipped_folders_are_read():
    names = {p.relative_to(REPO).as_posix() for p in shipped_files()}
    assert {"plugins/migration_page.py", "plugins/paymigrate/migration/service.py",
            "plugins/paymigrate/routing/access.py", "dags/payment_cutover.py",
            "lambdas/migration_status.py", "infra/components/monitoring.py"} <= names
    assert len([n for n in names if n.startswith("plugins/paymigrate/")]) > 60


def test_no_shipped_file_imports_the_harness():
    offenders = {p.relative_to(REPO).as_posix(): found for p in shipped_files()
                 if (found := harness_imports(p.read_text()))}
    assert offenders == {}


def test_airflows_plugins_folder_holds_the_runtime_only():
    """The folder local Airflow is given (docker-compose's is the same, tests/unit/test_compose.py):
    the plugin entry, the scanner's ignore file and the runtime package, nothing of the harness."""
    plugins = Path(airflow_services.static_environment(REPO / ".local" / "airflow")
                   ["AIRFLOW__CORE__PLUGINS_FOLDER"])
    assert plugins == REPO / "plugins"
    assert {p.name for p in plugins.iterdir() if p.name != "__pycache__"} == {
        ".airflowignore", "migration_page.py", "paymigrate"}
    assert not list(plugins.rglob(f"{HARNESS}*"))
