"""
The benchmark suite: the seed loop, a plain rclpy pipeline and this package, on one machine.

One command runs every variant on the same synthetic input, model, frame count and frame rate,
each in a process of its own (sampled for CPU time and memory, children included):

1. ``seed_loop``: capture, resize, inference, decode, NMS, command, serially in one thread
   (:mod:`bench.seed_loop`);
2. ``naive_rclpy``: one plain rclpy Node per stage, topics between them, the default
   SingleThreadedExecutor, one process (:mod:`bench.naive_rclpy`);
3. ``composed``: this package, every stage in one process, zero-copy handoff;
4. ``split_raw`` / ``split_tensor`` / ``split_compressed``: this package split across
   processes with DDS between them (raw images, tensors, JPEG); ``split_iceoryx2``: the same
   processes as ``split_raw`` with iceoryx2 shared memory between them (``transport.same_host``),
   ``split_tensor_iceoryx2`` those of ``split_tensor`` (camera side | detector side); both
   left out, with the reason, where iceoryx2 is missing;
5. ``foreign``: a stand-in camera driver in another process into the package, against a plain
   rclpy subscriber, with and without the Fast DDS profile (:mod:`bench.foreign_publisher`).

Each size also gets a saturation run of (1) and (3): frames as fast as each takes them (the seed
loop unthrottled, the package's camera paced to the pipeline), for throughput and end to end.

Then it writes ``summary.json``, ``summary.md`` and PNG pictures (per-stage p95 stacked against
the budget, end-to-end CDFs) into ``bench/results/<timestamp>/`` (or ``--out``).

``--max-rate`` runs instead the search for the highest rate each of (1), (2) and (3) sustains
with at most 5 % of frames missed, the way ros2_benchmark searches it (:mod:`bench.max_rate`).

``. scripts/env.sh && python -m bench.suite [--quick | --max-rate]``
(or ``python bench/suite.py``).
"""

from __future__ import annotations

import argparse
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
import numpy as np  # noqa: E402

#: name -> (label, module, extra arguments)
VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    'seed_loop': ('(1) seed loop', 'bench.seed_loop', []),
    'naive_rclpy': ('(2) rclpy nodes + topics', 'bench.naive_rclpy', []),
    'composed': ('(3) package, composed', 'bench.pipeline_variant', ['--mode', 'composed']),
    # The runner's default split: its default transport, same-host transport chosen by auto.
    'split': ('(4) package, split (runner defaults)', 'bench.pipeline_variant',
              ['--mode', 'split', '--same-host', 'auto']),
    'split_raw': ('(4) package, split raw', 'bench.pipeline_variant',
                  ['--mode', 'split', '--transport', 'raw']),
    'split_tensor': ('(4) package, split tensor', 'bench.pipeline_variant',
                     ['--mode', 'split', '--transport', 'tensor']),
    'split_compressed': ('(4) package, split JPEG', 'bench.pipeline_variant',
                         ['--mode', 'split', '--transport', 'compressed']),
    'split_iceoryx2': ('(4) package, split iceoryx2 shm', 'bench.pipeline_variant',
                       ['--mode', 'split', '--transport', 'raw', '--same-host', 'iceoryx2']),
    'split_tensor_iceoryx2': ('(4) package, split tensor iceoryx2 shm', 'bench.pipeline_variant',
                              ['--mode', 'split', '--transport', 'tensor', '--same-host',
                               'iceoryx2']),
    # The composed pipeline on the INT8 model (run by --precision, not a plumbing variant).
    'composed_int8': ('(3) package, composed, INT8 model', 'bench.pipeline_variant',
                      ['--mode', 'composed']),
}
QUICK_VARIANTS = ('seed_loop', 'naive_rclpy', 'composed', 'split_raw')
SIZES = ((640, 480), (1920, 1080))
#: Other processes' CPU use (% of one core) above which a variant counts as run under load.
LOADED_PERCENT = 20.0
#: Camera rate of the saturation runs: above what either variant can take.
SATURATION_FPS = 1000.0
#: Segments of the stacked bars, in pipeline order.
SEGMENTS = ('ingest',) + common.STAGES + ('transport',)


def run_variant(name: str, model: str, frames: int, width: int, height: int, fps: float,
                workdir: Path, ort_spin: bool = False, pace: bool = False) -> dict[str, Any]:
    """Run one variant in a child process, sampling its CPU and memory; return its entry."""
    label, module, extra = VARIANTS[name]
    tag = f'{name}_{width}x{height}' + ('_saturation' if pace else '')
    out = workdir / f'{tag}.json'
    command = [sys.executable, '-m', module, '--model', model, '--frames', str(frames),
               '--width', str(width), '--height', str(height), '--fps', str(fps),
               '--json', str(out)] + extra
    if ort_spin and module != 'bench.pipeline_variant':
        command.append('--ort-spin')
    if pace and module == 'bench.pipeline_variant':
        command.append('--pace')
    log = workdir / f'{tag}.log'
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with open(log, 'w', encoding='utf-8') as stream:
        child = subprocess.Popen(command, cwd=str(common.REPO), stdout=stream,
                                 stderr=subprocess.STDOUT, env=os.environ.copy())
        sampler = common.TreeSampler(child.pid).start()
        try:
            returncode = child.wait(timeout=3.0 * frames / fps + 180.0)
        except subprocess.TimeoutExpired:
            child.kill()
            returncode = child.wait()
        finally:
            sampler.stop()
    wall = time.monotonic() - started
    entry: dict[str, Any] = {'variant': name, 'label': label, 'resolution': [width, height],
                             'returncode': returncode, 'process_wall_s': wall,
                             'loadavg_1min': [load_before, os.getloadavg()[0]], 'log': str(log)}
    if returncode != 0 or not out.is_file():
        tail = log.read_text(encoding='utf-8', errors='replace')[-2000:]
        entry['error'] = f'exit status {returncode}: {tail}'
        return entry
    result = json.loads(out.read_text(encoding='utf-8'))
    records = result['records']
    if not any(r['stages'] for r in records):
        entry['error'] = 'no frame completed'
        return entry
    entry.update(common.summarize(records, result['has_queue']))
    begin, end = common.frame_window_ns(records)
    window = (end - begin) / 1e9
    cpu = sampler.cpu_between(begin, end)
    others = sampler.others_cpu_between(begin, end)
    done = len([r for r in records if r['stages']])
    entry.update({
        'description': result['description'],
        'frames': result['frames'],
        'frames_recorded': done,
        'has_queue': result['has_queue'],
        'throughput_fps': done / window if window > 0 else None,
        'cpu': {'window_s': window, 'cpu_s': cpu,
                'cpu_percent': 100.0 * cpu / window if window > 0 else None,
                'cpu_ms_per_frame': 1e3 * cpu / done if done else None,
                'total_cpu_s': sampler.total_cpu_s(), 'samples': len(sampler.samples),
                'others_percent': 100.0 * others / window if window > 0 else None},
        'peak_rss_mb': sampler.peak_rss_bytes() / 2**20,
        'e2e_samples_ms': common.end_to_end_ms(records),
    })
    if 'report' in result:
        entry['runner_report'] = result['report']
    return entry


def precision_int8(model: str) -> Optional[str]:
    """Return the INT8 model beside ``model`` (``<stem>_int8.onnx``), or None."""
    from bench.precision import int8_sibling
    return int8_sibling(model)


def precision_table(fp32: dict[str, Any], int8: dict[str, Any]) -> dict[str, Any]:
    """Return the composed runs on FP32 and INT8 side by side, with INT8 / FP32 ratios."""
    out: dict[str, Any] = {'fp32': {}, 'int8': {}, 'int8_over_fp32': {}}
    if 'error' in int8:
        out['error'] = int8['error'][-500:]
        return out
    keys = {'e2e_p50_ms': ('end_to_end', 'p50_ms'), 'e2e_p99_ms': ('end_to_end', 'p99_ms'),
            'detector_p50_ms': ('stages', 'detector', 'service', 'p50_ms'),
            'cpu_ms_per_frame': ('cpu', 'cpu_ms_per_frame')}
    for key, path in keys.items():
        a, b = _get(fp32, *path), _get(int8, *path)
        out['fp32'][key], out['int8'][key] = a, b
        out['int8_over_fp32'][key] = b / a if a and b is not None else None
    out['int8_entry_log'] = int8.get('log')
    return out


#: The figures of a composed run that the FP32 vs INT8 table reads (see precision_table).
PRECISION_PATHS = (('end_to_end', 'p50_ms'), ('end_to_end', 'p99_ms'),
                   ('stages', 'detector', 'service', 'p50_ms'), ('cpu', 'cpu_ms_per_frame'))


def median_entry(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """
    Return the median over runs of each figure the FP32 vs INT8 table reads.

    FP32 and INT8 runs alternate (--precision-rounds), so load that comes and goes on a shared
    machine falls on both; the median keeps one loaded run from deciding the ratio.
    """
    good = [e for e in entries if 'error' not in e]
    if not good:
        return entries[-1]
    if len(good) == 1:
        return good[0]
    out: dict[str, Any] = {'log': good[-1].get('log'), 'runs': len(good)}
    for path in PRECISION_PATHS:
        values = [v for v in (_get(e, *path) for e in good) if v is not None]
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = float(np.median(values)) if values else None
    return out


def _get(entry: dict[str, Any], *path: str) -> Optional[float]:
    value: Any = entry
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return float(value)


def ratios(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return other / composed for end-to-end and overhead p50 / p99 (> 1: composed is faster)."""
    composed = entries.get('composed')
    out: dict[str, Any] = {}
    if composed is None:
        return out
    for other in ('seed_loop', 'naive_rclpy'):
        if other not in entries:
            continue
        values = {}
        for item in ('end_to_end', 'overhead'):
            for q in ('p50', 'p99'):
                numerator = _get(entries[other], item, f'{q}_ms')
                denominator = _get(composed, item, f'{q}_ms')
                values[f'{item}_{q}'] = (numerator / denominator
                                         if numerator is not None and denominator else None)
        out[f'composed_vs_{other}'] = values
    return out


def composed_over_seed(entries: dict[str, dict[str, Any]]) -> dict[str, Optional[float]]:
    """Return composed / seed loop for e2e p50, p99 and overhead p99 (<= 1: no slower)."""
    if 'composed' not in entries or 'seed_loop' not in entries:
        return {}
    out = {}
    for item, q in (('end_to_end', 'p50'), ('end_to_end', 'p99'), ('overhead', 'p99')):
        numerator = _get(entries['composed'], item, f'{q}_ms')
        denominator = _get(entries['seed_loop'], item, f'{q}_ms')
        out[f'{item}_{q}'] = (numerator / denominator
                              if numerator is not None and denominator else None)
    return out


def saturation(model: str, frames: int, width: int, height: int, workdir: Path,
               ort_spin: bool = False) -> dict[str, Any]:
    """Run (1) and (3) as fast as each takes frames; return both and composed / seed."""
    runs = {}
    for name in ('seed_loop', 'composed'):
        entry = run_variant(name, model, frames, width, height, SATURATION_FPS, workdir,
                            ort_spin, pace=True)
        runs[name] = {k: entry.get(k) for k in ('label', 'error', 'throughput_fps',
                                                'end_to_end', 'frames_recorded', 'frames',
                                                'loadavg_1min') if k in entry}
        if 'cpu' in entry:
            runs[name]['others_cpu_percent'] = entry['cpu'].get('others_percent')
    block: dict[str, Any] = {'fps_setting': SATURATION_FPS, 'variants': runs}
    if all('error' not in r for r in runs.values()):
        seed, composed = runs['seed_loop'], runs['composed']
        block['throughput_ratio'] = composed['throughput_fps'] / seed['throughput_fps']
        block['end_to_end_p99_ratio'] = (composed['end_to_end']['p99_ms']
                                         / seed['end_to_end']['p99_ms'])
    return block


# -- pictures ----------------------------------------------------------------------------------
def _segment_p95(entry: dict[str, Any], segment: str) -> float:
    if segment in ('ingest', 'transport'):
        return _get(entry, segment, 'p95_ms') or 0.0
    return _get(entry, 'stages', segment, 'total', 'p95_ms') or 0.0


def plot_stacked(entries: dict[str, dict[str, Any]], budget: dict[str, float], size: str,
                 path: Path) -> None:
    """Stacked bar per variant of per-stage p95 (queue wait + service), beside the budget."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = [n for n, e in entries.items() if 'error' not in e]
    labels = [entries[n]['label'] for n in names] + ['budget']
    colors = plt.get_cmap('tab10').colors
    fig, ax = plt.subplots(figsize=(max(7.0, 1.4 * len(labels) + 2), 5.0))
    bottoms = np.zeros(len(labels))
    for index, segment in enumerate(SEGMENTS):
        heights = [_segment_p95(entries[n], segment) for n in names]
        heights.append(budget.get(segment, 0.0))
        ax.bar(range(len(labels)), heights, bottom=bottoms, color=colors[index % 10],
               label=segment, edgecolor='white', linewidth=0.5)
        bottoms += np.asarray(heights)
    ax.bar(len(labels) - 1, budget.get('slack', 0.0), bottom=bottoms[-1], color='lightgrey',
           label='slack (budget only)', edgecolor='white', linewidth=0.5)
    ax.axhline(budget['deadline'], color='red', linestyle='--', linewidth=1.2,
               label=f'deadline {budget["deadline"]:g} ms')
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha='right', fontsize=8)
    ax.set_ylabel('p95 per part, ms (stacked)')
    ax.set_title(f'Per-stage p95 (queue wait + service) against the budget, {size}')
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cdf(entries: dict[str, dict[str, Any]], deadline: float, size: str,
             path: Path) -> None:
    """End-to-end latency CDF per variant (log time axis)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    for name, entry in entries.items():
        samples = np.sort(np.asarray(entry.get('e2e_samples_ms') or [], dtype=np.float64))
        if samples.size == 0:
            continue
        ax.step(samples, np.arange(1, samples.size + 1) / samples.size, where='post',
                label=f'{entry["label"]} (p50 {np.median(samples):.1f} ms)')
    ax.axvline(deadline, color='red', linestyle='--', linewidth=1.2,
               label=f'deadline {deadline:g} ms')
    ax.set_xscale('log')
    ax.set_xlabel('end to end: capture stamp -> command published, ms (log)')
    ax.set_ylabel('fraction of frames')
    ax.set_ylim(0, 1.01)
    ax.grid(True, which='both', alpha=0.3)
    ax.set_title(f'End-to-end latency CDF, {size}')
    ax.legend(fontsize=8, loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- tables ------------------------------------------------------------------------------------
def _ms(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:.2f}' if value < 100 else f'{value:.0f}'


def _x(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}x'


def _load_verdict(summary: dict[str, Any]) -> str:
    loaded = [f'{size} {name}' for size, block in summary['sizes'].items()
              for name, entry in block['variants'].items()
              if (entry.get('cpu') or {}).get('others_percent', 0.0) > LOADED_PERCENT]
    if not loaded:
        return f'no variant ran beside more than {LOADED_PERCENT:g}% of other CPU use'
    return f'LOADED (other processes above {LOADED_PERCENT:g}%) during: ' + ', '.join(loaded)


def markdown(summary: dict[str, Any]) -> str:
    """Lay out summary.md: machine, main table, per-stage table and ratios per size."""
    machine = summary['machine_before']
    lines = [
        '# edge_infer_ros benchmark suite', '',
        f'- started {machine["time"]}, {machine["cpus"]} CPUs, load average '
        f'{machine["loadavg"][0]:.2f} (after: {summary["machine_after"]["loadavg"][0]:.2f}), '
        f'CPU busy {machine["cpu_percent_1s"]:.0f}% in the second before the start',
        '- other processes busy at the start: '
        + (', '.join(f'{p["name"]} ({p["cpu_percent"]:.0f}%)' for p in summary['busy_processes'])
           or 'none'),
        '- CPU used by other processes while each variant ran: column "others CPU %" (100 = '
        'one core); ' + _load_verdict(summary),
        f'- model: {summary["model"]} ({summary["model_kind"]})',
        f'- {summary["frames"]} frames at {summary["fps"]:g} fps per variant'
        + (' (quick)' if summary['quick'] else ''), '',
        'Times in ms. End to end: capture stamp -> command published. Overhead: end to end '
        'minus the detector stage (inference + decode). CPU: process and children over the '
        "frames' window. RSS: sum over the processes (peak).", '']
    for size, block in summary['sizes'].items():
        entries = block['variants']
        lines += [f'## {size}', '',
                  '| variant | e2e p50 | e2e p95 | e2e p99 | overhead p50 | overhead p99 | '
                  'fps | CPU ms/frame | CPU % | peak RSS MB | frames done/captured | '
                  'others CPU % |',
                  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
        for entry in entries.values():
            if 'error' in entry:
                lines.append(f'| {entry["label"]} | failed: {entry["error"][:80]!r} |')
                continue
            cpu = entry['cpu']
            lines.append(
                f'| {entry["label"]} | {_ms(_get(entry, "end_to_end", "p50_ms"))} | '
                f'{_ms(_get(entry, "end_to_end", "p95_ms"))} | '
                f'{_ms(_get(entry, "end_to_end", "p99_ms"))} | '
                f'{_ms(_get(entry, "overhead", "p50_ms"))} | '
                f'{_ms(_get(entry, "overhead", "p99_ms"))} | {_ms(entry["throughput_fps"])} | '
                f'{_ms(cpu["cpu_ms_per_frame"])} | {_ms(cpu["cpu_percent"])} | '
                f'{entry["peak_rss_mb"]:.0f} | {entry["frames_recorded"]}/'
                f'{entry["frames"].get("captured", "?")} | {_ms(cpu.get("others_percent"))} |')
        lines += ['', '| ratio (other / composed; > 1: composed faster) | e2e p50 | e2e p99 | '
                  'overhead p50 | overhead p99 |', '|---|---:|---:|---:|---:|']
        for name, values in block['ratios'].items():
            lines.append(f'| {name} | {_x(values["end_to_end_p50"])} | '
                         f'{_x(values["end_to_end_p99"])} | {_x(values["overhead_p50"])} | '
                         f'{_x(values["overhead_p99"])} |')
        over = block.get('composed_over_seed_loop') or {}
        if over:
            lines += ['', '| composed / seed loop (<= 1: composed no slower) | e2e p50 | '
                      'e2e p99 | overhead p99 |', '|---|---:|---:|---:|',
                      f'| {size} | {_x(over["end_to_end_p50"])} | {_x(over["end_to_end_p99"])} '
                      f'| {_x(over["overhead_p99"])} |']
        sat = block.get('saturation')
        if sat:
            lines += ['', f'Saturation (camera at {sat["fps_setting"]:g} fps: the seed loop '
                      'unthrottled, the package paced to the pipeline):', '',
                      '| variant | throughput fps | e2e p50 | e2e p99 | frames | load 1 min | '
                      'others CPU % |', '|---|---:|---:|---:|---:|---:|---:|']
            for run in sat['variants'].values():
                if run.get('error'):
                    lines.append(f'| {run.get("label")} | failed: {run["error"][:80]!r} |')
                    continue
                lines.append(
                    f'| {run["label"]} | {_ms(run["throughput_fps"])} | '
                    f'{_ms(run["end_to_end"]["p50_ms"])} | {_ms(run["end_to_end"]["p99_ms"])} | '
                    f'{run["frames_recorded"]} | {run["loadavg_1min"][0]:.2f} | '
                    f'{_ms(run.get("others_cpu_percent"))} |')
            if 'throughput_ratio' in sat:
                lines.append(f'| composed / seed loop | {_x(sat["throughput_ratio"])} | | '
                             f'{_x(sat["end_to_end_p99_ratio"])} | | | |')
        lines += ['', '| variant | part | service p50 | p95 | p99 | queue wait p50 | p95 | p99 | '
                  'wait+service p95 | budget |',
                  '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
        for entry in entries.values():
            if 'error' in entry:
                continue
            for stage, figures in entry['stages'].items():
                wait = figures['queue_wait'] or {}
                lines.append(
                    f'| {entry["label"]} | {stage} | {_ms(figures["service"]["p50_ms"])} | '
                    f'{_ms(figures["service"]["p95_ms"])} | {_ms(figures["service"]["p99_ms"])} '
                    f'| {_ms(wait.get("p50_ms"))} | {_ms(wait.get("p95_ms"))} | '
                    f'{_ms(wait.get("p99_ms"))} | {_ms(figures["total"]["p95_ms"])} | '
                    f'{_ms(summary["budget"].get(stage))} |')
            for part in ('ingest', 'transport'):
                lines.append(f'| {entry["label"]} | {part} (hop) | {_ms(entry[part]["p50_ms"])} | '
                             f'{_ms(entry[part]["p95_ms"])} | {_ms(entry[part]["p99_ms"])} | | | '
                             f'| {_ms(entry[part]["p95_ms"])} | '
                             f'{_ms(summary["budget"].get(part))} |')
        lines += ['', f'![stacked p95]({block["pictures"]["stacked_p95"]})',
                  f'![end-to-end CDF]({block["pictures"]["e2e_cdf"]})', '']
    overhead = summary.get('monitor_overhead')
    if overhead and 'error' not in overhead:
        lines += ['## Monitoring overhead (trace + BudgetTracker.observe)', '',
                  f'- bare stage calls p50 {overhead["baseline"]["p50_us"]:.1f} us per frame; '
                  f'monitoring only p50 {overhead["monitoring_p50_us"]:.1f} us '
                  f'({100 * overhead["ratio_monitoring_to_baseline"]:.2f}% of it), p99 '
                  f'{overhead["monitoring_only"]["p99_us"]:.1f} us; target < 50 us: '
                  f'{"met" if overhead["target_met"] else "NOT met"}', '']
    lines += precision_markdown(summary)
    hop = summary.get('hop')
    if hop and 'table' in hop:
        lines += ['## One hop (bench/hop.py)', '', hop['table'], '']
    foreign = summary.get('foreign')
    if foreign and 'table' in foreign:
        lines += ['## Frames from another process (bench/foreign_publisher.py)', '',
                  foreign['table'], '']
    return '\n'.join(lines)


def _run_json_tool(module: str, args: list[str], workdir: Path, name: str,
                   timeout: float) -> dict[str, Any]:
    out = workdir / f'{name}.json'
    log = workdir / f'{name}.log'
    with open(log, 'w', encoding='utf-8') as stream:
        try:
            returncode = subprocess.run([sys.executable, '-m', module, *args, '--json', str(out)],
                                        cwd=str(common.REPO), stdout=stream,
                                        stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            returncode = -1
    if returncode != 0 or not out.is_file():
        return {'error': f'{module} exit status {returncode}, see {log}'}
    return json.loads(out.read_text(encoding='utf-8'))


def run_max_rate(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """Run the --max-rate mode: bench/max_rate.py's searches at each size (default 640x480)."""
    from bench import max_rate
    options = max_rate.parse_args(
        ['--out', str(out_dir), '--seconds', str(args.max_rate_seconds),
         '--final-seconds', str(args.max_rate_final_seconds),
         '--lower', str(args.max_rate_window[0]), '--upper', str(args.max_rate_window[1])]
        + (['--model', args.model] if args.model else [])
        + [f'--size={size}' for size in args.size]
        + [f'--variant={name}' for name in args.variant if name in max_rate.VARIANTS])
    summary = max_rate.run(options)
    summary.update({'mode': 'max_rate', 'busy_processes': common.busy_processes()})
    lines = ['# Max-rate search (ros2_benchmark method)', '',
             f'- model: {summary["model"]} ({summary["model_kind"]}); probes of '
             f'{summary["seconds"]:g} s, one process each, the variants in turn; search '
             f'window {summary["config"]["lower_hz"]:g}-{summary["config"]["upper_hz"]:g} Hz',
             f'- load average before {summary["machine_before"]["loadavg"][0]:.2f}, after '
             f'{summary["machine_after"]["loadavg"][0]:.2f}', '']
    for size, block in summary['sizes'].items():
        lines += max_rate.markdown(block['variants'], size)
    with open(out_dir / 'summary.json', 'w', encoding='utf-8') as stream:
        json.dump(summary, stream, indent=1)
    (out_dir / 'summary.md').write_text('\n'.join(lines), encoding='utf-8')
    summary['markdown'] = '\n'.join(lines)
    summary['out_dir'] = str(out_dir)
    return summary


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every variant at every size; write and return the summary."""
    out_dir = Path(args.out or common.RESULTS / time.strftime('%Y%m%d-%H%M%S'))
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.max_rate:
        return run_max_rate(args, out_dir)
    raw_dir = out_dir / 'raw'
    raw_dir.mkdir(exist_ok=True)
    busy = common.busy_processes()
    machine = common.machine_state()
    model, kind = common.resolve_model(args.model, common.RESULTS / 'models')
    names = args.variant or list(QUICK_VARIANTS if args.quick else VARIANTS)
    from edge_infer_ros.core.shm import unavailable_reason
    shm_missing = unavailable_reason()
    for name in [n for n in names if n.endswith('_iceoryx2')] if shm_missing else []:
        print(f'[suite] {name} left out: {shm_missing}', flush=True)
        names.remove(name)
    sizes = ([tuple(int(v) for v in s.lower().split('x')) for s in args.size] or
             ([SIZES[0]] if args.quick else list(SIZES)))
    frames = args.frames or (60 if args.quick else 300)
    budget = common.budgets(args.budget)
    summary: dict[str, Any] = {
        'quick': args.quick, 'frames': frames, 'fps': args.fps, 'model': model,
        'model_kind': kind, 'machine_before': machine, 'busy_processes': busy,
        'loaded': bool(busy) or machine['cpu_percent_1s'] > 25.0,
        'budget': budget, 'variants_run': names, 'sizes': {}, 'shm_unavailable': shm_missing,
        'baseline_ort_spin': args.baseline_ort_spin,
        'ratio_definition': 'other / composed for the same statistic: > 1 means composed is '
                            'lower (faster)'}
    for width, height in sizes:
        size = f'{width}x{height}'
        entries = {}
        for name in names:
            print(f'[suite] {size} {name} ...', flush=True)
            entries[name] = run_variant(name, model, frames, width, height, args.fps, raw_dir,
                                        args.baseline_ort_spin)
            entry = entries[name]
            if 'error' in entry:
                print(f'[suite]   FAILED: {entry["error"][-300:]}', flush=True)
            else:
                print(f'[suite]   e2e p50 {entry["end_to_end"]["p50_ms"]:.2f} ms, p99 '
                      f'{entry["end_to_end"]["p99_ms"]:.2f} ms, {entry["frames_recorded"]} '
                      f'frames, CPU {entry["cpu"]["cpu_percent"]:.0f}%', flush=True)
        pictures = {'stacked_p95': f'stacked_p95_{size}.png', 'e2e_cdf': f'e2e_cdf_{size}.png'}
        plot_stacked(entries, budget, size, out_dir / pictures['stacked_p95'])
        plot_cdf(entries, budget['deadline'], size, out_dir / pictures['e2e_cdf'])
        summary['sizes'][size] = {'variants': entries, 'ratios': ratios(entries),
                                  'composed_over_seed_loop': composed_over_seed(entries),
                                  'pictures': pictures}
        int8_model = args.int8_model or precision_int8(model)
        if args.precision and int8_model and 'composed' in entries:
            fp32_runs, int8_runs = [entries['composed']], []
            for round_index in range(args.precision_rounds):
                round_dir = raw_dir / f'round{round_index + 1}' if round_index else raw_dir
                round_dir.mkdir(exist_ok=True)  # each round's records and log kept
                if round_index:
                    print(f'[suite] {size} composed, FP32 model, round {round_index + 1} ...',
                          flush=True)
                    fp32_runs.append(run_variant('composed', model, frames, width, height,
                                                 args.fps, round_dir, args.baseline_ort_spin))
                print(f'[suite] {size} composed with the INT8 model, round {round_index + 1} '
                      '...', flush=True)
                int8_runs.append(run_variant('composed_int8', int8_model, frames, width, height,
                                             args.fps, round_dir, args.baseline_ort_spin))
            table = precision_table(median_entry(fp32_runs), median_entry(int8_runs))
            table['rounds'] = args.precision_rounds
            summary['sizes'][size]['precision'] = table
        if args.saturation and 'seed_loop' in names and 'composed' in names:
            print(f'[suite] {size} saturation (seed_loop, composed) ...', flush=True)
            sat = saturation(model, frames, width, height, raw_dir, args.baseline_ort_spin)
            summary['sizes'][size]['saturation'] = sat
            for run_name, run_entry in sat['variants'].items():
                if run_entry.get('error'):
                    print(f'[suite]   {run_name} FAILED: {run_entry["error"][-300:]}',
                          flush=True)
                else:
                    print(f'[suite]   {run_name} {run_entry["throughput_fps"]:.1f} fps, e2e '
                          f'p99 {run_entry["end_to_end"]["p99_ms"]:.2f} ms', flush=True)
    if args.precision:
        print('[suite] FP32 vs INT8 inference and mAP ...', flush=True)
        extra = ['--model', model] + (['--int8', args.int8_model] if args.int8_model else [])
        summary['precision'] = _run_json_tool(
            'bench.precision', extra + (['--quick'] if args.quick else []), raw_dir,
            'precision', 900.0)
    if not args.no_monitor:
        print('[suite] monitor overhead ...', flush=True)
        summary['monitor_overhead'] = _run_json_tool(
            'bench.monitor_overhead', ['--model', model] + (['--quick'] if args.quick else []),
            raw_dir, 'monitor_overhead', 300.0)
    if args.hop:
        print('[suite] hop ...', flush=True)
        hop = _run_json_tool('bench.hop', ['--quick'] if args.quick else [], raw_dir, 'hop',
                             600.0)
        if 'error' not in hop:
            from bench.hop import format_table
            hop['table'] = format_table(hop)
        summary['hop'] = hop
    if args.foreign:
        print('[suite] foreign publisher ...', flush=True)
        summary['foreign'] = _run_json_tool(
            'bench.foreign_publisher', ['--model', model] + (['--quick'] if args.quick else []),
            raw_dir, 'foreign_publisher', 1800.0)
    summary['machine_after'] = common.machine_state()
    with open(out_dir / 'summary.json', 'w', encoding='utf-8') as stream:
        json.dump(summary, stream, indent=1)
    (out_dir / 'summary.md').write_text(markdown(summary), encoding='utf-8')
    summary['out_dir'] = str(out_dir)
    return summary


def precision_markdown(summary: dict[str, Any]) -> list[str]:
    """Lay out the FP32 vs INT8 table (composed end to end, inference, CPU, mAP)."""
    prec = summary.get('precision')
    if not prec:
        return []
    lines = ['## FP32 vs INT8 (QDQ, quantize_model)', '']
    if 'error' in prec:
        return lines + [f'- failed: {prec["error"]}', '']
    shipped = prec.get('shipped', {})
    maps = shipped.get('map', {})
    for size, block in summary['sizes'].items():
        table = block.get('precision')
        if not table or 'error' in table or 'fp32' not in shipped:
            continue
        rounds = table.get('rounds', 1)
        lines += [f'### Shipped model, composed pipeline, {size}'
                  + (f' (median of {rounds} alternated runs each)' if rounds > 1 else ''), '',
                  '| model | inference p50 | detector stage p50 | e2e p50 | e2e p99 | '
                  'CPU per frame | mAP@0.5 | mAP@0.5:0.95 |',
                  '| --- | --- | --- | --- | --- | --- | --- | --- |']
        for name in ('fp32', 'int8'):
            row = table[name]
            lines.append(f'| {name} | {_ms(shipped[name]["p50_ms"])} | '
                         f'{_ms(row["detector_p50_ms"])} | {_ms(row["e2e_p50_ms"])} | '
                         f'{_ms(row["e2e_p99_ms"])} | {_ms(row["cpu_ms_per_frame"])} | '
                         f'{maps.get(name, {}).get("map50", float("nan")):.4f} | '
                         f'{maps.get(name, {}).get("map50_95", float("nan")):.4f} |')
        r = table['int8_over_fp32']
        lines.append(f'| int8 / fp32 | {_x(shipped.get("int8_over_fp32_p50"))} | '
                     f'{_x(r["detector_p50_ms"])} | {_x(r["e2e_p50_ms"])} | '
                     f'{_x(r["e2e_p99_ms"])} | {_x(r["cpu_ms_per_frame"])} | | |')
        lines.append('')
    y8 = prec.get('yolov8_shaped')
    if y8 and 'fp32' in y8:
        lines += [f'- {y8["model"]}, quantized by quantize_model ({y8["chosen"]}, agreement '
                  f'F1 with FP32 {y8["agreement_f1"]:.3f}): inference p50 FP32 '
                  f'{_ms(y8["fp32"]["p50_ms"])}, INT8 {_ms(y8["int8"]["p50_ms"])}, ratio '
                  f'{_x(y8["int8_over_fp32_p50"])}', '']
    return lines


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Return the command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='short form for CI: 60 frames, 640x480, variants '
                             + ', '.join(QUICK_VARIANTS)
                             + ', saturation of seed_loop and composed, no hop')
    parser.add_argument('--out', default='', help='result folder (default '
                        'bench/results/<timestamp>)')
    parser.add_argument('--model', default='', help='ONNX model (default: the shipped one, '
                        'else a stand-in built with test/support/onnx_models.py)')
    parser.add_argument('--frames', type=int, default=0, help='frames per variant '
                        '(default 300, --quick 60)')
    parser.add_argument('--fps', type=float, default=30.0)
    parser.add_argument('--size', action='append', default=[],
                        help='WxH (repeatable; default 640x480 and 1920x1080)')
    parser.add_argument('--variant', action='append', default=[], choices=tuple(VARIANTS),
                        help='run only these variants (repeatable)')
    parser.add_argument('--budget', default='', help='budget file (default config/budget.yaml)')
    parser.add_argument('--hop', dest='hop', action='store_true', default=None,
                        help='also run bench/hop.py (default: yes, except with --quick)')
    parser.add_argument('--no-hop', dest='hop', action='store_false')
    parser.add_argument('--foreign', dest='foreign', action='store_true', default=None,
                        help='also run bench/foreign_publisher.py (default: yes, except with '
                             '--quick)')
    parser.add_argument('--no-foreign', dest='foreign', action='store_false')
    parser.add_argument('--baseline-ort-spin', action='store_true',
                        help="run (1) and (2) with ONNX Runtime's default spin-waiting threads "
                             "(default: configured like the package's detector)")
    parser.add_argument('--no-saturation', dest='saturation', action='store_false',
                        help='skip the saturation runs of (1) and (3)')
    parser.add_argument('--no-precision', dest='precision', action='store_false',
                        help='skip FP32 vs INT8 (composed end to end, inference, mAP)')
    parser.add_argument('--precision-rounds', type=int, default=1,
                        help='composed FP32 and INT8 runs, alternated, this many each; the '
                             'table takes the median of each figure (default 1)')
    parser.add_argument('--int8-model', default='',
                        help='INT8 model to compare (default: <model>_int8.onnx beside it)')
    parser.add_argument('--no-monitor', action='store_true',
                        help='skip bench/monitor_overhead.py')
    parser.add_argument('--max-rate', action='store_true',
                        help='instead of the runs above: the highest rate the composed '
                             'pipeline, the seed loop and the rclpy nodes each sustain with '
                             '<= 5%% of frames missed, searched as ros2_benchmark does '
                             '(bench/max_rate.py; default size 640x480)')
    parser.add_argument('--max-rate-seconds', type=float, default=3.0,
                        help='length of one max-rate probe (default 3 s)')
    parser.add_argument('--max-rate-final-seconds', type=float, default=5.0,
                        help='then one run this long at each rate found, whose figures fill '
                             "the table (ros2_benchmark's benchmark_duration; default 5 s, 0: "
                             'none, the last passing probe instead)')
    parser.add_argument('--max-rate-window', type=float, nargs=2, default=(10.0, 400.0),
                        metavar=('LOW', 'HIGH'), help='search window, Hz (default 10 400)')
    args = parser.parse_args(argv)
    if args.hop is None:
        args.hop = not args.quick
    if args.foreign is None:
        args.foreign = not args.quick
    if args.frames < 0 or args.fps <= 0:
        parser.error('--frames must be >= 0 and --fps > 0')
    if args.precision_rounds < 1:
        parser.error('--precision-rounds must be >= 1')
    return args


def main(argv: Optional[list[str]] = None) -> int:
    """Command line entry point."""
    summary = run(parse_args(argv))
    if summary.get('mode') == 'max_rate':
        print(summary['markdown'])
        print(f'\n[suite] results in {summary["out_dir"]}')
        return 0 if all(not e['at_lower_bound'] for b in summary['sizes'].values()
                        for e in b['variants'].values()) else 1
    print(markdown(summary))
    print(f'\n[suite] results in {summary["out_dir"]}')
    failed = [f'{size} {name}' for size, block in summary['sizes'].items()
              for name, entry in block['variants'].items() if 'error' in entry]
    failed += [f'{size} {name} saturation' for size, block in summary['sizes'].items()
               for name, entry in (block.get('saturation') or {}).get('variants', {}).items()
               if entry.get('error')]
    if failed:
        print('[suite] FAILED variants: ' + ', '.join(failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
