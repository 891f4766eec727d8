"""SequenceTracker: gaps in publishers' sequence numbers become an exact count of lost frames."""

from edge_infer_ros.core.sequence import loss_warning, RecentLoss, SequenceTracker
import pytest


def feed(tracker, publisher, seqs):
    return [tracker.observe(publisher, s) for s in seqs]


def test_contiguous_series_loses_nothing():
    tracker = SequenceTracker()
    assert feed(tracker, 'a', range(1, 101)) == [0] * 100
    assert tracker.lost == 0 and tracker.totals.received == 100


def test_gaps_are_counted_and_received_plus_lost_is_sent():
    tracker = SequenceTracker()
    sent = range(1, 201)
    delivered = [s for s in sent if s % 7 and s % 11]  # 1 and 200 are delivered
    feed(tracker, 'cam', delivered)
    assert tracker.lost == len(sent) - len(delivered)
    assert tracker.totals.received + tracker.lost == len(sent)


def test_first_sample_is_the_baseline():
    tracker = SequenceTracker()
    assert tracker.observe('driver', 5000) == 0  # ran before we subscribed: nothing lost
    assert tracker.observe('driver', 5003) == 2
    assert tracker.series('driver').first_seq == 5000


def test_publishers_are_counted_separately():
    tracker = SequenceTracker()
    for seq in range(1, 11):
        tracker.observe('a', seq)
        if seq % 2:
            tracker.observe('b', seq)  # b: 1, 3, 5, 7, 9 -> 4 lost
    assert tracker.series('a').lost == 0
    assert tracker.series('b').lost == 4
    assert tracker.lost == 4


def test_a_late_sample_takes_its_loss_back():
    tracker = SequenceTracker()
    feed(tracker, 'a', [1, 2, 4, 5])
    assert tracker.lost == 1
    tracker.observe('a', 3)  # reordered, not lost
    assert tracker.lost == 0 and tracker.totals.late == 1
    tracker.observe('a', 3)  # and again: a duplicate, not a negative loss
    assert tracker.lost == 0 and tracker.totals.duplicates == 1


def test_going_far_back_is_a_restart_not_a_negative_loss():
    tracker = SequenceTracker(reorder_window=8)
    feed(tracker, 'a', range(1, 101))
    assert tracker.observe('a', 1) == 0
    assert tracker.totals.restarts == 1 and tracker.lost == 0
    assert tracker.observe('a', 3) == 1  # the new series has its own gaps
    assert tracker.lost == 1


def test_a_huge_jump_is_a_restart():
    tracker = SequenceTracker(max_gap=1000)
    feed(tracker, 'a', [1, 2])
    assert tracker.observe('a', 2**62) == 0
    assert tracker.totals.restarts == 1 and tracker.lost == 0


def test_publishers_tracked_are_bounded():
    tracker = SequenceTracker(max_publishers=4)
    for publisher in range(100):
        tracker.observe(publisher, 1)
    assert tracker.publishers() == 4
    assert tracker.totals.publishers_seen == 100
    assert tracker.totals.publishers_evicted == 96


def test_reorder_memory_is_bounded():
    tracker = SequenceTracker(reorder_window=16)
    seq = 1
    for _ in range(1000):
        tracker.observe('a', seq)
        seq += 3
    assert len(tracker.series('a').missing) <= 16
    assert tracker.lost == 2 * 999


def test_ignored_publisher_losses_are_dropped():
    tracker = SequenceTracker()
    feed(tracker, 'echo', [1, 5])
    assert tracker.lost == 3
    tracker.ignore('echo')
    assert tracker.lost == 0
    assert tracker.observe('echo', 100) == 0 and tracker.lost == 0


def test_samples_without_info_are_counted():
    tracker = SequenceTracker()
    tracker.observe_without_info()
    assert tracker.totals.without_info == 1


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        SequenceTracker(max_publishers=0)


def test_recent_loss_forgets_what_left_the_window():
    recent = RecentLoss(window_s=10.0)
    assert recent.update(0.0, 90, 10) == (10, 100)  # first: since the start
    assert recent.update(5.0, 190, 10) == (0, 100)
    assert recent.update(11.0, 290, 10) == (0, 200)  # the loss before 5 s is out
    assert recent.update(30.0, 300, 12) == (2, 12)


def test_recent_loss_is_bounded():
    recent = RecentLoss(window_s=1e9, max_snapshots=8)
    for second in range(100):
        recent.update(float(second), second, 0)
    assert len(recent._snapshots) == 8


def test_loss_warning_names_the_fix_above_the_rate_only():
    assert loss_warning('/image_in', 0, 1000, 10.0) is None
    assert loss_warning('/image_in', 5, 1000, 10.0) is None  # 0.5 %: not above
    text = loss_warning('/image_in', 6, 1000, 10.0)
    assert '6 of 1000 frames on /image_in' in text
    assert 'fastdds_shm.xml' in text and 'dds_profile.launch.py' in text and 'reliable' in text


def test_loss_warning_tells_the_readers_own_overflow_from_transport_loss():
    # Issue 29: under a reader-side overflow the WARN blamed the publisher's profile.
    transport = loss_warning('/image_in', 40, 100, 10.0, middleware_lost=40)
    assert 'lost in transport' in transport and 'fastdds_shm.xml' in transport
    overflow = loss_warning('/image_in', 40, 100, 10.0, middleware_lost=0)
    assert '40 arrived and were overwritten' in overflow and 'qos.input.depth' in overflow
    assert 'fastdds_shm.xml' not in overflow
    both = loss_warning('/image_in', 40, 100, 10.0, middleware_lost=10)
    assert '30 arrived and were overwritten' in both and '10 lost in transport' in both
    assert 'qos.input.depth' in both and 'fastdds_shm.xml' in both
