"""
Soak: the composed pipeline for a long run, checked for leaks, drift and lost accounting.

Every ``--interval`` seconds it records the process's RSS, the frame counters and the
end-to-end p50/p99 of the frames of that interval; at the end it checks that
captured = processed + dropped + errors exactly, that memory did not grow, and how far the
last interval's p99 is from the first's. The short form runs in the tests
(test_fuzz_and_soak.py); this is the long one::

    . scripts/env.sh && python -m bench.soak --duration 600 --json bench/results/soak.json
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path
import sys
import threading
import time
from typing import Any, Optional

from bench.common import make_standin_model, RESULTS, shipped_model
from edge_infer_ros.core.shape import BUDGETED_STAGES
from edge_infer_ros.ros.container import Container
from edge_infer_ros.runs.options import component_specs, RunOptions
import numpy as np
import psutil
import rclpy

STAGES = BUDGETED_STAGES


class IntervalLatencies:
    """
    End-to-end latencies of the frames since the last take().

    Only the current interval is kept: a soak that kept every trace would measure its own
    growth (about 0.8 kB a frame), not the pipeline's.
    """

    def __init__(self) -> None:
        self._values: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, trace: Any) -> None:
        with self._lock:
            self._values.append(trace.end_to_end_ns / 1e6)

    def take(self) -> list[float]:
        """Return the latencies collected since the last call, and forget them."""
        with self._lock:
            values, self._values = self._values, []
        return values


def _counters(nodes: dict[str, Any]) -> dict[str, int]:
    return {
        'captured': nodes['camera'].captured,
        'processed': nodes['action'].commands,
        'dropped': sum(i.stats.dropped for n in STAGES for i in nodes[n].inputs),
        'errors': sum(nodes[n].error_count() for n in STAGES),
    }


def soak(duration_s: float, interval_s: float, fps: float, width: int, height: int,
         model: str) -> dict[str, Any]:
    """Run the pipeline for ``duration_s`` and return the samples and the verdicts."""
    context = rclpy.Context()
    rclpy.init(context=context)
    container = Container(context)
    collector = IntervalLatencies()
    process = psutil.Process()
    samples: list[dict[str, Any]] = []
    try:
        options = RunOptions(frames=0, fps=fps, width=width, height=height, model_path=model)
        nodes = {s.name: container.load(s) for s in component_specs(options)}
        nodes['budget_monitor'].trace_hooks.append(collector)
        container.spin_in_background()
        problems = container.start()
        if problems:
            raise RuntimeError('; '.join(problems))
        started = time.monotonic()
        while time.monotonic() - started < duration_s:
            time.sleep(interval_s)
            window = collector.take()
            latencies = np.array(window) if window else None
            samples.append({
                't_s': round(time.monotonic() - started, 1),
                'rss_mb': process.memory_info().rss / 2**20,
                **_counters(nodes),
                'e2e_p50_ms': float(np.percentile(latencies, 50)) if window else None,
                'e2e_p99_ms': float(np.percentile(latencies, 99)) if window else None,
                'frames_in_interval': len(window),
            })
            print(json.dumps(samples[-1]), flush=True)
        nodes['camera'].trigger_deactivate()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not all(
                i.idle() for n in STAGES for i in nodes[n].inputs):
            time.sleep(0.05)
        time.sleep(0.5)
        gc.collect()
        final = _counters(nodes)
        pools = {'frame_buffers': nodes['camera']._source.pool.allocations,
                 'tensor_buffers': sum(p.tensor_allocations
                                       for p in nodes['preprocess']._preprocessors.values())}
    finally:
        container.shutdown()
        rclpy.shutdown(context=context)
    first, last = samples[0], samples[-1]
    warm = samples[min(1, len(samples) - 1)]  # the first interval includes start-up
    return {
        'duration_s': duration_s, 'fps': fps, 'resolution': [width, height], 'model': model,
        'samples': samples,
        'final': final,
        'accounting_exact': final['captured'] == (final['processed'] + final['dropped'] +
                                                  final['errors']),
        'rss_start_mb': warm['rss_mb'], 'rss_end_mb': last['rss_mb'],
        'rss_growth_mb': last['rss_mb'] - warm['rss_mb'],
        'p99_first_ms': first['e2e_p99_ms'], 'p99_last_ms': last['e2e_p99_ms'],
        'p99_max_interval_ms': max(s['e2e_p99_ms'] or 0.0 for s in samples),
        'buffer_pools': pools,
    }


def main(argv: Optional[list[str]] = None) -> int:
    """Run the soak and print/write its verdict."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=600.0, help='seconds (default 600)')
    parser.add_argument('--interval', type=float, default=10.0, help='sampling period, s')
    parser.add_argument('--fps', type=float, default=30.0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--model', default='', help='ONNX model (default: the shipped one)')
    parser.add_argument('--json', default='', help='write the result here')
    options = parser.parse_args(argv)
    model = options.model or shipped_model()
    if model is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        model = make_standin_model(RESULTS / 'standin.onnx')
    result = soak(options.duration, options.interval, options.fps, options.width,
                  options.height, model)
    summary = {k: v for k, v in result.items() if k != 'samples'}
    print(json.dumps(summary, indent=2))
    if options.json:
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json).write_text(json.dumps(result, indent=2), encoding='utf-8')
    return 0 if result['accounting_exact'] else 1


if __name__ == '__main__':
    sys.exit(main())
