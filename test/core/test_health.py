"""A stage's health: the most urgent of its problems wins, at its level."""

from edge_infer_ros.core.health import (HealthSources, judge, Level, MAX_MESSAGE, name_clash,
                                        stage_health, state_name)
import pytest

S = 1_000_000_000
NOW = 100 * S

#: Every WARN source with its own text, most urgent first (the order core/health.py promises).
WARNINGS = {'fault': 'backend fell back', 'qos_warnings': ('old qos', 'incompatible QoS'),
            'shm_note': 'iceoryx2 missing', 'transport_loss': '3 of 10 frames lost',
            'stage_warning': 'model not pinned'}
SHOWN = {'fault': 'backend fell back', 'qos_warnings': 'incompatible QoS',
         'shm_note': 'iceoryx2 missing', 'transport_loss': '3 of 10 frames lost',
         'stage_warning': 'model not pinned'}


def sources(**kwargs):
    base = {'active': True, 'configured': True, 'now_ns': NOW, 'diagnostics_period_s': 1.0}
    return HealthSources(**{**base, **kwargs})


def test_no_problem_is_ok_running_or_not_active():
    assert judge(sources()) == (Level.OK, 'running')
    assert judge(sources(active=False)) == (Level.OK, 'not active')


@pytest.mark.parametrize('name', list(WARNINGS))
def test_each_warning_alone_is_warn_with_its_text(name):
    assert judge(sources(**{name: WARNINGS[name]})) == (Level.WARN, SHOWN[name])


@pytest.mark.parametrize('index', range(len(WARNINGS)))
def test_a_warning_beats_every_one_below_it(index):
    names = list(WARNINGS)
    present = {name: WARNINGS[name] for name in names[index:]}
    assert judge(sources(**present)) == (Level.WARN, SHOWN[names[index]])


def test_recent_frame_errors_beat_every_warning():
    all_warnings = sources(last_error='detector failed (frame cam#3)', last_error_ns=NOW - S,
                           diagnostics_period_s=1.0, **WARNINGS)
    assert judge(all_warnings) == (Level.ERROR, 'detector failed (frame cam#3)')


def test_frame_errors_count_as_recent_for_two_periods_and_at_least_a_second():
    error = {'last_error': 'failed', 'diagnostics_period_s': 0.1}
    assert judge(sources(last_error_ns=NOW - S + 1, **error))[0] == Level.ERROR  # 1 s floor
    assert judge(sources(last_error_ns=NOW - S, **error))[0] == Level.OK
    error['diagnostics_period_s'] = 5.0
    assert judge(sources(last_error_ns=NOW - 9 * S, **error))[0] == Level.ERROR  # 2 periods
    assert judge(sources(last_error_ns=NOW - 10 * S, **error))[0] == Level.OK


def test_an_old_error_leaves_the_warnings_to_speak():
    old = sources(last_error='failed', last_error_ns=NOW - 60 * S, shm_note='iceoryx2 missing')
    assert judge(old) == (Level.WARN, 'iceoryx2 missing')


def test_an_error_without_configuration_stays_error():
    failed = sources(active=False, configured=False, last_error='configure failed: no model',
                     fault='backend fell back')
    assert judge(failed) == (Level.ERROR, 'configure failed: no model')
    # Configured again: the old configure error is history.
    assert judge(sources(last_error='configure failed: no model')) == (Level.OK, 'running')


def test_the_latest_qos_warning_is_shown():
    assert judge(sources(qos_warnings=('first', 'second', 'third')))[1] == 'third'


def test_the_status_starts_with_the_state_and_keeps_the_values_in_order():
    health = stage_health(sources(active=False, values=[('frames_received', '3'),
                                                        ('backend', 'onnxruntime')]))
    assert health.values == [('state', 'inactive'), ('frames_received', '3'),
                             ('backend', 'onnxruntime')]
    assert [state_name(a, c) for a, c in ((True, True), (False, True), (False, False))] == [
        'active', 'inactive', 'unconfigured']


def test_a_long_message_is_cut():
    health = stage_health(sources(fault='x' * 5000))
    assert health.level == Level.WARN and len(health.message) == MAX_MESSAGE


def test_levels_are_those_of_diagnostic_msgs():
    assert [Level.OK.as_byte(), Level.WARN.as_byte(), Level.ERROR.as_byte(),
            Level.STALE.as_byte()] == [b'\x00', b'\x01', b'\x02', b'\x03']


def test_a_name_taken_in_two_participants_is_named() -> None:
    a, b, c = bytes(12) + b'\x00\x00\x04\x03', bytes(11) + b'\x01\x00\x00\x03\x03', b'\x02' * 16
    graph = [('nms', '/clash', a), ('camera', '/clash', a), ('nms', '/other', b),
             ('nms', '/clash', b)]
    text = name_clash('/clash/nms', graph)
    assert text.startswith('another node in the graph also named /clash/nms')
    assert name_clash('/clash/camera', graph) == ''
    assert name_clash('/nms', [('nms', '/', a), ('nms', '/', b)]).startswith('another node')
    # Two nodes of one participant (a process's context): not told (the graph lags there).
    assert name_clash('/nms', [('nms', '/', a), ('nms', '/', a[:12] + b'\x00\x00\x13\x03')]) == ''
    assert '2 other nodes' in name_clash('/a', [('a', '/', a), ('a', '/', b), ('a', '/', c)])
