"""
This package's pipeline as a benchmark variant: ``runner.run``, composed or split.

The runner's own report is kept (counters, backend, transport); the per-frame records are
rebuilt from the Chrome/Perfetto profile the runner writes (``RunOptions.profile``), which holds
every trace the budget monitor received, so the suite computes the same statistics for this
variant as for the others.

Run alone: ``python -m bench.pipeline_variant --mode composed --frames 60 --json out.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any, Optional

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from edge_infer_ros.ros.same_host import same_host_choices  # noqa: E402
from edge_infer_ros.runner import run as run_pipeline  # noqa: E402
from edge_infer_ros.runs.options import RunOptions  # noqa: E402
from edge_infer_ros.runs.split import SPLIT_GROUPS  # noqa: E402

REPORT_KEYS = ('mode', 'transport', 'backend', 'backend_fallback_reason', 'throughput_fps',
               'wall_s', 'accounting_ok', 'deadline_misses', 'messages_built', 'overhead')


def run(model: str, mode: str, transport: str, frames: int, width: int, height: int,
        fps: float, same_host: str = 'dds', pace: bool = False) -> dict[str, Any]:
    """
    Run the package's pipeline once; return the records, counters and the runner's report.

    ``pace``: the camera captures as fast as the pipeline takes frames (pace_to_pipeline),
    what the suite's saturation run uses with a high ``fps``.
    """
    extra = {'camera': {'pace_to_pipeline': True}} if pace else {}
    with tempfile.TemporaryDirectory(prefix='eir_bench_') as workdir:
        profile = os.path.join(workdir, 'profile.json')
        report = run_pipeline(RunOptions(mode=mode, transport=transport, frames=frames,
                                         width=width, height=height, fps=fps,
                                         model_path=model, profile=profile,
                                         same_host=same_host, extra=extra))
        records = common.records_from_chrome_trace(profile)
    # The same frames for every variant: a camera that ran on past its max_frames (seen once
    # with split/tensor at 1080p) must not add frames the other variants do not have.
    kept = [r for r in records if r['seq'] < frames]
    counters = dict(report['frames'])
    counters['traces_beyond_request'] = len(records) - len(kept)
    return {'records': kept, 'has_queue': True, 'frames': counters,
            'description': report['transport'],
            'report': {k: report.get(k) for k in REPORT_KEYS}}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--mode', choices=('composed', 'split'), default='composed')
    parser.add_argument('--transport', choices=tuple(SPLIT_GROUPS), default='raw')
    parser.add_argument('--same-host', choices=same_host_choices(), default='dds',
                        help="default dds: the suite's split variants name their same-host "
                             'transport (the runner defaults to auto)')
    parser.add_argument('--pace', action='store_true',
                        help='camera paced to the pipeline (as fast as it takes frames)')


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: run the pipeline and write its records as JSON."""
    return common.variant_main(
        argv, __doc__, True,
        lambda model, a: run(model, a.mode, a.transport, a.frames, a.width, a.height, a.fps,
                             a.same_host, a.pace),
        lambda a, result: f'{a.mode} ({result["description"]})', _add_arguments)


if __name__ == '__main__':
    sys.exit(main())
