"""
Untrusted input on the real nodes: what reaches cmd_vel, the watchdog, bounded monitor state.

Bad messages come from another context (an outside 'process') through real DDS; commands are
read back on cmd_vel and health on /diagnostics, as a robot's controller and tools read them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from typing import Iterator

from diagnostic_msgs.msg import DiagnosticStatus
from edge_infer_ros.core.frame import Envelope
from edge_infer_ros.core.payloads import ImagePayload
from edge_infer_ros.ros import convert
from edge_infer_ros_msgs.msg import CandidateArray, Detection, DetectionArray
from geometry_msgs.msg import TwistStamped
from hypothesis import example, given, HealthCheck, settings, strategies as st
import numpy as np
import pytest
from rclpy.parameter import Parameter
from support.outside import Outside
from support.waiting import wait_for

SEC = 1_000_000_000
NAMES = ('ball', 'box', 'cone', 'person')


@pytest.fixture
def outside(second_context) -> Iterator[Outside]:
    o = Outside(second_context, 'outside_fuzzer', listen_commands=True)
    yield o
    o.close()


def _stamp(msg, offset_s: float = -0.005) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(
        time.time_ns() + int(offset_s * SEC), SEC)


def _bounded(msg: TwistStamped, linear: float = 0.5, angular: float = 1.0) -> bool:
    values = (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z, msg.twist.angular.x,
              msg.twist.angular.y, msg.twist.angular.z)
    return (all(math.isfinite(v) for v in values) and abs(values[0]) <= linear and
            abs(values[5]) <= angular and values[1:5] == (0.0,) * 4)


def _is_stop(msg: TwistStamped) -> bool:
    return msg.twist.linear.x == 0.0 and msg.twist.angular.z == 0.0


def test_frames_stop_and_a_stop_command_comes_within_the_watchdog_time(composed,
                                                                       outside) -> None:
    timeout_s = 0.3
    container, nodes = composed(frames=20, fps=30.0, start=False, overrides={
        'action': {'command_timeout_s': timeout_s}})
    container.start()
    action = nodes['action']
    assert nodes['camera'].wait_until_done(30.0)
    assert wait_for(lambda: action.commands >= 15, 10.0), action.commands
    assert wait_for(lambda: all(i.idle() for n in nodes.values() for i in n.inputs), 10.0)
    last_fresh_ns = action._last_fresh_ns
    assert outside.spin_until(lambda: any(
        convert.stamp_to_ns(c.header.stamp) > last_fresh_ns for c in outside.commands), 5.0)
    stop = next(c for c in outside.commands if convert.stamp_to_ns(c.header.stamp) >
                last_fresh_ns)
    assert _is_stop(stop)
    delay_s = (convert.stamp_to_ns(stop.header.stamp) - last_fresh_ns) / SEC
    assert timeout_s <= delay_s <= timeout_s + 0.4, delay_s  # thread wake-up under load
    assert action.watchdog_stops >= 1
    status = action.stage_status()
    assert status.level == DiagnosticStatus.WARN and 'watchdog' in status.message
    # Stops go on every timeout while nothing fresh arrives (a late subscriber gets one too).
    stops = action.watchdog_stops
    assert wait_for(lambda: action.watchdog_stops >= stops + 2, 3.0)


def test_detections_of_an_old_frame_give_a_stop(composed, outside) -> None:
    container, nodes = composed(frames=0, names={'action'},
                                overrides={'action': {'command_timeout_s': 60.0}})
    publisher = outside.node.create_publisher(DetectionArray, 'detections', 10)
    assert outside.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
    msg = DetectionArray(image_width=640, image_height=480, detections=[Detection(
        x_min=500.0, y_min=200.0, x_max=560.0, y_max=260.0, score=0.9, class_id=0,
        class_name='ball')])
    _stamp(msg, -2.0)  # captured 2 s ago: max_frame_age_s is 0.5
    assert outside.spin_until(lambda: publisher.publish(msg) or outside.commands, 10.0)
    assert _is_stop(outside.commands[-1]) and nodes['action'].stale_frames >= 1
    _stamp(msg)  # the same detections, fresh: a real command
    fresh = convert.stamp_to_ns(msg.header.stamp)
    assert outside.spin_until(lambda: publisher.publish(msg) or any(
        convert.stamp_to_ns(c.header.stamp) == fresh for c in outside.commands), 10.0)
    command = next(c for c in outside.commands if convert.stamp_to_ns(c.header.stamp) == fresh)
    assert command.twist.angular.z < 0.0  # the ball is on the right: turn right


rows = st.lists(st.tuples(st.tuples(*[st.one_of(st.floats(-10, 700, width=32),
                                                st.floats(allow_nan=True, width=32))] * 4),
                          st.one_of(st.floats(0, 1, width=32), st.floats(width=32)),
                          st.integers(-2**31, 2**31 - 1)), max_size=5)


def test_any_detection_array_from_outside_gives_a_bounded_cmd_vel_or_a_stop(
        composed, outside) -> None:
    container, nodes = composed(frames=0, names={'action'},
                                overrides={'action': {'command_timeout_s': 60.0}})
    action = nodes['action']
    publisher = outside.node.create_publisher(DetectionArray, 'detections', 100)
    assert outside.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
    sent = {'accepted': 0, 'refused': 0}

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(rows=rows, size=st.tuples(st.integers(0, 2000), st.integers(0, 2000)))
    # One of each fate whatever is drawn: 40 draws once held no array the gate accepts.
    @example(rows=[((100.0, 100.0, 200.0, 300.0), 0.9, 0)], size=(640, 480))
    @example(rows=[((math.nan, 100.0, 200.0, 300.0), 0.9, 0)], size=(640, 480))
    def send(rows, size) -> None:
        msg = DetectionArray(image_width=size[0], image_height=size[1], detections=[
            Detection(x_min=b[0], y_min=b[1], x_max=b[2], y_max=b[3], score=s, class_id=c,
                      class_name='ball') for b, s, c in rows])
        _stamp(msg)
        stats = action.inputs[0].stats
        handled = stats.processed + stats.errors  # counted once the frame's fate is known
        publisher.publish(msg)
        assert outside.spin_until(lambda: stats.processed + stats.errors > handled, 10.0), \
            (stats, msg)
        sent['accepted' if action.commands > sent['accepted'] else 'refused'] += 1

    send()

    # Each figure with what explains it, should one differ (this test once failed unexplained).
    def why() -> tuple:
        return (sent, action.inputs[0].stats, dict(action.refusals), action.last_error,
                action.commands, len(outside.commands))
    assert outside.spin_until(lambda: len(outside.commands) >= action.commands, 10.0), why()
    assert sent['accepted'] and sent['refused'], why()
    assert action.error_count() == sent['refused'], why()
    unbounded = [c.twist for c in outside.commands if not _bounded(c)]
    assert not unbounded, unbounded
    assert sum(action.refusals.values()) == sent['refused'], why()


def test_a_million_candidates_from_outside_are_refused_and_good_frames_go_on(
        composed, outside) -> None:
    container, nodes = composed(frames=0, names={'nms', 'action'})
    nms = nodes['nms']
    publisher = outside.node.create_publisher(CandidateArray, 'candidates', 10)
    assert outside.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
    count = 1_000_000
    flood = CandidateArray(boxes=np.tile(np.float32([10, 10, 20, 20]), count),
                           scores=np.full(count, 0.9, np.float32),
                           class_ids=np.zeros(count, np.int32), class_names=list(NAMES),
                           scale=1.0, image_width=320, image_height=320)
    _stamp(flood)
    good = CandidateArray(boxes=[150.0, 150.0, 170.0, 170.0], scores=[0.9], class_ids=[0],
                          class_names=list(NAMES), scale=1.0, image_width=320, image_height=320)
    publisher.publish(flood)
    assert outside.spin_until(lambda: nms.refusals['too_many'] == 1, 20.0)
    assert 'more than the limit of 1000' in nms.last_error
    commands = nodes['action'].commands
    _stamp(good)
    assert outside.spin_until(lambda: publisher.publish(good) or
                              nodes['action'].commands > commands, 10.0)
    values = {v.key: v.value for v in nms.stage_status().values}
    assert values['refused.too_many'] == '1'


def test_an_unpinned_model_loads_with_a_warn_that_says_so(composed, planted_model) -> None:
    container, nodes = composed(frames=0, names={'detector'})
    detector = nodes['detector']  # the planted model has no metadata file and no sha256
    status = detector.stage_status()
    assert status.level == DiagnosticStatus.WARN and 'not pinned' in status.message
    assert detector.model.sha256 in status.message
    assert {v.key: v.value for v in status.values}['model_pinned'] == 'false'
    container, nodes = composed(frames=0, names={'detector'}, overrides={'detector': {
        'model_sha256': detector.model.sha256, 'class_names': ['a', 'b', 'c', 'd']}})
    status = nodes['detector'].stage_status()
    assert status.level == DiagnosticStatus.OK and nodes['detector'].model.pinned
    assert nodes['detector'].model.class_names == ('a', 'b', 'c', 'd')


def test_after_a_failed_configure_no_previous_model_is_shown(composed, tmp_path) -> None:
    container, nodes = composed(frames=0, names={'detector'})
    detector = nodes['detector']
    assert 'model' in {v.key for v in detector.stage_status().values}
    detector.trigger_deactivate()
    detector.trigger_cleanup()
    missing = str(tmp_path / 'missing.onnx')
    detector.set_parameters([Parameter('model_path', value=missing)])
    detector.trigger_configure()
    status = detector.stage_status()
    keys = {v.key: v.value for v in status.values}
    assert status.level == DiagnosticStatus.ERROR and missing in status.message
    assert 'model' not in keys and keys['backend'] == 'none', keys


def test_the_action_warns_when_its_classes_are_not_the_models(composed) -> None:
    container, nodes = composed(frames=10, fps=30.0, overrides={
        'action': {'target_classes': ['dog'], 'command_timeout_s': 60.0}})
    action = nodes['action']
    assert wait_for(lambda: action.commands >= 1, 10.0)
    status = action.stage_status()
    assert status.level == DiagnosticStatus.WARN and 'dog' in status.message
    assert 'ball' in status.message  # the model's classes are named
    container, nodes = composed(frames=10, fps=30.0,
                                overrides={'action': {'command_timeout_s': 60.0}})
    assert wait_for(lambda: nodes['action'].commands >= 1, 10.0)
    assert nodes['action'].class_warning == ''


def test_the_camera_is_named_by_its_frame_id_composed_and_split(composed) -> None:
    container, nodes = composed(frames=5, fps=30.0, overrides={'camera': {'frame_id': 'front'}})
    assert 'camera_name' not in nodes['camera'].param_specs
    assert wait_for(lambda: nodes['budget_monitor'].tracker.cameras() == ['front'], 10.0)
    # Split, the preprocess names the frame from the Image message: the same name.
    envelope = Envelope(nodes['camera'].camera_name, 0, time.time_ns() - 1000, 'front', (),
                        ImagePayload(np.zeros((4, 4, 3), np.uint8), 'bgr8'))
    assert convert.image_from_msg(convert.image_to_msg(envelope), 0).camera == 'front'


def test_a_huge_hardware_id_is_refused(composed) -> None:
    container, nodes = composed(frames=0, names={'nms'})
    result = nodes['nms'].set_parameters([Parameter('hardware_id', value='x' * 100_000)])[0]
    assert not result.successful and 'at most 128' in result.reason


_FLOOD = textwrap.dedent("""
    from edge_infer_ros.core.frame import Envelope, FrameTrace, StageTiming
    from edge_infer_ros.ros.nodes.budget_monitor import BudgetMonitorNode
    import json, time
    import psutil, rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    rclpy.init()
    node = BudgetMonitorNode(parameter_overrides=[Parameter('deadline_grace_s', value=0.0)])
    assert node.start()
    trace_input = node.inputs[0]
    process = psutil.Process()

    def flood(start, count):
        for i in range(start, start + count):
            now = time.time_ns()
            stages = tuple(StageTiming(f'stage_{i}_{k}', '/n', now - 3000000, now - 2000000,
                                       now - 1000000) for k in range(2))
            trace = FrameTrace(f'cam_{i}', i, now - 5000000, 'f', stages)
            trace_input.deliver(Envelope(trace.camera, i, trace.stamp_ns, 'f', (), trace))
            if i % 200 == 0:
                while not trace_input.idle():
                    time.sleep(0.001)
        while not trace_input.idle():
            time.sleep(0.001)

    def cycle():
        cpu = time.process_time()
        statuses = [node.stage_status()] + node.budget_statuses()
        msg_bytes = sum(len(s.name) + len(s.message) + len(s.hardware_id) +
                        sum(len(v.key) + len(v.value) for v in s.values) for s in statuses)
        return len(statuses), msg_bytes, time.process_time() - cpu

    flood(0, 1000)  # warm-up: the bounds are reached here
    before = process.memory_info().rss
    statuses_before, bytes_before, cpu_before = cycle()
    flood(1000, 10000)
    after = process.memory_info().rss
    statuses_after, bytes_after, cpu_after = cycle()
    print(json.dumps({'rss_growth': after - before, 'statuses': [statuses_before,
                      statuses_after], 'bytes': [bytes_before, bytes_after],
                      'cpu_s': [cpu_before, cpu_after], 'seen': node.traces_seen,
                      'refused': node.refusals['too_many'],
                      'received': trace_input.stats.received,
                      'cameras': len(node.tracker.cameras())}))
    node.destroy_node()
    rclpy.shutdown()
""")


def test_the_monitor_stays_bounded_under_ten_thousand_new_names() -> None:
    result = subprocess.run([sys.executable, '-c', _FLOOD], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['received'] == 11000 and report['cameras'] == 16, report
    assert report['seen'] + report['refused'] == 11000, report  # each refusal counted
    assert report['rss_growth'] < 10 * 2**20, report
    # Diagnostics stay the size of the bounds: 16 cameras x (2 stages + 3 path items) + own.
    assert report['statuses'][1] <= 16 * (16 + 3) + 1, report
    assert report['bytes'][1] <= 2 * report['bytes'][0] + 4096, report


def test_every_budget_parameter_range_holds_only_values_the_monitor_accepts() -> None:
    """The README's ranges are these specs: their ends must be valid (0 was not, for most)."""
    from edge_infer_ros.monitor.config import BudgetConfig
    from edge_infer_ros.ros.nodes.budget_monitor import budget_param_specs
    # Cross-parameter rules aside (min_samples <= window_size, entry >= stale timeout, the
    # windows' memory ceiling: window_size's top end holds with the smallest state bounds).
    bases = ({'min_samples': 0, 'stale_timeout_s': 0.001},
             {'min_samples': 0, 'entry_timeout_s': 1e6, 'window_size': 300})
    for spec in budget_param_specs():
        for end, base in zip((spec.low, spec.high), bases):
            if end is None:
                continue
            if spec.name in ('window_size', 'min_samples') and end == spec.high:
                base = {**base, 'window_size': 1_000_000, 'max_cameras': 1, 'max_stages': 1}
            value = type(spec.default)(end)
            try:
                BudgetConfig.from_mapping({**base, spec.name: value})
            except ValueError as error:
                pytest.fail(f'{spec.name} range {spec.range_text()} admits {value}: {error}')


def test_in_process_candidates_above_max_candidates_keep_the_best_and_are_counted(
        composed, outside) -> None:
    # The detector passes up to 300 candidates; NMS takes 1: the planted ball (0.9) stays.
    kept: list[DetectionArray] = []
    outside.node.create_subscription(DetectionArray, 'detections', kept.append, 10)
    container, nodes = composed(frames=0, fps=30.0, overrides={'nms': {'max_candidates': 1}})
    assert outside.spin_until(lambda: len(kept) >= 3, 15.0)
    assert nodes['nms'].candidates_truncated >= 3
    classes = [[d.class_id for d in m.detections] for m in kept]
    assert all(c == [0] for c in classes), classes


def test_compressed_bombs_corrupt_and_unknown_frames_are_refused_and_counted(
        composed, outside) -> None:
    """A driver's CompressedImage: each bad kind refused with its reason; later frames go on."""
    import cv2
    import psutil
    from sensor_msgs.msg import CompressedImage
    from support.camera_encoder import jpeg_claiming, png_bomb, reference_scene
    jpeg = cv2.imencode('.jpg', reference_scene(640, 480))[1].tobytes()
    container, nodes = composed(frames=0, names={'preprocess', 'detector', 'nms', 'action'},
                                overrides={'preprocess': {'input_transport': 'compressed'}})
    preprocess = nodes['preprocess']
    publisher = outside.node.create_publisher(CompressedImage, 'image_raw/compressed', 10)
    assert outside.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
    rss_before = psutil.Process().memory_info().rss
    bad = [(png_bomb(25000, 25000), 'png', 'bad_image_size', '25000x25000 is outside'),
           (jpeg_claiming(9000, 9000), 'jpeg', 'bad_image_size', '9000x9000 is outside'),
           (jpeg[:len(jpeg) // 2], 'bgr8; jpeg compressed bgr8', 'bad_compressed',
            'without the end-of-image marker'),
           (jpeg, 'h264', 'bad_compressed', "unsupported compressed format 'h264'"),
           (b'\x00' * 64, 'png', 'bad_compressed', 'not a PNG')]
    for data, fmt, reason, detail in bad:
        msg = CompressedImage(format=fmt, data=data)
        before = preprocess.refusals[reason]
        assert outside.spin_until(lambda: (_stamp(msg), publisher.publish(msg)) and
                                  detail in preprocess.last_error and
                                  preprocess.refusals[reason] > before, 10.0), \
            (fmt, reason, preprocess.last_error)
    assert psutil.Process().memory_info().rss - rss_before < 300 * 2**20  # no 3.7 GB decode
    done = nodes['action'].commands
    good = CompressedImage(format='jpeg', data=jpeg)
    assert outside.spin_until(lambda: (_stamp(good), publisher.publish(good)) and
                              nodes['action'].commands > done, 10.0)
