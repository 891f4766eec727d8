"""
A/B of the composed pipeline in one process: this issue's changes off and on, alternated.

On a shared machine absolute figures swing with other people's load from one minute to the
next; alternating short runs of the two settings in one process and comparing them round by
round (same load, same warm caches) is what still tells them apart. ``off`` reproduces the
previous behaviour: the detector's input on its worker thread (``input_mode: thread``), the
numpy NMS loop, and the budget monitor's verdicts sent when the period says, not after a trace.
``--compare threads`` alternates ONNX Runtime on 1 and 2 intra-op threads instead (``off`` is 1);
``--compare pin`` alternates the detector's ``pin_threads`` (``off``: the scheduler places
ONNX Runtime's pool thread); ``--compare spin_within_run`` alternates the detector's
``spin_within_run`` (``off``: pool threads sleep between operators); ``--compare keep_awake``
alternates the detector's ``keep_pool_awake`` (``off``: the pool's CPUs may idle until the run);
``--saturate`` runs the camera at 1000 fps paced to the pipeline (throughput is then printed).

``--compare seed_loop`` and ``--compare split`` alternate two whole variants instead, each in a
child process as the suite runs them (CPU per frame sampled over the process tree): the seed
loop against the composed pipeline, or the composed pipeline against the runner's default
split. They print each round, the medians and the targets the issues set for the pair.
``--compare seed_loop_aa`` alternates the seed loop with itself and judges the pair by the
seed-loop targets: how often two identical variants meet them by chance on this machine, the
floor under what ``--compare seed_loop`` can show.

``. scripts/env.sh && python -m bench.ab_composed --rounds 6 --frames 200 [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import tempfile
from typing import Any, Optional
from unittest import mock

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from bench import suite  # noqa: E402
from edge_infer_ros.ros.nodes.budget_monitor import BudgetMonitorNode  # noqa: E402
from edge_infer_ros.runner import run as run_pipeline  # noqa: E402
from edge_infer_ros.runs.options import RunOptions  # noqa: E402
from edge_infer_ros.stages import nms as nms_module  # noqa: E402
import numpy as np  # noqa: E402


def run_once(setting: str, frames: int, width: int, height: int, fps: float,
             model: str, compare: str = 'changes', saturate: bool = False) -> dict[str, Any]:
    """Run the composed pipeline once with the changes ``on`` or ``off``; return its figures."""
    extra: dict[str, dict[str, Any]] = {}
    if compare == 'threads':
        extra['detector'] = {'intra_op_threads': 1 if setting == 'off' else 2}
    elif compare == 'pin':
        extra['detector'] = {'pin_threads': setting == 'on'}
    elif compare == 'spin_within_run':
        extra['detector'] = {'spin_within_run': setting == 'on'}
    elif compare == 'keep_awake':
        extra['detector'] = {'keep_pool_awake': setting == 'on'}
    elif setting == 'off':
        extra['detector'] = {'input_mode': 'thread'}
    if saturate:
        extra['camera'] = {'pace_to_pipeline': True}
        fps = 1000.0
    patches = []
    if setting == 'off' and compare == 'changes':
        patches = [mock.patch.object(nms_module, '_OPENCV_NMS', None),
                   mock.patch.object(BudgetMonitorNode, '_trace_done', lambda node: None)]
    for patch in patches:
        patch.start()
    try:
        with tempfile.TemporaryDirectory(prefix='eir_ab_') as workdir:
            profile = os.path.join(workdir, 'profile.json')
            report = run_pipeline(RunOptions(frames=frames, width=width, height=height,
                                             fps=fps, model_path=model, profile=profile,
                                             extra=extra))
            records = common.records_from_chrome_trace(profile)
    finally:
        for patch in patches:
            patch.stop()
    summary = common.summarize(records, True)
    stages = summary['stages']
    return {'setting': setting, 'load_1min': os.getloadavg()[0],
            'e2e_p50': summary['end_to_end']['p50_ms'],
            'e2e_p99': summary['end_to_end']['p99_ms'],
            'overhead_p50': summary['overhead']['p50_ms'],
            'overhead_p99': summary['overhead']['p99_ms'],
            'detector_wait_p50': stages['detector']['queue_wait']['p50_ms'],
            'detector_wait_p99': stages['detector']['queue_wait']['p99_ms'],
            'detector_service_p50': stages['detector']['service']['p50_ms'],
            'nms_service_p50': stages['nms']['service']['p50_ms'],
            'processed': report['frames']['processed'], 'dropped': report['frames']['dropped'],
            'throughput_fps': _throughput(records)}


#: Suffix of the second label of a variant compared with itself.
AGAIN = '_again'
#: --compare name -> (baseline, other): labels of bench.suite.VARIANTS (the other one
#: suffixed with AGAIN when a variant is compared with itself)
PAIRS: dict[str, tuple[str, str]] = {'seed_loop': ('seed_loop', 'composed'),
                                     'split': ('composed', 'split'),
                                     'seed_loop_aa': ('seed_loop', 'seed_loop' + AGAIN)}


def run_pair_round(label: str, frames: int, width: int, height: int, fps: float,
                   model: str, workdir: str) -> dict[str, Any]:
    """Run one variant in a child process (as the suite does); return its round figures."""
    variant = label[:-len(AGAIN)] if label.endswith(AGAIN) else label
    entry = suite.run_variant(variant, model, frames, width, height, fps, Path(workdir))
    if 'error' in entry:
        raise RuntimeError(f'{variant} failed: {entry["error"]}')
    frames_seen = entry['frames']
    accounted = (frames_seen['processed'] + frames_seen['dropped']
                 + frames_seen.get('errors', 0) + frames_seen.get('lost_in_transport', 0))
    return {'setting': label, 'load_1min': os.getloadavg()[0],
            'e2e_p50': entry['end_to_end']['p50_ms'], 'e2e_p99': entry['end_to_end']['p99_ms'],
            'detector_p50': entry['stages']['detector']['service']['p50_ms'],
            'cpu_ms_per_frame': entry['cpu']['cpu_ms_per_frame'],
            'others_cpu_percent': entry['cpu']['others_percent'],
            'accounted': accounted == frames_seen['captured']}


def pair_verdict(compare: str, base: dict[str, float], other: dict[str, float]) -> list[str]:
    """Judge the pair against its issue's targets: a line per target, figure and verdict."""
    if compare == 'split':
        gap = other['e2e_p50'] - base['e2e_p50']
        return [f'split e2e p50 - composed: {gap:+.2f} ms (target <= +2.5): '
                f'{"met" if gap <= 2.5 else "missed"}']
    # seed_loop and seed_loop_aa: the targets of composed against the seed loop
    pair = ' / '.join(PAIRS[compare][::-1])
    checks = (('e2e p50', other['e2e_p50'] / base['e2e_p50'], '<= 1.05x', 1.05),
              ('e2e p99', other['e2e_p99'] / base['e2e_p99'], '<= 1.0x', 1.0),
              ('CPU per frame', other['cpu_ms_per_frame'] / base['cpu_ms_per_frame'],
               '<= 1.2x', 1.2))
    lines = [f'{pair}, {name}: {ratio:.2f}x (target {text}): '
             f'{"met" if ratio <= limit else "missed"}' for name, ratio, text, limit in checks]
    gap = other['detector_p50'] - base['detector_p50']
    lines.append(f'detector p50, {pair.replace("/", "-")}: {gap:+.2f} ms (target within '
                 f'0.2 ms): {"met" if gap <= 0.2 else "missed"}')
    return lines


def run_pairs(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Alternate the two variants of a pair, round by round; print rounds, medians, verdict."""
    base, other = PAIRS[args.compare]
    keys = ('e2e_p50', 'e2e_p99', 'detector_p50', 'cpu_ms_per_frame', 'others_cpu_percent')
    runs = []
    with tempfile.TemporaryDirectory(prefix='eir_ab_') as workdir:
        for index in range(args.rounds):
            for variant in ((base, other) if index % 2 == 0 else (other, base)):
                result = run_pair_round(variant, args.frames, args.width, args.height,
                                        args.fps, model, workdir)
                runs.append(result)
                print(f'round {index} {variant:9s} load {result["load_1min"]:5.2f} '
                      + ' '.join(f'{k} {result[k]:.3f}' for k in keys)
                      + ('' if result['accounted'] else ' NOT EVERY FRAME ACCOUNTED'), flush=True)
    medians = {variant: {k: float(np.median([r[k] for r in runs if r['setting'] == variant]))
                         for k in keys} for variant in (base, other)}
    print('median of rounds (ms):')
    for variant, figures in medians.items():
        print(f'  {variant:9s} ' + ' '.join(f'{k} {v:.3f}' for k, v in figures.items()))
    verdict = pair_verdict(args.compare, medians[base], medians[other])
    print('\n'.join(verdict))
    return {'runs': runs, 'medians': medians, 'verdict': verdict}


def _throughput(records: list[dict[str, Any]]) -> float:
    """Frames done per second over the frames' window (as the suite counts it)."""
    begin, end = common.frame_window_ns(records)
    done = len([r for r in records if r['stages']])
    return done / ((end - begin) / 1e9) if end > begin else 0.0


def main(argv: Optional[list[str]] = None) -> int:
    """Alternate off/on runs and print each round and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=6)
    parser.add_argument('--frames', type=int, default=200)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--fps', type=float, default=30.0)
    parser.add_argument('--model', default='')
    parser.add_argument('--json', default='')
    parser.add_argument('--compare', choices=('changes', 'threads', 'pin', 'spin_within_run',
                                              'keep_awake', *PAIRS),
                        default='changes')
    parser.add_argument('--saturate', action='store_true')
    args = parser.parse_args(argv)
    model, _ = common.resolve_model(args.model, common.RESULTS / 'models')
    if args.compare in PAIRS:
        if args.saturate:
            parser.error('--saturate applies to the in-process comparisons only')
        result = run_pairs(args, model)
        if args.json:
            with open(args.json, 'w', encoding='utf-8') as stream:
                json.dump({**result, 'args': vars(args)}, stream, indent=1)
        return 0
    runs = []
    keys = ('e2e_p50', 'e2e_p99', 'overhead_p50', 'overhead_p99', 'detector_wait_p50',
            'detector_wait_p99', 'detector_service_p50', 'nms_service_p50', 'throughput_fps')
    for index in range(args.rounds):
        order = ('off', 'on') if index % 2 == 0 else ('on', 'off')
        for setting in order:
            result = run_once(setting, args.frames, args.width, args.height, args.fps, model,
                              args.compare, args.saturate)
            runs.append(result)
            print(f'round {index} {setting:3s} load {result["load_1min"]:5.2f} '
                  + ' '.join(f'{k} {result[k]:.3f}' for k in keys), flush=True)
    print('median of rounds (ms):')
    medians = {}
    for setting in ('off', 'on'):
        chosen = [r for r in runs if r['setting'] == setting]
        medians[setting] = {k: float(np.median([r[k] for r in chosen])) for k in keys}
        print(f'  {setting:3s} ' + ' '.join(f'{k} {medians[setting][k]:.3f}' for k in keys))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump({'runs': runs, 'medians': medians, 'args': vars(args)}, stream, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
