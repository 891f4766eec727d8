"""
What judging lateness costs the action stage: ``LateFrameGate.is_late`` before each command.

The action stage's own work per frame (the steering policy on real detections, the command
counters) runs alone and with the gate's check in front, alternating frame by frame in one
run so drift cancels; p50/p99 of each and the difference are printed as JSON. The check of an
on-time frame is what every frame pays; a late frame also builds its trace and blame, timed
separately. Target: under 0.05 ms added at p99. ``python -m bench.lateness_check [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge_infer_ros.core.frame import FrameTrace, StageTiming  # noqa: E402
from edge_infer_ros.core.payloads import DetectionPayload  # noqa: E402
from edge_infer_ros.core.resources import config_path  # noqa: E402
from edge_infer_ros.monitor.config import load_budget_file  # noqa: E402
from edge_infer_ros.monitor.lateness import LateFrameGate  # noqa: E402
from edge_infer_ros.stages.action import ActionPolicy, FrameCommander  # noqa: E402
import numpy as np  # noqa: E402

MS = 1_000_000


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    values = np.asarray(samples_ns, np.float64) / 1e6
    return {'p50_ms': float(np.percentile(values, 50)), 'p99_ms': float(np.percentile(values, 99))}


def measure(frames: int) -> dict[str, object]:
    """Time the action stage's work with and without the check, alternating."""
    detections = DetectionPayload(
        np.array([[300, 200, 360, 260], [20, 100, 80, 300]], np.float32),
        np.array([0.9, 0.8], np.float32), np.array([0, 3], np.int32),
        ('ball', 'box', 'cone', 'person'), 640, 480)
    commander = FrameCommander(ActionPolicy(), 0.5)
    gate = LateFrameGate(load_budget_file(config_path('budget.yaml')), 'stop', 0.0)
    gate.start(0)
    trace = tuple(StageTiming(stage, stage, t * MS, t * MS + 100, (t + 1) * MS)
                  for t, stage in enumerate(('preprocess', 'detector', 'nms'), start=2))
    plain: list[int] = []
    checked: list[int] = []
    late: list[int] = []
    clock = time.perf_counter_ns
    for index in range(frames):
        stamp = 1_000 * MS + index * 33 * MS
        now = stamp + 5 * MS
        began = clock()
        if index % 2:
            if not gate.is_late('camera', stamp, now):
                commander.command(detections, stamp, now)
            checked.append(clock() - began)
        else:
            commander.command(detections, stamp, now)
            plain.append(clock() - began)
        began = clock()
        gate.is_late('camera', stamp, stamp + 60 * MS)
        gate.miss(FrameTrace('camera', index, stamp, 'camera', trace), stamp + 60 * MS)
        late.append(clock() - began)
    base, with_check = _percentiles(plain), _percentiles(checked)
    return {'frames': frames, 'action_work': base, 'action_work_with_check': with_check,
            'added_p50_ms': with_check['p50_ms'] - base['p50_ms'],
            'added_p99_ms': with_check['p99_ms'] - base['p99_ms'],
            'late_frame_trace_and_blame': _percentiles(late)}


def main() -> int:
    """Run the measurement and print it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='a few hundred frames')
    parser.add_argument('--frames', type=int, default=40_000)
    args = parser.parse_args()
    print(json.dumps(measure(400 if args.quick else args.frames), indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
