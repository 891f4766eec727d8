"""The main job's latency table, from the tracker's summary."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from edge_infer_ros.monitor.config import END_TO_END, INGEST, TRANSPORT

_TABLE_COLUMNS = (('stage', 14, '<'), ('count', 7, '>'), ('p50', 9, '>'), ('p95', 9, '>'),
                  ('p99', 9, '>'), ('max', 9, '>'), ('qwait p50', 10, '>'),
                  ('qwait p99', 10, '>'), ('budget', 9, '>'), ('status', 8, '>'))


def _cell(value: Any) -> str:
    """Format one numeric cell; '-' for no data or not applicable."""
    if value is None:
        return '-'
    if isinstance(value, float):
        return '-' if math.isnan(value) else f'{value:.3f}'
    return str(value)


def _row(cells: Iterable[Any]) -> str:
    """Lay out one table row with the fixed column widths."""
    parts = []
    for (_, width, align), value in zip(_TABLE_COLUMNS, cells):
        parts.append(f'{_cell(value):{align}{width}}')
    return ' '.join(parts).rstrip()


def format_table(summary: Mapping[str, Any]) -> str:
    """
    Lay out ``BudgetTracker.summary()`` as a fixed-width text table.

    Stage rows show service time (p50..max) and queue wait (qwait) in ms; the
    budget covers both.  Ingest, transport and end_to_end rows show their own
    latency; end_to_end's budget is the deadline.
    """
    lines: list[str] = []
    header = _row(name for name, _, _ in _TABLE_COLUMNS)
    for camera, report in summary.get('cameras', {}).items():
        frames = report.get('frames', 0)
        misses = report.get('deadline_misses', 0)
        rate = misses / frames if frames else 0.0
        lines.append(f'camera {camera}: {frames} frames, {misses} deadline misses '
                     f'({rate:.2%}), deadline {summary.get("deadline_ms", math.nan):.3f} ms')
        lines.append(header)
        lines.append('-' * len(header))
        rows = [(INGEST, report.get(INGEST))]
        rows += list(report.get('stages', {}).items())
        rows += [(TRANSPORT, report.get(TRANSPORT)), (END_TO_END, report.get(END_TO_END))]
        for name, entry in rows:
            if entry is None:
                continue
            lines.append(_row((name, entry.get('count'), entry.get('p50_ms'),
                               entry.get('p95_ms'), entry.get('p99_ms'), entry.get('max_ms'),
                               entry.get('queue_wait_p50_ms'), entry.get('queue_wait_p99_ms'),
                               entry.get('budget_ms'), entry.get('status', ''))))
        lines.append('')
    if not lines:
        return 'no frames observed\n'
    lines.append('stage rows: service time in ms; qwait: queue wait in ms; '
                 'a stage budget covers queue wait + service')
    return '\n'.join(lines) + '\n'
