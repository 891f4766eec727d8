"""
The monitor's memory is bounded by its parameters at every moment (issue 29).

window_size 1e6 -> 300 -> 1e6 with 16 cameras x 16 stages took the monitor from 75 to
2,183 MB of RSS and kept it. Now the bound (cameras x stages x window) is refused above
MAX_WINDOW_BYTES, and shrinking windows gives their memory back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

from edge_infer_ros.core.frame import FrameTrace, StageTiming
from edge_infer_ros.monitor.config import BudgetConfig, MAX_WINDOW_BYTES, window_bytes
from edge_infer_ros.monitor.tracker import BudgetTracker
import pytest

SEQUENCE = (1_000_000, 300, 1_000_000, 15_000, 300, 15_000, 300)


def _full_tracker(config: BudgetConfig) -> BudgetTracker:
    tracker = BudgetTracker(config)
    now = 10 ** 18
    stages = tuple(StageTiming(f's{i}', 'n', now + i * 10, now + i * 10 + 1, now + i * 10 + 5)
                   for i in range(16))
    for camera in range(16):
        tracker.observe(FrameTrace(f'cam{camera}', 1, now - 1000, 'f', stages), now + 1000)
    return tracker


def _nbytes(tracker: BudgetTracker) -> int:
    return sum(w._values.nbytes + w._times.nbytes
               for c in tracker._cameras.values() for w in c.windows())


def test_window_sizes_above_the_ceiling_are_refused_and_nbytes_stays_in_the_bound() -> None:
    config = BudgetConfig(max_cameras=16, max_stages=16)
    tracker = _full_tracker(config)
    assert len(tracker._cameras) == 16
    for size in SEQUENCE:
        bound = window_bytes(size, 16, 16)
        candidate = dataclasses.replace(config, window_size=size)
        if bound > MAX_WINDOW_BYTES:
            with pytest.raises(ValueError, match='ceiling'):
                tracker.set_config(candidate)
        else:
            tracker.set_config(candidate)
            config = candidate
        assert _nbytes(tracker) <= window_bytes(config.window_size, 16, 16) <= MAX_WINDOW_BYTES


_SCRIPT = r"""
import dataclasses, json, sys
sys.path.insert(0, sys.argv[1])
from test_window_memory import _full_tracker, _nbytes, SEQUENCE
from edge_infer_ros.monitor.config import BudgetConfig, MAX_WINDOW_BYTES

def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith('VmRSS'))

config = BudgetConfig(max_cameras=16, max_stages=16)
tracker = _full_tracker(config)
base, peaks = rss(), []
for size in SEQUENCE:
    try:
        tracker.set_config(dataclasses.replace(config, window_size=size))
    except ValueError:
        pass
    if _nbytes(tracker) > MAX_WINDOW_BYTES:  # never touch more than the ceiling here
        peaks.append(_nbytes(tracker))
        continue
    for camera in tracker._cameras.values():  # a long run fills every window
        for window in camera.windows():
            window._values.fill(1.0)
            window._times.fill(1)
    peaks.append(rss() - base)
print(json.dumps({'growth': peaks}))
"""


def test_rss_stays_within_the_documented_bound_through_window_size_changes() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run([sys.executable, '-c', _SCRIPT, here], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    growth = json.loads(result.stdout.strip().splitlines()[-1])['growth']
    slack = 32 * 2 ** 20  # the interpreter's own allocations on the way
    assert max(growth) <= MAX_WINDOW_BYTES + slack, growth
    # Back at 300 the memory of the larger windows is given back.
    assert growth[-1] <= window_bytes(300, 16, 16) + slack, growth
