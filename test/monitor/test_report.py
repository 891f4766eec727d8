"""The latency table of the main job's report (monitor/report.py)."""

from edge_infer_ros.monitor.report import format_table
from edge_infer_ros.monitor.tracker import BudgetTracker
from support.traces import feed


def test_format_table():
    """The printed table has a row per stage and path item, with numbers and status."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 30, detector=(0.5, 16.0))
    table = format_table(tracker.summary(now))
    lines = table.splitlines()
    assert lines[0].startswith('camera cam0: 30 frames, 0 deadline misses')
    assert lines[1].split() == ['stage', 'count', 'p50', 'p95', 'p99', 'max', 'qwait', 'p50',
                                'qwait', 'p99', 'budget', 'status']
    rows = {line.split()[0]: line.split() for line in lines[3:] if line.strip()}
    assert rows['detector'] == ['detector', '30', '16.000', '16.000', '16.000', '16.000',
                                '0.500', '0.500', '14.000', 'WARN']
    assert rows['end_to_end'][-1] == 'OK'
    assert rows['ingest'][6:8] == ['-', '-']  # no queue wait for path items
    widths = {len(line) for line in lines[1:3]}
    assert len(widths) == 1
    assert format_table(BudgetTracker().summary(0)) == 'no frames observed\n'
