"""
The small calls every frame makes, warm and after a camera's idle gap, beside what they replaced.

Between two frames (33 ms at 30 fps) other work on the machine evicts a stage's code and data
from the caches, so the first call after the gap costs several times what the same call costs
back to back; a frame pays that for every call on its path. This measures, in one run, with
each call and its baseline alternated:

* the gate of frames that skipped message conversion (``core/validate.check_envelope``) for an
  image, a tensor (its NaN scan, unchanged, left out), candidates and detections: a frame that
  passes judged in one pass, up to 128 boxes row by row, against the checks one by one and up
  to 32 boxes row by row of before (``--boxes``: how many; a detector's frame holds tens of
  candidates);
* the same gate of candidates whose rows the detector's decoder checked (``rows_checked``,
  read-only arrays), against the same candidates unchecked;
* the detector's decoding of a YOLOv8 output (``inference/yolo.YoloDecoder``), against the
  seed loop's decode (the loop the package is compared with), on an output of 4 classes and
  2000 anchors with ``--boxes`` of them above the score threshold;
* a stage's ROS clock reading (``ros/compat.ros_time_reader``): whether /clock overrides the
  clock learned from its activation callback, against asking the clock's handle per reading.

Each figure is the median of ``--calls`` calls, cold (each after ``--gap-ms`` of sleep) and
warm (back to back); ratios are new / baseline.
``. scripts/env.sh && python -m bench.cold_calls [--quick] [--gap-ms 33] [--json PATH]``
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager, ExitStack
import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, ContextManager, Iterator, Optional
from unittest import mock

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import seed_loop  # noqa: E402
from edge_infer_ros.core import validate  # noqa: E402
from edge_infer_ros.core.frame import Envelope, StageTiming  # noqa: E402
from edge_infer_ros.core.geometry import Letterbox  # noqa: E402
from edge_infer_ros.core.image import read_only  # noqa: E402
from edge_infer_ros.core.payloads import (CandidatePayload, DetectionPayload,  # noqa: E402
                                          ImagePayload, TensorPayload)
from edge_infer_ros.inference.yolo import YoloDecoder  # noqa: E402
from edge_infer_ros.ros.compat import ros_time_reader  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.node import Node  # noqa: E402

CLASS_NAMES = ('ball', 'box', 'cone', 'person')


def _envelopes(boxes: int) -> dict[str, Envelope[Any]]:
    """One frame of each payload kind, 3 ms old, with a trace of the stages before it."""
    stamp = time.time_ns() - 3_000_000
    trace = tuple(StageTiming(stage, f'/{stage}', stamp + i * 100_000, stamp + i * 100_000 + 10,
                              stamp + i * 100_000 + 50_000)
                  for i, stage in enumerate(('camera', 'preprocess', 'detector', 'nms')))
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 400, (boxes, 2)).astype(np.float32)
    table = np.hstack([corners, corners + 30]).astype(np.float32)
    scores = rng.uniform(0.3, 1.0, boxes).astype(np.float32)
    ids = rng.integers(0, len(CLASS_NAMES), boxes).astype(np.int32)
    letterbox = Letterbox(0.5, 0.0, 80.0)
    payloads = {'image': (1, ImagePayload(np.zeros((480, 640, 3), np.uint8), 'bgr8')),
                'tensor': (2, TensorPayload(np.zeros((1, 3, 320, 320), np.float32), letterbox,
                                            640, 480)),
                'candidates': (3, CandidatePayload(table, scores, ids, CLASS_NAMES, letterbox,
                                                   640, 480, 'onnxruntime')),
                'detections': (4, DetectionPayload(table, scores, ids, CLASS_NAMES, 640, 480))}
    return {kind: Envelope('camera', 1, stamp, 'camera', trace[:stages], payload)
            for kind, (stages, payload) in payloads.items()}


def _yolo_output(boxes: int, anchors: int = 2000) -> np.ndarray:
    """Make a YOLOv8 output [1, 4+C, N], ``boxes`` anchors above the seed loop's threshold."""
    rng = np.random.default_rng(1)
    output = np.empty((1, 4 + len(CLASS_NAMES), anchors), np.float32)
    output[0, :2] = rng.uniform(20, 300, (2, anchors))
    output[0, 2:4] = rng.uniform(5, 40, (2, anchors))
    output[0, 4:] = rng.uniform(0, seed_loop.SCORE_THRESHOLD / 2, (len(CLASS_NAMES), anchors))
    hits = rng.choice(anchors, min(boxes, anchors), replace=False)
    best = 4 + rng.integers(0, len(CLASS_NAMES), hits.size)
    output[0, best, hits] = rng.uniform(0.3, 1.0, hits.size)
    return output


@contextmanager
def _gate_before() -> Iterator[None]:
    """Gate as before: the checks one by one, numpy passes above 32 boxes."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(validate, 'SCALAR_BOX_ROWS', 32))
        stack.enter_context(mock.patch.object(validate, '_envelope_ok',
                                              lambda *_: False))
        yield


def _clock_before(clock: Any) -> Callable[[], int]:
    """Read the clock as before: its handle asked, per reading, whether /clock overrides it."""
    return lambda: clock.now().nanoseconds if clock.ros_time_is_active else time.time_ns()


def _median_us(samples: list[int]) -> float:
    return float(np.median(samples)) / 1e3


def measure(call: Callable[[], Any], before: Callable[[], Any],
            before_context: Callable[[], ContextManager[Any]], calls: int,
            gap_s: float) -> dict[str, float]:
    """Time a call and its baseline, alternated, cold (after the gap) and warm; medians in us."""
    times: dict[str, list[int]] = {'new_cold': [], 'new_warm': [], 'before_cold': [],
                                   'before_warm': []}
    clock = time.perf_counter_ns
    for _ in range(calls):
        for name, function, context in (('new', call, ExitStack),
                                        ('before', before, before_context)):
            with context():
                time.sleep(gap_s)
                start = clock()
                function()
                times[f'{name}_cold'].append(clock() - start)
                function()  # once, so that the next one is back to back
                start = clock()
                function()
                times[f'{name}_warm'].append(clock() - start)
    result = {key: _median_us(values) for key, values in times.items()}
    result['ratio_cold'] = result['new_cold'] / result['before_cold']
    result['ratio_warm'] = result['new_warm'] / result['before_warm']
    return result


def run(calls: int, gap_s: float, boxes: int) -> dict[str, dict[str, float]]:
    """Measure every call; return their figures by name."""
    results = {}
    envelopes = _envelopes(boxes)
    gates: dict[str, Callable[[], None]] = {}
    for kind, envelope in envelopes.items():
        def gate(envelope: Envelope[Any] = envelope) -> None:
            validate.check_envelope(envelope, time.time_ns(), scan_tensor=False)
        gates[kind] = gate
        results[f'gate, {kind}'] = measure(gate, gate, _gate_before, calls, gap_s)
    candidates = envelopes['candidates']
    rows = candidates.payload
    checked = dataclasses.replace(candidates, payload=dataclasses.replace(
        rows, boxes=read_only(rows.boxes.copy()), scores=read_only(rows.scores.copy()),
        class_ids=read_only(rows.class_ids.copy()), rows_checked=True))
    results['gate, checked candidates (baseline: unchecked)'] = measure(
        lambda: validate.check_envelope(checked, time.time_ns(), scan_tensor=False),
        gates['candidates'], ExitStack, calls, gap_s)
    output = _yolo_output(boxes)
    decoder = YoloDecoder('yolov8', len(CLASS_NAMES), 300)
    results['decode (baseline: seed loop)'] = measure(
        lambda: decoder.decode(output, seed_loop.SCORE_THRESHOLD),
        lambda: seed_loop.decode(output), ExitStack, calls, gap_s)
    context = Context()
    rclpy.init(context=context)
    try:
        node = Node('cold_calls', context=context)
        clock = node.get_clock()
        results['ROS clock reading'] = measure(ros_time_reader(clock), _clock_before(clock),
                                               ExitStack, calls, gap_s)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return results


def main(argv: Optional[list[str]] = None) -> int:
    """Print a table of the calls, cold and warm, with ratios against their baselines."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--calls', type=int, default=200)
    parser.add_argument('--gap-ms', type=float, default=33.0)
    parser.add_argument('--boxes', type=int, default=8, help='boxes in candidates/detections')
    parser.add_argument('--quick', action='store_true', help='20 calls each (about 10 s)')
    parser.add_argument('--json', default='')
    args = parser.parse_args(argv)
    calls = 20 if args.quick else args.calls
    results = run(calls, args.gap_ms / 1e3, args.boxes)
    print(f'{calls} calls each; cold: after {args.gap_ms:g} ms of sleep; us, median\n')
    print('| call | cold | before | ratio | warm | before | ratio |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for name, r in results.items():
        print(f'| {name} | {r["new_cold"]:.1f} | {r["before_cold"]:.1f} | '
              f'{r["ratio_cold"]:.2f}x | {r["new_warm"]:.1f} | {r["before_warm"]:.1f} | '
              f'{r["ratio_warm"]:.2f}x |')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump({'calls': calls, 'gap_ms': args.gap_ms, 'boxes': args.boxes,
                       'results': results}, stream, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
