"""Tests of the sliding-window statistics the budget monitor relies on."""

import json
import math

from edge_infer_ros.monitor.windows import SlidingWindow, WindowSummary

from hypothesis import example, given, settings, strategies as st

import numpy as np

import pytest

SEC = 1_000_000_000


def test_percentiles_match_numpy_on_random_data():
    """The window must agree with numpy (linear method) on skewed data."""
    rng = np.random.default_rng(7)
    data = rng.gamma(2.0, 3.0, size=250)
    window = SlidingWindow(300)
    for i, value in enumerate(data):
        window.add(float(value), i)
    summary = window.summary()
    assert summary.count == 250
    # numpy's default (linear) interpolation; no method= (numpy 1.22+: Ubuntu 22.04 has 1.21).
    p50, p95, p99 = np.percentile(data, (50, 95, 99))
    assert summary.p50 == pytest.approx(p50)
    assert summary.p95 == pytest.approx(p95)
    assert summary.p99 == pytest.approx(p99)
    assert summary.max == pytest.approx(data.max())
    assert summary.mean == pytest.approx(data.mean())
    assert summary.percentile(90) == pytest.approx(np.percentile(data, 90))
    assert summary.percentiles((10, 75)) == pytest.approx(np.percentile(data, (10, 75)))


def test_wrap_around_keeps_only_the_newest_capacity_samples():
    """After wrapping, only the newest samples count, in time order."""
    window = SlidingWindow(5)
    for i in range(12):
        window.add(float(i), i)
    assert len(window) == 5
    assert list(window.values()) == [7.0, 8.0, 9.0, 10.0, 11.0]
    summary = window.summary()
    assert summary.count == 5
    assert summary.max == 11.0
    assert summary.p50 == 9.0
    assert window.count_above(9.5) == 2


def test_exact_fill_then_one_more_overwrites_the_oldest():
    """The first overwrite must hit the oldest slot, not the newest."""
    window = SlidingWindow(3)
    for i, value in enumerate((1.0, 2.0, 3.0)):
        window.add(value, i)
    assert list(window.values()) == [1.0, 2.0, 3.0]
    window.add(4.0, 3)
    assert list(window.values()) == [2.0, 3.0, 4.0]


def test_samples_older_than_max_age_are_ignored():
    """Old samples must not haunt the statistics of a stream that slowed down."""
    window = SlidingWindow(100, max_age_s=2.0)
    window.add(100.0, 0)
    window.add(1.0, 1 * SEC)
    window.add(2.0, 3 * SEC)
    summary = window.summary(now_ns=3 * SEC)
    assert summary.count == 2  # the sample at t=0 is 3 s old
    assert summary.max == 2.0
    assert window.count_above(0.5, now_ns=3 * SEC) == 2
    assert window.oldest_time_ns(3 * SEC) == 1 * SEC
    # Without a time, every held sample counts.
    assert window.summary().count == 3
    # Much later everything has aged out: empty, NaN statistics.
    late = window.summary(now_ns=60 * SEC)
    assert late.count == 0
    assert math.isnan(late.p95)
    assert window.oldest_time_ns(60 * SEC) is None


def test_empty_window_is_count_zero_and_nan():
    """No data must read as NaN (None in JSON), never as 0 ms."""
    summary = SlidingWindow(4).summary(0)
    assert summary.count == 0
    for value in (summary.p50, summary.p95, summary.p99, summary.max, summary.mean,
                  summary.percentile(80)):
        assert math.isnan(value)
    as_dict = summary.as_dict()
    assert as_dict == {'count': 0, 'p50_ms': None, 'p95_ms': None, 'p99_ms': None,
                       'max_ms': None, 'mean_ms': None}
    json.dumps(as_dict, allow_nan=False)


def test_as_dict_uses_ms_keys():
    """The report keys carry their unit."""
    window = SlidingWindow(4)
    window.add(2.0, 0)
    window.add(4.0, 1)
    assert window.summary().as_dict() == {
        'count': 2, 'p50_ms': 3.0, 'p95_ms': pytest.approx(3.9),
        'p99_ms': pytest.approx(3.98), 'max_ms': 4.0, 'mean_ms': 3.0}


def test_clear_forgets_samples():
    """A cleared window starts over at the first slot."""
    window = SlidingWindow(3)
    for i in range(5):
        window.add(float(i), i)
    window.clear()
    assert len(window) == 0
    assert window.summary().count == 0
    window.add(9.0, 9)
    assert list(window.values()) == [9.0]


@pytest.mark.parametrize('new_capacity, expected', [
    (3, [7.0, 8.0, 9.0]),
    (10, [5.0, 6.0, 7.0, 8.0, 9.0]),
    (5, [5.0, 6.0, 7.0, 8.0, 9.0]),
])
def test_resize_keeps_the_newest_samples(new_capacity, expected):
    """Resizing (set_config) keeps the newest samples and the ring order."""
    window = SlidingWindow(5)
    for i in range(10):  # wrapped: holds 5..9
        window.add(float(i), i)
    window.resize(new_capacity)
    assert window.capacity == new_capacity
    assert list(window.values()) == expected
    # The ring keeps working after the resize, evicting the oldest.
    for i in range(10, 10 + new_capacity):
        window.add(float(i), i)
    assert list(window.values()) == [float(i) for i in range(10, 10 + new_capacity)]


def test_resize_keeps_sample_times():
    """Ages still apply to samples carried over by a resize."""
    window = SlidingWindow(4, max_age_s=1.0)
    window.add(1.0, 0)
    window.add(2.0, 2 * SEC)
    window.resize(8)
    assert list(window.values(now_ns=2 * SEC)) == [2.0]


@pytest.mark.parametrize('capacity', [0, -1, 2.5, True, 'ten'])
def test_bad_capacity_is_rejected(capacity):
    """A ring needs an integer capacity of at least one."""
    with pytest.raises(ValueError, match='capacity'):
        SlidingWindow(capacity)


def test_bad_percentile_is_rejected():
    """Percentiles outside 0..100 are a caller bug."""
    summary = WindowSummary.of(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match='percentile'):
        summary.percentile(101)


def test_summary_is_a_snapshot():
    """A summary must not change when the window moves on."""
    window = SlidingWindow(4)
    window.add(1.0, 0)
    summary = window.summary()
    window.add(50.0, 1)
    assert summary.max == 1.0
    assert summary.percentile(100) == 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1,
                max_size=64),
       st.integers(min_value=1, max_value=64),
       st.floats(min_value=0, max_value=100))
@example(values=[0.0, -16385.0], capacity=2, q=99.99999999999999)  # found by hypothesis
def test_percentiles_match_numpy_for_any_sequence(values, capacity, q):
    """Property: any sequence agrees with numpy over its newest capacity samples."""
    window = SlidingWindow(capacity)
    for i, value in enumerate(values):
        window.add(value, i)
    kept = np.array(values[-capacity:])
    summary = window.summary()
    assert summary.count == kept.size
    expected = np.percentile(kept, (50, 95, 99, q))
    # Interpolation rounds in proportion to the values' magnitude, not to the result's: near
    # zero between large values (0 and -16385 at q ~ 100) a fixed absolute tolerance fails.
    close = {'rel': 1e-9, 'abs': 1e-12 * max(1.0, float(np.abs(kept).max()))}
    assert summary.p50 == pytest.approx(expected[0], **close)
    assert summary.p95 == pytest.approx(expected[1], **close)
    assert summary.p99 == pytest.approx(expected[2], **close)
    assert summary.percentile(q) == pytest.approx(expected[3], **close)
    assert summary.max == kept.max()
