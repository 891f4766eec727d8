"""
Simulated time: the pipeline judges ages and deadlines on /clock, through clock jumps.

An outside "simulator" publishes /clock far from the wall clock (2020) and frames stamped on
it, as Gazebo or ``ros2 bag play --clock`` do; the pipeline runs with ``use_sim_time``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticStatus
import pytest
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from support.outside import Outside
from support.waiting import wait_for

SEC = 1_000_000_000
#: 2020-09-13: far from the wall clock, as a simulator's or an old bag's time is.
SIM_START_NS = 1_600_000_000 * SEC
NODES = ('camera', 'preprocess', 'detector', 'nms', 'action', 'budget_monitor')


class Simulator:
    """
    A simulator: /clock at 200 Hz, 640x480 frames at 15 Hz stamped with the latest /clock.

    Its sim time runs at the wall clock's pace from 2020, and jumps when told to.
    """

    def __init__(self, outside: Outside) -> None:
        self.clock_pub = outside.node.create_publisher(Clock, '/clock', 10)
        self.image_pub = outside.node.create_publisher(Image, 'image_in', 10)
        self.offset_ns = SIM_START_NS - time.monotonic_ns()
        self.frames = 0
        self._quit = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._image = Image(height=480, width=640, encoding='bgr8', step=640 * 3)
        self._image.data = bytes(640 * 480 * 3)
        self._image.header.frame_id = 'sim_camera'

    def sim_now_ns(self) -> int:
        with self._lock:
            return time.monotonic_ns() + self.offset_ns

    def jump(self, by_ns: int) -> None:
        """Move the sim time (a simulator reset, a bag that loops)."""
        with self._lock:
            self.offset_ns += by_ns

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_frame = time.monotonic()
        while not self._quit.is_set():
            now = self.sim_now_ns()
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(now, SEC)
            self.clock_pub.publish(msg)
            if time.monotonic() >= next_frame:
                next_frame += 1 / 15
                self._image.header.stamp.sec, self._image.header.stamp.nanosec = divmod(now, SEC)
                self.image_pub.publish(self._image)
                self.frames += 1
            time.sleep(0.005)

    def stop(self) -> None:
        self._quit.set()
        self._thread.join(timeout=2.0)


@pytest.fixture
def simulator(second_context) -> Any:
    outside = Outside(second_context, 'simulator')
    sim = Simulator(outside)
    yield sim
    sim.stop()
    outside.close()


def _pipeline(composed: Any, use_sim_time: bool) -> dict[str, Any]:
    overrides: dict[str, dict[str, Any]] = {n: {'use_sim_time': use_sim_time} for n in NODES}
    overrides['camera'].update({'source': 'topic', 'max_frames': 0})
    # A generous deadline: on sim time a frame meets it; on the wall clock none can (years).
    overrides['budget_monitor'].update({'deadline_ms': 400.0})
    overrides['action'].update({'max_frame_age_s': 0.5, 'command_timeout_s': 1.0})
    _, nodes = composed(frames=0, overrides=overrides, names=set(NODES))
    return nodes


def _end_to_end(monitor: Any) -> Optional[dict[str, Any]]:
    camera = monitor.summary()['cameras'].get('sim_camera')
    return None if camera is None else camera


def _stale(monitor: Any) -> list[str]:
    return [s.name for s in monitor.budget_statuses() if s.level == DiagnosticStatus.STALE]


#: 2030-01-01: a sim clock ahead of the wall clock (stamps 'in the future' of the host).
SIM_AHEAD_NS = 1_893_456_000 * SEC


@pytest.mark.parametrize('start_ns', [SIM_START_NS, SIM_AHEAD_NS], ids=['2020', '2030'])
def test_on_sim_time_commands_are_fresh_and_deadlines_met(composed, simulator,
                                                          start_ns: int) -> None:
    nodes = _pipeline(composed, use_sim_time=True)
    monitor, action = nodes['budget_monitor'], nodes['action']
    simulator.jump(start_ns - SIM_START_NS)
    simulator.start()
    assert wait_for(lambda: (_end_to_end(monitor) or {}).get('frames', 0) >= 45, 60.0), \
        monitor.summary()
    report = _end_to_end(monitor)
    counts = action.commander.counts
    # Before: 100 % stale commands and deadline misses (ages of six years).
    assert counts.stale_frames <= 0.1 * counts.commands, vars(counts)
    assert report['deadline_misses'] <= 0.1 * report['frames'], report
    assert 0 <= report['end_to_end']['p50_ms'] < 400.0, report
    # The stamps are sim time: the node's clock is, the wall clock is not.
    assert abs(monitor.clock.now_ns() - simulator.sim_now_ns()) < 5 * SEC
    assert monitor.clock.jumps == 0 and not _stale(monitor)


def test_a_clock_jump_back_and_forward_is_counted_and_nothing_stays_stale(
        composed, simulator) -> None:
    nodes = _pipeline(composed, use_sim_time=True)
    monitor, action = nodes['budget_monitor'], nodes['action']
    frames = lambda: (_end_to_end(monitor) or {}).get('frames', 0)  # noqa: E731
    ages: list[int] = []
    monitor.trace_hooks.append(lambda trace: ages.append(trace.end_to_end_ns))
    simulator.start()
    assert wait_for(lambda: frames() >= 20, 60.0)
    for jump_ns in (-600 * SEC, 3600 * SEC):  # a simulator reset, then a skip ahead
        before = monitor.clock.jumps
        simulator.jump(jump_ns)
        seen = frames()
        assert wait_for(lambda: monitor.clock.jumps > before and frames() >= seen + 20, 60.0), \
            (monitor.clock.jumps, frames())
        # Frames after the jump are judged on the new time line: live, fresh, not stale.
        assert wait_for(lambda: not _stale(monitor), 10.0), _stale(monitor)
        assert action.stage_warning() == '' or 'watchdog' not in action.stage_warning()
        report = _end_to_end(monitor)
        assert report['end_to_end']['p50_ms'] >= 0 and report['ingest']['p50_ms'] >= -50.0
    # No trace the monitor took has a negative age: one from across a jump is refused, and a
    # node whose /clock lags the simulator's stamp puts its stage no earlier than the stamp.
    assert min(ages) >= 0, sorted(ages)[:5]
    assert action.clock.jumps >= 2 and monitor.tracker.clock_jumps >= 2
    values = {kv.key: kv.value for kv in monitor.stage_status().values}
    assert int(values['clock_jumps']) >= 2 and 'ROS clock' in values['last_clock_jump']
    counts = action.commander.counts
    # Only the frames in flight at each jump may be judged stale.
    assert counts.stale_frames <= 0.1 * counts.commands, vars(counts)
