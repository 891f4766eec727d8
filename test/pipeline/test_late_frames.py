"""
A late frame as the controller sees it: its DeadlineMiss first, then nothing that moves.

Frames come from a driver in another context (another process, to the pipeline); one outside
node listens on deadline_miss and cmd_vel, as a controller would.
"""

from __future__ import annotations

import time
from typing import Any

from edge_infer_ros.core.frame import now_ns
from edge_infer_ros_msgs.msg import DeadlineMiss
from geometry_msgs.msg import TwistStamped
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from support.onnx_models import make_yolov8_model
from support.outside import Outside
from support.waiting import wait_for

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class Controller(Outside):
    """A driver publishing frames, and a controller recording what arrives, in order."""

    def __init__(self, context: Any) -> None:
        super().__init__(context, 'controller')
        self.arrivals: list[tuple[str, int, Any]] = []  # (kind, capture stamp, message)
        self.node.create_subscription(DeadlineMiss, 'deadline_miss', self._on_miss, RELIABLE)
        self.node.create_subscription(TwistStamped, 'cmd_vel', self._on_command, RELIABLE)
        self.driver = self.node.create_publisher(Image, 'image_in', qos_profile_sensor_data)
        self.frame = np.full((480, 640, 3), 90, np.uint8).tobytes()

    def _stamp(self, msg: Any) -> int:
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    def _on_miss(self, msg: DeadlineMiss, info: Any = None) -> None:
        self.arrivals.append(('miss', self._stamp(msg), msg, _received(info)))

    def _on_command(self, msg: TwistStamped, info: Any = None) -> None:
        self.arrivals.append(('cmd', self._stamp(msg), msg, _received(info)))

    def drive(self, frames: int, period_s: float = 1 / 15) -> set[int]:
        """Publish frames stamped now; return their stamps."""
        stamps = set()
        for _ in range(frames):
            msg = Image(height=480, width=640, encoding='bgr8', step=640 * 3, data=self.frame)
            msg.header.frame_id = 'front'
            stamp = now_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            self.driver.publish(msg)
            stamps.add(stamp)
            self.spin_until(lambda: False, period_s)
        return stamps

    def of(self, kind: str, stamps: set[int]) -> list[Any]:
        return [a for a in self.arrivals if a[0] == kind and a[1] in stamps]


def _received(info: Any) -> int:
    """Return when the middleware received a sample (MessageInfo), else now."""
    if info is not None and info.get('received_timestamp'):
        return int(info['received_timestamp'])
    return time.monotonic_ns()


def _pipeline(composed, deadline_ms: float, policy: str = 'stop'):
    return composed(frames=0, overrides={
        'camera': {'source': 'topic'},
        'action': {'deadline_ms': deadline_ms, 'late_frame_policy': policy,
                   'command_timeout_s': 60.0, 'obstacle_classes': ['cone']},
        'budget_monitor': {'deadline_ms': deadline_ms}})


def test_every_late_frame_is_reported_before_its_command_and_stops(composed,
                                                                   second_context) -> None:
    controller = Controller(second_context)
    try:
        _, nodes = _pipeline(composed, deadline_ms=0.5)  # below any pipeline's latency
        assert controller.spin_until(lambda: nodes['camera'].inputs[0].stats.received or
                                     controller.driver.get_subscription_count(), 10.0)
        stamps = controller.drive(40)
        assert controller.spin_until(lambda: len(controller.of('cmd', stamps)) >= 30, 20.0)
        commands = controller.of('cmd', stamps)
        misses = {a[1]: a for a in controller.of('miss', stamps)}
        for kind, stamp, command, received in commands:
            assert stamp in misses, 'a late frame commanded without its DeadlineMiss'
            assert misses[stamp][3] <= received, 'the miss came after the command'
            assert (command.twist.linear.x, command.twist.angular.z) == (0.0, 0.0)
        # Published once: the monitor stood back for the misses the action published.
        per_stamp = [a[1] for a in controller.of('miss', stamps)]
        assert len(per_stamp) == len(set(per_stamp))
        monitor = nodes['budget_monitor']
        assert controller.spin_until(
            lambda: monitor.misses_reported_upstream >= len(commands) - 2, 10.0)
        assert nodes['action'].gate.counts.stopped >= len(commands)
    finally:
        controller.close()


def test_with_a_generous_deadline_commands_flow(composed, second_context) -> None:
    controller = Controller(second_context)
    try:
        _, nodes = _pipeline(composed, deadline_ms=5000.0)
        stamps = controller.drive(30)
        assert controller.spin_until(lambda: len(controller.of('cmd', stamps)) >= 20, 20.0)
        assert controller.of('miss', stamps) == []
        # The planted model's ball steers the robot: commands that move.
        assert all(a[2].twist.linear.x > 0 for a in controller.of('cmd', stamps)), (
            [a[2].twist.linear.x for a in controller.of('cmd', stamps)],
            nodes['action'].stage_status().message, nodes['action'].commander.counts)
    finally:
        controller.close()


@pytest.mark.parametrize('policy', ['hold', 'publish'])
def test_hold_publishes_nothing_and_publish_acts_on_late_frames(composed, second_context,
                                                                policy: str) -> None:
    controller = Controller(second_context)
    try:
        _, nodes = _pipeline(composed, deadline_ms=0.5, policy=policy)
        stamps = controller.drive(30)
        assert controller.spin_until(lambda: len(controller.of('miss', stamps)) >= 20, 20.0)
        commands = controller.of('cmd', stamps)
        counts = nodes['action'].gate.counts
        if policy == 'hold':
            assert commands == [] and counts.held >= 20
        else:
            assert controller.spin_until(lambda: len(controller.of('cmd', stamps)) >= 20, 10.0)
            assert all(a[2].twist.linear.x > 0 for a in controller.of('cmd', stamps))
            assert counts.published_late >= 20
    finally:
        controller.close()


def test_a_model_slower_than_its_budget_warns_before_its_first_frame(
        composed, tmp_path) -> None:
    slow, _ = make_yolov8_model(tmp_path / 'slow.onnx', input_hw=(320, 320), slow_matmuls=80)
    _, nodes = composed(frames=0, model_path=str(slow), names={'detector'},
                        overrides={'detector': {'expected_fps': 30.0}})
    detector = nodes['detector']
    status = detector.stage_status()
    assert detector.inferences == 0 and status.level == b'\x01', status.message
    assert 'model too slow' in status.message and 'detector budget 14.0 ms' in status.message
    assert "fps < the camera's 30.0 fps" in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert float(values['warmup_inference_ms']) > 14.0


def test_a_detector_that_drops_most_frames_is_warn(composed, tmp_path) -> None:
    slow, _ = make_yolov8_model(tmp_path / 'slow.onnx', input_hw=(320, 320), slow_matmuls=80)
    budget = tmp_path / 'budget.yaml'
    budget.write_text('/**/budget_monitor:\n  ros__parameters:\n    budget_ms:\n'
                      '      detector: 1000.0\n')
    _, nodes = composed(frames=0, fps=30.0, model_path=str(slow),
                        names={'camera', 'preprocess', 'detector'},
                        overrides={'detector': {'budget_file': str(budget),
                                                'input_mode': 'thread', 'expected_fps': 0.0,
                                                'max_drop_share': 0.1}})
    detector = nodes['detector']
    assert detector.onboarding is not None and detector.onboarding.warning() == ''
    assert wait_for(lambda: 'dropping' in detector.stage_status().message, 15.0), \
        detector.stage_status().message


def test_start_ups_with_a_driver_already_running_judge_no_frame_late(
        composed, second_context) -> None:
    """
    The first frames pay the start; the grace keeps them from reading as misses.

    Frames captured in the first two seconds after activation are counted, not judged; after
    them, none may miss. The deadline (150 ms) leaves room for a busy machine's hiccups, which
    are not what this test is about.
    """
    controller = Controller(second_context)
    try:
        for _ in range(3):
            container, nodes = composed(frames=0, start=False, overrides={
                'camera': {'source': 'topic'},
                'action': {'deadline_grace_s': 2.0, 'obstacle_classes': ['cone'],
                           'deadline_ms': 150.0},
                'budget_monitor': {'deadline_grace_s': 2.0, 'deadline_ms': 150.0}})
            stamps = controller.drive(3)  # frames already flowing while the pipeline starts
            assert not container.start()
            # Until the driver has discovered the camera its frames are lost (best effort).
            while not controller.driver.get_subscription_count() and len(stamps) < 100:
                stamps |= controller.drive(1)
            monitor, action = nodes['budget_monitor'], nodes['action']
            stamps |= controller.drive(50)  # ~3 s at 15 Hz; more where a busy machine lost some
            while monitor.traces_seen - monitor.traces_in_grace < 10 and len(stamps) < 200:
                stamps |= controller.drive(10)
            assert wait_for(lambda: monitor.traces_seen - monitor.traces_in_grace >= 10, 10.0)
            assert controller.of('miss', stamps) == []
            assert monitor.misses_published == 0 and action.gate.counts.late_frames == 0
            assert monitor.traces_in_grace > 0 and action.gate.counts.not_judged > 0
            container.shutdown()
            assert controller.spin_until(
                lambda: not controller.driver.get_subscription_count(), 10.0)
    finally:
        controller.close()
