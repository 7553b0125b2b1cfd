"""After ``RESUME``: prove the new writer holds what the old one held, outside the write pause.

Inside the pause the switch proves the target complete by positions and catalog states only
(:mod:`paymigrate.cutover.switch`). The content proof runs here, once clients write to the target: a
full validation of the new writer (the target) against the old one (the source), which follows
it through reverse replication. A difference is re-checked once the old writer has applied the
new writer's position (``engine.catch_up(..., direction="reverse")``), so a row written a moment
ago is never reported, and a row changed on the old writer behind replication's back is.

On a mismatch nothing is switched automatically: the writes made on the target since RESUME are
already flowing back to the source, so the operator decides, with the keys in hand, between
repairing the rows and rolling back (``payment_rollback``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from paymigrate.db import Endpoint
from paymigrate.replication.base import Engine
from paymigrate.validation import validate
from paymigrate.validation.report import Report

log = logging.getLogger(__name__)


def validate_new_writer(*, new_writer: Endpoint, old_writer: Endpoint, engine: Engine,
                        tables: Sequence[str] | None = None, max_keys: int = 100,
                        catch_up_timeout: float = 60) -> Report:
    """Compare every table of the migration (``tables``; None for all) on the new writer against
    the old one, re-checking differences after reverse replication caught up."""
    catch_up = partial(engine.catch_up, timeout=catch_up_timeout, direction="reverse")
    report = validate(source=new_writer, target=old_writer, tables=tables, max_keys=max_keys,
                      catch_up=catch_up)
    log.info("new writer %s against old writer %s: %s, %d row(s) differ", new_writer.safe(),
             old_writer.safe(), report.status, report.mismatches)
    return report


def mismatch_alert(report: dict[str, Any], *, env: str, run_id: str) -> tuple[str, str]:
    """Subject and message of the error alert for a post-switch mismatch: each table with its
    keys (``missing`` = on the new writer only, ``extra`` = on the old writer only), and what to
    do. ``report`` is :meth:`Report.to_dict`."""
    bad = [t for t in report["tables"] if t["status"] != "match"]
    lines = [f"After the cutover (run {run_id}), the new writer (target) and the old writer "
             f"(source) differ in {len(bad)} table(s):"]
    for t in bad:
        if t.get("keyed", True):
            lines.append(f"- {t['table']}: only on the new writer {t['missing_count']} "
                         f"{json.dumps(t['missing'])}, only on the old writer {t['extra_count']} "
                         f"{json.dumps(t['extra'])}, different {t['different_count']} "
                         f"{json.dumps(t['different'])}")
        else:
            lines.append(f"- {t['table']} (no key): {t['source_surplus']} row(s) surplus on the new "
                         f"writer, {t['target_surplus']} on the old")
    lines += [
        "",
        "Writes go to the target, and reverse replication already carries them back to the source.",
        "- To keep the target: repair the rows listed above on the target, then run "
        "payment_validation with force to confirm.",
        f"- To roll back: trigger payment_rollback (environment {env}); it drains reverse "
        "replication first, so nothing written since the cutover is lost. The source holds the "
        "differences listed above: check them before you do.",
    ]
    tables = ", ".join(t["table"] for t in bad)
    return f"Post-cutover validation mismatch ({env}): {tables}"[:100], "\n".join(lines)
