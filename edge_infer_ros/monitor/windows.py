"""
Sliding-window latency statistics for the budget monitor and the reports.

Why a ring buffer of preallocated numpy arrays: ``add`` runs for every frame of
every stage, so it must be a couple of index operations with no allocation,
while the percentiles are needed only at the diagnostics rate (1 Hz) and can
afford a numpy pass over the window.

Samples are floats (milliseconds by convention) stamped with an int time in
nanoseconds (the clock of ``edge_infer_ros.core.frame``).  Percentiles use numpy's
``'linear'`` method.  An empty window (or one whose samples have all aged out)
summarises as ``count == 0`` with every statistic ``NaN``: "no data" must not
read as a latency of zero.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional, Union

import numpy as np

_EMPTY = np.empty(0, dtype=np.float64)
_EMPTY.setflags(write=False)


def _json_float(value: float) -> Optional[float]:
    """Return ``value``, or None for NaN so ``json.dumps`` stays strict JSON."""
    return None if math.isnan(value) else float(value)


def _check_percentile(q: float) -> float:
    """Reject percentiles numpy would reject later, with a clearer message."""
    q = float(q)
    if not 0.0 <= q <= 100.0:
        raise ValueError(f'percentile must be in [0, 100], got {q}')
    return q


def _sorted_percentiles(ordered: np.ndarray, qs: Iterable[float]) -> tuple[float, ...]:
    """Percentiles of sorted samples, interpolated like numpy's 'linear' method."""
    last = ordered.size - 1
    result = []
    for q in qs:
        position = q / 100.0 * last
        low = int(position)
        high = min(low + 1, last)
        fraction = position - low
        result.append(float(ordered[low] + (ordered[high] - ordered[low]) * fraction))
    return tuple(result)


@dataclasses.dataclass(frozen=True)
class WindowSummary:
    """
    Statistics of one window at one instant (values in the samples' unit, ms).

    ``samples`` keeps the samples the statistics were computed from, so any
    other percentile can be asked for afterwards with ``percentile(q)``.
    When ``count == 0`` every statistic is NaN.
    """

    count: int
    p50: float
    p95: float
    p99: float
    max: float  # noqa: A003 - the natural name of the statistic
    mean: float
    samples: np.ndarray = dataclasses.field(default_factory=lambda: _EMPTY, repr=False,
                                            compare=False)

    @classmethod
    def of(cls, samples: np.ndarray) -> 'WindowSummary':
        """Summarise an array of samples (it is kept: pass a copy you own)."""
        count = int(samples.size)
        if count == 0:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan, _EMPTY)
        # One sort serves every percentile (np.percentile sorts again for each call; this
        # runs for every window at the diagnostics rate, holding the GIL).
        ordered = np.sort(samples)
        p50, p95, p99 = _sorted_percentiles(ordered, (50.0, 95.0, 99.0))
        ordered.setflags(write=False)
        return cls(count, p50, p95, p99, float(ordered[-1]), float(ordered.mean()), ordered)

    def percentile(self, q: float) -> float:
        """Return the q-th percentile of the samples (q in 0..100); NaN when empty."""
        q = _check_percentile(q)
        if self.count == 0:
            return math.nan
        return _sorted_percentiles(self.samples, (q,))[0]

    def percentiles(self, qs: Iterable[float]) -> tuple[float, ...]:
        """Return several percentiles at once (one numpy pass)."""
        qs = tuple(_check_percentile(q) for q in qs)
        if self.count == 0:
            return tuple(math.nan for _ in qs)
        return _sorted_percentiles(self.samples, qs)

    def count_above(self, threshold: float) -> int:
        """Count samples strictly greater than ``threshold``."""
        return int(np.count_nonzero(self.samples > threshold))

    def as_dict(self) -> dict[str, Optional[Union[float, int]]]:
        """
        Return ``count`` and the statistics under ``*_ms`` keys (NaN -> None).

        None instead of NaN keeps the dict valid strict JSON.
        """
        return {
            'count': self.count,
            'p50_ms': _json_float(self.p50),
            'p95_ms': _json_float(self.p95),
            'p99_ms': _json_float(self.p99),
            'max_ms': _json_float(self.max),
            'mean_ms': _json_float(self.mean),
        }


class SlidingWindow:
    """
    Fixed-capacity ring buffer of (value, time) samples, optionally age-limited.

    The newest ``capacity`` samples are kept; statistics additionally ignore
    samples older than ``max_age_s`` relative to the ``now_ns`` they are asked
    for, so a window that stopped receiving samples empties out instead of
    reporting old latencies forever.  Not thread-safe: one owner adds and reads.
    """

    __slots__ = ('_values', '_times', '_capacity', '_next', '_count', '_max_age_ns')

    def __init__(self, capacity: int, max_age_s: Optional[float] = None) -> None:
        """Preallocate the ring; ``max_age_s`` None (or 0) means no age limit."""
        capacity = self._check_capacity(capacity)
        self._values = np.zeros(capacity, dtype=np.float64)
        self._times = np.zeros(capacity, dtype=np.int64)
        self._capacity = capacity
        self._next = 0
        self._count = 0
        self._max_age_ns: Optional[int] = None
        self.max_age_s = max_age_s

    @staticmethod
    def _check_capacity(capacity: int) -> int:
        """Return ``capacity`` as int, or raise: a ring must hold at least one sample."""
        try:
            valid = (not isinstance(capacity, bool) and int(capacity) == capacity
                     and capacity >= 1)
        except (TypeError, ValueError, OverflowError):
            valid = False
        if not valid:
            raise ValueError(f'capacity must be an integer >= 1, got {capacity!r}')
        return int(capacity)

    @property
    def capacity(self) -> int:
        """Return the number of samples the ring holds at most."""
        return self._capacity

    @property
    def max_age_s(self) -> Optional[float]:
        """Return the age limit in seconds, or None when there is none."""
        return None if self._max_age_ns is None else self._max_age_ns / 1e9

    @max_age_s.setter
    def max_age_s(self, value: Optional[float]) -> None:
        """Set the age limit; None or 0 disables it."""
        if value is None or value == 0:
            self._max_age_ns = None
            return
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f'max_age_s must be finite and >= 0, got {value}')
        self._max_age_ns = int(round(value * 1e9))

    def __len__(self) -> int:
        """Return the number of samples held, regardless of age."""
        return self._count

    def add(self, value: float, t_ns: int) -> None:
        """Append one sample, overwriting the oldest when full (O(1), no allocation)."""
        i = self._next
        self._values[i] = value
        self._times[i] = t_ns
        i += 1
        self._next = 0 if i == self._capacity else i
        if self._count < self._capacity:
            self._count += 1

    def clear(self) -> None:
        """Forget every sample (capacity and age limit stay)."""
        self._next = 0
        self._count = 0

    def _ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (values, times) oldest first, as copies."""
        n = self._count
        if n < self._capacity:  # never wrapped since the last clear/resize
            return self._values[:n].copy(), self._times[:n].copy()
        i = self._next
        return (np.concatenate((self._values[i:], self._values[:i])),
                np.concatenate((self._times[i:], self._times[:i])))

    def values(self, now_ns: Optional[int] = None) -> np.ndarray:
        """
        Return a copy of the samples not older than the age limit, oldest first.

        ``now_ns`` None skips the age filter (every held sample is returned).
        """
        values, times = self._ordered()
        if self._max_age_ns is None or now_ns is None:
            return values
        return values[times >= now_ns - self._max_age_ns]

    def oldest_time_ns(self, now_ns: Optional[int] = None) -> Optional[int]:
        """Return the time of the oldest sample counted at ``now_ns``, or None."""
        n = self._count
        if n == 0:
            return None
        times = self._times[:n]
        if self._max_age_ns is not None and now_ns is not None:
            times = times[times >= now_ns - self._max_age_ns]
        return int(times.min()) if times.size else None

    def summary(self, now_ns: Optional[int] = None) -> WindowSummary:
        """
        Summarise the samples not older than ``max_age_s`` at ``now_ns``.

        ``now_ns`` None skips the age filter.  Empty: count 0, NaN statistics.
        """
        return WindowSummary.of(self.values(now_ns))

    def count_above(self, threshold: float, now_ns: Optional[int] = None) -> int:
        """Count the samples counted at ``now_ns`` that are strictly above ``threshold``."""
        n = self._count
        values = self._values[:n]
        if self._max_age_ns is not None and now_ns is not None:
            values = values[self._times[:n] >= now_ns - self._max_age_ns]
        return int(np.count_nonzero(values > threshold))

    def resize(self, capacity: int) -> None:
        """Change the capacity, keeping the newest samples that still fit."""
        capacity = self._check_capacity(capacity)
        if capacity == self._capacity:
            return
        values, times = self._ordered()
        keep = min(values.size, capacity)
        self._values = np.zeros(capacity, dtype=np.float64)
        self._times = np.zeros(capacity, dtype=np.int64)
        if keep:
            self._values[:keep] = values[values.size - keep:]
            self._times[:keep] = times[times.size - keep:]
        self._capacity = capacity
        self._count = keep
        self._next = keep % capacity
