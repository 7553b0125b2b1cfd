"""Pure parts of the write switch: the pause budget's clock, the switch's own checks, the alert
after a post-switch mismatch, and the schema dump's filter for the fence."""

from __future__ import annotations

import time

import pytest

from paymigrate.cutover.after_switch import mismatch_alert
from paymigrate.cutover.switch import (
    DRAIN_POLL,
    SWITCH_STEPS,
    PauseBudgetExceeded,
    Switch,
    SwitchResult,
    _Clock,
    _drain,
    _Overrun,
)
from paymigrate.db import Endpoint
from paymigrate.errors import PaymigrateError
from paymigrate.replication import Lag
from paymigrate.replication.schema import _FENCE
from paymigrate.routing.fleet import RouterNode

EP = Endpoint("127.0.0.1", 5432, "payments", "paymigrate")


def _switch(**kw) -> Switch:
    kw.setdefault("engine", None)
    kw.setdefault("routers", (RouterNode("router", None, None),))
    return Switch(source=EP, target=EP, database="payments", **kw)


class CatchingUp:
    """The engine calls the drain makes: it records each catch-up and answers ``caught``."""

    def __init__(self, caught: bool):
        self.caught, self.calls = caught, []

    def position(self, *, side="source"):
        return {"source": "0/10", "target": "0/20"}[side]

    def catch_up(self, position, timeout=60, *, direction="forward", poll=None):
        self.calls.append((position, timeout, direction, poll))
        return self.caught

    def lag(self, *, direction="forward"):
        return Lag(100, 0.3)


def _paused(budget: float) -> _Clock:
    clock = _Clock(SwitchResult("source->target", budget), None, SWITCH_STEPS)
    clock.step("pause", lambda: None)
    return clock


@pytest.mark.parametrize("budget", [0, -1, 601])
def test_a_budget_out_of_range_is_refused_by_value(budget):
    with pytest.raises(ValueError, match=f"max_write_pause {budget!r}"):
        _switch(max_write_pause=budget)


def test_a_switch_without_tables_is_refused():
    with pytest.raises(ValueError, match="needs the migration's tables"):
        _switch().check_tables_given()


def test_an_unknown_drill_step_is_refused_naming_the_steps():
    with pytest.raises(ValueError, match="'verify' is not one of prepare, pause"):
        _Clock(SwitchResult("source->target", 0.5), "verify", SWITCH_STEPS)


def test_steps_before_the_pause_are_not_held_to_the_budget():
    clock = _Clock(SwitchResult("source->target", 0.001), None, SWITCH_STEPS)
    clock.step("prepare", lambda: time.sleep(0.01))
    assert clock.left() == 0.001 and clock.paused() is None


def test_a_step_that_finds_the_budget_spent_aborts_naming_itself():
    result = SwitchResult("source->target", 0.05)
    clock = _Clock(result, None, SWITCH_STEPS)
    clock.step("pause", lambda: None)
    clock.step("freeze_source", lambda: time.sleep(0.06))  # started within the budget: it runs
    ran = []
    with pytest.raises(PauseBudgetExceeded, match="budget of 50 ms spent before drain"):
        clock.step("drain", lambda: ran.append(1))
    assert ran == [] and result.budget_exceeded and result.failed_step == "drain"
    assert set(result.steps) == {"pause", "freeze_source"}


def test_a_wait_cut_short_by_the_budget_is_named_as_such():
    result = SwitchResult("source->target", 0.5)
    clock = _Clock(result, None, SWITCH_STEPS)
    clock.step("pause", lambda: None)

    def drain():
        raise _Overrun("forward replication did not apply 0/1 within 0.450s")

    with pytest.raises(PauseBudgetExceeded, match="ran out during drain: forward replication"):
        clock.step("drain", drain)
    assert result.budget_exceeded and result.failed_step == "drain"


def test_left_counts_down_from_the_pause():
    clock = _Clock(SwitchResult("source->target", 0.5), None, SWITCH_STEPS)
    clock.step("pause", lambda: time.sleep(0.02))
    assert 0.4 < clock.left() < 0.49 and clock.paused() >= 0.02


def test_the_mismatch_alert_lists_each_key_and_both_ways_out():
    report = {"tables": [
        {"table": "public.accounts", "status": "mismatch", "keyed": True, "missing": [7], "missing_count": 1,
         "extra": [], "extra_count": 0, "different": [3, 4], "different_count": 2},
        {"table": "public.staging", "status": "mismatch", "keyed": False, "source_surplus": 2,
         "target_surplus": 0},
        {"table": "public.payments", "status": "match", "keyed": True},
    ]}
    subject, message = mismatch_alert(report, env="prod", run_id="manual__1")
    assert subject == "Post-cutover validation mismatch (prod): public.accounts, public.staging"
    assert "differ in 2 table(s)" in message and "public.payments" not in message
    assert "only on the new writer 1 [7]" in message and "different 2 [3, 4]" in message
    assert "public.staging (no key): 2 row(s) surplus on the new writer" in message
    assert "payment_rollback (environment prod)" in message and "repair the rows" in message


@pytest.mark.parametrize(("line", "fence"), [
    ("3411; 2620 16620 TRIGGER public payments paymigrate_write_fence postgres", True),
    ("3411; 2620 16620 TRIGGER billing \"Payments\" paymigrate_write_fence app", True),
    ("3411; 2620 16620 TRIGGER public payments audit_trigger postgres", False),
    ("3411; 2620 16620 TRIGGER public paymigrate_write_fence_log audit postgres", False),
    ("210; 1259 16610 TABLE public payments postgres", False),
])
def test_the_schema_dump_leaves_out_only_the_fence_triggers(line, fence):
    assert bool(_FENCE.match(line)) is fence


def test_the_drain_waits_through_the_engine_at_the_pause_pace_within_the_budget_left():
    engine = CatchingUp(True)
    sw = _switch(engine=engine, drain_timeout=10.0)
    assert _drain(sw, _paused(0.5), "forward", side="source") == "0/10"
    [(position, timeout, direction, poll)] = engine.calls
    assert (position, direction, poll) == ("0/10", "forward", DRAIN_POLL)
    assert 0.4 < timeout <= 0.5  # the wait is cut to what is left of the budget
    assert _drain(_switch(engine=engine), _paused(30), "reverse", side="target") == "0/20"
    assert engine.calls[-1][1:3] == (10.0, "reverse")  # the drain's own limit when it is smaller


def test_a_drain_cut_short_by_the_budget_overruns_and_one_that_had_its_time_fails():
    with pytest.raises(_Overrun, match=r"forward replication did not apply 0/10 within 0\.\d+s "
                                       r"\(lag 100 bytes, 0\.3s\)"):
        _drain(_switch(engine=CatchingUp(False)), _paused(0.5), "forward", side="source")
    with pytest.raises(PaymigrateError, match="did not apply 0/20 within 2.000s") as info:
        _drain(_switch(engine=CatchingUp(False), drain_timeout=2.0), _paused(30), "reverse",
               side="target")
    assert not isinstance(info.value, _Overrun)
