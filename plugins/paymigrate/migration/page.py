"""The Migration page's HTML, from an :class:`~paymigrate.migration.overview.Overview`.

One self-contained document: inline CSS, plots as inline SVG drawn here (nothing is loaded from
elsewhere, so it works with no route beyond the api-server). Every value is escaped. Links to
DAG runs point at the Airflow UI under ``ui_base`` and open in the top window (the page is
shown in the UI's frame); report links are relative to the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

from paymigrate.migration.overview import Cutover, LagSample, Overview, TableCopy, ValidationRun
from paymigrate.progress import Figures

CSS = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c;background:#fff}
h1{font-size:22px;margin:0 0 8px} h2{font-size:17px;margin:22px 0 6px}
table{border-collapse:collapse;font-size:13px} td,th{border-bottom:1px solid #e2e8f0;padding:3px 10px;
text-align:right} th{background:#f7fafc} td:first-child,th:first-child{text-align:left}
.banner{padding:8px 12px;border-radius:4px;background:#ebf8ff;border:1px solid #90cdf4}
.banner.failed{background:#fff5f5;border-color:#fc8181} .muted{color:#718096}
.match{color:#276749} .mismatch,.error{color:#c53030;font-weight:600}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:14px;margin:8px 0}
dt{color:#4a5568} dd{margin:0} svg text{font-size:11px;font-family:system-ui,sans-serif}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def number(value: float | int | None, unit: str = "") -> str:
    """``1234567`` as ``1,234,567``; None as a dash.

    >>> number(1234567), number(None), number(2.5, " s")
    ('1,234,567', '–', '2.5 s')
    """
    if value is None:
        return "–"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"
    return f"{text}{unit}"


def size(n: float | None) -> str:
    """Bytes in the nearest unit.

    >>> size(0), size(1536), size(3 * 1024 ** 3)
    ('0 B', '1.5 KiB', '3.0 GiB')
    """
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """Seconds for people.

    >>> duration(4.2), duration(125), duration(None)
    ('4.2 s', '2 min 5 s', '–')
    """
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _stamp(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "–"


def run_href(ui_base: str, dag_id: str, run_id: str) -> str:
    return f"{ui_base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


# ---- plots ----------------------------------------------------------------------------------------
def line_plot(points: Sequence[tuple[float, float]], *, title: str, unit: str, plot_id: str,
              width: int = 640, height: int = 150) -> str:
    """An SVG line plot of ``(x seconds, y)`` points with its axes' ranges written out."""
    left, bottom, top, right = 70, 22, 18, 12
    w, h = width - left - right, height - top - bottom
    x_max = max((x for x, _ in points), default=0.0) or 1.0
    y_max = max((y for _, y in points), default=0.0) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return left + w * x / x_max, top + h * (1 - y / y_max)

    coords = [at(x, y) for x, y in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#3182ce"/>' for x, y in coords)
    return (
        f'<svg id="{_e(plot_id)}" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{left}" y="12" font-weight="600">{_e(title)}</text>'
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#a0aec0"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#a0aec0"/>'
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{_e(unit_label(y_max, unit))}</text>'
        f'<text x="{left - 4}" y="{top + h}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 4}">0 s</text>'
        f'<text x="{left + w}" y="{height - 4}" text-anchor="end">{_e(duration(x_max))} since the first sample</text>'
        f'<polyline fill="none" stroke="#3182ce" stroke-width="1.5" points="{line}"/>{dots}</svg>')


def unit_label(value: float, unit: str) -> str:
    return size(value) if unit == "bytes" else f"{value:.2f} {unit}"


def lag_section(samples: Sequence[LagSample]) -> str:
    if not samples:
        return '<p class="muted" id="lag-plot">No lag sample recorded yet.</p>'
    t0 = samples[0].at
    secs = [((s.at - t0).total_seconds(), float(s.seconds)) for s in samples if s.seconds is not None]
    byts = [((s.at - t0).total_seconds(), float(s.bytes)) for s in samples if s.bytes is not None]
    last = samples[-1]
    plots = [line_plot(secs, title="Replication lag (seconds)", unit="s", plot_id="lag-seconds")
             if secs else '<p class="muted">Lag in seconds not known for these samples.</p>',
             line_plot(byts, title="Replication lag (WAL bytes)", unit="bytes", plot_id="lag-bytes")
             if byts else '<p class="muted">This engine does not report lag in bytes.</p>']
    return (f'<div id="lag-plot">{"<br>".join(plots)}<p class="muted">{len(samples)} sample(s) from '
            f'{_stamp(t0)}; last {number(last.seconds, " s")}, {size(last.bytes)} at {_stamp(last.at)} '
            f'({_e(last.where)}).</p></div>')


def timeline(c: Cutover, *, width: int = 640) -> str:
    """The switch's steps as bars on one time axis; the write pause's steps in orange."""
    left, row, top = 120, 18, 20
    total = sum(s.duration_ms for s in c.steps) or 1.0
    w = width - left - 70
    height = top + row * len(c.steps) + 24
    bars = []
    for i, s in enumerate(c.steps):
        y = top + i * row
        x, bw = left + w * s.start_ms / total, max(w * s.duration_ms / total, 1.5)
        color = "#dd6b20" if s.in_pause else "#a0aec0"
        bars.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{_e(s.name)}</text>'
                    f'<rect x="{x:.1f}" y="{y + 2}" width="{bw:.1f}" height="{row - 5}" fill="{color}"/>'
                    f'<text x="{x + bw + 4:.1f}" y="{y + 12}">{s.duration_ms:.1f} ms</text>')
    return (f'<svg id="cutover-timeline" role="img" aria-label="cutover timeline" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<text x="{left}" y="12" font-weight="600">Write switch, {total:.1f} ms '
            f'(orange: writes paused)</text>{"".join(bars)}'
            f'<text x="{left}" y="{height - 4}">0 ms</text>'
            f'<text x="{left + w}" y="{height - 4}" text-anchor="end">{total:.1f} ms</text></svg>')


# ---- sections ---------------------------------------------------------------------------------------
def head(o: Overview, ui_base: str) -> str:
    lock = o.lock
    rows = [("Phase", o.phase), ("Lock", lock.state if lock else "none")]
    if lock:
        rows += [("Migration", lock.migration_id),
                 ("Driven by", f'<a href="{_e(run_href(ui_base, o.lock_dag_id or lock.dag_id, lock.run_id))}">'
                               f'{_e(o.lock_dag_id or lock.dag_id)} {_e(lock.run_id)}</a>'),
                 ("Lock updated", lock.updated)]
    rows += [("Active writer", o.active_writer or "–"), ("Mode", o.mode or "–"),
             ("Phases checkpointed", ", ".join(o.phases_done) or "none"), ("Read at", _stamp(o.read_at))]
    cells = "".join(f"<dt>{_e(k)}</dt><dd>{v if k == 'Driven by' else _e(v)}</dd>" for k, v in rows)
    cls = "banner failed" if o.failed else "banner"
    problems = "".join(f'<li class="error">{_e(p)}</li>' for p in o.problems)
    return (f'<div class="{cls}" id="state">{_e(o.says)}</div><dl id="phase">{cells}</dl>'
            + (f"<ul>{problems}</ul>" if problems else ""))


def _copy_row(name: str, rows: int | None, rows_total: int | None, nbytes: int | None,
              bytes_total: int | None, rows_rate: float | None, bytes_rate: float | None,
              left: str) -> str:
    return (f"<tr><td>{name}</td><td>{number(rows)} / {number(rows_total)}</td>"
            f"<td>{size(nbytes)} / {size(bytes_total)}</td>"
            f"<td>{number(round(rows_rate) if rows_rate else None)}</td>"
            f"<td>{size(bytes_rate) + '/s' if bytes_rate else '–'}</td><td>{left}</td></tr>")


def copy_section(tables: Sequence[TableCopy], updated: datetime | None, overall: Figures | None) -> str:
    if not tables:
        return ('<p class="muted" id="copy">No copy progress recorded (none started yet, or the '
                'engine copies on its own: PostgreSQL table sync, DMS).</p>')
    rows = "".join(
        _copy_row(_e(t.table), t.rows, t.rows_total, t.bytes, t.bytes_total, t.rows_per_second,
                  t.bytes_per_second, "done" if t.done else duration(t.eta_seconds) if t.seconds else "waiting")
        for t in tables)
    if overall is not None:
        rows += _copy_row("<b>all tables</b>", overall.rows_done, overall.rows_total, overall.bytes_done,
                          overall.bytes_total, overall.rows_per_second, overall.bytes_per_second,
                          f"<b>{duration(overall.eta_seconds)}</b>")
    return (f'<table id="copy"><tr><th>table</th><th>rows</th><th>bytes</th><th>rows/s</th>'
            f'<th>bytes/s</th><th>ETA</th></tr>{rows}</table>'
            f'<p class="muted">Updated {_stamp(updated)}. Totals are the source planner\'s estimates.</p>')


def validation_section(runs: Sequence[ValidationRun], ui_base: str) -> str:
    if not runs:
        return '<p class="muted" id="validations">No validation has run yet.</p>'
    rows = "".join(
        f"<tr><td>{_stamp(v.finished)}</td><td>{_e(v.where)}</td>"
        f'<td class="{_e(v.status)}">{_e(v.status)}</td><td>{number(v.tables)}</td><td>{number(v.rows)}</td>'
        f"<td>{number(v.mismatches)}</td><td>{duration(v.seconds)}</td>"
        f'<td><a target="_self" href="report?key={quote(v.report, safe="")}">report</a></td>'
        f'<td><a href="{_e(run_href(ui_base, v.dag_id, v.run_id))}">{_e(v.dag_id)}</a></td></tr>'
        for v in runs)
    return (f'<table id="validations"><tr><th>finished</th><th>what</th><th>status</th><th>tables</th>'
            f'<th>rows</th><th>mismatches</th><th>took</th><th></th><th>run</th></tr>{rows}</table>')


def cutover_section(c: Cutover | None) -> str:
    if c is None:
        return '<p class="muted" id="cutover">No cutover yet.</p>'
    budget = f" of a {c.budget_ms:.0f} ms budget" if c.budget_ms is not None else ""
    return (f'<div id="cutover"><p>Write pause <b>{number(c.write_pause_ms, " ms")}</b>{budget}; started by '
            f'{_e(c.started_by or "–")}, approved by {_e(c.approved_by or "–")}; saved {_stamp(c.saved)}.</p>'
            f"{timeline(c)}</div>")


def runs_section(o: Overview, ui_base: str) -> str:
    if not o.runs:
        return '<p class="muted" id="runs">No DAG run of a migration yet.</p>'
    items = "".join(f'<li><a href="{_e(run_href(ui_base, r.dag_id, r.run_id))}">{_e(r.dag_id)} '
                    f'{_e(r.run_id)}</a> <span class="muted">{_e(r.what)}</span></li>' for r in o.runs)
    return f'<ul id="runs">{items}</ul>'


def render(o: Overview, *, ui_base: str = "") -> str:
    """The whole page. ``ui_base``: the Airflow UI's path prefix (empty at the root)."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><base target="_top">'
        f'<title>Migration {_e(o.env)}</title><style>{CSS}</style></head><body>'
        f"<h1>Migration: environment {_e(o.env)}</h1>{head(o, ui_base)}"
        f"<h2>Initial copy</h2>{copy_section(o.copy, o.copy_updated, o.copy_overall)}"
        f"<h2>Replication lag</h2>{lag_section(o.lag)}"
        f"<h2>Validation history</h2>{validation_section(o.validations, ui_base)}"
        f"<h2>Last cutover</h2>{cutover_section(o.cutover)}"
        f"<h2>DAG runs</h2>{runs_section(o, ui_base)}</body></html>")
