"""The Lambda handlers as the Lambda runtime loads them: from their files (``lambdas/`` is the
code root there, not a package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

LAMBDAS = Path(__file__).resolve().parents[1] / "lambdas"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, LAMBDAS / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
