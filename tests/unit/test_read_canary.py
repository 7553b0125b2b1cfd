"""The read canary without a server: the split, its figures, and the gate's verdict."""

from __future__ import annotations

import random

from paymigrate.workload.reads import ReadSplit, RouteFigures, metric_data, verdict


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


def test_the_gate_fails_on_the_error_rate_or_the_latency_and_passes_without_evidence():
    assert verdict(RouteFigures("target"), percent=10, max_error_rate=5).ok
    assert verdict(RouteFigures("target", reads=96, errors=4), percent=50, max_error_rate=5).ok
    slow = verdict(RouteFigures("target", reads=10, p99_ms=900), percent=50, max_error_rate=5, max_p99_ms=250)
    assert not slow.ok and "p99 latency 900 ms is over 250 ms" in slow.reason
