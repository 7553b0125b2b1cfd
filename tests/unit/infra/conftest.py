"""Put ``infra/`` and ``lambdas/`` on sys.path the way Pulumi and Lambda do for their code."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
for folder in (REPO / "infra", REPO / "lambdas"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def program_stack():
    """The Pulumi program run once under mocks (non-ephemeral dev): ``(mocks, exported)``."""
    from pulumi_harness import base_config, run_program

    return run_program(base_config("dev", ephemeral=False))
