"""The budget tracker: deadline misses, verdicts per stage and camera, windows, summaries."""

import dataclasses
import json
import math

from edge_infer_ros.core import frame as frame_module
from edge_infer_ros.core.frame import FrameTrace
from edge_infer_ros.monitor.config import BudgetConfig
from edge_infer_ros.monitor.tracker import BudgetTracker
from edge_infer_ros.monitor.verdicts import DeadlineMiss, Level, StageStatus
import pytest
from support.traces import feed, HEALTHY, HEALTHY_MS, make_trace, MS, SEC


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
