"""The seed's SQL is split into named steps and its inputs are checked before any connection."""

from __future__ import annotations

import pytest

from paymigrate.errors import SeedError
from paymigrate_dev.demo.seed import TABLES, load_steps, seed


def test_load_has_one_step_per_table_with_the_values_inlined():
    steps = dict(load_steps(rows=123, seed=7))
    assert set(TABLES) <= set(steps)
    assert "generate_series(1, 123)" in steps["source"] and ":rows" not in "".join(steps.values())
    assert "7 * 7919" in steps["source"]


@pytest.mark.parametrize("rows,seed_value", [(-1, 0), (10**9, 0), ("5", 0), (5, -1), (5, True)])
def test_bad_input_is_refused_naming_the_value(rows, seed_value):
    with pytest.raises(SeedError, match="rows=|seed="):
        seed(dsn="host=192.0.2.1 connect_timeout=1", rows=rows, seed=seed_value)
