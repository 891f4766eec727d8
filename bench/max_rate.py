"""
The highest frame rate each variant sustains, searched as ros2_benchmark does.

For the composed pipeline (the package), the serial seed loop and the node-per-stage baseline:
frames are sent at a fixed rate for a few seconds (one probe, a fresh process per probe), a
probe passes with at most 5 % of the frames missed and the output rate within a few Hz of the
playback rate (edge_infer_ros.monitor.max_rate: binary search, then a linear scan). The three
searches are interleaved, one probe of each in turn, so that load on a shared machine falls on
all alike. Each probe reports ros2_benchmark's keys (MEAN_FRAME_RATE, NUM_MISSED_FRAMES, ...),
per-frame latency percentiles and the CPU time per frame received.

How frames are sent, per variant (each sends the synthetic scene, rendered at capture):

- composed: the package's camera, which captures at the rate whether or not the pipeline is
  free; a stage whose queue is full drops the frame (counted). A dropped frame's send time is
  interpolated from its neighbours.
- seed_loop: frame i is due at t0 + i / rate; the loop takes the newest frame due and misses
  those it passed over (``--playback``).
- naive_rclpy: its camera node's timer in the one executor thread; when the pipeline is busy
  the timer runs late, so the playback rate falls below the asked rate instead of frames being
  dropped: the search enforces the rate (``enforce_publisher_rate``).

Run: ``python -m bench.suite --max-rate`` (or ``python -m bench.max_rate --json out.json``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any, Optional

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from edge_infer_ros.monitor.max_rate import (BASIC_KEYS, fill_send_times,  # noqa: E402
                                             LATENCY_KEYS, MaxRateSearch, ProbeResult,
                                             run_probe, SearchConfig, sustained)

#: name -> (label, module, extra arguments)
VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    'composed': ('(3) package, composed', 'bench.pipeline_variant', ['--mode', 'composed']),
    'seed_loop': ('(1) seed loop', 'bench.seed_loop', ['--playback']),
    'naive_rclpy': ('(2) rclpy nodes + topics', 'bench.naive_rclpy', ['--warmup']),
}
#: Search window (Hz): wide enough for every variant at 640x480 on a laptop-class CPU.
DEFAULT_CONFIG = SearchConfig(lower_hz=10.0, upper_hz=400.0, terminal_width_hz=10.0, step_hz=5.0)


def probe_variant(name: str, model: str, width: int, height: int, rate: float,
                  seconds: float, workdir: Path) -> ProbeResult:
    """Run one variant for ``seconds`` at ``rate`` in a process of its own; return the probe."""
    label, module, extra = VARIANTS[name]
    frames = max(3, int(math.ceil(seconds * rate)))
    tag = f'{name}_{width}x{height}_{rate:.1f}hz_{time.strftime("%H%M%S")}'
    out, log = workdir / f'{tag}.json', workdir / f'{tag}.log'
    command = [sys.executable, '-m', module, '--model', model, '--frames', str(frames),
               '--width', str(width), '--height', str(height), '--fps', f'{rate:.4f}',
               '--json', str(out)] + extra
    with open(log, 'w', encoding='utf-8') as stream:
        child = subprocess.Popen(command, cwd=str(common.REPO), stdout=stream,
                                 stderr=subprocess.STDOUT, env=os.environ.copy())
        sampler = common.TreeSampler(child.pid).start()
        try:
            returncode = child.wait(timeout=3.0 * seconds + 120.0)
        except subprocess.TimeoutExpired:
            child.kill()
            returncode = child.wait()
        finally:
            sampler.stop()
    if returncode != 0 or not out.is_file():
        tail = log.read_text(encoding='utf-8', errors='replace')[-800:]
        raise RuntimeError(f'{name} exit status {returncode}: {tail}')
    result = json.loads(out.read_text(encoding='utf-8'))
    done = [r for r in result['records'] if r['stages']]
    received = {int(r['seq']): int(r['stages'][-1][3]) for r in done}
    sent = result.get('sent_ns') or fill_send_times(
        {int(r['seq']): int(r['stamp_ns']) for r in done}, int(result['frames']['captured']),
        int(round(1e9 / rate)))
    probe = ProbeResult(rate, sent, received)
    if sent and done:
        cpu = sampler.cpu_between(sent[0], max(received.values()))
        probe.metrics['CPU_MS_PER_FRAME'] = 1e3 * cpu / len(done) if cpu == cpu else None
    probe.metrics['log'] = str(log)
    return probe


def search(names: list[str], model: str, width: int, height: int, seconds: float,
           workdir: Path, config: SearchConfig = DEFAULT_CONFIG,
           final_seconds: float = 0.0) -> dict[str, Any]:
    """
    Search every variant's max rate, one probe of each in turn; return the results.

    ``final_seconds``: then run each once more at its max rate for that long (ros2_benchmark's
    full-length run at the rate found), whose figures are the variant's row.
    """
    searches = {name: MaxRateSearch(config) for name in names}
    while not all(s.done for s in searches.values()):
        for name, state in searches.items():
            rate = state.next_rate()
            if rate is None:
                continue
            result = run_probe(functools.partial(probe_variant, name, model, width, height,
                                                 seconds=seconds, workdir=workdir), rate)
            passed = state.report(result)
            m = result.metrics
            print(f'[max-rate] {width}x{height} {name} {rate:.1f} Hz ({result.phase}): '
                  f'{"pass" if passed else "FAIL"}'
                  + (f' {result.error[-200:]}' if result.error else
                     f', sent {m["NUM_FRAMES_SENT"]}, missed {m["NUM_MISSED_FRAMES"]}, '
                     f'playback {_f(m["MEAN_PLAYBACK_FRAME_RATE"])} fps, output '
                     f'{_f(m["MEAN_FRAME_RATE"])} fps'), flush=True)
    out: dict[str, Any] = {}
    for name, state in searches.items():
        found = state.result()
        entry: dict[str, Any] = {
            'label': VARIANTS[name][0], 'max_rate_hz': found.max_rate_hz,
            'at_lower_bound': found.at_lower_bound, 'at_upper_bound': found.at_upper_bound,
            'probes': [{'rate_hz': p.rate_hz, 'phase': p.phase, 'passed': p.passed,
                        'error': p.error, 'metrics': p.metrics} for p in found.probes]}
        best = [p for p in found.probes if p.passed and p.rate_hz == found.max_rate_hz]
        if best:
            entry['at_max_rate'] = best[-1].metrics
        if final_seconds > 0 and not found.at_lower_bound:
            final = run_probe(functools.partial(probe_variant, name, model, width, height,
                                                seconds=final_seconds, workdir=workdir),
                              found.max_rate_hz)
            entry['final'] = {'error': final.error, 'metrics': final.metrics,
                              'sustained': not final.error and sustained(
                                  final.metrics, found.max_rate_hz, config.loss_fraction,
                                  config.linear_rate_drop_hz, config.enforce_rate)}
            if not final.error:
                entry['at_max_rate'] = final.metrics
        out[name] = entry
    return out


def _f(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.1f}'


def _yes(value: Optional[bool]) -> str:
    return '-' if value is None else ('yes' if value else 'no')


def _ms(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}'


def markdown(block: dict[str, Any], size: str) -> list[str]:
    """
    Return the max-rate table of one size: a row per variant at its max rate.

    A row's figures are those of the final run at the rate found (the last passing probe
    when there was none).
    """
    lines = [f'### Max sustained rate, {size} (<= 5 % of frames missed)', '',
             '| variant | max rate (Hz) | MEAN_FRAME_RATE | NUM_MISSED_FRAMES / sent | '
             'FIRST_SENT_RECEIVED_LATENCY | LAST_SENT_RECEIVED_LATENCY | MAX_JITTER | '
             'MEAN_JITTER | STD_DEV_JITTER | latency p50 | p90 | p99 | max | CPU ms/frame | '
             'probes | final run sustained |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|']
    for entry in block.values():
        m = entry.get('at_max_rate') or {}
        bound = ' (at lower bound)' if entry['at_lower_bound'] else \
            (' (at upper bound)' if entry['at_upper_bound'] else '')
        missed = (f'{m["NUM_MISSED_FRAMES"]} / {m["NUM_FRAMES_SENT"]}'
                  if m.get('NUM_FRAMES_SENT') is not None else '-')
        lines.append(
            f'| {entry["label"]} | {entry["max_rate_hz"]:.1f}{bound} | '
            f'{_f(m.get("MEAN_FRAME_RATE"))} | {missed} | '
            f'{_ms(m.get("FIRST_SENT_RECEIVED_LATENCY"))} | '
            f'{_ms(m.get("LAST_SENT_RECEIVED_LATENCY"))} | {_ms(m.get("MAX_JITTER"))} | '
            f'{_ms(m.get("MEAN_JITTER"))} | {_ms(m.get("STD_DEV_JITTER"))} | '
            f'{_ms(m.get("LATENCY_P50"))} | {_ms(m.get("LATENCY_P90"))} | '
            f'{_ms(m.get("LATENCY_P99"))} | {_ms(m.get("LATENCY_MAX"))} | '
            f'{_ms(m.get("CPU_MS_PER_FRAME"))} | {len(entry["probes"])} | '
            f'{_yes(entry.get("final", {}).get("sustained"))} |')
    composed = block.get('composed', {}).get('max_rate_hz')
    for other in ('seed_loop', 'naive_rclpy'):
        if composed and other in block and block[other]['max_rate_hz']:
            lines.append(f'| composed / {other} | '
                         f'{composed / block[other]["max_rate_hz"]:.2f}x | | | | | | | | | | | '
                         f'| | | |')
    return lines + ['']


def ros2_benchmark_json(entry: dict[str, Any]) -> dict[str, Any]:
    """Return one variant's figures at its max rate under ros2_benchmark's key names."""
    m = entry.get('at_max_rate') or {}
    return {f'BasicPerformanceMetrics.{k}': m.get(k) for k in BASIC_KEYS + LATENCY_KEYS}


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Return the command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='')
    parser.add_argument('--size', action='append', default=[], help='WxH (default 640x480)')
    parser.add_argument('--variant', action='append', default=[], choices=tuple(VARIANTS))
    parser.add_argument('--seconds', type=float, default=3.0, help='length of one probe')
    parser.add_argument('--final-seconds', type=float, default=0.0,
                        help='a last run at the rate found, this long (0: none)')
    parser.add_argument('--lower', type=float, default=DEFAULT_CONFIG.lower_hz)
    parser.add_argument('--upper', type=float, default=DEFAULT_CONFIG.upper_hz)
    parser.add_argument('--out', default='')
    parser.add_argument('--json', default='')
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the searches at every size; return the summary."""
    workdir = Path(args.out or common.RESULTS / time.strftime('%Y%m%d-%H%M%S')) / 'max_rate'
    workdir.mkdir(parents=True, exist_ok=True)
    model, kind = common.resolve_model(args.model, common.RESULTS / 'models')
    config = SearchConfig(lower_hz=args.lower, upper_hz=args.upper,
                          terminal_width_hz=DEFAULT_CONFIG.terminal_width_hz,
                          step_hz=DEFAULT_CONFIG.step_hz)
    sizes = [tuple(int(v) for v in s.lower().split('x')) for s in args.size] or [(640, 480)]
    names = args.variant or list(VARIANTS)
    summary: dict[str, Any] = {'model': model, 'model_kind': kind, 'seconds': args.seconds,
                               'final_seconds': args.final_seconds,
                               'config': config.__dict__, 'machine_before': common.machine_state(),
                               'sizes': {}}
    for width, height in sizes:
        block = search(names, model, width, height, args.seconds, workdir, config,
                       args.final_seconds)
        summary['sizes'][f'{width}x{height}'] = {
            'variants': block,
            'ros2_benchmark': {n: ros2_benchmark_json(e) for n, e in block.items()}}
    summary['machine_after'] = common.machine_state()
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    """Command line entry point."""
    args = parse_args(argv)
    summary = run(args)
    for size, block in summary['sizes'].items():
        print('\n'.join(markdown(block['variants'], size)))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(summary, stream, indent=1)
    return 0 if all(not e['at_lower_bound'] for b in summary['sizes'].values()
                    for e in b['variants'].values()) else 1


if __name__ == '__main__':
    sys.exit(main())
