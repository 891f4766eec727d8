"""
The budget monitor node on a real executor, fed real FrameTrace messages over DDS.

Traces with known timings come from another context (another 'process'); the verdicts are
read back from /diagnostics and deadline_miss as any ROS tool would read them, and budgets are
changed through the standard parameter services, as ``ros2 param set`` does.
"""

from __future__ import annotations

import time
from typing import Iterator

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from edge_infer_ros.core.resources import config_path
from edge_infer_ros.ros.compat import AsyncParameterClient
from edge_infer_ros.ros.container import ComponentSpec, Container
from edge_infer_ros_msgs.msg import DeadlineMiss, FrameTrace, StageTiming
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from support.waiting import wait_for

MS = 1_000_000
PERIOD = 0.2
STALE = 0.6


class Harness:
    """A monitor in one context, a 'robot' publishing traces in another."""

    def __init__(self, ros_context, second_context) -> None:
        self.container = Container(ros_context)
        self.monitor = self.container.load(ComponentSpec(
            'edge_infer_ros::BudgetMonitor', 'budget_monitor',
            param_files=(config_path('budget.yaml'),),
            parameters={'diagnostics_period_s': PERIOD, 'stale_timeout_s': STALE,
                        'window_max_age_s': 2.0, 'min_samples': 3, 'deadline_grace_s': 0.0}))
        self.container.spin_in_background()
        assert not self.container.start()
        self.node = Node('robot', context=second_context)
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(FrameTrace, 'trace', qos)
        self.statuses: dict[str, DiagnosticStatus] = {}
        self.history: list[tuple[float, DiagnosticStatus]] = []
        self.misses: list[DeadlineMiss] = []
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self.node.create_subscription(DeadlineMiss, 'deadline_miss', self.misses.append, qos)
        self.executor = SingleThreadedExecutor(context=second_context)
        self.executor.add_node(self.node)
        self.params = AsyncParameterClient(self.node, 'budget_monitor')
        self.seq = 0
        self.spin_until(lambda: self.publisher.get_subscription_count() > 0, 10.0)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.statuses[status.name] = status
            self.history.append((time.monotonic(), status))

    def spin_until(self, condition, timeout: float) -> bool:
        return wait_for(condition, timeout, executor=self.executor)

    def send(self, detector_service_ms: float, detector_wait_ms: float = 0.5,
             count: int = 1, gap_s: float = 0.01) -> list[int]:
        """Publish traces ending now, with the detector's times as given."""
        sent = []
        for _ in range(count):
            now = time.time_ns()
            durations = [('preprocess', 0.2, 1.0), ('detector', detector_wait_ms,
                                                    detector_service_ms),
                         ('nms', 0.1, 0.5), ('action', 0.1, 0.2)]
            total = sum(0.05 + wait + service for _, wait, service in durations)
            t = now - int(total * MS) - 1 * MS
            msg = FrameTrace(camera='front', seq=self.seq)
            msg.header.frame_id = 'front_optical'
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 1_000_000_000)
            t += 1 * MS  # ingest
            for stage, wait, service in durations:
                received = t + int(0.05 * MS)
                start = received + int(wait * MS)
                end = start + int(service * MS)
                msg.stages.append(StageTiming(stage=stage, node='/' + stage,
                                              received_ns=received, start_ns=start, end_ns=end))
                t = end
            self.publisher.publish(msg)
            sent.append(self.seq)
            self.seq += 1
            self.spin_until(lambda: False, gap_s)
        return sent

    def status(self, item: str) -> DiagnosticStatus:
        return self.statuses.get(f'/budget_monitor: front/{item}')

    def level_of(self, item: str) -> bytes:
        status = self.status(item)
        return status.level if status is not None else None

    def close(self) -> None:
        self.node.destroy_node()
        self.executor.shutdown()
        self.container.shutdown()


@pytest.fixture
def harness(ros_context, second_context) -> Iterator[Harness]:
    h = Harness(ros_context, second_context)
    yield h
    h.close()


def test_slow_stage_is_named_within_one_period_as_service_time(harness: Harness) -> None:
    harness.send(detector_service_ms=3.0, count=10)
    assert harness.spin_until(lambda: harness.level_of('detector') == DiagnosticStatus.OK, 3.0)
    sent_at = time.monotonic()
    harness.send(detector_service_ms=25.0, count=30, gap_s=0.005)  # budget 14 ms
    assert harness.spin_until(lambda: harness.level_of('detector') == DiagnosticStatus.WARN,
                              PERIOD * 2 + 1.0)
    assert time.monotonic() - sent_at < 3.0
    message = harness.status('detector').message
    assert 'detector' in message and 'cause: service time' in message, message
    assert harness.level_of('preprocess') == DiagnosticStatus.OK
    values = {kv.key: kv.value for kv in harness.status('detector').values}
    assert float(values['budget_ms']) == 14.0 and float(values['service_p95_ms']) > 20.0
    assert harness.status('detector').hardware_id == 'edge_infer_ros'


def test_queue_wait_is_told_apart_from_service_time(harness: Harness) -> None:
    harness.send(detector_service_ms=2.0, detector_wait_ms=25.0, count=30, gap_s=0.005)
    assert harness.spin_until(lambda: harness.level_of('detector') == DiagnosticStatus.WARN, 3.0)
    message = harness.status('detector').message
    assert 'cause: queue wait' in message, message


def test_a_deadline_miss_event_for_each_late_frame_only(harness: Harness) -> None:
    on_time = harness.send(detector_service_ms=5.0, count=5)
    late = harness.send(detector_service_ms=60.0, count=3)      # 45 ms deadline
    on_time += harness.send(detector_service_ms=5.0, count=5)
    assert harness.spin_until(lambda: len(harness.misses) >= 3, 5.0)
    harness.spin_until(lambda: False, 0.3)  # nothing else may arrive
    assert sorted(m.seq for m in harness.misses) == late
    miss = harness.misses[0]
    assert miss.worst_stage == 'detector' and miss.worst_component == 'service'
    assert miss.latency_ms > miss.deadline_ms == 45.0
    assert miss.overrun_ms == pytest.approx(miss.latency_ms - miss.deadline_ms, abs=1e-6)
    assert miss.header.frame_id == 'front_optical'


def test_stale_when_frames_stop_and_ok_when_they_come_back(harness: Harness) -> None:
    harness.send(detector_service_ms=3.0, count=10)
    assert harness.spin_until(lambda: harness.level_of('end_to_end') == DiagnosticStatus.OK, 3.0)
    stopped = time.monotonic()
    assert harness.spin_until(lambda: harness.level_of('detector') == DiagnosticStatus.STALE,
                              STALE + 2 * PERIOD + 1.0)
    assert time.monotonic() - stopped < STALE + 2 * PERIOD + 1.0
    assert harness.level_of('end_to_end') == DiagnosticStatus.ERROR
    assert 'no frames' in harness.status('end_to_end').message
    harness.send(detector_service_ms=3.0, count=10)
    assert harness.spin_until(lambda: harness.level_of('detector') == DiagnosticStatus.OK and
                              harness.level_of('end_to_end') == DiagnosticStatus.OK, 3.0)


def test_budget_changed_through_parameter_services_takes_effect(harness: Harness) -> None:
    harness.send(detector_service_ms=20.0, count=20, gap_s=0.005)
    assert harness.spin_until(lambda: harness.level_of('detector') == DiagnosticStatus.WARN, 3.0)
    assert harness.params.wait_for_services(timeout_sec=5.0)
    # A bad value is refused with a reason, as `ros2 param set` would show it.
    future = harness.params.set_parameters([Parameter('budget_ms.detector', value=-3.0)])
    harness.spin_until(future.done, 5.0)
    result = future.result().results[0]
    assert not result.successful and result.reason
    future = harness.params.set_parameters([Parameter('budget_ms.detector', value=30.0)])
    harness.spin_until(future.done, 5.0)
    assert future.result().results[0].successful
    harness.send(detector_service_ms=20.0, count=5, gap_s=0.005)
    assert harness.spin_until(lambda: harness.level_of('detector') == DiagnosticStatus.OK, 3.0)
    assert float({kv.key: kv.value for kv in harness.status('detector').values}['budget_ms']) \
        == 30.0


def test_stage_wide_input_settings_leave_the_pinned_trace_queue_alone(harness: Harness) -> None:
    """`ros2 param set /budget_monitor queue_depth 2` must not shrink the 1000-deep trace queue."""
    trace_input, reported_input = harness.monitor.inputs  # traces, misses the action published
    assert (trace_input.mode, trace_input.depth) == ('thread', 1000)
    assert (reported_input.mode, reported_input.depth) == ('inline', 1)
    assert harness.params.wait_for_services(timeout_sec=5.0)
    future = harness.params.set_parameters([Parameter('queue_depth', value=2),
                                            Parameter('input_mode', value='inline')])
    harness.spin_until(future.done, 5.0)
    assert all(r.successful for r in future.result().results)
    assert harness.monitor.p['queue_depth'] == 2  # accepted, and applies to frame inputs only
    assert (trace_input.mode, trace_input.depth) == ('thread', 1000)
    assert (reported_input.mode, reported_input.depth) == ('inline', 1)
    # Traces still flow and are judged after the change.
    before = harness.monitor.traces_seen
    harness.send(detector_service_ms=3.0, count=5)
    assert harness.spin_until(lambda: harness.monitor.traces_seen >= before + 5, 5.0)


def test_doubtful_budgets_are_reported_at_configure(ros_context) -> None:
    """Budgets that do not add up to the deadline are valid but doubtful: say so at once."""
    container = Container(ros_context)
    monitor = container.load(ComponentSpec(
        'edge_infer_ros::BudgetMonitor', 'budget_monitor',
        param_files=(config_path('budget.yaml'),), parameters={'deadline_ms': 40.0}))
    try:
        assert not container.start()
        values = {kv.key: kv.value for kv in monitor.stage_status().values}
        assert 'the deadline can be missed with every stage within budget' in \
            values['config_warning_0']
        monitor.set_parameters([Parameter('deadline_ms', value=45.0)])  # adds up again
        values = {kv.key: kv.value for kv in monitor.stage_status().values}
        assert not any(key.startswith('config_warning') for key in values)
    finally:
        container.shutdown()


def test_verdicts_go_out_after_a_trace_while_traces_flow(harness: Harness) -> None:
    """While frames come, the verdicts wait for the gap after a frame (off the executor)."""
    monitor = harness.monitor
    harness.send(detector_service_ms=3.0, count=5)
    # 30 fps for 1.5 s: the timer only marks the verdicts due, the monitor thread sends them.
    before = monitor.diagnostics_after_trace
    seen = monitor.traces_seen
    started = time.monotonic()
    harness.send(detector_service_ms=3.0, count=45, gap_s=1 / 30)
    spent = time.monotonic() - started
    # Every trace handled, none still queued: only the timer can publish from here on.
    assert harness.spin_until(lambda: monitor.traces_seen >= seen + 45 and
                              all(i.idle() for i in monitor.inputs), 5.0)
    assert spent >= 1.4 and monitor.diagnostics_after_trace - before >= 2  # ~7 periods
    assert harness.spin_until(lambda: harness.level_of('end_to_end') == DiagnosticStatus.OK, 3.0)
    # Traces stop: the timer publishes by itself again (here: STALE after stale_timeout_s).
    count = monitor.diagnostics_after_trace
    assert harness.spin_until(lambda: harness.level_of('detector') == DiagnosticStatus.STALE,
                              STALE + 2 * PERIOD + 1.0)
    assert monitor.diagnostics_after_trace == count
