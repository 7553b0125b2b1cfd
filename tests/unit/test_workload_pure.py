"""Pure parts of the workload: operations, the verdict per operation, timing, the ledger file."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from paymigrate_dev.workload import ops
from paymigrate_dev.workload.ledger import LedgerWriter, read_ledger
from paymigrate_dev.workload.report import HeldFacts, judge, longest_stall, percentile

PAY = ops.authorize(key="k1", currency="EUR", amount=Decimal("10.5"), payer=1, payee=4001,
                    clearing=4401)


def test_every_operation_balances_and_derives_its_ids_from_its_key():
    captured = ops.capture(key="k2", payment=PAY.after)
    settled = ops.settle(key="k3", payment=captured.after)
    refunded = ops.refund(key="k4", payment=settled.after, amount=Decimal("4"))
    for op in (PAY, captured, settled, refunded, ops.expire(key="k5", payment=PAY.after)):
        assert sum(a for _, _, a in op.lines) == 0
    assert PAY.after.id == ops.authorize(key="k1", currency="USD", amount=Decimal(1), payer=2,
                                         payee=3, clearing=4).after.id
    assert PAY.txn == ops.txn_id("k1") != ops.txn_id("k2")
    assert refunded.after.status == "partially_refunded" and refunded.after.refunded == 4
    full = ops.refund(key="k6", payment=refunded.after, amount=Decimal("6.5"))
    assert full.after.status == "refunded"


def test_operations_refuse_impossible_transitions():
    with pytest.raises(ValueError, match="cannot settle"):
        ops.settle(key="k", payment=PAY.after)
    settled = ops.settle(key="k", payment=ops.capture(key="c", payment=PAY.after).after).after
    with pytest.raises(ValueError, match="only 10.5000 is refundable"):
        ops.refund(key="r", payment=settled, amount=Decimal("11"))
    with pytest.raises(ValueError, match="unknown status"):
        ops.Payment(id="x", currency="EUR", amount=Decimal(1), payer=1, payee=2, clearing=3,
                    status="lost")


@pytest.mark.parametrize("status,wanted,expected", [
    ("captured", "authorized", True), ("refunded", "settled", True), ("captured", "settled", False),
    ("expired", "authorized", True), ("expired", "captured", False), ("settled", "expired", False),
])
def test_reached_orders_states_along_their_branch(status, wanted, expected):
    assert ops.reached(status, wanted) is expected


def _facts(op: ops.Operation, **changes) -> HeldFacts:
    base = dict(events=1, lines=len(op.lines), lines_abs=sum(abs(a) for _, _, a in op.lines),
                payments_by_key=1 if op.kind == "authorize" else 0,
                payment=(op.after.status, op.after.amount, op.after.refunded, PAY.key))
    return HeldFacts(**{**base, **changes})


def test_judge_finds_a_complete_operation_and_names_what_is_missing():
    rec = PAY.record()
    assert judge(rec, _facts(PAY)) .found
    v = judge(rec, _facts(PAY, events=0, lines=1))
    assert not v.found and v.missing == ("event", "ledger lines (1 of 2)")
    assert not judge(rec, _facts(PAY, payment=None)).found
    # A later state still counts as found for an earlier operation.
    assert judge(rec, _facts(PAY, payment=("settled", PAY.after.amount, Decimal(0), "k1"))).found


def test_judge_counts_duplicates_by_key_not_by_constraint():
    v = judge(PAY.record(), _facts(PAY, events=2))
    assert v.found and v.duplicated
    assert judge(PAY.record(), _facts(PAY, lines=4, lines_abs=Decimal(42))).duplicated
    settled = ops.settle(key="s", payment=ops.capture(key="c", payment=PAY.after).after)
    refund = ops.refund(key="r", payment=settled.after, amount=Decimal(2))
    twice = _facts(refund, refunds_by_key=2, refund_amount=Decimal(4))
    assert judge(refund.record(), twice).duplicated
    assert not judge(refund.record(), _facts(refund, refunds_by_key=0)).found


def test_a_delete_is_found_when_the_row_is_gone():
    exp = ops.expire(key="e", payment=PAY.after)
    assert judge(exp.record(), _facts(exp, hold=False)).found
    assert judge(exp.record(), _facts(exp, hold=True)).missing == ("hold deletion",)


def test_longest_stall_is_the_wait_with_no_commit_anywhere():
    # Two clients commit every 10 ms, then both wait from 1.00 until 3.00 (a 2 s pause).
    ops_ = [(t / 100, t / 100 + 0.005) for t in range(100)] + [(1.0, 3.0), (1.002, 3.001)]
    commits = [end for _, end in ops_]
    assert longest_stall(ops_, commits) == pytest.approx(2.0, abs=0.01)
    assert longest_stall([], []) == 0


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50, 99, 100)
    assert percentile([], 50) == 0


def test_ledger_flushes_within_its_interval_and_reads_back(tmp_path):
    path = tmp_path / "ledger" / "run.jsonl"
    w = LedgerWriter(path, batch=1000, interval=0.05)
    w.append({"type": "op", "key": "a", "amount": Decimal("1.5")})
    time.sleep(0.3)
    assert [r["key"] for r in read_ledger(path)] == ["a"]  # flushed before close
    w.append({"type": "op", "key": "b"})
    w.close()
    assert [r["key"] for r in read_ledger(path)] == ["a", "b"]
    with pytest.raises(RuntimeError):
        w.append({"key": "c"})


def test_a_torn_last_line_is_skipped_but_a_torn_middle_line_is_an_error(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps({"key": "a"}) + "\n" + '{"key": "b", "am')
    assert [r["key"] for r in read_ledger(path)] == ["a"]
    path.write_text('{"key": "b", "am\n' + json.dumps({"key": "a"}) + "\n")
    with pytest.raises(ValueError, match="l.jsonl:1"):
        list(read_ledger(path))
