"""
FP32 against INT8: inference time and accuracy of a model and its QDQ INT8 version.

Two models: the shipped detector against the shipped ``detector_int8.onnx`` (or a given pair),
and a YOLOv8-architecture model (test/support/onnx_models.make_yolov8_conv_model, random
weights, 320x320, YOLOv8n widths) quantized by ``quantize_model`` from a folder of synthetic
frames. Inference is timed through the package's ONNX Runtime backend (2 threads, like the
detector), the two models interleaved in rounds so that load on a shared machine hits both
alike; accuracy is evaluate_model's mAP on the synthetic validation set. The suite adds the
end-to-end runs of the composed pipeline with each model.

Run alone: ``python -m bench.precision [--quick] --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import tempfile
from typing import Any, Optional

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402


def int8_sibling(model: str) -> Optional[str]:
    """Return ``<model>_int8.onnx`` beside ``model`` when it exists (the shipped pair)."""
    path = Path(model)
    sibling = path.with_name(path.stem + '_int8.onnx')
    return str(sibling) if sibling.is_file() else None


def time_pair(fp32: str, int8: str, runs: int, rounds: int = 5) -> dict[str, Any]:
    """Time one inference of each model, interleaved in rounds; return p50/p99 and the ratio."""
    from edge_infer_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    from edge_infer_ros.inference.model_info import load_model_info
    import time
    backends = {}
    for name, path in (('fp32', fp32), ('int8', int8)):
        info = load_model_info(path)
        backend = OnnxRuntimeBackend(info, {'intra_op_threads': 2})
        backend.load()
        backends[name] = (backend, np.random.default_rng(0).random(info.input_shape,
                                                                   np.float32))
    times: dict[str, list[float]] = {'fp32': [], 'int8': []}
    per_round = max(1, runs // rounds)
    for _ in range(rounds):
        for name, (backend, x) in backends.items():
            for _ in range(3):
                backend.infer(x)
            for _ in range(per_round):
                t = time.perf_counter()
                backend.infer(x)
                times[name].append((time.perf_counter() - t) * 1e3)
    for backend, _ in backends.values():
        backend.release()
    out: dict[str, Any] = {name: {'p50_ms': float(np.percentile(v, 50)),
                                  'p99_ms': float(np.percentile(v, 99)), 'runs': len(v)}
                           for name, v in times.items()}
    out['int8_over_fp32_p50'] = out['int8']['p50_ms'] / out['fp32']['p50_ms']
    return out


def yolov8_shaped(workdir: Path, frames: int, runs: int, imgsz: int = 320) -> dict[str, Any]:
    """Build the YOLOv8-shaped model, quantize it with the tool from frames, time both."""
    from edge_infer_ros.stages.quantize import Candidate, quantize_model
    from edge_infer_ros.stages.synthetic import SyntheticScene
    models = common._load_test_models()
    fp32 = models.make_yolov8_conv_model(workdir / 'yolov8_shaped.onnx', imgsz=imgsz,
                                         widths=(16, 32, 64, 128, 256))
    folder = workdir / 'frames'
    folder.mkdir(exist_ok=True)
    scene = SyntheticScene(width=640, height=480, seed=77)
    for idx, img, _ in scene.frames(0, frames):
        cv2.imwrite(str(folder / f'{idx:04d}.png'), img)
    report = quantize_model(fp32, folder, workdir / 'yolov8_shaped_int8.onnx', frames=frames,
                            candidates=[Candidate('minmax', False), Candidate('minmax', True)],
                            timing_runs=20)
    result = time_pair(str(fp32), str(report.out_path), runs)
    result.update({'model': f'YOLOv8-shaped, random weights, {imgsz}x{imgsz}, widths '
                            '16/32/64/128/256',
                   'chosen': report.chosen.candidate.name,
                   'agreement_f1': report.chosen.accuracy,
                   'size_bytes': {'fp32': fp32.stat().st_size,
                                  'int8': report.out_path.stat().st_size}})
    return result


def run(model: str, int8: Optional[str], quick: bool) -> dict[str, Any]:
    """Compare the shipped (or given) pair and the YOLOv8-shaped pair."""
    from edge_infer_ros.stages.quantize import evaluate_model
    out: dict[str, Any] = {'quick': quick}
    runs = 40 if quick else 300
    pair = int8 or int8_sibling(model)
    if pair is None:
        out['shipped'] = {'error': f'no INT8 model beside {model} and none given'}
    else:
        shipped = time_pair(model, pair, runs)
        frames = 20 if quick else 300
        shipped['map'] = {name: evaluate_model(path, frames=frames)
                          for name, path in (('fp32', model), ('int8', pair))}
        shipped['models'] = {'fp32': model, 'int8': pair}
        out['shipped'] = shipped
    with tempfile.TemporaryDirectory(prefix='bench_precision_') as tmp:
        out['yolov8_shaped'] = yolov8_shaped(Path(tmp), 6 if quick else 40, runs,
                                             64 if quick else 320)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: run and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='', help='FP32 model (default: the shipped one)')
    parser.add_argument('--int8', default='', help='INT8 model (default: <model>_int8.onnx)')
    parser.add_argument('--quick', action='store_true', help='few runs and frames, 64x64 model')
    parser.add_argument('--json', default='', help='write the result here')
    args = parser.parse_args(argv)
    model, _ = common.resolve_model(args.model, common.RESULTS / 'models')
    result = run(model, args.int8 or None, args.quick)
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text, encoding='utf-8')
    else:
        print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
