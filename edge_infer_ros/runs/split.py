"""
The split run: one process per stage (or group), with the budget monitor in this process.

Frames go by the same-host transport (``same_host``: iceoryx2 where it imports) and DDS, as
the launch files run them on a robot; frames are counted across the processes from their
/diagnostics.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

from edge_infer_ros.core.resources import config_path
from edge_infer_ros.core.shape import FRAME_STAGES
from edge_infer_ros.ros import diagnostic_keys as keys, topics
from edge_infer_ros.ros.container import Container
from edge_infer_ros.ros.same_host import choose_same_host
from edge_infer_ros.runs.options import component_specs, RunOptions
from edge_infer_ros.runs.report import build_report, TraceCollector, transport_loss
import rclpy
from rclpy.node import Node
import yaml

#: Split layouts: which stages share a process, and what crosses between processes.
SPLIT_GROUPS = {
    'raw': tuple((stage,) for stage in FRAME_STAGES),
    'compressed': tuple((stage,) for stage in FRAME_STAGES),
    # Cut where the tensor crosses: the preprocessing with the camera, the model onwards.
    'tensor': (FRAME_STAGES[:FRAME_STAGES.index('detector')],
               FRAME_STAGES[FRAME_STAGES.index('detector'):]),
}
#: The stages a frame passes after the camera: what the split run counts frames through.
SPLIT_STAGES = FRAME_STAGES[1:]
#: Fast DDS reads its XML profile from this variable in every process it starts in.
DDS_PROFILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'
TRANSPORT_TEXT = {
    'raw': 'one process per stage, sensor_msgs/Image raw',
    'compressed': 'one process per stage, sensor_msgs/CompressedImage (JPEG)',
    'tensor': 'camera+preprocess | detector+nms+action, TensorFrame',
}


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


def split_transport_loss(listener: '_DiagnosticsListener') -> dict[str, Any]:
    """
    Frames DDS lost on the way into each stage process, as its diagnostics count them.

    Only the frame path counts: the budget monitor's inputs are traces from every stage on
    one topic, which an rmw without publisher ids (Jazzy) cannot count, and a lost trace is
    not a lost frame.
    """
    return transport_loss({name: values[keys.FRAMES_LOST_IN_TRANSPORT]
                           for name, values in listener.latest.items()
                           if keys.FRAMES_LOST_IN_TRANSPORT in values and
                           name.rpartition(': ')[2] in SPLIT_STAGES})


def _change_state(node: Node, executor: Any, target: str, transition: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    client: Any = node.create_client(ChangeState, f'{target}/change_state')
    if not client.wait_for_service(timeout_sec=30.0):
        return False
    future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
    executor.spin_until_future_complete(future, timeout_sec=30.0)
    return bool(future.result() and future.result().success)


def split_run_options(options: RunOptions) -> RunOptions:
    """
    Return the split run's own options: the camera waits for the run to activate it.

    A copy: the caller's options (and their ``extra`` dicts) stay as given, so the same
    options can start another run, a composed one included.
    """
    extra = {name: dict(values) for name, values in options.extra.items()}
    extra.setdefault('camera', {})['autostart'] = False
    return dataclasses.replace(options, extra=extra)


def _start_group(options: RunOptions, group: tuple[str, ...], index: int,
                 workdir: str) -> subprocess.Popen:
    """Write one group's composition file and start its component container process."""
    composition = os.path.join(workdir, f'group{index}.yaml')
    with open(composition, 'w', encoding='utf-8') as stream:
        yaml.safe_dump([{'plugin': s.plugin, 'name': s.name, 'namespace': s.namespace,
                         'remaps': [list(r) for r in s.remaps],
                         'param_files': list(s.param_files),
                         'parameters': s.parameters}
                        for s in component_specs(options, set(group))], stream)
    return subprocess.Popen(
        [sys.executable, '-m', 'edge_infer_ros.ros.component_container', '--composition',
         composition, '--ros-args', '-r', f'__node:=group{index}_container'],
        env=split_environment())


class _Discovery:
    """What the runner's node sees of the stage processes, and waiting on it."""

    def __init__(self, node: Node, listener: _DiagnosticsListener, executor: Any,
                 processes: list[subprocess.Popen], namespace: str) -> None:
        self.node = node
        self.listener = listener
        self.executor = executor
        self.processes = processes
        self.ns = '/' + namespace.strip('/') if namespace else ''

    def connected(self, topics: list[str], need_publisher: bool = True) -> bool:
        """Tell whether every topic has a subscriber (and a publisher) in the graph."""
        return all(self.node.count_subscribers(f'{self.ns}/{t}') > 0 and
                   (not need_publisher or self.node.count_publishers(f'{self.ns}/{t}') > 0)
                   for t in topics)

    def wait_until(self, condition: Any, what: str) -> None:
        """Spin until the condition holds; a stage process gone or 60 s: an error."""
        deadline = time.monotonic() + 60.0
        while not condition():
            self.executor.spin_once(timeout_sec=0.1)
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f'a stage process exited while waiting for {what}')
            if time.monotonic() > deadline:
                raise RuntimeError(f'the split pipeline did not connect within 60 s: {what}')


def _start_camera(options: RunOptions, discovery: _Discovery) -> None:
    """
    Configure, then activate the camera process once every hop is connected and matched.

    Wait until every hop has a publisher and a subscriber (the camera's publisher exists
    once it is configured), then start the camera: no frame is lost to discovery.
    """
    from lifecycle_msgs.msg import Transition
    node, executor, ns = discovery.node, discovery.executor, discovery.ns
    first_hop = (topics.IMAGE_RAW + '/compressed' if options.transport == 'compressed'
                 else topics.IMAGE_RAW)
    hops = list(topics.STAGE_HOPS)
    discovery.wait_until(lambda: discovery.connected(hops) and
                         discovery.connected([first_hop], need_publisher=False), 'the stages')
    camera = f'{ns}/camera'
    if not _change_state(node, executor, camera, Transition.TRANSITION_CONFIGURE):
        raise RuntimeError('could not configure the camera process')
    discovery.wait_until(lambda: discovery.connected([first_hop]), 'the camera')
    discovery.wait_until(
        lambda: hops_matched(discovery.listener, [f'{ns}/{t}' for t in [first_hop] + hops]),
        'DDS matching of every hop')
    for _ in range(10):  # let discovery between the stage processes settle
        executor.spin_once(timeout_sec=0.05)
    if not _change_state(node, executor, camera, Transition.TRANSITION_ACTIVATE):
        raise RuntimeError('could not activate the camera process')


def _wait_run_over(options: RunOptions, listener: _DiagnosticsListener, monitor: Any,
                   started: float) -> None:
    """Wait for the frames asked for (or a recording's end), then for the monitor to settle."""
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


def _split_backend(listener: _DiagnosticsListener) -> dict[str, Any]:
    """Return the detector's backend, as its process reports it in /diagnostics."""
    values = next((v for k, v in listener.latest.items() if k.endswith(': detector')), {})
    return {'name': values.get(keys.BACKEND, 'unknown'),
            'description': values.get(keys.BACKEND_DESCRIPTION, ''),
            'fallback_reason': values.get(keys.FALLBACK_REASON)}


def _transport_text(options: RunOptions) -> str:
    """Say what crosses between the processes, and how, for the report."""
    chosen = choose_same_host(options.same_host)
    if chosen.transport is not None:
        way = f'{chosen.name} shared memory (DDS for what it cannot carry)'
    else:  # asked for dds, or auto or a transport that is not usable here: say why
        way = 'DDS' if options.same_host == 'dds' else f'DDS ({chosen.why})'
    return f'{way}, {TRANSPORT_TEXT[options.transport]}'


def _split_report(options: RunOptions, listener: _DiagnosticsListener, monitor: Any,
                  wall: float, collector: TraceCollector) -> dict[str, Any]:
    """Build the report from the processes' counters and the monitor here."""
    counters = split_counters(listener)
    loss = split_transport_loss(listener)
    backend = _split_backend(listener)
    transport = _transport_text(options)
    # Judged at the last trace: the quiet wait is longer than the stale timeout.
    report = build_report(options, monitor.summary(at_ns=monitor.last_trace_ns or None),
                          counters, backend, wall, collector.snapshot(), transport)
    report['transport_loss'] = loss
    report['dds_profile'] = split_environment().get(DDS_PROFILE_VARIABLE, '')
    return report


def _stop(processes: list[subprocess.Popen]) -> None:
    """Terminate the stage processes; kill those still there after 10 s."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def run_split(options: RunOptions) -> dict[str, Any]:
    """One process per stage (or group), shared memory and DDS between them; monitor here."""
    options = split_run_options(options)
    workdir = tempfile.mkdtemp(prefix='eir_split_')
    processes: list[subprocess.Popen] = []
    context = rclpy.Context()
    rclpy.init(context=context)
    container = Container(context)
    collector = TraceCollector()
    listener_node: Optional[Node] = None
    try:
        for index, group in enumerate(SPLIT_GROUPS[options.transport]):
            processes.append(_start_group(options, group, index, workdir))
        monitor = container.load(component_specs(options, {'budget_monitor'})[0])
        monitor.trace_hooks.append(collector)
        listener_node = Node('pipeline_runner', context=context)
        listener = _DiagnosticsListener(listener_node)
        problems = container.start()
        if problems:
            raise RuntimeError('budget monitor did not start: ' + '; '.join(problems))
        container.executor.add_node(listener_node)
        _start_camera(options, _Discovery(listener_node, listener, container.executor,
                                          processes, options.namespace))
        container.spin_in_background()
        started = time.monotonic()
        _wait_run_over(options, listener, monitor, started)
        return _split_report(options, listener, monitor, time.monotonic() - started, collector)
    finally:
        _stop(processes)
        container.shutdown()
        if listener_node is not None:
            listener_node.destroy_node()  # before shutdown, or its DDS participant outlives us
        rclpy.shutdown(context=context)
        shutil.rmtree(workdir, ignore_errors=True)  # the processes' parameter files
