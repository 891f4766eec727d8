"""
Frames from another process: a stand-in camera driver into this package, against plain rclpy.

Each case runs in a fresh process whose environment has the package's Fast DDS profile
(config/fastdds_shm.xml) or not, and starts the stand-in driver (:mod:`bench.foreign_camera`,
a separate plain rclpy process stamping its own frames) with the same environment. The
subscriber is one of:

* ``plain``: a plain rclpy node and subscription, ``SingleThreadedExecutor`` spinning (the
  baseline: what any ROS 2 node pays for the same hop);
* ``package``: this package's composed pipeline with ``camera.source: topic``.

Per case: frames delivered / sent, frames the package counted lost (sequence-number gaps;
``exact``: delivered + counted lost = sent), the ingest hop (driver's stamp -> first stage's
receipt; for ``plain``, -> the callback) p50/p99 and, for ``package``, end to end p50/p99.
The driver sends a tiny frame first and last (``--bracket``), so the gap count covers every
large frame.

``python -m bench.foreign_publisher [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Optional

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from edge_infer_ros.core.resources import config_path  # noqa: E402

SIZES = ((640, 480), (1920, 1080))
RELIABILITIES = ('best_effort', 'reliable')
SUBSCRIBERS = ('plain', 'package')
VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'
TOPIC = '/image_in'


def camera_command(args: argparse.Namespace, sent_path: str) -> list[str]:
    """Return the command line of the stand-in driver for a case."""
    return [sys.executable, '-m', 'bench.foreign_camera', '--topic', TOPIC, '--width',
            str(args.width), '--height', str(args.height), '--fps', str(args.fps), '--frames',
            str(args.frames), '--reliability', args.reliability, '--bracket', '--json',
            sent_path]


def _start_camera(args: argparse.Namespace, sent_path: str) -> subprocess.Popen:
    return subprocess.Popen(camera_command(args, sent_path), cwd=str(common.REPO),
                            env=os.environ.copy())


def _finish_camera(camera: subprocess.Popen, timeout: float) -> None:
    try:
        camera.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        camera.kill()
        camera.wait()
    if camera.returncode != 0:
        raise RuntimeError(f'the stand-in camera exited with status {camera.returncode}')


def measure_plain(args: argparse.Namespace, sent_path: str) -> dict[str, Any]:
    """Run a plain rclpy subscriber; return receipt stamps of every frame (the baseline)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = Node('plain_subscriber')
    received: list[tuple[int, int]] = []

    def on_image(msg: Image) -> None:
        now = time.time_ns()
        received.append((msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, now))

    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE
                     if args.reliability == 'reliable' else ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(Image, TOPIC, on_image, qos)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    camera = _start_camera(args, sent_path)
    try:
        _finish_camera(camera, 3.0 * args.frames / args.fps + 60.0)
        time.sleep(0.5)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return {'received': received, 'lost_counted': None}


def measure_package(args: argparse.Namespace, sent_path: str, model: str,
                    start: Optional[Callable[[], subprocess.Popen]] = None,
                    keep: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """
    Run this package composed, camera.source topic; return the traces and the counters.

    ``start`` starts the driver (default: the stand-in with this process's environment);
    ``keep`` receives the camera's diagnostics status before the pipeline is shut down.
    """
    import rclpy
    from edge_infer_ros.ros.container import Container
    from edge_infer_ros.runs.options import component_specs, RunOptions
    options = RunOptions(model_path=model, width=args.width, height=args.height,
                         fps=args.fps, frames=args.frames)
    options.extra = {'camera': {'source': 'topic', 'max_frames': 0,
                                'qos.input.reliability': args.reliability}}
    context = rclpy.Context()
    rclpy.init(context=context)
    container = Container(context)
    traces: list[Any] = []
    try:
        nodes = {spec.name: container.load(spec) for spec in component_specs(options)}
        nodes['budget_monitor'].trace_hooks.append(traces.append)
        container.spin_in_background()
        problems = container.start()
        if problems:
            raise RuntimeError('pipeline did not start: ' + '; '.join(problems))
        camera = start() if start is not None else _start_camera(args, sent_path)
        _finish_camera(camera, 3.0 * args.frames / args.fps + 60.0)
        inputs = [i for n in nodes.values() for i in getattr(n, 'inputs', [])]
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and any(not i.idle() for i in inputs):
            time.sleep(0.05)
        time.sleep(0.5)
        camera_node = nodes['camera']
        camera_input = camera_node.inputs[0]
        received = [(t.stamp_ns, t.stages[0].received_ns, t.end_to_end_ns) for t in traces
                    if t.stages]
        if keep is not None:
            keep['camera_status'] = camera_node.stage_status()
        tracker = camera_node.transport_loss[TOPIC]
        series = tracker.all_series()
        return {'received_count': camera_input.stats.received,
                'series': [(s.first_seq, s.last_seq) for s in series],
                'traces': received, 'lost_counted': camera_node.frames_lost_in_transport(),
                'dropped': sum(i.stats.dropped for n in nodes.values()
                               for i in getattr(n, 'inputs', [])),
                'processed': nodes['action'].commands}
    finally:
        container.shutdown()
        rclpy.shutdown(context=context)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run one case in this process (its environment decides the profile)."""
    model, _ = common.resolve_model(args.model, common.RESULTS / 'models')
    with tempfile.TemporaryDirectory(prefix='eir_foreign_') as workdir:
        sent_path = os.path.join(workdir, 'sent.json')
        if args.subscriber == 'plain':
            got = measure_plain(args, sent_path)
        else:
            got = measure_package(args, sent_path, model)
        sent = json.loads(Path(sent_path).read_text(encoding='utf-8'))
    return case_result(args.subscriber, sent, got)


def case_result(subscriber: str, sent: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """Compare what the driver sent with what a subscriber got."""
    stamps = sent['stamps_ns']
    large = set(stamps[1:-1])  # the first and last are the bracket frames
    result: dict[str, Any] = {'subscriber': subscriber, 'sent': len(large),
                              'sent_with_bracket': len(stamps),
                              'lost_counted': got['lost_counted']}
    if subscriber == 'plain':
        hops = [(now - stamp) / 1e6 for stamp, now in got['received'] if stamp in large]
        result.update({'delivered': len(hops),
                       'delivered_with_bracket': len(got['received']),
                       'ingest': common.stats(hops), 'end_to_end': None})
    else:
        rows = [r for r in got['traces'] if r[0] in large]
        result.update({'delivered': None, 'delivered_with_bracket': got['received_count'],
                       'processed': got['processed'], 'dropped': got['dropped'],
                       'traced': len(rows),
                       'ingest': common.stats([(rec - stamp) / 1e6 for stamp, rec, _ in rows]),
                       'end_to_end': common.stats([e2e / 1e6 for _, _, e2e in rows])})
        # The bracket frames are samples 1 and len(stamps) of the driver's one publisher.
        first, last = (got['series'] or [(0, 0)])[0]
        brackets = (first == 1) + (last == len(stamps))
        result['delivered'] = got['received_count'] - brackets
        result['brackets_delivered'] = brackets
        if got['lost_counted'] is not None:
            result['exact'] = (brackets == 2 and got['received_count'] + got['lost_counted'] ==
                               len(stamps))
    result['delivered_fraction'] = result['delivered'] / result['sent'] if result['sent'] \
        else None
    return result


def run_case(size: tuple[int, int], reliability: str, profile: bool, subscriber: str,
             frames: int, fps: float, model: str, workdir: Path) -> dict[str, Any]:
    """Run one case in a child process with or without the profile."""
    env = os.environ.copy()
    if profile:
        env[VARIABLE] = config_path('fastdds_shm.xml')
    else:
        env.pop(VARIABLE, None)
    name = f'{subscriber}_{size[0]}x{size[1]}_{reliability}_{"profile" if profile else "default"}'
    out = workdir / f'{name}.json'
    log = workdir / f'{name}.log'
    command = [sys.executable, '-m', 'bench.foreign_publisher', '--case', subscriber,
               '--width', str(size[0]), '--height', str(size[1]), '--reliability', reliability,
               '--frames', str(frames), '--fps', str(fps), '--json', str(out)]
    if model:
        command += ['--model', model]
    load = os.getloadavg()[0]
    with open(log, 'w', encoding='utf-8') as stream:
        try:
            code = subprocess.run(command, cwd=str(common.REPO), env=env, stdout=stream,
                                  stderr=subprocess.STDOUT,
                                  timeout=3.0 * frames / fps + 180.0).returncode
        except subprocess.TimeoutExpired:
            code = -1
    entry: dict[str, Any] = {'case': name, 'subscriber': subscriber, 'resolution': list(size),
                             'reliability': reliability, 'profile': profile,
                             'loadavg_1min': [load, os.getloadavg()[0]]}
    if code != 0 or not out.is_file():
        tail = log.read_text(encoding='utf-8', errors='replace')[-1500:]
        entry['error'] = f'exit status {code}: {tail}'
        return entry
    entry.update(json.loads(out.read_text(encoding='utf-8')))
    return entry


def _ms(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}'


def format_table(result: dict[str, Any]) -> str:
    """Lay out the cases as a markdown table (plain rclpy baseline beside the package)."""
    lines = ['| frame | publisher -> subscriber QoS | Fast DDS | subscriber | delivered / sent | '
             'counted lost | exact | ingest p50 / p99 ms | e2e p50 / p99 ms | ingest p50 vs '
             'plain | load avg |',
             '|---|---|---|---|---:|---:|---|---:|---:|---:|---:|']
    baseline: dict[tuple, float] = {}
    for entry in result['cases']:
        if 'error' not in entry and entry['subscriber'] == 'plain':
            baseline[(tuple(entry['resolution']), entry['reliability'], entry['profile'])] = \
                entry['ingest']['p50_ms']
    for entry in result['cases']:
        size = f'{entry["resolution"][0]}x{entry["resolution"][1]}'
        qos = f'{entry["reliability"]} -> {entry["reliability"]}'
        dds = 'profile' if entry['profile'] else 'defaults'
        if 'error' in entry:
            lines.append(f'| {size} | {qos} | {dds} | {entry["subscriber"]} | failed: '
                         f'{entry["error"][-80:]!r} |')
            continue
        ingest, e2e = entry['ingest'], entry.get('end_to_end') or {}
        base = baseline.get((tuple(entry['resolution']), entry['reliability'], entry['profile']))
        ratio = (ingest['p50_ms'] / base if base and ingest['p50_ms'] is not None
                 and entry['subscriber'] == 'package' else None)
        lost = entry.get('lost_counted')
        lines.append(
            f'| {size} | {qos} | {dds} | {entry["subscriber"]} | {entry["delivered"]} / '
            f'{entry["sent"]} ({100 * (entry["delivered_fraction"] or 0):.1f} %) | '
            f'{"-" if lost is None else lost} | '
            f'{ {True: "yes", False: "NO"}.get(entry.get("exact"), "-")} | '
            f'{_ms(ingest["p50_ms"])} / {_ms(ingest["p99_ms"])} | '
            f'{_ms(e2e.get("p50_ms"))} / {_ms(e2e.get("p99_ms"))} | '
            f'{"-" if ratio is None else f"{ratio:.2f}x"} | '
            f'{entry["loadavg_1min"][0]:.1f} |')
    return '\n'.join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every case; return the result."""
    sizes = [SIZES[0]] if args.quick else list(SIZES)
    reliabilities = ('best_effort',) if args.quick else RELIABILITIES
    profiles = (True,) if args.quick else (True, False)
    frames = args.frames or (60 if args.quick else 300)
    model, _ = common.resolve_model(args.model, common.RESULTS / 'models')
    cases = []
    with tempfile.TemporaryDirectory(prefix='eir_foreign_') as workdir:
        for size in sizes:
            for reliability in reliabilities:
                for profile in profiles:
                    for subscriber in SUBSCRIBERS:
                        print(f'[foreign] {size[0]}x{size[1]} {reliability} '
                              f'{"profile" if profile else "defaults"} {subscriber} ...',
                              flush=True)
                        cases.append(run_case(size, reliability, profile, subscriber, frames,
                                              args.fps, model, Path(workdir)))
    result = {'frames': frames, 'fps': args.fps, 'quick': args.quick, 'cases': cases,
              'machine': common.machine_state()}
    result['table'] = format_table(result)
    return result


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: every case (default) or one case in this process (``--case``)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='640x480, best effort, with the profile, 60 frames')
    parser.add_argument('--frames', type=int, default=0, help='frames per case (300; quick 60)')
    parser.add_argument('--fps', type=float, default=30.0)
    parser.add_argument('--model', default='')
    parser.add_argument('--json', default='')
    parser.add_argument('--case', choices=SUBSCRIBERS, help=argparse.SUPPRESS)
    parser.add_argument('--width', type=int, default=640, help=argparse.SUPPRESS)
    parser.add_argument('--height', type=int, default=480, help=argparse.SUPPRESS)
    parser.add_argument('--reliability', choices=RELIABILITIES, default='best_effort',
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        args.subscriber = args.case
        args.frames = args.frames or 300
        result = measure(args)
    else:
        result = run(args)
        print(result['table'])
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(result, stream, indent=1)
    failed = [c['case'] for c in result.get('cases', []) if 'error' in c]
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
