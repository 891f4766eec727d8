"""
The main job: run the pipeline on its built-in input and print where the time went.

``composed`` (the default) loads every stage into one process (zero-copy handoff);
``split`` starts one process per stage (or per group, see ``--transport``) talking over DDS
(and iceoryx2 shared memory where it imports: ``--same-host``), with the budget monitor in this
process, exactly as the launch files do on a robot. Both read
the same parameter files (config/pipeline.yaml, config/budget.yaml).

The report (printed, and with ``--report-json`` written as JSON for CI gates) comes from the
budget monitor's own numbers: per stage p50/p95/p99/max and queue wait, end to end, frames
captured / processed / dropped, the transport and the backend used.

The command line only; the runs and the report are in ``edge_infer_ros.runs``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from edge_infer_ros.ros.process import refuse_bad_param_files
from edge_infer_ros.ros.same_host import AUTO, same_host_choices
from edge_infer_ros.runs.composed import run_composed
from edge_infer_ros.runs.options import RunOptions
from edge_infer_ros.runs.report import format_report
from edge_infer_ros.runs.split import run_split, SPLIT_GROUPS


def parse_args(argv: Optional[list[str]]) -> RunOptions:
    """Command line to options."""
    parser = argparse.ArgumentParser(prog='pipeline', description=__doc__.split('\n\n')[0])
    parser.add_argument('--mode', choices=('composed', 'split'), default='composed')
    parser.add_argument('--transport', choices=tuple(SPLIT_GROUPS), default='raw',
                        help='split mode: what crosses between processes')
    parser.add_argument('--same-host', choices=same_host_choices(), default=AUTO,
                        help='split mode: frames between the processes by iceoryx2 shared '
                        'memory where it imports (auto), or by DDS or iceoryx2 alone')
    parser.add_argument('--frames', type=int, default=None,
                        help='frames to capture (default 300; with --bag: the whole bag)')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--fps', type=float, default=None,
                        help="camera rate (default: the config file's; a bag or video replays "
                        'at its recorded pace)')
    parser.add_argument('--bag', default='',
                        help='replay this bag (.mcap or .db3 file or bag folder) as the camera')
    parser.add_argument('--bag-topic', default='',
                        help="the bag's image topic (default: its only image topic)")
    parser.add_argument('--seed', type=int, default=0, help='synthetic scene seed')
    parser.add_argument('--backend', choices=('onnxruntime', 'tensorrt'), default='onnxruntime')
    parser.add_argument('--model', default='',
                        help="ONNX model (default: the shipped one; 'int8': the shipped INT8)")
    parser.add_argument('--config', default='', help='pipeline parameter file')
    parser.add_argument('--budget', default='', help='budget parameter file')
    parser.add_argument('--namespace', default='')
    parser.add_argument('--report-json', default='', help='write the report as JSON here')
    parser.add_argument('--profile', default='', help='write a Chrome/Perfetto trace here')
    parser.add_argument('--timeout', type=float, default=0.0, help='give up after (s)')
    args = parser.parse_args(argv)
    frames = args.frames if args.frames is not None else (0 if args.bag else 300)
    if frames < 1 and not args.bag:
        parser.error('--frames must be >= 1')
    if frames < 0:
        parser.error('--frames must be >= 0 (0: the whole bag)')
    if args.fps is not None and args.fps <= 0:
        parser.error('--fps must be > 0')
    return RunOptions(mode=args.mode, transport=args.transport, frames=frames,
                      width=args.width, height=args.height, fps=args.fps, seed=args.seed,
                      backend=args.backend, model_path=args.model, config=args.config,
                      budget=args.budget, namespace=args.namespace,
                      report_json=args.report_json, profile=args.profile,
                      timeout_s=args.timeout, same_host=args.same_host, bag=args.bag,
                      bag_topic=args.bag_topic)


def run(options: RunOptions) -> dict[str, Any]:
    """Run the pipeline as the options say and return the report."""
    return run_split(options) if options.mode == 'split' else run_composed(options)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the main job (``ros2 run edge_infer_ros pipeline``)."""
    options = parse_args(argv)
    refuse_bad_param_files('pipeline', [f for f in (options.config, options.budget) if f])
    report = run(options)
    print(format_report(report))
    if options.report_json:
        with open(options.report_json, 'w', encoding='utf-8') as stream:
            json.dump(report, stream, indent=2, default=str)
    return 0 if report['frames']['processed'] > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
