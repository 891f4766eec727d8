"""Verdicts: each window summarised once per judgement, rendered twice, both forms agree."""

import collections
import json
import math

from edge_infer_ros.monitor.config import BudgetConfig, END_TO_END, INGEST, TRANSPORT
from edge_infer_ros.monitor.tracker import BudgetTracker
from edge_infer_ros.monitor.verdicts import (EndToEndVerdict, fmt_ms, Level, PathVerdict,
                                             StageVerdict)
from edge_infer_ros.monitor.windows import SlidingWindow
import pytest
from support.traces import feed, SEC


def _tracker(scenario: str) -> tuple[BudgetTracker, int]:
    """Return a tracker in a named state, and the instant to judge it at."""
    if scenario == 'healthy':
        tracker = BudgetTracker()
        _, now = feed(tracker, 100)
    elif scenario == 'misses':
        tracker = BudgetTracker(BudgetConfig(stage_budgets_ms={'detector': 14.0}))
        _, now = feed(tracker, 100, late_every=3)  # preprocess, nms, action: no budget
    elif scenario == 'lowered_deadline':  # misses without events: the fallback ranking
        tracker = BudgetTracker()
        _, now = feed(tracker, 100)
        tracker.set_config(BudgetConfig(deadline_ms=15.0))
    else:  # 'stale'
        tracker = BudgetTracker()
        _, now = feed(tracker, 100, late_every=5)
        now += 3 * SEC
    return tracker, now


SCENARIOS = ('healthy', 'misses', 'lowered_deadline', 'stale')


def _same(text: str, number) -> bool:
    """Tell whether a diagnostics value shows a JSON number (None: no data, 'nan')."""
    return text == fmt_ms(math.nan if number is None else number)


@pytest.mark.parametrize('scenario', SCENARIOS)
def test_diagnostics_and_report_show_the_same_numbers(scenario: str) -> None:
    tracker, now = _tracker(scenario)
    verdicts = tracker.verdicts(now)
    assert {type(v) for v in verdicts} == {StageVerdict, PathVerdict, EndToEndVerdict}
    for verdict in verdicts:
        status, entry = verdict.status(), verdict.entry()
        values = dict(status.values)
        assert (status.name, status.camera, status.level, status.message) == (
            verdict.name, verdict.camera, verdict.level, verdict.message)
        assert entry['status'] == status.level.name and entry['message'] == status.message
        if isinstance(verdict, StageVerdict):
            pairs = {'service_p50_ms': 'p50_ms', 'service_p95_ms': 'p95_ms',
                     'service_p99_ms': 'p99_ms', 'service_max_ms': 'max_ms',
                     'queue_wait_p50_ms': 'queue_wait_p50_ms',
                     'queue_wait_p95_ms': 'queue_wait_p95_ms',
                     'queue_wait_p99_ms': 'queue_wait_p99_ms',
                     'queue_wait_max_ms': 'queue_wait_max_ms',
                     'total_p95_ms': 'total_p95_ms', 'total_p99_ms': 'total_p99_ms',
                     'total_max_ms': 'total_max_ms', 'transport_in_p95_ms': 'transport_in_p95_ms',
                     'budget_ms': 'budget_ms'}
            assert values['misses'] == str(entry['deadline_misses_blamed'])
            assert values['over_budget'] == str(entry['over_budget'])
        else:
            pairs = {key: key for key in ('p50_ms', 'p95_ms', 'p99_ms', 'max_ms', 'mean_ms',
                                          'budget_ms')}
            if isinstance(verdict, PathVerdict):
                assert values['over_budget'] == str(entry['over_budget'])
                assert values['misses'] == str(entry['deadline_misses_blamed'])
            else:
                assert values['misses'] == str(entry['misses'])
                assert values['miss_rate'] == f'{entry["miss_rate"]:.4f}'
                assert values['worst_stage'] == (entry['worst_stage'] or '')
        assert values['count'] == str(entry['count'])
        for diagnostic_key, report_key in pairs.items():
            assert _same(values[diagnostic_key], entry[report_key]), (
                verdict.name, diagnostic_key, values[diagnostic_key], entry[report_key])
        json.dumps(entry, allow_nan=False)  # strict JSON: no NaN left in the report form


@pytest.mark.parametrize('scenario', SCENARIOS)
def test_statuses_and_summary_are_renderings_of_the_verdicts(scenario: str) -> None:
    tracker, now = _tracker(scenario)
    verdicts = tracker.verdicts(now)
    assert tracker.statuses(now) == [v.status() for v in verdicts]
    report = tracker.summary(now)['cameras']['cam0']
    by_name = {v.name: v for v in verdicts}
    for item in (INGEST, TRANSPORT, END_TO_END):
        assert report[item] == by_name[item].entry()
    assert report['stages'] == {name: v.entry() for name, v in by_name.items()
                                if isinstance(v, StageVerdict)}


@pytest.mark.parametrize('scenario', SCENARIOS)
def test_each_window_is_summarised_once_per_judgement(scenario: str, monkeypatch) -> None:
    tracker, now = _tracker(scenario)
    calls: collections.Counter[int] = collections.Counter()
    summary = SlidingWindow.summary

    def counted(window: SlidingWindow, now_ns=None):
        calls[id(window)] += 1
        return summary(window, now_ns)

    monkeypatch.setattr(SlidingWindow, 'summary', counted)
    tracker.verdicts(now)
    assert calls and max(calls.values()) == 1, sorted(calls.values())


def test_the_fallback_ranking_uses_the_verdicts_percentiles() -> None:
    tracker, now = _tracker('lowered_deadline')
    verdicts = tracker.verdicts(now)
    end_to_end = next(v for v in verdicts if isinstance(v, EndToEndVerdict))
    detector = next(v for v in verdicts if v.name == 'detector')
    assert end_to_end.level == Level.ERROR and end_to_end.misses == 100
    assert end_to_end.worst_stage == (
        f'detector (p95 {detector.at_warn_percentile_ms:.3f} ms vs budget '
        f'{fmt_ms(detector.budget_ms)} ms)')


def test_levels_match_diagnostic_msgs():
    """Level values must be the DiagnosticStatus constants."""
    assert (Level.OK, Level.WARN, Level.ERROR, Level.STALE) == (0, 1, 2, 3)
    msgs = pytest.importorskip('diagnostic_msgs.msg')
    status = msgs.DiagnosticStatus
    assert Level.WARN.as_byte() == status.WARN
    assert [lv.as_byte() for lv in Level] == [status.OK, status.WARN, status.ERROR,
                                              status.STALE]
