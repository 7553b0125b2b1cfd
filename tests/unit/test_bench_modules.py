"""Every benchmark imports and answers ``--help``: a bench broken by a library change (an import
moved, a function renamed) shows here, not months later on the machine that runs it."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(ROOT / "bench")])
                 if m.name not in ("__main__", "common"))


@pytest.mark.parametrize("name", MODULES)
def test_a_bench_imports_and_prints_its_help(name, capsys):
    module = importlib.import_module(f"bench.{name}")
    if not hasattr(module, "main"):
        return  # a part another bench runs (validation_demo): importing it is the check
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out
