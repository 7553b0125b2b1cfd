"""The shared progress helper: figures, lines, the timer; and the copy's per-table figures."""

from __future__ import annotations

import logging
import threading

import pytest

from paymigrate.progress import Figures, Ticker
from paymigrate.replication.snapshot import CopyProgress, TableProgress


def test_figures_go_by_bytes_and_fall_back_to_rows():
    f = Figures(seconds=10, rows_done=1000, rows_total=4000, bytes_done=100, bytes_total=1000)
    assert (f.rows_per_second, f.bytes_per_second, f.eta_seconds) == (100, 10, 90)
    rows_only = Figures(seconds=10, rows_done=1000, rows_total=4000)
    assert rows_only.eta_seconds == 30 and "ETA 30 s" in rows_only.line() and "MB" not in rows_only.line()
    assert Figures(seconds=0).eta_seconds is None and Figures(seconds=0).line() == "ETA unknown"
    d = f.to_dict()
    assert (d["rows_per_second"], d["bytes_per_second"], d["eta_seconds"]) == (100, 10, 90)
    with pytest.raises(ValueError, match="negative"):
        Figures(seconds=1, rows_done=-1)


def test_ticker_logs_every_interval_and_survives_a_failing_sample(caplog):
    calls, ticked = [], threading.Event()

    def sample(seconds):
        calls.append(seconds)
        if len(calls) == 1:
            raise RuntimeError("server restarting")
        ticked.set()
        return Figures(seconds, 5, 10), "2/4 things"

    caplog.set_level(logging.INFO)
    with Ticker(sample, what="test work", every=0.05):
        assert ticked.wait(5)
    assert "test work: progress not measured: RuntimeError: server restarting" in caplog.text
    assert "test work: 5 of ~10 rows" in caplog.text and "; 2/4 things" in caplog.text
    assert calls == sorted(calls)
    with pytest.raises(ValueError, match="positive"):
        Ticker(sample, what="x", every=0)


def test_copy_progress_sums_tables_and_names_what_runs():
    p = CopyProgress((TableProgress("public.a", 100, 800, 100, 800, 1.0, True),
                      TableProgress("public.b", 50, 1000, 200, 4000, 2.0, False),
                      TableProgress("public.c", 0, 0, None, 10, 0.0, False)), seconds=4.0)
    f = p.figures()
    assert (f.rows_done, f.rows_total, f.bytes_done, f.bytes_total) == (150, None, 1800, 4810)
    # a total unknown for one table is unknown overall: rows have no "of ~"; ETA goes by bytes
    assert p.line() == ("1/3 tables, 150 rows, 0.0 of ~0.0 MB, 38 rows/s, 0.0 MB/s, ETA 7 s; "
                        "copying public.b")
    d = p.to_dict()
    assert d["tables"][1] == {"table": "public.b", "rows": 50, "bytes": 1000, "rows_total": 200,
                              "bytes_total": 4000, "seconds": 2.0, "done": False}
    assert d["overall"]["eta_seconds"] == pytest.approx((4810 - 1800) / (1800 / 4.0), abs=0.1)
