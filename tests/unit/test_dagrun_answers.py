"""The automatic answer to a human-in-the-loop task: given only once the question has settled,
and again for a retry that asks again. The Airflow API is a fake here (a unit test of the loop)."""

from __future__ import annotations

import time
from typing import Any

from paymigrate_dev.local import dagrun


class FakeApi(dagrun.Api):
    """Plays a run whose approval fails on its first try after the answer, then asks again."""

    def __init__(self) -> None:
        self.base, self.token = "http://fake", "t"
        self.try_number, self.state = 1, dagrun.AWAITING_INPUT
        self.asked_at = time.monotonic()
        self.answered: list[tuple[int, float]] = []

    def _call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method == "PATCH" and path.endswith("hitlDetails"):
            self.answered.append((self.try_number, time.monotonic() - self.asked_at))
            if self.try_number == 1:  # the "state mismatch" of apache/airflow#72716, then a retry
                self.try_number, self.asked_at = 2, time.monotonic()
            else:
                self.state = "success"
            return {"responded_by": {"id": "1", "name": "admin"}, "chosen_options": body["chosen_options"],
                    "responded_at": "2026-12-04T00:00:00Z"}
        if method == "GET" and path.endswith("/taskInstances?limit=500"):
            return {"task_instances": [{"task_id": "approve_cutover", "map_index": -1,
                                        "try_number": self.try_number, "state": self.state}]}
        if method == "GET" and "/dagRuns/" in path and path.count("/") == 6:
            return {"state": "success" if self.state == "success" else "running"}
        if "/xcomEntries/" in path:
            return {"value": None}
        return None


def test_an_answer_waits_for_the_question_to_settle_and_a_retry_is_answered_again(monkeypatch):
    monkeypatch.setattr(dagrun, "ANSWER_SETTLE_SECONDS", 0.3)
    api = FakeApi()
    result = api.run("payment_cutover", {}, timeout=10, poll=0.05, answer="Approve")
    assert result.ok
    assert [n for n, _ in api.answered] == [1, 2]
    assert all(waited >= 0.3 for _, waited in api.answered), api.answered
    assert [a["try_number"] for a in result.answers] == [1, 2]
