"""
One hop between two stages, three ways, in one run: this package's handoff vs rclpy topics.

(a) this package's in-process handoff: :class:`~edge_infer_ros.core.handoff.StagePublisher` ->
    :class:`~edge_infer_ros.core.handoff.StageInput`, ``inline`` and ``thread`` modes, through the
    plain objects and through real rclpy nodes (a ROS publisher and a ROS subscription on the
    topic, executor spinning, so the publisher asks rcl for the subscription count on every
    frame as it does in the pipeline);
(b) a plain rclpy topic in one process: ``sensor_msgs/Image``, two nodes, one
    ``SingleThreadedExecutor`` spinning in a thread;
(c) a plain rclpy topic across two processes (the subscriber is a child process that answers
    each image with a tiny acknowledgement carrying the latency it measured), with Fast DDS
    defaults and again with the package's shared-memory profile (``config/fastdds_shm.xml``,
    both ends in child processes: Fast DDS reads the profile once per process);
(d) this package's iceoryx2 transport across two processes (:mod:`edge_infer_ros.core.shm`):
    a frame in a loaned shared-memory sample to the subscriber's read-only numpy view, woken by
    an iceoryx2 event; filling the loan (a copy, or nothing for a source that renders into it)
    is reported on its own row.

Latency is publish -> callback: from just before ``publish()`` to the first line of the
callback, on ``time.perf_counter_ns`` (CLOCK_MONOTONIC, shared by processes on Linux). Messages
are built before the clock starts; building one (``frame.tobytes()`` into ``Image.data``) is
reported on its own row. Samples go one at a time (the next is published after the previous
arrived), so no queue builds up.

``python -m bench.hop [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import array
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

if __package__ in (None, ''):  # run as a file: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from edge_infer_ros.core.frame import Envelope, now_ns  # noqa: E402
from edge_infer_ros.core.handoff import LocalBus, StageInput, StagePublisher  # noqa: E402
from edge_infer_ros.core.payloads import ImagePayload  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

SIZES = ((640, 480), (1920, 1080))
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
#: Variant key -> table label.
LABELS = {
    'a_inline': '(a) handoff inline, plain objects',
    'a_thread': '(a) handoff thread, plain objects',
    'a_inline_node': '(a) handoff inline, rclpy nodes',
    'a_thread_node': '(a) handoff thread, rclpy nodes',
    'b_rclpy_1proc': '(b) rclpy topic, 1 process',
    'c_rclpy_2proc': '(c) rclpy topic, 2 processes',
    'c_rclpy_2proc_shm': '(c) rclpy topic, 2 processes, Fast DDS SHM profile',
    'd_iceoryx2_2proc': '(d) iceoryx2 shm transport, 2 processes',
    'image_msg_build': '    building the Image message',
    'shm_loan_fill': '    filling the shm loan (copy)',
}
#: Variants that need iceoryx2 (left out, with the reason, where it is missing).
SHM_VARIANTS = ('d_iceoryx2_2proc', 'shm_loan_fill')
SHM_PROFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'config', 'fastdds_shm.xml')


class Budget:
    """How many samples a variant takes, and for at most how long."""

    def __init__(self, samples: int, seconds: float, warmup: int = 10) -> None:
        self.samples, self.seconds, self.warmup = samples, seconds, warmup

    def loop(self) -> Any:
        """Yield sample indices (warm-up first) until the count or the time is used up."""
        deadline = time.monotonic() + self.seconds
        for index in range(self.samples + self.warmup):
            if time.monotonic() > deadline:
                return
            yield index


class OthersCpu:
    """Measure the CPU the rest of the machine uses (% of one core): was it loaded."""

    def __init__(self) -> None:
        self._start = (time.monotonic(), self._machine(), self._own())

    @staticmethod
    def _machine() -> float:
        times = psutil.cpu_times()
        return (times.user + times.nice + times.system + times.irq + times.softirq +
                getattr(times, 'steal', 0.0))

    @staticmethod
    def _own() -> float:
        times = psutil.Process().cpu_times()
        return times.user + times.system + times.children_user + times.children_system

    def percent(self) -> Optional[float]:
        """Return the others' CPU use since creation in % of one core (None: too short)."""
        wall = time.monotonic() - self._start[0]
        if wall < 0.5:  # CPU times tick every 10 ms: a shorter window tells nothing
            return None
        others = (self._machine() - self._start[1]) - (self._own() - self._start[2])
        return max(0.0, 100.0 * others / wall)


def latency_stats(samples_ns: list[int]) -> dict[str, Any]:
    """Return count, p50, p99, mean and max in microseconds."""
    if not samples_ns:
        return {'count': 0, 'p50_us': None, 'p99_us': None, 'mean_us': None, 'max_us': None}
    array_us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    p50, p99 = np.percentile(array_us, (50, 99))
    return {'count': int(array_us.size), 'p50_us': float(p50), 'p99_us': float(p99),
            'mean_us': float(array_us.mean()), 'max_us': float(array_us.max())}


def make_frame(width: int, height: int) -> np.ndarray:
    """Return a read-only bgr8 frame with some content."""
    frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    frame.flags.writeable = False
    return frame


def image_msg(frame: np.ndarray) -> Image:
    """Build a sensor_msgs/Image of a frame (the copy every topic publisher makes)."""
    msg = Image()
    msg.height, msg.width = frame.shape[:2]
    msg.encoding = 'bgr8'
    msg.step = frame.shape[1] * 3
    msg.data = array.array('B', frame.tobytes())
    return msg


def _envelope(frame: np.ndarray, seq: int) -> Envelope:
    return Envelope('bench', seq, now_ns(), 'camera', (),
                    ImagePayload(frame, 'bgr8'))


# -- (a) the package's handoff ---------------------------------------------------------------
def _handoff_loop(publisher: StagePublisher, frame: np.ndarray, budget: Budget,
                  box: dict, arrived: threading.Event) -> list[int]:
    samples = []
    for index in budget.loop():
        envelope = _envelope(frame, index)
        arrived.clear()
        box['t0'] = time.perf_counter_ns()
        publisher.publish(envelope)
        if not arrived.wait(2.0):
            continue
        if index >= budget.warmup:
            samples.append(box['t1'] - box['t0'])
    return samples


def _callback(box: dict, arrived: threading.Event) -> Callable[[Any, int], None]:
    def on_frame(envelope: Envelope, received_ns: int) -> None:
        box['t1'] = time.perf_counter_ns()
        arrived.set()
    return on_frame


def handoff_plain(frame: np.ndarray, mode: str, budget: Budget) -> list[int]:
    """Hand frames from a StagePublisher to a StageInput on a LocalBus, no ROS at all."""
    box: dict[str, int] = {}
    arrived = threading.Event()
    bus = LocalBus()
    stage_input = StageInput('/hop', _callback(box, arrived), mode=mode, depth=1)
    bus.attach('/hop', stage_input, has_ros_subscription=False)
    stage_input.start()
    publisher = StagePublisher(bus, '/hop', None, lambda e: None, lambda e: e.seq)
    try:
        return _handoff_loop(publisher, frame, budget, box, arrived)
    finally:
        stage_input.stop()


def handoff_nodes(frame: np.ndarray, mode: str, budget: Budget) -> list[int]:
    """Hand frames on through two rclpy nodes (real publisher and subscription, executor on)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    box: dict[str, int] = {}
    arrived = threading.Event()
    up = Node('hop_up', context=context)
    down = Node('hop_down', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(up)
    executor.add_node(down)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    stage_input = StageInput('/hop_image', _callback(box, arrived), mode=mode, depth=1)
    bus = LocalBus.for_context(context)
    try:
        ros_publisher = up.create_publisher(Image, '/hop_image', QOS)
        down.create_subscription(Image, '/hop_image', lambda msg: None, QOS)
        bus.attach('/hop_image', stage_input, has_ros_subscription=True)
        stage_input.start()
        publisher = StagePublisher(bus, '/hop_image', ros_publisher,
                                   lambda e: image_msg(e.payload.image), lambda e: e.seq)
        spinner.start()
        deadline = time.monotonic() + 5.0
        while ros_publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        samples = _handoff_loop(publisher, frame, budget, box, arrived)
        if publisher.stats.messages_built:
            raise RuntimeError('the handoff built ROS messages: an outside subscriber exists')
        return samples
    finally:
        stage_input.stop()
        executor.shutdown(timeout_sec=1.0)
        up.destroy_node()
        down.destroy_node()
        rclpy.shutdown(context=context)
        spinner.join(timeout=2.0)


# -- (b) rclpy topic, one process --------------------------------------------------------------
def _stamp(msg: Any, value: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(value, 1_000_000_000)


def _stamp_value(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def rclpy_one_process(frame: np.ndarray, budget: Budget) -> list[int]:
    """Two nodes, one SingleThreadedExecutor spinning in a thread, sensor_msgs/Image."""
    context = rclpy.Context()
    rclpy.init(context=context)
    arrived = threading.Event()
    box: dict[str, int] = {}
    talker = Node('hop_talker', context=context)
    listener = Node('hop_listener', context=context)

    def on_image(msg: Image) -> None:
        box['t1'] = time.perf_counter_ns()
        box['seq'] = int(msg.header.frame_id)
        box['t0'] = _stamp_value(msg)
        arrived.set()

    publisher = talker.create_publisher(Image, 'hop_image', QOS)
    listener.create_subscription(Image, 'hop_image', on_image, QOS)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(talker)
    executor.add_node(listener)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    samples = []
    try:
        deadline = time.monotonic() + 5.0
        while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        msg = image_msg(frame)
        for index in budget.loop():
            msg.header.frame_id = str(index)
            arrived.clear()
            _stamp(msg, time.perf_counter_ns())
            publisher.publish(msg)
            if not arrived.wait(2.0) or box.get('seq') != index:
                continue
            if index >= budget.warmup:
                samples.append(box['t1'] - box['t0'])
        return samples
    finally:
        executor.shutdown(timeout_sec=1.0)
        talker.destroy_node()
        listener.destroy_node()
        rclpy.shutdown(context=context)
        spinner.join(timeout=2.0)


# -- (c) rclpy topic, two processes ------------------------------------------------------------
def echo_main(topic: str, ack_topic: str) -> int:
    """Child process of (c): on each image, measure its latency and acknowledge it."""
    rclpy.init()
    node = Node('hop_echo')
    ack = node.create_publisher(String, ack_topic, QOS)

    def on_image(msg: Image) -> None:
        latency = time.perf_counter_ns() - _stamp_value(msg)
        ack.publish(String(data=f'{msg.header.frame_id} {latency}'))

    node.create_subscription(Image, topic, on_image, QOS)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def rclpy_two_processes(frame: np.ndarray, budget: Budget, tag: str) -> list[int]:
    """Publish here to a subscriber in a child process, which reports each latency back."""
    topic, ack_topic = f'hop_image_{tag}', f'hop_ack_{tag}'
    child = subprocess.Popen([sys.executable, '-m', 'bench.hop', '--echo', topic, ack_topic],
                             cwd=str(common.REPO), env=os.environ.copy())
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node('hop_source', context=context)
    arrived = threading.Event()
    box: dict[str, int] = {}

    def on_ack(msg: String) -> None:
        seq, latency = msg.data.split()
        box['seq'], box['latency'] = int(seq), int(latency)
        arrived.set()

    publisher = node.create_publisher(Image, topic, QOS)
    node.create_subscription(String, ack_topic, on_ack, QOS)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    samples = []
    try:
        deadline = time.monotonic() + 30.0
        # Node.count_publishers, not Subscription.get_publisher_count (Iron+): Humble has it.
        while (publisher.get_subscription_count() < 1 or node.count_publishers(ack_topic) < 1):
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError('the echo process did not connect')
            time.sleep(0.05)
        time.sleep(0.3)  # let the remaining discovery settle
        msg = image_msg(frame)
        for index in budget.loop():
            msg.header.frame_id = str(index)
            arrived.clear()
            _stamp(msg, time.perf_counter_ns())
            publisher.publish(msg)
            if not arrived.wait(3.0) or box.get('seq') != index:
                continue
            if index >= budget.warmup:
                samples.append(box['latency'])
        return samples
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.shutdown(context=context)
        spinner.join(timeout=2.0)
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def rclpy_two_processes_tuned(width: int, height: int, budget: Budget, tag: str) -> list[int]:
    """Variant (c) with the shared-memory profile, run from a child process that loads it."""
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=SHM_PROFILE)
    out = subprocess.run([sys.executable, '-m', 'bench.hop', '--dds-driver', f'{width}x{height}',
                          str(budget.samples), str(budget.seconds), tag],
                         cwd=str(common.REPO), env=env, capture_output=True, text=True,
                         timeout=budget.seconds + 90, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def dds_driver_main(size: str, samples: int, seconds: float, tag: str) -> int:
    """Child of the tuned (c): measure (c) here, where the profile is loaded; print JSON."""
    width, height = (int(v) for v in size.split('x'))
    frame = make_frame(width, height)
    print(json.dumps(rclpy_two_processes(frame, Budget(samples, seconds), f'{tag}_shm')))
    return 0


# -- (d) iceoryx2 shared memory, two processes ---------------------------------------------
def shm_echo_main(topic: str) -> int:
    """Child process of (d): print each frame's latency (send -> its numpy view here)."""
    from edge_infer_ros.core import shm

    def on_frame(envelope: Envelope, received_ns: int) -> None:
        view = envelope.payload.image
        latency = time.perf_counter_ns() - envelope.stamp_ns
        if view.shape[0] > 0:
            print(f'{envelope.seq} {latency}', flush=True)

    subscriber = shm.ShmSubscriber(topic, on_frame)
    subscriber.start()
    print('ready', flush=True)
    sys.stdin.read()  # until the parent closes the pipe
    subscriber.close()
    return 0


def shm_two_processes(frame: np.ndarray, budget: Budget, tag: str) -> list[int]:
    """Send loaned samples to a child process, which prints each latency back."""
    from edge_infer_ros.core import shm
    topic = f'/hop_shm_{tag}_{os.getpid()}'
    publisher = shm.ShmPublisher(topic)
    child = subprocess.Popen([sys.executable, '-m', 'bench.hop', '--shm-echo', topic],
                             cwd=str(common.REPO), env=os.environ.copy(), text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    box: dict[str, int] = {}
    arrived = threading.Event()

    def read() -> None:
        for line in child.stdout:
            parts = line.split()
            if len(parts) == 2:
                box['seq'], box['latency'] = int(parts[0]), int(parts[1])
                arrived.set()
            elif parts == ['ready']:
                box['ready'] = 1
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples = []
    try:
        deadline = time.monotonic() + 30.0
        while not box.get('ready') or publisher.subscribers() < 1:
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError('the shm echo process did not connect')
            time.sleep(0.02)
        for index in budget.loop():
            loan = publisher.loan(frame.shape, frame.dtype)
            np.copyto(loan.array, frame)  # the fill: measured on its own row
            arrived.clear()
            envelope = Envelope('bench', index, time.perf_counter_ns(), 'camera', (),
                                ImagePayload(loan.array, 'bgr8'))
            if not publisher.send(envelope, loan):
                raise RuntimeError(f'shm send failed: {publisher.last_error}')
            del envelope, loan
            if not arrived.wait(3.0) or box.get('seq') != index:
                continue
            if index >= budget.warmup:
                samples.append(box['latency'])
        return samples
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
        publisher.close()


def shm_fill_cost(frame: np.ndarray, budget: Budget) -> list[int]:
    """Time loaning a sample and copying a frame into it (what a rendering source avoids)."""
    from edge_infer_ros.core import shm
    publisher = shm.ShmPublisher(f'/hop_shm_fill_{os.getpid()}')
    samples = []
    try:
        for index in budget.loop():
            start = time.perf_counter_ns()
            loan = publisher.loan(frame.shape, frame.dtype)
            np.copyto(loan.array, frame)
            if index >= budget.warmup:
                samples.append(time.perf_counter_ns() - start)
            loan.discard()
        return samples
    finally:
        publisher.close()


def build_cost(frame: np.ndarray, budget: Budget) -> list[int]:
    """Time building the Image message of a frame (outside the hop figures)."""
    samples = []
    for index in budget.loop():
        start = time.perf_counter_ns()
        image_msg(frame)
        if index >= budget.warmup:
            samples.append(time.perf_counter_ns() - start)
    return samples


# -- the run -----------------------------------------------------------------------------------
def run(quick: bool = False, sizes: tuple = SIZES,
        only: Optional[list[str]] = None) -> dict[str, Any]:
    """Measure every variant at every size; return the JSON-ready result."""
    if quick:
        fast, slow, cross = Budget(300, 5.0), Budget(150, 5.0), Budget(100, 6.0)
    else:
        fast, slow, cross = Budget(2000, 15.0), Budget(500, 20.0), Budget(300, 25.0)
    labels = {k: v for k, v in LABELS.items() if not only or k in only}
    shm_missing = shm_unavailable()
    if shm_missing:
        for name in SHM_VARIANTS:
            labels.pop(name, None)
    result: dict[str, Any] = {'quick': quick, 'machine_before': common.machine_state(),
                              'sizes': {}, 'ratios': {}, 'labels': labels,
                              'shm_unavailable': shm_missing}
    for width, height in sizes:
        key = f'{width}x{height}'
        frame = make_frame(width, height)
        variants = {
            'a_inline': lambda: handoff_plain(frame, 'inline', fast),
            'a_thread': lambda: handoff_plain(frame, 'thread', fast),
            'a_inline_node': lambda: handoff_nodes(frame, 'inline', fast),
            'a_thread_node': lambda: handoff_nodes(frame, 'thread', fast),
            'b_rclpy_1proc': lambda: rclpy_one_process(frame, slow),
            'c_rclpy_2proc': lambda: rclpy_two_processes(frame, cross, f'{width}x{height}'),
            'c_rclpy_2proc_shm': lambda: rclpy_two_processes_tuned(width, height, cross,
                                                                   f'{width}x{height}'),
            'd_iceoryx2_2proc': lambda: shm_two_processes(frame, slow, f'{width}x{height}'),
            'image_msg_build': lambda: build_cost(frame, slow),
            'shm_loan_fill': lambda: shm_fill_cost(frame, slow),
        }
        result['sizes'][key] = {}
        for name, measure in variants.items():
            if name not in result['labels']:
                continue
            load = OthersCpu()
            result['sizes'][key][name] = latency_stats(measure())
            result['sizes'][key][name]['others_cpu_percent'] = load.percent()
            print(f'{key} {LABELS[name].strip()}: {result["sizes"][key][name]}', flush=True)
        result['ratios'][key] = ratios(result['sizes'][key])
        result.setdefault('cross_process', {})[key] = cross_process(result['sizes'][key])
    result['machine_after'] = common.machine_state()
    result['flatness'] = flatness(result)
    result['targets'] = targets(result)
    return result


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if not numerator or not denominator:
        return None
    return numerator / denominator


def shm_unavailable() -> Optional[str]:
    """Return why the iceoryx2 variants cannot run here (None: they can)."""
    try:
        from edge_infer_ros.core import shm
    except ImportError as error:
        return f'{type(error).__name__}: {error}'
    return shm.unavailable_reason()


def cross_process(figures: dict[str, Any]) -> dict[str, Any]:
    """Return the DDS hops over the iceoryx2 hop, p50 and p99 (how much faster it is)."""
    d = figures.get('d_iceoryx2_2proc')
    if not d:
        return {}
    return {f'{other}_over_d_{q}': _ratio(figures[other][f'{q}_us'], d[f'{q}_us'])
            for other in ('c_rclpy_2proc', 'c_rclpy_2proc_shm') if other in figures
            for q in ('p50', 'p99')}


def ratios(figures: dict[str, Any]) -> dict[str, Any]:
    """Return (b)/(a) and (c)/(a) for p50 and p99, for every (a) variant."""
    out = {}
    needed = ('a_inline', 'a_thread', 'a_inline_node', 'a_thread_node', 'b_rclpy_1proc',
              'c_rclpy_2proc')
    if any(name not in figures for name in needed):
        return out  # a run of some variants only (--variant)
    for a_name in ('a_inline', 'a_thread', 'a_inline_node', 'a_thread_node'):
        a = figures[a_name]
        out[a_name] = {f'{other[0]}_over_a_{q}': _ratio(figures[other][f'{q}_us'], a[f'{q}_us'])
                       for other in ('b_rclpy_1proc', 'c_rclpy_2proc') for q in ('p50', 'p99')}
    return out


def flatness(result: dict[str, Any]) -> dict[str, Any]:
    """Return p50 at the largest size over p50 at the smallest, per variant (1 = flat)."""
    keys = list(result['sizes'])
    if len(keys) < 2:
        return {}
    small, large = result['sizes'][keys[0]], result['sizes'][keys[-1]]
    return {name: _ratio(large[name]['p50_us'], small[name]['p50_us']) for name in small}


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Check the issue's targets on the (a) variants through rclpy nodes (the pipeline's path)."""
    checks = {}
    for a_name in ('a_inline_node', 'a_thread_node'):
        mode = a_name.split('_')[1]
        if a_name not in result['labels'] or not result['ratios'].get(next(iter(result['sizes']))):
            continue
        for key, figures in result['sizes'].items():
            a = figures[a_name]['p50_us']
            checks[f'{mode}, {key}: in-process p50 < 50 us'] = bool(a is not None and a < 50.0)
            need = 300.0 if key.startswith('1920') else 50.0
            ratio = result['ratios'][key][a_name]['b_over_a_p50']
            met = ratio is not None and ratio >= need
            checks[f'{mode}, {key}: (b)/(a) p50 >= {need:g}x'] = bool(met)
        flat = result.get('flatness', {}).get(a_name)
        if flat is not None:
            checks[f'{mode}: flat in frame size (p50 ratio largest/smallest size < 2)'] = \
                bool(flat < 2.0)
    for key, figures in result['sizes'].items():
        d = figures.get('d_iceoryx2_2proc')
        if not d:
            continue
        checks[f'iceoryx2, {key}: cross-process p50 <= 0.5 ms, p99 <= 1.5 ms'] = bool(
            d['p50_us'] is not None and d['p50_us'] <= 500.0 and d['p99_us'] <= 1500.0)
        if key.startswith('1920'):
            ratio = result['cross_process'][key].get('c_rclpy_2proc_shm_over_d_p50')
            checks[f'iceoryx2, {key}: >= 10x faster than tuned DDS (p50)'] = bool(
                ratio is not None and ratio >= 10.0)
    flat = result.get('flatness', {}).get('d_iceoryx2_2proc')
    if flat is not None:
        checks['iceoryx2: flat in frame size (p50 ratio largest/smallest size < 2)'] = \
            bool(flat < 2.0)
    return checks


def _us(value: Optional[float]) -> str:
    if value is None:
        return '-'
    return f'{value / 1e3:.2f} ms' if value >= 1000 else f'{value:.1f} us'


def _x(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:,.0f}x'


def format_table(result: dict[str, Any]) -> str:
    """Lay out the hop table (markdown), the ratios and the targets."""
    keys = list(result['sizes'])
    head = '| variant | ' + ' | '.join(f'{k} p50 | {k} p99 | others CPU %' for k in keys) + ' |'
    lines = [head, '|---' * (1 + 3 * len(keys)) + '|']
    for name, label in result['labels'].items():
        cells = []
        for key in keys:
            figures = result['sizes'][key][name]
            others = figures.get('others_cpu_percent')
            cells += [_us(figures['p50_us']), _us(figures['p99_us']),
                      '-' if others is None else f'{others:.0f}']
        lines.append(f'| {label.strip()} | ' + ' | '.join(cells) + ' |')
    lines += ['', '| ratio (p50 / p99) | ' + ' | '.join(keys) + ' |',
              '|---' * (1 + len(keys)) + '|']
    for a_name in ('a_inline', 'a_thread', 'a_inline_node', 'a_thread_node'):
        if not result['ratios'].get(keys[0]):
            break
        for other in ('b', 'c'):
            cells = []
            for key in keys:
                r = result['ratios'][key][a_name]
                cells.append(f'{_x(r[f"{other}_over_a_p50"])} / {_x(r[f"{other}_over_a_p99"])}')
            lines.append(f'| ({other}) / {LABELS[a_name][4:]} | ' + ' | '.join(cells) + ' |')
    if any(result.get('cross_process', {}).values()):
        lines += ['', '| cross-process, DDS / iceoryx2 (p50 / p99) | ' + ' | '.join(keys) + ' |',
                  '|---' * (1 + len(keys)) + '|']
        for other in ('c_rclpy_2proc', 'c_rclpy_2proc_shm'):
            cells = []
            for key in keys:
                r = result['cross_process'][key]
                cells.append(f'{_x(r.get(f"{other}_over_d_p50"))} / '
                             f'{_x(r.get(f"{other}_over_d_p99"))}')
            lines.append(f'| {LABELS[other][4:]} | ' + ' | '.join(cells) + ' |')
    if result.get('shm_unavailable'):
        lines += ['', f'iceoryx2 variants left out: {result["shm_unavailable"]}']
    if result.get('flatness'):
        flat = result['flatness']
        lines += ['', f'p50 at {keys[-1]} / p50 at {keys[0]}: ' + ', '.join(
            f'{name} {value:.2f}' for name, value in flat.items() if value is not None)]
    lines += ['', 'targets ((a) through rclpy nodes, inline and thread):']
    lines += [f'- {name}: {"met" if ok else "NOT met"}' for name, ok in result['targets'].items()]
    before, after = result['machine_before'], result['machine_after']
    lines += ['', 'others CPU %: CPU used by other processes while the variant ran (100 = one '
              'core; above ~20 the figures were taken under load)']
    lines += [f'machine: {before["cpus"]} CPUs, load average {before["loadavg"][0]:.2f} '
              f'before / {after["loadavg"][0]:.2f} after (os.getloadavg), '
              f'CPU busy {before["cpu_percent_1s"]:.0f}%'
              f' in the second before']
    return '\n'.join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: measure, print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='few hundred samples per variant')
    parser.add_argument('--json', default='', help='write the results here')
    parser.add_argument('--size', action='append', default=[],
                        help='WxH to measure (repeatable; default 640x480 and 1920x1080; '
                        'the issue-19 table adds 3840x2160)')
    parser.add_argument('--echo', nargs=2, metavar=('TOPIC', 'ACK_TOPIC'),
                        help=argparse.SUPPRESS)
    parser.add_argument('--variant', action='append', default=[], choices=tuple(LABELS),
                        help='measure only these variants (repeatable; default: all)')
    parser.add_argument('--shm-echo', metavar='TOPIC', help=argparse.SUPPRESS)
    parser.add_argument('--dds-driver', nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo:
        return echo_main(*args.echo)
    if args.shm_echo:
        return shm_echo_main(args.shm_echo)
    if args.dds_driver:
        size, samples, seconds, tag = args.dds_driver
        return dds_driver_main(size, int(samples), float(seconds), tag)
    sizes = tuple(tuple(int(v) for v in s.lower().split('x')) for s in args.size) or SIZES
    result = run(quick=args.quick, sizes=sizes, only=args.variant)
    print()
    print(format_table(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(result, stream, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
