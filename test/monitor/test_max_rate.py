"""The max-rate search and ros2_benchmark's metrics, on fake systems of known capacity."""

from __future__ import annotations

import math

from edge_infer_ros.monitor.max_rate import (basic_metrics, fill_send_times, find_max_rate,
                                             MaxRateSearch, ProbeResult, run_probe,
                                             SearchConfig, sustained)
import pytest

MS = 1_000_000


def fake_system(capacity_hz: float, latency_ms: float = 2.0, seconds: float = 2.0):
    """Return a probe of a server taking a frame per 1/capacity s, dropping those arriving busy."""
    calls: list[float] = []

    def probe(rate: float) -> ProbeResult:
        calls.append(rate)
        period, service = 1e9 / rate, 1e9 / capacity_hz
        count = int(math.ceil(seconds * rate))
        sent = [int(round(i * period)) for i in range(count)]
        received, free_at = {}, 0.0
        for seq, t in enumerate(sent):
            if t < free_at:
                continue  # busy: dropped
            free_at = t + service
            received[seq] = int(t + latency_ms * MS)
        return ProbeResult(rate, sent, received)

    return probe, calls


def test_metrics_follow_ros2_benchmark_definitions() -> None:
    sent = [0, 10 * MS, 20 * MS, 30 * MS, 40 * MS]
    received = {0: 3 * MS, 1: 13 * MS, 3: 35 * MS, 4: 44 * MS}  # frame 2 missed
    m = basic_metrics(sent, received)
    assert m['NUM_FRAMES_SENT'] == 5 and m['NUM_MISSED_FRAMES'] == 1
    assert m['MEAN_PLAYBACK_FRAME_RATE'] == pytest.approx(5 / 0.040)
    assert m['RECEIVED_DURATION'] == pytest.approx(41.0)
    assert m['MEAN_FRAME_RATE'] == pytest.approx(4 / 0.041)
    assert m['FIRST_SENT_RECEIVED_LATENCY'] == pytest.approx(3.0)
    assert m['LAST_SENT_RECEIVED_LATENCY'] == pytest.approx(4.0)
    # receive intervals 10, 22, 9 ms -> jitters |22-10| = 12, |9-22| = 13
    assert m['MAX_JITTER'] == pytest.approx(13.0)
    assert m['MIN_JITTER'] == pytest.approx(12.0)
    assert m['MEAN_JITTER'] == pytest.approx(12.5)
    assert m['STD_DEV_JITTER'] == pytest.approx(0.5)
    # per-frame latencies 3, 3, 5, 4 ms
    assert m['LATENCY_MAX'] == pytest.approx(5.0)
    assert m['LATENCY_P50'] == pytest.approx(3.5)


def test_metrics_with_nothing_received_are_none_not_zero() -> None:
    m = basic_metrics([0, 10 * MS], {})
    assert m['NUM_MISSED_FRAMES'] == 2
    assert m['MEAN_FRAME_RATE'] is None and m['LATENCY_P50'] is None
    assert m['MAX_JITTER'] is None


def test_received_frames_outside_the_sent_range_are_ignored() -> None:
    m = basic_metrics([0, 10 * MS, 20 * MS], {0: MS, 1: 11 * MS, 2: 21 * MS, 7: 99 * MS,
                                              -1: 0})
    assert m['NUM_MISSED_FRAMES'] == 0
    assert m['LATENCY_MAX'] == pytest.approx(1.0)


def test_fill_send_times_interpolates_dropped_frames() -> None:
    assert fill_send_times({1: 110, 3: 130}, 6, 10) == [100, 110, 120, 130, 140, 150]
    assert fill_send_times({}, 3, 5) == [0, 5, 10]
    assert fill_send_times({0: 7}, 0, 5) == []
    with pytest.raises(ValueError):
        fill_send_times({0: 7}, 2, 0)


def test_sustained_applies_loss_rate_drop_and_enforced_rate() -> None:
    base = {'NUM_FRAMES_SENT': 100, 'NUM_MISSED_FRAMES': 5, 'MEAN_PLAYBACK_FRAME_RATE': 50.0,
            'MEAN_FRAME_RATE': 48.0}
    assert sustained(base, 50.0, 0.05, 5.0)
    assert not sustained(dict(base, NUM_MISSED_FRAMES=6), 50.0, 0.05, 5.0)
    assert not sustained(dict(base, MEAN_FRAME_RATE=44.0), 50.0, 0.05, 5.0)
    slow = dict(base, MEAN_PLAYBACK_FRAME_RATE=40.0, MEAN_FRAME_RATE=40.0)
    assert not sustained(slow, 50.0, 0.05, 5.0)
    assert sustained(slow, 50.0, 0.05, 5.0, enforce_rate=False)
    assert not sustained(dict(base, MEAN_FRAME_RATE=None), 50.0, 0.05, 5.0)


@pytest.mark.parametrize('capacity', [37.0, 64.0, 120.0, 181.0])
def test_search_finds_the_capacity_within_one_step(capacity: float) -> None:
    config = SearchConfig(lower_hz=10.0, upper_hz=400.0, terminal_width_hz=10.0, step_hz=2.0)
    probe, calls = fake_system(capacity)
    result = find_max_rate(probe, config)
    assert capacity - config.step_hz <= result.max_rate_hz <= capacity * 1.06
    assert not result.at_lower_bound and not result.at_upper_bound
    # binary phase first, then the linear scan, which stops at the first failure
    phases = [p.phase for p in result.probes]
    assert phases == sorted(phases)  # 'binary' < 'linear'
    linear = [p for p in result.probes if p.phase == 'linear']
    assert linear and all(p.passed for p in linear[:-1]) and not linear[-1].passed
    assert calls == [p.rate_hz for p in result.probes]
    for p in result.probes:
        assert p.passed == (p.rate_hz <= result.max_rate_hz)


def test_search_reports_the_bounds_it_ran_into() -> None:
    probe, _ = fake_system(1000.0)
    high = find_max_rate(probe, SearchConfig(lower_hz=10.0, upper_hz=100.0))
    assert high.at_upper_bound and high.max_rate_hz > 90.0
    probe, _ = fake_system(3.0)
    low = find_max_rate(probe, SearchConfig(lower_hz=10.0, upper_hz=100.0))
    assert low.at_lower_bound and low.max_rate_hz == 10.0
    assert not any(p.passed for p in low.probes)


def test_a_probe_that_raises_counts_as_failed() -> None:
    def probe(rate: float) -> ProbeResult:
        if rate > 50:
            raise RuntimeError('pipeline died')
        return fake_system(1000.0)[0](rate)

    result = find_max_rate(probe, SearchConfig(lower_hz=10.0, upper_hz=100.0, step_hz=5.0))
    assert 45.0 <= result.max_rate_hz <= 50.0
    failed = [p for p in result.probes if p.error]
    assert failed and all('pipeline died' in p.error and not p.passed for p in failed)


def test_config_refuses_a_window_it_cannot_search() -> None:
    with pytest.raises(ValueError):
        SearchConfig(lower_hz=50.0, upper_hz=10.0)
    with pytest.raises(ValueError):
        SearchConfig(step_hz=0.0)
    with pytest.raises(ValueError):
        SearchConfig(loss_fraction=1.0)


def test_interleaved_searches_give_what_each_gives_alone() -> None:
    config = SearchConfig(lower_hz=10.0, upper_hz=300.0, step_hz=3.0)
    alone = {c: find_max_rate(fake_system(c)[0], config).max_rate_hz for c in (50.0, 140.0)}
    searches = {c: MaxRateSearch(config) for c in (50.0, 140.0)}
    probes = {c: fake_system(c)[0] for c in searches}
    while not all(s.done for s in searches.values()):
        for capacity, search in searches.items():
            rate = search.next_rate()
            if rate is not None:
                search.report(run_probe(probes[capacity], rate))
    assert {c: s.result().max_rate_hz for c, s in searches.items()} == alone
    with pytest.raises(RuntimeError):
        searches[50.0].report(ProbeResult(1.0, [0], {}))
    with pytest.raises(RuntimeError):
        MaxRateSearch(config).result()
