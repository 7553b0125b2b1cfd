"""The cutover approval's figures and text, from checkpoint and XCom summaries."""

from __future__ import annotations

from datetime import UTC, datetime

from paymigrate.cutover import approval

NOW = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
MIGRATION = {"validate": {"status": "match", "tables_checked": 7, "rows_checked": 4000, "mismatches": 0,
                          "finished": "2026-12-01T10:00:00+00:00"}}


def _figures(**over):
    args = {"lag": {"seconds": 0.4, "bytes": 120}, "migration_validation": MIGRATION,
            "scheduled_validation": None, "canary": [{"percent": 10, "alarms": [], "lag": {"seconds": 0.1}}],
            "drills": None, "budget_ms": 500.0, "now": NOW, **over}
    return approval.figures(**args)


def test_the_expected_pause_is_the_median_of_the_drills_and_says_so_when_none():
    drills = {"drills": [{"write_pause_ms": 90}, {"write_pause_ms": 30}, {"write_pause_ms": None},
                         {"write_pause_ms": 50}]}
    f = _figures(drills=drills)
    assert f.expected_pause_ms == 50 and f.drill_pauses_ms == [90, 30, 50]
    assert "50 ms, the median of 3 rehearsal drill(s) (min 30, max 90); budget 500 ms" in approval.body(f)
    assert _figures().expected_pause_ms is None
    assert "no rehearsal drill recorded" in approval.body(_figures())


def test_the_newer_validation_is_shown_with_its_age():
    scheduled = {"finished": "2026-12-01T08:05:00+00:00", "tables": 7, "rows_checked": 9, "mismatches": 2}
    f = _figures(scheduled_validation=scheduled)
    assert (f.validation.where, f.validation.age_seconds) == ("migration", 300.0)
    newer = {**scheduled, "finished": "2026-12-01T10:04:00+00:00"}
    g = _figures(scheduled_validation=newer)
    assert (g.validation.where, g.validation.status, g.validation.age_seconds) == ("scheduled", "mismatch", 60.0)
    text = approval.body(f)
    assert "**match**, 7 tables, 4000 rows, 0 mismatches" in text and "5 min ago" in text
    assert "none recorded" in approval.body(_figures(migration_validation=None))


def test_lag_and_canary_figures_are_in_the_text_and_an_unknown_lag_gives_its_reason():
    f = _figures(canary=[{"percent": 10, "alarms": [], "lag": {"seconds": 0.1}},
                         {"percent": 50, "alarms": ["ReplicationLag-test"], "lag": {"seconds": None}}])
    text = approval.body(f)
    assert "0.40 s, 120 bytes of WAL" in text
    assert "10% of reads: alarms none, lag 0.10 s; 50% of reads: alarms ReplicationLag-test, lag unknown" in text
    unknown = _figures(lag={"seconds": None, "bytes": None, "reason": "DMS reports no lag"})
    assert "unknown (DMS reports no lag)" in approval.body(unknown)


def test_drills_keep_the_newest_and_the_decision_names_who_and_when():
    doc = None
    for i in range(approval.KEEP_DRILLS + 3):
        doc = approval.with_drill(doc, run_id=f"r{i}", failed_step="check_tables", write_pause_seconds=0.0125,
                                  at="2026-12-01T10:00:00+00:00")
    assert len(doc["drills"]) == approval.KEEP_DRILLS and doc["drills"][-1]["run_id"] == f"r{approval.KEEP_DRILLS + 2}"
    assert doc["drills"][0]["write_pause_ms"] == 12.5
    at = datetime(2026, 12, 1, 10, 6, tzinfo=UTC)
    yes = approval.decision({"chosen_options": ["Approve"], "responded_by_user": {"id": "admin", "name": "admin"},
                             "responded_at": at})
    assert yes == {"approved": True, "chosen": ["Approve"], "by": "admin", "by_id": "admin", "at": at.isoformat()}
    assert approval.decision({"chosen_options": ["Reject"], "responded_by_user": {"id": "7", "name": "ops"},
                              "responded_at": at})["approved"] is False
