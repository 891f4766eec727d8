"""The action stage's lateness gate: the monitor's deadline per camera, blame and policies."""

from __future__ import annotations

from edge_infer_ros.core.payloads import Command
from edge_infer_ros.monitor.config import BudgetConfig
from edge_infer_ros.monitor.lateness import LateFrameGate
import pytest
from support.traces import make_trace, MS, SEC


def _gate(policy: str = 'stop', grace_s: float = 0.0) -> LateFrameGate:
    config = BudgetConfig.from_mapping({'deadline_ms': 30.0,
                                        'cameras': {'rear': {'deadline_ms': 100.0}}})
    gate = LateFrameGate(config, policy, grace_s)
    gate.start(10 * SEC)
    return gate


def test_a_frame_is_late_against_its_own_cameras_deadline() -> None:
    gate = _gate()
    stamp = 11 * SEC
    assert not gate.is_late('front', stamp, stamp + 30 * MS)
    assert gate.is_late('front', stamp, stamp + 31 * MS)
    assert not gate.is_late('rear', stamp, stamp + 99 * MS)
    assert gate.is_late('rear', stamp, stamp + 101 * MS)


def test_the_miss_blames_the_stage_that_overran() -> None:
    gate = _gate()
    trace = make_trace(4, 11 * SEC, 'front', detector=(0.5, 40.0))
    miss = gate.miss(trace, trace.stages[-1].end_ns)
    assert (miss.camera, miss.seq, miss.worst_stage, miss.worst_component) == (
        'front', 4, 'detector', 'service')
    assert miss.deadline_ms == 30.0 and miss.overrun_ms == pytest.approx(49.5 - 30.0)
    assert gate.counts.late_frames == 1


def test_frames_of_the_start_up_grace_are_not_judged() -> None:
    gate = _gate(grace_s=2.0)  # judging begins at 12 s
    assert not gate.is_late('front', 11 * SEC, 20 * SEC)
    assert gate.counts.not_judged == 1
    assert gate.is_late('front', 12 * SEC, 20 * SEC)
    unstarted = LateFrameGate(BudgetConfig())
    assert not unstarted.is_late('front', 0, 100 * SEC)


@pytest.mark.parametrize('policy, expected', [
    ('stop', Command(0.0, 0.0, True, '')), ('hold', None), ('publish', 'same')])
def test_each_policy_does_what_it_says(policy: str, expected) -> None:
    gate = _gate(policy)
    trace = make_trace(1, 11 * SEC, 'front', detector=(0.5, 40.0))
    miss = gate.miss(trace, trace.stages[-1].end_ns)
    steering = Command(0.4, -0.3, False, 'tracking ball', 0, 2)
    result = gate.command_for(steering, miss)
    if expected == 'same':
        assert result is steering and gate.counts.published_late == 1
    elif expected is None:
        assert result is None and gate.counts.held == 1
    else:
        assert (result.linear_x, result.angular_z, result.stop) == (0.0, 0.0, True)
        assert 'late frame' in result.reason and 'detector' in result.reason
        assert result.ignored == 2 and gate.counts.stopped == 1


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match='late_frame_policy'):
        LateFrameGate(BudgetConfig(), 'brake')
