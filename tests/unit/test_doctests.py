"""The examples in docstrings run: every module of the runtime package and of the dev harness
that has one."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (REPO / "plugins" / "paymigrate", REPO / "harness" / "paymigrate_dev")
MODULES = sorted(
    ".".join((package.name, *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
    for package in PACKAGES for p in package.rglob("*.py") if ">>> " in p.read_text())


def test_the_package_has_examples():
    assert len(MODULES) >= 5, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
