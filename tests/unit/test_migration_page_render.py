"""The Migration page's data (overview.read over a real CheckpointStore on moto's in-process S3)
and its HTML (page.render), without Airflow."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from paymigrate.aws.checkpoints import CheckpointStore
from paymigrate.migration import history, overview, page
from paymigrate.migration.lock import LockState

BUCKET = "checkpoints-unit"
CONFIG = {"workflow/mode": "cutover", "database/active-writer": "target"}
SWITCH = {"steps": {"resume": 0.0006, "prepare": 0.0282, "pause": 0.0174, "freeze_source": 0.0036,
                    "drain": 0.0093, "check_tables": 0.0027, "sync_sequences": 0.0044,
                    "capture_reverse": 0.0045, "repoint": 0.0017},
          "write_pause_seconds": 0.0458, "budget_seconds": 0.5, "failed_step": None}


@pytest.fixture
def store(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # mock_aws, not a moto server
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield CheckpointStore(s3=s3, bucket=BUCKET, env="unit")


def _migrated(store: CheckpointStore) -> str:
    lock = store.acquire(run_id="manual__m1", dag_id="payment_migration")
    mid = lock.migration_id
    for phase in ("preparation", "replication"):
        store.save(migration_id=mid, phase=phase, run_id="manual__m1", doc={"plan": {"engine": "x"}})
    report = {"status": "match", "tables_checked": 7, "rows_checked": 4000, "mismatches": 0,
              "seconds": 1.25, "finished": "2026-12-04T10:05:00+00:00", "tables": []}
    history.record_validation(store, report, where="new writer", run_id="manual__c0",
                              dag_id="payment_cutover")
    history.record_validation(store, report, where="migration", run_id="manual__m1",
                              dag_id="payment_migration")
    store.save(migration_id=mid, phase="validation", run_id="manual__m1", doc={"validate": report})
    store.set_state(LockState.CUTOVER_READY)
    store.set_state(LockState.CUTTING_OVER, run_id="manual__c1")
    store.save(migration_id=mid, phase="cutover", run_id="manual__c1",
               doc={"write_switch": SWITCH, "approve_cutover": {"by": "admin"},
                    "preflight_cutover": {"approved_by": "ops <lead>"}})
    store.set_state(LockState.CUT_OVER)
    t0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    for i, (secs, nbytes) in enumerate([(None, 90000), (0.8, 40000), (0.2, 3000), (0.0, 0)]):
        history.record_lag(store, mid, {"seconds": secs, "bytes": nbytes}, where="lag_below",
                           at=(t0 + timedelta(seconds=5 * i)).isoformat())
    history.record_copy(store, mid, {"tables": [
        {"table": "public.payments", "rows": 1000, "bytes": 4_000_000, "rows_total": 2000,
         "bytes_total": 8_000_000, "seconds": 2.0, "done": False},
        {"table": "public.<x>", "rows": 10, "bytes": 8192, "rows_total": 10, "bytes_total": 8192,
         "seconds": 0.1, "done": True},
        {"table": "public.later", "rows": 0, "bytes": 0, "rows_total": 5, "bytes_total": 100,
         "seconds": 0.0, "done": False}],
        "overall": {"seconds": 2.0, "rows_done": 1010, "rows_total": 2015, "bytes_done": 4_008_192,
                    "bytes_total": 8_008_292}})
    return mid


def test_nothing_started_is_said_and_readable(store):
    o = overview.read(store, CONFIG)
    assert (o.lock, o.phase, o.phases_done, o.problems) == (None, "none", (), ())
    html = page.render(o)
    assert "No migration has started in this environment" in html
    for muted in ("No lag sample recorded yet", "No validation has run yet", "No cutover yet",
                  "No copy progress recorded", "No DAG run of a migration yet"):
        assert muted in html
    assert "<svg" not in html


def test_a_cut_over_migration_reads_as_typed_values(store):
    mid = _migrated(store)
    o = overview.read(store, CONFIG)
    assert o.state is LockState.CUT_OVER and o.phase == "cutover"
    assert o.phases_done == ("preparation", "replication", "validation", "cutover")
    assert [s.bytes for s in o.lag] == [90000, 40000, 3000, 0]
    assert o.lag[0].seconds is None and o.lag[1].seconds == 0.8
    v, first = o.validations
    assert first.where == "new writer" and history.REPORT_KEY.match(first.report), first.report
    assert (v.status, v.tables, v.rows, v.mismatches, v.seconds, v.where) == ("match", 7, 4000, 0, 1.25,
                                                                              "migration")
    assert json.loads(store.s3.get_object(Bucket=BUCKET, Key=f"unit/{v.report}")["Body"].read())["rows_checked"] == 4000
    assert history.REPORT_KEY.match(v.report), v.report
    c = o.cutover
    assert [s.name for s in c.steps] == ["prepare", "pause", "freeze_source", "drain", "check_tables",
                                         "sync_sequences", "capture_reverse", "repoint", "resume"]
    assert c.steps[0].start_ms == 0 and not c.steps[0].in_pause
    assert c.steps[1].start_ms == pytest.approx(28.2) and all(s.in_pause for s in c.steps[1:])
    assert (c.write_pause_ms, c.budget_ms, c.approved_by) == (pytest.approx(45.8), 500, "admin")
    payments = o.copy[0]
    assert payments.rows_per_second == 500 and payments.eta_seconds == pytest.approx(2.0)
    assert o.copy[1].eta_seconds == 0
    assert o.copy_overall.eta_seconds == pytest.approx(2.0, abs=0.01)
    assert {(r.dag_id, r.run_id) for r in o.runs} == {("payment_migration", "manual__m1"),
                                                      ("payment_cutover", "manual__c1")}
    assert mid == "manual__m1" and o.lock_dag_id == "payment_cutover"


def test_the_page_draws_plots_timeline_and_links_with_values_escaped(store):
    _migrated(store)
    html = page.render(overview.read(store, CONFIG), ui_base="/airflow")
    assert 'id="lag-seconds"' in html and 'id="lag-bytes"' in html
    # the lag-in-seconds plot has the three samples that had seconds; bytes has all four
    assert len(re.search(r'id="lag-seconds".*?</svg>', html).group(0).split("<circle")) == 4
    assert len(re.search(r'id="lag-bytes".*?</svg>', html).group(0).split("<circle")) == 5
    timeline = re.search(r'id="cutover-timeline".*?</svg>', html).group(0)
    assert timeline.count("<rect") == 9 and timeline.count("#dd6b20") == 8
    assert "Write pause <b>45.8 ms</b> of a 500 ms budget" in html
    assert 'href="/airflow/dags/payment_cutover/runs/manual__c1"' in html
    assert 'href="report?key=validation-reports%2F2026-12-04T10-05-00-00-00-migration.json"' in html
    assert "public.&lt;x&gt;" in html and "ops &lt;lead&gt;" in html and "<x>" not in html
    assert "Cut over: the target is the writer" in html
    copy = re.search(r'<table id="copy">.*?</table>', html).group(0)
    assert "<td>waiting</td>" in copy and "–/s" not in copy
    assert "<td><b>all tables</b></td><td>1,010 / 2,015</td>" in copy and "<b>2.0 s</b>" in copy
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched


def test_a_failed_migration_says_so(store):
    store.acquire(run_id="manual__m2", dag_id="payment_migration")
    store.set_state(LockState.FAILED)
    o = overview.read(store, None)
    assert o.failed and o.phase == "starting"
    assert o.problems == ("the contract not readable",)
    html = page.render(o)
    assert 'class="banner failed"' in html and "The migration failed." in html
    assert "holds the lock (failed)" in html


def test_an_unreadable_store_is_named_not_raised(store):
    broken = CheckpointStore(s3=store.s3, bucket="no-such-bucket", env="unit")
    o = overview.read(broken, CONFIG)
    assert o.lock is None and any("migration lock not readable" in p for p in o.problems)
    assert "migration lock not readable" in page.render(o)


def test_lag_history_is_thinned_not_cut(store, monkeypatch):
    monkeypatch.setattr(history, "MAX_SAMPLES", 10)
    for i in range(25):
        history.record_lag(store, "m", {"seconds": float(i), "bytes": i}, where="t",
                           at=f"2026-12-04T10:00:{i:02d}+00:00")
    kept = [s["bytes"] for s in store.get_doc("m/lag.json")["samples"]]
    assert len(kept) <= 10 and kept[0] == 0 and kept[-1] == 24 and kept == sorted(kept)


def test_recording_never_fails_the_step(store, caplog):
    broken = CheckpointStore(s3=store.s3, bucket="no-such-bucket", env="unit")
    history.record_lag(broken, "m", {"seconds": 1.0, "bytes": 1}, where="t")
    assert history.record_validation(broken, {"status": "match"}, where="x", run_id="r", dag_id="d") is None
    assert "not recorded for the Migration page" in caplog.text
