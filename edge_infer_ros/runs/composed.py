"""The composed run: every stage in this process, frames handed on by reference."""

from __future__ import annotations

import time
from typing import Any

from edge_infer_ros.ros.container import Container
from edge_infer_ros.runs.options import component_specs, RunOptions
from edge_infer_ros.runs.report import build_report, TraceCollector, transport_loss
import rclpy


def _wait_settled(monitor: Any, inputs: list, timeout_s: float) -> None:
    """Wait until no frame is in flight and the monitor has seen every trace."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        seen = monitor.traces_seen
        busy = any(not i.idle() for i in inputs)
        if seen != last or busy:
            last, stable_since = seen, time.monotonic()
        elif time.monotonic() - stable_since > 0.3:
            return
        time.sleep(0.02)


def run_composed(options: RunOptions) -> dict[str, Any]:
    """Every stage in this process: frames handed on by reference."""
    context = rclpy.Context()
    rclpy.init(context=context)
    container = Container(context)
    collector = TraceCollector()
    try:
        nodes = {spec.name: container.load(spec) for spec in component_specs(options)}
        monitor = nodes['budget_monitor']
        monitor.trace_hooks.append(collector)
        container.spin_in_background()
        problems = container.start()
        if problems:
            raise RuntimeError('pipeline did not start: ' + '; '.join(problems))
        started = time.monotonic()
        camera = nodes['camera']
        camera.wait_until_done(options.run_limit_s())
        if camera.active:
            camera.trigger_deactivate()
        inputs = [i for n in nodes.values() for i in getattr(n, 'inputs', [])]
        _wait_settled(monitor, inputs, 10.0)
        wall = time.monotonic() - started
        stage_nodes = [nodes[n] for n in ('preprocess', 'detector', 'nms', 'action')]
        counters = {
            'captured': camera.captured,
            'processed': nodes['action'].commands,
            'dropped': sum(i.stats.dropped for n in stage_nodes for i in n.inputs),
            'errors': sum(n.error_count() for n in stage_nodes),
            'lost_in_transport': 0,
        }
        detector = nodes['detector']
        backend = {'name': detector.backend.name if detector.backend else 'none',
                   'description': detector.backend.description if detector.backend else '',
                   'fallback_reason': detector.fallback_reason}
        messages_built = sum(o.stats.messages_built for n in nodes.values()
                             for o in getattr(n, 'outputs', []))
        report = build_report(options, monitor.summary(), counters, backend, wall,
                              collector.snapshot(), 'in-process, zero-copy')
        report['messages_built'] = messages_built
        report['transport_loss'] = composed_transport_loss(nodes)
        return report
    finally:
        container.shutdown()
        rclpy.shutdown(context=context)


def composed_transport_loss(nodes: dict[str, Any]) -> dict[str, Any]:
    """Frames DDS lost on the way into the composed pipeline (a camera driver's topic)."""
    per_node = {}
    for name, node in nodes.items():
        lost = node.frames_lost_in_transport() if hasattr(node, 'frames_lost_in_transport') \
            else None
        per_node[name] = 'unknown' if lost is None else str(lost)
    return transport_loss(per_node)
