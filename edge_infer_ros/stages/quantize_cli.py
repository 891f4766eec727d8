"""
The command lines of the INT8 tools: ``quantize_model`` and ``evaluate_model``.

Apart from the quantizer (stages/quantize.py), which is a library the bench and the tests
call too; these only parse arguments, call it and print.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from edge_infer_ros.core.resources import resolve_model_path
from edge_infer_ros.stages.calibration_frames import QuantizeError
from edge_infer_ros.stages.quantize import Candidate, EVAL_FRAMES, EVAL_SEED, evaluate_model, \
    METHODS, quantize_model


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``quantize_model``: quantize a model to INT8 QDQ from frames, a video or a bag."""
    ap = argparse.ArgumentParser(
        prog='quantize_model',
        description='Static INT8 (QDQ, per-channel) quantization calibrated on your frames '
                    'through the pipeline letterbox; the calibration method and the nodes '
                    'left in float are chosen by measurement against the FP32 model.')
    ap.add_argument('--model', required=True, help='FP32 ONNX model')
    ap.add_argument('--calibration', required=True,
                    help='folder of images, a video file, or a ROS 2 bag (.mcap, .db3, folder)')
    ap.add_argument('--out', default='', help='INT8 model to write (default: <model>_int8.onnx)')
    ap.add_argument('--bag-topic', default='',
                    help='the image topic of a calibration bag that holds several')
    ap.add_argument('--frames', type=int, default=200, help='frames read (default 200)')
    ap.add_argument('--holdout', type=float, default=0.25,
                    help='share of the frames held back to score candidates (default 0.25)')
    ap.add_argument('--labels', default=None,
                    help='JSON {image name: [[x1, y1, x2, y2, class_id], ...]}: score by mAP@0.5')
    ap.add_argument('--methods', default=','.join(METHODS),
                    help=f'calibration methods to try (default {",".join(METHODS)})')
    ap.add_argument('--threads', type=int, default=2, help='ONNX Runtime threads (default 2)')
    ap.add_argument('--evaluate', action='store_true',
                    help='also score FP32 and INT8 on the synthetic validation set (as '
                         'evaluate_model) and write both into the metadata')
    ap.add_argument('--describe', default='',
                    help='calibration set description for the metadata (default: the path)')
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(',') if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        ap.error(f'--methods {args.methods!r}: choose from {",".join(METHODS)}')
    if not 0.0 < args.holdout < 1.0:
        ap.error('--holdout must be in (0, 1)')
    try:
        report = quantize_model(args.model, args.calibration, args.out or None, args.frames,
                                args.holdout, args.labels,
                                [Candidate(m, h) for m in methods for h in (False, True)],
                                threads=args.threads, calibration_description=args.describe,
                                bag_topic=args.bag_topic)
        if args.evaluate:
            ev = evaluate_model(report.out_path, threads=args.threads)
            ev_fp32 = evaluate_model(args.model, threads=args.threads)
            meta = json.loads(report.metadata_path.read_text(encoding='utf-8'))
            ev.pop('model')
            meta['eval'] = ev
            meta['eval']['fp32_map50'] = ev_fp32['map50']
            meta['eval']['fp32_map50_95'] = ev_fp32['map50_95']
            report.metadata_path.write_text(json.dumps(meta, indent=2) + '\n',
                                            encoding='utf-8')
            print(f'synthetic validation set: mAP@0.5 int8 {ev["map50"]:.4f} fp32 '
                  f'{ev_fp32["map50"]:.4f}; mAP@0.5:0.95 int8 {ev["map50_95"]:.4f} fp32 '
                  f'{ev_fp32["map50_95"]:.4f}')
    except QuantizeError as e:
        print(f'quantize_model: refused: {e}')
        return 2
    print(f'{"candidate":<28} {report.metric:>12} {"inference p50":>14}')
    print(f'{"fp32 (reference)":<28} {report.fp32_accuracy:>12.4f} '
          f'{report.fp32_inference_ms_p50:>11.3f} ms')
    for r in report.results:
        mark = ' <- chosen' if r is report.chosen else ''
        if r.error:
            print(f'{r.candidate.name:<28} failed: {r.error}')
        else:
            print(f'{r.candidate.name:<28} {r.accuracy:>12.4f} {r.inference_ms_p50:>11.3f} ms'
                  f'{mark}')
    print(f'wrote {report.out_path} and {report.metadata_path}')
    return 0


def evaluate_main(argv: Optional[Sequence[str]] = None) -> int:
    """``evaluate_model``: mAP of a model on the shipped synthetic validation set."""
    ap = argparse.ArgumentParser(
        prog='evaluate_model',
        description='mAP@0.5 and mAP@0.5:0.95 of a model through the pipeline preprocess, '
                    'decode and NMS on the synthetic validation set (seed 1000, 300 frames, '
                    '640x480: where the figure of the shipped model comes from).')
    ap.add_argument('--model', default='',
                    help="ONNX model (default: the shipped one; 'int8': the shipped INT8 one)")
    ap.add_argument('--seed', type=int, default=EVAL_SEED)
    ap.add_argument('--frames', type=int, default=EVAL_FRAMES)
    ap.add_argument('--json', action='store_true', help='print the result as JSON')
    args = ap.parse_args(argv)
    if args.frames < 1:
        ap.error('--frames must be >= 1')
    try:
        res = evaluate_model(resolve_model_path(args.model), args.seed, args.frames)
    except (QuantizeError, RuntimeError) as e:
        print(f'evaluate_model: cannot evaluate: {e}')
        return 2
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f'{res["model"]} ({res["precision"]}): seed {res["seed"]}, {res["frames"]} '
              f'frames {res["width"]}x{res["height"]}: mAP@0.5 {res["map50"]:.4f} '
              f'mAP@0.5:0.95 {res["map50_95"]:.4f}')
        for name, ap50 in res['ap_per_class'].items():
            print(f'  {name:<12} AP@0.5 {ap50:.4f}')
    return 0
