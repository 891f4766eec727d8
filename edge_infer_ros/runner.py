"""
The main job: run the pipeline on its built-in input and print where the time went.

Over 400 lines: the command line and the two orchestrations (composed, split) it runs, each
short; the report itself is monitor/report.py's.

``composed`` (the default) loads every stage into one process (zero-copy handoff);
``split`` starts one process per stage (or per group, see ``--transport``) talking over DDS
(or iceoryx2 shared memory with ``--same-host iceoryx2``), with the budget monitor in this
process, exactly as the launch files do on a robot. Both read
the same parameter files (config/pipeline.yaml, config/budget.yaml).

The report (printed, and with ``--report-json`` written as JSON for CI gates) comes from the
budget monitor's own numbers: per stage p50/p95/p99/max and queue wait, end to end, frames
captured / processed / dropped, the transport and the backend used.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

from edge_infer_ros.core.frame import FrameTrace
from edge_infer_ros.core.resources import config_path
from edge_infer_ros.monitor.perfetto import write_chrome_trace
from edge_infer_ros.monitor.report import format_table
from edge_infer_ros.ros import diagnostic_keys as keys, topics
from edge_infer_ros.ros.container import ComponentSpec, Container
from edge_infer_ros.ros.graph import FRAME_STAGES, NodeSpec, PIPELINE
from edge_infer_ros.ros.process import refuse_bad_param_files
from edge_infer_ros.ros.same_host import AUTO, choose_same_host, same_host_choices
import numpy as np
import rclpy
from rclpy.node import Node
import yaml

#: Split layouts: which stages share a process, and what crosses between processes.
SPLIT_GROUPS = {
    'raw': tuple((stage,) for stage in FRAME_STAGES),
    'compressed': tuple((stage,) for stage in FRAME_STAGES),
    'tensor': (('camera', 'preprocess'), ('detector', 'nms', 'action')),
}
#: The stages a frame passes after the camera: what the split run counts frames through.
SPLIT_STAGES = FRAME_STAGES[1:]
#: Fast DDS reads its XML profile from this variable in every process it starts in.
DDS_PROFILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'
TRANSPORT_TEXT = {
    'raw': 'DDS, one process per stage, sensor_msgs/Image raw',
    'compressed': 'DDS, one process per stage, sensor_msgs/CompressedImage (JPEG)',
    'tensor': 'DDS, camera+preprocess | detector+nms+action, TensorFrame',
}


@dataclass
class RunOptions:
    """What to run and for how long."""

    mode: str = 'composed'
    transport: str = 'raw'
    frames: int = 300
    width: int = 640
    height: int = 480
    #: Camera rate; None: the config file's (a recording replays at its own pace anyway).
    fps: Optional[float] = 30.0
    seed: int = 0
    backend: str = 'onnxruntime'
    model_path: str = ''
    config: str = ''
    budget: str = ''
    namespace: str = ''
    report_json: str = ''
    profile: str = ''
    timeout_s: float = 0.0
    same_host: str = AUTO
    #: A bag to replay instead of the synthetic camera, and its image topic ('': the only one).
    bag: str = ''
    bag_topic: str = ''
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rate(self) -> float:
        """Return the camera rate in force: the option, else the config file's, else 30."""
        if self.fps is not None:
            return self.fps
        try:
            with open(self.config or config_path('pipeline.yaml'), encoding='utf-8') as stream:
                sections = yaml.safe_load(stream) or {}
            return float(sections['/**/camera']['ros__parameters']['fps'])
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
            return 30.0

    def run_limit_s(self) -> float:
        """Return how long a run may take: frames at the rate, a whole bag at most an hour."""
        if self.timeout_s:
            return self.timeout_s
        if not self.frames:
            return 3600.0
        return max(30.0, 3.0 * self.frames / self.rate() + 20.0)

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Parameters the command line sets, per node name."""
        result: dict[str, dict[str, Any]] = {
            'camera': {'max_frames': self.frames, 'width': self.width, 'height': self.height,
                       'seed': self.seed},
            'detector': {'backend': self.backend},
            # The camera starts once every stage is active and warm: the report judges every
            # frame (the start-up grace is for drivers that start before the pipeline).
            'action': {'deadline_grace_s': 0.0},
            'budget_monitor': {'deadline_grace_s': 0.0},
        }
        if self.fps is not None:
            result['camera']['fps'] = self.fps
            result['detector']['expected_fps'] = self.fps
        if self.bag:
            result['camera'].update({'source': 'bag', 'uri': self.bag,
                                     'bag_topic': self.bag_topic})
        if self.model_path:
            for name in ('preprocess', 'detector'):
                result.setdefault(name, {})['model_path'] = self.model_path
        if self.mode == 'split':
            # Our own camera publishes reliable: take every frame, as a robot's own split
            # pipeline should (best-effort loses fragmented large frames over UDP).
            result.setdefault('preprocess', {})['qos.input.reliability'] = 'reliable'
        if self.mode == 'split' and self.transport == 'compressed':
            result['camera']['publish_compressed'] = True
            result.setdefault('preprocess', {})['input_transport'] = 'compressed'
        if self.mode == 'split':
            for name in ('camera', 'preprocess', 'detector', 'nms', 'action'):
                result.setdefault(name, {})['transport.same_host'] = self.same_host
        for name, values in self.extra.items():
            result.setdefault(name, {}).update(values)
        return result


def component_specs(options: RunOptions, names: Optional[set] = None) -> list[ComponentSpec]:
    """Return the pipeline's components with the parameter files and overrides of a run."""
    files = {'pipeline.yaml': options.config or config_path('pipeline.yaml'),
             'budget.yaml': options.budget or config_path('budget.yaml')}
    overrides = options.overrides()
    specs = []
    for node in PIPELINE:
        if names is not None and node.name not in names:
            continue
        specs.append(_spec(node, options.namespace, files, overrides.get(node.name, {})))
    return specs


def _spec(node: NodeSpec, namespace: str, files: dict[str, str],
          overrides: dict[str, Any]) -> ComponentSpec:
    return ComponentSpec(node.plugin, node.name, namespace, node.remaps,
                         tuple(files[f] for f in node.param_files),
                         {**node.parameters, **overrides})


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


class _DiagnosticsListener:
    """The latest status of each node, from /diagnostics (how split counters are read)."""

    def __init__(self, node: Node) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        self.latest: dict[str, dict[str, str]] = {}
        node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_array, 50)

    def _on_array(self, msg: Any) -> None:
        for status in msg.status:
            self.latest[status.name] = {kv.key: kv.value for kv in status.values}

    def value(self, stage: str, key: str) -> int:
        """Sum a counter over the nodes of a stage kind."""
        total = 0
        for name, values in self.latest.items():
            if name.endswith(f': {stage}') and key in values:
                total += int(float(values[key]))
        return total


def split_counters(listener: '_DiagnosticsListener') -> dict[str, int]:
    """
    Count frames across processes, with DDS losses attributed to the hop they happened on.

    A frame published by one stage and never received by the next was lost in transport
    (best-effort QoS, a full history); every other frame is processed, dropped (keep-latest)
    or failed (error) inside a stage, so the counts must add up to the captured frames.
    """
    captured = listener.value('camera', keys.FRAMES_CAPTURED)
    sent = captured
    lost = 0
    for stage in SPLIT_STAGES:
        received = listener.value(stage, keys.FRAMES_RECEIVED)
        lost += max(0, sent - received)
        sent = listener.value(stage, keys.FRAMES_PUBLISHED)
    return {
        'captured': captured,
        'processed': listener.value('action', keys.COMMANDS),
        'dropped': sum(listener.value(s, keys.FRAMES_DROPPED) for s in SPLIT_STAGES),
        'errors': sum(listener.value(s, keys.FRAME_ERRORS) for s in SPLIT_STAGES),
        'lost_in_transport': lost,
    }


def hops_matched(listener: '_DiagnosticsListener', topics: list[str]) -> bool:
    """Tell whether every topic's publisher and subscription report each other matched."""
    def most(key: str) -> Optional[int]:
        counts = [int(v[key]) for v in listener.latest.values() if key in v]
        return max(counts) if counts else None

    for topic in topics:
        subscriptions = most(keys.matched_subscriptions(topic))
        publishers = most(keys.matched_publishers(topic))
        if not subscriptions or publishers == 0:  # None: an rclpy without the count
            return False
    return True


def split_environment() -> dict[str, str]:
    """
    Return the environment of the stage processes: the package's Fast DDS profile.

    Frames larger than Fast DDS's default shared-memory segment go over fragmented UDP, where
    best-effort readers lose them; the profile must be set in the publishing processes. A
    profile the user chose (the variable set, even empty) is kept.
    """
    env = os.environ.copy()
    env.setdefault(DDS_PROFILE_VARIABLE, config_path('fastdds_shm.xml'))
    return env


def _transport_loss(per_node: dict[str, str]) -> dict[str, Any]:
    """Sum the nodes' frames_lost_in_transport; None (not 0) when any cannot tell."""
    known = [int(v) for v in per_node.values() if v.isdigit()]
    counted = sum(known) if len(known) == len(per_node) else None
    return {'counted': counted, 'per_node': per_node,
            'counting': 'publication sequence numbers' if counted is not None else
            'unavailable on this middleware for ' + ', '.join(
                n for n, v in per_node.items() if not v.isdigit())}


def split_transport_loss(listener: '_DiagnosticsListener') -> dict[str, Any]:
    """
    Frames DDS lost on the way into each stage process, as its diagnostics count them.

    Only the frame path counts: the budget monitor's inputs are traces from every stage on
    one topic, which an rmw without publisher ids (Jazzy) cannot count, and a lost trace is
    not a lost frame.
    """
    return _transport_loss({name: values[keys.FRAMES_LOST_IN_TRANSPORT]
                            for name, values in listener.latest.items()
                            if keys.FRAMES_LOST_IN_TRANSPORT in values and
                            name.rpartition(': ')[2] in SPLIT_STAGES})


def composed_transport_loss(nodes: dict[str, Any]) -> dict[str, Any]:
    """Frames DDS lost on the way into the composed pipeline (a camera driver's topic)."""
    per_node = {}
    for name, node in nodes.items():
        lost = node.frames_lost_in_transport() if hasattr(node, 'frames_lost_in_transport') \
            else None
        per_node[name] = 'unknown' if lost is None else str(lost)
    return _transport_loss(per_node)


def _change_state(node: Node, executor: Any, target: str, transition: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    client: Any = node.create_client(ChangeState, f'{target}/change_state')
    if not client.wait_for_service(timeout_sec=30.0):
        return False
    future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
    executor.spin_until_future_complete(future, timeout_sec=30.0)
    return bool(future.result() and future.result().success)


def run_split(options: RunOptions) -> dict[str, Any]:
    """One process per stage (or group), DDS between them; the monitor runs here."""
    from lifecycle_msgs.msg import Transition
    groups = SPLIT_GROUPS[options.transport]
    options.extra.setdefault('camera', {})['autostart'] = False
    workdir = tempfile.mkdtemp(prefix='eir_split_')
    processes = []
    context = rclpy.Context()
    rclpy.init(context=context)
    container = Container(context)
    collector = TraceCollector()
    try:
        for index, group in enumerate(groups):
            composition = os.path.join(workdir, f'group{index}.yaml')
            with open(composition, 'w', encoding='utf-8') as stream:
                yaml.safe_dump([{'plugin': s.plugin, 'name': s.name, 'namespace': s.namespace,
                                 'remaps': [list(r) for r in s.remaps],
                                 'param_files': list(s.param_files),
                                 'parameters': s.parameters}
                                for s in component_specs(options, set(group))], stream)
            processes.append(subprocess.Popen(
                [sys.executable, '-m', 'edge_infer_ros.ros.component_container', '--composition',
                 composition, '--ros-args', '-r', f'__node:=group{index}_container'],
                env=split_environment()))
        monitor = container.load(component_specs(options, {'budget_monitor'})[0])
        monitor.trace_hooks.append(collector)
        listener_node = Node('pipeline_runner', context=context)
        listener = _DiagnosticsListener(listener_node)
        problems = container.start()
        if problems:
            raise RuntimeError('budget monitor did not start: ' + '; '.join(problems))
        executor = container.executor
        executor.add_node(listener_node)
        # Wait until every hop has a publisher and a subscriber (the camera's publisher exists
        # once it is configured), then start the camera: no frame is lost to discovery.
        ns = '/' + options.namespace.strip('/') if options.namespace else ''
        first_hop = (topics.IMAGE_RAW + '/compressed' if options.transport == 'compressed'
                     else topics.IMAGE_RAW)
        hops = list(topics.STAGE_HOPS)

        def connected(topics: list[str], need_publisher: bool = True) -> bool:
            return all(listener_node.count_subscribers(f'{ns}/{t}') > 0 and
                       (not need_publisher or listener_node.count_publishers(f'{ns}/{t}') > 0)
                       for t in topics)

        def wait_until(condition: Any, what: str) -> None:
            deadline = time.monotonic() + 60.0
            while not condition():
                executor.spin_once(timeout_sec=0.1)
                if any(p.poll() is not None for p in processes):
                    raise RuntimeError(f'a stage process exited while waiting for {what}')
                if time.monotonic() > deadline:
                    raise RuntimeError(f'the split pipeline did not connect within 60 s: {what}')

        wait_until(lambda: connected(hops) and connected([first_hop], need_publisher=False),
                   'the stages')
        camera = f'{ns}/camera'
        if not _change_state(listener_node, executor, camera, Transition.TRANSITION_CONFIGURE):
            raise RuntimeError('could not configure the camera process')
        wait_until(lambda: connected([first_hop]), 'the camera')
        wait_until(lambda: hops_matched(listener, [f'{ns}/{t}' for t in [first_hop] + hops]),
                   'DDS matching of every hop')
        for _ in range(10):  # let discovery between the stage processes settle
            executor.spin_once(timeout_sec=0.05)
        if not _change_state(listener_node, executor, camera, Transition.TRANSITION_ACTIVATE):
            raise RuntimeError('could not activate the camera process')
        container.spin_in_background()
        started = time.monotonic()
        limit = options.run_limit_s()
        while time.monotonic() - started < limit:
            captured = listener.value('camera', keys.FRAMES_CAPTURED)
            if options.frames and captured >= options.frames:
                break
            if any(values.get(keys.SOURCE_END, keys.SOURCE_RUNNING) != keys.SOURCE_RUNNING
                   for name, values in listener.latest.items() if name.endswith(': camera')):
                break  # a recording is over
            time.sleep(0.1)
        last, stable = -1, time.monotonic()
        while time.monotonic() - stable < 2.5 and time.monotonic() - started < limit + 10:
            if monitor.traces_seen != last:
                last, stable = monitor.traces_seen, time.monotonic()
            time.sleep(0.05)
        wall = time.monotonic() - started
        counters = split_counters(listener)
        loss = split_transport_loss(listener)
        backend_values = next((v for k, v in listener.latest.items() if k.endswith(': detector')),
                              {})
        backend = {'name': backend_values.get(keys.BACKEND, 'unknown'),
                   'description': backend_values.get(keys.BACKEND_DESCRIPTION, ''),
                   'fallback_reason': backend_values.get(keys.FALLBACK_REASON)}
        transport = TRANSPORT_TEXT[options.transport]
        if options.same_host != 'dds':
            chosen = choose_same_host(options.same_host)
            transport += (f'; {chosen.name} shared memory between the processes'
                          if chosen.transport is not None else
                          f'; DDS between them ({chosen.why})')
        # Judged at the last trace: the quiet wait above is longer than the stale timeout.
        report = build_report(options, monitor.summary(at_ns=monitor.last_trace_ns or None),
                              counters, backend, wall, collector.snapshot(), transport)
        report['transport_loss'] = loss
        report['dds_profile'] = split_environment().get(DDS_PROFILE_VARIABLE, '')
        return report
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        container.shutdown()
        rclpy.shutdown(context=context)


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
