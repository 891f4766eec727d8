"""
What the per-frame monitoring costs: the frame trace plus ``BudgetTracker.observe``.

The stage nodes stamp three times per stage (received, start, end), add a
:class:`~edge_infer_ros.core.frame.StageTiming` to the frame's envelope (``Envelope.forward``),
and the budget monitor turns the finished envelope into a
:class:`~edge_infer_ros.core.frame.FrameTrace` and calls ``BudgetTracker.observe`` on it. This
benchmark measures, in one run, on the same frames:

* **baseline**: the bare stage calls of one frame (preprocess, inference, decode, NMS with
  boxes mapped back, the action policy), nothing else;
* **instrumented**: the same calls wrapped exactly as the stage nodes wrap them, plus
  ``FrameTrace.of`` and ``observe`` (frames alternate between the two, so drift cancels);
* **monitoring only**: the wrapping and ``observe`` with the stage work taken out (the
  precise figure: the difference of the first two is the same cost seen through the noise
  of milliseconds of real work).

Target: monitoring under 50 us per frame. ``python -m bench.monitor_overhead [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, Optional

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from edge_infer_ros.core.frame import Envelope, FrameTrace, now_ns, StageTiming  # noqa: E402
from edge_infer_ros.core.geometry import unletterbox  # noqa: E402
from edge_infer_ros.core.payloads import (CandidatePayload, DetectionPayload,  # noqa: E402
                                          ImagePayload, TensorPayload)
from edge_infer_ros.core.resources import config_path  # noqa: E402
from edge_infer_ros.inference.backends.factory import create_backend  # noqa: E402
from edge_infer_ros.inference.model_info import load_model_info  # noqa: E402
from edge_infer_ros.inference.yolo import YoloDecoder  # noqa: E402
from edge_infer_ros.monitor.config import BudgetConfig  # noqa: E402
from edge_infer_ros.monitor.tracker import BudgetTracker  # noqa: E402
from edge_infer_ros.stages.action import ActionPolicy  # noqa: E402
from edge_infer_ros.stages.nms import batched_nms  # noqa: E402
from edge_infer_ros.stages.preprocess import Preprocessor  # noqa: E402
from edge_infer_ros.stages.synthetic import SyntheticScene  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

NODES = {s: f'/{s}' for s in common.STAGES}


class Stages:
    """The four stage bodies of the pipeline, as plain calls on package objects."""

    def __init__(self, model_path: str) -> None:
        self.model = load_model_info(model_path)
        _, _, height, width = self.model.input_shape
        self.preprocessor = Preprocessor(width, height, self.model.color_order,
                                         self.model.letterbox_pad_value, self.model.input_dtype)
        self.backend = create_backend('onnxruntime', self.model, {'intra_op_threads': 2})
        self.backend.load()
        self.decoder = YoloDecoder(self.model.layout, self.model.num_classes)
        self.policy = ActionPolicy()

    def preprocess(self, image: np.ndarray) -> TensorPayload:
        """Letterbox one frame into the model tensor."""
        tensor, letterbox = self.preprocessor(image, 'bgr8')
        return TensorPayload(tensor, letterbox, image.shape[1], image.shape[0], image)

    def detector(self, payload: TensorPayload) -> CandidatePayload:
        """Infer and decode."""
        boxes, scores, class_ids = self.decoder.decode(self.backend.infer(payload.tensor), 0.25)
        return CandidatePayload(boxes, scores, class_ids, self.model.class_names,
                                payload.letterbox, payload.image_width, payload.image_height,
                                'onnxruntime', payload.image)

    def nms(self, c: CandidatePayload) -> DetectionPayload:
        """Suppress and map back to the image."""
        keep = batched_nms(c.boxes, c.scores, c.class_ids, 0.5, 100)
        boxes = unletterbox(c.boxes[keep], c.letterbox, c.image_width, c.image_height)
        return DetectionPayload(boxes, c.scores[keep], c.class_ids[keep], c.class_names,
                                c.image_width, c.image_height, c.image)

    def action(self, detections: DetectionPayload) -> Any:
        """Decide the command."""
        return self.policy.decide(detections)


def bare_frame(stages: Stages, image: np.ndarray) -> None:
    """One frame, stage calls only."""
    stages.action(stages.nms(stages.detector(stages.preprocess(image))))


def traced_frame(stages: Stages, image: np.ndarray, seq: int, tracker: BudgetTracker,
                 bodies: Optional[dict[str, Callable[[Any], Any]]] = None) -> None:
    """One frame wrapped as the stage nodes and the monitor wrap it."""
    now = now_ns
    envelope = Envelope('camera', seq, now(), 'camera', (), ImagePayload(image, 'bgr8'))
    payload: Any = image
    for name in common.STAGES:
        received = now()
        start = now()
        payload = (bodies or {}).get(name, getattr(stages, name))(payload)
        envelope = envelope.forward(payload, StageTiming(name, NODES[name], received,
                                                         start, now()))
    tracker.observe(FrameTrace.of(envelope))


def run(model: str, frames: int, width: int = 640, height: int = 480) -> dict[str, Any]:
    """Measure baseline, instrumented and monitoring-only costs per frame (same run)."""
    stages = Stages(model)
    with open(config_path('budget.yaml'), encoding='utf-8') as stream:
        config = BudgetConfig.from_mapping(yaml.safe_load(stream))  # handles /**/ sections
    scene = SyntheticScene(width=width, height=height, seed=0)
    images = [scene.render(i)[0] for i in range(min(frames, 50))]
    # Precomputed payloads: the monitoring-only pass hands these on instead of working.
    tensor = stages.preprocess(images[0])
    candidates = stages.detector(tensor)
    detections = stages.nms(candidates)
    canned = {'preprocess': lambda _: tensor, 'detector': lambda _: candidates,
              'nms': lambda _: detections, 'action': lambda _: None}
    trackers = [BudgetTracker(config), BudgetTracker(config)]
    for i in range(20):  # warm-up of every path
        bare_frame(stages, images[i % len(images)])
        traced_frame(stages, images[i % len(images)], i, trackers[0])
        traced_frame(stages, images[i % len(images)], i, trackers[1], canned)
    bare, traced, only = [], [], []
    clock = time.perf_counter_ns
    for i in range(frames):
        image = images[i % len(images)]
        start = clock()
        bare_frame(stages, image)
        middle = clock()
        traced_frame(stages, image, 20 + i, trackers[0])
        end = clock()
        traced_frame(stages, image, 20 + i, trackers[1], canned)
        last = clock()
        bare.append(middle - start)
        traced.append(end - middle)
        only.append(last - end)
    # The monitoring-only pass still runs the canned lambdas: take their cost out.
    lambdas = []
    for _ in range(frames):
        start = clock()
        for name in common.STAGES:
            canned[name](None)
        lambdas.append(clock() - start)
    lambda_us = float(np.median(lambdas)) / 1e3

    def us(values: list[int]) -> dict[str, float]:
        array = np.asarray(values, dtype=np.float64) / 1e3
        p50, p99 = np.percentile(array, (50, 99))
        return {'p50_us': float(p50), 'p99_us': float(p99), 'mean_us': float(array.mean())}

    result = {'frames': frames, 'resolution': [width, height], 'model': model,
              'baseline': us(bare), 'instrumented': us(traced), 'monitoring_only': us(only)}
    for key in ('p50_us', 'p99_us', 'mean_us'):
        result['monitoring_only'][key] = max(0.0, result['monitoring_only'][key] - lambda_us)
    base = result['baseline']['p50_us']
    result['difference_p50_us'] = result['instrumented']['p50_us'] - base
    result['monitoring_p50_us'] = result['monitoring_only']['p50_us']
    result['ratio_monitoring_to_baseline'] = result['monitoring_p50_us'] / base
    result['ratio_instrumented_to_baseline'] = result['instrumented']['p50_us'] / base
    result['target_us'] = 50.0
    result['target_met'] = bool(result['monitoring_p50_us'] < 50.0)
    return result


def format_result(result: dict[str, Any]) -> str:
    """Lay out the result as a few lines of text."""
    b, i, m = result['baseline'], result['instrumented'], result['monitoring_only']
    return '\n'.join([
        f'monitoring overhead per frame ({result["frames"]} frames, '
        f'{result["resolution"][0]}x{result["resolution"][1]}):',
        f'  baseline (bare stage calls):       p50 {b["p50_us"]:9.1f} us  p99 '
        f'{b["p99_us"]:9.1f} us',
        f'  instrumented (trace + observe):    p50 {i["p50_us"]:9.1f} us  p99 '
        f'{i["p99_us"]:9.1f} us'
        f'  (difference of p50s {result["difference_p50_us"]:+.1f} us, ratio '
        f'{result["ratio_instrumented_to_baseline"]:.3f})',
        f'  monitoring only (trace + observe): p50 {m["p50_us"]:9.1f} us  p99 '
        f'{m["p99_us"]:9.1f} us'
        f'  = {100 * result["ratio_monitoring_to_baseline"]:.2f}% of the baseline; target < '
        f'{result["target_us"]:g} us: {"met" if result["target_met"] else "NOT met"}',
    ])


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: measure and print; optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='', help='ONNX model (default: the shipped one)')
    parser.add_argument('--frames', type=int, default=0, help='default 1000, --quick 150')
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--json', default='')
    args = parser.parse_args(argv)
    model, kind = common.resolve_model(args.model, common.RESULTS / 'models')
    result = run(model, args.frames or (150 if args.quick else 1000))
    result['model_kind'] = kind
    result['machine'] = common.machine_state()
    print(format_result(result))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(result, stream, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
