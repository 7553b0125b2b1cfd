"""The migration lock's state machine and the one lag-threshold parse, without any server."""

from __future__ import annotations

import pytest

from paymigrate.errors import ContractError, Refused
from paymigrate.migration.lock import MOVES, IllegalTransition, LockState, check_move, state
from paymigrate.migration.plan import LAG_THRESHOLD, lag_threshold

S = LockState


@pytest.mark.parametrize(("current", "wanted"), [
    (None, S.RUNNING), (S.RUNNING, S.FAILED), (S.FAILED, S.RUNNING), (S.RUNNING, S.CUTOVER_READY),
    (S.CUTOVER_READY, S.CUTTING_OVER), (S.CUTTING_OVER, S.CUT_OVER), (S.CUTTING_OVER, S.CUTOVER_READY),
    (S.CUT_OVER, S.ROLLED_BACK), (S.ROLLED_BACK, S.RUNNING), (S.CUTOVER_READY, S.RUNNING),
])
def test_the_runbook_moves_are_allowed(current, wanted):
    assert check_move(current, wanted) is wanted


@pytest.mark.parametrize("current", list(LockState))
def test_a_state_may_be_set_again_and_every_state_may_roll_back(current):
    assert check_move(current, current) is current
    assert check_move(current, S.ROLLED_BACK) is S.ROLLED_BACK


@pytest.mark.parametrize(("current", "wanted"), [
    (S.CUT_OVER, S.RUNNING),  # no new migration while the target is the writer
    (S.CUTTING_OVER, S.RUNNING), (S.RUNNING, S.CUTTING_OVER), (S.FAILED, S.CUTOVER_READY),
    (S.CUT_OVER, S.CUTOVER_READY), (None, S.CUTOVER_READY),
])
def test_an_illegal_move_is_refused_naming_both_states(current, wanted):
    with pytest.raises(IllegalTransition) as caught:
        check_move(current, wanted)
    assert (caught.value.current, caught.value.wanted) == (current, wanted)
    assert f"from {current or 'no lock'} to {wanted}" in str(caught.value)
    assert isinstance(caught.value, Refused)  # a task fails at once, no retry


def test_every_state_has_its_moves_and_only_known_states_parse():
    assert set(MOVES) == set(LockState)
    assert state("cut-over") is S.CUT_OVER
    with pytest.raises(ValueError, match="'cutover' is not one of running, failed"):
        state("cutover")


@pytest.mark.parametrize(("given", "expected"), [(None, 5.0), ("", 5.0), ("  ", 5.0), ("2.5", 2.5),
                                                  (30, 30.0)])
def test_the_lag_threshold_is_the_runs_or_the_contracts(given, expected):
    assert lag_threshold(given, {LAG_THRESHOLD: 5.0}) == expected


@pytest.mark.parametrize(("given", "message"), [("-1", "below the minimum"), ("soon", "not a number"),
                                                (7200, "above the maximum 3600")])
def test_a_bad_lag_threshold_is_refused_by_value(given, message):
    with pytest.raises(ContractError, match=f"replication-lag-threshold-seconds: {given} is {message}"):
        lag_threshold(given, {LAG_THRESHOLD: 5.0})
