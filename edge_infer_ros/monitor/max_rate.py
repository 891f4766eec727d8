"""
The highest frame rate a system sustains, searched for the way ros2_benchmark does.

ros2_benchmark (NVIDIA-ISAAC-ROS) plays preloaded frames at a fixed rate, and a probe at a rate
passes when at most 5 % of the frames sent were missed and the output rate stayed within a few
Hz of the playback rate. It searches in two phases: a binary search over [lower, upper] until
the interval is narrower than ``terminal_width_hz``, then a linear scan upward from the lower
end in ``step_hz`` steps until a probe fails. Its per-probe figures carry fixed names
(MEAN_FRAME_RATE, NUM_MISSED_FRAMES, ...); :func:`basic_metrics` computes them the same way,
with per-frame latency percentiles added, so that figures can be set beside its published ones.

Plain logic (no ROS): the probe is any function rate -> :class:`ProbeResult`, so the search is
tested against a fake system of known capacity, and bench/max_rate.py runs it on the real ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

#: The metric names ros2_benchmark's BasicPerformanceCalculator reports (ms and fps).
BASIC_KEYS = ('RECEIVED_DURATION', 'MEAN_PLAYBACK_FRAME_RATE', 'MEAN_FRAME_RATE',
              'NUM_MISSED_FRAMES', 'NUM_FRAMES_SENT', 'FIRST_SENT_RECEIVED_LATENCY',
              'LAST_SENT_RECEIVED_LATENCY', 'MAX_JITTER', 'MIN_JITTER', 'MEAN_JITTER',
              'STD_DEV_JITTER')
#: Per-frame latency (sent -> received) percentiles added to them, ms.
LATENCY_KEYS = ('LATENCY_P50', 'LATENCY_P90', 'LATENCY_P99', 'LATENCY_MAX')


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """
    The search window and pass criteria (ros2_benchmark's defaults where it has one).

    ``enforce_rate``: a probe also fails when the playback itself fell more than
    ``loss_fraction`` below the asked rate (ros2_benchmark's ``enforce_publisher_rate``): a
    camera that shares a thread or a core with the pipeline slows down instead of dropping.
    """

    lower_hz: float = 10.0
    upper_hz: float = 100.0
    terminal_width_hz: float = 10.0
    loss_fraction: float = 0.05
    binary_rate_drop_hz: float = 10.0
    linear_rate_drop_hz: float = 5.0
    step_hz: float = 5.0
    enforce_rate: bool = True

    def __post_init__(self) -> None:
        """Refuse a window or criteria the search cannot work with."""
        if not 0 < self.lower_hz < self.upper_hz:
            raise ValueError(f'need 0 < lower < upper, got {self.lower_hz}, {self.upper_hz}')
        if self.terminal_width_hz <= 0 or self.step_hz <= 0:
            raise ValueError('terminal width and step must be > 0')
        if not 0 <= self.loss_fraction < 1:
            raise ValueError(f'loss fraction must be in [0, 1), got {self.loss_fraction}')


@dataclasses.dataclass
class ProbeResult:
    """What one probe at a fixed rate gave: send times by frame, receive times by frame."""

    rate_hz: float
    sent_ns: Sequence[int]
    received_ns: Mapping[int, int]
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    passed: Optional[bool] = None
    phase: str = ''
    error: str = ''

    def __post_init__(self) -> None:
        """Compute the metrics when the caller did not."""
        if not self.metrics and not self.error:
            self.metrics = basic_metrics(self.sent_ns, self.received_ns)


def basic_metrics(sent_ns: Sequence[int], received_ns: Mapping[int, int]) -> dict[str, Any]:
    """
    Return ros2_benchmark's basic metrics of one probe, plus latency percentiles.

    ``sent_ns[i]`` is when frame i was sent; ``received_ns`` maps a frame index to when its
    result came out (frames missing from it were missed). As in ros2_benchmark: the playback
    rate is frames sent over the first-to-last send time, the output rate frames received over
    the first-to-last receive time, and jitter is the absolute change between consecutive
    receive intervals (needs 3 frames received). Metrics that cannot be computed are None.
    """
    sent = [int(t) for t in sent_ns]
    received = sorted((int(seq), int(t)) for seq, t in received_ns.items()
                      if 0 <= int(seq) < len(sent))
    out: dict[str, Any] = dict.fromkeys(BASIC_KEYS + LATENCY_KEYS)
    out['NUM_FRAMES_SENT'] = len(sent)
    out['NUM_MISSED_FRAMES'] = len(sent) - len(received)
    if len(sent) > 1 and sent[-1] > sent[0]:
        out['MEAN_PLAYBACK_FRAME_RATE'] = len(sent) / ((sent[-1] - sent[0]) / 1e9)
    if not received:
        return out
    ends = np.array(sorted(t for _, t in received), dtype=np.float64) / 1e6  # by arrival
    duration = float(ends[-1] - ends[0])
    out['RECEIVED_DURATION'] = duration
    if duration > 0:
        out['MEAN_FRAME_RATE'] = len(received) / (duration / 1e3)
    if sent:
        out['FIRST_SENT_RECEIVED_LATENCY'] = float(ends[0] - sent[0] / 1e6)
        out['LAST_SENT_RECEIVED_LATENCY'] = float(ends[-1] - sent[-1] / 1e6)
    if ends.size > 2:
        jitter = np.abs(np.diff(np.diff(ends)))
        out['MAX_JITTER'] = float(jitter.max())
        out['MIN_JITTER'] = float(jitter.min())
        out['MEAN_JITTER'] = float(jitter.mean())
        out['STD_DEV_JITTER'] = float(jitter.std())
    latency = np.array([(t - sent[seq]) / 1e6 for seq, t in received], dtype=np.float64)
    p50, p90, p99 = np.percentile(latency, (50, 90, 99))
    out.update({'LATENCY_P50': float(p50), 'LATENCY_P90': float(p90),
                'LATENCY_P99': float(p99), 'LATENCY_MAX': float(latency.max())})
    return out


def fill_send_times(known_ns: Mapping[int, int], count: int, period_ns: int) -> list[int]:
    """
    Return the send time of each of ``count`` frames from those known (frames that came out).

    A frame the system dropped left no record of when it was sent: its time is interpolated
    between the nearest known frames around it, or extrapolated by ``period_ns`` beyond them.
    """
    if count <= 0:
        return []
    if period_ns <= 0:
        raise ValueError(f'period must be > 0, got {period_ns}')
    items = sorted((int(k), int(v)) for k, v in known_ns.items() if 0 <= int(k) < count)
    if not items:
        return [i * period_ns for i in range(count)]
    seqs = np.array([k for k, _ in items], dtype=np.float64)
    times = np.array([v for _, v in items], dtype=np.float64)
    index = np.arange(count, dtype=np.float64)
    filled = np.interp(index, seqs, times)
    filled[index < seqs[0]] = times[0] - (seqs[0] - index[index < seqs[0]]) * period_ns
    filled[index > seqs[-1]] = times[-1] + (index[index > seqs[-1]] - seqs[-1]) * period_ns
    return [int(round(v)) for v in filled]


def sustained(metrics: Mapping[str, Any], rate_hz: float, loss_fraction: float,
              rate_drop_hz: float, enforce_rate: bool = True) -> bool:
    """
    Return whether a probe at ``rate_hz`` passed ros2_benchmark's criteria.

    Missed frames <= ceil(sent * loss_fraction), and the output rate >= the playback rate
    minus ``rate_drop_hz``; with ``enforce_rate`` also the playback rate >= the asked rate
    less ``loss_fraction`` of it.
    """
    sent = metrics.get('NUM_FRAMES_SENT') or 0
    missed = metrics.get('NUM_MISSED_FRAMES')
    playback = metrics.get('MEAN_PLAYBACK_FRAME_RATE')
    output = metrics.get('MEAN_FRAME_RATE')
    if not sent or missed is None or playback is None or output is None:
        return False
    if missed > math.ceil(sent * loss_fraction):
        return False
    if output < playback - rate_drop_hz:
        return False
    return not enforce_rate or playback >= rate_hz * (1.0 - loss_fraction)


@dataclasses.dataclass
class SearchResult:
    """The highest sustained rate found and every probe on the way, in order."""

    max_rate_hz: float
    probes: list[ProbeResult]
    at_lower_bound: bool
    at_upper_bound: bool


class MaxRateSearch:
    """
    The search as a state machine: ask :meth:`next_rate`, probe, hand the result to :meth:`report`.

    So that a benchmark can interleave the searches of several systems (one probe of each in
    turn), and load that comes and goes on a shared machine falls on all of them alike.
    """

    def __init__(self, config: SearchConfig = SearchConfig()) -> None:
        self.config = config
        self.probes: list[ProbeResult] = []
        self._lower, self._upper = config.lower_hz, config.upper_hz
        self._target = config.lower_hz
        self._phase = 'binary'
        self._advance()

    def _advance(self) -> None:
        if self._phase == 'binary' and self._upper - self._lower <= self.config.terminal_width_hz:
            self._phase, self._target = 'linear', self._lower
        if self._phase == 'linear' and \
                self._target + self.config.step_hz > self.config.upper_hz:
            self._phase = 'done'

    @property
    def done(self) -> bool:
        """Whether the search has its answer."""
        return self._phase == 'done'

    def next_rate(self) -> Optional[float]:
        """Return the rate to probe next, or None when the search is done."""
        if self._phase == 'binary':
            return (self._lower + self._upper) / 2
        if self._phase == 'linear':
            return self._target + self.config.step_hz
        return None

    def report(self, result: ProbeResult) -> bool:
        """Judge the probe of the rate :meth:`next_rate` gave; return whether it passed."""
        rate = self.next_rate()
        if rate is None:
            raise RuntimeError('the search is done: nothing to report')
        drop = self.config.binary_rate_drop_hz if self._phase == 'binary' else \
            self.config.linear_rate_drop_hz
        result.phase = self._phase
        result.passed = not result.error and sustained(
            result.metrics, rate, self.config.loss_fraction, drop, self.config.enforce_rate)
        self.probes.append(result)
        if self._phase == 'binary':
            if result.passed:
                self._lower = rate
            else:
                self._upper = rate
        elif result.passed:
            self._target = rate
        else:
            self._phase = 'done'
        self._advance()
        return bool(result.passed)

    def result(self) -> SearchResult:
        """
        Return the answer, once :attr:`done`.

        As ros2_benchmark: the lower end of the binary search's last interval, raised by every
        linear step that passed.

        ``at_lower_bound``: no probe passed, the answer is just ``lower_hz`` (widen the window
        down); ``at_upper_bound``: within one step of ``upper_hz`` (widen it up).
        """
        if not self.done:
            raise RuntimeError('the search is not done')
        return SearchResult(max_rate_hz=self._target, probes=list(self.probes),
                            at_lower_bound=not any(p.passed for p in self.probes),
                            at_upper_bound=self._target + self.config.step_hz >
                            self.config.upper_hz)


def run_probe(probe: Callable[[float], ProbeResult], rate: float) -> ProbeResult:
    """Call ``probe``; a probe that raised is a failed probe carrying the error."""
    try:
        return probe(rate)
    except Exception as error:  # noqa: B902 - a crashed probe is a failed probe
        return ProbeResult(rate, [], {}, error=f'{type(error).__name__}: {error}')


def find_max_rate(probe: Callable[[float], ProbeResult],
                  config: SearchConfig = SearchConfig()) -> SearchResult:
    """Search the highest rate ``probe`` sustains: binary search, then a linear scan upward."""
    search = MaxRateSearch(config)
    rate = search.next_rate()
    while rate is not None:
        search.report(run_probe(probe, rate))
        rate = search.next_rate()
    return search.result()
