"""The in-process handoff: keep-latest queues, inline and threaded inputs, echo suppression."""

from __future__ import annotations

import threading
import time

from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.handoff import (KeepLatestQueue, LocalBus, Pace, StageInput,
                                         StagePublisher)
import pytest
from support.waiting import wait_for


def _envelope(seq: int, payload: object = None) -> Envelope:
    return Envelope('cam', seq, 1_000 + seq, 'frame', (), payload)


def test_keep_latest_queue_drops_oldest_and_counts() -> None:
    queue = KeepLatestQueue(2)
    assert not queue.put(1) and not queue.put(2)
    assert queue.put(3)  # full: 1 is dropped
    assert queue.dropped == 1
    assert [queue.pop(), queue.pop()] == [2, 3]
    queue.put(4)
    queue.put(5)
    queue.depth = 1  # shrinking drops the excess, counted
    assert queue.dropped == 2 and len(queue) == 1 and queue.pop() == 5
    with pytest.raises(ValueError):
        KeepLatestQueue(0)


def test_inline_input_runs_in_the_callers_thread() -> None:
    seen = []
    stage = StageInput('/t', lambda e, r: seen.append((e.seq, threading.get_ident(), r)),
                       mode='inline')
    stage.start()
    stage.deliver(_envelope(7))
    assert seen[0][0] == 7 and seen[0][1] == threading.get_ident()
    assert seen[0][2] > 0
    assert stage.stats.processed == 1 and stage.stats.received == 1


def test_threaded_input_keeps_latest_under_overload() -> None:
    release = threading.Event()
    processed = []

    def slow(envelope: Envelope, received_ns: int) -> None:
        release.wait(5.0)
        processed.append(envelope.seq)

    stage = StageInput('/t', slow, mode='thread', depth=1)
    stage.start()
    stage.deliver(_envelope(0))           # taken by the worker, which blocks
    assert wait_for(lambda: not stage.idle() and len(stage._queue) == 0)
    for seq in range(1, 6):
        stage.deliver(_envelope(seq))     # only the newest waits; 4 are dropped
    release.set()
    assert wait_for(stage.idle)
    stage.stop()
    assert processed == [0, 5]
    assert stage.stats.dropped == 4
    assert stage.stats.received == stage.stats.processed + stage.stats.dropped


def test_a_failing_frame_is_counted_and_the_stage_goes_on() -> None:
    errors = []

    def sometimes_fails(envelope: Envelope, received_ns: int) -> None:
        if envelope.seq == 1:
            raise ValueError('bad frame')

    stage = StageInput('/t', sometimes_fails, mode='inline',
                       on_error=lambda error, envelope: errors.append((str(error), envelope.seq)))
    stage.start()
    for seq in range(3):
        stage.deliver(_envelope(seq))
    assert stage.stats.processed == 2 and stage.stats.errors == 1
    assert errors == [('bad frame', 1)]


def test_an_error_is_counted_only_after_its_reason_is_recorded() -> None:
    # Whoever polls the count from another thread (a test, the diagnostics timer) must find
    # the reason already there.
    counts_seen_by_the_handler = []
    stage = StageInput('/t', lambda e, r: 1 / 0, mode='thread', depth=1,
                       on_error=lambda error, envelope: counts_seen_by_the_handler.append(
                           stage.stats.errors))
    stage.start()
    stage.deliver(_envelope(0))
    assert wait_for(lambda: stage.stats.errors == 1)
    stage.stop()
    assert counts_seen_by_the_handler == [0]


def test_frames_delivered_while_stopped_are_dropped_and_counted() -> None:
    release = threading.Event()
    stage = StageInput('/t', lambda e, r: release.wait(5.0), mode='thread', depth=1)
    stage.deliver(_envelope(0))           # not started: dropped
    assert stage.stats.dropped == 1 and stage.stats.processed == 0
    stage.start()
    stage.deliver(_envelope(1))           # taken by the worker, which blocks
    assert wait_for(lambda: not stage.idle() and len(stage._queue) == 0)
    stage.deliver(_envelope(2))
    stage.deliver(_envelope(3))           # 2 is pushed out of the queue
    release.set()
    assert wait_for(stage.idle)
    stage.stop()
    # Drops while stopped and drops from the queue add up; none is lost from the count.
    assert stage.stats.dropped == 2
    assert stage.stats.received == stage.stats.processed + stage.stats.dropped == 4


class _SlowKey:
    """A frame key whose hashing lets the other thread run, as a preemption would."""

    def __init__(self, seq: int) -> None:
        self.seq = seq

    def __hash__(self) -> int:
        time.sleep(0.0002)
        return hash(self.seq)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SlowKey) and other.seq == self.seq


def test_a_frame_that_comes_by_two_ways_at_once_runs_once() -> None:
    # Shared memory and DDS hand the same frame over from two threads.
    seen = []
    stage = StageInput('/t', lambda e, r: seen.append(e.seq), mode='inline')
    stage.start()

    def by_shared_memory() -> None:
        for seq in range(40):
            stage.deliver_same_host(_envelope(seq), _SlowKey(seq))

    def by_dds() -> None:
        for seq in range(40):
            stage.deliver_from_ros(_envelope(seq), _SlowKey(seq))
    ways = [threading.Thread(target=by_shared_memory), threading.Thread(target=by_dds)]
    for way in ways:
        way.start()
    for way in ways:
        way.join()
    assert sorted(seen) == list(range(40))
    assert stage.stats.duplicates_ignored == 40


def test_the_same_message_twice_by_one_way_is_not_taken_for_an_echo() -> None:
    # A driver that publishes one Image twice: both copies reach the stage, whose stamp order
    # counts the repeat; only a copy by another way is an echo.
    seen = []
    stage = StageInput('/t', lambda e, r: seen.append(e.seq), mode='inline')
    stage.start()
    assert stage.deliver_from_ros(_envelope(1), ('key', 1)) is None
    assert stage.deliver_from_ros(_envelope(1), ('key', 1)) is None
    stage.deliver_same_host(_envelope(1), ('key', 1))
    assert seen == [1, 1] and stage.stats.duplicates_ignored == 1


def test_dds_echo_of_a_locally_delivered_frame_is_ignored() -> None:
    seen = []
    stage = StageInput('/t', lambda e, r: seen.append(e.seq), mode='inline')
    stage.start()
    stage.remember(('key', 1))
    stage.deliver(_envelope(1))
    stage.deliver_from_ros(_envelope(1), ('key', 1))   # the echo: ignored
    stage.deliver_from_ros(_envelope(2), ('key', 2))   # a frame from elsewhere: processed
    assert seen == [1, 2]
    assert stage.stats.duplicates_ignored == 1


def test_mode_switch_at_run_time() -> None:
    threads = []
    stage = StageInput('/t', lambda e, r: threads.append(threading.get_ident()), mode='inline')
    stage.start()
    stage.deliver(_envelope(0))
    stage.set_mode('thread')
    stage.deliver(_envelope(1))
    assert wait_for(lambda: len(threads) == 2)
    stage.stop()
    assert threads[0] == threading.get_ident() and threads[1] != threading.get_ident()


class _CountingPublisher:
    """Stands in for an rclpy publisher in a plain test: reports a subscription count."""

    def __init__(self, subscriptions: int) -> None:
        self.subscriptions = subscriptions
        self.published = []

    def get_subscription_count(self) -> int:
        return self.subscriptions

    def publish(self, msg: object) -> None:
        self.published.append(msg)


def test_publisher_builds_messages_only_for_outside_subscribers() -> None:
    bus = LocalBus()
    seen = []
    local = StageInput('/topic', lambda e, r: seen.append(e), mode='inline')
    local.start()
    bus.attach('/topic', local, has_ros_subscription=True)
    ros = _CountingPublisher(subscriptions=1)  # the one subscription is the local input's
    built = []
    publisher = StagePublisher(bus, '/topic', ros, lambda e: built.append(e) or ('msg', e.seq),
                               lambda e: (e.stamp_ns, e.frame_id))
    frame = _envelope(3, payload=object())
    publisher.publish(frame)
    assert seen == [frame] and seen[0] is frame  # by reference, the very same object
    assert built == [] and ros.published == []
    ros.subscriptions = 2  # someone outside the process subscribed
    publisher.counts_changed()  # as the DDS matched event says
    publisher.publish(_envelope(4))
    assert ros.published == [('msg', 4)] and publisher.stats.messages_built == 1
    # The local input now knows the frame's key, so the DDS echo will be ignored.
    local.deliver_from_ros(_envelope(4), (1_004, 'frame'))
    assert local.stats.duplicates_ignored == 1
    bus.detach('/topic', local, has_ros_subscription=True)
    assert bus.inputs('/topic') == () and bus.local_ros_subscriptions('/topic') == 0


def test_publishes_go_by_counts_read_at_most_their_max_age_ago() -> None:
    bus = LocalBus()
    ros = _CountingPublisher(subscriptions=0)
    publisher = StagePublisher(bus, '/topic', ros, lambda e: ('msg', e.seq),
                               lambda e: (e.stamp_ns, e.frame_id))
    publisher.counts_max_age_s = 3600.0
    publisher.publish(_envelope(0))
    ros.subscriptions = 1  # a subscriber appears, and no event says so
    for seq in range(1, 4):
        publisher.publish(_envelope(seq))
    assert ros.published == [] and publisher.outside_subscribers() == 1  # asked: fresh
    publisher.counts_max_age_s = 0.5  # the reading above expires in an hour: read again now
    publisher.counts_changed()
    publisher.publish(_envelope(4))
    assert ros.published == [('msg', 4)]
    ros.subscriptions = 0  # it leaves: the reading serves until it is half a second old
    publisher.publish(_envelope(5))
    time.sleep(0.6)
    publisher.publish(_envelope(6))
    assert ros.published == [('msg', 4), ('msg', 5)] and publisher.stats.messages_built == 2


def test_threaded_hop_hands_over_quickly_enough_to_overlap_stages() -> None:
    """Two threaded stages overlap: the second starts before the first's next frame ends."""
    order = []

    def first(envelope: Envelope, received_ns: int) -> None:
        order.append(('first start', envelope.seq))
        time.sleep(0.02)
        order.append(('first end', envelope.seq))
        second.deliver(envelope)

    def second_work(envelope: Envelope, received_ns: int) -> None:
        order.append(('second start', envelope.seq))
        time.sleep(0.02)
        order.append(('second end', envelope.seq))

    second = StageInput('/b', second_work, mode='thread', depth=5)
    head = StageInput('/a', first, mode='thread', depth=5)
    second.start()
    head.start()
    head.deliver(_envelope(0))
    head.deliver(_envelope(1))
    assert wait_for(lambda: ('second end', 1) in order, 5.0)
    head.stop()
    second.stop()
    # Frame 1's first stage ran while frame 0 was in the second stage.
    assert order.index(('first start', 1)) < order.index(('second end', 0))


def test_auto_input_runs_inline_while_idle_and_the_caller_has_time() -> None:
    threads = []
    stage = StageInput('/t', lambda e, r: threads.append(threading.get_ident()), mode='auto')
    stage.start()
    pace = Pace()
    try:
        with pace.publishing(10**9):  # a paced source with a second to spare
            for seq in range(5):
                stage.deliver(_envelope(seq))
        assert threads == [threading.get_ident()] * 5
        assert stage.stats.ran_inline == 5 and stage.stats.ran_on_worker == 0
        assert pace.take_ready_at_ns() == 0  # nothing was queued: no reason to wait
    finally:
        stage.stop()


def test_auto_input_hands_frames_to_its_worker_when_the_caller_has_no_time() -> None:
    threads = []

    def work(envelope: Envelope, received_ns: int) -> None:
        threads.append(threading.get_ident())
        time.sleep(0.005)

    stage = StageInput('/t', work, mode='auto', depth=1)
    stage.start()
    pace = Pace()
    try:
        with pace.publishing(0):
            stage.deliver(_envelope(0))  # no service time known yet: inline
        assert threads == [threading.get_ident()]
        before = time.perf_counter_ns()
        with pace.publishing(0):
            stage.deliver(_envelope(1))  # 5 ms of work, no idle time: the worker takes it
        ready = pace.take_ready_at_ns()
        assert ready >= before + 2_000_000  # about one service time from now
        assert wait_for(lambda: len(threads) == 2 and stage.idle())
        assert threads[1] != threading.get_ident()
        assert stage.stats.ran_inline == 1 and stage.stats.ran_on_worker == 1
    finally:
        stage.stop()


def test_auto_input_queues_keep_latest_while_busy_and_counts_every_drop() -> None:
    release = threading.Event()
    running = []
    concurrent = []

    def slow(envelope: Envelope, received_ns: int) -> None:
        running.append(envelope.seq)
        concurrent.append(len(running) - len(done))
        release.wait(5.0)
        done.append(envelope.seq)

    done: list = []
    stage = StageInput('/t', slow, mode='auto', depth=1)
    stage.start()
    caller = threading.Thread(target=stage.deliver, args=(_envelope(0),))
    caller.start()  # runs inline in that thread and blocks
    assert wait_for(lambda: running == [0])
    for seq in range(1, 6):
        stage.deliver(_envelope(seq))  # busy: queued, only the newest kept
    assert stage.stats.ran_inline == 1 and stage.stats.dropped == 4
    release.set()
    caller.join(5.0)
    assert wait_for(stage.idle)
    stage.stop()
    assert done == [0, 5] and max(concurrent) == 1  # one run at a time
    assert stage.stats.received == stage.stats.processed + stage.stats.dropped == 6


def test_auto_input_judges_an_unpaced_caller_by_the_gap_between_frames() -> None:
    threads = []

    def work(envelope: Envelope, received_ns: int) -> None:
        threads.append(threading.get_ident())
        time.sleep(0.01)

    stage = StageInput('/t', work, mode='auto', depth=2)
    stage.start()
    try:
        stage.deliver(_envelope(0))            # inline (nothing known yet)
        stage.deliver(_envelope(1))            # back at once: the worker takes it
        assert wait_for(stage.idle)
        time.sleep(0.05)                       # a gap of many service times: inline again
        stage.deliver(_envelope(2))
        assert threads[0] == threads[2] == threading.get_ident() != threads[1]
    finally:
        stage.stop()


def test_auto_input_never_runs_a_frame_from_dds_in_the_executors_thread() -> None:
    threads = []
    stage = StageInput('/t', lambda e, r: threads.append(threading.get_ident()), mode='auto')
    stage.start()
    try:
        with Pace().publishing(10**9):
            stage.deliver_from_ros(_envelope(0), ('key', 0))  # the executor's thread: queued
            assert wait_for(lambda: len(threads) == 1 and stage.idle())
            stage.deliver(_envelope(1))                        # a local publisher: inline
        assert threads[0] != threading.get_ident() == threads[1]
        assert stage.stats.ran_on_worker == 1 and stage.stats.ran_inline == 1
    finally:
        stage.stop()


def test_auto_input_queues_frames_an_inline_chain_from_dds_hands_on() -> None:
    threads = []
    detector = StageInput('/d', lambda e, r: threads.append(threading.get_ident()), mode='auto')
    relay = StageInput('/r', lambda e, r: detector.deliver(e), mode='inline')
    detector.start()
    relay.start()
    try:
        relay.deliver_from_ros(_envelope(0), ('key', 0))  # executor -> inline relay -> auto
        assert wait_for(lambda: len(threads) == 1 and detector.idle())
        assert threads[0] != threading.get_ident() and detector.stats.ran_on_worker == 1
    finally:
        relay.stop()
        detector.stop()


def test_a_paced_source_that_waits_for_its_frame_to_be_taken_loses_none() -> None:
    durations = iter([0.002] + [0.001, 0.02] * 10)  # runs that overrun any prediction

    def work(envelope: Envelope, received_ns: int) -> None:
        time.sleep(next(durations, 0.001))

    stage = StageInput('/t', work, mode='auto', depth=1)
    stage.start()
    pace = Pace()
    try:
        for seq in range(20):
            with pace.publishing(0):  # a camera with no time to spare: all go to the worker
                stage.deliver(_envelope(seq))
            ready = pace.take_ready_at_ns(wait_s=2.0)
            assert len(stage._queue) == 0  # taken before the next capture
            delay = ready / 1e9 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        assert wait_for(stage.idle)
        assert stage.stats.dropped == 0 and stage.stats.processed == 20
    finally:
        stage.stop()
