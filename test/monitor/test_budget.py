"""Tests of the budget monitor's logic: deadline misses, verdicts, config, reports."""

import dataclasses
import json
import math
from pathlib import Path

from edge_infer_ros.core import frame as frame_module
from edge_infer_ros.core.frame import FrameTrace
from edge_infer_ros.monitor.config import BudgetConfig
from edge_infer_ros.monitor.report import format_table
from edge_infer_ros.monitor.tracker import BudgetTracker
from edge_infer_ros.monitor.verdicts import DeadlineMiss, Level, StageStatus

import pytest
from support.traces import feed, HEALTHY, HEALTHY_MS, make_trace, MS, SEC
import yaml

CONFIG_FILE = Path(__file__).resolve().parents[2] / 'config' / 'budget.yaml'


def by_name(statuses, camera='cam0'):
    """Index a status list of one camera by name."""
    return {s.name: s for s in statuses if s.camera == camera}


# ------------------------------------------------------------------ deadline misses


def test_helper_builds_the_intended_timings():
    """The test traces must mean what the other tests assume."""
    frame = make_trace(detector=(3.0, 7.0))
    assert frame.end_to_end_ns == round((HEALTHY_MS - 10.5 + 10.0) * MS)
    detector = frame.stages[1]
    assert detector.queue_wait_ns == 3 * MS and detector.service_ns == 7 * MS
    assert frame.stages[0].received_ns - frame.stamp_ns == 2 * MS  # ingest


def test_on_time_frames_give_no_miss():
    """A frame within the deadline must never raise an event."""
    misses, _ = feed(BudgetTracker(), 50)
    assert misses == []


def test_miss_exactly_for_late_frames():
    """The event fires for late frames only, with the frame's identity and overrun."""
    tracker = BudgetTracker()
    assert tracker.observe(make_trace(0, 0), 30 * MS) is None
    frame = make_trace(7, 5 * SEC, detector=(0.5, 40.0))  # 19.5 - 10.5 + 40.5 = 49.5 ms
    miss = tracker.observe(frame, 5 * SEC + 50 * MS)
    assert isinstance(miss, DeadlineMiss)
    assert (miss.camera, miss.seq, miss.stamp_ns, miss.frame_id) == (
        'cam0', 7, 5 * SEC, 'cam0_optical')
    assert miss.deadline_ms == 45.0
    assert miss.latency_ms == pytest.approx(49.5)
    assert miss.overrun_ms == pytest.approx(4.5)
    assert tracker.observe(make_trace(8, 6 * SEC), 6 * SEC + 30 * MS) is None


def test_deadline_boundary():
    """Exactly on the deadline is on time; a microsecond later is a miss."""
    tracker = BudgetTracker()
    on_time = make_trace(detector=(0.5, 10.0 + 25.5))  # 45.0 ms
    assert on_time.end_to_end_ns == 45 * MS
    assert tracker.observe(on_time, 0) is None
    late = make_trace(detector=(0.5, 10.0 + 25.501))
    assert tracker.observe(late, 0) is not None


def test_worst_stage_slow_detector_is_service():
    """A detector that computes too long is blamed for its service time."""
    miss = BudgetTracker().observe(make_trace(detector=(0.5, 40.0)), 0)
    assert miss.worst_stage == 'detector'
    assert miss.worst_component == 'service'
    assert miss.worst_stage_ms == pytest.approx(40.5)
    assert miss.worst_stage_budget_ms == 14.0


def test_worst_stage_queue_waiting_detector_is_queue_wait():
    """A detector whose input waits is blamed for queue wait, not service."""
    miss = BudgetTracker().observe(make_trace(detector=(30.0, 10.0)), 0)
    assert miss.worst_stage == 'detector'
    assert miss.worst_component == 'queue_wait'
    assert miss.worst_stage_ms == pytest.approx(40.0)


def test_worst_stage_long_ingest():
    """A late arrival at the first stage is blamed on ingest."""
    miss = BudgetTracker().observe(make_trace(ingest_ms=32.0), 0)
    assert miss.latency_ms == pytest.approx(49.5)
    assert miss.worst_stage == 'ingest'
    assert miss.worst_component == 'transport'
    assert miss.worst_stage_ms == pytest.approx(32.0)
    assert miss.worst_stage_budget_ms == 6.0


def test_worst_stage_slow_hops_is_transport():
    """Slow hops between stages add up to the transport item."""
    miss = BudgetTracker().observe(make_trace(hop_ms=10.0), 0)
    assert miss.worst_stage == 'transport'
    assert miss.worst_stage_ms == pytest.approx(30.0)


def test_worst_is_largest_excess_not_largest_time():
    """Detector is the longest stage but within budget: nms's overrun is to blame."""
    miss = BudgetTracker().observe(make_trace(detector=(0.5, 13.0), nms=(0.2, 30.0)), 0)
    assert miss.worst_stage == 'nms'


def test_worst_falls_back_to_fraction_of_budget():
    """With budgets summing past the deadline, the item using most of its budget is named."""
    config = BudgetConfig(stage_budgets_ms={'detector': 30.0, 'nms': 10.0}, ingest_ms=10.0,
                          transport_ms=10.0, slack_ms=0.0, deadline_ms=20.0)
    frame = make_trace(ingest_ms=2.0, stages=(('detector', 0.0, 12.0), ('nms', 0.0, 8.0)))
    miss = BudgetTracker(config).observe(frame, 0)  # 2 + 12 + 0.5 + 8 = 22.5 ms
    assert miss.worst_stage == 'nms'  # 8/10 beats 12/30, 2/10 and 0.5/10


def test_unbudgeted_stage_is_ranked_as_all_excess():
    """A stage nobody budgeted that eats the deadline is named, with a NaN budget."""
    stages = HEALTHY + (('tracker', 0.0, 30.0),)
    miss = BudgetTracker().observe(make_trace(stages=stages), 0)
    assert miss.worst_stage == 'tracker'
    assert math.isnan(miss.worst_stage_budget_ms)
    assert miss.as_dict()['worst_stage_budget_ms'] is None


def test_empty_trace_is_ignored():
    """A trace without stages carries no timing."""
    tracker = BudgetTracker()
    assert tracker.observe(FrameTrace('cam0', 0, 0, 'f', ()), 0) is None
    assert tracker.cameras() == []


def test_default_time_comes_from_the_trace_clock(monkeypatch):
    """Without now_ns, the tracker uses the swappable clock of edge_infer_ros.core.frame."""
    monkeypatch.setattr(frame_module, 'now_ns', lambda: 100 * SEC)
    tracker = BudgetTracker()
    tracker.observe(make_trace(stamp_ns=100 * SEC))
    assert by_name(tracker.statuses(100 * SEC))['end_to_end'].level == Level.OK
    monkeypatch.setattr(frame_module, 'now_ns', lambda: 105 * SEC)
    assert by_name(tracker.statuses())['end_to_end'].level == Level.ERROR


# ------------------------------------------------------------------ statuses


def test_statuses_all_ok_for_healthy_traffic():
    """Healthy frames: one OK status per stage plus ingest, transport and end_to_end."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 30)
    statuses = tracker.statuses(now)
    assert [s.name for s in statuses] == ['preprocess', 'detector', 'nms', 'action', 'ingest',
                                          'transport', 'end_to_end']
    assert all(s.level == Level.OK for s in statuses), [s.message for s in statuses]
    assert all(isinstance(s, StageStatus) and s.camera == 'cam0' for s in statuses)


def test_stage_values_are_strings_with_units_in_keys():
    """Diagnostics values must be key/value strings the node copies as they are."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 30)
    detector = by_name(tracker.statuses(now))['detector']
    keys = [k for k, _ in detector.values]
    for key in ('count', 'budget_ms', 'service_p50_ms', 'service_p95_ms', 'service_p99_ms',
                'service_max_ms', 'queue_wait_p50_ms', 'queue_wait_p95_ms',
                'queue_wait_p99_ms', 'queue_wait_max_ms', 'total_p95_ms', 'misses'):
        assert key in keys
    assert len(keys) == len(set(keys))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in detector.values)
    assert detector.value('count') == '30'
    assert detector.value('budget_ms') == '14.000'
    assert detector.value('service_p50_ms') == '10.000'
    assert detector.value('queue_wait_max_ms') == '0.500'


def test_warn_names_stage_over_budget_caused_by_service():
    """A detector whose p95 exceeds 14 ms WARNs, blaming service time; the rest stay OK."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 30, detector=(0.5, 16.0))  # 25.5 ms end to end: no miss
    statuses = by_name(tracker.statuses(now))
    detector = statuses['detector']
    assert detector.level == Level.WARN
    assert detector.message.startswith('detector p95 16.500 ms > budget 14.000 ms')
    assert 'cause: service time' in detector.message
    for name in ('preprocess', 'nms', 'action', 'ingest', 'transport', 'end_to_end'):
        assert statuses[name].level == Level.OK, statuses[name].message


def test_warn_caused_by_queue_wait():
    """A stage whose input queue backs up is reported as waiting, not computing."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 30, detector=(12.0, 5.0))
    detector = by_name(tracker.statuses(now))['detector']
    assert detector.level == Level.WARN
    assert 'cause: queue wait' in detector.message


def test_warn_caused_by_both():
    """Comparable service and queue wait are both named."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 30, detector=(8.0, 8.0))
    detector = by_name(tracker.statuses(now))['detector']
    assert detector.level == Level.WARN
    assert 'cause: both service time' in detector.message


def test_warn_ingest_and_transport_over_budget():
    """Ingest and transport have their own budgets and WARN by themselves."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 30, ingest_ms=7.0, hop_ms=2.0)  # ingest 7 > 6, transport 6 > 5
    statuses = by_name(tracker.statuses(now))
    assert statuses['ingest'].level == Level.WARN
    assert 'ingest p95 7.000 ms > budget 6.000 ms' in statuses['ingest'].message
    assert statuses['transport'].level == Level.WARN
    assert statuses['detector'].level == Level.OK


def test_no_percentile_warn_below_min_samples():
    """Three slow samples are not enough evidence for a WARN."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 3, detector=(0.5, 16.0))
    detector = by_name(tracker.statuses(now))['detector']
    assert detector.level == Level.OK
    assert 'no verdict yet' in detector.message
    _, now = feed(tracker, 3, start_s=1.0, detector=(0.5, 16.0))
    assert by_name(tracker.statuses(now))['detector'].level == Level.WARN


def test_end_to_end_warn_on_a_few_misses():
    """Misses below the error rate are a WARN naming the worst stage."""
    tracker = BudgetTracker()
    misses, now = feed(tracker, 100, late_every=50)  # 2 of 100 late
    assert len(misses) == 2
    e2e = by_name(tracker.statuses(now))['end_to_end']
    assert e2e.level == Level.WARN
    assert '2 of 100 frames missed' in e2e.message
    assert 'worst stage: detector' in e2e.message
    assert e2e.value('misses') == '2'


def test_end_to_end_error_above_miss_rate():
    """More than miss_rate_error of the window late is an ERROR."""
    tracker = BudgetTracker()
    misses, now = feed(tracker, 100, late_every=10)  # 10 % late > 5 %
    assert len(misses) == 10
    statuses = by_name(tracker.statuses(now))
    e2e = statuses['end_to_end']
    assert e2e.level == Level.ERROR
    assert 'worst stage: detector (10 of 10 misses)' in e2e.message
    assert statuses['detector'].value('misses') == '10'


def test_miss_rate_exactly_at_threshold_is_warn():
    """The ERROR needs a miss rate strictly above miss_rate_error (5 of 100 is not)."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 100, late_every=20)
    e2e = by_name(tracker.statuses(now))['end_to_end']
    assert e2e.level == Level.WARN
    assert '(5.0% <= 5.0%)' in e2e.message
    _, now = feed(tracker, 1, start_s=10.0, late_every=1)  # 6 of 100 in the window
    assert by_name(tracker.statuses(now))['end_to_end'].level == Level.ERROR


def test_single_early_miss_is_not_an_error():
    """Below min_samples frames a miss is only a WARN, whatever the rate."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 2, late_every=1)
    assert by_name(tracker.statuses(now))['end_to_end'].level == Level.WARN


def test_miss_rate_counts_only_the_window():
    """Misses that left the window no longer count."""
    tracker = BudgetTracker(BudgetConfig(window_size=20))
    feed(tracker, 20, late_every=2)
    _, now = feed(tracker, 20, start_s=1.0)
    e2e = by_name(tracker.statuses(now))['end_to_end']
    assert e2e.level == Level.OK
    assert e2e.value('misses_total') == '10'


def test_stale_after_timeout_and_ok_again():
    """No frames for stale_timeout_s: stages STALE, end_to_end ERROR; frames bring OK back."""
    tracker = BudgetTracker()
    _, last = feed(tracker, 10)
    assert all(s.level == Level.OK for s in tracker.statuses(last + SEC // 2))
    statuses = by_name(tracker.statuses(last + 1500 * MS))
    for name in ('preprocess', 'detector', 'nms', 'action', 'ingest', 'transport'):
        assert statuses[name].level == Level.STALE
        assert statuses[name].message == f'{name}: no frames for 1.5 s'
    assert statuses['end_to_end'].level == Level.ERROR
    assert statuses['end_to_end'].message == 'no frames for 1.5 s'
    _, now = feed(tracker, 10, start_s=5.0)
    statuses = tracker.statuses(now)
    assert all(s.level == Level.OK for s in statuses), [s.message for s in statuses]


def test_missing_stage_is_stale_while_frames_arrive():
    """A stage that drops out of the traces is reported STALE, the others stay OK."""
    tracker = BudgetTracker()
    feed(tracker, 10)
    without_nms = tuple(s for s in HEALTHY if s[0] != 'nms')
    _, now = feed(tracker, 60, start_s=1.0, stages=without_nms)
    statuses = by_name(tracker.statuses(now))
    assert statuses['nms'].level == Level.STALE
    assert 'missing from the traces' in statuses['nms'].message
    assert statuses['detector'].level == Level.OK
    assert statuses['end_to_end'].level == Level.OK


def test_set_config_changes_verdicts():
    """A larger detector budget clears the WARN; a smaller deadline creates misses."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 30, detector=(0.5, 16.0))
    assert by_name(tracker.statuses(now))['detector'].level == Level.WARN
    budgets = dict(tracker.config.stage_budgets_ms, detector=20.0)
    tracker.set_config(dataclasses.replace(tracker.config, stage_budgets_ms=budgets))
    assert by_name(tracker.statuses(now))['detector'].level == Level.OK
    # 25.5 ms frames against a 20 ms deadline: all 30 of the window are misses.
    tracker.set_config(dataclasses.replace(tracker.config, deadline_ms=20.0))
    e2e = by_name(tracker.statuses(now))['end_to_end']
    assert e2e.level == Level.ERROR
    # No miss events under the new deadline yet: named from the percentiles.
    assert e2e.message.endswith('worst stage: detector (p95 16.500 ms vs budget 20.000 ms)')
    assert tracker.observe(make_trace(99, now, detector=(0.5, 16.0)), now) is not None


def test_set_config_percentile_changes_verdict():
    """With warn_percentile 50, a stage slow in 10 % of frames is no longer WARN."""
    tracker = BudgetTracker()
    feed(tracker, 90)
    _, now = feed(tracker, 10, start_s=5.0, detector=(0.5, 16.0))
    assert by_name(tracker.statuses(now))['detector'].level == Level.WARN
    tracker.set_config(dataclasses.replace(tracker.config, warn_percentile=50.0))
    detector = by_name(tracker.statuses(now))['detector']
    assert detector.level == Level.OK
    assert detector.message.startswith('detector p50 ')


def test_set_config_window_size_resizes_windows():
    """A smaller window keeps the newest samples only."""
    tracker = BudgetTracker()
    feed(tracker, 40, detector=(0.5, 16.0))
    _, now = feed(tracker, 10, start_s=5.0)
    assert by_name(tracker.statuses(now))['detector'].value('count') == '50'
    tracker.set_config(dataclasses.replace(tracker.config, window_size=10))
    detector = by_name(tracker.statuses(now))['detector']
    assert detector.value('count') == '10'
    assert detector.level == Level.OK  # only the healthy newest frames remain


def test_set_config_rejects_invalid_and_keeps_old():
    """An invalid update raises and leaves the tracker as it was."""
    tracker = BudgetTracker()
    with pytest.raises(ValueError, match='deadline_ms'):
        tracker.set_config(dataclasses.replace(tracker.config, deadline_ms=-1.0))
    assert tracker.config.deadline_ms == 45.0


def test_config_is_copied_on_set():
    """Editing a config object after handing it over must not bypass validation."""
    config = BudgetConfig()
    tracker = BudgetTracker(config)
    config.stage_budgets_ms['detector'] = -5.0
    assert tracker.config.stage_budgets_ms['detector'] == 14.0


def test_cameras_are_kept_apart():
    """A slow detector on one camera must not taint another camera's verdicts."""
    tracker = BudgetTracker()
    feed(tracker, 30, camera='front', detector=(0.5, 16.0), late_every=10)
    _, now = feed(tracker, 30, camera='rear')
    statuses = tracker.statuses(now)
    front, rear = by_name(statuses, 'front'), by_name(statuses, 'rear')
    assert front['detector'].level == Level.WARN
    assert front['end_to_end'].level == Level.ERROR
    assert rear['detector'].level == Level.OK
    assert rear['end_to_end'].level == Level.OK
    assert rear['detector'].value('count') == '30'
    report = tracker.summary(now)
    assert report['cameras']['front']['deadline_misses'] == 3
    assert report['cameras']['rear']['deadline_misses'] == 0
    assert tracker.cameras() == ['front', 'rear']


def test_levels_match_diagnostic_msgs():
    """Level values must be the DiagnosticStatus constants."""
    assert (Level.OK, Level.WARN, Level.ERROR, Level.STALE) == (0, 1, 2, 3)
    msgs = pytest.importorskip('diagnostic_msgs.msg')
    status = msgs.DiagnosticStatus
    assert Level.WARN.as_byte() == status.WARN
    assert [lv.as_byte() for lv in Level] == [status.OK, status.WARN, status.ERROR,
                                              status.STALE]


# ------------------------------------------------------------------ config


@pytest.mark.parametrize('changes, reason', [
    ({'deadline_ms': 0.0}, 'deadline_ms must be a finite number > 0'),
    ({'deadline_ms': math.inf}, 'deadline_ms must be a finite number > 0'),
    ({'ingest_ms': -1.0}, 'budget_ms.ingest must be a finite number > 0'),
    ({'transport_ms': math.nan}, 'budget_ms.transport must be a finite number > 0'),
    ({'slack_ms': -0.5}, 'budget_ms.slack must be a finite number >= 0'),
    ({'stage_budgets_ms': {'detector': 0.0}}, 'budget_ms.detector must be a finite'),
    ({'stage_budgets_ms': {'ingest': 3.0}}, "stage name 'ingest' is reserved"),
    ({'stage_budgets_ms': {'my.stage': 3.0}}, 'not a valid parameter name'),
    ({'window_size': 0}, 'window_size must be an integer >= 1'),
    ({'window_size': 2.5}, 'window_size must be an integer >= 1'),
    ({'window_max_age_s': -1.0}, 'window_max_age_s must be a finite number >= 0'),
    ({'warn_percentile': 0.0}, r'warn_percentile must be in \(0, 100\]'),
    ({'warn_percentile': 100.5}, r'warn_percentile must be in \(0, 100\]'),
    ({'miss_rate_error': 1.5}, r'miss_rate_error must be a fraction in \[0, 1\]'),
    ({'miss_rate_error': -0.1}, r'miss_rate_error must be a fraction in \[0, 1\]'),
    ({'stale_timeout_s': 0.0}, 'stale_timeout_s must be a finite number > 0'),
    ({'min_samples': -1}, 'min_samples must be an integer >= 0'),
    ({'min_samples': 301}, r'min_samples \(301\) > window_size \(300\)'),
    ({'diagnostics_period_s': 0.0}, 'diagnostics_period_s must be a finite number > 0'),
    ({'deadline_ms': True}, 'deadline_ms must be a finite number > 0'),
])
def test_validate_reasons(changes, reason):
    """Each invalid field is rejected with a reason that names it."""
    with pytest.raises(ValueError, match=reason):
        dataclasses.replace(BudgetConfig(), **changes).validate()


def test_validate_lists_every_problem():
    """All problems are reported at once, not one per attempt."""
    with pytest.raises(ValueError) as error:
        BudgetConfig(deadline_ms=-1.0, window_size=0).validate()
    assert 'deadline_ms' in str(error.value) and 'window_size' in str(error.value)


def test_defaults_are_valid_and_consistent():
    """The default table adds up to its 45 ms deadline."""
    config = BudgetConfig()
    assert config.validate() is config
    assert config.consistency_warnings() == []
    assert config.stage_budgets_ms == {'preprocess': 4.0, 'detector': 14.0, 'nms': 5.0,
                                       'action': 6.0}


def test_consistency_warnings_when_budgets_do_not_add_up():
    """Budgets above or below the deadline are pointed out, with the sum."""
    over = BudgetConfig(deadline_ms=40.0).consistency_warnings()
    assert len(over) == 1 and 'budgets sum to 45.000 ms' in over[0]
    assert 'missed with every stage within budget' in over[0]
    under = BudgetConfig(deadline_ms=50.0).consistency_warnings()
    assert len(under) == 1 and '5.000 ms of the deadline is budgeted to nothing' in under[0]


def test_to_mapping_from_mapping_round_trip():
    """The node declares to_mapping() and rebuilds the same config from the parameters."""
    config = BudgetConfig(stage_budgets_ms={'resize': 2.0, 'detector': 20.0},
                          deadline_ms=50.0, window_size=120, warn_percentile=99.0,
                          min_samples=10, hardware_id='jetson0')
    mapping = config.to_mapping()
    assert mapping['budget_ms.resize'] == 2.0
    assert mapping['budget_ms.slack'] == 5.0
    assert mapping['window_size'] == 120 and isinstance(mapping['window_size'], int)
    assert BudgetConfig.from_mapping(mapping) == config
    assert BudgetConfig.from_mapping(BudgetConfig().to_mapping()) == BudgetConfig()


def test_from_mapping_flat_names():
    """Flat ROS parameter names set the fields; named stages replace the default set."""
    config = BudgetConfig.from_mapping({
        'deadline_ms': 30.0, 'budget_ms.preprocess': 3.0, 'budget_ms.detector': 10.0,
        'budget_ms.ingest': 5.0, 'budget_ms.transport': 4.0, 'budget_ms.slack': 8.0,
        'window_size': 100, 'min_samples': 3.0})
    assert config.deadline_ms == 30.0
    assert config.stage_budgets_ms == {'preprocess': 3.0, 'detector': 10.0}
    assert (config.ingest_ms, config.transport_ms, config.slack_ms) == (5.0, 4.0, 8.0)
    assert config.window_size == 100 and config.min_samples == 3
    assert config.warn_percentile == 95.0  # not given: default


def test_from_mapping_nested_equals_flat():
    """The nested YAML form and the flat parameter form mean the same."""
    nested = {'deadline_ms': 45.0, 'budget_ms': {'detector': 20.0, 'ingest': 6.0}}
    flat = {'deadline_ms': 45.0, 'budget_ms.detector': 20.0, 'budget_ms.ingest': 6.0}
    assert BudgetConfig.from_mapping(nested) == BudgetConfig.from_mapping(flat)


def test_from_mapping_base_updates_one_parameter():
    """A parameter update changes one field of the current config and keeps the rest."""
    base = BudgetConfig(window_size=50)
    config = BudgetConfig.from_mapping({'budget_ms.detector': 18.0}, base=base)
    assert config.stage_budgets_ms['detector'] == 18.0
    assert config.stage_budgets_ms['nms'] == 5.0
    assert config.window_size == 50
    assert base.stage_budgets_ms['detector'] == 14.0  # base untouched


def test_from_mapping_rejects_bad_values():
    """Wrong types, duplicates and (when strict) unknown names are refused."""
    with pytest.raises(ValueError, match='window_size must be an integer'):
        BudgetConfig.from_mapping({'window_size': 10.5})
    with pytest.raises(ValueError, match='deadline_ms must be a number'):
        BudgetConfig.from_mapping({'deadline_ms': '45'})
    with pytest.raises(ValueError, match='deadline_ms must be a number'):
        BudgetConfig.from_mapping({'deadline_ms': True})
    with pytest.raises(ValueError, match='given twice'):
        BudgetConfig.from_mapping({'budget_ms.nms': 5.0, 'budget_ms': {'nms': 4.0}})
    with pytest.raises(ValueError, match='warn_percentile'):
        BudgetConfig.from_mapping({'warn_percentile': 120.0})
    assert BudgetConfig.from_mapping({'use_sim_time': False}) == BudgetConfig()
    with pytest.raises(ValueError, match='unknown budget parameters: use_sim_time'):
        BudgetConfig.from_mapping({'use_sim_time': False}, strict=True)


def test_config_file_matches_the_defaults():
    """config/budget.yaml loads as ROS parameters of budget_monitor and equals the defaults."""
    document = yaml.safe_load(CONFIG_FILE.read_text())
    parameters = document['/**/budget_monitor']['ros__parameters']
    config = BudgetConfig.from_mapping(parameters, strict=True)
    assert config == BudgetConfig()
    assert config.consistency_warnings() == []
    assert parameters['budget_ms'] == {'ingest': 6.0, 'transport': 5.0, 'preprocess': 4.0,
                                       'detector': 14.0, 'nms': 5.0, 'action': 6.0,
                                       'slack': 5.0}
    flat = set(BudgetConfig().to_mapping())
    file_keys = {k for k in parameters if k != 'budget_ms'}
    file_keys |= {f'budget_ms.{k}' for k in parameters['budget_ms']}
    assert file_keys == flat
    assert BudgetConfig.from_mapping(document) == config  # wrapper accepted too


# ------------------------------------------------------------------ reports


def test_summary_keys_and_json():
    """The report has the agreed keys and is strict JSON."""
    tracker = BudgetTracker()
    misses, now = feed(tracker, 50, late_every=25)
    report = tracker.summary(now)
    json.dumps(report, allow_nan=False)
    camera = report['cameras']['cam0']
    assert camera['frames'] == 50 and camera['deadline_misses'] == len(misses) == 2
    assert list(camera['stages']) == ['preprocess', 'detector', 'nms', 'action']
    required = {'count', 'p50_ms', 'p95_ms', 'p99_ms', 'max_ms', 'budget_ms'}
    for entry in camera['stages'].values():
        assert required | {'queue_wait_p50_ms', 'queue_wait_p99_ms'} <= set(entry)
    for item in ('ingest', 'transport', 'end_to_end'):
        assert required <= set(camera[item])
    detector = camera['stages']['detector']
    assert detector['count'] == 50
    assert detector['p50_ms'] == pytest.approx(10.0)  # service time
    assert detector['max_ms'] == pytest.approx(40.0)
    assert detector['queue_wait_p50_ms'] == pytest.approx(0.5)
    assert detector['budget_ms'] == 14.0
    assert camera['ingest']['p50_ms'] == pytest.approx(2.0)
    assert camera['transport']['p50_ms'] == pytest.approx(1.5)
    assert camera['end_to_end']['p50_ms'] == pytest.approx(HEALTHY_MS)
    assert camera['end_to_end']['budget_ms'] == 45.0
    assert camera['end_to_end']['status'] == 'WARN'


def test_summary_after_windows_expire_has_nulls():
    """Aged-out windows report count 0 and None, not zeros."""
    tracker = BudgetTracker()
    _, now = feed(tracker, 5)
    report = tracker.summary(now + 20 * SEC)  # windows aged out, entry not yet expired
    detector = report['cameras']['cam0']['stages']['detector']
    assert detector['count'] == 0 and detector['p95_ms'] is None
    assert detector['status'] == 'STALE'
    json.dumps(report, allow_nan=False)


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


def test_each_camera_gets_the_deadline_and_budgets_of_its_section():
    """A camera's section overrides the defaults for that camera's frames only."""
    config = BudgetConfig.from_mapping({'cameras': {
        'front': {'deadline_ms': 15.0, 'budget_ms': {'detector': 8.0}},
        'rear': {'deadline_ms': 100.0}}})
    assert config.for_camera('front').deadline_ms == 15.0
    assert config.for_camera('front').stage_budgets_ms['detector'] == 8.0
    assert config.for_camera('front').stage_budgets_ms['nms'] == 5.0
    assert config.for_camera('other') is config
    tracker = BudgetTracker(config)
    front, _ = feed(tracker, 20, camera='front')   # 19.5 ms each: over front's 15 ms
    rear, _ = feed(tracker, 20, camera='rear', late_every=1)  # 49.5 ms: under rear's 100 ms
    other, now = feed(tracker, 20, camera='side', late_every=1)  # 49.5 ms: over 45 ms
    assert (len(front), len(rear), len(other)) == (20, 0, 20)
    assert {m.deadline_ms for m in front} == {15.0} and {m.deadline_ms for m in other} == {45.0}
    detector = {(s.camera, s.name): s for s in tracker.statuses(now)}
    assert detector[('front', 'detector')].level == Level.WARN  # 10.5 ms > front's 8 ms
    assert 'budget 8.000 ms' in detector[('front', 'detector')].message
    assert 'budget 14.000 ms' in detector[('side', 'detector')].message
    summary = tracker.summary(now)
    assert summary['cameras']['front']['deadline_ms'] == 15.0
    assert summary['config']['cameras.front.deadline_ms'] == 15.0


def test_camera_sections_are_validated_and_named_when_silent():
    with pytest.raises(ValueError, match='cameras.front.deadline_ms must be a finite number'):
        BudgetConfig.from_mapping({'cameras.front.deadline_ms': -1.0})
    with pytest.raises(ValueError, match='cameras.front.color: unknown key'):
        BudgetConfig.from_mapping({'cameras.front.color': 1.0})
    with pytest.raises(ValueError, match="camera name 'a b'"):
        BudgetConfig(cameras={'a b': {'deadline_ms': 1.0}}).validate()
    with pytest.raises(ValueError, match='slack cannot be set per camera'):
        BudgetConfig.from_mapping({'cameras.front.budget_ms.slack': 1.0})
    tracker = BudgetTracker(BudgetConfig.from_mapping({'cameras.front.deadline_ms': 20.0,
                                                       'cameras.rear.deadline_ms': 20.0}))
    feed(tracker, 3, camera='front')
    assert tracker.silent_configured_cameras() == ['rear']
