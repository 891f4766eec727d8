"""The node clock: ROS time for stamps and ages, monotonic durations, jumps counted."""

from edge_infer_ros.core.clock import JumpWatch, NodeClock
from edge_infer_ros.core.frame import FrameTrace, StageTiming
from edge_infer_ros.core.stamps import StampOrder
from edge_infer_ros.monitor.config import BudgetConfig
from edge_infer_ros.monitor.tracker import BudgetTracker

SEC = 1_000_000_000
SIM = 1_600_000_000 * SEC  # 2020: far from the wall clock


class FakeTime:
    """A ROS clock that moves in /clock steps and a monotonic clock, both set by the test."""

    def __init__(self) -> None:
        self.ros = SIM
        self.mono = 5 * SEC

    def clock(self) -> NodeClock:
        return NodeClock(lambda: self.ros, lambda: self.mono)


def test_timing_keeps_monotonic_durations_on_the_ros_time_line() -> None:
    t = FakeTime()
    clock = t.clock()
    received = t.mono
    t.mono += 2_000_000  # 2 ms queued
    start = t.mono
    t.mono += 3_000_000  # 3 ms of work; /clock did not move (it steps every 10 ms)
    timing = clock.timing('detector', '/detector', received, start)
    assert timing.end_ns == SIM
    assert timing.service_ns == 3_000_000 and timing.queue_wait_ns == 2_000_000
    assert timing.received_ns == SIM - 5_000_000


def test_a_lagging_clock_never_puts_a_stage_before_the_frame_left_the_last() -> None:
    t = FakeTime()
    clock = t.clock()
    received = t.mono
    t.mono += 4_000_000
    stamp = SIM + 50_000_000  # the simulator stamped 50 ms past this node's last /clock
    timing = clock.timing('preprocess', '/preprocess', received, received, after_ns=stamp)
    assert timing.received_ns == stamp and timing.service_ns == 4_000_000


def test_a_jump_back_and_forward_is_counted_and_seen_once_per_watcher() -> None:
    t = FakeTime()
    clock = t.clock()
    watch = JumpWatch(clock)
    clock.now_ns()
    t.ros += 10 * SEC // 1000
    t.mono += 10 * SEC // 1000
    clock.now_ns()
    assert clock.jumps == 0 and not watch.jumped()
    t.ros -= 30 * SEC  # a bag loops, a simulator resets
    clock.now_ns()
    assert clock.jumps == 1 and 'went back' in clock.last_jump
    assert watch.jumped() and not watch.jumped()
    t.ros += 3600 * SEC
    t.mono += SEC // 10
    clock.now_ns()
    assert clock.jumps == 2 and 'forward' in clock.last_jump and watch.jumped()


def test_the_first_clock_message_is_no_jump() -> None:
    t = FakeTime()
    t.ros = 0  # use_sim_time, no /clock yet
    clock = t.clock()
    assert clock.now_ns() == 0
    t.ros = SIM
    clock.now_ns()
    assert clock.jumps == 0


def test_a_simulator_faster_than_real_time_is_no_jump() -> None:
    t = FakeTime()
    clock = t.clock()
    clock.now_ns()
    for _ in range(20):
        t.ros += 5 * SEC  # real-time factor 5, read once a second
        t.mono += SEC
        clock.now_ns()
    assert clock.jumps == 0


def test_age_is_never_negative() -> None:
    t = FakeTime()
    clock = t.clock()
    assert clock.age_s(SIM + SEC) == 0.0
    assert clock.age_s(SIM - SEC // 2) == 0.5


def test_stamp_order_forgets_the_old_time_line_on_reset() -> None:
    order = StampOrder(hold_s=5.0)
    assert order.observe('cam', SIM, 0, SIM) is None
    assert order.observe('cam', SIM - 30 * SEC, 1, SIM) is not None
    order.reset()
    assert order.fault(SIM - 30 * SEC) == '' and order.count == 1
    assert order.observe('cam', SIM - 29 * SEC, 2, SIM - 29 * SEC) is None


def _trace(seq: int, stamp: int, latency_ns: int) -> FrameTrace:
    return FrameTrace('cam', seq, stamp, 'cam', (
        StageTiming('detector', '/detector', stamp + 1_000_000, stamp + 1_000_000,
                    stamp + latency_ns),))


def test_tracker_windows_restart_after_a_jump_and_nothing_stays_stale() -> None:
    tracker = BudgetTracker(BudgetConfig(deadline_ms=50.0, stale_timeout_s=2.0))
    now = SIM
    for seq in range(20):
        now += SEC // 15
        tracker.observe(_trace(seq, now - 20_000_000, 20_000_000), now)
    back = SIM - 600 * SEC  # the simulator reset ten minutes back
    tracker.clock_jumped(back)
    summary = tracker.summary(back)
    camera = summary['cameras']['cam']
    assert summary['clock_jumps'] == 1 and camera['frames'] == 20
    assert camera['end_to_end']['count'] == 0
    assert all(v.level.name != 'STALE' for v in tracker.verdicts(back + SEC))
    for seq in range(20, 25):
        back += SEC // 15
        tracker.observe(_trace(seq, back - 20_000_000, 20_000_000), back)
    assert tracker.summary(back)['cameras']['cam']['end_to_end']['count'] == 5
    assert all(v.level.name != 'STALE' for v in tracker.verdicts(back))
