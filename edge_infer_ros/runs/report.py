"""The main job's report: frame traces collected, figures derived, the JSON and the text."""

from __future__ import annotations

import threading
from typing import Any

from edge_infer_ros.core.frame import FrameTrace
from edge_infer_ros.monitor.perfetto import write_chrome_trace
from edge_infer_ros.monitor.report import format_table
from edge_infer_ros.runs.options import RunOptions
import numpy as np


class TraceCollector:
    """Keeps every frame trace the monitor sees (for the overhead figure and the profile)."""

    def __init__(self) -> None:
        self.traces: list[FrameTrace] = []
        self._lock = threading.Lock()

    def __call__(self, trace: FrameTrace) -> None:
        with self._lock:
            self.traces.append(trace)

    def snapshot(self) -> list[FrameTrace]:
        """Return a copy of the traces so far."""
        with self._lock:
            return list(self.traces)


def overhead_stats(traces: list[FrameTrace]) -> dict[str, Any]:
    """End to end minus inference, per frame: what the pipeline itself costs."""
    values = []
    for trace in traces:
        inference = sum(t.service_ns for t in trace.stages if t.stage == 'detector')
        values.append((trace.end_to_end_ns - inference) / 1e6)
    if not values:
        return {'count': 0}
    array = np.asarray(values)
    p50, p95, p99 = np.percentile(array, (50, 95, 99))
    return {'count': len(values), 'p50_ms': float(p50), 'p95_ms': float(p95),
            'p99_ms': float(p99), 'max_ms': float(array.max())}


def overlap_stats(traces: list[FrameTrace]) -> dict[str, Any]:
    """
    How often preprocess of frame N+1 ran while frame N was still in the detector.

    Stages on their own threads overlap: the camera and preprocess go on with the next frame
    while the detector works, so throughput is set by the slowest stage, not by their sum.
    """
    by_camera: dict[str, list[FrameTrace]] = {}
    for trace in traces:
        by_camera.setdefault(trace.camera, []).append(trace)
    pairs = overlapped = 0
    for frames in by_camera.values():
        frames.sort(key=lambda t: t.seq)
        for current, following in zip(frames, frames[1:]):
            detector = next((t for t in current.stages if t.stage == 'detector'), None)
            preprocess = next((t for t in following.stages if t.stage == 'preprocess'), None)
            if detector is None or preprocess is None:
                continue
            pairs += 1
            overlapped += preprocess.start_ns < detector.end_ns
    return {'pairs': pairs, 'overlapped': overlapped,
            'fraction': overlapped / pairs if pairs else 0.0}


def transport_loss(per_node: dict[str, str]) -> dict[str, Any]:
    """Sum the nodes' frames_lost_in_transport; None (not 0) when any cannot tell."""
    known = [int(v) for v in per_node.values() if v.isdigit()]
    counted = sum(known) if len(known) == len(per_node) else None
    return {'counted': counted, 'per_node': per_node,
            'counting': 'publication sequence numbers' if counted is not None else
            'unavailable on this middleware for ' + ', '.join(
                n for n, v in per_node.items() if not v.isdigit())}


def build_report(options: RunOptions, summary: dict[str, Any], counters: dict[str, int],
                 backend: dict[str, Any], wall_s: float, traces: list[FrameTrace],
                 transport: str) -> dict[str, Any]:
    """Build the JSON report: the monitor's summary plus counters, transport, backend."""
    cameras = summary.get('cameras', {})
    first: dict[str, Any] = next(iter(cameras.values()), {})
    stages = {name: first['stages'][name] for name in first.get('stages', {})}
    report = {
        'mode': options.mode,
        'transport': transport,
        'backend': backend['name'],
        'backend_description': backend['description'],
        'backend_fallback_reason': backend['fallback_reason'],
        'resolution': [options.width, options.height],
        'fps_setting': options.rate(),
        'bag': options.bag,
        'wall_s': wall_s,
        'throughput_fps': counters['processed'] / wall_s if wall_s > 0 else 0.0,
        'frames': counters,
        'accounting_ok': (counters['captured'] == counters['processed'] + counters['dropped'] +
                          counters['errors'] + counters['lost_in_transport']),
        'stages': stages,
        'ingest': first.get('ingest'),
        'transport_hops': first.get('transport'),
        'end_to_end': first.get('end_to_end'),
        'overhead': overhead_stats(traces),
        'overlap': overlap_stats(traces),
        'deadline_misses': first.get('deadline_misses', 0),
        'deadline_ms': summary.get('deadline_ms'),
        'clock_jumps': summary.get('clock_jumps', 0),
        'cameras': cameras,
    }
    if options.profile:
        report['profile_events'] = write_chrome_trace(options.profile, traces)
        report['profile'] = options.profile
    return report


def format_report(report: dict[str, Any]) -> str:
    """Lay out the printed latency report."""
    frames = report['frames']
    source = (f'bag {report["bag"]} at its recorded pace' if report.get('bag') else
              f'{report["resolution"][0]}x{report["resolution"][1]} @ '
              f'{report["fps_setting"]:g} fps')
    lines = [
        f'edge_infer_ros pipeline: {report["mode"]} ({report["transport"]}), backend '
        f'{report["backend"]}, {source}',
        format_table({'cameras': report['cameras'],
                      'deadline_ms': report['deadline_ms']}).rstrip(),
        f'frames: captured {frames["captured"]}, processed {frames["processed"]}, dropped '
        f'{frames["dropped"]}, errors {frames["errors"]}, lost in transport '
        f'{frames["lost_in_transport"]} ({"accounted" if report["accounting_ok"] else "MISMATCH"})'
        f'; throughput {report["throughput_fps"]:.1f} fps; deadline misses '
        f'{report["deadline_misses"]}',
    ]
    if report.get('clock_jumps'):
        lines.append(f'the ROS clock jumped {report["clock_jumps"]} time(s) (a bag that loops, '
                     'a simulator reset): the windows above restarted at the last jump')
    loss = report.get('transport_loss')
    if loss:
        lines.append('frames lost in transport, counted from sequence numbers: ' + (
            str(loss['counted']) if loss['counted'] is not None else loss['counting']))
    overhead = report['overhead']
    if overhead.get('count'):
        lines.append(f'pipeline overhead (end to end minus inference): p50 '
                     f'{overhead["p50_ms"]:.3f} ms, p99 {overhead["p99_ms"]:.3f} ms')
    overlap = report['overlap']
    if overlap['pairs']:
        lines.append(f'overlap: preprocess of frame N+1 ran during inference of frame N in '
                     f'{overlap["overlapped"]} of {overlap["pairs"]} frame pairs')
    if report.get('backend_fallback_reason'):
        lines.append(f'WARNING backend fell back: {report["backend_fallback_reason"]}')
    if report.get('profile'):
        lines.append(f'profile: {report["profile"]} ({report["profile_events"]} events; open '
                     'in ui.perfetto.dev)')
    return '\n'.join(lines)
