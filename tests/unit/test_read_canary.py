"""The read canary without a server: the split, its figures, and the gate's verdict."""

from __future__ import annotations

import random

from paymigrate.cutover.read_canary import RouteFigures, metric_data, verdict
from paymigrate_dev.workload.reads import ReadSplit


def test_the_split_follows_the_share_and_keeps_the_last_one_when_it_cannot_be_read():
    shares = iter([30, RuntimeError("SSM throttled"), 0])

    def share():
        value = next(shares)
        if isinstance(value, Exception):
            raise value
        return value

    split = ReadSplit(target_dsns=["dsn"], share=share, refresh=3600)
    split._refresh()
    rng = random.Random(1)
    picks = [split.route(rng) for _ in range(2000)]
    assert 0.25 < picks.count("target") / 2000 < 0.35
    split._refresh()
    assert split.percent == 30
    split._refresh()
    assert {split.route(rng) for _ in range(200)} == {"writer"}


def test_each_interval_is_published_once_and_the_totals_keep_everything():
    published = []
    split = ReadSplit(target_dsns=["dsn"], share=lambda: 10, refresh=3600, publish=published.append)
    for ms in range(1, 101):
        split.record("target", ok=True, seconds=ms / 1000, stale=ms % 10 == 0)
    split.record("target", ok=False, seconds=0.5, error="permission denied for table payments")
    split._publish()
    split._publish()  # nothing new: nothing sent
    [[target]] = published
    assert (target.reads, target.errors, target.stale, target.p99_ms) == (100, 1, 10, 99.0)
    split.record("writer", ok=True, seconds=0.002)
    assert set(split.totals()) == {"target", "writer"}
    assert split.totals()["target"].last_error == "permission denied for table payments"


def test_metric_data_has_every_figure_per_route():
    data = metric_data([RouteFigures("target", 5, 2, 1, 12.5)], env="dev")
    assert {d["MetricName"]: d["Value"] for d in data} == {"Reads": 5, "ReadErrors": 2, "StaleReads": 1,
                                                           "ReadLatencyP99": 12.5}
    assert all({"Name": "Route", "Value": "target"} in d["Dimensions"] for d in data)


LIMITS = {"percent": 50, "max_error_rate": 5.0, "max_p99_ms": 250.0, "max_stale_rate": 5.0}


def test_the_gate_passes_within_every_limit_and_without_evidence():
    assert verdict(RouteFigures("target"), **LIMITS).ok
    assert verdict(RouteFigures("target", reads=96, errors=4, stale=4, p99_ms=250.0), **LIMITS).ok
    # Every read failed: no latency and no staleness to judge, the error rate says it all.
    failed = verdict(RouteFigures("target", errors=3, last_error="permission denied"), **LIMITS)
    assert failed.reason == ("reads through the target route at 50%: error rate 100.0% (3 of 3) is "
                             "over 5.0%; last error: permission denied")


def test_the_gate_names_the_error_rate():
    v = verdict(RouteFigures("target", reads=94, errors=6), **LIMITS)
    assert not v.ok and v.reason == "reads through the target route at 50%: error rate 6.0% (6 of 100) is over 5.0%"


def test_the_gate_names_the_p99_latency():
    v = verdict(RouteFigures("target", reads=10, p99_ms=900), **LIMITS)
    assert not v.ok and v.reason == "reads through the target route at 50%: p99 latency 900 ms is over 250 ms"
    assert verdict(RouteFigures("target", reads=10, p99_ms=900), percent=50, max_error_rate=5).ok  # no limit


def test_the_gate_names_the_stale_reads_as_a_share_of_the_reads_that_answered():
    v = verdict(RouteFigures("target", reads=40, errors=60, stale=3), **{**LIMITS, "max_error_rate": 100})
    assert not v.ok and v.reason == ("reads through the target route at 50%: stale reads 7.5% (3 of 40) "
                                     "are over 5.0%")
    assert verdict(RouteFigures("target", reads=100, stale=5), **LIMITS).ok  # at the limit


def test_the_gate_names_every_figure_over_its_limit():
    v = verdict(RouteFigures("target", reads=90, errors=10, stale=9, p99_ms=300, last_error="timeout"), **LIMITS)
    assert v.reason == ("reads through the target route at 50%: error rate 10.0% (10 of 100) is over 5.0%, "
                        "p99 latency 300 ms is over 250 ms, stale reads 10.0% (9 of 90) are over 5.0%; "
                        "last error: timeout")
