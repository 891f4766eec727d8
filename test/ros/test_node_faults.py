"""
Bad input, faults and lifecycle on the real nodes.

Every bad input and fault gets a clear error and a diagnostic, never a crash, a hang or a
silent drop.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import signal
import threading
import time
from typing import Iterator

from diagnostic_msgs.msg import DiagnosticStatus
from edge_infer_ros.inference.backends.base import BackendError
from edge_infer_ros.ros.compat import AsyncParameterClient
from edge_infer_ros_msgs.msg import TensorFrame
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from support.outside import Outside
from support.waiting import wait_for


@pytest.fixture
def outside(second_context) -> Iterator[Outside]:
    o = Outside(second_context, 'outside')
    yield o
    o.close()


def _image(encoding: str = 'bgr8', width: int = 64, height: int = 48, step: int = None,
           data_len: int = None, stamp: bool = True) -> Image:
    channels = {'bgr8': 3, 'rgb8': 3, 'mono8': 1}.get(encoding, 3)
    msg = Image(height=height, width=width, encoding=encoding)
    msg.step = step if step is not None else width * channels
    size = data_len if data_len is not None else msg.step * height
    msg.data = bytes(size)
    if stamp:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
    msg.header.frame_id = 'robot_camera'
    return msg


@pytest.mark.parametrize('bad, reason, key', [
    ({'encoding': '16UC1'}, "unsupported encoding '16UC1' (a depth or float image",
     'unsupported_encoding'),
    ({'encoding': '32FC1'}, 'a depth or float image, not a camera image',
     'unsupported_encoding'),
    ({'encoding': 'nv24'}, "unsupported encoding 'nv24' (unknown): expected one of",
     'unsupported_encoding'),
    ({'encoding': 'nv12', 'height': 47, 'step': 64, 'data_len': 64 * 70},
     'nv12 needs an even width and height', 'bad_image_size'),
    ({'encoding': 'nv21', 'step': 64, 'data_len': 64 * 48}, 'expected step*height*3/2 = 4608',
     'bad_image_data'),
    ({'encoding': 'yuyv', 'width': 63, 'step': 126}, 'yuyv needs an even width',
     'bad_image_size'),
    ({'encoding': 'uyvy', 'step': 100}, 'step 100 is smaller than the 128 bytes',
     'bad_image_data'),
    ({'encoding': 'mono16', 'step': 129}, 'step 129 of 16-bit mono16 is odd', 'bad_image_data'),
    ({'encoding': 'rgba16', 'step': 512, 'data_len': 512 * 48 - 2}, 'expected step*height',
     'bad_image_data'),
    ({'encoding': 'bayer_rggb16', 'step': 64}, 'step 64 is smaller than the 128 bytes',
     'bad_image_data'),
    ({'encoding': 'bayer_gbrg8', 'height': 1, 'step': 64, 'data_len': 64},
     'at least 2x2 pixels', 'bad_image_size'),
    ({'step': 10}, 'step 10 is smaller', 'bad_image_data'),
    ({'data_len': 100}, 'data has 100 bytes', 'bad_image_data'),
    ({'data_len': 64 * 48 * 3 + 5}, 'expected step*height', 'bad_image_data'),
    ({'width': 0, 'data_len': 0, 'step': 0}, 'zero-sized', 'bad_image_size'),
    ({'stamp': False}, 'zero header stamp', 'zero_stamp'),
])
def test_bad_images_give_an_error_and_a_diagnostic_and_the_node_goes_on(
        composed, outside, bad, reason, key) -> None:
    container, nodes = composed(frames=0, names={'preprocess', 'detector', 'nms', 'action',
                                                 'budget_monitor'})
    preprocess = nodes['preprocess']
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
    publisher = outside.node.create_publisher(Image, 'image_raw', qos)
    assert outside.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
    outside.spin_until(lambda: False, 0.3)
    assert outside.spin_until(lambda: (publisher.publish(_image(**bad)) or
                                       preprocess.error_count() > 0), 10.0)
    assert reason in preprocess.last_error, preprocess.last_error
    assert preprocess.refusals[key] >= 1, preprocess.refusals  # counted per reason
    status_ok = outside.spin_until(
        lambda: (outside.status(': preprocess') is not None and
                 outside.status(': preprocess').level == DiagnosticStatus.ERROR), 5.0)
    assert status_ok, outside.status(': preprocess')
    assert reason in outside.status(': preprocess').message
    assert outside.spin_until(lambda: any(  # the counter reaches /diagnostics too
        v.key == f'refused.{key}' and int(v.value) >= 1
        for v in outside.status(': preprocess').values), 5.0)
    # The node is alive: a good image right after is processed through to the action.
    done = nodes['action'].commands
    assert outside.spin_until(lambda: (publisher.publish(_image('rgb8')) or
                                       nodes['action'].commands > done), 10.0)


def test_the_same_image_published_twice_is_processed_once(composed, outside) -> None:
    container, nodes = composed(frames=0, names={'preprocess', 'detector', 'nms', 'action',
                                                 'budget_monitor'})
    preprocess = nodes['preprocess']
    publisher = outside.node.create_publisher(Image, 'image_raw', 10)  # reliable: no loss
    assert outside.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)

    def handled() -> int:
        return sum(i.stats.processed + i.stats.dropped + i.stats.errors
                   for i in preprocess.inputs)
    # Until one frame went through: the first samples after matching may be lost.
    assert outside.spin_until(lambda: publisher.publish(_image()) or handled() > 0, 10.0)
    marker = _image()  # in order after the warm-up's stragglers (reliable, one writer)
    publisher.publish(marker)
    marker_ns = marker.header.stamp.sec * 10**9 + marker.header.stamp.nanosec
    assert outside.spin_until(  # the marker seen and every frame received handled
        lambda: (preprocess.stamps.last_stamp('robot_camera') == marker_ns and
                 handled() == sum(i.stats.received for i in preprocess.inputs)), 10.0)
    base, published = handled(), preprocess.tensor_out.stats.published
    first, other = _image(), _image()
    other.header.stamp.nanosec = (first.header.stamp.nanosec + 1000) % 1_000_000_000
    for count, msg in enumerate((first, first, other), start=1):
        publisher.publish(msg)
        assert outside.spin_until(lambda: handled() >= base + count, 10.0), handled()
    assert preprocess.tensor_out.stats.published == published + 2
    assert outside.spin_until(lambda: any(  # the count reaches /diagnostics
        v.key == 'duplicate_frames' and v.value == '1'
        for v in getattr(outside.status(': preprocess'), 'values', [])), 5.0)


def test_nan_tensor_from_outside_is_refused_before_inference(composed, outside) -> None:
    container, nodes = composed(frames=0, names={'detector', 'nms', 'action', 'budget_monitor'})
    detector = nodes['detector']
    publisher = outside.node.create_publisher(TensorFrame, 'tensor', 10)
    assert outside.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
    tensor = np.zeros((1, 3, 320, 320), np.float32)
    tensor[0, 1, 5, 5] = np.nan
    msg = TensorFrame(camera='c', seq=1, shape=[1, 3, 320, 320], dtype='float32',
                      data=tensor.tobytes(), scale=1.0, image_width=320, image_height=320)
    msg.header.stamp.sec = 5
    assert outside.spin_until(lambda: publisher.publish(msg) or detector.error_count() > 0, 10.0)
    assert 'NaN/inf' in detector.last_error
    assert detector.inferences == 0


class _FailingBackend:
    """A GPU backend that breaks mid-run (what a lost CUDA context looks like)."""

    name = 'tensorrt'
    description = 'tensorrt (failing stand-in)'

    def __init__(self) -> None:
        self.released = False

    def infer(self, tensor):
        raise BackendError('CUDA error: an illegal memory access was encountered')

    def release(self) -> None:
        self.released = True


def test_detector_falls_back_to_cpu_when_the_gpu_backend_fails_mid_run(composed) -> None:
    container, nodes = composed(frames=0, overrides={'detector': {'backend': 'tensorrt'}})
    detector = nodes['detector']
    # No TensorRT here: it already fell back at configure, and says why.
    assert detector.backend.name == 'onnxruntime'
    assert detector.fallback_reason and 'TensorRT' in detector.fallback_reason
    assert wait_for(lambda: nodes['action'].commands > 3, 10.0)
    assert detector.stage_status().level == DiagnosticStatus.WARN
    # Now pretend the GPU backend was running and fails during a frame.
    failing = _FailingBackend()
    with detector.backend._lock:
        detector.backend._active = failing
    before = nodes['action'].commands
    assert wait_for(lambda: nodes['action'].commands > before + 3, 10.0)
    assert failing.released and detector.backend.name == 'onnxruntime'
    assert 'illegal memory access' in detector.fault
    values = {kv.key: kv.value for kv in detector.stage_status().values}
    assert values['backend'] == 'onnxruntime' and 'illegal memory' in values['fallback_reason']


@pytest.mark.skipif(not hasattr(os, 'sched_getaffinity') or len(os.sched_getaffinity(0)) < 2 or
                    not hasattr(os, 'SCHED_IDLE'),
                    reason='needs Linux and at least 2 CPUs (the pool threads are pinned)')
def test_detector_keeps_going_when_its_cpu_keeper_is_killed(composed, planted_model) -> None:
    sha256 = hashlib.sha256(Path(planted_model.path).read_bytes()).hexdigest()
    container, nodes = composed(frames=0, overrides={'detector': {'model_sha256': sha256,
                                                                  'keep_pool_awake': True}})
    detector = nodes['detector']
    assert wait_for(lambda: nodes['action'].commands > 3, 10.0)
    keeper = detector.backend.active.keeper
    assert keeper is not None and keeper.arms >= 3  # each frame woke the pool's CPU
    values = dict(detector.diagnostic_values())
    assert values['keep_awake'] == 'CPUs ' + ','.join(map(str, keeper.cpus))
    assert float(values['keep_awake_cpu_ms_per_frame']) >= 0.0
    # Armed as preprocessing began, not as the run did: the CPU had that long to wake.
    assert float(values['keep_awake_lead_ms']) > 0.03 and keeper.mean_lead_ms > 0.03
    for helper in keeper._helpers:
        os.kill(helper.pid, signal.SIGKILL)
    before = nodes['action'].commands
    assert wait_for(lambda: nodes['action'].commands > before + 3, 10.0)
    assert 'gone' in keeper.error
    status = detector.stage_status()
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN and 'no longer kept awake' in status.message
    assert values['keep_awake'].startswith('off: a helper is gone')


def test_a_stage_that_raises_drops_the_frame_counts_it_and_goes_on(composed) -> None:
    container, nodes = composed(frames=30, fps=30.0, start=False)
    container.start()
    nms_input = nodes['nms'].inputs[0]
    original = nms_input._callback

    def every_third_fails(envelope, received_ns):
        if envelope.seq % 3 == 0:
            raise RuntimeError(f'simulated NMS fault on {envelope.seq}')
        original(envelope, received_ns)

    nms_input._callback = every_third_fails
    assert nodes['camera'].wait_until_done(20.0)
    assert wait_for(lambda: all(n.inputs[0].idle() for n in
                                (nodes['detector'], nodes['nms'], nodes['action'])), 5.0)
    time.sleep(0.2)
    errors = nodes['nms'].error_count()
    assert errors >= 5 and 'simulated NMS fault' in nodes['nms'].last_error
    assert nodes['nms'].stage_status().level == DiagnosticStatus.ERROR
    dropped = sum(i.stats.dropped for n in ('preprocess', 'detector', 'nms', 'action')
                  for i in nodes[n].inputs)
    assert nodes['camera'].captured == nodes['action'].commands + dropped + errors


def test_a_hung_stage_is_reported_by_the_watchdog(composed) -> None:
    container, nodes = composed(frames=0, fps=30.0,
                                overrides={'budget_monitor': {'stale_timeout_s': 0.5}})
    monitor = nodes['budget_monitor']
    assert wait_for(lambda: monitor.traces_seen > 5, 10.0)
    release = threading.Event()
    detector_input = nodes['detector'].inputs[0]
    original = detector_input._callback
    detector_input._callback = lambda e, r: (release.wait(10.0), original(e, r))
    try:
        def path_level() -> bytes:
            statuses = {s.name: s for s in monitor.budget_statuses()}
            return statuses['/budget_monitor: camera_optical_frame/end_to_end'].level
        assert wait_for(lambda: path_level() == DiagnosticStatus.ERROR, 3.0)
    finally:
        detector_input._callback = original
        release.set()
    # Frames flow again: no longer ERROR (WARN while the late frame is in the window).
    assert wait_for(lambda: path_level() in (DiagnosticStatus.OK, DiagnosticStatus.WARN), 5.0)


def test_missing_and_tampered_models_fail_configure_with_the_reason(composed, tmp_path,
                                                                    planted_model) -> None:
    missing = str(tmp_path / 'nowhere.onnx')
    container, nodes = composed(frames=0, names={'detector'}, start=False,
                                overrides={'detector': {'model_path': missing}})
    problems = container.start()
    assert problems and missing in problems[0] and 'not found' in problems[0]
    assert nodes['detector'].stage_status().level == DiagnosticStatus.ERROR
    tampered = tmp_path / 'tampered.onnx'
    tampered.write_bytes(open(planted_model.path, 'rb').read()[:200])
    container, nodes = composed(frames=0, names={'detector'}, start=False,
                                overrides={'detector': {'model_path': str(tampered)}})
    problems = container.start()
    assert problems and str(tampered) in problems[0]
    container, nodes = composed(frames=0, names={'detector'}, start=False, overrides={
        'detector': {'model_path': planted_model.path, 'model_sha256': '0' * 64}})
    problems = container.start()
    assert problems and 'sha256' in problems[0]


def test_lifecycle_loads_on_configure_and_releases_on_cleanup(composed) -> None:
    container, nodes = composed(frames=0, start=False)
    detector = nodes['detector']
    assert detector.backend is None and not detector.inputs  # nothing before configure
    container.start()
    assert detector.backend is not None and detector.active
    assert wait_for(lambda: nodes['action'].commands > 2, 10.0)
    detector.trigger_deactivate()
    assert not detector.active
    before = nodes['action'].commands
    time.sleep(0.3)
    assert nodes['action'].commands <= before + 1  # nothing passes an inactive detector
    assert sum(i.stats.dropped for i in detector.inputs) > 0  # and that is counted
    detector.trigger_cleanup()
    assert detector.backend is None and not detector.inputs
    detector.trigger_configure()
    detector.trigger_activate()
    assert wait_for(lambda: nodes['action'].commands > before + 3, 10.0)


def test_incompatible_qos_publisher_gets_a_clear_warning(composed, outside) -> None:
    container, nodes = composed(frames=0, names={'detector', 'nms', 'action',
                                                 'budget_monitor'})
    best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    outside.node.create_publisher(TensorFrame, 'tensor', best_effort)  # detector wants reliable
    detector = nodes['detector']
    # (the planted model is unpinned, also a WARN, but a QoS problem is more urgent)
    assert wait_for(lambda: 'incompatible QoS' in detector.stage_status().message, 10.0)
    assert detector.stage_status().level == DiagnosticStatus.WARN
    message = detector.stage_status().message
    assert 'incompatible QoS' in message and '/tensor' in message and 'RELIABILITY' in message


def test_parameters_change_at_run_time_through_the_services(composed, outside) -> None:
    container, nodes = composed(frames=0)
    nms = nodes['nms']
    client = AsyncParameterClient(outside.node, 'nms')
    assert client.wait_for_services(timeout_sec=10.0)

    def set_param(name, value):
        future = client.set_parameters([Parameter(name, value=value)])
        assert outside.spin_until(future.done, 5.0)
        return future.result().results[0]

    assert not set_param('iou_threshold', 1.5).successful
    assert 'iou_threshold' in set_param('iou_threshold', 1.5).reason
    assert not set_param('max_detections', 'many').successful
    result = set_param('score_threshold', 0.85)  # the person (0.8) must disappear
    assert result.successful
    seen = []
    nodes['budget_monitor'].trace_hooks.append(lambda t: seen.append(t.seq))
    assert wait_for(lambda: len(seen) > 3, 10.0)
    out = nms.outputs[0]
    last = []
    original = nodes['action'].inputs[0]._callback
    nodes['action'].inputs[0]._callback = lambda e, r: (last.append(e.payload), original(e, r))
    assert wait_for(lambda: len(last) > 2, 10.0)
    assert set(last[-1].class_ids.tolist()) == {0}
    assert out.stats.published > 0
    # A start-only parameter is refused while active, with the way to change it.
    detector_client = AsyncParameterClient(outside.node, 'detector')
    assert detector_client.wait_for_services(timeout_sec=10.0)
    future = detector_client.set_parameters([Parameter('model_path', value='/other.onnx')])
    assert outside.spin_until(future.done, 5.0)
    refused = future.result().results[0]
    assert not refused.successful and 'deactivate' in refused.reason


def test_stamps_going_back_are_counted_and_reported(composed, outside) -> None:
    # Reliable on both ends: each frame is published once and arrives once, in order (a
    # best-effort frame published again until it ran could arrive late, after the next).
    container, nodes = composed(frames=0, names={'preprocess', 'detector', 'nms', 'action',
                                                 'budget_monitor'},
                                overrides={'preprocess': {'stamp_fault_hold_s': 2.0,
                                                          'qos.input.reliability': 'reliable'}})
    preprocess = nodes['preprocess']
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    publisher = outside.node.create_publisher(Image, 'image_raw', qos)
    assert outside.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
    now = time.time_ns()
    for offset_s in (0.0, 0.1, 0.05):  # the third frame's stamp goes back 50 ms
        msg = _image()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now + int(offset_s * 1e9),
                                                                1_000_000_000)
        # Processed, not only received: frames from DDS run on the input's worker.
        seen = preprocess.inputs[0].stats.processed
        publisher.publish(msg)
        assert outside.spin_until(lambda: preprocess.inputs[0].stats.processed > seen, 10.0)
    assert preprocess.non_monotonic_stamps == 1
    status = preprocess.stage_status()
    assert status.level == DiagnosticStatus.WARN and 'stamp went back 50.000 ms' in status.message
    assert wait_for(lambda: nodes['action'].commands >= 3, 5.0)  # still processed
    # One backwards stamp is no lasting fault: OK again stamp_fault_hold_s after it.
    assert wait_for(lambda: preprocess.stage_status().level == DiagnosticStatus.OK, 5.0)
    assert preprocess.non_monotonic_stamps == 1  # the count stays


_SUBSCRIBER = """
from edge_infer_ros_msgs.msg import DetectionArray
import rclpy
from rclpy.node import Node
rclpy.init()
node = Node('subscriber_process')
node.create_subscription(DetectionArray, 'detections',
                         lambda m: print('detections', m.seq, flush=True), 10)
rclpy.spin(node)
"""


def test_a_subscriber_process_that_dies_and_comes_back(composed, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    container, nodes = composed(frames=0, fps=30.0)
    script = tmp_path / 'subscriber.py'
    script.write_text(_SUBSCRIBER, encoding='utf-8')

    def start() -> tuple[subprocess.Popen, list[str]]:
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True, env=os.environ.copy())
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, '')),
                         daemon=True).start()
        return process, lines

    first, lines = start()
    try:
        assert wait_for(lambda: len(lines) >= 5, 30.0), 'the subscriber process got nothing'
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        commands = nodes['action'].commands
        assert wait_for(lambda: nodes['action'].commands > commands + 10, 10.0)  # unaffected
        second, lines = start()
        try:
            assert wait_for(lambda: len(lines) >= 5, 30.0), 'the restarted subscriber got nothing'
        finally:
            second.kill()
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert nodes['nms'].error_count() == 0 and nodes['action'].error_count() == 0
